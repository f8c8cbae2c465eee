// The CUDA backend (kernels/cuda/) op by op against the CPU reference (kernels/cpu/), through the
// two backends' tables: every GPU case of the op-case registry (kernels/opcheck_cases.c holds the
// shapes, the draws and the bounds with their reasons), every op (attention_forward and
// attention_backward only in the registry's sliding-window cases: tests/gpu/test_cuda_attention.c
// has the rest of them), plus the tests that are not one op's comparison.
//
// Method. Inputs are random (the registry's fixed seeds, never zero) and rounded to bf16 on the host
// first, so the GPU's bf16 buffers and the CPU's fp32 buffers hold the same numbers and only the
// op's own arithmetic differs. Every buffer runs inside guard regions (a write past the end of any
// buffer fails the case, naming the op and the buffer). Outputs the op must overwrite are poisoned
// first (NaN), so an element it forgets shows up; GRAD buffers, which ops accumulate into, start from
// random nonzero values (the same on both sides) and the checks compare what each backend ADDED
// (final - initial), so an op that overwrites instead of accumulating fails. Each case also runs
// with its optional outputs NULL (frozen weights, losses only) and, where the case asks, with its
// outputs over its inputs, against the same CPU values and bounds; and its gradients that reduce
// over rows run twice from the same start and must keep their bits (OPCHECK_RUN2RUN).
//
// Each comparison prints ||gpu - cpu|| / ||cpu|| and the worst element measured against its own
// bound |gpu - cpu| <= rtol |cpu| + atol rms(cpu) (1.00 = at the bound).
//
// Tolerances of the tests below that are not registry cases:
//   AdamW: exact (same fp32 operations in the same order, no FMA: the CPU's bits).
//   grad_sq_sum: relative 1e-10 (both sum in fp64, in different orders: the CPU's sequential sum of
//     67M positive terms drifts by ~eps sqrt(n) = 1e-12 relative, the GPU's tree by less); bit-
//     identical run to run.
//   rope backward(forward(x)) = x: see there.
//   attention_decode: each row alone gives the bits it gets in the batch, a second run the same
//     bits; a row whose sequence or position is outside the table, or whose table names a block
//     outside the cache, is NaN and the other rows keep their bits.
//   grid_pool max with NaN: NaN exactly where the CPU has it (the device's bf16 NaN is not the
//     CPU's 0x7FC0, so not bit for bit), the other elements the CPU's bits.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "common/dtype.h"
#include "common/util.h"
#include "kernels/backend.h"
#include "kernels/opcheck.h"

static llava_backend *cbe, *gbe;
static const llava_ops *cpu, *gpu;

// ---------------------------------------------------------------------------------------------
// Random inputs of the tests that are not registry cases

static uint64_t rng = 0x2545f4914f6cdd1dull;

static double uni(void) {  // [0, 1)
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) * 0x1.0p-53;
}

static float bf16r(float x) { return bf16_to_f32(f32_to_bf16(x)); }

// n values uniform in [lo, hi), never within 1e-3 of zero, rounded to bf16.
static float *rand_bf(size_t n, double lo, double hi) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float v;
        do v = bf16r((float)(lo + (hi - lo) * uni()));
        while (fabsf(v) < 1e-3f);
        x[i] = v;
    }
    return x;
}

// fp32 values (for F32 and GRAD buffers, which the GPU keeps in fp32).
static float *rand_fl(size_t n, double lo, double hi) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float v;
        do v = (float)(lo + (hi - lo) * uni());
        while (fabsf(v) < 1e-3f);
        x[i] = v;
    }
    return x;
}

static float *nan_f(size_t n) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

static float *dup_f(const float *x, size_t n) {
    float *y = xmalloc((n ? n : 1) * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static float *bf16_of(const float *x, size_t n) {  // the bf16 rounding of an fp32 result
    float *y = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = bf16r(x[i]);
    return y;
}

// ---------------------------------------------------------------------------------------------
// Device buffers

static int32_t *dup_i32(const int32_t *x, size_t n) {
    int32_t *y = xmalloc((n ? n : 1) * sizeof(int32_t));
    memcpy(y, x, n * sizeof(int32_t));
    return y;
}

static void *dev_up(int kind, const float *h, size_t n) {
    void *d = gpu->alloc(gbe, kind, n);
    gpu->upload(gbe, kind, d, h, n);
    return d;
}

static void *dev_nan(int kind, size_t n) {
    float *h = nan_f(n);
    void *d = dev_up(kind, h, n);
    free(h);
    return d;
}

static float *dev_down(int kind, const void *d, size_t n) {
    float *h = xmalloc((n ? n : 1) * sizeof(float));
    gpu->download(gbe, kind, h, d, n);
    return h;
}

static int32_t *dev_i32(const int32_t *h, size_t n) {
    int32_t *d = gpu->alloc(gbe, BUF_I32, n);
    gpu->upload_i32(gbe, d, h, n);
    return d;
}

// ---------------------------------------------------------------------------------------------
// Comparisons

static void report(const opcheck_verdict *v) {
    printf("%s\n", v->line);
    CHECK(v->ok, "%s", v->why);
}

static void cmp(const char *what, const float *got, const float *ref, size_t n, opcheck_dev_tol t) {
    opcheck_verdict v;
    opcheck_compare_dev(what, &t, got, ref, NULL, n, &v);
    report(&v);
}

// got must equal want bit for bit.
static void cmp_exact(const char *what, const float *got, const float *want, size_t n) {
    static const opcheck_dev_tol exact = {0, 0, 0, 1};
    opcheck_verdict v;
    opcheck_compare_dev(what, &exact, got, want, NULL, n, &v);
    report(&v);
}

static void check_same_bits(const char *what, const float *a, const float *b, size_t n) {
    int same = memcmp(a, b, n * sizeof(float)) == 0;
    printf("  %-52s %s\n", what, same ? "bit-identical" : "DIFFERENT");
    CHECK(same, "%s: two runs differ", what);
}

static void check_guards(opcheck_run *r, const char *backend) {
    char why[320];
    int ok = opcheck_guards(r, why, sizeof why);
    CHECK(ok, "%s: %s", backend, why);
}

// ---------------------------------------------------------------------------------------------
// The registry's GPU cases

// Output k of the GPU against the CPU's, with the case's bound: exact bounds compare with the CPU's
// values rounded to the GPU buffer's storage; accumulated outputs compare what each side added.
static void compare_output(const opcheck_case *c, const opcheck_data *d, int k, const float *got, const float *ref,
                           const char *note) {
    const opcheck_buf *b = &d->buf[d->out[k]];
    const opcheck_dev_tol *t = &c->dev[k];
    char what[160];
    const char *how = t->exact ? " (the CPU's bits)" : b->role == OPCHECK_ACC ? " (+=)" : "";
    snprintf(what, sizeof what, "  %s%s%s", b->name, note, how);
    opcheck_verdict v;
    if (t->exact) {
        float *want = dup_f(ref, b->n);
        opcheck_round_to_storage(gbe, b->kind, want, b->n);
        opcheck_compare_dev(what, t, got, want, NULL, b->n, &v);
        free(want);
    } else if (b->role == OPCHECK_ACC) {
        const float *init = d->host[d->out[k]];
        float *dg = xmalloc((b->n ? b->n : 1) * sizeof(float)), *dr = xmalloc((b->n ? b->n : 1) * sizeof(float));
        for (size_t i = 0; i < b->n; i++) dg[i] = got[i] - init[i], dr[i] = ref[i] - init[i];
        opcheck_compare_dev(what, t, dg, dr, NULL, b->n, &v);
        free(dg), free(dr);
    } else {
        float *scale = opcheck_dev_scale(cbe, d, k);
        opcheck_compare_dev(what, t, got, ref, scale, b->n, &v);
        free(scale);
    }
    report(&v);
}

static void run_case(const opcheck_case *c) {
    char name[96], shape[96];
    opcheck_case_name(c, name, sizeof name);
    opcheck_case_shape(c, shape, sizeof shape);
    printf("%s %s%s\n", name, shape, c->flags & OPCHECK_UNALIGNED ? " (every pointer unaligned)" : "");
    llava_op_shape s;
    opcheck_case_op_shape(c, &s);
    char why[256];
    if (!llava_backend_supports(gbe, &s, why, sizeof why)) {
        CHECK(0, "%s %s: the CUDA backend does not take it: %s", name, shape, why);
        return;
    }
    opcheck_data d;
    opcheck_make(c, &d);
    float *ref[OPCHECK_MAX_OUTS] = {0}, *got[OPCHECK_MAX_OUTS] = {0};
    int optional = 0;
    opcheck_run *r = opcheck_setup(cbe, &d, OPCHECK_RUN_PLAIN);
    opcheck_exec(r);
    for (int k = 0; k < d.nout; k++) ref[k] = opcheck_fetch(r, k);
    check_guards(r, "cpu");
    opcheck_finish(r);

    r = opcheck_setup(gbe, &d, OPCHECK_RUN_PLAIN);
    opcheck_exec(r);
    for (int k = 0; k < d.nout; k++) {
        optional |= d.buf[d.out[k]].optional;
        got[k] = opcheck_fetch(r, k);
        compare_output(c, &d, k, got[k], ref[k], "");
    }
    if (c->flags & OPCHECK_RUN2RUN) {
        opcheck_reset(r);
        opcheck_exec(r);
        for (int k = 0; k < d.nout; k++) {
            const opcheck_buf *b = &d.buf[d.out[k]];
            if (b->role != OPCHECK_ACC) continue;
            float *again = opcheck_fetch(r, k);
            char what[96];
            snprintf(what, sizeof what, "  %s run to run", b->name);
            check_same_bits(what, got[k], again, b->n);
            free(again);
        }
    }
    check_guards(r, "cuda");
    opcheck_finish(r);

    if (optional) {  // the frozen variants (dw, db NULL) and losses without gradients
        r = opcheck_setup(gbe, &d, OPCHECK_RUN_FROZEN);
        opcheck_exec(r);
        for (int k = 0; k < d.nout; k++) {
            if (d.buf[d.out[k]].optional) continue;
            float *h = opcheck_fetch(r, k);
            compare_output(c, &d, k, h, ref[k], " with the optional outputs NULL");
            free(h);
        }
        check_guards(r, "cuda");
        opcheck_finish(r);
    }
    if (c->flags & OPCHECK_ALIAS) {  // outputs over inputs
        r = opcheck_setup(gbe, &d, OPCHECK_RUN_IN_PLACE);
        opcheck_exec(r);
        for (int k = 0; k < d.nout; k++) {
            float *h = opcheck_fetch(r, k);
            compare_output(c, &d, k, h, ref[k], " (in place)");
            free(h);
        }
        check_guards(r, "cuda");
        opcheck_finish(r);
    }
    for (int k = 0; k < d.nout; k++) free(ref[k]), free(got[k]);
    opcheck_data_free(&d);
}

// ---------------------------------------------------------------------------------------------
// The table and memory

static void test_table(void) {
    printf("table\n");
    CHECK_EQ_STR(gpu->name, "cuda");
    CHECK_EQ_INT(gpu->act_bytes, 2);
#define HAS(f) CHECK(gpu->f != NULL, "the CUDA op table's " #f " is NULL")
    HAS(alloc);
    HAS(free);
    HAS(zero);
    HAS(copy);
    HAS(upload);
    HAS(download);
    HAS(upload_i32);
    HAS(sync);
    HAS(linear_forward);
    HAS(linear_backward_input);
    HAS(linear_backward_weight);
    HAS(linear_backward_bias);
    HAS(patch_unfold);
    HAS(clip_embed);
    HAS(layernorm_forward);
    HAS(layernorm_backward);
    HAS(rmsnorm_forward);
    HAS(rmsnorm_backward);
    HAS(quick_gelu_forward);
    HAS(quick_gelu_backward);
    HAS(gelu_forward);
    HAS(gelu_backward);
    HAS(gelu_tanh_forward);
    HAS(gelu_tanh_backward);
    HAS(silu_mul_forward);
    HAS(silu_mul_backward);
    HAS(rope_forward);
    HAS(rope_backward);
    HAS(attention_forward);
    HAS(attention_backward);
    HAS(attention_decode);
    HAS(embedding_forward);
    HAS(embedding_backward);
    HAS(scatter_rows);
    HAS(gather_rows);
    HAS(grid_pool);
    HAS(grid_pool_backward);
    HAS(resize_bilinear);
    HAS(resize_bilinear_backward);
    HAS(cross_entropy);
    HAS(adamw);
    HAS(grad_sq_sum);
    HAS(add);
    HAS(add_inplace);
#undef HAS
}

static void test_memory(void) {
    printf("memory\n");
    const size_t n = 100003;
    // alloc is zero-filled, for every kind
    int kinds[4] = {BUF_ACT, BUF_PARAM, BUF_GRAD, BUF_F32};
    for (int k = 0; k < 4; k++) {
        void *d = gpu->alloc(gbe, kinds[k], n);
        float *h = dev_down(kinds[k], d, n);
        size_t nz = 0;
        for (size_t i = 0; i < n; i++) nz += h[i] != 0.0f || signbit(h[i]);
        CHECK(nz == 0, "alloc(kind %d) not zero-filled: %zu nonzero", kinds[k], nz);
        free(h);
        gpu->free(gbe, d);
    }
    gpu->free(gbe, NULL);  // must be accepted

    // upload rounds to bf16 (nearest even) for ACT/PARAM, exactly as common/dtype.c; values of every
    // magnitude, including ties (bit patterns with the low 16 bits 0x8000).
    float *src = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)(uni() * 4294967296.0);
        if ((u & 0x7f800000u) == 0x7f800000u) u &= 0xbfffffffu;  // no inf/NaN
        if (i % 7 == 0) u = (u & 0xffff0000u) | 0x8000u;         // a tie
        memcpy(&src[i], &u, 4);
    }
    float *want = bf16_of(src, n);
    for (int k = 0; k < 2; k++) {
        void *d = dev_up(kinds[k], src, n);
        float *h = dev_down(kinds[k], d, n);
        cmp_exact(k == 0 ? "upload/download ACT = bf16 round to nearest even" : "upload/download PARAM = bf16 RNE", h,
                  want, n);
        free(h);
        gpu->free(gbe, d);
    }
    // GRAD and F32 are fp32: exact round trip
    for (int k = 2; k < 4; k++) {
        void *d = dev_up(kinds[k], src, n);
        float *h = dev_down(kinds[k], d, n);
        cmp_exact(k == 2 ? "upload/download GRAD exact" : "upload/download F32 exact", h, src, n);
        free(h);
        gpu->free(gbe, d);
    }
    // A transfer longer than one staging chunk (16M elements) and not a multiple of it.
    {
        const size_t big = ((size_t)1 << 24) + 12345;
        float *b = rand_bf(big, -3, 3);
        void *d = dev_up(BUF_ACT, b, big);
        float *h = dev_down(BUF_ACT, d, big);
        cmp_exact("upload/download ACT across staging chunks (16M+12345)", h, b, big);
        free(h);
        free(b);
        gpu->free(gbe, d);
    }
    // zero and copy, including an overlapping copy (memmove semantics, as the CPU backend)
    {
        float *a = rand_bf(n, -2, 2);
        void *d = dev_up(BUF_ACT, a, n);
        gpu->zero(gbe, BUF_ACT, (uint16_t *)d + 10, 1000);
        float *h = dev_down(BUF_ACT, d, n);
        float *w = dup_f(a, n);
        for (int i = 10; i < 1010; i++) w[i] = 0.0f;
        cmp_exact("zero(ACT) of a sub-range", h, w, n);
        free(h);
        void *e = gpu->alloc(gbe, BUF_ACT, n);
        gpu->copy(gbe, BUF_ACT, e, d, n);
        h = dev_down(BUF_ACT, e, n);
        cmp_exact("copy(ACT)", h, w, n);
        free(h);
        // overlapping: shift the first n-5 elements up by 5
        gpu->copy(gbe, BUF_ACT, (uint16_t *)e + 5, e, n - 5);
        h = dev_down(BUF_ACT, e, n);
        float *w2 = dup_f(w, n);
        memmove(w2 + 5, w, (n - 5) * sizeof(float));
        cmp_exact("copy(ACT) onto an overlapping range", h, w2, n);
        free(h);
        free(w2);
        free(w);
        free(a);
        gpu->free(gbe, d);
        gpu->free(gbe, e);
    }
    free(src);
    free(want);
}

// ---------------------------------------------------------------------------------------------
// RoPE: backward undoes forward (a rotation and its transpose), on the registry's GPU rope cases, up
// to two bf16 roundings: the intermediate values reach |a| + |b| ~ 2.8, whose half ulp (2^-8 = 4e-3)
// lands, rotated back, on small elements too (seen: 0.8 of a 6e-3 rms bound); hence the absolute term
// 1e-2 rms.

static void test_rope_round_trip(void) {
    printf("rope round trip\n");
    for (int i = 0; i < OPCHECK_N_CASES; i++) {
        const opcheck_case *c = &OPCHECK_CASES[i];
        if (c->op != OPCHECK_ROPE_FORWARD || !(c->flags & OPCHECK_GPU)) continue;
        opcheck_data d;
        opcheck_make(c, &d);
        int T = (int)c->n[0], H = (int)c->n[1], D = (int)c->n[2];
        opcheck_run *r = opcheck_setup(gbe, &d, OPCHECK_RUN_PLAIN);
        opcheck_exec(r);
        gpu->rope_backward(gbe, opcheck_ptr(r, 0), opcheck_ptr(r, 1), T, H, D, (float)c->f, NULL);
        float *h = opcheck_fetch(r, 0);
        char what[128];
        snprintf(what, sizeof what, "  rope_backward(rope_forward(x)) = x, T=%d H=%d D=%d", T, H, D);
        opcheck_dev_tol two = {8e-3, 0x1p-6, 1e-2, 0};
        cmp(what, h, d.host[0], d.buf[0].n, two);
        check_guards(r, "cuda");
        free(h);
        opcheck_finish(r);
        opcheck_data_free(&d);
    }
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy

// A target past the vocabulary gives NaN (loss and that row's gradient), the other rows are normal.
static void test_cross_entropy_bad_target(void) {
    const int T = 5, V = 37;
    int32_t y[5] = {3, -1, 37, 0, 36};
    size_t n = (size_t)T * V;
    float *z = rand_bf(n, -3, 3), *loss = xmalloc(T * sizeof(float)), *dz = xmalloc(n * sizeof(float));
    cpu->cross_entropy(cbe, loss, dz, z, y, T, V, 1.0f);
    void *gz = dev_up(BUF_ACT, z, n), *gdz = dev_nan(BUF_ACT, n);
    float *gl = dev_nan(BUF_F32, T);
    int32_t *gy = dev_i32(y, T);
    gpu->cross_entropy(gbe, gl, gdz, gz, gy, T, V, 1.0f);
    float *hl = dev_down(BUF_F32, gl, T), *hd = dev_down(BUF_ACT, gdz, n);
    size_t row_nan = 0, other_nan = 0;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < V; j++) {
            int isn = isnan(hd[(size_t)t * V + j]) != 0;
            if (t == 2) row_nan += isn;
            else other_nan += isn;
        }
    printf("  %-52s loss %g, %zu of %d dlogits NaN, %zu NaN elsewhere\n", "cross_entropy target = V", (double)hl[2],
           row_nan, V, other_nan);
    CHECK(isnan(hl[2]), "target >= V: loss %g, want NaN", (double)hl[2]);
    CHECK(row_nan == (size_t)V, "target >= V: %zu of %d gradients NaN", row_nan, V);
    CHECK(other_nan == 0, "%zu NaN gradients in valid rows", other_nan);
    CHECK(hl[1] == 0.0f, "ignored row loss %g", (double)hl[1]);
    for (int j = 0; j < V; j++) CHECK(hd[(size_t)V + j] == 0.0f, "ignored row gradient %d = %g", j, (double)hd[V + j]);
    for (int t = 0; t < T; t++)
        if (t != 2) CHECK_NEAR(hl[t], loss[t], 1e-4 * (1.0 + fabs(loss[t])));
    free(z), free(loss), free(dz), free(hl), free(hd);
    gpu->free(gbe, gz), gpu->free(gbe, gdz), gpu->free(gbe, gl), gpu->free(gbe, gy);
}

// ---------------------------------------------------------------------------------------------
// attention_decode beyond the registry's comparison. ops.h: a row's result does not depend on the
// other rows of the call (the kernel's splits follow the row's own context, never T), so every row
// run alone, in place in the same output, must give the bits the batch gave; and the kernels are
// deterministic. The GPU cannot stop on the table preconditions (they read device memory): a row
// whose sequence or position is outside the table, or whose table names a block outside the cache,
// gets NaN, and the other rows keep their bits.

static void *elem(void *p, size_t i, size_t esz) { return (char *)p + i * esz; }

static void decode_row_checks(const opcheck_case *c) {
    int T = (int)c->n[0], Hq = (int)c->n[1], Hkv = (int)c->n[2], D = (int)c->n[3], bs = (int)c->n[5];
    int window = (int)c->n[6];
    int n_seq, max_blocks, n_blocks;
    opcheck_decode_geometry(c, &n_seq, &max_blocks, &n_blocks);
    size_t qs = (size_t)Hq * D, nq = (size_t)T * qs, esz = gpu->act_bytes;
    char name[96], shape[96], what[320];
    opcheck_case_name(c, name, sizeof name);
    opcheck_case_shape(c, shape, sizeof shape);
    opcheck_data d;
    opcheck_make(c, &d);
    opcheck_run *r = opcheck_setup(gbe, &d, OPCHECK_RUN_PLAIN);
    void *p[7];
    for (int i = 0; i < 7; i++) p[i] = opcheck_ptr(r, i);
    float scale = (float)c->f;
    opcheck_exec(r);
    float *batch = opcheck_fetch(r, 0);
    opcheck_exec(r);
    float *again = opcheck_fetch(r, 0);
    snprintf(what, sizeof what, "  %s %s: run to run", name, shape);
    check_same_bits(what, batch, again, nq);
    free(again);
    for (int t = 0; t < T; t++)
        gpu->attention_decode(gbe, elem(p[0], (size_t)t * qs, esz), elem(p[1], (size_t)t * qs, esz), p[2], p[3], p[4],
                              (int32_t *)p[5] + t, (int32_t *)p[6] + t, 1, n_seq, max_blocks, bs, n_blocks, Hq, Hkv, D,
                              scale, window);
    float *alone = opcheck_fetch(r, 0);
    snprintf(what, sizeof what, "  %s: each row alone = its row in the batch", name);
    check_same_bits(what, batch, alone, nq);
    free(alone);

    // Row 0's sequence past the table, row 2's position past it, and block 0 of row 1's sequence
    // outside the cache (every row of that sequence reads block 0, except under a window the rows
    // whose window starts past it: their first key, pos + 1 - window, at or past bs).
    int32_t *table = dup_i32(d.host[4], (size_t)n_seq * max_blocks), *seq = dup_i32(d.host[5], T);
    int32_t *pos = dup_i32(d.host[6], T);
    int s1 = seq[1];
    seq[0] = n_seq;
    pos[2] = max_blocks * bs;
    table[(size_t)s1 * max_blocks] = n_blocks;
    gpu->upload_i32(gbe, p[4], table, (size_t)n_seq * max_blocks);
    gpu->upload_i32(gbe, p[5], seq, T);
    gpu->upload_i32(gbe, p[6], pos, T);
    opcheck_exec(r);
    float *bad = opcheck_fetch(r, 0);
    size_t nan_rows = 0, kept_rows = 0, wrong = 0;
    for (int t = 0; t < T; t++) {
        int reads_block0 = !(window > 0 && pos[t] + 1 - window >= bs);
        int poisoned = t == 0 || t == 2 || (seq[t] == s1 && reads_block0);
        size_t n_nan = 0;
        for (size_t i = 0; i < qs; i++) n_nan += isnan(bad[(size_t)t * qs + i]) != 0;
        if (poisoned) nan_rows += n_nan == qs, wrong += n_nan != qs;
        else {
            int same = memcmp(bad + (size_t)t * qs, batch + (size_t)t * qs, qs * sizeof(float)) == 0;
            kept_rows += same, wrong += !same;
        }
    }
    printf("  %-52s %zu rows NaN, %zu rows kept, %zu wrong\n", "  bad sequence, position and block", nan_rows,
           kept_rows, wrong);
    CHECK(wrong == 0, "%s %s: %zu rows wrong after a bad table (NaN expected in rows 0, 2 and sequence %d's%s)", name,
          shape, wrong, s1, window > 0 ? " that reach its block 0" : "");
    check_guards(r, "cuda");
    free(bad), free(batch), free(table), free(seq), free(pos);
    opcheck_finish(r);
    opcheck_data_free(&d);
}

static void test_attention_decode_rows(void) {
    printf("attention_decode rows\n");
    for (int i = 0; i < OPCHECK_N_CASES; i++) {
        const opcheck_case *c = &OPCHECK_CASES[i];
        if (c->op == OPCHECK_ATTENTION_DECODE && (c->flags & OPCHECK_GPU) && c->n[0] >= 3) decode_row_checks(c);
    }
}

// ---------------------------------------------------------------------------------------------
// grid_pool's max with NaN in its windows (the registry's GPU cases have -inf but no NaN: the device
// rounds NaN to 0x7FFF, the CPU to 0x7FC0, so they cannot compare bit for bit): max_pool2d keeps a
// NaN wherever it is met in the window, first or last, and drops none. On the registry's CPU cases
// with NaN, their inputs rounded to bf16 (odd C: element by element), and on the same draws over
// 16-byte packs (C = 104).

static void grid_pool_nan_case(const opcheck_case *c) {
    char name[96], shape[96], what[320];
    opcheck_case_name(c, name, sizeof name);
    opcheck_case_shape(c, shape, sizeof shape);
    opcheck_data d;
    opcheck_make(c, &d);
    size_t n_out = d.buf[0].n, n_in = d.buf[1].n;
    float *in = bf16_of(d.host[1], n_in), *ref = xmalloc((n_out ? n_out : 1) * sizeof(float));
    int B = (int)c->n[0], G = (int)c->n[1], C = (int)c->n[2], mode = (int)c->n[3], st = (int)c->n[4];
    cpu->grid_pool(cbe, ref, in, B, G, C, mode, st);
    void *gi = dev_up(BUF_ACT, in, n_in), *go = dev_nan(BUF_ACT, n_out);
    gpu->grid_pool(gbe, go, gi, B, G, C, mode, st);
    float *got = dev_down(BUF_ACT, go, n_out);
    size_t nan_ref = 0, wrong = 0, first = 0;
    for (size_t i = 0; i < n_out; i++) {
        float want = bf16r(ref[i]);
        int ok = isnan(want) ? isnan(got[i]) != 0 : memcmp(&got[i], &want, sizeof want) == 0;
        nan_ref += isnan(want) != 0;
        if (!ok && !wrong++) first = i;
    }
    snprintf(what, sizeof what, "  %s %s: NaN where the CPU's", name, shape);
    printf("  %-52s %zu NaN of %zu, %zu wrong\n", what, nan_ref, n_out, wrong);
    CHECK(nan_ref > 0, "%s %s: the case has no NaN output", name, shape);
    CHECK(wrong == 0, "%s %s: %zu of %zu outputs differ, first at %zu: %.9g vs %.9g", name, shape, wrong, n_out, first,
          (double)got[first], (double)bf16r(ref[first]));
    free(in), free(ref), free(got);
    gpu->free(gbe, gi), gpu->free(gbe, go);
    opcheck_data_free(&d);
}

static void test_grid_pool_nan(void) {
    printf("grid_pool max with NaN\n");
    for (int i = 0; i < OPCHECK_N_CASES; i++) {
        const opcheck_case *c = &OPCHECK_CASES[i];
        if (c->op != OPCHECK_GRID_POOL || c->pattern != OPCHECK_PAT_POOL_NAN) continue;
        grid_pool_nan_case(c);
        opcheck_case wide = *c;  // the same pattern over C = 104: the 16-byte packs
        wide.n[2] = 104;
        grid_pool_nan_case(&wide);
    }
}

// ---------------------------------------------------------------------------------------------
// Optimizer

static void test_adamw(void) {
    printf("adamw\n");
    const size_t n = 100003;
    float *p0 = rand_fl(n, -0.1, 0.1);
    // Masters are fp32; the bf16 working copy must be their rounding. The CPU updates p in place.
    float *p_cpu = dup_f(p0, n), *m_cpu = xcalloc(n, sizeof(float)), *v_cpu = xcalloc(n, sizeof(float));
    float *gmaster = dev_up(BUF_F32, p0, n), *gm = gpu->alloc(gbe, BUF_F32, n), *gv = gpu->alloc(gbe, BUF_F32, n);
    void *gparam = dev_nan(BUF_PARAM, n);
    float *grad = NULL;
    float *ggrad = gpu->alloc(gbe, BUF_GRAD, n);
    for (int step = 1; step <= 3; step++) {
        free(grad);
        grad = rand_fl(n, -3, 3);
        gpu->upload(gbe, BUF_GRAD, ggrad, grad, n);
        double lr = 2e-3 * step, wd = step == 2 ? 0.0 : 0.1;
        float scale = 1.0f / (float)(step + 2);
        cpu->adamw(cbe, p_cpu, NULL, grad, m_cpu, v_cpu, n, lr, 0.9, 0.999, 1e-8, wd, step, scale);
        gpu->adamw(gbe, gparam, gmaster, ggrad, gm, gv, n, lr, 0.9, 0.999, 1e-8, wd, step, scale);
        float *hm = dev_down(BUF_F32, gmaster, n), *hmm = dev_down(BUF_F32, gm, n), *hv = dev_down(BUF_F32, gv, n);
        float *hp = dev_down(BUF_PARAM, gparam, n);
        char name[96];
        snprintf(name, sizeof name, "adamw step %d master (the CPU's bits)", step);
        cmp_exact(name, hm, p_cpu, n);
        cmp_exact("  m", hmm, m_cpu, n);
        cmp_exact("  v", hv, v_cpu, n);
        float *want = bf16_of(hm, n);
        cmp_exact("  param = bf16(master)", hp, want, n);
        free(want), free(hm), free(hmm), free(hv), free(hp);
    }
    free(grad), free(p0), free(p_cpu), free(m_cpu), free(v_cpu);
    gpu->free(gbe, gmaster), gpu->free(gbe, gm), gpu->free(gbe, gv), gpu->free(gbe, gparam), gpu->free(gbe, ggrad);
}

static void test_grad_sq_sum(void) {
    printf("grad_sq_sum\n");
    size_t sizes[4] = {1, 37, 1000003, ((size_t)1 << 26) + 5};
    for (int k = 0; k < 4; k++) {
        size_t n = sizes[k];
        float *g = rand_fl(n, -2, 2);
        double ref = cpu->grad_sq_sum(cbe, g, n);
        float *gg = dev_up(BUF_GRAD, g, n);
        double a = gpu->grad_sq_sum(gbe, gg, n), b = gpu->grad_sq_sum(gbe, gg, n);
        // an unaligned view (4 bytes off 16): the scalar path
        double c = n > 1 ? gpu->grad_sq_sum(gbe, gg + 1, n - 1) : 0.0;
        double cref = n > 1 ? cpu->grad_sq_sum(cbe, g + 1, n - 1) : 0.0;
        double rel = fabs(a - ref) / ref, relc = n > 1 ? fabs(c - cref) / cref : 0.0;
        char name[64];
        snprintf(name, sizeof name, "grad_sq_sum n=%zu", n);
        printf("  %-52s rel %.2e, unaligned view rel %.2e (tol 1e-10)\n", name, rel, relc);
        CHECK(rel <= 1e-10, "grad_sq_sum n=%zu: %.17g vs %.17g", n, a, ref);
        CHECK(relc <= 1e-10, "grad_sq_sum unaligned n=%zu: %.17g vs %.17g", n - 1, c, cref);
        CHECK(memcmp(&a, &b, sizeof a) == 0, "grad_sq_sum n=%zu not bit-identical run to run", n);
        if (n > 100) {
            float bad = NAN;
            gpu->upload(gbe, BUF_GRAD, gg + n / 2, &bad, 1);
            double r = gpu->grad_sq_sum(gbe, gg, n);
            CHECK(isnan(r), "a NaN gradient gives %g, want NaN", r);
            bad = INFINITY;
            gpu->upload(gbe, BUF_GRAD, gg + n - 1, &bad, 1);
            gpu->upload(gbe, BUF_GRAD, gg + n / 2, g + n / 2, 1);
            r = gpu->grad_sq_sum(gbe, gg, n);
            CHECK(isinf(r), "an inf gradient gives %g, want inf", r);
        }
        free(g);
        gpu->free(gbe, gg);
    }
    CHECK(gpu->grad_sq_sum(gbe, NULL, 0) == 0.0, "grad_sq_sum of nothing");
}

// `gpu_test_cuda_ops OP` runs only the registry's cases of the ops whose name holds OP, and the
// tests of those ops beyond it (tools/gpu_check.sh runs `attention_decode` under compute-sanitizer).
int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL;
    gbe = test_cuda();
    cbe = test_cpu();
    cpu = cbe->ops;
    gpu = gbe->ops;
    if (!only) {
        test_table();
        test_memory();
        test_rope_round_trip();
        test_cross_entropy_bad_target();
        test_adamw();
        test_grad_sq_sum();
    }
    if (!only || strstr("attention_decode", only)) test_attention_decode_rows();
    if (!only || strstr("grid_pool", only)) test_grid_pool_nan();
    // The registry's cases in its order; its last ones have every pointer 2 bytes off 16-byte
    // alignment, which a cuBLASLt without an algorithm for them would end the program on.
    for (int i = 0; i < OPCHECK_N_CASES; i++)
        if ((OPCHECK_CASES[i].flags & OPCHECK_GPU) && (!only || strstr(opcheck_op_name(OPCHECK_CASES[i].op), only)))
            run_case(&OPCHECK_CASES[i]);
    gpu->sync(gbe);
    return check_done();
}
