// x viewed as [outer, n, inner]; out[o, i] = op over k of x[o, k, i], one block per output.
// op Sum 0, Mean 1, Max 2, Min 3 (n ≥ 1).
extern "C" __global__ void reduce(const float* x, float* out, const ReduceParams p) {
    unsigned int j = blockIdx.x;
    unsigned int n = p.n, inner = p.inner, op = p.op;
    unsigned int base = (j / inner) * n * inner + j % inner;
    float acc = op == 2 ? -INFINITY : (op == 3 ? INFINITY : 0.0f);
    for (unsigned int k = threadIdx.x; k < n; k += ROW_THREADS) {
        float v = x[base + k * inner];
        acc = op == 2 ? fmaxf(acc, v) : (op == 3 ? fminf(acc, v) : acc + v);
    }
    float r;
    if (op == 2) {
        r = block_max(acc);
    } else if (op == 3) {
        r = -block_max(-acc);
    } else {
        r = block_sum(acc);
    }
    if (threadIdx.x == 0) out[j] = op == 1 ? r / (float)n : r;
}
