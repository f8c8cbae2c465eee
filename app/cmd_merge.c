// llava merge: a LoRA adapter folded into its base model, written as a llava-hf folder that
// transformers, `llava generate/serve/eval` and `llava export` load without the adapter.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "kernels/backend.h"
#include "model/io/export.h"
#include "model/io/safetensors.h"
#include "model/llava.h"
#include "train/config.h"
#include "train/settings.h"
#include "train/trainer.h"

static const char USAGE[] =
    "usage: llava merge --adapter DIR --out DIR (--base DIR | --config RUN.json [--set key=value ...])\n"
    "                   [--dtype base|f32|bf16|f16] [--tokenizer PATH]\n"
    "\n"
    "Folds a LoRA adapter into its base model, W + (alpha / r) B A in fp32 as PEFT's merge_and_unload does, and\n"
    "writes the merged model as a llava-hf folder (config.json, model.safetensors, the tokenizer and processor\n"
    "files): what LLaVA's scripts/merge_lora_weights.py gives, loadable by transformers and by `llava generate`,\n"
    "`serve`, `eval` and `export`. Whatever else the adapter saved (the projector: modules_to_save, LLaVA's\n"
    "non_lora_trainables.bin) replaces the base's. To run an adapter unmerged instead: --adapter on generate,\n"
    "serve and eval.\n"
    "\n"
    "  --adapter DIR       the adapter: a PEFT folder (adapter_config.json + adapter_model.safetensors, as\n"
    "                      `llava train` writes under OUTPUT/adapter) or one of LLaVA's LoRA checkpoints\n"
    "                      (adapter_model.bin + non_lora_trainables.bin) (required)\n"
    "  --out DIR           the merged model folder (created; required)\n"
    "  --base DIR          the base model, a llava-hf or original LLaVA folder (for an adapter trained on\n"
    "                      a whole model: the task-lora presets' model.init)\n"
    "  --config RUN.json   or the training preset the adapter was trained with: its model.llm +\n"
    "                      model.vision_tower (+ model.pretrain_mm_mlp_adapter) or model.init are the base,\n"
    "                      as LLaVA's merge takes --model-base vicuna for a stage-2 LoRA run\n"
    "  --set key=value     overrides of the preset's keys (repeatable; with --config)\n"
    "  --dtype T           the merged weights' type: base (default: the type of the base's language-model\n"
    "                      weights), f32, bf16 or f16\n"
    "  --tokenizer PATH    the tokenizer.model copied beside the model (default: the base's or the preset's)\n";

static int usage(void) {
    fputs(USAGE, stderr);
    return 2;
}

// The stored type of a weight file's language-model tensors (F32 when none is found).
static dtype_t base_dtype(const char *path) {
    st_set s;
    if (!path || st_set_open(&s, path) != 0) {
        llava_clear_error();
        return DT_F32;
    }
    dtype_t t = DT_F32;
    for (int i = 0; i < s.n_entries; i++)
        if (strstr(s.entries[i]->name, "layers.0.self_attn.q_proj.weight") && !strstr(s.entries[i]->name, "vision")) {
            t = s.entries[i]->dtype;
            break;
        }
    st_set_close(&s);
    return t == DT_BF16 || t == DT_F16 ? t : DT_F32;
}

// model_max_length of the base's tokenizer_config.json (0 when it has none).
static int base_max_length(const char *base) {
    char *p = path_join(base, "tokenizer_config.json");
    size_t len = 0;
    char *text = file_exists(p) ? read_file(p, 1 << 22, &len) : NULL;
    free(p);
    if (!text) llava_clear_error();  // a base without the file keeps the default
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "model_max_length");
    int n = cJSON_IsNumber(v) && v->valuedouble > 0 && v->valuedouble < 1e9 ? (int)v->valuedouble : 0;
    cJSON_Delete(j);
    return n;
}

int cmd_merge(int argc, char **argv) {
    static const char *const FLAGS[] = {"--adapter", "--out",   "--base",      "--config",
                                        "--set",     "--dtype", "--tokenizer", "--help"};
    const char *adapter = NULL, *out = NULL, *base = NULL, *config = NULL, *dtype_arg = "base", *tok = NULL;
    const char **sets = xcalloc((size_t)argc, sizeof(char *));
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int v = i + 1 < argc;
        if (args_is_help(a)) {
            fputs(USAGE, stdout);
            free(sets);
            return 0;
        } else if (strcmp(a, "--adapter") == 0 && v) adapter = argv[++i];
        else if (strcmp(a, "--out") == 0 && v) out = argv[++i];
        else if (strcmp(a, "--base") == 0 && v) base = argv[++i];
        else if (strcmp(a, "--config") == 0 && v) config = argv[++i];
        else if (strcmp(a, "--set") == 0 && v) sets[n_sets++] = argv[++i];
        else if (strcmp(a, "--dtype") == 0 && v) dtype_arg = argv[++i];
        else if (strcmp(a, "--tokenizer") == 0 && v) tok = argv[++i];
        else {
            free(sets);
            return args_unknown("merge", a, FLAGS, ARGS_COUNT(FLAGS));
        }
    }
    if (!adapter || !out || !base == !config || (n_sets && !config)) {
        fprintf(stderr,
                "llava merge: --adapter, --out and one of --base or --config are required (--set needs "
                "--config)\n");
        free(sets);
        return usage();
    }
    dtype_t dtype = DT_F32;
    int from_base = strcmp(dtype_arg, "base") == 0;
    if (!from_base && strcmp(dtype_arg, "f32") != 0 && strcmp(dtype_arg, "bf16") != 0 &&
        strcmp(dtype_arg, "f16") != 0) {
        fprintf(stderr, "llava merge: --dtype %s: base, f32, bf16 or f16\n", dtype_arg);
        free(sets);
        return 2;
    }
    if (!from_base) dtype = !strcmp(dtype_arg, "bf16") ? DT_BF16 : !strcmp(dtype_arg, "f16") ? DT_F16 : DT_F32;
    llava_backend *be = llava_backend_open("cpu", NULL);
    llava_model m;
    int rc = 0, have_m = 0;
    char *tok_path = tok ? xstrdup(tok) : NULL;
    char template_name[32] = "vicuna_v1";  // LLaVA-1.5's; a preset names its own
    int max_length = 0;                    // the tokenizer's model_max_length: the base's, or the preset's
    if (base) {
        llava_load_options lo = {.adapter = adapter};
        rc = llava_model_load_opts(&m, base, be, &lo);
        if (from_base) dtype = base_dtype(base);
        if (!tok_path) {
            char *t = path_join(base, "tokenizer.model");
            if (file_exists(t)) tok_path = t;
            else free(t);
        }
        if (rc == 0) max_length = base_max_length(base);
    } else {
        // The run's own model, with the adapter as lora.init_adapter (whose shape must be lora.*'s).
        train_config c;
        cfg_init_defaults(&c);
        rc = cfg_load(&c, config);
        for (int k = 0; k < n_sets && rc == 0; k++) rc = cfg_set(&c, sets[k]);
        char *ia = xasprintf("lora.init_adapter=%s", adapter);
        if (rc == 0) rc = cfg_set(&c, ia);
        // A QLoRA run's adapter merges onto the unquantised base, as LLaVA's merge loads it (PEFT's
        // merge of a 4-bit model would write the dequantised weights).
        if (rc == 0) rc = cfg_set(&c, "lora.bits=16");
        free(ia);
        if (rc == 0 && !cfg_bool(&c, "lora.enabled"))
            rc = llava_fail("%s: the preset trains no LoRA (lora.enabled is false)", config);
        run_settings s;
        if (rc == 0) rc = settings_from_config(&c, &s);
        if (rc == 0) {
            rc = train_build_model(&s, be, &m);
            if (from_base) dtype = base_dtype(s.model.init ? s.model.init : s.model.llm);
            if (!tok_path) tok_path = train_tokenizer_path(&s);
            snprintf(template_name, sizeof template_name, "%s", s.data.template_name);
            max_length = s.data.model_max_length;
            settings_free(&s);
        }
        cfg_free(&c);
    }
    have_m = rc == 0;
    if (rc == 0) rc = export_llava_hf(&m, out, dtype);
    if (rc == 0 && tok_path && file_exists(tok_path)) {
        export_processor_options po = {
            .tokenizer = tok_path, .model_max_length = max_length, .template_name = template_name};
        rc = export_llava_hf_processor(&m, out, &po);
    }
    if (rc == 0)
        printf("merged %s (r %d, alpha %g, scaling %g) into %s, %s weights%s\n", adapter, m.cfg.lora.r,
               m.cfg.lora.alpha, (double)lora_scaling(&m.cfg.lora), out, dtype_name(dtype),
               tok_path && file_exists(tok_path) ? ", with the tokenizer and processor files" : "");
    else fprintf(stderr, "llava merge: %s\n", llava_errmsg());
    if (have_m) llava_model_free(&m);
    free(tok_path);
    free(sets);
    llava_backend_close(be);
    return rc == 0 ? 0 : 1;
}
