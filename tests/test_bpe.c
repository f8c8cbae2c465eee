// Byte-level BPE from tokenizer.json (data/bpe.c) against the `tokenizers` library: the four tokenizers of
// tests/data/bpe/ (Llama-3, Qwen2 and GPT-2 shaped, and one with the remaining options), every corpus line's ids with
// and without the template, decoding (corpus round trips and random ids), the vocabulary queries, the refusal of
// every feature not implemented, damaged files, encoding from several threads, and `llava tokenize --tokenizer
// tokenizer.json`. Goldens: tools/reference/make_bpe_goldens.py (its docstring describes the formats). With
// $LLAVA_TEST_LLAMA3_TOKENIZER naming Meta's Llama-3.2 tokenizer.json (not committed: its license), its ids are
// checked too.
#include <pthread.h>
#include <sys/wait.h>

#include "data/bpe.h"
#include "tokenizer_golden.h"

#define BPE_DIR "tests/data/bpe/"

static const char *const NAMES[] = {"llama3", "qwen2", "gpt2", "variant"};

static cJSON *meta_all;
static golden_lines corpus;

static void push_ids_json(const cJSON *arr, tok_ids *out) {
    for (const cJSON *e = arr ? arr->child : NULL; e; e = e->next) tok_ids_push(out, (int32_t)e->valuedouble);
}

static size_t total_lines_checked;

// Every corpus line: encode with the template (the golden), without it (the golden less the template's ids), and
// decode(encode(line)) against the library's decode.
static void check_corpus(const bpe_tokenizer *t, const char *dir, const cJSON *meta) {
    char path[512];
    snprintf(path, sizeof path, "%sids.txt", dir);
    golden_lines ids = golden_read_lines(path);
    snprintf(path, sizeof path, "%sdecode.txt", dir);
    golden_lines dec = golden_read_lines(path);
    CHECK_EQ_INT(ids.n, corpus.n);
    CHECK_EQ_INT(dec.n, corpus.n);
    tok_ids pre = {0}, post = {0}, want = {0}, got = {0}, bare = {0};
    push_ids_json(cJSON_GetObjectItemCaseSensitive(meta, "pre"), &pre);
    push_ids_json(cJSON_GetObjectItemCaseSensitive(meta, "post"), &post);
    size_t mismatches = 0, checked = 0, refused = 0, dec_bad = 0;
    for (size_t i = 0; i < corpus.n && i < ids.n && i < dec.n; i++) {
        got.n = 0;
        int rc = bpe_encode(t, corpus.line[i], corpus.len[i], 1, &got);
        if (strcmp(ids.line[i], "-") == 0) {  // not UTF-8: the library cannot take it, we refuse it
            CHECK(rc == -1, "%s line %zu: text that is not UTF-8 was encoded", dir, i + 1);
            refused++;
            continue;
        }
        checked++;
        want.n = 0;
        golden_parse_ids(ids.line[i], &want);
        if (rc != 0 || !ids_equal(&got, &want)) {
            if (mismatches++ < 5) ids_report(dir, i + 1, &got, &want);
            continue;
        }
        bare.n = 0;
        CHECK(bpe_encode(t, corpus.line[i], corpus.len[i], 0, &bare) == 0, "%s", llava_errmsg());
        int bare_ok = bare.n + pre.n + post.n == want.n &&
                      (bare.n == 0 || memcmp(bare.v, want.v + pre.n, bare.n * sizeof *bare.v) == 0);
        if (!bare_ok && mismatches++ < 5) fprintf(stderr, "  %s line %zu: without the template\n", dir, i + 1);
        char *text;
        size_t tl;
        bpe_decode(t, bare.v, bare.n, 0, &text, &tl);
        int ok;
        if (strcmp(dec.line[i], "=") == 0) {
            ok = tl == corpus.len[i] && memcmp(text, corpus.line[i], tl) == 0;
        } else if (strcmp(dec.line[i], "+=") == 0) {
            ok = tl == corpus.len[i] + 1 && text[0] == ' ' && memcmp(text + 1, corpus.line[i], tl - 1) == 0;
        } else {
            char *w;
            size_t wl;
            ok = json_string_decode(dec.line[i], strlen(dec.line[i]), &w, &wl) == 0 && wl == tl &&
                 memcmp(w, text, tl) == 0;
            free(w);
        }
        if (!ok && dec_bad++ < 5) fprintf(stderr, "  %s line %zu: decode differs: \"%.60s\"\n", dir, i + 1, text);
        free(text);
    }
    CHECK(mismatches == 0, "%s: %zu of %zu lines differ from the tokenizers library", dir, mismatches, checked);
    CHECK(dec_bad == 0, "%s: %zu decodes differ", dir, dec_bad);
    CHECK(checked >= 5000, "%s: only %zu lines checked", dir, checked);
    const cJSON *lines = cJSON_GetObjectItemCaseSensitive(meta, "lines");
    CHECK(cJSON_IsNumber(lines) && (size_t)lines->valuedouble == checked, "%s: line count", dir);
    printf("%s: %zu lines identical to tokenizers (%zu not UTF-8, refused), %zu decodes identical\n", dir, checked,
           refused, checked - dec_bad);
    total_lines_checked += checked;
    tok_ids_free(&pre);
    tok_ids_free(&post);
    tok_ids_free(&want);
    tok_ids_free(&got);
    tok_ids_free(&bare);
    golden_free(&ids);
    golden_free(&dec);
}

static void check_decode_random(const bpe_tokenizer *t, const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%sdecode_random.jsonl", dir);
    golden_lines g = golden_read_lines(path);
    size_t bad = 0;
    for (size_t i = 0; i < g.n; i++) {
        cJSON *o = cJSON_Parse(g.line[i]);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
        tok_ids ids = {0};
        push_ids_json(cJSON_GetObjectItemCaseSensitive(o, "ids"), &ids);
        char *s;
        size_t n;
        bpe_decode(t, ids.v, ids.n, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "skip")), &s, &n);
        // The text may hold NULs, which the JSON parser ends a string at: decode the literal itself.
        const char *lit = strstr(g.line[i], "\"text\": ");
        char *w = NULL;
        size_t wl = 0;
        int ok = cJSON_IsString(text) && lit && json_string_decode(lit + 8, strlen(lit + 8) - 1, &w, &wl) == 0 &&
                 wl == n && memcmp(s, w, n) == 0;
        free(w);
        if (!ok) {
            if (bad++ < 3) fprintf(stderr, "  %s decode_random line %zu: got \"%.40s\"\n", dir, i + 1, s);
        }
        free(s);
        tok_ids_free(&ids);
        cJSON_Delete(o);
    }
    CHECK(bad == 0 && g.n >= 500, "%s: %zu of %zu random decodes differ", dir, bad, g.n);
    golden_free(&g);
}

static void check_queries(const bpe_tokenizer *t, const char *name, const cJSON *meta) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, "vocab_size");
    CHECK(cJSON_IsNumber(v) && bpe_vocab_size(t) == (int)v->valuedouble, "%s: vocab size %d", name, bpe_vocab_size(t));
    v = cJSON_GetObjectItemCaseSensitive(meta, "bos");
    CHECK(cJSON_IsNumber(v) && bpe_bos_id(t) == (int)v->valuedouble, "%s: bos %d", name, bpe_bos_id(t));
    v = cJSON_GetObjectItemCaseSensitive(meta, "eos");
    CHECK(cJSON_IsNumber(v) && bpe_eos_id(t) == (int)v->valuedouble, "%s: eos %d", name, bpe_eos_id(t));
    size_t bad = 0, n = 0;
    for (const cJSON *e = cJSON_GetObjectItemCaseSensitive(meta, "tokens")->child; e; e = e->next, n++) {
        const char *tok = e->child->valuestring;
        int id = (int)e->child->next->valuedouble;
        size_t len = 0;
        const char *back = bpe_id_to_token(t, id, &len);
        if (bpe_token_to_id(t, tok, strlen(tok)) != id || !back || len != strlen(tok) || memcmp(back, tok, len) != 0)
            bad++;
    }
    CHECK(bad == 0 && n > 100, "%s: %zu of %zu token_to_id / id_to_token differ", name, bad, n);
    size_t n_special = 0;
    for (const cJSON *e = cJSON_GetObjectItemCaseSensitive(meta, "special")->child; e; e = e->next, n_special++)
        CHECK(bpe_is_special(t, (int)e->valuedouble), "%s: id %d is special", name, (int)e->valuedouble);
    CHECK(n_special > 0, "%s: no special tokens in meta.json", name);
    CHECK(bpe_id_to_token(t, -1, NULL) == NULL && bpe_id_to_token(t, bpe_id_limit(t), NULL) == NULL, "%s", name);
    CHECK(bpe_token_to_id(t, "no such token at all", 20) == -1, "%s", name);
}

// ---------------------------------------------------------------------------------------------
// Refusals: a small valid tokenizer, then one change at a time

static const char *BASE_JSON =
    "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,"
    " \"added_tokens\": [{\"id\": 7, \"content\": \"<|end|>\", \"single_word\": false, \"lstrip\": false,"
    " \"rstrip\": false, \"normalized\": false, \"special\": true}],"
    " \"normalizer\": NORM,"
    " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\":"
    " \"REGEX\"}, \"behavior\": \"BEHAVIOR\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": "
    "false,"
    " \"trim_offsets\": true, \"use_regex\": false}]},"
    " \"post_processor\": POST,"
    " \"decoder\": DECODER,"
    " \"model\": {\"type\": \"MODEL\", \"dropout\": DROPOUT, \"unk_token\": null, \"continuing_subword_prefix\": "
    "PREFIX,"
    " \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": true,"
    " \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3, \"\\u0120ab\": 4, \"c\": 5, \"abc\": 6VOCAB},"
    " \"merges\": [\"a b\", \"\\u0120 ab\", MERGE\"ab c\"]}}";

static char *replace(const char *s, const char *key, const char *val) {
    const char *p = strstr(s, key);
    if (!p) return xstrdup(s);
    return xasprintf("%.*s%s%s", (int)(p - s), s, val, p + strlen(key));
}

typedef struct {
    const char *norm, *regex, *behavior, *post, *decoder, *model, *dropout, *prefix, *vocab, *merge;
} variant;

static char *make_json(variant v) {
    const char *keys[] = {"NORM",  "REGEX",   "BEHAVIOR", "POST",  "DECODER",
                          "MODEL", "DROPOUT", "PREFIX",   "VOCAB", "MERGE"};
    const char *vals[] = {v.norm ? v.norm : "null",
                          v.regex ? v.regex : "(?i:'s|'t|'re|'ve|'m|'ll|'d)| ?\\\\p{L}+|\\\\s+(?!\\\\S)|\\\\s+",
                          v.behavior ? v.behavior : "Isolated",
                          v.post ? v.post : "{\"type\": \"ByteLevel\"}",
                          v.decoder ? v.decoder : "{\"type\": \"ByteLevel\"}",
                          v.model ? v.model : "BPE",
                          v.dropout ? v.dropout : "null",
                          v.prefix ? v.prefix : "null",
                          v.vocab ? v.vocab : "",
                          v.merge ? v.merge : ""};
    char *s = xstrdup(BASE_JSON);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        char *n = replace(s, keys[k], vals[k]);
        free(s);
        s = n;
    }
    return s;
}

static bpe_tokenizer *load_str(const char *json) { return bpe_load_mem(json, strlen(json), NULL, 0); }

static void expect_refused(variant v, const char *needle) {
    char *json = make_json(v);
    bpe_tokenizer *t = load_str(json);
    CHECK(t == NULL, "a tokenizer that should be refused (%s) loaded", needle);
    if (!t) CHECK_ERR_HAS(needle);
    bpe_free(t);
    free(json);
}

static void expect_refused_text(const char *json, const char *needle) {
    bpe_tokenizer *t = load_str(json);
    CHECK(t == NULL, "a tokenizer that should be refused (%s) loaded", needle);
    if (!t) CHECK_ERR_HAS(needle);
    bpe_free(t);
}

static void encode_text(const bpe_tokenizer *t, const char *s, tok_ids *out) {
    out->n = 0;
    CHECK(bpe_encode(t, s, strlen(s), 1, out) == 0, "encode \"%s\": %s", s, llava_errmsg());
}

static void test_crafted(void) {
    variant ok = {0};
    char *json = make_json(ok);
    bpe_tokenizer *t = load_str(json);
    CHECK(t != NULL, "the crafted tokenizer: %s", llava_errmsg());
    if (t) {
        tok_ids ids = {0};
        // "ab abc<|end|>": "ab" is a word of the vocabulary (ignore_merges: id 2 at once); " abc" is not, so its
        // merges run: "a b" (rank 0), then "Ġ ab" (rank 1) gives "Ġab", and "Ġab c" is no merge: 4, 5.
        encode_text(t, "ab abc<|end|>", &ids);
        int want[] = {2, 4, 5, 7};
        CHECK(ids.n == 4 && memcmp(ids.v, want, sizeof want) == 0, "crafted ids (%zu)", ids.n);
        CHECK_EQ_INT(bpe_vocab_size(t), 8);
        CHECK_EQ_INT(bpe_bos_id(t), -1);
        CHECK(bpe_is_special(t, 7) && !bpe_is_special(t, 2), "special flags");
        // Bytes without a token are dropped (no unk_token), as the library does.
        encode_text(t, "az", &ids);
        CHECK(ids.n == 1 && ids.v[0] == 0, "unknown byte dropped (%zu)", ids.n);
        CHECK(bpe_encode(t, "\xff", 1, 1, &ids) == -1, "invalid UTF-8 refused");
        CHECK_ERR_HAS("UTF-8");
        tok_ids_free(&ids);
    }
    bpe_free(t);
    free(json);
    // A config: bos/eos by name, and a name that is no token.
    const char *cfg = "{\"bos_token\": {\"content\": \"<|end|>\"}, \"eos_token\": \"abc\"}";
    json = make_json(ok);
    t = bpe_load_mem(json, strlen(json), cfg, strlen(cfg));
    CHECK(t && bpe_bos_id(t) == 7 && bpe_eos_id(t) == 6, "config bos/eos");
    bpe_free(t);
    const char *bad_cfg = "{\"eos_token\": \"<nope>\"}";
    t = bpe_load_mem(json, strlen(json), bad_cfg, strlen(bad_cfg));
    CHECK(t == NULL, "config naming no token");
    if (!t) CHECK_ERR_HAS("<nope>");
    free(json);

    // Every feature not implemented is named.
    expect_refused((variant){.model = "WordPiece"}, "model type WordPiece");
    expect_refused((variant){.norm = "{\"type\": \"Lowercase\"}"}, "normalizer Lowercase");
    expect_refused((variant){.norm = "{\"type\": \"NFKC\"}"}, "normalizer NFKC");
    expect_refused((variant){.regex = "\\\\p{Lu}+|\\\\s+"}, "\\p{Lu}+");
    expect_refused((variant){.regex = "[a-z]+"}, "[a-z]+");
    expect_refused((variant){.behavior = "Removed"}, "behavior Removed");
    expect_refused((variant){.post = "{\"type\": \"RobertaProcessing\"}"}, "post_processor RobertaProcessing");
    expect_refused((variant){.decoder = "{\"type\": \"WordPiece\"}"}, "decoder WordPiece");
    expect_refused((variant){.decoder = "null"}, "decoder null");
    expect_refused((variant){.dropout = "0.1"}, "dropout");
    expect_refused((variant){.prefix = "\"##\""}, "continuing_subword_prefix");
    expect_refused((variant){.merge = "\"a q\", "}, "missing from the vocab");
    expect_refused((variant){.merge = "\"a b c\", "}, "two tokens separated by one space");
    expect_refused((variant){.merge = "[\"a\", \"b\"], "}, "neither");
    expect_refused((variant){.vocab = ", \"d\": 6"}, "id 6 is given to two tokens");
    expect_refused((variant){.vocab = ", \"d\": -1"}, "not an integer");
    expect_refused((variant){.vocab = ", \"d\": 1.5"}, "not an integer");
    expect_refused((variant){.vocab = ", \"d\": 99999999"}, "not an integer");
    expect_refused((variant){.vocab = ", \"d\": 100000"}, "ids up to");
    expect_refused((variant){.vocab = ", \"a\": 8"}, "appears twice");
    expect_refused((variant){.vocab = ", \"d\\u0000\": 8"}, "\\u0000");
    expect_refused((variant){.post = "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": "
                                     "\"<x>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
                                     "\"special_tokens\": {\"<x>\": {\"id\": \"<x>\", \"ids\": [99], \"tokens\": "
                                     "[\"<x>\"]}}}"},
                   "out of range");
    json = make_json(ok);
    char *j2 = replace(json, "\"single_word\": false", "\"single_word\": true");
    expect_refused_text(j2, "single_word");
    free(j2);
    j2 = replace(json, "\"truncation\": null", "\"truncation\": {\"max_length\": 8}");
    expect_refused_text(j2, "truncation");
    free(j2);
    j2 = replace(json, "\"use_regex\": false}]}", "\"use_regex\": false}, {\"type\": \"Digits\"}]}");
    expect_refused_text(j2, "pre_tokenizer Digits");
    free(j2);
    j2 = replace(json,
                 "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": "
                 "false}",
                 "{\"type\": \"Metaspace\"}");
    expect_refused_text(j2, "pre_tokenizer Metaspace");
    free(j2);
    expect_refused_text("[1, 2]", "not a JSON object");
    expect_refused_text("{\"model\": ", "not a JSON object");

    // Damaged files: every truncation and many corrupted copies load or fail cleanly (never crash).
    size_t n = strlen(json), loaded = 0;
    for (size_t k = 0; k < n; k++) {
        bpe_tokenizer *x = bpe_load_mem(json, k, NULL, 0);
        loaded += x != NULL;
        bpe_free(x);
    }
    CHECK_EQ_INT(loaded, 0);
    uint64_t rng = 88172645463325252ull;
    char *buf = xmalloc(n + 1);
    size_t survived = 0;
    for (int k = 0; k < 3000; k++) {
        memcpy(buf, json, n + 1);
        for (int m = 0; m < 1 + k % 3; m++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            buf[rng % n] = (char)(rng >> 40);
        }
        bpe_tokenizer *x = bpe_load_mem(buf, n, NULL, 0);
        if (x) {
            tok_ids ids = {0};
            bpe_encode(x, "ab abc a'S b\r\n <|end|>", 22, 1, &ids);
            char *s;
            size_t sl;
            bpe_decode(x, ids.v, ids.n, 0, &s, &sl);
            free(s);
            tok_ids_free(&ids);
            survived++;
        }
        bpe_free(x);
    }
    printf("damaged tokenizer.json: %zu truncations refused, %zu of 3000 corrupted copies still loaded\n", n, survived);
    free(buf);
    free(json);
}

// Damaged copies of a whole trained tokenizer (its merges, added tokens, template): each loads and encodes, or is
// refused, cleanly.
static void test_damaged_file(void) {
    size_t n;
    char *json = read_file(BPE_DIR "variant/tokenizer.json", 1 << 24, &n);
    CHECK(json != NULL, "%s", llava_errmsg());
    if (!json) return;
    char *buf = xmalloc(n + 1);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    size_t loaded = 0;
    for (int k = 0; k < 300; k++) {
        memcpy(buf, json, n + 1);
        for (int m = 0; m < 1 + k % 4; m++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Mostly the structure's bytes: quotes, brackets, digits, separators.
            static const char SET[] = "\"{}[],: 0123456789\\x";
            buf[rng % n] = (rng >> 33) % 4 ? SET[(rng >> 40) % (sizeof SET - 1)] : (char)(rng >> 48);
        }
        bpe_tokenizer *x = bpe_load_mem(buf, n, NULL, 0);
        if (x) {
            tok_ids ids = {0};
            const char *s = "Hello <|sep|> [MASK] café ~`| 123\r\n\tx";
            bpe_encode(x, s, strlen(s), 1, &ids);
            char *d;
            size_t dl;
            bpe_decode(x, ids.v, ids.n, 1, &d, &dl);
            free(d);
            tok_ids_free(&ids);
            loaded++;
        }
        bpe_free(x);
    }
    printf("damaged variant/tokenizer.json: %zu of 300 copies still loaded\n", loaded);
    free(buf);
    free(json);
}

// ---------------------------------------------------------------------------------------------
// Threads

typedef struct {
    const bpe_tokenizer *t;
    const golden_lines *want;  // ids.txt
    size_t bad;
} thread_arg;

static void *thread_main(void *p) {
    thread_arg *a = p;
    tok_ids got = {0}, want = {0};
    for (size_t i = 0; i < corpus.n; i++) {
        if (strcmp(a->want->line[i], "-") == 0) continue;
        got.n = want.n = 0;
        golden_parse_ids(a->want->line[i], &want);
        if (bpe_encode(a->t, corpus.line[i], corpus.len[i], 1, &got) != 0 || !ids_equal(&got, &want)) a->bad++;
    }
    tok_ids_free(&got);
    tok_ids_free(&want);
    return NULL;
}

static void test_threads(const bpe_tokenizer *t, const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%sids.txt", dir);
    golden_lines want = golden_read_lines(path);
    pthread_t th[4];
    thread_arg args[4];
    for (int k = 0; k < 4; k++) {
        args[k] = (thread_arg){t, &want, 0};
        pthread_create(&th[k], NULL, thread_main, &args[k]);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(th[k], NULL);
        CHECK(args[k].bad == 0, "thread %d: %zu lines differ", k, args[k].bad);
    }
    golden_free(&want);
}

// ---------------------------------------------------------------------------------------------
// The command line

static const char *bin(void) {
    const char *b = getenv("LLAVA_BIN");
    return b && *b ? b : "build/llava";
}

static int run_cli(const char *tmp, const char *args, const char *input, char **out, char **err) {
    char *in = xasprintf("%s/in", tmp), *o = xasprintf("%s/out", tmp), *e = xasprintf("%s/err", tmp);
    FILE *f = fopen(in, "wb");
    fputs(input, f);
    fclose(f);
    char *cmd = xasprintf("'%s' tokenize %s < '%s' > '%s' 2> '%s'", bin(), args, in, o, e);
    int st = system(cmd);
    *out = read_file(o, 1 << 24, NULL);
    *err = read_file(e, 1 << 24, NULL);
    if (!*out) *out = xstrdup("");
    if (!*err) *err = xstrdup("");
    free(in);
    free(o);
    free(e);
    free(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    char *tmp = check_tmpdir(), *out, *err;
    // The first 200 corpus lines as JSON Lines in, the golden ids out.
    char path[] = BPE_DIR "corpus.jsonl";
    golden_lines raw = golden_read_lines(path);
    golden_lines ids = golden_read_lines(BPE_DIR "llama3/ids.txt");
    strbuf in = {0}, want = {0};
    for (size_t i = 0; i < 200 && i < raw.n; i++) {
        if (strcmp(ids.line[i], "-") == 0) continue;
        sb_put(&in, raw.line[i], raw.len[i]);
        sb_put(&in, "\n", 1);
        sb_puts(&want, ids.line[i]);
        sb_put(&want, "\n", 1);
    }
    int rc = run_cli(tmp, "--tokenizer " BPE_DIR "llama3/tokenizer.json", in.p, &out, &err);
    CHECK(rc == 0 && strcmp(out, want.p) == 0, "llava tokenize on tokenizer.json: rc %d, %s", rc, err);
    free(out);
    free(err);
    rc = run_cli(tmp, "--tokenizer " BPE_DIR "llama3/tokenizer.json --decode", "4000 81 82\n", &out, &err);
    CHECK(rc == 0 && strstr(out, "<|begin_of_text|>") == out + 1, "--decode: rc %d, %s%s", rc, out, err);
    free(out);
    free(err);
    rc = run_cli(tmp, "--tokenizer " BPE_DIR "llama3/tokenizer.json --no-special", "\"Hello\"\n", &out, &err);
    CHECK(rc == 0 && strncmp(out, "4000", 4) != 0, "--no-special: rc %d, %s%s", rc, out, err);
    free(out);
    free(err);
    rc = run_cli(tmp, "--tokenizer " BPE_DIR "qwen2/tokenizer.json --pieces", "\"Hello world\"\n", &out, &err);
    CHECK(rc == 0 && strstr(out, "Ġ") != NULL, "--pieces: rc %d, %s%s", rc, out, err);
    free(out);
    free(err);
    char *args = xasprintf("--tokenizer " BPE_DIR "gpt2/tokenizer.json --bench " BPE_DIR "corpus.jsonl --seconds 0.2");
    rc = run_cli(tmp, args, "", &out, &err);
    CHECK(rc == 0 && strstr(out, "tokens/s") != NULL, "--bench: rc %d, %s%s", rc, out, err);
    free(args);
    free(out);
    free(err);
    rc = run_cli(tmp, "--tokenizer " BPE_DIR "gpt2/tokenizer.json --mode hf437", "\"x\"\n", &out, &err);
    CHECK(rc == 2 && strstr(err, "--mode") != NULL, "--mode with tokenizer.json is refused: rc %d, %s", rc, err);
    free(out);
    free(err);
    rc = run_cli(tmp, "--tokenizer " BPE_DIR "gpt2/tokenizer.json", "\"\\udcff\"\n", &out, &err);
    CHECK(rc == 1 && strstr(err, "UTF-8") != NULL, "invalid UTF-8 on stdin: rc %d, %s", rc, err);
    free(out);
    free(err);
    free(in.p);
    free(want.p);
    golden_free(&raw);
    golden_free(&ids);
    remove_tree(tmp);
    free(tmp);
}

int main(void) {
    corpus = golden_read_jsonl(BPE_DIR "corpus.jsonl");
    size_t ml;
    char *m = read_file(BPE_DIR "meta.json", 1 << 24, &ml);
    meta_all = m ? cJSON_ParseWithLength(m, ml) : NULL;
    free(m);
    if (!meta_all) {
        fprintf(stderr, "cannot read %smeta.json\n", BPE_DIR);
        return 1;
    }
    for (size_t k = 0; k < sizeof NAMES / sizeof NAMES[0]; k++) {
        char dir[256], path[300];
        snprintf(dir, sizeof dir, BPE_DIR "%s/", NAMES[k]);
        snprintf(path, sizeof path, "%stokenizer.json", dir);
        bpe_tokenizer *t = bpe_load(path);
        CHECK(t != NULL, "%s: %s", path, llava_errmsg());
        if (!t) continue;
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(meta_all, NAMES[k]);
        check_corpus(t, dir, meta);
        check_decode_random(t, dir);
        check_queries(t, NAMES[k], meta);
        if (k == 1) test_threads(t, dir);
        bpe_free(t);
    }
    const char *real = getenv("LLAVA_TEST_LLAMA3_TOKENIZER");
    if (real && *real) {
        bpe_tokenizer *t = bpe_load(real);
        CHECK(t != NULL, "%s: %s", real, llava_errmsg());
        size_t rl;
        char *rm = read_file(BPE_DIR "llama3_2/meta.json", 1 << 20, &rl);
        cJSON *meta = rm ? cJSON_ParseWithLength(rm, rl) : NULL;
        free(rm);
        if (t && meta) {
            check_corpus(t, BPE_DIR "llama3_2/", meta);
            check_decode_random(t, BPE_DIR "llama3_2/");
            check_queries(t, "llama3_2", meta);
        }
        cJSON_Delete(meta);
        bpe_free(t);
    } else {
        printf("Meta's Llama-3.2 tokenizer.json: not checked ($LLAVA_TEST_LLAMA3_TOKENIZER unset)\n");
    }
    printf("%zu corpus lines identical in all\n", total_lines_checked);
    test_crafted();
    test_damaged_file();
    test_cli();
    cJSON_Delete(meta_all);
    golden_free(&corpus);
    return check_done();
}
