// torch's CPU random generator reproduced exactly: what LLaVA's samplers and nn.Linear's
// default initialisation draw from (std::mt19937 and torch.randperm's Fisher-Yates).
#ifndef LLAVA_COMMON_TORCH_RNG_H
#define LLAVA_COMMON_TORCH_RNG_H

#include <stdint.h>

// torch's CPU generator: std::mt19937 seeded with the low 32 bits of the seed.
typedef struct {
    uint32_t state[624];
    int index;
} torch_rng;

// torch.Generator()'s seed when nobody seeds it: what accelerate 0.21 hands LLaVA's samplers.
#define TORCH_DEFAULT_SEED 67280421310721ull

void torch_rng_seed(torch_rng *r, uint64_t seed);
uint32_t torch_rng_next(torch_rng *r);
// torch.randperm(n, generator=r) for n < 2^32 (torch 2.x CPU: one 32-bit draw per swap).
void torch_randperm(torch_rng *r, int64_t n, int64_t *out);

#endif
