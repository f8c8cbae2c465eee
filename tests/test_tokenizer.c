// The tokenizer on the small model trained with sentencepiece (tests/data/tokenizer/tiny.model): ids identical to
// sentencepiece and to transformers' slow LlamaTokenizer in the three modes, decoding, the protobuf parser on
// malformed files, JSON strings, and encoding from several threads at once. Needs no file outside the repository.
#include <math.h>
#include <pthread.h>

#include "tokenizer_golden.h"

// ---------------------------------------------------------------------------------------------
// A protobuf writer for crafted models

typedef struct {
    uint8_t *p;
    size_t n, cap;
} pb;

static void pb_bytes(pb *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void pb_varint(pb *b, uint64_t v) {
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        if (v) c |= 0x80;
        pb_bytes(b, &c, 1);
    } while (v);
}

static void pb_key(pb *b, uint32_t field, int wt) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wt); }
static void pb_str(pb *b, uint32_t field, const char *s, size_t n) {
    pb_key(b, field, 2);
    pb_varint(b, n);
    pb_bytes(b, s, n);
}
static void pb_msg(pb *b, uint32_t field, const pb *m) { pb_str(b, field, (const char *)m->p, m->n); }
static void pb_int(pb *b, uint32_t field, uint64_t v) {
    pb_key(b, field, 0);
    pb_varint(b, v);
}
static void pb_float(pb *b, uint32_t field, float f) {
    pb_key(b, field, 5);
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    pb_bytes(b, le, 4);
}

static void add_piece(pb *m, const char *s, float score, int type) {
    pb p = {0};
    pb_str(&p, 1, s, strlen(s));
    pb_float(&p, 2, score);
    if (type != TOK_NORMAL) pb_int(&p, 3, (uint64_t)type);
    pb_msg(m, 1, &p);
    free(p.p);
}

// Options of a crafted model; the defaults give a valid byte-fallback BPE model.
typedef struct {
    int model_type, byte_fallback, no_unk, two_unk, skip_byte, dup, empty_piece, nan_score, charsmap, ws_suffix,
        bad_type;
    int no_dummy, extra_ws;
} craft;

static pb make_model(craft c) {
    pb m = {0};
    if (!c.no_unk) add_piece(&m, "<unk>", 0, TOK_UNKNOWN);
    if (c.two_unk) add_piece(&m, "<unk2>", 0, TOK_UNKNOWN);
    add_piece(&m, "<s>", 0, TOK_CONTROL);
    add_piece(&m, "</s>", 0, TOK_CONTROL);
    for (int b = 0; b < 256; b++) {
        if (b == c.skip_byte - 1) continue;
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        add_piece(&m, s, 0, TOK_BYTE);
    }
    static const char *pieces[] = {"\xe2\x96\x81",
                                   "a",
                                   "b",
                                   "c",
                                   "ab",
                                   "\xe2\x96\x81"
                                   "a",
                                   "abc",
                                   "\xe2\x96\x81"
                                   "ab",
                                   "<",
                                   ">",
                                   "s",
                                   "/",
                                   "u",
                                   "n",
                                   "k"};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) add_piece(&m, pieces[i], -(float)i, TOK_NORMAL);
    if (c.dup) add_piece(&m, "ab", -20, TOK_NORMAL);
    if (c.empty_piece) add_piece(&m, "", -21, TOK_NORMAL);
    if (c.nan_score) add_piece(&m, "zz", NAN, TOK_NORMAL);
    if (c.bad_type) add_piece(&m, "yy", -22, 9);
    pb ts = {0};
    pb_int(&ts, 3, (uint64_t)(c.model_type ? c.model_type : 2));
    if (c.byte_fallback >= 0) pb_int(&ts, 35, 1);
    if (c.ws_suffix) pb_int(&ts, 24, 1);
    pb_msg(&m, 2, &ts);
    pb ns = {0};
    pb_str(&ns, 1, "identity", 8);
    if (c.charsmap) pb_str(&ns, 2, "\x04\x00\x00\x00xxxx", 8);
    pb_int(&ns, 3, c.no_dummy ? 0 : 1);
    pb_int(&ns, 4, c.extra_ws ? 1 : 0);
    pb_msg(&m, 3, &ns);
    free(ts.p);
    free(ns.p);
    return m;
}

static tokenizer *load_craft(craft c) {
    pb m = make_model(c);
    tokenizer *t = tok_load_mem(m.p, m.n);
    free(m.p);
    return t;
}

static void expect_fail(craft c, const char *needle) {
    tokenizer *t = load_craft(c);
    CHECK(t == NULL, "a model that should fail (%s) loaded", needle);
    if (!t) CHECK_ERR_HAS(needle);
    tok_free(t);
}

static void encode_str(const tokenizer *t, tok_mode m, const char *s, tok_ids *out) {
    out->n = 0;
    CHECK(tok_encode(t, m, s, strlen(s), out) == 0, "encode \"%s\": %s", s, llava_errmsg());
}

static void test_crafted(void) {
    craft ok = {0};
    tokenizer *t = load_craft(ok);
    CHECK(t != NULL, "crafted model: %s", llava_errmsg());
    if (t) {
        tok_ids ids = {0};
        // "ab c" is normalized to "▁ab▁c". "ab" (score -4) beats "▁a" (-5), then "▁"+"ab" gives "▁ab" (-7);
        // "▁c" is no piece: "▁ab", "▁", "c".
        CHECK(tok_sp_encode(t, "ab c", 4, &ids) == 0, "%s", llava_errmsg());
        CHECK_EQ_INT(ids.n, 3);
        if (ids.n == 3) {
            CHECK_EQ_INT(ids.v[0], tok_piece_to_id(t,
                                                   "\xe2\x96\x81"
                                                   "ab",
                                                   5));
            CHECK_EQ_INT(ids.v[1], tok_piece_to_id(t, "\xe2\x96\x81", 3));
            CHECK_EQ_INT(ids.v[2], tok_piece_to_id(t, "c", 1));
        }
        // An unknown character becomes its UTF-8 bytes.
        ids.n = 0;
        CHECK(tok_sp_encode(t, "\xc3\xa9", 2, &ids) == 0, "%s", llava_errmsg());
        CHECK_EQ_INT(ids.n, 3);
        if (ids.n == 3) {
            CHECK_EQ_INT(ids.v[1], 3 + 0xc3);
            CHECK_EQ_INT(ids.v[2], 3 + 0xa9);
        }
        // transformers 4.37 encodes "<unk>" in 5 pieces here (no "unk" piece): the drop count follows the model.
        encode_str(t, TOK_HF437, " a", &ids);
        CHECK_EQ_INT(ids.n, 3);  // <s> ▁ ▁a
        tok_ids_free(&ids);
        tok_free(t);
    }
    craft c;
    c = ok, c.model_type = 1, expect_fail(c, "not BPE");
    c = ok, c.byte_fallback = -1, expect_fail(c, "byte_fallback is false");
    c = ok, c.no_unk = 1, expect_fail(c, "no unknown piece");
    c = ok, c.two_unk = 1, expect_fail(c, "unknown piece defined twice");
    c = ok, c.skip_byte = 0x42 + 1, expect_fail(c, "<0x42> is missing");
    c = ok, c.dup = 1, expect_fail(c, "already defined");
    c = ok, c.empty_piece = 1, expect_fail(c, "is empty");
    c = ok, c.nan_score = 1, expect_fail(c, "not finite");
    c = ok, c.charsmap = 1, expect_fail(c, "character map");
    c = ok, c.ws_suffix = 1, expect_fail(c, "treat_whitespace_as_suffix");
    c = ok, c.bad_type = 1, expect_fail(c, "unknown type 9");

    // remove_extra_whitespaces and no dummy prefix, like sentencepiece's normalizer.
    c = ok, c.extra_ws = 1;
    t = load_craft(c);
    CHECK(t != NULL, "%s", llava_errmsg());
    if (t) {
        tok_ids a = {0}, b = {0};
        CHECK(tok_sp_encode(t, "  ab   c  ", 10, &a) == 0 && tok_sp_encode(t, "ab c", 4, &b) == 0, "%s",
              llava_errmsg());
        CHECK(ids_equal(&a, &b), "extra spaces are removed");
        a.n = 0;
        CHECK(tok_sp_encode(t, "   ", 3, &a) == 0 && a.n == 0, "only spaces: %zu ids", a.n);
        tok_ids_free(&a);
        tok_ids_free(&b);
        tok_free(t);
    }

    // Wire-level damage.
    static const struct {
        const char *bytes;
        size_t n;
        const char *needle;
    } bad[] = {
        {"", 0, "no pieces"},
        {"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, "varint"},
        {"\x0a\x80", 2, "truncated varint"},
        {"\x0a\x05\x0a\x01", 4, "runs past the end"},
        {"\x0b\x00", 2, "unsupported wire type 3"},
        {"\x08\x01", 2, "wire type 0, expected 2"},
        {"\x0a\x02\x15\x00", 4, "truncated 32-bit"},
        {"\x0a\x02\x09\x00", 4, "truncated 64-bit"},
        {"\x00\x00", 2, "invalid field number"},
        {"\x12\x02\x18\x02", 4, "no pieces"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tokenizer *tt = tok_load_mem(bad[i].bytes, bad[i].n);
        CHECK(tt == NULL, "damaged model %zu loaded", i);
        if (!tt) CHECK_ERR_HAS(bad[i].needle);
        tok_free(tt);
    }
}

// Every prefix of the model and many byte flips: each load either fails with a message or gives a tokenizer
// that encodes and decodes without trouble (run under ASan/UBSan to make this a memory-safety check).
static void test_damage(const uint8_t *model, size_t n) {
    size_t loaded = 0, failed = 0;
    tok_ids ids = {0};
    static const char *texts[] = {"Hello world", " <s>x</s> y\n\t", "\xff\xfe caf\xc3\xa9 \xe4\xbd\xa0", ""};
    for (size_t len = 0; len < n; len += (len < 4096 ? 1 : 97)) {
        tokenizer *t = tok_load_mem(model, len);
        if (t) loaded++;
        else failed++;
        tok_free(t);
    }
    CHECK(failed > 0, "truncated models always load");
    uint8_t *m = xmalloc(n);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(m, model, n);
        int flips = 1 + trial % 4;
        for (int f = 0; f < flips; f++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % n;
            m[at] ^= (uint8_t)(1u << ((rng >> 20) & 7));
        }
        tokenizer *t = tok_load_mem(m, n);
        if (!t) {
            failed++;
            CHECK(strlen(llava_errmsg()) > 0, "a failed load has a message");
            continue;
        }
        loaded++;
        for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
            for (int mode = 0; mode < 3; mode++) {
                ids.n = 0;
                if (tok_encode(t, (tok_mode)mode, texts[k], strlen(texts[k]), &ids) == 0) {
                    char *s = NULL;
                    size_t sl;
                    int ok = 1;
                    for (size_t j = 0; j < ids.n; j++) ok &= ids.v[j] >= 0 && ids.v[j] < tok_n_pieces(t);
                    CHECK(ok, "ids in range");
                    if (tok_decode(t, ids.v, ids.n, &s, &sl) == 0) free(s);
                }
            }
        }
        tok_free(t);
    }
    free(m);
    tok_ids_free(&ids);
    printf("damaged models: %zu loaded, %zu refused\n", loaded, failed);
}

// ---------------------------------------------------------------------------------------------

static void test_json_strings(void) {
    static const struct {
        const char *json, *bytes;
        size_t n;
    } ok[] = {
        {"\"abc\"", "abc", 3},
        {" \"a\\\"b\\\\c\\/\" ", "a\"b\\c/", 6},
        {"\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t", 5},
        {"\"\\u00e9\\u4f60\"", "\xc3\xa9\xe4\xbd\xa0", 5},
        {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4},
        {"\"\\u0000x\"", "\0x", 2},
        {"\"\\udcff\\udc80\"", "\xff\x80", 2},
        {"\"raw \xff bytes\"", "raw \xff bytes", 11},
        {"\"\"", "", 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *s = NULL;
        size_t n = 0;
        int rc = json_string_decode(ok[i].json, strlen(ok[i].json), &s, &n);
        CHECK(rc == 0 && n == ok[i].n && memcmp(s, ok[i].bytes, n) == 0, "json %zu (%s): %s", i, ok[i].json,
              rc ? llava_errmsg() : "wrong bytes");
        // And back: encoding then decoding gives the same bytes.
        strbuf enc = {0};
        char *dec = NULL;
        size_t dl = 0;
        if (rc == 0) {
            json_string_encode(s, n, &enc);
            CHECK(json_string_decode(enc.p, enc.n, &dec, &dl) == 0 && dl == n && memcmp(dec, s, n) == 0,
                  "round trip %zu: %s", i, enc.p);
        }
        free(s);
        free(enc.p);
        free(dec);
    }
    static const char *bad[] = {"abc",         "\"abc",       "\"a\" x",  "\"\\x\"", "\"\\u12\"",
                                "\"\\ud83d\"", "\"\\ude00\"", "\"a\nb\"", "\"\\"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *s = NULL;
        CHECK(json_string_decode(bad[i], strlen(bad[i]), &s, NULL) != 0, "bad json %zu accepted", i);
        free(s);
    }
}

// ---------------------------------------------------------------------------------------------

typedef struct {
    const tokenizer *t;
    const golden_lines *corpus;
    tok_ids *want;
    int bad;
} thread_job;

static void *encode_all(void *arg) {
    thread_job *j = arg;
    tok_ids got = {0};
    for (size_t i = 0; i < j->corpus->n; i++) {
        got.n = 0;
        if (tok_encode(j->t, TOK_HF437, j->corpus->line[i], j->corpus->len[i], &got) || !ids_equal(&got, &j->want[i]))
            j->bad++;
    }
    tok_ids_free(&got);
    return NULL;
}

static void test_threads(const tokenizer *t) {
    golden_lines corpus = golden_read_jsonl(GOLDEN_DIR "corpus.jsonl");
    tok_ids *want = xcalloc(corpus.n, sizeof *want);
    for (size_t i = 0; i < corpus.n; i++) tok_encode(t, TOK_HF437, corpus.line[i], corpus.len[i], &want[i]);
    pthread_t th[4];
    thread_job job[4];
    for (int k = 0; k < 4; k++) {
        job[k] = (thread_job){t, &corpus, want, 0};
        pthread_create(&th[k], NULL, encode_all, &job[k]);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(th[k], NULL);
        CHECK_EQ_INT(job[k].bad, 0);
    }
    for (size_t i = 0; i < corpus.n; i++) tok_ids_free(&want[i]);
    free(want);
    golden_free(&corpus);
}

int main(void) {
    size_t model_len;
    char *model = read_file(GOLDEN_DIR "tiny.model", 1 << 20, &model_len);
    CHECK(model != NULL, "%s", llava_errmsg());
    if (!model) return check_done();
    tokenizer *t = tok_load_mem(model, model_len);
    CHECK(t != NULL, "tiny.model: %s", llava_errmsg());
    if (!t) return check_done();

    // The vocabulary as sentencepiece lays it out.
    CHECK_EQ_INT(tok_n_pieces(t), 700);
    CHECK_EQ_INT(tok_unk_id(t), 0);
    CHECK_EQ_INT(tok_bos_id(t), 1);
    CHECK_EQ_INT(tok_eos_id(t), 2);
    size_t pl;
    // <unk> <s> </s>, the user-defined <sep>, then the 256 byte pieces.
    CHECK_EQ_INT(tok_piece_to_id(t, "<sep>", 5), 3);
    const char *p = tok_id_to_piece(t, 4 + 0x0a, &pl);
    CHECK(p && pl == 6 && memcmp(p, "<0x0A>", 6) == 0, "byte piece 14");
    CHECK_EQ_INT(tok_piece_type(t, 14), TOK_BYTE);
    CHECK_EQ_INT(tok_piece_type(t, 1), TOK_CONTROL);
    CHECK_EQ_INT(tok_piece_type(t, 700), 0);
    CHECK(tok_id_to_piece(t, -1, NULL) == NULL, "id -1 has no piece");
    CHECK_EQ_INT(tok_piece_to_id(t, "no such piece", 13), 0);
    CHECK_EQ_INT(tok_piece_type(t, tok_piece_to_id(t, "<sep>", 5)), TOK_USER_DEFINED);
    int roundtrip = 1;
    for (int id = 0; id < tok_n_pieces(t); id++) {
        p = tok_id_to_piece(t, id, &pl);
        roundtrip &= tok_piece_to_id(t, p, pl) == id;
    }
    CHECK(roundtrip, "piece_to_id(id_to_piece(id)) == id for every id");
    tok_mode m;
    CHECK(tok_mode_parse("release", &m) == 0 && m == TOK_HF431, "release = hf431");
    CHECK(tok_mode_parse("head", &m) == 0 && m == TOK_HF437, "head = hf437");
    CHECK(tok_mode_parse("legacy", &m) == 0 && m == TOK_LEGACY, "legacy");
    CHECK(tok_mode_parse("hf999", &m) != 0, "unknown mode refused");
    CHECK_EQ_INT(TOK_MODE_DEFAULT, TOK_HF431);

    // The user-defined symbol "<sep>" is never split or merged.
    tok_ids ids = {0};
    CHECK(tok_sp_encode(t, "a<sep>b", 7, &ids) == 0, "%s", llava_errmsg());
    int has_sep = 0;
    for (size_t k = 0; k < ids.n; k++) has_sep |= ids.v[k] == tok_piece_to_id(t, "<sep>", 5);
    CHECK(has_sep, "<sep> stays one piece");
    int32_t bad_id = 700;
    char *out = NULL;
    CHECK(tok_decode(t, &bad_id, 1, &out, NULL) != 0, "decoding id 700 fails");
    CHECK_ERR_HAS("invalid id 700");
    tok_ids_free(&ids);

    size_t n = golden_check_model(t, "tiny");
    printf("tiny: %zu lines and id sequences compared with sentencepiece 0.1.99 and transformers 4.31.0 / 4.37.2\n", n);

    // Decoding inverts encoding for valid text without "▁".
    golden_lines corpus = golden_read_jsonl(GOLDEN_DIR "corpus.jsonl");
    size_t bad = 0, tried = 0;
    for (size_t i = 0; i < corpus.n; i++) {
        if (!utf8_valid((const uint8_t *)corpus.line[i], corpus.len[i]) ||
            memmem(corpus.line[i], corpus.len[i], "\xe2\x96\x81", 3))
            continue;
        tok_ids v = {0};
        char *s = NULL;
        size_t sl = 0;
        tok_sp_encode(t, corpus.line[i], corpus.len[i], &v);
        if (tok_decode(t, v.v, v.n, &s, &sl) || sl != corpus.len[i] || memcmp(s, corpus.line[i], sl) != 0) bad++;
        tried++;
        free(s);
        tok_ids_free(&v);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(tried > 4500, "round trips tried: %zu", tried);
    golden_free(&corpus);

    test_crafted();
    test_damage((const uint8_t *)model, model_len);
    test_json_strings();
    test_threads(t);
    tok_free(t);
    free(model);
    return check_done();
}
