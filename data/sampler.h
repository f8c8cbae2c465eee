// Sample order: the random sampler of stage 1 and LLaVA's modality-length-grouped sampler of stage 2,
// with torch's CPU generator reproduced (mt19937 and torch.randperm's Fisher-Yates), and the
// accelerate sharding of batches to ranks with its tail padding (spec llava15-recipe.md §1.3, §7.1).
//
// Ranks are virtual: a run with world ranks and gradient accumulation A deals batches to V = world*A
// virtual ranks, exactly as V GPUs without accumulation would receive them, so a 1-GPU run with
// accumulation 8 sees the same global batches as LLaVA's 8-GPU run.
#ifndef LLAVA_DATA_SAMPLER_H
#define LLAVA_DATA_SAMPLER_H

#include <stdint.h>

#include "common/torch_rng.h"

typedef struct {
    int64_t n;                    // samples in the dataset
    const int32_t *modality_len;  // (n) LLaVA's modality lengths (< 0 text-only); NULL: random sampler
    int batch;                    // per-device batch size
    int virtual_ranks;            // world size x gradient accumulation
    uint64_t seed;                // the sampler's generator (accelerate's; TORCH_DEFAULT_SEED for LLaVA)
    uint64_t inner_seed;          // the global torch RNG drawn by the grouped sampler's inner shuffles (42)
    int inner_skip;               // 32-bit draws the global RNG made before the sampler runs
    int sequential;               // 0, 1, ..., n-1 every epoch (the HF Trainer's evaluation sampler)
    // One generator for every draw, the global one (inner_seed, inner_skip draws first each epoch):
    // LLaVA launched as one process without a launcher, whose grouped sampler has no generator of
    // its own (the DataLoader's iterator takes one int64, inner_skip 2, before it runs). 0: the
    // sampler's own generator (`seed`) shuffles, as under torchrun/accelerate.
    int single_generator;
} sampler_config;

// The sampler's order of all n samples for `epoch` (0-based). Generators continue across epochs as
// torch's do: epoch e's order is the (e+1)-th draw sequence. out holds n indices.
int sampler_epoch_order(const sampler_config *c, int epoch, int64_t *out);

// Batches per virtual rank in one epoch (accelerate's BatchSamplerShard, even_batches=True).
int64_t sampler_batches_per_rank(const sampler_config *c);
// The samples of batch `step` of virtual rank v, given the epoch order, written to out (room for
// `batch`). The last round is completed with samples from the start of the epoch, as accelerate
// does; returns how many were written (`batch`, except for datasets smaller than one batch).
int sampler_rank_batch(const sampler_config *c, const int64_t *order, int64_t step, int v, int64_t *out);

#endif
