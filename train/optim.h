// AdamW over the model's flat parameter groups, the learning-rate schedule with LLaVA's step
// accounting, and the global gradient norm.
#ifndef LLAVA_TRAIN_OPTIM_H
#define LLAVA_TRAIN_OPTIM_H

#include "model/llava.h"

typedef enum { SCHED_COSINE = 0, SCHED_LINEAR, SCHED_CONSTANT, SCHED_CONSTANT_WITH_WARMUP } sched_type;

typedef struct {
    double lr;             // peak learning rate
    double projector_lr;   // the projector's peak (LLaVA's mm_projector_lr); NaN: lr
    double beta1, beta2, eps, weight_decay;
    double max_grad_norm;  // 0: no clipping
    sched_type schedule;
    int total_steps;       // optimizer updates in the run
    int warmup_steps;
} optim_config;

// Hugging Face's LambdaLR multiplier at scheduler step s (get_cosine_schedule_with_warmup and
// friends). Update k (1-based) uses lambda(k - 1): the first update runs at lr 0, and the logged lr
// after update k is lambda(k).
double lr_lambda(sched_type t, int s, int warmup, int total);
// Learning rate of update k (1-based) for the projector or the rest.
double lr_at_update(const optim_config *c, int k, int projector);
// HF's warmup: warmup_steps if > 0, else ceil(ratio * total).
int warmup_steps_for(int total, double ratio, int warmup_steps);
// Optimizer updates in a run, as HF + accelerate count them on `world` ranks: the sampler's
// samples cut into per-device batches, dealt to ranks with the last round padded, then
// grouped by gradient accumulation; times epochs (rounded up).
int total_update_steps(long n_samples, int per_device_batch, int world, int grad_accum, double epochs);

// Names that LLaVA keeps out of weight decay: biases and LayerNorm / RMSNorm weights.
int param_decays(const char *internal_name);

typedef struct {
    float *m[N_GROUPS], *v[N_GROUPS];  // F32 on the backend, for trainable groups
    float *master[N_GROUPS];           // fp32 masters where PARAM is not fp32 (NULL on the CPU)
    int step;                          // updates applied so far
    long n_skipped;                    // updates skipped for non-finite gradients
} optim_state;

// Allocates state for every group that has gradients.
void optim_init(optim_state *s, const llava_model *m);
void optim_free(optim_state *s, const llava_model *m);

// The global L2 norm of all gradients (NaN/inf when any is non-finite).
double grad_global_norm(const llava_model *m);

// One update: global norm, optional clipping, then AdamW per view at the lr of schedule update
// `k` (1-based; the run's step, which keeps counting over skipped updates). Gradients are scaled by
// `grad_scale` first. Returns the norm before clipping. A non-finite norm skips the update (nothing
// changes, n_skipped counts it) and returns the norm.
double optim_step(optim_state *s, llava_model *m, const optim_config *c, float grad_scale, int k);

#endif
