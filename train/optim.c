#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"

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

double lr_at_update(const optim_config *c, int k, int projector) {
    double peak = (projector && !isnan(c->projector_lr)) ? c->projector_lr : c->lr;
    return peak * lr_lambda(c->schedule, k - 1, c->warmup_steps, c->total_steps);
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

int param_decays(const char *name) {
    return strstr(name, "bias") == NULL && strstr(name, "norm") == NULL && strstr(name, "layrnorm") == NULL;
}

void optim_init(optim_state *s, const llava_model *m) {
    memset(s, 0, sizeof *s);
    const llava_ops *ops = m->ops;
    for (int g = 0; g < N_GROUPS; g++) {
        if (!m->grads[g]) continue;
        size_t n = m->pt.group_numel[g];
        s->m[g] = ops->alloc(BUF_F32, n);
        s->v[g] = ops->alloc(BUF_F32, n);
        if (ops->act_bytes != sizeof(float)) {
            // The masters start as the working weights widened: the model holds no other copy.
            s->master[g] = ops->alloc(BUF_F32, n);
            float *host = xmalloc(sizeof(float) * n);
            ops->download(BUF_PARAM, host, m->params[g], n);
            ops->upload(BUF_F32, s->master[g], host, n);
            free(host);
        }
    }
}

void optim_free(optim_state *s, const llava_model *m) {
    for (int g = 0; g < N_GROUPS; g++) {
        if (s->m[g]) m->ops->free(s->m[g]);
        if (s->v[g]) m->ops->free(s->v[g]);
        if (s->master[g]) m->ops->free(s->master[g]);
    }
    memset(s, 0, sizeof *s);
}

double grad_global_norm(const llava_model *m) {
    double sq = 0.0;
    for (int g = 0; g < N_GROUPS; g++)
        if (m->grads[g]) sq += m->ops->grad_sq_sum(m->grads[g], m->pt.group_numel[g]);
    return sqrt(sq);
}

double optim_step(optim_state *s, llava_model *m, const optim_config *c, float grad_scale, int k) {
    double norm = grad_global_norm(m) * grad_scale;
    if (!isfinite(norm)) {
        s->n_skipped++;
        return norm;
    }
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
    float scale = grad_scale;
    if (c->max_grad_norm > 0) {
        double coef = c->max_grad_norm / (norm + 1e-6);
        if (coef < 1.0) scale = (float)(grad_scale * coef);
    }
    int t = s->step + 1;  // AdamW's own count of applied updates (bias correction)
    const llava_ops *ops = m->ops;
    for (int i = 0; i < m->pt.n_views; i++) {
        const param_view *v = &m->pt.views[i];
        int g = v->group;
        if (!v->used || llava_model_is_frozen(m, v)) continue;
        double lr = lr_at_update(c, k, g == GROUP_PROJECTOR);
        double wd = param_decays(v->name) ? c->weight_decay : 0.0;
        void *param = (char *)m->params[g] + v->offset * ops->act_bytes;
        float *master = s->master[g] ? s->master[g] + v->offset : NULL;
        ops->adamw(param, master, m->grads[g] + v->offset, s->m[g] + v->offset, s->v[g] + v->offset, v->numel, lr,
                   c->beta1, c->beta2, c->eps, wd, t, scale);
    }
    s->step = t;
    return norm;
}
