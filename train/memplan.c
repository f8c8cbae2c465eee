#include "memplan.h"

#include <string.h>

#include "common/util.h"
#include "train/dist/dist.h"
#include "optim.h"

// The buffers train/model/llava.c holds at the peak of llava_forward_backward: inside the LM
// backward's layer loop (the vision tower's forward buffers are gone by then). T tokens, M image
// features, e bytes per ACT element; F32 statistics are 4 bytes and I32 index arrays 4 bytes.
uint64_t mem_plan_activations(const model_config *mc, int per_device_batch, int seq_len, int act_bytes, int checkpointing) {
    const llama_config *t = &mc->text;
    uint64_t T = (uint64_t)per_device_batch * (uint64_t)seq_len, e = (uint64_t)act_bytes;
    uint64_t M = (uint64_t)per_device_batch * (uint64_t)mc->glue.image_seq_length;
    uint64_t d = (uint64_t)t->hidden_size, I = (uint64_t)t->intermediate_size, V = (uint64_t)t->vocab_size;
    uint64_t L = (uint64_t)t->num_hidden_layers, Hq = (uint64_t)t->num_attention_heads;
    uint64_t qd = Hq * (uint64_t)t->head_dim, kvd = (uint64_t)t->num_key_value_heads * (uint64_t)t->head_dim;
    uint64_t Dv = (uint64_t)mc->vision.hidden_size;
    int mlp2 = mc->glue.projector == PROJ_MLP2X_GELU;
    uint64_t b = 0;
    b += 3 * T * 4 + M * 4;                        // ids, targets, positions; image rows
    b += M * Dv * e + (mlp2 ? 3 : 1) * M * d * e;  // vision features; projector a1 (g1, f)
    b += (L + 1) * T * d * e;                      // hs[0..L]: every layer's input (the checkpoints)
    b += 2 * T * d * e + 2 * T * 4;                // tmp, final norm output; its rstd, per-token losses
    b += T * V * e;                                // logits, turned into dlogits in place
    b += 3 * T * d * e + 3 * T * I * e + 2 * T * qd * e + 2 * T * kvd * e;  // backward scratch
    // One layer's saved activations (n1, h_mid, n2, q, att, k, v, gate, up, silu*up; rstd x2, lse):
    uint64_t layer = T * (3 * d + 2 * qd + 2 * kvd + 3 * I) * e + T * 4 * (2 + Hq);
    b += checkpointing ? layer : L * layer;
    return b;
}

int mem_plan_make(const train_config *c, const model_config *mc, int world, mem_plan *p) {
    memset(p, 0, sizeof *p);
    param_table pt;
    if (param_table_build(mc, &pt) != 0) return -1;
    p->world = world;
    p->zero_stage = world > 1 ? cfg_int(c, "train.zero_stage") : 0;
    p->cuda = strcmp(cfg_str(c, "train.device"), "cuda") == 0;
    p->checkpointing = cfg_bool(c, "train.gradient_checkpointing");
    p->per_device_batch = cfg_int(c, "train.per_device_train_batch_size");
    p->seq_len = cfg_int(c, "data.model_max_length");
    p->act_bytes = p->cuda ? 2 : 4;
    int want_p = cfg_list_has(c, "train.trainable", "projector"), want_lm = cfg_list_has(c, "train.trainable", "lm");
    // As the trainer sets it up: the projector group always has gradient buffers (the LM's backward
    // runs through them), the LM group when the LM trains.
    p->grad_groups = 1 << GROUP_PROJECTOR | (want_lm ? 1 << GROUP_LM : 0);
    for (int g = 0; g < N_GROUPS; g++) p->numel[g] = pt.group_numel[g];

    // The optimizer's buckets, as optim.c builds them, to count the state the fullest rank keeps.
    int cur_group = -1, cur_layer = -2;
    size_t cur_end = 0, cur_n = 0;
    uint64_t state = 0, max_lm_bucket = 0;
    for (int i = 0; i <= pt.n_views; i++) {
        const param_view *v = i < pt.n_views ? &pt.views[i] : NULL;
        int trainable = 0;
        if (v && v->used && v->numel && (p->grad_groups >> v->group & 1)) {
            trainable = v->group != GROUP_PROJECTOR || want_p;
            for (int f = 0; f < cfg_list_len(c, "train.freeze") && trainable; f++) {
                const char *pre = cfg_list_item(c, "train.freeze", f);
                if (strncmp(v->name, pre, strlen(pre)) == 0) trainable = 0;
            }
        }
        int cont = trainable && cur_n && v->group == cur_group && v->layer == cur_layer && v->offset == cur_end &&
                   cur_n + v->numel <= OPTIM_BUCKET_MAX;
        if (!cont && cur_n) {  // close the bucket
            state += p->zero_stage ? dist_shard_count(cur_n, world, world - 1) : 0;
            if (cur_group == GROUP_LM && cur_n > max_lm_bucket) max_lm_bucket = cur_n;
            cur_n = 0;
        }
        if (!trainable) continue;
        if (!cont) {
            cur_group = v->group;
            cur_layer = v->layer;
        }
        cur_n += v->numel;
        cur_end = v->offset + v->numel;
        p->trainable += v->numel;
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
    p->grads = grad_numel * 4;
    // ZeRO-2 without a token budget: the LM's gradients live in OPTIM_GRAD_SLOTS slots of its
    // largest bucket (optim_use_grad_slots), not in a buffer of the whole group.
    p->grad_slots = p->zero_stage == 2 && want_lm && max_lm_bucket && cfg_int(c, "data.token_budget") == 0;
    if (p->grad_slots) p->grads = (grad_numel - pt.group_numel[GROUP_LM] + OPTIM_GRAD_SLOTS * max_lm_bucket) * 4;
    p->grad_shard = p->zero_stage ? state * 4 : 0;
    p->master = p->act_bytes != 4 ? state * 4 : 0;
    p->adam_m = p->adam_v = state * 4;
    p->activations = mem_plan_activations(mc, p->per_device_batch, p->seq_len, p->act_bytes, p->checkpointing);
    p->reserve = p->cuda ? (uint64_t)2 << 30 : 0;
    p->total = p->params + p->grads + p->grad_shard + p->master + p->adam_m + p->adam_v + p->activations + p->reserve;
    param_table_free(&pt);
    return 0;
}

static void row(FILE *out, const char *kind, uint64_t bytes, const char *note) {
    fprintf(out, "  %-12s %9.2f GiB  %s\n", kind, (double)bytes / (double)(1ull << 30), note);
}

void mem_plan_print(const mem_plan *p, uint64_t capacity, FILE *out) {
    char a[32], b[32], c3[32];
    const char *pd = p->act_bytes == 2 ? "bf16" : "fp32";
    fprintf(out, "memory plan per rank: %d rank%s, ZeRO-%d, %s, %d x %d tokens per micro-batch, activation checkpointing %s\n",
            p->world, p->world == 1 ? "" : "s", p->zero_stage, p->cuda ? "cuda (bf16 params and activations)" : "cpu (fp32)",
            p->per_device_batch, p->seq_len, p->checkpointing ? "on" : "off");
    fprintf(out, "  parameters %s stored, %s trained; optimizer state of the fullest rank: %s elements\n",
            fmt_count(p->numel[0] + p->numel[1] + p->numel[2], a), fmt_count(p->trainable, b), fmt_count(p->state_per_rank, c3));
    char note[96];
    snprintf(note, sizeof note, "%s, every group, replicated", pd);
    row(out, "params", p->params, note);
    row(out, "grads", p->grads,
        p->grad_slots ? "fp32, the projector's, and the LM's in 3 slots of its largest bucket (ZeRO-2)"
                      : "fp32, whole trainable groups (the backward accumulates into them)");
    if (p->zero_stage) row(out, "grad shard", p->grad_shard, "fp32, this rank's reduced slices");
    if (p->master) row(out, "master", p->master, p->zero_stage ? "fp32, sharded" : "fp32");
    row(out, "adam m", p->adam_m, p->zero_stage ? "fp32, sharded" : "fp32");
    row(out, "adam v", p->adam_v, p->zero_stage ? "fp32, sharded" : "fp32");
    snprintf(note, sizeof note, "%s, peak of forward + backward", pd);
    row(out, "activations", p->activations, note);
    if (p->reserve) row(out, "reserve", p->reserve, "CUDA context, cuBLAS workspace, NCCL buffers");
    row(out, "total", p->total, "");
    if (capacity)
        fprintf(out, "  %s %.0f GiB per device (%.1f GiB %s)\n", p->total <= capacity ? "fits in" : "DOES NOT FIT in",
                (double)capacity / (double)(1ull << 30),
                (double)(p->total <= capacity ? capacity - p->total : p->total - capacity) / (double)(1ull << 30),
                p->total <= capacity ? "to spare" : "over");
}
