// Prepended with rows.wgsl (row_max, row_sum).
// Cross-entropy forward, one workgroup per row of logits [n, v]:
// lse[r] = max + ln Σ e^{x − max},  nll[r] = lse[r] − x[r, t[r]].
// Targets are checked on the host. Loops are chunked (≤ 4096 iterations each).
// Parameters: RowParams (generated, prepended; rows n, width v).
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> t: array<u32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> nll: array<f32>;
@group(0) @binding(4) var<storage, read> p: RowParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    let in_range = row < p.rows;
    let v = p.width;
    let base = row * v;
    var m = -3.4028235e38;
    if (in_range) {
        for (var c = lid; c < v; c += 64u * 4096u) {
            for (var q = 0u; q < 4096u; q++) {
                let k = c + q * 64u;
                if (k >= v) { break; }
                m = max(m, x[base + k]);
            }
        }
    }
    m = row_max(m, lid);
    var acc = 0.0;
    if (in_range) {
        for (var c = lid; c < v; c += 64u * 4096u) {
            for (var q = 0u; q < 4096u; q++) {
                let k = c + q * 64u;
                if (k >= v) { break; }
                acc += exp(x[base + k] - m);
            }
        }
    }
    let total = row_sum(acc, lid);
    if (lid == 0u && in_range) {
        let l = m + log(total);
        lse[row] = l;
        nll[row] = l - x[base + t[row]];
    }
}
