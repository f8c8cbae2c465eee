// Sampling after transformers 4.46.3's warpers (infer/sample.h). What each step reproduces, from
// transformers/generation/logits_process.py and torch 2.5.1 on the CPU:
//
//   TemperatureLogitsWarper  scores / temperature: torch casts the Python float to the tensor's
//                            dtype first, so this is an fp32 division by the float temperature.
//   TopKLogitsWarper         scores < torch.topk(scores, k).values[-1] get -inf: a value test, so
//                            every token equal to the k-th largest value is kept.
//   TopPLogitsWarper         sort ascending, softmax, cumsum, remove where cumsum <= 1 - top_p, never
//                            the last (largest). torch's CPU cumsum of fp32 adds in double and rounds
//                            each partial sum to fp32; `1 - top_p` is a double rounded to fp32 for the
//                            comparison (both measured). We take the probabilities in fp64 where
//                            torch has fp32 (so a cumulative sum within ~1e-7 of the threshold could
//                            fall the other way; the goldens have none so close) and find the
//                            boundary by a weighted selection rather than a full sort (the same
//                            partial sums in another order: differences of ~1e-16, far below the
//                            fp32 rounding of the comparison).
//
// Ties in top-p: torch.sort(descending=False) is not stable (measured on the CPU: in rows of 300 and
// 32000 equal scores come out of index order; rows of a few tokens came out in order), so where tokens
// of equal score straddle the top-p boundary, which of them transformers removes depends on how its
// sort happened to order them (and differs again on a GPU). Here the order is the stable one,
// torch.sort(stable=True): equal scores by increasing token index, so of a tie group cut by the
// boundary the lower indices go first and the higher ones are kept. The number of tokens kept is the
// same either way (equal scores have equal probabilities). Top-k has no such question (its test is on
// values).
#include "sample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int sample_params_check(const sample_params *p) {
    if (!(p->temperature >= 0) || !isfinite(p->temperature))
        return llava_fail("sampling: temperature %g must be a finite number >= 0 (0: greedy)", (double)p->temperature);
    if (p->top_k < 0) return llava_fail("sampling: top_k %d must be >= 0 (0: off)", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return llava_fail("sampling: top_p %g must be in (0, 1] (1: off)", (double)p->top_p);
    return 0;
}

int sample_argmax(const float *x, int V) {
    int b = 0;
    for (int v = 1; v < V; v++)
        if (x[v] > x[b]) b = v;
    return b;
}

// ---------------------------------------------------------------------------------------------
// Top-k: the k-th largest value, by a three-way quickselect on a copy (NaN compares equal to every
// pivot, so it cannot stall the loop).

static float kth_largest(float *a, int n, int k) {
    int t = n - k;  // its position in ascending order
    int lo = 0, hi = n;
    while (hi - lo > 1) {
        float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1];
        float piv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));  // median of three
        int lt = lo, i = lo, gt = hi;  // [lo,lt) < piv, [lt,i) == piv, [gt,hi) > piv
        while (i < gt) {
            float v = a[i];
            if (v < piv) {
                a[i++] = a[lt];
                a[lt++] = v;
            } else if (v > piv) {
                a[i] = a[--gt];
                a[gt] = v;
            } else {
                i++;
            }
        }
        if (t < lt) hi = lt;
        else if (t >= gt) lo = gt;
        else return piv;
    }
    return a[t];
}

// ---------------------------------------------------------------------------------------------
// Top-p over the finite scores: items (score, token) in the stable ascending order of
// torch.sort(stable=True), i.e. by score, then by token.

typedef struct {
    float *key;   // n scores
    float *tok;   // n token indices, stored as int32 in float-sized slots (read through memcpy)
    double m, z;  // the largest score, and the sum of exp(score - m) over all n
} items;

static int32_t tok_at(const items *it, int i) {
    int32_t t;
    memcpy(&t, &it->tok[i], sizeof t);
    return t;
}

static void tok_set(items *it, int i, int32_t t) { memcpy(&it->tok[i], &t, sizeof t); }

static int item_less(const items *it, int i, int j) {
    float a = it->key[i], b = it->key[j];
    return a < b || (a == b && tok_at(it, i) < tok_at(it, j));
}

static void item_swap(items *it, int i, int j) {
    float k = it->key[i];
    it->key[i] = it->key[j];
    it->key[j] = k;
    int32_t t = tok_at(it, i);
    tok_set(it, i, tok_at(it, j));
    tok_set(it, j, t);
}

static double item_w(const items *it, int i) { return exp((double)it->key[i] - it->m); }

// The shortest decimal that rounds to x: the number a person wrote as top_p (up to 9 digits), which
// is what transformers holds as a Python float. (1 - 0.95) rounded to fp32 is 0.0500000007; from the
// fp32 value 0.95f instead it would be 0.0500000119, three fp32 steps away.
static double written_decimal(float x) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        double d = strtod(buf, NULL);
        if ((float)d == x) return d;
    }
    return (double)x;
}

// How many of the n items (the smallest first) top-p removes; it moves them to [0, r).
static int top_p_removed(items *it, int n, float top_p) {
    const float thr = (float)(1.0 - written_decimal(top_p));
    double base = 0;  // the weight of [0, lo): items known to be removed
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, last = hi - 1;  // median of three by the item order, moved to `last`
        if (item_less(it, mid, lo)) item_swap(it, mid, lo);
        if (item_less(it, last, lo)) item_swap(it, last, lo);
        if (item_less(it, mid, last)) item_swap(it, mid, last);
        int s = lo;
        double less = 0;
        for (int i = lo; i < last; i++) {
            if (item_less(it, i, last)) {
                less += item_w(it, i);
                item_swap(it, i, s++);
            }
        }
        item_swap(it, s, last);  // the pivot: below it [lo,s), above it (s,hi)
        double c = base + less + item_w(it, s);
        if ((float)(c / it->z) <= thr) {  // the pivot goes, and so does everything below it
            base = c;
            lo = s + 1;
        } else {  // the pivot stays, and so does everything above it
            hi = s;
        }
    }
    return lo;
}

void sample_warp(const float *logits, int V, const sample_params *p, float *scores, float *work) {
    LLAVA_REQUIRE(V >= 1, "V %d", V);
    if (p->temperature == 0 || p->temperature == 1.0f) {
        if (scores != logits) memmove(scores, logits, sizeof(float) * (size_t)V);
    } else {
        const float t = p->temperature;
        for (int v = 0; v < V; v++) scores[v] = logits[v] / t;
    }
    if (p->temperature == 0) return;

    if (p->top_k > 0 && p->top_k < V) {
        memcpy(work, scores, sizeof(float) * (size_t)V);
        const float kth = kth_largest(work, V, p->top_k);
        for (int v = 0; v < V; v++)
            if (scores[v] < kth) scores[v] = -INFINITY;
    }

    if (p->top_p < 1.0f) {
        items it = {work, work + V, -INFINITY, 0};
        int n = 0;
        for (int v = 0; v < V; v++) {
            if (scores[v] == -INFINITY) continue;  // probability 0: first in torch's order, and removed already
            it.key[n] = scores[v];
            tok_set(&it, n, v);
            if (scores[v] > it.m) it.m = scores[v];
            n++;
        }
        if (n == 0) return;
        for (int i = 0; i < n; i++) it.z += item_w(&it, i);
        int r = top_p_removed(&it, n, p->top_p);
        if (r == n) {  // min_tokens_to_keep 1: the largest item stays
            int best = 0;
            for (int i = 1; i < n; i++)
                if (item_less(&it, best, i)) best = i;
            item_swap(&it, best, n - 1);
            r = n - 1;
        }
        for (int i = 0; i < r; i++) scores[tok_at(&it, i)] = -INFINITY;
    }
}

// ---------------------------------------------------------------------------------------------
// xoshiro256** (Blackman and Vigna), its state filled by splitmix64 from the seed, as its authors
// recommend.

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(sample_rng *r) {
    uint64_t *s = r->s;
    const uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

void sample_rng_seed(sample_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

double sample_rng_uniform(sample_rng *r) { return (double)(xoshiro_next(r) >> 11) * 0x1.0p-53; }

int sample_next(const float *logits, int V, const sample_params *p, sample_rng *r, float *work) {
    if (p->temperature == 0) return sample_argmax(logits, V);
    float *scores = work;
    sample_warp(logits, V, p, scores, work + V);
    const double u = sample_rng_uniform(r);  // one draw per token, whatever the scores
    double m = -INFINITY;
    for (int v = 0; v < V; v++)
        if (scores[v] > m) m = scores[v];
    double z = 0;
    for (int v = 0; v < V; v++)
        if (scores[v] != -INFINITY) z += exp((double)scores[v] - m);
    if (!(z > 0) || !isfinite(z)) return sample_argmax(scores, V);  // scores with NaN or +inf: the first largest
    const double target = u * z;
    double c = 0;
    int last = -1;
    for (int v = 0; v < V; v++) {
        if (scores[v] == -INFINITY) continue;
        c += exp((double)scores[v] - m);
        if (c > target) return v;
        last = v;
    }
    return last;  // rounding left the sum at or below u * z: the last kept token
}
