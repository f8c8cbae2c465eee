// ZeRO-3 (optim.h): the trained LM's and projector's parameters sharded over the ranks like their
// optimizer state, each segment (a decoder layer, the embeddings, the final norm and head, the
// projector) all-gathered into one of two buffers when the model computes with it, the next one
// gathered ahead.
//
// Why the schedule is the model's calls and not the batch: every rank must issue the same
// all-gathers in the same order, and the model's param_need calls are the same on every rank
// (the projector's are made whether or not the batch has images, the backward's whether or not it
// has targets, llava_model_param_walk stands in for a skipped pass). The state machine below turns
// that sequence into gathers deterministically, so the gathers agree too.
//
// Per sharded group: two buffers of the largest segment's size. param_need(view, dir) makes the
// view's segment current (gathering it now if no earlier call gathered it ahead: counted "on
// demand"), then issues the gather of the segment after it in the pass's direction into the other
// buffer ("ahead"). On NCCL that gather is ordered after the compute already queued (the layer
// that last read the buffer) and runs while the current segment computes; the compute stream
// waits for a segment's gather only when it becomes current. A step's update changes the shards,
// so it forgets every gathered buffer (optim_params_changed).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "optim.h"

static void fatal(const char *msg, const char *name) {
    fprintf(stderr, "llava: internal error: ZeRO-3: %s%s%s\n", msg, name ? ": " : "", name ? name : "");
    abort();
}

// Gathers segment q into buffer j of its group: this rank's slices copied into place, then each
// bucket all-gathered in place, without waiting (the mark tells the compute stream when it may read).
static void gather(optim_state *s, llava_model *m, int q, int j) {
    const param_segment *sg = &s->segs[q];
    int g = sg->group;
    size_t ab = m->ops->act_bytes;
    int old = s->gbuf_seg[g][j];
    if (old >= 0) s->seg_buf[old] = -1;
    s->gbuf_seg[g][j] = q;
    s->seg_buf[q] = j;
    char *base = s->gbuf[g][j];
    for (int b = sg->b_first; b <= sg->b_last; b++) {
        const grad_bucket *k = &s->buckets[b];
        if (k->own_n)
            m->ops->copy(m->be, BUF_PARAM, base + (k->own_lo - sg->lo) * ab, (char *)s->pshard[g] + k->state_off * ab,
                         k->own_n);
        dist_allgather_async(s->d, base + (k->lo - sg->lo) * ab, k->n, ab, "ZeRO-3: all-gather parameters");
    }
    s->gbuf_mark[g][j] = dist_async_mark(s->d);
}

static void param_need(void *ctx, int view, int dir) {
    optim_state *s = ctx;
    llava_model *m = s->armed_model;
    int q = s->view_seg[view];
    if (q < 0) fatal("a view of a sharded group in no segment", m->pt.views[view].name);
    int g = s->segs[q].group;
    if (s->cur_seg[g] == q) return;
    if (s->seg_buf[q] < 0) {
        int c = s->cur_seg[g] >= 0 ? s->seg_buf[s->cur_seg[g]] : -1;
        gather(s, m, q, c == 0 ? 1 : 0);
        s->gathers_on_demand++;
    }
    dist_compute_after(s->d, s->gbuf_mark[g][s->seg_buf[q]], "ZeRO-3: parameters gathered");
    s->cur_seg[g] = q;
    int nx = q + dir;
    if (nx >= 0 && nx < s->n_segs && s->segs[nx].group == g && s->seg_buf[nx] < 0) {
        gather(s, m, nx, 1 - s->seg_buf[q]);
        s->gathers_ahead++;
    }
}

static void *param_at(void *ctx, int view) {
    optim_state *s = ctx;
    const llava_model *m = s->armed_model;
    int q = s->view_seg[view];
    if (q < 0) fatal("a view of a sharded group in no segment", m->pt.views[view].name);
    const param_segment *sg = &s->segs[q];
    // The only segment of its group the model may read is the one its last param_need made current.
    if (s->cur_seg[sg->group] != q || s->seg_buf[q] < 0)
        fatal("a parameter read while its segment is not the gathered one (a missing param_need)",
              m->pt.views[view].name);
    return (char *)s->gbuf[sg->group][s->seg_buf[q]] + (m->pt.views[view].offset - sg->lo) * m->ops->act_bytes;
}

void optim_params_changed(optim_state *s) {
    for (int q = 0; q < s->n_segs; q++) s->seg_buf[q] = -1;
    for (int g = 0; g < N_GROUPS; g++) {
        s->cur_seg[g] = -1;
        s->gbuf_seg[g][0] = s->gbuf_seg[g][1] = -1;
    }
}

int optim_shard_params(optim_state *s, llava_model *m) {
    int n = 0;
    for (int g = 0; g < N_GROUPS; g++) n += s->sharded[g];
    if (!n) return 0;
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    size_t ab = ops->act_bytes;
    // Segments: runs of buckets of one sharded group and layer.
    s->segs = xmalloc(sizeof(param_segment) * (size_t)(s->n_buckets ? s->n_buckets : 1));
    s->n_segs = 0;
    for (int b = 0; b < s->n_buckets; b++) {
        const grad_bucket *k = &s->buckets[b];
        if (!s->sharded[k->group]) continue;
        param_segment *sg = s->n_segs ? &s->segs[s->n_segs - 1] : NULL;
        if (!sg || sg->group != k->group || sg->layer != k->layer || sg->b_last != b - 1) {
            sg = &s->segs[s->n_segs++];
            *sg = (param_segment){k->group, k->layer, b, b, k->lo, 0};
        }
        sg->b_last = b;
        sg->n = k->lo + k->n - sg->lo;
    }
    s->view_seg = xmalloc(sizeof(int) * (size_t)(m->pt.n_views ? m->pt.n_views : 1));
    for (int i = 0; i < m->pt.n_views; i++) s->view_seg[i] = -1;
    for (int q = 0; q < s->n_segs; q++)
        for (int b = s->segs[q].b_first; b <= s->segs[q].b_last; b++)
            for (int i = s->buckets[b].view_first; i <= s->buckets[b].view_last; i++) s->view_seg[i] = q;
    s->seg_buf = xmalloc(sizeof(int) * (size_t)(s->n_segs ? s->n_segs : 1));
    for (int g = 0; g < N_GROUPS; g++) {
        if (!s->sharded[g]) continue;
        // Every used view of the group must be in a segment: the model reads nothing else.
        for (int i = 0; i < m->pt.n_views; i++)
            if (m->pt.views[i].group == g && m->pt.views[i].used && m->pt.views[i].numel && s->view_seg[i] < 0)
                fatal("a used view outside every bucket", m->pt.views[i].name);
        size_t mx = 0;
        for (int q = 0; q < s->n_segs; q++)
            if (s->segs[q].group == g && s->segs[q].n > mx) mx = s->segs[q].n;
        size_t sn = s->state_numel[g];
        s->pshard[g] = ops->alloc(be, BUF_PARAM, sn ? sn : 1);
        for (int b = 0; b < s->n_buckets; b++) {
            const grad_bucket *k = &s->buckets[b];
            if (k->group == g && k->own_n)
                ops->copy(be, BUF_PARAM, (char *)s->pshard[g] + k->state_off * ab,
                          (char *)m->params[g] + k->own_lo * ab, k->own_n);
        }
        for (int j = 0; j < 2; j++) s->gbuf[g][j] = ops->alloc(be, BUF_PARAM, mx ? mx : 1);
        ops->free(be, m->params[g]);
        m->params[g] = NULL;
        m->param_sharded[g] = 1;
    }
    optim_params_changed(s);
    m->param_need = param_need;
    m->param_at = param_at;
    m->param_ctx = s;
    s->armed_model = m;
    return n;
}

void optim_params_whole(optim_state *s, llava_model *m) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    size_t ab = ops->act_bytes;
    for (int g = 0; g < N_GROUPS; g++) {
        if (!m->param_sharded[g]) continue;
        m->params[g] = ops->alloc(be, BUF_PARAM, m->pt.group_numel[g]);
        ops->zero(be, BUF_PARAM, m->params[g], m->pt.group_numel[g]);
        for (int b = 0; b < s->n_buckets; b++) {
            const grad_bucket *k = &s->buckets[b];
            if (k->group != g) continue;
            if (k->own_n)
                ops->copy(be, BUF_PARAM, (char *)m->params[g] + k->own_lo * ab,
                          (char *)s->pshard[g] + k->state_off * ab, k->own_n);
            dist_allgather(s->d, (char *)m->params[g] + k->lo * ab, k->n, ab, "ZeRO-3: all-gather the whole model");
        }
        m->param_sharded[g] = 0;
    }
    optim_params_changed(s);
}

void optim_pshard_download(const optim_state *s, const llava_model *m, int g, int b, float *out) {
    const grad_bucket *k = &s->buckets[b];
    if (k->own_n)
        m->ops->download(m->be, BUF_PARAM, out, (char *)s->pshard[g] + k->state_off * m->ops->act_bytes, k->own_n);
}

void optim_pshard_upload(optim_state *s, llava_model *m, int g, const float *whole) {
    for (int b = 0; b < s->n_buckets; b++) {
        const grad_bucket *k = &s->buckets[b];
        if (k->group == g && k->own_n)
            m->ops->upload(m->be, BUF_PARAM, (char *)s->pshard[g] + k->state_off * m->ops->act_bytes, whole + k->own_lo,
                           k->own_n);
    }
    optim_params_changed(s);
}
