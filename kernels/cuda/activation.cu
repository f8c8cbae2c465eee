// Elementwise activations (CLIP's quick_gelu, the projector's exact GELU, SigLIP's tanh GELU, LLaMA's
// SwiGLU product) and the residual adds, forward and backward. bf16 in
// and out, fp32 arithmetic with the accurate library functions (expf, erfcf: a few fp32 ulps), so the
// one visible error is the final rounding to bf16, as on the CPU reference (which computes in fp64
// and rounds to fp32).
//
// Launch shape: one thread per pack of 8 elements, 256 threads per block, ceil(n/8/256) blocks. A
// pack moves as one 16-byte access when every pointer is 16-byte aligned; the last partial pack
// and unaligned views go element by element (common.cuh load8/store8).
//
// Aliasing: an output may be the same buffer as an input, index for index (ops.h): each thread
// reads all of its pack's inputs before writing its outputs, and no pointer is __restrict__.
#include <math.h>

#include "common.cuh"

static const unsigned EW_THREADS = 256;

static inline unsigned ew_blocks(size_t n) { return grid_for((n + 7) / 8, EW_THREADS); }

__device__ __forceinline__ size_t pack_start(void) { return (blockIdx.x * (size_t)blockDim.x + threadIdx.x) * 8; }

__device__ __forceinline__ float sigmoidf_acc(float x) { return 1.0f / (1.0f + expf(-x)); }

// ---- quick_gelu: x * sigmoid(1.702 x)

__global__ void quick_gelu_forward_kernel(uint16_t *out, const uint16_t *x, size_t n, int vec) {
    size_t i0 = pack_start();
    if (i0 >= n) return;
    float xv[8], o[8];
    load8(x, i0, n, vec, xv);
#pragma unroll
    for (int k = 0; k < 8; k++) o[k] = xv[k] * sigmoidf_acc(1.702f * xv[k]);
    store8(out, i0, n, vec, o);
}

// d/dx = s + 1.702 x s (1 - s), s = sigmoid(1.702 x)
__global__ void quick_gelu_backward_kernel(uint16_t *dx, const uint16_t *dout, const uint16_t *x, size_t n, int vec) {
    size_t i0 = pack_start();
    if (i0 >= n) return;
    float xv[8], g[8], o[8];
    load8(x, i0, n, vec, xv);
    load8(dout, i0, n, vec, g);
#pragma unroll
    for (int k = 0; k < 8; k++) {
        float s = sigmoidf_acc(1.702f * xv[k]);
        o[k] = g[k] * (s + 1.702f * xv[k] * s * (1.0f - s));
    }
    store8(dx, i0, n, vec, o);
}

// ---- exact GELU: 0.5 x erfc(-x / sqrt 2), the erfc form for the same reason as the CPU code
// (no cancellation in 1 + erf for negative x).

__global__ void gelu_forward_kernel(uint16_t *out, const uint16_t *x, size_t n, int vec) {
    size_t i0 = pack_start();
    if (i0 >= n) return;
    float xv[8], o[8];
    load8(x, i0, n, vec, xv);
#pragma unroll
    for (int k = 0; k < 8; k++) o[k] = 0.5f * xv[k] * erfcf(-xv[k] * 0.70710678118654752f);
    store8(out, i0, n, vec, o);
}

// ---- GELU's tanh approximation (SigLIP's gelu_pytorch_tanh): 0.5 x (1 + tanh(u)), u = sqrt(2 / pi) (x +
// 0.044715 x^3), written as x sigmoid(2 u), the same function (1 + tanh(u) = 2 sigmoid(2 u)): for x below
// about -3, 1 + tanhf(u) cancels to a few significant bits in fp32 while the sigmoid keeps full relative
// precision (the erfc form above for the same reason).

__global__ void gelu_tanh_forward_kernel(uint16_t *out, const uint16_t *x, size_t n, int vec) {
    size_t i0 = pack_start();
    if (i0 >= n) return;
    float xv[8], o[8];
    load8(x, i0, n, vec, xv);
#pragma unroll
    for (int k = 0; k < 8; k++) {
        float u2 = 1.5957691216057308f * (xv[k] + 0.044715f * xv[k] * xv[k] * xv[k]);  // 2 sqrt(2 / pi) (...)
        o[k] = xv[k] * sigmoidf_acc(u2);
    }
    store8(out, i0, n, vec, o);
}

// d/dx = s + 2 sqrt(2 / pi) x s (1 - s) (1 + 3 * 0.044715 x^2), s = sigmoid(2 u) (the CPU's form,
// kernels/cpu/activation.c): 1 - s taken as sigmoid(-2 u), not by subtraction, which would keep only the
// absolute precision of s where s is near 1 (x above ~2).
__global__ void gelu_tanh_backward_kernel(uint16_t *dx, const uint16_t *dout, const uint16_t *x, size_t n, int vec) {
    size_t i0 = pack_start();
    if (i0 >= n) return;
    float xv[8], g[8], o[8];
    load8(x, i0, n, vec, xv);
    load8(dout, i0, n, vec, g);
#pragma unroll
    for (int k = 0; k < 8; k++) {
        float x2 = xv[k] * xv[k];
        float u2 = 1.5957691216057308f * (xv[k] + 0.044715f * x2 * xv[k]);
        float s = sigmoidf_acc(u2), sm = sigmoidf_acc(-u2);
        o[k] = g[k] * (s + 1.5957691216057308f * xv[k] * s * sm * (1.0f + 0.134145f * x2));
    }
    store8(dx, i0, n, vec, o);
}

// d/dx [x Phi(x)] = Phi(x) + x phi(x)
__global__ void gelu_backward_kernel(uint16_t *dx, const uint16_t *dout, const uint16_t *x, size_t n, int vec) {
    size_t i0 = pack_start();
    if (i0 >= n) return;
    float xv[8], g[8], o[8];
    load8(x, i0, n, vec, xv);
    load8(dout, i0, n, vec, g);
#pragma unroll
    for (int k = 0; k < 8; k++) {
        float cdf = 0.5f * erfcf(-xv[k] * 0.70710678118654752f);
        float pdf = 0.39894228040143268f * expf(-0.5f * xv[k] * xv[k]);
        o[k] = g[k] * (cdf + xv[k] * pdf);
    }
    store8(dx, i0, n, vec, o);
}

// ---- SwiGLU product: silu(gate) * up

__global__ void silu_mul_forward_kernel(uint16_t *out, const uint16_t *gate, const uint16_t *up, size_t n, int vec) {
    size_t i0 = pack_start();
    if (i0 >= n) return;
    float gv[8], uv[8], o[8];
    load8(gate, i0, n, vec, gv);
    load8(up, i0, n, vec, uv);
#pragma unroll
    for (int k = 0; k < 8; k++) o[k] = gv[k] * sigmoidf_acc(gv[k]) * uv[k];
    store8(out, i0, n, vec, o);
}

// dgate = dout * up * s (1 + g (1 - s)), dup = dout * g * s, s = sigmoid(g)
__global__ void silu_mul_backward_kernel(uint16_t *dgate, uint16_t *dup, const uint16_t *dout, const uint16_t *gate,
                                         const uint16_t *up, size_t n, int vec) {
    size_t i0 = pack_start();
    if (i0 >= n) return;
    float gv[8], uv[8], d[8], og[8], ou[8];
    load8(gate, i0, n, vec, gv);
    load8(up, i0, n, vec, uv);
    load8(dout, i0, n, vec, d);
#pragma unroll
    for (int k = 0; k < 8; k++) {
        float s = sigmoidf_acc(gv[k]);
        og[k] = d[k] * uv[k] * s * (1.0f + gv[k] * (1.0f - s));
        ou[k] = d[k] * gv[k] * s;
    }
    store8(dgate, i0, n, vec, og);
    store8(dup, i0, n, vec, ou);
}

// ---- residual adds: one fp32 add of two bf16 values, rounded once.

__global__ void add_kernel(uint16_t *out, const uint16_t *a, const uint16_t *b, size_t n, int vec) {
    size_t i0 = pack_start();
    if (i0 >= n) return;
    float av[8], bv[8], o[8];
    load8(a, i0, n, vec, av);
    load8(b, i0, n, vec, bv);
#pragma unroll
    for (int k = 0; k < 8; k++) o[k] = av[k] + bv[k];
    store8(out, i0, n, vec, o);
}

// LoRA's scaling with dropout: the mask is the CPU's (ops.h's lora_dropout_keeps on the element's
// global index), so both backends drop the same elements and the backward redraws it.
__global__ void dropout_scale_kernel(uint16_t *out, const uint16_t *x, size_t n, int vec, float f, uint32_t thr,
                                     uint64_t seed) {
    size_t i0 = pack_start();
    if (i0 >= n) return;
    float xv[8], o[8];
    load8(x, i0, n, vec, xv);
#pragma unroll
    for (int k = 0; k < 8; k++) o[k] = (thr == 0 || lora_dropout_keeps(seed, i0 + k, thr)) ? xv[k] * f : 0.0f;
    store8(out, i0, n, vec, o);
}

// ---------------------------------------------------------------------------------------------
// Host entry points (cuda_ops.h).

extern "C" void cuda_quick_gelu_forward(llava_backend *be, void *out, const void *x, size_t n) {
    req_elementwise(be, "quick_gelu_forward", n, "out x", out, x, NULL, NULL, NULL);
    if (n == 0) return;
    int vec = is_aligned16(out) && is_aligned16(x);
    quick_gelu_forward_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream_of(be)>>>((uint16_t *)out, (const uint16_t *)x,
                                                                                   n, vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_quick_gelu_backward(llava_backend *be, void *dx, const void *dout, const void *x, size_t n) {
    req_elementwise(be, "quick_gelu_backward", n, "dx dout x", dx, dout, x, NULL, NULL);
    if (n == 0) return;
    int vec = is_aligned16(dx) && is_aligned16(dout) && is_aligned16(x);
    quick_gelu_backward_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream_of(be)>>>(
        (uint16_t *)dx, (const uint16_t *)dout, (const uint16_t *)x, n, vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_gelu_forward(llava_backend *be, void *out, const void *x, size_t n) {
    req_elementwise(be, "gelu_forward", n, "out x", out, x, NULL, NULL, NULL);
    if (n == 0) return;
    int vec = is_aligned16(out) && is_aligned16(x);
    gelu_forward_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream_of(be)>>>((uint16_t *)out, (const uint16_t *)x, n,
                                                                             vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_gelu_tanh_forward(llava_backend *be, void *out, const void *x, size_t n) {
    req_elementwise(be, "gelu_tanh_forward", n, "out x", out, x, NULL, NULL, NULL);
    if (n == 0) return;
    int vec = is_aligned16(out) && is_aligned16(x);
    gelu_tanh_forward_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream_of(be)>>>((uint16_t *)out, (const uint16_t *)x,
                                                                                  n, vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_gelu_tanh_backward(llava_backend *be, void *dx, const void *dout, const void *x, size_t n) {
    req_elementwise(be, "gelu_tanh_backward", n, "dx dout x", dx, dout, x, NULL, NULL);
    if (n == 0) return;
    int vec = is_aligned16(dx) && is_aligned16(dout) && is_aligned16(x);
    gelu_tanh_backward_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream_of(be)>>>(
        (uint16_t *)dx, (const uint16_t *)dout, (const uint16_t *)x, n, vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_gelu_backward(llava_backend *be, void *dx, const void *dout, const void *x, size_t n) {
    req_elementwise(be, "gelu_backward", n, "dx dout x", dx, dout, x, NULL, NULL);
    if (n == 0) return;
    int vec = is_aligned16(dx) && is_aligned16(dout) && is_aligned16(x);
    gelu_backward_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream_of(be)>>>((uint16_t *)dx, (const uint16_t *)dout,
                                                                              (const uint16_t *)x, n, vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_silu_mul_forward(llava_backend *be, void *out, const void *gate, const void *up, size_t n) {
    req_elementwise(be, "silu_mul_forward", n, "out gate up", out, gate, up, NULL, NULL);
    if (n == 0) return;
    int vec = is_aligned16(out) && is_aligned16(gate) && is_aligned16(up);
    silu_mul_forward_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream_of(be)>>>(
        (uint16_t *)out, (const uint16_t *)gate, (const uint16_t *)up, n, vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_silu_mul_backward(llava_backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                                       const void *up, size_t n) {
    req_elementwise(be, "silu_mul_backward", n, "dgate dup dout gate up", dgate, dup, dout, gate, up);
    if (n == 0) return;
    int vec = is_aligned16(dgate) && is_aligned16(dup) && is_aligned16(dout) && is_aligned16(gate) && is_aligned16(up);
    silu_mul_backward_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream_of(be)>>>(
        (uint16_t *)dgate, (uint16_t *)dup, (const uint16_t *)dout, (const uint16_t *)gate, (const uint16_t *)up, n,
        vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_add(llava_backend *be, void *out, const void *a, const void *b, size_t n) {
    req_elementwise(be, "add", n, "out a b", out, a, b, NULL, NULL);
    if (n == 0) return;
    int vec = is_aligned16(out) && is_aligned16(a) && is_aligned16(b);
    add_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream_of(be)>>>((uint16_t *)out, (const uint16_t *)a,
                                                                    (const uint16_t *)b, n, vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_add_inplace(llava_backend *be, void *acc, const void *x, size_t n) {
    req_elementwise(be, "add_inplace", n, "acc x", acc, x, NULL, NULL, NULL);
    cuda_add(be, acc, acc, x, n);
}

extern "C" void cuda_dropout_scale(llava_backend *be, void *out, const void *x, size_t n, float scale, float p,
                                   uint64_t seed) {
    req_elementwise(be, "dropout_scale", n, "out x", out, x, NULL, NULL, NULL);
    if (n == 0) return;
    int vec = is_aligned16(out) && is_aligned16(x);
    float f = p > 0.0f ? scale / (1.0f - p) : scale;
    uint32_t thr = p > 0.0f ? lora_dropout_threshold(p) : 0;
    dropout_scale_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream_of(be)>>>((uint16_t *)out, (const uint16_t *)x, n,
                                                                              vec, f, thr, seed);
    CUDA_CHECK_LAUNCH();
}
