// Batched C[b] = op(A[b]) · op(B[b]), register-tiled: a 16×16 workgroup computes a 64×64
// tile of C, each thread a 4×4 block (rows ty + 16i, columns tx + 16j), from 64×16 and 16×64
// tiles of A and B staged in workgroup memory (one barrier pair per 16 steps of k). Every
// output is one fma chain over k in order.
// A is [m, k] (or [k, m] when ta), B is [k, n] (or [n, k] when tb), C is [m, n], all
// row-major; a batch stride of 0 shares one matrix across the batch.
// Parameters: MatmulParams (generated, prepended; 64-wide tiles).
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read> p: MatmulParams;

var<workgroup> a_tile: array<f32, 1024>; // [64 rows][16 k]
var<workgroup> b_tile: array<f32, 1024>; // [16 k][64 columns]

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

fn store(base: u32, row: u32, col0: u32, m: u32, n: u32, v: vec4<f32>) {
    if (row >= m) { return; }
    if (col0 < n) { c[base + row * n + col0] = v.x; }
    if (col0 + 16u < n) { c[base + row * n + col0 + 16u] = v.y; }
    if (col0 + 32u < n) { c[base + row * n + col0 + 32u] = v.z; }
    if (col0 + 48u < n) { c[base + row * n + col0 + 48u] = v.w; }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let m = p.m;
    let n = p.n;
    let k = p.k;
    let tn = p.tiles_n;
    let tm = p.tiles_m;
    let g = wid.y * nwg.x + wid.x;          // linear workgroup index
    let per_batch = tn * tm;
    let batch = g / per_batch;
    let r = g % per_batch;
    let row0 = (r / tn) * 64u;
    let col0 = (r % tn) * 64u;
    let in_range = batch < p.batch;
    let abase = batch * p.a_stride;
    let bbase = batch * p.b_stride;
    let trans_a = p.ta == 1u;
    let trans_b = p.tb == 1u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let steps = (k + 15u) / 16u;
    for (var s = 0u; s < steps; s++) {
        let k0 = s * 16u;
        for (var t = 0u; t < 4u; t++) {
            let e = li + 256u * t;
            var va = 0.0;
            var vb = 0.0;
            if (in_range) {
                va = load_a(abase, row0 + e / 16u, k0 + e % 16u, m, k, trans_a);
                vb = load_b(bbase, k0 + e / 64u, col0 + e % 64u, k, n, trans_b);
            }
            a_tile[e] = va;
            b_tile[e] = vb;
        }
        workgroupBarrier();
        for (var q = 0u; q < 16u; q++) {
            let bq = q * 64u + lid.x;
            let bv = vec4<f32>(b_tile[bq], b_tile[bq + 16u], b_tile[bq + 32u], b_tile[bq + 48u]);
            acc0 = fma(vec4<f32>(a_tile[lid.y * 16u + q]), bv, acc0);
            acc1 = fma(vec4<f32>(a_tile[(lid.y + 16u) * 16u + q]), bv, acc1);
            acc2 = fma(vec4<f32>(a_tile[(lid.y + 32u) * 16u + q]), bv, acc2);
            acc3 = fma(vec4<f32>(a_tile[(lid.y + 48u) * 16u + q]), bv, acc3);
        }
        workgroupBarrier();
    }
    if (in_range) {
        let cb = batch * m * n;
        let col = col0 + lid.x;
        store(cb, row0 + lid.y, col, m, n, acc0);
        store(cb, row0 + lid.y + 16u, col, m, n, acc1);
        store(cb, row0 + lid.y + 32u, col, m, n, acc2);
        store(cb, row0 + lid.y + 48u, col, m, n, acc3);
    }
}
