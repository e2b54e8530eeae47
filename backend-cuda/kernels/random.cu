// Random fill mirroring `protocell_core::rng::sample` (Philox-4x32-10): element e of the
// stream uses Philox block e / K (K = 4 uniform, 8 Bernoulli, 2 normal) of the key.
// dist 0 uniform [a, b), 1 Bernoulli (threshold on 16-bit words), 2 normal (mean a, std b).
__device__ uint4 philox(unsigned int block_lo, unsigned int block_hi, const RandomParams& p) {
    uint4 c = make_uint4(block_lo, block_hi, p.offset_lo, p.offset_hi);
    unsigned int k0 = p.seed_lo, k1 = p.seed_hi;
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        unsigned int a_hi = __umulhi(0xD2511F53u, c.x), a_lo = 0xD2511F53u * c.x;
        unsigned int b_hi = __umulhi(0xCD9E8D57u, c.z), b_lo = 0xCD9E8D57u * c.z;
        c = make_uint4(b_hi ^ c.y ^ k0, b_lo, a_hi ^ c.w ^ k1, a_lo);
    }
    return c;
}
__device__ __forceinline__ unsigned int lane4(uint4 w, unsigned int i) {
    return i == 0 ? w.x : (i == 1 ? w.y : (i == 2 ? w.z : w.w));
}
__device__ __forceinline__ float unit(unsigned int x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

extern "C" __global__ void random(float* out, const RandomParams p) {
    unsigned int e = gid();
    if (e >= p.n) return;
    unsigned int dist = p.dist;
    float a = p.a, b = p.b;
    if (dist == 0) {
        uint4 w = philox(e / 4, 0, p);
        out[e] = __fadd_rn(a, __fmul_rn(b - a, unit(lane4(w, e % 4))));  // no FMA contraction: as the CPU
    } else if (dist == 1) {
        uint4 w = philox(e / 8, 0, p);
        unsigned int word = (lane4(w, (e % 8) / 2) >> (16 * (e % 2))) & 0xffffu;
        out[e] = word < p.threshold ? 1.0f : 0.0f;
    } else {
        uint4 w = philox(e / 2, 0, p);
        unsigned int lane = 2 * (e % 2);
        float u1 = (float)((lane4(w, lane) >> 8) + 1) * (1.0f / 16777216.0f);
        float u2 = unit(lane4(w, lane + 1));
        out[e] = a + b * sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864f * u2);
    }
}
