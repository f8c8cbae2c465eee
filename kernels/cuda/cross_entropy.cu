// Softmax cross-entropy with ignore index, fused with its gradient (kernels/ops.h).
//
// Launch shape: one block of 256 threads per row (T blocks). Each thread streams over its packs of
// 8 columns (16-byte loads when V is a multiple of 8 and the pointers are aligned) keeping an online
// (max, sum of exp(z - max)) pair in fp32; the pairs are merged across the block in a fixed order.
// No probabilities are stored: the gradient pass recomputes exp(z - lse) pack by pack.
//
// Aliasing (dlogits == logits): z[y] is read by every thread before the block's first barrier, and
// the gradient pass starts after the last barrier of the reduction, when every read of the first
// pass is done; in the gradient pass each thread reads a pack and then overwrites that same pack.
#include <math.h>

#include "common.cuh"

enum { CE_THREADS = 256 };

// Merge of two online-softmax states; commutative bit for bit (fmaxf and the final sum are), which
// the butterfly below relies on. An empty state is (-inf, 0).
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2) {
    float mm = fmaxf(m, m2);
    if (mm == -INFINITY) {
        s = 0.0f;  // both empty (avoids -inf - -inf = NaN)
    } else {
        s = s * expf(m - mm) + s2 * expf(m2 - mm);
    }
    m = mm;
}

__global__ void cross_entropy_kernel(float *losses, uint16_t *dlogits, const uint16_t *logits, const int32_t *targets,
                                     int V, float grad_scale, int vec) {
    const size_t row = blockIdx.x;
    const uint16_t *z = logits + row * V;
    uint16_t *dz = dlogits ? dlogits + row * V : NULL;
    const int y = targets[row];
    const int stride = blockDim.x * 8;

    if (y < 0 || y >= V) {
        // Ignored row: loss 0, gradient 0. A target past the vocabulary: NaN both (see the CPU code).
        const float fill = y < 0 ? 0.0f : NAN;
        if (threadIdx.x == 0) losses[row] = fill;
        if (dz) {
            float f[8];
#pragma unroll
            for (int k = 0; k < 8; k++) f[k] = fill;
            for (int c0 = threadIdx.x * 8; c0 < V; c0 += stride) store8(dz, c0, V, vec, f);
        }
        return;
    }

    const float zy = bf16_to_f(z[y]);  // before any barrier, hence before any write

    float m = -INFINITY, s = 0.0f;
    for (int c0 = threadIdx.x * 8; c0 < V; c0 += stride) {
        float v[8];
        load8(z, c0, V, vec, v);
        float cm = -INFINITY;
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (c0 + k < V) cm = fmaxf(cm, v[k]);
        float cs = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (c0 + k < V) cs += expf(v[k] - cm);
        lse_merge(m, s, cm, cs);
    }
    // Warp butterfly, then warps in order.
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
    __shared__ float sm[32], ss[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    if (lane == 0) {
        sm[warp] = m;
        ss[warp] = s;
    }
    __syncthreads();
    m = sm[0];
    s = ss[0];
    for (int w = 1; w < nwarps; w++) lse_merge(m, s, sm[w], ss[w]);
    const float lse = m + logf(s);
    if (threadIdx.x == 0) losses[row] = lse - zy;
    if (!dz) return;

    for (int c0 = threadIdx.x * 8; c0 < V; c0 += stride) {
        float v[8], g[8];
        load8(z, c0, V, vec, v);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float p = expf(v[k] - lse);
            g[k] = (c0 + k == y ? p - 1.0f : p) * grad_scale;
        }
        store8(dz, c0, V, vec, g);
    }
}

extern "C" void cuda_cross_entropy(llava_backend *be, float *losses, void *dlogits, const void *logits,
                                   const int32_t *targets, int T, int V, float grad_scale) {
    req_cross_entropy(be, losses, logits, targets, T, V);
    if (T <= 0 || V <= 0) return;
    int vec = V % 8 == 0 && is_aligned16(logits) && (!dlogits || is_aligned16(dlogits));
    cross_entropy_kernel<<<(unsigned)T, CE_THREADS, 0, cuda_stream_of(be)>>>(
        losses, (uint16_t *)dlogits, (const uint16_t *)logits, targets, V, grad_scale, vec);
    CUDA_CHECK_LAUNCH();
}
