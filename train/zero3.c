// ZeRO-3 (optim.h): the trained LM's and projector's parameters sharded over the ranks like their
// optimizer state (and with train.shard_frozen the frozen tower's), each segment (a decoder layer,
// the embeddings, the final norm and head, the projector, a tower layer) all-gathered into one of
// two buffers when the model computes with it, the next one gathered ahead.
//
// Why the schedule is the model's calls and not the batch: every rank must issue the same
// all-gathers in the same order, and the model's param_need calls are the same on every rank
// (the projector's and a sharded tower's are made whether or not the batch has images, the
// backward's whether or not it has targets, llava_model_param_walk stands in for a skipped pass). The state machine below turns
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
// part all-gathered in place, without waiting (the mark tells the compute stream when it may read).
static void gather(optim_state *s, llava_model *m, int q, int j) {
    const param_segment *sg = &s->segs[q];
    int g = sg->group;
    size_t ab = m->ops->act_bytes;
    int old = s->gbuf_seg[g][j];
    if (old >= 0) s->seg_buf[old] = -1;
    s->gbuf_seg[g][j] = q;
    s->seg_buf[q] = j;
    char *base = s->gbuf[g][j];
    for (int i = sg->p_first; i <= sg->p_last; i++) {
        const shard_part *k = &s->parts[i];
        if (k->own_n)
            m->ops->copy(m->be, BUF_PARAM, base + (k->own_lo - sg->lo) * ab, (char *)s->pshard[g] + k->off * ab,
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
    // A frozen group (the tower) runs forward only and never changes: after its last segment comes
    // the next pass's first.
    if (s->frozen_shard[g] && dir > 0 && (nx >= s->n_segs || s->segs[nx].group != g))
        while (nx - 1 >= 0 && s->segs[nx - 1].group == g) nx--;
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

// Forgets what the gather buffers hold: the trained groups' (with `all`, the frozen ones' too).
static void forget(optim_state *s, int all) {
    for (int q = 0; q < s->n_segs; q++)
        if (all || !s->frozen_shard[s->segs[q].group]) s->seg_buf[q] = -1;
    for (int g = 0; g < N_GROUPS; g++) {
        if (!all && s->frozen_shard[g]) continue;
        s->cur_seg[g] = -1;
        s->gbuf_seg[g][0] = s->gbuf_seg[g][1] = -1;
    }
}

void optim_params_changed(optim_state *s) { forget(s, 0); }

// Appends a part [lo, lo + n) of `group` and `layer` (this rank's slice at `off` in the group's
// shard), starting a segment when the group or layer changes.
static void add_part(optim_state *s, int group, int layer, size_t lo, size_t n, size_t own_lo, size_t own_n,
                     size_t off) {
    s->parts = xrealloc(s->parts, sizeof(shard_part) * (size_t)(s->n_parts + 1));
    s->parts[s->n_parts] = (shard_part){lo, n, own_lo, own_n, off, group};
    param_segment *sg = s->n_segs ? &s->segs[s->n_segs - 1] : NULL;
    if (!sg || sg->group != group || sg->layer != layer) {
        s->segs = xrealloc(s->segs, sizeof(param_segment) * (size_t)(s->n_segs + 1));
        sg = &s->segs[s->n_segs++];
        *sg = (param_segment){group, layer, s->n_parts, s->n_parts, lo, 0};
    }
    sg->p_last = s->n_parts++;
    sg->n = lo + n - sg->lo;
}

// The frozen tower's parts: runs of one layer's used views, cut as buckets are; returns the
// elements of this rank's slices.
static size_t tower_parts(optim_state *s, const llava_model *m) {
    int world = dist_world(s->d), rank = dist_rank(s->d), layer = -2;
    size_t lo = 0, end = 0, off = 0;
    for (int i = 0; i <= m->pt.n_views; i++) {
        const param_view *v = i < m->pt.n_views ? &m->pt.views[i] : NULL;
        int in = v && v->group == GROUP_VISION && v->used && v->numel;
        int cont = in && end > lo && v->layer == layer && v->offset >= end && v->offset - end < PARAM_ALIGN &&
                   v->offset + v->numel - lo <= OPTIM_BUCKET_MAX;
        if (!cont && end > lo) {
            size_t n = end - lo, own = dist_shard_count(n, world, rank);
            add_part(s, GROUP_VISION, layer, lo, n, lo + dist_shard_begin(n, world, rank), own, off);
            off += own;
            lo = end = 0;
        }
        if (!in) continue;
        if (!cont) lo = v->offset, layer = v->layer;
        end = v->offset + v->numel;
    }
    return off;
}

int optim_shard_params(optim_state *s, llava_model *m, int shard_frozen) {
    // train.shard_frozen: a frozen tower too (one that trains stays whole: its buckets are ZeRO-2's).
    if (shard_frozen && s->zero == 3 && m->params[GROUP_VISION] && !m->grads[GROUP_VISION] &&
        m->pt.group_numel[GROUP_VISION])
        s->sharded[GROUP_VISION] = s->frozen_shard[GROUP_VISION] = 1;
    int n = 0;
    for (int g = 0; g < N_GROUPS; g++) n += s->sharded[g];
    if (!n) return 0;
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    size_t ab = ops->act_bytes;
    // Parts and segments in table order: the frozen tower's, then the trained groups' buckets (their
    // slices are the optimizer state's).
    size_t shard_n[N_GROUPS] = {0};
    if (s->frozen_shard[GROUP_VISION]) shard_n[GROUP_VISION] = tower_parts(s, m);
    for (int b = 0; b < s->n_buckets; b++) {
        const grad_bucket *k = &s->buckets[b];
        if (s->sharded[k->group] && !s->frozen_shard[k->group])
            add_part(s, k->group, k->layer, k->lo, k->n, k->own_lo, k->own_n, k->state_off);
    }
    for (int g = 0; g < N_GROUPS; g++)
        if (s->sharded[g] && !s->frozen_shard[g]) shard_n[g] = s->state_numel[g];
    // Each used view of a sharded group: the segment whose run holds it.
    s->view_seg = xmalloc(sizeof(int) * (size_t)(m->pt.n_views ? m->pt.n_views : 1));
    for (int i = 0; i < m->pt.n_views; i++) {
        const param_view *v = &m->pt.views[i];
        s->view_seg[i] = -1;
        for (int q = 0; q < s->n_segs && v->used && v->numel && s->view_seg[i] < 0; q++)
            if (s->segs[q].group == v->group && v->offset >= s->segs[q].lo && v->offset < s->segs[q].lo + s->segs[q].n)
                s->view_seg[i] = q;
    }
    s->seg_buf = xmalloc(sizeof(int) * (size_t)(s->n_segs ? s->n_segs : 1));
    for (int g = 0; g < N_GROUPS; g++) {
        if (!s->sharded[g]) continue;
        // Every used view of the group must be in a segment: the model reads nothing else.
        for (int i = 0; i < m->pt.n_views; i++)
            if (m->pt.views[i].group == g && m->pt.views[i].used && m->pt.views[i].numel && s->view_seg[i] < 0)
                fatal("a used view outside every segment", m->pt.views[i].name);
        size_t mx = 0;
        for (int q = 0; q < s->n_segs; q++)
            if (s->segs[q].group == g && s->segs[q].n > mx) mx = s->segs[q].n;
        s->pshard[g] = ops->alloc(be, BUF_PARAM, shard_n[g] ? shard_n[g] : 1);
        for (int i = 0; i < s->n_parts; i++) {
            const shard_part *k = &s->parts[i];
            if (k->group == g && k->own_n)
                ops->copy(be, BUF_PARAM, (char *)s->pshard[g] + k->off * ab, (char *)m->params[g] + k->own_lo * ab,
                          k->own_n);
        }
        for (int j = 0; j < 2; j++) s->gbuf[g][j] = ops->alloc(be, BUF_PARAM, mx ? mx : 1);
        ops->free(be, m->params[g]);
        m->params[g] = NULL;
        m->param_sharded[g] = 1;
    }
    forget(s, 1);
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
        for (int i = 0; i < s->n_parts; i++) {
            const shard_part *k = &s->parts[i];
            if (k->group != g) continue;
            if (k->own_n)
                ops->copy(be, BUF_PARAM, (char *)m->params[g] + k->own_lo * ab, (char *)s->pshard[g] + k->off * ab,
                          k->own_n);
            dist_allgather(s->d, (char *)m->params[g] + k->lo * ab, k->n, ab, "ZeRO-3: all-gather the whole model");
        }
        m->param_sharded[g] = 0;
    }
    forget(s, 1);
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
    forget(s, 0);
}
