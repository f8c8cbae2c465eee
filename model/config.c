#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

// LlamaConfig.__init__ defaults (configuration_llama.py).
void llama_config_defaults(llama_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 32000;
    c->hidden_size = 4096;
    c->intermediate_size = 11008;
    c->num_hidden_layers = 32;
    c->num_attention_heads = 32;
    c->num_key_value_heads = 0;  // None: same as heads, resolved after parsing
    c->head_dim = 0;             // None: hidden / heads
    c->max_position_embeddings = 2048;
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 10000.0;
    strcpy(c->hidden_act, "silu");
    c->bos_token_id = 1;
    c->eos_token_id = 2;
    c->pad_token_id = -1;
}

// CLIPVisionConfig.__init__ defaults (configuration_clip.py).
void clip_vision_config_defaults(clip_vision_config *c) {
    memset(c, 0, sizeof *c);
    c->hidden_size = 768;
    c->intermediate_size = 3072;
    c->projection_dim = 512;
    c->num_hidden_layers = 12;
    c->num_attention_heads = 12;
    c->num_channels = 3;
    c->image_size = 224;
    c->patch_size = 32;
    strcpy(c->hidden_act, "quick_gelu");
    c->layer_norm_eps = 1e-5f;
}

void siglip_vision_config_defaults(clip_vision_config *c) {
    clip_vision_config_defaults(c);  // the widths, depth, channels and image size are CLIPVisionConfig's too
    c->siglip = 1;
    c->projection_dim = 0;
    c->patch_size = 16;
    strcpy(c->hidden_act, "gelu_pytorch_tanh");
    c->layer_norm_eps = 1e-6f;
}

void clip_vision_config_llava_default(clip_vision_config *c) {
    clip_vision_config_defaults(c);
    c->intermediate_size = 4096;
    c->hidden_size = 1024;
    c->patch_size = 14;
    c->image_size = 336;
    c->num_hidden_layers = 24;
    c->num_attention_heads = 16;
    c->projection_dim = 768;
}

const char *hf_kind_name(hf_kind k) {
    switch (k) {
    case HF_LLAMA: return "LlamaForCausalLM";
    case HF_CLIP: return "CLIPModel";
    case HF_CLIP_VISION: return "CLIPVisionModel";
    case HF_LLAVA_HF: return "LlavaForConditionalGeneration (llava-hf)";
    case HF_LLAVA_ORIGINAL: return "LlavaLlamaForCausalLM (original LLaVA)";
    }
    return "?";
}

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        if ((x) < 0) return -1;                                                                                        \
    } while (0)

static int parse_llama(const cJSON *o, const char *where, llama_config *c) {
    llama_config_defaults(c);
    TRY(json_int(o, "vocab_size", &c->vocab_size, where));
    TRY(json_int(o, "hidden_size", &c->hidden_size, where));
    TRY(json_int(o, "intermediate_size", &c->intermediate_size, where));
    TRY(json_int(o, "num_hidden_layers", &c->num_hidden_layers, where));
    TRY(json_int(o, "num_attention_heads", &c->num_attention_heads, where));
    TRY(json_int(o, "num_key_value_heads", &c->num_key_value_heads, where));
    TRY(json_int(o, "head_dim", &c->head_dim, where));
    TRY(json_int(o, "max_position_embeddings", &c->max_position_embeddings, where));
    TRY(json_float(o, "rms_norm_eps", &c->rms_norm_eps, where));
    TRY(json_double(o, "rope_theta", &c->rope_theta, where));
    TRY(json_str(o, "hidden_act", c->hidden_act, sizeof c->hidden_act, where));
    TRY(json_bool(o, "tie_word_embeddings", &c->tie_word_embeddings, where));
    TRY(json_bool(o, "attention_bias", &c->attention_bias, where));
    TRY(json_bool(o, "mlp_bias", &c->mlp_bias, where));
    TRY(json_int(o, "bos_token_id", &c->bos_token_id, where));
    TRY(json_int(o, "eos_token_id", &c->eos_token_id, where));
    TRY(json_int(o, "pad_token_id", &c->pad_token_id, where));
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "rope_scaling");
    c->has_rope_scaling = rs && !cJSON_IsNull(rs);
    if (c->has_rope_scaling) {
        char type[32] = "";
        TRY(json_str(rs, "rope_type", type, sizeof type, where));
        if (!type[0]) TRY(json_str(rs, "type", type, sizeof type, where));
        if (strcmp(type, "llama3") == 0) {
            c->rope_llama3 = 1;
            c->rope_factor = 8, c->rope_low_freq_factor = 1, c->rope_high_freq_factor = 4, c->rope_original_max = 8192;
            TRY(json_double(rs, "factor", &c->rope_factor, where));
            TRY(json_double(rs, "low_freq_factor", &c->rope_low_freq_factor, where));
            TRY(json_double(rs, "high_freq_factor", &c->rope_high_freq_factor, where));
            TRY(json_int(rs, "original_max_position_embeddings", &c->rope_original_max, where));
            if (!(c->rope_factor > 0 && c->rope_high_freq_factor > c->rope_low_freq_factor &&
                  c->rope_low_freq_factor > 0 && c->rope_original_max > 0))
                return llava_fail(
                    "%s: rope_scaling llama3 with factor %g, low_freq_factor %g, high_freq_factor %g, "
                    "original_max_position_embeddings %d",
                    where, c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max);
        }
    }
    // The families: LLaMA (vicuna, Llama-3), Mistral (a sliding window) and Qwen2 (q/k/v biases).
    strcpy(c->model_type, "llama");
    TRY(json_str(o, "model_type", c->model_type, sizeof c->model_type, where));
    // Original LLaVA's configs are LlamaConfig with model_type "llava".
    if (strcmp(c->model_type, "llava") == 0 || strcmp(c->model_type, "llava_llama") == 0)
        strcpy(c->model_type, "llama");
    if (strcmp(c->model_type, "llama") != 0 && strcmp(c->model_type, "mistral") != 0 &&
        strcmp(c->model_type, "qwen2") != 0)
        return llava_fail("%s: language model_type \"%s\" is not supported (llama, mistral, qwen2)", where,
                          c->model_type);
    if (strcmp(c->model_type, "qwen2") == 0) {
        c->qkv_bias = 1;
        int use_window = 0;
        TRY(json_bool(o, "use_sliding_window", &use_window, where));
        if (use_window) return llava_fail("%s: Qwen2's use_sliding_window is not supported", where);
    }
    if (strcmp(c->model_type, "mistral") == 0) TRY(json_int(o, "sliding_window", &c->sliding_window, where));
    if (c->num_attention_heads <= 0 || c->hidden_size <= 0 || c->num_hidden_layers < 0 || c->vocab_size <= 0 ||
        c->intermediate_size <= 0)
        return llava_fail("%s: language model sizes must be positive", where);
    if (c->num_key_value_heads == 0) c->num_key_value_heads = c->num_attention_heads;
    if (c->head_dim == 0) {
        if (c->hidden_size % c->num_attention_heads != 0)
            return llava_fail("%s: hidden_size %d is not divisible by num_attention_heads %d", where, c->hidden_size,
                              c->num_attention_heads);
        c->head_dim = c->hidden_size / c->num_attention_heads;
    }
    if (c->num_key_value_heads <= 0 || c->num_attention_heads % c->num_key_value_heads != 0)
        return llava_fail("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", where,
                          c->num_attention_heads, c->num_key_value_heads);
    return 0;
}

static int parse_clip_vision(const cJSON *o, const char *where, clip_vision_config *c) {
    TRY(json_int(o, "hidden_size", &c->hidden_size, where));
    TRY(json_int(o, "intermediate_size", &c->intermediate_size, where));
    TRY(json_int(o, "num_hidden_layers", &c->num_hidden_layers, where));
    TRY(json_int(o, "num_attention_heads", &c->num_attention_heads, where));
    TRY(json_int(o, "num_channels", &c->num_channels, where));
    TRY(json_int(o, "image_size", &c->image_size, where));
    TRY(json_int(o, "patch_size", &c->patch_size, where));
    TRY(json_int(o, "projection_dim", &c->projection_dim, where));
    TRY(json_str(o, "hidden_act", c->hidden_act, sizeof c->hidden_act, where));
    TRY(json_float(o, "layer_norm_eps", &c->layer_norm_eps, where));
    if (c->hidden_size <= 0 || c->num_attention_heads <= 0 || c->hidden_size % c->num_attention_heads != 0)
        return llava_fail("%s: vision hidden_size %d must be a positive multiple of num_attention_heads %d", where,
                          c->hidden_size, c->num_attention_heads);
    if (c->patch_size <= 0 || c->image_size <= 0 || c->image_size % c->patch_size != 0)
        return llava_fail("%s: vision image_size %d is not a multiple of patch_size %d", where, c->image_size,
                          c->patch_size);
    if (c->num_hidden_layers <= 0 || c->intermediate_size <= 0 || c->num_channels <= 0)
        return llava_fail("%s: vision sizes must be positive", where);
    return 0;
}

// Vision towers that original-LLaVA configs name by hub id. Their shapes are facts of the
// published checkpoints, so a config alone can be inspected without the tower's folder.
static int vision_from_known_name(const char *name, clip_vision_config *c) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (strcmp(base, "clip-vit-large-patch14-336") == 0) {
        clip_vision_config_llava_default(c);
        return 1;
    }
    if (strcmp(base, "clip-vit-large-patch14") == 0) {
        clip_vision_config_llava_default(c);
        c->image_size = 224;
        return 1;
    }
    return 0;
}

static void glue_defaults(llava_glue_config *g) {
    memset(g, 0, sizeof *g);
    g->image_token_index = 32000;
    strcpy(g->projector_hidden_act, "gelu");
    g->projector_depth = 2;
    g->projector_bias = 1;
    g->pool_mode = POOL_NONE;
    g->pool_stride = 2;  // LLaVA-NeXT's default mm_spatial_pool_stride
    g->video_pool_mode = POOL_NONE;
    g->video_pool_stride = 2;  // LlavaNextVideoConfig's default spatial_pool_stride
    g->video_token_index = -1;
    g->vision_feature_layer = -2;
    g->drop_cls = 1;
    g->image_seq_length = 576;
    g->pad_token_id = -1;
}

int model_config_llava15(const char *size, model_config *mc) {
    int b13 = strcmp(size, "13b") == 0;
    if (!b13 && strcmp(size, "7b") != 0) return llava_fail("LLaVA-1.5 comes in 7b and 13b, not \"%s\"", size);
    memset(mc, 0, sizeof *mc);
    mc->kind = HF_LLAVA_ORIGINAL;
    mc->has_text = mc->has_vision = mc->has_projector = 1;
    llama_config_defaults(&mc->text);  // LlamaConfig's defaults are LLaMA-7B's shapes
    mc->text.rms_norm_eps = 1e-5f;
    mc->text.max_position_embeddings = 4096;
    if (b13) {
        mc->text.hidden_size = 5120;
        mc->text.intermediate_size = 13824;
        mc->text.num_hidden_layers = 40;
        mc->text.num_attention_heads = 40;
    }
    mc->text.num_key_value_heads = mc->text.num_attention_heads;
    mc->text.head_dim = mc->text.hidden_size / mc->text.num_attention_heads;
    clip_vision_config_llava_default(&mc->vision);  // CLIP ViT-L/14-336
    glue_defaults(&mc->glue);
    mc->glue.image_token_index = -200;
    snprintf(mc->glue.image_aspect_ratio, sizeof mc->glue.image_aspect_ratio, "pad");
    return 0;
}

// LLaVA-NeXT's mm_spatial_pool_mode / mm_spatial_pool_stride, and mm_vision_keep_tokens.
static int parse_reduction(const cJSON *o, const char *where, llava_glue_config *g) {
    char mode[32] = "none";
    TRY(json_str(o, "mm_spatial_pool_mode", mode, sizeof mode, where));
    if (llava_pool_parse(mode, &g->pool_mode)) return llava_fail_ctx("%s", where);
    TRY(json_int(o, "mm_spatial_pool_stride", &g->pool_stride, where));
    TRY(json_int(o, "mm_vision_keep_tokens", &g->keep_tokens, where));
    // Video frames only: LlavaNextVideoConfig's names (transformers pools the frames before the projector).
    char vmode[32] = "none";
    TRY(json_str(o, "spatial_pool_mode", vmode, sizeof vmode, where));
    if (strcmp(vmode, "none") != 0 && strcmp(vmode, "average") != 0 && strcmp(vmode, "max") != 0)
        return llava_fail("%s: spatial_pool_mode \"%s\" is not supported (average, max; none: no video pooling)", where,
                          vmode);
    if (llava_pool_parse(vmode, &g->video_pool_mode)) return llava_fail_ctx("%s", where);
    TRY(json_int(o, "spatial_pool_stride", &g->video_pool_stride, where));
    TRY(json_int(o, "video_token_index", &g->video_token_index, where));
    return 0;
}

static int parse_original_glue(const cJSON *o, const char *where, model_config *mc) {
    llava_glue_config *g = &mc->glue;
    glue_defaults(g);
    g->image_token_index = -200;  // IMAGE_TOKEN_INDEX: a sentinel spliced out, never embedded
    char ptype[32] = "linear";    // build_vision_projector's default
    TRY(json_str(o, "mm_projector_type", ptype, sizeof ptype, where));
    if (llava_projector_parse(ptype, &g->projector_depth)) return llava_fail_ctx("%s", where);
    // (LLaVA-NeXT's mm_spatial_pool_* keys in such a config apply to video frames after the projector: not read.)
    TRY(json_int(o, "mm_vision_select_layer", &g->vision_feature_layer, where));
    char feat[32] = "patch";
    TRY(json_str(o, "mm_vision_select_feature", feat, sizeof feat, where));
    if (strcmp(feat, "patch") == 0) g->drop_cls = 1;
    else if (strcmp(feat, "cls_patch") == 0) g->drop_cls = 0;
    else return llava_fail("%s: mm_vision_select_feature \"%s\" is not patch or cls_patch", where, feat);
    TRY(json_str(o, "image_aspect_ratio", g->image_aspect_ratio, sizeof g->image_aspect_ratio, where));
    int flag = 0;
    TRY(json_bool(o, "mm_use_im_start_end", &flag, where));
    if (flag) return llava_fail("%s: mm_use_im_start_end=true is not supported (LLaVA-1.5 uses false)", where);
    TRY(json_str(o, "mm_vision_tower", mc->vision_tower_name, sizeof mc->vision_tower_name, where));
    if (!mc->vision_tower_name[0])
        TRY(json_str(o, "vision_tower", mc->vision_tower_name, sizeof mc->vision_tower_name, where));
    clip_vision_config_llava_default(&mc->vision);
    if (mc->vision_tower_name[0] && vision_from_known_name(mc->vision_tower_name, &mc->vision)) {
        mc->has_vision = 1;
        mc->vision_from_name = 1;
    }
    int mm_hidden = 0;
    TRY(json_int(o, "mm_hidden_size", &mm_hidden, where));
    if (mc->has_vision && mm_hidden && mm_hidden != mc->vision.hidden_size)
        return llava_fail("%s: mm_hidden_size %d does not match the vision tower %s (hidden %d)", where, mm_hidden,
                          mc->vision_tower_name, mc->vision.hidden_size);
    mc->has_projector = 1;
    if (mc->has_vision) g->image_seq_length = llava_tokens_per_image(mc);
    return 0;
}

static int parse_llava_hf(const cJSON *o, const char *where, model_config *mc) {
    llava_glue_config *g = &mc->glue;
    glue_defaults(g);
    if (strcmp(mc->model_type, "llava_c") == 0) {  // a variant transformers' Llava cannot run: its keys
        char ptype[32] = "mlp2x_gelu";
        TRY(json_str(o, "mm_projector_type", ptype, sizeof ptype, where));
        if (llava_projector_parse(ptype, &g->projector_depth)) return llava_fail_ctx("%s", where);
        TRY(parse_reduction(o, where, g));
    }
    TRY(json_int(o, "image_token_index", &g->image_token_index, where));
    TRY(json_int(o, "image_token_id", &g->image_token_index, where));
    TRY(json_str(o, "projector_hidden_act", g->projector_hidden_act, sizeof g->projector_hidden_act, where));
    if (strcmp(g->projector_hidden_act, "gelu") != 0)
        return llava_fail("%s: projector_hidden_act \"%s\" is not supported (gelu)", where, g->projector_hidden_act);
    const cJSON *vfl = cJSON_GetObjectItemCaseSensitive(o, "vision_feature_layer");
    if (cJSON_IsArray(vfl)) return llava_fail("%s: a list of vision_feature_layer values is not supported", where);
    TRY(json_int(o, "vision_feature_layer", &g->vision_feature_layer, where));
    char strat[32] = "default";
    TRY(json_str(o, "vision_feature_select_strategy", strat, sizeof strat, where));
    if (strcmp(strat, "default") == 0) g->drop_cls = 1;
    else if (strcmp(strat, "full") == 0) g->drop_cls = 0;
    else return llava_fail("%s: vision_feature_select_strategy \"%s\" is not default or full", where, strat);
    TRY(json_int(o, "image_seq_length", &g->image_seq_length, where));
    TRY(json_bool(o, "multimodal_projector_bias", &g->projector_bias, where));
    TRY(json_int(o, "pad_token_id", &g->pad_token_id, where));
    TRY(json_str(o, "image_aspect_ratio", g->image_aspect_ratio, sizeof g->image_aspect_ratio, where));

    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(o, "text_config");
    if (tc && !cJSON_IsNull(tc)) {
        if (!cJSON_IsObject(tc)) return llava_fail("%s: text_config is not an object", where);
        // parse_llama checks the model_type (llama, mistral, qwen2). Keys a text_config leaves out
        // are LlamaConfig's defaults: LlavaConfig saves its text_config as a diff against those.
        char *w = xasprintf("%s: text_config", where);
        int rc = parse_llama(tc, w, &mc->text);
        free(w);
        TRY(rc);
    } else {
        llama_config_defaults(&mc->text);
        mc->text.num_key_value_heads = mc->text.num_attention_heads;
        mc->text.head_dim = mc->text.hidden_size / mc->text.num_attention_heads;
    }
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(o, "vision_config");
    if (vc && !cJSON_IsNull(vc)) {
        if (!cJSON_IsObject(vc)) return llava_fail("%s: vision_config is not an object", where);
        char mt[32] = "clip_vision_model";
        TRY(json_str(vc, "model_type", mt, sizeof mt, where));
        if (strcmp(mt, "siglip_vision_model") == 0) siglip_vision_config_defaults(&mc->vision);
        else if (strcmp(mt, "clip_vision_model") == 0) clip_vision_config_defaults(&mc->vision);
        else
            return llava_fail(
                "%s: vision_config model_type \"%s\" is not supported (clip_vision_model, siglip_vision_model)", where,
                mt);
        char *w = xasprintf("%s: vision_config", where);
        int rc = parse_clip_vision(vc, w, &mc->vision);
        free(w);
        TRY(rc);
    } else {
        clip_vision_config_llava_default(&mc->vision);
    }
    mc->has_text = mc->has_vision = mc->has_projector = 1;
    if (strcmp(mc->model_type, "llava_c") == 0) {
        int run = 0;
        TRY(json_int(o, "mm_vision_image_size", &run, where));
        if (run && vision_run_at(&mc->vision, run) != 0) return llava_fail_ctx("%s", where);
    }
    return 0;
}

// image_grid_pinpoints ([[h, w], ...]) of a llava_next config; the unpad merge needs the patch grid without CLS.
static int parse_anyres(const cJSON *o, const char *where, model_config *mc) {
    llava_glue_config *g = &mc->glue;
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(o, "image_grid_pinpoints");
    if (!cJSON_IsArray(pp) || cJSON_GetArraySize(pp) == 0)
        return llava_fail("%s: a llava_next config without image_grid_pinpoints", where);
    if (cJSON_GetArraySize(pp) > IMAGE_ANYRES_MAX_PINPOINTS)
        return llava_fail("%s: more than %d image_grid_pinpoints", where, IMAGE_ANYRES_MAX_PINPOINTS);
    g->pinpoints.n = 0;
    for (const cJSON *e = pp->child; e; e = e->next) {  // [height, width] each, as transformers reads them
        const cJSON *h = cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 ? e->child : NULL, *w = h ? h->next : NULL;
        if (!h || !cJSON_IsNumber(h) || !cJSON_IsNumber(w) || h->valuedouble < 1 || w->valuedouble < 1 ||
            h->valuedouble > 1 << 20 || w->valuedouble > 1 << 20 || h->valuedouble != (int)h->valuedouble ||
            w->valuedouble != (int)w->valuedouble)
            return llava_fail("%s: image_grid_pinpoints entry %d is not [height, width] in positive pixels", where,
                              g->pinpoints.n);
        g->pinpoints.res[g->pinpoints.n][0] = h->valueint;
        g->pinpoints.res[g->pinpoints.n][1] = w->valueint;
        g->pinpoints.n++;
    }
    if (!g->drop_cls)
        return llava_fail(
            "%s: AnyRes with vision_feature_select_strategy \"full\" (LLaVA-NeXT's merge views each tile's "
            "features as its patch grid: \"default\" only)",
            where);
    if (g->pool_mode != POOL_NONE || g->keep_tokens)
        return llava_fail("%s: AnyRes with a visual-token reduction is not supported", where);
    if (mc->vision.siglip)
        return llava_fail("%s: AnyRes with a SigLIP tower is not supported (CLIP's processor)", where);
    // anyres_max_N: transformers' LlavaOnevisionConfig key (vision_aspect_ratio), else LLaVA-NeXT's
    // (image_aspect_ratio, as its training scripts write it); "anyres" or any other value: no cap.
    char var[32] = "";
    TRY(json_str(o, "vision_aspect_ratio", var, sizeof var, where));
    const char *ar = var[0] ? var : g->image_aspect_ratio;
    g->pinpoints.max_num_patches = 0;
    if (strncmp(ar, "anyres_max_", 11) == 0 && (g->pinpoints.max_num_patches = llava_anyres_max_parse(ar)) <= 0)
        return llava_fail("%s: %s \"%s\" is not anyres_max_N with N a positive integer", where,
                          var[0] ? "vision_aspect_ratio" : "image_aspect_ratio", ar);
    g->anyres = 1;
    return 0;
}

int llava_anyres_max_parse(const char *s) {
    if (strncmp(s, "anyres_max_", 11) != 0) return 0;
    const char *p = s + 11;
    long n = 0;
    if (*p < '1' || *p > '9') return -1;  // re.match(r"anyres_max_(\d+)") would take 0 and leading zeros; N >= 1 here
    for (; *p >= '0' && *p <= '9'; p++)
        if ((n = n * 10 + (*p - '0')) > 1000000) return -1;
    return *p ? -1 : (int)n;
}

int vision_run_at(clip_vision_config *v, int size) {
    if (size == v->image_size) return 0;
    if (size <= 0 || v->patch_size <= 0 || size % v->patch_size)
        return llava_fail("mm_vision_image_size %d is not a positive multiple of the tower's patch %d", size,
                          v->patch_size);
    if (!v->pos_grid) v->pos_grid = v->image_size / v->patch_size;
    v->image_size = size;
    return 0;
}

int model_config_parse(const char *text, size_t len, const char *path, model_config *out) {
    memset(out, 0, sizeof *out);
    cJSON *o = cJSON_ParseWithLength(text, len);
    if (!o) return llava_fail("%s: not valid JSON", path);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return llava_fail("%s: not a JSON object", path);
    }
    int rc = json_str(o, "model_type", out->model_type, sizeof out->model_type, path);
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(o, "architectures");
    if (cJSON_IsArray(arch) && cJSON_IsString(arch->child)) {
        snprintf(out->architecture, sizeof out->architecture, "%s", arch->child->valuestring);
    }
    const char *mt = out->model_type;
    int has_mm = cJSON_GetObjectItemCaseSensitive(o, "mm_vision_tower") != NULL ||
                 cJSON_GetObjectItemCaseSensitive(o, "mm_projector_type") != NULL ||
                 strcmp(out->architecture, "LlavaLlamaForCausalLM") == 0;
    if (rc < 0) {
        // already failed
    } else if ((strcmp(mt, "llava") == 0 || strcmp(mt, "llava_llama") == 0) && has_mm) {
        // The released LLaVA-1.5 configs say model_type "llava" but are LlamaConfig plus mm_* keys.
        out->kind = HF_LLAVA_ORIGINAL;
        rc = parse_llama(o, path, &out->text);
        if (rc == 0) rc = parse_original_glue(o, path, out);
        out->has_text = 1;
    } else if (strcmp(mt, "llava_next") == 0) {
        // LLaVA-NeXT in llava-hf's layout (LlavaNextForConditionalGeneration): Llava's keys plus AnyRes.
        out->kind = HF_LLAVA_HF;
        rc = parse_llava_hf(o, path, out);
        if (rc == 0) rc = parse_anyres(o, path, out);
    } else if (strcmp(mt, "llava") == 0 || strcmp(mt, "llava_c") == 0) {
        // llava_c: llava-hf's layout for a variant (projector depth, token reduction) that transformers' Llava
        // cannot express; its model_type makes transformers refuse it rather than run another model.
        out->kind = HF_LLAVA_HF;
        rc = parse_llava_hf(o, path, out);
    } else if (strcmp(mt, "llama") == 0 || strcmp(mt, "mistral") == 0 || strcmp(mt, "qwen2") == 0) {
        out->kind = HF_LLAMA;
        rc = parse_llama(o, path, &out->text);
        out->has_text = 1;
    } else if (strcmp(mt, "clip") == 0) {
        out->kind = HF_CLIP;
        clip_vision_config_defaults(&out->vision);
        const cJSON *vc = cJSON_GetObjectItemCaseSensitive(o, "vision_config");
        if (vc && !cJSON_IsNull(vc) && !cJSON_IsObject(vc)) rc = llava_fail("%s: vision_config is not an object", path);
        else {
            char *w = xasprintf("%s: vision_config", path);
            rc = parse_clip_vision(vc && cJSON_IsObject(vc) ? vc : o, w, &out->vision);
            free(w);
        }
        out->has_vision = 1;
    } else if (strcmp(mt, "clip_vision_model") == 0) {
        out->kind = HF_CLIP_VISION;
        clip_vision_config_defaults(&out->vision);
        rc = parse_clip_vision(o, path, &out->vision);
        out->has_vision = 1;
    } else if (strcmp(mt, "siglip") == 0 || strcmp(mt, "siglip_vision_model") == 0) {
        // A SigLIP folder (SiglipModel: vision_config inside; or SiglipVisionModel), read as a vision tower.
        out->kind = strcmp(mt, "siglip") == 0 ? HF_CLIP : HF_CLIP_VISION;
        siglip_vision_config_defaults(&out->vision);
        const cJSON *vc = cJSON_GetObjectItemCaseSensitive(o, "vision_config");
        char *w = xasprintf("%s%s", path, vc && cJSON_IsObject(vc) ? ": vision_config" : "");
        rc = parse_clip_vision(vc && cJSON_IsObject(vc) ? vc : o, w, &out->vision);
        free(w);
        out->has_vision = 1;
    } else if (!mt[0]) {
        rc = llava_fail("%s: no \"model_type\"", path);
    } else {
        rc = llava_fail(
            "%s: model_type \"%s\" is not supported (llama, mistral, qwen2, clip, clip_vision_model, siglip, "
            "siglip_vision_model, llava, "
            "llava_llama, llava_c)",
            path, mt);
    }
    cJSON_Delete(o);
    if (rc == 0 && out->has_vision && out->has_projector) {
        int n_hidden = out->vision.num_hidden_layers + 1;
        int fl = out->glue.vision_feature_layer;
        if (fl < -n_hidden || fl >= n_hidden)
            rc = llava_fail("%s: vision_feature_layer %d is outside the %d hidden states", path, fl, n_hidden);
        else if (out->has_text && llava_glue_check(out) != 0) rc = llava_fail_ctx("%s", path);
    }
    return rc < 0 ? -1 : 0;
}

int model_config_load(const char *path, model_config *out) {
    char *file = dir_exists(path) ? path_join(path, "config.json") : xstrdup(path);
    size_t len;
    char *text = read_file(file, 16u << 20, &len);
    int rc = text ? model_config_parse(text, len, file, out) : -1;
    free(text);
    free(file);
    return rc;
}

int llava_vision_layers_used(const model_config *mc) {
    int n_hidden = mc->vision.num_hidden_layers + 1;
    int fl = mc->glue.vision_feature_layer;
    int idx = fl < 0 ? n_hidden + fl : fl;  // index into hidden_states
    return idx;                             // hidden_states[idx] is the output of layer idx-1: idx layers run
}

int llava_projector_parse(const char *s, int *depth) {
    if (!strcmp(s, "linear")) return *depth = 1, 0;
    if (!strcmp(s, "identity")) return *depth = 0, 0;
    int n = 0, used = 0;
    if (sscanf(s, "mlp%dx_gelu%n", &n, &used) == 1 && used == (int)strlen(s) && s[3] >= '1' && s[3] <= '9' && n >= 1 &&
        n <= PROJ_MAX_DEPTH)
        return *depth = n, 0;
    return llava_fail("mm_projector_type \"%s\" is not supported (linear, mlp{N}x_gelu for N in 1..%d, identity)", s,
                      PROJ_MAX_DEPTH);
}

const char *llava_projector_name(int depth, char *buf) {
    if (depth == 0) return strcpy(buf, "identity");
    if (depth == 1) return strcpy(buf, "linear");
    snprintf(buf, 24, "mlp%dx_gelu", depth);
    return buf;
}

static const char *const POOL_NAMES[] = {"none", "average", "max", "bilinear"};

int llava_pool_parse(const char *s, spatial_pool_mode *mode) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, POOL_NAMES[i])) return *mode = (spatial_pool_mode)i, 0;
    return llava_fail("mm_spatial_pool_mode \"%s\" is not supported (none, average, max, bilinear)", s);
}

const char *llava_pool_name(spatial_pool_mode mode) {
    return mode >= 0 && mode <= POOL_BILINEAR ? POOL_NAMES[mode] : "?";
}

int llava_tokens_per_image(const model_config *mc) {
    const llava_glue_config *g = &mc->glue;
    int G = mc->vision.patch_size ? mc->vision.image_size / mc->vision.patch_size : 0, s = g->pool_stride;
    if (g->keep_tokens > 0) return g->keep_tokens;
    if (g->pool_mode == POOL_AVERAGE || g->pool_mode == POOL_MAX) return s > 0 ? (G / s) * (G / s) : 0;
    if (g->pool_mode == POOL_BILINEAR) return s > 0 ? ((G + s - 1) / s) * ((G + s - 1) / s) : 0;
    // Each image's rows: the patches and, for CLIP, the class token first; "default" drops the first row (on a
    // SigLIP tower, which has no class token, a patch: what transformers' Llava does with such a config).
    return G * G + vision_has_cls(&mc->vision) - (g->drop_cls ? 1 : 0);
}

int llava_tokens_per_video_frame(const model_config *mc) {
    const llava_glue_config *g = &mc->glue;
    int G = mc->vision.patch_size ? mc->vision.image_size / mc->vision.patch_size : 0, s = g->video_pool_stride;
    if (g->video_pool_mode == POOL_AVERAGE || g->video_pool_mode == POOL_MAX) return s > 0 ? (G / s) * (G / s) : 0;
    return llava_tokens_per_image(mc);
}

int llava_glue_check(const model_config *mc) {
    const llava_glue_config *g = &mc->glue;
    int G = mc->vision.patch_size ? mc->vision.image_size / mc->vision.patch_size : 0;
    if (g->video_pool_mode != POOL_NONE) {
        const char *vm = llava_pool_name(g->video_pool_mode);
        if (g->video_pool_mode != POOL_AVERAGE && g->video_pool_mode != POOL_MAX)
            return llava_fail("video_pool_mode %s is not supported (average, max)", vm);
        if (g->pool_mode != POOL_NONE || g->keep_tokens)
            return llava_fail(
                "video_pool_mode %s with %s: the video pooling acts on the frames' whole feature grids, which the "
                "reduction of every image already changed; choose one",
                vm, g->keep_tokens ? "mm_vision_keep_tokens" : "mm_spatial_pool_mode");
        if (g->anyres) return llava_fail("video_pool_mode %s with AnyRes (image_grid_pinpoints) is not supported", vm);
        if (g->drop_cls != vision_has_cls(&mc->vision))
            return llava_fail("video_pool_mode %s needs the whole patch grid: %s", vm,
                              vision_has_cls(&mc->vision)
                                  ? "the CLS feature dropped (select feature patch / strategy default)"
                                  : "every patch kept (strategy full: SigLIP has no class token to drop)");
        if (g->video_pool_stride < 1 || g->video_pool_stride > G)
            return llava_fail("video_pool_stride %d is outside 1..%d (the %dx%d patch grid)", g->video_pool_stride, G,
                              G, G);
    }
    if (g->keep_tokens && !vision_has_cls(&mc->vision))
        return llava_fail(
            "mm_vision_keep_tokens ranks patches by the class token's attention: a SigLIP tower has none");
    if (g->pool_mode != POOL_NONE || g->keep_tokens) {
        if (g->drop_cls != vision_has_cls(&mc->vision))
            return llava_fail(
                "%s needs the whole patch grid: %s", g->keep_tokens ? "mm_vision_keep_tokens" : "mm_spatial_pool_mode",
                vision_has_cls(&mc->vision) ? "the CLS feature dropped (select feature patch / strategy default)"
                                            : "every patch kept (strategy full: SigLIP has no class token to drop)");
        if (g->pool_mode != POOL_NONE && g->keep_tokens)
            return llava_fail("mm_spatial_pool_mode %s and mm_vision_keep_tokens %d: choose one reduction",
                              llava_pool_name(g->pool_mode), g->keep_tokens);
    }
    if (g->pool_mode != POOL_NONE && (g->pool_stride < 1 || g->pool_stride > G))
        return llava_fail("mm_spatial_pool_stride %d is outside 1..%d (the %dx%d patch grid)", g->pool_stride, G, G, G);
    if (g->keep_tokens < 0 || g->keep_tokens > G * G)
        return llava_fail("mm_vision_keep_tokens %d is outside 0..%d (the %dx%d patch grid)", g->keep_tokens, G * G, G,
                          G);
    if (g->projector_depth == 0 && mc->vision.hidden_size != mc->text.hidden_size)
        return llava_fail("mm_projector_type identity: the tower's width %d is not the language model's %d",
                          mc->vision.hidden_size, mc->text.hidden_size);
    if (g->projector_depth < 0 || g->projector_depth > PROJ_MAX_DEPTH)
        return llava_fail("projector depth %d is outside 0..%d", g->projector_depth, PROJ_MAX_DEPTH);
    return 0;
}

const char *const LORA_TARGET_NAMES[LORA_N_TARGETS] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                       "gate_proj", "up_proj", "down_proj"};

float lora_scaling(const lora_config *l) {
    if (l->r <= 0) return 0.0f;
    return (float)(l->rslora ? l->alpha / sqrt((double)l->r) : l->alpha / l->r);
}

int lora_target_of(const char *module) {
    for (int i = 0; i < LORA_N_TARGETS; i++)
        if (strcmp(module, LORA_TARGET_NAMES[i]) == 0) return i;
    return -1;
}
