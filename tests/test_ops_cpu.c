// The CPU backend (kernels/cpu/) op by op: every forward against an fp64 reference written here
// from the spec's formulas (spec/model-and-formats.md §1-2), every backward against central finite
// differences of that fp64 reference, plus the contracts of kernels/ops.h (overwrite vs accumulate,
// ignore index, aliasing, padding rows, sequence isolation). Sizes are odd on purpose so that no
// loop bound or stride can hide behind a power of two.
//
// Tolerances, and why:
//   forward, ||ours - ref|| / ||ref|| <= 1e-6. Our outputs are fp32: one rounding costs 6e-8, and
//     the fp32 sgemm dot products (<= 257 terms here) add a few 1e-7 at worst. A wrong formula,
//     index or stride gives 1e-3 or more.
//   backward, ||ours - fd|| / ||fd|| <= 1e-5. The finite differences run on the fp64 reference with
//     h = 1e-5: truncation error ~h^2 = 1e-10 and cancellation ~1e-16 |L| / h ~ 1e-9, far below
//     the fp32 rounding of our analytic gradient (~1e-7, several fp32 steps and fp32 GEMMs).
//   elementwise activations, max relative error per element <= 1.2e-7 (one ulp): they are computed
//     in fp64 and rounded once, so they must be within half an ulp of the fp64 formula.
//   copies, gathers, embeddings, adds: exact (bit-for-bit), since they do one fp32 add at most.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/ops.h"
#include "check.h"

#define TOL_FWD 1e-6
#define TOL_BWD 1e-5
#define TOL_ULP 1.2e-7
#define FD_H 1e-5

static llava_backend *be;
static const llava_ops *ops;

// ---------------------------------------------------------------------------------------------
// Random inputs (splitmix64: the same numbers on every machine), never exactly zero so that no
// term of a gradient can vanish by accident.

static uint64_t rng_state = 0x853c49e6748fea9bull;

static double rnd01(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static float *rand_f(size_t n, double lo, double hi) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        do x[i] = (float)(lo + (hi - lo) * rnd01());
        while (fabsf(x[i]) < 1e-3f);
    }
    return x;
}

// Outputs an op must overwrite start as NaN: anything it forgets to write shows up in the checks.
static float *nan_f(size_t n) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

static float *copy_f(const float *x, size_t n) {
    float *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static double *to_d(const float *x, size_t n) {
    double *y = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

// ---------------------------------------------------------------------------------------------
// Comparisons. Each prints its number so the worst errors can be quoted, and counts a check.

static double rel_err(const float *got, const double *want, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return sqrt(num) / sqrt(den);  // NaN in got gives NaN, which fails every `<=`
}

// Largest per-element relative error, for elements whose reference exceeds `floor` in magnitude.
static double max_rel_err(const float *got, const double *want, size_t n, double floor) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(want[i]) <= floor) continue;
        double e = fabs(got[i] - want[i]) / fabs(want[i]);
        if (!(e <= worst)) worst = e;  // also catches NaN
    }
    return worst;
}

static void report(const char *op, const char *what, double err, double tol) {
    printf("  %-22s %-44s %.2e  (tol %.1e)\n", op, what, err, tol);
    CHECK(err <= tol, "%s %s: error %.3e above %.1e", op, what, err, tol);
}

static int same_bits(const void *a, const void *b, size_t n_floats) { return memcmp(a, b, n_floats * 4) == 0; }

// ---------------------------------------------------------------------------------------------
// Finite differences. A problem is an fp64 reference forward y = f(inputs) and a random cotangent
// dout; the loss is L = sum(dout .* y), whose gradient with respect to an input is exactly what
// the op's backward computes from dout.

typedef struct fd_problem fd_problem;
struct fd_problem {
    void (*forward)(const fd_problem *p, double *y);  // y (ny)
    size_t ny;
    double *dout;  // (ny)
    double *y;     // (ny) scratch
};

static double fd_loss(fd_problem *p) {
    p->forward(p, p->y);
    double L = 0.0;
    for (size_t i = 0; i < p->ny; i++) L += p->dout[i] * p->y[i];
    return L;
}

// dL/dx[i] for every element of x, one of the inputs the problem's forward reads.
static double *fd_grad(fd_problem *p, double *x, size_t n) {
    double *g = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + FD_H;
        double lp = fd_loss(p);
        x[i] = x0 - FD_H;
        double lm = fd_loss(p);
        x[i] = x0;
        g[i] = (lp - lm) / (2 * FD_H);
    }
    return g;
}

static void fd_init(fd_problem *p, void (*forward)(const fd_problem *, double *), size_t ny, float **dout_f) {
    p->forward = forward;
    p->ny = ny;
    *dout_f = rand_f(ny, -1, 1);
    p->dout = to_d(*dout_f, ny);
    p->y = xmalloc(ny * sizeof(double));
}

static void fd_free(fd_problem *p) {
    free(p->dout);
    free(p->y);
}

// ---------------------------------------------------------------------------------------------
// memory

static void test_memory(void) {
    enum { n = 1031 };
    float *a = ops->alloc(be, BUF_ACT, n);
    int zeros = 0;
    for (int i = 0; i < n; i++) zeros += a[i] == 0.0f;
    CHECK_EQ_INT(zeros, n);
    float *src = rand_f(n, -1, 1), *back = nan_f(n);
    ops->upload(be, BUF_ACT, a, src, n);
    ops->download(be, BUF_ACT, back, a, n);
    CHECK(same_bits(back, src, n), "upload/download round trip changed values");
    float *b = ops->alloc(be, BUF_PARAM, n);
    ops->copy(be, BUF_PARAM, b, a, n);
    CHECK(same_bits(b, src, n), "copy");
    ops->zero(be, BUF_ACT, a, n);
    zeros = 0;
    for (int i = 0; i < n; i++) zeros += a[i] == 0.0f;
    CHECK_EQ_INT(zeros, n);
    int32_t ids[5] = {3, -100, 32000, 0, 7}, *di = ops->alloc(be, BUF_I32, 5);
    ops->upload_i32(be, di, ids, 5);
    ops->sync(be);
    CHECK(memcmp(di, ids, sizeof ids) == 0, "upload_i32");
    printf("  %-22s %-44s exact\n", "memory", "alloc zeroed, up/download, copy, zero");
    ops->free(be, a);
    ops->free(be, b);
    ops->free(be, di);
    free(src);
    free(back);
}

// ---------------------------------------------------------------------------------------------
// linear: y = x W^T + b

typedef struct {
    fd_problem p;
    double *x, *W, *b;  // (N, K), (O, K), (O) or NULL
    int N, K, O;
} linear_problem;

static void ref_linear(double *y, const double *x, const double *W, const double *b, int N, int K, int O) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double s = b ? b[o] : 0.0;
            for (int k = 0; k < K; k++) s += x[(size_t)n * K + k] * W[(size_t)o * K + k];
            y[(size_t)n * O + o] = s;
        }
}

static void linear_fd_forward(const fd_problem *p, double *y) {
    const linear_problem *l = (const linear_problem *)p;
    ref_linear(y, l->x, l->W, l->b, l->N, l->K, l->O);
}

static void test_linear(void) {
    // Forward at a size where OpenBLAS blocks and threads, with and without bias.
    {
        enum { N = 131, K = 257, O = 67 };
        float *x = rand_f(N * K, -1, 1), *W = rand_f(O * K, -1, 1), *b = rand_f(O, -1, 1), *y = nan_f(N * O);
        double *xd = to_d(x, N * K), *Wd = to_d(W, O * K), *bd = to_d(b, O), *yd = xmalloc(N * O * sizeof(double));
        ops->linear_forward(be, y, x, W, b, N, K, O);
        ref_linear(yd, xd, Wd, bd, N, K, O);
        report("linear_forward", "131x257 -> 67, bias", rel_err(y, yd, N * O), TOL_FWD);
        ops->linear_forward(be, y, x, W, NULL, N, K, O);
        ref_linear(yd, xd, Wd, NULL, N, K, O);
        report("linear_forward", "131x257 -> 67, no bias", rel_err(y, yd, N * O), TOL_FWD);
        // No rows (a batch without images reaches the projector with N = 0): nothing is written.
        float *before = copy_f(y, N * O);
        ops->linear_forward(be, y, x, W, b, 0, K, O);
        CHECK(same_bits(y, before, N * O), "linear_forward with N = 0 wrote output");
        free(before);
        free(x), free(W), free(b), free(y), free(xd), free(Wd), free(bd), free(yd);
    }
    enum { N = 7, K = 37, O = 29 };
    float *x = rand_f(N * K, -1, 1), *W = rand_f(O * K, -1, 1), *b = rand_f(O, -1, 1), *dout;
    linear_problem lp = {.x = to_d(x, N * K), .W = to_d(W, O * K), .b = to_d(b, O), .N = N, .K = K, .O = O};
    fd_init(&lp.p, linear_fd_forward, N * O, &dout);
    float *y = nan_f(N * O);
    ops->linear_forward(be, y, x, W, b, N, K, O);
    linear_fd_forward(&lp.p, lp.p.y);
    report("linear_forward", "7x37 -> 29, bias", rel_err(y, lp.p.y, N * O), TOL_FWD);

    double *gx = fd_grad(&lp.p, lp.x, N * K), *gW = fd_grad(&lp.p, lp.W, O * K), *gb = fd_grad(&lp.p, lp.b, O);
    float *dx = nan_f(N * K), *dW = ops->alloc(be, BUF_GRAD, O * K), *db = ops->alloc(be, BUF_GRAD, O);
    ops->linear_backward_input(be, dx, dout, W, N, K, O);
    ops->linear_backward_weight(be, dW, dout, x, N, K, O);
    ops->linear_backward_bias(be, db, dout, N, O);
    report("linear_backward_input", "dx vs finite differences", rel_err(dx, gx, N * K), TOL_BWD);
    report("linear_backward_weight", "dW vs finite differences", rel_err(dW, gW, O * K), TOL_BWD);
    report("linear_backward_bias", "db vs finite differences", rel_err(db, gb, O), TOL_BWD);
    // GRAD outputs accumulate: a second call doubles them; dx is overwritten, so it stays.
    ops->linear_backward_input(be, dx, dout, W, N, K, O);
    ops->linear_backward_weight(be, dW, dout, x, N, K, O);
    ops->linear_backward_bias(be, db, dout, N, O);
    for (int i = 0; i < O * K; i++) gW[i] *= 2;
    for (int i = 0; i < O; i++) gb[i] *= 2;
    report("linear_backward_input", "dx after a second call (overwrite)", rel_err(dx, gx, N * K), TOL_BWD);
    report("linear_backward_weight", "dW after a second call (accumulate)", rel_err(dW, gW, O * K), TOL_BWD);
    report("linear_backward_bias", "db after a second call (accumulate)", rel_err(db, gb, O), TOL_BWD);
    fd_free(&lp.p);
    free(x), free(W), free(b), free(dout), free(y), free(dx), free(gx), free(gW), free(gb);
    free(lp.x), free(lp.W), free(lp.b);
    ops->free(be, dW), ops->free(be, db);
}

// ---------------------------------------------------------------------------------------------
// patch_unfold and clip_embed: pure data movement, checked exactly against the opposite loop order
// (walk the pixels and place each one) from the layout ops.h documents.

static void test_patch_unfold(int B, int Cin, int H, int W, int P) {
    int gh = H / P, gw = W / P, K = Cin * P * P;
    size_t npix = (size_t)B * Cin * H * W, nout = (size_t)B * gh * gw * K;
    float *pix = rand_f(npix, -2, 2), *out = nan_f(nout), *want = nan_f(nout);
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < Cin; ch++)
            for (int yy = 0; yy < H; yy++)
                for (int xx = 0; xx < W; xx++) {
                    size_t row = (size_t)b * gh * gw + (size_t)(yy / P) * gw + xx / P;
                    size_t col = ((size_t)ch * P + yy % P) * P + xx % P;
                    want[row * K + col] = pix[(((size_t)b * Cin + ch) * H + yy) * W + xx];
                }
    ops->patch_unfold(be, out, pix, B, Cin, H, W, P);
    char what[64];
    snprintf(what, sizeof what, "B=%d Cin=%d %dx%d P=%d", B, Cin, H, W, P);
    CHECK(same_bits(out, want, nout), "patch_unfold %s differs from the Conv2d layout", what);
    printf("  %-22s %-44s exact\n", "patch_unfold", what);
    free(pix), free(out), free(want);
}

static void test_clip_embed(void) {
    enum { B = 2, N = 5, C = 37 };
    float *patches = rand_f(B * N * C, -1, 1), *cls = rand_f(C, -1, 1), *pos = rand_f((N + 1) * C, -1, 1);
    float *out = nan_f(B * (N + 1) * C), *want = nan_f(B * (N + 1) * C);
    for (int b = 0; b < B; b++)
        for (int n = 0; n <= N; n++)
            for (int c = 0; c < C; c++) {
                float src = n == 0 ? cls[c] : patches[((size_t)b * N + n - 1) * C + c];
                want[((size_t)b * (N + 1) + n) * C + c] = src + pos[(size_t)n * C + c];
            }
    ops->clip_embed(be, out, patches, cls, pos, B, N, C);
    CHECK(same_bits(out, want, B * (N + 1) * C), "clip_embed");
    printf("  %-22s %-44s exact\n", "clip_embed", "B=2 N=5 C=37");
    free(patches), free(cls), free(pos), free(out), free(want);
}

// ---------------------------------------------------------------------------------------------
// LayerNorm and RMSNorm

typedef struct {
    fd_problem p;
    double *x, *w, *b;  // (N, C), (C), (C); b NULL for RMSNorm
    int N, C;
    double eps;
} norm_problem;

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

static void norm_fd_forward(const fd_problem *p, double *y) {
    const norm_problem *l = (const norm_problem *)p;
    if (l->b)
        ref_layernorm(y, NULL, NULL, l->x, l->w, l->b, l->N, l->C, l->eps);
    else
        ref_rmsnorm(y, NULL, l->x, l->w, l->N, l->C, l->eps);
}

static void test_layernorm(void) {
    enum { N = 7, C = 37 };
    const float eps = 1e-5f;
    // An offset of 3 puts the mean far from zero, where a one-pass variance would cancel.
    float *x = rand_f(N * C, 2, 4), *w = rand_f(C, -2, 2), *b = rand_f(C, -1, 1), *dout;
    norm_problem np = {.x = to_d(x, N * C), .w = to_d(w, C), .b = to_d(b, C), .N = N, .C = C, .eps = eps};
    fd_init(&np.p, norm_fd_forward, N * C, &dout);
    float *y = nan_f(N * C), *mean = nan_f(N), *rstd = nan_f(N);
    double mean_d[N], rstd_d[N];
    ops->layernorm_forward(be, y, mean, rstd, x, w, b, N, C, eps);
    ref_layernorm(np.p.y, mean_d, rstd_d, np.x, np.w, np.b, N, C, eps);
    report("layernorm_forward", "out, N=7 C=37, mean 3", rel_err(y, np.p.y, N * C), TOL_FWD);
    report("layernorm_forward", "mean", max_rel_err(mean, mean_d, N, 0), TOL_FWD);
    report("layernorm_forward", "rstd", max_rel_err(rstd, rstd_d, N, 0), TOL_FWD);

    double *gx = fd_grad(&np.p, np.x, N * C), *gw = fd_grad(&np.p, np.w, C), *gb = fd_grad(&np.p, np.b, C);
    float *dx = nan_f(N * C), *dw = ops->alloc(be, BUF_GRAD, C), *db = ops->alloc(be, BUF_GRAD, C);
    ops->layernorm_backward(be, dx, dw, db, dout, x, w, mean, rstd, N, C);
    report("layernorm_backward", "dx vs finite differences", rel_err(dx, gx, N * C), TOL_BWD);
    report("layernorm_backward", "dw vs finite differences", rel_err(dw, gw, C), TOL_BWD);
    report("layernorm_backward", "db vs finite differences", rel_err(db, gb, C), TOL_BWD);
    float *dx_first = copy_f(dx, N * C);
    ops->layernorm_backward(be, dx, dw, db, dout, x, w, mean, rstd, N, C);
    for (int c = 0; c < C; c++) {
        gw[c] *= 2;
        gb[c] *= 2;
    }
    report("layernorm_backward", "dw after a second call (accumulate)", rel_err(dw, gw, C), TOL_BWD);
    report("layernorm_backward", "db after a second call (accumulate)", rel_err(db, gb, C), TOL_BWD);
    CHECK(same_bits(dx, dx_first, N * C), "layernorm dx is not overwritten identically");
    // A frozen LayerNorm passes NULL for dw and db: dx must not change.
    float *dx_frozen = nan_f(N * C);
    ops->layernorm_backward(be, dx_frozen, NULL, NULL, dout, x, w, mean, rstd, N, C);
    CHECK(same_bits(dx_frozen, dx_first, N * C), "layernorm dx differs when dw, db are NULL");

    fd_free(&np.p);
    free(x), free(w), free(b), free(dout), free(y), free(mean), free(rstd), free(dx), free(dx_first), free(dx_frozen);
    free(gx), free(gw), free(gb), free(np.x), free(np.w), free(np.b);
    ops->free(be, dw), ops->free(be, db);
}

static void test_rmsnorm(void) {
    enum { N = 7, C = 37 };
    const float eps = 1e-5f;
    float *x = rand_f(N * C, -2, 2), *w = rand_f(C, -2, 2), *dout;
    norm_problem np = {.x = to_d(x, N * C), .w = to_d(w, C), .N = N, .C = C, .eps = eps};
    fd_init(&np.p, norm_fd_forward, N * C, &dout);
    float *y = nan_f(N * C), *rstd = nan_f(N);
    double rstd_d[N];
    ops->rmsnorm_forward(be, y, rstd, x, w, N, C, eps);
    ref_rmsnorm(np.p.y, rstd_d, np.x, np.w, N, C, eps);
    report("rmsnorm_forward", "out, N=7 C=37", rel_err(y, np.p.y, N * C), TOL_FWD);
    report("rmsnorm_forward", "rstd", max_rel_err(rstd, rstd_d, N, 0), TOL_FWD);
    // HF order (spec §2.3): out = w * fp32(x * rstd), two fp32 products given our rstd.
    int hf_order = 1;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            float t = x[n * C + c] * rstd[n];
            hf_order &= y[n * C + c] == w[c] * t;
        }
    CHECK(hf_order, "rmsnorm output is not w * fp32(x * rstd)");

    double *gx = fd_grad(&np.p, np.x, N * C), *gw = fd_grad(&np.p, np.w, C);
    float *dx = nan_f(N * C), *dw = ops->alloc(be, BUF_GRAD, C);
    ops->rmsnorm_backward(be, dx, dw, dout, x, w, rstd, N, C);
    report("rmsnorm_backward", "dx vs finite differences", rel_err(dx, gx, N * C), TOL_BWD);
    report("rmsnorm_backward", "dw vs finite differences", rel_err(dw, gw, C), TOL_BWD);
    float *dx_first = copy_f(dx, N * C);
    ops->rmsnorm_backward(be, dx, dw, dout, x, w, rstd, N, C);
    for (int c = 0; c < C; c++) gw[c] *= 2;
    report("rmsnorm_backward", "dw after a second call (accumulate)", rel_err(dw, gw, C), TOL_BWD);
    CHECK(same_bits(dx, dx_first, N * C), "rmsnorm dx is not overwritten identically");
    float *dx_frozen = nan_f(N * C);
    ops->rmsnorm_backward(be, dx_frozen, NULL, dout, x, w, rstd, N, C);
    CHECK(same_bits(dx_frozen, dx_first, N * C), "rmsnorm dx differs when dw is NULL");

    fd_free(&np.p);
    free(x), free(w), free(dout), free(y), free(rstd), free(dx), free(dx_first), free(dx_frozen);
    free(gx), free(gw), free(np.x), free(np.w);
    ops->free(be, dw);
}

// ---------------------------------------------------------------------------------------------
// Elementwise activations. Inputs span [-5, 5] plus the tails, where exp and erf lose precision
// first if computed carelessly. (Below -5 the spec's 1 + erf(x / sqrt 2), which the reference
// evaluates literally, itself loses more than 1e-8 relative in fp64.)

enum { ACT_QUICK_GELU, ACT_GELU, ACT_SILU_MUL };

typedef struct {
    fd_problem p;
    int kind;
    double *x, *up;  // (n); up only for silu_mul
} act_problem;

static void act_fd_forward(const fd_problem *p, double *y) {
    const act_problem *a = (const act_problem *)p;
    for (size_t i = 0; i < p->ny; i++) {
        double x = a->x[i];
        switch (a->kind) {
        case ACT_QUICK_GELU: y[i] = x / (1.0 + exp(-1.702 * x)); break;
        case ACT_GELU: y[i] = 0.5 * x * (1.0 + erf(x / sqrt(2.0))); break;
        default: y[i] = x / (1.0 + exp(-x)) * a->up[i]; break;
        }
    }
}

static void test_activation(int kind) {
    enum { n = 1031 };
    static const char *names[] = {"quick_gelu", "gelu", "silu_mul"};
    char fwd[32], bwd[32];
    snprintf(fwd, sizeof fwd, "%s_forward", names[kind]);
    snprintf(bwd, sizeof bwd, "%s_backward", names[kind]);
    float *x = rand_f(n, -5, 5), *up = rand_f(n, -2, 2), *dout;
    const float tails[] = {-5.0f, -4.5f, -3.0f, 3.0f, 8.0f, 12.0f};
    memcpy(x, tails, sizeof tails);
    act_problem ap = {.kind = kind, .x = to_d(x, n), .up = to_d(up, n)};
    fd_init(&ap.p, act_fd_forward, n, &dout);
    float *y = nan_f(n);
    if (kind == ACT_QUICK_GELU) ops->quick_gelu_forward(be, y, x, n);
    if (kind == ACT_GELU) ops->gelu_forward(be, y, x, n);
    if (kind == ACT_SILU_MUL) ops->silu_mul_forward(be, y, x, up, n);
    act_fd_forward(&ap.p, ap.p.y);
    report(fwd, "max relative error per element, n=1031", max_rel_err(y, ap.p.y, n, 1e-30), TOL_ULP);

    double *gx = fd_grad(&ap.p, ap.x, n);
    float *dx = nan_f(n);
    if (kind == ACT_QUICK_GELU) ops->quick_gelu_backward(be, dx, dout, x, n);
    if (kind == ACT_GELU) ops->gelu_backward(be, dx, dout, x, n);
    if (kind == ACT_SILU_MUL) {
        float *dup = nan_f(n);
        double *gup = fd_grad(&ap.p, ap.up, n);
        ops->silu_mul_backward(be, dx, dup, dout, x, up, n);
        report(bwd, "dup vs finite differences", rel_err(dup, gup, n), TOL_BWD);
        // In place: dgate over gate and dup over up give the same bits.
        float *g2 = copy_f(x, n), *u2 = copy_f(up, n);
        ops->silu_mul_backward(be, g2, u2, dout, g2, u2, n);
        CHECK(same_bits(g2, dx, n) && same_bits(u2, dup, n), "silu_mul_backward in place differs");
        free(dup), free(gup), free(g2), free(u2);
    }
    report(bwd, kind == ACT_SILU_MUL ? "dgate vs finite differences" : "dx vs finite differences", rel_err(dx, gx, n),
           TOL_BWD);
    fd_free(&ap.p);
    free(x), free(up), free(dout), free(y), free(dx), free(gx), free(ap.x), free(ap.up);
}

// ---------------------------------------------------------------------------------------------
// RoPE. The reference follows HF's fp32 steps for the angle (spec §2.4: fp32 inv_freq, fp32
// product pos * inv_freq) but does each step in fp64 and rounds once, and then rotates in fp64.

typedef struct {
    fd_problem p;
    double *x;  // (T, H*D)
    const int32_t *pos;
    int T, H, D;
    float theta;
} rope_problem;

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

static void rope_fd_forward(const fd_problem *p, double *y) {
    const rope_problem *r = (const rope_problem *)p;
    ref_rope(y, r->x, r->pos, r->T, r->H, r->D, r->theta);
}

static void test_rope(int D) {
    // Three packed sequences (lengths 5, 6, 2); the last sits at the end of a 4096 context,
    // where fp32 angles are the least precise.
    enum { T = 13, H = 3 };
    int32_t pos[T] = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 4094, 4095};
    const float theta = 10000.0f;
    size_t n = (size_t)T * H * D;
    float *x = rand_f(n, -1, 1), *dout;
    // Sequence 2 repeats sequence 1's first five tokens: same positions, so same outputs.
    memcpy(x + (size_t)5 * H * D, x, (size_t)5 * H * D * sizeof(float));
    rope_problem rp = {.x = to_d(x, n), .pos = pos, .T = T, .H = H, .D = D, .theta = theta};
    fd_init(&rp.p, rope_fd_forward, n, &dout);
    float *y = copy_f(x, n);
    ops->rope_forward(be, y, pos, T, H, D, theta);
    rope_fd_forward(&rp.p, rp.p.y);
    char what[64];
    snprintf(what, sizeof what, "D=%d H=3, positions to 4095", D);
    report("rope_forward", what, rel_err(y, rp.p.y, n), TOL_FWD);
    CHECK(same_bits(y, x, (size_t)H * D) && same_bits(y + (size_t)5 * H * D, x, (size_t)H * D),
          "position 0 must leave the token unchanged");
    CHECK(same_bits(y + (size_t)5 * H * D, y, (size_t)5 * H * D), "positions restarting per sequence");
    CHECK(!same_bits(y + (size_t)H * D, x + (size_t)H * D, (size_t)H * D), "position 1 must rotate");

    double *gx = fd_grad(&rp.p, rp.x, n);
    float *dx = copy_f(dout, n);
    ops->rope_backward(be, dx, pos, T, H, D, theta);
    report("rope_backward", "dx vs finite differences", rel_err(dx, gx, n), TOL_BWD);
    // A rotation's transpose is its inverse: backward(forward(x)) = x.
    double *xd = to_d(x, n);
    ops->rope_backward(be, y, pos, T, H, D, theta);
    report("rope_backward", "backward(forward(x)) = x", rel_err(y, xd, n), TOL_FWD);
    fd_free(&rp.p);
    free(x), free(dout), free(y), free(dx), free(gx), free(xd), free(rp.x);
}

// Spec §2.4's inv_freq values for theta = 1e4, D = 128, read back from the rotation at position 1
// of unit vectors: row i holds e_i, so out[i] = cos(inv_freq[i]) and out[i + 64] = sin(...).
static void test_rope_inv_freq(void) {
    enum { D = 128, half = 64 };
    float *x = ops->alloc(be, BUF_ACT, (size_t)half * D);
    int32_t pos[half];
    for (int i = 0; i < half; i++) {
        x[i * D + i] = 1.0f;
        pos[i] = 1;
    }
    ops->rope_forward(be, x, pos, half, 1, D, 10000.0f);
    double f[half];
    for (int i = 0; i < half; i++) f[i] = atan2(x[i * D + i + half], x[i * D + i]);
    // Spec values have 7-8 significant digits; fp32 inv_freq carries ~6e-8 relative.
    CHECK_NEAR(f[0], 1.0, 1e-7);
    CHECK_NEAR(f[1], 0.8659643, 1e-7);
    CHECK_NEAR(f[2], 0.7498942, 1e-7);
    CHECK_NEAR(f[63] / 1.1547820e-4, 1.0, 1e-6);
    printf("  %-22s %-44s %.7f %.7f %.7e\n", "rope_forward", "inv_freq[1], [2], [63] (spec 2.4)", f[1], f[2], f[63]);
    ops->free(be, x);
}

// ---------------------------------------------------------------------------------------------
// Attention over packed sequences.

typedef struct {
    fd_problem p;
    double *q, *k, *v;  // (T, Hq*D), (T, Hkv*D), (T, Hkv*D)
    const int32_t *cu;
    int n_seq, T, Hq, Hkv, D, causal;
    double scale;
} attn_problem;

// Straight from the definition: per query row and head, softmax over the visible keys of its own
// sequence of scale * q.k, then the weighted sum of values. lse (Hq, T) may be NULL.
static void ref_attention(double *out, double *lse, const attn_problem *a) {
    int group = a->Hq / a->Hkv, qs = a->Hq * a->D, ks = a->Hkv * a->D, D = a->D;
    double *sc = xmalloc((size_t)a->T * sizeof(double));
    for (int s = 0; s < a->n_seq; s++)
        for (int i = a->cu[s]; i < a->cu[s + 1]; i++)
            for (int h = 0; h < a->Hq; h++) {
                const double *qi = a->q + (size_t)i * qs + (size_t)h * D;
                int jend = a->causal ? i + 1 : a->cu[s + 1], kvh = h / group;
                double m = -INFINITY;
                for (int j = a->cu[s]; j < jend; j++) {
                    const double *kj = a->k + (size_t)j * ks + (size_t)kvh * D;
                    double dot = 0.0;
                    for (int d = 0; d < D; d++) dot += qi[d] * kj[d];
                    sc[j] = a->scale * dot;
                    m = fmax(m, sc[j]);
                }
                double sum = 0.0;
                for (int j = a->cu[s]; j < jend; j++) sum += exp(sc[j] - m);
                double l = m + log(sum);
                double *oi = out + (size_t)i * qs + (size_t)h * D;
                for (int d = 0; d < D; d++) oi[d] = 0.0;
                for (int j = a->cu[s]; j < jend; j++) {
                    double pj = exp(sc[j] - l);
                    const double *vj = a->v + (size_t)j * ks + (size_t)kvh * D;
                    for (int d = 0; d < D; d++) oi[d] += pj * vj[d];
                }
                if (lse) lse[(size_t)h * a->T + i] = l;
            }
    free(sc);
}

static void attn_fd_forward(const fd_problem *p, double *y) { ref_attention(y, NULL, (const attn_problem *)p); }

static void attention_forward_f(float *out, float *lse, const float *q, const float *k, const float *v,
                                const attn_problem *a) {
    ops->attention_forward(be, out, lse, q, k, v, a->cu, a->n_seq, a->T, a->Hq, a->Hkv, a->D, (float)a->scale,
                           a->causal);
}

// with_fd: also check the backward against finite differences (small shapes only: each of the
// 3 T H D inputs costs two reference forwards).
static void test_attention(const int32_t *cu, int n_seq, int Hq, int Hkv, int D, float scale, int causal, int with_fd) {
    int T = cu[n_seq];
    size_t nq = (size_t)T * Hq * D, nk = (size_t)T * Hkv * D;
    // Scores of a few units: peaked enough that a wrong mask or scale shows, not one-hot.
    float *q = rand_f(nq, -2, 2), *k = rand_f(nk, -2, 2), *v = rand_f(nk, -1, 1), *dout;
    attn_problem ap = {.q = to_d(q, nq), .k = to_d(k, nk), .v = to_d(v, nk), .cu = cu, .n_seq = n_seq, .T = T,
                       .Hq = Hq, .Hkv = Hkv, .D = D, .causal = causal, .scale = scale};
    fd_init(&ap.p, attn_fd_forward, nq, &dout);
    float *out = nan_f(nq), *lse = nan_f((size_t)Hq * T);
    double *lse_d = xmalloc((size_t)Hq * T * sizeof(double));
    attention_forward_f(out, lse, q, k, v, &ap);
    ref_attention(ap.p.y, lse_d, &ap);
    char what[96];
    int len = snprintf(what, sizeof what, "%s Hq=%d Hkv=%d D=%d seqs", causal ? "causal" : "full", Hq, Hkv, D);
    for (int s = 0; s < n_seq && len < (int)sizeof what - 8; s++)
        len += snprintf(what + len, sizeof what - len, " %d", cu[s + 1] - cu[s]);
    report("attention_forward", what, rel_err(out, ap.p.y, nq), TOL_FWD);
    // lse is a score (fp32 dot products): compare as a whole, since single values cross zero.
    report("attention_forward", "lse", rel_err(lse, lse_d, (size_t)Hq * T), TOL_FWD);

    // Isolation: new keys, values and queries for sequence 1 change nothing in the others, and
    // under the causal mask a new last token changes no earlier row of its sequence.
    {
        float *q2 = copy_f(q, nq), *k2 = copy_f(k, nk), *v2 = copy_f(v, nk), *out2 = nan_f(nq);
        float *lse2 = nan_f((size_t)Hq * T);
        for (int t = cu[1]; t < cu[2]; t++) {
            for (int c = 0; c < Hq * D; c++) q2[(size_t)t * Hq * D + c] += 0.5f;
            for (int c = 0; c < Hkv * D; c++) {
                k2[(size_t)t * Hkv * D + c] *= -1.5f;
                v2[(size_t)t * Hkv * D + c] += 1.0f;
            }
        }
        attention_forward_f(out2, lse2, q2, k2, v2, &ap);
        size_t a0 = (size_t)cu[1] * Hq * D, a1 = (size_t)cu[2] * Hq * D;
        CHECK(same_bits(out2, out, a0) && same_bits(out2 + a1, out + a1, nq - a1),
              "changing sequence 1 changed another sequence's output");
        CHECK(!same_bits(out2 + a0, out + a0, a1 - a0), "changing sequence 1 left its output unchanged");
        int lse_kept = 1;
        for (int h = 0; h < Hq; h++)
            for (int t = 0; t < T; t++)
                if (t < cu[1] || t >= cu[2]) lse_kept &= lse2[(size_t)h * T + t] == lse[(size_t)h * T + t];
        CHECK(lse_kept, "changing sequence 1 changed another sequence's lse");
        if (causal) {
            int last = cu[n_seq] - 1, first = cu[n_seq - 1];
            memcpy(k2, k, nk * sizeof(float));
            memcpy(v2, v, nk * sizeof(float));
            memcpy(q2, q, nq * sizeof(float));
            for (int c = 0; c < Hkv * D; c++) {
                k2[(size_t)last * Hkv * D + c] += 1.0f;
                v2[(size_t)last * Hkv * D + c] -= 1.0f;
            }
            attention_forward_f(out2, lse2, q2, k2, v2, &ap);
            CHECK(same_bits(out2, out, (size_t)last * Hq * D), "a future key changed an earlier row");
            size_t at = (size_t)last * Hq * D;
            CHECK(last == first || !same_bits(out2 + at, out + at, (size_t)Hq * D), "the last row ignores its own key");
        }
        free(q2), free(k2), free(v2), free(out2), free(lse2);
    }

    if (with_fd) {
        double *gq = fd_grad(&ap.p, ap.q, nq), *gk = fd_grad(&ap.p, ap.k, nk), *gv = fd_grad(&ap.p, ap.v, nk);
        float *dq = nan_f(nq), *dk = nan_f(nk), *dv = nan_f(nk);
        ops->attention_backward(be, dq, dk, dv, dout, q, k, v, out, lse, cu, n_seq, T, Hq, Hkv, D, scale, causal);
        report("attention_backward", "dq vs finite differences", rel_err(dq, gq, nq), TOL_BWD);
        report("attention_backward", "dk vs finite differences", rel_err(dk, gk, nk), TOL_BWD);
        report("attention_backward", "dv vs finite differences", rel_err(dv, gv, nk), TOL_BWD);
        // Overwrite, not accumulate, and the same bits on a second call.
        float *dq2 = copy_f(dq, nq), *dk2 = copy_f(dk, nk), *dv2 = copy_f(dv, nk);
        ops->attention_backward(be, dq2, dk2, dv2, dout, q, k, v, out, lse, cu, n_seq, T, Hq, Hkv, D, scale, causal);
        CHECK(same_bits(dq2, dq, nq) && same_bits(dk2, dk, nk) && same_bits(dv2, dv, nk),
              "attention_backward is not a deterministic overwrite");
        free(gq), free(gk), free(gv), free(dq), free(dk), free(dv), free(dq2), free(dk2), free(dv2);
    }
    fd_free(&ap.p);
    free(q), free(k), free(v), free(dout), free(out), free(lse), free(lse_d), free(ap.q), free(ap.k), free(ap.v);
}

// ---------------------------------------------------------------------------------------------
// Token embeddings, with the ids the model produces: image placeholders outside [0, V), negative
// ids, the padding row, repeated tokens.

typedef struct {
    fd_problem p;
    double *table;  // (V, C)
    const int32_t *ids;
    int T, C, V;
} embed_problem;

static void embed_fd_forward(const fd_problem *p, double *y) {
    const embed_problem *e = (const embed_problem *)p;
    for (int t = 0; t < e->T; t++)
        for (int c = 0; c < e->C; c++)
            y[(size_t)t * e->C + c] = e->ids[t] >= 0 && e->ids[t] < e->V ? e->table[(size_t)e->ids[t] * e->C + c] : 0.0;
}

static void test_embedding(void) {
    enum { T = 13, C = 37, V = 11, PAD = 1 };
    int32_t ids[T] = {3, 7, PAD, 3, V, -1, 10, 0, 3, PAD, 32000, 5, -200};
    float *table = rand_f(V * C, -1, 1), *dout;
    embed_problem ep = {.table = to_d(table, V * C), .ids = ids, .T = T, .C = C, .V = V};
    fd_init(&ep.p, embed_fd_forward, T * C, &dout);
    float *out = nan_f(T * C);
    ops->embedding_forward(be, out, ids, table, T, C, V);
    embed_fd_forward(&ep.p, ep.p.y);
    int exact = 1;
    for (int i = 0; i < T * C; i++) exact &= out[i] == (float)ep.p.y[i];
    CHECK(exact, "embedding_forward rows are not exact copies (zero rows for ids outside [0, V))");

    // Gradient: finite differences see the padding row used, but nn.Embedding never updates it.
    double *gt = fd_grad(&ep.p, ep.table, V * C);
    for (int c = 0; c < C; c++) gt[PAD * C + c] = 0.0;
    float *init = rand_f(V * C, -1, 1), *dtable = copy_f(init, V * C), *d2 = ops->alloc(be, BUF_GRAD, V * C);
    ops->embedding_backward(be, d2, dout, ids, T, C, V, PAD);
    report("embedding_backward", "dtable vs finite differences", rel_err(d2, gt, V * C), TOL_BWD);
    // Accumulates onto what is there; the padding row keeps its bits.
    ops->embedding_backward(be, dtable, dout, ids, T, C, V, PAD);
    ops->embedding_backward(be, dtable, dout, ids, T, C, V, PAD);
    double *want = xmalloc(V * C * sizeof(double));
    for (int i = 0; i < V * C; i++) want[i] = init[i] + 2 * gt[i];
    report("embedding_backward", "twice onto random contents (accumulate)", rel_err(dtable, want, V * C), TOL_BWD);
    CHECK(same_bits(dtable + PAD * C, init + PAD * C, C), "the padding row changed");
    // Without a padding index that row gets its gradient.
    ops->zero(be, BUF_GRAD, d2, V * C);
    ops->embedding_backward(be, d2, dout, ids, T, C, V, -1);
    double *row = xmalloc(C * sizeof(double));
    for (int c = 0; c < C; c++) row[c] = dout[2 * C + c] + (double)dout[9 * C + c];
    report("embedding_backward", "row 1 with padding_idx = -1", rel_err(d2 + PAD * C, row, C), TOL_FWD);
    fd_free(&ep.p);
    free(table), free(dout), free(out), free(gt), free(init), free(dtable), free(want), free(row), free(ep.table);
    ops->free(be, d2);
}

static void test_gather_scatter(void) {
    enum { rows = 13, n = 5, C = 37 };
    int32_t idx[n] = {12, 0, 7, 3, 8};
    float *src = rand_f(rows * C, -1, 1), *g = nan_f(n * C);
    ops->gather_rows(be, g, src, idx, n, C);
    int ok = 1;
    for (int i = 0; i < n; i++) ok &= same_bits(g + i * C, src + idx[i] * C, C);
    CHECK(ok, "gather_rows");
    float *dst = rand_f(rows * C, -1, 1), *dst0 = copy_f(dst, rows * C);
    ops->scatter_rows(be, dst, g, idx, n, C);
    int hit[rows] = {0};
    ok = 1;
    for (int i = 0; i < n; i++) hit[idx[i]] = 1;
    for (int r = 0; r < rows; r++) ok &= same_bits(dst + r * C, hit[r] ? src + r * C : dst0 + r * C, C);
    CHECK(ok, "scatter_rows: wrong rows written or untouched rows changed");
    printf("  %-22s %-44s exact\n", "gather/scatter_rows", "5 of 13 rows, C=37");
    free(src), free(g), free(dst), free(dst0);
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy with ignore index

typedef struct {
    fd_problem p;
    double *logits;  // (T, V)
    const int32_t *targets;
    int T, V;
    double scale;
} ce_problem;

static double ref_ce_row(const double *z, int y, int V) {
    double m = z[0], s = 0.0;
    for (int j = 1; j < V; j++) m = fmax(m, z[j]);
    for (int j = 0; j < V; j++) s += exp(z[j] - m);
    return m + log(s) - z[y];
}

// Loss (1): grad_scale * sum of the valid rows' losses, the quantity dlogits is the gradient of.
static void ce_fd_forward(const fd_problem *p, double *y) {
    const ce_problem *c = (const ce_problem *)p;
    y[0] = 0.0;
    for (int t = 0; t < c->T; t++)
        if (c->targets[t] >= 0) y[0] += c->scale * ref_ce_row(c->logits + (size_t)t * c->V, c->targets[t], c->V);
}

static void test_cross_entropy_chunks(void) {
    // V = 4099 spans three 2048-column chunks. Row 0: max in the last chunk (the running sum is
    // rescaled twice); row 1: max in the first chunk; row 2: all logits near 1000 (a naive exp
    // overflows); row 3: ignored; row 4: target in the last column; row 5: -1, also ignored.
    enum { T = 6, V = 4099 };
    int32_t targets[T] = {17, 2050, 4000, -100, V - 1, -1};
    float *z = rand_f((size_t)T * V, -4, 4);
    z[0 * V + 4097] = 30.0f;
    z[1 * V + 5] = 25.0f;
    for (int j = 0; j < V; j++) z[2 * V + j] += 1000.0f;
    double *zd = to_d(z, (size_t)T * V);
    double loss_d[T], *dz_d = xmalloc((size_t)T * V * sizeof(double));
    const float scale = 1.0f / 4;  // 1 / the number of valid rows, as the model passes it
    for (int t = 0; t < T; t++) {
        const double *zr = zd + (size_t)t * V;
        int y = targets[t];
        loss_d[t] = y < 0 ? 0.0 : ref_ce_row(zr, y, V);
        double lse = y < 0 ? 0.0 : loss_d[t] + zr[y];
        for (int j = 0; j < V; j++) dz_d[(size_t)t * V + j] = y < 0 ? 0.0 : (exp(zr[j] - lse) - (j == y)) * scale;
    }
    float *losses = nan_f(T), *dz = nan_f((size_t)T * V);
    ops->cross_entropy(be, losses, dz, z, targets, T, V, scale);
    report("cross_entropy", "losses, V=4099 (3 chunks), offsets to 1000", max_rel_err(losses, loss_d, T, 0), TOL_FWD);
    CHECK(losses[3] == 0.0f && losses[5] == 0.0f, "ignored rows must have loss 0");
    report("cross_entropy", "dlogits vs (softmax - onehot) * scale", rel_err(dz, dz_d, (size_t)T * V), TOL_FWD);
    int zero_rows = 1;
    for (int j = 0; j < V; j++) zero_rows &= dz[3 * V + j] == 0.0f && dz[5 * V + j] == 0.0f;
    CHECK(zero_rows, "ignored rows must have zero gradient");

    // dlogits over the logits themselves: the same bits as into a separate buffer.
    float *alias = copy_f(z, (size_t)T * V), *losses2 = nan_f(T);
    ops->cross_entropy(be, losses2, alias, alias, targets, T, V, scale);
    CHECK(same_bits(alias, dz, (size_t)T * V) && same_bits(losses2, losses, T), "dlogits aliasing logits differs");
    // Losses only.
    ops->cross_entropy(be, losses2, NULL, z, targets, T, V, scale);
    CHECK(same_bits(losses2, losses, T), "losses differ without dlogits");
    // A target past the vocabulary poisons the loss instead of reading out of bounds.
    int32_t bad[1] = {V};
    ops->cross_entropy(be, losses2, NULL, z, bad, 1, V, scale);
    CHECK(isnan(losses2[0]), "target >= V must give a NaN loss, got %g", losses2[0]);
    free(z), free(zd), free(dz_d), free(losses), free(dz), free(alias), free(losses2);
}

static void test_cross_entropy_fd(void) {
    enum { T = 4, V = 1031 };
    int32_t targets[T] = {5, -100, 1030, 0};
    float *z = rand_f((size_t)T * V, -3, 3), *dout_unused;
    ce_problem cp = {.logits = to_d(z, (size_t)T * V), .targets = targets, .T = T, .V = V, .scale = 1.0 / 3};
    fd_init(&cp.p, ce_fd_forward, 1, &dout_unused);
    cp.p.dout[0] = 1.0;
    double *g = fd_grad(&cp.p, cp.logits, (size_t)T * V);
    float *losses = nan_f(T), *dz = nan_f((size_t)T * V);
    ops->cross_entropy(be, losses, dz, z, targets, T, V, 1.0f / 3);
    report("cross_entropy", "dlogits vs finite differences, V=1031", rel_err(dz, g, (size_t)T * V), TOL_BWD);
    fd_free(&cp.p);
    free(z), free(dout_unused), free(g), free(losses), free(dz), free(cp.logits);
}

// ---------------------------------------------------------------------------------------------

static void test_add(void) {
    enum { n = 1031 };
    float *a = rand_f(n, -1, 1), *b = rand_f(n, -1, 1), *out = nan_f(n), *want = nan_f(n);
    for (int i = 0; i < n; i++) want[i] = a[i] + b[i];
    ops->add(be, out, a, b, n);
    CHECK(same_bits(out, want, n), "add");
    float *acc = copy_f(a, n);
    ops->add_inplace(be, acc, b, n);
    CHECK(same_bits(acc, want, n), "add_inplace");
    float *al = copy_f(a, n);
    ops->add(be, al, al, b, n);
    CHECK(same_bits(al, want, n), "add with out aliasing a");
    printf("  %-22s %-44s exact\n", "add/add_inplace", "n=1031, out aliasing a");
    free(a), free(b), free(out), free(want), free(acc), free(al);
}

int main(void) {
    be = test_cpu();
    ops = be->ops;
    CHECK_EQ_STR(ops->name, "cpu");
    printf("  %-22s %-44s %-9s  %s\n", "op", "check", "error", "tolerance");
    test_memory();
    test_linear();
    test_patch_unfold(2, 3, 15, 15, 5);
    test_patch_unfold(1, 3, 15, 10, 5);
    test_clip_embed();
    test_layernorm();
    test_rmsnorm();
    test_activation(ACT_QUICK_GELU);
    test_activation(ACT_GELU);
    test_activation(ACT_SILU_MUL);
    test_rope_inv_freq();
    test_rope(64);
    test_rope(128);

    // Finite differences on small packs; forward only on larger ones. GQA (Hq = 2 Hkv) and plain
    // multi-head (Hq = Hkv = 3), a one-token sequence, CLIP's scale (0.125) and an arbitrary one.
    static const int32_t cu_a[] = {0, 5, 6, 13};
    static const int32_t cu_b[] = {0, 4, 10};
    static const int32_t cu_c[] = {0, 5, 6, 15, 27, 64};
    static const int32_t cu_d[] = {0, 17, 47};
    test_attention(cu_a, 3, 4, 2, 64, 0.125f, 1, 1);
    test_attention(cu_a, 3, 4, 2, 64, 0.125f, 0, 1);
    test_attention(cu_b, 2, 2, 1, 128, 0.3f, 1, 1);
    test_attention(cu_b, 2, 3, 3, 128, 1.0f / sqrtf(128), 0, 1);
    test_attention(cu_c, 5, 4, 2, 128, 1.0f / sqrtf(128), 1, 0);
    test_attention(cu_c, 5, 4, 2, 128, 1.0f / sqrtf(128), 0, 0);
    test_attention(cu_d, 2, 3, 3, 64, 0.125f, 1, 0);

    test_embedding();
    test_gather_scatter();
    test_cross_entropy_chunks();
    test_cross_entropy_fd();
    test_add();
    return check_done();
}
