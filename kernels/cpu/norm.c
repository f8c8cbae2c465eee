// LayerNorm (CLIP) and RMSNorm (LLaMA) over the last dimension, forward and backward.
// Row statistics and the row sums of the backward run in fp64: C is 1024 to 5120 and a float sum
// would carry ~C*eps of rounding, more than the last bits of fp32 we want to get right.
// Column sums for the weight gradients (over all N rows) also run in fp64.
#include <math.h>
#include <stdlib.h>

#include "common/util.h"
#include "cpu.h"
#include "kernels/op_require.h"

void cpu_layernorm_forward(llava_backend *be, void *out_, float *mean, float *rstd, const void *x_, const void *w_,
                           const void *b_, int N, int C, float eps) {
    req_layernorm_forward(be, out_, mean, rstd, x_, w_, b_, N, C);
    float *out = out_;    // (N, C); mean, rstd (N)
    const float *x = x_;  // (N, C)
    const float *w = w_;  // (C)
    const float *b = b_;  // (C)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *orow = out + (size_t)n * C;
        double s = 0.0;
        for (int c = 0; c < C; c++) s += xr[c];
        double m = s / C;
        // Two passes (mean, then squared deviations) as torch does: no cancellation for rows with
        // a large mean, which the one-pass E[x^2] - E[x]^2 would suffer.
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (xr[c] - m) * (xr[c] - m);
        double r = 1.0 / sqrt(ss / C + (double)eps);
        mean[n] = (float)m;
        rstd[n] = (float)r;
        for (int c = 0; c < C; c++) orow[c] = (float)((xr[c] - m) * r * w[c] + b[c]);
    }
}

void cpu_layernorm_backward(llava_backend *be, void *dx_, float *dw, float *db, const void *dout_, const void *x_,
                            const void *w_, const float *mean, const float *rstd, int N, int C) {
    req_layernorm_backward(be, dx_, dout_, x_, w_, mean, rstd, N, C);
    float *dx = dx_;            // (N, C) overwritten; dw, db (C) accumulated or NULL
    const float *dout = dout_;  // (N, C)
    const float *x = x_;        // (N, C)
    const float *w = w_;        // (C); mean, rstd (N)
    double *dw_acc = dw ? xcalloc((size_t)C, sizeof(double)) : NULL;  // (C)
    double *db_acc = db ? xcalloc((size_t)C, sizeof(double)) : NULL;  // (C)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *g = dout + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        double m = mean[n], r = rstd[n];
        // dx = rstd * (u - mean(u) - xhat * mean(u * xhat)), u = g * w (spec §7 item 8).
        double su = 0.0, suxh = 0.0;
        for (int c = 0; c < C; c++) {
            double xh = (xr[c] - m) * r, u = (double)g[c] * w[c];
            su += u;
            suxh += u * xh;
            if (dw_acc) dw_acc[c] += g[c] * xh;
            if (db_acc) db_acc[c] += g[c];
        }
        su /= C;
        suxh /= C;
        for (int c = 0; c < C; c++) {
            double xh = (xr[c] - m) * r, u = (double)g[c] * w[c];
            dxr[c] = (float)(r * (u - su - xh * suxh));
        }
    }
    for (int c = 0; dw && c < C; c++) dw[c] = (float)(dw[c] + dw_acc[c]);
    for (int c = 0; db && c < C; c++) db[c] = (float)(db[c] + db_acc[c]);
    free(dw_acc);
    free(db_acc);
}

void cpu_rmsnorm_forward(llava_backend *be, void *out_, float *rstd, const void *x_, const void *w_, int N, int C,
                         float eps) {
    req_rmsnorm_forward(be, out_, rstd, x_, w_, N, C);
    float *out = out_;    // (N, C); rstd (N)
    const float *x = x_;  // (N, C)
    const float *w = w_;  // (C)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *orow = out + (size_t)n * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float r = (float)(1.0 / sqrt(ss / C + (double)eps));
        rstd[n] = r;
        // HF rounds x * rstd to the activation dtype before the weight multiply (spec §2.3); in
        // fp32 that is two float products, in this order.
        for (int c = 0; c < C; c++) {
            float y = xr[c] * r;
            orow[c] = w[c] * y;
        }
    }
}

void cpu_rmsnorm_backward(llava_backend *be, void *dx_, float *dw, const void *dout_, const void *x_, const void *w_,
                          const float *rstd, int N, int C) {
    req_rmsnorm_backward(be, dx_, dout_, x_, w_, rstd, N, C);
    float *dx = dx_;                                                  // (N, C) overwritten; dw (C) accumulated or NULL
    const float *dout = dout_;                                        // (N, C)
    const float *x = x_;                                              // (N, C)
    const float *w = w_;                                              // (C); rstd (N)
    double *dw_acc = dw ? xcalloc((size_t)C, sizeof(double)) : NULL;  // (C)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *g = dout + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        double r = rstd[n];
        // dx = r*u - (r^3/C) * x * sum(u*x), u = g * w (spec §2.3).
        double sux = 0.0;
        for (int c = 0; c < C; c++) {
            sux += (double)g[c] * w[c] * xr[c];
            if (dw_acc) dw_acc[c] += (double)g[c] * xr[c] * r;
        }
        double k = r * r * r * sux / C;
        for (int c = 0; c < C; c++) dxr[c] = (float)(r * ((double)g[c] * w[c]) - k * xr[c]);
    }
    for (int c = 0; dw && c < C; c++) dw[c] = (float)(dw[c] + dw_acc[c]);
    free(dw_acc);
}
