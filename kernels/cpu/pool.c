// grid_pool: the visual-token reduction between the vision tower and the projector (model.mm_spatial_pool_*).
// Each image's features form a G x G grid, row-major (the tower's patch order); pooling sums or compares an
// s x s window per output, the bilinear resize mixes the four source points around each output's centre.
// Average and max follow torch's avg_pool2d / max_pool2d (kernel = stride = s, no padding, floor); the
// resize follows torch's upsample_bilinear2d with align_corners false and no antialias, its source index and
// weights computed in fp32 as torch computes them for fp32 tensors.
#include <math.h>

#include "cpu.h"
#include "kernels/op_require.h"

// torch's area_pixel_compute_source_index (align_corners false, linear): scale * (o + 0.5) - 0.5, at least 0.
static void source(int o, int in, float scale, int *i0, int *i1, float *l1) {
    float src = scale * ((float)o + 0.5f) - 0.5f;
    if (src < 0) src = 0;
    int i = (int)src;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *l1 = src - (float)i;
}

void cpu_grid_pool(llava_backend *be, void *out_, const void *in_, int B, int G, int C, int mode, int s) {
    req_grid_pool(be, out_, in_, B, G, C, mode, s);
    float *out = out_;      // (B, Go*Go, C)
    const float *in = in_;  // (B, G*G, C)
    if (mode == LLAVA_POOL_BILINEAR) {
        int Go = (G + s - 1) / s;
        float scale = (float)G / (float)Go;
        for (int b = 0; b < B; b++)
            for (int oy = 0; oy < Go; oy++) {
                int y0, y1, x0, x1;
                float ly1, lx1;
                source(oy, G, scale, &y0, &y1, &ly1);
                float ly0 = 1.0f - ly1;
                for (int ox = 0; ox < Go; ox++) {
                    source(ox, G, scale, &x0, &x1, &lx1);
                    float lx0 = 1.0f - lx1;
                    const float *base = in + (size_t)b * G * G * C;
                    const float *p00 = base + ((size_t)y0 * G + x0) * C, *p01 = base + ((size_t)y0 * G + x1) * C,
                                *p10 = base + ((size_t)y1 * G + x0) * C, *p11 = base + ((size_t)y1 * G + x1) * C;
                    float *o = out + ((size_t)b * Go * Go + (size_t)oy * Go + ox) * C;
                    for (int c = 0; c < C; c++)
                        o[c] = ly0 * (lx0 * p00[c] + lx1 * p01[c]) + ly1 * (lx0 * p10[c] + lx1 * p11[c]);
                }
            }
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
