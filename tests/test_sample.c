// Sampling (infer/sample.h) against transformers 4.46.3's warpers (tools/reference/make_sample_goldens.py,
// tests/data/golden/sample/README.md), and the sampler's own properties.
//
// Warpers: for every golden case (480 on 6 rows of V=300, 40 on a row of V=32000) the -inf mask equals
// transformers' exactly, and every kept score is bit-identical to transformers' (logits / temperature is one fp32
// division, which is what torch does: no tolerance is needed and none is allowed). Where a group of equal scores
// straddles the top-p boundary (the golden marks those cases), torch's unstable sort decides which of them
// transformers keeps; there the mask must agree outside the group, the number kept inside it must agree, and ours
// must be the group's highest indices (the stable order, sample.c).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "common/util.h"
#include "infer/sample.h"
#include "model/io/safetensors.h"

#define GOLDEN "tests/data/golden/sample/warp.safetensors"

static const st_tensor *find(const st_file *f, const char *group, const char *name) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", group, name);
    const st_tensor *t = st_find(f, full);
    if (!t) {
        fprintf(stderr, "FAIL: %s has no tensor %s\n", GOLDEN, full);
        exit(1);
    }
    return t;
}

static const void *tensor(const st_file *f, const char *group, const char *name, dtype_t dt, uint64_t numel) {
    const st_tensor *t = find(f, group, name);
    if (t->dtype != dt || t->numel != numel) {
        fprintf(stderr, "FAIL: %s: %s.%s has another dtype, or %llu elements instead of %llu\n", GOLDEN, group, name,
                (unsigned long long)t->numel, (unsigned long long)numel);
        exit(1);
    }
    return t->data;
}

static int bit(const uint8_t *packed, int i) { return (packed[i >> 3] >> (7 - (i & 7))) & 1; }

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

// Fills the slots past `used` floats with a pattern and later checks they are untouched.
static void canary_fill(float *w, size_t used, size_t total) {
    for (size_t i = used; i < total; i++) w[i] = 12345.678f;
}
static int canary_ok(const float *w, size_t used, size_t total) {
    for (size_t i = used; i < total; i++)
        if (!same_bits(w[i], 12345.678f)) return 0;
    return 1;
}

static void golden_group(const st_file *f, const char *group) {
    const st_tensor *lt = find(f, group, "logits");
    const int R = (int)lt->shape[0], V = (int)lt->shape[1], B = (V + 7) / 8;
    const float *logits = tensor(f, group, "logits", DT_F32, (uint64_t)R * V);
    const int N = (int)find(f, group, "case_row")->numel;
    const int32_t *row = tensor(f, group, "case_row", DT_I32, (uint64_t)N);
    const int32_t *ti = tensor(f, group, "case_t_index", DT_I32, (uint64_t)N);
    const float *temp = tensor(f, group, "case_temperature", DT_F32, (uint64_t)N);
    const int32_t *topk = tensor(f, group, "case_top_k", DT_I32, (uint64_t)N);
    const float *topp = tensor(f, group, "case_top_p", DT_F32, (uint64_t)N);
    const uint8_t *keep = tensor(f, group, "case_keep", DT_U8, (uint64_t)N * B);
    const int32_t *kept = tensor(f, group, "case_kept", DT_I32, (uint64_t)N);
    const uint8_t *split = tensor(f, group, "case_tie_split", DT_U8, (uint64_t)N);
    const int NT = (int)find(f, group, "temperatures")->numel;
    const float *scaled = tensor(f, group, "scaled", DT_F32, (uint64_t)NT * R * V);

    float *scores = xmalloc(sizeof(float) * (size_t)V);
    float *work = xmalloc(sizeof(float) * (size_t)(2 * V + 64));
    int exact = 0, splits = 0, splits_ok = 0, bad_values = 0, bad_masks = 0;
    for (int c = 0; c < N; c++) {
        const float *x = logits + (size_t)row[c] * V, *want = scaled + ((size_t)ti[c] * R + row[c]) * V;
        const uint8_t *k = keep + (size_t)c * B;
        sample_params p = {temp[c], topk[c], topp[c]};
        canary_fill(work, (size_t)2 * V, (size_t)2 * V + 64);
        sample_warp(x, V, &p, scores, work);
        CHECK(canary_ok(work, (size_t)2 * V, (size_t)2 * V + 64), "%s case %d: sample_warp wrote past 2 V floats",
              group, c);
        int n_kept = 0, values_ok = 1;
        float vmin = INFINITY;  // the smallest score transformers keeps
        for (int i = 0; i < V; i++) {
            int mine = scores[i] != -INFINITY;
            n_kept += mine;
            if (mine && !same_bits(scores[i], want[i])) values_ok = 0;
            if (bit(k, i) && want[i] < vmin) vmin = want[i];
        }
        bad_values += !values_ok;
        CHECK(values_ok, "%s case %d (row %d, t %g, k %d, p %g): a kept score differs from transformers' bits", group,
              c, row[c], (double)p.temperature, p.top_k, (double)p.top_p);
        // a tie split: some token of transformers' smallest kept score was removed
        int is_split = 0;
        for (int i = 0; i < V; i++)
            if (!bit(k, i) && want[i] == vmin) is_split = 1;
        CHECK(is_split == split[c], "%s case %d: the golden says tie split %d, the data say %d", group, c, split[c],
              is_split);
        CHECK(n_kept == kept[c], "%s case %d (row %d, t %g, k %d, p %g): %d kept, transformers kept %d", group, c,
              row[c], (double)p.temperature, p.top_k, (double)p.top_p, n_kept, kept[c]);
        int outside = 0, group_kept = 0, group_mine = 0, suffix = 1, seen_kept = 0;
        for (int i = 0; i < V; i++) {
            int mine = scores[i] != -INFINITY;
            if (is_split && want[i] == vmin) {
                group_kept += bit(k, i);
                group_mine += mine;
                if (mine) seen_kept = 1;
                if (!mine && seen_kept) suffix = 0;  // ours must be the group's highest indices
            } else if (mine != bit(k, i)) {
                outside++;
            }
        }
        bad_masks += outside != 0;
        CHECK(outside == 0, "%s case %d (row %d, t %g, k %d, p %g): %d tokens filtered differently", group, c, row[c],
              (double)p.temperature, p.top_k, (double)p.top_p, outside);
        if (is_split) {
            splits++;
            CHECK(group_mine == group_kept && suffix, "%s case %d: tie group at %g: %d kept (transformers %d)%s", group,
                  c, (double)vmin, group_mine, group_kept, suffix ? "" : ", not the highest indices");
            splits_ok += group_mine == group_kept && suffix && outside == 0;
        } else {
            exact += outside == 0;
        }
    }
    printf(
        "%s (V=%d): %d cases: %d masks identical to transformers', %d tie splits (%d as specified); kept scores "
        "bit-identical in %d cases\n",
        group, V, N, exact, splits, splits_ok, N - bad_values);
    CHECK(N > 0 && exact + splits_ok == N && bad_masks == 0, "%s: %d of %d cases agree", group, exact + splits_ok, N);
    free(scores);
    free(work);
}

static void test_rng(void) {
    // splitmix64 from 0 fills the state (its published first outputs)...
    sample_rng r;
    sample_rng_seed(&r, 0);
    const uint64_t sm0[4] = {0xE220A8397B1DCDAFull, 0x6E789E6AA1B965F4ull, 0x06C45D188009454Full,
                             0xF88BB8A8724C81ECull};
    for (int i = 0; i < 4; i++) CHECK(r.s[i] == sm0[i], "state word %d %016llx", i, (unsigned long long)r.s[i]);
    // ...and xoshiro256** from the state {1, 2, 3, 4} gives the reference implementation's outputs, whose top 53
    // bits make the uniform.
    const uint64_t ref[10] = {11520ull,
                              0ull,
                              1509978240ull,
                              1215971899390074240ull,
                              1216172134540287360ull,
                              607988272756665600ull,
                              16172922978634559625ull,
                              8476171486693032832ull,
                              10595114339597558777ull,
                              2904607092377533576ull};
    sample_rng q = {{1, 2, 3, 4}};
    for (int i = 0; i < 10; i++) {
        double u = sample_rng_uniform(&q), want = (double)(ref[i] >> 11) * 0x1.0p-53;
        CHECK(u == want, "draw %d: %.17g, the reference gives %.17g", i, u, want);
    }
    // Uniform in [0, 1): a million draws stay inside, their mean within 7 standard errors (0.289/1000) of 1/2.
    sample_rng_seed(&r, 99);
    double lo = 1, hi = 0, sum = 0;
    for (int i = 0; i < 1000000; i++) {
        double u = sample_rng_uniform(&r);
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
        sum += u;
    }
    CHECK(lo >= 0 && hi < 1, "draws in [%g, %g]", lo, hi);
    CHECK_NEAR(sum / 1e6, 0.5, 7 * 0.2887 / 1000);
}

// Draws `n` tokens from the same logits with one generator.
static void draw_seq(const float *x, int V, const sample_params *p, sample_rng *r, int *out, int n, float *work) {
    for (int i = 0; i < n; i++) out[i] = sample_next(x, V, p, r, work);
}

static void test_seeds(const float *x, int V) {
    sample_params p = {1.0f, 0, 1.0f};
    float *work = xmalloc(sizeof(float) * (size_t)(3 * V + 64));
    int a[200], b[200], c[200], d[200];
    sample_rng r1, r2, r3;
    sample_rng_seed(&r1, 7);
    sample_rng_seed(&r2, 7);
    sample_rng_seed(&r3, 8);
    canary_fill(work, (size_t)3 * V, (size_t)3 * V + 64);
    draw_seq(x, V, &p, &r1, a, 200, work);
    CHECK(canary_ok(work, (size_t)3 * V, (size_t)3 * V + 64), "sample_next wrote past 3 V floats");
    draw_seq(x, V, &p, &r2, b, 200, work);
    draw_seq(x, V, &p, &r3, c, 200, work);
    CHECK(memcmp(a, b, sizeof a) == 0, "the same seed gave two sequences");
    int differ = 0;
    for (int i = 0; i < 200; i++) differ += a[i] != c[i];
    CHECK(differ > 100, "seeds 7 and 8 agree on %d of 200 draws (flat logits: they should rarely)", 200 - differ);
    // A sequence's draws do not depend on another sequence drawing in between (one generator each).
    sample_rng_seed(&r1, 7);
    sample_rng_seed(&r3, 8);
    sample_params q = {0.7f, 5, 0.9f};
    for (int i = 0; i < 200; i++) {
        d[i] = sample_next(x, V, &p, &r1, work);
        (void)sample_next(x, V, &q, &r3, work);
    }
    CHECK(memcmp(a, d, sizeof a) == 0, "interleaving another sequence changed a seeded sequence");
    free(work);
}

static void test_greedy(void) {
    enum { V = 16 };
    float x[V], s[V], work[3 * V];
    for (int i = 0; i < V; i++) x[i] = 0.25f * (float)(i % 5) - 1.0f;  // below 1
    x[3] = x[8] = x[13] = 2.0f;                                        // the maxima
    CHECK_EQ_INT(sample_argmax(x, V), 3);
    sample_params g = {0.0f, 1, 0.01f};  // greedy: top_k and top_p are ignored
    sample_rng r, r0;
    sample_rng_seed(&r, 5);
    r0 = r;
    CHECK_EQ_INT(sample_next(x, V, &g, &r, work), 3);
    CHECK(memcmp(&r, &r0, sizeof r) == 0, "greedy decoding used the generator");
    sample_warp(x, V, &g, s, work);
    CHECK(memcmp(s, x, sizeof x) == 0, "greedy parameters changed the logits");
    float neg[4] = {-INFINITY, -3.0f, -1.0f, -1.0f};
    CHECK_EQ_INT(sample_argmax(neg, 4), 2);
    // top_k 1 keeps the three tied maxima, and sampling draws among exactly those
    sample_params k1 = {1.0f, 1, 1.0f};
    int hits[V] = {0};
    for (int i = 0; i < 3000; i++) hits[sample_next(x, V, &k1, &r, work)]++;
    CHECK(hits[3] + hits[8] + hits[13] == 3000 && hits[3] > 850 && hits[8] > 850 && hits[13] > 850,
          "top_k 1 over three tied maxima drew %d/%d/%d of 3000", hits[3], hits[8], hits[13]);
}

// Pearson's chi-square of `cnt` (n draws) against probabilities `pr`, cells with an expected count under 5 pooled.
static double chi_square(const long *cnt, const double *pr, int V, long n, int *df) {
    double chi = 0, pool_e = 0, pool_o = 0;
    int cells = 0;
    for (int i = 0; i < V; i++) {
        double e = pr[i] * (double)n;
        if (e < 5) {
            pool_e += e;
            pool_o += (double)cnt[i];
            continue;
        }
        chi += ((double)cnt[i] - e) * ((double)cnt[i] - e) / e;
        cells++;
    }
    if (pool_e >= 5) {
        chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        cells++;
    } else if (pool_o > 0) {
        chi = INFINITY;  // draws where (almost) nothing was expected
    }
    *df = cells - 1;
    return chi;
}

static void softmax64(const float *s, int V, double *pr) {
    double m = -INFINITY, z = 0;
    for (int i = 0; i < V; i++) m = s[i] > m ? s[i] : m;
    for (int i = 0; i < V; i++) z += pr[i] = s[i] == -INFINITY ? 0 : exp((double)s[i] - m);
    for (int i = 0; i < V; i++) pr[i] /= z;
}

static void test_distribution(const float *x, int V) {
    const sample_params p = {0.7f, 50, 0.95f};
    float *s = xmalloc(sizeof(float) * (size_t)V), *work = xmalloc(sizeof(float) * (size_t)(3 * V));
    double *pr = xmalloc(sizeof(double) * (size_t)V), *pr_alt = xmalloc(sizeof(double) * (size_t)V);
    long *cnt = xcalloc((size_t)V, sizeof(long));
    sample_warp(x, V, &p, s, work);
    softmax64(s, V, pr);
    const long n = 200000;
    sample_rng r;
    sample_rng_seed(&r, 12345);
    long filtered = 0;
    for (long i = 0; i < n; i++) {
        int t = sample_next(x, V, &p, &r, work);
        cnt[t]++;
        filtered += s[t] == -INFINITY;
    }
    CHECK(filtered == 0, "%ld draws of filtered tokens", filtered);
    int df, kept = 0;
    double worst = 0, worst_z = 0;
    for (int i = 0; i < V; i++) {
        kept += s[i] != -INFINITY;
        double d = fabs((double)cnt[i] / (double)n - pr[i]), sd = sqrt(pr[i] * (1 - pr[i]) / (double)n);
        worst = d > worst ? d : worst;
        if (sd > 0 && d / sd > worst_z) worst_z = d / sd;
    }
    // Under the right distribution chi-square has mean df and variance 2 df; df + 6 sqrt(2 df) is passed by chance
    // with probability below 1e-6 for these df (Wilson-Hilferty), and a fixed seed makes the verdict repeatable.
    double chi = chi_square(cnt, pr, V, n, &df), bound = df + 6 * sqrt(2.0 * df);
    printf(
        "200k draws (t 0.7, k 50, p 0.95; %d tokens kept): chi-square %.1f on %d df (bound %.1f), max |freq - p| "
        "%.2e (%.1f standard errors)\n",
        kept, chi, df, bound, worst, worst_z);
    CHECK(df >= 10 && chi < bound, "chi-square %.1f on %d df above %.1f", chi, df, bound);
    // Each cell within 5 standard errors (the most extreme of ~50 cells goes past 5 with probability ~3e-5).
    CHECK(worst_z < 5, "a token's frequency is %.1f standard errors from its probability", worst_z);
    // The same counts against a slightly different distribution (temperature 0.75) must fail the same bound,
    // or the bound is too loose to see a wrong temperature.
    sample_params alt = {0.75f, 50, 0.95f};
    sample_warp(x, V, &alt, s, work);
    softmax64(s, V, pr_alt);
    int df2;
    double chi2 = chi_square(cnt, pr_alt, V, n, &df2);
    printf("the same draws against temperature 0.75: chi-square %.1f on %d df\n", chi2, df2);
    CHECK(chi2 > df2 + 6 * sqrt(2.0 * df2), "the test cannot tell temperature 0.7 from 0.75 (chi-square %.1f)", chi2);
    free(s);
    free(work);
    free(pr);
    free(pr_alt);
    free(cnt);
}

static void test_check(void) {
    const sample_params ok[] = {{0.0f, 0, 1.0f}, {0.7f, 50, 0.95f}, {2.0f, 100000, 1e-6f}, {1.0f, 0, 1.0f}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        CHECK(sample_params_check(&ok[i]) == 0, "case %zu refused: %s", i, llava_errmsg());
    struct {
        sample_params p;
        const char *names[2];
    } bad[] = {
        {{-1.0f, 0, 1.0f}, {"temperature", "-1"}},
        {{NAN, 0, 1.0f}, {"temperature", "nan"}},
        {{INFINITY, 0, 1.0f}, {"temperature", "inf"}},
        {{-0.5f, 0, 1.0f}, {"temperature", "-0.5"}},
        {{0.7f, -1, 1.0f}, {"top_k", "-1"}},
        {{0.7f, 0, 0.0f}, {"top_p", " 0 "}},
        {{0.7f, 0, 1.5f}, {"top_p", "1.5"}},
        {{0.7f, 0, -0.1f}, {"top_p", "-0.1"}},
        {{0.7f, 0, NAN}, {"top_p", "nan"}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        llava_clear_error();
        CHECK(sample_params_check(&bad[i].p) == -1, "case %zu accepted", i);
        CHECK_ERR_HAS(bad[i].names[0]);
        CHECK_ERR_HAS(bad[i].names[1]);
    }
}

// top_p small enough to keep one token: of three tied maxima the highest index stays (the stable order).
static void test_tied_maxima(const float *x, int V) {
    float *s = xmalloc(sizeof(float) * (size_t)V), *work = xmalloc(sizeof(float) * (size_t)(2 * V));
    sample_params p = {1.0f, 0, 0.01f};
    sample_warp(x, V, &p, s, work);
    int n = 0, which = -1;
    for (int i = 0; i < V; i++)
        if (s[i] != -INFINITY) n++, which = i;
    CHECK(n == 1 && which == 250, "top_p 0.01 on tied maxima 40, 41, 250 kept %d tokens (last %d)", n, which);
    free(s);
    free(work);
}

// A cumulative probability exactly at 1 - top_p is removed ("<=" in TopPLogitsWarper). The expected masks are what
// transformers 4.46.3 printed for these rows (equal logits: exact probabilities 1/2 and 1/4 in fp32 and fp64).
static void test_exact_boundary(void) {
    struct {
        float x[4];
        int V;
        float top_p;
        int keep[4];
    } c[] = {
        {{0, 0}, 2, 0.5f, {0, 1}},
        {{0, 0, 0, 0}, 4, 0.75f, {0, 1, 1, 1}},
        {{0, 0, 0, 0}, 4, 0.5f, {0, 0, 1, 1}},
        {{1, 0, 1, 0}, 4, 0.5f, {1, 0, 1, 0}},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        float s[4], work[8];
        sample_params p = {1.0f, 0, c[i].top_p};
        sample_warp(c[i].x, c[i].V, &p, s, work);
        int same = 1;
        for (int v = 0; v < c[i].V; v++) same &= (s[v] != -INFINITY) == c[i].keep[v];
        CHECK(same, "boundary case %zu: the kept tokens differ from transformers'", i);
    }
}

static void time_big(const float *x, int V) {
    float *work = xmalloc(sizeof(float) * (size_t)(3 * V));
    sample_rng r;
    sample_rng_seed(&r, 1);
    const sample_params ps[3] = {{1.0f, 0, 0.95f}, {0.7f, 50, 0.9f}, {1.0f, 0, 1.0f}};
    for (int k = 0; k < 3; k++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 200; i++) (void)sample_next(x, V, &ps[k], &r, work);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("sample_next, V=%d, t %g k %d p %g: %.3f ms per token\n", V, (double)ps[k].temperature, ps[k].top_k,
               (double)ps[k].top_p,
               ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6) / 200);
    }
    free(work);
}

int main(void) {
    st_file f;
    if (st_open(&f, GOLDEN) != 0) {
        CHECK(0, "%s", llava_errmsg());
        return check_done();
    }
    golden_group(&f, "small");
    golden_group(&f, "big");
    const float *small = tensor(&f, "small", "logits", DT_F32, 6 * 300);
    const float *big = tensor(&f, "big", "logits", DT_F32, 32000);
    test_rng();
    test_seeds(small + 2 * 300, 300);
    test_greedy();
    test_distribution(small, 300);
    test_check();
    test_tied_maxima(small + 3 * 300, 300);
    test_exact_boundary();
    time_big(big, 32000);
    st_close(&f);
    return check_done();
}
