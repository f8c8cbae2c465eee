#include "export.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "data/strbuf.h"
#include "data/template.h"
#include "data/tokenizer.h"
#include "model/params.h"
#include "names.h"
#include "safetensors.h"

// Host fp32 copies of every group (working weights).
static void download_all(const llava_model *m, float *host[N_GROUPS]) {
    for (int g = 0; g < N_GROUPS; g++) {
        host[g] = NULL;
        if (!m->pt.group_numel[g] || !m->params[g]) continue;  // QLoRA's NF4 group has no buffer
        host[g] = xmalloc(sizeof(float) * m->pt.group_numel[g]);
        m->ops->download(m->be, BUF_PARAM, host[g], m->params[g], m->pt.group_numel[g]);
    }
}

int export_projector(const llava_model *m, const char *path, dtype_t dtype) {
    float *host[N_GROUPS];
    download_all(m, host);
    st_writer w;
    st_writer_init(&w);
    int rc = 0;
    for (int i = 0; i < m->pt.n_views && rc == 0; i++) {
        const param_view *v = &m->pt.views[i];
        if (v->group != GROUP_PROJECTOR) continue;
        char *ext = name_from_internal(v->name, LAYOUT_LLAVA_ORIGINAL, m->pt.linear_projector);
        rc =
            st_writer_add_f32(&w, ext, dtype, v->ndim, v->shape, host[GROUP_PROJECTOR] + v->offset);  // copies the name
        free(ext);
    }
    st_writer_meta(&w, "format", "pt");
    if (rc == 0) rc = st_writer_save(&w, path);
    st_writer_free(&w);
    for (int g = 0; g < N_GROUPS; g++) free(host[g]);
    return rc;
}

// A JSON number written as a float even when integral ("8.0"): transformers' rope_scaling validation
// warns about an int where it wants a float.
static void add_float(cJSON *o, const char *key, double v) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");
    cJSON_AddRawToObject(o, key, buf);
}

static cJSON *text_config_json(const llama_config *t, int vocab) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model_type", t->model_type[0] ? t->model_type : "llama");
    cJSON_AddNumberToObject(j, "vocab_size", vocab);
    cJSON_AddNumberToObject(j, "hidden_size", t->hidden_size);
    cJSON_AddNumberToObject(j, "intermediate_size", t->intermediate_size);
    cJSON_AddNumberToObject(j, "num_hidden_layers", t->num_hidden_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", t->num_attention_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", t->num_key_value_heads);
    cJSON_AddNumberToObject(j, "head_dim", t->head_dim);
    cJSON_AddNumberToObject(j, "max_position_embeddings", t->max_position_embeddings);
    cJSON_AddNumberToObject(j, "rms_norm_eps", t->rms_norm_eps);
    cJSON_AddNumberToObject(j, "rope_theta", t->rope_theta);
    cJSON_AddStringToObject(j, "hidden_act", t->hidden_act);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", t->tie_word_embeddings);
    cJSON_AddNumberToObject(j, "bos_token_id", t->bos_token_id);
    cJSON_AddNumberToObject(j, "eos_token_id", t->eos_token_id);
    if (t->pad_token_id >= 0) cJSON_AddNumberToObject(j, "pad_token_id", t->pad_token_id);
    // The families' own keys (Qwen2's q/k/v biases need none: Qwen2Config always has them).
    if (t->attention_bias) cJSON_AddBoolToObject(j, "attention_bias", 1);
    if (t->mlp_bias) cJSON_AddBoolToObject(j, "mlp_bias", 1);
    if (t->rope_llama3) {
        cJSON *rs = cJSON_AddObjectToObject(j, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
        add_float(rs, "factor", t->rope_factor);
        add_float(rs, "low_freq_factor", t->rope_low_freq_factor);
        add_float(rs, "high_freq_factor", t->rope_high_freq_factor);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", t->rope_original_max);
    }
    if (!strcmp(t->model_type, "mistral")) {
        if (t->sliding_window > 0) cJSON_AddNumberToObject(j, "sliding_window", t->sliding_window);
        else cJSON_AddNullToObject(j, "sliding_window");
    }
    if (!strcmp(t->model_type, "qwen2")) cJSON_AddBoolToObject(j, "use_sliding_window", 0);
    return j;
}

static cJSON *vision_config_json(const clip_vision_config *v) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model_type", v->siglip ? "siglip_vision_model" : "clip_vision_model");
    cJSON_AddNumberToObject(j, "hidden_size", v->hidden_size);
    cJSON_AddNumberToObject(j, "intermediate_size", v->intermediate_size);
    cJSON_AddNumberToObject(j, "num_hidden_layers", v->num_hidden_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", v->num_attention_heads);
    cJSON_AddNumberToObject(j, "num_channels", v->num_channels);
    cJSON_AddNumberToObject(j, "image_size", v->image_size);
    cJSON_AddNumberToObject(j, "patch_size", v->patch_size);
    if (!v->siglip) cJSON_AddNumberToObject(j, "projection_dim", v->projection_dim);
    cJSON_AddStringToObject(j, "hidden_act", v->hidden_act);
    cJSON_AddNumberToObject(j, "layer_norm_eps", v->layer_norm_eps);
    return j;
}

// The ids of <image> and <pad> in the export and its vocabulary size: llava-hf embeds the image token;
// a vicuna vocabulary gets one (and <pad>) appended, padded to a multiple of 64.
static void hf_vocab(const model_config *c, int *image_id, int *pad_id, int *V_out) {
    int V = c->text.vocab_size;
    *image_id = c->glue.image_token_index, *pad_id = c->glue.pad_token_id, *V_out = V;
    if (*image_id < 0 || *image_id >= V) {
        *image_id = V;
        *pad_id = V + 1;
        *V_out = (V + 2 + 63) / 64 * 64;
    }
}

// Folds every LoRA adapter into its base weight on the host copies, as PEFT's merge_and_unload:
// W += s (B A), the product in fp32 (here summed in fp64 and rounded once), then added in fp32.
static void merge_lora(const llava_model *m, float *host[N_GROUPS]) {
    const lm_layer_params *lm = m->pt.w.lm;
    float s = lora_scaling(&m->cfg.lora);
    int r = m->cfg.lora.r;
    for (int l = 0; l < m->pt.w.n_lm; l++) {
        for (int t = 0; t < LORA_N_TARGETS; t++) {
            const param_view *A = lm[l].lora_a[t], *B = lm[l].lora_b[t], *W = lm_linear_weight(&lm[l], t);
            if (!A) continue;
            int64_t O = W->shape[0], I = W->shape[1];
            float *w = host[GROUP_LM] + W->offset;
            const float *a = host[GROUP_LORA] + A->offset, *b = host[GROUP_LORA] + B->offset;  // (r, I), (O, r)
            for (int64_t o = 0; o < O; o++) llava_lora_merged_row(w + o * I, a, b, r, I, o, s, w + o * I);
        }
    }
}

// transformers' LlavaForConditionalGeneration is mlp2x_gelu on every selected feature: anything else (another
// projector depth, a token reduction) is written as llava-hf's layout with model_type "llava_c" and LLaVA's keys for
// it, which llava.c reads and transformers refuses by name instead of running another model.
int export_is_llava_c(const model_config *c) {
    return c->glue.projector_depth != 2 || c->glue.pool_mode != POOL_NONE || c->glue.keep_tokens > 0 ||
           c->glue.video_pool_mode != POOL_NONE;
}

int export_llava_hf(const llava_model *m, const char *dir, dtype_t dtype) {
    if (m->pt.group_numel[GROUP_LM_NF4])
        return llava_fail(
            "export: the language model is held in NF4 (QLoRA): merge the adapter onto the unquantised base "
            "instead (llava merge)");
    if (mkdir_p(dir) != 0) return -1;
    const model_config *c = &m->cfg;
    int V = c->text.vocab_size, d = c->text.hidden_size;
    int image_id, pad_id, V_out;
    hf_vocab(c, &image_id, &pad_id, &V_out);
    float *host[N_GROUPS];
    download_all(m, host);
    if (m->cfg.lora.r > 0) merge_lora(m, host);  // the adapters are part of the trained model
    float *embed = NULL, *head = NULL;           // (V_out, d) when grown
    st_writer w;
    st_writer_init(&w);
    int rc = 0;
    for (int i = 0; i < m->pt.n_views && rc == 0; i++) {
        const param_view *v = &m->pt.views[i];
        if (!v->used) continue;                // vision layers LLaVA never runs are not part of the trained model
        if (v->group == GROUP_LORA) continue;  // merged into their base weights
        const float *src = host[v->group] + v->offset;
        int64_t shape[PARAM_MAX_DIMS];
        memcpy(shape, v->shape, sizeof shape);
        int is_embed = !strcmp(v->name, "lm.model.embed_tokens.weight"),
            is_head = !strcmp(v->name, "lm.lm_head.weight");
        if ((is_embed || is_head) && V_out != V) {
            float *grown = xmalloc(sizeof(float) * (size_t)V_out * d);
            memcpy(grown, src, sizeof(float) * (size_t)V * d);
            double *mean = xcalloc((size_t)d, sizeof(double));
            for (int r = 0; r < V; r++)
                for (int k = 0; k < d; k++) mean[k] += src[(size_t)r * d + k];
            for (int r = V; r < V_out; r++)
                for (int k = 0; k < d; k++) grown[(size_t)r * d + k] = (float)(mean[k] / V);
            free(mean);
            shape[0] = V_out;
            src = grown;
            if (is_embed) embed = grown;
            else head = grown;
        }
        char *ext = name_from_internal(v->name, LAYOUT_LLAVA_HF_LEGACY, 0);
        rc = st_writer_add_f32(&w, ext, dtype, v->ndim, shape, src);
        free(ext);
    }
    // The tower's layers past the feature layer (and post_layernorm) are not part of the trained
    // model, but a complete CLIP tower makes a folder every loader takes without "newly initialised"
    // weights: copied from the file the tower came from, when it has them.
    float **extra = NULL;
    int n_extra = 0;
    st_set vs;
    int have_vs = rc == 0 && m->vision_source && st_set_open(&vs, m->vision_source) == 0;
    if (m->vision_source && !have_vs) llava_clear_error();  // the tower's file is gone: export without them
    for (int e = 0; have_vs && e < vs.n_entries && rc == 0; e++) {
        const st_tensor *t = vs.entries[e];
        char *internal = NULL;
        weight_layout lay;
        if (name_to_internal(t->name, &internal, &lay) != NAME_MAPPED || !internal) {
            free(internal);
            continue;
        }
        const param_view *v = param_find(&m->pt, internal);
        free(internal);
        if (!v || v->used || v->group != GROUP_VISION || t->numel != v->numel) continue;
        extra = xrealloc(extra, sizeof(float *) * (size_t)(n_extra + 1));
        float *buf = extra[n_extra++] = xmalloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
        rc = st_tensor_to_f32(&vs.files[vs.file_of[e]], t, buf);
        char *ext = name_from_internal(v->name, LAYOUT_LLAVA_HF_LEGACY, 0);
        if (rc == 0) rc = st_writer_add_f32(&w, ext, dtype, v->ndim, v->shape, buf);
        free(ext);
    }
    st_writer_meta(&w, "format", "pt");
    char *wpath = path_join(dir, "model.safetensors");
    if (rc == 0) rc = st_writer_save(&w, wpath);
    free(wpath);
    st_writer_free(&w);
    if (have_vs) st_set_close(&vs);
    for (int k = 0; k < n_extra; k++) free(extra[k]);
    free(extra);
    free(embed);
    free(head);
    for (int g = 0; g < N_GROUPS; g++) free(host[g]);
    if (rc != 0) return rc;

    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    int variant = export_is_llava_c(c), next = c->glue.anyres;
    cJSON_AddItemToArray(arch, cJSON_CreateString(variant ? "LlavaCForConditionalGeneration"
                                                  : next  ? "LlavaNextForConditionalGeneration"
                                                          : "LlavaForConditionalGeneration"));
    cJSON_AddStringToObject(j, "model_type", variant ? "llava_c" : next ? "llava_next" : "llava");
    if (next) {  // LlavaNextConfig: the tile grids, each (height, width) as transformers reads them
        cJSON *pp = cJSON_AddArrayToObject(j, "image_grid_pinpoints");
        for (int k = 0; k < c->glue.pinpoints.n; k++) {
            int hw[2] = {c->glue.pinpoints.res[k][0], c->glue.pinpoints.res[k][1]};
            cJSON_AddItemToArray(pp, cJSON_CreateIntArray(hw, 2));
        }
        // anyres_max_N under LlavaOnevisionConfig's key (model/config.c reads it back). transformers' LlavaNext
        // ignores it and would lay out the uncapped features: such an export is for llava.c and LLaVA-NeXT's code.
        if (c->glue.pinpoints.max_num_patches > 0) {
            char v[32];
            snprintf(v, sizeof v, "anyres_max_%d", c->glue.pinpoints.max_num_patches);
            cJSON_AddStringToObject(j, "vision_aspect_ratio", v);
        }
    }
    if (variant) {
        char pn[24];
        cJSON_AddStringToObject(j, "mm_projector_type", llava_projector_name(c->glue.projector_depth, pn));
        if (c->glue.pool_mode != POOL_NONE) {
            cJSON_AddStringToObject(j, "mm_spatial_pool_mode", llava_pool_name(c->glue.pool_mode));
            cJSON_AddNumberToObject(j, "mm_spatial_pool_stride", c->glue.pool_stride);
        }
        if (c->glue.keep_tokens) cJSON_AddNumberToObject(j, "mm_vision_keep_tokens", c->glue.keep_tokens);
        if (c->glue.video_pool_mode != POOL_NONE) {  // video frames only: LlavaNextVideoConfig's names
            cJSON_AddStringToObject(j, "spatial_pool_mode", llava_pool_name(c->glue.video_pool_mode));
            cJSON_AddNumberToObject(j, "spatial_pool_stride", c->glue.video_pool_stride);
            if (c->glue.video_token_index >= 0)
                cJSON_AddNumberToObject(j, "video_token_index", c->glue.video_token_index);
        }
    }
    cJSON_AddNumberToObject(j, "image_token_index", image_id);
    if (pad_id >= 0) cJSON_AddNumberToObject(j, "pad_token_id", pad_id);
    cJSON_AddStringToObject(j, "projector_hidden_act", "gelu");
    cJSON_AddNumberToObject(j, "vision_feature_layer", c->glue.vision_feature_layer);
    cJSON_AddStringToObject(j, "vision_feature_select_strategy", c->glue.drop_cls ? "default" : "full");
    cJSON_AddNumberToObject(j, "image_seq_length", m->tokens_per_image);
    cJSON_AddBoolToObject(j, "multimodal_projector_bias", c->glue.projector_bias);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", 0);
    cJSON_AddStringToObject(j, "torch_dtype", dtype == DT_F32 ? "float32" : dtype == DT_BF16 ? "bfloat16" : "float16");
    cJSON_AddItemToObject(j, "text_config", text_config_json(&c->text, V_out));
    cJSON_AddItemToObject(j, "vision_config", vision_config_json(&c->vision));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    char *cpath = path_join(dir, "config.json");
    rc = write_file_atomic(cpath, text, strlen(text));
    free(cpath);
    free(text);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// The processor and tokenizer files (export.h).

// LLaVA-1.5's vicuna_v1 conversation (llava/conversation.py conv_vicuna_v1, sep " ", sep2 "</s>"):
// "SYSTEM USER: <image>\nQUESTION ASSISTANT: ANSWER</s>USER: ... ASSISTANT:". Messages are
// transformers' chat format: content a string, or a list of {"type": "image"} and {"type": "text",
// "text": ...} items (images first, as LLaVA puts "<image>\n" before the question). A first "system"
// message replaces the system prompt.
static const char VICUNA_V1_JINJA[] =
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set system_message = messages[0]['content'] -%}"
    "{%- else -%}{%- set system_message = messages[0]['content'][0]['text'] -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system_message = \"A chat between a curious user and an artificial intelligence assistant. The "
    "assistant gives helpful, detailed, and polite answers to the user's questions.\" -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{{- system_message + ' ' -}}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}{{- 'USER: ' -}}{%- else -%}{{- 'ASSISTANT: ' -}}{%- endif -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}{%- if item['type'] == 'image' -%}{{- '<image>\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- for item in message['content'] -%}{%- if item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'user' -%}{{- ' ' -}}{%- else -%}{{- '</s>' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}";

static cJSON *added_token(const char *content) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "content", content);
    cJSON_AddBoolToObject(t, "lstrip", 0);
    cJSON_AddBoolToObject(t, "normalized", 0);
    cJSON_AddBoolToObject(t, "rstrip", 0);
    cJSON_AddBoolToObject(t, "single_word", 0);
    cJSON_AddBoolToObject(t, "special", 1);
    return t;
}

static int write_json(const char *dir, const char *name, cJSON *j) {
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    size_t n = strlen(text);
    text = xrealloc(text, n + 2);
    text[n] = '\n', text[n + 1] = 0;
    char *path = path_join(dir, name);
    int rc = write_file_atomic(path, text, n + 1);
    free(path);
    free(text);
    return rc;
}

static cJSON *number_array(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

// The processor's files beside the tokenizer's: preprocessor_config.json, processor_config.json and, when the
// template has one, chat_template.json.
static int export_processor_files(const llava_model *m, const char *dir, const char *chat_template) {
    const model_config *c = &m->cfg;
    int rc = 0;
    // preprocessor_config.json: LLaVA-1.5's CLIPImageProcessor (openai/clip-vit-large-patch14-336's), at
    // the tower's image size. It crops; LLaVA-1.5's pad mode pads to a square first (docs/export.md).
    // A SigLIP tower's: SiglipImageProcessor as google/siglip-so400m-patch14-384 configures it (both sides resized
    // to S, no crop, mean and std 0.5).
    int S = c->vision.image_size, siglip = c->vision.siglip;
    static const double clip_mean[3] = {0.48145466, 0.4578275, 0.40821073},
                        clip_std[3] = {0.26862954, 0.26130258, 0.27577711}, half[3] = {0.5, 0.5, 0.5};
    const double *mean = siglip ? half : clip_mean, *std = siglip ? half : clip_std;
    cJSON *pp = cJSON_CreateObject();
    if (!siglip) {
        cJSON *crop = cJSON_AddObjectToObject(pp, "crop_size");
        cJSON_AddNumberToObject(crop, "height", S);
        cJSON_AddNumberToObject(crop, "width", S);
        cJSON_AddBoolToObject(pp, "do_center_crop", 1);
    }
    cJSON_AddBoolToObject(pp, "do_convert_rgb", 1);
    cJSON_AddBoolToObject(pp, "do_normalize", 1);
    cJSON_AddBoolToObject(pp, "do_rescale", 1);
    cJSON_AddBoolToObject(pp, "do_resize", 1);
    cJSON_AddItemToObject(pp, "image_mean", number_array(mean, 3));
    // AnyRes: LlavaNextImageProcessor (CLIP's settings and the tile grids) and LlavaNextProcessor.
    int next = c->glue.anyres;
    const char *proc_class = next ? "LlavaNextProcessor" : "LlavaProcessor";
    cJSON_AddStringToObject(pp, "image_processor_type",
                            next     ? "LlavaNextImageProcessor"
                            : siglip ? "SiglipImageProcessor"
                                     : "CLIPImageProcessor");
    if (next) {
        cJSON *gp = cJSON_AddArrayToObject(pp, "image_grid_pinpoints");
        for (int k = 0; k < c->glue.pinpoints.n; k++) {
            int hw[2] = {c->glue.pinpoints.res[k][0], c->glue.pinpoints.res[k][1]};
            cJSON_AddItemToArray(gp, cJSON_CreateIntArray(hw, 2));
        }
        cJSON_AddBoolToObject(pp, "do_pad", 1);
    }
    cJSON_AddItemToObject(pp, "image_std", number_array(std, 3));
    cJSON_AddStringToObject(pp, "processor_class", proc_class);
    cJSON_AddNumberToObject(pp, "resample", 3);  // PIL's BICUBIC
    cJSON_AddNumberToObject(pp, "rescale_factor", 1.0 / 255.0);
    cJSON *size = cJSON_AddObjectToObject(pp, "size");
    if (siglip) {
        cJSON_AddNumberToObject(size, "height", S);
        cJSON_AddNumberToObject(size, "width", S);
    } else {
        cJSON_AddNumberToObject(size, "shortest_edge", S);
    }
    if (rc == 0) rc = write_json(dir, "preprocessor_config.json", pp);
    else cJSON_Delete(pp);

    // processor_config.json: how LlavaProcessor expands "<image>" (one token per visual feature):
    // (S / patch)^2 + num_additional_image_tokens, less one under "default" (CLS dropped). transformers
    // 4.46 adds the 1 itself and reports the key as unused; 4.47 and later read it (0 for SigLIP, which has no
    // class token: 4.46's processor counts one token too many for it).
    cJSON *pc = cJSON_CreateObject();
    cJSON_AddStringToObject(pc, "image_token", "<image>");
    cJSON_AddNumberToObject(pc, "num_additional_image_tokens", vision_has_cls(&c->vision));
    cJSON_AddNumberToObject(pc, "patch_size", c->vision.patch_size);
    cJSON_AddStringToObject(pc, "processor_class", proc_class);
    cJSON_AddStringToObject(pc, "vision_feature_select_strategy", c->glue.drop_cls ? "default" : "full");
    if (rc == 0) rc = write_json(dir, "processor_config.json", pc);
    else cJSON_Delete(pc);

    if (chat_template) {
        cJSON *ct = cJSON_CreateObject();
        cJSON_AddStringToObject(ct, "chat_template", chat_template);
        if (rc == 0) rc = write_json(dir, "chat_template.json", ct);
        else cJSON_Delete(ct);
    }
    return rc;
}

// A Jinja string literal of s: '...' with quotes, backslashes and line breaks escaped.
static void jinja_lit(strbuf *o, const char *s, size_t n) {
    sb_put(o, "'", 1);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\'' || c == '\\') sb_put(o, "\\", 1);
        if (c == '\n') sb_put(o, "\\n", 2);
        else if (c == '\r') sb_put(o, "\\r", 2);
        else if (c == '\t') sb_put(o, "\\t", 2);
        else sb_put(o, &c, 1);
    }
    sb_put(o, "'", 1);
}

// `{{- fmt -}}` with {system}, {role} and {message} as the Jinja expressions given.
static void jinja_fmt(strbuf *o, const char *fmt, const char *sys, const char *role, const char *msg) {
    sb_puts(o, "{{- ''");
    const char *p = fmt, *lit = fmt;
    for (; *p; p++) {
        const char *expr = !strncmp(p, "{system}", 8)    ? sys
                           : !strncmp(p, "{role}", 6)    ? role
                           : !strncmp(p, "{message}", 9) ? msg
                                                         : NULL;
        if (!expr) continue;
        if (p > lit) {
            sb_puts(o, " + ");
            jinja_lit(o, lit, (size_t)(p - lit));
        }
        sb_puts(o, " + ");
        sb_puts(o, expr);
        p += expr == sys ? 7 : expr == role ? 5 : 8;
        lit = p + 1;
    }
    if (p > lit) {
        sb_puts(o, " + ");
        jinja_lit(o, lit, (size_t)(p - lit));
    }
    sb_puts(o, " -}}");
}

// A messages template (template.h: llava_llama_3, qwen_1_5) as a chat template transformers' processors render:
// the template's system message unless the first message is a system one, each message's images as "<image>\n"
// before its text, the generation prompt with add_generation_prompt.
static char *messages_jinja(const conv_template *t) {
    strbuf o = {0};
    const char *tr = t->trim_message ? " | trim" : "";
    sb_puts(&o,
            "{%- if messages[0]['role'] == 'system' -%}"
            "{%- if messages[0]['content'] is string -%}{%- set system_message = messages[0]['content'] -%}"
            "{%- else -%}{%- set system_message = messages[0]['content'][0]['text'] -%}{%- endif -%}"
            "{%- set loop_messages = messages[1:] -%}"
            "{%- else -%}{%- set system_message = ");
    jinja_lit(&o, t->system, strlen(t->system));
    sb_puts(&o, " -%}{%- set loop_messages = messages -%}{%- endif -%}");
    char *sys = xasprintf("(system_message%s)", tr);
    jinja_fmt(&o, t->prefix, sys, "'system'", "''");
    free(sys);
    sb_puts(&o,
            "{%- for message in loop_messages -%}"
            "{%- if message['content'] is string -%}{%- set text = message['content'] -%}"
            "{%- else -%}{%- set text = namespace(s='') -%}"
            "{%- for item in message['content'] -%}{%- if item['type'] == 'image' -%}"
            "{%- set text.s = text.s + '<image>\\n' -%}{%- endif -%}{%- endfor -%}"
            "{%- for item in message['content'] -%}{%- if item['type'] == 'text' -%}"
            "{%- set text.s = text.s + item['text'] -%}{%- endif -%}{%- endfor -%}"
            "{%- set text = text.s -%}{%- endif -%}");
    char *msg = xasprintf("(text%s)", tr);
    jinja_fmt(&o, t->turn[1], "''", "message['role']", msg);
    free(msg);
    sb_puts(&o, "{%- endfor -%}{%- if add_generation_prompt -%}");
    jinja_fmt(&o, t->generation_prompt ? t->generation_prompt : "", "''", "''", "''");
    sb_puts(&o, "{%- endif -%}");
    return o.p;
}

// A tokenizer.json run (byte-level BPE: Llama-3, Qwen2): the file with "<image>" (and "<pad>") added as special
// tokens at the export's ids, and a PreTrainedTokenizerFast tokenizer_config.json.
static int export_bpe_tokenizer(const char *dir, const export_processor_options *o, int image_id, int pad_id,
                                char **chat_template) {
    *chat_template = NULL;
    tokenizer *t = tok_load(o->tokenizer);  // and the tokenizer_config.json beside it: bos and eos
    if (!t) return llava_fail_ctx("export: the tokenizer %s", o->tokenizer);
    int limit = tok_n_pieces(t), bos_id = tok_bos_id(t), eos_id = tok_eos_id(t), stop_id = -1;
    const conv_template *tmpl = o->template_name ? conv_template_builtin(o->template_name) : NULL;
    if (tmpl && tmpl->stop_token) {
        size_t sl = strlen(tmpl->stop_token), pl = 0;
        int id = tok_piece_to_id(t, tmpl->stop_token, sl);
        const char *p = id >= 0 ? tok_id_to_piece(t, id, &pl) : NULL;
        if (p && pl == sl && memcmp(p, tmpl->stop_token, sl) == 0) stop_id = id;
    }
    char *names[2] = {NULL, NULL};  // bos, eos
    for (int k = 0; k < 2; k++) {
        size_t len = 0;
        int id = k == 0 ? bos_id : eos_id;
        const char *p = id >= 0 ? tok_id_to_piece(t, id, &len) : NULL;
        if (p) names[k] = xasprintf("%.*s", (int)len, p);
    }
    int rc = 0;
    const struct {
        int id;
        const char *s;
    } add[2] = {{image_id, "<image>"}, {pad_id, "<pad>"}};
    for (int k = 0; k < 2 && rc == 0; k++) {
        size_t len = 0;
        const char *p = add[k].id >= 0 ? tok_id_to_piece(t, add[k].id, &len) : NULL;
        if (p && (len != strlen(add[k].s) || memcmp(p, add[k].s, len) != 0))
            rc = llava_fail("export: the tokenizer %s has id %d as \"%.*s\", but the export's %s token is id %d",
                            o->tokenizer, add[k].id, (int)len, p, add[k].s, add[k].id);
    }
    tok_free(t);
    size_t len = 0;
    char *js = rc == 0 ? read_file(o->tokenizer, (size_t)256 << 20, &len) : NULL;
    cJSON *root = js ? cJSON_ParseWithLength(js, len) : NULL;
    free(js);
    if (rc == 0 && !root) rc = llava_fail("export: %s: not JSON", o->tokenizer);
    if (rc == 0) {
        cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
        if (!cJSON_IsArray(added)) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, "added_tokens");
            added = cJSON_AddArrayToObject(root, "added_tokens");
        }
        for (int k = 0; k < 2; k++) {
            if (add[k].id < limit || (k == 1 && add[k].id == image_id)) continue;  // already a token
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "id", add[k].id);
            cJSON *a = added_token(add[k].s);
            for (cJSON *f = a->child; f; f = f->next) cJSON_AddItemToObject(e, f->string, cJSON_Duplicate(f, 1));
            cJSON_Delete(a);
            cJSON_AddItemToArray(added, e);
        }
        char *text = cJSON_PrintUnformatted(root);
        char *path = path_join(dir, "tokenizer.json");
        rc = write_file_atomic(path, text, strlen(text));
        free(path);
        free(text);
    }
    cJSON_Delete(root);

    if (tmpl && tmpl->messages) *chat_template = messages_jinja(tmpl);
    cJSON *tc = cJSON_CreateObject();
    if (names[0]) cJSON_AddStringToObject(tc, "bos_token", names[0]);
    else cJSON_AddNullToObject(tc, "bos_token");
    if (*chat_template) cJSON_AddStringToObject(tc, "chat_template", *chat_template);
    cJSON_AddBoolToObject(tc, "clean_up_tokenization_spaces", 0);
    if (names[1]) cJSON_AddStringToObject(tc, "eos_token", names[1]);
    const char *inputs[2] = {"input_ids", "attention_mask"};  // no token_type_ids: the model takes none
    cJSON_AddItemToObject(tc, "model_input_names", cJSON_CreateStringArray(inputs, 2));
    cJSON_AddNumberToObject(tc, "model_max_length", o->model_max_length > 0 ? o->model_max_length : 2048);
    if (pad_id >= 0) cJSON_AddStringToObject(tc, "pad_token", pad_id == image_id ? "<image>" : "<pad>");
    cJSON_AddStringToObject(tc, "padding_side", "left");
    cJSON_AddStringToObject(tc, "processor_class", "LlavaProcessor");
    cJSON_AddStringToObject(tc, "tokenizer_class", "PreTrainedTokenizerFast");
    if (o->template_name) cJSON_AddStringToObject(tc, "llava_template", o->template_name);
    if (rc == 0) rc = write_json(dir, "tokenizer_config.json", tc);
    else cJSON_Delete(tc);
    // generation_config.json: transformers' generate stops at the tokenizer's eos and the template's end of turn
    // (config.json's eos is the language model's own, which a base model's may not be).
    int stops[2], ns = 0;
    if (eos_id >= 0) stops[ns++] = eos_id;
    if (stop_id >= 0 && stop_id != eos_id) stops[ns++] = stop_id;
    if (ns) {
        cJSON *gc = cJSON_CreateObject();
        if (bos_id >= 0) cJSON_AddNumberToObject(gc, "bos_token_id", bos_id);
        cJSON_AddItemToObject(gc, "eos_token_id",
                              ns == 1 ? cJSON_CreateNumber(stops[0]) : cJSON_CreateIntArray(stops, ns));
        if (pad_id >= 0) cJSON_AddNumberToObject(gc, "pad_token_id", pad_id);
        if (rc == 0) rc = write_json(dir, "generation_config.json", gc);
        else cJSON_Delete(gc);
    }
    free(names[0]);
    free(names[1]);
    return rc;
}

char *export_recorded_template(const char *dir) {
    char *path = path_join(dir, "tokenizer_config.json");
    size_t len = 0;
    char *js = file_exists(path) ? read_file(path, (size_t)16 << 20, &len) : NULL;
    free(path);
    cJSON *j = js ? cJSON_ParseWithLength(js, len) : NULL;
    free(js);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "llava_template");
    char *r = cJSON_IsString(t) ? xstrdup(t->valuestring) : NULL;
    cJSON_Delete(j);
    return r;
}

int export_llava_hf_processor(const llava_model *m, const char *dir, const export_processor_options *o) {
    if (!o || !o->tokenizer) return llava_fail("export: the processor files need the run's tokenizer.model");
    if (mkdir_p(dir) != 0) return -1;
    const model_config *c = &m->cfg;
    int image_id, pad_id, V_out;
    hf_vocab(c, &image_id, &pad_id, &V_out);
    tokenizer *probe = tok_load(o->tokenizer);
    int bpe = probe && tok_bpe(probe);
    tok_free(probe);
    char *chat = NULL;
    if (bpe) {
        int rc = export_bpe_tokenizer(dir, o, image_id, pad_id, &chat);
        if (rc == 0) rc = export_processor_files(m, dir, chat);
        free(chat);
        return rc;
    }
    size_t tok_len = 0;
    char *tok_bytes = read_file(o->tokenizer, (size_t)64 << 20, &tok_len);
    if (!tok_bytes) return llava_fail_ctx("export: the tokenizer");
    tokenizer *t = tok_load_mem(tok_bytes, tok_len);
    if (!t) {
        free(tok_bytes);
        return llava_fail_ctx("export: the tokenizer %s", o->tokenizer);
    }
    int n_pieces = tok_n_pieces(t);
    if (n_pieces > image_id) {
        tok_free(t);
        free(tok_bytes);
        return llava_fail("export: the tokenizer %s has %d pieces, but the export's <image> token is id %d",
                          o->tokenizer, n_pieces, image_id);
    }
    // The special pieces by their strings in the tokenizer ("<unk>", "<s>", "</s>" in LLaMA's).
    int ids[3] = {tok_unk_id(t), tok_bos_id(t), tok_eos_id(t)};
    char *names[3];
    for (int k = 0; k < 3; k++) {
        size_t len = 0;
        const char *p = tok_id_to_piece(t, ids[k], &len);
        names[k] = p ? xasprintf("%.*s", (int)len, p) : xstrdup(k == 0 ? "<unk>" : k == 1 ? "<s>" : "</s>");
    }
    tok_free(t);
    const char *unk = names[0], *bos = names[1], *eos = names[2];
    int vicuna = !o->template_name || !strcmp(o->template_name, "vicuna_v1") || !strcmp(o->template_name, "v1");
    char *tpath = path_join(dir, "tokenizer.model");
    int rc = write_file_atomic(tpath, tok_bytes, tok_len);
    free(tpath);
    free(tok_bytes);

    // tokenizer_config.json: the slow LlamaTokenizer's settings as llava-hf's folders write them.
    cJSON *tc = cJSON_CreateObject();
    cJSON_AddBoolToObject(tc, "add_bos_token", 1);
    cJSON_AddBoolToObject(tc, "add_eos_token", 0);
    cJSON *dec = cJSON_AddObjectToObject(tc, "added_tokens_decoder");
    char key[24];
    for (int k = 0; k < 3; k++) {
        snprintf(key, sizeof key, "%d", ids[k]);
        if (!cJSON_GetObjectItemCaseSensitive(dec, key)) cJSON_AddItemToObject(dec, key, added_token(names[k]));
    }
    snprintf(key, sizeof key, "%d", image_id);
    cJSON_AddItemToObject(dec, key, added_token("<image>"));
    if (pad_id >= 0 && pad_id != image_id) {
        snprintf(key, sizeof key, "%d", pad_id);
        cJSON_AddItemToObject(dec, key, added_token("<pad>"));
    }
    cJSON_AddStringToObject(tc, "bos_token", bos);
    if (vicuna) cJSON_AddStringToObject(tc, "chat_template", VICUNA_V1_JINJA);
    cJSON_AddBoolToObject(tc, "clean_up_tokenization_spaces", 0);
    cJSON_AddStringToObject(tc, "eos_token", eos);
    cJSON_AddBoolToObject(tc, "legacy", 0);
    cJSON_AddNumberToObject(tc, "model_max_length", o->model_max_length > 0 ? o->model_max_length : 2048);
    cJSON_AddStringToObject(tc, "pad_token", pad_id >= 0 ? "<pad>" : unk);
    cJSON_AddStringToObject(tc, "padding_side", "left");
    cJSON_AddStringToObject(tc, "processor_class", "LlavaProcessor");
    cJSON_AddObjectToObject(tc, "sp_model_kwargs");
    cJSON_AddStringToObject(tc, "tokenizer_class", "LlamaTokenizer");
    cJSON_AddStringToObject(tc, "unk_token", unk);
    cJSON_AddBoolToObject(tc, "use_default_system_prompt", 0);
    if (o->template_name) cJSON_AddStringToObject(tc, "llava_template", o->template_name);
    if (rc == 0) rc = write_json(dir, "tokenizer_config.json", tc);
    else cJSON_Delete(tc);

    cJSON *sm = cJSON_CreateObject();
    const char *special[4][2] = {
        {"bos_token", bos}, {"eos_token", eos}, {"pad_token", pad_id >= 0 ? "<pad>" : unk}, {"unk_token", unk}};
    for (int k = 0; k < 4; k++) {
        cJSON *e = added_token(special[k][1]);
        cJSON_DeleteItemFromObjectCaseSensitive(e, "special");
        cJSON_AddItemToObject(sm, special[k][0], e);
    }
    if (rc == 0) rc = write_json(dir, "special_tokens_map.json", sm);
    else cJSON_Delete(sm);

    if (rc == 0) rc = export_processor_files(m, dir, vicuna ? VICUNA_V1_JINJA : NULL);
    for (int k = 0; k < 3; k++) free(names[k]);
    return rc;
}
