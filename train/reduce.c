// The reduction half of the optimizer (optim.h): gradient buckets and their sharding (ZeRO-1/2),
// the ZeRO-2 gradient slots, and the overlap of each bucket's collective with the backward.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "optim.h"

// The buckets of every trainable group, in table order.
static void build_buckets(optim_state *s, const llava_model *m) {
    int world = dist_world(s->d), rank = dist_rank(s->d);
    grad_bucket *cur = NULL;
    for (int i = 0; i < m->pt.n_views; i++) {
        const param_view *v = &m->pt.views[i];
        // ZeRO-3 shards a group whole: its views frozen by name are in its buckets too (their
        // gradients stay zero and AdamW passes them over), so every view is gathered with its layer.
        if (!v->used || v->numel == 0 || (llava_model_is_frozen(m, v) && !s->sharded[v->group])) {
            cur = NULL;
            continue;
        }
        // Views follow each other with at most PARAM_ALIGN - 1 elements of padding between them; a
        // bucket spans the padding too (its gradients are zero and no update touches it).
        if (!cur || cur->group != v->group || cur->layer != v->layer || v->offset < cur->lo + cur->n ||
            v->offset - (cur->lo + cur->n) >= PARAM_ALIGN || v->offset + v->numel - cur->lo > OPTIM_BUCKET_MAX) {
            s->buckets = xrealloc(s->buckets, sizeof(grad_bucket) * (size_t)(s->n_buckets + 1));
            cur = &s->buckets[s->n_buckets++];
            memset(cur, 0, sizeof *cur);
            cur->group = v->group;
            cur->layer = v->layer;
            cur->view_first = i;
            cur->lo = v->offset;
        }
        cur->view_last = i;
        cur->n = v->offset + v->numel - cur->lo;
    }
    for (int b = 0; b < s->n_buckets; b++) {
        grad_bucket *k = &s->buckets[b];
        if (s->zero == 0) {
            k->own_lo = k->lo;
            k->own_n = k->n;
            k->state_off = k->lo;
        } else {
            k->own_lo = k->lo + dist_shard_begin(k->n, world, rank);
            k->own_n = dist_shard_count(k->n, world, rank);
            k->state_off = s->state_numel[k->group];
            s->state_numel[k->group] += k->own_n;
        }
    }
    if (s->zero == 0)
        for (int g = 0; g < N_GROUPS; g++) s->state_numel[g] = m->grads[g] ? m->pt.group_numel[g] : 0;
    s->view_bucket = xmalloc(sizeof(int) * (size_t)(m->pt.n_views ? m->pt.n_views : 1));
    for (int i = 0; i < m->pt.n_views; i++) s->view_bucket[i] = -1;
    for (int b = 0; b < s->n_buckets; b++)
        for (int i = s->buckets[b].view_first; i <= s->buckets[b].view_last; i++) s->view_bucket[i] = b;
    s->left = xcalloc((size_t)(s->n_buckets ? s->n_buckets : 1), sizeof(int));
    s->issued = xcalloc((size_t)(s->n_buckets ? s->n_buckets : 1), 1);
}

void optim_state_read(const optim_state *s, const llava_model *m, const float *state, float *out, size_t n) {
    if (s->offload) memcpy(out, state, sizeof(float) * n);
    else m->ops->download(m->be, BUF_F32, out, state, n);
}

void optim_state_write(const optim_state *s, const llava_model *m, float *state, const float *in, size_t n) {
    if (s->offload) memcpy(state, in, sizeof(float) * n);
    else m->ops->upload(m->be, BUF_F32, state, in, n);
}

// Where the state lives: the backend, or (offloaded) host memory the backend moves fastest
// (page-locked on CUDA), which the host's CPU backend computes on.
static float *state_alloc(const llava_model *m, int offload, size_t n) {
    if (offload) return m->ops->host_alloc(m->be, sizeof(float) * n);
    return m->ops->alloc(m->be, BUF_F32, n);
}

void optim_init_dist(optim_state *s, const llava_model *m, dist *d, int zero_stage) {
    optim_init_ex(s, m, d, zero_stage, 0);
}

void optim_init_ex(optim_state *s, const llava_model *m, dist *d, int zero_stage, int offload) {
    memset(s, 0, sizeof *s);
    s->d = d;
    if (!s->d) {
        s->d = dist_single();
        s->own_dist = 1;
    }
    // One process never shards. A group of one (mpirun -np 1, a 1-GPU NCCL run) goes through the
    // same collectives as many ranks would: the way to check them against the one-process path.
    s->zero = dist_kind(s->d) == DIST_SINGLE ? 0 : zero_stage;
    // ZeRO-3 shards the parameters of the LM and the projector where they train (optim_shard_params).
    for (int g = 0; g < N_GROUPS; g++)
        s->sharded[g] = s->zero == 3 && (g == GROUP_LM || g == GROUP_PROJECTOR) && m->grads[g] != NULL;
    build_buckets(s, m);
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    if (offload) {
        s->offload = 1;
        s->host_threads = 1;
        s->host_chunk_min = (size_t)1 << 16;  // below this a thread costs more than it saves
        s->host = llava_backend_open("cpu", NULL);
        if (!s->host) {
            fprintf(stderr, "llava: optimizer offload: no CPU backend (%s)\n", llava_errmsg());
            abort();
        }
        size_t mx = 1;
        for (int b = 0; b < s->n_buckets; b++)
            if (s->buckets[b].own_n > mx) mx = s->buckets[b].own_n;
        s->host_grad = ops->host_alloc(be, sizeof(float) * mx);
    }
    for (int g = 0; g < N_GROUPS; g++) {
        if (!m->grads[g]) continue;
        size_t n = s->state_numel[g];
        // A rank may own nothing of a small group: keep one element so every pointer is real.
        s->m[g] = state_alloc(m, offload, n ? n : 1);
        s->v[g] = state_alloc(m, offload, n ? n : 1);
        if (s->zero > 0) s->grad_shard[g] = ops->alloc(be, BUF_GRAD, n ? n : 1);
        if (ops->act_bytes != sizeof(float) || offload) {
            // The masters start as the working weights widened: the model holds no other copy.
            // (offloaded: always, the host's fp32 copy the update works on)
            s->master[g] = state_alloc(m, offload, n ? n : 1);
            size_t gn = m->pt.group_numel[g];
            float *host = xmalloc(sizeof(float) * gn);
            ops->download(be, BUF_PARAM, host, m->params[g], gn);
            if (s->zero == 0) {
                optim_state_write(s, m, s->master[g], host, gn);
            } else {
                for (int b = 0; b < s->n_buckets; b++) {
                    const grad_bucket *k = &s->buckets[b];
                    if (k->group == g && k->own_n)
                        optim_state_write(s, m, s->master[g] + k->state_off, host + k->own_lo, k->own_n);
                }
            }
            free(host);
        }
    }
}

void optim_init(optim_state *s, const llava_model *m) { optim_init_dist(s, m, NULL, 0); }

static void fatal(const char *msg) {
    fprintf(stderr, "llava: internal error: %s\n", msg);
    abort();
}

// Gives bucket b a slot for this pass: the next one round the ring whose bucket has been sent off
// (the compute stream waits until that reduce-scatter is done), zeroed, or holding this rank's
// accumulated slice after the step's first reduction (the next reduce-scatter then returns the
// running sum, as the full-buffer path does).
static void acquire(optim_state *s, const llava_model *m, int b) {
    int i = -1;
    for (int t = 0; t < OPTIM_GRAD_SLOTS && i < 0; t++) {
        int c = (s->slot_next + t) % OPTIM_GRAD_SLOTS, o = s->slot_bucket[c];
        if (o < 0 || s->issued[o]) i = c;
    }
    if (i < 0) fatal("every gradient slot holds a bucket that is not final (was the pass armed? optim_arm)");
    s->slot_next = (i + 1) % OPTIM_GRAD_SLOTS;
    int o = s->slot_bucket[i];
    if (o >= 0) {
        dist_compute_after(s->d, s->slot_mark[i], "reuse of a gradient slot");
        s->bucket_slot[o] = -1;
    }
    s->slot_bucket[i] = b;
    s->bucket_slot[b] = i;
    const grad_bucket *k = &s->buckets[b];
    m->ops->zero(m->be, BUF_GRAD, s->slots[i], k->n);
    if (s->passes > 0 && k->own_n)
        m->ops->copy(m->be, BUF_GRAD, s->slots[i] + (k->own_lo - k->lo), s->grad_shard[k->group] + k->state_off,
                     k->own_n);
}

static float *slot_of(void *ctx, int view) {
    optim_state *s = ctx;
    const llava_model *m = s->armed_model;
    int b = s->view_bucket[view];
    if (b < 0) return NULL;
    if (s->issued[b]) fatal("a gradient written after its bucket was sent off");
    if (s->bucket_slot[b] < 0) acquire(s, m, b);
    return s->slots[s->bucket_slot[b]] + (m->pt.views[view].offset - s->buckets[b].lo);
}

int optim_use_grad_slots(optim_state *s, llava_model *m) {
    const int g = GROUP_LM;
    if (s->zero < 2 || !m->grads[g]) return 0;
    size_t mx = 0;
    for (int b = 0; b < s->n_buckets; b++)
        if (s->buckets[b].group == g && s->buckets[b].n > mx) mx = s->buckets[b].n;
    if (!mx) return 0;
    s->slot_n = mx;
    for (int i = 0; i < OPTIM_GRAD_SLOTS; i++) {
        s->slots[i] = m->ops->alloc(m->be, BUF_GRAD, mx);
        s->slot_bucket[i] = -1;
        s->slot_mark[i] = 0;
    }
    s->bucket_slot = xmalloc(sizeof(int) * (size_t)s->n_buckets);
    for (int b = 0; b < s->n_buckets; b++) s->bucket_slot[b] = -1;
    m->ops->free(m->be, m->grads[g]);
    m->grads[g] = NULL;
    m->grad_slotted[g] = 1;
    m->grad_slot = slot_of;
    m->grad_slot_ctx = s;
    s->armed_model = m;
    s->slotted = 1;
    return 1;
}

// Issues bucket b's reduction without waiting.
static void issue(optim_state *s, llava_model *m, int b) {
    const grad_bucket *k = &s->buckets[b];
    int g = k->group;
    float *src = m->grads[g] ? m->grads[g] + k->lo : NULL;
    if (m->grad_slotted[g]) {
        if (s->bucket_slot[b] < 0) acquire(s, m, b);  // nothing written in this pass: zeros or the running sum
        src = s->slots[s->bucket_slot[b]];
    }
    if (s->zero == 0) dist_allreduce_f32_async(s->d, src, k->n, "all-reduce gradients");
    else dist_reduce_scatter_f32_async(s->d, src, k->n, s->grad_shard[g] + k->state_off, "reduce-scatter gradients");
    if (m->grad_slotted[g]) s->slot_mark[s->bucket_slot[b]] = dist_async_mark(s->d);
    s->issued[b] = 1;
    s->issued_total++;
}

static void on_grad_final(void *ctx, int view) {
    optim_state *s = ctx;
    int b = s->view_bucket[view];
    if (b < 0 || !s->armed || s->left[b] <= 0) return;
    s->left[b]--;
    llava_model *m = s->armed_model;
    while (s->next >= 0 && s->left[s->next] == 0) {
        issue(s, m, s->next--);
        s->issued_in_backward++;
    }
}

static int reduces(const optim_state *s) { return dist_kind(s->d) != DIST_SINGLE; }

void optim_arm(optim_state *s, llava_model *m, int final_pass) {
    if (s->armed)  // a pass after the armed one, before its reduction: its gradients would be sent early
        fatal("optim_arm called again before the reduction of the armed pass");
    if (s->slotted && !final_pass) fatal("with gradient slots every backward pass is followed by its reduction");
    s->armed = final_pass && reduces(s) && s->n_buckets > 0;
    m->grad_final = s->armed ? on_grad_final : NULL;
    m->grad_final_ctx = s->armed ? s : NULL;
    s->armed_model = m;
    if (!s->armed) return;
    for (int b = 0; b < s->n_buckets; b++) {  // the views that will report final: not those frozen (ZeRO-3)
        s->left[b] = 0;
        for (int i = s->buckets[b].view_first; i <= s->buckets[b].view_last; i++)
            s->left[b] += !llava_model_is_frozen(m, &m->pt.views[i]);
    }
    s->next = s->n_buckets - 1;
}

// Issues what the backward has not, in the same order, then waits for all of it.
static void reduce_all(optim_state *s, llava_model *m, const char *what) {
    if (!s->armed) s->next = s->n_buckets - 1;
    if (s->next >= 0) {  // what the backward held back starts at a bucket no view of the pass finished
        const grad_bucket *k = &s->buckets[s->next];
        int views = 0;
        for (int i = k->view_first; i <= k->view_last; i++) views += !llava_model_is_frozen(m, &m->pt.views[i]);
        if (s->armed && s->left[s->next] != views) s->stalled++;
        s->issued_after += s->next + 1;
    }
    while (s->next >= 0) issue(s, m, s->next--);
    dist_wait_async(s->d, what);
    s->armed = 0;
    m->grad_final = NULL;
    m->grad_final_ctx = NULL;
    memset(s->issued, 0, (size_t)(s->n_buckets ? s->n_buckets : 1));
    if (s->slotted) {  // every slot is free again
        for (int i = 0; i < OPTIM_GRAD_SLOTS; i++) s->slot_bucket[i] = -1;
        for (int b = 0; b < s->n_buckets; b++) s->bucket_slot[b] = -1;
    }
    s->passes++;
}

void optim_free(optim_state *s, const llava_model *m) {
    for (int g = 0; g < N_GROUPS; g++) {
        float *state[3] = {s->m[g], s->v[g], s->master[g]};
        for (int j = 0; j < 3; j++)
            if (state[j]) {
                if (s->offload) m->ops->host_free(m->be, state[j]);
                else m->ops->free(m->be, state[j]);
            }
        if (s->grad_shard[g]) m->ops->free(m->be, s->grad_shard[g]);
    }
    if (s->host_grad) m->ops->host_free(m->be, s->host_grad);
    if (s->host) llava_backend_close(s->host);
    free(s->buckets);
    free(s->view_bucket);
    free(s->left);
    free(s->issued);
    free(s->bucket_slot);
    for (int g = 0; g < N_GROUPS; g++) {
        if (s->pshard[g]) m->ops->free(m->be, s->pshard[g]);
        for (int j = 0; j < 2; j++)
            if (s->gbuf[g][j]) m->ops->free(m->be, s->gbuf[g][j]);
    }
    free(s->segs);
    free(s->parts);
    free(s->view_seg);
    free(s->seg_buf);
    for (int i = 0; i < OPTIM_GRAD_SLOTS; i++)
        if (s->slots[i]) m->ops->free(m->be, s->slots[i]);
    if (s->own_dist) dist_finalize(s->d);
    memset(s, 0, sizeof *s);
}

void optim_micro_begin(optim_state *s, llava_model *m, int micro) {
    if (micro == 0) s->passes = 0;
    if (s->zero < 2 || micro == 0) return;
    llava_model_zero_grads(m);
    for (int b = 0; b < s->n_buckets; b++) {  // slotted groups load their slices when a slot is taken
        const grad_bucket *k = &s->buckets[b];
        if (k->own_n && m->grads[k->group])
            m->ops->copy(m->be, BUF_GRAD, m->grads[k->group] + k->own_lo, s->grad_shard[k->group] + k->state_off,
                         k->own_n);
    }
}

void optim_micro_end(optim_state *s, llava_model *m) {
    if (s->zero >= 2) reduce_all(s, m, "reduce-scatter gradients (micro-batch)");
}

void optim_reduce(optim_state *s, llava_model *m) {
    if (s->zero == 1) reduce_all(s, m, "reduce-scatter gradients");
    else if (s->zero == 0 && reduces(s)) reduce_all(s, m, "all-reduce gradients");
}
