// safetensors: the official library's file read and re-written byte for byte, round trips,
// every class of malformed header, and sharded sets.
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common/dtype.h"
#include "common/util.h"
#include "model/io/safetensors.h"

#define REF "tests/data/safetensors/reference.safetensors"

// Checks the official library's file against the values it recorded beside it.
static void test_reference_read(void) {
    st_file f;
    CHECK(st_open(&f, REF) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(f.n_tensors, 8);
    CHECK(st_meta(&f, "format") && strcmp(st_meta(&f, "format"), "pt") == 0, "metadata format=pt");
    size_t len;
    char *js = read_file("tests/data/safetensors/reference.json", 1 << 20, &len);
    cJSON *exp = cJSON_Parse(js);
    free(js);
    CHECK(exp != NULL, "reference.json parses");
    for (const cJSON *e = exp ? exp->child : NULL; e; e = e->next) {
        const st_tensor *t = st_find(&f, e->string);
        CHECK(t != NULL, "tensor %s present", e->string);
        if (!t) continue;
        const cJSON *shape = cJSON_GetObjectItem(e, "shape");
        CHECK_EQ_INT(t->ndim, cJSON_GetArraySize(shape));
        int k = 0;
        for (const cJSON *d = shape->child; d; d = d->next, k++) CHECK_EQ_INT(t->shape[k], d->valuedouble);
        const cJSON *vals = cJSON_GetObjectItem(e, "values");
        CHECK_EQ_INT(t->numel, cJSON_GetArraySize(vals));
        float *got = xmalloc(sizeof(float) * (t->numel ? t->numel : 1));
        CHECK(st_tensor_to_f32(&f, t, got) == 0, "%s", llava_errmsg());
        k = 0;
        // The library's values converted to fp32 must be ours exactly (I64 1<<40 is exact in fp32).
        for (const cJSON *v = vals->child; v; v = v->next, k++)
            CHECK(got[k] == (float)v->valuedouble, "%s[%d] = %.9g, want %.9g", e->string, k, (double)got[k],
                  v->valuedouble);
        free(got);
    }
    cJSON_Delete(exp);
    const st_tensor *s = st_find(&f, "f.scalar");
    CHECK(s && s->ndim == 0 && s->numel == 1, "scalar tensor has rank 0");
    const st_tensor *z = st_find(&f, "g.empty");
    CHECK(z && z->numel == 0 && z->begin == z->end, "zero-size tensor");
    CHECK(st_find(&f, "nope") == NULL, "missing name");

    // Re-writing the same tensors with our writer reproduces the library's file byte for byte.
    char *dir = check_tmpdir();
    char *out = path_join(dir, "rewrite.safetensors");
    st_writer w;
    st_writer_init(&w);
    for (int i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        CHECK(st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data) == 0, "%s", llava_errmsg());
    }
    st_writer_meta(&w, "format", "pt");
    CHECK(st_writer_save(&w, out) == 0, "%s", llava_errmsg());
    st_writer_free(&w);
    size_t a_len, b_len;
    char *a = read_file(REF, 1 << 20, &a_len);
    char *b = read_file(out, 1 << 20, &b_len);
    CHECK(a && b && a_len == b_len && memcmp(a, b, a_len) == 0, "rewrite differs from the reference (%zu vs %zu bytes)",
          a_len, b_len);
    free(a);
    free(b);
    free(out);
    check_rm_rf(dir);
    free(dir);
    st_close(&f);
}

static void test_round_trip_conversions(void) {
    char *dir = check_tmpdir();
    char *p = path_join(dir, "rt.safetensors");
    float src[7] = {0.1f, -1.0f / 3, 1e-6f, 12345.678f, -0.0f, 2.0f, 1e30f};
    int64_t shape[2] = {1, 7};
    st_writer w;
    st_writer_init(&w);
    CHECK(st_writer_add_f32(&w, "x.f32", DT_F32, 2, shape, src) == 0, "add");
    CHECK(st_writer_add_f32(&w, "x.bf16", DT_BF16, 2, shape, src) == 0, "add");
    CHECK(st_writer_add_f32(&w, "x.f16", DT_F16, 2, shape, src) == 0, "add");
    CHECK(st_writer_add_f32(&w, "x.f16", DT_F16, 2, shape, src) != 0, "duplicate add refused");
    CHECK(st_writer_add_f32(&w, "x.u8", DT_U8, 2, shape, src) != 0, "fp32 -> U8 refused");
    CHECK(st_writer_save(&w, p) == 0, "%s", llava_errmsg());
    st_writer_free(&w);
    st_file f;
    CHECK(st_open(&f, p) == 0, "%s", llava_errmsg());
    float got[7];
    const st_tensor *t = st_find(&f, "x.f32");
    CHECK(t && st_tensor_to_f32(&f, t, got) == 0 && memcmp(got, src, sizeof src) == 0, "F32 exact");
    t = st_find(&f, "x.bf16");
    CHECK(t && t->dtype == DT_BF16 && st_tensor_to_f32(&f, t, got) == 0, "BF16 read");
    for (int i = 0; i < 7; i++) CHECK(got[i] == bf16_to_f32(f32_to_bf16(src[i])), "bf16[%d]", i);
    t = st_find(&f, "x.f16");
    CHECK(t && st_tensor_to_f32(&f, t, got) == 0, "F16 read");
    for (int i = 0; i < 7; i++) CHECK(got[i] == f16_to_f32(f32_to_f16(src[i])) || (got[i] != got[i]), "f16[%d]", i);
    CHECK(isinf(got[6]), "1e30 overflows F16 to inf");
    // Every tensor starts at a multiple of its element size (the writer's ordering guarantees it).
    for (int i = 0; i < f.n_tensors; i++)
        CHECK(((uintptr_t)(f.tensors[i].data - (const uint8_t *)f.map)) % (dtype_bits(f.tensors[i].dtype) / 8) == 0,
              "alignment of %s", f.tensors[i].name);
    st_close(&f);
    free(p);
    check_rm_rf(dir);
    free(dir);
}

// Builds a file image from a header and a data section of `data_len` bytes.
static uint8_t *make_file_n(const char *header, size_t n, size_t data_len, size_t *len) {
    *len = 8 + n + data_len;
    uint8_t *b = xcalloc(*len, 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, n);
    return b;
}

static uint8_t *make_file(const char *header, size_t data_len, size_t *len) {
    return make_file_n(header, strlen(header), data_len, len);
}

// Expects parsing to fail with a message containing every needle.
static void expect_bad_n(const char *what, const char *header, size_t hlen, size_t data_len, const char *needle1,
                         const char *needle2) {
    size_t len;
    uint8_t *b = make_file_n(header, hlen, data_len, &len);
    st_file f;
    int rc = st_parse_buffer("bad.safetensors", b, len, &f);
    CHECK(rc != 0, "%s: accepted", what);
    if (rc == 0) st_close(&f);
    else {
        CHECK(strstr(llava_errmsg(), "bad.safetensors") != NULL, "%s: message lacks the file: %s", what,
              llava_errmsg());
        CHECK(strstr(llava_errmsg(), needle1) != NULL, "%s: message \"%s\" lacks \"%s\"", what, llava_errmsg(),
              needle1);
        if (needle2)
            CHECK(strstr(llava_errmsg(), needle2) != NULL, "%s: message \"%s\" lacks \"%s\"", what, llava_errmsg(),
                  needle2);
    }
    free(b);
}

static void expect_bad(const char *what, const char *header, size_t data_len, const char *needle1,
                       const char *needle2) {
    expect_bad_n(what, header, strlen(header), data_len, needle1, needle2);
}

static void test_malformed(void) {
    // Framing.
    uint8_t tiny[5] = {1, 2, 3, 4, 5};
    st_file f;
    CHECK(st_parse_buffer("bad.safetensors", tiny, 5, &f) != 0, "5-byte file");
    CHECK_ERR_HAS("too short");
    uint8_t huge[16] = {0};
    uint64_t big = ST_MAX_HEADER + 1;
    for (int i = 0; i < 8; i++) huge[i] = (uint8_t)(big >> (8 * i));
    CHECK(st_parse_buffer("bad.safetensors", huge, 16, &f) != 0, "header over the cap");
    CHECK_ERR_HAS("cap");
    uint8_t past[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(st_parse_buffer("bad.safetensors", past, 16, &f) != 0, "header past EOF");
    CHECK_ERR_HAS("past the end");
    // Header text.
    expect_bad("invalid UTF-8", "{\"a\xff\":{}}", 0, "UTF-8", NULL);
    expect_bad("not JSON", "{\"a\":", 0, "not valid JSON", NULL);
    expect_bad("not an object", "[1,2]", 0, "JSON object", NULL);
    expect_bad("trailing bytes", "{}  x", 0, "after the header", NULL);
    expect_bad_n("NUL byte", "{}\0  ", 5, 0, "NUL", NULL);
    expect_bad("entry not object", "{\"w\":3}", 0, "\"w\"", "not an object");
    expect_bad("missing dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"w\"", "dtype");
    expect_bad("unknown dtype", "{\"w\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"w\"", "F17");
    expect_bad("negative dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "\"w\"",
               "shape[0]");
    expect_bad("fractional dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "\"w\"",
               "shape[0]");
    expect_bad("string dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "\"w\"",
               "shape[0]");
    expect_bad("shape overflow",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
               "\"w\"", "overflow");
    expect_bad("too many dims", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
               "\"w\"", "dimensions");
    expect_bad("three offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "\"w\"",
               "exactly 2");
    expect_bad("end before begin", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, "\"w\"",
               "end before");
    expect_bad("byte length", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12, "\"w\"",
               "needs 16");
    expect_bad("sub-byte partial", "{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "\"w\"",
               "whole bytes");
    expect_bad("overlap",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "\"b\"", "overlaps");
    expect_bad("hole",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
               12, "\"b\"", "hole");
    expect_bad("not starting at 0", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "\"a\"",
               "hole");
    expect_bad("past end of file", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "\"a\"",
               "past the end");
    expect_bad("trailing data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
               "holds 8 data bytes", NULL);
    expect_bad("duplicate name",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "\"a\"", "twice");
    expect_bad("empty name", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty name", NULL);
    expect_bad("offset beyond 2^53", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1e300,1e300]}}", 0,
               "\"a\"", "data_offsets");
    expect_bad("metadata value", "{\"__metadata__\":{\"k\":1}}", 0, "__metadata__", "\"k\"");
    expect_bad("metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__", "twice");
    // Accepted edge cases: leading whitespace, padding spaces, an empty header, rank-0 tensors.
    size_t len;
    uint8_t *b = make_file("  {\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}    ", 8, &len);
    CHECK(st_parse_buffer("ok.safetensors", b, len, &f) == 0, "%s", llava_errmsg());
    if (f.tensors) st_close(&f);
    free(b);
    b = make_file("{}", 0, &len);
    CHECK(st_parse_buffer("ok.safetensors", b, len, &f) == 0 && f.n_tensors == 0, "empty header");
    st_close(&f);
    free(b);
    // A file that exists but is not a regular file, and one that does not exist.
    CHECK(st_open(&f, "tests") != 0, "a directory is refused");
    CHECK_ERR_HAS("not a regular file");
    CHECK(st_open(&f, "tests/data/nonexistent.safetensors") != 0, "missing file");
    CHECK_ERR_HAS("nonexistent.safetensors");
}

static void write_shard(const char *path, const char *const *names, int n, float base) {
    st_writer w;
    st_writer_init(&w);
    static float data[8][4];
    int64_t shape[1] = {4};
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 4; k++) data[i][k] = base + (float)i + 0.25f * (float)k;
        st_writer_add_f32(&w, names[i], DT_BF16, 1, shape, data[i]);
    }
    CHECK(st_writer_save(&w, path) == 0, "%s", llava_errmsg());
    st_writer_free(&w);
}

static void write_text(const char *path, const char *text) {
    CHECK(write_file_atomic(path, text, strlen(text)) == 0, "%s", llava_errmsg());
}

static void test_sharded(void) {
    char *dir = check_tmpdir();
    const char *s1[] = {"model.layers.0.w", "model.embed"};
    const char *s2[] = {"model.layers.1.w", "lm_head.weight"};
    char *p1 = path_join(dir, "model-00001-of-00002.safetensors");
    char *p2 = path_join(dir, "model-00002-of-00002.safetensors");
    write_shard(p1, s1, 2, 0.0f);
    write_shard(p2, s2, 2, 10.0f);
    char *idx = path_join(dir, "model.safetensors.index.json");
    write_text(idx,
               "{\"metadata\":{\"total_size\":32},\"weight_map\":{"
               "\"model.layers.0.w\":\"model-00001-of-00002.safetensors\","
               "\"model.embed\":\"model-00001-of-00002.safetensors\","
               "\"model.layers.1.w\":\"model-00002-of-00002.safetensors\","
               "\"lm_head.weight\":\"model-00002-of-00002.safetensors\"}}");
    st_set s;
    CHECK(st_set_open(&s, dir) == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(s.n_files, 2);
    CHECK_EQ_INT(s.n_entries, 4);
    const st_file *f = NULL;
    const st_tensor *t = st_set_find(&s, "lm_head.weight", &f);
    float v[4];
    CHECK(t && f && strstr(f->path, "00002") && st_tensor_to_f32(f, t, v) == 0 && v[3] == 11.75f,
          "lm_head from shard 2");
    t = st_set_find(&s, "model.embed", &f);
    CHECK(t && strstr(f->path, "00001") && st_tensor_to_f32(f, t, v) == 0 && v[0] == 1.0f, "embed from shard 1");
    CHECK(st_set_find(&s, "model.nothing", NULL) == NULL, "absent");
    st_set_close(&s);
    CHECK(st_set_open(&s, idx) == 0, "open by index path: %s", llava_errmsg());
    st_set_close(&s);
    CHECK(st_set_open(&s, p2) == 0 && s.n_entries == 2, "open one shard alone");
    st_set_close(&s);

    // The index names a tensor that its shard lacks.
    write_text(idx,
               "{\"weight_map\":{\"model.layers.0.w\":\"model-00001-of-00002.safetensors\","
               "\"model.ghost\":\"model-00001-of-00002.safetensors\"}}");
    CHECK(st_set_open(&s, dir) != 0, "ghost tensor accepted");
    CHECK_ERR_HAS("model.ghost");
    CHECK_ERR_HAS("does not hold it");
    // The index puts a tensor in the wrong shard.
    write_text(idx,
               "{\"weight_map\":{\"model.layers.0.w\":\"model-00002-of-00002.safetensors\","
               "\"model.embed\":\"model-00001-of-00002.safetensors\"}}");
    CHECK(st_set_open(&s, dir) != 0, "wrong shard accepted");
    CHECK_ERR_HAS("found in model-00001");
    // The index escapes the folder.
    write_text(idx, "{\"weight_map\":{\"model.layers.0.w\":\"../model-00001-of-00002.safetensors\"}}");
    CHECK(st_set_open(&s, dir) != 0, "path escape accepted");
    CHECK_ERR_HAS("inside the folder");
    // The index names a shard that does not exist.
    write_text(idx, "{\"weight_map\":{\"model.layers.0.w\":\"model-00009-of-00009.safetensors\"}}");
    CHECK(st_set_open(&s, dir) != 0, "missing shard accepted");
    CHECK_ERR_HAS("model-00009-of-00009.safetensors");
    write_text(idx, "{\"weight_map\": 3}");
    CHECK(st_set_open(&s, dir) != 0, "bad weight_map accepted");
    CHECK_ERR_HAS("weight_map");
    unlink(idx);
    // Without an index every *.safetensors file is read; a name in two files is an error.
    CHECK(st_set_open(&s, dir) == 0 && s.n_entries == 4, "folder without index: %s", llava_errmsg());
    st_set_close(&s);
    char *p3 = path_join(dir, "extra.safetensors");
    write_shard(p3, s1, 1, 5.0f);
    CHECK(st_set_open(&s, dir) != 0, "duplicate across files accepted");
    CHECK_ERR_HAS("model.layers.0.w");
    char *empty = path_join(dir, "empty");
    mkdir_p(empty);
    CHECK(st_set_open(&s, empty) != 0, "empty folder");
    CHECK_ERR_HAS("no *.safetensors");
    CHECK(st_dir_has_weights(empty) == 0 && st_dir_has_weights(dir) == 1, "st_dir_has_weights");
    free(empty);
    free(p1);
    free(p2);
    free(p3);
    free(idx);
    check_rm_rf(dir);
    free(dir);
}

int main(void) {
    test_reference_read();
    test_round_trip_conversions();
    test_malformed();
    test_sharded();
    return check_done();
}
