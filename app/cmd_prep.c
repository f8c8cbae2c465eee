// llava prep: LLaVA's JSON and image folder -> one HDF5 file of token ids, labels, modality lengths, image
// paths and optionally pixels (data/prep.h), with a report of every sample left out or masked.
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "data/prep.h"
#include "data/template.h"
#include "train/config.h"
#include "train/settings.h"

static const char USAGE[] =
    "usage: llava prep --data FILE.json --image-folder DIR --tokenizer tokenizer.model|tokenizer.json --template "
    "NAME|FILE.json\n"
    "                  --out DATA.h5 [--mode hf431|hf437|legacy] [--model-max-length N] [--aspect square|pad]\n"
    "                  [--store-pixels [--image-size S]] [--no-check-images] [--threads N] [--strict] [--compress "
    "0-9]\n"
    "                  [--report PATH] [--force] [--quiet]\n"
    "       llava prep --config PRESET.json [--set key=value ...] --out DATA.h5 [any flag above, which wins]\n"
    "\n"
    "Applies LLaVA-1.5's template, tokenizer and label masks to every sample of LLaVA's JSON array (streamed: memory\n"
    "does not grow with the file) on every core, and writes an HDF5 file that `llava train` reads and `llava show`\n"
    "prints. The same inputs give the same bytes, whatever the thread count.\n"
    "\n"
    "  --data FILE.json    LLaVA's JSON array of samples (required, or data.data_path of --config)\n"
    "  --image-folder DIR  the folder the samples' image paths are relative to (required unless neither images\n"
    "                      are checked nor stored; or data.image_folder of --config)\n"
    "  --tokenizer PATH    the SentencePiece tokenizer.model (required, or model.tokenizer of --config, else the\n"
    "                      tokenizer.model in its model.llm / model.init)\n"
    "  --template          plain (stage 1), vicuna_v1 (stage 2) or a template JSON file (docs/tokenizer.md); no\n"
    "                      default: required unless a --config preset (or --set) sets data.template\n"
    "  --out DATA.h5       the HDF5 file to write (required)\n"
    "  --mode              tokenizer rules: hf431 = the released checkpoints (default), hf437 = LLaVA HEAD, legacy\n"
    "  --model-max-length  LLaVA's truncation (default 2048; 0 = none)\n"
    "  --aspect            the image preprocessing, recorded in the file (training checks it) and used by\n"
    "                      --store-pixels: square = stage 1, pad = stage 2 (default: square)\n"
    "  --store-pixels      also store each image preprocessed (--aspect) as uint8 S x S x 3: 338 KB per image at\n"
    "                      336, and no decoding while training (default: off)\n"
    "  --image-size S      with --store-pixels: the side S (default 336)\n"
    "  --no-check-images   do not decode the images (faster; unreadable images then surface only in training;\n"
    "                      default: every image is decoded once)\n"
    "  --threads N         worker threads (default 0: every core this process may use)\n"
    "  --video-frames N    a video sample (\"video\": a list of its frames' image paths, one <image> for them all)\n"
    "                      keeps N frames, uniformly spaced as LLaVA-NeXT samples them (default: data.video_frames\n"
    "                      of --config, else 0: every frame)\n"
    "  --strict            fail at the first sample that is left out or masked for a tokenization mismatch (default:\n"
    "                      off, they are reported)\n"
    "  --compress          deflate level of the token datasets (default 1; 0 = none)\n"
    "  --report            where the report goes (default: DATA.report.json): the counts, and per kind the index,\n"
    "                      id and reason of every sample left out (missing_image, unreadable_image, path_refused,\n"
    "                      malformed, no_image_token, extra_image_token) or written masked (mismatch), cut\n"
    "                      (truncated) or with its <image> in an answer (image_in_answer)\n"
    "  --force             write over an existing --out (or --report) that prep did not write; never over --data\n"
    "                      (default: off)\n"
    "  --quiet             no progress line (default: off)\n"
    "  --config PRESET     take data.* (and model.tokenizer / model.llm for the tokenizer) from a training preset\n"
    "                      (default: none; its paths resolve as `llava config --help` says)\n"
    "  --set key=value     override one key of the preset (repeatable; default: none)\n";

// SIGTERM, SIGINT, SIGHUP while prep runs: the handler only records the signal; prep_run sees it, stops its
// workers and removes its temporary file, and the command exits with 128 + the signal.
static atomic_int stop_signal;
static void on_signal(int sig) { atomic_store_explicit(&stop_signal, sig, memory_order_relaxed); }

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int cmd_prep(int argc, char **argv) {
    prep_options o;
    prep_options_default(&o);
    o.progress = 1;
    const char *config = NULL, *mode = NULL, *aspect = NULL;
    int max_len = -1, strict = 0, quiet = 0, video_frames = -1;
    char **sets = xcalloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0, rc = 0;
    static const char *const FLAGS[] = {"--data",       "--image-folder", "--tokenizer",    "--template",
                                        "--out",        "--report",       "--mode",         "--aspect",
                                        "--config",     "--set",          "--store-pixels", "--no-check-images",
                                        "--strict",     "--force",        "--quiet",        "--model-max-length",
                                        "--image-size", "--threads",      "--compress",     "--video-frames",
                                        "--help"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int v = i + 1 < argc;
        if (strcmp(a, "--data") == 0 && v) o.data_path = argv[++i];
        else if (strcmp(a, "--image-folder") == 0 && v) o.image_folder = argv[++i];
        else if (strcmp(a, "--tokenizer") == 0 && v) o.tokenizer_path = argv[++i];
        else if (strcmp(a, "--template") == 0 && v) o.template_name = argv[++i];
        else if (strcmp(a, "--out") == 0 && v) o.out_path = argv[++i];
        else if (strcmp(a, "--report") == 0 && v) o.report_path = argv[++i];
        else if (strcmp(a, "--mode") == 0 && v) mode = argv[++i];
        else if (strcmp(a, "--aspect") == 0 && v) aspect = argv[++i];
        else if (strcmp(a, "--config") == 0 && v) config = argv[++i];
        else if (strcmp(a, "--set") == 0 && v) sets[n_sets++] = argv[++i];
        else if (strcmp(a, "--store-pixels") == 0) o.store_pixels = 1;
        else if (strcmp(a, "--no-check-images") == 0) o.check_images = 0;
        else if (strcmp(a, "--strict") == 0) strict = 1;
        else if (strcmp(a, "--force") == 0) o.force = 1;
        else if (strcmp(a, "--quiet") == 0) quiet = 1;
        else if (strcmp(a, "--model-max-length") == 0 && v) rc = parse_int(argv[++i], 0, 1 << 30, &max_len);
        else if (strcmp(a, "--image-size") == 0 && v) rc = parse_int(argv[++i], 1, 4096, &o.image_size);
        else if (strcmp(a, "--threads") == 0 && v) rc = parse_int(argv[++i], 0, 1024, &o.threads);
        else if (strcmp(a, "--compress") == 0 && v) rc = parse_int(argv[++i], 0, 9, &o.compress);
        else if (strcmp(a, "--video-frames") == 0 && v) rc = parse_int(argv[++i], 0, 1 << 20, &video_frames);
        else if (args_is_help(a)) {
            fputs(USAGE, stdout);
            free(sets);
            return 0;
        } else {
            free(sets);
            return args_unknown("prep", a, FLAGS, ARGS_COUNT(FLAGS));
        }
        if (rc) {
            fprintf(stderr, "llava prep: bad value for %s: %s\n", a, argv[i]);
            free(sets);
            return 2;
        }
    }
    // A preset supplies what the flags leave unset.
    train_config cfg;
    run_settings rs;
    int have_cfg = 0;
    char *tok_from_cfg = NULL;
    int explicit_template = 0;
    for (int i = 1; i < argc; i++) explicit_template |= strcmp(argv[i], "--template") == 0;
    int cfg_template = 0;  // whether the preset or a --set names data.template (the schema's default does not)
    if (config || n_sets) {
        cfg_init_defaults(&cfg);
        have_cfg = 1;
        cJSON *sec = cJSON_GetObjectItemCaseSensitive(cfg.root, "data");
        cJSON *def = cJSON_DetachItemFromObjectCaseSensitive(sec, "template");
        if (config) rc = cfg_load(&cfg, config);
        for (int i = 0; i < n_sets && rc == 0; i++) rc = cfg_set(&cfg, sets[i]);
        cfg_template = cJSON_GetObjectItemCaseSensitive(sec, "template") != NULL;
        if (cfg_template) cJSON_Delete(def);
        else cJSON_AddItemToObject(sec, "template", def);
        if (rc == 0) rc = settings_from_config(&cfg, &rs);
        cfg_free(&cfg);
        if (rc) {
            fprintf(stderr, "llava prep: %s\n", llava_errmsg());
            free(sets);
            return 2;
        }
        if (!o.data_path) o.data_path = rs.data.data_path;
        if (!o.image_folder) o.image_folder = rs.data.image_folder;
        if (!explicit_template && cfg_template) o.template_name = rs.data.template_name;
        if (!mode) mode = rs.data.tokenizer_mode_name;
        if (!aspect) aspect = rs.data.aspect_name;
        if (max_len < 0) max_len = rs.data.model_max_length;
        if (video_frames < 0) video_frames = rs.data.video_frames;
        strict |= rs.data.strict;
        if (!o.tokenizer_path) {
            const char *t = rs.model.tokenizer;
            const char *dir = rs.model.llm ? rs.model.llm : rs.model.init;
            if (t) o.tokenizer_path = t;
            else if (dir) o.tokenizer_path = tok_from_cfg = tok_default_path(dir);
        }
    }
    free(sets);
    if (max_len >= 0) o.model_max_length = max_len;
    if (video_frames >= 0) o.video_frames = video_frames;
    o.strict = strict;
    o.progress = !quiet;
    if (mode && tok_mode_parse(mode, &o.mode)) {
        fprintf(stderr, "llava prep: %s\n", llava_errmsg());
        rc = 2;
    } else if (aspect && strcmp(aspect, "square") != 0 && strcmp(aspect, "pad") != 0) {
        fprintf(stderr, "llava prep: --aspect must be square or pad, not %s\n", aspect);
        rc = 2;
    } else if (!o.template_name) {
        // No default: the template decides every label, and stage 1 (plain) and stage 2 (vicuna_v1) differ.
        fprintf(stderr, "llava prep: no template: give --template NAME|FILE.json (built in: " CONV_TEMPLATE_BUILTINS
                        "; or --config with a preset that sets data.template)\n");
        rc = 2;
    } else if (!o.data_path || !o.tokenizer_path || !o.out_path) {
        fprintf(stderr, "llava prep: --data, --tokenizer and --out are required (or --config for the first two)\n\n%s",
                USAGE);
        rc = 2;
    }
    if (aspect && strcmp(aspect, "pad") == 0) o.aspect = IMAGE_ASPECT_PAD;
    if (rc) {
        if (have_cfg) settings_free(&rs);
        free(tok_from_cfg);
        return rc;
    }
    prep_counts c;
    static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
    struct sigaction sa, old[3];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;  // reads and writes go on; the flag stops the run
    sigemptyset(&sa.sa_mask);
    atomic_store(&stop_signal, 0);
    for (int i = 0; i < 3; i++) sigaction(sigs[i], &sa, &old[i]);
    o.stop = &stop_signal;
    rc = prep_run(&o, &c);
    for (int i = 0; i < 3; i++) sigaction(sigs[i], &old[i], NULL);
    int sig = atomic_load(&stop_signal);
    if (rc) {
        fprintf(stderr, "llava prep: %s\n", llava_errmsg());
        if (sig) {
            if (have_cfg) settings_free(&rs);
            free(tok_from_cfg);
            return 128 + sig;
        }
    } else {
        char b1[32], b2[32], b3[32], b4[32], b5[32];
        printf("llava prep: %s records -> %s samples in %s (%s with an image, %s text-only; %s tokens)\n",
               fmt_count(c.records, b1), fmt_count(c.written, b2), o.out_path, fmt_count(c.with_image, b3),
               fmt_count(c.text_only, b4), fmt_count(c.tokens, b5));
        printf("  %.2f s on %d threads: %.0f records/s\n", c.seconds, c.threads,
               c.seconds > 0 ? (double)c.records / c.seconds : 0);
        for (int k = 0; k < PREP_N_KINDS; k++) printf("  %-40s %s\n", prep_kind_summary(k), fmt_count(c.kind[k], b1));
        if (o.store_pixels)
            printf("  %s images stored preprocessed (%dx%d, %s)\n", fmt_count(c.pixels, b1), o.image_size, o.image_size,
                   o.aspect == IMAGE_ASPECT_PAD ? "pad" : "square");
        char *report = o.report_path ? xstrdup(o.report_path) : prep_report_path(o.out_path);
        printf("  report (ids of each kind): %s\n", report);
        free(report);
    }
    if (have_cfg) settings_free(&rs);
    free(tok_from_cfg);
    return rc ? 1 : 0;
}
