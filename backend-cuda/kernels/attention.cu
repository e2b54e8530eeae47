// Attention in three kernels (as protocell-wgpu's attention*.wgsl). A layout (a field of
// AttnParams or AttnApplyParams) is four words: [base, batch stride, head stride, row stride];
// row `row` of head bh = b·H + h starts at base + b·sb + h·sh + row·rs (contiguous [BH, S, D]
// tensors use H = 1; the packed qkv [B, S, 3, H, Dh] and o [B, S, H, Dh] use their strides).
__device__ __forceinline__ size_t at(const unsigned int* l, unsigned int heads, unsigned int bh,
                                     unsigned int row) {
    return (size_t)l[0] + (size_t)(bh / heads) * l[1] + (size_t)(bh % heads) * l[2] + (size_t)row * l[3];
}

// Probabilities and lse, one block per query row r = bh·Sq + i: s_j = scale·q_i·k_j over the
// visible keys (j ≤ i + Sk − Sq when causal), lse = log Σ e^{s_j}, P[r, j] = e^{s_j − lse}·m_j.
extern "C" __global__ void attention(const float* q, const float* k, const float* mask, float* pr, float* lse,
                                     const AttnParams p) {
    unsigned int r = blockIdx.x, sq = p.sq, sk = p.sk, d = p.d, h = p.heads;
    unsigned int bh = r / sq, i = r % sq;
    float scale = p.scale;
    unsigned int vis = p.causal == 1 ? i + sk - sq + 1 : sk;
    const float* qi = q + at(p.q, h, bh, i);
    float* row = pr + (size_t)r * sk;
    float m = -INFINITY;
    for (unsigned int j = threadIdx.x; j < vis; j += ROW_THREADS) {
        const float* kj = k + at(p.k, h, bh, j);
        float s = 0.0f;
        for (unsigned int e = 0; e < d; e++) s += qi[e] * kj[e];
        s *= scale;
        row[j] = s;
        m = fmaxf(m, s);
    }
    float mx = block_max(m);
    float acc = 0.0f;
    for (unsigned int j = threadIdx.x; j < vis; j += ROW_THREADS) acc += expf(row[j] - mx);
    float l = mx + logf(block_sum(acc));
    for (unsigned int j = threadIdx.x; j < sk; j += ROW_THREADS) {
        float v = 0.0f;
        if (j < vis) {
            v = expf(row[j] - l);
            if (p.has_mask == 1) v *= mask[(size_t)r * sk + j];
        }
        row[j] = v;
    }
    if (threadIdx.x == 0) lse[r] = l;
}

// Backward rows, one block per query row: p_j = e^{scale·q_i·k_j − lse}, dp_j = m_j·(do_i·v_j),
// δ = Σ_j p_j·dp_j, ds_j = scale·p_j·(dp_j − δ). Writes P⊙m to pd[0..n) and dS to pd[n..2n).
extern "C" __global__ void attention_bwd(const float* q, const float* k, const float* v, const float* dout,
                                         const float* lse, const float* mask, float* pd, const AttnParams p) {
    unsigned int r = blockIdx.x, sq = p.sq, sk = p.sk, d = p.d, h = p.heads, dv = p.dv;
    unsigned int bh = r / sq, i = r % sq;
    float scale = p.scale;
    bool masked = p.has_mask == 1;
    unsigned int vis = p.causal == 1 ? i + sk - sq + 1 : sk;
    const float* qi = q + at(p.q, h, bh, i);
    const float* oi = dout + at(p.o, h, bh, i);
    size_t row = (size_t)r * sk, off2 = (size_t)p.rows * sk;
    float l = lse[r];
    float acc = 0.0f;
    for (unsigned int j = threadIdx.x; j < vis; j += ROW_THREADS) {
        const float* kj = k + at(p.k, h, bh, j);
        const float* vj = v + at(p.v, h, bh, j);
        float s = 0.0f;
        for (unsigned int e = 0; e < d; e++) s += qi[e] * kj[e];
        float pj = expf(s * scale - l);
        float dp = 0.0f;
        for (unsigned int e = 0; e < dv; e++) dp += oi[e] * vj[e];
        if (masked) dp *= mask[row + j];
        pd[row + j] = pj;
        pd[off2 + row + j] = dp;
        acc += pj * dp;
    }
    float delta = block_sum(acc);
    for (unsigned int j = threadIdx.x; j < sk; j += ROW_THREADS) {
        float pm = 0.0f, ds = 0.0f;
        if (j < vis) {
            float pj = pd[row + j];
            ds = scale * pj * (pd[off2 + row + j] - delta);
            pm = masked ? pj * mask[row + j] : pj;
        }
        pd[row + j] = pm;
        pd[off2 + row + j] = ds;
    }
}

// out[bh, r, e] = Σ_c A[bh, r, c]·x[bh, c, e] (trans = 0) or Σ_c A[bh, c, r]·x[bh, c, e]
// (trans = 1), one thread per output element (out in the layout p.dst).
extern "C" __global__ void attention_apply(const float* a, const float* x, float* out, const AttnApplyParams p) {
    unsigned int g = gid();
    if (g >= p.total) return;
    unsigned int w = p.width, h = p.heads, e = g % w, rr = g / w, r = rr % p.rows, bh = rr / p.rows;
    unsigned int sq = p.sq, sk = p.sk;
    bool trans = p.trans == 1;
    unsigned int n = trans ? sq : sk;
    const float* ab = a + p.a_off + (size_t)bh * sq * sk;
    float acc = 0.0f;
    for (unsigned int c = 0; c < n; c++) {
        float av = trans ? ab[(size_t)c * sk + r] : ab[(size_t)r * sk + c];
        acc += av * x[at(p.x, h, bh, c) + e];
    }
    out[at(p.dst, h, bh, r) + e] = acc;
}
