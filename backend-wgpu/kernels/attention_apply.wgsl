// Prepended with attn.wgsl (at).
// The products of attention with a per-head [Sq, Sk] matrix A (probabilities or dS), one
// thread per output element: out[bh, r, e] = Σ_c A[bh, r, c]·x[bh, c, e] (trans = 0, r < Sq)
// or Σ_c A[bh, c, r]·x[bh, c, e] (trans = 1, r < Sk), x and out in strided layouts.
// Parameters: AttnApplyParams (generated, prepended; the output is `out`, its layout `dst`).
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> p: AttnApplyParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (g >= p.total) { return; }
    let w = p.width;
    let h = p.heads;
    let e = g % w;
    let rr = g / w;
    let r = rr % p.rows;
    let bh = rr / p.rows;
    let sq = p.sq;
    let sk = p.sk;
    let trans = p.trans == 1u;
    let n = select(sk, sq, trans);
    let ab = p.a_off + bh * sq * sk;
    var acc = 0.0;
    for (var c0 = 0u; c0 < n; c0 += 4096u) {
        for (var c = c0; c < min(n, c0 + 4096u); c++) {
            var av = 0.0;
            if (trans) { av = a[ab + c * sk + r]; } else { av = a[ab + r * sk + c]; }
            acc += av * x[at(p.x, h, bh, c) + e];
        }
    }
    out[at(p.dst, h, bh, r) + e] = acc;
}
