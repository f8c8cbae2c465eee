// Hugging Face's learning-rate schedules (transformers' get_*_schedule_with_warmup) and the
// optimizer-step count of a run as HF Trainer + accelerate count it (spec llava15-recipe.md §1).
#ifndef LLAVA_TRAIN_SCHEDULE_H
#define LLAVA_TRAIN_SCHEDULE_H

typedef enum { SCHED_COSINE = 0, SCHED_LINEAR, SCHED_CONSTANT, SCHED_CONSTANT_WITH_WARMUP } sched_type;

// Hugging Face's LambdaLR multiplier at scheduler step s (get_cosine_schedule_with_warmup and
// friends). Update k (1-based) uses lambda(k - 1): the first update runs at lr 0, and the logged lr
// after update k is lambda(k).
double lr_lambda(sched_type t, int s, int warmup, int total);
// HF's warmup: warmup_steps if > 0, else ceil(ratio * total).
int warmup_steps_for(int total, double ratio, int warmup_steps);
// Optimizer updates in a run, as HF + accelerate count them on `world` ranks: the sampler's
// samples cut into per-device batches, dealt to ranks with the last round padded, then
// grouped by gradient accumulation; times epochs (rounded up).
int total_update_steps(long n_samples, int per_device_batch, int world, int grad_accum, double epochs);

#endif
