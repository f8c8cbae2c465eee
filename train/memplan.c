#include "memplan.h"

#include <string.h>

#include "common/util.h"
#include "model/acts.h"
#include "model/nf4.h"
#include "optim.h"
#include "train/dist/dist.h"

int mem_plan_vision_layers(const run_settings *s, const model_config *mc) {
    int used = llava_vision_layers_used(mc), n = s->train.vision_last;
    if (!s->train.vision) return 0;
    return n > 0 && n < used ? n : used;
}

int mem_plan_images_per_sample(const run_settings *s) {
    if (s->data.max_images > 0) return s->data.max_images;
    return s->data.video_frames > 0 ? s->data.video_frames : 1;
}

act_shape mem_plan_act_shape(const run_settings *s, const model_config *mc) {
    int B = s->train.per_device_batch, S = s->data.model_max_length, tiles = mem_plan_images_per_sample(s);
    if (mc->glue.anyres) {  // every image at its most tiles
        image_anyres_config ac = {.size = mc->vision.image_size, .pinpoints = mc->glue.pinpoints};
        tiles *= image_anyres_max_tiles(&ac);
    }
    act_shape a = {B * S,
                   B,
                   B * tiles,
                   1,
                   s->train.gradient_checkpointing,
                   0,
                   mem_plan_vision_layers(s, mc),
                   s->train.vision_checkpointing};
    return a;
}

int mem_plan_accum(const run_settings *s, int world) {
    int B = s->train.per_device_batch;
    return s->train.global_batch > 0 ? s->train.global_batch / (B * world) : s->train.grad_accum;
}

uint64_t mem_plan_activations(const model_config *mc, const act_shape *shape, int act_bytes, int accum) {
    act_plan ap;
    if (act_plan_make(mc, shape, act_bytes, &ap) != 0) return 0;
    // The arenas as the model allocates them, and the loss ledger: one step's per-token losses (F32).
    uint64_t bytes = ap.total_bytes + (uint64_t)accum * (uint64_t)shape->T * 4;
    act_plan_free(&ap);
    return bytes;
}

int mem_plan_make(const run_settings *s, const model_config *mc, int world, mem_plan *p) {
    memset(p, 0, sizeof *p);
    param_table pt;
    if (param_table_build(mc, &pt) != 0) return -1;
    p->world = world;
    p->zero_stage = world > 1 ? s->train.zero_stage : 0;
    p->cuda = strcmp(s->train.device, "cuda") == 0;
    p->checkpointing = s->train.gradient_checkpointing;
    p->per_device_batch = s->train.per_device_batch;
    p->seq_len = s->data.model_max_length;
    p->images_per_sample = mem_plan_images_per_sample(s);
    p->act_bytes = p->cuda ? 2 : 4;
    int want_p = s->train.projector, want_lm = s->train.lm;
    // As the trainer sets it up: the projector group always has gradient buffers (the LM's backward
    // runs through them), the LM group when the LM trains, the LoRA group with LoRA (the LM frozen).
    p->grad_groups = 1 << GROUP_PROJECTOR | (want_lm ? 1 << GROUP_LM : 0) | (s->train.lora ? 1 << GROUP_LORA : 0) |
                     (s->train.vision ? 1 << GROUP_VISION : 0);
    int vision_layers = mem_plan_vision_layers(s, mc), vision_first = llava_vision_layers_used(mc) - vision_layers;
    for (int g = 0; g < N_GROUPS; g++) p->numel[g] = pt.group_numel[g];

    // ZeRO-3 shards the groups that train of the LM and the projector (optim_init_dist), whole:
    // their views frozen by name are in the buckets too.
    int zero3 = p->zero_stage == 3;
    int shard_g[N_GROUPS] = {0};
    shard_g[GROUP_LM] = zero3 && want_lm;
    shard_g[GROUP_PROJECTOR] = zero3;
    // The optimizer's buckets, as optim.c builds them, to count the state the fullest rank keeps.
    int cur_group = -1, cur_layer = -2;
    size_t cur_end = 0, cur_n = 0;
    uint64_t state = 0, max_lm_bucket = 0, max_own = 0, shard = 0, seg_n = 0, max_seg[N_GROUPS] = {0}, trained_all = 0;
    int seg_group = -1, seg_layer = -2;
    for (int i = 0; i <= pt.n_views; i++) {
        const param_view *v = i < pt.n_views ? &pt.views[i] : NULL;
        int trainable = 0, in_bucket = 0;
        if (v && v->used && v->numel && (p->grad_groups >> v->group & 1)) {
            trainable = v->group != GROUP_PROJECTOR || want_p;
            // the tower: its layers from the first trained one; the embeddings when all train
            if (v->group == GROUP_VISION) trainable = v->layer < 0 ? vision_first == 0 : v->layer >= vision_first;
            for (int f = 0; f < s->train.n_freeze && trainable; f++) {
                const char *pre = s->train.freeze[f];
                if (strncmp(v->name, pre, strlen(pre)) == 0) trainable = 0;
            }
        }
        in_bucket = trainable || (v && v->used && v->numel && shard_g[v->group]);
        int cont = in_bucket && cur_n && v->group == cur_group && v->layer == cur_layer &&
                   v->offset - cur_end < PARAM_ALIGN && v->offset + v->numel - (cur_end - cur_n) <= OPTIM_BUCKET_MAX;
        if (!cont && cur_n) {  // close the bucket
            uint64_t own = p->zero_stage ? dist_shard_count(cur_n, world, world - 1) : 0;
            state += own;
            if ((p->zero_stage ? own : cur_n) > max_own) max_own = p->zero_stage ? own : cur_n;
            if (shard_g[cur_group]) shard += own;
            trained_all += cur_n;
            if (cur_group == GROUP_LM && cur_n > max_lm_bucket) max_lm_bucket = cur_n;
            cur_n = 0;
        }
        // ZeRO-3's segments: runs of buckets of one sharded group and layer.
        int seg_cont = in_bucket && v->group == seg_group && v->layer == seg_layer;
        if (!seg_cont && seg_n) {
            if (seg_n > max_seg[seg_group]) max_seg[seg_group] = seg_n;
            seg_n = 0;
        }
        if (!in_bucket) {
            seg_group = -1;
            continue;
        }
        if (!cont) {
            cur_group = v->group;
            cur_layer = v->layer;
            cur_end = v->offset;
        }
        if (shard_g[v->group]) {
            if (!seg_cont) seg_group = v->group, seg_layer = v->layer;
            seg_n += v->offset + v->numel - (cur_n ? cur_end : v->offset);
        } else {
            seg_group = -1;
        }
        cur_n += v->offset + v->numel - cur_end;
        cur_end = v->offset + v->numel;
        if (trainable) p->trainable += v->numel;
    }
    if (!p->zero_stage)
        for (int g = 0; g < N_GROUPS; g++)
            if (p->grad_groups >> g & 1) state += pt.group_numel[g];
    p->state_per_rank = state;

    uint64_t grad_numel = 0, all = 0;
    for (int g = 0; g < N_GROUPS; g++) {
        all += pt.group_numel[g];
        if (p->grad_groups >> g & 1) grad_numel += pt.group_numel[g];
    }
    p->params = all * (uint64_t)p->act_bytes;
    // train.shard_frozen: a frozen tower sharded too, in runs of one layer's used views (zero3.c).
    p->shard_frozen =
        zero3 && s->train.shard_frozen && !(p->grad_groups >> GROUP_VISION & 1) && pt.group_numel[GROUP_VISION] > 0;
    if (p->shard_frozen) {
        int layer = -2;
        uint64_t lo = 0, end = 0, seg = 0;
        for (int i = 0; i <= pt.n_views; i++) {
            const param_view *v = i < pt.n_views ? &pt.views[i] : NULL;
            int in = v && v->group == GROUP_VISION && v->used && v->numel;
            int cont = in && end > lo && v->layer == layer && v->offset >= end && v->offset - end < PARAM_ALIGN &&
                       v->offset + v->numel - lo <= OPTIM_BUCKET_MAX;
            int same_layer = in && v->layer == layer;
            if (!cont && end > lo) {
                shard += dist_shard_count(end - lo, world, world - 1);
                seg += end - lo;
                lo = end = 0;
            }
            if (!same_layer && seg) {
                if (seg > max_seg[GROUP_VISION]) max_seg[GROUP_VISION] = seg;
                seg = 0;
            }
            if (!in) continue;
            if (!cont) lo = v->offset, layer = v->layer;
            end = v->offset + v->numel;
        }
        shard_g[GROUP_VISION] = 1;
    }
    if (zero3) {  // the sharded groups as this rank's slices and two buffers of their largest segment
        for (int g = 0; g < N_GROUPS; g++)
            if (shard_g[g]) {
                p->sharded_numel += pt.group_numel[g];
                p->gather_numel += 2 * max_seg[g];
            }
        p->shard_per_rank = shard;
        p->params = (all - p->sharded_numel + shard + p->gather_numel) * (uint64_t)p->act_bytes;
    }
    // QLoRA: GROUP_LM_NF4 as the model allocates it (llava.c nf4_upload): per weight its codes and
    // absmax codes in 4-byte words and its fp32 absmax2; the tables; one scratch weight, the largest.
    p->nf4 = pt.group_numel[GROUP_LM_NF4] > 0;
    if (p->nf4) {
        p->params -= pt.group_numel[GROUP_LM_NF4] * (uint64_t)p->act_bytes;
        uint64_t largest = 0;
        for (int i = 0; i < pt.n_views; i++) {
            const param_view *v = &pt.views[i];
            if (v->group != GROUP_LM_NF4 || !v->used) continue;
            uint64_t blocks = (v->numel + NF4_BLOCK - 1) / NF4_BLOCK;
            p->params += ((v->numel + 1) / 2 + blocks + 3) / 4 * 4 + (blocks + NF4_STAT_BLOCK - 1) / NF4_STAT_BLOCK * 4;
            if (v->numel > largest) largest = v->numel;
        }
        p->params += 272 * 4 + largest * (uint64_t)p->act_bytes;
    }
    p->grads = grad_numel * 4;
    // ZeRO-2 without a token budget: the LM's gradients live in OPTIM_GRAD_SLOTS slots of its
    // largest bucket (optim_use_grad_slots), not in a buffer of the whole group.
    p->grad_slots = p->zero_stage >= 2 && want_lm && max_lm_bucket && s->data.token_budget == 0;
    if (p->grad_slots) p->grads = (grad_numel - pt.group_numel[GROUP_LM] + OPTIM_GRAD_SLOTS * max_lm_bucket) * 4;
    p->grad_shard = p->zero_stage ? state * 4 : 0;
    p->offload = s->train.offload_optimizer;
    p->master = p->act_bytes != 4 || p->offload ? state * 4 : 0;
    p->adam_m = p->adam_v = state * 4;
    // Collective volume per rank per step (ring algorithms: each rank sends and receives (w - 1) / w
    // of the buffer per reduce-scatter or all-gather, twice that per all-reduce). Psi: the elements
    // in buckets; A micro-batches per step. ZeRO-0: one all-reduce (2 Psi); ZeRO-1: a reduce-scatter
    // and the parameters' all-gather (2 Psi); ZeRO-2: a reduce-scatter per micro-batch and the
    // all-gather (A Psi + Psi); ZeRO-3: a reduce-scatter per micro-batch and each sharded segment
    // gathered for the forward and again for the backward ((A + 2 A) Psi_s, plus the other trained
    // groups' all-gather). With A = 1 ZeRO-3 over ZeRO-2 is the paper's 3 Psi / 2 Psi = 1.5.
    {
        double A = (double)mem_plan_accum(s, world), f = world > 1 ? (double)(world - 1) / world : 0;
        double psi = (double)trained_all, psi_s = 0;
        for (int g = 0; g < N_GROUPS; g++)
            if (shard_g[g] && g != GROUP_VISION) psi_s += (double)pt.group_numel[g];
        if (psi_s > psi) psi_s = psi;
        // a sharded frozen tower: gathered for each forward
        double psi_v = p->shard_frozen ? (double)pt.group_numel[GROUP_VISION] : 0;
        double rs = 0, ag = 0;  // reduce-scattered gradient elements, all-gathered parameter elements
        switch (p->zero_stage) {
        case 0: rs = 2 * psi; break;
        case 1: rs = psi, ag = psi; break;
        case 2: rs = A * psi, ag = psi; break;
        default: rs = A * psi, ag = 2 * A * psi_s + (psi - psi_s) + A * psi_v; break;
        }
        p->volume_elems = f * (rs + ag);
        p->volume_bytes = f * (rs * 4 + ag * p->act_bytes);
        p->volume_elems_zero2 = f * (A * psi + psi);
    }
    act_shape shape = mem_plan_act_shape(s, mc);
    p->activations = mem_plan_activations(mc, &shape, p->act_bytes, mem_plan_accum(s, world));
    p->reserve = p->cuda ? (uint64_t)2 << 30 : 0;
    p->total = p->params + p->grads + p->grad_shard + p->activations + p->reserve;
    if (p->offload) p->host = p->master + p->adam_m + p->adam_v + max_own * 4;
    else p->total += p->master + p->adam_m + p->adam_v;
    param_table_free(&pt);
    return 0;
}

static void row(FILE *out, const char *kind, uint64_t bytes, const char *note) {
    fprintf(out, "  %-12s %9.2f GiB  %s\n", kind, (double)bytes / (double)(1ull << 30), note);
}

void mem_plan_print(const mem_plan *p, uint64_t capacity, FILE *out) {
    char a[32], b[32], c3[32];
    const char *pd = p->act_bytes == 2 ? "bf16" : "fp32";
    fprintf(
        out,
        "memory plan per rank: %d rank%s, ZeRO-%d, %s, %d x %d tokens per micro-batch, activation checkpointing %s\n",
        p->world, p->world == 1 ? "" : "s", p->zero_stage,
        p->cuda ? "cuda (bf16 params and activations)" : "cpu (fp32)", p->per_device_batch, p->seq_len,
        p->checkpointing ? "on" : "off");
    if (p->images_per_sample > 1)
        fprintf(out, "  %d images per sample (a video's frames; data.max_images_per_sample, else data.video_frames)\n",
                p->images_per_sample);
    fprintf(out, "  parameters %s stored, %s trained; optimizer state of the fullest rank: %s elements\n",
            fmt_count(p->numel[0] + p->numel[1] + p->numel[2] + p->numel[3], a), fmt_count(p->trainable, b),
            fmt_count(p->state_per_rank, c3));
    char note[160];
    if (p->zero_stage == 3 && p->sharded_numel)
        snprintf(note, sizeof note, "%s, %s sharded (this rank's slices) + 2 gather buffers%s", pd,
                 p->shard_frozen ? (p->sharded_numel > p->numel[GROUP_PROJECTOR] + p->numel[GROUP_VISION]
                                        ? "LM, projector and tower"
                                        : "projector and tower")
                 : p->sharded_numel > p->numel[GROUP_PROJECTOR] ? "LM and projector"
                                                                : "projector",
                 p->shard_frozen ? "" : ", the rest replicated");
    else
        snprintf(note, sizeof note,
                 p->nf4 ? "%s, the LM's linears in NF4 (QLoRA) with one dequantised scratch weight"
                        : "%s, every group, replicated",
                 pd);
    row(out, "params", p->params, note);
    row(out, "grads", p->grads,
        p->grad_slots ? (p->grad_groups >> GROUP_VISION & 1
                             ? "fp32, the tower's and the projector's, and the LM's in 3 slots of its largest bucket"
                             : "fp32, the projector's, and the LM's in 3 slots of its largest bucket")
                      : "fp32, whole trainable groups (the backward accumulates into them)");
    if (p->zero_stage) row(out, "grad shard", p->grad_shard, "fp32, this rank's reduced slices");
    const char *sn =
        p->offload ? (p->zero_stage ? "fp32, sharded, in host memory (offload)" : "fp32, in host memory (offload)")
                   : (p->zero_stage ? "fp32, sharded" : "fp32");
    if (p->master) row(out, "master", p->master, sn);
    row(out, "adam m", p->adam_m, sn);
    row(out, "adam v", p->adam_v, sn);
    snprintf(note, sizeof note, "%s, peak of forward + backward", pd);
    row(out, "activations", p->activations, note);
    if (p->reserve) row(out, "reserve", p->reserve, "CUDA context, cuBLAS workspace, NCCL buffers");
    row(out, "total", p->total, p->offload ? "on the device (the optimizer's rows are host memory)" : "");
    if (p->offload)
        fprintf(
            out,
            "  host memory per rank: %.2f GiB (masters, m, v and one bucket's gradient slice); %.2f GiB for 8 ranks\n",
            (double)p->host / (double)(1ull << 30), 8.0 * (double)p->host / (double)(1ull << 30));
    if (p->world > 1)
        fprintf(out,
                "  collectives per rank per step: %.2f G elements, %.2f GiB (ZeRO-2 on this run: %.2f G elements; "
                "ratio %.2f)\n",
                p->volume_elems / 1e9, p->volume_bytes / (double)(1ull << 30), p->volume_elems_zero2 / 1e9,
                p->volume_elems_zero2 > 0 ? p->volume_elems / p->volume_elems_zero2 : 0);
    if (capacity)
        fprintf(out, "  %s %.0f GiB per device (%.1f GiB %s)\n", p->total <= capacity ? "fits in" : "DOES NOT FIT in",
                (double)capacity / (double)(1ull << 30),
                (double)(p->total <= capacity ? capacity - p->total : p->total - capacity) / (double)(1ull << 30),
                p->total <= capacity ? "to spare" : "over");
}
