// out[i, d] = table[ids[i], d] (p.n = rows·D, p.width = D); ids are checked on the host.
extern "C" __global__ void gather(const float* table, const unsigned int* ids, float* out, const IndexParams p) {
    unsigned int i = gid();
    if (i >= p.n) return;
    unsigned int d = p.width;
    out[i] = table[ids[i / d] * d + i % d];
}

// out[v, d] = Σ_{i: ids[i] = v} src[i, d], summed in increasing i (deterministic, as the CPU),
// from the host-built CSR `starts` (rows + 1) and `order` (positions grouped by id).
// (p.n = rows·D, p.width = D)
extern "C" __global__ void scatter(const float* src, const unsigned int* starts, const unsigned int* order,
                                   float* out, const IndexParams p) {
    unsigned int i = gid();
    if (i >= p.n) return;
    unsigned int d = p.width, v = i / d, col = i % d;
    float acc = 0.0f;
    for (unsigned int q = starts[v]; q < starts[v + 1]; q++) acc += src[order[q] * d + col];
    out[i] = acc;
}
