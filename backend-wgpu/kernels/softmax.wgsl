// Prepended with rows.wgsl (row_max, row_sum).
// Row-wise softmax over the last axis: one workgroup per row of `d` elements;
// y = e^{x − max} / Σ e^{x − max}. Loops are chunked (≤ 4096 iterations each).
// Parameters: RowParams (generated, prepended).
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> p: RowParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    let in_range = row < p.rows;
    let d = p.width;
    let base = row * d;
    var m = -3.4028235e38;
    if (in_range) {
        for (var c = lid; c < d; c += 64u * 4096u) {
            for (var q = 0u; q < 4096u; q++) {
                let k = c + q * 64u;
                if (k >= d) { break; }
                m = max(m, x[base + k]);
            }
        }
    }
    m = row_max(m, lid);
    var acc = 0.0;
    if (in_range) {
        for (var c = lid; c < d; c += 64u * 4096u) {
            for (var q = 0u; q < 4096u; q++) {
                let k = c + q * 64u;
                if (k >= d) { break; }
                acc += exp(x[base + k] - m);
            }
        }
    }
    let total = row_sum(acc, lid);
    let inv = 1.0 / total;
    if (in_range) {
        for (var c = lid; c < d; c += 64u * 4096u) {
            for (var q = 0u; q < 4096u; q++) {
                let k = c + q * 64u;
                if (k >= d) { break; }
                y[base + k] = exp(x[base + k] - m) * inv;
            }
        }
    }
}
