// llava data: tools for a dataset before training (docs/data.md).
//   check    prep's report (every sample left out, masked or cut, by id and reason) without writing anything:
//            prep_run in its dry-run mode (data/prep.h), so the reasons are prep's own, word for word
//   stats    samples, images, text-only share, turns, token lengths (with and without the image's tokens) as a
//            histogram, and the longest samples, of LLaVA's JSON or of a prepared .h5; an SVG histogram
//   convert  ShareGPT, OpenAI messages and LLaMA-Factory's multimodal ShareGPT to LLaVA's JSON and back, refusing
//            (by record) what LLaVA's format cannot say
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "common/util.h"
#include "data/dataset.h"
#include "data/json_stream.h"
#include "data/prep.h"
#include "data/prep_record.h"
#include "data/strbuf.h"
#include "data/template.h"

static const char USAGE[] =
    "usage: llava data check --data FILE.json --image-folder DIR --tokenizer tokenizer.model\n"
    "                        --template NAME|FILE.json [--mode hf431|hf437|legacy] [--model-max-length N]\n"
    "                        [--no-check-images] [--threads N] [--strict] [--json] [--all] [--quiet]\n"
    "       llava data stats DATA.json|DATA.h5 [--tokenizer tokenizer.model --template NAME [--mode M]]\n"
    "                        [--model-max-length N] [--tokens-per-image N] [--bin-width W] [--top K]\n"
    "                        [--plot OUT.svg] [--json] [--threads N]\n"
    "       llava data convert --from sharegpt|openai-messages|llama-factory IN --out LLAVA.json [--skip-bad]\n"
    "       llava data convert --to sharegpt|openai-messages LLAVA.json --out OUT [--skip-bad]\n"
    "\n"
    "check    runs `llava prep`'s whole pipeline (templates, tokenizer, masks, image decoding) and prints its\n"
    "         report: every sample that would be left out (missing_image, unreadable_image, path_refused,\n"
    "         malformed, no_image_token, extra_image_token), written masked (mismatch), cut (truncated) or\n"
    "         with its <image> in an answer, by record index, id and reason. Nothing is written. --json prints\n"
    "         the report prep would write (\"out\": null). Exit 0; with --strict, 1 when a sample would be left\n"
    "         out or masked (exactly when `llava prep --strict` would fail); 2 on a usage error. Prints the first\n"
    "         50 of each kind (--all: every one).\n"
    "stats    of LLaVA's JSON (token lengths need --tokenizer and --template) or of a prepared .h5: records,\n"
    "         samples, images, the text-only share, turns per sample (answers per sample for a .h5), token\n"
    "         lengths without and with the image's tokens (--tokens-per-image, 576 for LLaVA-1.5's CLIP-L/336)\n"
    "         as a histogram of --bin-width (128) bins up to --model-max-length (2048), and the --top (5)\n"
    "         longest samples by id. --plot draws the histogram as SVG; --json prints everything as one object.\n"
    "convert  --from reads ShareGPT (\"conversations\" of {\"from\": \"human\"|\"gpt\", \"value\"}), OpenAI\n"
    "         messages ({\"messages\": [{\"role\", \"content\": text or [{\"type\": \"text\"|\"image_url\"}]}]}) or\n"
    "         LLaMA-Factory's ShareGPT with \"images\" and <image> placeholders, as a JSON array or JSON Lines,\n"
    "         and writes LLaVA's JSON: [{\"id\", \"image\", \"conversations\"}]. --to writes ShareGPT (an \"images\"\n"
    "         list) or OpenAI messages from LLaVA's JSON (JSON Lines when OUT ends in .jsonl). A record LLaVA's\n"
    "         format cannot express (several images, a system message, an image outside a user turn, tool\n"
    "         calls, turns that do not alternate user/assistant) is refused by index, id and reason: exit 1 and\n"
    "         nothing written, unless --skip-bad (the others are written and the refusals counted).\n";

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

// ---------------------------------------------------------------------------------------------
// Records of a JSON array (streamed) or of JSON Lines

typedef struct {
    json_stream *js;  // a JSON array
    FILE *f;          // JSON Lines
    char *line;
    size_t cap;
    uint64_t count;  // records returned so far
    const char *path;
} rec_reader;

// Opens `path`: a JSON array when its first character (after a byte order mark and whitespace) is '[', else
// JSON Lines (one record a line, blank lines skipped).
static int reader_open(rec_reader *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->path = path;
    FILE *f = fopen(path, "rb");
    if (!f) return llava_fail("%s: cannot open: %s", path, strerror(errno));
    unsigned char head[3];
    size_t n = fread(head, 1, 3, f);
    if (!(n == 3 && head[0] == 0xef && head[1] == 0xbb && head[2] == 0xbf)) rewind(f);
    int c;
    while ((c = fgetc(f)) != EOF && (c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
    }
    if (c == EOF) {
        fclose(f);
        return llava_fail("%s: empty: no records", path);
    }
    if (c == '[') {
        fclose(f);
        r->js = json_stream_open(path);
        return r->js ? 0 : -1;
    }
    rewind(f);
    r->f = f;
    return 0;
}

// The next record's bytes (NUL-terminated): 1, 0 at the end, or -1 with an error.
static int reader_next(rec_reader *r, const char **elem, size_t *len) {
    if (r->js) {
        int rc = json_stream_next(r->js, elem, len);
        if (rc == 1) r->count++;
        return rc;
    }
    for (;;) {
        ssize_t n = getline(&r->line, &r->cap, r->f);
        if (n < 0) {
            if (ferror(r->f)) return llava_fail("%s: read error", r->path);
            return 0;
        }
        size_t a = 0, b = (size_t)n;
        if (r->count == 0 && b >= 3 && memcmp(r->line, "\xef\xbb\xbf", 3) == 0) a = 3;
        while (a < b && strchr(" \t\r\n", r->line[a])) a++;
        while (b > a && strchr(" \t\r\n", r->line[b - 1])) b--;
        if (a == b) continue;
        r->line[b] = 0;
        *elem = r->line + a;
        *len = b - a;
        r->count++;
        return 1;
    }
}

static void reader_close(rec_reader *r) {
    if (r->js) json_stream_close(r->js);
    if (r->f) fclose(r->f);
    free(r->line);
    memset(r, 0, sizeof *r);
}

// ---------------------------------------------------------------------------------------------
// check

static int data_check(int argc, char **argv) {
    prep_options o;
    prep_options_default(&o);
    o.dry_run = 1;
    o.progress = 1;
    const char *mode = NULL;
    int strict = 0, json = 0, all = 0, rc = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int v = i + 1 < argc;
        if (strcmp(a, "--data") == 0 && v) o.data_path = argv[++i];
        else if (strcmp(a, "--image-folder") == 0 && v) o.image_folder = argv[++i];
        else if (strcmp(a, "--tokenizer") == 0 && v) o.tokenizer_path = argv[++i];
        else if (strcmp(a, "--template") == 0 && v) o.template_name = argv[++i];
        else if (strcmp(a, "--mode") == 0 && v) mode = argv[++i];
        else if (strcmp(a, "--model-max-length") == 0 && v) rc = parse_int(argv[++i], 0, 1 << 30, &o.model_max_length);
        else if (strcmp(a, "--threads") == 0 && v) rc = parse_int(argv[++i], 0, 1024, &o.threads);
        else if (strcmp(a, "--no-check-images") == 0) o.check_images = 0;
        else if (strcmp(a, "--strict") == 0) strict = 1;
        else if (strcmp(a, "--json") == 0) json = 1;
        else if (strcmp(a, "--all") == 0) all = 1;
        else if (strcmp(a, "--quiet") == 0) o.progress = 0;
        else if (is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else {
            fprintf(stderr, "llava data check: unknown or incomplete argument %s\n\n%s", a, USAGE);
            return 2;
        }
        if (rc) {
            fprintf(stderr, "llava data check: bad value for %s: %s\n", a, argv[i]);
            return 2;
        }
    }
    if (!o.data_path || !o.tokenizer_path || !o.template_name) {
        fprintf(stderr, "llava data check: --data, --tokenizer and --template are required\n\n%s", USAGE);
        return 2;
    }
    if (!o.image_folder && o.check_images) {
        fprintf(stderr, "llava data check: --image-folder is required (or --no-check-images)\n");
        return 2;
    }
    if (mode && tok_mode_parse(mode, &o.mode)) {
        fprintf(stderr, "llava data check: %s\n", llava_errmsg());
        return 2;
    }
    // The whole report is wanted: prep's own strict would stop at the first bad sample.
    char *text = NULL;
    size_t text_len = 0;
    FILE *mem = open_memstream(&text, &text_len);
    if (!mem) {
        fprintf(stderr, "llava data check: out of memory\n");
        return 1;
    }
    o.report_to = mem;
    prep_counts c;
    rc = prep_run(&o, &c);
    fclose(mem);
    if (rc) {
        fprintf(stderr, "llava data check: %s\n", llava_errmsg());
        free(text);
        return 1;
    }
    uint64_t bad = 0;
    for (int k = 0; k < PREP_N_KINDS; k++)
        if (k != PREP_KIND_TRUNCATED && k != PREP_KIND_IMAGE_IN_ANSWER) bad += c.kind[k];
    if (json) {
        fwrite(text, 1, text_len, stdout);
    } else {
        char b1[32], b2[32], b3[32], b4[32], b5[32];
        printf(
            "llava data check: %s: %s records -> %s samples would be written (%s with an image, %s text-only; %s "
            "tokens); nothing written\n",
            o.data_path, fmt_count(c.records, b1), fmt_count(c.written, b2), fmt_count(c.with_image, b3),
            fmt_count(c.text_only, b4), fmt_count(c.tokens, b5));
        for (int k = 0; k < PREP_N_KINDS; k++) printf("  %-40s %s\n", prep_kind_summary(k), fmt_count(c.kind[k], b1));
        cJSON *rep = cJSON_ParseWithLength(text, text_len);
        const cJSON *samples = cJSON_GetObjectItemCaseSensitive(rep, "samples");
        for (int k = 0; k < PREP_N_KINDS; k++) {
            const cJSON *list = cJSON_GetObjectItemCaseSensitive(samples, prep_kind_name(k));
            int n = cJSON_GetArraySize(list), shown = 0;
            if (!n) continue;
            printf("%s (%d):\n", prep_kind_name(k), n);
            for (const cJSON *e = list ? list->child : NULL; e && (all || shown < 50); e = e->next, shown++) {
                const cJSON *idx = cJSON_GetObjectItemCaseSensitive(e, "index"),
                            *id = cJSON_GetObjectItemCaseSensitive(e, "id"),
                            *why = cJSON_GetObjectItemCaseSensitive(e, "reason");
                printf("  record %.0f", cJSON_IsNumber(idx) ? idx->valuedouble : -1.0);
                if (cJSON_IsString(id) && id->valuestring[0]) printf(" (id %s)", id->valuestring);
                printf(": %s\n", cJSON_IsString(why) ? why->valuestring : "?");
            }
            if (shown < n) printf("  ... and %d more (--all lists every one; --json gives the report)\n", n - shown);
        }
        cJSON_Delete(rep);
        if (bad)
            printf("%s sample%s would be left out or masked%s\n", fmt_count(bad, b1), bad == 1 ? "" : "s",
                   strict ? " (--strict: exit 1)" : "");
        else printf("clean: every sample would be written and supervised\n");
    }
    free(text);
    return strict && bad ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// stats

// A set of strings (the distinct image paths): open addressing on FNV-1a.
typedef struct {
    char **k;
    size_t cap, n;
} strset;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static void strset_add(strset *s, const char *key) {
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        char **k = xcalloc(cap, sizeof *k);
        for (size_t i = 0; i < s->cap; i++)
            if (s->k[i])
                for (size_t j = fnv1a(s->k[i]) & (cap - 1);; j = (j + 1) & (cap - 1))
                    if (!k[j]) {
                        k[j] = s->k[i];
                        break;
                    }
        free(s->k);
        s->k = k;
        s->cap = cap;
    }
    for (size_t j = fnv1a(key) & (s->cap - 1);; j = (j + 1) & (s->cap - 1)) {
        if (!s->k[j]) {
            s->k[j] = xstrdup(key);
            s->n++;
            return;
        }
        if (strcmp(s->k[j], key) == 0) return;
    }
}

static void strset_free(strset *s) {
    for (size_t i = 0; i < s->cap; i++) free(s->k[i]);
    free(s->k);
}

typedef struct {
    uint64_t index;
    char *id;
    int64_t text, with;  // tokens without and with the image's tokens (words when no tokenizer)
    int image;
} longest_entry;

typedef struct {
    int tokens_per_image, bin_width, max_len, top;
    int have_tokens;  // token lengths known (a .h5, or JSON with a tokenizer)
    int h5;
    uint64_t records, samples, unusable, with_image, truncated, mismatch;
    strset images;
    uint64_t *turns;  // turns[t]: samples with t turns (answers, for a .h5)
    size_t n_turns;
    int64_t *text, *with;  // per sample
    size_t n, cap;
    longest_entry *longest;  // top entries, longest first
    int n_longest;
} stats;

static void stats_add(stats *s, uint64_t index, const char *id, const char *image, size_t turns, int64_t text,
                      int64_t with) {
    s->samples++;
    if (image) {
        s->with_image++;
        strset_add(&s->images, image);
    }
    if (turns >= s->n_turns) {
        size_t n = turns + 1;
        s->turns = xrealloc(s->turns, n * sizeof *s->turns);
        memset(s->turns + s->n_turns, 0, (n - s->n_turns) * sizeof *s->turns);
        s->n_turns = n;
    }
    s->turns[turns]++;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->text = xrealloc(s->text, s->cap * sizeof *s->text);
        s->with = xrealloc(s->with, s->cap * sizeof *s->with);
    }
    s->text[s->n] = text;
    s->with[s->n] = with;
    s->n++;
    // The longest, by the length with image tokens; the earlier record first among equals.
    int at = s->n_longest;
    while (at > 0 && s->longest[at - 1].with < with) at--;
    if (at >= s->top) return;
    if (s->n_longest == s->top) free(s->longest[--s->n_longest].id);
    memmove(s->longest + at + 1, s->longest + at, (size_t)(s->n_longest - at) * sizeof *s->longest);
    s->longest[at] = (longest_entry){index, xstrdup(id), text, with, image != NULL};
    s->n_longest++;
}

static void stats_free(stats *s) {
    strset_free(&s->images);
    free(s->turns);
    free(s->text);
    free(s->with);
    for (int i = 0; i < s->n_longest; i++) free(s->longest[i].id);
    free(s->longest);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    int64_t total, min, p50, p90, p99, max, over;
    double mean;
    uint64_t *hist;  // n_bins
} dist;

// Nearest-rank percentiles, and the histogram: bins of bin_width up to max_len (rounded up to a bin), then one
// bin for everything at or above it (max_len 0: the bins reach the longest sample).
static int n_bins(const stats *s) {
    int64_t top = s->max_len;
    if (top <= 0)
        for (size_t i = 0; i < s->n; i++) top = s->with[i] + 1 > top ? s->with[i] + 1 : top;
    int64_t b = (top + s->bin_width - 1) / s->bin_width;
    return (int)(b < 1 ? 1 : b) + (s->max_len > 0);
}

static void dist_of(const stats *s, const int64_t *v, dist *d) {
    memset(d, 0, sizeof *d);
    int nb = n_bins(s);
    d->hist = xcalloc((size_t)nb, sizeof *d->hist);
    if (!s->n) return;
    int64_t *sorted = xmalloc(s->n * sizeof *sorted);
    memcpy(sorted, v, s->n * sizeof *sorted);
    qsort(sorted, s->n, sizeof *sorted, cmp_i64);
    for (size_t i = 0; i < s->n; i++) {
        d->total += v[i];
        d->over += s->max_len > 0 && v[i] > s->max_len;
        int64_t b = v[i] / s->bin_width;
        d->hist[b >= nb - 1 ? nb - 1 : b]++;
    }
    size_t n = s->n;
#define RANK(p) sorted[(size_t)ceil((p) / 100.0 * (double)n) - 1]
    d->min = sorted[0];
    d->p50 = RANK(50);
    d->p90 = RANK(90);
    d->p99 = RANK(99);
    d->max = sorted[n - 1];
#undef RANK
    d->mean = (double)d->total / (double)n;
    free(sorted);
}

// One record's part of the stats, measured on a worker thread.
typedef struct {
    char *json;  // the record's bytes (freed once measured)
    size_t len;
    uint64_t index;
    int ok;
    char *id, *image;
    size_t turns;
    int64_t text, with;
} stats_item;

typedef struct {
    const prep_config *cfg;
    int tokens_per_image;
    stats_item *items;
    size_t n;
    int stride, first;
} stats_work;

static void measure(const prep_config *cfg, int tokens_per_image, stats_item *it) {
    prep_record rec;
    if (prep_record_parse(it->json, it->len, &rec) == 0) {
        it->ok = 1;
        it->text = it->with = rec.words;
        if (cfg->tok) {
            prep_result res;
            char label[64];
            snprintf(label, sizeof label, "#%llu", (unsigned long long)it->index);
            if (prep_sample(cfg, label, rec.turns, rec.n_turns, rec.image != NULL, &res)) {
                it->ok = 0;
            } else {
                int64_t n_img = 0;
                for (size_t k = 0; k < res.ids.n; k++) n_img += res.ids.v[k] == IMAGE_TOKEN_INDEX;
                it->text = (int64_t)res.ids.n - n_img;
                it->with = it->text + n_img * tokens_per_image;
                prep_result_free(&res);
            }
        }
        if (it->ok) {
            it->id = rec.id;
            it->image = rec.image;
            rec.id = rec.image = NULL;
            it->turns = rec.n_turns;
        }
    }
    prep_record_free(&rec);
    free(it->json);
    it->json = NULL;
}

static void *stats_worker(void *arg) {
    stats_work *w = arg;
    for (size_t i = (size_t)w->first; i < w->n; i += (size_t)w->stride)
        measure(w->cfg, w->tokens_per_image, &w->items[i]);
    return NULL;
}

// Stats of LLaVA's JSON: every record through prep's record parser, and with a tokenizer through prep_sample
// (the template and masks prep applies; no truncation, so the lengths are the samples' own). Blocks of records are
// measured on `threads` threads and counted in input order.
static int stats_json(const char *path, const prep_config *cfg, int threads, stats *s) {
    rec_reader r;
    if (reader_open(&r, path)) return -1;
    enum { BLOCK = 4096 };
    stats_item *items = xcalloc(BLOCK, sizeof *items);
    stats_work *work = xcalloc((size_t)threads, sizeof *work);
    pthread_t *tids = xcalloc((size_t)threads, sizeof *tids);
    int rc = 1;
    while (rc == 1) {
        size_t n = 0;
        const char *e;
        size_t len;
        while (n < BLOCK && (rc = reader_next(&r, &e, &len)) == 1) {
            stats_item *it = &items[n++];
            memset(it, 0, sizeof *it);
            it->json = xmalloc(len + 1);
            memcpy(it->json, e, len + 1);
            it->len = len;
            it->index = r.count - 1;
        }
        int started = 0;
        for (int t = 0; t < threads && (size_t)t < n; t++) {
            work[t] = (stats_work){cfg, s->tokens_per_image, items, n, threads, t};
            if (threads > 1 && pthread_create(&tids[started], NULL, stats_worker, &work[t]) == 0) started++;
            else stats_worker(&work[t]);  // (one thread, or none could start: this one does the share)
        }
        for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
        for (size_t i = 0; i < n; i++) {
            stats_item *it = &items[i];
            s->records++;
            if (it->ok) stats_add(s, it->index, it->id, it->image, it->turns, it->text, it->with);
            else s->unusable++;
            free(it->id);
            free(it->image);
            free(it->json);
        }
    }
    free(items);
    free(work);
    free(tids);
    reader_close(&r);
    return rc < 0 ? -1 : 0;
}

static int stats_h5(const char *path, stats *s) {
    llava_dataset d;
    if (dataset_open(&d, path)) return -1;
    s->records = d.records >= 0 ? (uint64_t)d.records : (uint64_t)d.n;
    for (int64_t i = 0; i < d.n; i++) {
        int64_t a = d.offsets[i], b = d.offsets[i + 1], n_img = 0;
        size_t spans = 0;
        for (int64_t k = a; k < b; k++) {
            n_img += d.input_ids[k] == IMAGE_TOKEN_INDEX;
            spans += d.labels[k] != IGNORE_INDEX && (k == a || d.labels[k - 1] == IGNORE_INDEX);
        }
        s->truncated += (d.flags[i] & PREP_TRUNCATED) != 0;
        s->mismatch += (d.flags[i] & PREP_MISMATCH) != 0;
        int64_t text = b - a - n_img;
        stats_add(s, d.source_index ? (uint64_t)d.source_index[i] : (uint64_t)i, d.sample_ids[i], d.image_paths[i],
                  spans, text, text + n_img * s->tokens_per_image);
    }
    dataset_close(&d);
    return 0;
}

// Text for SVG: &, < and > escaped.
static void fput_xml(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '&') fputs("&amp;", f);
        else if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else fputc(*s, f);
    }
}

static char *bin_label(const stats *s, int b, int nb) {
    if (s->max_len > 0 && b == nb - 1) return xasprintf(">= %lld", (long long)(b * (int64_t)s->bin_width));
    return xasprintf("[%lld, %lld)", (long long)b * s->bin_width, (long long)(b + 1) * s->bin_width);
}

// The two histograms as bars, one panel each, in `llava plot`'s style.
static int stats_plot(const stats *s, const dist *dt, const dist *dw, const char *svg_path, const char *src) {
    int nb = n_bins(s);
    char *tmp = xasprintf("%s.tmp.%d", svg_path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        llava_fail("%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"560\" font-family=\"sans-serif\">\n");
    fprintf(f, "<rect width=\"720\" height=\"560\" fill=\"white\"/>\n");
    const dist *ds[2] = {dt, dw};
    const char *colors[2] = {"#1f6fd1", "#d1801f"};
    char *titles[2];
    const char *unit = s->have_tokens ? "tokens" : "words";
    titles[0] = xasprintf("%s per sample, text only (%llu samples)", unit, (unsigned long long)s->n);
    titles[1] = s->have_tokens ? xasprintf("tokens per sample with %d per image", s->tokens_per_image)
                               : xstrdup("(token lengths need --tokenizer and --template)");
    for (int p = 0; p < (s->have_tokens ? 2 : 1); p++) {
        const int x0 = 70, w = 620, h = 190, y0 = 40 + p * 260;
        uint64_t top = 1;
        for (int b = 0; b < nb; b++) top = ds[p]->hist[b] > top ? ds[p]->hist[b] : top;
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">", x0, y0 - 8);
        fput_xml(f, titles[p]);
        fputs("</text>\n", f);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", x0, y0, w,
                h);
        for (int k = 0; k <= 2; k++)
            fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n", x0 - 6,
                    y0 + h - (int)lround(h * k / 2.0) + 4, (double)top * k / 2.0);
        double bw = (double)w / nb;
        for (int b = 0; b < nb; b++) {
            double bh = (double)h * (double)ds[p]->hist[b] / (double)top;
            char *lab = bin_label(s, b, nb);
            fprintf(f, "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"><title>",
                    x0 + b * bw + 1, y0 + h - bh, bw - 2 > 1 ? bw - 2 : 1, bh, colors[p]);
            fput_xml(f, lab);
            fprintf(f, ": %llu</title></rect>\n", (unsigned long long)ds[p]->hist[b]);
            free(lab);
        }
        // Edges: every few bins, so that the labels do not run into each other.
        int step = nb <= 12 ? 1 : (nb + 11) / 12;
        for (int b = 0; b <= nb; b += step) {
            if (s->max_len > 0 && b == nb) break;
            fprintf(f, "<text x=\"%.2f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%lld</text>\n", x0 + b * bw,
                    y0 + h + 16, (long long)b * s->bin_width);
        }
        if (s->max_len > 0)
            fprintf(f, "<text x=\"%.2f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">&#8805;%d</text>\n",
                    x0 + (nb - 0.5) * bw, y0 + h + 16, (nb - 1) * s->bin_width);
    }
    fprintf(f, "<text x=\"380\" y=\"550\" font-size=\"12\" text-anchor=\"middle\">");
    fput_xml(f, src);
    fprintf(f, ": samples per %d-%s bin</text>\n", s->bin_width, unit);
    fprintf(f, "</svg>\n");
    free(titles[0]);
    free(titles[1]);
    int rc = fflush(f) == 0 && !ferror(f) ? 0 : llava_fail("%s: write failed", tmp);
    if (fclose(f) != 0 && rc == 0) rc = llava_fail("%s: write failed", tmp);
    if (rc == 0 && rename(tmp, svg_path) != 0) rc = llava_fail("%s: cannot rename to %s", tmp, svg_path);
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

static cJSON *dist_json(const dist *d, int nb) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "total", (double)d->total);
    cJSON_AddNumberToObject(o, "mean", d->mean);
    cJSON_AddNumberToObject(o, "min", (double)d->min);
    cJSON_AddNumberToObject(o, "p50", (double)d->p50);
    cJSON_AddNumberToObject(o, "p90", (double)d->p90);
    cJSON_AddNumberToObject(o, "p99", (double)d->p99);
    cJSON_AddNumberToObject(o, "max", (double)d->max);
    cJSON_AddNumberToObject(o, "over_model_max_length", (double)d->over);
    cJSON *h = cJSON_AddArrayToObject(o, "histogram");
    for (int b = 0; b < nb; b++) cJSON_AddItemToArray(h, cJSON_CreateNumber((double)d->hist[b]));
    return o;
}

static int data_stats(int argc, char **argv) {
    const char *path = NULL, *tok_path = NULL, *tmpl_name = NULL, *mode = NULL, *plot = NULL;
    stats s = {.tokens_per_image = 576, .bin_width = 128, .max_len = 2048, .top = 5};
    int json = 0, rc = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int v = i + 1 < argc;
        if (strcmp(a, "--tokenizer") == 0 && v) tok_path = argv[++i];
        else if (strcmp(a, "--template") == 0 && v) tmpl_name = argv[++i];
        else if (strcmp(a, "--mode") == 0 && v) mode = argv[++i];
        else if (strcmp(a, "--plot") == 0 && v) plot = argv[++i];
        else if (strcmp(a, "--json") == 0) json = 1;
        else if (strcmp(a, "--tokens-per-image") == 0 && v) rc = parse_int(argv[++i], 0, 1 << 20, &s.tokens_per_image);
        else if (strcmp(a, "--bin-width") == 0 && v) rc = parse_int(argv[++i], 1, 1 << 24, &s.bin_width);
        else if (strcmp(a, "--model-max-length") == 0 && v) rc = parse_int(argv[++i], 0, 1 << 30, &s.max_len);
        else if (strcmp(a, "--top") == 0 && v) rc = parse_int(argv[++i], 0, 100000, &s.top);
        else if (strcmp(a, "--threads") == 0 && v) rc = parse_int(argv[++i], 0, 256, &threads);
        else if (is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (a[0] != '-' && !path) path = a;
        else {
            fprintf(stderr, "llava data stats: unknown or incomplete argument %s\n\n%s", a, USAGE);
            return 2;
        }
        if (rc) {
            fprintf(stderr, "llava data stats: bad value for %s: %s\n", a, argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "llava data stats: no dataset: give DATA.json or DATA.h5\n\n%s", USAGE);
        return 2;
    }
    if (!tok_path != !tmpl_name) {
        fprintf(stderr, "llava data stats: --tokenizer and --template go together (token lengths need both)\n");
        return 2;
    }
    prep_config cfg = {.mode = TOK_MODE_DEFAULT};
    if (mode && tok_mode_parse(mode, &cfg.mode)) {
        fprintf(stderr, "llava data stats: %s\n", llava_errmsg());
        return 2;
    }
    if (s.max_len > 0 && (int64_t)s.max_len / s.bin_width > 100000) {
        fprintf(stderr, "llava data stats: more than 100,000 bins: give a larger --bin-width\n");
        return 2;
    }
    if (threads == 0) {  // every core this process may use
        cpu_set_t set;
        threads = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
        if (threads < 1) threads = 1;
        if (threads > 256) threads = 256;
    }
    s.longest = xcalloc((size_t)s.top + 1, sizeof *s.longest);
    s.h5 = dataset_is_prep_file(path);
    FILE *probe = s.h5 ? NULL : fopen(path, "rb");
    char sig[4] = {0};
    if (probe) {
        size_t got = fread(sig, 1, 4, probe);
        fclose(probe);
        if (got == 4 && memcmp(sig, "\x89HDF", 4) == 0) {
            fprintf(stderr, "llava data stats: %s is an HDF5 file that llava prep did not write\n", path);
            free(s.longest);
            return 1;
        }
    }
    tokenizer *tok = NULL;
    conv_template *loaded = NULL;
    if (s.h5) {
        s.have_tokens = 1;
        rc = stats_h5(path, &s);
    } else {
        if (tok_path) {
            cfg.tmpl = conv_template_builtin(tmpl_name);
            if (!cfg.tmpl) cfg.tmpl = loaded = conv_template_load(tmpl_name);
            if (!cfg.tmpl) {
                fprintf(stderr,
                        "llava data stats: no template \"%s\" (built in: " CONV_TEMPLATE_BUILTINS "; or a JSON file)\n",
                        tmpl_name);
                stats_free(&s);
                return 2;
            }
            cfg.tok = tok = tok_load(tok_path);
            if (!tok) rc = -1;
            s.have_tokens = 1;
        }
        if (rc == 0) rc = stats_json(path, &cfg, threads, &s);
    }
    if (rc) {
        fprintf(stderr, "llava data stats: %s\n", llava_errmsg());
        tok_free(tok);
        conv_template_free(loaded);
        stats_free(&s);
        return 1;
    }
    int nb = n_bins(&s);
    dist dt, dw;
    dist_of(&s, s.text, &dt);
    dist_of(&s, s.with, &dw);
    const char *unit = s.have_tokens ? "tokens" : "words";
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "source", path);
        cJSON_AddStringToObject(o, "format", s.h5 ? "h5" : "json");
        cJSON_AddStringToObject(o, "unit", unit);
        cJSON_AddNumberToObject(o, "records", (double)s.records);
        cJSON_AddNumberToObject(o, "samples", (double)s.samples);
        cJSON_AddNumberToObject(o, "unusable", (double)s.unusable);
        cJSON_AddNumberToObject(o, "with_image", (double)s.with_image);
        cJSON_AddNumberToObject(o, "text_only", (double)(s.samples - s.with_image));
        cJSON_AddNumberToObject(o, "text_only_share", s.samples ? (double)(s.samples - s.with_image) / s.samples : 0);
        cJSON_AddNumberToObject(o, "distinct_images", (double)s.images.n);
        if (s.h5) {
            cJSON_AddNumberToObject(o, "truncated", (double)s.truncated);
            cJSON_AddNumberToObject(o, "mismatch", (double)s.mismatch);
        }
        cJSON *t = cJSON_AddObjectToObject(o, s.h5 ? "answers_per_sample" : "turns_per_sample");
        for (size_t k = 0; k < s.n_turns; k++)
            if (s.turns[k]) {
                char key[24];
                snprintf(key, sizeof key, "%zu", k);
                cJSON_AddNumberToObject(t, key, (double)s.turns[k]);
            }
        cJSON_AddNumberToObject(o, "tokens_per_image", s.tokens_per_image);
        cJSON_AddNumberToObject(o, "bin_width", s.bin_width);
        cJSON_AddNumberToObject(o, "model_max_length", s.max_len);
        cJSON *edges = cJSON_AddArrayToObject(o, "bin_starts");
        for (int b = 0; b < nb; b++) cJSON_AddItemToArray(edges, cJSON_CreateNumber((double)b * s.bin_width));
        cJSON_AddItemToObject(o, "text", dist_json(&dt, nb));
        if (s.have_tokens) cJSON_AddItemToObject(o, "with_image_tokens", dist_json(&dw, nb));
        cJSON *l = cJSON_AddArrayToObject(o, "longest");
        for (int i = 0; i < s.n_longest; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "index", (double)s.longest[i].index);
            cJSON_AddStringToObject(e, "id", s.longest[i].id);
            cJSON_AddNumberToObject(e, "text", (double)s.longest[i].text);
            if (s.have_tokens) cJSON_AddNumberToObject(e, "with_image_tokens", (double)s.longest[i].with);
            cJSON_AddItemToArray(l, e);
        }
        char *p = cJSON_Print(o);
        printf("%s\n", p);
        free(p);
        cJSON_Delete(o);
    } else {
        char b1[32], b2[32], b3[32];
        printf("llava data stats: %s (%s)\n", path, s.h5 ? "prepared dataset" : "LLaVA JSON");
        printf("  records          %s\n", fmt_count(s.records, b1));
        printf("  samples          %s", fmt_count(s.samples, b1));
        if (s.h5 && s.records > s.samples) printf("  (%s left out by prep)", fmt_count(s.records - s.samples, b2));
        if (s.unusable)
            printf("  (%s unusable: malformed or with an image path prep refuses%s; `llava data check` names them)",
                   fmt_count(s.unusable, b2), s.have_tokens ? ", or refused by the template" : "");
        printf("\n");
        double sh = s.samples ? 100.0 * (double)(s.samples - s.with_image) / (double)s.samples : 0;
        printf("  with an image    %s (%.1f%%), %s distinct image files\n", fmt_count(s.with_image, b1), 100 - sh,
               fmt_count(s.images.n, b2));
        printf("  text-only        %s (%.1f%%)\n", fmt_count(s.samples - s.with_image, b1), s.samples ? sh : 0);
        if (s.h5)
            printf("  truncated        %s, masked (mismatch) %s\n", fmt_count(s.truncated, b1),
                   fmt_count(s.mismatch, b2));
        printf("  %s", s.h5 ? "answers/sample  " : "turns/sample    ");
        for (size_t k = 0, first = 1; k < s.n_turns; k++)
            if (s.turns[k]) {
                printf("%s%zu: %s", first ? " " : ", ", k, fmt_count(s.turns[k], b1));
                first = 0;
            }
        printf("\n");
        if (!s.have_tokens) printf("  (token lengths need --tokenizer and --template: lengths below are in words)\n");
        printf("  %-18s %14s%s\n", unit, "text only", s.have_tokens ? "    with image tokens" : "");
        const char *rows[] = {"total", "mean", "min", "p50", "p90", "p99", "max"};
        for (int r = 0; r < 7; r++) {
            const dist *ds[2] = {&dt, &dw};
            printf("    %-16s", rows[r]);
            for (int p = 0; p < (s.have_tokens ? 2 : 1); p++) {
                const dist *d = ds[p];
                int64_t v[] = {d->total, 0, d->min, d->p50, d->p90, d->p99, d->max};
                if (r == 1) printf(p ? " %20.1f" : " %14.1f", d->mean);
                else printf(p ? " %20s" : " %14s", fmt_count((uint64_t)v[r], b1));
            }
            printf("\n");
        }
        if (s.max_len > 0) {
            printf("    %-16s %14s", "> max length", fmt_count((uint64_t)dt.over, b1));
            if (s.have_tokens) printf(" %20s", fmt_count((uint64_t)dw.over, b2));
            printf("   (model_max_length %d)\n", s.max_len);
        }
        printf("  histogram (%d-%s bins)\n", s.bin_width, unit);
        for (int b = 0; b < nb; b++) {
            char *lab = bin_label(&s, b, nb);
            printf("    %-16s %14s", lab, fmt_count(dt.hist[b], b1));
            if (s.have_tokens) printf(" %20s", fmt_count(dw.hist[b], b2));
            printf("\n");
            free(lab);
        }
        if (s.n_longest) printf("  longest (%s%s):\n", unit, s.have_tokens ? " with image tokens" : "");
        for (int i = 0; i < s.n_longest; i++) {
            const longest_entry *e = &s.longest[i];
            printf("    record %llu", (unsigned long long)e->index);
            if (e->id[0]) printf(" (id %s)", e->id);
            if (s.have_tokens)
                printf(": %s tokens (%s text%s)\n", fmt_count((uint64_t)e->with, b1), fmt_count((uint64_t)e->text, b2),
                       e->image ? " + 1 image" : "");
            else printf(": %s words\n", fmt_count((uint64_t)e->with, b3));
        }
    }
    if (plot) {
        rc = stats_plot(&s, &dt, &dw, plot, path);
        if (rc) fprintf(stderr, "llava data stats: %s\n", llava_errmsg());
        else if (!json) printf("  histogram drawn: %s\n", plot);
    }
    free(dt.hist);
    free(dw.hist);
    tok_free(tok);
    conv_template_free(loaded);
    stats_free(&s);
    return rc ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// convert
//
// Every format is read into one form, a conversation of user and assistant messages whose text carries "<image>"
// where the one image goes, checked against what LLaVA's format can say, and written out.

enum { FMT_LLAVA, FMT_SHAREGPT, FMT_OPENAI, FMT_LLAMA_FACTORY };
static const char *const FMT_NAMES[] = {"llava", "sharegpt", "openai-messages", "llama-factory"};

typedef struct {
    int role;  // 0 user, 1 assistant
    strbuf text;
} conv_msg;

typedef struct {
    cJSON *id;    // the record's id (copied as it is), or NULL
    char *image;  // NULL: none
    conv_msg *m;
    size_t n, cap;
} conv_rec;

static void rec_free(conv_rec *r) {
    cJSON_Delete(r->id);
    free(r->image);
    for (size_t i = 0; i < r->n; i++) free(r->m[i].text.p);
    free(r->m);
    memset(r, 0, sizeof *r);
}

static conv_msg *rec_add(conv_rec *r, int role) {
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 8;
        r->m = xrealloc(r->m, r->cap * sizeof *r->m);
    }
    conv_msg *m = &r->m[r->n++];
    memset(m, 0, sizeof *m);
    m->role = role;
    sb_put(&m->text, "", 0);
    return m;
}

// A refusal: the reason goes to *why (the caller names the record).
static int refuse(strbuf *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(strbuf *why, const char *fmt, ...) {
    char b[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    sb_puts(why, b);
    return -1;
}

static size_t count_image_tokens(const char *s) {
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, DEFAULT_IMAGE_TOKEN)); p += strlen(DEFAULT_IMAGE_TOKEN)) n++;
    return n;
}

// What LLaVA's format can express: user and assistant alternating from the user, an answer last, and at most one
// image, whose single <image> is in a user turn.
static int rec_check(const conv_rec *r, strbuf *why) {
    if (r->n == 0) return refuse(why, "no messages");
    for (size_t k = 0; k < r->n; k++)
        if (r->m[k].role != (int)(k % 2))
            return refuse(why,
                          "turn %zu is the %s's where the %s's is expected: LLaVA's conversations alternate user and "
                          "assistant, starting with the user",
                          k, r->m[k].role ? "assistant" : "user", k % 2 ? "assistant" : "user");
    if (r->m[r->n - 1].role == 0)
        return refuse(why, "the last turn (%zu) is the user's: there is no answer to train on", r->n - 1);
    size_t total = 0;
    for (size_t k = 0; k < r->n; k++) {
        size_t c = count_image_tokens(r->m[k].text.p);
        if (c && r->m[k].role == 1)
            return refuse(why,
                          "the image is in turn %zu, the assistant's: LLaVA-1.5 takes its image in a user turn (the "
                          "question is asked after the image is seen)",
                          k);
        total += c;
    }
    if (r->image && total == 0) return refuse(why, "an image but no <image> placeholder in the conversation");
    if (!r->image && total) return refuse(why, "<image> in the conversation but no image");
    if (total > 1)
        return refuse(why, "<image> in %zu places for one image: LLaVA-1.5 takes one image and one <image> per sample",
                      total);
    return 0;
}

static int image_list(const cJSON *v, const char *key, char **image, strbuf *why) {
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v)) {
        *image = xstrdup(v->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(v)) return refuse(why, "\"%s\" is neither a list nor a path", key);
    int n = cJSON_GetArraySize(v);
    if (n > 1) return refuse(why, "%d images in one sample: LLaVA-1.5 takes one image per sample", n);
    if (n == 1) {
        if (!cJSON_IsString(v->child)) return refuse(why, "\"%s\"[0] is not a path", key);
        *image = xstrdup(v->child->valuestring);
    }
    return 0;
}

// Keys whose presence (non-empty) LLaVA's format cannot carry.
static int refuse_keys(const cJSON *o, strbuf *why) {
    static const struct {
        const char *key, *what;
    } keys[] = {
        {"system", "a system message (\"system\"): LLaVA-1.5's templates carry their own system prompt"},
        {"tools", "tool descriptions (\"tools\"): LLaVA-1.5 has no tool calls"},
        {"videos", "videos: LLaVA-1.5 takes one image"},
        {"audios", "audio: LLaVA-1.5 takes one image"},
        {"chosen", "a preference pair (\"chosen\"/\"rejected\"): LLaVA's format has one answer per turn"},
        {"rejected", "a preference pair (\"chosen\"/\"rejected\"): LLaVA's format has one answer per turn"},
        {"kto_tag", "a KTO label (\"kto_tag\"): LLaVA's format has none"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[i].key);
        if (!v || cJSON_IsNull(v) || (cJSON_IsString(v) && !v->valuestring[0]) ||
            (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
            continue;
        return refuse(why, "%s", keys[i].what);
    }
    return 0;
}

static int role_of(const char *role, size_t k, strbuf *why) {
    static const char *user[] = {"human", "user"}, *assistant[] = {"gpt", "assistant", "chatgpt"},
                      *tool[] = {"function_call", "observation", "tool", "function", "ipython", "tool_call"};
    for (size_t i = 0; i < 2; i++)
        if (strcmp(role, user[i]) == 0) return 0;
    for (size_t i = 0; i < 3; i++)
        if (strcmp(role, assistant[i]) == 0) return 1;
    if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0)
        return refuse(why, "a system message (turn %zu): LLaVA-1.5's templates carry their own system prompt", k);
    for (size_t i = 0; i < sizeof tool / sizeof tool[0]; i++)
        if (strcmp(role, tool[i]) == 0)
            return refuse(why, "a tool call or result (turn %zu, \"%s\"): LLaVA-1.5 has no tool calls", k, role);
    return refuse(why, "turn %zu has the role \"%s\", neither the user's nor the assistant's", k, role);
}

static cJSON *id_of(const cJSON *o) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    return cJSON_IsString(id) || cJSON_IsNumber(id) ? cJSON_Duplicate(id, 0) : NULL;
}

// ShareGPT, LLaVA's JSON and LLaMA-Factory's ShareGPT: a list of {"from", "value"} (LLaMA-Factory: also
// "messages" of {"role", "content"}), the image as LLaVA's "image" or an "images" list.
static int read_chat(const cJSON *o, int fmt, conv_rec *r, strbuf *why) {
    if (!cJSON_IsObject(o)) return refuse(why, "not a JSON object");
    r->id = id_of(o);
    const char *list_key = "conversations";
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(o, "conversations");
    if (fmt == FMT_LLAMA_FACTORY && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "messages"))) {
        conv = cJSON_GetObjectItemCaseSensitive(o, "messages");
        list_key = "messages";
    }
    if (!cJSON_IsArray(conv))
        return refuse(why, "no \"%s\" list%s", list_key,
                      fmt == FMT_LLAMA_FACTORY ? " (nor \"messages\")"
                      : cJSON_GetObjectItemCaseSensitive(o, "messages")
                          ? " (a \"messages\" list: --from openai-messages or llama-factory?)"
                          : "");
    if (fmt != FMT_LLAVA && refuse_keys(o, why)) return -1;
    const cJSON *image = cJSON_GetObjectItemCaseSensitive(o, "image");
    if (fmt == FMT_LLAVA) {
        if (image && !cJSON_IsString(image)) return refuse(why, "an \"image\" that is not a string");
        if (image) r->image = xstrdup(image->valuestring);
    } else {
        if (fmt == FMT_SHAREGPT && cJSON_IsString(image)) r->image = xstrdup(image->valuestring);
        else if (image && !cJSON_IsNull(image)) return refuse(why, "an \"image\" that is not a path");
        const cJSON *images = cJSON_GetObjectItemCaseSensitive(o, "images");
        if (images && r->image && !(cJSON_IsArray(images) && cJSON_GetArraySize(images) == 0))
            return refuse(why, "both \"image\" and \"images\": LLaVA-1.5 takes one image per sample");
        if (!r->image && image_list(images, "images", &r->image, why)) return -1;
    }
    size_t k = 0;
    for (const cJSON *t = conv->child; t; t = t->next, k++) {
        if (!cJSON_IsObject(t)) return refuse(why, "turn %zu is not an object", k);
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(t, "from"),
                    *value = cJSON_GetObjectItemCaseSensitive(t, "value");
        if (fmt == FMT_LLAMA_FACTORY && !from && !value) {
            from = cJSON_GetObjectItemCaseSensitive(t, "role");
            value = cJSON_GetObjectItemCaseSensitive(t, "content");
        }
        if (!cJSON_IsString(from)) return refuse(why, "turn %zu has no role (\"from\")", k);
        if (fmt == FMT_LLAVA && strcmp(from->valuestring, "human") != 0 && strcmp(from->valuestring, "gpt") != 0)
            return refuse(why, "turn %zu is from \"%s\": LLaVA's turns are from \"human\" or \"gpt\"", k,
                          from->valuestring);
        int role = role_of(from->valuestring, k, why);
        if (role < 0) return -1;
        if (cJSON_GetObjectItemCaseSensitive(t, "tool_calls") || cJSON_GetObjectItemCaseSensitive(t, "function_call"))
            return refuse(why, "a tool call (turn %zu): LLaVA-1.5 has no tool calls", k);
        if (!cJSON_IsString(value)) return refuse(why, "turn %zu has no text (\"value\" is not a string)", k);
        sb_puts(&rec_add(r, role)->text, value->valuestring);
    }
    return 0;
}

// An image URL of OpenAI's messages, or a path: a file path relative to the image folder is what LLaVA names.
static int image_path_of(const char *url, size_t k, char **image, strbuf *why) {
    if (strncmp(url, "data:", 5) == 0)
        return refuse(why, "an inline (data: URL) image in turn %zu: LLaVA's format names an image file", k);
    const char *colon = strstr(url, "://");
    if (colon) {
        int scheme = colon > url;
        for (const char *p = url; p < colon; p++)
            scheme &= (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '+' ||
                      *p == '-' || *p == '.';
        if (scheme)
            return refuse(why,
                          "an image URL in turn %zu (%.*s): LLaVA's format names a file under the image folder "
                          "(download it first)",
                          k, (int)(colon - url + 3), url);
    }
    *image = xstrdup(url);
    return 0;
}

// OpenAI's chat messages: {"messages": [{"role", "content": "text" | [{"type": "text", "text"},
// {"type": "image_url", "image_url": {"url"}}, {"type": "image"}]}]}, images without a URL taken in order from a
// top-level "images" list (TRL's layout).
static int read_openai(const cJSON *o, conv_rec *r, strbuf *why) {
    if (!cJSON_IsObject(o)) return refuse(why, "not a JSON object");
    r->id = id_of(o);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
    if (!cJSON_IsArray(msgs))
        return refuse(why, "no \"messages\" list%s",
                      cJSON_GetObjectItemCaseSensitive(o, "conversations") ? " (a \"conversations\" list: --from "
                                                                             "sharegpt or llama-factory?)"
                                                                           : "");
    if (cJSON_GetObjectItemCaseSensitive(o, "tools") || cJSON_GetObjectItemCaseSensitive(o, "functions"))
        return refuse(why, "tool descriptions (\"tools\"): LLaVA-1.5 has no tool calls");
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(o, "images");
    if (images && !cJSON_IsNull(images) && !cJSON_IsArray(images)) return refuse(why, "\"images\" is not a list");
    const cJSON *next_image = cJSON_IsArray(images) ? images->child : NULL;
    int n_images = 0;
    size_t k = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, k++) {
        if (!cJSON_IsObject(m)) return refuse(why, "turn %zu is not an object", k);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"),
                    *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role)) return refuse(why, "turn %zu has no \"role\"", k);
        int rl = role_of(role->valuestring, k, why);
        if (rl < 0) return -1;
        if (cJSON_GetObjectItemCaseSensitive(m, "tool_calls") || cJSON_GetObjectItemCaseSensitive(m, "function_call"))
            return refuse(why, "a tool call (turn %zu): LLaVA-1.5 has no tool calls", k);
        conv_msg *cm = rec_add(r, rl);
        if (cJSON_IsString(content)) {
            if (count_image_tokens(content->valuestring))
                return refuse(why,
                              "a literal <image> in the text of turn %zu, which LLaVA would read as the image's place "
                              "(<image> placeholders with an \"images\" list: --from llama-factory)",
                              k);
            sb_puts(&cm->text, content->valuestring);
            continue;
        }
        if (!cJSON_IsArray(content))
            return refuse(why, "turn %zu has no content (neither text nor a list of parts)", k);
        int first = 1;
        for (const cJSON *p = content->child; p; p = p->next) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
            if (!cJSON_IsString(type)) return refuse(why, "a part of turn %zu has no \"type\"", k);
            const char *ty = type->valuestring;
            if (strcmp(ty, "text") == 0) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
                if (!cJSON_IsString(t)) return refuse(why, "a text part of turn %zu has no \"text\"", k);
                if (count_image_tokens(t->valuestring))
                    return refuse(why,
                                  "a literal <image> in the text of turn %zu, which LLaVA would read as the image's "
                                  "place",
                                  k);
                if (!first) sb_puts(&cm->text, "\n");
                sb_puts(&cm->text, t->valuestring);
            } else if (strcmp(ty, "image_url") == 0 || strcmp(ty, "image") == 0) {
                if (rl == 1)
                    return refuse(why,
                                  "an image in turn %zu, the assistant's: LLaVA-1.5 takes its image in a user turn", k);
                if (++n_images > 1)
                    return refuse(why, "a second image (turn %zu): LLaVA-1.5 takes one image per sample", k);
                const cJSON *u = cJSON_GetObjectItemCaseSensitive(p, ty);
                if (cJSON_IsObject(u)) u = cJSON_GetObjectItemCaseSensitive(u, "url");
                if (!cJSON_IsString(u)) u = cJSON_GetObjectItemCaseSensitive(p, "url");
                if (!cJSON_IsString(u)) u = cJSON_GetObjectItemCaseSensitive(p, "path");
                if (!cJSON_IsString(u)) {
                    if (!next_image)
                        return refuse(why, "an image in turn %zu with neither a URL nor an entry in \"images\"", k);
                    if (!cJSON_IsString(next_image)) return refuse(why, "an entry of \"images\" is not a path");
                    u = next_image;
                    next_image = next_image->next;
                }
                if (image_path_of(u->valuestring, k, &r->image, why)) return -1;
                if (!first) sb_puts(&cm->text, "\n");
                sb_puts(&cm->text, DEFAULT_IMAGE_TOKEN);
            } else {
                return refuse(why, "a part of type \"%s\" in turn %zu: LLaVA's format has text and one image", ty, k);
            }
            first = 0;
        }
    }
    if (next_image) {
        int left = 0;
        for (const cJSON *e = next_image; e; e = e->next) left++;
        return refuse(why, "%d entr%s of \"images\" without an image part", left, left == 1 ? "y" : "ies");
    }
    return 0;
}

static cJSON *id_for(const conv_rec *r, uint64_t index) {
    if (r->id) return cJSON_Duplicate(r->id, 0);
    char b[24];
    snprintf(b, sizeof b, "%llu", (unsigned long long)index);
    return cJSON_CreateString(b);
}

// LLaVA's record: {"id", "image" (when there is one), "conversations": [{"from": "human"|"gpt", "value"}]}.
// ShareGPT's is the same with the image as an "images" list (the multimodal ShareGPT of LLaMA-Factory and others).
static cJSON *write_chat(const conv_rec *r, uint64_t index, int sharegpt) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "id", id_for(r, index));
    if (r->image && !sharegpt) cJSON_AddStringToObject(o, "image", r->image);
    cJSON *conv = cJSON_AddArrayToObject(o, "conversations");
    for (size_t k = 0; k < r->n; k++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "from", r->m[k].role ? "gpt" : "human");
        cJSON_AddStringToObject(t, "value", r->m[k].text.p);
        cJSON_AddItemToArray(conv, t);
    }
    if (r->image && sharegpt) {
        cJSON *im = cJSON_AddArrayToObject(o, "images");
        cJSON_AddItemToArray(im, cJSON_CreateString(r->image));
    }
    return o;
}

static void add_text_part(cJSON *parts, const char *s, size_t n) {
    if (!n) return;
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "text");
    char *t = xmalloc(n + 1);
    memcpy(t, s, n);
    t[n] = 0;
    cJSON_AddStringToObject(p, "text", t);
    free(t);
    cJSON_AddItemToArray(parts, p);
}

// OpenAI's messages: {"id", "messages": [{"role": "user", "content": text, or the parts around the image},
// {"role": "assistant", "content": text}]}. The image's part replaces "<image>" and the one newline beside it.
static cJSON *write_openai(const conv_rec *r, uint64_t index) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "id", id_for(r, index));
    cJSON *msgs = cJSON_AddArrayToObject(o, "messages");
    for (size_t k = 0; k < r->n; k++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", r->m[k].role ? "assistant" : "user");
        const char *s = r->m[k].text.p, *at = strstr(s, DEFAULT_IMAGE_TOKEN);
        if (!at) {
            cJSON_AddStringToObject(m, "content", s);
        } else {
            cJSON *parts = cJSON_AddArrayToObject(m, "content");
            size_t before = (size_t)(at - s);
            if (before && s[before - 1] == '\n') before--;
            add_text_part(parts, s, before);
            cJSON *img = cJSON_CreateObject();
            cJSON_AddStringToObject(img, "type", "image_url");
            cJSON *u = cJSON_AddObjectToObject(img, "image_url");
            cJSON_AddStringToObject(u, "url", r->image);
            cJSON_AddItemToArray(parts, img);
            const char *after = at + strlen(DEFAULT_IMAGE_TOKEN);
            if (*after == '\n') after++;
            add_text_part(parts, after, strlen(after));
        }
        cJSON_AddItemToArray(msgs, m);
    }
    return o;
}

// Whether a record's bytes hold a NUL character (raw, or escaped as \u0000): cJSON would cut the string there, so
// the record is refused rather than converted with part of a string missing (prep refuses such samples too).
static int has_nul(const char *s, size_t n) {
    if (memchr(s, 0, n)) return 1;
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == '\\') {
            if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0) return 1;
            i++;  // the escaped character
        }
    return 0;
}

static int same_file(const char *a, const char *b) {
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

static int data_convert(int argc, char **argv) {
    const char *from = NULL, *to = NULL, *in = NULL, *out = NULL;
    int skip_bad = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int v = i + 1 < argc;
        if (strcmp(a, "--from") == 0 && v) from = argv[++i];
        else if (strcmp(a, "--to") == 0 && v) to = argv[++i];
        else if (strcmp(a, "--out") == 0 && v) out = argv[++i];
        else if (strcmp(a, "--skip-bad") == 0) skip_bad = 1;
        else if (is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (a[0] != '-' && !in) in = a;
        else {
            fprintf(stderr, "llava data convert: unknown or incomplete argument %s\n\n%s", a, USAGE);
            return 2;
        }
    }
    if (!from == !to || !in || !out) {
        fprintf(stderr, "llava data convert: give one of --from and --to, the input and --out\n\n%s", USAGE);
        return 2;
    }
    int fmt_in = -1, fmt_out = -1;
    for (int f = 1; f < 4; f++) {
        if (from && strcmp(from, FMT_NAMES[f]) == 0) fmt_in = f, fmt_out = FMT_LLAVA;
        if (to && f != FMT_LLAMA_FACTORY && strcmp(to, FMT_NAMES[f]) == 0) fmt_in = FMT_LLAVA, fmt_out = f;
    }
    if (fmt_in < 0) {
        fprintf(stderr, "llava data convert: %s %s: give %s\n", from ? "--from" : "--to", from ? from : to,
                from ? "sharegpt, openai-messages or llama-factory" : "sharegpt or openai-messages");
        return 2;
    }
    if (same_file(in, out)) {
        fprintf(stderr, "llava data convert: --out %s is the input: refusing to write over it\n", out);
        return 2;
    }
    rec_reader rd;
    if (reader_open(&rd, in)) {
        fprintf(stderr, "llava data convert: %s\n", llava_errmsg());
        return 1;
    }
    size_t ol = strlen(out);
    int lines = ol > 6 && strcmp(out + ol - 6, ".jsonl") == 0;
    char *tmp = xasprintf("%s.tmp.%d", out, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "llava data convert: %s: cannot create: %s\n", tmp, strerror(errno));
        reader_close(&rd);
        free(tmp);
        return 1;
    }
    if (!lines) fputs("[", f);
    uint64_t written = 0, refused = 0;
    const char *e;
    size_t len;
    int rc;
    while ((rc = reader_next(&rd, &e, &len)) == 1) {
        uint64_t index = rd.count - 1;
        cJSON *o = cJSON_ParseWithLength(e, len);
        conv_rec r = {0};
        strbuf why = {0};
        int bad = 0;
        if (!o) bad = refuse(&why, "not valid JSON");
        else if (has_nul(e, len)) bad = refuse(&why, "a NUL character (\\u0000) in a string");
        else if (fmt_in == FMT_OPENAI) bad = read_openai(o, &r, &why);
        else bad = read_chat(o, fmt_in, &r, &why);
        if (!bad) bad = rec_check(&r, &why);
        if (bad) {
            refused++;
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
            fprintf(stderr, "llava data convert: record %llu", (unsigned long long)index);
            if (cJSON_IsString(id)) fprintf(stderr, " (id %s)", id->valuestring);
            else if (cJSON_IsNumber(id)) fprintf(stderr, " (id %.17g)", id->valuedouble);
            fprintf(stderr, ": %s%s\n", why.p, skip_bad ? " (skipped)" : "");
        } else {
            cJSON *w = fmt_out == FMT_OPENAI ? write_openai(&r, index) : write_chat(&r, index, fmt_out == FMT_SHAREGPT);
            char *p = cJSON_PrintUnformatted(w);
            if (lines) fprintf(f, "%s\n", p);
            else fprintf(f, "%s\n%s", written ? "," : "", p);
            free(p);
            cJSON_Delete(w);
            written++;
        }
        free(why.p);
        rec_free(&r);
        cJSON_Delete(o);
    }
    if (!lines) fputs(written ? "\n]\n" : "]\n", f);
    if (rc < 0) fprintf(stderr, "llava data convert: %s\n", llava_errmsg());
    uint64_t records = rd.count;
    reader_close(&rd);
    int ok = rc == 0 && (skip_bad || refused == 0);
    if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0) {
        if (ok) fprintf(stderr, "llava data convert: %s: write failed: %s\n", tmp, strerror(errno));
        ok = 0;
    }
    fclose(f);
    if (ok && rename(tmp, out) != 0) {
        fprintf(stderr, "llava data convert: %s: cannot rename to %s: %s\n", tmp, out, strerror(errno));
        ok = 0;
    }
    if (!ok) unlink(tmp);
    free(tmp);
    char b1[32], b2[32], b3[32];
    if (ok)
        printf("llava data convert: %s records (%s) -> %s samples in %s (%s)%s%s%s\n", fmt_count(records, b1),
               FMT_NAMES[fmt_in], fmt_count(written, b2), out, FMT_NAMES[fmt_out], refused ? ", " : "",
               refused ? fmt_count(refused, b3) : "", refused ? " refused and skipped" : "");
    else if (rc == 0)
        fprintf(stderr, "llava data convert: %s of %s records refused: nothing written (--skip-bad writes the rest)\n",
                fmt_count(refused, b1), fmt_count(records, b2));
    return ok ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------

int cmd_data(int argc, char **argv) {
    if (argc < 2) {
        fputs(USAGE, stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (is_help(sub) || strcmp(sub, "help") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(sub, "check") == 0) return data_check(argc - 1, argv + 1);
    if (strcmp(sub, "stats") == 0) return data_stats(argc - 1, argv + 1);
    if (strcmp(sub, "convert") == 0) return data_convert(argc - 1, argv + 1);
    fprintf(stderr, "llava data: unknown subcommand \"%s\" (check, stats or convert)\n\n%s", sub, USAGE);
    return 2;
}
