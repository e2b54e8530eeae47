// Row kernels (one block of ROW_THREADS per row) and the AdamW update.

// Softmax over the last axis: y = e^{x − max} / Σ e^{x − max}.   p = [rows, d]
extern "C" __global__ void softmax(const float* x, float* y, P p) {
    unsigned int d = U(1);
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
// nll = lse − x[t].   p = [n, v]
extern "C" __global__ void cross_entropy(const float* x, const unsigned int* t, float* lse, float* nll, P p) {
    unsigned int v = U(1), row = blockIdx.x;
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

// dlogits[r, c] = (e^{x[r, c] − lse[r]} − [c = t[r]])·dloss/n.   p = [n·v, v, bits(1/n)]
extern "C" __global__ void cross_entropy_bwd(const float* x, const unsigned int* t, const float* lse,
                                             const float* dloss, float* dx, P p) {
    unsigned int i = gid();
    if (i >= U(0)) return;
    unsigned int v = U(1), r = i / v, c = i % v;
    float hot = t[r] == c ? 1.0f : 0.0f;
    dx[i] = (expf(x[i] - lse[r]) - hot) * (dloss[0] * F(2));
}

// AdamW: g' = s·g; m' = β₁m + (1 − β₁)g'; v' = β₂v + (1 − β₂)g'²;
// w' = decay·w − step_size·m'/(√v'·inv_sqrt_bc2 + ε).
// p = [n, β₁, β₂, ε, decay, step_size, inv_sqrt_bc2, grad_scale]
extern "C" __global__ void adamw(const float* w, const float* g, const float* m, const float* v, float* w_out,
                                 float* m_out, float* v_out, P p) {
    unsigned int i = gid();
    if (i >= U(0)) return;
    float b1 = F(1), b2 = F(2);
    float gs = g[i] * F(7);
    float m1 = b1 * m[i] + (1.0f - b1) * gs;
    float v1 = b2 * v[i] + (1.0f - b2) * (gs * gs);
    float denom = sqrtf(v1) * F(6) + F(3);
    w_out[i] = w[i] * F(4) + (-F(5)) * (m1 / denom);
    m_out[i] = m1;
    v_out[i] = v1;
}

// LayerNorm (p[3] = 0) or RMSNorm (p[3] = 1: μ = 0, no β) forward over the last axis:
// rstd = 1/√(mean((x − μ)²) + ε), y = (x − μ)·rstd·γ + β.   p = [rows, d, bits(ε), rms]
extern "C" __global__ void layer_norm(const float* x, const float* gamma, const float* beta, float* y, float* mean,
                                      float* rstd, P p) {
    unsigned int d = U(1), row = blockIdx.x;
    bool rms = U(3) == 1;
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
    float r = 1.0f / sqrtf(block_sum(acc) / (float)d + F(2));
    for (unsigned int k = threadIdx.x; k < d; k += ROW_THREADS)
        y[(size_t)row * d + k] = (xr[k] - mu) * r * gamma[k] + (rms ? 0.0f : beta[k]);
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = r;
    }
}

// Norm backward, input gradient: x̂ = (x − μ)·rstd, g = dy·γ,
// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) (no mean(g) term for RMSNorm).   p = [rows, d, rms]
extern "C" __global__ void layer_norm_bwd(const float* x, const float* gamma, const float* mean, const float* rstd,
                                          const float* dy, float* dx, P p) {
    unsigned int d = U(1), row = blockIdx.x;
    bool rms = U(2) == 1;
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
// dγ[c] = Σ_r dy[r, c]·x̂[r, c], dβ[c] = Σ_r dy[r, c].   p = [rows, d, rms]
extern "C" __global__ void layer_norm_params(const float* x, const float* mean, const float* rstd, const float* dy,
                                             float* dgamma, float* dbeta, P p) {
    unsigned int c = gid(), rows = U(0), d = U(1);
    if (c >= d) return;
    bool rms = U(2) == 1;
    float sg = 0.0f, sb = 0.0f;
    for (unsigned int r = 0; r < rows; r++) {
        float g = dy[(size_t)r * d + c];
        sb += g;
        sg += g * (x[(size_t)r * d + c] - (rms ? 0.0f : mean[r])) * rstd[r];
    }
    dgamma[c] = sg;
    dbeta[c] = sb;
}
