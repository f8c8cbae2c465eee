// LayerNorm (CLIP) and RMSNorm (LLaMA) over the last dimension C, forward and backward.
//
// Row kernels: one block per row (N blocks), up to 256 threads, each thread owning packs of 8
// columns (16-byte accesses when C is a multiple of 8 and every pointer is 16-byte aligned). The
// row statistics are fp32 sums reduced in a fixed order (common.cuh block_sum); 1/sqrt runs in
// fp64 from those sums, as the CPU reference computes it. The passes over a row re-read it from
// global memory (it stays in L1/L2), which keeps the kernels free of size limits.
//
// Weight gradients are column sums over all N rows. They run as two deterministic passes: a grid
// of (column block, row chunk) blocks writes per-chunk partial sums to scratch, then one thread per
// column adds its chunks in chunk order and accumulates the total into the GRAD buffer. The chunk
// count depends only on N, so the bits do not depend on the device or the run.
//
// RMSNorm output: out = w * (x * rstd) in fp32, rounded once to bf16, as the CPU reference. (Hugging
// Face in bf16 also rounds x * rstd to bf16 before the weight multiply; we do not, so our output
// carries one rounding fewer than HF's bf16 module.)
#include <math.h>

#include "common.cuh"

static unsigned row_threads(int C) {
    unsigned packs = (unsigned)((C + 7) / 8);
    unsigned t = (packs + 31) / 32 * 32;
    return t < 32 ? 32 : (t > 256 ? 256 : t);
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

__global__ void layernorm_forward_kernel(uint16_t *out, float *mean, float *rstd, const uint16_t *x, const uint16_t *w,
                                         const uint16_t *b, int C, float eps, int vec) {
    const size_t row = blockIdx.x;
    const uint16_t *xr = x + row * C;
    uint16_t *orow = out + row * C;
    const int stride = blockDim.x * 8;
    float v[8];
    float s = 0.0f;
    for (int c0 = threadIdx.x * 8; c0 < C; c0 += stride) {
        load8(xr, c0, C, vec, v);  // lanes past C read 0
#pragma unroll
        for (int k = 0; k < 8; k++) s += v[k];
    }
    const float m = block_sum(s) / (float)C;
    // Two passes (mean, then squared deviations), as the CPU reference and torch.
    float ss = 0.0f;
    for (int c0 = threadIdx.x * 8; c0 < C; c0 += stride) {
        load8(xr, c0, C, vec, v);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float d = c0 + k < C ? v[k] - m : 0.0f;
            ss += d * d;
        }
    }
    const float var = block_sum(ss) / (float)C;
    const float r = (float)(1.0 / sqrt((double)var + (double)eps));
    if (threadIdx.x == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
    for (int c0 = threadIdx.x * 8; c0 < C; c0 += stride) {
        float wv[8], bv[8], o[8];
        load8(xr, c0, C, vec, v);
        load8(w, c0, C, vec, wv);
        load8(b, c0, C, vec, bv);
#pragma unroll
        for (int k = 0; k < 8; k++) o[k] = (v[k] - m) * r * wv[k] + bv[k];
        store8(orow, c0, C, vec, o);
    }
}

// dx = rstd * (u - mean(u) - xhat * mean(u * xhat)), u = dout * w, xhat = (x - mean) * rstd
__global__ void layernorm_backward_dx_kernel(uint16_t *dx, const uint16_t *dout, const uint16_t *x, const uint16_t *w,
                                             const float *mean, const float *rstd, int C, int vec) {
    const size_t row = blockIdx.x;
    const uint16_t *xr = x + row * C, *gr = dout + row * C;
    uint16_t *dxr = dx + row * C;
    const float m = mean[row], r = rstd[row];
    const int stride = blockDim.x * 8;
    float xv[8], gv[8], wv[8];
    float su = 0.0f, suxh = 0.0f;
    for (int c0 = threadIdx.x * 8; c0 < C; c0 += stride) {
        load8(xr, c0, C, vec, xv);
        load8(gr, c0, C, vec, gv);
        load8(w, c0, C, vec, wv);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float u = gv[k] * wv[k];  // 0 past C (g and w read as 0 there)
            su += u;
            suxh += u * ((xv[k] - m) * r);
        }
    }
    su = block_sum(su) / (float)C;
    suxh = block_sum(suxh) / (float)C;
    for (int c0 = threadIdx.x * 8; c0 < C; c0 += stride) {
        float o[8];
        load8(xr, c0, C, vec, xv);
        load8(gr, c0, C, vec, gv);
        load8(w, c0, C, vec, wv);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float xh = (xv[k] - m) * r;
            o[k] = r * (gv[k] * wv[k] - su - xh * suxh);
        }
        store8(dxr, c0, C, vec, o);
    }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

__global__ void rmsnorm_forward_kernel(uint16_t *out, float *rstd, const uint16_t *x, const uint16_t *w, int C,
                                       float eps, int vec) {
    const size_t row = blockIdx.x;
    const uint16_t *xr = x + row * C;
    uint16_t *orow = out + row * C;
    const int stride = blockDim.x * 8;
    float v[8];
    float ss = 0.0f;
    for (int c0 = threadIdx.x * 8; c0 < C; c0 += stride) {
        load8(xr, c0, C, vec, v);
#pragma unroll
        for (int k = 0; k < 8; k++) ss += v[k] * v[k];
    }
    ss = block_sum(ss);
    const float r = (float)(1.0 / sqrt((double)ss / C + (double)eps));
    if (threadIdx.x == 0) rstd[row] = r;
    for (int c0 = threadIdx.x * 8; c0 < C; c0 += stride) {
        float wv[8], o[8];
        load8(xr, c0, C, vec, v);
        load8(w, c0, C, vec, wv);
#pragma unroll
        for (int k = 0; k < 8; k++) o[k] = wv[k] * (v[k] * r);
        store8(orow, c0, C, vec, o);
    }
}

// dx = r*u - (r^3/C) * x * sum(u*x), u = dout * w
__global__ void rmsnorm_backward_dx_kernel(uint16_t *dx, const uint16_t *dout, const uint16_t *x, const uint16_t *w,
                                           const float *rstd, int C, int vec) {
    const size_t row = blockIdx.x;
    const uint16_t *xr = x + row * C, *gr = dout + row * C;
    uint16_t *dxr = dx + row * C;
    const float r = rstd[row];
    const int stride = blockDim.x * 8;
    float xv[8], gv[8], wv[8];
    float sux = 0.0f;
    for (int c0 = threadIdx.x * 8; c0 < C; c0 += stride) {
        load8(xr, c0, C, vec, xv);
        load8(gr, c0, C, vec, gv);
        load8(w, c0, C, vec, wv);
#pragma unroll
        for (int k = 0; k < 8; k++) sux += gv[k] * wv[k] * xv[k];
    }
    sux = block_sum(sux);
    const float kk = r * r * r * sux / (float)C;
    for (int c0 = threadIdx.x * 8; c0 < C; c0 += stride) {
        float o[8];
        load8(xr, c0, C, vec, xv);
        load8(gr, c0, C, vec, gv);
        load8(w, c0, C, vec, wv);
#pragma unroll
        for (int k = 0; k < 8; k++) o[k] = r * (gv[k] * wv[k]) - kk * xv[k];
        store8(dxr, c0, C, vec, o);
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic column sums (also used by linear.cu for the bias gradient).

enum { COLSUM_THREADS = 256, COLSUM_MAX_CHUNKS = 128 };

// Block (column block, row chunk): each thread one column, summing its chunk's rows in row order.
// part (chunks, C) receives sum of g (PLAIN), sum of g * x * rstd (RMS_DW), or sum of g * xhat
// (LN_DW_DB, with sum of g written to part + chunks*C as well).
__global__ void colsum_partial_kernel(float *part, int mode, const uint16_t *g, const uint16_t *x, const float *mean,
                                      const float *rstd, int N, int C, int rows_per_chunk, int chunks) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int r0 = blockIdx.y * rows_per_chunk;
    const int r1 = r0 + rows_per_chunk < N ? r0 + rows_per_chunk : N;
    float a0 = 0.0f, a1 = 0.0f;
    for (int n = r0; n < r1; n++) {
        size_t i = (size_t)n * C + c;
        float gv = bf16_to_f(g[i]);
        if (mode == COLSUM_PLAIN) {
            a0 += gv;
        } else if (mode == COLSUM_RMS_DW) {
            a0 += gv * bf16_to_f(x[i]) * rstd[n];
        } else {
            a0 += gv * ((bf16_to_f(x[i]) - mean[n]) * rstd[n]);
            a1 += gv;
        }
    }
    part[(size_t)blockIdx.y * C + c] = a0;
    if (mode == COLSUM_LN_DW_DB) part[((size_t)chunks + blockIdx.y) * C + c] = a1;
}

// dst[c] += sum over chunks of part[chunk][c], chunks in order.
__global__ void colsum_finalize_kernel(float *dst, const float *part, int chunks, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += part[(size_t)k * C + c];
    dst[c] += s;
}

void cuda_colsum(llava_backend *be, int mode, float *dst0, float *dst1, const void *g, const void *x, const float *mean,
                 const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0 || (!dst0 && !dst1)) return;
    int chunks = N < COLSUM_MAX_CHUNKS ? N : COLSUM_MAX_CHUNKS;
    int rows_per_chunk = (N + chunks - 1) / chunks;
    chunks = (N + rows_per_chunk - 1) / rows_per_chunk;  // no empty chunk
    size_t nsum = mode == COLSUM_LN_DW_DB ? 2 : 1;
    float *part = (float *)cuda_scratch(be, nsum * (size_t)chunks * C * sizeof(float));
    cudaStream_t st = cuda_stream_of(be);
    dim3 grid(grid_for((size_t)C, COLSUM_THREADS), (unsigned)chunks);
    colsum_partial_kernel<<<grid, COLSUM_THREADS, 0, st>>>(part, mode, (const uint16_t *)g, (const uint16_t *)x, mean,
                                                           rstd, N, C, rows_per_chunk, chunks);
    CUDA_CHECK_LAUNCH();
    if (dst0) {
        colsum_finalize_kernel<<<grid_for((size_t)C, COLSUM_THREADS), COLSUM_THREADS, 0, st>>>(dst0, part, chunks, C);
        CUDA_CHECK_LAUNCH();
    }
    if (dst1) {
        colsum_finalize_kernel<<<grid_for((size_t)C, COLSUM_THREADS), COLSUM_THREADS, 0, st>>>(
            dst1, part + (size_t)chunks * C, chunks, C);
        CUDA_CHECK_LAUNCH();
    }
}

// ---------------------------------------------------------------------------------------------
// Host entry points (cuda_ops.h).

extern "C" void cuda_layernorm_forward(llava_backend *be, void *out, float *mean, float *rstd, const void *x,
                                       const void *w, const void *b, int N, int C, float eps) {
    req_layernorm_forward(be, out, mean, rstd, x, w, b, N, C);
    if (N <= 0 || C <= 0) return;
    int vec = C % 8 == 0 && is_aligned16(out) && is_aligned16(x) && is_aligned16(w) && is_aligned16(b);
    layernorm_forward_kernel<<<(unsigned)N, row_threads(C), 0, cuda_stream_of(be)>>>(
        (uint16_t *)out, mean, rstd, (const uint16_t *)x, (const uint16_t *)w, (const uint16_t *)b, C, eps, vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_layernorm_backward(llava_backend *be, void *dx, float *dw, float *db, const void *dout,
                                        const void *x, const void *w, const float *mean, const float *rstd, int N,
                                        int C) {
    req_layernorm_backward(be, dx, dout, x, w, mean, rstd, N, C);
    if (N <= 0 || C <= 0) return;
    int vec = C % 8 == 0 && is_aligned16(dx) && is_aligned16(dout) && is_aligned16(x) && is_aligned16(w);
    // Weight gradients first: they read dout and x, which dx may alias.
    cuda_colsum(be, COLSUM_LN_DW_DB, dw, db, dout, x, mean, rstd, N, C);
    layernorm_backward_dx_kernel<<<(unsigned)N, row_threads(C), 0, cuda_stream_of(be)>>>(
        (uint16_t *)dx, (const uint16_t *)dout, (const uint16_t *)x, (const uint16_t *)w, mean, rstd, C, vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_rmsnorm_forward(llava_backend *be, void *out, float *rstd, const void *x, const void *w, int N,
                                     int C, float eps) {
    req_rmsnorm_forward(be, out, rstd, x, w, N, C);
    if (N <= 0 || C <= 0) return;
    int vec = C % 8 == 0 && is_aligned16(out) && is_aligned16(x) && is_aligned16(w);
    rmsnorm_forward_kernel<<<(unsigned)N, row_threads(C), 0, cuda_stream_of(be)>>>(
        (uint16_t *)out, rstd, (const uint16_t *)x, (const uint16_t *)w, C, eps, vec);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_rmsnorm_backward(llava_backend *be, void *dx, float *dw, const void *dout, const void *x,
                                      const void *w, const float *rstd, int N, int C) {
    req_rmsnorm_backward(be, dx, dout, x, w, rstd, N, C);
    if (N <= 0 || C <= 0) return;
    int vec = C % 8 == 0 && is_aligned16(dx) && is_aligned16(dout) && is_aligned16(x) && is_aligned16(w);
    cuda_colsum(be, COLSUM_RMS_DW, dw, NULL, dout, x, NULL, rstd, N, C);  // before dx, which may alias dout or x
    rmsnorm_backward_dx_kernel<<<(unsigned)N, row_threads(C), 0, cuda_stream_of(be)>>>(
        (uint16_t *)dx, (const uint16_t *)dout, (const uint16_t *)x, (const uint16_t *)w, rstd, C, vec);
    CUDA_CHECK_LAUNCH();
}
