#include "export.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/params.h"
#include "names.h"
#include "safetensors.h"

// Host fp32 copies of every group (working weights).
static void download_all(const llava_model *m, float *host[N_GROUPS]) {
    for (int g = 0; g < N_GROUPS; g++) {
        host[g] = NULL;
        if (!m->pt.group_numel[g]) continue;
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

static cJSON *text_config_json(const llama_config *t, int vocab) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model_type", "llama");
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
    return j;
}

static cJSON *vision_config_json(const clip_vision_config *v) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model_type", "clip_vision_model");
    cJSON_AddNumberToObject(j, "hidden_size", v->hidden_size);
    cJSON_AddNumberToObject(j, "intermediate_size", v->intermediate_size);
    cJSON_AddNumberToObject(j, "num_hidden_layers", v->num_hidden_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", v->num_attention_heads);
    cJSON_AddNumberToObject(j, "num_channels", v->num_channels);
    cJSON_AddNumberToObject(j, "image_size", v->image_size);
    cJSON_AddNumberToObject(j, "patch_size", v->patch_size);
    cJSON_AddNumberToObject(j, "projection_dim", v->projection_dim);
    cJSON_AddStringToObject(j, "hidden_act", v->hidden_act);
    cJSON_AddNumberToObject(j, "layer_norm_eps", v->layer_norm_eps);
    return j;
}

int export_llava_hf(const llava_model *m, const char *dir, dtype_t dtype) {
    if (m->pt.linear_projector) return llava_fail("export: a single-Linear projector has no llava-hf layout");
    if (mkdir_p(dir) != 0) return -1;
    const model_config *c = &m->cfg;
    int V = c->text.vocab_size, d = c->text.hidden_size;
    // llava-hf embeds the image token; a vicuna vocabulary gets one (and <pad>) appended.
    int image_id = c->glue.image_token_index, pad_id = c->glue.pad_token_id, V_out = V;
    if (image_id < 0 || image_id >= V) {
        image_id = V;
        pad_id = V + 1;
        V_out = (V + 2 + 63) / 64 * 64;
    }
    float *host[N_GROUPS];
    download_all(m, host);
    float *embed = NULL, *head = NULL;  // (V_out, d) when grown
    st_writer w;
    st_writer_init(&w);
    int rc = 0;
    for (int i = 0; i < m->pt.n_views && rc == 0; i++) {
        const param_view *v = &m->pt.views[i];
        if (!v->used) continue;  // vision layers LLaVA never runs are not part of the trained model
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
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlavaForConditionalGeneration"));
    cJSON_AddStringToObject(j, "model_type", "llava");
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
