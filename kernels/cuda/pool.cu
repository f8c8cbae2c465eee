// grid_pool: the visual-token reduction between the vision tower and the projector
// (model.mm_spatial_pool_*; ops.h). in (B, G*G, C) bf16, each image's G x G feature grid row-major, to
// out (B, Go*Go, C) bf16: the mean or max of each s x s window (Go = G / s, the last partial rows and
// columns dropped), or the bilinear resize to Go = ceil(G / s) with torch's align_corners=False source
// index. The arithmetic is the CPU backend's (kernels/cpu/pool.c), in fp32 and in its order:
//   average: the window's s * s values summed row by row, left to right, divided once (IEEE division,
//     __fdiv_rn) and rounded once to bf16: the CPU's bits;
//   max: a running max from -inf that keeps the first NaN it meets (v > acc || isnan(v)), as
//     max_pool2d: the bits of the input it picks (a NaN comes out as the device's canonical one);
//   bilinear: scale = G / Go, the source scale * (o + 0.5) - 0.5 clamped at 0, its integer part and
//     fraction, the weights 1 - l and l, and ly0 (lx0 p00 + lx1 p01) + ly1 (lx0 p10 + lx1 p11), every
//     step an unfused fp32 operation (__fmul_rn, __fadd_rn: nvcc would otherwise contract them into
//     FMAs, which round once where the CPU rounds twice).
//
// Layout: one thread per (output row, pack of 8 channels), 256 threads per block over a flat index,
// the pack index fastest, so a warp covers 256 consecutive channels of one output row and every load
// of a window element and the store are contiguous runs. When C is a multiple of 8 and both pointers
// are 16-byte aligned (CLIP-L's 1024 channels from the caching allocator) each pack moves as one
// 16-byte access; otherwise element by element (C = 37, or a pointer off 16 bytes). The op is
// bandwidth-bound (s * s loads per output, no reuse across threads worth a shared-memory tile: each
// input element is read by one window, or by at most four resize outputs, and those hit L2), so the
// kernel is a plain gather. Nothing is atomic and no thread depends on another: the same bits every run.
//
// The backward (grid_pool_backward, ops.h) is a gather too: one thread per (input row, pack of 8 channels),
// each computing its own din from the outputs that read its input, so nothing is atomic and every element
// of din is written once (0 where no output reads it):
//   average: dout of the input's window divided once by s * s (__fdiv_rn), rounded once to bf16: the
//     CPU's fp32 value rounded to bf16;
//   max: the thread scans its input's window as the forward does (v > acc || isnan(v), from -inf, the
//     pick starting at the window's first input) and takes dout where the pick is its own input, else 0;
//     s * s loads per input, L2 hits from the neighbouring threads of the same windows;
//   bilinear: per side, the outputs whose taps may land on the input, a range taken wide from the
//     inverse of the source index (scale >= 1, so at most 2 / scale + 4 of them) and each tested with
//     pool_source itself, so the taps are the forward's exactly; then the sum over rows, then columns,
//     in output order, of weight_y * weight_x * dout in fp32 (the CPU sums in fp64: bf16 apart at most).
#include "common.cuh"

enum { POOL_THREADS = 256 };

// torch's area_pixel_compute_source_index (align_corners false, linear) and the neighbour after it,
// as kernels/cpu/pool.c computes them: every operation rounded on its own.
__device__ __forceinline__ void pool_source(int o, int in, float scale, int *i0, int *i1, float *l1) {
    float src = __fsub_rn(__fmul_rn(scale, __fadd_rn((float)o, 0.5f)), 0.5f);
    if (src < 0.0f) src = 0.0f;
    int i = (int)src;
    if (i > in - 1) i = in - 1;  // torch's guard_index_and_lambda, as the CPU's
    const float l = __fsub_rn(src, (float)i);
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *l1 = l < 0.0f ? 0.0f : l > 1.0f ? 1.0f : l;
}

__global__ void grid_pool_kernel(uint16_t *out, const uint16_t *in, int G, int C, int mode, int s, int Go,
                                 size_t n_rows, int vec) {
    const int packs = (C + 7) / 8;
    const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= n_rows * (size_t)packs) return;
    const size_t row = idx / (size_t)packs;  // b * Go * Go + oy * Go + ox
    const int c0 = (int)(idx % (size_t)packs) * 8;
    const int per_img = Go * Go;
    const size_t b = row / (size_t)per_img;
    const int oy = (int)(row % (size_t)per_img) / Go, ox = (int)(row % (size_t)per_img) % Go;
    const uint16_t *img = in + b * (size_t)G * G * C;
    float acc[8];
    if (mode == LLAVA_POOL_BILINEAR) {
        const float scale = __fdiv_rn((float)G, (float)Go);
        int y0, y1, x0, x1;
        float ly1, lx1;
        pool_source(oy, G, scale, &y0, &y1, &ly1);
        pool_source(ox, G, scale, &x0, &x1, &lx1);
        const float ly0 = __fsub_rn(1.0f, ly1), lx0 = __fsub_rn(1.0f, lx1);
        float p00[8], p01[8], p10[8], p11[8];
        load8(img + ((size_t)y0 * G + x0) * C, (size_t)c0, (size_t)C, vec, p00);
        load8(img + ((size_t)y0 * G + x1) * C, (size_t)c0, (size_t)C, vec, p01);
        load8(img + ((size_t)y1 * G + x0) * C, (size_t)c0, (size_t)C, vec, p10);
        load8(img + ((size_t)y1 * G + x1) * C, (size_t)c0, (size_t)C, vec, p11);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float top = __fadd_rn(__fmul_rn(lx0, p00[k]), __fmul_rn(lx1, p01[k]));
            float bottom = __fadd_rn(__fmul_rn(lx0, p10[k]), __fmul_rn(lx1, p11[k]));
            acc[k] = __fadd_rn(__fmul_rn(ly0, top), __fmul_rn(ly1, bottom));
        }
    } else {
        const int is_max = mode == LLAVA_POOL_MAX;
#pragma unroll
        for (int k = 0; k < 8; k++) acc[k] = is_max ? -INFINITY : 0.0f;
        for (int dy = 0; dy < s; dy++)
            for (int dx = 0; dx < s; dx++) {
                float v[8];
                load8(img + ((size_t)(oy * s + dy) * G + (size_t)(ox * s + dx)) * C, (size_t)c0, (size_t)C, vec, v);
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    if (is_max) acc[k] = (v[k] > acc[k] || isnan(v[k])) ? v[k] : acc[k];
                    else acc[k] = __fadd_rn(acc[k], v[k]);
                }
            }
        if (!is_max) {
            const float n = (float)(s * s);
#pragma unroll
            for (int k = 0; k < 8; k++) acc[k] = __fdiv_rn(acc[k], n);
        }
    }
    store8(out + row * (size_t)C, (size_t)c0, (size_t)C, vec, acc);
}

extern "C" void cuda_grid_pool(llava_backend *be, void *out, const void *in, int B, int G, int C, int mode, int s) {
    req_grid_pool(be, out, in, B, G, C, mode, s);
    if (B <= 0 || G <= 0 || C <= 0) return;
    const int Go = mode == LLAVA_POOL_BILINEAR ? (G + s - 1) / s : G / s;
    const size_t n_rows = (size_t)B * Go * Go, work = n_rows * (size_t)((C + 7) / 8);
    if (work == 0) return;
    CUDA_REQUIRE(work / POOL_THREADS < 0x7fffffffu, "grid_pool: more than 2^31 blocks of work");
    const int vec = C % 8 == 0 && is_aligned16(out) && is_aligned16(in);
    grid_pool_kernel<<<grid_for(work, POOL_THREADS), POOL_THREADS, 0, cuda_stream_of(be)>>>(
        (uint16_t *)out, (const uint16_t *)in, G, C, mode, s, Go, n_rows, vec);
    CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------
// Backward

// Whether output o's taps along one side land on input i, and with what weight: l0 for i0, l1 for i1, the
// sum where both do (i0 == i1, the last row). A tap of weight 0 (an integer source) still lands: 0 times an
// infinite dout is NaN, as in the CPU's sum and torch's.
__device__ __forceinline__ int tap_weight(int o, int i, int G, float scale, float *w) {
    int i0, i1;
    float l1;
    pool_source(o, G, scale, &i0, &i1, &l1);
    *w = 0.0f;
    if (i0 == i) *w = __fsub_rn(1.0f, l1);
    if (i1 == i) *w = __fadd_rn(*w, l1);
    return i0 == i || i1 == i;
}

// The outputs [*lo, *hi] whose taps may land on input i: source(o) in [i - 1, i + 1), i.e.
// (i - 0.5) / scale - 0.5 <= o < (i + 1.5) / scale - 0.5, widened by one on each side against the
// rounding of either side's fp32 arithmetic, clamped to [0, Go).
__device__ __forceinline__ void tap_range(int i, int Go, float scale, int *lo, int *hi) {
    int a = (int)floorf(((float)i - 0.5f) / scale - 0.5f) - 1;
    int b = (int)ceilf(((float)i + 1.5f) / scale - 0.5f) + 1;
    *lo = a < 0 || i <= 1 ? 0 : a;  // inputs 0 and 1: also the outputs whose source is clamped to 0
    *hi = b > Go - 1 ? Go - 1 : b;
}

__global__ void grid_pool_backward_kernel(uint16_t *din, const uint16_t *dout, const uint16_t *in, int G, int C,
                                          int mode, int s, int Go, size_t n_rows, int vec) {
    const int packs = (C + 7) / 8;
    const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= n_rows * (size_t)packs) return;
    const size_t row = idx / (size_t)packs;  // b * G * G + iy * G + ix
    const int c0 = (int)(idx % (size_t)packs) * 8;
    const int per_img = G * G;
    const size_t b = row / (size_t)per_img;
    const int iy = (int)(row % (size_t)per_img) / G, ix = (int)(row % (size_t)per_img) % G;
    const uint16_t *g_img = dout + b * (size_t)Go * Go * C;
    float acc[8];
#pragma unroll
    for (int k = 0; k < 8; k++) acc[k] = 0.0f;
    if (mode == LLAVA_POOL_BILINEAR) {
        const float scale = __fdiv_rn((float)G, (float)Go);
        int ylo, yhi, xlo, xhi;
        tap_range(iy, Go, scale, &ylo, &yhi);
        tap_range(ix, Go, scale, &xlo, &xhi);
        for (int oy = ylo; oy <= yhi; oy++) {
            float wy, wx;
            if (!tap_weight(oy, iy, G, scale, &wy)) continue;
            for (int ox = xlo; ox <= xhi; ox++) {
                if (!tap_weight(ox, ix, G, scale, &wx)) continue;
                const float w = __fmul_rn(wy, wx);
                float g[8];
                load8(g_img + ((size_t)oy * Go + ox) * C, (size_t)c0, (size_t)C, vec, g);
#pragma unroll
                for (int k = 0; k < 8; k++) acc[k] = __fadd_rn(acc[k], __fmul_rn(w, g[k]));
            }
        }
    } else if (iy < Go * s && ix < Go * s) {  // else an input no window reads: 0
        const int oy = iy / s, ox = ix / s;
        float g[8];
        load8(g_img + ((size_t)oy * Go + ox) * C, (size_t)c0, (size_t)C, vec, g);
        if (mode == LLAVA_POOL_AVERAGE) {
            const float n = (float)(s * s);
#pragma unroll
            for (int k = 0; k < 8; k++) acc[k] = __fdiv_rn(g[k], n);
        } else {
            const uint16_t *img = in + b * (size_t)G * G * C;
            const int mine = (iy - oy * s) * s + (ix - ox * s);  // this input's place in its window
            float best[8];
            int pick[8];
#pragma unroll
            for (int k = 0; k < 8; k++) best[k] = -INFINITY, pick[k] = 0;
            for (int dy = 0; dy < s; dy++)
                for (int dx = 0; dx < s; dx++) {
                    float v[8];
                    load8(img + ((size_t)(oy * s + dy) * G + (size_t)(ox * s + dx)) * C, (size_t)c0, (size_t)C, vec, v);
#pragma unroll
                    for (int k = 0; k < 8; k++)
                        if (v[k] > best[k] || isnan(v[k])) best[k] = v[k], pick[k] = dy * s + dx;
                }
#pragma unroll
            for (int k = 0; k < 8; k++) acc[k] = pick[k] == mine ? g[k] : 0.0f;
        }
    }
    store8(din + row * (size_t)C, (size_t)c0, (size_t)C, vec, acc);
}

extern "C" void cuda_grid_pool_backward(llava_backend *be, void *din, const void *dout, const void *in, int B, int G,
                                        int C, int mode, int s) {
    req_grid_pool_backward(be, din, dout, in, B, G, C, mode, s);
    if (B <= 0 || G <= 0 || C <= 0) return;
    const int Go = mode == LLAVA_POOL_BILINEAR ? (G + s - 1) / s : G / s;
    const size_t n_rows = (size_t)B * G * G, work = n_rows * (size_t)((C + 7) / 8);
    CUDA_REQUIRE(work / POOL_THREADS < 0x7fffffffu, "grid_pool_backward: more than 2^31 blocks of work");
    const int vec =
        C % 8 == 0 && is_aligned16(din) && is_aligned16(dout) && (mode != LLAVA_POOL_MAX || is_aligned16(in));
    grid_pool_backward_kernel<<<grid_for(work, POOL_THREADS), POOL_THREADS, 0, cuda_stream_of(be)>>>(
        (uint16_t *)din, (const uint16_t *)dout, (const uint16_t *)in, G, C, mode, s, Go, n_rows, vec);
    CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------------------------------------
// resize_bilinear (ops.h; anyres_max_N): one image's H x W grid to OH x OW, grid_pool's bilinear arithmetic with
// a scale per side (fp32 H / OH and W / OW), the same layout (one thread per output row and pack of 8 channels);
// its backward the same gather per input, the tap range per side from that side's scale (an upsampling side,
// scale < 1, walks about 2 / scale outputs).

__global__ void resize_bilinear_kernel(uint16_t *out, const uint16_t *in, int H, int W, int OH, int OW, int C,
                                       int vec) {
    const int packs = (C + 7) / 8;
    const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)OH * OW * packs) return;
    const size_t row = idx / (size_t)packs;  // oy * OW + ox
    const int c0 = (int)(idx % (size_t)packs) * 8;
    const int oy = (int)(row / (size_t)OW), ox = (int)(row % (size_t)OW);
    const float sh = __fdiv_rn((float)H, (float)OH), sw = __fdiv_rn((float)W, (float)OW);
    int y0, y1, x0, x1;
    float ly1, lx1;
    pool_source(oy, H, sh, &y0, &y1, &ly1);
    pool_source(ox, W, sw, &x0, &x1, &lx1);
    const float ly0 = __fsub_rn(1.0f, ly1), lx0 = __fsub_rn(1.0f, lx1);
    float p00[8], p01[8], p10[8], p11[8], acc[8];
    load8(in + ((size_t)y0 * W + x0) * C, (size_t)c0, (size_t)C, vec, p00);
    load8(in + ((size_t)y0 * W + x1) * C, (size_t)c0, (size_t)C, vec, p01);
    load8(in + ((size_t)y1 * W + x0) * C, (size_t)c0, (size_t)C, vec, p10);
    load8(in + ((size_t)y1 * W + x1) * C, (size_t)c0, (size_t)C, vec, p11);
#pragma unroll
    for (int k = 0; k < 8; k++) {
        float top = __fadd_rn(__fmul_rn(lx0, p00[k]), __fmul_rn(lx1, p01[k]));
        float bottom = __fadd_rn(__fmul_rn(lx0, p10[k]), __fmul_rn(lx1, p11[k]));
        acc[k] = __fadd_rn(__fmul_rn(ly0, top), __fmul_rn(ly1, bottom));
    }
    store8(out + row * (size_t)C, (size_t)c0, (size_t)C, vec, acc);
}

extern "C" void cuda_resize_bilinear(llava_backend *be, void *out, const void *in, int H, int W, int OH, int OW,
                                     int C) {
    req_resize_bilinear(be, "resize_bilinear", out, in, H, W, OH, OW, C);
    if (H <= 0 || W <= 0 || OH <= 0 || OW <= 0 || C <= 0) return;
    const size_t work = (size_t)OH * OW * (size_t)((C + 7) / 8);
    CUDA_REQUIRE(work / POOL_THREADS < 0x7fffffffu, "resize_bilinear: more than 2^31 blocks of work");
    const int vec = C % 8 == 0 && is_aligned16(out) && is_aligned16(in);
    resize_bilinear_kernel<<<grid_for(work, POOL_THREADS), POOL_THREADS, 0, cuda_stream_of(be)>>>(
        (uint16_t *)out, (const uint16_t *)in, H, W, OH, OW, C, vec);
    CUDA_CHECK_LAUNCH();
}

__global__ void resize_bilinear_backward_kernel(uint16_t *din, const uint16_t *dout, int H, int W, int OH, int OW,
                                                int C, int vec) {
    const int packs = (C + 7) / 8;
    const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)H * W * packs) return;
    const size_t row = idx / (size_t)packs;  // iy * W + ix
    const int c0 = (int)(idx % (size_t)packs) * 8;
    const int iy = (int)(row / (size_t)W), ix = (int)(row % (size_t)W);
    const float sh = __fdiv_rn((float)H, (float)OH), sw = __fdiv_rn((float)W, (float)OW);
    float acc[8];
#pragma unroll
    for (int k = 0; k < 8; k++) acc[k] = 0.0f;
    int ylo, yhi, xlo, xhi;
    tap_range(iy, OH, sh, &ylo, &yhi);
    tap_range(ix, OW, sw, &xlo, &xhi);
    for (int oy = ylo; oy <= yhi; oy++) {
        float wy, wx;
        if (!tap_weight(oy, iy, H, sh, &wy)) continue;
        for (int ox = xlo; ox <= xhi; ox++) {
            if (!tap_weight(ox, ix, W, sw, &wx)) continue;
            const float w = __fmul_rn(wy, wx);
            float g[8];
            load8(dout + ((size_t)oy * OW + ox) * C, (size_t)c0, (size_t)C, vec, g);
#pragma unroll
            for (int k = 0; k < 8; k++) acc[k] = __fadd_rn(acc[k], __fmul_rn(w, g[k]));
        }
    }
    store8(din + row * (size_t)C, (size_t)c0, (size_t)C, vec, acc);
}

extern "C" void cuda_resize_bilinear_backward(llava_backend *be, void *din, const void *dout, int H, int W, int OH,
                                              int OW, int C) {
    req_resize_bilinear(be, "resize_bilinear_backward", din, dout, H, W, OH, OW, C);
    if (H <= 0 || W <= 0 || OH <= 0 || OW <= 0 || C <= 0) return;
    const size_t work = (size_t)H * W * (size_t)((C + 7) / 8);
    CUDA_REQUIRE(work / POOL_THREADS < 0x7fffffffu, "resize_bilinear_backward: more than 2^31 blocks of work");
    const int vec = C % 8 == 0 && is_aligned16(din) && is_aligned16(dout);
    resize_bilinear_backward_kernel<<<grid_for(work, POOL_THREADS), POOL_THREADS, 0, cuda_stream_of(be)>>>(
        (uint16_t *)din, (const uint16_t *)dout, H, W, OH, OW, C, vec);
    CUDA_CHECK_LAUNCH();
}
