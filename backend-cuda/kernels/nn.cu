// Row kernels (one block of ROW_THREADS per row) and the AdamW update.

// Softmax over the last axis: y = e^{x − max} / Σ e^{x − max}.
extern "C" __global__ void softmax(const float* x, float* y, const RowParams p) {
    unsigned int d = p.width;
    const float* xr = x + (size_t)blockIdx.x * d;
    float* yr = y + (size_t)blockIdx.x * d;
    float m = -INFINITY;
    for (unsigned int k = threadIdx.x; k < d; k += ROW_THREADS) m = fmaxf(m, xr[k]);
    m = block_max(m);
    float acc = 0.0f;
    for (unsigned int k = threadIdx.x; k < d; k += ROW_THREADS) acc += expf(xr[k] - m);
    float inv = 1.0f / block_sum(acc);
    for (unsigned int k = threadIdx.x; k < d; k += ROW_THREADS) yr[k] = expf(xr[k] - m) * inv;
}

// Cross-entropy forward per row of logits [n, v]: lse = max + ln Σ e^{x − max},
// nll = lse − x[t] (p.rows = n, p.width = v).
extern "C" __global__ void cross_entropy(const float* x, const unsigned int* t, float* lse, float* nll,
                                         const RowParams p) {
    unsigned int v = p.width, row = blockIdx.x;
    const float* xr = x + (size_t)row * v;
    float m = -INFINITY;
    for (unsigned int k = threadIdx.x; k < v; k += ROW_THREADS) m = fmaxf(m, xr[k]);
    m = block_max(m);
    float acc = 0.0f;
    for (unsigned int k = threadIdx.x; k < v; k += ROW_THREADS) acc += expf(xr[k] - m);
    float total = block_sum(acc);
    if (threadIdx.x == 0) {
        float l = m + logf(total);
        lse[row] = l;
        nll[row] = l - xr[t[row]];
    }
}

// dlogits[r, c] = (e^{x[r, c] − lse[r]} − [c = t[r]])·dloss/n.
extern "C" __global__ void cross_entropy_bwd(const float* x, const unsigned int* t, const float* lse,
                                             const float* dloss, float* dx, const CrossEntropyBwdParams p) {
    unsigned int i = gid();
    if (i >= p.n) return;
    unsigned int v = p.classes, r = i / v, c = i % v;
    float hot = t[r] == c ? 1.0f : 0.0f;
    dx[i] = (expf(x[i] - lse[r]) - hot) * (dloss[0] * p.inv_rows);
}

// AdamW: g' = s·g; m' = β₁m + (1 − β₁)g'; v' = β₂v + (1 − β₂)g'²;
// w' = decay·w − step_size·m'/(√v'·inv_sqrt_bc2 + ε).
extern "C" __global__ void adamw(const float* w, const float* g, const float* m, const float* v, float* w_out,
                                 float* m_out, float* v_out, const AdamWParams p) {
    unsigned int i = gid();
    if (i >= p.n) return;
    float b1 = p.beta1, b2 = p.beta2;
    float gs = g[i] * p.grad_scale;
    float m1 = b1 * m[i] + (1.0f - b1) * gs;
    float v1 = b2 * v[i] + (1.0f - b2) * (gs * gs);
    float denom = sqrtf(v1) * p.inv_sqrt_bc2 + p.eps;
    w_out[i] = w[i] * p.decay + (-p.step_size) * (m1 / denom);
    m_out[i] = m1;
    v_out[i] = v1;
}

// LayerNorm (p.rms = 0) or RMSNorm (p.rms = 1: μ = 0, no β) forward over the last axis:
// rstd = 1/√(mean((x − μ)²) + ε), y = (x − μ)·rstd·γ + β.
extern "C" __global__ void layer_norm(const float* x, const float* gamma, const float* beta, float* y, float* mean,
                                      float* rstd, const LayerNormParams p) {
    unsigned int d = p.width, row = blockIdx.x;
    bool rms = p.rms == 1;
    const float* xr = x + (size_t)row * d;
    float mu = 0.0f;
    if (!rms) {
        float acc = 0.0f;
        for (unsigned int k = threadIdx.x; k < d; k += ROW_THREADS) acc += xr[k];
        mu = block_sum(acc) / (float)d;
    }
    float acc = 0.0f;
    for (unsigned int k = threadIdx.x; k < d; k += ROW_THREADS) {
        float c = xr[k] - mu;
        acc += c * c;
    }
    float r = 1.0f / sqrtf(block_sum(acc) / (float)d + p.eps);
    for (unsigned int k = threadIdx.x; k < d; k += ROW_THREADS)
        y[(size_t)row * d + k] = (xr[k] - mu) * r * gamma[k] + (rms ? 0.0f : beta[k]);
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = r;
    }
}

// Norm backward, input gradient: x̂ = (x − μ)·rstd, g = dy·γ,
// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) (no mean(g) term for RMSNorm).
extern "C" __global__ void layer_norm_bwd(const float* x, const float* gamma, const float* mean, const float* rstd,
                                          const float* dy, float* dx, const NormBwdParams p) {
    unsigned int d = p.width, row = blockIdx.x;
    bool rms = p.rms == 1;
    size_t base = (size_t)row * d;
    float mu = rms ? 0.0f : mean[row], r = rstd[row];
    float sg = 0.0f, sgx = 0.0f;
    for (unsigned int k = threadIdx.x; k < d; k += ROW_THREADS) {
        float g = dy[base + k] * gamma[k];
        sg += g;
        sgx += g * (x[base + k] - mu) * r;
    }
    float mg = rms ? 0.0f : block_sum(sg) / (float)d;
    float mgx = block_sum(sgx) / (float)d;
    for (unsigned int k = threadIdx.x; k < d; k += ROW_THREADS) {
        float g = dy[base + k] * gamma[k];
        float xh = (x[base + k] - mu) * r;
        dx[base + k] = (g - mg - xh * mgx) * r;
    }
}

// Norm backward, parameter gradients, one thread per column:
// dγ[c] = Σ_r dy[r, c]·x̂[r, c], dβ[c] = Σ_r dy[r, c].
extern "C" __global__ void layer_norm_params(const float* x, const float* mean, const float* rstd, const float* dy,
                                             float* dgamma, float* dbeta, const NormBwdParams p) {
    unsigned int c = gid(), rows = p.rows, d = p.width;
    if (c >= d) return;
    bool rms = p.rms == 1;
    float sg = 0.0f, sb = 0.0f;
    for (unsigned int r = 0; r < rows; r++) {
        float g = dy[(size_t)r * d + c];
        sb += g;
        sg += g * (x[(size_t)r * d + c] - (rms ? 0.0f : mean[r])) * rstd[r];
    }
    dgamma[c] = sg;
    dbeta[c] = sb;
}
