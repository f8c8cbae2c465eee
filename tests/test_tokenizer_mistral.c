// The tokenizer on Mistral-7B's real tokenizer.model (v0.1 / v0.2 and their -Instruct: 32,000 pieces), the file
// tokenizer.model.v1 of the mistral_common 1.13.1 wheel (Apache-2.0; tests/data/tokenizer/mistral_v1/meta.json says
// how to get it). It is not committed: with $LLAVA_TEST_MISTRAL_TOKENIZER naming it (its size and sha256 are checked
// first), every line of the tokenizer corpus gives sentencepiece's ids (tok_sp_encode) and the ids of
// transformers' LlamaTokenizerFast with Mistral-7B-Instruct's config, legacy=True, loaded as LLaVA-NeXT loads it
// (tok_encode, TOK_LEGACY; the slow LlamaTokenizer gives the same on every line), tok_decode gives sentencepiece's
// decoding of random ids and decode(encode(line)) is the line. Without the variable only the goldens are read, and
// must parse: CPU tests have no skip code, so the test passes and says what it did not check.
// Goldens: tools/reference/make_tokenizer_goldens.py mistral.
#include "tokenizer_golden.h"

#define MISTRAL_DIR GOLDEN_DIR "mistral_v1/"

// One corpus line's goldens: sentencepiece ids, and the legacy ids unless the line is not UTF-8.
typedef struct {
    tok_ids sp, legacy;
    int legacy_na;
} mistral_line;

// One row of decode.tsv: ids and sentencepiece's text.
typedef struct {
    tok_ids ids;
    char *text;
    size_t len;
} decode_row;

static const cJSON *meta_item(const cJSON *meta, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    if (!v) {
        fprintf(stderr, "FAIL: " MISTRAL_DIR "meta.json has no \"%s\"\n", key);
        exit(1);
    }
    return v;
}

// sha256 of a file through the system's sha256sum (or shasum), as 64 hex digits. Exits on failure.
static void file_sha256(const char *path, char out[65]) {
    for (const char *c = path; *c; c++)
        if (*c == '\'') {
            fprintf(stderr, "FAIL: %s: a path with a quote\n", path);
            exit(1);
        }
    char *cmd = xasprintf("(sha256sum '%s' || shasum -a 256 '%s') 2>/dev/null", path, path);
    FILE *p = popen(cmd, "r");
    int ok = p && fscanf(p, "%64s", out) == 1 && strlen(out) == 64;
    if (p) pclose(p);
    free(cmd);
    if (!ok) {
        fprintf(stderr, "FAIL: cannot compute the sha256 of %s (sha256sum or shasum needed)\n", path);
        exit(1);
    }
}

int main(void) {
    size_t ml;
    char *mt = read_file(MISTRAL_DIR "meta.json", 1 << 20, &ml);
    cJSON *meta = mt ? cJSON_ParseWithLength(mt, ml) : NULL;
    free(mt);
    if (!meta) {
        fprintf(stderr, "FAIL: cannot read " MISTRAL_DIR "meta.json\n");
        return 1;
    }
    const char *want_sha = meta_item(meta, "sha256")->valuestring;
    long long want_size = (long long)meta_item(meta, "size")->valuedouble;
    const cJSON *differ = meta_item(meta, "fast_slow_differ");
    CHECK(want_sha && strlen(want_sha) == 64, "meta.json sha256");
    CHECK(cJSON_IsArray(differ), "meta.json fast_slow_differ is not a list");

    // The goldens, parsed whether or not the model is there.
    golden_lines corpus = golden_read_jsonl(GOLDEN_DIR "corpus.jsonl");
    golden_lines sp = golden_read_lines(MISTRAL_DIR "sp.ids");
    golden_lines legacy = golden_read_lines(MISTRAL_DIR "legacy.ids");
    golden_lines dec = golden_read_lines(MISTRAL_DIR "decode.tsv");
    CHECK_EQ_INT(corpus.n, meta_item(meta, "corpus_lines")->valueint);
    CHECK_EQ_INT(sp.n, corpus.n);
    CHECK_EQ_INT(legacy.n, corpus.n);
    CHECK_EQ_INT(dec.n, meta_item(meta, "decode_rows")->valueint);
    size_t n = corpus.n < sp.n ? corpus.n : sp.n;
    if (legacy.n < n) n = legacy.n;
    mistral_line *L = xcalloc(n + 1, sizeof *L);
    size_t same = 0, na = 0;
    for (size_t i = 0; i < n; i++) {
        golden_parse_ids(sp.line[i], &L[i].sp);
        if (strcmp(legacy.line[i], "-") == 0) {
            L[i].legacy_na = 1;
            na++;
            CHECK(!utf8_valid((const uint8_t *)corpus.line[i], corpus.len[i]), "legacy.ids line %zu: \"-\" on UTF-8",
                  i + 1);
        } else if (strcmp(legacy.line[i], "=") == 0) {
            tok_ids_push(&L[i].legacy, 1);
            for (size_t k = 0; k < L[i].sp.n; k++) tok_ids_push(&L[i].legacy, L[i].sp.v[k]);
            same++;
        } else {
            golden_parse_ids(legacy.line[i], &L[i].legacy);
            CHECK(L[i].legacy.n > 0 && L[i].legacy.v[0] == 1, "legacy.ids line %zu does not start with BOS", i + 1);
        }
    }
    CHECK_EQ_INT(same, meta_item(meta, "legacy_same_as_bos_plus_sp")->valueint);
    CHECK_EQ_INT(na, meta_item(meta, "legacy_not_utf8")->valueint);
    decode_row *D = xcalloc(dec.n + 1, sizeof *D);
    for (size_t i = 0; i < dec.n; i++) {
        char *tab = strchr(dec.line[i], '\t');
        CHECK(tab != NULL, "decode.tsv line %zu has no tab", i + 1);
        if (!tab) continue;
        *tab = 0;
        golden_parse_ids(dec.line[i], &D[i].ids);
        if (json_string_decode(tab + 1, strlen(tab + 1), &D[i].text, &D[i].len)) {
            fprintf(stderr, "FAIL: decode.tsv:%zu: %s\n", i + 1, llava_errmsg());
            exit(1);
        }
    }

    const char *path = getenv("LLAVA_TEST_MISTRAL_TOKENIZER");
    if (!path || !*path) {
        printf(
            "Mistral-7B's tokenizer.model: not checked ($LLAVA_TEST_MISTRAL_TOKENIZER unset; %s says how to get it); "
            "goldens parsed: %zu lines (%zu legacy lines = BOS + sentencepiece, %zu not UTF-8), %zu decode rows\n",
            MISTRAL_DIR "meta.json", n, same, na, dec.n);
    } else {
        // The file first: another file's ids would be a confusing failure.
        size_t flen = 0;
        char *data = read_file(path, (size_t)64 << 20, &flen);
        if (!data) {
            fprintf(stderr, "FAIL: $LLAVA_TEST_MISTRAL_TOKENIZER=%s: %s\n", path, llava_errmsg());
            return 1;
        }
        free(data);
        char sha[65];
        file_sha256(path, sha);
        if ((long long)flen != want_size || strcmp(sha, want_sha) != 0) {
            fprintf(stderr,
                    "FAIL: $LLAVA_TEST_MISTRAL_TOKENIZER=%s is not the file the goldens were made with: %zu bytes, "
                    "sha256 %s; want %lld bytes, sha256 %s (%s)\n",
                    path, flen, sha, want_size, want_sha, meta_item(meta, "how_to_get")->valuestring);
            return 1;
        }
        tokenizer *t = tok_load(path);
        CHECK(t != NULL, "%s: %s", path, llava_errmsg());
        if (!t) return check_done();
        CHECK_EQ_INT(tok_n_pieces(t), 32000);
        CHECK_EQ_INT(tok_unk_id(t), 0);
        CHECK_EQ_INT(tok_bos_id(t), 1);
        CHECK_EQ_INT(tok_eos_id(t), 2);

        size_t sp_eq = 0, lg_eq = 0, lg_n = 0, bad_sp = 0, bad_lg = 0;
        for (size_t i = 0; i < n; i++) {
            tok_ids got = {0};
            int ok = tok_sp_encode(t, corpus.line[i], corpus.len[i], &got) == 0 && ids_equal(&got, &L[i].sp);
            CHECK(ok, "mistral sentencepiece ids differ on corpus line %zu", i + 1);
            if (!ok && bad_sp++ < 10) ids_report("sp", i + 1, &got, &L[i].sp);
            sp_eq += ok;
            tok_ids_free(&got);
            if (L[i].legacy_na) continue;
            ok = tok_encode(t, TOK_LEGACY, corpus.line[i], corpus.len[i], &got) == 0 && ids_equal(&got, &L[i].legacy);
            CHECK(ok, "mistral legacy ids differ on corpus line %zu", i + 1);
            if (!ok && bad_lg++ < 10) ids_report("legacy", i + 1, &got, &L[i].legacy);
            lg_eq += ok;
            lg_n++;
            tok_ids_free(&got);
        }
        size_t dec_eq = 0;
        for (size_t i = 0; i < dec.n; i++) {
            char *got = NULL;
            size_t got_len = 0;
            int ok = tok_decode(t, D[i].ids.v, D[i].ids.n, &got, &got_len) == 0 && got_len == D[i].len &&
                     memcmp(got, D[i].text, got_len) == 0;
            CHECK(ok, "mistral decode differs on decode.tsv line %zu: \"%s\" vs \"%s\"", i + 1, got ? got : "",
                  D[i].text);
            dec_eq += ok;
            free(got);
        }
        // Decoding inverts encoding for valid text without "▁".
        size_t rt_n = 0, rt_eq = 0;
        for (size_t i = 0; i < n; i++) {
            if (!utf8_valid((const uint8_t *)corpus.line[i], corpus.len[i]) ||
                memmem(corpus.line[i], corpus.len[i], "\xe2\x96\x81", 3))
                continue;
            tok_ids v = {0};
            char *s = NULL;
            size_t sl = 0;
            int ok = tok_sp_encode(t, corpus.line[i], corpus.len[i], &v) == 0 &&
                     tok_decode(t, v.v, v.n, &s, &sl) == 0 && sl == corpus.len[i] && memcmp(s, corpus.line[i], sl) == 0;
            CHECK(ok, "mistral decode(encode(line)) is not corpus line %zu", i + 1);
            rt_eq += ok;
            rt_n++;
            free(s);
            tok_ids_free(&v);
        }
        CHECK(rt_n > 4500, "round trips tried: %zu", rt_n);
        printf(
            "Mistral-7B's tokenizer.model (sha256 %.8s...%s): sentencepiece ids %zu of %zu lines identical; "
            "legacy (LlamaTokenizerFast, legacy=True) %zu of %zu identical (%zu lines not UTF-8; fast and slow "
            "differ on %d); decode %zu of %zu rows identical; decode(encode(line)) == line on %zu of %zu\n",
            sha, sha + 56, sp_eq, n, lg_eq, lg_n, na, cJSON_GetArraySize(differ), dec_eq, dec.n, rt_eq, rt_n);
        tok_free(t);
    }

    for (size_t i = 0; i < n; i++) {
        tok_ids_free(&L[i].sp);
        tok_ids_free(&L[i].legacy);
    }
    free(L);
    for (size_t i = 0; i < dec.n; i++) {
        tok_ids_free(&D[i].ids);
        free(D[i].text);
    }
    free(D);
    golden_free(&dec);
    golden_free(&legacy);
    golden_free(&sp);
    golden_free(&corpus);
    cJSON_Delete(meta);
    return check_done();
}
