// Prepended with rows.wgsl (row_sum).
// LayerNorm backward, input gradient, one workgroup per row: with x̂ = (x − μ)·rstd and
// g = dy·γ, dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
// RMSNorm when p.rms = 1: μ = 0 and no mean(g) term (the mean binding is not read).
// Parameters: NormBwdParams (generated, prepended).
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read> p: NormBwdParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    let in_range = row < p.rows;
    let d = p.width;
    let base = row * d;
    let rms = p.rms == 1u;
    var mu = 0.0;
    var r = 0.0;
    if (in_range) {
        mu = select(mean[row], 0.0, rms);
        r = rstd[row];
    }
    var sg = 0.0;
    var sgx = 0.0;
    if (in_range) {
        for (var c = lid; c < d; c += 64u * 4096u) {
            for (var q = 0u; q < 4096u; q++) {
                let k = c + q * 64u;
                if (k >= d) { break; }
                let g = dy[base + k] * gamma[k];
                sg += g;
                sgx += g * (x[base + k] - mu) * r;
            }
        }
    }
    let mg = select(row_sum(sg, lid) / f32(d), 0.0, rms);
    let mgx = row_sum(sgx, lid) / f32(d);
    if (in_range) {
        for (var c = lid; c < d; c += 64u * 4096u) {
            for (var q = 0u; q < 4096u; q++) {
                let k = c + q * 64u;
                if (k >= d) { break; }
                let g = dy[base + k] * gamma[k];
                let xh = (x[base + k] - mu) * r;
                dx[base + k] = (g - mg - xh * mgx) * r;
            }
        }
    }
}
