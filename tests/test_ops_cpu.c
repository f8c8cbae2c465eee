// The CPU backend (kernels/cpu/) op by op: every correctness case of the op-case registry
// (kernels/opcheck_cases.c, which holds the shapes, the draws and the tolerances with their reasons)
// against its fp64 reference, written from the spec's formulas (spec/model-and-formats.md §1-2), and
// every backward against central finite differences of that reference.
//
// Each case runs in guard regions (a write past the end of any buffer fails it) and, beside the
// comparison, checks the contracts of kernels/ops.h that follow from the op's buffers:
//   a second call onto what the first left: overwritten outputs keep their bits (deterministic,
//     overwrite) and gradients accumulate (GRAD += : the reference doubles, same tolerance);
//   optional outputs passed as NULL (frozen weights, losses without gradients): the other outputs
//     keep their bits;
//   outputs over inputs where ops.h allows it (OPCHECK_ALIAS): the same bits as into separate buffers;
//   where the fp64 reference is exactly 0 (ignored rows, rows no token touches) the op gives 0.
// The contracts that are not a comparison stay below as their own tests: memory, the registry's own
// guard check, RMSNorm's HF rounding order, RoPE's positions and inverse, the spec's inv_freq values,
// attention's sequence and causal isolation, attention_decode against attention_forward's rows (and
// each row alone against the batch), the embedding's padding row, an out-of-range target, and
// grid_pool_backward as grid_pool's adjoint.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/util.h"
#include "kernels/opcheck.h"
#include "kernels/ops.h"

static llava_backend *be;
static const llava_ops *ops;

static int same_bits(const void *a, const void *b, size_t n_floats) { return memcmp(a, b, n_floats * 4) == 0; }

// The worst measured error of the registry's CPU cases (first call), forwards and backwards apart.
static double worst_fwd, worst_bwd;
static int n_cpu_cases;

static void print_verdict(const opcheck_verdict *v) {
    printf("%s\n", v->line);
    CHECK(v->ok, "%s", v->why);
}

// "linear_forward         N=7 I=37 O=29, bias: dW" and the like.
static void describe(const opcheck_case *c, const char *what, char *buf, size_t cap) {
    char shape[96];
    opcheck_case_shape(c, shape, sizeof shape);
    const char *label = c->label ? c->label : "";
    snprintf(buf, cap, "%-22s %s%s%s: %s", opcheck_op_name(c->op), shape, *label ? ", " : "", label, what);
}

static void check_guards(opcheck_run *r) {
    char why[320];
    int ok = opcheck_guards(r, why, sizeof why);
    CHECK(ok, "%s", why);
}

// ---------------------------------------------------------------------------------------------
// The registry's CPU cases

static void run_case(const opcheck_case *c) {
    opcheck_data d;
    opcheck_make(c, &d);
    double **want = opcheck_reference(&d);
    CHECK(want != NULL, "%s has CPU cases but no fp64 reference", opcheck_op_name(c->op));
    if (!want) {
        opcheck_data_free(&d);
        return;
    }
    char what[320];
    opcheck_verdict v;
    float *first[OPCHECK_MAX_OUTS] = {0};
    int in_place = 0, optional = 0;
    opcheck_run *r = opcheck_setup(be, &d, OPCHECK_RUN_PLAIN);
    opcheck_exec(r);
    for (int k = 0; k < d.nout; k++) {
        const opcheck_buf *b = &d.buf[d.out[k]];
        in_place |= b->role == OPCHECK_INOUT;
        optional |= b->optional;
        first[k] = opcheck_fetch(r, k);
        describe(c, b->name, what, sizeof what);
        opcheck_compare_ref(what, &c->ref[k], first[k], want[k], b->n, &v);
        print_verdict(&v);
        if (c->ref[k].metric != OPCHECK_EXACT) {
            double *w = strstr(opcheck_op_name(c->op), "backward") ? &worst_bwd : &worst_fwd;
            if (v.err > *w) *w = v.err;
        }
    }
    n_cpu_cases++;
    // A second call onto what the first left (not for ops that rewrite their input in place).
    if (!in_place) {
        opcheck_exec(r);
        for (int k = 0; k < d.nout; k++) {
            const opcheck_buf *b = &d.buf[d.out[k]];
            float *again = opcheck_fetch(r, k);
            if (b->role == OPCHECK_OUT) {
                CHECK(same_bits(again, first[k], b->n), "%s: %s changed on a second call (overwrite, deterministic)",
                      opcheck_op_name(c->op), b->name);
            } else {
                const float *init = d.host[d.out[k]];
                double *twice = xmalloc((b->n ? b->n : 1) * sizeof(double));
                for (size_t i = 0; i < b->n; i++) twice[i] = init[i] + 2.0 * (want[k][i] - init[i]);
                char after[64];
                snprintf(after, sizeof after, "%s after a second call (accumulate)", b->name);
                describe(c, after, what, sizeof what);
                opcheck_compare_ref(what, &c->ref[k], again, twice, b->n, &v);
                print_verdict(&v);
                free(twice);
            }
            free(again);
        }
    }
    check_guards(r);
    opcheck_finish(r);

    // Frozen: the optional outputs NULL, the others the same bits.
    if (optional) {
        r = opcheck_setup(be, &d, OPCHECK_RUN_FROZEN);
        opcheck_exec(r);
        for (int k = 0; k < d.nout; k++) {
            const opcheck_buf *b = &d.buf[d.out[k]];
            if (b->optional) continue;
            float *got = opcheck_fetch(r, k);
            CHECK(same_bits(got, first[k], b->n), "%s: %s differs when the optional outputs are NULL",
                  opcheck_op_name(c->op), b->name);
            free(got);
        }
        check_guards(r);
        opcheck_finish(r);
    }
    // Outputs over inputs: the same bits as into separate buffers.
    if (c->flags & OPCHECK_ALIAS) {
        r = opcheck_setup(be, &d, OPCHECK_RUN_IN_PLACE);
        opcheck_exec(r);
        for (int k = 0; k < d.nout; k++) {
            const opcheck_buf *b = &d.buf[d.out[k]];
            float *got = opcheck_fetch(r, k);
            CHECK(same_bits(got, first[k], b->n), "%s: %s over its input differs", opcheck_op_name(c->op), b->name);
            free(got);
        }
        check_guards(r);
        opcheck_finish(r);
    }
    for (int k = 0; k < d.nout; k++) free(first[k]);
    opcheck_reference_free(&d, want);
    opcheck_data_free(&d);
}

// ---------------------------------------------------------------------------------------------
// The registry itself: every case has a tolerance for every output its programs compare, every op
// with a reference has a CPU case, and a write past the end of an output is caught and named.

static void test_registry(void) {
    int cpu_cases = 0, gpu_cases = 0, bench_cases = 0, has_cpu[OPCHECK_N_OPS] = {0}, has_bench[OPCHECK_N_OPS] = {0};
    for (int i = 0; i < OPCHECK_N_CASES; i++) {
        const opcheck_case *c = &OPCHECK_CASES[i];
        opcheck_data d;
        opcheck_layout(c, &d);  // layouts only: the GPU's and the benchmark's buffers are large to draw
        if (!(c->flags & (OPCHECK_CPU | OPCHECK_GPU))) {
            bench_cases += (c->flags & OPCHECK_BENCH) != 0;
            has_bench[c->op] |= (c->flags & OPCHECK_BENCH) != 0;
            double flops, bytes;
            opcheck_case_cost(c, &flops, &bytes);
            CHECK(flops > 0 || bytes > 0, "benchmark case %d (%s) has no cost", i, opcheck_op_name(c->op));
            continue;
        }
        for (int k = 0; k < d.nout; k++) {
            if (c->flags & OPCHECK_CPU)
                CHECK(c->ref[k].metric == OPCHECK_EXACT || c->ref[k].tol > 0, "case %d (%s): no CPU tolerance for %s",
                      i, opcheck_op_name(c->op), d.buf[d.out[k]].name);
            if (c->flags & OPCHECK_GPU)
                CHECK(c->dev[k].exact || c->dev[k].norm > 0, "case %d (%s): no GPU bound for %s", i,
                      opcheck_op_name(c->op), d.buf[d.out[k]].name);
        }
        if (c->flags & OPCHECK_ALIAS)
            CHECK(opcheck_op_aliases(c->op), "case %d: %s has no in-place form", i, opcheck_op_name(c->op));
        cpu_cases += (c->flags & OPCHECK_CPU) != 0;
        gpu_cases += (c->flags & OPCHECK_GPU) != 0;
        has_cpu[c->op] |= (c->flags & OPCHECK_CPU) != 0;
    }
    for (int op = 0; op < OPCHECK_N_OPS; op++) {
        if (op != OPCHECK_ADAMW && op != OPCHECK_GRAD_SQ_SUM)
            CHECK(has_cpu[op], "%s has no CPU case", opcheck_op_name(op));
        CHECK(has_bench[op] || op == OPCHECK_ADD_INPLACE, "%s has no benchmark case", opcheck_op_name(op));
    }
    printf("  %-22s %d cases: %d CPU, %d GPU, %d benchmark\n", "registry", OPCHECK_N_CASES, cpu_cases, gpu_cases,
           bench_cases);

    // A deliberate write one element past an output's end, and one far into the guard of an input.
    opcheck_case add = {.op = OPCHECK_ADD, .flags = OPCHECK_CPU, .n = {37}, .ref = {{.metric = OPCHECK_EXACT}}};
    opcheck_data d;
    opcheck_make(&add, &d);
    char why[320];
    opcheck_run *r = opcheck_setup(be, &d, OPCHECK_RUN_PLAIN);
    opcheck_exec(r);
    CHECK(opcheck_guards(r, why, sizeof why), "a clean run fails its guards: %s", why);
    ((float *)opcheck_ptr(r, 0))[37] = 1.0f;  // out[n]
    int held = opcheck_guards(r, why, sizeof why);
    CHECK(!held && strstr(why, "add") && strstr(why, "out"), "a write past out's end: \"%s\"", why);
    printf("  %-22s %s\n", "guard regions", why);
    opcheck_finish(r);
    r = opcheck_setup(be, &d, OPCHECK_RUN_PLAIN);
    ((float *)opcheck_ptr(r, 2))[37 + OPCHECK_GUARD - 1] = NAN;  // the last guard element of b
    held = opcheck_guards(r, why, sizeof why);
    CHECK(!held && strstr(why, ": wrote past the end of b"), "a NaN at the end of b's guard: \"%s\"", why);
    opcheck_finish(r);
    opcheck_data_free(&d);
}

// ---------------------------------------------------------------------------------------------
// memory

static void test_memory(void) {
    enum { n = 1031 };
    float *a = ops->alloc(be, BUF_ACT, n);
    int zeros = 0;
    for (int i = 0; i < n; i++) zeros += a[i] == 0.0f;
    CHECK_EQ_INT(zeros, n);
    float *src = xmalloc(n * sizeof(float)), *back = xmalloc(n * sizeof(float));
    for (int i = 0; i < n; i++) src[i] = (float)sin(i + 1.0), back[i] = NAN;
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
// The registry's cases of one op, with their data: the special tests below build on them.

typedef void (*case_test)(const opcheck_case *c, opcheck_data *d);

static void for_cpu_cases(int op, case_test f) {
    for (int i = 0; i < OPCHECK_N_CASES; i++) {
        const opcheck_case *c = &OPCHECK_CASES[i];
        if (c->op != op || !(c->flags & OPCHECK_CPU)) continue;
        opcheck_data d;
        opcheck_make(c, &d);
        f(c, &d);
        opcheck_data_free(&d);
    }
}

// HF order (spec §2.3): out = w * fp32(x * rstd), two fp32 products given our rstd.
static void rmsnorm_hf_order(const opcheck_case *c, opcheck_data *d) {
    int N = (int)c->n[0], C = (int)c->n[1];
    const float *x = d->host[2], *w = d->host[3];
    float *y = xmalloc((size_t)N * C * sizeof(float)), *rstd = xmalloc((size_t)N * sizeof(float));
    ops->rmsnorm_forward(be, y, rstd, x, w, N, C, (float)c->f);
    int hf_order = 1;
    for (int n = 0; n < N; n++)
        for (int ch = 0; ch < C; ch++) {
            float t = x[n * C + ch] * rstd[n];
            hf_order &= y[n * C + ch] == w[ch] * t;
        }
    CHECK(hf_order, "rmsnorm output is not w * fp32(x * rstd)");
    printf("  %-22s %-44s exact\n", "rmsnorm_forward", "w * fp32(x * rstd), HF's rounding order");
    free(y), free(rstd);
}

// Positions (the case's: three packed sequences, the second repeating the first's tokens): position 0
// leaves a token unchanged, positions restart per sequence, position 1 rotates; and a rotation's
// transpose is its inverse, backward(forward(x)) = x.
static void rope_contracts(const opcheck_case *c, opcheck_data *d) {
    if (c->pattern != OPCHECK_PAT_REPEAT5) return;
    int T = (int)c->n[0], H = (int)c->n[1], D = (int)c->n[2];
    size_t n = (size_t)T * H * D, row = (size_t)H * D;
    const float *x = d->host[0];
    float *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    ops->rope_forward(be, y, d->host[1], T, H, D, (float)c->f, NULL);
    CHECK(same_bits(y, x, row) && same_bits(y + 5 * row, x, row), "position 0 must leave the token unchanged");
    CHECK(same_bits(y + 5 * row, y, 5 * row), "positions restarting per sequence");
    CHECK(!same_bits(y + row, x + row, row), "position 1 must rotate");
    ops->rope_backward(be, y, d->host[1], T, H, D, (float)c->f, NULL);
    double *xd = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) xd[i] = x[i];
    char what[96];
    snprintf(what, sizeof what, "%-22s D=%d: backward(forward(x)) = x", "rope_backward", D);
    opcheck_verdict v;
    opcheck_compare_ref(what, &c->ref[0], y, xd, n, &v);
    print_verdict(&v);
    free(y), free(xd);
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
    ops->rope_forward(be, x, pos, half, 1, D, 10000.0f, NULL);
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

// Isolation: new keys, values and queries for sequence 1 change nothing in the others, and under
// the causal mask a new last token changes no earlier row of its sequence.
static void attention_isolation(const opcheck_case *c, opcheck_data *d) {
    int T = (int)c->n[0], Hq = (int)c->n[1], Hkv = (int)c->n[2], D = (int)c->n[3], n_seq = (int)c->n[4];
    int causal = (int)c->n[5];
    const int32_t *cu = d->host[5];
    const float *q = d->host[2], *k = d->host[3], *v = d->host[4];
    size_t nq = (size_t)T * Hq * D, nk = (size_t)T * Hkv * D, nl = (size_t)Hq * T;
    float *out = xmalloc(nq * sizeof(float)), *lse = xmalloc(nl * sizeof(float));
    float *out2 = xmalloc(nq * sizeof(float)), *lse2 = xmalloc(nl * sizeof(float));
    float *q2 = xmalloc(nq * sizeof(float)), *k2 = xmalloc(nk * sizeof(float)), *v2 = xmalloc(nk * sizeof(float));
    float scale = (float)c->f;
    ops->attention_forward(be, out, lse, q, k, v, cu, n_seq, T, Hq, Hkv, D, scale, causal, 0);
    memcpy(q2, q, nq * sizeof(float)), memcpy(k2, k, nk * sizeof(float)), memcpy(v2, v, nk * sizeof(float));
    for (int t = cu[1]; t < cu[2]; t++) {
        for (int ch = 0; ch < Hq * D; ch++) q2[(size_t)t * Hq * D + ch] += 0.5f;
        for (int ch = 0; ch < Hkv * D; ch++) {
            k2[(size_t)t * Hkv * D + ch] *= -1.5f;
            v2[(size_t)t * Hkv * D + ch] += 1.0f;
        }
    }
    ops->attention_forward(be, out2, lse2, q2, k2, v2, cu, n_seq, T, Hq, Hkv, D, scale, causal, 0);
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
        memcpy(q2, q, nq * sizeof(float)), memcpy(k2, k, nk * sizeof(float)), memcpy(v2, v, nk * sizeof(float));
        for (int ch = 0; ch < Hkv * D; ch++) {
            k2[(size_t)last * Hkv * D + ch] += 1.0f;
            v2[(size_t)last * Hkv * D + ch] -= 1.0f;
        }
        ops->attention_forward(be, out2, lse2, q2, k2, v2, cu, n_seq, T, Hq, Hkv, D, scale, causal, 0);
        CHECK(same_bits(out2, out, (size_t)last * Hq * D), "a future key changed an earlier row");
        size_t at = (size_t)last * Hq * D;
        CHECK(last == first || !same_bits(out2 + at, out + at, (size_t)Hq * D), "the last row ignores its own key");
    }
    printf("  %-22s %-44s exact\n", "attention_forward",
           causal ? "sequence and causal isolation" : "sequence isolation");
    free(out), free(lse), free(out2), free(lse2), free(q2), free(k2), free(v2);
}

// attention_decode against attention_forward: row t of a decode case is the last row of a causal
// forward over the first pos[t] + 1 keys of its sequence laid out contiguously (gathered from the
// cache's shuffled blocks), with the row's query in that last row. Both take fp32 scores scaled
// after the dot product and the same fp64 softmax rounded to fp32; only the order of the fp32 sums
// differs (OpenBLAS's sgemm kernels against the decode's loops over D and over the keys), ~1e-7 per
// dot product and P V sum: relative 1e-6, as the forward's own tolerance. And each row alone (T = 1)
// gives the bits it gets in the batch (ops.h: a batch's composition changes no answer).
static void decode_matches_forward(const opcheck_case *c, opcheck_data *d) {
    int T = (int)c->n[0], Hq = (int)c->n[1], Hkv = (int)c->n[2], D = (int)c->n[3], bs = (int)c->n[5];
    if (T == 0) return;
    int n_seq, max_blocks, n_blocks;
    opcheck_decode_geometry(c, &n_seq, &max_blocks, &n_blocks);
    const float *q = d->host[1], *kc = d->host[2], *vc = d->host[3];
    const int32_t *table = d->host[4], *seq = d->host[5], *pos = d->host[6];
    size_t qs = (size_t)Hq * D, ks = (size_t)Hkv * D, nq = (size_t)T * qs;
    float scale = (float)c->f;
    float *out = xmalloc(nq * sizeof(float)), *one = xmalloc(qs * sizeof(float));
    double *fwd = xmalloc(nq * sizeof(double));
    ops->attention_decode(be, out, q, kc, vc, table, seq, pos, T, n_seq, max_blocks, bs, n_blocks, Hq, Hkv, D, scale,
                          0);
    int alone_same = 1;
    for (int t = 0; t < T; t++) {
        int L = pos[t] + 1;
        int32_t cu[2] = {0, L};
        float *qf = xmalloc((size_t)L * qs * sizeof(float)), *of = xmalloc((size_t)L * qs * sizeof(float));
        float *kf = xmalloc((size_t)L * ks * sizeof(float)), *vf = xmalloc((size_t)L * ks * sizeof(float));
        float *lse = xmalloc((size_t)L * Hq * sizeof(float));
        for (int i = 0; i < L; i++) {
            size_t row = (size_t)table[(size_t)seq[t] * max_blocks + i / bs] * bs + (size_t)(i % bs);
            memcpy(qf + (size_t)i * qs, q + (size_t)t * qs, qs * sizeof(float));
            memcpy(kf + (size_t)i * ks, kc + row * ks, ks * sizeof(float));
            memcpy(vf + (size_t)i * ks, vc + row * ks, ks * sizeof(float));
        }
        ops->attention_forward(be, of, lse, qf, kf, vf, cu, 1, L, Hq, Hkv, D, scale, 1, 0);
        for (size_t i = 0; i < qs; i++) fwd[(size_t)t * qs + i] = of[(size_t)(L - 1) * qs + i];
        ops->attention_decode(be, one, q + (size_t)t * qs, kc, vc, table, seq + t, pos + t, 1, n_seq, max_blocks, bs,
                              n_blocks, Hq, Hkv, D, scale, 0);
        alone_same &= same_bits(one, out + (size_t)t * qs, qs);
        free(qf), free(of), free(kf), free(vf), free(lse);
    }
    char what[320];
    describe(c, "= attention_forward's rows", what, sizeof what);
    opcheck_ref_tol tol = {.metric = OPCHECK_REL, .tol = 1e-6};
    opcheck_verdict v;
    opcheck_compare_ref(what, &tol, out, fwd, nq, &v);
    print_verdict(&v);
    CHECK(alone_same, "attention_decode: a row alone differs from the same row in the batch");
    free(out), free(one), free(fwd);
}

// The padding row: nn.Embedding never updates it (its bits stay, onto random contents, over two
// calls that accumulate); without a padding index it gets the gradient of the tokens that use it.
static void embedding_padding(const opcheck_case *c, opcheck_data *d) {
    int T = (int)c->n[0], C = (int)c->n[1], V = (int)c->n[2], pad = (int)c->n[3];
    const float *dout = d->host[1];
    const int32_t *ids = d->host[2];
    double **want = opcheck_reference(d);  // from zeros: the gradient itself
    size_t nt = (size_t)V * C;
    float *init = xmalloc(nt * sizeof(float)), *dtable = xmalloc(nt * sizeof(float));
    for (size_t i = 0; i < nt; i++) init[i] = (float)cos(3.0 * i + 1.0);
    memcpy(dtable, init, nt * sizeof(float));
    ops->embedding_backward(be, dtable, dout, ids, T, C, V, pad);
    ops->embedding_backward(be, dtable, dout, ids, T, C, V, pad);
    double *twice = xmalloc(nt * sizeof(double));
    for (size_t i = 0; i < nt; i++) twice[i] = init[i] + 2 * want[0][i];
    char what[96];
    opcheck_verdict v;
    snprintf(what, sizeof what, "%-22s twice onto random contents (accumulate)", "embedding_backward");
    opcheck_compare_ref(what, &c->ref[0], dtable, twice, nt, &v);
    print_verdict(&v);
    CHECK(same_bits(dtable + (size_t)pad * C, init + (size_t)pad * C, C), "the padding row changed");
    memset(dtable, 0, nt * sizeof(float));
    ops->embedding_backward(be, dtable, dout, ids, T, C, V, -1);
    double *row = xcalloc(C, sizeof(double));
    for (int t = 0; t < T; t++)
        if (ids[t] == pad)
            for (int ch = 0; ch < C; ch++) row[ch] += dout[(size_t)t * C + ch];
    snprintf(what, sizeof what, "%-22s row %d with padding_idx = -1", "embedding_backward", pad);
    opcheck_ref_tol fwd = {.metric = OPCHECK_REL, .tol = 1e-6};  // a sum of two fp32 values: the forward tolerance
    opcheck_compare_ref(what, &fwd, dtable + (size_t)pad * C, row, C, &v);
    print_verdict(&v);
    opcheck_reference_free(d, want);
    free(init), free(dtable), free(twice), free(row);
}

// grid_pool_backward is grid_pool's transpose: <grid_pool(x), y> = <x, grid_pool_backward(y)> for any x
// and y, on each of the registry's CPU cases (y its dout). Average and the resize are linear in x; max is
// linear on the selection its forward makes for x, and the backward given in = x routes y to exactly those
// inputs, so the identity holds for max too (on finite x, ties included). x: the case's `in` for max, its
// non-finite values (the patterns', and the NaN of the rows no window reads) replaced by finite ones; a
// fixed finite draw otherwise. Both sides summed in fp64 over fp32 values: they differ by the ops' fp32
// roundings (the average's sum, the resize's weights and products, a few 6e-8 each), well inside 1e-6 of
// sum |x_i| |grid_pool_backward(y)_i|; a wrong index, weight or window moves it by 1e-2 or more.
static void pool_adjoint(const opcheck_case *c, opcheck_data *d) {
    int B = (int)c->n[0], G = (int)c->n[1], C = (int)c->n[2], mode = (int)c->n[3], s = (int)c->n[4];
    if (B == 0) return;
    int Go = mode == LLAVA_POOL_BILINEAR ? (G + s - 1) / s : G / s;
    size_t n_in = (size_t)B * G * G * C, n_out = (size_t)B * Go * Go * C;
    const float *y = d->host[1];
    float *x = xmalloc(n_in * sizeof(float)), *fwd = xmalloc(n_out * sizeof(float)),
          *bwd = xmalloc(n_in * sizeof(float));
    for (size_t i = 0; i < n_in; i++) {
        float v = mode == LLAVA_POOL_MAX ? ((const float *)d->host[2])[i] : NAN;
        x[i] = isfinite(v) ? v : (float)sin(0.7 * (double)i + 0.3);
    }
    ops->grid_pool(be, fwd, x, B, G, C, mode, s);
    ops->grid_pool_backward(be, bwd, y, x, B, G, C, mode, s);
    double lhs = 0.0, rhs = 0.0, mag = 0.0;
    for (size_t i = 0; i < n_out; i++) lhs += (double)fwd[i] * y[i];
    for (size_t i = 0; i < n_in; i++) rhs += (double)x[i] * bwd[i], mag += fabs((double)x[i] * bwd[i]);
    double err = fabs(lhs - rhs) / mag;
    char what[320];
    describe(c, "adjoint of grid_pool", what, sizeof what);
    printf("  %-68s %.2e  (tol 1.0e-06)\n", what, err);
    CHECK(err <= 1e-6, "%s: %.17g vs %.17g (relative %.3e of %.6g)", what, lhs, rhs, err, mag);
    free(x), free(fwd), free(bwd);
}

// resize_bilinear_backward is resize_bilinear's transpose, as pool_adjoint above: x a fixed finite draw, y the
// case's dout.
static void resize_adjoint(const opcheck_case *c, opcheck_data *d) {
    int H = (int)c->n[0], W = (int)c->n[1], OH = (int)c->n[2], OW = (int)c->n[3], C = (int)c->n[4];
    size_t n_in = (size_t)H * W * C, n_out = (size_t)OH * OW * C;
    if (!n_in || !n_out) return;
    const float *y = d->host[1];
    float *x = xmalloc(n_in * sizeof(float)), *fwd = xmalloc(n_out * sizeof(float)),
          *bwd = xmalloc(n_in * sizeof(float));
    for (size_t i = 0; i < n_in; i++) x[i] = (float)sin(0.7 * (double)i + 0.3);
    ops->resize_bilinear(be, fwd, x, H, W, OH, OW, C);
    ops->resize_bilinear_backward(be, bwd, y, H, W, OH, OW, C);
    double lhs = 0.0, rhs = 0.0, mag = 0.0;
    for (size_t i = 0; i < n_out; i++) lhs += (double)fwd[i] * y[i];
    for (size_t i = 0; i < n_in; i++) rhs += (double)x[i] * bwd[i], mag += fabs((double)x[i] * bwd[i]);
    double err = fabs(lhs - rhs) / mag;
    char what[320];
    describe(c, "adjoint of resize_bilinear", what, sizeof what);
    printf("  %-68s %.2e  (tol 1.0e-06)\n", what, err);
    CHECK(err <= 1e-6, "%s: %.17g vs %.17g (relative %.3e of %.6g)", what, lhs, rhs, err, mag);
    free(x), free(fwd), free(bwd);
}

// A target past the vocabulary poisons the loss instead of reading out of bounds.
static void test_cross_entropy_bad_target(void) {
    enum { V = 37 };
    float z[V], loss = 0.0f;
    for (int j = 0; j < V; j++) z[j] = (float)sin(j + 0.5);
    int32_t bad[1] = {V};
    ops->cross_entropy(be, &loss, NULL, z, bad, 1, V, 1.0f);
    CHECK(isnan(loss), "target >= V must give a NaN loss, got %g", loss);
    printf("  %-22s %-44s NaN\n", "cross_entropy", "target = V");
}

int main(void) {
    be = test_cpu();
    ops = be->ops;
    CHECK_EQ_STR(ops->name, "cpu");
    printf("  %-22s %-44s %-9s  %s\n", "op", "check", "error", "tolerance");
    test_registry();
    test_memory();
    for (int i = 0; i < OPCHECK_N_CASES; i++)
        if (OPCHECK_CASES[i].flags & OPCHECK_CPU) run_case(&OPCHECK_CASES[i]);
    for_cpu_cases(OPCHECK_RMSNORM_FORWARD, rmsnorm_hf_order);
    for_cpu_cases(OPCHECK_ROPE_FORWARD, rope_contracts);
    test_rope_inv_freq();
    for_cpu_cases(OPCHECK_ATTENTION_FORWARD, attention_isolation);
    for_cpu_cases(OPCHECK_ATTENTION_DECODE, decode_matches_forward);
    for_cpu_cases(OPCHECK_EMBEDDING_BACKWARD, embedding_padding);
    for_cpu_cases(OPCHECK_GRID_POOL_BACKWARD, pool_adjoint);
    for_cpu_cases(OPCHECK_RESIZE_BILINEAR_BACKWARD, resize_adjoint);
    test_cross_entropy_bad_target();
    printf("  %-22s %d CPU cases: forwards within %.2g relative of fp64, backwards %.2g of finite differences\n",
           "worst", n_cpu_cases, worst_fwd, worst_bwd);
    return check_done();
}
