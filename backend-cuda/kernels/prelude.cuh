// Shared by every kernel of the module (the .cu files are concatenated after this one and
// compiled once per device by NVRTC).
//
// Every kernel takes its buffers as raw pointers and then its parameter struct by value
// (`const FillParams p`, `const ColonyParams p`, ...), read by field name. The structs are
// defined once in Rust (protocell_core::backend::kernel_abi, protocell_core::cell::kernel);
// their C declarations, with static_asserts that the sizes and field offsets are the Rust
// ones, are generated and placed before this file. The WGSL kernels of protocell-wgpu, which
// these mirror, read the same structs.
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

// Global thread index of a 1-D launch.
__device__ __forceinline__ unsigned int gid() { return blockIdx.x * blockDim.x + threadIdx.x; }

// Row kernels run one block of ROW_THREADS threads per row.
#define ROW_THREADS 128

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum / max over the ROW_THREADS threads of a block; every thread gets the result.
// Call from uniform control flow.
__device__ float block_sum(float v) {
    __shared__ float part[ROW_THREADS / 32];
    v = warp_sum(v);
    unsigned int w = threadIdx.x / 32, l = threadIdx.x % 32;
    __syncthreads();
    if (l == 0) part[w] = v;
    __syncthreads();
    float r = 0.0f;
    for (int i = 0; i < ROW_THREADS / 32; i++) r += part[i];
    return r;
}
__device__ float block_max(float v) {
    __shared__ float part[ROW_THREADS / 32];
    v = warp_max(v);
    unsigned int w = threadIdx.x / 32, l = threadIdx.x % 32;
    __syncthreads();
    if (l == 0) part[w] = v;
    __syncthreads();
    float r = part[0];
    for (int i = 1; i < ROW_THREADS / 32; i++) r = fmaxf(r, part[i]);
    return r;
}

// x^e with the C library's rules for negative bases and zero (as the CPU reference).
__device__ float pow_(float x, float e) {
    if (e == 0.0f) return 1.0f;
    if (x == 0.0f) return e > 0.0f ? 0.0f : __int_as_float(0x7f800000);
    if (x > 0.0f) return exp2f(e * log2f(x));
    if (e != rintf(e)) return __int_as_float(0x7fc00000);
    float r = exp2f(e * log2f(-x));
    bool odd = fabsf(e - 2.0f * floorf(e * 0.5f)) == 1.0f;
    return odd ? -r : r;
}
