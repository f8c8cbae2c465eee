// Sampling (sample.h): greedy, and plain temperature sampling. The logits warpers (top-k, top-p in
// transformers' order) and their golden test come next; until then top_k and top_p are checked but unused.
#include "sample.h"

#include <math.h>
#include <string.h>

#include "common/util.h"

int sample_params_check(const sample_params *p) {
    if (!(p->temperature >= 0) || !isfinite(p->temperature)) return llava_fail("temperature %g", p->temperature);
    if (p->top_k < 0) return llava_fail("top_k %d", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1)) return llava_fail("top_p %g", p->top_p);
    return 0;
}
void sample_warp(const float *logits, int V, const sample_params *p, float *scores, float *work) {
    (void)p;
    (void)work;
    memcpy(scores, logits, sizeof(float) * (size_t)V);
}
int sample_argmax(const float *x, int V) {
    int b = 0;
    for (int v = 1; v < V; v++)
        if (x[v] > x[b]) b = v;
    return b;
}
static uint64_t sm(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
void sample_rng_seed(sample_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = sm(&seed);
}
double sample_rng_uniform(sample_rng *r) { return (double)(sm(&r->s[0]) >> 11) * (1.0 / 9007199254740992.0); }
int sample_next(const float *logits, int V, const sample_params *p, sample_rng *r, float *work) {
    if (p->temperature == 0) return sample_argmax(logits, V);
    double m = -INFINITY, sum = 0;
    for (int v = 0; v < V; v++) m = logits[v] / p->temperature > m ? logits[v] / p->temperature : m;
    for (int v = 0; v < V; v++) sum += exp(logits[v] / p->temperature - m);
    double u = sample_rng_uniform(r) * sum, c = 0;
    (void)work;
    for (int v = 0; v < V; v++) {
        c += exp(logits[v] / p->temperature - m);
        if (c > u) return v;
    }
    return V - 1;
}
