// Batched C[b] = op(A[b])·op(B[b]) tiled 16×16 through shared memory: the fallback when
// cuBLAS is not installed. A is [m, k] ([k, m] when ta), B [k, n] ([n, k] when tb), C [m, n],
// row-major; a batch stride of 0 shares one matrix. Grid (tiles_n, tiles_m, batch).
// (p.tiles_n and p.tiles_m, 16-wide here, are the grid's x and y; the kernel does not read them.)
extern "C" __global__ void matmul(const float* a, const float* b, float* c, const MatmulParams p) {
    __shared__ float as[16][17];
    __shared__ float bs[16][17];
    unsigned int m = p.m, n = p.n, k = p.k;
    bool ta = p.ta == 1, tb = p.tb == 1;
    size_t abase = (size_t)blockIdx.z * p.a_stride, bbase = (size_t)blockIdx.z * p.b_stride;
    unsigned int row = blockIdx.y * 16 + threadIdx.y, col = blockIdx.x * 16 + threadIdx.x;
    float acc = 0.0f;
    for (unsigned int t0 = 0; t0 < k; t0 += 16) {
        unsigned int ak = t0 + threadIdx.x, bk = t0 + threadIdx.y;
        float av = 0.0f, bv = 0.0f;
        if (row < m && ak < k) av = ta ? a[abase + (size_t)ak * m + row] : a[abase + (size_t)row * k + ak];
        if (bk < k && col < n) bv = tb ? b[bbase + (size_t)col * k + bk] : b[bbase + (size_t)bk * n + col];
        as[threadIdx.y][threadIdx.x] = av;
        bs[threadIdx.y][threadIdx.x] = bv;
        __syncthreads();
        for (int q = 0; q < 16; q++) acc += as[threadIdx.y][q] * bs[q][threadIdx.x];
        __syncthreads();
    }
    if (row < m && col < n) c[(size_t)blockIdx.z * m * n + (size_t)row * n + col] = acc;
}
