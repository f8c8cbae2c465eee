// Writing the demo's tokenizers: a SentencePiece BPE model file, and (for the Llama-3 and Qwen2 demos) a Hugging Face
// tokenizer.json. The SentencePiece file's fields are those tok_load reads (and sentencepiece itself needs): pieces
// with scores and types, the trainer spec (BPE, byte fallback, unk/bos/eos/pad ids) and an identity normalizer with a
// dummy prefix.
#include <cjson/cJSON.h>
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

// ---------------------------------------------------------------------------------------------
// A Hugging Face tokenizer.json (byte-level BPE), for the Llama-3- and Qwen2-shaped demos.

// GPT-2's byte-to-character table: the printable bytes stand for themselves, the others for U+0100 onward,
// in byte order. Ids 0..255 follow the same order, so "\n" is 198 and " " ("Ġ") 220 as in GPT-2 and Qwen2.
static void byte_level(int order[256], uint32_t cp[256]) {
    int n = 0, extra = 0;
    for (int b = 0; b < 256; b++)
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) cp[b] = (uint32_t)b, order[n++] = b;
    for (int b = 0; b < 256; b++)
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174))
            cp[b] = 256u + (uint32_t)extra++, order[n++] = b;
}

static void put_utf8(char *o, size_t *n, uint32_t c) {
    if (c < 0x80) o[(*n)++] = (char)c;
    else o[(*n)++] = (char)(0xc0 | (c >> 6)), o[(*n)++] = (char)(0x80 | (c & 0x3f));
}

int tok_write_bpe_json(const char *dir, const char *const *words, int n_words, const char *const *specials,
                       int n_specials, const char *bos, const char *eos) {
    int order[256];
    uint32_t cp[256];
    byte_level(order, cp);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
    int n = 0;
    char buf[256];
    for (int i = 0; i < 256; i++) {
        size_t k = 0;
        put_utf8(buf, &k, cp[order[i]]);
        buf[k] = 0;
        cJSON_AddNumberToObject(vocab, buf, n++);
    }
    // Every word whole (as ignore_merges takes a pre-token found in the vocabulary), so no merges are needed.
    for (int w = 0; w < n_words; w++) {
        size_t k = 0;
        for (const char *p = words[w]; *p && k < sizeof buf - 3; p++) put_utf8(buf, &k, cp[(uint8_t)*p]);
        buf[k] = 0;
        if (!cJSON_GetObjectItemCaseSensitive(vocab, buf)) cJSON_AddNumberToObject(vocab, buf, n++);
    }
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int s = 0; s < n_specials; s++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "id", n + s);
        cJSON_AddStringToObject(e, "content", specials[s]);
        cJSON_AddBoolToObject(e, "single_word", 0);
        cJSON_AddBoolToObject(e, "lstrip", 0);
        cJSON_AddBoolToObject(e, "rstrip", 0);
        cJSON_AddBoolToObject(e, "normalized", 0);
        cJSON_AddBoolToObject(e, "special", 1);
        cJSON_AddItemToArray(added, e);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
    cJSON_AddBoolToObject(pre, "trim_offsets", 1);
    cJSON_AddBoolToObject(pre, "use_regex", 1);
    cJSON *post = cJSON_AddObjectToObject(root, "post_processor");
    if (bos) {  // Llama-3's: BOS before the sequence
        cJSON_AddStringToObject(post, "type", "TemplateProcessing");
        cJSON *single = cJSON_AddArrayToObject(post, "single"), *pair = cJSON_AddArrayToObject(post, "pair");
        cJSON *st = cJSON_CreateObject(), *seq = cJSON_CreateObject();
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(seq, "Sequence"), "type_id", 0);
        cJSON_AddStringToObject(cJSON_GetObjectItem(seq, "Sequence"), "id", "A");
        cJSON *sp = cJSON_AddObjectToObject(st, "SpecialToken");
        cJSON_AddStringToObject(sp, "id", bos);
        cJSON_AddNumberToObject(sp, "type_id", 0);
        cJSON_AddItemToArray(single, st);
        cJSON_AddItemToArray(single, seq);
        cJSON_AddItemToArray(pair, cJSON_Duplicate(st, 1));
        cJSON_AddItemToArray(pair, cJSON_Duplicate(seq, 1));
        cJSON *specials_map = cJSON_AddObjectToObject(post, "special_tokens"), *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "id", bos);
        int bos_id = -1;
        for (int s = 0; s < n_specials; s++)
            if (!strcmp(specials[s], bos)) bos_id = n + s;
        cJSON_AddItemToObject(b, "ids", cJSON_CreateIntArray(&bos_id, 1));
        cJSON_AddItemToObject(b, "tokens", cJSON_CreateStringArray(&bos, 1));
        cJSON_AddItemToObject(specials_map, bos, b);
    } else {  // Qwen2's
        cJSON_AddStringToObject(post, "type", "ByteLevel");
        cJSON_AddBoolToObject(post, "add_prefix_space", 0);
        cJSON_AddBoolToObject(post, "trim_offsets", 0);
        cJSON_AddBoolToObject(post, "use_regex", 0);
    }
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddBoolToObject(dec, "add_prefix_space", 1);
    cJSON_AddBoolToObject(dec, "trim_offsets", 1);
    cJSON_AddBoolToObject(dec, "use_regex", 1);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", 1);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddArrayToObject(model, "merges");
    cJSON_AddItemToObject(root, "model", model);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char *path = path_join(dir, "tokenizer.json");
    int rc = write_file_atomic(path, text, strlen(text));
    free(path);
    free(text);
    cJSON *tc = cJSON_CreateObject();
    if (bos) cJSON_AddStringToObject(tc, "bos_token", bos);
    else cJSON_AddNullToObject(tc, "bos_token");
    cJSON_AddStringToObject(tc, "eos_token", eos);
    cJSON_AddStringToObject(tc, "tokenizer_class", "PreTrainedTokenizerFast");
    text = cJSON_Print(tc);
    cJSON_Delete(tc);
    path = path_join(dir, "tokenizer_config.json");
    if (rc == 0) rc = write_file_atomic(path, text, strlen(text));
    free(path);
    free(text);
    return rc;
}
