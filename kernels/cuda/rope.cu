// Rotary position embedding, HF half-split convention (feature i pairs with i + D/2), in place on
// x (T, H*D) bf16, forward and backward (the backward rotates by -angle: ops.h).
//
// The angle follows the CPU reference (kernels/cpu/rope.c) step for step, because at positions in
// the thousands the angle's last fp32 bits decide cos/sin: inv_freq is computed on the host with
// the very expression the CPU backend uses (the C library's powf) and passed by value, the angle is
// one fp32 product pos * inv_freq, and cos/sin are the accurate cosf/sinf (not __cosf). The
// rotation keeps HF's fp32 order, each product rounded, then the sum (__fmul_rn/__fadd_rn stop the
// compiler from fusing them into FMAs).
//
// Launch shape: one thread per (token t, pair i), 256 threads per block, ceil(T*D/2/256) blocks;
// each thread computes its cos/sin once and rotates pair i of all H heads of token t.
#include <math.h>

#include "common.cuh"

enum { ROPE_MAX_HALF = 256 };  // head dims up to 512

typedef struct {
    float f[ROPE_MAX_HALF];  // (D/2) inv_freq
} rope_freqs;

__global__ void rope_kernel(uint16_t *x, const int32_t *pos, int T, int H, int D, rope_freqs freqs, float sign) {
    const int half = D / 2;
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)T * half) return;
    int t = (int)(idx / half), i = (int)(idx % half);
    float angle = __fmul_rn((float)pos[t], freqs.f[i]);
    float c = cosf(angle), s = sign * sinf(angle);
    for (int h = 0; h < H; h++) {
        uint16_t *v = x + ((size_t)t * H + h) * D;  // one head's (D) features
        float a = bf16_to_f(v[i]), b = bf16_to_f(v[i + half]);
        v[i] = f_to_bf16(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)));
        v[i + half] = f_to_bf16(__fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s)));
    }
}

static void rope_launch(llava_backend *be, void *x, const int32_t *pos, int T, int H, int D, float theta,
                        const llava_rope_scaling *scaling, float sign) {
    if (T <= 0 || H <= 0 || D <= 0) return;
    CUDA_REQUIRE(D % 2 == 0 && D / 2 <= ROPE_MAX_HALF, "rope: head dim must be even and at most 512");
    rope_freqs freqs;
    llava_rope_inv_freq(D, theta, scaling, freqs.f);  // the CPU backend's, on the host
    size_t work = (size_t)T * (D / 2);
    rope_kernel<<<grid_for(work, 256), 256, 0, cuda_stream_of(be)>>>((uint16_t *)x, pos, T, H, D, freqs, sign);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_rope_forward(llava_backend *be, void *x, const int32_t *pos, int T, int H, int D, float theta,
                                  const llava_rope_scaling *scaling) {
    req_rope(be, "rope_forward", x, pos, T, H, D);
    rope_launch(be, x, pos, T, H, D, theta, scaling, 1.0f);
}

extern "C" void cuda_rope_backward(llava_backend *be, void *dx, const int32_t *pos, int T, int H, int D, float theta,
                                   const llava_rope_scaling *scaling) {
    req_rope(be, "rope_backward", dx, pos, T, H, D);
    rope_launch(be, dx, pos, T, H, D, theta, scaling, -1.0f);
}
