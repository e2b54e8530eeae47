// Batched C[b] = op(A[b]) · op(B[b]), tiled 16 × 16 through workgroup memory.
// A is [m, k] (or [k, m] when ta), B is [k, n] (or [n, k] when tb), C is [m, n], all
// row-major; a batch stride of 0 shares one matrix across the batch.
// p = [batch, m, n, k, ta, tb, a_batch_stride, b_batch_stride, tiles_n, tiles_m]
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read> p: array<u32>;

const T: u32 = 16u;
var<workgroup> ta_tile: array<f32, 256>;
var<workgroup> tb_tile: array<f32, 256>;

fn load_a(base: u32, row: u32, col: u32, m: u32, k: u32, trans: bool) -> f32 {
    if (row >= m || col >= k) { return 0.0; }
    if (trans) { return a[base + col * m + row]; }
    return a[base + row * k + col];
}

fn load_b(base: u32, row: u32, col: u32, k: u32, n: u32, trans: bool) -> f32 {
    if (row >= k || col >= n) { return 0.0; }
    if (trans) { return b[base + col * k + row]; }
    return b[base + row * n + col];
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = p[1];
    let n = p[2];
    let k = p[3];
    let tn = p[8];
    let tm = p[9];
    let g = wid.y * nwg.x + wid.x;          // linear workgroup index
    let per_batch = tn * tm;
    let batch = g / per_batch;
    let r = g % per_batch;
    let row = (r / tn) * T + lid.y;
    let col = (r % tn) * T + lid.x;
    let in_range = batch < p[0];
    let abase = batch * p[6];
    let bbase = batch * p[7];
    let trans_a = p[4] == 1u;
    let trans_b = p[5] == 1u;
    var acc = 0.0;
    let steps = (k + T - 1u) / T;
    for (var s = 0u; s < steps; s++) {
        var va = 0.0;
        var vb = 0.0;
        if (in_range) {
            va = load_a(abase, row, s * T + lid.x, m, k, trans_a);
            vb = load_b(bbase, s * T + lid.y, col, k, n, trans_b);
        }
        ta_tile[lid.y * T + lid.x] = va;
        tb_tile[lid.y * T + lid.x] = vb;
        workgroupBarrier();
        for (var q = 0u; q < T; q++) {
            acc = fma(ta_tile[lid.y * T + q], tb_tile[q * T + lid.x], acc);
        }
        workgroupBarrier();
    }
    if (in_range && row < m && col < n) {
        c[batch * m * n + row * n + col] = acc;
    }
}
