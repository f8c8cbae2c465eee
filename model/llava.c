#include "llava.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/torch_rng.h"
#include "common/util.h"
#include "model/io/peft.h"
#include "model/io/safetensors.h"
#include "model/nf4.h"

// Device pointer of a parameter view, and of its gradient (NULL when its group is frozen). The NF4
// group has no parameter buffer: its weights are reached through W.
static void *P(const llava_model *m, const param_view *v) {
    if (v && m->param_sharded[v->group]) return m->param_at(m->param_ctx, (int)(v - m->pt.views));
    return v && m->params[v->group] ? (char *)m->params[v->group] + v->offset * m->ops->act_bytes : NULL;
}

// ZeRO-3: the segment holding view v is about to be computed with (llava_model.param_need); dir is
// the way the pass goes (+1 forward, -1 backward). Nothing for groups that are not sharded.
static void need(const llava_model *m, const param_view *v, int dir) {
    if (v && m->param_sharded[v->group]) m->param_need(m->param_ctx, (int)(v - m->pt.views), dir);
}

// The projector's segment: any of its views (the identity projector has at most AnyRes' newline).
static const param_view *proj_view(const llava_params *p) { return p->n_proj ? p->pw[0] : p->newline; }

// The backward half of a training pass's param_need calls (llava_model_param_walk).
static void need_backward(const llava_model *m) {
    const llava_params *p = &m->pt.w;
    need(m, p->head, -1);
    need(m, p->norm, -1);
    for (int l = m->cfg.text.num_hidden_layers - 1; l >= 0; l--) need(m, p->lm[l].in_norm, -1);
    need(m, proj_view(p), -1);
}

// The tower's segments in the order its forward computes them (train.shard_frozen): the embeddings,
// then each layer that runs. A pass without images still makes these calls.
static void need_vision(const llava_model *m) {
    const llava_params *p = &m->pt.w;
    need(m, p->patch_w, 1);
    for (int l = 0; l < m->vision_layers; l++) need(m, p->clip[l].ln1_w, 1);
}

static int any_sharded(const llava_model *m) {
    for (int g = 0; g < N_GROUPS; g++)
        if (m->param_sharded[g]) return 1;
    return 0;
}

void llava_model_param_walk(llava_model *m, int backward) {
    if (!any_sharded(m)) return;
    const llava_params *p = &m->pt.w;
    need(m, proj_view(p), 1);
    need_vision(m);
    need(m, p->embed, 1);
    for (int l = 0; l < m->cfg.text.num_hidden_layers; l++) need(m, p->lm[l].in_norm, 1);
    need(m, p->norm, 1);
    need(m, p->head, 1);
    if (backward) need_backward(m);
}

// A weight to compute with: its view, or for a QLoRA weight its NF4 codes dequantised into the
// scratch weight (valid until the next W of an NF4 weight).
static const void *W(const llava_model *m, const param_view *v) {
    if (!v || v->group != GROUP_LM_NF4) return P(m, v);
    const struct llava_nf4_weight *q = &m->nf4[v - m->pt.views];
    m->ops->nf4_dequantize(m->be, m->nf4_scratch, q->bytes, q->bytes + q->packed_bytes, q->absmax2, m->nf4_tables,
                           q->offset, v->numel, m->cfg.lora.quant_bf16);
    return m->nf4_scratch;
}

static float *G(const llava_model *m, const param_view *v) {
    if (!v || (m->frozen && m->frozen[v - m->pt.views])) return NULL;
    if (m->grad_slotted[v->group]) return m->grad_slot(m->grad_slot_ctx, (int)(v - m->pt.views));
    return m->grads[v->group] ? m->grads[v->group] + v->offset : NULL;
}

int llava_model_trains(const llava_model *m, int g) { return m->grads[g] != NULL || m->grad_slotted[g]; }

// ---------------------------------------------------------------------------------------------
// Loading

int llava_model_create(llava_model *m, const model_config *cfg, llava_backend *be) {
    memset(m, 0, sizeof *m);
    m->be = be;
    m->ops = be->ops;
    m->cfg = *cfg;
    const model_config *c = &m->cfg;
    if (!c->has_vision || !c->has_text || !c->has_projector)
        return llava_fail("model config: a LLaVA model needs a vision tower, a projector and a language model");
    if (strcmp(c->text.hidden_act, "silu") != 0)
        return llava_fail("model config: language model hidden_act \"%s\" is not supported (silu)", c->text.hidden_act);
    const char *want_act = c->vision.siglip ? "gelu_pytorch_tanh" : "quick_gelu";
    if (strcmp(c->vision.hidden_act, want_act) != 0)
        return llava_fail("model config: %s vision hidden_act \"%s\" is not supported (%s)",
                          c->vision.siglip ? "SigLIP" : "CLIP", c->vision.hidden_act, want_act);
    if (c->vision.siglip && !be->ops->gelu_tanh_forward)
        return llava_fail("model config: a SigLIP tower: the %s backend has no gelu_tanh_forward op", be->ops->name);
    if (c->text.has_rope_scaling && !c->text.rope_llama3)
        return llava_fail("model config: rope_scaling of a type other than llama3 is not supported");
    if (c->vision.num_channels != 3)
        return llava_fail("model config: vision num_channels %d (3 expected)", c->vision.num_channels);
    if (llava_glue_check(c) != 0) return llava_fail_ctx("model config");
    if (c->glue.anyres && c->glue.pinpoints.max_num_patches > 0 && !m->ops->resize_bilinear)
        return llava_fail("model config: anyres_max_%d: the %s backend has no resize_bilinear op",
                          c->glue.pinpoints.max_num_patches, m->ops->name);
    if (c->glue.pool_mode != POOL_NONE && !m->ops->grid_pool)
        return llava_fail("model config: mm_spatial_pool_mode %s: the %s backend has no grid_pool op",
                          llava_pool_name(c->glue.pool_mode), m->ops->name);
    if (c->glue.video_pool_mode != POOL_NONE && !m->ops->grid_pool)
        return llava_fail("model config: video_pool_mode %s: the %s backend has no grid_pool op",
                          llava_pool_name(c->glue.video_pool_mode), m->ops->name);
    if (param_table_build(c, &m->pt) != 0) return -1;
    m->tokens_per_image = llava_tokens_per_image(c);
    m->tokens_per_video_frame = llava_tokens_per_video_frame(c);
    m->vision_layers = llava_vision_layers_used(c);
    m->padding_idx =
        (c->text.pad_token_id >= 0 && c->text.pad_token_id < c->text.vocab_size) ? c->text.pad_token_id : -1;
    m->layout = LAYOUT_UNKNOWN;
    if (c->text.rope_llama3)
        m->rope =
            (llava_rope_scaling){LLAVA_ROPE_LLAMA3, (float)c->text.rope_factor, (float)c->text.rope_low_freq_factor,
                                 (float)c->text.rope_high_freq_factor, c->text.rope_original_max};
    param_alloc(&m->pt);
    m->filled = xcalloc((size_t)(m->pt.n_views ? m->pt.n_views : 1), 1);
    return 0;
}

// The error for tensors the config has no place for: their count and the first three, in the files'
// (sorted) order, which shows the part that is larger in the files than in the config.
static int unexpected_error(const char *path, const load_report *rep) {
    int n = rep->n_unexpected;
    char names[640];
    size_t k = 0;
    for (int i = 0; i < n && i < 3 && k < sizeof names; i++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "", rep->unexpected[i]);
    if (n > 3 && k < sizeof names) snprintf(names + k, sizeof names - k, " and %d more", n - 3);
    return llava_fail(
        "%s: %d tensor%s in the weights %s no place in this model's config (does config.json declare "
        "fewer layers than the weights hold?): %s. The loader's ignore_unexpected option skips them "
        "(--ignore-unexpected, model.ignore_unexpected_weights)",
        path, n, n == 1 ? "" : "s", n == 1 ? "has" : "have", names);
}

int llava_model_add_weights(llava_model *m, const char *path, int group_mask, int *n_loaded) {
    st_set s;
    if (st_set_open(&s, path) != 0) return -1;
    load_report rep;
    int rc = param_load_groups(&m->pt, &s, 1, group_mask, m->filled, &rep);
    if (rc == 0 && rep.n_mismatched)
        rc = llava_fail("%s: %d tensors have the wrong shape for this model (first: %s)", path, rep.n_mismatched,
                        rep.mismatched[0]);
    if (rc == 0 && rep.n_unexpected) {
        if (m->load_opts.ignore_unexpected) m->n_unexpected_ignored += rep.n_unexpected;
        else rc = unexpected_error(path, &rep);
    }
    if (rc == 0 && m->layout == LAYOUT_UNKNOWN) m->layout = rep.layout;
    // The file the tower's weights came from (an adapter file that brings none is not it).
    if (rc == 0 && (group_mask >> GROUP_VISION & 1) && rep.n_loaded_group[GROUP_VISION]) {
        free(m->vision_source);
        m->vision_source = xstrdup(path);
    }
    if (n_loaded) *n_loaded = rep.n_loaded;
    load_report_free(&rep);
    st_set_close(&s);
    return rc;
}

int llava_model_add_adapter(llava_model *m, const char *dir) {
    char **files = NULL;
    int n = 0, rc = peft_weight_files(dir, &files, &n), loaded = 0;
    for (int i = 0; i < n; i++) {
        int k = 0;
        if (rc == 0) rc = llava_model_add_weights(m, files[i], (1 << N_GROUPS) - 1, &k);
        loaded += k;
        free(files[i]);
    }
    free(files);
    if (rc == 0 && !loaded) rc = llava_fail("%s: the adapter's files hold no tensor of this model", dir);
    return rc;
}

void llava_model_init_projector(llava_model *m, uint64_t seed) {
    // nn.Linear's default: weight and bias uniform in +-1/sqrt(fan_in) (kaiming_uniform with a=sqrt(5)),
    // drawn in table order (weight, bias, next layer), as nn.Sequential initialises them.
    torch_rng r;
    torch_rng_seed(&r, seed);
    const llava_params *w = &m->pt.w;
    for (int i = 0; i < 2 * w->n_proj; i++) {
        const param_view *weight = w->pw[i / 2],
                         *v = i % 2 ? w->pb[i / 2] : weight;  // a bias takes its weight's fan_in
        if (!v) continue;
        float bound = 1.0f / sqrtf((float)weight->shape[1]);
        float *p = param_ptr(&m->pt, v);
        for (size_t k = 0; k < v->numel; k++)
            p[k] = bound * (2.0f * (float)((torch_rng_next(&r) >> 8) * (1.0 / 16777216.0)) - 1.0f);
        m->filled[v - m->pt.views] = 1;
    }
}

void llava_model_init_newline(llava_model *m, uint64_t seed) {
    const param_view *v = m->pt.w.newline;
    if (!v) return;
    torch_rng r;
    torch_rng_seed(&r, seed);
    float *p = param_ptr(&m->pt, v);
    double scale = 1.0 / sqrt((double)v->numel);
    for (size_t k = 0; k < v->numel; k++) {  // Box-Muller on two uniform draws
        double u1 = ((double)torch_rng_next(&r) + 1.0) / 4294967297.0, u2 = (double)torch_rng_next(&r) / 4294967296.0;
        p[k] = (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2) * scale);
    }
    m->filled[v - m->pt.views] = 1;
}

void llava_model_init_lora(llava_model *m, uint64_t seed) {
    torch_rng r;
    torch_rng_seed(&r, seed);
    for (int i = 0; i < m->pt.n_views; i++) {
        const param_view *v = &m->pt.views[i];
        float *p = v->group == GROUP_LORA ? param_ptr(&m->pt, v) : NULL;
        if (!p) continue;
        int is_a = strstr(v->name, ".lora_A.") != NULL;
        float bound = 1.0f / sqrtf((float)v->shape[1]);
        for (size_t k = 0; k < v->numel; k++)
            p[k] = is_a ? bound * (2.0f * (float)((torch_rng_next(&r) >> 8) * (1.0 / 16777216.0)) - 1.0f) : 0.0f;
        m->filled[i] = 1;
    }
}

static void mark_all_filled(llava_model *m) {
    for (int i = 0; i < m->pt.n_views; i++)
        if (param_ptr(&m->pt, &m->pt.views[i])) m->filled[i] = 1;
}

void llava_model_init_random(llava_model *m, float std, uint64_t seed) {
    param_init_random(&m->pt, std, seed);
    mark_all_filled(m);
}

void llava_model_init_random_fast(llava_model *m, float std, uint64_t seed) {
    param_init_random_fast(&m->pt, std, seed);
    mark_all_filled(m);
}

// QLoRA: every view of GROUP_LM_NF4 quantised from the host table (rounded to bf16 first with
// quant_bf16, as bitsandbytes gets a bf16 model's weights) and uploaded as NF4; the host copy goes.
static int nf4_upload(llava_model *m) {
    const llava_ops *ops = m->ops;
    size_t largest = 0;
    m->nf4 = xcalloc((size_t)m->pt.n_views, sizeof *m->nf4);
    for (int i = 0; i < m->pt.n_views; i++) {
        const param_view *v = &m->pt.views[i];
        float *w = v->group == GROUP_LM_NF4 ? param_ptr(&m->pt, v) : NULL;
        if (!w) continue;
        for (size_t k = 0; m->cfg.lora.quant_bf16 && k < v->numel; k++) w[k] = bf16_to_f32(f32_to_bf16(w[k]));
        nf4_tensor q;
        if (nf4_quantize(w, v->numel, &q) != 0) return llava_fail_ctx("QLoRA: %s", v->name);
        struct llava_nf4_weight *d = &m->nf4[i];
        d->packed_bytes = (q.n + 1) / 2;
        size_t bytes = d->packed_bytes + q.n_blocks;
        d->bytes = ops->alloc(m->be, BUF_I32, (bytes + 3) / 4);
        ops->stage(m->be, d->bytes, q.packed, d->packed_bytes);
        ops->stage(m->be, d->bytes + d->packed_bytes, q.absmax_q, q.n_blocks);
        d->absmax2 = ops->alloc(m->be, BUF_F32, q.n_stat_blocks);
        ops->upload(m->be, BUF_F32, d->absmax2, q.absmax2, q.n_stat_blocks);
        d->offset = q.offset;
        nf4_free(&q);
        if (v->numel > largest) largest = v->numel;
    }
    float tables[272];
    memcpy(tables, nf4_code, sizeof(float) * 16);
    memcpy(tables + 16, nf4_dynamic_code, sizeof(float) * 256);
    m->nf4_tables = ops->alloc(m->be, BUF_F32, 272);
    ops->upload(m->be, BUF_F32, m->nf4_tables, tables, 272);
    m->nf4_scratch = ops->alloc(m->be, BUF_ACT, largest);
    free(m->pt.data[GROUP_LM_NF4]);
    m->pt.data[GROUP_LM_NF4] = NULL;
    return 0;
}

int llava_model_finish(llava_model *m) {
    int n_missing = 0;
    const char *first = NULL;
    for (int i = 0; i < m->pt.n_views; i++)
        if (m->pt.views[i].used && !m->filled[i]) {
            if (!first) first = m->pt.views[i].name;
            n_missing++;
        }
    if (n_missing) return llava_fail("model: %d tensors were in no weight file (first: %s)", n_missing, first);
    if (m->pt.group_numel[GROUP_LM_NF4] && nf4_upload(m) != 0) return -1;
    for (int g = 0; g < N_GROUPS; g++) {
        if (!m->pt.group_numel[g] || g == GROUP_LM_NF4) continue;
        m->params[g] = m->ops->alloc(m->be, BUF_PARAM, m->pt.group_numel[g]);
        m->ops->upload(m->be, BUF_PARAM, m->params[g], m->pt.data[g], m->pt.group_numel[g]);
        free(m->pt.data[g]);
        m->pt.data[g] = NULL;
    }
    free(m->filled);
    m->filled = NULL;
    return 0;
}

int llava_model_load(llava_model *m, const char *dir, llava_backend *be) {
    return llava_model_load_opts(m, dir, be, NULL);
}

void llava_lora_merged_row(const float *w, const float *a, const float *b, int r, int64_t I, int64_t o, float s,
                           float *out) {
    for (int64_t i = 0; i < I; i++) {
        double acc = 0;
        for (int k = 0; k < r; k++) acc += (double)b[o * r + k] * a[(int64_t)k * I + i];
        out[i] = w[i] + (float)acc * s;
    }
}

// DoRA (PEFT's use_dora), to run an adapter: each adapted weight becomes what PEFT's merge makes
// of it, W' = m / ||W + s B A||_row * (W + s B A) (the norm of each output row, fp32 as PEFT, the
// product summed in fp64), on the host before the upload; B is then zero, so the adapter path adds
// nothing. A DoRA adapter thus runs (generate, serve, eval, merge) but does not train.
static int dora_fold(llava_model *m) {
    float s = lora_scaling(&m->cfg.lora);
    int r = m->cfg.lora.r;
    for (int l = 0; l < m->pt.w.n_lm; l++) {
        const lm_layer_params *c = &m->pt.w.lm[l];
        for (int t = 0; t < LORA_N_TARGETS; t++) {
            if (!c->lora_a[t]) continue;
            const param_view *base = lm_linear_weight(c, t);
            float *w = param_ptr(&m->pt, base), *a = param_ptr(&m->pt, c->lora_a[t]);
            float *b = param_ptr(&m->pt, c->lora_b[t]), *mag = param_ptr(&m->pt, c->lora_m[t]);
            if (!w || !a || !b || !mag)
                return llava_fail("DoRA: %s has no weight in host memory (a QLoRA base cannot take a DoRA adapter)",
                                  base->name);
            int64_t O = base->shape[0], I = base->shape[1];
            float *row = xmalloc(sizeof(float) * (size_t)I);
            for (int64_t o = 0; o < O; o++) {
                llava_lora_merged_row(w + o * I, a, b, r, I, o, s, row);
                double sq = 0;
                for (int64_t i = 0; i < I; i++) sq += (double)row[i] * row[i];
                float factor = mag[o] / (float)sqrt(sq);
                for (int64_t i = 0; i < I; i++) w[o * I + i] = factor * row[i];
                for (int k = 0; k < r; k++) b[o * r + k] = 0.0f;
            }
            free(row);
        }
    }
    return 0;
}

int llava_model_load_opts(llava_model *m, const char *dir, llava_backend *be, const llava_load_options *o) {
    model_config cfg;
    if (model_config_load(dir, &cfg) != 0) return -1;
    if (cfg.kind != HF_LLAVA_HF && cfg.kind != HF_LLAVA_ORIGINAL)
        return llava_fail("%s: a %s folder is not a whole LLaVA model", dir, hf_kind_name(cfg.kind));
    const char *adapter = o ? o->adapter : NULL;
    if (adapter && peft_read_config(adapter, &cfg.lora) != 0) return -1;
    int rc = llava_model_create(m, &cfg, be);
    if (rc == 0 && o) m->load_opts = *o;
    if (rc == 0) rc = llava_model_add_weights(m, dir, ((1 << N_GROUPS) - 1) & ~(1 << GROUP_LORA), NULL);
    // The adapter last: its tensors (the adapters, a projector it saved) replace the base's.
    if (rc == 0 && adapter) rc = llava_model_add_adapter(m, adapter);
    if (rc == 0 && m->cfg.lora.dora) rc = dora_fold(m);
    if (rc != 0 || llava_model_finish(m) != 0) {
        if (strncmp(llava_errmsg(), dir, strlen(dir)) != 0) llava_fail_ctx("%s", dir);  // not twice
        llava_model_free(m);
        return -1;
    }
    return 0;
}

void llava_model_set_trainable(llava_model *m, trainable_set t) {
    int want[N_GROUPS] = {t != TRAIN_NONE && m->vision_train > 0, t != TRAIN_NONE, t == TRAIN_PROJECTOR_LM,
                          t == TRAIN_PROJECTOR_LORA};
    for (int g = 0; g < N_GROUPS; g++) {
        if (want[g] && !m->grads[g] && m->pt.group_numel[g])
            m->grads[g] = m->ops->alloc(m->be, BUF_GRAD, m->pt.group_numel[g]);
        if (!want[g] && m->grads[g]) {
            m->ops->free(m->be, m->grads[g]);
            m->grads[g] = NULL;
        }
    }
    m->trainable = t;
}

int llava_model_set_vision_trainable(llava_model *m, int last_n) {
    int Lv = m->vision_layers, n = last_n < 0 || last_n > Lv ? Lv : last_n;
    if (n == Lv && n > 0 && m->pt.pos_from_grid)
        return llava_fail(
            "a trainable tower with its embeddings: the position embeddings were interpolated at load from a %dx%d "
            "grid to the run's, so the table trained would not be the checkpoint's; train its last layers "
            "(train.vision_unfreeze_last) instead",
            m->pt.pos_from_grid, m->pt.pos_from_grid);
    if (n > 0 && m->cfg.vision.siglip && !m->ops->gelu_tanh_backward)
        return llava_fail("a trainable SigLIP tower: the %s backend has no gelu_tanh_backward op", m->ops->name);
    if (n > 0 && m->cfg.glue.video_pool_mode != POOL_NONE && !m->ops->grid_pool_backward)
        return llava_fail("a trainable tower under video_pool_mode %s: the %s backend has no grid_pool_backward op",
                          llava_pool_name(m->cfg.glue.video_pool_mode), m->ops->name);
    if (n > 0 && m->cfg.glue.pool_mode != POOL_NONE && !m->ops->grid_pool_backward)
        return llava_fail(
            "a trainable tower under mm_spatial_pool_mode %s: the %s backend has no grid_pool_backward op",
            llava_pool_name(m->cfg.glue.pool_mode), m->ops->name);
    if (!m->frozen) m->frozen = xcalloc((size_t)(m->pt.n_views ? m->pt.n_views : 1), 1);
    // The layers below the trained ones, and the embeddings unless all train: frozen by name.
    for (int i = 0; i < m->pt.n_views; i++) {
        const param_view *v = &m->pt.views[i];
        if (v->group == GROUP_VISION && v->used) m->frozen[i] = n == 0 || (v->layer < 0 ? n < Lv : v->layer < Lv - n);
    }
    m->vision_train = n;
    if (m->trainable != TRAIN_NONE) llava_model_set_trainable(m, m->trainable);
    return n;
}

int llava_parse_grad_set(const char *s, trainable_set *t, int *vision_last) {
    int proj = 0, lm = 0, lora = 0, vis = 0;
    *t = TRAIN_NONE;
    *vision_last = 0;
    if (!s || !*s) return 0;
    char *copy = xstrdup(s), *save = NULL;
    int rc = 0;
    for (char *part = strtok_r(copy, "+", &save); part && rc == 0; part = strtok_r(NULL, "+", &save)) {
        char *end;
        if (strcmp(part, "projector") == 0) proj = 1;
        else if (strcmp(part, "lm") == 0) lm = 1;
        else if (strcmp(part, "lora") == 0) lora = 1;
        else if (strcmp(part, "vision") == 0) vis = -1;
        else if (strncmp(part, "vision", 6) == 0 && (vis = (int)strtol(part + 6, &end, 10)) > 0 && !*end) {
        } else rc = llava_fail("gradient set \"%s\": \"%s\" is none of projector, lm, lora, vision, visionN", s, part);
    }
    free(copy);
    if (rc != 0) return -1;
    if (lm && lora) return llava_fail("gradient set \"%s\": lm and lora are two ways to train the LM; pick one", s);
    if (!proj) return llava_fail("gradient set \"%s\": the projector trains in every set; add +projector", s);
    *t = lm ? TRAIN_PROJECTOR_LM : lora ? TRAIN_PROJECTOR_LORA : TRAIN_PROJECTOR;
    *vision_last = vis;
    return 0;
}

int llava_model_freeze(llava_model *m, const char *prefix) {
    if (!m->frozen) m->frozen = xcalloc((size_t)(m->pt.n_views ? m->pt.n_views : 1), 1);
    size_t n = strlen(prefix);
    int hits = 0;
    for (int i = 0; i < m->pt.n_views; i++)
        if (m->pt.views[i].used && strncmp(m->pt.views[i].name, prefix, n) == 0) {
            m->frozen[i] = 1;
            hits++;
        }
    if (!hits) return llava_fail("freeze \"%s\": no parameter name starts with it (names: `llava inspect`)", prefix);
    return hits;
}

int llava_model_is_frozen(const llava_model *m, const param_view *v) {
    return !llava_model_trains(m, v->group) || (m->frozen && m->frozen[v - m->pt.views]);
}

void llava_model_zero_grads(llava_model *m) {
    for (int g = 0; g < N_GROUPS; g++)
        if (m->grads[g]) m->ops->zero(m->be, BUF_GRAD, m->grads[g], m->pt.group_numel[g]);
}

void llava_model_free(llava_model *m) {
    free(m->vision_source);
    for (int k = 0; k < 3; k++)
        if (m->arena[k]) m->ops->free(m->be, m->arena[k]);
    if (m->ledger) m->ops->free(m->be, m->ledger);
    for (int i = 0; m->nf4 && i < m->pt.n_views; i++) {
        if (m->nf4[i].bytes) m->ops->free(m->be, m->nf4[i].bytes);
        if (m->nf4[i].absmax2) m->ops->free(m->be, m->nf4[i].absmax2);
    }
    free(m->nf4);
    if (m->nf4_tables) m->ops->free(m->be, m->nf4_tables);
    if (m->nf4_scratch) m->ops->free(m->be, m->nf4_scratch);
    act_bind_free(&m->acts);
    act_plan_free(&m->acts_plan);
    for (int g = 0; g < N_GROUPS; g++) {
        if (m->params[g]) m->ops->free(m->be, m->params[g]);
        if (m->grads[g]) m->ops->free(m->be, m->grads[g]);
    }
    free(m->filled);
    free(m->frozen);
    param_table_free(&m->pt);
    memset(m, 0, sizeof *m);
}

// ---------------------------------------------------------------------------------------------
// Forward and backward

// Linear backward with frozen-weight skipping: the weight GEMM runs only when the weight has a
// gradient buffer; the input gradient only when asked for.
static void linear_bwd(const llava_model *m, void *dx, const void *dout, const void *x, const param_view *w,
                       const param_view *bias, int N, int I, int O) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    if (dx) ops->linear_backward_input(be, dx, dout, W(m, w), N, I, O);
    float *gw = G(m, w);
    if (gw) ops->linear_backward_weight(be, gw, dout, x, N, I, O);
    float *gb = G(m, bias);
    if (gb) ops->linear_backward_bias(be, gb, dout, N, O);
}

// ---- LoRA. An adapted linear W (O, I) computes y = x W^T + s (drop(x) A^T) B^T with A (r, I), B (O, r)
// and s = lora_scaling: PEFT's lora.Linear. The base weight stays frozen (its GROUP_LM has no
// gradient: no weight GEMM for it). Scratch: m->acts.lx (T, widest), lu and ldu (T, r).

// The dropout seed of module `mod` of layer l in this pass: the pass's seed mixed with the module's
// place, so every adapted module draws its own mask (PEFT keeps one nn.Dropout per module).
static uint64_t lora_seed(const llava_model *m, int l, int mod) {
    return lora_mix64(m->lora_pass_seed ^ ((uint64_t)(l * LORA_N_TARGETS + mod + 1) << 32));
}

// The adapter's input: x itself, or x through dropout into lx (training passes with lora.dropout).
static const void *lora_input(const llava_model *m, int l, int mod, const void *x, int N, int I) {
    if (!m->lora_dropout_on) return x;
    float p = (float)m->cfg.lora.dropout;
    m->ops->dropout_scale(m->be, m->acts.lx, x, (size_t)N * I, 1.0f, p, lora_seed(m, l, mod));
    return m->acts.lx;
}

// out (N, O) already holds x W^T (+ bias): adds the adapter's s (drop(x) A^T) B^T.
static void lora_forward(const llava_model *m, int l, int mod, void *out, const void *x, int N, int I, int O) {
    const lm_layer_params *c = &m->pt.w.lm[l];
    const param_view *A = c->lora_a[mod], *B = c->lora_b[mod];
    if (!A) return;
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    int r = m->cfg.lora.r;
    const void *xin = lora_input(m, l, mod, x, N, I);
    ops->linear_forward(be, m->acts.lu, xin, P(m, A), NULL, N, I, r);                                    // u (N, r)
    ops->dropout_scale(be, m->acts.lu, m->acts.lu, (size_t)N * r, lora_scaling(&m->cfg.lora), 0.0f, 0);  // s u
    ops->linear_forward(be, m->acts.lx, m->acts.lu, P(m, B), NULL, N, r, O);                             // (N, O)
    ops->add_inplace(be, out, m->acts.lx, (size_t)N * O);
}

// The adapter's backward, after the base linear's (dx, when asked for, holds dout W): the gradients
// of A and B, and the adapter's part of dx. u and the dropout mask are drawn again from x.
static void lora_backward(const llava_model *m, int l, int mod, void *dx, const void *dout, const void *x, int N, int I,
                          int O) {
    const lm_layer_params *c = &m->pt.w.lm[l];
    const param_view *A = c->lora_a[mod], *B = c->lora_b[mod];
    if (!A) return;
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    int r = m->cfg.lora.r;
    float s = lora_scaling(&m->cfg.lora);
    float *gA = G(m, A), *gB = G(m, B);
    const void *xin = lora_input(m, l, mod, x, N, I);
    if (gB) {
        ops->linear_forward(be, m->acts.lu, xin, P(m, A), NULL, N, I, r);
        ops->dropout_scale(be, m->acts.lu, m->acts.lu, (size_t)N * r, s, 0.0f, 0);
        ops->linear_backward_weight(be, gB, dout, m->acts.lu, N, r, O);  // dB += dout^T (s u)
    }
    if (!gA && !dx) return;
    ops->linear_backward_input(be, m->acts.ldu, dout, P(m, B), N, r, O);          // dout B (N, r)
    ops->dropout_scale(be, m->acts.ldu, m->acts.ldu, (size_t)N * r, s, 0.0f, 0);  // du = s dout B
    if (gA) ops->linear_backward_weight(be, gA, m->acts.ldu, xin, N, I, r);       // dA += du^T drop(x)
    if (!dx) return;
    ops->linear_backward_input(be, m->acts.lx, m->acts.ldu, P(m, A), N, I, r);  // du A (N, I)
    if (m->lora_dropout_on)
        ops->dropout_scale(be, m->acts.lx, m->acts.lx, (size_t)N * I, 1.0f, (float)m->cfg.lora.dropout,
                           lora_seed(m, l, mod));
    ops->add_inplace(be, dx, m->acts.lx, (size_t)N * I);
}

// A decoder layer's linear: the base weight and, where the model has one, its adapter.
static void lm_linear(const llava_model *m, int l, int mod, void *out, const void *x, const param_view *w,
                      const param_view *bias, int N, int I, int O) {
    m->ops->linear_forward(m->be, out, x, W(m, w), P(m, bias), N, I, O);
    lora_forward(m, l, mod, out, x, N, I, O);
}

static void lm_linear_bwd(const llava_model *m, int l, int mod, void *dx, const void *dout, const void *x,
                          const param_view *w, const param_view *bias, int N, int I, int O) {
    linear_bwd(m, dx, dout, x, w, bias, N, I, O);
    lora_backward(m, l, mod, dx, dout, x, N, I, O);
}

// Tells m->grad_final that these views' gradients are final for this pass (views without a
// gradient, frozen or absent, are left out).
static void grads_final(const llava_model *m, const param_view *const *v, size_t n) {
    if (!m->grad_final) return;
    for (size_t i = 0; i < n; i++)
        if (G(m, v[i])) m->grad_final(m->grad_final_ctx, (int)(v[i] - m->pt.views));
}

// mm_vision_keep_tokens: each image's K patches the CLS query attends to most in the feature layer (the last
// layer run, whose q and k are still in vq and vk), the probabilities averaged over heads, ties to the lower
// index, kept in their order: their rows of the residual stream in rows (n_img * K). The scores are computed on the
// host in fp64 from the layer's q and k (one row of q and N + 1 of k per image): a pruning knob for ablations,
// not a kernel.
static void keep_rows(const llava_model *m, const void *vq, const void *vk, int n_img, int N, int Hv, int Dh,
                      float scale, int32_t *rows) {
    int K = m->cfg.glue.keep_tokens, Dv = Hv * Dh, R = n_img * (N + 1);
    float *q = xmalloc(sizeof(float) * (size_t)R * Dv), *k = xmalloc(sizeof(float) * (size_t)R * Dv);
    m->ops->download(m->be, BUF_ACT, q, vq, (size_t)R * Dv);
    m->ops->download(m->be, BUF_ACT, k, vk, (size_t)R * Dv);
    double *score = xmalloc(sizeof(double) * (size_t)(N + 1)), *logit = xmalloc(sizeof(double) * (size_t)(N + 1));
    int *order = xmalloc(sizeof(int) * (size_t)N);
    for (int i = 0; i < n_img; i++) {
        const float *qc = q + (size_t)i * (N + 1) * Dv;  // the CLS row
        for (int j = 0; j <= N; j++) score[j] = 0;
        for (int hd = 0; hd < Hv; hd++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= N; j++) {
                const float *kr = k + ((size_t)i * (N + 1) + j) * Dv + (size_t)hd * Dh;
                double dot = 0;
                for (int c = 0; c < Dh; c++) dot += (double)qc[hd * Dh + c] * kr[c];
                logit[j] = dot * scale;
                if (logit[j] > mx) mx = logit[j];
            }
            for (int j = 0; j <= N; j++) sum += exp(logit[j] - mx);
            for (int j = 0; j <= N; j++) score[j] += exp(logit[j] - mx) / sum / Hv;
        }
        // Insertion order by descending score, the lower index first on a tie; the first K, then ascending.
        for (int j = 0; j < N; j++) {
            int at = j;
            while (at > 0 && score[1 + order[at - 1]] < score[1 + j]) {
                order[at] = order[at - 1];
                at--;
            }
            order[at] = j;
        }
        for (int x = 1; x < K; x++)
            for (int y = x; y > 0 && order[y - 1] > order[y]; y--) {
                int t = order[y];
                order[y] = order[y - 1];
                order[y - 1] = t;
            }
        for (int x = 0; x < K; x++) rows[i * K + x] = i * (N + 1) + 1 + order[x];
    }
    free(q), free(k), free(score), free(logit), free(order);
}

// The shapes the tower works with in a pass.
typedef struct {
    int n_img, G, N, cls, NR, R, Dv, Iv, Hv, Dh, Pz, K;
    float eps, scale;
} vis_dims;

static vis_dims vision_dims(const llava_model *m, const llava_batch *b) {
    const clip_vision_config *vc = &m->cfg.vision;
    vis_dims z;
    z.n_img = b->n_img;
    z.Pz = vc->patch_size;
    z.G = b->img_h / z.Pz;
    z.N = z.G * z.G;
    z.cls = vision_has_cls(vc);  // an image's rows: CLIP's class token, then its N patches; SigLIP the patches only
    z.NR = z.N + z.cls;
    z.R = z.n_img * z.NR;
    z.Dv = vc->hidden_size;
    z.Iv = vc->intermediate_size;
    z.Hv = vc->num_attention_heads;
    z.Dh = z.Dv / z.Hv;
    z.K = 3 * z.Pz * z.Pz;
    z.eps = vc->layer_norm_eps;
    z.scale = 1.0f / sqrtf((float)z.Dh);
    return z;
}

// The set a frozen layer computes with: the one-layer scratch, the norms' outputs and the MLP's output sharing
// vx, the residual stream updated in place (h_mid NULL).
static vis_saved vision_scratch(const llava_acts *a) {
    return (vis_saved){a->vx,   a->vq,   a->vk,    a->vv,    a->vatt,  NULL,     a->vx,
                       a->vmid, a->vact, a->vmean, a->vrstd, a->vmean, a->vrstd, a->vlse};
}

// Tower layer l: h_out = h_mid + fc2(act(fc1(ln2(h_mid)))), h_mid = h_in + o(attn(ln1(h_in))), keeping in *s what its
// backward reads. A frozen layer (s->h_mid NULL) runs in place (h_out == h_in); h_out NULL stops after the MLP's
// activation (the backward's recomputation, which needs no output).
static void vision_layer_forward(const llava_model *m, int l, const void *h_in, void *h_out, const vis_saved *s,
                                 const vis_dims *z, const int32_t *vcu) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    const clip_layer_params *c = &m->pt.w.clip[l];
    int R = z->R, Dv = z->Dv, Iv = z->Iv;
    need(m, c->ln1_w, 1);  // train.shard_frozen: the layer's parameters
    ops->layernorm_forward(be, s->x1, s->mean1, s->rstd1, h_in, P(m, c->ln1_w), P(m, c->ln1_b), R, Dv, z->eps);
    ops->linear_forward(be, s->q, s->x1, P(m, c->q_w), P(m, c->q_b), R, Dv, Dv);
    ops->linear_forward(be, s->k, s->x1, P(m, c->k_w), P(m, c->k_b), R, Dv, Dv);
    ops->linear_forward(be, s->v, s->x1, P(m, c->v_w), P(m, c->v_b), R, Dv, Dv);
    ops->attention_forward(be, s->att, s->lse, s->q, s->k, s->v, vcu, z->n_img, R, z->Hv, z->Hv, z->Dh, z->scale, 0, 0);
    // x2 is free until the second norm (in a frozen layer x1 is, and q, k, v are computed)
    ops->linear_forward(be, s->x2, s->att, P(m, c->o_w), P(m, c->o_b), R, Dv, Dv);
    void *h_mid = s->h_mid ? s->h_mid : h_out;
    if (s->h_mid) ops->add(be, s->h_mid, h_in, s->x2, (size_t)R * Dv);
    else ops->add_inplace(be, h_out, s->x2, (size_t)R * Dv);
    ops->layernorm_forward(be, s->x2, s->mean2, s->rstd2, h_mid, P(m, c->ln2_w), P(m, c->ln2_b), R, Dv, z->eps);
    ops->linear_forward(be, s->mid, s->x2, P(m, c->fc1_w), P(m, c->fc1_b), R, Dv, Iv);
    if (z->cls) ops->quick_gelu_forward(be, s->act, s->mid, (size_t)R * Iv);
    else ops->gelu_tanh_forward(be, s->act, s->mid, (size_t)R * Iv);
    if (!h_out) return;
    if (s->h_mid) {
        ops->linear_forward(be, h_out, s->act, P(m, c->fc2_w), P(m, c->fc2_b), R, Iv, Dv);
        ops->add_inplace(be, h_out, s->h_mid, (size_t)R * Dv);
    } else {
        ops->linear_forward(be, s->x2, s->act, P(m, c->fc2_w), P(m, c->fc2_b), R, Iv, Dv);
        ops->add_inplace(be, h_out, s->x2, (size_t)R * Dv);
    }
}

// The saved set of trained layer j (of vt) in this pass.
static const vis_saved *vision_set(const llava_model *m, const llava_acts *a, int j) {
    return &a->vsaved[m->checkpoint_vision ? 0 : j];
}

// Whether the batch has video frames the model pools (video_pool_mode, transformers' LlavaNextVideo).
static int video_pooled(const llava_model *m, const llava_batch *b) {
    if (m->cfg.glue.video_pool_mode == POOL_NONE || !b->video_frame) return 0;
    for (int i = 0; i < b->n_img; i++)
        if (b->video_frame[i]) return 1;
    return 0;
}

int llava_batch_features(const llava_model *m, const llava_batch *b) {
    if (!video_pooled(m, b)) return b->n_img * m->tokens_per_image;
    int n = 0;
    for (int i = 0; i < b->n_img; i++) n += b->video_frame[i] ? m->tokens_per_video_frame : m->tokens_per_image;
    return n;
}

// video_pool_mode over the selected features vsel (n_img * nsel rows, each image's G x G grid): each run of
// consecutive video frames pooled into its rows of feat, each run of images copied. LlavaNextVideoPooler (transformers
// 4.46) pools the frames' selected features before the projector, as AvgPool2d / MaxPool2d(s, s) without padding;
// LLaVA-NeXT's own code pools after the projector (get_2dPool): we follow transformers. Backward (dfeat -> dsel):
// grid_pool_backward over the frames (max routes through vsel), a copy for the images.
static void video_pool_runs(const llava_model *m, const llava_batch *b, const llava_acts *a, int G, int nsel, int Dv,
                            int backward) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    const llava_glue_config *g = &m->cfg.glue;
    size_t row = (size_t)Dv * ops->act_bytes;
    int out = 0;
    for (int i = 0; i < b->n_img;) {
        int j = i, video = b->video_frame[i] != 0;
        while (j < b->n_img && (b->video_frame[j] != 0) == video) j++;
        int n = j - i, per = video ? m->tokens_per_video_frame : nsel;
        char *sel = (char *)(backward ? a->dsel : a->vsel) + (size_t)i * nsel * row;
        char *ft = (char *)(backward ? a->dfeat : a->feat) + (size_t)out * row;
        if (!video && backward) ops->copy(be, BUF_ACT, sel, ft, (size_t)n * nsel * Dv);
        else if (!video) ops->copy(be, BUF_ACT, ft, sel, (size_t)n * nsel * Dv);
        else if (backward)
            ops->grid_pool_backward(be, sel, ft, (char *)a->vsel + (size_t)i * nsel * row, n, G, Dv,
                                    (int)g->video_pool_mode, g->video_pool_stride);
        else ops->grid_pool(be, ft, sel, n, G, Dv, (int)g->video_pool_mode, g->video_pool_stride);
        out += n * per;
        i = j;
    }
}

// The tower up to the feature layer. With vt > 0 its last vt layers train: each keeps its input (a->vin) and
// activations (a->vsaved), and with all of them the embeddings keep theirs. Writes the features a->feat
// (n_img * tokens_per_image, Dv).
static void vision_forward(const llava_model *m, const llava_batch *b, const llava_acts *a, int vt) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    const llava_params *p = &m->pt.w;
    vis_dims z = vision_dims(m, b);
    int Dv = z.Dv, R = z.R, Lv = m->vision_layers, first = Lv - vt;
    ops->stage(be, a->pix, b->pixels, sizeof(float) * (size_t)b->n_img * 3 * b->img_h * b->img_w);
    ops->patch_unfold(be, a->patches, a->pix, b->n_img, 3, b->img_h, b->img_w, z.Pz);  // (n_img*N, 3*P*P)
    need(m, p->patch_w, 1);  // train.shard_frozen: the embeddings' segment
    ops->linear_forward(be, a->pe, a->patches, P(m, p->patch_w), P(m, p->patch_b), b->n_img * z.N, z.K, Dv);
    void *h = a->vh;  // (R, Dv) the residual stream
    if (z.cls) {      // hidden_states[0] is the pre-layernorm's output
        if (first == 0) {
            ops->clip_embed(be, a->vemb, a->pe, P(m, p->cls), P(m, p->pos_emb), b->n_img, z.N, Dv);
            ops->layernorm_forward(be, h, a->vpre_mean, a->vpre_rstd, a->vemb, P(m, p->pre_w), P(m, p->pre_b), R, Dv,
                                   z.eps);
        } else {
            ops->clip_embed(be, h, a->pe, P(m, p->cls), P(m, p->pos_emb), b->n_img, z.N, Dv);
            ops->layernorm_forward(be, a->vx, a->vmean, a->vrstd, h, P(m, p->pre_w), P(m, p->pre_b), R, Dv, z.eps);
            ops->copy(be, BUF_ACT, h, a->vx, (size_t)R * Dv);
        }
    } else {  // SigLIP: hidden_states[0] is the patch embeddings plus the position embeddings
        size_t img = (size_t)z.N * Dv * ops->act_bytes;
        for (int i = 0; i < b->n_img; i++)
            ops->add(be, (char *)h + i * img, (const char *)a->pe + i * img, P(m, p->pos_emb), (size_t)z.N * Dv);
    }
    int32_t *cu_host = xmalloc(sizeof(int32_t) * (size_t)(b->n_img + 1));
    for (int i = 0; i <= b->n_img; i++) cu_host[i] = i * z.NR;  // each image attends within itself
    ops->stage(be, a->vcu, cu_host, sizeof(int32_t) * (size_t)(b->n_img + 1));
    free(cu_host);
    vis_saved scratch = vision_scratch(a);
    for (int l = 0; l < first; l++) vision_layer_forward(m, l, h, h, &scratch, &z, a->vcu);
    if (vt) ops->copy(be, BUF_ACT, a->vin[0], h, (size_t)R * Dv);
    for (int j = 0; j < vt; j++)
        vision_layer_forward(m, first + j, a->vin[j], j + 1 < vt ? a->vin[j + 1] : h, vision_set(m, a, j), &z, a->vcu);
    // Select the features: drop each image's CLS row unless the config keeps it; then reduce them.
    const llava_glue_config *g = &m->cfg.glue;
    int tpi = m->tokens_per_image, nsel = z.NR - (g->drop_cls ? 1 : 0), nrows = g->keep_tokens ? tpi : nsel;
    int32_t *rows_host = xmalloc(sizeof(int32_t) * (size_t)b->n_img * nrows);
    if (g->keep_tokens) {  // the feature layer's q and k: the last layer run
        const vis_saved *last = vt ? vision_set(m, a, vt - 1) : &scratch;
        keep_rows(m, last->q, last->k, b->n_img, z.N, z.Hv, z.Dh, z.scale, rows_host);
    } else {
        for (int i = 0; i < b->n_img; i++)
            for (int n = 0; n < nsel; n++) rows_host[i * nsel + n] = i * z.NR + n + (g->drop_cls ? 1 : 0);
    }
    ops->stage(be, a->vrows, rows_host, sizeof(int32_t) * (size_t)b->n_img * nrows);
    free(rows_host);
    if (video_pooled(m, b)) {  // video frames pooled, images as they are (llava_batch_features rows)
        ops->gather_rows(be, a->vsel, h, a->vrows, b->n_img * nsel, Dv);
        video_pool_runs(m, b, a, z.G, nsel, Dv, 0);
        return;
    }
    if (g->pool_mode == POOL_NONE) {
        ops->gather_rows(be, a->feat, h, a->vrows, b->n_img * nrows, Dv);
        return;
    }
    ops->gather_rows(be, a->vsel, h, a->vrows, b->n_img * nsel, Dv);
    ops->grid_pool(be, a->feat, a->vsel, b->n_img, z.G, Dv, (int)g->pool_mode, g->pool_stride);
}

// The tower's backward from the features' gradient a->dfeat: back through the reduction and the selection to
// the residual stream, down the trained layers (recomputing each from its input under checkpoint_vision), and
// with the whole tower trained through the pre-layernorm into the class and position embeddings and the patch
// embedding's weight.
static void vision_backward(const llava_model *m, const llava_batch *b, const llava_acts *a, int vt) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    const llava_params *p = &m->pt.w;
    const llava_glue_config *g = &m->cfg.glue;
    vis_dims z = vision_dims(m, b);
    int R = z.R, Dv = z.Dv, Iv = z.Iv, Lv = m->vision_layers, first = Lv - vt;
    int nsel = z.NR - (g->drop_cls ? 1 : 0), nrows = g->keep_tokens ? m->tokens_per_image : nsel;
    size_t RD = (size_t)R * Dv;
    void *dh = a->dvh, *dx = a->dvx, *dy = a->dvy;
    // Rows the features did not come from (CLS, pruned patches) get no gradient.
    ops->zero(be, BUF_ACT, dh, RD);
    if (video_pooled(m, b)) {
        video_pool_runs(m, b, a, z.G, nsel, Dv, 1);
        ops->scatter_rows(be, dh, a->dsel, a->vrows, b->n_img * nsel, Dv);
    } else if (g->pool_mode == POOL_NONE) {
        ops->scatter_rows(be, dh, a->dfeat, a->vrows, b->n_img * nrows, Dv);
    } else {
        ops->grid_pool_backward(be, a->dsel, a->dfeat, a->vsel, b->n_img, z.G, Dv, (int)g->pool_mode, g->pool_stride);
        ops->scatter_rows(be, dh, a->dsel, a->vrows, b->n_img * nsel, Dv);
    }
    for (int l = Lv - 1; l >= first; l--) {
        int j = l - first;
        const clip_layer_params *c = &p->clip[l];
        const vis_saved *s = vision_set(m, a, j);
        if (m->checkpoint_vision) vision_layer_forward(m, l, a->vin[j], NULL, s, &z, a->vcu);
        // MLP: h_out = h_mid + fc2(act(fc1(x2)))
        linear_bwd(m, a->dvmid, dh, s->act, c->fc2_w, c->fc2_b, R, Iv, Dv);
        if (z.cls) ops->quick_gelu_backward(be, a->dvmid, a->dvmid, s->mid, (size_t)R * Iv);
        else ops->gelu_tanh_backward(be, a->dvmid, a->dvmid, s->mid, (size_t)R * Iv);
        linear_bwd(m, dx, a->dvmid, s->x2, c->fc1_w, c->fc1_b, R, Dv, Iv);
        ops->layernorm_backward(be, dy, G(m, c->ln2_w), G(m, c->ln2_b), dx, s->h_mid, P(m, c->ln2_w), s->mean2,
                                s->rstd2, R, Dv);
        ops->add_inplace(be, dh, dy, RD);  // d h_mid
        // Attention: h_mid = h_in + o(attn(q(x1), k(x1), v(x1)))
        linear_bwd(m, a->dvatt, dh, s->att, c->o_w, c->o_b, R, Dv, Dv);
        ops->attention_backward(be, a->dvq, a->dvk, a->dvv, a->dvatt, s->q, s->k, s->v, s->att, s->lse, a->vcu, z.n_img,
                                R, z.Hv, z.Hv, z.Dh, z.scale, 0, 0);
        // x1's gradient: the first norm's weights want it even where nothing below trains
        linear_bwd(m, dx, a->dvq, s->x1, c->q_w, c->q_b, R, Dv, Dv);
        linear_bwd(m, dy, a->dvk, s->x1, c->k_w, c->k_b, R, Dv, Dv);
        ops->add_inplace(be, dx, dy, RD);
        linear_bwd(m, dy, a->dvv, s->x1, c->v_w, c->v_b, R, Dv, Dv);
        ops->add_inplace(be, dx, dy, RD);
        ops->layernorm_backward(be, dy, G(m, c->ln1_w), G(m, c->ln1_b), dx, a->vin[j], P(m, c->ln1_w), s->mean1,
                                s->rstd1, R, Dv);
        ops->add_inplace(be, dh, dy, RD);  // d h_in
        grads_final(m, (const param_view *const *)c, sizeof *c / sizeof(const param_view *));
    }
    if (first > 0) return;
    // The embeddings: each row's position id, then (CLIP) 0 at the class-token rows, -1 elsewhere, then the
    // patch rows.
    int np = b->n_img * z.N;
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)(2 * R + np));
    for (int r = 0; r < R; r++) {
        ids[r] = r % z.NR;
        ids[R + r] = z.cls && r % z.NR == 0 ? 0 : -1;
    }
    for (int i = 0; i < b->n_img; i++)
        for (int n = 0; n < z.N; n++) ids[2 * R + i * z.N + n] = i * z.NR + z.cls + n;
    ops->stage(be, a->vids, ids, sizeof(int32_t) * (size_t)(2 * R + np));
    free(ids);
    const void *demb = dh;
    if (z.cls) {
        ops->layernorm_backward(be, dy, G(m, p->pre_w), G(m, p->pre_b), dh, a->vemb, P(m, p->pre_w), a->vpre_mean,
                                a->vpre_rstd, R, Dv);
        demb = dy;
        float *gcls = G(m, p->cls);
        if (gcls) ops->embedding_backward(be, gcls, demb, a->vids + R, R, Dv, 1, -1);
        ops->gather_rows(be, dx, demb, a->vids + 2 * R, np, Dv);  // the patch rows
    }
    float *gpos = G(m, p->pos_emb);
    if (gpos) ops->embedding_backward(be, gpos, demb, a->vids, R, Dv, z.NR, -1);
    linear_bwd(m, NULL, z.cls ? dx : demb, a->patches, p->patch_w, p->patch_b, np, z.K, Dv);
    const param_view *emb[] = {p->patch_w, p->patch_b, p->cls, p->pos_emb, p->pre_w, p->pre_b};
    grads_final(m, emb, sizeof emb / sizeof emb[0]);
}

// One M-row slot of a projector buffer (a1, g1 hold linear_1 .. linear_{N-1}'s outputs and GELUs).
static void *proj_slot(const llava_model *m, void *buf, int k, int M) {
    return (char *)buf + (size_t)k * M * m->cfg.text.hidden_size * m->ops->act_bytes;
}

// The projector, LLaVA's build_vision_projector: mlp{N}x_gelu is Linear(Dv, d) then N - 1 times GELU and
// Linear(d, d); a1 keeps each Linear's output but the last (a single Linear writes f, which is a1), g1 their GELUs,
// f the last output; the identity (N = 0) leaves f as the features.
static void projector_forward(const llava_model *m, const llava_acts *a, int M) {
    const llava_params *p = &m->pt.w;
    int N = p->n_proj, d = m->cfg.text.hidden_size, Dv = m->cfg.vision.hidden_size;
    if (N) need(m, p->pw[0], 1);
    for (int k = 0; k < N; k++) {
        const void *in = k == 0 ? a->feat : proj_slot(m, a->g1, k - 1, M);
        void *out = k == N - 1 ? a->f : proj_slot(m, a->a1, k, M);
        m->ops->linear_forward(m->be, out, in, P(m, p->pw[k]), P(m, p->pb[k]), M, k ? d : Dv, d);
        if (k < N - 1) m->ops->gelu_forward(m->be, proj_slot(m, a->g1, k, M), out, (size_t)M * d);
    }
}

// From df = the gradient of f: each Linear's weight gradient, back through the GELUs (dg1 scratch), and for a
// trained tower (vt > 0) the features' gradient dfeat.
static void projector_backward(const llava_model *m, const llava_acts *a, int M, int vt) {
    const llava_params *p = &m->pt.w;
    int N = p->n_proj, d = m->cfg.text.hidden_size, Dv = m->cfg.vision.hidden_size;
    if (N == 0 && vt) m->ops->copy(m->be, BUF_ACT, a->dfeat, a->df, (size_t)M * Dv);  // the identity
    if (N) need(m, p->pw[0], -1);
    for (int k = N - 1; k >= 0; k--) {
        if (k == 0) {
            linear_bwd(m, vt ? a->dfeat : NULL, a->df, a->feat, p->pw[0], p->pb[0], M, Dv, d);
            break;
        }
        linear_bwd(m, a->dg1, a->df, proj_slot(m, a->g1, k - 1, M), p->pw[k], p->pb[k], M, d, d);
        m->ops->gelu_backward(m->be, a->df, a->dg1, proj_slot(m, a->a1, k - 1, M), (size_t)M * d);
    }
    const param_view *views[2 * PROJ_MAX_DEPTH];
    for (int k = 0; k < N; k++) views[2 * k] = p->pw[k], views[2 * k + 1] = p->pb[k];
    grads_final(m, views, (size_t)(2 * N));
}

// Where an inference pass keeps keys and values: the cache, each token's row in it, and for
// attention against the cache (decode) each query's sequence and the pass's block table.
typedef struct {
    const llava_kv *kv;
    const int32_t *rows;   // (T) I32: cache row of each token of the pass
    int decode;            // 1: attention_decode over the cache; 0: attention_forward over the pass
    const int32_t *seq;    // (T) I32: each query's sequence in the pass (decode)
    const int32_t *table;  // (n_seq, kv->max_blocks) I32 (decode)
} lm_cache;

// Mistral's sliding window for a training pass: 0 when no sequence of the batch is longer than it
// (the window then changes nothing), else the window, which a backend without it refuses (-1).
static int lm_window(const llava_model *m, const llava_batch *b) {
    int w = m->cfg.text.sliding_window, longest = 0;
    for (int s = 0; s < b->n_seq; s++)
        if (b->cu_seqlens[s + 1] - b->cu_seqlens[s] > longest) longest = b->cu_seqlens[s + 1] - b->cu_seqlens[s];
    if (w <= 0 || longest <= w) return 0;
    if (!m->ops->attention_window)
        return llava_fail(
            "a %d-token sequence is longer than the language model's sliding window (%d): the %s "
            "backend's attention has no sliding window",
            longest, w, m->ops->name);
    return w;
}

// The LM's RoPE scaling as the ops take it (NULL: none).
static const llava_rope_scaling *lm_rope(const llava_model *m) { return m->rope.type ? &m->rope : NULL; }

// The shapes one decoder layer works with.
typedef struct {
    int T, d, qd, kvd, I, Hq, Hkv, D, n_seq;
    float eps, theta, scale;
    const llava_rope_scaling *rope;  // NULL: none
    int window;                      // Mistral's sliding window where it binds in this pass, else 0
    const int32_t *pos, *cu;         // (T) and (n_seq + 1) on the backend
    const lm_cache *cache;           // NULL but in inference passes
} lm_dims;

// Decoder layer l: h_out = h_in + attention + MLP, keeping in *s what its backward reads.
// tmp (T, d) is scratch.
static void lm_layer_forward(const llava_model *m, int l, const void *h_in, void *h_out, const lm_saved *s,
                             const lm_dims *z, void *tmp) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    const lm_layer_params *c = &m->pt.w.lm[l];
    int T = z->T, d = z->d, qd = z->qd, kvd = z->kvd, I = z->I;
    need(m, c->in_norm, 1);  // ZeRO-3: the layer's parameters (a no-op in the backward's recompute)
    ops->rmsnorm_forward(be, s->n1, s->rstd1, h_in, P(m, c->in_norm), T, d, z->eps);
    lm_linear(m, l, LORA_Q, s->q, s->n1, c->q, c->q_b, T, d, qd);
    lm_linear(m, l, LORA_K, s->k, s->n1, c->k, c->k_b, T, d, kvd);
    lm_linear(m, l, LORA_V, s->v, s->n1, c->v, c->v_b, T, d, kvd);
    ops->rope_forward(be, s->q, z->pos, T, z->Hq, z->D, z->theta, z->rope);
    ops->rope_forward(be, s->k, z->pos, T, z->Hkv, z->D, z->theta, z->rope);
    const lm_cache *kc = z->cache;
    if (kc) {  // generation: this pass's keys and values join the cache
        ops->scatter_rows(be, kc->kv->k[l], s->k, kc->rows, T, kvd);
        ops->scatter_rows(be, kc->kv->v[l], s->v, kc->rows, T, kvd);
    }
    if (kc && kc->decode)
        ops->attention_decode(be, s->att, s->q, kc->kv->k[l], kc->kv->v[l], kc->table, kc->seq, z->pos, T, z->n_seq,
                              kc->kv->max_blocks, kc->kv->block_size, kc->kv->n_blocks, z->Hq, z->Hkv, z->D, z->scale,
                              z->window);
    else
        ops->attention_forward(be, s->att, s->lse, s->q, s->k, s->v, z->cu, z->n_seq, T, z->Hq, z->Hkv, z->D, z->scale,
                               1, z->window);
    lm_linear(m, l, LORA_O, tmp, s->att, c->o, c->o_b, T, qd, d);
    ops->add(be, s->h_mid, h_in, tmp, (size_t)T * d);
    ops->rmsnorm_forward(be, s->n2, s->rstd2, s->h_mid, P(m, c->post_norm), T, d, z->eps);
    lm_linear(m, l, LORA_GATE, s->gate, s->n2, c->gate, c->gate_b, T, d, I);
    lm_linear(m, l, LORA_UP, s->up, s->n2, c->up, c->up_b, T, d, I);
    ops->silu_mul_forward(be, s->s, s->gate, s->up, (size_t)T * I);
    lm_linear(m, l, LORA_DOWN, tmp, s->s, c->down, c->down_b, T, I, d);
    ops->add(be, h_out, s->h_mid, tmp, (size_t)T * d);
}

// ---------------------------------------------------------------------------------------------
// The activation arenas and the loss ledger

int llava_model_reserve(llava_model *m, const act_shape *s) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    if (m->acts_plan.bufs && act_plan_holds(&m->acts_plan, s)) return 0;
    act_shape want = *s;
    if (m->acts_plan.bufs) {  // grow to hold both what the plan held and this pass
        const act_shape *h = &m->acts_plan.shape;
        // Tokens grow by half at least: generation adds one token per pass, and one reallocation
        // per token would be one cudaMalloc per token.
        int grown = h->T + h->T / 2;
        want.T = want.T > h->T ? (want.T > grown ? want.T : grown) : h->T;
        want.n_seq = want.n_seq > h->n_seq ? want.n_seq : h->n_seq;
        want.n_img = want.n_img > h->n_img ? want.n_img : h->n_img;
        want.backward = want.backward || h->backward;
        want.checkpointing = want.checkpointing && h->checkpointing;
        want.inference = want.inference && h->inference;
        if (h->vision_train)
            want.vision_checkpointing =
                want.vision_train ? want.vision_checkpointing && h->vision_checkpointing : h->vision_checkpointing;
        want.vision_train = want.vision_train > h->vision_train ? want.vision_train : h->vision_train;
    }
    act_plan plan;
    if (act_plan_make(&m->cfg, &want, (int)ops->act_bytes, &plan) != 0) return -1;
    static const int kinds[3] = {BUF_ACT, BUF_F32, BUF_I32};
    for (int k = 0; k < 3; k++) {
        if (m->arena[k]) ops->free(be, m->arena[k]);
        size_t elem = kinds[k] == BUF_ACT ? ops->act_bytes : 4;
        m->arena[k] = ops->alloc(be, kinds[k], plan.arena_bytes[k] / elem);
    }
    act_plan_free(&m->acts_plan);
    act_bind_free(&m->acts);
    m->acts_plan = plan;
    act_bind(&m->acts_plan, m->arena, &m->cfg, &m->acts);
    return 0;
}

void llava_model_losses_reset(llava_model *m) { m->ledger_used = 0; }

// Room in the ledger for `n` more per-token losses (grown, keeping what it holds, when short).
static float *ledger_take(llava_model *m, size_t n) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    if (m->ledger_used + n > m->ledger_cap) {
        size_t cap = m->ledger_cap ? m->ledger_cap : 4096;
        while (cap < m->ledger_used + n) cap *= 2;
        float *grown = ops->alloc(be, BUF_F32, cap);
        if (m->ledger_used) ops->copy(be, BUF_F32, grown, m->ledger, m->ledger_used);
        if (m->ledger) ops->free(be, m->ledger);
        m->ledger = grown;
        m->ledger_cap = cap;
    }
    float *at = m->ledger + m->ledger_used;
    m->ledger_used += n;
    return at;
}

void llava_model_reserve_losses(llava_model *m, size_t n) {
    size_t used = m->ledger_used;
    ledger_take(m, n);
    m->ledger_used = used;
}

size_t llava_model_losses_read(llava_model *m, float *out) {
    if (m->ledger_used) m->ops->download(m->be, BUF_F32, out, m->ledger, m->ledger_used);
    return m->ledger_used;
}

double llava_pass_loss(const float *losses, const llava_batch *b) {
    double sum = 0;
    for (int t = 0; t < b->T; t++) sum += losses[t];
    return b->n_targets ? (double)(float)(sum / b->n_targets) : NAN;
}

// ---------------------------------------------------------------------------------------------
// One pass

// The stream's image positions: n_img * tokens_per_image (each tile's projected features in order), or with AnyRes
// n_feat (LLaVA-NeXT's merge: the features in feat_rows' order, newlines among them).
static int image_positions(const llava_model *m, const llava_batch *b) {
    return b->feat_rows ? b->n_feat : llava_batch_features(m, b);
}

// AnyRes: each image position's row of f (M projected tile features), or the newline; stages the ids the merge and
// its backward gather by (source rows, the newline's ids, each tile feature's position or -1 where cropped or
// resized). anyres_max_N: also the resized images' kept rows and the positions of their resized features (-2).
static void anyres_stage(const llava_model *m, const llava_batch *b, const llava_acts *a, int M) {
    int n = b->n_feat, n_rz = 0;
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)(3 * n + M + 1));
    int32_t *src = ids, *nl = ids + n, *inv = ids + 2 * n, *pos = ids + 2 * n + M;
    for (int r = 0; r < M; r++) inv[r] = -1;
    for (int k = 0; k < n; k++) {
        int s = b->feat_rows[k];
        src[k] = s;
        nl[k] = s == -1 ? 0 : -1;
        if (s >= 0 && s < M) inv[s] = k;
        if (s == -2) pos[n_rz++] = k;
    }
    m->ops->stage(m->be, a->any_src, src, sizeof(int32_t) * (size_t)n);
    m->ops->stage(m->be, a->any_nl, nl, sizeof(int32_t) * (size_t)n);
    m->ops->stage(m->be, a->any_inv, inv, sizeof(int32_t) * (size_t)M);
    if (b->n_resize) {
        size_t kept = 0;
        for (int i = 0; i < b->n_resize; i++) kept += (size_t)b->resize_dims[4 * i] * b->resize_dims[4 * i + 1];
        m->ops->stage(m->be, a->rz_rows, b->resize_rows, sizeof(int32_t) * kept);
        m->ops->stage(m->be, a->rz_pos, pos, sizeof(int32_t) * (size_t)n_rz);
    }
    free(ids);
}

// The resized features of a batch (anyres_max_N): the sum of oh * ow over its resized images.
static int anyres_resized(const llava_batch *b) {
    int n = 0;
    for (int i = 0; i < b->n_resize; i++) n += b->resize_dims[4 * i + 2] * b->resize_dims[4 * i + 3];
    return n;
}

// A batch's resize plan against its feat_rows: as many -2 entries as resized features (else those positions would
// silently take zero rows), each kept row a tile feature.
// A batch with pooled video frames against its stream: as many image positions (ids -1) as the images' and frames'
// features (a loader or engine counting a frame's unpooled features would otherwise splice rows silently astray).
static int video_check(const llava_model *m, const llava_batch *b) {
    // Every batch of a pooling model (frames left unmarked would otherwise read img_rows past its end).
    if (m->cfg.glue.video_pool_mode == POOL_NONE) return 0;
    if (b->feat_rows)
        return video_pooled(m, b) ? llava_fail(
                                        "a batch with video frames and AnyRes tiles: video_pool_mode excludes "
                                        "AnyRes")
                                  : 0;
    int marks = 0, want = llava_batch_features(m, b);
    for (int t = 0; t < b->T; t++) marks += b->ids[t] < 0;
    if (marks != want)
        return llava_fail("batch: %d image positions for its images' and video frames' %d features (%d per frame)",
                          marks, want, m->tokens_per_video_frame);
    return 0;
}

static int anyres_check(const llava_model *m, const llava_batch *b) {
    if (!b->feat_rows) return 0;
    int marks = 0, M = b->n_img * m->tokens_per_image;
    for (int k = 0; k < b->n_feat; k++) marks += b->feat_rows[k] == -2;
    if (marks != anyres_resized(b))
        return llava_fail("AnyRes batch: %d resized feature positions for a plan of %d", marks, anyres_resized(b));
    if (b->n_resize && !m->ops->resize_bilinear)
        return llava_fail("anyres_max: the %s backend has no resize_bilinear op", m->ops->name);
    size_t kept = 0;
    for (int i = 0; i < b->n_resize; i++) kept += (size_t)b->resize_dims[4 * i] * b->resize_dims[4 * i + 1];
    for (size_t i = 0; i < kept; i++)
        if (b->resize_rows[i] < 0 || b->resize_rows[i] >= M)
            return llava_fail("AnyRes batch: resized image's feature row %d outside the %d tile features",
                              b->resize_rows[i], M);
    return 0;
}

// anyres_max_N's forward: each resized image's kept map, gathered from f row-major, resized bilinear into
// any_tmp (its resized features one after another), then scattered to their positions in any_feat (which holds
// zero rows there).
static void anyres_resize_forward(const llava_model *m, const llava_batch *b, const llava_acts *a, int M) {
    const llava_ops *ops = m->ops;
    int d = m->cfg.text.hidden_size;
    size_t at_in = 0, at_out = 0, row = (size_t)d * ops->act_bytes;
    for (int i = 0; i < b->n_resize; i++) {
        const int32_t *z = b->resize_dims + 4 * i;
        ops->embedding_forward(m->be, a->rz_grid, a->rz_rows + at_in, a->f, z[0] * z[1], d, M);  // (h*w, d)
        ops->resize_bilinear(m->be, (char *)a->any_tmp + at_out * row, a->rz_grid, z[0], z[1], z[2], z[3], d);
        at_in += (size_t)z[0] * z[1], at_out += (size_t)z[2] * z[3];
    }
    ops->scatter_rows(m->be, a->any_feat, a->any_tmp, a->rz_pos, (int)at_out, d);
}

// Its backward: the resized features' gradient gathered from any_grad, each image's through the resize's transpose
// to its kept map, scattered into df's rows of those features (which the merge's backward left 0: a kept feature
// of a resized image reaches the stream through the resize only).
static void anyres_resize_backward(const llava_model *m, const llava_batch *b, const llava_acts *a) {
    const llava_ops *ops = m->ops;
    int d = m->cfg.text.hidden_size, n_out = anyres_resized(b);
    size_t at_in = 0, at_out = 0, row = (size_t)d * ops->act_bytes;
    ops->gather_rows(m->be, a->rz_dout, a->any_grad, a->rz_pos, n_out, d);  // (n_out, d)
    for (int i = 0; i < b->n_resize; i++) {
        const int32_t *z = b->resize_dims + 4 * i;
        ops->resize_bilinear_backward(m->be, a->rz_dgrid, (char *)a->rz_dout + at_out * row, z[0], z[1], z[2], z[3], d);
        ops->scatter_rows(m->be, a->df, a->rz_dgrid, a->rz_rows + at_in, z[0] * z[1], d);
        at_in += (size_t)z[0] * z[1], at_out += (size_t)z[2] * z[3];
    }
}

// The start of every pass: the batch's integer arrays to the backend (targets only for a pass with
// a loss), the vision tower and the projector over its images (f, M rows), and hs[0], the token
// embeddings with the image features spliced in at their rows.
static void pass_inputs(const llava_model *m, const llava_batch *b, const llava_acts *a, int targets, int vt) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    const llava_params *p = &m->pt.w;
    int T = b->T, d = m->cfg.text.hidden_size, V = m->cfg.text.vocab_size, M = llava_batch_features(m, b);
    int Mf = image_positions(m, b);
    ops->stage(be, a->ids, b->ids, sizeof(int32_t) * (size_t)T);
    if (targets) ops->stage(be, a->targets, b->targets, sizeof(int32_t) * (size_t)T);
    ops->stage(be, a->pos, b->pos, sizeof(int32_t) * (size_t)T);
    ops->stage(be, a->cu, b->cu_seqlens, sizeof(int32_t) * ((size_t)b->n_seq + 1));
    if (Mf) ops->stage(be, a->img_rows, b->img_rows, sizeof(int32_t) * (size_t)Mf);
    need(m, proj_view(p), 1);  // ZeRO-3: gathered whether or not the batch has images
    if (M) {
        vision_forward(m, b, a, vt);  // feat (M, Dv)
        projector_forward(m, a, M);
    } else {
        need_vision(m);  // a sharded tower is gathered whether or not the batch has images
    }
    need(m, p->embed, 1);
    ops->embedding_forward(be, a->hs[0], a->ids, P(m, p->embed), T, d, V);
    if (M && b->feat_rows) {
        // LLaVA-NeXT's merge: each position's tile feature (a zero row at a newline), plus the newline there.
        anyres_stage(m, b, a, M);
        ops->embedding_forward(be, a->any_feat, a->any_src, a->f, Mf, d, M);
        need(m, p->newline, 1);
        ops->embedding_forward(be, a->any_tmp, a->any_nl, P(m, p->newline), Mf, d, 1);
        ops->add_inplace(be, a->any_feat, a->any_tmp, (size_t)Mf * d);
        if (b->n_resize) anyres_resize_forward(m, b, a, M);
        ops->scatter_rows(be, a->hs[0], a->any_feat, a->img_rows, Mf, d);
    } else if (M) {
        ops->scatter_rows(be, a->hs[0], a->f, a->img_rows, M, d);
    }
}

int llava_pass(llava_model *m, const llava_batch *b, int backward, float loss_scale, float *logits_out) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    const llava_params *p = &m->pt.w;
    const llama_config *tc = &m->cfg.text;
    int T = b->T, d = tc->hidden_size, V = tc->vocab_size, L = tc->num_hidden_layers, I = tc->intermediate_size;
    int Hq = tc->num_attention_heads, Hkv = tc->num_key_value_heads, D = tc->head_dim;
    int qd = Hq * D, kvd = Hkv * D, M = llava_batch_features(m, b);
    float eps = tc->rms_norm_eps, theta = (float)tc->rope_theta;
    if (b->n_img && (b->img_h != m->cfg.vision.image_size || b->img_w != m->cfg.vision.image_size))
        return llava_fail("batch images are %dx%d; the vision tower takes %dx%d", b->img_h, b->img_w,
                          m->cfg.vision.image_size, m->cfg.vision.image_size);
    if (T == 0) return llava_fail("empty batch");
    if (anyres_check(m, b) != 0 || video_check(m, b) != 0) return -1;
    int asked_backward = backward;
    // Nothing to do backward when no target exists, or when only the projector trains and the batch
    // holds no image (text-only samples carry no projector gradient).
    backward = backward && m->trainable != TRAIN_NONE && b->n_targets > 0 &&
               (llava_model_trains(m, GROUP_LM) || llava_model_trains(m, GROUP_LORA) || M > 0);
    // The tower's trained layers, in a pass that goes backward over images.
    int vt = backward && M > 0 && llava_model_trains(m, GROUP_VISION) ? m->vision_train : 0;
    // LoRA's dropout acts in training passes only (PEFT's modules in train mode).
    m->lora_dropout_on = backward && m->cfg.lora.r > 0 && m->cfg.lora.dropout > 0;
    // With activation checkpointing a layer keeps only its input (hs[l]) and recomputes the rest
    // in backward: the same ops on the same inputs, so the same bits.
    int keep = backward && !m->checkpoint_layers;
    act_shape shape = {T, b->n_seq, b->n_img, backward, m->checkpoint_layers, 0, vt, m->checkpoint_vision};
    if (llava_model_reserve(m, &shape) != 0) return -1;
    const llava_acts *a = &m->acts;

    pass_inputs(m, b, a, 1, vt);  // hs[0]: the embeddings with the image features spliced in
    // ---- language model. hs[l] (T, d) is the input of layer l; hs[L] the final residual stream.
    void **hs = a->hs;
    int window = lm_window(m, b);
    if (window < 0) return -1;
    lm_dims z = {T,          d,      qd,     kvd,   I,   Hq, Hkv, D, b->n_seq, eps, theta, 1.0f / sqrtf((float)D),
                 lm_rope(m), window, a->pos, a->cu, NULL};
    for (int l = 0; l < L; l++) lm_layer_forward(m, l, hs[l], hs[l + 1], &a->saved[keep ? l : 0], &z, a->tmp);
    need(m, p->norm, 1);
    ops->rmsnorm_forward(be, a->hn, a->rstd_f, hs[L], P(m, p->norm), T, d, eps);
    need(m, p->head, 1);                                                      // tied: the embeddings' segment
    ops->linear_forward(be, a->logits, a->hn, P(m, p->head), NULL, T, d, V);  // (T, V); dlogits in place
    if (logits_out) ops->download(be, BUF_ACT, logits_out, a->logits, (size_t)T * V);

    // ---- loss: per-token losses into the ledger; the mean over the batch's targets scales the gradient
    float *losses = ledger_take(m, (size_t)T);
    float grad_scale = b->n_targets ? loss_scale / (float)b->n_targets : 0.0f;
    ops->cross_entropy(be, losses, backward ? a->logits : NULL, a->logits, a->targets, T, V, grad_scale);

    if (backward) {
        // ---- LM backward. dh (T, d) carries d loss / d hs[l+1] down the stack.
        void *dhn = a->dhn, *dh = a->dh, *dx = a->dx;
        need(m, p->head, -1);
        linear_bwd(m, dhn, a->logits, a->hn, p->head, NULL, T, d, V);
        need(m, p->norm, -1);
        ops->rmsnorm_backward(be, dh, G(m, p->norm), dhn, hs[L], P(m, p->norm), a->rstd_f, T, d);
        const param_view *top[] = {p->norm, p->head != p->embed ? p->head : NULL};  // tied: the embeddings' turn
        grads_final(m, top, 2);
        for (int l = L - 1; l >= 0; l--) {
            const lm_layer_params *c = &p->lm[l];
            const lm_saved *s = &a->saved[keep ? l : 0];
            need(m, c->in_norm, -1);  // ZeRO-3: gathered again (the next one down ahead of it)
            if (!keep) lm_layer_forward(m, l, hs[l], a->tmp, s, &z, dx);  // recompute; the output is not needed
            // MLP: hs[l+1] = h_mid + down(silu(gate(n2)) * up(n2))
            lm_linear_bwd(m, l, LORA_DOWN, a->ds, dh, s->s, c->down, c->down_b, T, I, d);
            ops->silu_mul_backward(be, a->dgate, a->dup, a->ds, s->gate, s->up, (size_t)T * I);
            lm_linear_bwd(m, l, LORA_GATE, dhn, a->dgate, s->n2, c->gate, c->gate_b, T, d, I);
            lm_linear_bwd(m, l, LORA_UP, dx, a->dup, s->n2, c->up, c->up_b, T, d, I);
            ops->add_inplace(be, dhn, dx, (size_t)T * d);
            ops->rmsnorm_backward(be, dx, G(m, c->post_norm), dhn, s->h_mid, P(m, c->post_norm), s->rstd2, T, d);
            ops->add_inplace(be, dh, dx, (size_t)T * d);  // dh = d loss / d h_mid
            // Attention: h_mid = hs[l] + o(attn(rope(q(n1)), rope(k(n1)), v(n1)))
            lm_linear_bwd(m, l, LORA_O, a->datt, dh, s->att, c->o, c->o_b, T, qd, d);
            ops->attention_backward(be, a->dq, a->dk, a->dv, a->datt, s->q, s->k, s->v, s->att, s->lse, a->cu, b->n_seq,
                                    T, Hq, Hkv, D, z.scale, 1, z.window);
            ops->rope_backward(be, a->dq, a->pos, T, Hq, D, theta, z.rope);
            ops->rope_backward(be, a->dk, a->pos, T, Hkv, D, theta, z.rope);
            lm_linear_bwd(m, l, LORA_Q, dhn, a->dq, s->n1, c->q, c->q_b, T, d, qd);
            lm_linear_bwd(m, l, LORA_K, dx, a->dk, s->n1, c->k, c->k_b, T, d, kvd);
            ops->add_inplace(be, dhn, dx, (size_t)T * d);
            lm_linear_bwd(m, l, LORA_V, dx, a->dv, s->n1, c->v, c->v_b, T, d, kvd);
            ops->add_inplace(be, dhn, dx, (size_t)T * d);
            ops->rmsnorm_backward(be, dx, G(m, c->in_norm), dhn, hs[l], P(m, c->in_norm), s->rstd1, T, d);
            ops->add_inplace(be, dh, dx, (size_t)T * d);  // dh = d loss / d hs[l]
            // lm_layer_params holds nothing but view pointers: the layer's views, as an array.
            grads_final(m, (const param_view *const *)c, sizeof *c / sizeof(const param_view *));
        }
        // Embeddings: image positions hold ids of -1, so their rows get no gradient (masked_scatter).
        float *gembed = G(m, p->embed);
        if (gembed) ops->embedding_backward(be, gembed, dh, a->ids, T, d, V, m->padding_idx);
        grads_final(m, &p->embed, 1);
        // ---- projector backward from the image positions' gradient
        if (M && (llava_model_trains(m, GROUP_PROJECTOR) || vt)) {
            if (b->feat_rows) {  // AnyRes: back through the merge (a cropped feature gets no gradient)
                int Mf = image_positions(m, b);
                ops->gather_rows(be, a->any_grad, dh, a->img_rows, Mf, d);
                ops->embedding_forward(be, a->df, a->any_inv, a->any_grad, M, d, Mf);
                if (b->n_resize) anyres_resize_backward(m, b, a);
                float *gnl = G(m, p->newline);
                if (gnl) ops->embedding_backward(be, gnl, a->any_grad, a->any_nl, Mf, d, 1, -1);
                grads_final(m, &p->newline, 1);
            } else {
                ops->gather_rows(be, a->df, dh, a->img_rows, M, d);
            }
            projector_backward(m, a, M, vt);
        }
        // ---- the tower's backward from the features' gradient
        if (vt) vision_backward(m, b, a, vt);
        need(m, proj_view(p), -1);  // ZeRO-3: whether or not the batch had images
    } else if (asked_backward) {
        // ZeRO-3: the backward's gathers happen whatever this pass needed (a rank whose batch has no
        // image or target takes part in the same all-gathers as the others).
        need_backward(m);
    }
    return 0;
}

float llava_forward_backward(llava_model *m, const llava_batch *b, int backward, float loss_scale, float *logits_out) {
    llava_model_losses_reset(m);
    if (llava_pass(m, b, backward, loss_scale, logits_out) != 0) return NAN;
    float *losses = xmalloc(sizeof(float) * (size_t)(b->T ? b->T : 1));
    llava_model_losses_read(m, losses);
    double loss = llava_pass_loss(losses, b);
    free(losses);
    return (float)loss;
}

// ---------------------------------------------------------------------------------------------
// Inference: the paged KV cache and the pass that extends sequences in it

size_t llava_kv_token_bytes(const llava_model *m) {
    const llama_config *t = &m->cfg.text;
    return 2 * (size_t)t->num_hidden_layers * (size_t)t->num_key_value_heads * (size_t)t->head_dim * m->ops->act_bytes;
}

int llava_kv_init(llava_kv *kv, llava_model *m, int n_blocks, int block_size, int max_seqs, int max_context) {
    memset(kv, 0, sizeof *kv);
    if (n_blocks < 1 || block_size < 1 || max_seqs < 1 || max_context < 1)
        return llava_fail(
            "kv cache: %d blocks of %d tokens for %d sequences of up to %d tokens: every size must be "
            "positive",
            n_blocks, block_size, max_seqs, max_context);
    const llama_config *t = &m->cfg.text;
    kv->n_layers = t->num_hidden_layers;
    kv->kvd = t->num_key_value_heads * t->head_dim;
    kv->block_size = block_size;
    kv->n_blocks = n_blocks;
    kv->max_seqs = max_seqs;
    kv->max_blocks = (max_context + block_size - 1) / block_size;
    size_t rows = (size_t)n_blocks * (size_t)block_size;
    kv->k = xcalloc((size_t)kv->n_layers, sizeof(void *));
    kv->v = xcalloc((size_t)kv->n_layers, sizeof(void *));
    for (int l = 0; l < kv->n_layers; l++) {
        kv->k[l] = m->ops->alloc(m->be, BUF_ACT, rows * (size_t)kv->kvd);
        kv->v[l] = m->ops->alloc(m->be, BUF_ACT, rows * (size_t)kv->kvd);
    }
    kv->table = xmalloc(sizeof(int32_t) * (size_t)max_seqs * (size_t)kv->max_blocks);
    for (size_t i = 0; i < (size_t)max_seqs * (size_t)kv->max_blocks; i++) kv->table[i] = -1;
    kv->len = xcalloc((size_t)max_seqs, sizeof(int));
    kv->held = xcalloc((size_t)max_seqs, sizeof(int));
    kv->open = xcalloc((size_t)max_seqs, 1);
    kv->free_list = xmalloc(sizeof(int32_t) * (size_t)n_blocks);
    // Lowest blocks on top of the stack: a fresh cache hands out blocks 0, 1, 2, ...
    for (int i = 0; i < n_blocks; i++) kv->free_list[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;
    return 0;
}

void llava_kv_free(llava_kv *kv, llava_model *m) {
    for (int l = 0; l < kv->n_layers; l++) {
        if (kv->k && kv->k[l]) m->ops->free(m->be, kv->k[l]);
        if (kv->v && kv->v[l]) m->ops->free(m->be, kv->v[l]);
    }
    if (kv->d_idx) m->ops->free(m->be, kv->d_idx);
    free(kv->k);
    free(kv->v);
    free(kv->table);
    free(kv->len);
    free(kv->held);
    free(kv->open);
    free(kv->free_list);
    memset(kv, 0, sizeof *kv);
}

int llava_kv_open(llava_kv *kv) {
    for (int s = 0; s < kv->max_seqs; s++)
        if (!kv->open[s]) {
            kv->open[s] = 1;
            kv->len[s] = 0;
            return s;
        }
    return -1;
}

void llava_kv_close(llava_kv *kv, int slot) {
    if (slot < 0 || slot >= kv->max_seqs || !kv->open[slot]) return;
    int32_t *bt = kv->table + (size_t)slot * kv->max_blocks;
    for (int b = kv->held[slot] - 1; b >= 0; b--) {
        kv->free_list[kv->n_free++] = bt[b];
        bt[b] = -1;
    }
    kv->held[slot] = 0;
    kv->len[slot] = 0;
    kv->open[slot] = 0;
}

int llava_kv_blocks_for(const llava_kv *kv, int n_tokens) { return (n_tokens + kv->block_size - 1) / kv->block_size; }

int llava_kv_grow(llava_kv *kv, int slot, int n_tokens) {
    int need = llava_kv_blocks_for(kv, n_tokens);
    if (need > kv->max_blocks)
        return llava_fail("kv cache: %d tokens are more than a sequence may hold (%d)", n_tokens,
                          kv->max_blocks * kv->block_size);
    if (need - kv->held[slot] > kv->n_free)
        return llava_fail("kv cache: %d more blocks wanted, %d free", need - kv->held[slot], kv->n_free);
    int32_t *bt = kv->table + (size_t)slot * kv->max_blocks;
    while (kv->held[slot] < need) bt[kv->held[slot]++] = kv->free_list[--kv->n_free];
    return 0;
}

int llava_infer_pass(llava_model *m, llava_kv *kv, const llava_batch *b, const int *slots, float *logits) {
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    const llava_params *p = &m->pt.w;
    const llama_config *tc = &m->cfg.text;
    int T = b->T, d = tc->hidden_size, V = tc->vocab_size, L = tc->num_hidden_layers, I = tc->intermediate_size;
    int Hq = tc->num_attention_heads, Hkv = tc->num_key_value_heads, D = tc->head_dim, n = b->n_seq;
    float eps = tc->rms_norm_eps;
    if (T == 0 || n == 0) return llava_fail("inference pass: an empty batch");
    if (anyres_check(m, b) != 0 || video_check(m, b) != 0) return -1;
    if (b->n_img && (b->img_h != m->cfg.vision.image_size || b->img_w != m->cfg.vision.image_size))
        return llava_fail("batch images are %dx%d; the vision tower takes %dx%d", b->img_h, b->img_w,
                          m->cfg.vision.image_size, m->cfg.vision.image_size);
    // Every sequence continues its slot where the slot ends, inside the blocks the slot holds.
    int prefill = 1, window = 0;
    for (int s = 0; s < n; s++) {
        int sl = slots[s], start = b->cu_seqlens[s], len = b->cu_seqlens[s + 1] - start;
        if (sl < 0 || sl >= kv->max_seqs || !kv->open[sl]) return llava_fail("inference pass: slot %d is not open", sl);
        for (int r = 0; r < s; r++)
            if (slots[r] == sl) return llava_fail("inference pass: slot %d twice in one pass", sl);
        if (len <= 0) return llava_fail("inference pass: sequence %d is empty", s);
        for (int i = 0; i < len; i++)
            if (b->pos[start + i] != kv->len[sl] + i)
                return llava_fail("inference pass: sequence %d token %d has position %d; its slot holds %d tokens", s,
                                  i, b->pos[start + i], kv->len[sl]);
        if (kv->len[sl] + len > kv->held[sl] * kv->block_size)
            return llava_fail("inference pass: slot %d holds blocks for %d tokens, not %d", sl,
                              kv->held[sl] * kv->block_size, kv->len[sl] + len);
        if (kv->len[sl]) prefill = 0;
        // Past Mistral's sliding window the pass needs the window (the cache keeps every key; the
        // attention ops skip those behind it).
        if (tc->sliding_window > 0 && kv->len[sl] + len > tc->sliding_window) {
            if (!ops->attention_window)
                return llava_fail(
                    "inference pass: sequence %d reaches %d tokens, past the language model's sliding "
                    "window (%d): the %s backend's attention has no sliding window",
                    s, kv->len[sl] + len, tc->sliding_window, ops->name);
            window = tc->sliding_window;
        }
    }
    if (!ops->attention_decode && !prefill)
        return llava_fail("the %s backend has no attention_decode: it cannot continue a cached sequence", ops->name);
    act_shape shape = {T, n, b->n_img, 0, 0, 1, 0, 0};
    m->lora_dropout_on = 0;
    if (llava_model_reserve(m, &shape) != 0) return -1;
    const llava_acts *a = &m->acts;
    pass_inputs(m, b, a, 0, 0);

    // The pass's index arrays, staged as one: each token's cache row (T), each query's sequence in
    // the pass (T), each sequence's last token (n), and the pass's block table (n, max_blocks).
    size_t mb = (size_t)kv->max_blocks, n_idx = 2 * (size_t)T + (size_t)n + (size_t)n * mb;
    int32_t *idx = xmalloc(sizeof(int32_t) * n_idx);
    int32_t *rows = idx, *seq = idx + T, *last = seq + T, *table = last + n;
    for (int s = 0; s < n; s++) {
        const int32_t *bt = kv->table + (size_t)slots[s] * mb;
        memcpy(table + (size_t)s * mb, bt, sizeof(int32_t) * mb);
        for (int t = b->cu_seqlens[s]; t < b->cu_seqlens[s + 1]; t++) {
            int j = b->pos[t];
            rows[t] = bt[j / kv->block_size] * kv->block_size + j % kv->block_size;
            seq[t] = s;
        }
        last[s] = b->cu_seqlens[s + 1] - 1;
    }
    if (n_idx > kv->cap_idx) {
        if (kv->d_idx) ops->free(be, kv->d_idx);
        kv->cap_idx = n_idx + n_idx / 2;
        kv->d_idx = ops->alloc(be, BUF_I32, kv->cap_idx);
    }
    ops->stage(be, kv->d_idx, idx, sizeof(int32_t) * n_idx);
    free(idx);
    const int32_t *d_rows = kv->d_idx, *d_seq = d_rows + T, *d_last = d_seq + T, *d_table = d_last + n;
    lm_cache cache = {kv, d_rows, !prefill, d_seq, d_table};

    void **hs = a->hs;
    lm_dims z = {
        T,          d,      Hq * D, Hkv * D, I,     Hq, Hkv, D, n, eps, (float)tc->rope_theta, 1.0f / sqrtf((float)D),
        lm_rope(m), window, a->pos, a->cu,   &cache};
    // Layer inputs in turn in hs[0] and hs[1] (an inference plan keeps two); a training plan's hs[0]
    // and hs[1] serve the same way.
    for (int l = 0; l < L; l++) lm_layer_forward(m, l, hs[l & 1], hs[(l + 1) & 1], &a->saved[0], &z, a->tmp);
    // The head on each sequence's last token only: those rows of the last output gathered into tmp.
    ops->gather_rows(be, a->tmp, hs[L & 1], d_last, n, d);
    ops->rmsnorm_forward(be, a->hn, a->rstd_f, a->tmp, P(m, p->norm), n, d, eps);
    ops->linear_forward(be, a->logits, a->hn, P(m, p->head), NULL, n, d, V);
    ops->download(be, BUF_ACT, logits, a->logits, (size_t)n * V);
    for (int s = 0; s < n; s++) kv->len[slots[s]] += b->cu_seqlens[s + 1] - b->cu_seqlens[s];
    return 0;
}
