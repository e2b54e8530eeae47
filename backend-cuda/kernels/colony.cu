// The colony update of protocell_core::cell::scalar, one thread per token, line by line (as
// protocell-wgpu's colony*.wgsl). Each token's trajectory and scratch live in `work` at
// token·stride:  H (K+1)·4N | W (K+1)·N² | alive (K+1)·N | life N | den N | nb 4N | u 4N |
// [backward: g_h 4N | g_w N² | gh1 4N | gw_prev N² | gu 4N | gh_prev 4N | gnb 4N | gwhat N].
// sc = [coefficients (9) | stimulus (T·N)]. Parameters: ColonyParams (mode 0 as coded, 1 as
// described, 2 sound).
struct Colony {
    unsigned int n, steps, mode;
    float dt, eps, sharp;
    const float* c;
    const float* s;  // this token's stimulus
    float* h;        // H region
    float* w;        // W region
    float* alive;
    float* life;
    float* den;
    float* nb;
    float* u;
    __device__ float* hk(unsigned int k) const { return h + (size_t)k * 4 * n; }
    __device__ float* wk(unsigned int k) const { return w + (size_t)k * n * n; }
    __device__ float* ak(unsigned int k) const { return alive + (size_t)k * n; }
};

__device__ Colony colony_at(float* work, const float* sc, unsigned int tok, const ColonyParams& p) {
    Colony c;
    c.n = p.n;
    c.steps = p.steps;
    c.mode = p.mode;
    c.dt = p.dt;
    c.eps = p.row_eps;
    c.sharp = p.sharpness;
    unsigned int n = c.n, k1 = c.steps + 1;
    c.c = sc;
    c.s = sc + 9 + (size_t)tok * n;
    float* t = work + (size_t)tok * p.stride;
    c.h = t;
    c.w = c.h + (size_t)k1 * 4 * n;
    c.alive = c.w + (size_t)k1 * n * n;
    c.life = c.alive + (size_t)k1 * n;
    c.den = c.life + n;
    c.nb = c.den + n;
    c.u = c.nb + 4 * n;
    return c;
}

__device__ __forceinline__ float softplus_(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }
__device__ __forceinline__ float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ float bound(const Colony& c, float x) {
    if (c.mode == 2) return (softplus_(c.sharp * x) - softplus_(c.sharp * (x - 1.0f))) / c.sharp;
    return fminf(fmaxf(x, 0.0f), 1.0f);
}
__device__ float bound_grad(const Colony& c, float x) {
    if (c.mode == 2) return sigm(c.sharp * x) - sigm(c.sharp * (x - 1.0f));
    return (x >= 0.0f && x <= 1.0f) ? 1.0f : 0.0f;
}

__device__ float block_entropy(const float* h) {
    float z = 0.0f;
    for (int ch = 0; ch < 4; ch++) z += fmaxf(h[ch], 0.0f) + 1e-6f;
    float e = 0.0f;
    for (int ch = 0; ch < 4; ch++) {
        float q = (fmaxf(h[ch], 0.0f) + 1e-6f) / z;
        e -= q * logf(q);
    }
    return e / logf(4.0f);
}

__device__ float distance(const Colony& c, const float* h, unsigned int i, unsigned int j) {
    if (c.mode == 0) return 0.0f;
    float d2 = 0.0f;
    for (int ch = 0; ch < 4; ch++) {
        float d = h[4 * i + ch] - h[4 * j + ch];
        d2 += d * d;
    }
    return sqrtf(d2 + 1e-12f);
}

__device__ void routing_and_update(const Colony& c, unsigned int k) {
    unsigned int n = c.n;
    const float* h = c.hk(k);
    const float* w = c.wk(k);
    const float* cf = c.c;
    for (unsigned int i = 0; i < n; i++) {
        float s = 0.0f;
        for (unsigned int j = 0; j < n; j++) s += w[i * n + j];
        float dn = s + c.eps;
        c.den[i] = dn;
        for (int ch = 0; ch < 4; ch++) c.nb[4 * i + ch] = 0.0f;
        for (unsigned int j = 0; j < n; j++) {
            float wij = w[i * n + j] / dn;
            for (int ch = 0; ch < 4; ch++) c.nb[4 * i + ch] += wij * h[4 * j + ch];
        }
    }
    float dt = c.dt;
    for (unsigned int i = 0; i < n; i++) {
        float e = h[4 * i], pp = h[4 * i + 1], g = h[4 * i + 2], l = h[4 * i + 3];
        float ne = c.nb[4 * i], np = c.nb[4 * i + 1], ng = c.nb[4 * i + 2], nl = c.nb[4 * i + 3];
        float si = c.s[i];
        c.u[4 * i] = e + dt * (cf[0] * si - 0.4f * pp - 0.2f * g);
        c.u[4 * i + 1] = pp + dt * (cf[1] * si + cf[4] * (np - pp) - 0.2f * e);
        c.u[4 * i + 2] = g + dt * (cf[2] * e * (1.0f - pp) + cf[5] * (ng - g) - 0.3f * pp);
        c.u[4 * i + 3] = l + dt * (cf[3] * (0.5f * ne + 0.5f * ng) + cf[6] * (nl - l) - 0.3f * pp);
    }
}

__device__ void colony_forward(const Colony& c, const float* h0, const float* w0, const ColonyParams& p) {
    unsigned int n = c.n;
    for (unsigned int x = 0; x < 4 * n; x++) c.h[x] = h0[x];
    for (unsigned int x = 0; x < n * n; x++) c.w[x] = w0[x];
    for (unsigned int i = 0; i < n; i++) {
        c.alive[i] = 1.0f;
        c.life[i] = 1.0f;
    }
    for (unsigned int k = 0; k < c.steps; k++) {
        routing_and_update(c, k);
        float* hn = c.hk(k + 1);
        for (unsigned int x = 0; x < 4 * n; x++) hn[x] = bound(c, c.u[x]);
        const float* ap = c.ak(k);
        float* an = c.ak(k + 1);
        for (unsigned int i = 0; i < n; i++) {
            float a = ap[i];
            if (p.pruning == 1 && a > 0.0f) {
                c.life[i] -= p.rate * (1.0f - block_entropy(hn + 4 * i));
                if (c.life[i] <= p.threshold) a = 0.0f;
            }
            an[i] = a;
            for (int ch = 0; ch < 4; ch++) hn[4 * i + ch] *= a;
        }
        const float* w = c.wk(k);
        float* wn = c.wk(k + 1);
        for (unsigned int i = 0; i < n; i++) {
            for (unsigned int j = 0; j < n; j++) {
                float v = 0.0f;
                if (i != j) {
                    float d = distance(c, hn, i, j);
                    float lm = 0.5f * (hn[4 * i + 3] + hn[4 * j + 3]);
                    float wij = w[i * n + j];
                    v = bound(c, wij + c.dt * (c.c[7] * lm * d - c.c[8] * wij)) * an[i] * an[j];
                }
                wn[i * n + j] = v;
            }
        }
    }
}

// Forward: final states [T, N, 4], mucus [T, N, N], alive mask [T, N].
extern "C" __global__ void colony_fwd(const float* h0, const float* w0, const float* sc, float* h_out,
                                      float* w_out, float* a_out, float* work, const ColonyParams p) {
    unsigned int tok = gid();
    if (tok >= p.t) return;
    Colony c = colony_at(work, sc, tok, p);
    unsigned int n = c.n, kk = c.steps;
    colony_forward(c, h0 + (size_t)tok * 4 * n, w0 + (size_t)tok * n * n, p);
    for (unsigned int x = 0; x < 4 * n; x++) h_out[(size_t)tok * 4 * n + x] = c.hk(kk)[x];
    for (unsigned int x = 0; x < n * n; x++) w_out[(size_t)tok * n * n + x] = c.wk(kk)[x];
    for (unsigned int i = 0; i < n; i++) a_out[(size_t)tok * n + i] = c.ak(kk)[i];
}

// Backward (vector-Jacobian product), recomputing the trajectory.
// gout = [dh⁰ (T·4N) | dW⁰ (T·N²) | dstim (T·N) | dcoeffs per token (T·9)].
extern "C" __global__ void colony_bwd(const float* h0, const float* w0, const float* sc, const float* dh,
                                      const float* dw, float* gout, float* work, const ColonyParams p) {
    unsigned int tok = gid(), t_all = p.t;
    if (tok >= t_all) return;
    Colony c = colony_at(work, sc, tok, p);
    unsigned int n = c.n, kk = c.steps, mode = c.mode;
    float dt = c.dt;
    const float* cf = c.c;
    colony_forward(c, h0 + (size_t)tok * 4 * n, w0 + (size_t)tok * n * n, p);
    float* g_h = c.u + 4 * n;
    float* g_w = g_h + 4 * n;
    float* gh1 = g_w + n * n;
    float* gw_prev = gh1 + 4 * n;
    float* gu = gw_prev + n * n;
    float* gh_prev = gu + 4 * n;
    float* gnb = gh_prev + 4 * n;
    float* gwhat = gnb + 4 * n;
    float* gs = gout + (size_t)t_all * (4 * n + n * n) + (size_t)tok * n;
    for (unsigned int x = 0; x < 4 * n; x++) g_h[x] = dh[(size_t)tok * 4 * n + x];
    for (unsigned int x = 0; x < n * n; x++) g_w[x] = dw[(size_t)tok * n * n + x];
    for (unsigned int i = 0; i < n; i++) gs[i] = 0.0f;
    float gc[9];
    for (int q = 0; q < 9; q++) gc[q] = 0.0f;

    for (unsigned int kr = 0; kr < kk; kr++) {
        unsigned int k = kk - 1 - kr;
        const float* h = c.hk(k);
        const float* w = c.wk(k);
        const float* h1 = c.hk(k + 1);
        const float* a1 = c.ak(k + 1);
        routing_and_update(c, k);
        for (unsigned int x = 0; x < 4 * n; x++) gh1[x] = g_h[x];
        for (unsigned int x = 0; x < n * n; x++) gw_prev[x] = 0.0f;
        // rewiring
        for (unsigned int i = 0; i < n; i++) {
            for (unsigned int j = 0; j < n; j++) {
                if (i == j) continue;
                float mask = a1[i] * a1[j];
                float d = distance(c, h1, i, j);
                float lm = 0.5f * (h1[4 * i + 3] + h1[4 * j + 3]);
                float wij = w[i * n + j];
                float v = wij + dt * (cf[7] * lm * d - cf[8] * wij);
                float gv = g_w[i * n + j] * mask * bound_grad(c, v);
                if (gv == 0.0f) continue;
                gw_prev[i * n + j] += gv * (1.0f - dt * cf[8]);
                gc[7] += gv * dt * lm * d;
                gc[8] -= gv * dt * wij;
                float gl = gv * dt * cf[7] * 0.5f * d;
                gh1[4 * i + 3] += gl;
                gh1[4 * j + 3] += gl;
                if (mode != 0) {
                    float gd = gv * dt * cf[7] * lm;
                    for (int ch = 0; ch < 4; ch++) {
                        float t = gd * (h1[4 * i + ch] - h1[4 * j + ch]) / d;
                        gh1[4 * i + ch] += t;
                        gh1[4 * j + ch] -= t;
                    }
                }
            }
        }
        // gate and bound
        for (unsigned int x = 0; x < 4 * n; x++) gu[x] = gh1[x] * a1[x / 4] * bound_grad(c, c.u[x]);
        // EPGL update
        for (unsigned int i = 0; i < n; i++) {
            float e = h[4 * i], pp = h[4 * i + 1], g = h[4 * i + 2], l = h[4 * i + 3];
            float ne = c.nb[4 * i], np = c.nb[4 * i + 1], ng = c.nb[4 * i + 2], nl = c.nb[4 * i + 3];
            float ge = gu[4 * i], gp = gu[4 * i + 1], gg = gu[4 * i + 2], gl = gu[4 * i + 3];
            gh_prev[4 * i] = ge + dt * (-0.2f * gp + cf[2] * (1.0f - pp) * gg);
            gh_prev[4 * i + 1] = gp * (1.0f - dt * cf[4]) + dt * (-0.4f * ge - cf[2] * e * gg - 0.3f * gg - 0.3f * gl);
            gh_prev[4 * i + 2] = gg * (1.0f - dt * cf[5]) - dt * 0.2f * ge;
            gh_prev[4 * i + 3] = gl * (1.0f - dt * cf[6]);
            gnb[4 * i] = dt * 0.5f * cf[3] * gl;
            gnb[4 * i + 1] = dt * cf[4] * gp;
            gnb[4 * i + 2] = dt * (cf[5] * gg + 0.5f * cf[3] * gl);
            gnb[4 * i + 3] = dt * cf[6] * gl;
            gs[i] += dt * (cf[0] * ge + cf[1] * gp);
            float si = c.s[i];
            gc[0] += dt * si * ge;
            gc[1] += dt * si * gp;
            gc[2] += dt * e * (1.0f - pp) * gg;
            gc[3] += dt * (0.5f * ne + 0.5f * ng) * gl;
            gc[4] += dt * (np - pp) * gp;
            gc[5] += dt * (ng - g) * gg;
            gc[6] += dt * (nl - l) * gl;
        }
        // routing h̃ᵢ = Σⱼ Wᵢⱼ/denᵢ · hⱼ
        for (unsigned int i = 0; i < n; i++) {
            float dn = c.den[i], dot = 0.0f;
            for (unsigned int j = 0; j < n; j++) {
                float what = w[i * n + j] / dn, acc = 0.0f;
                for (int ch = 0; ch < 4; ch++) {
                    acc += gnb[4 * i + ch] * h[4 * j + ch];
                    gh_prev[4 * j + ch] += what * gnb[4 * i + ch];
                }
                gwhat[j] = acc;
                dot += acc * w[i * n + j];
            }
            for (unsigned int j = 0; j < n; j++) gw_prev[i * n + j] += gwhat[j] / dn - dot / (dn * dn);
        }
        for (unsigned int x = 0; x < 4 * n; x++) g_h[x] = gh_prev[x];
        for (unsigned int x = 0; x < n * n; x++) g_w[x] = gw_prev[x];
    }
    for (unsigned int x = 0; x < 4 * n; x++) gout[(size_t)tok * 4 * n + x] = g_h[x];
    for (unsigned int x = 0; x < n * n; x++) gout[(size_t)t_all * 4 * n + (size_t)tok * n * n + x] = g_w[x];
    float* gcs = gout + (size_t)t_all * (5 * n + n * n) + (size_t)tok * 9;
    for (int q = 0; q < 9; q++) gcs[q] = gc[q];
}
