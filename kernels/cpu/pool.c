// grid_pool: the visual-token reduction between the vision tower and the projector (model.mm_spatial_pool_*).
// Each image's features form a G x G grid, row-major (the tower's patch order); pooling sums or compares an
// s x s window per output, the bilinear resize mixes the four source points around each output's centre.
// Average and max follow torch's avg_pool2d / max_pool2d (kernel = stride = s, no padding, floor); the
// resize follows torch's upsample_bilinear2d with align_corners false and no antialias, its source index and
// weights computed in fp32 as torch computes them for fp32 tensors. The backward is the transpose of each, as
// torch's backward of the same three (ops.h).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "cpu.h"
#include "kernels/op_require.h"

// torch's area_pixel_compute_source_index (align_corners false, linear): scale * (o + 0.5) - 0.5, at least 0;
// then its guard_index_and_lambda: the index at most in - 1 and the weight clamped to [0, 1] (neither bites
// in exact arithmetic, where the source stays below in - 0.5; they keep an fp32 rounding from reading past).
static void source(int o, int in, float scale, int *i0, int *i1, float *l1) {
    float src = scale * ((float)o + 0.5f) - 0.5f;
    if (src < 0) src = 0;
    int i = (int)src;
    if (i > in - 1) i = in - 1;
    float l = src - (float)i;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *l1 = l < 0.0f ? 0.0f : l > 1.0f ? 1.0f : l;
}

// One image's bilinear resize, H x W -> OH x OW rows of C (both row-major), the scales fp32 as torch takes
// in / out for a given output size: ly0 (lx0 p00 + lx1 p01) + ly1 (lx0 p10 + lx1 p11), torch's order.
static void resize_image(float *out, const float *in, int H, int W, int OH, int OW, int C) {
    float sh = (float)H / (float)OH, sw = (float)W / (float)OW;
    for (int oy = 0; oy < OH; oy++) {
        int y0, y1, x0, x1;
        float ly1, lx1;
        source(oy, H, sh, &y0, &y1, &ly1);
        float ly0 = 1.0f - ly1;
        for (int ox = 0; ox < OW; ox++) {
            source(ox, W, sw, &x0, &x1, &lx1);
            float lx0 = 1.0f - lx1;
            const float *p00 = in + ((size_t)y0 * W + x0) * C, *p01 = in + ((size_t)y0 * W + x1) * C,
                        *p10 = in + ((size_t)y1 * W + x0) * C, *p11 = in + ((size_t)y1 * W + x1) * C;
            float *o = out + ((size_t)oy * OW + ox) * C;
            for (int c = 0; c < C; c++)
                o[c] = ly0 * (lx0 * p00[c] + lx1 * p01[c]) + ly1 * (lx0 * p10[c] + lx1 * p11[c]);
        }
    }
}

void cpu_grid_pool(llava_backend *be, void *out_, const void *in_, int B, int G, int C, int mode, int s) {
    req_grid_pool(be, out_, in_, B, G, C, mode, s);
    float *out = out_;      // (B, Go*Go, C)
    const float *in = in_;  // (B, G*G, C)
    if (mode == LLAVA_POOL_BILINEAR) {
        int Go = (G + s - 1) / s;
        for (int b = 0; b < B; b++)
            resize_image(out + (size_t)b * Go * Go * C, in + (size_t)b * G * G * C, G, G, Go, Go, C);
        return;
    }
    int Go = G / s;
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Go; oy++)
            for (int ox = 0; ox < Go; ox++) {
                float *o = out + ((size_t)b * Go * Go + (size_t)oy * Go + ox) * C;
                for (int c = 0; c < C; c++) {
                    // avg_pool2d sums the window in order and divides once; max_pool2d keeps a NaN it meets
                    float acc = mode == LLAVA_POOL_MAX ? -INFINITY : 0.0f;
                    for (int dy = 0; dy < s; dy++)
                        for (int dx = 0; dx < s; dx++) {
                            float v = in[((size_t)b * G * G + (size_t)(oy * s + dy) * G + (ox * s + dx)) * C + c];
                            if (mode == LLAVA_POOL_MAX) acc = (v > acc || isnan(v)) ? v : acc;
                            else acc += v;
                        }
                    o[c] = mode == LLAVA_POOL_MAX ? acc : acc / (float)(s * s);
                }
            }
}

// One side's taps of the resize, listed per input: tap k of input i (k in [first[i], first[i + 1])) is
// output out[k] with weight w[k], in output order, and an output's two taps are two entries even where
// both land on the same input (the last row: i0 == i1), as the forward adds both.
typedef struct {
    int *first, *out;
    float *w;
} pool_taps;

static void taps_of_side(int G, int Go, float scale, pool_taps *t) {
    t->first = xcalloc((size_t)G + 1, sizeof(int));
    t->out = xmalloc((size_t)2 * Go * sizeof(int));
    t->w = xmalloc((size_t)2 * Go * sizeof(float));
    int *fill = xcalloc((size_t)G + 1, sizeof(int));
    for (int o = 0; o < Go; o++) {
        int i0, i1;
        float l1;
        source(o, G, scale, &i0, &i1, &l1);
        t->first[i0 + 1]++;
        t->first[i1 + 1]++;
    }
    for (int i = 0; i < G; i++) t->first[i + 1] += t->first[i];
    for (int o = 0; o < Go; o++) {
        int i0, i1;
        float l1;
        source(o, G, scale, &i0, &i1, &l1);
        int k0 = t->first[i0] + fill[i0]++;
        t->out[k0] = o, t->w[k0] = 1.0f - l1;  // the forward's weights, fp32 as it computes them
        int k1 = t->first[i1] + fill[i1]++;
        t->out[k1] = o, t->w[k1] = l1;
    }
    free(fill);
}

static void taps_free(pool_taps *t) { free(t->first), free(t->out), free(t->w); }

// One image's resize transposed (see cpu_grid_pool_backward below for the order and the fp64 sum): din
// (H*W, C) from dout (OH*OW, C).
static void resize_image_backward(float *din, const float *dout, int H, int W, int OH, int OW, int C) {
    pool_taps ty, tx;
    taps_of_side(H, OH, (float)H / (float)OH, &ty);
    taps_of_side(W, OW, (float)W / (float)OW, &tx);
    double *acc = xmalloc((size_t)C * sizeof(double));
    for (int iy = 0; iy < H; iy++)
        for (int ix = 0; ix < W; ix++) {
            for (int c = 0; c < C; c++) acc[c] = 0.0;
            for (int ky = ty.first[iy]; ky < ty.first[iy + 1]; ky++)
                for (int kx = tx.first[ix]; kx < tx.first[ix + 1]; kx++) {
                    double w = (double)ty.w[ky] * (double)tx.w[kx];  // exact: two fp32 factors
                    const float *g = dout + ((size_t)ty.out[ky] * OW + tx.out[kx]) * C;
                    for (int c = 0; c < C; c++) acc[c] += w * g[c];
                }
            float *d = din + ((size_t)iy * W + ix) * C;
            for (int c = 0; c < C; c++) d[c] = (float)acc[c];
        }
    free(acc);
    taps_free(&ty);
    taps_free(&tx);
}

// Average and max write every input of each window (the dropped rows and columns and the inputs max does not
// pick are 0): avg_pool2d's backward divides dout by the window's area once, in fp32 (one rounding, the same
// bits for every input of the window); max_pool2d's gives the whole dout to the input its forward's scan
// picks, the scan of cpu_grid_pool above, its index starting at the window's first input (torch's saved
// index, where a window of -inf values never replaces it). The resize gathers, per input, over the taps of
// its row times those of its column: weight_y * weight_x * dout summed in fp64 in output order (rows, then
// columns; an output's taps in the forward's order) and rounded once to fp32 (torch's CPU kernel adds the
// same products into fp32 as it goes, within a few fp32 roundings of this).
void cpu_grid_pool_backward(llava_backend *be, void *din_, const void *dout_, const void *in_, int B, int G, int C,
                            int mode, int s) {
    req_grid_pool_backward(be, din_, dout_, in_, B, G, C, mode, s);
    if (B <= 0 || G <= 0 || C <= 0) return;
    float *din = din_;          // (B, G*G, C)
    const float *dout = dout_;  // (B, Go*Go, C)
    const float *in = in_;      // (B, G*G, C), max only
    if (mode == LLAVA_POOL_BILINEAR) {
        int Go = (G + s - 1) / s;
        for (int b = 0; b < B; b++)
            resize_image_backward(din + (size_t)b * G * G * C, dout + (size_t)b * Go * Go * C, G, G, Go, Go, C);
        return;
    }
    int Go = G / s;
    memset(din, 0, (size_t)B * G * G * C * sizeof(float));
    const float area = (float)(s * s);
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Go; oy++)
            for (int ox = 0; ox < Go; ox++) {
                const float *g = dout + ((size_t)b * Go * Go + (size_t)oy * Go + ox) * C;
                // the row (of din and in) of the window's first input
                size_t corner = (size_t)b * G * G + (size_t)(oy * s) * G + (size_t)(ox * s);
                if (mode == LLAVA_POOL_AVERAGE) {
                    for (int dy = 0; dy < s; dy++)
                        for (int dx = 0; dx < s; dx++) {
                            float *d = din + (corner + (size_t)dy * G + dx) * C;
                            for (int c = 0; c < C; c++) d[c] = g[c] / area;
                        }
                    continue;
                }
                for (int c = 0; c < C; c++) {
                    float acc = -INFINITY;
                    size_t pick = corner;
                    for (int dy = 0; dy < s; dy++)
                        for (int dx = 0; dx < s; dx++) {
                            size_t at = corner + (size_t)dy * G + dx;
                            float v = in[at * C + c];
                            if (v > acc || isnan(v)) acc = v, pick = at;
                        }
                    din[pick * C + c] = g[c];
                }
            }
}

// ---------------------------------------------------------------------------------------------
// resize_bilinear (LLaVA-NeXT's anyres_max_N): one image's H x W grid to OH x OW, the resize above with
// a scale per side; its backward the transposed gather above.

void cpu_resize_bilinear(llava_backend *be, void *out, const void *in, int H, int W, int OH, int OW, int C) {
    req_resize_bilinear(be, "resize_bilinear", out, in, H, W, OH, OW, C);
    if (H <= 0 || W <= 0 || OH <= 0 || OW <= 0 || C <= 0) return;
    resize_image(out, in, H, W, OH, OW, C);  // out (OH*OW, C), in (H*W, C)
}

void cpu_resize_bilinear_backward(llava_backend *be, void *din, const void *dout, int H, int W, int OH, int OW, int C) {
    req_resize_bilinear(be, "resize_bilinear_backward", din, dout, H, W, OH, OW, C);
    if (H <= 0 || W <= 0 || OH <= 0 || OW <= 0 || C <= 0) return;
    resize_image_backward(din, dout, H, W, OH, OW, C);  // din (H*W, C), dout (OH*OW, C)
}
