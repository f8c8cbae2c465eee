// What a run is built from: the model config it implies, the model with its weights from the
// configured sources, and the prepared dataset (trainer.h).
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "data/dataset.h"
#include "data/prep.h"
#include "model/io/peft.h"
#include "trainer.h"

// The adapters lora.* asks for (none when LoRA is off).
static void lora_of(const run_settings *s, lora_config *out) {
    memset(out, 0, sizeof *out);
    const lora_settings *l = &s->lora;
    if (!l->enabled) return;
    out->r = l->r;
    out->alpha = l->alpha;
    out->rslora = l->use_rslora;
    out->dropout = l->dropout;
    out->bits = l->bits;
    out->quant_bf16 = l->bits == 4 && s->train.bf16;
    for (int i = 0; i < l->n_target_modules; i++) {
        int t = lora_target_of(l->target_modules[i]);
        if (t >= 0) out->targets |= 1u << t;
    }
}

static int model_config_of(const run_settings *s, model_config *out);

int train_model_config(const run_settings *s, model_config *out) {
    if (model_config_of(s, out) != 0) return -1;
    if (out->glue.anyres != s->data.anyres)
        return llava_fail(out->glue.anyres
                              ? "model.init is an AnyRes (llava_next) model: set data.image_aspect_ratio anyres"
                              : "data.image_aspect_ratio anyres: model.init is not an AnyRes (llava_next) "
                                "model (start from model.llm and model.vision_tower instead)");
    // anyres_max_N: the data setting decides, as LLaVA-NeXT's training arguments overwrite the model config's
    // image_aspect_ratio (plain anyres on a capped model.init drops the cap; the export writes the run's).
    if (out->glue.anyres) out->glue.pinpoints.max_num_patches = s->data.anyres_max;
    lora_of(s, &out->lora);
    return 0;
}

static int model_config_of(const run_settings *s, model_config *out) {
    const model_settings *ms = &s->model;
    // A path that is not there is named with the absolute path it resolved to (train/config.h).
    if (ms->init && access(ms->init, F_OK) != 0) return cfg_fail_missing("model.init", ms->init);
    if (!ms->init && ms->llm && access(ms->llm, F_OK) != 0) return cfg_fail_missing("model.llm", ms->llm);
    if (!ms->init && ms->vision_tower && access(ms->vision_tower, F_OK) != 0)
        return cfg_fail_missing("model.vision_tower", ms->vision_tower);
    if (ms->init) {
        if (model_config_load(ms->init, out) != 0) return -1;
        if (out->kind != HF_LLAVA_HF && out->kind != HF_LLAVA_ORIGINAL)
            return llava_fail("model.init %s: a %s folder, not a whole LLaVA model", ms->init, hf_kind_name(out->kind));
        if (ms->video_pool_mode != POOL_NONE) {  // the frames' pooling has no parameters: set on a whole model too
            out->glue.video_pool_mode = ms->video_pool_mode;
            out->glue.video_pool_stride = ms->video_pool_stride;
            if (llava_glue_check(out) != 0) return llava_fail_ctx("model.video_pool_mode");
        }
        return 0;
    }
    model_config lm, vis;
    const char *llm = ms->llm, *vt = ms->vision_tower;
    if (model_config_load(llm, &lm) != 0) return llava_fail_ctx("model.llm");
    if (lm.kind != HF_LLAMA)
        return llava_fail("model.llm %s: a %s folder, not a LlamaForCausalLM", llm, hf_kind_name(lm.kind));
    if (model_config_load(vt, &vis) != 0) return llava_fail_ctx("model.vision_tower");
    if (vis.kind != HF_CLIP && vis.kind != HF_CLIP_VISION)
        return llava_fail("model.vision_tower %s: a %s folder, not CLIP", vt, hf_kind_name(vis.kind));
    memset(out, 0, sizeof *out);
    out->kind = HF_LLAVA_ORIGINAL;
    strcpy(out->model_type, "llava");
    strcpy(out->architecture, "LlavaLlamaForCausalLM");
    out->has_text = out->has_vision = out->has_projector = 1;
    out->text = lm.text;
    out->vision = vis.vision;
    if (ms->vision_image_size && vision_run_at(&out->vision, ms->vision_image_size) != 0)
        return llava_fail_ctx("model.mm_vision_image_size");
    llava_glue_config *g = &out->glue;
    g->image_token_index = -200;
    strcpy(g->projector_hidden_act, "gelu");
    g->projector_depth = ms->projector_depth;
    g->projector_bias = 1;
    g->pool_mode = ms->pool_mode;
    g->pool_stride = ms->pool_stride;
    g->keep_tokens = ms->keep_tokens;
    g->video_pool_mode = ms->video_pool_mode;
    g->video_pool_stride = ms->video_pool_stride;
    g->video_token_index = -1;
    g->vision_feature_layer = ms->vision_select_layer;
    g->drop_cls =
        ms->drop_cls && vision_has_cls(&out->vision);  // "patch" on a SigLIP tower: every patch (no class token)
    g->image_seq_length = llava_tokens_per_image(out);
    g->pad_token_id = -1;
    int n_hidden = out->vision.num_hidden_layers + 1;
    if (g->vision_feature_layer < -n_hidden || g->vision_feature_layer >= n_hidden)
        return llava_fail("model.mm_vision_select_layer %d is outside the tower's %d hidden states",
                          g->vision_feature_layer, n_hidden);
    if (s->data.anyres) {  // LLaVA-NeXT's AnyRes on a model built from its parts
        if (image_parse_pinpoints(s->data.grid_pinpoints, out->vision.image_size, &g->pinpoints) != 0)
            return llava_fail_ctx("data.image_grid_pinpoints");
        if (!g->drop_cls || g->pool_mode != POOL_NONE || g->keep_tokens || out->vision.siglip)
            return llava_fail(
                "data.image_aspect_ratio anyres needs a CLIP tower, its patch features (mm_vision_select_feature "
                "patch) and no token reduction");
        g->anyres = 1;
    }
    if (llava_glue_check(out) != 0) return llava_fail_ctx("model config");
    return 0;
}

int train_build_model(const run_settings *s, llava_backend *be, llava_model *m) {
    const model_settings *ms = &s->model;
    model_config mc;
    if (train_model_config(s, &mc) != 0) return -1;
    if (llava_model_create(m, &mc, be) != 0) return -1;
    m->load_opts.ignore_unexpected = ms->ignore_unexpected_weights;
    const int ALL = (1 << N_GROUPS) - 1, PROJ = 1 << GROUP_PROJECTOR;
    const char *adapter = ms->pretrain_mm_mlp_adapter;
    int rc = 0;
    if (adapter && access(adapter, F_OK) != 0) {
        llava_model_free(m);
        return cfg_fail_missing("model.pretrain_mm_mlp_adapter", adapter);
    }
    if (ms->init) {
        rc = llava_model_add_weights(m, ms->init, adapter ? ALL & ~PROJ : ALL, NULL);
    } else {
        rc = llava_model_add_weights(m, ms->llm, 1 << GROUP_LM, NULL);
        if (rc == 0) rc = llava_model_add_weights(m, ms->vision_tower, 1 << GROUP_VISION, NULL);
    }
    if (rc == 0 && adapter) {
        int n = 0;
        rc = llava_model_add_weights(m, adapter, PROJ, &n);
        if (rc == 0 && n == 0) rc = llava_fail("model.pretrain_mm_mlp_adapter %s holds no projector tensors", adapter);
    } else if (rc == 0 && !ms->init) {
        llava_model_init_projector(m, (uint64_t)s->train.seed);
    }
    // AnyRes' image_newline when no file gave it (LLaVA-NeXT draws it fresh: N(0, 1) / sqrt(d)).
    if (rc == 0 && m->pt.w.newline && !m->filled[m->pt.w.newline - m->pt.views])
        llava_model_init_newline(m, (uint64_t)s->train.seed + 0x4E4C);
    // Fresh adapters (B zero: the run starts from the base model), drawn apart from the projector's;
    // or those of lora.init_adapter, whose shape must be the run's.
    const char *ia = s->lora.init_adapter;
    if (rc == 0 && mc.lora.r > 0 && !ia) llava_model_init_lora(m, (uint64_t)s->train.seed + 0x10A0);
    if (rc == 0 && ia) {
        lora_config have;
        if (access(ia, F_OK) != 0) rc = cfg_fail_missing("lora.init_adapter", ia);
        else if (peft_read_config(ia, &have) != 0) rc = llava_fail_ctx("lora.init_adapter");
        else if (have.dora)
            rc = llava_fail(
                "lora.init_adapter %s: a DoRA adapter (use_dora) runs folded into its base (generate, "
                "serve, eval, merge --base) but does not train here",
                ia);
        else if (have.r != mc.lora.r || have.alpha != mc.lora.alpha || have.targets != mc.lora.targets ||
                 have.rslora != mc.lora.rslora)
            rc = llava_fail(
                "lora.init_adapter %s: r %d, alpha %g, rslora %d, modules %#x; the run's lora.* say r %d, alpha %g, "
                "rslora %d, modules %#x (set them to the adapter's)",
                ia, have.r, have.alpha, have.rslora, have.targets, mc.lora.r, mc.lora.alpha, mc.lora.rslora,
                mc.lora.targets);
        else rc = llava_model_add_adapter(m, ia);
    }
    if (rc == 0) rc = llava_model_finish(m);
    if (rc != 0) llava_model_free(m);
    return rc;
}

// model.tokenizer, else the tokenizer.model (or tokenizer.json) beside the LM's (or the whole model's) weights.
char *train_tokenizer_path(const run_settings *s) {
    if (s->model.tokenizer) return xstrdup(s->model.tokenizer);
    return tok_default_path(s->model.init ? s->model.init : s->model.llm);
}

// Whether two paths name the same file: equal strings, or the same resolved path.
static int same_path(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return 1;
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    int same = ra && rb && strcmp(ra, rb) == 0;
    free(ra);
    free(rb);
    return same;
}

// The template a config names against the one a file was prepared with ("v1" is vicuna_v1).
static int same_template(const char *recorded, const char *want) {
    return recorded && (!strcmp(recorded, want) || (!strcmp(want, "vicuna_v1") && !strcmp(recorded, "v1")));
}

// What differs between the inputs a prepared dataset records and those the run asks for (malloc'd), or NULL
// when it was prepared from exactly these: the JSON (path, size, md5), the tokenizer (md5), the template, the
// tokenizer mode, the image aspect, model_max_length and the image folder (whose files prep checked).
// The aspect a prepared dataset records for the run: "anyres" for anyres_max_N too (its cap acts in the model, on
// features; the prepared samples and the loader's tiles are the same).
static const char *prepared_aspect(const data_settings *dd) { return dd->anyres ? "anyres" : dd->aspect_name; }

static char *stale_reason(const data_settings *dd, const char *tok, const llava_dataset *ds) {
    const char *data = dd->data_path;
    struct stat st;
    char hex[33];
    if (!ds->source || !same_path(ds->source, data))
        return xasprintf("prepared from %s, the run asks for %s", ds->source ? ds->source : "?", data);
    if (stat(data, &st) != 0 || (int64_t)st.st_size != ds->source_bytes)
        return xasprintf("%s has %lld bytes, %lld when it was prepared", data, (long long)st.st_size,
                         (long long)ds->source_bytes);
    if (prep_file_md5(data, hex, NULL) != 0) return xasprintf("%s: %s", data, llava_errmsg());
    if (!ds->source_md5 || strcmp(hex, ds->source_md5) != 0)
        return xasprintf("%s changed since it was prepared (md5 %s, then %s)", data, hex,
                         ds->source_md5 ? ds->source_md5 : "?");
    if (prep_file_md5(tok, hex, NULL) != 0) return xasprintf("%s: %s", tok, llava_errmsg());
    if (!ds->tokenizer_md5 || strcmp(hex, ds->tokenizer_md5) != 0)
        return xasprintf("the tokenizer %s (md5 %s) is not the one it was prepared with (md5 %s)", tok, hex,
                         ds->tokenizer_md5 ? ds->tokenizer_md5 : "?");
    if (!same_template(ds->template_name, dd->template_name))
        return xasprintf("template %s, the run asks for %s", ds->template_name ? ds->template_name : "?",
                         dd->template_name);
    if (!ds->tokenizer_mode || strcmp(ds->tokenizer_mode, dd->tokenizer_mode_name) != 0)
        return xasprintf("tokenizer mode %s, the run asks for %s", ds->tokenizer_mode ? ds->tokenizer_mode : "?",
                         dd->tokenizer_mode_name);
    if (!ds->aspect || strcmp(ds->aspect, prepared_aspect(dd)) != 0)
        return xasprintf("image aspect %s, the run asks for %s", ds->aspect ? ds->aspect : "?", prepared_aspect(dd));
    if (ds->model_max_length != dd->model_max_length)
        return xasprintf("model_max_length %d, the run asks for %d", ds->model_max_length, dd->model_max_length);
    if (ds->video_frames != dd->video_frames)
        return xasprintf("video_frames %d, the run asks for %d", ds->video_frames, dd->video_frames);
    const char *f0 = ds->image_folder ? ds->image_folder : "", *f1 = dd->image_folder ? dd->image_folder : "";
    if (strcmp(f0, f1) != 0) return xasprintf("image folder %s, the run asks for %s", f0, f1);
    return NULL;
}

int train_open_dataset(const run_settings *s, llava_dataset *ds) { return train_open_dataset_as(s, ds, 1); }

// data.data_path (prepared into output_dir/dataset.h5), or eval.data_path (into eval_dataset.h5):
// the same preparation, so the held-out samples get the training samples' tokens and masks.
static int open_dataset(const run_settings *s, const char *key, const char *data, const char *image_folder,
                        const char *h5_name, llava_dataset *ds, int check_source);

int train_open_dataset_as(const run_settings *s, llava_dataset *ds, int check_source) {
    return open_dataset(s, "data.data_path", s->data.data_path, s->data.image_folder, "dataset.h5", ds, check_source);
}

int train_open_eval_dataset(const run_settings *s, llava_dataset *ds, int check_source) {
    return open_dataset(s, "eval.data_path", s->eval.data_path,
                        s->eval.image_folder ? s->eval.image_folder : s->data.image_folder, "eval_dataset.h5", ds,
                        check_source);
}

static int open_dataset(const run_settings *s, const char *key, const char *data, const char *image_folder,
                        const char *h5_name, llava_dataset *ds, int check_source) {
    data_settings dd_copy = s->data;  // the training data's settings, with this dataset's files
    dd_copy.data_path = (char *)data;
    dd_copy.image_folder = (char *)image_folder;
    const data_settings *dd = &dd_copy;
    memset(ds, 0, sizeof *ds);
    if (!data) return llava_fail("no %s", key);
    if (!file_exists(data)) return cfg_fail_missing(key, data);
    size_t n = strlen(data);
    int is_json = n > 5 && strcmp(data + n - 5, ".json") == 0;
    char *h5 = NULL;
    int rc = 0;
    if (is_json) {
        // output_dir/dataset.h5 is ours: used again only while prepared from what this run asks, else prepared
        // again (prep writes a temporary file and renames it over the old one).
        h5 = path_join(s->checkpoint.output_dir, h5_name);
        char *tok = train_tokenizer_path(s), *why = NULL;
        if (!file_exists(h5)) {
            why = xstrdup("");
        } else if (dataset_open(ds, h5) != 0) {
            why = xasprintf("it does not open: %s", llava_errmsg());
        } else if (check_source) {  // the other ranks open what rank 0 has just checked (or prepared)
            why = stale_reason(dd, tok, ds);
            if (why) dataset_close(ds);
        }
        if (why) {  // prep reads the tokenizer and the images: a path that is not there is named as resolved
            const char *tok_key = s->model.tokenizer ? "model.tokenizer"
                                  : s->model.init    ? "model.tokenizer (unset: the one in model.init)"
                                                     : "model.tokenizer (unset: the one in model.llm)";
            const char *img_key =
                !strcmp(key, "eval.data_path") && s->eval.image_folder ? "eval.image_folder" : "data.image_folder";
            if (!file_exists(tok)) rc = cfg_fail_missing(tok_key, tok);
            else if (dd->image_folder && access(dd->image_folder, F_OK) != 0)
                rc = cfg_fail_missing(img_key, dd->image_folder);
            if (rc != 0) {
                free(why);
                why = NULL;
            }
        }
        if (why) {
            if (why[0]) fprintf(stderr, "train: %s is stale (%s): preparing it again\n", h5, why);
            prep_options o;
            prep_options_default(&o);
            o.data_path = data;
            o.image_folder = dd->image_folder;
            o.tokenizer_path = tok;
            o.template_name = dd->template_name;
            o.out_path = h5;
            o.mode = dd->tokenizer_mode;
            o.model_max_length = dd->model_max_length;
            o.video_frames = dd->video_frames;
            o.anyres = dd->anyres;
            o.aspect = dd->aspect;
            o.strict = dd->strict;
            fprintf(stderr, "train: preparing %s into %s\n", data, h5);
            o.progress = isatty(2);  // a live line on a terminal; the summary below either way
            prep_counts pc;
            memset(&pc, 0, sizeof pc);
            rc = mkdir_p(s->checkpoint.output_dir);
            if (rc == 0) rc = prep_run(&o, &pc);
            if (rc == 0) {  // what was prepared, and what was left out and why (the report has every id)
                char *rp = prep_report_path(h5);
                fprintf(stderr, "train: prepared %llu of %llu samples (%llu with an image, %llu text-only) in %.1f s",
                        (unsigned long long)pc.written, (unsigned long long)pc.records,
                        (unsigned long long)pc.with_image, (unsigned long long)pc.text_only, pc.seconds);
                int noted = 0;
                for (int k = 0; k < PREP_N_KINDS; k++) {
                    if (!pc.kind[k]) continue;
                    fprintf(stderr, "%s%s %llu%s", noted++ ? ", " : "; by kind: ", prep_kind_name(k),
                            (unsigned long long)pc.kind[k], prep_kind_written(k) ? " (kept)" : " (left out)");
                }
                if (noted) fprintf(stderr, "; every id in %s", rp);
                fprintf(stderr, "\n");
                free(rp);
            }
            if (rc == 0) rc = dataset_open(ds, h5);
        }
        free(why);
        free(tok);
        data = h5;
    } else {
        rc = dataset_open(ds, data);  // an HDF5 file given as it is (prepared by hand): used as it is
    }
    if (rc != 0) {
        free(h5);
        return -1;
    }
    // A dataset prepared with other settings would train on other tokens: refuse it.
    const char *want_t = dd->template_name, *want_m = dd->tokenizer_mode_name, *want_a = prepared_aspect(dd);
    if (!same_template(ds->template_name, want_t) || !ds->tokenizer_mode || strcmp(ds->tokenizer_mode, want_m) != 0)
        rc = llava_fail("%s was prepared with template %s / tokenizer mode %s, the config asks for %s / %s", data,
                        ds->template_name ? ds->template_name : "?", ds->tokenizer_mode ? ds->tokenizer_mode : "?",
                        want_t, want_m);
    else if (ds->aspect && strcmp(ds->aspect, want_a) != 0 && ds->pixel_index)
        rc = llava_fail("%s stores %s-mode pixels, the config asks for %s", data, ds->aspect, want_a);
    free(h5);
    if (rc != 0) dataset_close(ds);
    return rc;
}

char *train_dataset_json(const llava_dataset *ds) {
    cJSON *j = cJSON_CreateObject();
    const char *strs[][2] = {{"file", ds->path},
                             {"source", ds->source},
                             {"source_md5", ds->source_md5},
                             {"tokenizer", ds->tokenizer_path},
                             {"tokenizer_md5", ds->tokenizer_md5},
                             {"template", ds->template_source ? ds->template_source : ds->template_name},
                             {"tokenizer_mode", ds->tokenizer_mode},
                             {"image_aspect_ratio", ds->aspect},
                             {"image_folder", ds->image_folder}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i][1]) cJSON_AddStringToObject(j, strs[i][0], strs[i][1]);
    if (ds->source_bytes >= 0) cJSON_AddNumberToObject(j, "source_bytes", (double)ds->source_bytes);
    if (ds->records >= 0) cJSON_AddNumberToObject(j, "records", (double)ds->records);
    cJSON_AddNumberToObject(j, "samples", (double)ds->n);
    cJSON_AddNumberToObject(j, "model_max_length", ds->model_max_length);
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}
