#include "peft.h"

#include <cjson/cJSON.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "model/params.h"
#include "names.h"
#include "safetensors.h"

// The module names of decoder layer 0 in a llava-hf model, as PEFT matches a pattern against them.
static const char *const HF_MODULE[LORA_N_TARGETS] = {
    "language_model.model.layers.0.self_attn.q_proj", "language_model.model.layers.0.self_attn.k_proj",
    "language_model.model.layers.0.self_attn.v_proj", "language_model.model.layers.0.self_attn.o_proj",
    "language_model.model.layers.0.mlp.gate_proj",    "language_model.model.layers.0.mlp.up_proj",
    "language_model.model.layers.0.mlp.down_proj",
};

// A Python regular expression as PEFT's re.fullmatch uses it, in POSIX extended syntax: anchored at
// both ends, and \d (the one Perl class such patterns use) spelled [0-9].
static int pattern_compile(regex_t *re, const char *pattern) {
    size_t n = strlen(pattern);
    char *ere = xmalloc(2 * n + 8 + 5 * n);
    size_t k = 0;
    ere[k++] = '^';
    ere[k++] = '(';
    for (size_t i = 0; i < n; i++) {
        if (pattern[i] == '\\' && pattern[i + 1] == 'd') {
            memcpy(ere + k, "[0-9]", 5);
            k += 5;
            i++;
        } else {
            ere[k++] = pattern[i];
        }
    }
    ere[k++] = ')';
    ere[k++] = '$';
    ere[k] = 0;
    int rc = regcomp(re, ere, REG_EXTENDED | REG_NOSUB);
    free(ere);
    return rc;
}

static int json_nonempty(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) return cJSON_GetArraySize(v) > 0;
    return !cJSON_IsFalse(v);
}

int peft_read_config(const char *dir, lora_config *out) {
    memset(out, 0, sizeof *out);
    char *path = path_join(dir, "adapter_config.json");
    size_t len = 0;
    char *text = read_file(path, 1 << 20, &len);
    if (!text) {
        int rc = llava_fail("%s: not a PEFT adapter folder (no adapter_config.json)", dir);
        free(path);
        return rc;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    int rc = 0;
    char type[32] = "LORA", bias[32] = "none";
    int use_dora = 0;
    if (!j || !cJSON_IsObject(j)) rc = llava_fail("%s: not a JSON object", path);
    if (rc == 0 && (json_str(j, "peft_type", type, sizeof type, path) < 0 || json_int(j, "r", &out->r, path) < 0 ||
                    json_double(j, "lora_alpha", &out->alpha, path) < 0 ||
                    json_double(j, "lora_dropout", &out->dropout, path) < 0 ||
                    json_bool(j, "use_rslora", &out->rslora, path) < 0 ||
                    json_bool(j, "use_dora", &use_dora, path) < 0 || json_str(j, "bias", bias, sizeof bias, path) < 0))
        rc = -1;
    if (rc == 0 && strcmp(type, "LORA") != 0) rc = llava_fail("%s: peft_type %s (LORA expected)", path, type);
    if (rc == 0 && out->r <= 0) rc = llava_fail("%s: r %d (a positive rank expected)", path, out->r);
    out->dora = use_dora;
    if (rc == 0 && strcmp(bias, "none") != 0)
        rc = llava_fail("%s: bias \"%s\": only \"none\" is supported", path, bias);
    const char *unsupported[] = {"rank_pattern", "alpha_pattern", "layers_to_transform", "layer_replication"};
    for (size_t i = 0; rc == 0 && i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (json_nonempty(j, unsupported[i]))
            rc = llava_fail("%s: \"%s\" is set: per-module ranks and layer subsets are not supported", path,
                            unsupported[i]);
    const cJSON *tm = rc == 0 ? cJSON_GetObjectItemCaseSensitive(j, "target_modules") : NULL;
    if (rc == 0 && cJSON_IsArray(tm)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, tm) {
            if (!cJSON_IsString(it)) {
                rc = llava_fail("%s: target_modules holds a non-string", path);
                break;
            }
            // PEFT matches a listed name against the end of each module's name.
            const char *name = it->valuestring, *dot = strrchr(name, '.');
            int t = lora_target_of(dot ? dot + 1 : name);
            if (t < 0) {
                rc = llava_fail(
                    "%s: target_modules names \"%s\": the language model's linears are %s, %s, %s, %s, "
                    "%s, %s and %s",
                    path, name, LORA_TARGET_NAMES[0], LORA_TARGET_NAMES[1], LORA_TARGET_NAMES[2], LORA_TARGET_NAMES[3],
                    LORA_TARGET_NAMES[4], LORA_TARGET_NAMES[5], LORA_TARGET_NAMES[6]);
                break;
            }
            out->targets |= 1u << t;
        }
    } else if (rc == 0 && cJSON_IsString(tm)) {
        regex_t re;
        if (pattern_compile(&re, tm->valuestring) != 0) {
            rc =
                llava_fail("%s: target_modules \"%s\" is not a pattern this reader understands", path, tm->valuestring);
        } else {
            for (int t = 0; t < LORA_N_TARGETS; t++)
                if (regexec(&re, HF_MODULE[t], 0, NULL, 0) == 0) out->targets |= 1u << t;
            if (regexec(&re, "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj", 0, NULL, 0) == 0 ||
                regexec(&re, "vision_tower.vision_model.encoder.layers.0.mlp.fc1", 0, NULL, 0) == 0)
                rc = llava_fail("%s: target_modules \"%s\" adapts the vision tower: not supported", path,
                                tm->valuestring);
            regfree(&re);
        }
    } else if (rc == 0) {
        rc = llava_fail("%s: target_modules is missing (a list of module names or a pattern expected)", path);
    }
    if (rc == 0 && !out->targets)
        rc = llava_fail("%s: target_modules adapts none of the language model's linears", path);
    cJSON_Delete(j);
    free(path);
    return rc;
}

int peft_weight_files(const char *dir, char ***paths, int *n) {
    static const char *const MAIN[] = {"adapter_model.safetensors", "adapter_model.bin"};
    static const char *const EXTRA[] = {"non_lora_trainables.safetensors", "non_lora_trainables.bin"};
    *paths = xcalloc(2, sizeof(char *));
    *n = 0;
    for (int i = 0; i < 2 && !*n; i++) {
        char *p = path_join(dir, MAIN[i]);
        if (file_exists(p)) (*paths)[(*n)++] = p;
        else free(p);
    }
    if (!*n) {
        free(*paths);
        *paths = NULL;
        return llava_fail("%s: no adapter_model.safetensors (nor adapter_model.bin)", dir);
    }
    for (int i = 0; i < 2 && *n < 2; i++) {
        char *p = path_join(dir, EXTRA[i]);
        if (file_exists(p)) (*paths)[(*n)++] = p;
        else free(p);
    }
    return 0;
}

static int write_json(const char *dir, const char *name, cJSON *j) {
    char *text = cJSON_Print(j);
    char *path = path_join(dir, name);
    int rc = write_file_atomic(path, text, strlen(text));
    free(path);
    free(text);
    return rc;
}

int peft_write_adapter(const llava_model *m, const char *dir, const peft_write_options *o) {
    const lora_config *l = &m->cfg.lora;
    if (l->r <= 0) return llava_fail("%s: the model has no LoRA adapters to write", dir);
    if (mkdir_p(dir) != 0) return -1;
    float *host[N_GROUPS] = {0};
    for (int g = 0; g < N_GROUPS; g++) {
        if (!m->pt.group_numel[g] || (g != GROUP_LORA && !(g == GROUP_PROJECTOR && o->with_projector))) continue;
        host[g] = xmalloc(sizeof(float) * m->pt.group_numel[g]);
        m->ops->download(m->be, BUF_PARAM, host[g], m->params[g], m->pt.group_numel[g]);
    }
    st_writer w;
    st_writer_init(&w);
    int rc = 0;
    for (int i = 0; i < m->pt.n_views && rc == 0; i++) {
        const param_view *v = &m->pt.views[i];
        if (!v->used || !host[v->group]) continue;
        char *hf = name_from_internal(v->name, LAYOUT_LLAVA_HF_LEGACY, 0);
        char *ext = xasprintf("base_model.model.%s", hf);
        rc = st_writer_add_f32(&w, ext, o->dtype, v->ndim, v->shape, host[v->group] + v->offset);
        free(ext);
        free(hf);
    }
    st_writer_meta(&w, "format", "pt");
    char *wpath = path_join(dir, "adapter_model.safetensors");
    if (rc == 0) rc = st_writer_save(&w, wpath);
    free(wpath);
    st_writer_free(&w);
    for (int g = 0; g < N_GROUPS; g++) free(host[g]);
    if (rc != 0) return rc;

    // adapter_config.json: LoraConfig's fields as PEFT writes them. The pattern names the language
    // model's modules only (a list would also adapt the vision tower's q/k/v_proj of a llava-hf base).
    char pattern[160];
    size_t k = (size_t)snprintf(pattern, sizeof pattern, ".*language_model.*\\.(");
    for (int t = 0, first = 1; t < LORA_N_TARGETS; t++)
        if (l->targets >> t & 1) {
            k += (size_t)snprintf(pattern + k, sizeof pattern - k, "%s%s", first ? "" : "|", LORA_TARGET_NAMES[t]);
            first = 0;
        }
    snprintf(pattern + k, sizeof pattern - k, ")");
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "alpha_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(j, "auto_mapping");
    cJSON_AddStringToObject(j, "base_model_name_or_path", o->base_model ? o->base_model : "");
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddBoolToObject(j, "init_lora_weights", 1);
    cJSON_AddNullToObject(j, "layer_replication");
    cJSON_AddNullToObject(j, "layers_pattern");
    cJSON_AddNullToObject(j, "layers_to_transform");
    cJSON_AddItemToObject(j, "loftq_config", cJSON_CreateObject());
    cJSON_AddNumberToObject(j, "lora_alpha", l->alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", l->dropout);
    cJSON_AddBoolToObject(j, "megatron_config", 0);
    cJSON_ReplaceItemInObject(j, "megatron_config", cJSON_CreateNull());
    cJSON_AddStringToObject(j, "megatron_core", "megatron.core");
    if (o->with_projector) {
        cJSON *mts = cJSON_AddArrayToObject(j, "modules_to_save");
        cJSON_AddItemToArray(mts, cJSON_CreateString("multi_modal_projector"));
    } else {
        cJSON_AddNullToObject(j, "modules_to_save");
    }
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddNumberToObject(j, "r", l->r);
    cJSON_AddItemToObject(j, "rank_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(j, "revision");
    cJSON_AddStringToObject(j, "target_modules", pattern);
    cJSON_AddNullToObject(j, "task_type");
    cJSON_AddBoolToObject(j, "use_dora", 0);
    cJSON_AddBoolToObject(j, "use_rslora", l->rslora);
    rc = write_json(dir, "adapter_config.json", j);
    cJSON_Delete(j);
    return rc;
}
