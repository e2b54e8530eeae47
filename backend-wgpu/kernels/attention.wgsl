// Prepended with rows.wgsl (row_max, row_sum) and attn.wgsl (at).
// Attention forward, probabilities and log-sum-exp, one workgroup per query row r = bh·Sq + i:
// s_j = scale·q_i·k_j for the visible keys (j ≤ i + Sk − Sq when causal), lse = log Σ_j e^{s_j},
// P[r, j] = e^{s_j − lse}·m_j (m the dropout mask when p.has_mask = 1, else 1; 0 for hidden keys).
// o = P·v follows in attention_apply.wgsl. Each thread re-reads only the P entries it wrote.
// Parameters: AttnParams (generated, prepended).
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> pr: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<storage, read> p: AttnParams;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = wid.y * nwg.x + wid.x;
    let in_range = r < p.rows;
    let sq = p.sq;
    let sk = p.sk;
    let d = p.d;
    let bh = r / sq;
    let i = r % sq;
    let scale = p.scale;
    let vis = select(sk, i + sk - sq + 1u, p.causal == 1u);
    let qo = at(p.q, p.heads, bh, i);
    let row = r * sk;
    var m = NEG_BIG;
    if (in_range) {
        for (var c = lid; c < vis; c += 64u * 4096u) {
            for (var t = 0u; t < 4096u; t++) {
                let j = c + t * 64u;
                if (j >= vis) { break; }
                let ko = at(p.k, p.heads, bh, j);
                var s = 0.0;
                for (var e = 0u; e < d; e++) { s += q[qo + e] * k[ko + e]; }
                s *= scale;
                pr[row + j] = s;
                m = max(m, s);
            }
        }
    }
    let mx = row_max(m, lid);
    var acc = 0.0;
    if (in_range) {
        for (var c = lid; c < vis; c += 64u * 4096u) {
            for (var t = 0u; t < 4096u; t++) {
                let j = c + t * 64u;
                if (j >= vis) { break; }
                acc += exp(pr[row + j] - mx);
            }
        }
    }
    let l = mx + log(row_sum(acc, lid));
    if (in_range) {
        for (var c = lid; c < sk; c += 64u * 4096u) {
            for (var t = 0u; t < 4096u; t++) {
                let j = c + t * 64u;
                if (j >= sk) { break; }
                var v = 0.0;
                if (j < vis) {
                    v = exp(pr[row + j] - l);
                    if (p.has_mask == 1u) { v *= mask[row + j]; }
                }
                pr[row + j] = v;
            }
        }
        if (lid == 0u) { lse[r] = l; }
    }
}
