#include "gguf.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/dtype.h"
#include "common/util.h"
#include "data/image.h"

#define GGUF_MAGIC "GGUF"

static const char *const VTYPE_NAMES[GGUF_N_VTYPES] = {"UINT8",  "INT8",    "UINT16", "INT16",  "UINT32",
                                                       "INT32",  "FLOAT32", "BOOL",   "STRING", "ARRAY",
                                                       "UINT64", "INT64",   "FLOAT64"};

const char *gguf_vtype_name(int t) { return t >= 0 && t < GGUF_N_VTYPES ? VTYPE_NAMES[t] : NULL; }

// Bytes of one scalar of a fixed-size type; 0 for STRING, ARRAY and unknown types.
static size_t vtype_size(int t) {
    switch (t) {
    case GGUF_UINT8:
    case GGUF_INT8:
    case GGUF_BOOL: return 1;
    case GGUF_UINT16:
    case GGUF_INT16: return 2;
    case GGUF_UINT32:
    case GGUF_INT32:
    case GGUF_FLOAT32: return 4;
    case GGUF_UINT64:
    case GGUF_INT64:
    case GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

// ggml's types: block size (values) and block bytes (ggml.c's type traits; GGML_QUANT_SIZES in the
// gguf package).
typedef struct {
    int type;
    const char *label;
    int blck;
    int bytes;
} type_traits;

static const type_traits TYPES[] = {
    {0, "F32", 1, 4},       {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},    {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},    {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 40},
    {10, "Q2_K", 256, 84},  {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292}, {24, "I8", 1, 1},       {25, "I16", 1, 2},
    {26, "I32", 1, 4},      {27, "I64", 1, 8},      {28, "F64", 1, 8},      {30, "BF16", 1, 2},
};

static const type_traits *traits(int t) {
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (TYPES[i].type == t) return &TYPES[i];
    return NULL;
}

const char *ggml_type_label(int t) {
    const type_traits *tr = traits(t);
    return tr ? tr->label : NULL;
}

uint64_t ggml_type_nbytes(int t, uint64_t n) {
    const type_traits *tr = traits(t);
    if (!tr || n % (uint64_t)tr->blck) return 0;
    uint64_t out;
    if (mul_overflow_u64(n / (uint64_t)tr->blck, (uint64_t)tr->bytes, &out)) return 0;
    return out;
}

// ---------------------------------------------------------------------------------------------
// Q8_0

void q8_0_quantize(const float *x, uint8_t *out, size_t n) {
    for (size_t b = 0; b < n / GGML_QK8_0; b++) {
        const float *v = x + b * GGML_QK8_0;
        uint8_t *o = out + b * (2 + GGML_QK8_0);
        float amax = 0.0f;
        for (int j = 0; j < GGML_QK8_0; j++) {
            float a = fabsf(v[j]);
            if (a > amax) amax = a;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = f32_to_f16(d);
        o[0] = (uint8_t)h;
        o[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < GGML_QK8_0; j++) o[2 + j] = (uint8_t)(int8_t)roundf(v[j] * id);
    }
}

void q8_0_dequantize(const uint8_t *in, float *out, size_t n) {
    for (size_t b = 0; b < n / GGML_QK8_0; b++) {
        const uint8_t *p = in + b * (2 + GGML_QK8_0);
        const float d = f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
        for (int j = 0; j < GGML_QK8_0; j++) out[b * GGML_QK8_0 + j] = (float)(int8_t)p[2 + j] * d;
    }
}

// ---------------------------------------------------------------------------------------------
// Writer

typedef struct {
    uint8_t *b;
    size_t n, cap;
} bytes;

static void put(bytes *p, const void *d, size_t n) {
    if (p->n + n > p->cap) {
        p->cap = (p->n + n) * 2 + 256;
        p->b = xrealloc(p->b, p->cap);
    }
    memcpy(p->b + p->n, d, n);
    p->n += n;
}

static void put_u32(bytes *p, uint32_t v) {
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(p, le, 4);
}

static void put_u64(bytes *p, uint64_t v) {
    put_u32(p, (uint32_t)v);
    put_u32(p, (uint32_t)(v >> 32));
}

static void put_f32(bytes *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(p, u);
}

static void put_str(bytes *p, const char *s, size_t n) {
    put_u64(p, n);
    put(p, s, n);
}

typedef struct {
    char *name;
    int type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t numel, nbytes, offset;
    const float *data;
    gguf_fill_fn fill;
    void *ctx;
    int arg;
} wtensor;

struct gguf_writer {
    bytes kv;
    int n_kv;
    char **keys;
    char *error;  // the first problem found while keys and tensors were added
    wtensor *t;
    int n_t, cap_t;
    uint64_t data_size;
};

gguf_writer *gguf_writer_new(void) { return xcalloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    free(w->kv.b);
    for (int i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w->error);
    free(w);
}

static void key_begin(gguf_writer *w, const char *key, int type) {
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key) && !w->error) w->error = xasprintf("gguf: key %s set twice", key);
    w->keys = xrealloc(w->keys, sizeof(char *) * (size_t)(w->n_kv + 1));
    w->keys[w->n_kv++] = xstrdup(key);
    put_str(&w->kv, key, strlen(key));
    put_u32(&w->kv, (uint32_t)type);
}

void gguf_set_u32(gguf_writer *w, const char *key, uint32_t v) {
    key_begin(w, key, GGUF_UINT32);
    put_u32(&w->kv, v);
}

void gguf_set_i32(gguf_writer *w, const char *key, int32_t v) {
    key_begin(w, key, GGUF_INT32);
    put_u32(&w->kv, (uint32_t)v);
}

void gguf_set_f32(gguf_writer *w, const char *key, float v) {
    key_begin(w, key, GGUF_FLOAT32);
    put_f32(&w->kv, v);
}

void gguf_set_bool(gguf_writer *w, const char *key, int v) {
    key_begin(w, key, GGUF_BOOL);
    uint8_t b = v ? 1 : 0;
    put(&w->kv, &b, 1);
}

void gguf_set_str(gguf_writer *w, const char *key, const char *s) {
    key_begin(w, key, GGUF_STRING);
    put_str(&w->kv, s, strlen(s));
}

void gguf_set_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n) {
    key_begin(w, key, GGUF_ARRAY);
    put_u32(&w->kv, GGUF_FLOAT32);
    put_u64(&w->kv, n);
    for (size_t i = 0; i < n; i++) put_f32(&w->kv, v[i]);
}

void gguf_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n) {
    key_begin(w, key, GGUF_ARRAY);
    put_u32(&w->kv, GGUF_INT32);
    put_u64(&w->kv, n);
    for (size_t i = 0; i < n; i++) put_u32(&w->kv, (uint32_t)v[i]);
}

void gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *s, const size_t *len, size_t n) {
    key_begin(w, key, GGUF_ARRAY);
    put_u32(&w->kv, GGUF_STRING);
    put_u64(&w->kv, n);
    for (size_t i = 0; i < n; i++) put_str(&w->kv, s[i], len[i]);
}

static uint64_t pad_to(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

int gguf_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne, const float *data,
                    gguf_fill_fn fill, void *ctx, int arg) {
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return llava_fail("gguf: tensor %s: %d dimensions", name, n_dims);
    if (type != GGML_TYPE_F32 && type != GGML_TYPE_F16 && type != GGML_TYPE_BF16 && type != GGML_TYPE_Q8_0)
        return llava_fail("gguf: tensor %s: type %d is not written", name, type);
    if (!data && !fill) return llava_fail("gguf: tensor %s has no values", name);
    for (int i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return llava_fail("gguf: tensor %s added twice", name);
    uint64_t numel = 1;
    for (int d = 0; d < n_dims; d++)
        if (ne[d] < 1 || mul_overflow_u64(numel, (uint64_t)ne[d], &numel))
            return llava_fail("gguf: tensor %s: bad dimension %lld", name, (long long)ne[d]);
    if (type == GGML_TYPE_Q8_0 && ne[0] % GGML_QK8_0)
        return llava_fail("gguf: tensor %s: Q8_0 rows of %lld values are not whole blocks of 32", name,
                          (long long)ne[0]);
    if (w->n_t == w->cap_t) {
        w->cap_t = w->cap_t * 2 + 16;
        w->t = xrealloc(w->t, sizeof(wtensor) * (size_t)w->cap_t);
    }
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->numel = numel;
    t->nbytes = ggml_type_nbytes(type, numel);
    t->offset = w->data_size;
    w->data_size += pad_to(t->nbytes, GGUF_DEFAULT_ALIGNMENT);
    t->data = data;
    t->fill = fill;
    t->ctx = ctx;
    t->arg = arg;
    return 0;
}

int gguf_writer_n_tensors(const gguf_writer *w) { return w->n_t; }

// Header, keys and tensor infos, padded to the alignment.
static void build_header(const gguf_writer *w, bytes *h) {
    put(h, GGUF_MAGIC, 4);
    put_u32(h, GGUF_VERSION);
    put_u64(h, (uint64_t)w->n_t);
    put_u64(h, (uint64_t)w->n_kv);
    put(h, w->kv.b, w->kv.n);
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(h, t->name, strlen(t->name));
        put_u32(h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(h, (uint64_t)t->ne[d]);
        put_u32(h, (uint32_t)t->type);
        put_u64(h, t->offset);
    }
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
    put(h, zeros, (size_t)(pad_to(h->n, GGUF_DEFAULT_ALIGNMENT) - h->n));
}

uint64_t gguf_writer_size(const gguf_writer *w) {
    bytes h = {0};
    build_header(w, &h);
    uint64_t n = h.n + w->data_size;
    free(h.b);
    return n;
}

// One tensor's bytes from its fp32 values.
static int encode(const wtensor *t, const float *x, uint8_t *out) {
    size_t bad = 0, n = (size_t)t->numel;
    size_t first = f32_first_nonfinite(x, n, &bad);
    if (bad)
        return llava_fail("gguf: tensor %s holds %zu values that are not finite (the first at %zu)", t->name, bad,
                          first);
    switch (t->type) {
    case GGML_TYPE_F32: memcpy(out, x, n * 4); return 0;  // little-endian hosts only, like the rest of llava.c
    case GGML_TYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = f32_to_bf16(x[i]);
            out[2 * i] = (uint8_t)h, out[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return 0;
    case GGML_TYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = f32_to_f16(x[i]);
            if ((h & 0x7c00u) == 0x7c00u)
                return llava_fail("gguf: tensor %s: value %g at %zu does not fit in F16", t->name, (double)x[i], i);
            out[2 * i] = (uint8_t)h, out[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return 0;
    case GGML_TYPE_Q8_0:
        q8_0_quantize(x, out, n);
        for (size_t b = 0; b < n / GGML_QK8_0; b++)
            if ((out[b * 34 + 1] & 0x7c) == 0x7c)
                return llava_fail("gguf: tensor %s: block %zu's Q8_0 scale does not fit in F16", t->name, b);
        return 0;
    }
    return llava_fail("gguf: tensor %s: type %d is not written", t->name, t->type);
}

int gguf_writer_save(gguf_writer *w, const char *path) {
    if (w->error) return llava_fail("%s", w->error);
    bytes h = {0};
    build_header(w, &h);
    char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int rc = f ? 0 : llava_fail("%s: cannot create: %s", tmp, strerror(errno));
    if (rc == 0 && fwrite(h.b, 1, h.n, f) != h.n) rc = llava_fail("%s: write failed", tmp);
    free(h.b);
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
    for (int i = 0; i < w->n_t && rc == 0; i++) {
        const wtensor *t = &w->t[i];
        float *buf = NULL;
        const float *x = t->data;
        if (!x) {
            buf = xmalloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
            rc = t->fill(t->ctx, t->arg, buf);
            x = buf;
        }
        uint8_t *out = rc == 0 ? xmalloc((size_t)t->nbytes) : NULL;
        if (rc == 0) rc = encode(t, x, out);
        size_t pad = (size_t)(pad_to(t->nbytes, GGUF_DEFAULT_ALIGNMENT) - t->nbytes);
        if (rc == 0 && (fwrite(out, 1, (size_t)t->nbytes, f) != t->nbytes || fwrite(zeros, 1, pad, f) != pad))
            rc = llava_fail("%s: write failed", tmp);
        free(out);
        free(buf);
    }
    if (f && fclose(f) != 0 && rc == 0) rc = llava_fail("%s: write failed", tmp);
    if (rc == 0 && rename(tmp, path) != 0) rc = llava_fail("%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (rc != 0 && f) remove(tmp);
    free(tmp);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Reader

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

typedef struct {
    const uint8_t *b;
    size_t len, pos;
    const char *what;
} cursor;

static int need(cursor *c, uint64_t n, const char *field) {
    if (n > c->len - c->pos)
        return llava_fail("%s: truncated at byte %zu (%s needs %llu bytes, %zu left)", c->what, c->pos, field,
                          (unsigned long long)n, c->len - c->pos);
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *field) {
    if (need(c, 4, field)) return -1;
    const uint8_t *p = c->b + c->pos;
    *v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    c->pos += 4;
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *field) {
    uint32_t lo, hi;
    if (rd_u32(c, &lo, field) || rd_u32(c, &hi, field)) return -1;
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

// A string: its bytes stay in the buffer; *s points at them.
static int rd_str(cursor *c, const uint8_t **s, uint64_t *n, const char *field) {
    if (rd_u64(c, n, field) || need(c, *n, field)) return -1;
    *s = c->b + c->pos;
    c->pos += (size_t)*n;
    return 0;
}

// Skips a value of type t (its type already read), checking it: `depth` bounds arrays of arrays.
static int skip_value(cursor *c, int t, int depth, const char *key) {
    if (t == GGUF_STRING) {
        const uint8_t *s;
        uint64_t n;
        return rd_str(c, &s, &n, key);
    }
    if (t == GGUF_ARRAY) {
        uint32_t at;
        uint64_t n;
        if (depth > 3) return llava_fail("%s: key %s: arrays nested too deep", c->what, key);
        if (rd_u32(c, &at, key) || rd_u64(c, &n, key)) return -1;
        if (at >= GGUF_N_VTYPES) return llava_fail("%s: key %s: array of unknown type %u", c->what, key, at);
        size_t es = vtype_size((int)at);
        if (es) {
            uint64_t total;
            if (mul_overflow_u64(n, es, &total) || need(c, total, key)) return -1;
            if (at == GGUF_BOOL)
                for (uint64_t i = 0; i < n; i++)
                    if (c->b[c->pos + i] > 1)
                        return llava_fail("%s: key %s: a bool is %u", c->what, key, c->b[c->pos + i]);
            c->pos += (size_t)total;
            return 0;
        }
        // strings and arrays take at least 8 bytes each: a count beyond that cannot be true
        if (n > (c->len - c->pos) / 8)
            return llava_fail("%s: key %s: %llu elements cannot fit in the %zu bytes left", c->what, key,
                              (unsigned long long)n, c->len - c->pos);
        for (uint64_t i = 0; i < n; i++)
            if (skip_value(c, (int)at, depth + 1, key)) return -1;
        return 0;
    }
    size_t es = vtype_size(t);
    if (!es) return llava_fail("%s: key %s: unknown value type %d", c->what, key, t);
    if (need(c, es, key)) return -1;
    if (t == GGUF_BOOL && c->b[c->pos] > 1) return llava_fail("%s: key %s: a bool is %u", c->what, key, c->b[c->pos]);
    c->pos += es;
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// The first name that occurs twice among n, or NULL.
static const char *duplicate(char **names, int n) {
    if (n < 2) return NULL;
    char **s = xmalloc(sizeof(char *) * (size_t)n);
    memcpy(s, names, sizeof(char *) * (size_t)n);
    qsort(s, (size_t)n, sizeof(char *), cmp_str_ptr);
    const char *d = NULL;
    for (int i = 1; i < n && !d; i++)
        if (!strcmp(s[i - 1], s[i])) d = s[i];
    free(s);
    return d;
}

static char *dup_name(const uint8_t *s, uint64_t n) {
    char *o = xmalloc((size_t)n + 1);
    memcpy(o, s, (size_t)n);
    o[n] = 0;
    return o;
}

static int cmp_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int parse(gguf_file *f, const char *what) {
    cursor c = {f->buf, f->len, 0, what};
    if (f->len < 4 || memcmp(f->buf, GGUF_MAGIC, 4) != 0) return llava_fail("%s: not a GGUF file (no magic)", what);
    c.pos = 4;
    uint64_t n_t, n_kv;
    if (rd_u32(&c, &f->version, "version")) return -1;
    if (f->version != 2 && f->version != 3)
        return llava_fail("%s: GGUF version %u (2 and 3 are read)", what, f->version);
    if (rd_u64(&c, &n_t, "tensor count") || rd_u64(&c, &n_kv, "key count")) return -1;
    // a key takes at least 13 bytes, a tensor info at least 24: larger counts cannot be true
    if (n_kv > f->len / 13 || n_t > f->len / 24)
        return llava_fail("%s: %llu keys and %llu tensors cannot fit in %zu bytes", what, (unsigned long long)n_kv,
                          (unsigned long long)n_t, f->len);
    f->kv = xcalloc((size_t)n_kv + 1, sizeof(gguf_kv));
    f->tensors = xcalloc((size_t)n_t + 1, sizeof(gguf_tensor));
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++) {
        const uint8_t *k;
        uint64_t kn;
        uint32_t t;
        if (rd_str(&c, &k, &kn, "key")) return -1;
        if (kn == 0 || !utf8_valid(k, (size_t)kn) || memchr(k, 0, (size_t)kn))
            return llava_fail("%s: key %llu: empty or not UTF-8", what, (unsigned long long)i);
        gguf_kv *kv = &f->kv[f->n_kv++];
        kv->key = dup_name(k, kn);
        if (rd_u32(&c, &t, kv->key)) return -1;
        if (t >= GGUF_N_VTYPES) return llava_fail("%s: key %s: unknown value type %u", what, kv->key, t);
        kv->type = (int)t;
        kv->n = 1;
        if (t == GGUF_ARRAY) {
            size_t at_pos = c.pos;
            if (skip_value(&c, GGUF_ARRAY, 0, kv->key)) return -1;
            kv->arr_type = (int)le32(f->buf + at_pos);
            kv->n = (uint64_t)le32(f->buf + at_pos + 4) | (uint64_t)le32(f->buf + at_pos + 8) << 32;
            kv->p = f->buf + at_pos + 12;
            kv->size = c.pos - at_pos - 12;
        } else if (t == GGUF_STRING) {
            const uint8_t *s;
            uint64_t sn;
            if (rd_str(&c, &s, &sn, kv->key)) return -1;
            kv->p = s;
            kv->size = (size_t)sn;
        } else {
            size_t at_pos = c.pos;
            if (skip_value(&c, (int)t, 0, kv->key)) return -1;
            kv->p = f->buf + at_pos;
            kv->size = c.pos - at_pos;
        }
        if (!strcmp(kv->key, "general.alignment")) {
            uint32_t a;
            if (gguf_get_u32(f, "general.alignment", &a) != 0 || a == 0 || (a & (a - 1)))
                return llava_fail("%s: general.alignment must be a UINT32 power of two", what);
            f->alignment = a;
        }
    }
    {
        char **keys = xmalloc(sizeof(char *) * (size_t)(f->n_kv + 1));
        for (int i = 0; i < f->n_kv; i++) keys[i] = f->kv[i].key;
        const char *d = duplicate(keys, f->n_kv);
        int rc = d ? llava_fail("%s: key %s occurs twice", what, d) : 0;
        free(keys);
        if (rc) return -1;
    }
    for (uint64_t i = 0; i < n_t; i++) {
        const uint8_t *s;
        uint64_t sn;
        uint32_t nd, type;
        if (rd_str(&c, &s, &sn, "tensor name")) return -1;
        if (sn == 0 || !utf8_valid(s, (size_t)sn) || memchr(s, 0, (size_t)sn))
            return llava_fail("%s: tensor %llu: empty or not UTF-8 name", what, (unsigned long long)i);
        gguf_tensor *t = &f->tensors[f->n_tensors++];
        t->name = dup_name(s, sn);
        if (rd_u32(&c, &nd, t->name)) return -1;
        if (nd < 1 || nd > GGUF_MAX_DIMS) return llava_fail("%s: tensor %s: %u dimensions", what, t->name, nd);
        t->n_dims = (int)nd;
        t->numel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t v;
            if (rd_u64(&c, &v, t->name)) return -1;
            if (v > (uint64_t)INT64_MAX || mul_overflow_u64(t->numel, v, &t->numel))
                return llava_fail("%s: tensor %s: dimension %u is %llu", what, t->name, d, (unsigned long long)v);
            t->ne[d] = (int64_t)v;
        }
        if (t->numel > (uint64_t)INT64_MAX) return llava_fail("%s: tensor %s: too many elements", what, t->name);
        if (rd_u32(&c, &type, t->name) || rd_u64(&c, &t->offset, t->name)) return -1;
        t->type = (int)type;
        const type_traits *tr = traits(t->type);
        if (!tr) return llava_fail("%s: tensor %s: unknown ggml type %u", what, t->name, type);
        if (t->ne[0] % tr->blck)
            return llava_fail("%s: tensor %s: rows of %lld values are not whole %s blocks of %d", what, t->name,
                              (long long)t->ne[0], tr->label, tr->blck);
        t->nbytes = ggml_type_nbytes(t->type, t->numel);
        if (t->numel && !t->nbytes) return llava_fail("%s: tensor %s: size overflows", what, t->name);
        if (t->offset % f->alignment)
            return llava_fail("%s: tensor %s: offset %llu is not a multiple of the alignment %u", what, t->name,
                              (unsigned long long)t->offset, f->alignment);
    }
    {
        char **names = xmalloc(sizeof(char *) * (size_t)(f->n_tensors + 1));
        for (int i = 0; i < f->n_tensors; i++) names[i] = f->tensors[i].name;
        const char *d = duplicate(names, f->n_tensors);
        int rc = d ? llava_fail("%s: tensor %s occurs twice", what, d) : 0;
        free(names);
        if (rc) return -1;
    }
    f->data_offset = pad_to(c.pos, f->alignment);
    if (f->n_tensors && f->data_offset > f->len)
        return llava_fail("%s: the data section starts at %llu, past the end (%zu bytes)", what,
                          (unsigned long long)f->data_offset, f->len);
    uint64_t data_len = f->data_offset <= f->len ? f->len - f->data_offset : 0;
    gguf_tensor **by_off = xmalloc(sizeof(gguf_tensor *) * (size_t)(f->n_tensors + 1));
    for (int i = 0; i < f->n_tensors; i++) by_off[i] = &f->tensors[i];
    qsort(by_off, (size_t)f->n_tensors, sizeof(gguf_tensor *), cmp_offset);
    int rc = 0;
    for (int i = 0; i < f->n_tensors && rc == 0; i++) {
        gguf_tensor *t = by_off[i];
        // as ggml reads it: each tensor with its padding to the alignment
        uint64_t padded = pad_to(t->nbytes, f->alignment);
        if (t->offset > data_len || padded > data_len - t->offset)
            rc = llava_fail("%s: tensor %s: bytes [%llu, +%llu) lie past the data section (%llu bytes)", what, t->name,
                            (unsigned long long)t->offset, (unsigned long long)padded, (unsigned long long)data_len);
        else if (i > 0 && by_off[i - 1]->offset + by_off[i - 1]->nbytes > t->offset)
            rc = llava_fail("%s: tensors %s and %s overlap", what, by_off[i - 1]->name, t->name);
        else t->data = f->buf + f->data_offset + t->offset;
    }
    free(by_off);
    return rc;
}

int gguf_parse(gguf_file *f, const void *data, size_t len, const char *what) {
    memset(f, 0, sizeof *f);
    f->buf = xmalloc(len ? len : 1);
    memcpy(f->buf, data, len);
    f->len = len;
    if (parse(f, what) != 0) {
        gguf_close(f);
        return -1;
    }
    return 0;
}

int gguf_open(gguf_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    size_t len;
    char *buf = read_file(path, (size_t)64 << 30, &len);
    if (!buf) return -1;
    f->buf = (uint8_t *)buf;
    f->len = len;
    if (parse(f, path) != 0) {
        gguf_close(f);
        return -1;
    }
    return 0;
}

void gguf_close(gguf_file *f) {
    for (int i = 0; i < f->n_kv; i++) free(f->kv[i].key);
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    for (int i = 0; i < f->n_kv; i++)
        if (!strcmp(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_UINT32) return -1;
    *out = le32(kv->p);
    return 0;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_FLOAT32) return -1;
    uint32_t u = le32(kv->p);
    memcpy(out, &u, 4);
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, int *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_BOOL) return -1;
    *out = kv->p[0] != 0;
    return 0;
}

const char *gguf_get_str(const gguf_file *f, const char *key, size_t *len) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_STRING) return NULL;
    *len = kv->size;
    return (const char *)kv->p;
}

const char *gguf_arr_str(const gguf_kv *kv, uint64_t i, size_t *len) {
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || i >= kv->n) return NULL;
    const uint8_t *p = kv->p;
    for (uint64_t k = 0;; k++) {
        uint64_t n = (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
        if (k == i) {
            *len = (size_t)n;
            return (const char *)p + 8;
        }
        p += 8 + n;
    }
}

uint32_t gguf_arr_u32(const gguf_kv *kv, uint64_t i) {
    if (kv->type != GGUF_ARRAY || vtype_size(kv->arr_type) != 4 || i >= kv->n) return 0;
    return le32(kv->p + 4 * i);
}

int gguf_tensor_to_f32(const gguf_tensor *t, float *out) {
    size_t n = (size_t)t->numel;
    const uint8_t *p = t->data;
    switch (t->type) {
    case GGML_TYPE_F32:
        for (size_t i = 0; i < n; i++) {
            uint32_t u = le32(p + 4 * i);
            memcpy(&out[i], &u, 4);
        }
        return 0;
    case GGML_TYPE_F16:
        for (size_t i = 0; i < n; i++) out[i] = f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case GGML_TYPE_BF16:
        for (size_t i = 0; i < n; i++) out[i] = bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case GGML_TYPE_Q8_0: q8_0_dequantize(p, out, n); return 0;
    }
    const char *l = ggml_type_label(t->type);
    return llava_fail("gguf: tensor %s: %s values are not converted", t->name, l ? l : "unknown");
}

// ---------------------------------------------------------------------------------------------
// The LLaVA export

static const char *const OUT_NAMES[] = {"f32", "f16", "bf16", "q8_0"};

int gguf_out_type_parse(const char *s, gguf_out_type *out) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, OUT_NAMES[i])) {
            *out = (gguf_out_type)i;
            return 0;
        }
    return llava_fail("--type %s: f32, f16, bf16 or q8_0", s);
}

const char *gguf_out_type_name(gguf_out_type t) { return (unsigned)t < 4 ? OUT_NAMES[t] : "?"; }

// The tensors of an export: each a model view, and for Q and K the head count whose rows are permuted.
typedef struct {
    const param_view *v;
    int permute_heads;  // 0: as stored
} src_view;

typedef struct {
    const llava_model *m;
    src_view *s;
    int n, cap;
} export_ctx;

// llama.cpp's "llama" graph rotates pairs (2i, 2i+1) of each head; Hugging Face's LLaMA rotates (i, i+d/2).
// convert_hf_to_gguf.py's LlamaModel.permute reorders each head's rows so that GGUF row 2i+j is HF row
// j*d/2 + i (j = 0, 1): the same attention, in the layout llama.cpp's RoPE expects.
static void permute_rows(const float *src, float *dst, int n_head, int rows, int cols) {
    int hd = rows / n_head, half = hd / 2;
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + ((size_t)h * hd + 2 * i + j) * cols, src + ((size_t)h * hd + j * half + i) * cols,
                       sizeof(float) * (size_t)cols);
}

static int fill_view(void *ctx, int arg, float *dst) {
    export_ctx *e = ctx;
    const llava_model *m = e->m;
    const src_view *s = &e->s[arg];
    const param_view *v = s->v;
    const void *src = (const char *)m->params[v->group] + v->offset * m->ops->act_bytes;
    if (!s->permute_heads) {
        m->ops->download(m->be, BUF_PARAM, dst, src, v->numel);
        return 0;
    }
    float *tmp = xmalloc(sizeof(float) * v->numel);
    m->ops->download(m->be, BUF_PARAM, tmp, src, v->numel);
    int rows = (int)v->shape[0];
    permute_rows(tmp, dst, s->permute_heads, rows, (int)(v->numel / (size_t)rows));
    free(tmp);
    return 0;
}

// Adds view v as tensor `name` (ggml order: the view's shape reversed).
static int add_view(gguf_writer *w, export_ctx *e, const char *name, const param_view *v, int type, int permute_heads) {
    if (e->n == e->cap) {
        e->cap = e->cap * 2 + 32;
        e->s = xrealloc(e->s, sizeof(src_view) * (size_t)e->cap);
    }
    e->s[e->n] = (src_view){v, permute_heads};
    int64_t ne[GGUF_MAX_DIMS];
    for (int d = 0; d < v->ndim; d++) ne[d] = v->shape[v->ndim - 1 - d];
    if (gguf_add_tensor(w, name, type, v->ndim, ne, NULL, fill_view, e, e->n) != 0) return -1;
    e->n++;
    return 0;
}

// convert_hf_to_gguf.py's rule: vectors and *_norm.weight in F32; matrices in the output type, Q8_0
// falling back to F16 for rows that are not whole blocks (gguf.quants raises QuantError for them).
static int lm_type(const char *name, const param_view *v, gguf_out_type t, int *n_fallback) {
    size_t nl = strlen(name);
    if (v->ndim <= 1 || (nl >= 12 && !strcmp(name + nl - 12, "_norm.weight"))) return GGML_TYPE_F32;
    switch (t) {
    case GGUF_OUT_F32: return GGML_TYPE_F32;
    case GGUF_OUT_F16: return GGML_TYPE_F16;
    case GGUF_OUT_BF16: return GGML_TYPE_BF16;
    case GGUF_OUT_Q8_0:
        if (v->shape[v->ndim - 1] % GGML_QK8_0 == 0) return GGML_TYPE_Q8_0;
        ++*n_fallback;
        return GGML_TYPE_F16;
    }
    return GGML_TYPE_F16;
}

// llama.cpp's general.file_type (LlamaFileType): ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32.
static uint32_t lm_file_type(gguf_out_type t) {
    static const uint32_t FT[] = {0, 1, 32, 7};
    return FT[t];
}

static int finish(gguf_writer *w, export_ctx *e, const char *path, int n_fallback, gguf_export_info *info) {
    if (info) {
        info->n_tensors = gguf_writer_n_tensors(w);
        info->n_fallback = n_fallback;
        info->bytes = gguf_writer_size(w);
    }
    int rc = gguf_writer_save(w, path);
    gguf_writer_free(w);
    free(e->s);
    return rc;
}

int gguf_export_lm(const llava_model *m, const tokenizer *tok, gguf_out_type t, const char *name, const char *path,
                   gguf_export_info *info) {
    const llama_config *c = &m->cfg.text;
    const llava_params *p = &m->pt.w;
    if (tok_bpe(tok))
        return llava_fail(
            "gguf: the tokenizer is a tokenizer.json (byte-level BPE); the GGUF export writes "
            "SentencePiece vocabularies (llama.cpp's \"llama\" tokenizer) only, not yet BPE ones");
    int V = c->vocab_size, n_pieces = tok_n_pieces(tok);
    if (n_pieces > V)
        return llava_fail("gguf: the tokenizer has %d pieces, the language model's vocabulary only %d", n_pieces, V);
    if (c->head_dim % 2) return llava_fail("gguf: head_dim %d is odd: RoPE pairs need an even one", c->head_dim);
    gguf_writer *w = gguf_writer_new();
    export_ctx e = {m, NULL, 0, 0};
    gguf_set_str(w, "general.architecture", "llama");
    gguf_set_str(w, "general.type", "model");
    gguf_set_str(w, "general.name", name);
    gguf_set_u32(w, "llama.block_count", (uint32_t)c->num_hidden_layers);
    gguf_set_u32(w, "llama.context_length", (uint32_t)c->max_position_embeddings);
    gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->hidden_size);
    gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->intermediate_size);
    gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->num_attention_heads);
    gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->num_key_value_heads);
    gguf_set_f32(w, "llama.rope.freq_base", (float)c->rope_theta);
    gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->rms_norm_eps);
    gguf_set_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim);
    gguf_set_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim);
    gguf_set_u32(w, "general.file_type", lm_file_type(t));
    gguf_set_u32(w, "llama.vocab_size", (uint32_t)V);
    gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim);

    // The vocabulary as convert_hf_to_gguf.py's _create_vocab_sentencepiece makes it: the pieces with
    // their scores and types (a user-defined piece counts as NORMAL there), then the ids past them: the
    // image and pad tokens llava-hf adds (special tokens: CONTROL, score -1000) and [PADn] placeholders
    // (UNUSED, score -10000).
    int image_id = m->cfg.glue.image_token_index;
    int pad_id = m->cfg.glue.pad_token_id >= 0 ? m->cfg.glue.pad_token_id : c->pad_token_id;
    const char **tokens = xmalloc(sizeof(char *) * (size_t)V);
    size_t *lens = xmalloc(sizeof(size_t) * (size_t)V);
    char **made = xcalloc((size_t)V, sizeof(char *));
    float *scores = xmalloc(sizeof(float) * (size_t)V);
    int32_t *types = xmalloc(sizeof(int32_t) * (size_t)V);
    for (int i = 0; i < V; i++) {
        if (i < n_pieces) {
            tokens[i] = tok_id_to_piece(tok, i, &lens[i]);
            scores[i] = tok_piece_score(tok, i);
            int ty = tok_piece_type(tok, i);
            types[i] = ty == TOK_USER_DEFINED ? TOK_NORMAL : ty;
        } else {
            if (i == image_id) made[i] = xstrdup("<image>");
            else if (i == pad_id) made[i] = xstrdup("<pad>");
            else made[i] = xasprintf("[PAD%d]", i);
            int special = i == image_id || i == pad_id;
            tokens[i] = made[i];
            lens[i] = strlen(made[i]);
            scores[i] = special ? -1000.0f : -10000.0f;
            types[i] = special ? TOK_CONTROL : TOK_UNUSED;
        }
    }
    gguf_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_set_str(w, "tokenizer.ggml.pre", "default");
    gguf_set_arr_str(w, "tokenizer.ggml.tokens", tokens, lens, (size_t)V);
    gguf_set_arr_f32(w, "tokenizer.ggml.scores", scores, (size_t)V);
    gguf_set_arr_i32(w, "tokenizer.ggml.token_type", types, (size_t)V);
    for (int i = 0; i < V; i++) free(made[i]);
    free(made);
    free(tokens);
    free(lens);
    free(scores);
    free(types);
    // What LLaVA's LlamaTokenizer uses: BOS added, EOS not; pad is the config's (llava-hf: <pad>; original
    // LLaVA: unk).
    if (tok_bos_id(tok) >= 0) gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)tok_bos_id(tok));
    if (tok_eos_id(tok) >= 0) gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)tok_eos_id(tok));
    gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)tok_unk_id(tok));
    int pad = pad_id >= 0 && pad_id < V ? pad_id : tok_pad_id(tok);
    if (pad >= 0) gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad);
    gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    gguf_set_bool(w, "tokenizer.ggml.add_eos_token", 0);
    gguf_set_u32(w, "general.quantization_version", 2);

    int rc = 0, fb = 0;
#define ADD(NAME, VIEW, PERM)                                                                                          \
    do {                                                                                                               \
        if (rc == 0 && (VIEW)) rc = add_view(w, &e, NAME, VIEW, lm_type(NAME, VIEW, t, &fb), PERM);                    \
    } while (0)
    ADD("token_embd.weight", p->embed, 0);
    char nm[96];
    for (int l = 0; l < p->n_lm && rc == 0; l++) {
        const lm_layer_params *L = &p->lm[l];
        int hq = c->num_attention_heads, hkv = c->num_key_value_heads;
        struct {
            const char *suffix;
            const param_view *v;
            int perm;
        } items[] = {
            {"attn_norm.weight", L->in_norm, 0},  {"attn_q.weight", L->q, hq},     {"attn_q.bias", L->q_b, hq},
            {"attn_k.weight", L->k, hkv},         {"attn_k.bias", L->k_b, hkv},    {"attn_v.weight", L->v, 0},
            {"attn_v.bias", L->v_b, 0},           {"attn_output.weight", L->o, 0}, {"attn_output.bias", L->o_b, 0},
            {"ffn_norm.weight", L->post_norm, 0}, {"ffn_gate.weight", L->gate, 0}, {"ffn_gate.bias", L->gate_b, 0},
            {"ffn_up.weight", L->up, 0},          {"ffn_up.bias", L->up_b, 0},     {"ffn_down.weight", L->down, 0},
            {"ffn_down.bias", L->down_b, 0},
        };
        for (size_t k = 0; k < sizeof items / sizeof items[0]; k++) {
            snprintf(nm, sizeof nm, "blk.%d.%s", l, items[k].suffix);
            ADD(nm, items[k].v, items[k].perm);
        }
    }
    ADD("output_norm.weight", p->norm, 0);
    if (p->head != p->embed) ADD("output.weight", p->head, 0);  // tied: llama.cpp uses token_embd
#undef ADD
    if (rc != 0) {
        gguf_writer_free(w);
        free(e.s);
        return -1;
    }
    return finish(w, &e, path, fb, info);
}

int gguf_export_mmproj(const llava_model *m, gguf_out_type t, const char *name, const char *path,
                       gguf_export_info *info) {
    const model_config *mc = &m->cfg;
    const clip_vision_config *vc = &mc->vision;
    const llava_params *p = &m->pt.w;
    char pn[24];
    if (mc->glue.anyres) return llava_fail("gguf: an AnyRes (llava_next) model is not exported (not written yet)");
    if (p->n_proj != 2)
        return llava_fail("gguf: a %s projector: llama.cpp's LLaVA graph is mlp2x_gelu (mm.0, GELU, mm.2)",
                          llava_projector_name(p->n_proj, pn));
    if (mc->glue.pool_mode != POOL_NONE || mc->glue.keep_tokens)
        return llava_fail("gguf: a visual-token reduction (%s): llama.cpp's LLaVA graph has none",
                          mc->glue.keep_tokens ? "mm_vision_keep_tokens" : llava_pool_name(mc->glue.pool_mode));
    if (mc->glue.video_pool_mode != POOL_NONE)
        return llava_fail("gguf: video frames pooled (video_pool_mode %s): llama.cpp's LLaVA graph pools none",
                          llava_pool_name(mc->glue.video_pool_mode));
    if (!p->pb[0] || !p->pb[1])
        return llava_fail("gguf: a projector without biases: llama.cpp's LLaVA graph adds them");
    if (!mc->glue.drop_cls)
        return llava_fail(
            "gguf: vision_feature_select_strategy \"full\": llama.cpp's LLaVA graph drops the CLS feature");
    if (strcmp(mc->glue.projector_hidden_act, "gelu") != 0)
        return llava_fail("gguf: projector_hidden_act \"%s\": llama.cpp's LLaVA graph uses GELU",
                          mc->glue.projector_hidden_act);
    int L = m->vision_layers;
    if (L < 1 || L > vc->num_hidden_layers) return llava_fail("gguf: %d vision layers run", L);
    gguf_writer *w = gguf_writer_new();
    export_ctx e = {m, NULL, 0, 0};
    int f32 = t == GGUF_OUT_F32;
    gguf_set_str(w, "general.architecture", "clip");
    gguf_set_bool(w, "clip.has_text_encoder", 0);
    gguf_set_bool(w, "clip.has_vision_encoder", 1);
    gguf_set_bool(w, "clip.has_llava_projector", 1);
    gguf_set_u32(w, "general.file_type", f32 ? 0 : 1);
    gguf_set_str(w, "general.name", name);
    gguf_set_str(w, "general.description", "image encoder for LLaVA");
    gguf_set_str(w, "clip.projector_type", "mlp");
    gguf_set_u32(w, "clip.vision.image_size", (uint32_t)vc->image_size);
    gguf_set_u32(w, "clip.vision.patch_size", (uint32_t)vc->patch_size);
    gguf_set_u32(w, "clip.vision.embedding_length", (uint32_t)vc->hidden_size);
    gguf_set_u32(w, "clip.vision.feed_forward_length", (uint32_t)vc->intermediate_size);
    gguf_set_u32(w, "clip.vision.projection_dim", (uint32_t)vc->projection_dim);
    gguf_set_u32(w, "clip.vision.attention.head_count", (uint32_t)vc->num_attention_heads);
    gguf_set_f32(w, "clip.vision.attention.layer_norm_epsilon", vc->layer_norm_eps);
    // The layers that run, and the feature layer as the converter writes vision_feature_layer:
    // non-negative, an index into hidden_states (L: the output of layer L-1, e.g. 23 of CLIP-L's 24 for
    // LLaVA-1.5's -2). llama.cpp then runs exactly L layers (models/llava.cpp: max_feature_layer).
    gguf_set_u32(w, "clip.vision.block_count", (uint32_t)L);
    int32_t fl = L;
    gguf_set_arr_i32(w, "clip.vision.feature_layer", &fl, 1);
    float mean[3], std[3];
    for (int i = 0; i < 3; i++) mean[i] = (float)IMAGE_CLIP_MEAN[i], std[i] = (float)IMAGE_CLIP_STD[i];
    gguf_set_arr_f32(w, "clip.vision.image_mean", mean, 3);
    gguf_set_arr_f32(w, "clip.vision.image_std", std, 3);
    gguf_set_bool(w, "clip.use_gelu", strcmp(vc->hidden_act, "gelu") == 0);

    int mat = f32 ? GGML_TYPE_F32 : GGML_TYPE_F16, vec = GGML_TYPE_F32, rc = 0;
#define ADD(NAME, VIEW, TYPE)                                                                                          \
    do {                                                                                                               \
        if (rc == 0 && (VIEW)) rc = add_view(w, &e, NAME, VIEW, TYPE, 0);                                              \
    } while (0)
    // The converter's order: the projector, then CLIPVisionModel's state dict.
    ADD("mm.0.weight", p->pw[0], mat);
    ADD("mm.0.bias", p->pb[0], vec);
    ADD("mm.2.weight", p->pw[1], mat);
    ADD("mm.2.bias", p->pb[1], vec);
    ADD("v.class_embd", p->cls, vec);
    ADD("v.patch_embd.weight", p->patch_w, GGML_TYPE_F16);  // the converter always writes the conv kernel as F16
    ADD("v.position_embd.weight", p->pos_emb, mat);
    ADD("v.pre_ln.weight", p->pre_w, vec);
    ADD("v.pre_ln.bias", p->pre_b, vec);
    char nm[96];
    for (int l = 0; l < L && rc == 0; l++) {
        const clip_layer_params *C = &p->clip[l];
        // The converter names fc1 ffn_down and fc2 ffn_up (its historical naming); clip.cpp swaps them back
        // when ffn_down's rows hold embedding_length values, as fc1's do.
        struct {
            const char *suffix;
            const param_view *v;
            int type;
        } items[] = {
            {"attn_k.weight", C->k_w, mat},   {"attn_k.bias", C->k_b, vec},       {"attn_v.weight", C->v_w, mat},
            {"attn_v.bias", C->v_b, vec},     {"attn_q.weight", C->q_w, mat},     {"attn_q.bias", C->q_b, vec},
            {"attn_out.weight", C->o_w, mat}, {"attn_out.bias", C->o_b, vec},     {"ln1.weight", C->ln1_w, vec},
            {"ln1.bias", C->ln1_b, vec},      {"ffn_down.weight", C->fc1_w, mat}, {"ffn_down.bias", C->fc1_b, vec},
            {"ffn_up.weight", C->fc2_w, mat}, {"ffn_up.bias", C->fc2_b, vec},     {"ln2.weight", C->ln2_w, vec},
            {"ln2.bias", C->ln2_b, vec},
        };
        for (size_t k = 0; k < sizeof items / sizeof items[0]; k++) {
            snprintf(nm, sizeof nm, "v.blk.%d.%s", l, items[k].suffix);
            if (!items[k].v || !items[k].v->used) {
                rc = llava_fail("gguf: vision layer %d has no %s", l, items[k].suffix);
                break;
            }
            ADD(nm, items[k].v, items[k].type);
        }
    }
#undef ADD
    if (rc != 0) {
        gguf_writer_free(w);
        free(e.s);
        return -1;
    }
    return finish(w, &e, path, 0, info);
}
