// torch's CPU generator (at::mt19937, the standard 32-bit Mersenne Twister) and torch.randperm,
// bit for bit: the sampler's order and the model's random initialisations draw from it.
#include "torch_rng.h"

void torch_rng_seed(torch_rng *r, uint64_t seed) {
    r->state[0] = (uint32_t)seed;
    for (int i = 1; i < 624; i++) r->state[i] = 1812433253u * (r->state[i - 1] ^ (r->state[i - 1] >> 30)) + (uint32_t)i;
    r->index = 624;
}

uint32_t torch_rng_next(torch_rng *r) {
    if (r->index >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (r->state[k] & 0x80000000u) | (r->state[(k + 1) % 624] & 0x7fffffffu);
            r->state[k] = r->state[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        r->index = 0;
    }
    uint32_t y = r->state[r->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

void torch_randperm(torch_rng *r, int64_t n, int64_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = i;
    for (int64_t i = 0; i + 1 < n; i++) {
        int64_t z = (int64_t)(torch_rng_next(r) % (uint64_t)(n - i));
        int64_t t = out[i];
        out[i] = out[i + z];
        out[i + z] = t;
    }
}
