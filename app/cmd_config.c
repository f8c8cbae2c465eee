#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "train/config.h"

static const char *type_name(cfg_type t) {
    switch (t) {
    case CFG_INT: return "int";
    case CFG_FLOAT: return "float";
    case CFG_BOOL: return "bool";
    case CFG_STR: return "string";
    case CFG_ENUM: return "choice";
    case CFG_STRLIST: return "list";
    }
    return "?";
}

static const char USAGE[] =
    "usage: llava config [PRESET.json] [--set key=value ...] [--keys]\n"
    "\n"
    "Prints a training preset fully resolved as JSON: the schema's defaults, then the \"base\" presets it names,\n"
    "then the preset, then each --set in order; the result is validated as `llava train` validates it. Without a\n"
    "preset, prints the defaults (with --set applied).\n"
    "\n"
    "  PRESET.json      the preset (default: none, the defaults alone)\n"
    "  --set key=value  override one key, e.g. --set train.learning_rate=2e-5 (repeatable; default: none). Lists\n"
    "                   are comma-separated (train.trainable=projector,lm); null unsets a key\n"
    "  --keys           list every key: its type, default, meaning and LLaVA's name for it [in brackets]\n"
    "\n"
    "Paths in a preset (model.llm, model.vision_tower, model.init, model.tokenizer,\n"
    "model.pretrain_mm_mlp_adapter, data.data_path, data.image_folder, eval.data_path, eval.image_folder,\n"
    "checkpoint.output_dir):\n"
    "  a relative path resolves against the working folder of the command that reads the preset, as LLaVA's\n"
    "  command-line flags (--model_name_or_path, --data_path, --image_folder, ...) do; run from the folder your\n"
    "  paths are relative to, or give absolute paths. \"base\" alone resolves against the folder of the preset\n"
    "  that names it, so a preset and its base move together. A path that is not there is reported with the\n"
    "  absolute path it resolved to. docs/config.md has the whole rule with examples.\n";

int cmd_config(int argc, char **argv) {
    static const char *const FLAGS[] = {"--set", "--keys", "--help"};
    const char *preset = NULL;
    const char **sets = xcalloc((size_t)argc, sizeof *sets);
    int n_sets = 0, keys = 0;
    for (int i = 1; i < argc; i++) {
        if (args_is_help(argv[i])) {
            fputs(USAGE, stdout);
            free(sets);
            return 0;
        } else if (strcmp(argv[i], "--keys") == 0) {
            keys = 1;
        } else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            sets[n_sets++] = argv[++i];
        } else if (argv[i][0] != '-' && !preset) {
            preset = argv[i];
        } else if (argv[i][0] != '-') {
            fprintf(stderr, "llava config: %s: one preset only (%s is the first)\n", argv[i], preset);
            free(sets);
            return 2;
        } else {
            free(sets);
            return args_unknown("config", argv[i], FLAGS, ARGS_COUNT(FLAGS));
        }
    }
    if (keys) {
        for (int k = 0; k < CFG_SCHEMA_LEN; k++) {
            const cfg_key *e = &CFG_SCHEMA[k];
            printf("%-34s %-6s default %-12s %s%s%s\n", e->key, type_name(e->type), e->def, e->help,
                   e->choices ? "; one of " : "", e->choices ? e->choices : "");
        }
        free(sets);
        return 0;
    }
    train_config c;
    cfg_init_defaults(&c);
    int rc = 0, validate = preset != NULL;
    if (preset) rc = cfg_load(&c, preset);
    for (int k = 0; k < n_sets && rc == 0; k++) rc = cfg_set(&c, sets[k]);
    free(sets);
    if (rc == 0 && validate) rc = cfg_validate(&c);
    if (rc != 0) {
        fprintf(stderr, "llava config: %s\n", llava_errmsg());
        cfg_free(&c);
        return 1;
    }
    char *json = cfg_to_json(&c);
    printf("%s\n", json);
    free(json);
    cfg_free(&c);
    return 0;
}
