// Hugging Face's learning-rate schedules and step counts (schedule.h).
#include "schedule.h"

#include <math.h>

double lr_lambda(sched_type t, int s, int warmup, int total) {
    if (t == SCHED_CONSTANT) return 1.0;
    if (s < warmup) return (double)s / (double)(warmup > 1 ? warmup : 1);
    if (t == SCHED_CONSTANT_WITH_WARMUP) return 1.0;
    int span = total - warmup > 1 ? total - warmup : 1;
    if (t == SCHED_LINEAR) {
        double r = (double)(total - s) / (double)span;
        return r > 0 ? r : 0.0;
    }
    double progress = (double)(s - warmup) / (double)span;
    double r = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));  // num_cycles 0.5
    return r > 0 ? r : 0.0;
}

int warmup_steps_for(int total, double ratio, int warmup_steps) {
    return warmup_steps > 0 ? warmup_steps : (int)ceil((double)total * ratio);
}

int total_update_steps(long n_samples, int per_device_batch, int world, int grad_accum, double epochs) {
    long batches = (n_samples + per_device_batch - 1) / per_device_batch;  // the sampler cut into batches
    long per_rank = (batches + world - 1) / world;                         // even_batches pads the last round
    long per_epoch = per_rank / grad_accum;
    if (per_epoch < 1) per_epoch = 1;
    return (int)ceil(epochs * (double)per_epoch);
}
