// llava export --format gguf: a trained model as the two GGUF files llama.cpp runs LLaVA-1.5 from.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "data/tokenizer.h"
#include "kernels/backend.h"
#include "model/io/gguf.h"
#include "model/llava.h"

static const char USAGE[] =
    "usage: llava export --format gguf --model DIR --out DIR [--type f16|bf16|q8_0|f32] [--tokenizer PATH]\n"
    "                    [--name NAME]\n"
    "\n"
    "Writes a model folder (llava-hf or original LLaVA layout, as `llava train` saves it) as the two files\n"
    "llama.cpp's LLaVA-1.5 path loads (docs/gguf.md):\n"
    "  OUT/model-TYPE.gguf         the language model: architecture \"llama\", the SentencePiece vocabulary,\n"
    "                              matrices in TYPE, norms in F32 (Q8_0 rows that are not whole blocks of 32\n"
    "                              are written as F16, as llama.cpp's converter does)\n"
    "  OUT/mmproj-model-f16.gguf   the vision tower up to the feature layer and the projector (clip.* keys,\n"
    "                              v.* and mm.* tensors); F32 matrices with --type f32 (mmproj-model-f32.gguf)\n"
    "Run them with llama.cpp:  llama-mtmd-cli -m OUT/model-TYPE.gguf --mmproj OUT/mmproj-model-f16.gguf\n"
    "                          --image IMAGE -p PROMPT\n"
    "\n"
    "  --format gguf     the output format (required; gguf is the only one)\n"
    "  --model DIR       the model folder (required)\n"
    "  --out DIR         where the files go (created if missing; required)\n"
    "  --type T          f16 (default), bf16, q8_0 or f32: the language model's matrices\n"
    "  --tokenizer PATH  the SentencePiece tokenizer.model (default: DIR/tokenizer.model; a tokenizer.json model\n"
    "                    is refused: not yet)\n"
    "  --name NAME       general.name in both files (default: the model folder's name)\n";

static int usage(void) {
    fputs(USAGE, stderr);
    return 2;
}

static void report(const char *path, const char *what, const gguf_export_info *info) {
    printf("%s: %s, %d tensors, %.1f MiB", path, what, info->n_tensors, (double)info->bytes / (1024.0 * 1024.0));
    if (info->n_fallback) printf(" (%d Q8_0 matrices with rows not a multiple of 32 written as F16)", info->n_fallback);
    printf("\n");
}

int cmd_export(int argc, char **argv) {
    static const char *const FLAGS[] = {"--format", "--model", "--out", "--type", "--tokenizer", "--name", "--help"};
    const char *format = NULL, *model = NULL, *out = NULL, *type = "f16", *tok_path = NULL, *name = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int v = i + 1 < argc;
        if (args_is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(a, "--format") == 0 && v) format = argv[++i];
        else if (strcmp(a, "--model") == 0 && v) model = argv[++i];
        else if (strcmp(a, "--out") == 0 && v) out = argv[++i];
        else if (strcmp(a, "--type") == 0 && v) type = argv[++i];
        else if (strcmp(a, "--tokenizer") == 0 && v) tok_path = argv[++i];
        else if (strcmp(a, "--name") == 0 && v) name = argv[++i];
        else return args_unknown("export", a, FLAGS, ARGS_COUNT(FLAGS));
    }
    if (!format || !model || !out) {
        fprintf(stderr, "llava export: --format, --model and --out are required\n");
        return usage();
    }
    if (strcmp(format, "gguf") != 0) {
        fprintf(stderr, "llava export: --format %s: gguf is the only format\n", format);
        return 2;
    }
    gguf_out_type t;
    if (gguf_out_type_parse(type, &t) != 0) {
        fprintf(stderr, "llava export: %s\n", llava_errmsg());
        return 2;
    }
    char *tp = tok_path ? xstrdup(tok_path) : tok_default_path(model);
    char *nm = NULL;
    if (name) {
        nm = xstrdup(name);
    } else {  // the folder's name, without trailing slashes
        size_t n = strlen(model);
        while (n > 1 && model[n - 1] == '/') n--;
        size_t b = n;
        while (b > 0 && model[b - 1] != '/') b--;
        nm = xasprintf("%.*s", (int)(n - b), model + b);
    }
    int rc = 1;
    tokenizer *tok = tok_load(tp);
    llava_backend *be = NULL;
    llava_model m;
    int loaded = 0;
    if (!tok) {
        fprintf(stderr, "llava export: %s\n", llava_errmsg());
        goto done;
    }
    if (tok_bpe(tok)) {  // before anything is loaded or written
        fprintf(stderr,
                "llava export: %s is a tokenizer.json (byte-level BPE); the GGUF export writes SentencePiece "
                "vocabularies only, not yet BPE ones\n",
                tp);
        goto done;
    }
    be = llava_backend_open("cpu", NULL);
    if (!be) {
        fprintf(stderr, "llava export: %s\n", llava_errmsg());
        goto done;
    }
    if (llava_model_load(&m, model, be) != 0) {
        fprintf(stderr, "llava export: %s\n", llava_errmsg());
        goto done;
    }
    loaded = 1;
    if (mkdir_p(out) != 0) {
        fprintf(stderr, "llava export: %s\n", llava_errmsg());
        goto done;
    }
    char *lm_file = xasprintf("model-%s.gguf", gguf_out_type_name(t));
    char *mm_file = xstrdup(t == GGUF_OUT_F32 ? "mmproj-model-f32.gguf" : "mmproj-model-f16.gguf");
    char *lm_path = path_join(out, lm_file), *mm_path = path_join(out, mm_file);
    gguf_export_info li, mi;
    if (gguf_export_lm(&m, tok, t, nm, lm_path, &li) != 0 || gguf_export_mmproj(&m, t, nm, mm_path, &mi) != 0) {
        fprintf(stderr, "llava export: %s\n", llava_errmsg());
    } else {
        char what[128];
        snprintf(what, sizeof what, "language model (llama, %d layers, vocabulary %d), %s",
                 m.cfg.text.num_hidden_layers, m.cfg.text.vocab_size, gguf_out_type_name(t));
        report(lm_path, what, &li);
        snprintf(what, sizeof what, "vision tower (%d of %d layers) and projector (clip, mlp)", m.vision_layers,
                 m.cfg.vision.num_hidden_layers);
        report(mm_path, what, &mi);
        rc = 0;
    }
    free(lm_file);
    free(mm_file);
    free(lm_path);
    free(mm_path);
done:
    if (loaded) llava_model_free(&m);
    if (be) llava_backend_close(be);
    tok_free(tok);
    free(tp);
    free(nm);
    return rc;
}
