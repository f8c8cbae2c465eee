#include "inspect.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "safetensors.h"

static void print_list(FILE *out, const char *what, char **items, int n) {
    if (!out) return;
    if (n == 0) {
        fprintf(out, "  %-11s none\n", what);
        return;
    }
    fprintf(out, "  %-11s %d\n", what, n);
    int show = n < 20 ? n : 20;
    for (int i = 0; i < show; i++) fprintf(out, "    %s\n", items[i]);
    if (n > show) fprintf(out, "    ... and %d more\n", n - show);
}

static void print_config(FILE *out, const model_config *mc) {
    // A causal LM reads as its own class (Qwen2ForCausalLM, MistralForCausalLM): one model definition runs them all.
    const char *arch = mc->kind == HF_LLAMA && mc->architecture[0] ? mc->architecture : hf_kind_name(mc->kind);
    fprintf(out, "architecture: %s (model_type \"%s\")\n", arch, mc->model_type);
    if (mc->has_text) {
        const llama_config *t = &mc->text;
        fprintf(out,
                "language model: llama, hidden %d, layers %d, heads %d (kv %d), head_dim %d, mlp %d, vocab %d,\n"
                "  rms_norm_eps %g, rope_theta %g, max_position_embeddings %d, act %s%s\n",
                t->hidden_size, t->num_hidden_layers, t->num_attention_heads, t->num_key_value_heads, t->head_dim,
                t->intermediate_size, t->vocab_size, (double)t->rms_norm_eps, t->rope_theta, t->max_position_embeddings,
                t->hidden_act, t->tie_word_embeddings ? ", tied embeddings" : "");
    }
    if (mc->has_vision) {
        const clip_vision_config *v = &mc->vision;
        fprintf(out, "vision tower: %s%s, image %d, patch %d, hidden %d, layers %d, heads %d, mlp %d, act %s, eps %g\n",
                v->siglip ? "siglip" : "clip", mc->vision_from_name ? " (shape from the tower's name)" : "",
                v->image_size, v->patch_size, v->hidden_size, v->num_hidden_layers, v->num_attention_heads,
                v->intermediate_size, v->hidden_act, (double)v->layer_norm_eps);
    } else if (mc->has_projector) {
        fprintf(out, "vision tower: \"%s\" (shape unknown without its folder)\n", mc->vision_tower_name);
    }
    if (mc->has_projector && mc->has_vision && mc->has_text) {
        const llava_glue_config *g = &mc->glue;
        int run = llava_vision_layers_used(mc);
        char pn[24];
        fprintf(out, "projector: %s %d", llava_projector_name(g->projector_depth, pn), mc->vision.hidden_size);
        for (int k = 0; k < g->projector_depth; k++)
            fprintf(out, "%s -> %d", k ? " -> gelu" : "", mc->text.hidden_size);
        fprintf(out, "; features: hidden_states[%d] (%d of %d vision layers run), %s", g->vision_feature_layer, run,
                mc->vision.num_hidden_layers, g->drop_cls ? "CLS dropped" : "CLS kept");
        if (g->pool_mode != POOL_NONE)
            fprintf(out, ", %s pooling stride %d", llava_pool_name(g->pool_mode), g->pool_stride);
        if (g->keep_tokens) fprintf(out, ", the %d the CLS attends to most kept", g->keep_tokens);
        fprintf(out, ", %d tokens per image", llava_tokens_per_image(mc));
        if (g->video_pool_mode != POOL_NONE)
            fprintf(out, "; video frames %s pooled stride %d: %d tokens per frame", llava_pool_name(g->video_pool_mode),
                    g->video_pool_stride, llava_tokens_per_video_frame(mc));
        fprintf(out, "\n");
        if (g->image_token_index >= 0) fprintf(out, "image token id: %d\n", g->image_token_index);
        else fprintf(out, "image placeholder: %d (spliced, never embedded)\n", g->image_token_index);
    }
}

int inspect_path(const char *path, FILE *out, inspect_result *res) {
    memset(res, 0, sizeof *res);
    res->layout = LAYOUT_UNKNOWN;
    int is_dir = dir_exists(path);
    size_t plen = strlen(path);
    int is_json = !is_dir && plen >= 5 && strcmp(path + plen - 5, ".json") == 0 &&
                  !(plen >= 11 && strcmp(path + plen - 11, ".index.json") == 0);
    char *config_path = NULL;
    if (is_dir) config_path = path_join(path, "config.json");
    else if (is_json) config_path = xstrdup(path);
    else {
        char *dir = path_dirname(path);
        config_path = path_join(dir, "config.json");
        free(dir);
    }
    if (!is_dir && !is_json && !file_exists(path)) {
        free(config_path);
        return llava_fail("%s: no such file or folder", path);
    }
    if (out) fprintf(out, "== %s\n", path);
    if (file_exists(config_path)) {
        if (model_config_load(config_path, &res->config) != 0) {
            free(config_path);
            return -1;
        }
        res->has_config = 1;
        if (out) print_config(out, &res->config);
    } else if (is_json || is_dir) {
        int rc = llava_fail("%s: no config.json", is_dir ? path : config_path);
        free(config_path);
        return rc;
    }
    free(config_path);

    param_table pt = {0};
    int have_table = 0;
    if (res->has_config) {
        if (param_table_build(&res->config, &pt) == 0) {
            have_table = 1;
            for (int i = 0; i < pt.n_views; i++) {
                res->count_all[pt.views[i].group] += pt.views[i].numel;
                if (pt.views[i].used) res->count_used[pt.views[i].group] += pt.views[i].numel;
            }
            if (out) {
                char a[32], b[32];
                uint64_t tot_all = 0, tot_used = 0;
                fprintf(out, "parameters:          %15s %15s\n", "in checkpoint", "computed");
                for (int g = 0; g < N_GROUPS; g++) {
                    if (!res->count_all[g]) continue;
                    fprintf(out, "  %-18s %15s %15s\n", GROUP_NAMES[g], fmt_count(res->count_all[g], a),
                            fmt_count(res->count_used[g], b));
                    tot_all += res->count_all[g];
                    tot_used += res->count_used[g];
                }
                fprintf(out, "  %-18s %15s %15s\n", "total", fmt_count(tot_all, a), fmt_count(tot_used, b));
            }
        } else if (out) {
            fprintf(out, "parameters: unknown (%s)\n", llava_errmsg());
        }
    }

    int want_weights = !is_json && (!is_dir || st_dir_has_weights(path));
    if (want_weights) {
        st_set s;
        if (st_set_open(&s, path) != 0) {
            if (have_table) param_table_free(&pt);
            return -1;
        }
        res->has_weights = 1;
        res->n_files = s.n_files;
        res->n_tensors = s.n_entries;
        for (int i = 0; i < s.n_entries; i++) {
            res->weight_bytes += s.entries[i]->end - s.entries[i]->begin;
            res->dtype_count[s.entries[i]->dtype]++;
        }
        if (out) {
            char a[32], b[32];
            fprintf(out, "weights: %d file%s, %s tensors, %s bytes; dtypes:", s.n_files, s.n_files == 1 ? "" : "s",
                    fmt_count((uint64_t)s.n_entries, a), fmt_count(res->weight_bytes, b));
            for (int t = 1; t < DT_COUNT; t++)
                if (res->dtype_count[t]) fprintf(out, " %s %d", dtype_name(t), res->dtype_count[t]);
            fprintf(out, "\n");
        }
        if (have_table) {
            load_report rep;
            param_load(&pt, &s, 0, &rep);
            res->layout = rep.layout;
            res->n_missing = rep.n_missing;
            res->n_unexpected = rep.n_unexpected;
            res->n_mismatched = rep.n_mismatched;
            if (out) {
                fprintf(out, "layout: %s; %d tensors match the config", layout_name(rep.layout), rep.n_loaded);
                if (rep.n_unused) fprintf(out, ", %d belong to vision layers LLaVA never runs", rep.n_unused);
                if (rep.n_ignored) fprintf(out, ", %d ignored (buffers, CLIP text tower)", rep.n_ignored);
                fprintf(out, "\n");
                print_list(out, "missing:", rep.missing, rep.n_missing);
                print_list(out, "unexpected:", rep.unexpected, rep.n_unexpected);
                print_list(out, "mismatched:", rep.mismatched, rep.n_mismatched);
            }
            load_report_free(&rep);
        }
        st_set_close(&s);
    } else if (out && is_dir) {
        fprintf(out, "weights: none (config only)\n");
    }
    if (have_table) param_table_free(&pt);
    return 0;
}
