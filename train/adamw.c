// The update half of the optimizer (optim.h): the global gradient norm, torch's clipping, and
// AdamW view by view (over this rank's slices under ZeRO-1/2/3; on the host's copy when offloaded)
// at the schedule's learning rate.
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "optim.h"

double lr_at_update(const optim_config *c, int k, int projector) {
    double peak = (projector && !isnan(c->projector_lr)) ? c->projector_lr : c->lr;
    return peak * lr_lambda(c->schedule, k - 1, c->warmup_steps, c->total_steps);
}

double lr_for_group(const optim_config *c, int k, int g) {
    if (g == GROUP_VISION && c->vision_lr > 0)
        return c->vision_lr * lr_lambda(c->schedule, k - 1, c->warmup_steps, c->total_steps);
    return lr_at_update(c, k, g == GROUP_PROJECTOR);
}

int param_decays(const char *name) {
    return strstr(name, "bias") == NULL && strstr(name, "norm") == NULL && strstr(name, "layrnorm") == NULL;
}

double grad_global_norm(const llava_model *m) {
    double sq = 0.0;
    for (int g = 0; g < N_GROUPS; g++)
        if (m->grads[g]) sq += m->ops->grad_sq_sum(m->be, m->grads[g], m->pt.group_numel[g]);
    return sqrt(sq);
}

// The offloaded update of n elements on the host: the CPU backend's AdamW, split into contiguous
// chunks over s->host_threads threads. AdamW is elementwise, so the split changes no bit.
typedef struct {
    llava_backend *host;
    float *p, *m, *v;
    const float *g;
    size_t n;
    const optim_config *c;
    double lr, wd;
    int t;
    float scale;
} host_chunk;

static void *host_chunk_run(void *arg) {
    const host_chunk *h = arg;
    if (h->n)
        h->host->ops->adamw(h->host, h->p, NULL, h->g, h->m, h->v, h->n, h->lr, h->c->beta1, h->c->beta2, h->c->eps,
                            h->wd, h->t, h->scale);
    return NULL;
}

#define HOST_THREADS_MAX 256

static void host_adamw(const optim_state *s, float *p, const float *g, float *m, float *v, size_t n,
                       const optim_config *c, double lr, double wd, int t, float scale) {
    int T = s->host_threads < 1 ? 1 : s->host_threads > HOST_THREADS_MAX ? HOST_THREADS_MAX : s->host_threads;
    size_t cmin = s->host_chunk_min ? s->host_chunk_min : 1;
    if ((size_t)T > n / cmin) T = (int)(n / cmin);
    if (T < 1) T = 1;
    host_chunk ch[HOST_THREADS_MAX];
    pthread_t th[HOST_THREADS_MAX];
    int started[HOST_THREADS_MAX] = {0};
    size_t per = (n / (size_t)T + 15) / 16 * 16;
    for (int i = 0; i < T; i++) {
        size_t a = (size_t)i * per < n ? (size_t)i * per : n, e = a + per < n ? a + per : n;
        if (i == T - 1) e = n;
        ch[i] = (host_chunk){s->host, p + a, m + a, v + a, g + a, e - a, c, lr, wd, t, scale};
        // the last chunk runs here; a thread that cannot start runs its chunk here too
        if (i < T - 1) started[i] = pthread_create(&th[i], NULL, host_chunk_run, &ch[i]) == 0;
        if (i == T - 1 || !started[i]) host_chunk_run(&ch[i]);
    }
    for (int i = 0; i < T - 1; i++)
        if (started[i]) pthread_join(th[i], NULL);
}

double optim_step(optim_state *s, llava_model *m, const optim_config *c, float grad_scale, int k) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    double norm;
    if (s->zero == 0) {
        norm = grad_global_norm(m) * grad_scale;  // every rank holds the summed gradient
    } else {
        double sq = 0.0;
        for (int g = 0; g < N_GROUPS; g++)
            if (s->grad_shard[g] && s->state_numel[g]) sq += ops->grad_sq_sum(be, s->grad_shard[g], s->state_numel[g]);
        dist_allreduce_host_f64(s->d, &sq, 1, "gradient norm");
        norm = sqrt(sq) * grad_scale;
    }
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
    for (int b = 0; b < s->n_buckets; b++) {
        const grad_bucket *bk = &s->buckets[b];
        int g = bk->group;
        size_t own_hi = bk->own_lo + bk->own_n;
        // ZeRO-3: this rank's slice of the parameters, laid out as the state.
        char *pdst = s->sharded[g] ? (char *)s->pshard[g] + bk->state_off * ops->act_bytes
                                   : (char *)m->params[g] + bk->own_lo * ops->act_bytes;
        // Offload: the bucket's gradient slice to the host, where the update runs.
        if (s->offload && bk->own_n)
            ops->download(be, BUF_GRAD, s->host_grad,
                          s->zero == 0 ? m->grads[g] + bk->own_lo : s->grad_shard[g] + bk->state_off, bk->own_n);
        for (int i = bk->view_first; i <= bk->view_last; i++) {
            const param_view *v = &m->pt.views[i];
            if (s->sharded[g] && llava_model_is_frozen(m, v)) continue;  // ZeRO-3 buckets hold frozen views too
            size_t a = v->offset > bk->own_lo ? v->offset : bk->own_lo;
            size_t e = v->offset + v->numel < own_hi ? v->offset + v->numel : own_hi;
            if (a >= e) continue;
            size_t si = bk->state_off + (a - bk->own_lo);  // ZeRO-0: si == a
            double lr = lr_for_group(c, k, g);
            double wd = param_decays(v->name) ? c->weight_decay : 0.0;
            if (s->offload) {  // the host's fp32 master is the parameter the CPU's AdamW updates
                host_adamw(s, s->master[g] + si, s->host_grad + (a - bk->own_lo), s->m[g] + si, s->v[g] + si, e - a, c,
                           lr, wd, t, scale);
                continue;
            }
            void *param = pdst + (si - bk->state_off) * ops->act_bytes;
            float *master = s->master[g] ? s->master[g] + si : NULL;
            const float *grad = s->zero == 0 ? m->grads[g] + a : s->grad_shard[g] + si;
            ops->adamw(be, param, master, grad, s->m[g] + si, s->v[g] + si, e - a, lr, c->beta1, c->beta2, c->eps, wd,
                       t, scale);
        }
        // Offload: the updated masters become the working parameters (rounded to bf16 on the GPU, as
        // the kernel rounds them; views frozen by name in a ZeRO-3 bucket go back unchanged).
        if (s->offload && bk->own_n) ops->upload(be, BUF_PARAM, pdst, s->master[g] + bk->state_off, bk->own_n);
    }
    if (s->zero > 0)
        for (int b = 0; b < s->n_buckets; b++) {
            const grad_bucket *bk = &s->buckets[b];
            if (s->sharded[bk->group]) continue;  // ZeRO-3 gathers them when they are next used
            dist_allgather(s->d, (char *)m->params[bk->group] + bk->lo * ops->act_bytes, bk->n, ops->act_bytes,
                           "all-gather parameters");
        }
    if (s->zero == 3) optim_params_changed(s);  // what the gather buffers hold is out of date
    s->step = t;
    return norm;
}
