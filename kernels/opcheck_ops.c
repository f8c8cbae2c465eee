// The registry's description of every op (opcheck_impl.h): its buffers, how its I32 inputs and
// derived inputs are made, how it is called, its fp64 reference, its cost and how its shape reads.
//
// The fp64 references are written from the spec's formulas (spec/model-and-formats.md §1-2), not from
// the backends' code. Backward ops have no formula here: their reference is the central finite
// difference of the forward's fp64 reference, L = sum(dout .* f(inputs)), whose gradient with respect
// to an input is exactly what the backward computes from dout. Where f is linear in the input
// differentiated (linear layers, the bias, RoPE) the difference is taken at zero, where it is exact
// up to the rounding of L.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/opcheck_impl.h"

#define FD_H 1e-5

static int dim(const opcheck_case *c, int k) { return (int)c->n[k]; }

static size_t ew_n(const opcheck_case *c) { return (size_t)c->n[0] * (size_t)(c->n[1] ? c->n[1] : 1); }

static const float *F(const opcheck_data *d, int i) { return d->host[i]; }

static double *to_d(const float *x, size_t n) {
    double *y = xmalloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static double *zeros_d(size_t n) { return xcalloc(n ? n : 1, sizeof(double)); }

// ---------------------------------------------------------------------------------------------
// Finite differences: dL/dx[i] for every element of x, one of the inputs `f` reads through ctx.

typedef void (*fd_forward)(const void *ctx, double *y);

static double fd_loss(fd_forward f, const void *ctx, const double *dout, double *y, size_t ny) {
    f(ctx, y);
    double L = 0.0;
    for (size_t i = 0; i < ny; i++) L += dout[i] * y[i];
    return L;
}

static void fd_grad(fd_forward f, const void *ctx, const double *dout, size_t ny, double *x, size_t n, double *g) {
    double *y = xmalloc((ny ? ny : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + FD_H;
        double lp = fd_loss(f, ctx, dout, y, ny);
        x[i] = x0 - FD_H;
        double lm = fd_loss(f, ctx, dout, y, ny);
        x[i] = x0;
        g[i] = (lp - lm) / (2 * FD_H);
    }
    free(y);
}

// want += g (ACC outputs: the reference of an accumulating op is its start plus the gradient)
static void add_into(double *want, const double *g, size_t n) {
    for (size_t i = 0; i < n; i++) want[i] += g[i];
}

// ---------------------------------------------------------------------------------------------
// Elementwise shapes and costs shared by several ops

static void shape_rows_cols(const opcheck_case *c, char *buf, size_t cap) {
    if (c->n[1] > 1) snprintf(buf, cap, "%dx%d", dim(c, 0), dim(c, 1));
    else snprintf(buf, cap, "n=%zu", ew_n(c));
}

static void shape_n(const opcheck_case *c, char *buf, size_t cap) { snprintf(buf, cap, "n=%d", dim(c, 0)); }

// ---------------------------------------------------------------------------------------------
// linear: y = x W^T + b

typedef struct {
    const double *x, *W, *b;
    int N, K, O;
} linear_ctx;

static void ref_linear(double *y, const double *x, const double *W, const double *b, int N, int K, int O) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double s = b ? b[o] : 0.0;
            for (int k = 0; k < K; k++) s += x[(size_t)n * K + k] * W[(size_t)o * K + k];
            y[(size_t)n * O + o] = s;
        }
}

static void linear_f(const void *ctx, double *y) {
    const linear_ctx *l = ctx;
    ref_linear(y, l->x, l->W, l->b, l->N, l->K, l->O);
}

static void linear_fwd_layout(const opcheck_case *c, opcheck_data *d) {
    size_t N = c->n[0], K = c->n[1], O = c->n[2];
    opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, N * O, 0, 0);
    opcheck_add_buf(d, "x", BUF_ACT, OPCHECK_IN, N * K, -1, 1);
    opcheck_add_buf(d, "W", BUF_PARAM, OPCHECK_IN, O * K, -1, 1);
    if (c->n[3]) opcheck_add_buf(d, "bias", BUF_PARAM, OPCHECK_IN, O, -1, 1);
}

static void linear_fwd_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->linear_forward(be, p[0], p[1], p[2], c->n[3] ? p[3] : NULL, dim(c, 0), dim(c, 1), dim(c, 2));
}

static void linear_fwd_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int N = dim(c, 0), K = dim(c, 1), O = dim(c, 2);
    double *x = to_d(F(d, 1), (size_t)N * K), *W = to_d(F(d, 2), (size_t)O * K);
    double *b = c->n[3] ? to_d(F(d, 3), (size_t)O) : NULL;
    ref_linear(want[0], x, W, b, N, K, O);
    free(x), free(W), free(b);
}

static void linear_bwd_in_layout(const opcheck_case *c, opcheck_data *d) {
    size_t N = c->n[0], K = c->n[1], O = c->n[2];
    opcheck_add_buf(d, "dx", BUF_ACT, OPCHECK_OUT, N * K, 0, 0);
    opcheck_add_buf(d, "dout", BUF_ACT, OPCHECK_IN, N * O, -1, 1);
    opcheck_add_buf(d, "W", BUF_PARAM, OPCHECK_IN, O * K, -1, 1);
}

static void linear_bwd_in_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->linear_backward_input(be, p[0], p[1], p[2], dim(c, 0), dim(c, 1), dim(c, 2));
}

static void linear_bwd_in_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int N = dim(c, 0), K = dim(c, 1), O = dim(c, 2);
    double *x = zeros_d((size_t)N * K), *W = to_d(F(d, 2), (size_t)O * K), *dout = to_d(F(d, 1), (size_t)N * O);
    linear_ctx l = {x, W, NULL, N, K, O};
    fd_grad(linear_f, &l, dout, (size_t)N * O, x, (size_t)N * K, want[0]);
    free(x), free(W), free(dout);
}

static void linear_bwd_w_layout(const opcheck_case *c, opcheck_data *d) {
    size_t N = c->n[0], K = c->n[1], O = c->n[2];
    opcheck_add_buf(d, "dW", BUF_GRAD, OPCHECK_ACC, O * K, 0, 0);
    opcheck_add_buf(d, "dout", BUF_ACT, OPCHECK_IN, N * O, -1, 1);
    opcheck_add_buf(d, "x", BUF_ACT, OPCHECK_IN, N * K, -1, 1);
}

static void linear_bwd_w_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->linear_backward_weight(be, p[0], p[1], p[2], dim(c, 0), dim(c, 1), dim(c, 2));
}

static void linear_bwd_w_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int N = dim(c, 0), K = dim(c, 1), O = dim(c, 2);
    size_t nw = (size_t)O * K;
    double *x = to_d(F(d, 2), (size_t)N * K), *W = zeros_d(nw), *dout = to_d(F(d, 1), (size_t)N * O), *g = zeros_d(nw);
    linear_ctx l = {x, W, NULL, N, K, O};
    fd_grad(linear_f, &l, dout, (size_t)N * O, W, nw, g);
    add_into(want[0], g, nw);
    free(x), free(W), free(dout), free(g);
}

static void linear_bwd_b_layout(const opcheck_case *c, opcheck_data *d) {
    size_t N = c->n[0], O = c->n[1];
    opcheck_add_buf(d, "db", BUF_GRAD, OPCHECK_ACC, O, 0, 0);
    opcheck_add_buf(d, "dout", BUF_ACT, OPCHECK_IN, N * O, -1, 1);
}

static void linear_bwd_b_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->linear_backward_bias(be, p[0], p[1], dim(c, 0), dim(c, 1));
}

// y (N, O) = b broadcast over rows: the part of x W^T + b that depends on b.
typedef struct {
    const double *b;
    int N, O;
} bias_ctx;

static void bias_f(const void *ctx, double *y) {
    const bias_ctx *l = ctx;
    for (int n = 0; n < l->N; n++)
        for (int o = 0; o < l->O; o++) y[(size_t)n * l->O + o] = l->b[o];
}

static void linear_bwd_b_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int N = dim(c, 0), O = dim(c, 1);
    double *b = zeros_d((size_t)O), *dout = to_d(F(d, 1), (size_t)N * O), *g = zeros_d((size_t)O);
    bias_ctx l = {b, N, O};
    fd_grad(bias_f, &l, dout, (size_t)N * O, b, (size_t)O, g);
    add_into(want[0], g, (size_t)O);
    free(b), free(dout), free(g);
}

static void linear_cost(const opcheck_case *c, double *flops, double *bytes) {
    *flops = 2.0 * (double)c->n[0] * (double)c->n[1] * (double)c->n[2];
}

static void linear_bias_cost(const opcheck_case *c, double *flops, double *bytes) {
    *bytes = 2.0 * (double)c->n[0] * (double)c->n[1] + 8.0 * (double)c->n[1];  // dout once; db read and written
}

static void linear_shape(const opcheck_case *c, char *buf, size_t cap) {
    snprintf(buf, cap, "N=%d I=%d O=%d", dim(c, 0), dim(c, 1), dim(c, 2));
}

static void linear_bias_shape(const opcheck_case *c, char *buf, size_t cap) {
    snprintf(buf, cap, "%dx%d", dim(c, 0), dim(c, 1));
}

// ---------------------------------------------------------------------------------------------
// patch_unfold and clip_embed: data movement, checked exactly against the opposite loop order (walk
// the pixels and place each one) from the layout ops.h documents.

static void patch_layout(const opcheck_case *c, opcheck_data *d) {
    size_t B = c->n[0], Cin = c->n[1], H = c->n[2], W = c->n[3], P = c->n[4];
    opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, B * (H / P) * (W / P) * Cin * P * P, 0, 0);
    opcheck_add_buf(d, "pix", BUF_F32, OPCHECK_IN, B * Cin * H * W, -2, 2);
}

static void patch_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->patch_unfold(be, p[0], p[1], dim(c, 0), dim(c, 1), dim(c, 2), dim(c, 3), dim(c, 4));
}

static void patch_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int B = dim(c, 0), Cin = dim(c, 1), H = dim(c, 2), W = dim(c, 3), P = dim(c, 4);
    int gh = H / P, gw = W / P, K = Cin * P * P;
    const float *pix = F(d, 1);
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < Cin; ch++)
            for (int yy = 0; yy < gh * P; yy++)
                for (int xx = 0; xx < gw * P; xx++) {
                    size_t row = (size_t)b * gh * gw + (size_t)(yy / P) * gw + xx / P;
                    size_t col = ((size_t)ch * P + yy % P) * P + xx % P;
                    want[0][row * K + col] = pix[(((size_t)b * Cin + ch) * H + yy) * W + xx];
                }
}

static void patch_cost(const opcheck_case *c, double *flops, double *bytes) {
    *bytes = (double)c->n[0] * c->n[1] * c->n[2] * c->n[3] * (4.0 + 2.0);  // fp32 pixels in, bf16 rows out
}

static void patch_shape(const opcheck_case *c, char *buf, size_t cap) {
    snprintf(buf, cap, "B=%d %dx%dx%d P=%d", dim(c, 0), dim(c, 1), dim(c, 2), dim(c, 3), dim(c, 4));
}

static void clip_layout(const opcheck_case *c, opcheck_data *d) {
    size_t B = c->n[0], N = c->n[1], C = c->n[2];
    opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, B * (N + 1) * C, 0, 0);
    opcheck_add_buf(d, "patches", BUF_ACT, OPCHECK_IN, B * N * C, -1, 1);
    opcheck_add_buf(d, "cls", BUF_PARAM, OPCHECK_IN, C, -1, 1);
    opcheck_add_buf(d, "pos", BUF_PARAM, OPCHECK_IN, (N + 1) * C, -1, 1);
}

static void clip_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->clip_embed(be, p[0], p[1], p[2], p[3], dim(c, 0), dim(c, 1), dim(c, 2));
}

static void clip_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int B = dim(c, 0), N = dim(c, 1), C = dim(c, 2);
    const float *patches = F(d, 1), *cls = F(d, 2), *pos = F(d, 3);
    for (int b = 0; b < B; b++)
        for (int n = 0; n <= N; n++)
            for (int ch = 0; ch < C; ch++) {
                double src = n == 0 ? cls[ch] : patches[((size_t)b * N + n - 1) * C + ch];
                want[0][((size_t)b * (N + 1) + n) * C + ch] = src + pos[(size_t)n * C + ch];
            }
}

static void clip_cost(const opcheck_case *c, double *flops, double *bytes) {
    double B = c->n[0], N = c->n[1], C = c->n[2];
    *bytes = 2.0 * B * N * C + 2.0 * B * (N + 1) * C;
}

static void clip_shape(const opcheck_case *c, char *buf, size_t cap) {
    snprintf(buf, cap, "B=%d N=%d C=%d", dim(c, 0), dim(c, 1), dim(c, 2));
}

// ---------------------------------------------------------------------------------------------
// LayerNorm and RMSNorm

typedef struct {
    const double *x, *w, *b;  // b NULL for RMSNorm
    int N, C;
    double eps;
} norm_ctx;

// LayerNorm: biased variance, as torch; mean and rstd (N) may be NULL.
static void ref_layernorm(double *y, double *mean, double *rstd, const double *x, const double *w, const double *b,
                          int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * C;
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += xr[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
        double r = 1.0 / sqrt(v / C + eps);
        for (int c = 0; c < C; c++) y[(size_t)n * C + c] = (xr[c] - m) * r * w[c] + b[c];
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = r;
    }
}

static void ref_rmsnorm(double *y, double *rstd, const double *x, const double *w, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * C;
        double ms = 0.0;
        for (int c = 0; c < C; c++) ms += xr[c] * xr[c];
        double r = 1.0 / sqrt(ms / C + eps);
        for (int c = 0; c < C; c++) y[(size_t)n * C + c] = w[c] * (xr[c] * r);
        if (rstd) rstd[n] = r;
    }
}

static void norm_f(const void *ctx, double *y) {
    const norm_ctx *l = ctx;
    if (l->b) ref_layernorm(y, NULL, NULL, l->x, l->w, l->b, l->N, l->C, l->eps);
    else ref_rmsnorm(y, NULL, l->x, l->w, l->N, l->C, l->eps);
}

// The ops take eps as a float: the reference uses that float's value.
static double eps_of(const opcheck_case *c) { return (double)(float)c->f; }

static void ln_fwd_layout(const opcheck_case *c, opcheck_data *d) {
    size_t N = c->n[0], C = c->n[1];
    opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, N * C, 0, 0);
    opcheck_add_buf(d, "mean", BUF_F32, OPCHECK_OUT, N, 0, 0);
    opcheck_add_buf(d, "rstd", BUF_F32, OPCHECK_OUT, N, 0, 0);
    opcheck_add_buf(d, "x", BUF_ACT, OPCHECK_IN, N * C, -1, 1);
    opcheck_add_buf(d, "w", BUF_PARAM, OPCHECK_IN, C, -1, 1);
    opcheck_add_buf(d, "b", BUF_PARAM, OPCHECK_IN, C, -1, 1);
}

static void ln_fwd_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->layernorm_forward(be, p[0], p[1], p[2], p[3], p[4], p[5], dim(c, 0), dim(c, 1), (float)c->f);
}

static void ln_fwd_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int N = dim(c, 0), C = dim(c, 1);
    double *x = to_d(F(d, 3), (size_t)N * C), *w = to_d(F(d, 4), C), *b = to_d(F(d, 5), C);
    ref_layernorm(want[0], want[1], want[2], x, w, b, N, C, eps_of(c));
    free(x), free(w), free(b);
}

static void ln_bwd_layout(const opcheck_case *c, opcheck_data *d) {
    size_t N = c->n[0], C = c->n[1];
    opcheck_add_buf(d, "dx", BUF_ACT, OPCHECK_OUT, N * C, 0, 0);
    opcheck_add_buf_flags(d, "dw", BUF_GRAD, OPCHECK_ACC, C, 0, 0, OPCHECK_BUF_OPTIONAL);
    opcheck_add_buf_flags(d, "db", BUF_GRAD, OPCHECK_ACC, C, 0, 0, OPCHECK_BUF_OPTIONAL);
    opcheck_add_buf(d, "dout", BUF_ACT, OPCHECK_IN, N * C, -1, 1);
    opcheck_add_buf(d, "x", BUF_ACT, OPCHECK_IN, N * C, -1, 1);
    opcheck_add_buf(d, "w", BUF_PARAM, OPCHECK_IN, C, -1, 1);
    opcheck_add_buf_flags(d, "mean", BUF_F32, OPCHECK_IN, N, 0.5, 1.5, OPCHECK_BUF_DERIVED);
    opcheck_add_buf_flags(d, "rstd", BUF_F32, OPCHECK_IN, N, 0.5, 1.5, OPCHECK_BUF_DERIVED);
}

// The saved statistics, as the forward leaves them (its fp64 values rounded once to fp32).
static void ln_bwd_prepare(opcheck_data *d, uint64_t *rng, int bench) {
    if (bench) return;
    const opcheck_case *c = d->c;
    int N = dim(c, 0), C = dim(c, 1);
    double *x = to_d(F(d, 4), (size_t)N * C), *w = to_d(F(d, 5), C), *b = zeros_d(C);
    double *y = zeros_d((size_t)N * C), *mean = zeros_d(N), *rstd = zeros_d(N);
    ref_layernorm(y, mean, rstd, x, w, b, N, C, eps_of(c));
    float *m = d->host[6], *r = d->host[7];
    for (int n = 0; n < N; n++) m[n] = (float)mean[n], r[n] = (float)rstd[n];
    free(x), free(w), free(b), free(y), free(mean), free(rstd);
}

static void ln_bwd_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->layernorm_backward(be, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], dim(c, 0), dim(c, 1));
}

// dx, dw, db by finite differences of LayerNorm(x, w, b); the bias only shifts the output, so its
// value (0 here) changes none of the three.
static void ln_bwd_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int N = dim(c, 0), C = dim(c, 1);
    size_t n = (size_t)N * C;
    double *x = to_d(F(d, 4), n), *w = to_d(F(d, 5), C), *b = zeros_d(C), *dout = to_d(F(d, 3), n);
    double *gw = zeros_d(C), *gb = zeros_d(C);
    norm_ctx l = {x, w, b, N, C, eps_of(c)};
    fd_grad(norm_f, &l, dout, n, x, n, want[0]);
    fd_grad(norm_f, &l, dout, n, w, C, gw);
    fd_grad(norm_f, &l, dout, n, b, C, gb);
    add_into(want[1], gw, C);
    add_into(want[2], gb, C);
    free(x), free(w), free(b), free(dout), free(gw), free(gb);
}

static void rms_fwd_layout(const opcheck_case *c, opcheck_data *d) {
    size_t N = c->n[0], C = c->n[1];
    opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, N * C, 0, 0);
    opcheck_add_buf(d, "rstd", BUF_F32, OPCHECK_OUT, N, 0, 0);
    opcheck_add_buf(d, "x", BUF_ACT, OPCHECK_IN, N * C, -1, 1);
    opcheck_add_buf(d, "w", BUF_PARAM, OPCHECK_IN, C, -1, 1);
}

static void rms_fwd_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->rmsnorm_forward(be, p[0], p[1], p[2], p[3], dim(c, 0), dim(c, 1), (float)c->f);
}

static void rms_fwd_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int N = dim(c, 0), C = dim(c, 1);
    double *x = to_d(F(d, 2), (size_t)N * C), *w = to_d(F(d, 3), C);
    ref_rmsnorm(want[0], want[1], x, w, N, C, eps_of(c));
    free(x), free(w);
}

static void rms_bwd_layout(const opcheck_case *c, opcheck_data *d) {
    size_t N = c->n[0], C = c->n[1];
    opcheck_add_buf(d, "dx", BUF_ACT, OPCHECK_OUT, N * C, 0, 0);
    opcheck_add_buf_flags(d, "dw", BUF_GRAD, OPCHECK_ACC, C, 0, 0, OPCHECK_BUF_OPTIONAL);
    opcheck_add_buf(d, "dout", BUF_ACT, OPCHECK_IN, N * C, -1, 1);
    opcheck_add_buf(d, "x", BUF_ACT, OPCHECK_IN, N * C, -1, 1);
    opcheck_add_buf(d, "w", BUF_PARAM, OPCHECK_IN, C, -1, 1);
    opcheck_add_buf_flags(d, "rstd", BUF_F32, OPCHECK_IN, N, 0.5, 1.5, OPCHECK_BUF_DERIVED);
}

static void rms_bwd_prepare(opcheck_data *d, uint64_t *rng, int bench) {
    if (bench) return;
    const opcheck_case *c = d->c;
    int N = dim(c, 0), C = dim(c, 1);
    double *x = to_d(F(d, 3), (size_t)N * C), *w = to_d(F(d, 4), C), *y = zeros_d((size_t)N * C), *rstd = zeros_d(N);
    ref_rmsnorm(y, rstd, x, w, N, C, eps_of(c));
    float *r = d->host[5];
    for (int n = 0; n < N; n++) r[n] = (float)rstd[n];
    free(x), free(w), free(y), free(rstd);
}

static void rms_bwd_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->rmsnorm_backward(be, p[0], p[1], p[2], p[3], p[4], p[5], dim(c, 0), dim(c, 1));
}

static void rms_bwd_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int N = dim(c, 0), C = dim(c, 1);
    size_t n = (size_t)N * C;
    double *x = to_d(F(d, 3), n), *w = to_d(F(d, 4), C), *dout = to_d(F(d, 2), n), *gw = zeros_d(C);
    norm_ctx l = {x, w, NULL, N, C, eps_of(c)};
    fd_grad(norm_f, &l, dout, n, x, n, want[0]);
    fd_grad(norm_f, &l, dout, n, w, C, gw);
    add_into(want[1], gw, C);
    free(x), free(w), free(dout), free(gw);
}

static void norm_fwd_cost(const opcheck_case *c, double *flops, double *bytes) {
    *bytes = 4.0 * (double)c->n[0] * (double)c->n[1];
}

static void norm_bwd_cost(const opcheck_case *c, double *flops, double *bytes) {
    *bytes = 6.0 * (double)c->n[0] * (double)c->n[1];
}

static void norm_shape(const opcheck_case *c, char *buf, size_t cap) {
    snprintf(buf, cap, "%dx%d", dim(c, 0), dim(c, 1));
}

// ---------------------------------------------------------------------------------------------
// Elementwise activations, straight from their definitions (quick_gelu x sigmoid(1.702 x), exact
// GELU 0.5 x (1 + erf(x / sqrt 2)), its tanh approximation 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715
// x^3))), SwiGLU silu(gate) * up).

enum { ACT_QUICK_GELU, ACT_GELU, ACT_GELU_TANH, ACT_SILU_MUL };

typedef struct {
    int kind;
    const double *x, *up;
    size_t n;
} act_ctx;

static void act_f(const void *ctx, double *y) {
    const act_ctx *a = ctx;
    for (size_t i = 0; i < a->n; i++) {
        double x = a->x[i];
        switch (a->kind) {
        case ACT_QUICK_GELU: y[i] = x / (1.0 + exp(-1.702 * x)); break;
        case ACT_GELU: y[i] = 0.5 * x * (1.0 + erf(x / sqrt(2.0))); break;
        case ACT_GELU_TANH: y[i] = 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * pow(x, 3)))); break;
        default: y[i] = x / (1.0 + exp(-x)) * a->up[i]; break;
        }
    }
}

static int act_kind(int op) {
    return op == OPCHECK_QUICK_GELU_FORWARD || op == OPCHECK_QUICK_GELU_BACKWARD ? ACT_QUICK_GELU
           : op == OPCHECK_GELU_FORWARD || op == OPCHECK_GELU_BACKWARD           ? ACT_GELU
           : op == OPCHECK_GELU_TANH_FORWARD || op == OPCHECK_GELU_TANH_BACKWARD ? ACT_GELU_TANH
                                                                                 : ACT_SILU_MUL;
}

static int act_is_forward(int op) {
    return op == OPCHECK_QUICK_GELU_FORWARD || op == OPCHECK_GELU_FORWARD || op == OPCHECK_GELU_TANH_FORWARD ||
           op == OPCHECK_SILU_MUL_FORWARD;
}

static void act_layout(const opcheck_case *c, opcheck_data *d) {
    size_t n = ew_n(c);
    int silu = act_kind(c->op) == ACT_SILU_MUL;
    if (act_is_forward(c->op)) {
        opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, n, 0, 0);
    } else {
        opcheck_add_buf(d, silu ? "dgate" : "dx", BUF_ACT, OPCHECK_OUT, n, 0, 0);
        if (silu) opcheck_add_buf(d, "dup", BUF_ACT, OPCHECK_OUT, n, 0, 0);
        opcheck_add_buf(d, "dout", BUF_ACT, OPCHECK_IN, n, -1, 1);
    }
    opcheck_add_buf(d, silu ? "gate" : "x", BUF_ACT, OPCHECK_IN, n, -1, 1);
    if (silu) opcheck_add_buf(d, "up", BUF_ACT, OPCHECK_IN, n, -1, 1);
}

// The activation's input: x, or gate for the SwiGLU product.
static int act_input(const opcheck_data *d) {
    int i = opcheck_find(d, "x");
    return i >= 0 ? i : opcheck_find(d, "gate");
}

// x (or gate): the tails first, where exp and erf lose precision first if computed carelessly.
static void act_prepare(opcheck_data *d, uint64_t *rng, int bench) {
    if (d->c->pattern != OPCHECK_PAT_TAILS) return;
    static const float tails[] = {-5.0f, -4.5f, -3.0f, 3.0f, 8.0f, 12.0f};
    int xi = act_input(d);
    size_t n = d->buf[xi].n < 6 ? d->buf[xi].n : 6;
    memcpy(d->host[xi], tails, n * sizeof(float));
}

static void act_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    size_t n = ew_n(c);
    const llava_ops *o = be->ops;
    switch (c->op) {
    case OPCHECK_QUICK_GELU_FORWARD: o->quick_gelu_forward(be, p[0], p[1], n); break;
    case OPCHECK_QUICK_GELU_BACKWARD: o->quick_gelu_backward(be, p[0], p[1], p[2], n); break;
    case OPCHECK_GELU_FORWARD: o->gelu_forward(be, p[0], p[1], n); break;
    case OPCHECK_GELU_BACKWARD: o->gelu_backward(be, p[0], p[1], p[2], n); break;
    case OPCHECK_GELU_TANH_FORWARD: o->gelu_tanh_forward(be, p[0], p[1], n); break;
    case OPCHECK_GELU_TANH_BACKWARD: o->gelu_tanh_backward(be, p[0], p[1], p[2], n); break;
    case OPCHECK_SILU_MUL_FORWARD: o->silu_mul_forward(be, p[0], p[1], p[2], n); break;
    default: o->silu_mul_backward(be, p[0], p[1], p[2], p[3], p[4], n); break;
    }
}

static void act_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    size_t n = ew_n(c);
    int kind = act_kind(c->op), xi = act_input(d);
    double *x = to_d(F(d, xi), n), *up = kind == ACT_SILU_MUL ? to_d(F(d, xi + 1), n) : NULL;
    act_ctx a = {kind, x, up, n};
    if (act_is_forward(c->op)) {
        act_f(&a, want[0]);
    } else {
        double *dout = to_d(F(d, opcheck_find(d, "dout")), n);
        fd_grad(act_f, &a, dout, n, x, n, want[0]);
        if (up) fd_grad(act_f, &a, dout, n, up, n, want[1]);
        free(dout);
    }
    free(x), free(up);
}

static void act_cost(const opcheck_case *c, double *flops, double *bytes) {
    double n = (double)ew_n(c);
    int silu = act_kind(c->op) == ACT_SILU_MUL;
    if (act_is_forward(c->op)) *bytes = (silu ? 6.0 : 4.0) * n;
    else *bytes = (silu ? 10.0 : 6.0) * n;
}

// ---------------------------------------------------------------------------------------------
// RoPE. The reference follows HF's fp32 steps for the angle (spec §2.4: fp32 inv_freq, fp32 product
// pos * inv_freq) but does each step in fp64 and rounds once, and then rotates in fp64.

typedef struct {
    const double *x;
    const int32_t *pos;
    int T, H, D;
    float theta;
} rope_ctx;

static void ref_rope(double *y, const double *x, const int32_t *pos, int T, int H, int D, float theta) {
    int half = D / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            float expo = (float)(2 * i) / (float)D;
            float p = (float)pow((double)theta, (double)expo);
            float inv_freq = (float)(1.0 / p);
            double angle = (float)((double)pos[t] * inv_freq);
            double c = cos(angle), s = sin(angle);
            for (int h = 0; h < H; h++) {
                const double *xv = x + ((size_t)t * H + h) * D;
                double *yv = y + ((size_t)t * H + h) * D;
                yv[i] = xv[i] * c - xv[i + half] * s;
                yv[i + half] = xv[i + half] * c + xv[i] * s;
            }
        }
}

static void rope_f(const void *ctx, double *y) {
    const rope_ctx *r = ctx;
    ref_rope(y, r->x, r->pos, r->T, r->H, r->D, r->theta);
}

static void rope_layout(const opcheck_case *c, opcheck_data *d) {
    size_t T = c->n[0], H = c->n[1], D = c->n[2];
    opcheck_add_buf(d, c->op == OPCHECK_ROPE_FORWARD ? "x" : "dx", BUF_ACT, OPCHECK_INOUT, T * H * D, -1, 1);
    opcheck_add_buf(d, "pos", BUF_I32, OPCHECK_IN, T, 0, 0);
}

// The given positions; or packed sequences whose positions restart now and then, the second half
// running up to 4095 (the angles whose fp32 bits matter most); or 0..T-1 (benchmark).
static void rope_prepare(opcheck_data *d, uint64_t *rng, int bench) {
    const opcheck_case *c = d->c;
    int T = dim(c, 0), H = dim(c, 1), D = dim(c, 2);
    int32_t *pos = d->host[1];
    if (c->ints) {
        memcpy(pos, c->ints, (size_t)T * sizeof(int32_t));
    } else if (c->gen == OPCHECK_GEN_BENCH) {
        for (int t = 0; t < T; t++) pos[t] = t;
    } else {
        int p = 0;
        for (int t = 0; t < T; t++) {
            if (t > 0 && opcheck_uniform(rng) < 0.01) p = 0;
            pos[t] = (t >= T / 2) ? 4096 - T + t : p++;
        }
    }
    if (c->pattern == OPCHECK_PAT_REPEAT5 && T >= 10) {
        float *x = d->host[0];
        memcpy(x + (size_t)5 * H * D, x, (size_t)5 * H * D * sizeof(float));
    }
}

static void rope_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    if (c->op == OPCHECK_ROPE_FORWARD)
        be->ops->rope_forward(be, p[0], p[1], dim(c, 0), dim(c, 1), dim(c, 2), (float)c->f, NULL);
    else be->ops->rope_backward(be, p[0], p[1], dim(c, 0), dim(c, 1), dim(c, 2), (float)c->f, NULL);
}

static void rope_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int T = dim(c, 0), H = dim(c, 1), D = dim(c, 2);
    size_t n = (size_t)T * H * D;
    double *x = to_d(F(d, 0), n);
    if (c->op == OPCHECK_ROPE_FORWARD) {
        ref_rope(want[0], x, d->host[1], T, H, D, (float)c->f);
    } else {
        // The gradient arrives in dx and is rotated back in place: it is the dout of rope(x).
        double *at = zeros_d(n);
        rope_ctx r = {at, d->host[1], T, H, D, (float)c->f};
        fd_grad(rope_f, &r, x, n, at, n, want[0]);
        free(at);
    }
    free(x);
}

static void rope_cost(const opcheck_case *c, double *flops, double *bytes) {
    *bytes = 4.0 * (double)c->n[0] * (double)c->n[1] * (double)c->n[2];
}

static void rope_shape(const opcheck_case *c, char *buf, size_t cap) {
    snprintf(buf, cap, "T=%d H=%d D=%d", dim(c, 0), dim(c, 1), dim(c, 2));
}

// ---------------------------------------------------------------------------------------------
// Attention over packed sequences.

typedef struct {
    const double *q, *k, *v;  // (T, Hq*D), (T, Hkv*D), (T, Hkv*D)
    const int32_t *cu;
    int n_seq, T, Hq, Hkv, D, causal, window;
    double scale;
} attn_ctx;

// Straight from the definition: per query row and head, softmax over the visible keys of its own
// sequence of scale * q.k, then the weighted sum of values. lse (Hq, T) may be NULL.
static void ref_attention(double *out, double *lse, const attn_ctx *a) {
    int group = a->Hq / a->Hkv, qs = a->Hq * a->D, ks = a->Hkv * a->D, D = a->D;
    double *sc = xmalloc((size_t)(a->T ? a->T : 1) * sizeof(double));
    for (int s = 0; s < a->n_seq; s++)
        for (int i = a->cu[s]; i < a->cu[s + 1]; i++)
            for (int h = 0; h < a->Hq; h++) {
                const double *qi = a->q + (size_t)i * qs + (size_t)h * D;
                int jend = a->causal ? i + 1 : a->cu[s + 1], kvh = h / group;
                // a sliding window: key j (a position within the sequence) seen iff i - window < j
                int j0 = a->causal && a->window > 0 && i - a->window + 1 > a->cu[s] ? i - a->window + 1 : a->cu[s];
                double m = -INFINITY;
                for (int j = j0; j < jend; j++) {
                    const double *kj = a->k + (size_t)j * ks + (size_t)kvh * D;
                    double dot = 0.0;
                    for (int e = 0; e < D; e++) dot += qi[e] * kj[e];
                    sc[j] = a->scale * dot;
                    m = fmax(m, sc[j]);
                }
                double sum = 0.0;
                for (int j = j0; j < jend; j++) sum += exp(sc[j] - m);
                double l = m + log(sum);
                double *oi = out + (size_t)i * qs + (size_t)h * D;
                for (int e = 0; e < D; e++) oi[e] = 0.0;
                for (int j = j0; j < jend; j++) {
                    double pj = exp(sc[j] - l);
                    const double *vj = a->v + (size_t)j * ks + (size_t)kvh * D;
                    for (int e = 0; e < D; e++) oi[e] += pj * vj[e];
                }
                if (lse) lse[(size_t)h * a->T + i] = l;
            }
    free(sc);
}

static void attn_f(const void *ctx, double *y) { ref_attention(y, NULL, ctx); }

// n = T, Hq, Hkv, D, n_seq, causal, window (0: none)
static void attn_layout(const opcheck_case *c, opcheck_data *d) {
    size_t T = c->n[0], Hq = c->n[1], Hkv = c->n[2], D = c->n[3], n_seq = c->n[4];
    size_t nq = T * Hq * D, nk = T * Hkv * D;
    if (c->op == OPCHECK_ATTENTION_FORWARD) {
        opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, nq, 0, 0);
        opcheck_add_buf(d, "lse", BUF_F32, OPCHECK_OUT, Hq * T, 0, 0);
    } else {
        opcheck_add_buf(d, "dq", BUF_ACT, OPCHECK_OUT, nq, 0, 0);
        opcheck_add_buf(d, "dk", BUF_ACT, OPCHECK_OUT, nk, 0, 0);
        opcheck_add_buf(d, "dv", BUF_ACT, OPCHECK_OUT, nk, 0, 0);
        opcheck_add_buf(d, "dout", BUF_ACT, OPCHECK_IN, nq, -1, 1);
    }
    // Scores of a few units: peaked enough that a wrong mask or scale shows, not one-hot.
    opcheck_add_buf(d, "q", BUF_ACT, OPCHECK_IN, nq, -2, 2);
    opcheck_add_buf(d, "k", BUF_ACT, OPCHECK_IN, nk, -2, 2);
    opcheck_add_buf(d, "v", BUF_ACT, OPCHECK_IN, nk, -1, 1);
    if (c->op == OPCHECK_ATTENTION_BACKWARD) {
        opcheck_add_buf_flags(d, "out", BUF_ACT, OPCHECK_IN, nq, -1, 1, OPCHECK_BUF_DERIVED);
        opcheck_add_buf_flags(d, "lse", BUF_F32, OPCHECK_IN, Hq * T, 0.5, 1.5, OPCHECK_BUF_DERIVED);
    }
    opcheck_add_buf(d, "cu_seqlens", BUF_I32, OPCHECK_IN, n_seq + 1, 0, 0);
}

static attn_ctx attn_ctx_of(const opcheck_data *d, const double *q, const double *k, const double *v) {
    const opcheck_case *c = d->c;
    return (attn_ctx){q,         k,         v,         d->host[d->nbuf - 1], dim(c, 4), dim(c, 0), dim(c, 1), dim(c, 2),
                      dim(c, 3), dim(c, 5), dim(c, 6), (double)(float)c->f};
}

static void attn_prepare(opcheck_data *d, uint64_t *rng, int bench) {
    const opcheck_case *c = d->c;
    int T = dim(c, 0), n_seq = dim(c, 4);
    int32_t *cu = d->host[d->nbuf - 1];
    if (c->ints) memcpy(cu, c->ints, (size_t)(n_seq + 1) * sizeof(int32_t));
    else
        for (int s = 0; s <= n_seq; s++) cu[s] = (int32_t)((int64_t)T * s / n_seq);
    LLAVA_REQUIRE(cu[0] == 0 && cu[n_seq] == T, "opcheck: attention case: cu_seqlens must run from 0 to T = %d", T);
    if (c->op != OPCHECK_ATTENTION_BACKWARD || bench) return;
    // out and lse as the forward leaves them: the fp64 values rounded once (out to bf16 where the
    // case runs on a GPU, so that both backends read the same numbers).
    int iq = opcheck_find(d, "q"), iout = opcheck_find(d, "out"), ilse = opcheck_find(d, "lse");
    size_t nq = d->buf[iq].n, nk = d->buf[iq + 1].n, nl = d->buf[ilse].n;
    double *q = to_d(F(d, iq), nq), *k = to_d(F(d, iq + 1), nk), *v = to_d(F(d, iq + 2), nk);
    double *out = zeros_d(nq), *lse = zeros_d(nl);
    attn_ctx a = attn_ctx_of(d, q, k, v);
    ref_attention(out, lse, &a);
    float *ho = d->host[iout], *hl = d->host[ilse];
    for (size_t i = 0; i < nq; i++) ho[i] = (c->flags & OPCHECK_GPU) ? opcheck_bf16((float)out[i]) : (float)out[i];
    for (size_t i = 0; i < nl; i++) hl[i] = (float)lse[i];
    free(q), free(k), free(v), free(out), free(lse);
}

static void attn_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    int T = dim(c, 0), Hq = dim(c, 1), Hkv = dim(c, 2), D = dim(c, 3), n_seq = dim(c, 4), causal = dim(c, 5);
    int window = dim(c, 6);
    float scale = (float)c->f;
    if (c->op == OPCHECK_ATTENTION_FORWARD)
        be->ops->attention_forward(be, p[0], p[1], p[2], p[3], p[4], p[5], n_seq, T, Hq, Hkv, D, scale, causal, window);
    else
        be->ops->attention_backward(be, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], n_seq, T, Hq, Hkv,
                                    D, scale, causal, window);
}

static void attn_ref(const opcheck_data *d, double **want) {
    int iq = opcheck_find(d, "q");
    size_t nq = d->buf[iq].n, nk = d->buf[iq + 1].n;
    double *q = to_d(F(d, iq), nq), *k = to_d(F(d, iq + 1), nk), *v = to_d(F(d, iq + 2), nk);
    attn_ctx a = attn_ctx_of(d, q, k, v);
    if (d->c->op == OPCHECK_ATTENTION_FORWARD) {
        ref_attention(want[0], want[1], &a);
    } else {
        double *dout = to_d(F(d, opcheck_find(d, "dout")), nq);
        fd_grad(attn_f, &a, dout, nq, q, nq, want[0]);
        fd_grad(attn_f, &a, dout, nq, k, nk, want[1]);
        fd_grad(attn_f, &a, dout, nq, v, nk, want[2]);
        free(dout);
    }
    free(q), free(k), free(v);
}

static void attn_cost(const opcheck_case *c, double *flops, double *bytes) {
    double T = (double)c->n[0], n_seq = (double)c->n[4], len = T / n_seq;
    double pairs = c->n[5] ? len * (len + 1) / 2 : len * len;
    if (c->ints) {  // sequences of their own lengths
        pairs = 0.0;
        for (int s = 0; s < c->n[4]; s++) {
            double L = c->ints[s + 1] - c->ints[s];
            pairs += c->n[5] ? L * (L + 1) / 2 : L * L;
        }
        n_seq = 1.0;
    }
    double bwd = c->op == OPCHECK_ATTENTION_BACKWARD ? 2.5 : 1.0;
    *flops = 4.0 * n_seq * pairs * (double)c->n[1] * (double)c->n[3] * bwd;
}

static void attn_shape(const opcheck_case *c, char *buf, size_t cap) {
    int n_seq = dim(c, 4), len = n_seq ? dim(c, 0) / n_seq : 0;
    if (c->n[1] != c->n[2])
        snprintf(buf, cap, "%dx%d tok Hq=%d Hkv=%d D=%d", n_seq, len, dim(c, 1), dim(c, 2), dim(c, 3));
    else snprintf(buf, cap, "%dx%d tok H=%d D=%d", n_seq, len, dim(c, 1), dim(c, 3));
}

// ---------------------------------------------------------------------------------------------
// Attention against a paged KV cache (generation). n = T, Hq, Hkv, D, context, block_size, window
// (Mistral's sliding window, 0: none); the sequences, block table and cache size follow from them
// (decode_geom_of), so the run needs nothing the case does not say.

typedef struct {
    int T, Hq, Hkv, D, ctx, bs, window;
    int n_seq, max_blocks, n_blocks;
} decode_geom;

// The first key a row at position p attends to: 0, or under a window the first of its last
// `window` keys (ops.h).
static int decode_first_key(int p, int window) { return window > 0 && p + 1 > window ? p + 1 - window : 0; }

// Random draws: T/2 + 2 sequences (the last holds no query), a spare table column past the longest
// context and 3 blocks nobody owns; the benchmark: one sequence per row, every block in use.
static decode_geom decode_geom_of(const opcheck_case *c) {
    decode_geom g = {dim(c, 0), dim(c, 1), dim(c, 2), dim(c, 3), dim(c, 4), dim(c, 5), dim(c, 6), 0, 0, 0};
    int bench = c->gen == OPCHECK_GEN_BENCH;
    g.n_seq = bench ? g.T : g.T / 2 + 2;
    g.max_blocks = (g.ctx + g.bs - 1) / g.bs + (bench ? 0 : 1);
    g.n_blocks = g.n_seq * g.max_blocks + (bench ? 0 : 3);
    return g;
}

void opcheck_decode_geometry(const opcheck_case *c, int *n_seq, int *max_blocks, int *n_blocks) {
    decode_geom g = decode_geom_of(c);
    *n_seq = g.n_seq, *max_blocks = g.max_blocks, *n_blocks = g.n_blocks;
}

static void decode_layout(const opcheck_case *c, opcheck_data *d) {
    decode_geom g = decode_geom_of(c);
    size_t nq = (size_t)g.T * g.Hq * g.D, nk = (size_t)g.n_blocks * g.bs * g.Hkv * g.D;
    opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, nq, 0, 0);
    // As attention_forward's: scores of a few units, peaked enough that a wrong key or mask shows.
    opcheck_add_buf(d, "q", BUF_ACT, OPCHECK_IN, nq, -2, 2);
    opcheck_add_buf(d, "k_cache", BUF_ACT, OPCHECK_IN, nk, -2, 2);
    opcheck_add_buf(d, "v_cache", BUF_ACT, OPCHECK_IN, nk, -1, 1);
    opcheck_add_buf(d, "block_table", BUF_I32, OPCHECK_IN, (size_t)g.n_seq * g.max_blocks, 0, 0);
    opcheck_add_buf(d, "seq", BUF_I32, OPCHECK_IN, (size_t)g.T, 0, 0);
    opcheck_add_buf(d, "pos", BUF_I32, OPCHECK_IN, (size_t)g.T, 0, 0);
}

// The queries' sequences and positions, the block tables (a shuffle of the cache's blocks, so a
// sequence's blocks are in no order), and NaN in every cache row no query may read: the rows past
// each sequence's last position in its last block, the blocks no sequence reaches, and under a
// window the rows before every window of their sequence's queries. Table
// entries past a sequence's last block are outside [0, n_blocks): an op that reads one, or a cache
// row it must not see, shows (a fault, or NaN in the output).
static void decode_prepare(opcheck_data *d, uint64_t *rng, int bench) {
    const opcheck_case *c = d->c;
    decode_geom g = decode_geom_of(c);
    LLAVA_REQUIRE(!c->ints, "opcheck: attention_decode draws its own sequences and positions");
    int32_t *table = d->host[4], *seq = d->host[5], *pos = d->host[6];
    int *reach = xcalloc((size_t)g.n_seq, sizeof(int));  // positions each sequence's queries reach
    for (int t = 0; t < g.T; t++) {
        if (c->gen == OPCHECK_GEN_BENCH) {
            seq[t] = t, pos[t] = g.ctx - 1;
        } else {
            seq[t] = opcheck_rand_int(rng, 0, g.n_seq - 1);
            pos[t] = t == 0 ? 0 : t == 1 ? g.ctx - 1 : opcheck_rand_int(rng, 0, g.ctx);
        }
        if (pos[t] + 1 > reach[seq[t]]) reach[seq[t]] = pos[t] + 1;
    }
    int32_t *perm = xmalloc((size_t)(g.n_blocks ? g.n_blocks : 1) * sizeof(int32_t));
    for (int i = 0; i < g.n_blocks; i++) perm[i] = i;
    for (int i = g.n_blocks - 1; i > 0; i--) {
        int j = opcheck_rand_int(rng, 0, i + 1), x = perm[i];
        perm[i] = perm[j], perm[j] = x;
    }
    unsigned char *seen = xcalloc((size_t)g.n_blocks * g.bs + 1, 1);  // cache rows some query reads
    for (int s = 0; s < g.n_seq; s++)
        for (int b = 0; b < g.max_blocks; b++) {
            int32_t *e = &table[(size_t)s * g.max_blocks + b];
            if (b * g.bs >= reach[s]) *e = b % 2 ? -1 - b : g.n_blocks + b;  // never read
            else *e = perm[s * g.max_blocks + b];
        }
    if (!bench) {
        // Row t reads positions [first key, pos[t]] of its sequence: over a sequence's rows,
        // [0, reach) without a window.
        for (int t = 0; t < g.T; t++)
            for (int j = decode_first_key(pos[t], g.window); j <= pos[t]; j++)
                seen[(size_t)table[(size_t)seq[t] * g.max_blocks + j / g.bs] * g.bs + (size_t)(j % g.bs)] = 1;
        size_t row = (size_t)g.Hkv * g.D;
        float *kc = d->host[2], *vc = d->host[3];
        for (size_t r = 0; r < (size_t)g.n_blocks * g.bs; r++)
            if (!seen[r])
                for (size_t i = 0; i < row; i++) kc[r * row + i] = vc[r * row + i] = NAN;
    }
    free(seen), free(perm), free(reach);
}

static void decode_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    decode_geom g = decode_geom_of(c);
    be->ops->attention_decode(be, p[0], p[1], p[2], p[3], p[4], p[5], p[6], g.T, g.n_seq, g.max_blocks, g.bs,
                              g.n_blocks, g.Hq, g.Hkv, g.D, (float)c->f, g.window);
}

// From the definition (ops.h): row t, query head h attends to positions 0..pos[t] of sequence
// seq[t] (under a window, the last `window` of them), position j at cache row
// table[seq][j / bs] * bs + j % bs, kv head h / (Hq / Hkv).
static void decode_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    decode_geom g = decode_geom_of(c);
    const float *q = F(d, 1), *kc = F(d, 2), *vc = F(d, 3);
    const int32_t *table = d->host[4], *seq = d->host[5], *pos = d->host[6];
    double scale = (double)(float)c->f;
    int group = g.Hq / g.Hkv;
    size_t qs = (size_t)g.Hq * g.D, ks = (size_t)g.Hkv * g.D;
    double *sc = xmalloc((size_t)(g.ctx ? g.ctx : 1) * sizeof(double));
    size_t *rows = xmalloc((size_t)(g.ctx ? g.ctx : 1) * sizeof(size_t));
    for (int t = 0; t < g.T; t++) {
        int n = pos[t] + 1, j0 = decode_first_key(pos[t], g.window);
        for (int j = j0; j < n; j++)
            rows[j] = (size_t)table[(size_t)seq[t] * g.max_blocks + j / g.bs] * g.bs + (size_t)(j % g.bs);
        for (int h = 0; h < g.Hq; h++) {
            const float *qr = q + (size_t)t * qs + (size_t)h * g.D;
            size_t koff = (size_t)(h / group) * g.D;
            double m = -INFINITY;
            for (int j = j0; j < n; j++) {
                const float *kr = kc + rows[j] * ks + koff;
                double dot = 0.0;
                for (int e = 0; e < g.D; e++) dot += (double)qr[e] * kr[e];
                sc[j] = scale * dot;
                m = fmax(m, sc[j]);
            }
            double sum = 0.0;
            for (int j = j0; j < n; j++) sum += exp(sc[j] - m);
            double lse = m + log(sum);
            double *o = want[0] + (size_t)t * qs + (size_t)h * g.D;
            for (int e = 0; e < g.D; e++) o[e] = 0.0;
            for (int j = j0; j < n; j++) {
                double p = exp(sc[j] - lse);
                const float *vr = vc + rows[j] * ks + koff;
                for (int e = 0; e < g.D; e++) o[e] += p * vr[e];
            }
        }
    }
    free(sc), free(rows);
}

// Bandwidth: every row reads K and V of its kv heads at every visible position (the benchmark's
// rows all sit at `context`; a window keeps the last `window`), plus q and out; the I32 inputs are
// noise. 4 D flops per (query head, key) against 4 D bytes per (kv head, key): the bytes bound it.
static void decode_cost(const opcheck_case *c, double *flops, double *bytes) {
    double T = (double)c->n[0], Hq = (double)c->n[1], Hkv = (double)c->n[2], D = (double)c->n[3];
    double ctx = (double)(c->n[6] > 0 && c->n[6] < c->n[4] ? c->n[6] : c->n[4]);
    *bytes = T * ctx * Hkv * D * 2.0 * 2.0 + 2.0 * T * Hq * D * 2.0;
}

static void decode_shape(const opcheck_case *c, char *buf, size_t cap) {
    // rows x context (the longest), heads (query/kv where they differ), head dim, block size
    char heads[32];
    if (c->n[1] != c->n[2]) snprintf(heads, sizeof heads, "%d/%d", dim(c, 1), dim(c, 2));
    else snprintf(heads, sizeof heads, "%d", dim(c, 1));
    if (c->n[6] > 0)
        snprintf(buf, cap, "%dx%d H=%s D=%d bs=%d w=%d", dim(c, 0), dim(c, 4), heads, dim(c, 3), dim(c, 5), dim(c, 6));
    else snprintf(buf, cap, "%dx%d H=%s D=%d bs=%d", dim(c, 0), dim(c, 4), heads, dim(c, 3), dim(c, 5));
}

// ---------------------------------------------------------------------------------------------
// Token embeddings and the row gather/scatter of the image splice.

// The ids the model produces: repeats of a few hot rows, image placeholders (< 0), ids past the
// vocabulary, the padding row; or, for the benchmark, a third of the tokens from 64 common rows.
static void make_ids(const opcheck_case *c, int32_t *ids, uint64_t *rng) {
    int T = dim(c, 0), V = dim(c, 2), padding_idx = dim(c, 3);
    if (c->ints) {
        memcpy(ids, c->ints, (size_t)T * sizeof(int32_t));
        return;
    }
    const int hot[4] = {5 % V, 17 % V, V / 2, V - 1};
    for (int t = 0; t < T; t++) {
        double u = opcheck_uniform(rng);
        if (c->gen == OPCHECK_GEN_BENCH) ids[t] = opcheck_rand_int(rng, 0, u < 1.0 / 3 ? 64 : V);
        else if (u < 0.30) ids[t] = hot[opcheck_rand_int(rng, 0, 4)];
        else if (u < 0.40) ids[t] = opcheck_uniform(rng) < 0.5 ? -1 : -200;
        else if (u < 0.42) ids[t] = V + opcheck_rand_int(rng, 0, 3);
        else if (u < 0.45) ids[t] = padding_idx;
        else ids[t] = opcheck_rand_int(rng, 0, V);
    }
}

static void emb_fwd_layout(const opcheck_case *c, opcheck_data *d) {
    size_t T = c->n[0], C = c->n[1], V = c->n[2];
    opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, T * C, 0, 0);
    opcheck_add_buf(d, "ids", BUF_I32, OPCHECK_IN, T, 0, 0);
    opcheck_add_buf(d, "table", BUF_PARAM, OPCHECK_IN, V * C, -1, 1);
}

static void emb_fwd_prepare(opcheck_data *d, uint64_t *rng, int bench) { make_ids(d->c, d->host[1], rng); }

static void emb_fwd_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->embedding_forward(be, p[0], p[1], p[2], dim(c, 0), dim(c, 1), dim(c, 2));
}

typedef struct {
    const double *table;
    const int32_t *ids;
    int T, C, V;
} emb_ctx;

static void emb_f(const void *ctx, double *y) {
    const emb_ctx *e = ctx;
    for (int t = 0; t < e->T; t++)
        for (int c = 0; c < e->C; c++)
            y[(size_t)t * e->C + c] = e->ids[t] >= 0 && e->ids[t] < e->V ? e->table[(size_t)e->ids[t] * e->C + c] : 0.0;
}

static void emb_fwd_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    double *table = to_d(F(d, 2), d->buf[2].n);
    emb_ctx e = {table, d->host[1], dim(c, 0), dim(c, 1), dim(c, 2)};
    emb_f(&e, want[0]);
    free(table);
}

static void emb_bwd_layout(const opcheck_case *c, opcheck_data *d) {
    size_t T = c->n[0], C = c->n[1], V = c->n[2];
    opcheck_add_buf(d, "dtable", BUF_GRAD, OPCHECK_ACC, V * C, 0, 0);
    opcheck_add_buf(d, "dout", BUF_ACT, OPCHECK_IN, T * C, -1, 1);
    opcheck_add_buf(d, "ids", BUF_I32, OPCHECK_IN, T, 0, 0);
}

static void emb_bwd_prepare(opcheck_data *d, uint64_t *rng, int bench) { make_ids(d->c, d->host[2], rng); }

static void emb_bwd_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->embedding_backward(be, p[0], p[1], p[2], dim(c, 0), dim(c, 1), dim(c, 2), dim(c, 3));
}

// Finite differences see the padding row used, but nn.Embedding never updates it.
static void emb_bwd_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int T = dim(c, 0), C = dim(c, 1), V = dim(c, 2), pad = dim(c, 3);
    size_t nt = (size_t)V * C;
    double *table = zeros_d(nt), *dout = to_d(F(d, 1), (size_t)T * C), *g = zeros_d(nt);
    emb_ctx e = {table, d->host[2], T, C, V};
    fd_grad(emb_f, &e, dout, (size_t)T * C, table, nt, g);
    if (pad >= 0 && pad < V)
        for (int ch = 0; ch < C; ch++) g[(size_t)pad * C + ch] = 0.0;
    add_into(want[0], g, nt);
    free(table), free(dout), free(g);
}

static void emb_fwd_cost(const opcheck_case *c, double *flops, double *bytes) {
    *bytes = 4.0 * (double)c->n[0] * (double)c->n[1];
}

static void emb_bwd_cost(const opcheck_case *c, double *flops, double *bytes) {
    double n = (double)c->n[0] * (double)c->n[1];
    *bytes = 2.0 * n + 8.0 * n;  // dout once; each distinct row read and written (<= T rows)
}

static void emb_shape(const opcheck_case *c, char *buf, size_t cap) {
    snprintf(buf, cap, "T=%d C=%d V=%d", dim(c, 0), dim(c, 1), dim(c, 2));
}

// n = rows moved, C, rows of the big side
static void rows_layout(const opcheck_case *c, opcheck_data *d) {
    size_t n = c->n[0], C = c->n[1], rows = c->n[2];
    if (c->op == OPCHECK_SCATTER_ROWS) {
        opcheck_add_buf(d, "dst", BUF_ACT, OPCHECK_INOUT, rows * C, -1, 1);
        opcheck_add_buf(d, "src", BUF_ACT, OPCHECK_IN, n * C, -1, 1);
    } else {
        opcheck_add_buf(d, "dst", BUF_ACT, OPCHECK_OUT, n * C, 0, 0);
        opcheck_add_buf(d, "src", BUF_ACT, OPCHECK_IN, rows * C, -1, 1);
    }
    opcheck_add_buf(d, "idx", BUF_I32, OPCHECK_IN, n, 0, 0);
}

// The given rows; or n distinct rows of the big side in shuffled order (the splice never repeats a
// row); or two images spliced after a 35-token prompt (benchmark).
static void rows_prepare(opcheck_data *d, uint64_t *rng, int bench) {
    const opcheck_case *c = d->c;
    int n = dim(c, 0), rows = dim(c, 2);
    int32_t *idx = d->host[2];
    if (c->ints) {
        memcpy(idx, c->ints, (size_t)n * sizeof(int32_t));
    } else if (c->gen == OPCHECK_GEN_BENCH) {
        for (int i = 0; i < n; i++) idx[i] = 35 + i;
    } else {
        int32_t *perm = xmalloc((size_t)(rows ? rows : 1) * sizeof(int32_t));
        for (int i = 0; i < rows; i++) perm[i] = i;
        for (int i = rows - 1; i > 0; i--) {
            int j = opcheck_rand_int(rng, 0, i + 1), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        memcpy(idx, perm, (size_t)n * sizeof(int32_t));
        free(perm);
    }
    for (int i = 0; i < n; i++)
        LLAVA_REQUIRE(idx[i] >= 0 && idx[i] < rows, "opcheck: row %d outside the %d rows of the case", idx[i], rows);
}

static void rows_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    if (c->op == OPCHECK_SCATTER_ROWS) be->ops->scatter_rows(be, p[0], p[1], p[2], dim(c, 0), dim(c, 1));
    else be->ops->gather_rows(be, p[0], p[1], p[2], dim(c, 0), dim(c, 1));
}

static void rows_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int n = dim(c, 0), C = dim(c, 1);
    const int32_t *idx = d->host[2];
    const float *src = F(d, 1);
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < C; ch++) {
            if (c->op == OPCHECK_SCATTER_ROWS) want[0][(size_t)idx[i] * C + ch] = src[(size_t)i * C + ch];
            else want[0][(size_t)i * C + ch] = src[(size_t)idx[i] * C + ch];
        }
}

static void rows_cost(const opcheck_case *c, double *flops, double *bytes) {
    *bytes = 4.0 * (double)c->n[0] * (double)c->n[1];
}

static void rows_shape(const opcheck_case *c, char *buf, size_t cap) {
    snprintf(buf, cap, "%dx%d of %d", dim(c, 0), dim(c, 1), dim(c, 2));
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy with ignore index

static double ref_ce_row(const double *z, int y, int V) {
    double m = z[0], s = 0.0;
    for (int j = 1; j < V; j++) m = fmax(m, z[j]);
    for (int j = 0; j < V; j++) s += exp(z[j] - m);
    return m + log(s) - z[y];
}

typedef struct {
    const double *logits;
    const int32_t *targets;
    int T, V;
    double scale;
} ce_ctx;

// Loss (1): grad_scale * sum of the valid rows' losses, the quantity dlogits is the gradient of.
static void ce_f(const void *ctx, double *y) {
    const ce_ctx *c = ctx;
    y[0] = 0.0;
    for (int t = 0; t < c->T; t++)
        if (c->targets[t] >= 0) y[0] += c->scale * ref_ce_row(c->logits + (size_t)t * c->V, c->targets[t], c->V);
}

static void ce_layout(const opcheck_case *c, opcheck_data *d) {
    size_t T = c->n[0], V = c->n[1];
    opcheck_add_buf(d, "losses", BUF_F32, OPCHECK_OUT, T, 0, 0);
    opcheck_add_buf_flags(d, "dlogits", BUF_ACT, OPCHECK_OUT, T * V, 0, 0, OPCHECK_BUF_OPTIONAL);
    opcheck_add_buf(d, "logits", BUF_ACT, OPCHECK_IN, T * V, -1, 1);
    opcheck_add_buf(d, "targets", BUF_I32, OPCHECK_IN, T, 0, 0);
}

static void ce_prepare(opcheck_data *d, uint64_t *rng, int bench) {
    const opcheck_case *c = d->c;
    int T = dim(c, 0), V = dim(c, 1);
    int32_t *y = d->host[3];
    float *z = d->host[2];
    for (int t = 0; t < T; t++) {
        if (c->ints) {
            y[t] = c->ints[t];
        } else if (c->gen == OPCHECK_GEN_BENCH) {
            y[t] = opcheck_rand_int(rng, 0, V);
        } else {
            double u = opcheck_uniform(rng);
            y[t] = u < 0.2 ? -100 : u < 0.25 ? 0 : u < 0.3 ? V - 1 : opcheck_rand_int(rng, 0, V);
        }
    }
    if (c->pattern == OPCHECK_PAT_CE_CHUNKS) {
        LLAVA_REQUIRE(T >= 3 && V >= 4099, "opcheck: the chunk pattern needs T >= 3 and V >= 4099");
        z[0 * (size_t)V + 4097] = 30.0f;
        z[1 * (size_t)V + 5] = 25.0f;
        for (int j = 0; j < V; j++) z[2 * (size_t)V + j] += 1000.0f;
    } else if (c->pattern == OPCHECK_PAT_CE_PEAKY) {
        for (int t = 0; t < T; t += 7) z[(size_t)t * V + opcheck_rand_int(rng, 0, V)] = 30.0f;
    }
}

static void ce_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->cross_entropy(be, p[0], p[1], p[2], p[3], dim(c, 0), dim(c, 1), (float)c->f);
}

static void ce_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int T = dim(c, 0), V = dim(c, 1);
    size_t n = (size_t)T * V;
    const int32_t *y = d->host[3];
    double scale = (double)(float)c->f;
    double *z = to_d(F(d, 2), n);
    for (int t = 0; t < T; t++) {
        const double *zr = z + (size_t)t * V;
        want[0][t] = y[t] < 0 ? 0.0 : y[t] >= V ? NAN : ref_ce_row(zr, y[t], V);
        double lse = y[t] < 0 || y[t] >= V ? 0.0 : want[0][t] + zr[y[t]];
        for (int j = 0; j < V; j++)
            want[1][(size_t)t * V + j] = y[t] < 0 ? 0.0 : (exp(zr[j] - lse) - (j == y[t])) * scale;
    }
    if (c->flags & OPCHECK_FD) {
        ce_ctx cc = {z, y, T, V, scale};
        double one = 1.0;
        fd_grad(ce_f, &cc, &one, 1, z, n, want[1]);
    }
    free(z);
}

static void ce_cost(const opcheck_case *c, double *flops, double *bytes) {
    *bytes = 4.0 * (double)c->n[0] * (double)c->n[1];  // logits read, dlogits written over them
}

static void ce_shape(const opcheck_case *c, char *buf, size_t cap) {
    snprintf(buf, cap, "%dx%d", dim(c, 0), dim(c, 1));
}

// ---------------------------------------------------------------------------------------------
// grid_pool: each image's G x G grid of C-channel rows (row-major) to a Go x Go grid (ops.h); n = B, G,
// C, mode, s. The reference follows ops.h's contract in fp64: the window's sum over s * s divided
// once, or its max (NaN wherever the window holds one, as torch's max_pool2d); the resize's source
// index scale * (o + 0.5) - 0.5, at least 0, from the contract's fp32 scale = G / Go (the product
// and the weights in fp64: where fp32 rounds the product onto an integer the op takes the next
// row with weight 0 and the reference the previous with weight ~1 - 1e-7, a difference of ~1e-7).

static int pool_go(const opcheck_case *c) {
    int G = dim(c, 1), s = dim(c, 4);
    if (G <= 0 || s <= 0) return 0;
    return dim(c, 3) == LLAVA_POOL_BILINEAR ? (G + s - 1) / s : G / s;
}

static const char *pool_mode_name(int mode) {
    return mode == LLAVA_POOL_AVERAGE    ? "avg"
           : mode == LLAVA_POOL_MAX      ? "max"
           : mode == LLAVA_POOL_BILINEAR ? "bilinear"
                                         : "?";
}

static void pool_layout(const opcheck_case *c, opcheck_data *d) {
    size_t B = c->n[0], G = c->n[1], C = c->n[2], Go = (size_t)pool_go(c);
    opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, B * Go * Go * C, 0, 0);
    opcheck_add_buf(d, "in", BUF_ACT, OPCHECK_IN, B * G * G * C, -1, 1);
}

// Average and max: the rows and columns past Go * s, which no window reads, hold NaN (an op that
// reads one shows). The patterns (max only): -inf entries, a window of nothing but -inf; with
// OPCHECK_PAT_POOL_NAN also NaN, met first in image 0's second window (the even channels) and last in
// the last image's last window (the odd channels); the other windows draw -inf (1 in 7) and NaN
// (1 in 11) at random. OPCHECK_PAT_POOL_TIES: every value a window reads one of -1, 0.5 and 1. The
// forward's input and its backward's (`in`, which average and the resize's backward do not have).
static void pool_prepare(opcheck_data *d, uint64_t *rng, int bench) {
    const opcheck_case *c = d->c;
    int B = dim(c, 0), G = dim(c, 1), C = dim(c, 2), mode = dim(c, 3), s = dim(c, 4), Go = pool_go(c);
    int at = opcheck_find(d, "in");
    if (at < 0) return;
    float *in = d->host[at];
#define POOL_AT(b, y, x) (in + (((size_t)(b)*G + (size_t)(y)) * G + (size_t)(x)) * C)
    if (mode != LLAVA_POOL_BILINEAR)
        for (int b = 0; b < B; b++)
            for (int y = 0; y < G; y++)
                for (int x = 0; x < G; x++)
                    if (y >= Go * s || x >= Go * s)
                        for (int ch = 0; ch < C; ch++) POOL_AT(b, y, x)[ch] = NAN;
    if (c->pattern == OPCHECK_PAT_POOL_TIES) {
        static const float levels[3] = {-1.0f, 0.5f, 1.0f};
        LLAVA_REQUIRE(mode == LLAVA_POOL_MAX, "opcheck: the grid_pool ties are for max pooling");
        for (int b = 0; b < B; b++)
            for (int y = 0; y < Go * s; y++)
                for (int x = 0; x < Go * s; x++)
                    for (int ch = 0; ch < C; ch++) POOL_AT(b, y, x)[ch] = levels[opcheck_rand_int(rng, 0, 3)];
        return;
    }
    if (c->pattern != OPCHECK_PAT_POOL_INF && c->pattern != OPCHECK_PAT_POOL_NAN) return;
    LLAVA_REQUIRE(mode == LLAVA_POOL_MAX && B >= 1 && Go >= 2 && C >= 2,
                  "opcheck: the grid_pool patterns need max pooling, an image, 2 x 2 windows and 2 channels");
    int with_nan = c->pattern == OPCHECK_PAT_POOL_NAN;
    for (int b = 0; b < B; b++)
        for (int y = 0; y < Go * s; y++)
            for (int x = 0; x < Go * s; x++) {
                int w = (y / s) * Go + x / s;
                if ((b == 0 && w <= 1) || (b == B - 1 && w == Go * Go - 1)) continue;  // set below
                for (int ch = 0; ch < C; ch++) {
                    double u = opcheck_uniform(rng);
                    if (u < 1.0 / 7) POOL_AT(b, y, x)[ch] = -INFINITY;
                    else if (with_nan && u < 1.0 / 7 + 1.0 / 11) POOL_AT(b, y, x)[ch] = NAN;
                }
            }
    for (int y = 0; y < s; y++)
        for (int x = 0; x < s; x++)
            for (int ch = 0; ch < C; ch++) POOL_AT(0, y, x)[ch] = -INFINITY;
    if (with_nan)
        for (int ch = 0; ch < C; ch++) {
            if (ch % 2 == 0) POOL_AT(0, 0, s)[ch] = NAN;
            else POOL_AT(B - 1, Go * s - 1, Go * s - 1)[ch] = NAN;
        }
#undef POOL_AT
}

static void pool_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->grid_pool(be, p[0], p[1], dim(c, 0), dim(c, 1), dim(c, 2), dim(c, 3), dim(c, 4));
}

// Source index of output o along one side: i0, i1 (the next one, or i0 again at the last), weight of i1.
static void pool_source(int o, int G, float scale, int *i0, int *i1, double *l1) {
    double src = (double)scale * (o + 0.5) - 0.5;
    if (src < 0.0) src = 0.0;
    *i0 = (int)floor(src);
    if (*i0 > G - 1) *i0 = G - 1;
    *i1 = *i0 + 1 < G ? *i0 + 1 : G - 1;
    *l1 = src - *i0;
}

static void pool_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int B = dim(c, 0), G = dim(c, 1), C = dim(c, 2), mode = dim(c, 3), s = dim(c, 4), Go = pool_go(c);
    const float *in = F(d, 1);
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Go; oy++)
            for (int ox = 0; ox < Go; ox++) {
                double *o = want[0] + (((size_t)b * Go + oy) * Go + ox) * C;
                const float *img = in + (size_t)b * G * G * C;
                if (mode == LLAVA_POOL_BILINEAR) {
                    float scale = (float)G / (float)Go;
                    int y0, y1, x0, x1;
                    double ly, lx;
                    pool_source(oy, G, scale, &y0, &y1, &ly);
                    pool_source(ox, G, scale, &x0, &x1, &lx);
                    const float *p00 = img + ((size_t)y0 * G + x0) * C, *p01 = img + ((size_t)y0 * G + x1) * C;
                    const float *p10 = img + ((size_t)y1 * G + x0) * C, *p11 = img + ((size_t)y1 * G + x1) * C;
                    for (int ch = 0; ch < C; ch++)
                        o[ch] = (1.0 - ly) * ((1.0 - lx) * p00[ch] + lx * p01[ch]) +
                                ly * ((1.0 - lx) * p10[ch] + lx * p11[ch]);
                    continue;
                }
                for (int ch = 0; ch < C; ch++) {
                    double acc = mode == LLAVA_POOL_MAX ? -INFINITY : 0.0;
                    int nan = 0;
                    for (int dy = 0; dy < s; dy++)
                        for (int dx = 0; dx < s; dx++) {
                            double v = img[((size_t)(oy * s + dy) * G + (size_t)(ox * s + dx)) * C + ch];
                            if (isnan(v)) nan = 1;
                            else if (mode == LLAVA_POOL_MAX) acc = v > acc ? v : acc;
                            else acc += v;
                        }
                    o[ch] = nan ? NAN : mode == LLAVA_POOL_MAX ? acc : acc / ((double)s * s);
                }
            }
}

// bf16 in and out; the rows and columns read: the windows' Go * s for average and max, two per
// output row and column (at most G) for the resize.
static void pool_cost(const opcheck_case *c, double *flops, double *bytes) {
    double B = (double)c->n[0], G = (double)c->n[1], C = (double)c->n[2], s = (double)c->n[4], Go = pool_go(c);
    double side = c->n[3] == LLAVA_POOL_BILINEAR ? fmin(G, 2.0 * Go) : Go * s;
    *bytes = 2.0 * B * C * (side * side + Go * Go);
}

static void pool_shape(const opcheck_case *c, char *buf, size_t cap) {
    snprintf(buf, cap, "B=%d %dx%d C=%d %s/%d", dim(c, 0), dim(c, 1), dim(c, 1), dim(c, 2), pool_mode_name(dim(c, 3)),
             dim(c, 4));
}

// grid_pool_backward: din (B, G*G, C) from dout (B, Go*Go, C), and for max the forward's input `in`. The
// reference walks the forward's outputs and hands each one's dout to the inputs it read (the loops of the
// transposed operation, in fp64), with its own reading of ops.h's rules rather than the ops' scan: average,
// dout / (s * s) to each input of the window; max, the whole dout to one input: the window's last NaN if
// it holds one, else the first input equal to its maximum, the first input when that maximum is -inf;
// the resize, weight_y * weight_x * dout to each of the four taps (two on one input add), with the
// forward reference's fp64 source and weights (the same ~1e-7 apart from the op's fp32 ones).

static void pool_bwd_layout(const opcheck_case *c, opcheck_data *d) {
    size_t B = c->n[0], G = c->n[1], C = c->n[2], Go = (size_t)pool_go(c);
    opcheck_add_buf(d, "din", BUF_ACT, OPCHECK_OUT, B * G * G * C, 0, 0);
    opcheck_add_buf(d, "dout", BUF_ACT, OPCHECK_IN, B * Go * Go * C, -1, 1);
    if (c->n[3] == LLAVA_POOL_MAX) opcheck_add_buf(d, "in", BUF_ACT, OPCHECK_IN, B * G * G * C, -1, 1);
}

// `in` only for max: the other modes get NULL, which ops.h allows.
static void pool_bwd_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->grid_pool_backward(be, p[0], p[1], c->n[3] == LLAVA_POOL_MAX ? p[2] : NULL, dim(c, 0), dim(c, 1),
                                dim(c, 2), dim(c, 3), dim(c, 4));
}

static void pool_bwd_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int B = dim(c, 0), G = dim(c, 1), C = dim(c, 2), mode = dim(c, 3), s = dim(c, 4), Go = pool_go(c);
    size_t n_in = (size_t)B * G * G * C;
    double *din = want[0];
    for (size_t i = 0; i < n_in; i++) din[i] = 0.0;
    const float *dout = F(d, 1), *in = mode == LLAVA_POOL_MAX ? F(d, 2) : NULL;
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Go; oy++)
            for (int ox = 0; ox < Go; ox++) {
                const float *g = dout + (((size_t)b * Go + oy) * Go + ox) * C;
#define DIN_AT(y, x) (din + (((size_t)b * G + (size_t)(y)) * G + (size_t)(x)) * C)
                if (mode == LLAVA_POOL_BILINEAR) {
                    float scale = (float)G / (float)Go;
                    int ys[2], xs[2];
                    double ly, lx;
                    pool_source(oy, G, scale, &ys[0], &ys[1], &ly);
                    pool_source(ox, G, scale, &xs[0], &xs[1], &lx);
                    double wy[2] = {1.0 - ly, ly}, wx[2] = {1.0 - lx, lx};
                    for (int ty = 0; ty < 2; ty++)
                        for (int tx = 0; tx < 2; tx++)
                            for (int ch = 0; ch < C; ch++) DIN_AT(ys[ty], xs[tx])[ch] += wy[ty] * wx[tx] * g[ch];
                    continue;
                }
                for (int ch = 0; ch < C; ch++) {
                    if (mode == LLAVA_POOL_AVERAGE) {
                        for (int dy = 0; dy < s; dy++)
                            for (int dx = 0; dx < s; dx++)
                                DIN_AT(oy * s + dy, ox * s + dx)[ch] += (double)g[ch] / ((double)s * s);
                        continue;
                    }
                    // max: the last NaN; else the maximum's first occurrence; -inf throughout: the first
                    double top = -INFINITY;
                    int last_nan = -1, first_top = 0;
                    for (int k = 0; k < s * s; k++) {
                        double v =
                            in[(((size_t)b * G + (size_t)(oy * s + k / s)) * G + (size_t)(ox * s + k % s)) * C + ch];
                        if (isnan(v)) last_nan = k;
                        else if (v > top) top = v;
                    }
                    for (int k = s * s - 1; k >= 0; k--) {
                        double v =
                            in[(((size_t)b * G + (size_t)(oy * s + k / s)) * G + (size_t)(ox * s + k % s)) * C + ch];
                        if (v == top) first_top = k;
                    }
                    int k = last_nan >= 0 ? last_nan : first_top;
                    DIN_AT(oy * s + k / s, ox * s + k % s)[ch] += g[ch];
                }
#undef DIN_AT
            }
}

// bf16: din written, dout read, and for max the windows of `in` read.
static void pool_bwd_cost(const opcheck_case *c, double *flops, double *bytes) {
    double B = (double)c->n[0], G = (double)c->n[1], C = (double)c->n[2], s = (double)c->n[4], Go = pool_go(c);
    double windows = c->n[3] == LLAVA_POOL_MAX ? Go * s * Go * s : 0.0;
    *bytes = 2.0 * B * C * (G * G + Go * Go + windows);
}

// ---------------------------------------------------------------------------------------------
// resize_bilinear: one image's H x W grid of C-channel rows to OH x OW (ops.h); n = H, W, OH, OW, C. The
// reference is grid_pool's resize with a scale per side: the contract's fp32 scale in / out and source
// (resize_source), the weights and the mix in fp64.
// Its backward's reference walks the outputs and hands weight_y * weight_x * dout to the four taps.

static void resize_layout(const opcheck_case *c, opcheck_data *d) {
    size_t H = c->n[0], W = c->n[1], OH = c->n[2], OW = c->n[3], C = c->n[4];
    opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, OH * OW * C, 0, 0);
    opcheck_add_buf(d, "in", BUF_ACT, OPCHECK_IN, H * W * C, -1, 1);
}

static void resize_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->resize_bilinear(be, p[0], p[1], dim(c, 0), dim(c, 1), dim(c, 2), dim(c, 3), dim(c, 4));
}

// The source along one side as the contract computes it, every step rounded to fp32 (torch's float opmath):
// the product scale * (o + 0.5) near a 48-wide side is off by up to 2e-6 in fp64 (an fp32 ulp of ~47), which
// moves the mix by ~1e-6, more than the forward's tolerance; the integer part at most in - 1.
static void resize_source(int o, int in, int out, int *i0, int *i1, double *l1) {
    volatile float scale = (float)in / (float)out, prod = scale * ((float)o + 0.5f), src = prod - 0.5f;
    float s = src < 0.0f ? 0.0f : src;
    *i0 = (int)floor(s);
    if (*i0 > in - 1) *i0 = in - 1;
    *i1 = *i0 + 1 < in ? *i0 + 1 : in - 1;
    *l1 = (double)s - *i0;
}

// The taps of output (oy, ox): rows ys, columns xs, their fp64 weights.
static void resize_taps(const opcheck_case *c, int oy, int ox, int ys[2], int xs[2], double wy[2], double wx[2]) {
    int H = dim(c, 0), W = dim(c, 1), OH = dim(c, 2), OW = dim(c, 3);
    double ly, lx;
    resize_source(oy, H, OH, &ys[0], &ys[1], &ly);
    resize_source(ox, W, OW, &xs[0], &xs[1], &lx);
    wy[0] = 1.0 - ly, wy[1] = ly, wx[0] = 1.0 - lx, wx[1] = lx;
}

static void resize_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int W = dim(c, 1), OH = dim(c, 2), OW = dim(c, 3), C = dim(c, 4);
    const float *in = F(d, 1);
    for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
            int ys[2], xs[2];
            double wy[2], wx[2];
            resize_taps(c, oy, ox, ys, xs, wy, wx);
            double *o = want[0] + ((size_t)oy * OW + ox) * C;
            for (int ch = 0; ch < C; ch++) {
                double v = 0.0;
                for (int ty = 0; ty < 2; ty++)
                    for (int tx = 0; tx < 2; tx++) v += wy[ty] * wx[tx] * in[((size_t)ys[ty] * W + xs[tx]) * C + ch];
                o[ch] = v;
            }
        }
}

// bf16 in and out: the rows read (two per output row and column, at most the input's) and the outputs.
static void resize_cost(const opcheck_case *c, double *flops, double *bytes) {
    double H = (double)c->n[0], W = (double)c->n[1], OH = (double)c->n[2], OW = (double)c->n[3], C = (double)c->n[4];
    *bytes = 2.0 * C * (fmin(H, 2.0 * OH) * fmin(W, 2.0 * OW) + OH * OW);
}

static void resize_shape(const opcheck_case *c, char *buf, size_t cap) {
    snprintf(buf, cap, "%dx%d -> %dx%d C=%d", dim(c, 0), dim(c, 1), dim(c, 2), dim(c, 3), dim(c, 4));
}

static void resize_bwd_layout(const opcheck_case *c, opcheck_data *d) {
    size_t H = c->n[0], W = c->n[1], OH = c->n[2], OW = c->n[3], C = c->n[4];
    opcheck_add_buf(d, "din", BUF_ACT, OPCHECK_OUT, H * W * C, 0, 0);
    opcheck_add_buf(d, "dout", BUF_ACT, OPCHECK_IN, OH * OW * C, -1, 1);
}

static void resize_bwd_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->resize_bilinear_backward(be, p[0], p[1], dim(c, 0), dim(c, 1), dim(c, 2), dim(c, 3), dim(c, 4));
}

static void resize_bwd_ref(const opcheck_data *d, double **want) {
    const opcheck_case *c = d->c;
    int H = dim(c, 0), W = dim(c, 1), OH = dim(c, 2), OW = dim(c, 3), C = dim(c, 4);
    double *din = want[0];
    for (size_t i = 0; i < (size_t)H * W * C; i++) din[i] = 0.0;
    const float *dout = F(d, 1);
    for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
            int ys[2], xs[2];
            double wy[2], wx[2];
            resize_taps(c, oy, ox, ys, xs, wy, wx);
            const float *g = dout + ((size_t)oy * OW + ox) * C;
            for (int ty = 0; ty < 2; ty++)
                for (int tx = 0; tx < 2; tx++)
                    for (int ch = 0; ch < C; ch++)
                        din[((size_t)ys[ty] * W + xs[tx]) * C + ch] += wy[ty] * wx[tx] * g[ch];
        }
}

// ---------------------------------------------------------------------------------------------
// Optimizer (benchmark only here: tests/test_optim.c and tests/gpu/test_cuda_ops.c check AdamW's
// arithmetic over several steps) and residual adds.

static void adamw_layout(const opcheck_case *c, opcheck_data *d) {
    size_t n = c->n[0];
    opcheck_add_buf(d, "param", BUF_PARAM, OPCHECK_INOUT, n, 0.5, 1.5);
    opcheck_add_buf(d, "master", BUF_F32, OPCHECK_INOUT, n, 0.5, 1.5);
    opcheck_add_buf(d, "grad", BUF_GRAD, OPCHECK_IN, n, 1e-4, 1e-2);
    opcheck_add_buf(d, "m", BUF_F32, OPCHECK_INOUT, n, 0.5, 1.5);
    opcheck_add_buf(d, "v", BUF_F32, OPCHECK_INOUT, n, 1e-4, 1e-2);
}

static void adamw_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->adamw(be, p[0], p[1], p[2], p[3], p[4], (size_t)c->n[0], 1e-5, 0.9, 0.999, 1e-8, 0.0, 10, 1.0f);
}

static void adamw_cost(const opcheck_case *c, double *flops, double *bytes) { *bytes = 30.0 * (double)c->n[0]; }

static void gss_layout(const opcheck_case *c, opcheck_data *d) {
    opcheck_add_buf(d, "grad", BUF_GRAD, OPCHECK_IN, (size_t)c->n[0], 1e-4, 1e-2);
}

static void gss_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    (void)be->ops->grad_sq_sum(be, p[0], (size_t)c->n[0]);
}

static void gss_cost(const opcheck_case *c, double *flops, double *bytes) { *bytes = 4.0 * (double)c->n[0]; }

static void add_layout(const opcheck_case *c, opcheck_data *d) {
    size_t n = ew_n(c);
    if (c->op == OPCHECK_ADD) {
        opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, n, 0, 0);
        opcheck_add_buf(d, "a", BUF_ACT, OPCHECK_IN, n, -1, 1);
        opcheck_add_buf(d, "b", BUF_ACT, OPCHECK_IN, n, -1, 1);
    } else {
        opcheck_add_buf(d, "acc", BUF_ACT, OPCHECK_INOUT, n, -1, 1);
        opcheck_add_buf(d, "x", BUF_ACT, OPCHECK_IN, n, -1, 1);
    }
}

static void add_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    if (c->op == OPCHECK_ADD) be->ops->add(be, p[0], p[1], p[2], ew_n(c));
    else be->ops->add_inplace(be, p[0], p[1], ew_n(c));
}

// One fp32 add: the sum of two floats is exact in fp64, so its rounding is the fp32 add's.
static void add_ref(const opcheck_data *d, double **want) {
    size_t n = ew_n(d->c);
    const float *a = F(d, d->nbuf - 2), *b = F(d, d->nbuf - 1);
    for (size_t i = 0; i < n; i++) want[0][i] = (double)a[i] + (double)b[i];
}

static void add_cost(const opcheck_case *c, double *flops, double *bytes) { *bytes = 6.0 * (double)ew_n(c); }

// LoRA's scaling with dropout: the reference keeps the elements ops.h's mask keeps, and scales them
// by the same fp32 factor, so one fp32 multiply rounded once: exact.
#define DROPOUT_SEED 0x5EEDull

static float dropout_p(const opcheck_case *c) { return (float)c->n[2] / 1000.0f; }

static void dropout_layout(const opcheck_case *c, opcheck_data *d) {
    opcheck_add_buf(d, "out", BUF_ACT, OPCHECK_OUT, ew_n(c), 0, 0);
    opcheck_add_buf(d, "x", BUF_ACT, OPCHECK_IN, ew_n(c), -4, 4);
}

static void dropout_run(llava_backend *be, const opcheck_case *c, void *const *p) {
    be->ops->dropout_scale(be, p[0], p[1], ew_n(c), (float)c->f, dropout_p(c), DROPOUT_SEED);
}

static void dropout_ref(const opcheck_data *d, double **want) {
    size_t n = ew_n(d->c);
    float p = dropout_p(d->c), scale = (float)d->c->f;
    float f = p > 0.0f ? scale / (1.0f - p) : scale;
    uint32_t thr = p > 0.0f ? lora_dropout_threshold(p) : 0;
    const float *x = F(d, 1);
    for (size_t i = 0; i < n; i++)
        want[0][i] = (thr == 0 || lora_dropout_keeps(DROPOUT_SEED, i, thr)) ? (double)x[i] * (double)f : 0.0;
}

static void dropout_cost(const opcheck_case *c, double *flops, double *bytes) { *bytes = 4.0 * (double)ew_n(c); }

// ---------------------------------------------------------------------------------------------

#define NO_ALIAS                                                                                                       \
    {                                                                                                                  \
        {-1, -1}, { -1, -1 }                                                                                           \
    }

const opcheck_op_desc OPCHECK_OPS[OPCHECK_N_OPS] = {
    [OPCHECK_LINEAR_FORWARD] = {"linear_forward", LLAVA_OP_LINEAR, linear_fwd_layout, NULL, linear_fwd_run,
                                linear_fwd_ref, linear_cost, linear_shape, NO_ALIAS},
    [OPCHECK_LINEAR_BACKWARD_INPUT] = {"linear_backward_input", LLAVA_OP_LINEAR, linear_bwd_in_layout, NULL,
                                       linear_bwd_in_run, linear_bwd_in_ref, linear_cost, linear_shape, NO_ALIAS},
    [OPCHECK_LINEAR_BACKWARD_WEIGHT] = {"linear_backward_weight", LLAVA_OP_LINEAR, linear_bwd_w_layout, NULL,
                                        linear_bwd_w_run, linear_bwd_w_ref, linear_cost, linear_shape, NO_ALIAS},
    [OPCHECK_LINEAR_BACKWARD_BIAS] = {"linear_backward_bias", LLAVA_OP_LINEAR, linear_bwd_b_layout, NULL,
                                      linear_bwd_b_run, linear_bwd_b_ref, linear_bias_cost, linear_bias_shape,
                                      NO_ALIAS},
    [OPCHECK_PATCH_UNFOLD] = {"patch_unfold", LLAVA_OP_PATCH_UNFOLD, patch_layout, NULL, patch_run, patch_ref,
                              patch_cost, patch_shape, NO_ALIAS},
    [OPCHECK_CLIP_EMBED] = {"clip_embed", LLAVA_OP_CLIP_EMBED, clip_layout, NULL, clip_run, clip_ref, clip_cost,
                            clip_shape, NO_ALIAS},
    [OPCHECK_LAYERNORM_FORWARD] = {"layernorm_forward", LLAVA_OP_LAYERNORM, ln_fwd_layout, NULL, ln_fwd_run, ln_fwd_ref,
                                   norm_fwd_cost, norm_shape, NO_ALIAS},
    [OPCHECK_LAYERNORM_BACKWARD] = {"layernorm_backward", LLAVA_OP_LAYERNORM, ln_bwd_layout, ln_bwd_prepare, ln_bwd_run,
                                    ln_bwd_ref, norm_bwd_cost, norm_shape, NO_ALIAS},
    [OPCHECK_RMSNORM_FORWARD] = {"rmsnorm_forward", LLAVA_OP_RMSNORM, rms_fwd_layout, NULL, rms_fwd_run, rms_fwd_ref,
                                 norm_fwd_cost, norm_shape, NO_ALIAS},
    [OPCHECK_RMSNORM_BACKWARD] = {"rmsnorm_backward", LLAVA_OP_RMSNORM, rms_bwd_layout, rms_bwd_prepare, rms_bwd_run,
                                  rms_bwd_ref, norm_bwd_cost, norm_shape, NO_ALIAS},
    // In place, as ops.h allows elementwise ops: out over x; dx over dout; dgate over gate, dup over up.
    [OPCHECK_QUICK_GELU_FORWARD] = {"quick_gelu_forward",
                                    LLAVA_OP_ELEMENTWISE,
                                    act_layout,
                                    act_prepare,
                                    act_run,
                                    act_ref,
                                    act_cost,
                                    shape_rows_cols,
                                    {{0, 1}, {-1, -1}}},
    [OPCHECK_QUICK_GELU_BACKWARD] = {"quick_gelu_backward",
                                     LLAVA_OP_ELEMENTWISE,
                                     act_layout,
                                     act_prepare,
                                     act_run,
                                     act_ref,
                                     act_cost,
                                     shape_rows_cols,
                                     {{0, 1}, {-1, -1}}},
    [OPCHECK_GELU_FORWARD] = {"gelu_forward",
                              LLAVA_OP_ELEMENTWISE,
                              act_layout,
                              act_prepare,
                              act_run,
                              act_ref,
                              act_cost,
                              shape_rows_cols,
                              {{0, 1}, {-1, -1}}},
    [OPCHECK_GELU_BACKWARD] = {"gelu_backward",
                               LLAVA_OP_ELEMENTWISE,
                               act_layout,
                               act_prepare,
                               act_run,
                               act_ref,
                               act_cost,
                               shape_rows_cols,
                               {{0, 1}, {-1, -1}}},
    [OPCHECK_GELU_TANH_FORWARD] = {"gelu_tanh_forward",
                                   LLAVA_OP_ELEMENTWISE,
                                   act_layout,
                                   act_prepare,
                                   act_run,
                                   act_ref,
                                   act_cost,
                                   shape_rows_cols,
                                   {{0, 1}, {-1, -1}}},
    [OPCHECK_SILU_MUL_FORWARD] = {"silu_mul_forward",
                                  LLAVA_OP_ELEMENTWISE,
                                  act_layout,
                                  act_prepare,
                                  act_run,
                                  act_ref,
                                  act_cost,
                                  shape_rows_cols,
                                  {{0, 1}, {-1, -1}}},
    [OPCHECK_SILU_MUL_BACKWARD] = {"silu_mul_backward",
                                   LLAVA_OP_ELEMENTWISE,
                                   act_layout,
                                   act_prepare,
                                   act_run,
                                   act_ref,
                                   act_cost,
                                   shape_rows_cols,
                                   {{0, 3}, {1, 4}}},
    [OPCHECK_ROPE_FORWARD] = {"rope_forward", LLAVA_OP_ROPE, rope_layout, rope_prepare, rope_run, rope_ref, rope_cost,
                              rope_shape, NO_ALIAS},
    [OPCHECK_ROPE_BACKWARD] = {"rope_backward", LLAVA_OP_ROPE, rope_layout, rope_prepare, rope_run, rope_ref, rope_cost,
                               rope_shape, NO_ALIAS},
    [OPCHECK_ATTENTION_FORWARD] = {"attention_forward", LLAVA_OP_ATTENTION, attn_layout, attn_prepare, attn_run,
                                   attn_ref, attn_cost, attn_shape, NO_ALIAS},
    [OPCHECK_ATTENTION_BACKWARD] = {"attention_backward", LLAVA_OP_ATTENTION, attn_layout, attn_prepare, attn_run,
                                    attn_ref, attn_cost, attn_shape, NO_ALIAS},
    [OPCHECK_EMBEDDING_FORWARD] = {"embedding_forward", LLAVA_OP_EMBEDDING, emb_fwd_layout, emb_fwd_prepare,
                                   emb_fwd_run, emb_fwd_ref, emb_fwd_cost, emb_shape, NO_ALIAS},
    [OPCHECK_EMBEDDING_BACKWARD] = {"embedding_backward", LLAVA_OP_EMBEDDING, emb_bwd_layout, emb_bwd_prepare,
                                    emb_bwd_run, emb_bwd_ref, emb_bwd_cost, emb_shape, NO_ALIAS},
    [OPCHECK_SCATTER_ROWS] = {"scatter_rows", LLAVA_OP_ROWS, rows_layout, rows_prepare, rows_run, rows_ref, rows_cost,
                              rows_shape, NO_ALIAS},
    [OPCHECK_GATHER_ROWS] = {"gather_rows", LLAVA_OP_ROWS, rows_layout, rows_prepare, rows_run, rows_ref, rows_cost,
                             rows_shape, NO_ALIAS},
    // dlogits over the logits: the training loop's way.
    [OPCHECK_CROSS_ENTROPY] = {"cross_entropy",
                               LLAVA_OP_CROSS_ENTROPY,
                               ce_layout,
                               ce_prepare,
                               ce_run,
                               ce_ref,
                               ce_cost,
                               ce_shape,
                               {{1, 2}, {-1, -1}}},
    [OPCHECK_ADAMW] = {"adamw", LLAVA_OP_ADAMW, adamw_layout, NULL, adamw_run, NULL, adamw_cost, shape_n, NO_ALIAS},
    [OPCHECK_GRAD_SQ_SUM] = {"grad_sq_sum", LLAVA_OP_ADAMW, gss_layout, NULL, gss_run, NULL, gss_cost, shape_n,
                             NO_ALIAS},
    [OPCHECK_ADD] = {"add",
                     LLAVA_OP_ELEMENTWISE,
                     add_layout,
                     NULL,
                     add_run,
                     add_ref,
                     add_cost,
                     shape_rows_cols,
                     {{0, 1}, {-1, -1}}},
    [OPCHECK_ADD_INPLACE] = {"add_inplace", LLAVA_OP_ELEMENTWISE, add_layout, NULL, add_run, add_ref, add_cost,
                             shape_rows_cols, NO_ALIAS},
    [OPCHECK_DROPOUT_SCALE] = {"dropout_scale",
                               LLAVA_OP_ELEMENTWISE,
                               dropout_layout,
                               NULL,
                               dropout_run,
                               dropout_ref,
                               dropout_cost,
                               shape_rows_cols,
                               {{0, 1}, {-1, -1}}},
    [OPCHECK_ATTENTION_DECODE] = {"attention_decode", LLAVA_OP_ATTENTION_DECODE, decode_layout, decode_prepare,
                                  decode_run, decode_ref, decode_cost, decode_shape, NO_ALIAS},
    [OPCHECK_GRID_POOL] = {"grid_pool", LLAVA_OP_GRID_POOL, pool_layout, pool_prepare, pool_run, pool_ref, pool_cost,
                           pool_shape, NO_ALIAS},
    [OPCHECK_GELU_TANH_BACKWARD] = {"gelu_tanh_backward",
                                    LLAVA_OP_ELEMENTWISE,
                                    act_layout,
                                    act_prepare,
                                    act_run,
                                    act_ref,
                                    act_cost,
                                    shape_rows_cols,
                                    {{0, 1}, {-1, -1}}},
    [OPCHECK_GRID_POOL_BACKWARD] = {"grid_pool_backward", LLAVA_OP_GRID_POOL, pool_bwd_layout, pool_prepare,
                                    pool_bwd_run, pool_bwd_ref, pool_bwd_cost, pool_shape, NO_ALIAS},
    [OPCHECK_RESIZE_BILINEAR] = {"resize_bilinear", LLAVA_OP_RESIZE, resize_layout, NULL, resize_run, resize_ref,
                                 resize_cost, resize_shape, NO_ALIAS},
    [OPCHECK_RESIZE_BILINEAR_BACKWARD] = {"resize_bilinear_backward", LLAVA_OP_RESIZE, resize_bwd_layout, NULL,
                                          resize_bwd_run, resize_bwd_ref, resize_cost, resize_shape, NO_ALIAS},
};
