// Shared by the tokenizer and template tests: reading the golden files of tests/data/tokenizer/
// (tools/reference/make_tokenizer_goldens.py writes them; its docstring describes the formats).
#ifndef LLAVA_TESTS_TOKENIZER_GOLDEN_H
#define LLAVA_TESTS_TOKENIZER_GOLDEN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include "common/util.h"

#include "check.h"
#include "data/jsonl.h"
#include "data/template.h"
#include "data/tokenizer.h"

#define GOLDEN_DIR "tests/data/tokenizer/"

typedef struct {
    char **line;
    size_t *len;
    size_t n;
} golden_lines;

static inline void golden_free(golden_lines *g) {
    for (size_t i = 0; i < g->n; i++) free(g->line[i]);
    free(g->line);
    free(g->len);
    memset(g, 0, sizeof *g);
}

// Splits a file into lines (without the '\n'). Exits the test with a message when the file is missing.
static inline golden_lines golden_read_lines(const char *path) {
    golden_lines g = {0};
    size_t n;
    char *data = read_file(path, (size_t)256 << 20, &n);
    if (!data) {
        fprintf(stderr, "cannot read %s: %s\n", path, llava_errmsg());
        exit(1);
    }
    size_t cap = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && data[j] != '\n') j++;
        if (g.n == cap) {
            cap = cap ? cap * 2 : 1024;
            g.line = xrealloc(g.line, cap * sizeof *g.line);
            g.len = xrealloc(g.len, cap * sizeof *g.len);
        }
        g.line[g.n] = xmalloc(j - i + 1);
        memcpy(g.line[g.n], data + i, j - i);
        g.line[g.n][j - i] = 0;
        g.len[g.n] = j - i;
        g.n++;
        i = j + 1;
    }
    free(data);
    return g;
}

// A JSON Lines file of strings, decoded (raw bytes through \udcXX escapes).
static inline golden_lines golden_read_jsonl(const char *path) {
    golden_lines g = golden_read_lines(path);
    for (size_t i = 0; i < g.n; i++) {
        char *s;
        size_t len;
        if (json_string_decode(g.line[i], g.len[i], &s, &len)) {
            fprintf(stderr, "%s:%zu: %s\n", path, i + 1, llava_errmsg());
            exit(1);
        }
        free(g.line[i]);
        g.line[i] = s;
        g.len[i] = len;
    }
    return g;
}

// Parses "1 2 3" into ids (appended to *out).
static inline void golden_parse_ids(const char *s, tok_ids *out) {
    while (*s) {
        while (*s == ' ') s++;
        if (!*s) break;
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) {
            fprintf(stderr, "bad id list near \"%.20s\"\n", s);
            exit(1);
        }
        tok_ids_push(out, (int32_t)v);
        s = end;
    }
}

static inline int ids_equal(const tok_ids *a, const tok_ids *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof *a->v) == 0);
}

// Describes the first difference of two id sequences on stderr.
static inline void ids_report(const char *what, size_t line, const tok_ids *got, const tok_ids *want) {
    size_t k = 0;
    while (k < got->n && k < want->n && got->v[k] == want->v[k]) k++;
    fprintf(stderr, "  %s line %zu: %zu ids vs %zu expected, first difference at %zu: got", what, line, got->n, want->n,
            k);
    for (size_t j = k; j < got->n && j < k + 6; j++) fprintf(stderr, " %d", got->v[j]);
    fprintf(stderr, " / want");
    for (size_t j = k; j < want->n && j < k + 6; j++) fprintf(stderr, " %d", want->v[j]);
    fprintf(stderr, "\n");
}

// The real LLaMA / Vicuna tokenizer (32,000 pieces): $LLAVA_TEST_TOKENIZER, else the copy committed
// as tests/data/tokenizer/llama.model (sha256 9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347,
// the tokenizer.model of meta-llama / lmsys/vicuna-7b-v1.5), which the goldens were made with. A
// missing file is a failure naming it, never a skip: CPU tests do not skip.
#define GOLDEN_LLAMA_MODEL GOLDEN_DIR "llama.model"
static inline const char *golden_llama_path(void) {
    const char *env = getenv("LLAVA_TEST_TOKENIZER");
    const char *path = env && *env ? env : GOLDEN_LLAMA_MODEL;
    if (!file_exists(path)) {
        fprintf(stderr,
                "FAIL: the LLaMA tokenizer %s is missing (it is committed in the repository as %s; "
                "LLAVA_TEST_TOKENIZER may name another copy)\n",
                path, GOLDEN_LLAMA_MODEL);
        exit(1);
    }
    return path;
}

// Checks tok_sp_encode, tok_encode in every mode and tok_decode against the goldens of one model
// ("tiny" or "llama"). Returns the number of lines compared.
static inline size_t golden_check_model(const tokenizer *t, const char *name) {
    char path[512];
    golden_lines corpus = golden_read_jsonl(GOLDEN_DIR "corpus.jsonl");
    golden_lines prompts = golden_read_jsonl(GOLDEN_DIR "prompts.jsonl");
    size_t compared = 0;

    // sentencepiece
    snprintf(path, sizeof path, GOLDEN_DIR "%s.sp.ids", name);
    golden_lines sp = golden_read_lines(path);
    CHECK_EQ_INT(sp.n, corpus.n);
    size_t bad = 0;
    for (size_t i = 0; i < corpus.n && i < sp.n; i++) {
        if (strcmp(sp.line[i], ".") == 0) continue;
        tok_ids got = {0}, want = {0};
        golden_parse_ids(sp.line[i], &want);
        int rc = tok_sp_encode(t, corpus.line[i], corpus.len[i], &got);
        int ok = rc == 0 && ids_equal(&got, &want);
        CHECK(ok, "%s sentencepiece ids differ on corpus line %zu", name, i + 1);
        if (!ok && bad++ < 5) ids_report("sp", i + 1, &got, &want);
        compared++;
        tok_ids_free(&got);
        tok_ids_free(&want);
    }

    // The three HF modes. "=" refers to the legacy line (legacy: to [BOS] + sentencepiece).
    static const tok_mode modes[3] = {TOK_LEGACY, TOK_HF431, TOK_HF437};
    tok_ids *legacy = xcalloc(corpus.n + prompts.n, sizeof *legacy);
    for (int m = 0; m < 3; m++) {
        snprintf(path, sizeof path, GOLDEN_DIR "%s.%s.ids", name, tok_mode_name(modes[m]));
        golden_lines g = golden_read_lines(path);
        CHECK_EQ_INT(g.n, corpus.n + prompts.n);
        bad = 0;
        for (size_t i = 0; i < g.n && i < corpus.n + prompts.n; i++) {
            const char *l = g.line[i];
            if (strcmp(l, ".") == 0 || strcmp(l, "-") == 0) continue;
            tok_ids want = {0}, got = {0};
            if (strcmp(l, "=") == 0) {
                if (modes[m] == TOK_LEGACY) {
                    tok_ids_push(&want, tok_bos_id(t));
                    golden_parse_ids(sp.line[i], &want);
                } else {
                    for (size_t k = 0; k < legacy[i].n; k++) tok_ids_push(&want, legacy[i].v[k]);
                }
            } else {
                golden_parse_ids(l, &want);
            }
            const char *text = i < corpus.n ? corpus.line[i] : prompts.line[i - corpus.n];
            size_t len = i < corpus.n ? corpus.len[i] : prompts.len[i - corpus.n];
            int rc = tok_encode(t, modes[m], text, len, &got);
            int ok = rc == 0 && ids_equal(&got, &want);
            CHECK(ok, "%s %s ids differ on %s line %zu", name, tok_mode_name(modes[m]),
                  i < corpus.n ? "corpus" : "prompt", i < corpus.n ? i + 1 : i - corpus.n + 1);
            if (!ok && bad++ < 5) ids_report(tok_mode_name(modes[m]), i + 1, &got, &want);
            compared++;
            if (modes[m] == TOK_LEGACY) legacy[i] = want;
            else tok_ids_free(&want);
            tok_ids_free(&got);
        }
        golden_free(&g);
    }
    for (size_t i = 0; i < corpus.n + prompts.n; i++) tok_ids_free(&legacy[i]);
    free(legacy);

    // Decoding.
    snprintf(path, sizeof path, GOLDEN_DIR "%s.decode.tsv", name);
    golden_lines dec = golden_read_lines(path);
    bad = 0;
    for (size_t i = 0; i < dec.n; i++) {
        char *tab = strchr(dec.line[i], '\t');
        CHECK(tab != NULL, "%s line %zu has no tab", path, i + 1);
        if (!tab) continue;
        *tab = 0;
        tok_ids ids = {0};
        golden_parse_ids(dec.line[i], &ids);
        char *want, *got = NULL;
        size_t want_len, got_len = 0;
        if (json_string_decode(tab + 1, strlen(tab + 1), &want, &want_len)) {
            fprintf(stderr, "%s:%zu: %s\n", path, i + 1, llava_errmsg());
            exit(1);
        }
        int rc = tok_decode(t, ids.v, ids.n, &got, &got_len);
        int ok = rc == 0 && got_len == want_len && memcmp(got, want, want_len) == 0;
        CHECK(ok, "%s decode differs on line %zu: \"%s\" vs \"%s\"", name, i + 1, rc == 0 ? got : llava_errmsg(), want);
        if (!ok) bad++;
        compared++;
        free(got);
        free(want);
        tok_ids_free(&ids);
    }
    golden_free(&dec);
    golden_free(&sp);
    golden_free(&corpus);
    golden_free(&prompts);
    return compared;
}

// Checks prep_sample against LLaVA's own preprocessing (<model>.<mode>.prep.jsonl) for every sample of
// samples.jsonl, in every mode. Returns the number of samples compared.
// A golden sample's "conversations" as turns pointing into the JSON (free the array only).
static inline conv_turn *golden_turns(const cJSON *sample, size_t *n) {
    const cJSON *conv = cJSON_GetObjectItem(sample, "conversations");
    size_t nt = (size_t)cJSON_GetArraySize(conv);
    conv_turn *turns = xcalloc(nt + 1, sizeof *turns);
    for (size_t k = 0; k < nt; k++) {
        const cJSON *e = cJSON_GetArrayItem(conv, (int)k);
        turns[k].from = cJSON_GetObjectItem(e, "from")->valuestring;
        turns[k].value = cJSON_GetObjectItem(e, "value")->valuestring;
        turns[k].value_len = strlen(turns[k].value);
    }
    *n = nt;
    return turns;
}

static inline size_t golden_check_prep(const tokenizer *t, const char *name) {
    char path[512];
    golden_lines samples = golden_read_lines(GOLDEN_DIR "samples.jsonl");
    static const tok_mode modes[3] = {TOK_LEGACY, TOK_HF431, TOK_HF437};
    size_t compared = 0;
    for (int m = 0; m < 3; m++) {
        snprintf(path, sizeof path, GOLDEN_DIR "%s.%s.prep.jsonl", name, tok_mode_name(modes[m]));
        golden_lines gold = golden_read_lines(path);
        CHECK_EQ_INT(gold.n, samples.n);
        for (size_t i = 0; i < samples.n && i < gold.n; i++) {
            cJSON *s = cJSON_Parse(samples.line[i]), *g = cJSON_Parse(gold.line[i]);
            if (!s || !g) {
                fprintf(stderr, "%s: line %zu is not JSON\n", path, i + 1);
                exit(1);
            }
            const char *id = cJSON_GetObjectItem(s, "id")->valuestring;
            const char *tname = cJSON_GetObjectItem(s, "template")->valuestring;
            const conv_template *tmpl = conv_template_builtin(tname);
            conv_template *loaded = NULL;
            if (!tmpl) {
                char tpath[512];
                snprintf(tpath, sizeof tpath, "data/templates/%s.json", tname);
                tmpl = loaded = conv_template_load(tpath);
                if (!tmpl) {
                    fprintf(stderr, "%s\n", llava_errmsg());
                    exit(1);
                }
            }
            size_t nt;
            conv_turn *turns = golden_turns(s, &nt);
            prep_config cfg = {.tok = t, .mode = modes[m], .tmpl = tmpl, .model_max_length = 2048};
            prep_result r;
            int rc = prep_sample(&cfg, id, turns, nt, cJSON_GetObjectItem(s, "image") != NULL, &r);
            const cJSON *err = cJSON_GetObjectItem(g, "error");
            if (err) {
                CHECK(rc != 0, "%s %s sample %s: LLaVA fails (%s), we do not", name, tok_mode_name(modes[m]), id,
                      err->valuestring);
                if (rc == 0) prep_result_free(&r);
            } else if (rc != 0) {
                CHECK(0, "%s %s sample %s: %s", name, tok_mode_name(modes[m]), id, llava_errmsg());
            } else {
                tok_ids want = {0}, want_labels = {0};
                golden_parse_ids(cJSON_GetObjectItem(g, "ids")->valuestring, &want);
                for (size_t k = 0; k < want.n; k++) tok_ids_push(&want_labels, IGNORE_INDEX);
                const cJSON *sup = cJSON_GetObjectItem(g, "supervised");
                for (int k = 0; k < cJSON_GetArraySize(sup); k++) {
                    const cJSON *rg = cJSON_GetArrayItem(sup, k);
                    int a = cJSON_GetArrayItem(rg, 0)->valueint, b = cJSON_GetArrayItem(rg, 1)->valueint;
                    for (int x = a; x < b && (size_t)x < want.n; x++) want_labels.v[x] = want.v[x];
                }
                int ok_ids = ids_equal(&r.ids, &want), ok_labels = ids_equal(&r.labels, &want_labels);
                CHECK(ok_ids, "%s %s sample %s: input ids differ", name, tok_mode_name(modes[m]), id);
                if (!ok_ids) ids_report("ids", i + 1, &r.ids, &want);
                CHECK(ok_labels, "%s %s sample %s: labels differ", name, tok_mode_name(modes[m]), id);
                if (!ok_labels) ids_report("labels", i + 1, &r.labels, &want_labels);
                const cJSON *mm = cJSON_GetObjectItem(g, "mismatch");
                int want_mm = mm && cJSON_IsArray(mm);
                CHECK(want_mm == !!(r.flags & PREP_MISMATCH), "%s %s sample %s: mismatch %d vs LLaVA %d", name,
                      tok_mode_name(modes[m]), id, !!(r.flags & PREP_MISMATCH), want_mm);
                if (want_mm) {
                    CHECK_EQ_INT(r.cur_len, cJSON_GetArrayItem(mm, 0)->valueint);
                    CHECK_EQ_INT(r.total_len, cJSON_GetArrayItem(mm, 1)->valueint);
                }
                tok_ids_free(&want);
                tok_ids_free(&want_labels);
                prep_result_free(&r);
            }
            compared++;
            free(turns);
            conv_template_free(loaded);
            cJSON_Delete(s);
            cJSON_Delete(g);
        }
        golden_free(&gold);
    }
    golden_free(&samples);
    return compared;
}

#endif
