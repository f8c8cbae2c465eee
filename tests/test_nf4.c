// NF4 with double quantisation against bitsandbytes: every golden of tools/reference/make_nf4_goldens.py
// (bf16, fp16 and fp32 weights of odd sizes, zero, huge, tiny and subnormal blocks, exact threshold ties,
// N(0, 0.02) weights) quantised byte for byte and dequantised bit for bit; the round-trip error against a
// bound derived from the two code tables; the packing order; the storage of a 7B LLaMA.
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/dtype.h"
#include "common/util.h"
#include "model/io/safetensors.h"
#include "model/nf4.h"

#define GOLDEN "tests/data/nf4/nf4_goldens.safetensors"

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static const st_tensor *need(const st_file *f, const char *c, const char *what) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", c, what);
    const st_tensor *t = st_find(f, name);
    CHECK(t != NULL, "golden lacks %s", name);
    return t;
}

static float *to_f32(const st_file *f, const st_tensor *t) {
    float *v = xmalloc(t->numel * sizeof(float) + 1);
    CHECK(st_tensor_to_f32(f, t, v) == 0, "%s: %s", t->name, llava_errmsg());
    return v;
}

// Bit-equal fp32 arrays (so -0 and 0 differ, as bitsandbytes' outputs do); prints the first difference.
static size_t count_bit_diffs(const char *c, const char *what, const float *a, const float *b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (bits(a[i]) != bits(b[i])) {
            if (bad == 0) fprintf(stderr, "%s %s[%zu]: %.9g, golden %.9g\n", c, what, i, (double)a[i], (double)b[i]);
            bad++;
        }
    return bad;
}

// The largest distance from a value to the code that represents it, over a table's [-1, 1] range:
// half the widest gap between adjacent entries, or the distance from -1 to code[0] when the table does
// not reach -1 (the dynamic map stops at -0.99296875).
static double worst_rounding(const float *code, int len) {
    double g = 1.0 + code[0];
    for (int i = 0; i + 1 < len; i++) g = fmax(g, ((double)code[i + 1] - code[i]) / 2);
    return g;
}

typedef struct {
    double max_ratio;  // max over elements of |w - w'| / bound
    double sq_err, sq_ref;
} roundtrip;

// The round-trip bound. With A = a block's absmax and A' its dequantised value,
//   |w - c A'| <= |w - c A| + |c| |A - A'| <= g1 A + g2 absmax2,
// g1 = the NF4 table's worst rounding (0.1385: half the gap between 0.723 and 1), g2 = the dynamic
// map's (0.00703: its top decade's half step, and -1's distance to -0.99296875), absmax2 the block's
// 256-block of statistics' scale. The fp32 roundings (of 1/A, w/A, A', c A') add a few ulps of A and
// absmax2, and a flushed subnormal up to FLT_MIN: the slack below. A block with A or absmax2 above 2^126
// is excluded: its reciprocal flushes to 0 on the GPU and every value codes 7 (or every statistic the
// map's 0), which the goldens carry once.
static void check_roundtrip(const char *c, const float *w, const float *deq, const nf4_tensor *q, roundtrip *r) {
    double g1 = worst_rounding(nf4_code, 16), g2 = worst_rounding(nf4_dynamic_code, 256);
    for (size_t b = 0; b < q->n_blocks; b++) {
        size_t lo = b * NF4_BLOCK, hi = lo + NF4_BLOCK < q->n ? lo + NF4_BLOCK : q->n;
        double a = 0;
        for (size_t i = lo; i < hi; i++) a = fmax(a, fabs((double)w[i]));
        double s2 = q->absmax2[b / NF4_STAT_BLOCK];
        if (a > ldexp(1.0, 126) || s2 > ldexp(1.0, 126)) continue;
        double bound = g1 * a + g2 * s2 + 1e-6 * (a + s2) + FLT_MIN;
        for (size_t i = lo; i < hi; i++) {
            double e = fabs((double)w[i] - deq[i]);
            r->max_ratio = fmax(r->max_ratio, e / bound);
            r->sq_err += e * e;
            r->sq_ref += (double)w[i] * w[i];
        }
    }
    CHECK(r->max_ratio <= 1.0, "%s: round-trip error %.3g of the bound", c, r->max_ratio);
}

static void check_case(const st_file *f, const char *c) {
    const st_tensor *tin = need(f, c, "input"), *tp = need(f, c, "packed"), *tq = need(f, c, "absmax_q"),
                    *t2 = need(f, c, "absmax2"), *to = need(f, c, "offset"), *td = need(f, c, "dequant"),
                    *td32 = need(f, c, "dequant_f32");
    if (!tin || !tp || !tq || !t2 || !to || !td || !td32) return;
    size_t n = tin->numel;
    float *w = to_f32(f, tin), *g2 = to_f32(f, t2), *goff = to_f32(f, to), *gd = to_f32(f, td), *gd32 = to_f32(f, td32);

    nf4_tensor q;
    CHECK(nf4_quantize(w, n, &q) == 0, "%s: %s", c, llava_errmsg());
    q.dtype = tin->dtype;
    CHECK(tp->dtype == DT_U8 && tp->numel == (n + 1) / 2, "%s: golden packed holds %llu bytes", c,
          (unsigned long long)tp->numel);
    CHECK(q.n_blocks == tq->numel && q.n_stat_blocks == t2->numel, "%s: %zu blocks, %zu stat blocks", c, q.n_blocks,
          q.n_stat_blocks);
    size_t bad = 0;
    for (size_t i = 0; i < (n + 1) / 2; i++)
        if (q.packed[i] != tp->data[i]) {
            if (bad == 0) fprintf(stderr, "%s packed[%zu]: %02x, golden %02x\n", c, i, q.packed[i], tp->data[i]);
            bad++;
        }
    CHECK(bad == 0, "%s: %zu of %zu packed bytes differ", c, bad, (n + 1) / 2);
    bad = 0;
    for (size_t b = 0; b < q.n_blocks; b++) bad += q.absmax_q[b] != tq->data[b];
    CHECK(bad == 0, "%s: %zu of %zu absmax codes differ", c, bad, q.n_blocks);
    CHECK(count_bit_diffs(c, "absmax2", q.absmax2, g2, q.n_stat_blocks) == 0, "%s: absmax2", c);
    CHECK(bits(q.offset) == bits(goff[0]), "%s: offset %.9g, golden %.9g", c, (double)q.offset, (double)goff[0]);
    CHECK(nf4_bytes(n) == (n + 1) / 2 + q.n_blocks + 4 * q.n_stat_blocks + 4, "%s: nf4_bytes", c);

    float *d = xmalloc(n * sizeof(float));
    nf4_dequantize(&q, d);
    CHECK(count_bit_diffs(c, "dequant_f32", d, gd32, n) == 0, "%s: fp32 dequantisation", c);
    roundtrip r = {0};
    check_roundtrip(c, w, d, &q, &r);
    CHECK(nf4_dequantize_as(&q, tin->dtype, d) == 0, "%s: %s", c, llava_errmsg());
    CHECK(count_bit_diffs(c, "dequant", d, gd, n) == 0, "%s: dequantisation as %s", c, dtype_name(tin->dtype));
    if (n >= 4096)
        printf("%-24s n %6zu  rel-L2 round-trip error %.4f, max error %.3f of the bound\n", c, n,
               sqrt(r.sq_err / r.sq_ref), r.max_ratio);
    nf4_free(&q);
    free(d);
    free(w);
    free(g2);
    free(goff);
    free(gd);
    free(gd32);
}

// Uniform in (0, 1) from a fixed 64-bit LCG, and N(0, 1) from two of them (Box-Muller).
static double unif(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
}

// Beyond the goldens: an N(0, 0.02) matrix of one 7B MLP row-block (64 x 11008, bf16 values). Every code
// is the NF4 level nearest to w / absmax (an oracle independent of the threshold table, in fp64), except
// within 1e-6 of a midpoint; the round-trip bound holds; the error is what NF4 is known for.
static void check_random_matrix(void) {
    size_t n = 64 * 11008;
    float *w = xmalloc(n * sizeof(float)), *d = xmalloc(n * sizeof(float));
    uint64_t s = 42;
    for (size_t i = 0; i < n; i++) {
        double u1 = unif(&s), u2 = unif(&s);
        w[i] = bf16_to_f32(f32_to_bf16((float)(0.02 * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2))));
    }
    nf4_tensor q;
    CHECK(nf4_quantize(w, n, &q) == 0, "%s", llava_errmsg());
    size_t wrong = 0, near_mid = 0;
    for (size_t b = 0; b < q.n_blocks; b++) {
        double a = 0;
        for (size_t i = b * 64; i < b * 64 + 64; i++) a = fmax(a, fabs((double)w[i]));
        for (size_t i = b * 64; i < b * 64 + 64; i++) {
            double y = w[i] / a;
            int best = 0;
            for (int k = 1; k < 16; k++)
                if (fabs(y - nf4_code[k]) < fabs(y - nf4_code[best])) best = k;
            int second = best > 0 && (best == 15 || fabs(y - nf4_code[best - 1]) < fabs(y - nf4_code[best + 1]))
                             ? best - 1
                             : best + 1;
            unsigned c = (i % 2 == 0) ? q.packed[i / 2] >> 4 : q.packed[i / 2] & 15u;
            if (fabs(fabs(y - nf4_code[best]) - fabs(y - nf4_code[second])) < 1e-6) near_mid++;
            else if ((int)c != best) wrong++;
        }
    }
    CHECK(wrong == 0, "%zu of %zu codes are not the nearest level", wrong, n);
    nf4_dequantize(&q, d);
    roundtrip r = {0};
    check_roundtrip("64x11008", w, d, &q, &r);
    double rel = sqrt(r.sq_err / r.sq_ref);
    // NF4 of Gaussian blocks of 64 loses about a tenth of the signal (rel-L2 ~0.1); far off means a bug.
    CHECK(rel > 0.05 && rel < 0.15, "N(0, 0.02) rel-L2 round-trip error %.4f", rel);
    printf(
        "64x11008 N(0,0.02) bf16: rel-L2 error %.4f, max error %.3f of the bound, %zu of %zu values within "
        "1e-6 of a midpoint\n",
        rel, r.max_ratio, near_mid, n);
    nf4_free(&q);
    free(w);
    free(d);
}

int main(void) {
    st_file f;
    CHECK(st_open(&f, GOLDEN) == 0, "%s", llava_errmsg());
    const char *cases = st_meta(&f, "cases");
    CHECK(cases != NULL, "golden lacks its case list");

    // The two tables, bit for bit as bitsandbytes 0.49.2 built them.
    const st_tensor *tc = st_find(&f, "nf4_code"), *tc2 = st_find(&f, "dynamic_code");
    CHECK(tc && tc->numel == 16 && tc2 && tc2->numel == 256, "golden code tables");
    if (tc && tc2) {
        float *c = to_f32(&f, tc), *c2 = to_f32(&f, tc2);
        CHECK(count_bit_diffs("table", "nf4_code", nf4_code, c, 16) == 0, "NF4 levels");
        CHECK(count_bit_diffs("table", "dynamic_code", nf4_dynamic_code, c2, 256) == 0, "dynamic map");
        free(c);
        free(c2);
    }
    CHECK(nf4_dynamic_code[0] == -0.99296875f && nf4_dynamic_code[127] == 0.0f && nf4_dynamic_code[255] == 1.0f,
          "dynamic map ends");

    int n_cases = 0;
    if (cases) {
        char *list = xstrdup(cases), *save = NULL;
        for (char *c = strtok_r(list, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
            check_case(&f, c);
            n_cases++;
        }
        free(list);
    }
    CHECK(n_cases >= 30, "only %d golden cases", n_cases);
    printf("%d golden tensors quantised and dequantised bit for bit\n", n_cases);
    st_close(&f);

    // Packing: the first value in the high nibble; an odd count's last low nibble codes a 0 (7), or 0
    // when its block is all zero (0 * inf is NaN, which the kernel codes 0).
    nf4_tensor q;
    float two[2] = {1.0f, -1.0f}, one[1] = {0.5f}, zeros[3] = {0, 0, 0};
    CHECK(nf4_quantize(two, 2, &q) == 0 && q.packed[0] == 0xF0, "{1, -1} packs to f0, got %02x", q.packed[0]);
    nf4_free(&q);
    CHECK(nf4_quantize(one, 1, &q) == 0 && q.packed[0] == 0xF7, "{0.5} packs to f7, got %02x", q.packed[0]);
    CHECK(q.offset == 0.5f && q.absmax2[0] == 0.0f && q.absmax_q[0] == 0, "one block: offset 0.5, stat 0 coded 0");
    float back;
    nf4_dequantize(&q, &back);
    CHECK(back == 0.5f, "{0.5} comes back as %g", (double)back);
    nf4_free(&q);
    CHECK(nf4_quantize(zeros, 3, &q) == 0 && q.packed[0] == 0 && q.packed[1] == 0, "zeros pack to 00 00");
    float z[3];
    nf4_dequantize(&q, z);
    CHECK(z[0] == 0 && signbit(z[0]) && z[2] == 0 && signbit(z[2]), "zeros come back as -0 (level -1 times 0)");
    nf4_free(&q);

    // Refused: nothing, and a value that is not finite (named by index).
    float nanv[3] = {0.1f, NAN, 0.2f};
    CHECK(nf4_quantize(nanv, 3, &q) != 0, "NaN refused");
    CHECK_ERR_HAS("value 1 of 3 is NaN");
    CHECK(q.packed == NULL, "nothing allocated on refusal");
    CHECK(nf4_quantize(nanv, 0, &q) != 0, "0 values refused");
    CHECK(nf4_dequantize_as(&q, DT_F64, z) != 0, "F64 output refused");

    check_random_matrix();

    // Storage for memory plans: packed codes n/2, a byte per 64 weights, an fp32 per 256 blocks, the offset.
    CHECK_EQ_INT(nf4_bytes(1), 1 + 1 + 4 + 4);
    CHECK_EQ_INT(nf4_bytes(65), 33 + 2 + 4 + 4);
    size_t attn = nf4_bytes((size_t)4096 * 4096), mlp = nf4_bytes((size_t)11008 * 4096);
    CHECK_EQ_INT(attn, 8388608 + 262144 + 1024 * 4 + 4);  // 4096x4096: 262144 blocks, 1024 stat blocks
    CHECK_EQ_INT(mlp, 22544384 + 704512 + 2752 * 4 + 4);  // 11008x4096: 704512 blocks, 2752 stat blocks
    size_t model = 32 * (4 * attn + 3 * mlp);             // LLaMA-7B: q,k,v,o and gate,up,down per layer
    CHECK_EQ_INT(model, 3340772224ull);
    size_t bf16 = (size_t)32 * (4 * 4096 * 4096 + 3 * 11008 * 4096) * 2;
    printf("7B LLaMA linear layers: %zu bytes NF4 (%.3f GiB, %.4f bits per weight) vs %zu bf16 (%.3f GiB)\n", model,
           model / 1073741824.0, 8.0 * model / (bf16 / 2), bf16, bf16 / 1073741824.0);
    return check_done();
}
