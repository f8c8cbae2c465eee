// Choosing the next token from a row of logits: greedy (argmax, what LLaVA's evaluation uses), or
// sampling after transformers' logits warpers in the order its generate() applies them
// (GenerationMixin._get_logits_processor, transformers 4.46): temperature, then top-k, then top-p,
// then softmax and one draw. Each sequence draws from its own generator, seeded per request, so a
// seeded answer is the same whatever else runs beside it.
#ifndef LLAVA_INFER_SAMPLE_H
#define LLAVA_INFER_SAMPLE_H

#include <stdint.h>

typedef struct {
    float temperature;  // 0: greedy (the other fields are ignored); else the divisor of the logits
    int top_k;          // keep the k largest (ties with the k-th kept too, as torch.topk's threshold does); 0: off
    float top_p;        // keep the smallest set of largest tokens whose probability reaches top_p; 1: off.
                        // Exactly: in ascending order, remove each token whose cumulative probability is
                        // <= 1 - top_p, never the largest; equal scores in increasing token order (sample.c).
                        // 1 - top_p is taken from the decimal top_p was written as (0.95f counts as 0.95).
} sample_params;

// Checks the ranges (temperature >= 0 and finite, top_k >= 0, 0 < top_p <= 1). 0, or -1 with an error
// naming the parameter.
int sample_params_check(const sample_params *p);

// The scores transformers' warpers leave (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
// with min_tokens_to_keep 1): `scores` (V) gets logits / temperature, with -inf where a token is
// filtered out. `work` holds 2 V floats. Greedy parameters leave the logits as they are. `scores` may
// be `logits`. Logits are finite or -inf (a -inf token is never kept).
void sample_warp(const float *logits, int V, const sample_params *p, float *scores, float *work);

// The first index of the largest value (torch.argmax's choice among equal maxima).
int sample_argmax(const float *x, int V);

// A generator per sequence: splitmix64-seeded xoshiro256**, 53-bit uniform doubles.
typedef struct {
    uint64_t s[4];
} sample_rng;
void sample_rng_seed(sample_rng *r, uint64_t seed);
double sample_rng_uniform(sample_rng *r);  // in [0, 1)

// The next token: greedy when p->temperature == 0, else warped scores, softmax (fp64 sums), and the
// token where the cumulative probability first exceeds one uniform draw (indices in order). `work`
// holds 3 V floats. Greedy draws nothing from `r`; sampling draws exactly one uniform per token, so a
// seeded sequence's tokens depend on its own logits and parameters only.
int sample_next(const float *logits, int V, const sample_params *p, sample_rng *r, float *work);

#endif
