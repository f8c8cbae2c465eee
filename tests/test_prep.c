// llava prep and llava show on tests/data/prep/ (a small LLaVA-format dataset: stage-1 captions, stage-2
// single and multi-turn, text-only, missing/corrupt images, a directory for an image, absolute/escaping/empty
// paths, malformed records, a tokenization mismatch and two truncations), with the small tokenizer:
// the report counts, modality lengths, tokens and labels equal to prep_sample's, stored pixels equal to
// image_preprocess's, byte-identical re-runs whatever the thread count, --strict, and the streaming JSON reader;
// NUL characters in strings (test_nul) and <image> tokens that do not pair with the image (test_image_tokens),
// each with the exact reason in the report. The command lines (llava prep, llava show) are tested by
// test_prep_cli.c.
#include <unistd.h>

#include "data/dataset.h"
#include "data/image.h"
#include "data/json_stream.h"
#include "data/prep.h"
#include "data/prep_record.h"
#include "tokenizer_golden.h"

#define PREP_DIR "tests/data/prep/"
#define TOK GOLDEN_DIR "tiny.model"

static char *dir;

static char *tmp_path(const char *name) { return xasprintf("%s/%s", dir, name); }

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_file(a, (size_t)1 << 30, &na), *y = read_file(b, (size_t)1 << 30, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

// ---------------------------------------------------------------------------------------------

static void test_word_count(void) {
    static const struct {
        const char *s;
        int64_t n;
    } cases[] = {
        {"", 0},
        {"   \n\t ", 0},
        {"a", 1},
        {" a  b\tc\nd ", 4},
        {"<image>\nWhat is shown?", 4},
        {"What\xc2\xa0is\xe3\x80\x80written here?\xe2\x80\x8bnow", 4},  // U+00A0, U+3000 split; U+200B does not
        {"a\x1c"
         "b\x1f"
         "c\xc2\x85"
         "d",
         4},                              // \x1c-\x1f and U+0085 are str.isspace()
        {"x\xff y", 2},                   // a stray byte is part of a word
        {"\xe2\x80\xa8\xe2\x80\xa9", 0},  // U+2028, U+2029
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(prep_word_count(cases[i].s, strlen(cases[i].s)) == cases[i].n, "word count case %zu: %lld", i,
              (long long)prep_word_count(cases[i].s, strlen(cases[i].s)));
}

static void test_paths(void) {
    const char *why;
    CHECK(prep_check_image_path("coco/train2017/000000033471.jpg", &why) == 0, "plain relative path");
    CHECK(prep_check_image_path("a..b/..c/d..", &why) == 0, "dots inside names are fine");
    CHECK(prep_check_image_path("./x.jpg", &why) == 0, "./ is fine");
    CHECK(prep_check_image_path("/etc/passwd", &why) == -1 && strstr(why, "absolute"), "absolute");
    CHECK(prep_check_image_path("../x.jpg", &why) == -1 && strstr(why, ".."), "leading ..");
    CHECK(prep_check_image_path("a/../../x.jpg", &why) == -1, "inner ..");
    CHECK(prep_check_image_path("a//..", &why) == -1, "trailing ..");
    CHECK(prep_check_image_path("", &why) == -1 && strstr(why, "empty"), "empty");
}

static void test_md5(void) {
    static const struct {
        const char *in, *hex;
    } v[] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        prep_md5 m;
        char hex[33];
        prep_md5_init(&m);
        // in pieces of 7 bytes, to cross the 64-byte blocks unevenly
        for (size_t k = 0; k < strlen(v[i].in); k += 7) {
            size_t l = strlen(v[i].in) - k < 7 ? strlen(v[i].in) - k : 7;
            prep_md5_update(&m, v[i].in + k, l);
        }
        prep_md5_hex(&m, hex);
        CHECK_EQ_STR(hex, v[i].hex);
    }
}

// Collects every element of a JSON text; returns the json_stream_next result that ended it (0 or -1).
static size_t read_size;  // 0: the default

static int stream_all(const char *text, size_t len, size_t max_elem, char **elems, size_t *n, size_t cap) {
    json_stream *s = json_stream_open_mem(text, len);
    if (max_elem) json_stream_set_max_element(s, max_elem);
    if (read_size) json_stream_set_read_size(s, read_size);
    *n = 0;
    int r;
    const char *e;
    size_t l;
    while ((r = json_stream_next(s, &e, &l)) == 1) {
        if (*n < cap) {
            elems[*n] = xmalloc(l + 1);
            memcpy(elems[*n], e, l + 1);
        }
        (*n)++;
    }
    CHECK(json_stream_next(s, &e, &l) == r, "the end result repeats");
    json_stream_close(s);
    return r;
}

static void free_elems(char **e, size_t n, size_t cap) {
    for (size_t i = 0; i < n && i < cap; i++) free(e[i]);
}

static void md5_update_cb(void *ctx, const void *bytes, size_t n) { prep_md5_update(ctx, bytes, n); }

// The same results whatever the read size: elements, strings and escapes straddle refills.
static void test_json_stream_texts(void) {
    char *e[8];
    size_t n;
    static const char ok[] =
        "\xef\xbb\xbf \n[ {\"a\": \"x]},[\\\"{\", \"b\": [1, {\"c\": []}]} ,\n 42,\"s\\\\\" , [ ] ,{}\n]\n\t";
    CHECK(stream_all(ok, strlen(ok), 0, e, &n, 8) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(n, 5);
    if (n == 5) {
        CHECK_EQ_STR(e[0], "{\"a\": \"x]},[\\\"{\", \"b\": [1, {\"c\": []}]}");
        CHECK_EQ_STR(e[1], "42");
        CHECK_EQ_STR(e[2], "\"s\\\\\"");
        CHECK_EQ_STR(e[3], "[ ]");
        CHECK_EQ_STR(e[4], "{}");
    }
    free_elems(e, n, 8);
    CHECK(stream_all("[]", 2, 0, e, &n, 8) == 0 && n == 0, "empty array");
    CHECK(stream_all(" [ \n ] ", 7, 0, e, &n, 8) == 0 && n == 0, "empty array with spaces");
    static const struct {
        const char *text, *err;
        size_t elems;  // elements returned before the error
    } bad[] = {
        {"", "empty", 0},
        {"{\"a\": 1}", "expected a JSON array", 0},
        {"[1, 2,]", "trailing comma", 2},
        {"[1,, 2]", "empty element", 1},
        {"[,1]", "empty element", 0},
        {"[{\"a\": [1}]", "closes a '['", 0},
        {"[{\"a\": 1}}]", "closes nothing", 0},
        {"[\"abc", "ends inside", 0},
        {"[{\"a\": 1}", "ends inside", 0},
        {"[1] x", "after the closing", 1},
        {"[1] ]", "after the closing", 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = stream_all(bad[i].text, strlen(bad[i].text), 0, e, &n, 8);
        CHECK(r == -1, "bad case %zu accepted", i);
        if (r == -1) CHECK_ERR_HAS(bad[i].err);
        CHECK(n == bad[i].elems, "bad case %zu: %zu elements before the error", i, n);
        free_elems(e, n, 8);
    }
}

static void test_json_stream(void) {
    static const size_t sizes[] = {0, 1, 2, 3, 7, 64};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        read_size = sizes[i];
        test_json_stream_texts();
    }
    read_size = 0;
    char *e[8];
    size_t n;
    // Nesting beyond the limit is refused with a clear error, not a crash.
    size_t deep = JSON_STREAM_MAX_DEPTH + 10;
    char *d = xmalloc(2 * deep + 3);
    d[0] = '[';
    for (size_t i = 0; i < deep; i++) d[1 + i] = '[';
    for (size_t i = 0; i < deep; i++) d[1 + deep + i] = ']';
    d[1 + 2 * deep] = ']';
    d[2 + 2 * deep] = 0;
    CHECK(stream_all(d, strlen(d), 0, e, &n, 8) == -1, "deep nesting accepted");
    CHECK_ERR_HAS("nesting deeper");
    free(d);
    // Elements larger than the read piece (1 MiB) are reassembled across refills; the size limit names the element.
    size_t big = (size_t)3 << 20;
    char *t = xmalloc(big + 64);
    size_t at = (size_t)sprintf(t, "[1, \"");
    memset(t + at, 'x', big);
    at += big;
    at += (size_t)sprintf(t + at, "\", {\"k\": 2}]");
    CHECK(stream_all(t, at, 0, e, &n, 8) == 0 && n == 3, "big element: %s", llava_errmsg());
    if (n == 3) {
        CHECK(strlen(e[1]) == big + 2, "big element length %zu", strlen(e[1]));
        CHECK_EQ_STR(e[2], "{\"k\": 2}");
    }
    free_elems(e, n, 8);
    CHECK(stream_all(t, at, (size_t)1 << 20, e, &n, 8) == -1 && n == 1, "size limit");
    CHECK_ERR_HAS("element 1 ");
    CHECK_ERR_HAS("larger than");
    free_elems(e, n, 8);
    free(t);
    // From a file, with the read callback seeing every byte once.
    char *path = tmp_path("s.json");
    static const char ftext[] = "[{\"id\": \"a\"}, {\"id\": \"b\"}]";
    write_file_atomic(path, ftext, strlen(ftext));
    json_stream *s = json_stream_open(path);
    CHECK(s != NULL, "%s", llava_errmsg());
    if (s) {
        prep_md5 m, m2;
        prep_md5_init(&m);
        prep_md5_init(&m2);
        prep_md5_update(&m2, ftext, strlen(ftext));
        json_stream_on_read(s, md5_update_cb, &m);
        const char *el;
        size_t l;
        int k = 0;
        while (json_stream_next(s, &el, &l) == 1) k++;
        CHECK_EQ_INT(k, 2);
        CHECK_EQ_INT(json_stream_count(s), 2);
        CHECK_EQ_INT(json_stream_offset(s), strlen(ftext));
        CHECK_EQ_INT(json_stream_size(s), strlen(ftext));
        char h1[33], h2[33];
        prep_md5_hex(&m, h1);
        prep_md5_hex(&m2, h2);
        CHECK_EQ_STR(h1, h2);
        json_stream_close(s);
    }
    CHECK(json_stream_open(PREP_DIR "no-such.json") == NULL, "missing file");
    free(path);
}

// ---------------------------------------------------------------------------------------------

static prep_options base_options(const char *out) {
    prep_options o;
    prep_options_default(&o);
    o.data_path = PREP_DIR "data.json";
    o.image_folder = PREP_DIR "images";
    o.tokenizer_path = TOK;
    o.template_name = "vicuna_v1";
    o.mode = TOK_HF431;
    o.model_max_length = 96;
    o.out_path = out;
    o.threads = 2;
    return o;
}

// The expected tokens of record `index` of data.json: prep_sample on the same conversation.
static int expected(const cJSON *arr, int index, const prep_options *o, prep_result *r) {
    const cJSON *s = cJSON_GetArrayItem(arr, index);
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(s, "conversations");
    conv_turn turns[8];
    int n = 0;
    for (const cJSON *e = conv->child; e && n < 8; e = e->next, n++) {
        const char *v = cJSON_GetObjectItemCaseSensitive(e, "value")->valuestring;
        turns[n] = (conv_turn){cJSON_GetObjectItemCaseSensitive(e, "from")->valuestring, v, strlen(v)};
    }
    tokenizer *t = tok_load(o->tokenizer_path);
    prep_config c = {.tok = t,
                     .mode = o->mode,
                     .tmpl = conv_template_builtin(o->template_name),
                     .model_max_length = o->model_max_length};
    int rc = prep_sample(&c, "x", turns, (size_t)n, cJSON_GetObjectItemCaseSensitive(s, "image") != NULL, r);
    tok_free(t);
    return rc;
}

static void check_report(const char *path, const uint64_t counts[PREP_N_KINDS], const char *const *ids[PREP_N_KINDS]) {
    char *text = read_file(path, 1 << 20, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    CHECK(j != NULL, "report %s is not JSON", path);
    if (!j) {
        free(text);
        return;
    }
    const cJSON *samples = cJSON_GetObjectItemCaseSensitive(j, "samples");
    for (int k = 0; k < PREP_N_KINDS; k++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, prep_kind_name(k));
        CHECK(cJSON_IsNumber(c) && c->valuedouble == (double)counts[k], "report count %s", prep_kind_name(k));
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(samples, prep_kind_name(k));
        CHECK(cJSON_IsArray(list) && cJSON_GetArraySize(list) == (int)counts[k], "report list %s", prep_kind_name(k));
        int i = 0;
        for (const cJSON *e = list ? list->child : NULL; e && ids[k] && ids[k][i]; e = e->next, i++) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
            CHECK(cJSON_IsString(id) && strcmp(id->valuestring, ids[k][i]) == 0, "report %s[%d] id %s, expected %s",
                  prep_kind_name(k), i, cJSON_IsString(id) ? id->valuestring : "?", ids[k][i]);
            CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "reason")), "a reason");
        }
    }
    cJSON_Delete(j);
    free(text);
}

// The id and reason of entry i of a kind's list in a report (malloc'd "id\treason"), or NULL.
static char *report_entry(const char *path, const char *kind, int i) {
    char *text = read_file(path, 1 << 20, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "samples"), kind);
    const cJSON *e = cJSON_GetArrayItem(list, i);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id"), *why = cJSON_GetObjectItemCaseSensitive(e, "reason");
    char *out =
        cJSON_IsString(id) && cJSON_IsString(why) ? xasprintf("%s\t%s", id->valuestring, why->valuestring) : NULL;
    cJSON_Delete(j);
    return out;
}

// A count in a report (by its key), or -1.
static long long report_count(const char *path, const char *key) {
    char *text = read_file(path, 1 << 20, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, key);
    long long v = cJSON_IsNumber(c) ? (long long)c->valuedouble : -1;
    cJSON_Delete(j);
    return v;
}

#define CHECK_ENTRY(report, kind, i, want)                                                                             \
    do {                                                                                                               \
        char *got_ = report_entry((report), (kind), (i));                                                              \
        CHECK(got_ &&strcmp(got_, (want)) == 0, "report %s[%d]: \"%s\", expected \"%s\"", (kind), (i),                 \
              got_ ? got_ : "(none)", (want));                                                                         \
        free(got_);                                                                                                    \
    } while (0)

// The stage-2 run: vicuna_v1, pad, pixels at 336.
static void test_stage2(const cJSON *arr) {
    char *out = tmp_path("v1.h5");
    prep_options o = base_options(out);
    o.aspect = IMAGE_ASPECT_PAD;
    o.store_pixels = 1;
    o.threads = 3;
    prep_counts c;
    int rc = prep_run(&o, &c);
    CHECK(rc == 0, "prep: %s", llava_errmsg());
    if (rc) {
        free(out);
        return;
    }
    CHECK_EQ_INT(c.records, 19);
    CHECK_EQ_INT(c.written, 8);
    CHECK_EQ_INT(c.with_image, 5);
    CHECK_EQ_INT(c.text_only, 3);
    CHECK_EQ_INT(c.pixels, 5);
    static const uint64_t want[PREP_N_KINDS] = {
        [PREP_KIND_MISSING_IMAGE] = 1, [PREP_KIND_UNREADABLE_IMAGE] = 2, [PREP_KIND_PATH_REFUSED] = 3,
        [PREP_KIND_MALFORMED] = 5,     [PREP_KIND_MISMATCH] = 1,         [PREP_KIND_TRUNCATED] = 2};
    for (int k = 0; k < PREP_N_KINDS; k++)
        CHECK(c.kind[k] == want[k], "%s: %llu, expected %llu", prep_kind_name(k), (unsigned long long)c.kind[k],
              (unsigned long long)want[k]);
    static const char *const missing[] = {"missing-1", NULL}, *const unreadable[] = {"broken-1", "dir-1", NULL},
                             *const refused[] = {"abs-1", "escape-1", "empty-path", NULL},
                             *const malformed[] = {"bad-conv", "", "bad-role", "no-words", "image-null", NULL},
                             *const mismatch[] = {"665k-multi", NULL},
                             *const truncated[] = {"long-image", "long-text", NULL};
    const char *const *ids[PREP_N_KINDS] = {missing, unreadable, refused, malformed, mismatch, truncated};
    char *report = prep_report_path(out);
    CHECK(strstr(report, "v1.report.json") != NULL, "report path %s", report);
    check_report(report, want, ids);
    free(report);

    llava_dataset d;
    rc = dataset_open(&d, out);
    CHECK(rc == 0, "dataset_open: %s", llava_errmsg());
    if (rc) {
        free(out);
        return;
    }
    CHECK_EQ_INT(d.n, 8);
    // rows: the records written, in input order
    static const int src[8] = {0, 1, 2, 3, 14, 15, 16, 17};
    static const char *const sid[8] = {"558k-000", "665k-vqa",   "665k-multi", "sharegpt-1",
                                       "12345",    "long-image", "long-text",  ""};
    static const char *const img[8] = {"coco/000000000001.png",
                                       "coco/000000000002.jpg",
                                       "ocr_vqa/images/0001.jpg",
                                       NULL,
                                       "textvqa/strip.jpg",
                                       "coco/000000000001.png",
                                       NULL,
                                       NULL};
    // sum(len(turn["value"].split())), negative without an image (computed by Python on data.json)
    static const int modlen[8] = {16, 14, 15, -9, 8, 78, -112, -4};
    static const int flags[8] = {0, 0, PREP_MISMATCH, 0, 0, PREP_TRUNCATED, PREP_TRUNCATED, 0};
    for (int i = 0; i < 8 && i < d.n; i++) {
        CHECK_EQ_INT(d.source_index[i], src[i]);
        CHECK_EQ_STR(d.sample_ids[i], sid[i]);
        CHECK(img[i] ? d.image_paths[i] && strcmp(d.image_paths[i], img[i]) == 0 : d.image_paths[i] == NULL,
              "row %d image %s", i, d.image_paths[i] ? d.image_paths[i] : "(null)");
        CHECK_EQ_INT(d.modality_len[i], modlen[i]);
        CHECK_EQ_INT(d.flags[i], flags[i]);
        prep_result r;
        CHECK(expected(arr, src[i], &o, &r) == 0, "prep_sample %s", llava_errmsg());
        int64_t a = d.offsets[i], n = d.offsets[i + 1] - a;
        CHECK(n == (int64_t)r.ids.n, "row %d: %lld tokens, prep_sample %zu", i, (long long)n, r.ids.n);
        CHECK(n == (int64_t)r.ids.n && memcmp(d.input_ids + a, r.ids.v, sizeof(int32_t) * r.ids.n) == 0,
              "row %d input_ids", i);
        CHECK(n == (int64_t)r.labels.n && memcmp(d.labels + a, r.labels.v, sizeof(int32_t) * r.labels.n) == 0,
              "row %d labels", i);
        CHECK_EQ_INT(r.flags, flags[i]);
        prep_result_free(&r);
        if (flags[i] & PREP_TRUNCATED) CHECK_EQ_INT(n, 96);
    }
    CHECK(d.template_name && strcmp(d.template_name, "vicuna_v1") == 0, "template attribute");
    CHECK(d.tokenizer_mode && strcmp(d.tokenizer_mode, "hf431") == 0, "mode attribute");
    CHECK(d.aspect && strcmp(d.aspect, "pad") == 0, "aspect attribute");
    CHECK(d.tokenizer_path && strcmp(d.tokenizer_path, TOK) == 0, "tokenizer attribute");
    CHECK(d.tokenizer_md5 && strlen(d.tokenizer_md5) == 32, "tokenizer md5");
    CHECK(d.image_folder && strcmp(d.image_folder, PREP_DIR "images") == 0, "image folder attribute");
    CHECK_EQ_INT(d.model_max_length, 96);
    CHECK_EQ_INT(d.image_size, 336);
    CHECK_EQ_INT(dataset_find_id(&d, "12345"), 4);
    CHECK_EQ_INT(dataset_find_id(&d, "nope"), -1);
    // pixels: exactly image_preprocess's output, one row per image sample, -1 for text-only
    CHECK(d.pixel_index != NULL, "pixel_index");
    uint8_t *got = xmalloc(336 * 336 * 3), *want_px = xmalloc(336 * 336 * 3);
    int row = 0;
    for (int i = 0; i < 8 && d.pixel_index; i++) {
        if (!img[i]) {
            CHECK_EQ_INT(d.pixel_index[i], -1);
            CHECK(dataset_read_pixels(&d, i, got) == -1, "text-only row %d has no pixels", i);
            continue;
        }
        CHECK_EQ_INT(d.pixel_index[i], row);
        row++;
        char *p = path_join(PREP_DIR "images", img[i]);
        image_u8 im;
        CHECK(image_load_file(p, &im) == 0 && image_preprocess(&im, 336, IMAGE_ASPECT_PAD, want_px, NULL) == 0, "%s",
              llava_errmsg());
        image_free(&im);
        free(p);
        CHECK(dataset_read_pixels(&d, i, got) == 0, "%s", llava_errmsg());
        CHECK(memcmp(got, want_px, 336 * 336 * 3) == 0, "row %d pixels differ from image_preprocess", i);
    }
    CHECK(dataset_read_pixels(&d, 8, got) == -1, "out of range");
    free(got);
    free(want_px);
    dataset_close(&d);

    // Byte-identical on a re-run, one second later (timestamps would show), on 1 thread with odd blocks and on 2.
    sleep(1);
    char *again = tmp_path("v1-again.h5");
    o.out_path = again;
    o.threads = 1;
    o.block = 3;
    CHECK(prep_run(&o, NULL) == 0, "%s", llava_errmsg());
    CHECK(same_file(out, again), "re-run on 1 thread differs");
    o.threads = 2;
    o.block = 0;
    CHECK(prep_run(&o, NULL) == 0, "%s", llava_errmsg());
    CHECK(same_file(out, again), "re-run on 2 threads differs");
    free(again);
    free(out);
}

// The stage-1 template on the same file: only two-turn image samples pass; square pixels at 32.
static void test_stage1(void) {
    char *out = tmp_path("plain.h5");
    prep_options o = base_options(out);
    o.template_name = "plain";
    o.store_pixels = 1;
    o.image_size = 32;
    prep_counts c;
    CHECK(prep_run(&o, &c) == 0, "plain: %s", llava_errmsg());
    CHECK_EQ_INT(c.written, 4);
    CHECK_EQ_INT(c.pixels, 4);
    CHECK_EQ_INT(c.kind[PREP_KIND_MALFORMED], 9);  // 4 turns, text-only (no <image>) and the malformed records
    CHECK_EQ_INT(c.kind[PREP_KIND_MISSING_IMAGE], 1);
    CHECK_EQ_INT(c.kind[PREP_KIND_UNREADABLE_IMAGE], 2);
    CHECK_EQ_INT(c.kind[PREP_KIND_PATH_REFUSED], 3);
    CHECK_EQ_INT(c.kind[PREP_KIND_MISMATCH], 0);
    CHECK_EQ_INT(c.kind[PREP_KIND_TRUNCATED], 1);
    llava_dataset d;
    if (dataset_open(&d, out) == 0) {
        CHECK_EQ_INT(d.n, 4);
        CHECK_EQ_INT(d.image_size, 32);
        // preprocess_plain: [BOS, -200] masked, then the caption and "\n" supervised
        CHECK_EQ_INT(d.input_ids[1], IMAGE_TOKEN_INDEX);
        CHECK_EQ_INT(d.labels[0], IGNORE_INDEX);
        CHECK_EQ_INT(d.labels[1], IGNORE_INDEX);
        CHECK(d.labels[2] == d.input_ids[2], "the caption is supervised");
        uint8_t got[32 * 32 * 3], want[32 * 32 * 3];
        image_u8 im;
        CHECK(image_load_file(PREP_DIR "images/textvqa/strip.jpg", &im) == 0, "%s", llava_errmsg());
        image_preprocess(&im, 32, IMAGE_ASPECT_SQUARE, want, NULL);
        image_free(&im);
        int64_t r = dataset_find_id(&d, "12345");
        CHECK(r >= 0 && dataset_read_pixels(&d, r, got) == 0 && memcmp(got, want, sizeof got) == 0, "square pixels");
        dataset_close(&d);
    } else {
        CHECK(0, "%s", llava_errmsg());
    }
    free(out);
}

static void test_options_and_failures(void) {
    // Without image checks the missing and broken images are written (their paths are still checked).
    char *out = tmp_path("nocheck.h5");
    prep_options o = base_options(out);
    o.check_images = 0;
    o.image_folder = NULL;
    prep_counts c;
    CHECK(prep_run(&o, &c) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(c.written, 11);
    CHECK_EQ_INT(c.kind[PREP_KIND_PATH_REFUSED], 3);
    CHECK_EQ_INT(c.kind[PREP_KIND_MISSING_IMAGE] + c.kind[PREP_KIND_UNREADABLE_IMAGE], 0);
    free(out);

    // --strict: the first sample LLaVA would not train on fails the run, and no file appears.
    out = tmp_path("strict.h5");
    o = base_options(out);
    o.strict = 1;
    CHECK(prep_run(&o, NULL) == -1, "strict run succeeded");
    CHECK_ERR_HAS("665k-multi");
    CHECK_ERR_HAS("mismatch");
    CHECK(!file_exists(out), "strict left %s", out);
    o.mode = TOK_LEGACY;  // no mismatch in legacy mode: the first bad one is the missing image
    CHECK(prep_run(&o, NULL) == -1, "strict run succeeded");
    CHECK_ERR_HAS("missing-1");
    CHECK(!file_exists(out), "strict left %s", out);
    free(out);

    // A broken array is fatal (its boundaries cannot be trusted): error, no file.
    char *json = tmp_path("broken.json");
    static const char text[] =
        "[{\"id\": \"a\", \"conversations\": [{\"from\": \"human\", \"value\": \"hi\"}, "
        "{\"from\": \"gpt\", \"value\": \"yo\"}]},]";
    write_file_atomic(json, text, strlen(text));
    out = tmp_path("broken.h5");
    o = base_options(out);
    o.data_path = json;
    CHECK(prep_run(&o, NULL) == -1, "a trailing comma was accepted");
    CHECK_ERR_HAS("trailing comma");
    CHECK(!file_exists(out), "a failed run left %s", out);
    o.data_path = PREP_DIR "data.json";
    o.template_name = "no-such-template";
    CHECK(prep_run(&o, NULL) == -1, "unknown template");
    o.template_name = "vicuna_v1";
    o.image_folder = PREP_DIR "nope";
    CHECK(prep_run(&o, NULL) == -1, "missing image folder");
    CHECK_ERR_HAS("not a directory");
    free(json);
    free(out);

    // dataset_open refuses what prep did not write.
    llava_dataset d;
    CHECK(dataset_open(&d, PREP_DIR "data.json") == -1, "a JSON file opened as a dataset");
    CHECK_ERR_HAS("not an HDF5 file");
    CHECK(dataset_open(&d, PREP_DIR "none.h5") == -1, "a missing file opened");
}

// Writes a JSON text to the temporary folder (its length given, so that it may hold a raw NUL byte).
static char *write_json(const char *name, const char *text, size_t len) {
    char *path = tmp_path(name);
    CHECK(write_file_atomic(path, text, len) == 0, "%s", llava_errmsg());
    return path;
}

#define CONV_IMG                                                                                                       \
    "\"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nWhat?\"}, {\"from\": \"gpt\", \"value\": "       \
    "\"A.\"}]"
#define CONV_TXT                                                                                                       \
    "\"conversations\": [{\"from\": \"human\", \"value\": \"Hi?\"}, {\"from\": \"gpt\", \"value\": \"Yo.\"}]"

// A NUL character inside a string (JSON "\u0000", or a raw 0 byte) is not the end of that string: an image path,
// id, "from" or "value" holding one refuses the sample (cJSON would silently keep what comes before it); a key
// holding one is a different key (Python's json), and an escaped backslash before "u0000" is no NUL at all.
static void test_nul(void) {
    static const char text[] =
        "[\n"
        "{\"id\": \"nul-path\", \"image\": \"coco/000000000001.png\\u0000evil\", " CONV_IMG
        "},\n"
        "{\"id\": \"raw-nul\", \"image\": \"coco/000000000001.png\0evil\", " CONV_IMG
        "},\n"
        "{\"id\": \"nul-value\", \"conversations\": [{\"from\": \"human\", \"value\": \"Hi\\u0000there\"}, "
        "{\"from\": \"gpt\", \"value\": \"Yo.\"}]},\n"
        "{\"id\": \"nul-from\", \"conversations\": [{\"from\": \"human\\u0000x\", \"value\": \"Hi\"}, "
        "{\"from\": \"gpt\", \"value\": \"Yo.\"}]},\n"
        "{\"id\": \"nul\\u0000id\", " CONV_TXT
        "},\n"
        "{\"id\": \"nul-key\", \"image\\u0000\": \"coco/000000000001.png\", " CONV_TXT
        "},\n"
        "{\"id\": \"escaped\", \"image\": \"coco/000000000001.png\\\\u0000\", " CONV_IMG
        "},\n"
        "{\"id\": \"dup\", \"image\": \"x\\u0000y\", \"image\": \"coco/000000000001.png\", " CONV_IMG
        "},\n"
        "{\"id\": \"ok\", \"image\": \"coco/000000000001.png\", " CONV_IMG
        "}\n"
        "]\n";
    char *json = write_json("nul.json", text, sizeof text - 1);
    char *out = tmp_path("nul.h5");
    prep_options o = base_options(out);
    o.data_path = json;
    prep_counts c;
    CHECK(prep_run(&o, &c) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(c.records, 9);
    CHECK_EQ_INT(c.written, 3);  // nul-key (text-only: its key is not "image"), dup (the last "image" wins), ok
    CHECK_EQ_INT(c.with_image, 2);
    CHECK_EQ_INT(c.kind[PREP_KIND_PATH_REFUSED], 2);
    CHECK_EQ_INT(c.kind[PREP_KIND_MALFORMED], 3);
    CHECK_EQ_INT(c.kind[PREP_KIND_MISSING_IMAGE], 1);  // "coco/000000000001.png\\u0000": a backslash, no NUL
    char *report = prep_report_path(out);
    CHECK_ENTRY(report, "path_refused", 0,
                "nul-path\ta NUL character (\\u0000) in the image path, after \"coco/000000000001.png\"");
    CHECK_ENTRY(report, "path_refused", 1,
                "raw-nul\ta NUL character (\\u0000) in the image path, after \"coco/000000000001.png\"");
    CHECK_ENTRY(report, "malformed", 0, "nul-value\ta NUL character (\\u0000) in turn 0's \"value\", after \"Hi\"");
    CHECK_ENTRY(report, "malformed", 1, "nul-from\ta NUL character (\\u0000) in turn 0's \"from\", after \"human\"");
    CHECK_ENTRY(report, "malformed", 2, "nul\ta NUL character (\\u0000) in the id, after \"nul\"");
    CHECK_ENTRY(report, "missing_image", 0,
                "escaped\ttests/data/prep/images/coco/000000000001.png\\u0000: No such file or directory");
    llava_dataset d;
    if (dataset_open(&d, out) == 0) {
        CHECK_EQ_INT(d.n, 3);
        CHECK_EQ_STR(d.sample_ids[0], "nul-key");
        CHECK(d.image_paths[0] == NULL, "nul-key is text-only");
        CHECK_EQ_STR(d.sample_ids[1], "dup");
        CHECK_EQ_STR(d.image_paths[1], "coco/000000000001.png");
        CHECK_EQ_STR(d.sample_ids[2], "ok");
        dataset_close(&d);
    } else {
        CHECK(0, "%s", llava_errmsg());
    }
    free(report);
    free(out);
    free(json);
}

#define TURN(from, value) "{\"from\": \"" from "\", \"value\": \"" value "\"}"
#define IMG1 "\"image\": \"coco/000000000001.png\", "

// Samples whose <image> tokens do not fit their one image are classified at prep, with their true reason, instead
// of being written for the loader to drop: an image and no <image> (none in the conversation, or cut off by
// model_max_length), <image> in several turns. A single <image> in an answer is what LLaVA trains on as it is:
// written, and listed.
static void test_image_tokens(void) {
    static const char text[] =
        "[\n"
        "{\"id\": \"no-token\", " IMG1 "\"conversations\": [" TURN("human", "What is it?") ", " TURN("gpt", "A.") "]},\n"
        "{\"id\": \"two-turns\", " IMG1 "\"conversations\": [" TURN("human", "<image>\\nWhat?") ", " TURN("gpt", "A.") ", " TURN(
            "human", "And <image>?") ", " TURN("gpt", "B.") "]},\n"
        "{\"id\": \"human-and-gpt\", " IMG1 "\"conversations\": [" TURN("human", "<image>\\nWhat?") ", " TURN(
            "gpt", "<image> A.") "]},\n"
        "{\"id\": \"gpt-only\", " IMG1 "\"conversations\": [" TURN("human", "What?") ", " TURN(
            "gpt", "Look: <image>") "]},\n"
        "{\"id\": \"dropped\", " IMG1 "\"conversations\": [" TURN("gpt", "<image>\\nHello.") ", " TURN(
            "human", "What?") ", " TURN("gpt", "A.") "]},\n"
        "{\"id\": \"cut\", " IMG1 "\"conversations\": [" TURN(
            "human",
            "Tell me a long story about a cat who learns to fly a kite on a windy day. Tell me a long story about a cat "
            "who learns to fly a kite on a windy day. Tell me a long story about a cat who learns to fly a kite.") ", " TURN("gpt", "No.") ", " TURN("human", "<image>\\nAnd this?") ", " TURN("gpt", "A.") "]},\n"
        "{\"id\": \"ok\", " IMG1 "\"conversations\": [" TURN("human", "<image>\\nWhat?") ", " TURN("gpt", "A.") "]}\n"
        "]\n";
    char *json = write_json("tokens.json", text, sizeof text - 1);
    char *out = tmp_path("tokens.h5");
    prep_options o = base_options(out);
    o.data_path = json;
    prep_counts c;
    CHECK(prep_run(&o, &c) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(c.records, 7);
    CHECK_EQ_INT(c.written, 2);  // gpt-only and ok
    char *report = prep_report_path(out);
    CHECK_EQ_INT(report_count(report, "no_image_token"), 3);
    CHECK_EQ_INT(report_count(report, "extra_image_token"), 2);
    CHECK_EQ_INT(report_count(report, "image_in_answer"), 1);
    CHECK_EQ_INT(report_count(report, "malformed"), 0);
    CHECK_ENTRY(report, "no_image_token", 0,
                "no-token\tan \"image\" but no <image> in the conversation (LLaVA-1.5 would train on the text alone, "
                "the image loaded and unused)");
    CHECK_ENTRY(
        report, "no_image_token", 1,
        "dropped\tthe only <image> is in turn 0, which the vicuna_v1 template drops (a conversation starts with "
        "the user)");
    CHECK_ENTRY(report, "no_image_token", 2,
                "cut\tthe <image> of turn 2 lies beyond model_max_length 96 and is cut off (LLaVA-1.5 would train on "
                "the text alone, the image loaded and unused)");
    CHECK_ENTRY(report, "extra_image_token", 0,
                "two-turns\t<image> in 2 turns (0, 2) for one image: LLaVA-1.5 takes one image per sample (more "
                "<image> tokens than images misalign a batch's images, LLaVA issue #732)");
    CHECK_ENTRY(report, "extra_image_token", 1,
                "human-and-gpt\t<image> in 2 turns (0, 1) for one image: LLaVA-1.5 takes one image per sample (more "
                "<image> tokens than images misalign a batch's images, LLaVA issue #732)");
    CHECK_ENTRY(report, "image_in_answer", 0,
                "gpt-only\tthe <image> is in turn 1, an answer (\"gpt\"): written, as LLaVA-1.5 trains on it (the "
                "image comes after the question)");
    llava_dataset d;
    if (dataset_open(&d, out) == 0) {
        CHECK_EQ_INT(d.n, 2);
        CHECK_EQ_STR(d.sample_ids[0], "gpt-only");
        CHECK_EQ_STR(d.sample_ids[1], "ok");
        dataset_close(&d);
    } else {
        CHECK(0, "%s", llava_errmsg());
    }
    // The plain template (stage 1): an <image> in a text-only record would get a blank image in LLaVA; an <image>
    // in the caption as well makes two.
    static const char plain[] =
        "[\n"
        "{\"id\": \"text-image\", \"conversations\": [" TURN("human", "<image>\\nWhat?") ", " TURN("gpt", "A.") "]},\n"
        "{\"id\": \"caption-image\", " IMG1 "\"conversations\": [" TURN("human", "<image>\\nWhat?") ", " TURN(
            "gpt", "A <image>.") "]},\n"
        "{\"id\": \"ok\", " IMG1 "\"conversations\": [" TURN("human", "<image>\\nWhat?") ", " TURN("gpt", "A.") "]}\n"
        "]\n";
    char *pj = write_json("plain-tokens.json", plain, sizeof plain - 1);
    o.data_path = pj;
    o.template_name = "plain";
    CHECK(prep_run(&o, &c) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(c.written, 1);
    CHECK_EQ_INT(report_count(report, "extra_image_token"), 2);
    CHECK_ENTRY(report, "extra_image_token", 0,
                "text-image\tan <image> in a sample without an \"image\" (LLaVA-1.5 would pair it with a blank image)");
    CHECK_ENTRY(report, "extra_image_token", 1,
                "caption-image\t<image> in 2 turns (0, 1) for one image: LLaVA-1.5 takes one image per sample (more "
                "<image> tokens than images misalign a batch's images, LLaVA issue #732)");
    free(pj);
    free(report);
    free(out);
    free(json);
}

// Multi-image samples (LLaVA-NeXT's "image" lists): written when their <image> tokens match the list, one each in
// order, with the list kept as the sample's paths; LLaVA-NeXT's multimodal rule whatever the template (the vicuna_v1
// here would pull every <image> to the front under LLaVA-1.5's); a count that does not match, an empty list, a
// non-string entry, a refused path and a missing image are left out with their reasons.
static void test_multi_image(void) {
    static const char text[] =
        "[\n"
        "{\"id\": \"two\", \"image\": [\"coco/000000000001.png\", \"coco/000000000001.png\"], \"conversations\": [" TURN(
            "human", "Compare <image> with <image>.") ", " TURN("gpt", "Same.") "]},\n"
        "{\"id\": \"spread\", \"image\": [\"coco/000000000001.png\", \"coco/000000000001.png\"], \"conversations\": [" TURN(
            "human", "<image>\\nWhat?") ", " TURN("gpt", "A.") ", " TURN("human", "And <image>?") ", " TURN("gpt", "B.") "]},\n"
        "{\"id\": \"fewer\", \"image\": [\"coco/000000000001.png\", \"coco/000000000001.png\"], \"conversations\": [" TURN(
            "human", "<image>\\nWhat?") ", " TURN("gpt", "A.") "]},\n"
        "{\"id\": \"more\", \"image\": [\"coco/000000000001.png\", \"coco/000000000001.png\"], \"conversations\": [" TURN(
            "human", "<image> <image> <image>?") ", " TURN("gpt", "A.") "]},\n"
        "{\"id\": \"empty\", \"image\": [], \"conversations\": [" TURN("human", "What?") ", " TURN("gpt", "A.") "]},\n"
        "{\"id\": \"number\", \"image\": [\"coco/000000000001.png\", 7], \"conversations\": [" TURN(
            "human", "<image> <image>?") ", " TURN("gpt", "A.") "]},\n"
        "{\"id\": \"escape\", \"image\": [\"coco/000000000001.png\", \"../x.png\"], \"conversations\": [" TURN(
            "human", "<image> <image>?") ", " TURN("gpt", "A.") "]},\n"
        "{\"id\": \"missing\", \"image\": [\"coco/000000000001.png\", \"coco/none.png\"], \"conversations\": [" TURN(
            "human", "<image> <image>?") ", " TURN("gpt", "A.") "]}\n"
        "]\n";
    char *json = write_json("multi.json", text, sizeof text - 1);
    char *out = tmp_path("multi.h5");
    prep_options o = base_options(out);
    o.data_path = json;
    o.check_images = 1;
    prep_counts c;
    CHECK(prep_run(&o, &c) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(c.records, 8);
    CHECK_EQ_INT(c.written, 2);
    char *report = prep_report_path(out);
    CHECK_EQ_INT(report_count(report, "no_image_token"), 1);
    CHECK_EQ_INT(report_count(report, "extra_image_token"), 1);
    CHECK_EQ_INT(report_count(report, "malformed"), 2);
    CHECK_EQ_INT(report_count(report, "path_refused"), 1);
    CHECK_EQ_INT(report_count(report, "missing_image"), 1);
    CHECK_ENTRY(report, "no_image_token", 0,
                "fewer\t1 <image> tokens for the 2 images of its \"image\" list (one each, in order)");
    CHECK_ENTRY(report, "extra_image_token", 0,
                "more\t3 <image> tokens for the 2 images of its \"image\" list (one each, in order)");
    CHECK_ENTRY(report, "malformed", 0, "empty\t\"image\" is an empty list");
    CHECK_ENTRY(report, "malformed", 1, "number\tan \"image\" list entry is not a string");
    CHECK_ENTRY(
        report, "path_refused", 0,
        "escape\ta \"..\" component in the image path (it would leave the image folder) (in the \"image\" list)");
    llava_dataset d;
    if (dataset_open(&d, out) == 0) {
        CHECK_EQ_INT(d.n, 2);
        CHECK_EQ_STR(d.image_paths[0], "coco/000000000001.png\ncoco/000000000001.png");
        CHECK_EQ_INT(prep_image_count(d.image_paths[1]), 2);
        // "Compare <image> with <image>." keeps both where they are (LLaVA-NeXT: a turn with two is left alone).
        int n_img = 0, first = -1, second = -1;
        for (int64_t t = d.offsets[0]; t < d.offsets[1]; t++)
            if (d.input_ids[t] == IMAGE_TOKEN_INDEX) {
                if (n_img++) second = (int)(t - d.offsets[0]);
                else first = (int)(t - d.offsets[0]);
            }
        CHECK(n_img == 2 && second > first + 1, "two <image> with text between them (%d at %d and %d)", n_img, first,
              second);
        dataset_close(&d);
    } else {
        CHECK(0, "%s", llava_errmsg());
    }
    free(report);
    free(out);
    free(json);
}

// prep_video_frame (which prep, `llava generate --video-frames` and the question files' "video" share) against numpy
// 2.1.3's linspace(0, F - 1, N, dtype=int), printed by it for these (F, N); N >= F keeps every frame.
static void test_video_frame_index(void) {
    static const struct {
        int F, N, want[16];
    } CASES[] = {{4, 2, {0, 3}},
                 {10, 4, {0, 3, 6, 9}},
                 {5, 3, {0, 2, 4}},
                 {32, 8, {0, 4, 8, 13, 17, 22, 26, 31}},
                 {100, 7, {0, 16, 33, 49, 66, 82, 99}},
                 {3, 1, {0}},
                 {64, 16, {0, 4, 8, 12, 16, 21, 25, 29, 33, 37, 42, 46, 50, 54, 58, 63}},
                 {17, 5, {0, 4, 8, 12, 16}},
                 {3, 5, {0, 1, 2}}};
    int n = 0;
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        int take = CASES[c].N < CASES[c].F ? CASES[c].N : CASES[c].F;
        for (int k = 0; k < take; k++, n++)
            CHECK(prep_video_frame(CASES[c].F, CASES[c].N, k) == CASES[c].want[k],
                  "%d frames to %d: index %d is %d, numpy %d", CASES[c].F, CASES[c].N, k,
                  prep_video_frame(CASES[c].F, CASES[c].N, k), CASES[c].want[k]);
    }
    printf("video frame sampling: %d indices equal numpy.linspace's\n", n);
}

// Video samples (LLaVA-NeXT-Video / OneVision): "video" lists the frames' image paths and one <image> stands for all
// of them; --video-frames N keeps N uniformly (numpy 2.1.3's linspace(0, F - 1, N, dtype=int): 7 frames to 4 are 0,
// 2, 4, 6; 10 to 4 are 0, 3, 6, 9; 7 to 3 are 0, 3, 6). A video file (a string), both keys, two <image> tokens are
// left out with their reasons.
static void test_video(void) {
    static const char text[] =
        "[\n"
        "{\"id\": \"seven\", \"video\": [\"f0.png\", \"f1.png\", \"f2.png\", \"f3.png\", \"f4.png\", \"f5.png\", "
        "\"f6.png\"], \"conversations\": [" TURN("human", "What happens? <image>") ", " TURN("gpt", "It moves.") "]},\n"
        "{\"id\": \"ten\", \"video\": [\"g0.png\", \"g1.png\", \"g2.png\", \"g3.png\", \"g4.png\", \"g5.png\", "
        "\"g6.png\", \"g7.png\", \"g8.png\", \"g9.png\"], \"conversations\": [" TURN("human", "<image>\\nWhat?") ", " TURN(
            "gpt", "A.") "]},\n"
        "{\"id\": \"two\", \"video\": [\"h0.png\", \"h1.png\"], \"conversations\": [" TURN(
            "human", "<image> and <image>?") ", " TURN("gpt", "A.") "]},\n"
        "{\"id\": \"file\", \"video\": \"clip.mp4\", \"conversations\": [" TURN("human", "<image>\\nWhat?") ", " TURN(
            "gpt", "A.") "]},\n"
        "{\"id\": \"both\", \"image\": \"a.png\", \"video\": [\"h0.png\"], \"conversations\": [" TURN(
            "human", "<image>\\nWhat?") ", " TURN("gpt", "A.") "]}\n"
        "]\n";
    char *json = write_json("video.json", text, sizeof text - 1);
    char *out = tmp_path("video.h5");
    prep_options o = base_options(out);
    o.data_path = json;
    o.check_images = 0;  // the frames are not there: their paths are what is checked
    o.video_frames = 4;
    prep_counts c;
    CHECK(prep_run(&o, &c) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(c.records, 5);
    CHECK_EQ_INT(c.written, 2);
    char *report = prep_report_path(out);
    CHECK_ENTRY(report, "extra_image_token", 0,
                "two\t2 <image> tokens in a video sample (one stands for its 2 frames)");
    CHECK_ENTRY(report, "malformed", 0,
                "file\t\"video\" is not a list: give its frames as a list of image paths (video files are not decoded; "
                "extract the frames first)");
    CHECK_ENTRY(report, "malformed", 1, "both\tboth \"image\" and \"video\": one or the other");
    llava_dataset d;
    if (dataset_open(&d, out) == 0) {
        CHECK_EQ_INT(d.n, 2);
        CHECK_EQ_INT(d.video_frames, 4);
        CHECK_EQ_STR(d.image_paths[0], "f0.png\nf2.png\nf4.png\nf6.png");  // 7 to 4: linspace 0, 2, 4, 6
        CHECK_EQ_STR(d.image_paths[1], "g0.png\ng3.png\ng6.png\ng9.png");  // 10 to 4: 0, 3, 6, 9
        CHECK(d.flags && (d.flags[0] & PREP_VIDEO) && (d.flags[1] & PREP_VIDEO), "video flags");
        // The modality-length sampler's lengths as LLaVA-NeXT's modality_lengths: the words of the turns (str.split),
        // positive for a sample with "image" or "video" ("What happens? <image>" + "It moves.": 5; "<image>\nWhat?" +
        // "A.": 3).
        CHECK(d.modality_len[0] == 5 && d.modality_len[1] == 3, "video modality lengths %d, %d", d.modality_len[0],
              d.modality_len[1]);
        int n_img = 0;
        for (int64_t t = d.offsets[0]; t < d.offsets[1]; t++) n_img += d.input_ids[t] == IMAGE_TOKEN_INDEX;
        CHECK_EQ_INT(n_img, 1);
        dataset_close(&d);
    } else {
        CHECK(0, "%s", llava_errmsg());
    }
    // 7 frames to 3: 0, 3, 6.
    o.video_frames = 3;
    CHECK(prep_run(&o, &c) == 0, "%s", llava_errmsg());
    if (dataset_open(&d, out) == 0) {
        CHECK_EQ_STR(d.image_paths[0], "f0.png\nf3.png\nf6.png");
        dataset_close(&d);
    }
    free(report);
    free(out);
    free(json);
}

// Many samples (more than one HDF5 chunk of tokens, many blocks): 1 and 3 threads give the same bytes.
static void test_many(void) {
    char *json = tmp_path("many.json");
    strbuf s = {0};
    sb_puts(&s, "[\n");
    static const char *imgs[] = {"coco/000000000001.png", "coco/000000000002.jpg", "ocr_vqa/images/0001.jpg",
                                 "textvqa/strip.jpg", "gqa/images/broken.jpg"};
    for (int i = 0; i < 1500; i++) {
        char b[512];
        if (i % 3 == 0)
            snprintf(b, sizeof b,
                     "{\"id\": \"t%d\", \"conversations\": [{\"from\": \"human\", \"value\": \"Question number %d "
                     "about cats?\"}, "
                     "{\"from\": \"gpt\", \"value\": \"Answer %d: cats sleep a lot.\"}]}",
                     i, i, i);
        else
            snprintf(b, sizeof b,
                     "{\"id\": \"i%d\", \"image\": \"%s\", \"conversations\": "
                     "[{\"from\": \"human\", \"value\": \"<image>\\nWhat is in picture %d?\"}, "
                     "{\"from\": \"gpt\", \"value\": \"Picture %d shows %s things.\"}]}",
                     i, imgs[i % 5], i, i, i % 2 ? "many" : "few");
        sb_puts(&s, b);
        sb_puts(&s, i + 1 < 1500 ? ",\n" : "\n]\n");
    }
    write_file_atomic(json, s.p, s.n);
    free(s.p);
    char *a = tmp_path("many1.h5"), *b = tmp_path("many3.h5");
    prep_options o = base_options(a);
    o.data_path = json;
    o.threads = 1;
    prep_counts c;
    CHECK(prep_run(&o, &c) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(c.records, 1500);
    CHECK_EQ_INT(c.kind[PREP_KIND_UNREADABLE_IMAGE], 200);  // i % 5 == 4 and i % 3 != 0
    CHECK_EQ_INT(c.written, 1300);
    CHECK(c.tokens > 65536, "%llu tokens: fewer than one chunk", (unsigned long long)c.tokens);
    o.out_path = b;
    o.threads = 3;
    o.block = 37;
    CHECK(prep_run(&o, NULL) == 0, "%s", llava_errmsg());
    CHECK(same_file(a, b), "1 and 3 threads differ");
    llava_dataset d;
    if (dataset_open(&d, b) == 0) {
        CHECK_EQ_INT(d.n, 1300);
        CHECK_EQ_INT(d.offsets[d.n], (int64_t)c.tokens);
        CHECK_EQ_STR(d.sample_ids[1299], "i1498");  // i1499 has the broken image
        CHECK_EQ_INT(d.source_index[1299], 1498);
        dataset_close(&d);
    } else {
        CHECK(0, "%s", llava_errmsg());
    }
    free(a);
    free(b);
    free(json);
}

int main(void) {
    dir = check_tmpdir();
    size_t n;
    char *data = read_file(PREP_DIR "data.json", 1 << 20, &n);
    cJSON *arr = data ? cJSON_Parse(data) : NULL;
    free(data);
    if (!arr) {
        fprintf(stderr, "cannot read %sdata.json (run from the repository root)\n", PREP_DIR);
        return 1;
    }
    test_word_count();
    test_paths();
    test_md5();
    test_json_stream();
    test_stage2(arr);
    test_stage1();
    test_options_and_failures();
    test_nul();
    test_image_tokens();
    test_multi_image();
    test_video_frame_index();
    test_video();
    test_many();
    cJSON_Delete(arr);
    check_rm_rf(dir);
    free(dir);
    return check_done();
}
