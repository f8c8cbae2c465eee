// The activation table and its plan (acts.h).
//
// Each row of ACTS is one buffer: its name, kind, where its pointer lands (a field of llava_acts or,
// per decoder layer, of lm_saved), its shape in the pass's sizes, its lifetime in phases and when
// it exists. Planning turns the rows into buffers for the largest pass and gives each an offset in
// its kind's arena: largest first, each at the lowest 256-byte aligned offset where no buffer whose
// lifetime meets its own lies (first fit). The vision tower's buffers thus reuse the memory of the
// backward's scratch, and the projector's backward that of the decoder layers' backward.
#include "acts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/ops.h"

enum { ALIGN = 256 };

// Sizes a row's shape is written in.
enum {
    Z_ONE = 0,
    Z_T,
    Z_NSEQ1,
    Z_NSEQ,
    Z_M,
    Z_NIMG1,
    Z_R,
    Z_NP,
    Z_PIX,
    Z_D,
    Z_I,
    Z_QD,
    Z_KVD,
    Z_V,
    Z_HQ,
    Z_DV,
    Z_IV,
    Z_HV,
    Z_K,
    Z_LX,    // the widest adapted linear's input or output: max(d, I, qd)
    Z_RANK,  // LoRA's r
    Z_MA,    // the projector's kept pre-activations: M * (depth - 1) rows (M for a single Linear, its output)
    Z_MG,    // their GELUs: M * (depth - 1)
    Z_NSEL,  // the tower's selected features before a reduction: n_img * (G^2 + CLS kept)
    Z_R3,    // the embeddings' backward's ids: three per tower row (at most)
    Z_COUNT
};

// How many buffers a row stands for.
enum { PER_PASS = 0, PER_LAYER_INPUT, PER_SAVED, PER_VISION_INPUT, PER_VISION_SAVED };
// When a row exists.
enum {
    ALWAYS = 0,
    IF_PROJ,
    IF_MLP,
    IF_BACKWARD,
    IF_BACKWARD_MLP,
    IF_LORA,
    IF_BACKWARD_LORA,
    IF_REDUCE,
    IF_VTRAIN,         // the tower trains
    IF_VTRAIN_REDUCE,  // ... and a reduction follows it
    IF_VTRAIN_EMBED,   // ... all of it: the embeddings too
    IF_ANYRES,         // LLaVA-NeXT's AnyRes merge
    IF_ANYRES_BACKWARD,
    IF_ANYRES_MAX,  // ... with anyres_max_N's resize
    IF_ANYRES_MAX_BACKWARD
};
// Whose backward a forward buffer also serves (its lifetime then runs on to the tower's backward).
enum { EXT_NONE = 0, EXT_VTRAIN, EXT_VTRAIN_EMBED };

typedef struct {
    const char *name;
    int kind;
    size_t field;  // offsetof in llava_acts (PER_PASS), lm_saved (PER_SAVED); unused for PER_LAYER_INPUT
    int rows, cols;
    int first, last;
    int per, when;
    int ext;  // EXT_*: lives to the tower's backward when the tower trains
} act_spec;

#define A(f) offsetof(llava_acts, f)
#define S(f) offsetof(lm_saved, f)
#define VS(f) offsetof(vis_saved, f)

enum {
    IN = ACT_PHASE_INPUT,
    VIS = ACT_PHASE_VISION,
    PROJ = ACT_PHASE_PROJECTOR,
    LM = ACT_PHASE_LM,
    LMB = ACT_PHASE_LM_BACKWARD,
    EMB = ACT_PHASE_EMBED_BACKWARD,
    PJB = ACT_PHASE_PROJECTOR_BACKWARD,
    VIB = ACT_PHASE_VISION_BACKWARD
};

static const act_spec ACTS[] = {
    // the batch: targets feed the loss only; positions and boundaries serve the layers' backward;
    // ids the embeddings' backward; image rows the splice and its backward
    {"ids", BUF_I32, A(ids), Z_T, Z_ONE, IN, EMB, PER_PASS, ALWAYS, EXT_NONE},
    {"targets", BUF_I32, A(targets), Z_T, Z_ONE, IN, LM, PER_PASS, ALWAYS, EXT_NONE},
    {"pos", BUF_I32, A(pos), Z_T, Z_ONE, IN, LMB, PER_PASS, ALWAYS, EXT_NONE},
    {"cu_seqlens", BUF_I32, A(cu), Z_NSEQ1, Z_ONE, IN, LMB, PER_PASS, ALWAYS, EXT_NONE},
    {"img_rows", BUF_I32, A(img_rows), Z_M, Z_ONE, IN, PJB, PER_PASS, ALWAYS, EXT_NONE},
    // the vision tower: with the tower frozen nothing of it outlives its phase but the features; these
    // serve every layer of a frozen tower and the frozen layers below a trained one
    {"vision.pixels", BUF_F32, A(pix), Z_PIX, Z_ONE, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.patches", BUF_ACT, A(patches), Z_NP, Z_K, VIS, VIS, PER_PASS, ALWAYS, EXT_VTRAIN_EMBED},
    {"vision.patch_embeds", BUF_ACT, A(pe), Z_NP, Z_DV, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.residual", BUF_ACT, A(vh), Z_R, Z_DV, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.x", BUF_ACT, A(vx), Z_R, Z_DV, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.q", BUF_ACT, A(vq), Z_R, Z_DV, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.k", BUF_ACT, A(vk), Z_R, Z_DV, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.v", BUF_ACT, A(vv), Z_R, Z_DV, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.attn", BUF_ACT, A(vatt), Z_R, Z_DV, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.mlp", BUF_ACT, A(vmid), Z_R, Z_IV, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.mlp_act", BUF_ACT, A(vact), Z_R, Z_IV, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.ln_mean", BUF_F32, A(vmean), Z_R, Z_ONE, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.ln_rstd", BUF_F32, A(vrstd), Z_R, Z_ONE, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.lse", BUF_F32, A(vlse), Z_HV, Z_R, VIS, VIS, PER_PASS, ALWAYS, EXT_NONE},
    {"vision.cu_seqlens", BUF_I32, A(vcu), Z_NIMG1, Z_ONE, VIS, VIS, PER_PASS, ALWAYS, EXT_VTRAIN},
    {"vision.feature_rows", BUF_I32, A(vrows), Z_NSEL, Z_ONE, VIS, VIS, PER_PASS, ALWAYS, EXT_VTRAIN},
    // pooling's input: every image's selected features (pruning gathers its kept rows directly)
    {"vision.selected", BUF_ACT, A(vsel), Z_NSEL, Z_DV, VIS, VIS, PER_PASS, IF_REDUCE, EXT_VTRAIN},
    // a trainable tower: each trained layer's input and saved activations, the embeddings before the
    // pre-layernorm; its backward's ids, gradients and scratch
    {"vision.layer_in", BUF_ACT, 0, Z_R, Z_DV, VIS, VIB, PER_VISION_INPUT, IF_VTRAIN, EXT_NONE},
    {"vision.saved.x1", BUF_ACT, VS(x1), Z_R, Z_DV, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.q", BUF_ACT, VS(q), Z_R, Z_DV, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.k", BUF_ACT, VS(k), Z_R, Z_DV, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.v", BUF_ACT, VS(v), Z_R, Z_DV, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.attn", BUF_ACT, VS(att), Z_R, Z_DV, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.h_mid", BUF_ACT, VS(h_mid), Z_R, Z_DV, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.x2", BUF_ACT, VS(x2), Z_R, Z_DV, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.mlp", BUF_ACT, VS(mid), Z_R, Z_IV, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.mlp_act", BUF_ACT, VS(act), Z_R, Z_IV, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.mean1", BUF_F32, VS(mean1), Z_R, Z_ONE, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.rstd1", BUF_F32, VS(rstd1), Z_R, Z_ONE, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.mean2", BUF_F32, VS(mean2), Z_R, Z_ONE, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.rstd2", BUF_F32, VS(rstd2), Z_R, Z_ONE, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.saved.lse", BUF_F32, VS(lse), Z_HV, Z_R, VIS, VIB, PER_VISION_SAVED, IF_VTRAIN, EXT_NONE},
    {"vision.embed", BUF_ACT, A(vemb), Z_R, Z_DV, VIS, VIB, PER_PASS, IF_VTRAIN_EMBED, EXT_NONE},
    {"vision.pre_mean", BUF_F32, A(vpre_mean), Z_R, Z_ONE, VIS, VIB, PER_PASS, IF_VTRAIN_EMBED, EXT_NONE},
    {"vision.pre_rstd", BUF_F32, A(vpre_rstd), Z_R, Z_ONE, VIS, VIB, PER_PASS, IF_VTRAIN_EMBED, EXT_NONE},
    {"vision.embed_ids", BUF_I32, A(vids), Z_R3, Z_ONE, VIB, VIB, PER_PASS, IF_VTRAIN_EMBED, EXT_NONE},
    {"vision.grad_features", BUF_ACT, A(dfeat), Z_M, Z_DV, PJB, VIB, PER_PASS, IF_VTRAIN, EXT_NONE},
    {"vision.grad_selected", BUF_ACT, A(dsel), Z_NSEL, Z_DV, VIB, VIB, PER_PASS, IF_VTRAIN_REDUCE, EXT_NONE},
    {"vision.grad", BUF_ACT, A(dvh), Z_R, Z_DV, VIB, VIB, PER_PASS, IF_VTRAIN, EXT_NONE},
    {"vision.grad_x", BUF_ACT, A(dvx), Z_R, Z_DV, VIB, VIB, PER_PASS, IF_VTRAIN, EXT_NONE},
    {"vision.grad_y", BUF_ACT, A(dvy), Z_R, Z_DV, VIB, VIB, PER_PASS, IF_VTRAIN, EXT_NONE},
    {"vision.grad_q", BUF_ACT, A(dvq), Z_R, Z_DV, VIB, VIB, PER_PASS, IF_VTRAIN, EXT_NONE},
    {"vision.grad_k", BUF_ACT, A(dvk), Z_R, Z_DV, VIB, VIB, PER_PASS, IF_VTRAIN, EXT_NONE},
    {"vision.grad_v", BUF_ACT, A(dvv), Z_R, Z_DV, VIB, VIB, PER_PASS, IF_VTRAIN, EXT_NONE},
    {"vision.grad_attn", BUF_ACT, A(dvatt), Z_R, Z_DV, VIB, VIB, PER_PASS, IF_VTRAIN, EXT_NONE},
    {"vision.grad_mlp", BUF_ACT, A(dvmid), Z_R, Z_IV, VIB, VIB, PER_PASS, IF_VTRAIN, EXT_NONE},
    // AnyRes: the merge's ids and the features laid out for the stream (image positions are at most T)
    {"anyres.img_rows", BUF_I32, A(any_rows), Z_T, Z_ONE, IN, PJB, PER_PASS, IF_ANYRES, EXT_NONE},
    {"anyres.source_rows", BUF_I32, A(any_src), Z_T, Z_ONE, PROJ, PROJ, PER_PASS, IF_ANYRES, EXT_NONE},
    {"anyres.newline_ids", BUF_I32, A(any_nl), Z_T, Z_ONE, PROJ, PJB, PER_PASS, IF_ANYRES, EXT_NONE},
    {"anyres.positions", BUF_I32, A(any_inv), Z_M, Z_ONE, PROJ, PJB, PER_PASS, IF_ANYRES, EXT_NONE},
    {"anyres.features", BUF_ACT, A(any_feat), Z_T, Z_D, PROJ, LM, PER_PASS, IF_ANYRES, EXT_NONE},
    {"anyres.newlines", BUF_ACT, A(any_tmp), Z_T, Z_D, PROJ, PROJ, PER_PASS, IF_ANYRES, EXT_NONE},
    {"anyres.grad", BUF_ACT, A(any_grad), Z_T, Z_D, PJB, PJB, PER_PASS, IF_ANYRES_BACKWARD, EXT_NONE},
    // anyres_max_N: the resized images' kept features are tile features (at most M), their resized ones image
    // positions (at most T); the resize writes into anyres.newlines once the newlines are added
    {"anyres.resize_rows", BUF_I32, A(rz_rows), Z_M, Z_ONE, PROJ, PJB, PER_PASS, IF_ANYRES_MAX, EXT_NONE},
    {"anyres.resize_positions", BUF_I32, A(rz_pos), Z_T, Z_ONE, PROJ, PJB, PER_PASS, IF_ANYRES_MAX, EXT_NONE},
    {"anyres.resize_in", BUF_ACT, A(rz_grid), Z_M, Z_D, PROJ, PROJ, PER_PASS, IF_ANYRES_MAX, EXT_NONE},
    {"anyres.resize_grad_out", BUF_ACT, A(rz_dout), Z_T, Z_D, PJB, PJB, PER_PASS, IF_ANYRES_MAX_BACKWARD, EXT_NONE},
    {"anyres.resize_grad_in", BUF_ACT, A(rz_dgrid), Z_M, Z_D, PJB, PJB, PER_PASS, IF_ANYRES_MAX_BACKWARD, EXT_NONE},
    // the projector (depth N): the features feed linear_1's weight gradient; a1 holds linear_1 ..
    // linear_{N-1}'s outputs (M rows each) for the GELUs' backward, g1 the GELUs for the next
    // weight gradients; f only the splice (a single Linear's f is a1 itself, the identity's the features)
    {"features", BUF_ACT, A(feat), Z_M, Z_DV, VIS, PJB, PER_PASS, ALWAYS, EXT_NONE},
    {"projector.a1", BUF_ACT, A(a1), Z_MA, Z_D, PROJ, PJB, PER_PASS, IF_PROJ, EXT_NONE},
    {"projector.g1", BUF_ACT, A(g1), Z_MG, Z_D, PROJ, PJB, PER_PASS, IF_MLP, EXT_NONE},
    {"projector.out", BUF_ACT, A(f), Z_M, Z_D, PROJ, LM, PER_PASS, IF_MLP, EXT_NONE},
    // the language model
    {"hs", BUF_ACT, 0, Z_T, Z_D, LM, LMB, PER_LAYER_INPUT, ALWAYS, EXT_NONE},
    {"saved.n1", BUF_ACT, S(n1), Z_T, Z_D, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"saved.q", BUF_ACT, S(q), Z_T, Z_QD, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"saved.k", BUF_ACT, S(k), Z_T, Z_KVD, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"saved.v", BUF_ACT, S(v), Z_T, Z_KVD, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"saved.attn", BUF_ACT, S(att), Z_T, Z_QD, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"saved.h_mid", BUF_ACT, S(h_mid), Z_T, Z_D, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"saved.n2", BUF_ACT, S(n2), Z_T, Z_D, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"saved.gate", BUF_ACT, S(gate), Z_T, Z_I, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"saved.up", BUF_ACT, S(up), Z_T, Z_I, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"saved.silu_up", BUF_ACT, S(s), Z_T, Z_I, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"saved.rstd1", BUF_F32, S(rstd1), Z_T, Z_ONE, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"saved.rstd2", BUF_F32, S(rstd2), Z_T, Z_ONE, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"saved.lse", BUF_F32, S(lse), Z_HQ, Z_T, LM, LMB, PER_SAVED, ALWAYS, EXT_NONE},
    {"lm.tmp", BUF_ACT, A(tmp), Z_T, Z_D, LM, LMB, PER_PASS, ALWAYS, EXT_NONE},
    {"lm.final_norm", BUF_ACT, A(hn), Z_T, Z_D, LM, LMB, PER_PASS, ALWAYS, EXT_NONE},
    {"lm.final_rstd", BUF_F32, A(rstd_f), Z_T, Z_ONE, LM, LMB, PER_PASS, ALWAYS, EXT_NONE},
    {"logits", BUF_ACT, A(logits), Z_T, Z_V, LM, LMB, PER_PASS, ALWAYS, EXT_NONE},
    // backward scratch: dh carries the gradient down the stack and on to the embeddings and the
    // splice; the rest serves the decoder layers only
    {"grad.hidden", BUF_ACT, A(dh), Z_T, Z_D, LMB, PJB, PER_PASS, IF_BACKWARD, EXT_NONE},
    {"grad.norm_in", BUF_ACT, A(dhn), Z_T, Z_D, LMB, LMB, PER_PASS, IF_BACKWARD, EXT_NONE},
    {"grad.x", BUF_ACT, A(dx), Z_T, Z_D, LMB, LMB, PER_PASS, IF_BACKWARD, EXT_NONE},
    {"grad.silu_up", BUF_ACT, A(ds), Z_T, Z_I, LMB, LMB, PER_PASS, IF_BACKWARD, EXT_NONE},
    {"grad.gate", BUF_ACT, A(dgate), Z_T, Z_I, LMB, LMB, PER_PASS, IF_BACKWARD, EXT_NONE},
    {"grad.up", BUF_ACT, A(dup), Z_T, Z_I, LMB, LMB, PER_PASS, IF_BACKWARD, EXT_NONE},
    {"grad.q", BUF_ACT, A(dq), Z_T, Z_QD, LMB, LMB, PER_PASS, IF_BACKWARD, EXT_NONE},
    {"grad.attn", BUF_ACT, A(datt), Z_T, Z_QD, LMB, LMB, PER_PASS, IF_BACKWARD, EXT_NONE},
    {"grad.k", BUF_ACT, A(dk), Z_T, Z_KVD, LMB, LMB, PER_PASS, IF_BACKWARD, EXT_NONE},
    {"grad.v", BUF_ACT, A(dv), Z_T, Z_KVD, LMB, LMB, PER_PASS, IF_BACKWARD, EXT_NONE},
    {"grad.features", BUF_ACT, A(df), Z_M, Z_D, PJB, PJB, PER_PASS, IF_BACKWARD, EXT_NONE},
    {"grad.projector_g1", BUF_ACT, A(dg1), Z_M, Z_D, PJB, PJB, PER_PASS, IF_BACKWARD_MLP, EXT_NONE},
    // LoRA: one adapted linear at a time uses them, in the forward and again in the backward (which
    // draws the dropout mask and A's output anew instead of keeping them per layer)
    {"lora.x", BUF_ACT, A(lx), Z_T, Z_LX, LM, LMB, PER_PASS, IF_LORA, EXT_NONE},
    {"lora.u", BUF_ACT, A(lu), Z_T, Z_RANK, LM, LMB, PER_PASS, IF_LORA, EXT_NONE},
    {"lora.grad_u", BUF_ACT, A(ldu), Z_T, Z_RANK, LMB, LMB, PER_PASS, IF_BACKWARD_LORA, EXT_NONE},
};
enum { N_ACTS = sizeof ACTS / sizeof ACTS[0] };

int act_kind_slot(int kind) { return kind == BUF_ACT ? 0 : kind == BUF_F32 ? 1 : 2; }

static void sizes_of(const model_config *mc, const act_shape *s, int64_t z[Z_COUNT]) {
    const llama_config *t = &mc->text;
    const clip_vision_config *v = &mc->vision;
    int grid = v->patch_size ? v->image_size / v->patch_size : 0, np = grid * grid;
    int tpi = llava_tokens_per_image(mc), depth = mc->glue.projector_depth;
    memset(z, 0, sizeof(int64_t) * Z_COUNT);
    z[Z_ONE] = 1;
    z[Z_T] = s->T;
    z[Z_NSEQ1] = (int64_t)s->n_seq + 1;
    z[Z_NSEQ] = s->n_seq;
    z[Z_M] = (int64_t)s->n_img * tpi;
    z[Z_MA] = z[Z_M] * (depth > 1 ? depth - 1 : 1);
    z[Z_MG] = z[Z_M] * (depth > 1 ? depth - 1 : 0);
    int per_img = np + vision_has_cls(v);  // each image's rows in the tower
    z[Z_NSEL] = (int64_t)s->n_img * (per_img - (mc->glue.drop_cls ? 1 : 0));
    z[Z_NIMG1] = (int64_t)s->n_img + 1;
    z[Z_R] = (int64_t)s->n_img * (np + vision_has_cls(v));
    z[Z_R3] = 3 * z[Z_R];
    z[Z_NP] = (int64_t)s->n_img * np;
    z[Z_PIX] = (int64_t)s->n_img * v->num_channels * v->image_size * v->image_size;
    z[Z_D] = t->hidden_size;
    z[Z_I] = t->intermediate_size;
    z[Z_QD] = (int64_t)t->num_attention_heads * t->head_dim;
    z[Z_KVD] = (int64_t)t->num_key_value_heads * t->head_dim;
    z[Z_V] = t->vocab_size;
    z[Z_HQ] = t->num_attention_heads;
    z[Z_DV] = v->hidden_size;
    z[Z_IV] = v->intermediate_size;
    z[Z_HV] = v->num_attention_heads;
    z[Z_K] = (int64_t)v->num_channels * v->patch_size * v->patch_size;
    int64_t lx = z[Z_D] > z[Z_I] ? z[Z_D] : z[Z_I];
    z[Z_LX] = lx > z[Z_QD] ? lx : z[Z_QD];
    z[Z_RANK] = mc->lora.r;
}

static int exists(const act_spec *a, const model_config *mc, const act_shape *s) {
    int mlp = mc->glue.projector_depth >= 2;
    switch (a->when) {
    case IF_PROJ: return mc->glue.projector_depth >= 1;
    case IF_MLP: return mlp;
    case IF_BACKWARD: return s->backward;
    case IF_BACKWARD_MLP: return s->backward && mlp;
    case IF_REDUCE: return mc->glue.pool_mode != POOL_NONE || mc->glue.video_pool_mode != POOL_NONE;
    case IF_VTRAIN: return s->vision_train > 0;
    case IF_VTRAIN_REDUCE:
        return s->vision_train > 0 && (mc->glue.pool_mode != POOL_NONE || mc->glue.video_pool_mode != POOL_NONE);
    case IF_VTRAIN_EMBED: return s->vision_train > 0 && s->vision_train >= llava_vision_layers_used(mc);
    case IF_ANYRES: return mc->glue.anyres;
    case IF_ANYRES_BACKWARD: return mc->glue.anyres && s->backward;
    case IF_ANYRES_MAX: return mc->glue.anyres && mc->glue.pinpoints.max_num_patches > 0;
    case IF_ANYRES_MAX_BACKWARD: return mc->glue.anyres && mc->glue.pinpoints.max_num_patches > 0 && s->backward;
    case IF_LORA: return mc->lora.r > 0;
    case IF_BACKWARD_LORA: return s->backward && mc->lora.r > 0;
    }
    return 1;
}

// Decoder layers whose activations a pass keeps at once: all of them when the backward reads them
// as the forward left them, one set (reused layer after layer) when they are recomputed or no
// backward runs.
static int saved_sets(const model_config *mc, const act_shape *s) {
    int L = mc->text.num_hidden_layers;
    if (L == 0) return 0;
    return s->backward && !s->checkpointing ? L : 1;
}

// Trained vision layers whose activations a pass keeps at once (the same rule for the tower).
static int vision_saved_sets(const act_shape *s) {
    if (s->vision_train <= 0) return 0;
    return s->vision_checkpointing ? 1 : s->vision_train;
}

// The last phase of a row: the tower's backward for a forward buffer it also reads.
static int last_phase(const act_spec *a, const model_config *mc, const act_shape *s) {
    int embed = s->vision_train > 0 && s->vision_train >= llava_vision_layers_used(mc);
    if ((a->ext == EXT_VTRAIN && s->vision_train > 0) || (a->ext == EXT_VTRAIN_EMBED && embed)) return VIB;
    return a->last;
}

static int cmp_size_desc(const void *x, const void *y) {
    const act_buf *a = *(const act_buf *const *)x, *b = *(const act_buf *const *)y;
    if (a->bytes != b->bytes) return a->bytes > b->bytes ? -1 : 1;
    return a < b ? -1 : a > b;  // the table's order among equals: a stable plan
}

static int lifetimes_meet(const act_buf *a, const act_buf *b) { return a->first <= b->last && b->first <= a->last; }

// First fit: the lowest aligned offset where `b` overlaps none of the placed buffers of its kind
// whose lifetime meets its own.
static size_t place(const act_buf *const *placed, int n_placed, const act_buf *b) {
    size_t off = 0;
    for (;;) {
        int moved = 0;
        for (int i = 0; i < n_placed; i++) {
            const act_buf *o = placed[i];
            if (o->kind != b->kind || !lifetimes_meet(o, b) || o->bytes == 0) continue;
            if (off < o->offset + o->bytes && o->offset < off + b->bytes) {
                off = (o->offset + o->bytes + ALIGN - 1) / ALIGN * ALIGN;
                moved = 1;
            }
        }
        if (!moved) return off;
    }
}

int act_plan_make(const model_config *mc, const act_shape *s, int act_bytes, act_plan *p) {
    memset(p, 0, sizeof *p);
    if (s->T < 0 || s->n_seq < 0 || s->n_img < 0) return llava_fail("activation plan: negative sizes");
    p->shape = *s;
    p->act_bytes = act_bytes;
    int64_t z[Z_COUNT];
    sizes_of(mc, s, z);
    int L = mc->text.num_hidden_layers, sets = saved_sets(mc, s);
    int cap = 0;
    for (int i = 0; i < N_ACTS; i++) {
        const act_spec *a = &ACTS[i];
        if (!exists(a, mc, s)) continue;
        int inputs = s->inference && L + 1 > 2 ? 2 : L + 1;  // generation: layer inputs used in turn
        int count = a->per == PER_LAYER_INPUT    ? inputs
                    : a->per == PER_SAVED        ? sets
                    : a->per == PER_VISION_INPUT ? s->vision_train
                    : a->per == PER_VISION_SAVED ? vision_saved_sets(s)
                                                 : 1;
        size_t elem = a->kind == BUF_ACT ? (size_t)act_bytes : 4;
        int rows = a->rows;
        if (s->inference && a->field == A(logits) && a->per == PER_PASS) rows = Z_NSEQ;  // last tokens only
        for (int k = 0; k < count; k++) {
            if (p->n_bufs == cap) {
                cap = cap ? 2 * cap : 128;
                p->bufs = xrealloc(p->bufs, sizeof(act_buf) * (size_t)cap);
            }
            act_buf *b = &p->bufs[p->n_bufs++];
            *b = (act_buf){
                a->name, i, k, a->kind, (size_t)(z[rows] * z[a->cols]) * elem, 0, a->first, last_phase(a, mc, s)};
        }
    }
    // Largest first, first fit.
    act_buf **order = xmalloc(sizeof(act_buf *) * (size_t)(p->n_bufs ? p->n_bufs : 1));
    for (int i = 0; i < p->n_bufs; i++) order[i] = &p->bufs[i];
    qsort(order, (size_t)p->n_bufs, sizeof *order, cmp_size_desc);
    for (int i = 0; i < p->n_bufs; i++) {
        act_buf *b = order[i];
        b->offset = place((const act_buf *const *)order, i, b);
        size_t *arena = &p->arena_bytes[act_kind_slot(b->kind)];
        size_t end = (b->offset + b->bytes + ALIGN - 1) / ALIGN * ALIGN;
        if (end > *arena) *arena = end;
    }
    free(order);
    p->total_bytes = (uint64_t)p->arena_bytes[0] + p->arena_bytes[1] + p->arena_bytes[2];
    for (int ph = 0; ph < ACT_N_PHASES; ph++) {
        uint64_t live = 0;
        for (int i = 0; i < p->n_bufs; i++)
            if (p->bufs[i].first <= ph && ph <= p->bufs[i].last) live += (p->bufs[i].bytes + ALIGN - 1) / ALIGN * ALIGN;
        if (live > p->peak_live) p->peak_live = live;
    }
    return 0;
}

void act_plan_free(act_plan *p) {
    free(p->bufs);
    memset(p, 0, sizeof *p);
}

int act_plan_holds(const act_plan *p, const act_shape *s) {
    const act_shape *h = &p->shape;
    if (!p->bufs) return 0;
    if (s->T > h->T || s->n_seq > h->n_seq || s->n_img > h->n_img) return 0;
    if (s->backward && !h->backward) return 0;
    if (!s->inference && h->inference) return 0;  // a generation plan keeps two layer inputs only
    // A plan that recomputes keeps one saved set: a backward that keeps every layer needs more.
    if (s->backward && !s->checkpointing && h->checkpointing) return 0;
    // The same for the tower: a plan for fewer trained layers (or recomputing them) is too small.
    if (s->vision_train > h->vision_train) return 0;
    if (s->vision_train && !s->vision_checkpointing && h->vision_checkpointing) return 0;
    return 1;
}

void act_bind(const act_plan *p, void *const base[3], const model_config *mc, llava_acts *a) {
    memset(a, 0, sizeof *a);
    int L = mc->text.num_hidden_layers;
    a->hs = xcalloc((size_t)L + 1, sizeof(void *));
    a->n_saved = saved_sets(mc, &p->shape);
    a->saved = xcalloc((size_t)(a->n_saved ? a->n_saved : 1), sizeof(lm_saved));
    a->n_vin = p->shape.vision_train;
    a->n_vsaved = vision_saved_sets(&p->shape);
    a->vin = xcalloc((size_t)(a->n_vin ? a->n_vin : 1), sizeof(void *));
    a->vsaved = xcalloc((size_t)(a->n_vsaved ? a->n_vsaved : 1), sizeof(vis_saved));
    for (int i = 0; i < p->n_bufs; i++) {
        const act_buf *b = &p->bufs[i];
        void *ptr = (char *)base[act_kind_slot(b->kind)] + b->offset;
        const act_spec *spec = &ACTS[b->row];
        if (spec->per == PER_LAYER_INPUT) a->hs[b->index] = ptr;
        else if (spec->per == PER_SAVED) *(void **)((char *)&a->saved[b->index] + spec->field) = ptr;
        else if (spec->per == PER_VISION_INPUT) a->vin[b->index] = ptr;
        else if (spec->per == PER_VISION_SAVED) *(void **)((char *)&a->vsaved[b->index] + spec->field) = ptr;
        else *(void **)((char *)a + spec->field) = ptr;
    }
    // A single Linear's output is linear_1's; the identity's the features.
    if (!a->f) a->f = mc->glue.projector_depth ? a->a1 : a->feat;
    // AnyRes: the stream's image positions outnumber the tiles' features (the newlines).
    if (a->any_rows) a->img_rows = a->any_rows;
}

void act_bind_free(llava_acts *a) {
    free(a->hs);
    free(a->saved);
    free(a->vin);
    free(a->vsaved);
    memset(a, 0, sizeof *a);
}

void act_plan_print(const act_plan *p, FILE *out) {
    static const char *const phase[ACT_N_PHASES] = {
        "input", "vision", "projector", "lm", "lm-backward", "embed-backward", "projector-backward", "vision-backward"};
    static const char *const kind[3] = {"act", "f32", "i32"};
    fprintf(out, "activations of a pass of %d tokens, %d sequences, %d images%s%s%s: %d buffers\n", p->shape.T,
            p->shape.n_seq, p->shape.n_img, p->shape.backward ? ", with backward" : "",
            p->shape.checkpointing ? ", checkpointing" : "", p->shape.inference ? ", generation" : "", p->n_bufs);
    if (p->shape.vision_train)
        fprintf(out, "  the tower trains %d layer%s%s\n", p->shape.vision_train, p->shape.vision_train == 1 ? "" : "s",
                p->shape.vision_checkpointing ? ", recomputed in backward" : "");
    for (int k = 0; k < 3; k++)
        fprintf(out, "  arena %-4s %14llu bytes\n", kind[k], (unsigned long long)p->arena_bytes[k]);
    fprintf(out, "  arenas     %14llu bytes; the most alive in one phase %llu\n", (unsigned long long)p->total_bytes,
            (unsigned long long)p->peak_live);
    for (int ph = 0; ph < ACT_N_PHASES; ph++) {
        uint64_t live = 0;
        for (int i = 0; i < p->n_bufs; i++)
            if (p->bufs[i].first <= ph && ph <= p->bufs[i].last) live += p->bufs[i].bytes;
        fprintf(out, "  alive in %-18s %14llu bytes\n", phase[ph], (unsigned long long)live);
    }
}
