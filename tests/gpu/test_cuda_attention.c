// The CUDA attention kernels (kernels/cuda/attention.cu) against the CPU reference
// (kernels/cpu/attention.c), op by op through the two backends' tables.
//
// Inputs are random (fixed-seed xorshift, never zero) and rounded to bf16 on the host first, so the
// GPU's bf16 buffers and the CPU's fp32 buffers hold the same numbers and only the kernels'
// arithmetic differs. The backward of both backends gets the SAME out (the CPU forward's, rounded to
// bf16) and lse (the CPU forward's), so a forward error cannot hide in, or leak into, the backward
// comparison. Every GPU output is poisoned with NaN before each call, so an element a kernel forgets
// to write shows up as NaN.
//
// Tolerances, and why:
//   out, dq, dk, dv: ||gpu - cpu|| / ||cpu|| <= 1e-2. The outputs are stored in bf16 (relative
//     rounding up to 2^-9 = 2e-3 per element, ~1e-3 rms). The tiled kernels also round P to bf16
//     before the P V and P^T dO products and dS before dS K and dS^T Q (FlashAttention does the
//     same: the tensor cores take bf16), ~2^-9 relative per term, which averages down over the
//     sums; together a few 1e-3. An indexing, masking or softmax error gives 1e-1 or more.
//   lse: max |gpu - cpu| / (1 + |cpu|) <= 1e-3. lse stays fp32 end to end: the scores are exact
//     products of bf16 numbers summed in fp32 on both sides, exp2/log2 approximations add ~1e-7,
//     so the real error is ~1e-6; 1e-3 leaves room for long rows and still catches a missed tile
//     (one tile of 64 keys out of 2048 moves lse by ~3e-2) or a wrong scale.
//   run to run: bit-identical (memcmp) outputs and gradients, as ops.h promises.
//   sequence and causal isolation: changing inputs the contract says a row cannot see leaves that
//     row's outputs exactly equal (masked scores contribute exact zeros).
//
// Mistral's sliding window (window > 0: key j seen by query i iff i - window < j <= i) runs through
// the same comparisons against the CPU's windowed reference, with the same tolerances (a key the
// window should hide, or one it should show, moves a row by far more than 1e-2; under a window of 1,
// where dq and dk are 0 up to rounding, max |dq|, |dk| <= 1e-4 instead), on packs whose
// sequences are shorter than the window, as long, and longer; windows of 1, 3, 64 (one key tile),
// and 70 and 130 (the window's edge crossing key and query tiles); GQA and MHA; head dims 64, 128
// and the scalar path's 80. Bidirectional (the vision towers', whose backward trains them): head dims
// 64 and 128 (tiled), 16, 32 and SigLIP-so400m's 72 (the scalar path). Window isolation: changing a few rows of a long sequence leaves out, lse
// and dq of the rows whose window starts past them, and dk, dv of the keys whose queries' windows
// never reach them, exactly as they were.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../check.h"
#include "common/dtype.h"
#include "common/util.h"
#include "kernels/ops.h"

#define TOL_REL 1e-2
#define TOL_LSE 1e-3

static uint64_t rng = 0x9e3779b97f4a7c15ull;

// Uniform in (-amp, amp), never within amp/1000 of zero, rounded to bf16.
static float rnd_bf16(float amp) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    float u = (float)((double)(rng >> 11) / 9007199254740992.0) * 2.0f - 1.0f;  // [-1, 1)
    if (fabsf(u) < 1e-3f) u = u < 0.0f ? -1e-3f : 1e-3f;
    return bf16_to_f32(f32_to_bf16(u * amp));
}

static void fill(float *x, size_t n, float amp) {
    for (size_t i = 0; i < n; i++) x[i] = rnd_bf16(amp);
}

// Random values into rows [a, b) of a (T, width) array.
static void refill_rows(float *x, int width, int a, int b, float amp) {
    fill(x + (size_t)a * width, (size_t)(b - a) * width, amp);
}

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const char *name;
    int n_seq;
    int lens[8];
    int Hq, Hkv, D, causal;
    float amp;    // q and k amplitude: larger means peakier softmax rows
    int isolate;  // also run the sequence- and causal-isolation checks (and the window's)
    int timing;   // print the kernels' time (information, not a check)
    int window;   // Mistral's sliding window (0: none)
} attn_case;

// The GPU side of one case: device buffers and the outputs last downloaded.
typedef struct {
    llava_backend *be;
    const llava_ops *ops;
    int T, n_seq, Hq, Hkv, D, causal, window;
    float scale;
    size_t nq, nk, nl;  // elements of q/out/dq/dout (T, Hq*D); k/v/dk/dv (T, Hkv*D); lse (Hq, T)
    void *q, *k, *v, *dout, *out, *dq, *dk, *dv, *out_in;
    float *lse, *lse_in;
    int32_t *cu;
    float *nan_buf;  // host NaNs, the poison
} gpu_ctx;

typedef struct {
    float *out, *lse, *dq, *dk, *dv;
} results;

static void results_alloc(results *r, const gpu_ctx *g) {
    r->out = xmalloc(g->nq * sizeof(float));
    r->lse = xmalloc(g->nl * sizeof(float));
    r->dq = xmalloc(g->nq * sizeof(float));
    r->dk = xmalloc(g->nk * sizeof(float));
    r->dv = xmalloc(g->nk * sizeof(float));
}

static void results_free(results *r) { free(r->out), free(r->lse), free(r->dq), free(r->dk), free(r->dv); }

static void gpu_upload_inputs(gpu_ctx *g, const float *q, const float *k, const float *v, const float *dout) {
    g->ops->upload(g->be, BUF_ACT, g->q, q, g->nq);
    g->ops->upload(g->be, BUF_ACT, g->k, k, g->nk);
    g->ops->upload(g->be, BUF_ACT, g->v, v, g->nk);
    g->ops->upload(g->be, BUF_ACT, g->dout, dout, g->nq);
}

static void gpu_forward(gpu_ctx *g) {
    g->ops->upload(g->be, BUF_ACT, g->out, g->nan_buf, g->nq);
    g->ops->upload(g->be, BUF_F32, g->lse, g->nan_buf, g->nl);
    g->ops->attention_forward(g->be, g->out, g->lse, g->q, g->k, g->v, g->cu, g->n_seq, g->T, g->Hq, g->Hkv, g->D,
                              g->scale, g->causal, g->window);
}

// Backward from the given out and lse (device buffers).
static void gpu_backward(gpu_ctx *g, const void *out, const float *lse) {
    g->ops->upload(g->be, BUF_ACT, g->dq, g->nan_buf, g->nq);
    g->ops->upload(g->be, BUF_ACT, g->dk, g->nan_buf, g->nk);
    g->ops->upload(g->be, BUF_ACT, g->dv, g->nan_buf, g->nk);
    g->ops->attention_backward(g->be, g->dq, g->dk, g->dv, g->dout, g->q, g->k, g->v, out, lse, g->cu, g->n_seq, g->T,
                               g->Hq, g->Hkv, g->D, g->scale, g->causal, g->window);
}

static void gpu_download(gpu_ctx *g, results *r) {
    g->ops->download(g->be, BUF_ACT, r->out, g->out, g->nq);
    g->ops->download(g->be, BUF_F32, r->lse, g->lse, g->nl);
    g->ops->download(g->be, BUF_ACT, r->dq, g->dq, g->nq);
    g->ops->download(g->be, BUF_ACT, r->dk, g->dk, g->nk);
    g->ops->download(g->be, BUF_ACT, r->dv, g->dv, g->nk);
}

static size_t count_nan(const float *x, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += isnan(x[i]) != 0;
    return c;
}

// max |a - ref| / (1 + |ref|) over the lse entries of rows inside a sequence (all of them here).
static double lse_err(const float *a, const float *ref, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)ref[i]) / (1.0 + fabs((double)ref[i]));
        if (!(e <= worst)) worst = e;  // NaN sticks
    }
    return worst;
}

static double max_abs(const float *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)x[i]) <= m)) m = fabs((double)x[i]);  // NaN sticks
    return m;
}

// Elements of rows t with keep[t] that differ between a and b; (T, width) arrays.
static size_t changed_rows(const float *a, const float *b, int T, int width, const char *keep) {
    size_t c = 0;
    for (int t = 0; t < T; t++)
        if (keep[t])
            for (int j = 0; j < width; j++) c += !(a[(size_t)t * width + j] == b[(size_t)t * width + j]);
    return c;
}

// The same for lse (H, T): column t kept when keep[t].
static size_t changed_lse(const float *a, const float *b, int H, int T, const char *keep) {
    size_t c = 0;
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
            if (keep[t]) c += !(a[(size_t)h * T + t] == b[(size_t)h * T + t]);
    return c;
}

// Perturbs rows [a, b) of every input, runs forward then backward (from the GPU's own out and lse)
// and checks that the rows marked in keep_fwd (out, lse, dq) and keep_kv (dk, dv) did not change
// against `base`, the same pipeline on the unperturbed inputs.
static void isolation_check(gpu_ctx *g, const char *what, const results *base, float *q, float *k, float *v,
                            float *dout, int a, int b, const char *keep_fwd, const char *keep_kv, float amp) {
    refill_rows(q, g->Hq * g->D, a, b, amp);
    refill_rows(k, g->Hkv * g->D, a, b, amp);
    refill_rows(v, g->Hkv * g->D, a, b, 1.0f);
    refill_rows(dout, g->Hq * g->D, a, b, 1.0f);
    gpu_upload_inputs(g, q, k, v, dout);
    gpu_forward(g);
    gpu_backward(g, g->out, g->lse);
    results r;
    results_alloc(&r, g);
    gpu_download(g, &r);
    size_t c_out = changed_rows(r.out, base->out, g->T, g->Hq * g->D, keep_fwd);
    size_t c_lse = changed_lse(r.lse, base->lse, g->Hq, g->T, keep_fwd);
    size_t c_dq = changed_rows(r.dq, base->dq, g->T, g->Hq * g->D, keep_fwd);
    size_t c_dk = changed_rows(r.dk, base->dk, g->T, g->Hkv * g->D, keep_kv);
    size_t c_dv = changed_rows(r.dv, base->dv, g->T, g->Hkv * g->D, keep_kv);
    printf("    %s isolation (rows %d..%d changed): changed out %zu lse %zu dq %zu dk %zu dv %zu\n", what, a, b - 1,
           c_out, c_lse, c_dq, c_dk, c_dv);
    CHECK(c_out == 0 && c_lse == 0 && c_dq == 0 && c_dk == 0 && c_dv == 0,
          "%s isolation: outputs of rows that cannot see rows %d..%d changed", what, a, b - 1);
    // The perturbed rows themselves must have changed, or the check above proved nothing.
    size_t moved = 0;
    for (int t = a; t < b; t++)
        for (int j = 0; j < g->Hq * g->D; j++) {
            size_t i = (size_t)t * g->Hq * g->D + j;
            moved += r.out[i] != base->out[i];
        }
    CHECK(moved > 0, "%s isolation: the perturbed rows' outputs did not move", what);
    results_free(&r);
}

static void run_case(llava_backend *gbe, const attn_case *c) {
    llava_backend *cbe = test_cpu();
    const llava_ops *cpu = cbe->ops, *gpu = gbe->ops;
    int cu[9];
    cu[0] = 0;
    for (int s = 0; s < c->n_seq; s++) cu[s + 1] = cu[s] + c->lens[s];
    int T = cu[c->n_seq];
    gpu_ctx g = {.be = gbe, .ops = gpu, .T = T, .n_seq = c->n_seq, .Hq = c->Hq, .Hkv = c->Hkv, .D = c->D};
    g.causal = c->causal, g.window = c->window, g.scale = 1.0f / sqrtf((float)c->D);
    g.nq = (size_t)T * c->Hq * c->D, g.nk = (size_t)T * c->Hkv * c->D, g.nl = (size_t)c->Hq * T;
    printf("%s: %d sequence(s), T=%d, Hq=%d, Hkv=%d, D=%d, %s, window %d\n", c->name, c->n_seq, T, c->Hq, c->Hkv, c->D,
           c->causal ? "causal" : "bidirectional", c->window);

    // Host inputs (bf16 values) and the CPU reference.
    float *q = xmalloc(g.nq * sizeof(float)), *k = xmalloc(g.nk * sizeof(float)), *v = xmalloc(g.nk * sizeof(float));
    float *dout = xmalloc(g.nq * sizeof(float));
    fill(q, g.nq, c->amp), fill(k, g.nk, c->amp), fill(v, g.nk, 1.0f), fill(dout, g.nq, 1.0f);
    results ref;
    results_alloc(&ref, &g);
    double t0 = seconds();
    cpu->attention_forward(cbe, ref.out, ref.lse, q, k, v, cu, c->n_seq, T, c->Hq, c->Hkv, c->D, g.scale, c->causal,
                           c->window);
    float *out_b = xmalloc(g.nq * sizeof(float));  // the backward's `out`: the reference's, in bf16
    for (size_t i = 0; i < g.nq; i++) out_b[i] = bf16_to_f32(f32_to_bf16(ref.out[i]));
    cpu->attention_backward(cbe, ref.dq, ref.dk, ref.dv, dout, q, k, v, out_b, ref.lse, cu, c->n_seq, T, c->Hq, c->Hkv,
                            c->D, g.scale, c->causal, c->window);
    double t_cpu = seconds() - t0;

    // Device buffers.
    g.q = gpu->alloc(gbe, BUF_ACT, g.nq), g.k = gpu->alloc(gbe, BUF_ACT, g.nk), g.v = gpu->alloc(gbe, BUF_ACT, g.nk);
    g.dout = gpu->alloc(gbe, BUF_ACT, g.nq), g.out = gpu->alloc(gbe, BUF_ACT, g.nq),
    g.out_in = gpu->alloc(gbe, BUF_ACT, g.nq);
    g.dq = gpu->alloc(gbe, BUF_ACT, g.nq), g.dk = gpu->alloc(gbe, BUF_ACT, g.nk), g.dv = gpu->alloc(gbe, BUF_ACT, g.nk);
    g.lse = gpu->alloc(gbe, BUF_F32, g.nl), g.lse_in = gpu->alloc(gbe, BUF_F32, g.nl);
    g.cu = gpu->alloc(gbe, BUF_I32, (size_t)c->n_seq + 1);
    gpu->upload_i32(gbe, g.cu, cu, (size_t)c->n_seq + 1);
    g.nan_buf = xmalloc(g.nq * sizeof(float));
    for (size_t i = 0; i < g.nq; i++) g.nan_buf[i] = NAN;

    // Accuracy, with every output poisoned first.
    gpu_upload_inputs(&g, q, k, v, dout);
    gpu->upload(gbe, BUF_ACT, g.out_in, out_b, g.nq);
    gpu->upload(gbe, BUF_F32, g.lse_in, ref.lse, g.nl);
    results r1, r2;
    results_alloc(&r1, &g), results_alloc(&r2, &g);
    gpu_forward(&g);
    gpu_backward(&g, g.out_in, g.lse_in);
    gpu_download(&g, &r1);
    size_t nan_out = count_nan(r1.out, g.nq), nan_lse = count_nan(r1.lse, g.nl), nan_dq = count_nan(r1.dq, g.nq);
    size_t nan_dk = count_nan(r1.dk, g.nk), nan_dv = count_nan(r1.dv, g.nk);
    double e_out = check_rel_l2(r1.out, ref.out, g.nq), e_lse = lse_err(r1.lse, ref.lse, g.nl);
    double e_dq = check_rel_l2(r1.dq, ref.dq, g.nq), e_dk = check_rel_l2(r1.dk, ref.dk, g.nk),
           e_dv = check_rel_l2(r1.dv, ref.dv, g.nk);
    printf("    rel err: out %.3e  dq %.3e  dk %.3e  dv %.3e   lse max %.3e   (cpu reference %.2f s)\n", e_out, e_dq,
           e_dk, e_dv, e_lse, t_cpu);
    CHECK(nan_out + nan_lse + nan_dq + nan_dk + nan_dv == 0,
          "%s: unwritten (NaN) elements: out %zu lse %zu dq %zu dk %zu dv %zu", c->name, nan_out, nan_lse, nan_dq,
          nan_dk, nan_dv);
    CHECK(e_out <= TOL_REL, "%s: out relative error %.3e", c->name, e_out);
    CHECK(e_lse <= TOL_LSE, "%s: lse error %.3e", c->name, e_lse);
    CHECK(e_dv <= TOL_REL, "%s: dv relative error %.3e", c->name, e_dv);
    if (c->causal && c->window == 1) {
        // Window 1: every row's softmax has a single key, so dq and dk are exactly 0 in exact
        // arithmetic and both backends leave rounding noise (~1e-7) whose relative difference means
        // nothing. The check there: max |dq|, |dk| <= 1e-4 on both sides (a key the window should
        // hide gives dq and dk of order 0.1).
        double g_dq = max_abs(r1.dq, g.nq), g_dk = max_abs(r1.dk, g.nk);
        double c_dq = max_abs(ref.dq, g.nq), c_dk = max_abs(ref.dk, g.nk);
        printf("    window 1: max |dq| gpu %.3e cpu %.3e, max |dk| gpu %.3e cpu %.3e (must be 0 up to rounding)\n",
               g_dq, c_dq, g_dk, c_dk);
        CHECK(g_dq <= 1e-4 && g_dk <= 1e-4, "%s: dq, dk not 0 under a window of 1: max %.3e, %.3e", c->name, g_dq,
              g_dk);
        CHECK(c_dq <= 1e-4 && c_dk <= 1e-4, "%s: the CPU's dq, dk not 0 under a window of 1: max %.3e, %.3e", c->name,
              c_dq, c_dk);
    } else {
        CHECK(e_dq <= TOL_REL, "%s: dq relative error %.3e", c->name, e_dq);
        CHECK(e_dk <= TOL_REL, "%s: dk relative error %.3e", c->name, e_dk);
    }

    // Determinism: the same calls again give the same bits.
    gpu_forward(&g);
    gpu_backward(&g, g.out_in, g.lse_in);
    gpu_download(&g, &r2);
    int same_out = memcmp(r1.out, r2.out, g.nq * sizeof(float)) == 0;
    int same_lse = memcmp(r1.lse, r2.lse, g.nl * sizeof(float)) == 0;
    int same_dq = memcmp(r1.dq, r2.dq, g.nq * sizeof(float)) == 0;
    int same_dk = memcmp(r1.dk, r2.dk, g.nk * sizeof(float)) == 0;
    int same_dv = memcmp(r1.dv, r2.dv, g.nk * sizeof(float)) == 0;
    printf("    run to run bit-identical: out %d lse %d dq %d dk %d dv %d\n", same_out, same_lse, same_dq, same_dk,
           same_dv);
    CHECK(same_out && same_lse && same_dq && same_dk && same_dv, "%s: second run differs", c->name);

    if (c->timing) {  // host clock around synchronised batches of calls, after the warm-up runs above
        const int reps = 5;
        gpu->sync(gbe);
        double tf = seconds();
        for (int i = 0; i < reps; i++)
            gpu->attention_forward(gbe, g.out, g.lse, g.q, g.k, g.v, g.cu, g.n_seq, T, g.Hq, g.Hkv, g.D, g.scale,
                                   g.causal, g.window);
        gpu->sync(gbe);
        tf = (seconds() - tf) / reps;
        double tb = seconds();
        for (int i = 0; i < reps; i++)
            gpu->attention_backward(gbe, g.dq, g.dk, g.dv, g.dout, g.q, g.k, g.v, g.out_in, g.lse_in, g.cu, g.n_seq, T,
                                    g.Hq, g.Hkv, g.D, g.scale, g.causal, g.window);
        gpu->sync(gbe);
        tb = (seconds() - tb) / reps;
        double pairs = 0.0;  // (query, key) pairs computed: under a window, row i sees min(i + 1, window)
        for (int s = 0; s < c->n_seq; s++) {
            double L = c->lens[s], w = c->causal && c->window > 0 && c->window < L ? c->window : L;
            pairs += c->causal ? 0.5 * w * (w + 1) + (L - w) * w : L * L;
        }
        double fl = 4.0 * pairs * c->D * c->Hq;  // forward: two GEMMs; backward counted as 2.5x (FA convention)
        printf("    time: forward %.3f ms (%.1f TFLOP/s), backward %.3f ms (%.1f TFLOP/s)\n", tf * 1e3, fl / tf * 1e-12,
               tb * 1e3, 2.5 * fl / tb * 1e-12);
    }

    if (c->isolate) {
        results base;
        results_alloc(&base, &g);
        gpu_forward(&g);
        gpu_backward(&g, g.out, g.lse);
        gpu_download(&g, &base);
        char *keep_fwd = xmalloc((size_t)T), *keep_kv = xmalloc((size_t)T);
        // Sequence isolation: change all of the second-to-last sequence; every other row must be
        // untouched (all outputs and gradients).
        int s = c->n_seq >= 2 ? c->n_seq - 2 : 0;
        for (int t = 0; t < T; t++) keep_fwd[t] = keep_kv[t] = t < cu[s] || t >= cu[s + 1];
        isolation_check(&g, "sequence", &base, q, k, v, dout, cu[s], cu[s + 1], keep_fwd, keep_kv, c->amp);
        if (c->causal) {
            // Causal isolation: change the rows after position p of the last sequence (p inside a
            // tile, not on its edge); out, lse and dq of rows <= p must not move, nor anything of
            // other sequences. (dk, dv of rows <= p legitimately depend on later queries.)
            int ls = c->n_seq - 1, p = cu[ls] + c->lens[ls] / 2 - 3;
            if (p < cu[ls]) p = cu[ls];
            gpu_upload_inputs(&g, q, k, v, dout);  // rebase on the perturbed inputs of the check above
            gpu_forward(&g);
            gpu_backward(&g, g.out, g.lse);
            gpu_download(&g, &base);
            for (int t = 0; t < T; t++) {
                keep_fwd[t] = t <= p || t >= cu[ls + 1];
                keep_kv[t] = t < cu[ls] || t >= cu[ls + 1];
            }
            if (p + 1 < cu[ls + 1])
                isolation_check(&g, "causal", &base, q, k, v, dout, p + 1, cu[ls + 1], keep_fwd, keep_kv, c->amp);
        }
        if (c->causal && c->window > 0) {
            // Window isolation: change rows [a, b) of the last sequence, 4 rows from a fifth of the
            // way in. Row t's out, lse and dq read keys (t - window, t]: they must not move for
            // t >= b - 1 + window (nor, causal, for t < a). Key t's dk and dv read the queries
            // [t, t + window) and, through their softmax, those queries' keys (t - window, t +
            // window): they must not move for t >= b - 1 + window nor for t < a - window + 1.
            int ls = c->n_seq - 1, a = cu[ls] + c->lens[ls] / 5, b = a + 4;
            if (b - 1 + c->window < cu[ls + 1]) {
                gpu_upload_inputs(&g, q, k, v, dout);  // rebase on the inputs as the checks above left them
                gpu_forward(&g);
                gpu_backward(&g, g.out, g.lse);
                gpu_download(&g, &base);
                for (int t = 0; t < T; t++) {
                    int in = t >= cu[ls] && t < cu[ls + 1];
                    keep_fwd[t] = !in || t < a || t >= b - 1 + c->window;
                    keep_kv[t] = !in || t < a - c->window + 1 || t >= b - 1 + c->window;
                }
                isolation_check(&g, "window", &base, q, k, v, dout, a, b, keep_fwd, keep_kv, c->amp);
            }
        }
        free(keep_fwd), free(keep_kv);
        results_free(&base);
    }

    results_free(&r1), results_free(&r2), results_free(&ref);
    free(q), free(k), free(v), free(dout), free(out_b), free(g.nan_buf);
    void *bufs[] = {g.q, g.k, g.v, g.dout, g.out, g.out_in, g.dq, g.dk, g.dv, g.lse, g.lse_in, g.cu};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) gpu->free(gbe, bufs[i]);
}

int main(void) {
    llava_backend *gpu = test_cuda();

    // Packs of odd lengths: 1 token, tile edges (64, 65), more than two tiles (130), a short one (5).
    // The last field is the sliding window (0: none).
    const attn_case cases[] = {
        {"pack causal GQA 8/2 D64", 6, {5, 1, 37, 64, 65, 130}, 8, 2, 64, 1, 2.0f, 1, 0, 0},
        {"pack bidirectional GQA 8/2 D64", 6, {5, 1, 37, 64, 65, 130}, 8, 2, 64, 0, 2.0f, 1, 0, 0},
        {"pack causal MHA 4 D128", 6, {5, 1, 37, 64, 65, 130}, 4, 4, 128, 1, 2.0f, 1, 0, 0},
        {"pack bidirectional MHA 4 D128", 6, {5, 1, 37, 64, 65, 130}, 4, 4, 128, 0, 2.0f, 1, 0, 0},
        {"pack causal GQA 8/2 D128", 6, {130, 65, 1, 64, 37, 5}, 8, 2, 128, 1, 2.0f, 1, 0, 0},
        {"long rows bidirectional GQA 8/2 D128", 2, {300, 129}, 8, 2, 128, 0, 2.0f, 1, 0, 0},
        // Large scores (std ~3 after scaling): the running max moves a lot between key tiles.
        {"peaky causal GQA 4/1 D64", 3, {200, 63, 131}, 4, 1, 64, 1, 3.0f, 1, 0, 0},
        // Head dims without a tiled kernel take the scalar path.
        {"scalar path causal GQA 4/2 D80", 6, {5, 1, 37, 64, 65, 130}, 4, 2, 80, 1, 2.0f, 1, 0, 0},
        {"scalar path bidirectional MHA 2 D32", 3, {17, 1, 70}, 2, 2, 32, 0, 2.0f, 1, 0, 0},
        // The trainable vision towers' other head dims, bidirectional within each image: the test
        // configs' 16, SigLIP-so400m's 72 (16 heads, 729 tokens per image at 384 px).
        {"scalar path bidirectional MHA 4 D16", 3, {17, 1, 70}, 4, 4, 16, 0, 2.0f, 1, 0, 0},
        {"scalar path bidirectional MHA 4 D72", 6, {5, 1, 37, 64, 65, 130}, 4, 4, 72, 0, 2.0f, 1, 0, 0},
        // The shapes that matter: LLaVA-7B's language model (32 heads x 128, causal, a packed batch of
        // ~4k tokens) and CLIP ViT-L/14-336 (16 heads x 64, 577 tokens, bidirectional, 4 images).
        {"LLaVA-7B LM", 3, {600, 1437, 2048}, 32, 32, 128, 1, 2.0f, 0, 1, 0},
        {"CLIP ViT-L/14-336", 4, {577, 577, 577, 577}, 16, 16, 64, 0, 2.0f, 1, 1, 0},
        {"SigLIP-so400m/14-384 (scalar path)", 4, {729, 729, 729, 729}, 16, 16, 72, 0, 2.0f, 0, 1, 0},
        // Mistral's sliding window on the same packs: window 1 (each row sees only itself), 3, one
        // key tile (64), and 70 and 130, whose edges cut through key tiles and query tiles; in each
        // pack some sequences are within the window (1, 5, 37, 64 tokens) and some run past it (65,
        // 130, 200, 300).
        {"window 1 pack GQA 8/2 D64", 6, {5, 1, 37, 64, 65, 130}, 8, 2, 64, 1, 2.0f, 1, 0, 1},
        {"window 3 pack GQA 8/2 D64", 6, {5, 1, 37, 64, 65, 130}, 8, 2, 64, 1, 2.0f, 1, 0, 3},
        {"window 3 pack MHA 4 D128", 6, {5, 1, 37, 64, 65, 130}, 4, 4, 128, 1, 2.0f, 1, 0, 3},
        {"window 64 pack GQA 8/2 D128", 6, {130, 65, 1, 64, 37, 5}, 8, 2, 128, 1, 2.0f, 1, 0, 64},
        {"window 70 pack GQA 8/2 D64", 7, {5, 1, 37, 64, 65, 130, 200}, 8, 2, 64, 1, 2.0f, 1, 0, 70},
        {"window 70 pack GQA 8/2 D128", 7, {200, 130, 65, 1, 64, 37, 5}, 8, 2, 128, 1, 2.0f, 1, 0, 70},
        {"window 130 long rows GQA 8/2 D128", 3, {300, 129, 200}, 8, 2, 128, 1, 2.0f, 1, 0, 130},
        {"window 70 peaky GQA 4/1 D64", 3, {200, 63, 131}, 4, 1, 64, 1, 3.0f, 1, 0, 70},
        // The scalar path's loops take the window too.
        {"window 3 scalar path GQA 4/2 D80", 6, {5, 1, 37, 64, 65, 130}, 4, 2, 80, 1, 2.0f, 1, 0, 3},
        {"window 70 scalar path GQA 4/2 D80", 3, {200, 63, 131}, 4, 2, 80, 1, 2.0f, 1, 0, 70},
        // Without the causal mask a window does nothing (ops.h; the CPU ignores it too).
        {"window 3 ignored, bidirectional GQA 8/2 D64", 3, {17, 1, 70}, 8, 2, 64, 0, 2.0f, 1, 0, 3},
        // Mistral-7B's heads (32 query heads over 8 kv heads of 128) with a window of 512 over ~3.5k
        // tokens: the time (information) grows with the window, not the sequence.
        {"Mistral-7B heads, window 512", 2, {1500, 2048}, 32, 8, 128, 1, 2.0f, 0, 1, 512},
    };
    // LLAVA_TEST_QUICK=1 leaves out the two large shapes (for compute-sanitizer runs, which are slow).
    int quick = getenv("LLAVA_TEST_QUICK") && atoi(getenv("LLAVA_TEST_QUICK")) != 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!(quick && cases[i].timing)) run_case(gpu, &cases[i]);
    return check_done();
}
