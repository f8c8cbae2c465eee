// llava show: one sample of a prepared dataset as LLaVA's preprocess returns it (input_ids with -200 at the
// image, labels with -100 where ignored) and the text it stands for with the supervised spans marked: what
// exactly the model is trained on.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "data/dataset.h"
#include "data/jsonl.h"
#include "data/prep.h"
#include "data/prep_record.h"
#include "data/template.h"

static const char USAGE[] =
    "usage: llava show DATA.h5 [--index I | --id ID] [--json] [--tokenizer PATH] [--color auto|always|never]\n"
    "\n"
    "Prints sample I (default 0) of a dataset written by `llava prep`: its id, image, input_ids (-200 = the image),\n"
    "labels (-100 = not supervised) and the text the tokens stand for, with the supervised spans in \xe2\x9f\xa6 "
    "\xe2\x9f\xa7\n"
    "(in colour on a terminal). --json prints one object: {\"index\", \"id\", \"image\" (a path, or the list of\n"
    "a sample's images or video frames), \"source_index\", \"flags\" (\"truncated\", \"mismatch\", \"video\"),\n"
    "\"modality_length\", \"input_ids\", \"labels\", \"text\", \"supervised\"}, where \"text\" is unmarked and\n"
    "\"supervised\" lists the text of each supervised span. The tokenizer is the one prep used (its path is stored),\n"
    "or --tokenizer.\n"
    "\n"
    "  DATA.h5           a dataset written by `llava prep` (or by `llava train` into its output folder; required)\n"
    "  --index I         the sample's index (default 0)\n"
    "  --id ID           the sample whose id is ID instead (default: none)\n"
    "  --json            one JSON object instead of text (default: off)\n"
    "  --tokenizer PATH  the tokenizer.model to decode with (default: the path prep stored)\n"
    "  --color WHEN      colour the supervised spans: auto (on a terminal), always or never (default: auto)\n";

static const char OPEN[] = "\xe2\x9f\xa6", CLOSE[] = "\xe2\x9f\xa7";  // ⟦ ⟧

static void sb_ids(strbuf *o, const int32_t *v, size_t n, const char *sep) {
    for (size_t i = 0; i < n; i++) {
        char b[16];
        int m = snprintf(b, sizeof b, "%s%d", i ? sep : "", v[i]);
        sb_put(o, b, (size_t)m);
    }
}

static void sb_jstr(strbuf *o, const char *s) {
    if (!s) sb_puts(o, "null");
    else json_string_encode(s, strlen(s), o);
}

int cmd_show(int argc, char **argv) {
    const char *path = NULL, *tok_path = NULL, *id = NULL, *color = "auto";
    long long index = 0;
    int json = 0;
    static const char *const FLAGS[] = {"--index", "--id", "--json", "--tokenizer", "--color", "--help"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int v = i + 1 < argc;
        if (strcmp(a, "--index") == 0 && v) {
            char *end;
            index = strtoll(argv[++i], &end, 10);
            if (*end || end == argv[i]) {
                fprintf(stderr, "llava show: --index needs a number\n");
                return 2;
            }
        } else if (strcmp(a, "--id") == 0 && v) id = argv[++i];
        else if (strcmp(a, "--json") == 0) json = 1;
        else if (strcmp(a, "--tokenizer") == 0 && v) tok_path = argv[++i];
        else if (strcmp(a, "--color") == 0 && v) color = argv[++i];
        else if (args_is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (a[0] != '-' && !path) path = a;
        else if (a[0] != '-') {
            fprintf(stderr, "llava show: %s: one dataset only (%s is the first)\n", a, path);
            return 2;
        } else return args_unknown("show", a, FLAGS, ARGS_COUNT(FLAGS));
    }
    if (!path) {
        fprintf(stderr, "%s", USAGE);
        return 2;
    }
    llava_dataset d;
    if (dataset_open(&d, path)) {
        fprintf(stderr, "llava show: %s\n", llava_errmsg());
        return 1;
    }
    int rc = 0;
    tokenizer *t = NULL;
    if (id) {
        index = dataset_find_id(&d, id);
        if (index < 0) {
            fprintf(stderr, "llava show: no sample with id \"%s\" in %s\n", id, path);
            rc = 1;
        }
    } else if (index < 0 || index >= d.n) {
        fprintf(stderr, "llava show: index %lld is out of range (%lld samples)\n", index, (long long)d.n);
        rc = 1;
    }
    if (rc == 0) {
        const char *tp = tok_path ? tok_path : d.tokenizer_path;
        t = tp ? tok_load(tp) : NULL;
        if (!t) {
            fprintf(stderr, "llava show: cannot load the tokenizer %s (%s); pass --tokenizer PATH\n",
                    tp ? tp : "(none stored)", tp ? llava_errmsg() : "");
            rc = 1;
        } else if (tok_path && d.tokenizer_md5) {
            size_t n;
            char *bytes = read_file(tok_path, (size_t)1 << 30, &n);
            if (bytes) {
                prep_md5 m;
                char hex[33];
                prep_md5_init(&m);
                prep_md5_update(&m, bytes, n);
                prep_md5_hex(&m, hex);
                if (strcmp(hex, d.tokenizer_md5) != 0)
                    fprintf(
                        stderr,
                        "llava show: warning: %s (md5 %s) is not the tokenizer the dataset was made with (md5 %s)\n",
                        tok_path, hex, d.tokenizer_md5);
                free(bytes);
            }
        }
    }
    if (rc) {
        tok_free(t);
        dataset_close(&d);
        return rc;
    }
    int64_t i = index, a = d.offsets[i], b = d.offsets[i + 1];
    const int32_t *ids = d.input_ids + a, *labels = d.labels + a;
    size_t n = (size_t)(b - a), supervised = 0;
    for (size_t k = 0; k < n; k++) supervised += labels[k] != IGNORE_INDEX;
    int use_color = strcmp(color, "always") == 0 || (strcmp(color, "auto") == 0 && !json && isatty(1));
    strbuf o = {0};
    sb_put(&o, "", 0);
    size_t tl;
    char *text = prep_render_text(t, ids, labels, n,
                                  json        ? NULL
                                  : use_color ? "\033[1;32m"
                                              : OPEN,
                                  json        ? NULL
                                  : use_color ? "\033[0m"
                                              : CLOSE,
                                  &tl);
    if (!text) {
        fprintf(stderr, "llava show: sample %lld: %s\n", (long long)i, llava_errmsg());
        rc = 1;
    } else if (json) {
        char buf[160];
        snprintf(buf, sizeof buf, "{\"index\": %lld, \"id\": ", (long long)i);
        sb_puts(&o, buf);
        sb_jstr(&o, d.sample_ids[i]);
        sb_puts(&o, ", \"image\": ");
        // one image: its path; several images or a video's frames: the list of paths, in order
        int n_paths = prep_image_count(d.image_paths[i]), video = (d.flags[i] & PREP_VIDEO) != 0;
        if (n_paths > 1 || video) {
            sb_puts(&o, "[");
            for (int k = 0; k < n_paths; k++) {
                char *one = prep_image_path(d.image_paths[i], k);
                if (k) sb_puts(&o, ", ");
                sb_jstr(&o, one);
                free(one);
            }
            sb_puts(&o, "]");
        } else {
            sb_jstr(&o, d.image_paths[i]);
        }
        const char *fl[3];
        int nf = 0;
        if (d.flags[i] & PREP_TRUNCATED) fl[nf++] = "\"truncated\"";
        if (d.flags[i] & PREP_MISMATCH) fl[nf++] = "\"mismatch\"";
        if (video) fl[nf++] = "\"video\"";
        snprintf(buf, sizeof buf, ", \"source_index\": %lld, \"flags\": [%s%s%s%s%s]", (long long)d.source_index[i],
                 nf > 0 ? fl[0] : "", nf > 1 ? ", " : "", nf > 1 ? fl[1] : "", nf > 2 ? ", " : "", nf > 2 ? fl[2] : "");
        sb_puts(&o, buf);
        snprintf(buf, sizeof buf, ", \"modality_length\": %d, \"input_ids\": [", d.modality_len[i]);
        sb_puts(&o, buf);
        sb_ids(&o, ids, n, ", ");
        sb_puts(&o, "], \"labels\": [");
        sb_ids(&o, labels, n, ", ");
        sb_puts(&o, "], \"text\": ");
        json_string_encode(text, tl, &o);
        sb_puts(&o, ", \"supervised\": [");
        // Each supervised run's text: the rendering is append-only, so it is text(0..end) less text(0..start).
        int first = 1;
        for (size_t k = 0; k < n && rc == 0;) {
            if (labels[k] == IGNORE_INDEX) {
                k++;
                continue;
            }
            size_t e = k;
            while (e < n && labels[e] != IGNORE_INDEX) e++;
            size_t la, lb;
            char *pa = prep_render_text(t, ids, NULL, k, NULL, NULL, &la);
            char *pb = prep_render_text(t, ids, NULL, e, NULL, NULL, &lb);
            if (!first) sb_puts(&o, ", ");
            json_string_encode(pb + la, lb - la, &o);
            first = 0;
            free(pa);
            free(pb);
            k = e;
        }
        sb_puts(&o, "]}\n");
    } else {
        char b1[32];
        printf("%s: %s samples, template %s, tokenizer %s (%s), aspect %s, model_max_length %d%s\n", path,
               fmt_count((uint64_t)d.n, b1), d.template_name ? d.template_name : "?",
               d.tokenizer_mode ? d.tokenizer_mode : "?",
               tok_path           ? tok_path
               : d.tokenizer_path ? d.tokenizer_path
                                  : "?",
               d.aspect ? d.aspect : "?", d.model_max_length, d.pixel_index ? ", pixels stored" : "");
        printf("sample %lld: id %s, record %lld of %s\n", (long long)i, d.sample_ids[i][0] ? d.sample_ids[i] : "(none)",
               (long long)d.source_index[i], d.source ? d.source : "?");
        int n_paths = prep_image_count(d.image_paths[i]), video = (d.flags[i] & PREP_VIDEO) != 0;
        if (n_paths > 1 || video) {  // several images, or a video's frames: one line, in order
            printf("  %s (%d%s):", video ? "video" : "images", n_paths, video ? " frames behind its one <image>" : "");
            for (int k = 0; k < n_paths; k++) {
                char *one = prep_image_path(d.image_paths[i], k);
                printf("%s %s", k ? "," : "", one);
                free(one);
            }
            printf("\n");
        } else {
            printf("  image: %s\n", d.image_paths[i] ? d.image_paths[i] : "(none: text-only)");
        }
        printf("  %zu tokens, %zu supervised; modality length %d%s%s\n", n, supervised, d.modality_len[i],
               d.flags[i] & PREP_MISMATCH ? "; MASKED: LLaVA's tokenization mismatch (no label counts)" : "",
               d.flags[i] & PREP_TRUNCATED ? "; truncated to model_max_length" : "");
        sb_puts(&o, "input_ids: ");
        sb_ids(&o, ids, n, " ");
        sb_puts(&o, "\nlabels:    ");
        sb_ids(&o, labels, n, " ");
        sb_puts(&o,
                use_color ? "\ntext (supervised in green):\n" : "\ntext (supervised in \xe2\x9f\xa6 \xe2\x9f\xa7):\n");
        sb_put(&o, text, tl);
        sb_puts(&o, "\n");
    }
    if (rc == 0) fwrite(o.p, 1, o.n, stdout);
    free(o.p);
    free(text);
    tok_free(t);
    dataset_close(&d);
    return rc;
}
