// Writing a SentencePiece BPE model file: what the demo's tokenizer is made of. The fields are
// those tok_load reads (and sentencepiece itself needs): pieces with scores and types, the trainer
// spec (BPE, byte fallback, unk/bos/eos/pad ids) and an identity normalizer with a dummy prefix.
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "demo.h"

typedef struct {
    uint8_t *b;
    size_t n, cap;
} pb;

static void put(pb *p, const void *d, size_t n) {
    if (p->n + n > p->cap) {
        p->cap = (p->n + n) * 2 + 64;
        p->b = xrealloc(p->b, p->cap);
    }
    memcpy(p->b + p->n, d, n);
    p->n += n;
}

static void varint(pb *p, uint64_t v) {
    uint8_t t[10];
    int k = 0;
    do {
        t[k++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(p, t, (size_t)k);
}

static void key(pb *p, int field, int wt) { varint(p, ((uint64_t)field << 3) | (uint64_t)wt); }
static void field_varint(pb *p, int field, int64_t v) { key(p, field, 0), varint(p, (uint64_t)v); }
static void field_bytes(pb *p, int field, const void *d, size_t n) { key(p, field, 2), varint(p, n), put(p, d, n); }

static void field_float(pb *p, int field, float f) {
    key(p, field, 5);
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    put(p, le, 4);
}

int tok_write_model(const char *path, const char *const *pieces, const float *scores, const int *types, int n) {
    pb m = {0}, sub = {0};
    for (int i = 0; i < n; i++) {
        sub.n = 0;
        field_bytes(&sub, 1, pieces[i], strlen(pieces[i]));
        field_float(&sub, 2, scores[i]);
        field_varint(&sub, 3, types[i]);
        field_bytes(&m, 1, sub.b, sub.n);
    }
    sub.n = 0;                   // TrainerSpec
    field_varint(&sub, 3, 2);    // model_type BPE
    field_varint(&sub, 4, n);    // vocab_size
    field_varint(&sub, 35, 1);   // byte_fallback
    field_varint(&sub, 40, 0);   // unk_id
    field_varint(&sub, 41, 1);   // bos_id
    field_varint(&sub, 42, 2);   // eos_id
    field_varint(&sub, 43, -1);  // pad_id (sign-extended to ten bytes, as protobuf writes int32 -1)
    field_bytes(&m, 2, sub.b, sub.n);
    sub.n = 0;  // NormalizerSpec
    field_bytes(&sub, 1, "identity", 8);
    field_varint(&sub, 3, 1);  // add_dummy_prefix
    field_varint(&sub, 4, 0);  // remove_extra_whitespaces
    field_varint(&sub, 5, 1);  // escape_whitespaces
    field_bytes(&m, 3, sub.b, sub.n);
    int rc = write_file_atomic(path, m.b, m.n);
    free(m.b);
    free(sub.b);
    return rc;
}
