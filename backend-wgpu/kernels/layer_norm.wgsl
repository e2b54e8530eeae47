// Prepended with rows.wgsl (row_sum).
// LayerNorm forward over the last axis, one workgroup per row of `d`:
// μ = mean(x), rstd = 1/√(mean((x − μ)²) + ε), y = (x − μ)·rstd·γ + β.
// RMSNorm when p.rms = 1: μ = 0 and no β (y = x·rstd·γ; the β binding is not read).
// Loops are chunked (≤ 4096 iterations each).   Parameters: LayerNormParams (generated, prepended).
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(6) var<storage, read> p: LayerNormParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    let in_range = row < p.rows;
    let d = p.width;
    let base = row * d;
    let rms = p.rms == 1u;
    var acc = 0.0;
    if (in_range && !rms) {
        for (var c = lid; c < d; c += 64u * 4096u) {
            for (var q = 0u; q < 4096u; q++) {
                let k = c + q * 64u;
                if (k >= d) { break; }
                acc += x[base + k];
            }
        }
    }
    let mu = select(row_sum(acc, lid) / f32(d), 0.0, rms);
    acc = 0.0;
    if (in_range) {
        for (var c = lid; c < d; c += 64u * 4096u) {
            for (var q = 0u; q < 4096u; q++) {
                let k = c + q * 64u;
                if (k >= d) { break; }
                let xc = x[base + k] - mu;
                acc += xc * xc;
            }
        }
    }
    let r = 1.0 / sqrt(row_sum(acc, lid) / f32(d) + p.eps);
    if (in_range) {
        for (var c = lid; c < d; c += 64u * 4096u) {
            for (var q = 0u; q < 4096u; q++) {
                let k = c + q * 64u;
                if (k >= d) { break; }
                y[base + k] = (x[base + k] - mu) * r * gamma[k] + select(beta[k], 0.0, rms);
            }
        }
        if (lid == 0u) {
            mean[row] = mu;
            rstd[row] = r;
        }
    }
}
