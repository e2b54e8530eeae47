// Prepended with rows.wgsl (row_sum) and attn.wgsl (at).
// Attention backward, one workgroup per query row r = bh·Sq + i, from the saved lse:
// p_j = e^{scale·q_i·k_j − lse} (visible keys), dp_j = m_j·(do_i·v_j), δ = Σ_j p_j·dp_j
// (= do_i·o_i, recomputed from the same probabilities), ds_j = scale·p_j·(dp_j − δ).
// Writes P⊙m to pd[0..n) and dS to pd[n..2n) (n = rows·Sk); dq = dS·k, dk = dSᵀ·q and
// dv = (P⊙m)ᵀ·do follow in attention_apply.wgsl. Each thread re-reads only its own entries.
// Parameters: AttnParams (generated, prepended).
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> mask: array<f32>;
@group(0) @binding(6) var<storage, read_write> pd: array<f32>;
@group(0) @binding(7) var<storage, read> p: AttnParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = wid.y * nwg.x + wid.x;
    let in_range = r < p.rows;
    let sq = p.sq;
    let sk = p.sk;
    let d = p.d;
    let dv = p.dv;
    let h = p.heads;
    let bh = r / sq;
    let i = r % sq;
    let scale = p.scale;
    let masked = p.has_mask == 1u;
    let vis = select(sk, i + sk - sq + 1u, p.causal == 1u);
    let qo = at(p.q, h, bh, i);
    let oo = at(p.o, h, bh, i);
    let row = r * sk;
    let off2 = p.rows * sk;
    var l = 0.0;
    if (in_range) { l = lse[r]; }
    var acc = 0.0;
    if (in_range) {
        for (var c = lid; c < vis; c += 64u * 4096u) {
            for (var t = 0u; t < 4096u; t++) {
                let j = c + t * 64u;
                if (j >= vis) { break; }
                let ko = at(p.k, h, bh, j);
                let vo = at(p.v, h, bh, j);
                var s = 0.0;
                for (var e = 0u; e < d; e++) { s += q[qo + e] * k[ko + e]; }
                let pj = exp(s * scale - l);
                var dp = 0.0;
                for (var e = 0u; e < dv; e++) { dp += dout[oo + e] * v[vo + e]; }
                if (masked) { dp *= mask[row + j]; }
                pd[row + j] = pj;
                pd[off2 + row + j] = dp;
                acc += pj * dp;
            }
        }
    }
    let delta = row_sum(acc, lid);
    if (in_range) {
        for (var c = lid; c < sk; c += 64u * 4096u) {
            for (var t = 0u; t < 4096u; t++) {
                let j = c + t * 64u;
                if (j >= sk) { break; }
                var pm = 0.0;
                var ds = 0.0;
                if (j < vis) {
                    let pj = pd[row + j];
                    ds = scale * pj * (pd[off2 + row + j] - delta);
                    pm = pj;
                    if (masked) { pm *= mask[row + j]; }
                }
                pd[row + j] = pm;
                pd[off2 + row + j] = ds;
            }
        }
    }
}
