// SentencePiece BPE and the HF slow LlamaTokenizer rules, in C (see tokenizer.h and docs/tokenizer.md).
//
// The encoder follows sentencepiece v0.1.99/v0.2.0 (identical here): normalizer.cc (Normalize, NormalizePrefix),
// bpe_model.cc (SampleEncode with alpha = 0), sentencepiece_processor.cc (PopulateSentencePieceText, Decode) and
// model_interface.cc (InitializePieces, PieceToId). The HF layer follows transformers 4.31.0 and 4.37.2
// (tokenization_utils.py tokenize, models/llama/tokenization_llama.py tokenize/_tokenize).
#include "tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "common/util.h"
#include "strbuf.h"

#define TOK_MAX_FILE ((size_t)64 << 20)
#define TOK_MAX_PIECES (1 << 22)

static const char SPACE_SYM[] = "\xe2\x96\x81";              // U+2581 LOWER ONE EIGHTH BLOCK, sentencepiece's space
static const char REPLACEMENT[] = "\xef\xbf\xbd";            // U+FFFD
static const char DEFAULT_UNK_SURFACE[] = " \xe2\x81\x87 ";  // " ⁇ "

const char *tok_mode_name(tok_mode m) {
    switch (m) {
    case TOK_LEGACY: return "legacy";
    case TOK_HF431: return "hf431";
    case TOK_HF437: return "hf437";
    }
    return "?";
}

int tok_mode_parse(const char *s, tok_mode *out) {
    if (strcmp(s, "legacy") == 0) *out = TOK_LEGACY;
    else if (strcmp(s, "hf431") == 0 || strcmp(s, "release") == 0) *out = TOK_HF431;
    else if (strcmp(s, "hf437") == 0 || strcmp(s, "head") == 0) *out = TOK_HF437;
    else return llava_fail("unknown tokenizer mode \"%s\" (legacy, hf431 or hf437)", s);
    return 0;
}

void tok_ids_push(tok_ids *a, int32_t id) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->v = xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = id;
}

void tok_ids_free(tok_ids *a) {
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

// ---------------------------------------------------------------------------------------------
// UTF-8 exactly as sentencepiece's string_util::DecodeUTF8 / IsValidDecodeUTF8 judge it.

// Length of the valid character at s, or 0 when sentencepiece would call it malformed (it then consumes 1 byte).
static size_t sp_utf8_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    if (n >= 2 && (c & 0xe0) == 0xc0) {
        uint32_t cp = ((uint32_t)(c & 0x1f) << 6) | (s[1] & 0x3f);
        if ((s[1] & 0xc0) == 0x80 && cp >= 0x80) return 2;
    } else if (n >= 3 && (c & 0xf0) == 0xe0) {
        uint32_t cp = ((uint32_t)(c & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
        if ((s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80 && cp >= 0x800 && (cp < 0xd800 || cp >= 0xe000)) return 3;
    } else if (n >= 4 && (c & 0xf8) == 0xf0) {
        uint32_t cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) | ((uint32_t)(s[2] & 0x3f) << 6) |
                      (s[3] & 0x3f);
        if ((s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 && cp >= 0x10000 && cp <= 0x10ffff)
            return 4;
    }
    return 0;
}

// string_util::OneCharLen: the length a lead byte announces, without validation.
static size_t one_char_len(uint8_t c) { return (size_t) "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4]; }

// ---------------------------------------------------------------------------------------------
// Hash tables from piece strings to ids

typedef struct {
    uint32_t id1;  // id + 1; 0 = empty
    uint32_t h;
} hslot;

typedef struct {
    hslot *slot;
    uint32_t mask;
} htab;

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, p, 8);
        h = (h ^ k) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t k = 0;
    memcpy(&k, p, n);
    h = (h ^ k) * 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

struct tokenizer {
    int n;
    char *pool;  // every piece string, each followed by a NUL
    uint32_t *off, *len;
    float *score;
    uint8_t *type;
    htab normal;    // NORMAL, USER_DEFINED, UNUSED: what BPE merges into
    htab reserved;  // CONTROL, UNKNOWN, BYTE
    uint32_t max_normal_len;
    // BPE merges as (left piece, right piece) -> merged piece, for every split of every piece into two pieces:
    // the same answer as looking the concatenated string up, without hashing strings.
    struct pslot {
        uint64_t key;  // (left + 1) << 32 | (right + 1); 0 = empty
        int32_t id;
    } * pair;
    uint64_t pair_mask;
    int32_t *normal_out;        // a normal piece's id as PieceToId sees it (a reserved piece of the same text wins)
    int32_t byte_char_id[256];  // the normal piece of a one-byte character, or -1
    uint32_t *rank;             // dense rank of each piece's score, 0 = highest
    int unk_id;
    int byte_fallback;
    int byte_id[256];
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    char *unk_surface;
    // User-defined symbols: never split, never merged.
    int *user;
    int n_user;
    uint8_t user_first[256];
    // The HF layer: special strings split out of the text, and their ids.
    struct {
        const char *s;
        size_t len;
        int id;
    } special[3];
    uint8_t special_first[256];
    int bos_id, eos_id;
    int unk_len_nodummy;  // len(sp.encode("<unk>")) without the dummy prefix (transformers 4.37's unk_token_length)
    // A tokenizer.json (byte-level BPE) instead: every function below answers from it (see tokenizer.h).
    bpe_tokenizer *bpe;
};

static int ht_find(const tokenizer *t, const htab *h, const char *s, size_t n) {
    uint64_t hv = hash_bytes((const uint8_t *)s, n);
    uint32_t h32 = (uint32_t)(hv >> 32), i = (uint32_t)hv & h->mask;
    for (;;) {
        const hslot *e = &h->slot[i];
        if (!e->id1) return -1;
        if (e->h == h32) {
            int id = (int)e->id1 - 1;
            if (t->len[id] == n && memcmp(t->pool + t->off[id], s, n) == 0) return id;
        }
        i = (i + 1) & h->mask;
    }
}

// Returns 0, or 1 when the string is already there.
static int ht_insert(tokenizer *t, htab *h, int id) {
    const char *s = t->pool + t->off[id];
    size_t n = t->len[id];
    if (ht_find(t, h, s, n) >= 0) return 1;
    uint64_t hv = hash_bytes((const uint8_t *)s, n);
    uint32_t i = (uint32_t)hv & h->mask;
    while (h->slot[i].id1) i = (i + 1) & h->mask;
    h->slot[i].id1 = (uint32_t)id + 1;
    h->slot[i].h = (uint32_t)(hv >> 32);
    return 0;
}

static void ht_init(htab *h, int n) {
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2 + 2) cap *= 2;
    h->slot = xcalloc(cap, sizeof *h->slot);
    h->mask = cap - 1;
}

int tok_n_pieces(const tokenizer *t) { return t->bpe ? bpe_id_limit(t->bpe) : t->n; }
int tok_len(const tokenizer *t) { return t->bpe ? bpe_vocab_size(t->bpe) : t->n; }
int tok_unk_id(const tokenizer *t) { return t->bpe ? bpe_unk_id(t->bpe) : t->unk_id; }
int tok_bos_id(const tokenizer *t) { return t->bpe ? bpe_bos_id(t->bpe) : t->bos_id; }
int tok_eos_id(const tokenizer *t) { return t->bpe ? bpe_eos_id(t->bpe) : t->eos_id; }
int tok_pad_id(const tokenizer *t) { return t->bpe ? bpe_unk_id(t->bpe) : t->special[2].id; }
const bpe_tokenizer *tok_bpe(const tokenizer *t) { return t->bpe; }

const char *tok_id_to_piece(const tokenizer *t, int id, size_t *len) {
    if (t->bpe) return bpe_id_to_token(t->bpe, id, len);
    if (id < 0 || id >= t->n) return NULL;
    if (len) *len = t->len[id];
    return t->pool + t->off[id];
}

int tok_piece_type(const tokenizer *t, int id) {
    if (t->bpe) return !bpe_id_to_token(t->bpe, id, NULL) ? 0 : bpe_is_special(t->bpe, id) ? TOK_CONTROL : TOK_NORMAL;
    return id < 0 || id >= t->n ? 0 : t->type[id];
}
float tok_piece_score(const tokenizer *t, int id) { return t->bpe || id < 0 || id >= t->n ? 0.0f : t->score[id]; }

int tok_piece_to_id(const tokenizer *t, const char *s, size_t len) {
    if (t->bpe) {  // convert_tokens_to_ids: the token, else the unknown token's id (-1 when there is none)
        int id = bpe_token_to_id(t->bpe, s, len);
        return id >= 0 ? id : bpe_unk_id(t->bpe);
    }
    int id = ht_find(t, &t->reserved, s, len);
    if (id >= 0) return id;
    id = ht_find(t, &t->normal, s, len);
    return id >= 0 ? id : t->unk_id;
}

static inline uint64_t pair_hash(uint64_t key) {
    key *= 0x9e3779b97f4a7c15ull;
    return key ^ (key >> 29);
}

static inline int pair_find(const tokenizer *t, int l, int r) {
    uint64_t key = ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1);
    uint64_t i = pair_hash(key) & t->pair_mask;
    for (;;) {
        const struct pslot *e = &t->pair[i];
        if (e->key == key) return e->id;
        if (!e->key) return -1;
        i = (i + 1) & t->pair_mask;
    }
}

static int by_score_desc(const void *a, const void *b, void *ctx) {
    const tokenizer *t = ctx;
    float x = t->score[*(const int *)a], y = t->score[*(const int *)b];
    return x > y ? -1 : x < y ? 1 : 0;
}

// Fills t->pair from the normal pieces (run once at load).
static void build_pairs(tokenizer *t) {
    size_t count = 0, cap = 16;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            while (cap < count * 2 + 2) cap *= 2;
            t->pair = xcalloc(cap, sizeof *t->pair);
            t->pair_mask = cap - 1;
        }
        for (int id = 0; id < t->n; id++) {
            int ty = t->type[id];
            if (!(ty == TOK_NORMAL || ty == TOK_USER_DEFINED || ty == TOK_UNUSED)) continue;
            const char *ps = t->pool + t->off[id];
            for (uint32_t k = 1; k < t->len[id]; k++) {
                int l = ht_find(t, &t->normal, ps, k);
                if (l < 0) continue;
                int r = ht_find(t, &t->normal, ps + k, t->len[id] - k);
                if (r < 0) continue;
                if (pass == 0) {
                    count++;
                    continue;
                }
                uint64_t key = ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1);
                uint64_t i = pair_hash(key) & t->pair_mask;
                while (t->pair[i].key) i = (i + 1) & t->pair_mask;
                t->pair[i].key = key;
                t->pair[i].id = id;
            }
        }
    }
    // Score ranks: sort the ids by score, highest first; equal scores share a rank.
    int *order = xmalloc((size_t)t->n * sizeof *order);
    for (int id = 0; id < t->n; id++) order[id] = id;
    qsort_r(order, (size_t)t->n, sizeof *order, by_score_desc, t);
    t->rank = xmalloc((size_t)t->n * sizeof *t->rank);
    uint32_t rank = 0;
    for (int k = 0; k < t->n; k++) {
        if (k > 0 && t->score[order[k]] != t->score[order[k - 1]]) rank++;
        t->rank[order[k]] = rank;
    }
    free(order);
    t->normal_out = xmalloc((size_t)t->n * sizeof *t->normal_out);
    for (int id = 0; id < t->n; id++) {
        int r = ht_find(t, &t->reserved, t->pool + t->off[id], t->len[id]);
        t->normal_out[id] = r >= 0 ? r : id;
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_char_id[b] = ht_find(t, &t->normal, &c, 1);
    }
}

void tok_free(tokenizer *t) {
    if (!t) return;
    bpe_free(t->bpe);
    free(t->pair);
    free(t->normal_out);
    free(t->rank);
    free(t->pool);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->normal.slot);
    free(t->reserved.slot);
    free(t->unk_surface);
    free(t->user);
    free(t);
}

// ---------------------------------------------------------------------------------------------
// Protobuf wire format (spec model-and-formats.md §5.1), every length checked

typedef struct {
    const uint8_t *p, *end;
} pbuf;

typedef struct {
    uint32_t field;
    int wt;
    uint64_t v;           // wire types 0, 1, 5
    const uint8_t *data;  // wire type 2
    size_t len;
} pfield;

static int pb_varint(pbuf *b, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (b->p >= b->end) return llava_fail("truncated varint");
        uint8_t c = *b->p++;
        if (i == 9 && c > 1) return llava_fail("varint longer than 64 bits");
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return llava_fail("varint longer than 10 bytes");
}

static int pb_next(pbuf *b, pfield *f) {
    uint64_t key = 0;
    if (pb_varint(b, &key)) return -1;
    if ((key >> 3) == 0 || (key >> 3) > 536870911u)
        return llava_fail("invalid field number %llu", (unsigned long long)(key >> 3));
    f->field = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    size_t left = (size_t)(b->end - b->p);
    switch (f->wt) {
    case 0: return pb_varint(b, &f->v);
    case 1:
        if (left < 8) return llava_fail("field %u: truncated 64-bit value", f->field);
        f->v = 0;
        for (int i = 7; i >= 0; i--) f->v = (f->v << 8) | b->p[i];
        b->p += 8;
        return 0;
    case 5:
        if (left < 4) return llava_fail("field %u: truncated 32-bit value", f->field);
        f->v = (uint64_t)b->p[0] | (uint64_t)b->p[1] << 8 | (uint64_t)b->p[2] << 16 | (uint64_t)b->p[3] << 24;
        b->p += 4;
        return 0;
    case 2: {
        uint64_t n = 0;
        if (pb_varint(b, &n)) return -1;
        if (n > (uint64_t)(b->end - b->p))
            return llava_fail("field %u: length %llu runs past the end of its message (%zu bytes left)", f->field,
                              (unsigned long long)n, (size_t)(b->end - b->p));
        f->data = b->p;
        f->len = (size_t)n;
        b->p += n;
        return 0;
    }
    default: return llava_fail("field %u: unsupported wire type %d", f->field, f->wt);
    }
}

static int pb_want(const pfield *f, int wt, const char *name) {
    if (f->wt != wt) return llava_fail("%s (field %u) has wire type %d, expected %d", name, f->field, f->wt, wt);
    return 0;
}

typedef struct {
    const uint8_t *s;
    size_t len;
    int set;
} pstr;

typedef struct {
    int model_type;  // UNIGRAM = 1 (default), BPE = 2, WORD = 3, CHAR = 4
    int ws_suffix, byte_fallback;
    pstr unk_surface, unk_piece, bos_piece, eos_piece;
} trainer_spec;

typedef struct {
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    size_t charsmap_len;
    pstr name;
} normalizer_spec;

static int parse_trainer(const uint8_t *d, size_t n, trainer_spec *ts) {
    pbuf b = {d, d + n};
    pfield f;
    while (b.p < b.end) {
        if (pb_next(&b, &f)) return -1;
        switch (f.field) {
        case 3:
            if (pb_want(&f, 0, "trainer_spec.model_type")) return -1;
            ts->model_type = (int)(int32_t)f.v;
            break;
        case 24:
            if (pb_want(&f, 0, "trainer_spec.treat_whitespace_as_suffix")) return -1;
            ts->ws_suffix = f.v != 0;
            break;
        case 35:
            if (pb_want(&f, 0, "trainer_spec.byte_fallback")) return -1;
            ts->byte_fallback = f.v != 0;
            break;
        case 44:
        case 45:
        case 46:
        case 47: {
            static const char *names[] = {"unk_surface", "unk_piece", "bos_piece", "eos_piece"};
            if (pb_want(&f, 2, names[f.field - 44])) return -1;
            pstr *s = f.field == 44   ? &ts->unk_surface
                      : f.field == 45 ? &ts->unk_piece
                      : f.field == 46 ? &ts->bos_piece
                                      : &ts->eos_piece;
            s->s = f.data;
            s->len = f.len;
            s->set = 1;
            break;
        }
        default: break;  // training-only options
        }
    }
    return 0;
}

static int parse_normalizer(const uint8_t *d, size_t n, normalizer_spec *ns) {
    pbuf b = {d, d + n};
    pfield f;
    while (b.p < b.end) {
        if (pb_next(&b, &f)) return -1;
        switch (f.field) {
        case 1:
            if (pb_want(&f, 2, "normalizer_spec.name")) return -1;
            ns->name.s = f.data;
            ns->name.len = f.len;
            ns->name.set = 1;
            break;
        case 2:
            if (pb_want(&f, 2, "normalizer_spec.precompiled_charsmap")) return -1;
            ns->charsmap_len = f.len;
            break;
        case 3:
            if (pb_want(&f, 0, "normalizer_spec.add_dummy_prefix")) return -1;
            ns->add_dummy_prefix = f.v != 0;
            break;
        case 4:
            if (pb_want(&f, 0, "normalizer_spec.remove_extra_whitespaces")) return -1;
            ns->remove_extra_ws = f.v != 0;
            break;
        case 5:
            if (pb_want(&f, 0, "normalizer_spec.escape_whitespaces")) return -1;
            ns->escape_ws = f.v != 0;
            break;
        default: break;
        }
    }
    return 0;
}

static int piece_to_byte(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;  // ByteToPiece is "%02X"
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static int count_pieces(const tokenizer *t, const char *text, size_t len, int add_dummy);

static tokenizer *wrap_bpe(bpe_tokenizer *b) {
    if (!b) return NULL;
    tokenizer *t = xcalloc(1, sizeof *t);
    t->bpe = b;
    return t;
}

// A tokenizer.json is a JSON object; a tokenizer.model is a protobuf, whose first byte is a field tag (never '{').
// Leading whitespace is not skipped: the tag of a model's first field is 0x0a, a newline.
static int looks_like_json(const char *s, size_t n) {
    size_t i = n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    return i < n && s[i] == '{';
}

tokenizer *tok_load_mem(const void *data, size_t size) {
    if (looks_like_json(data, size)) return wrap_bpe(bpe_load_mem(data, size, NULL, 0));
    const uint8_t *d = data;
    tokenizer *t = xcalloc(1, sizeof *t);
    trainer_spec ts = {.model_type = 1};
    normalizer_spec ns = {.add_dummy_prefix = 1, .remove_extra_ws = 1, .escape_ws = 1};
    normalizer_spec dns = {.add_dummy_prefix = 1, .remove_extra_ws = 1, .escape_ws = 1};
    // Pass 1: count pieces and their bytes, read the specs.
    pbuf b = {d, d + size};
    pfield f;
    size_t pool_size = 0;
    int n = 0;
    while (b.p < b.end) {
        if (pb_next(&b, &f)) goto fail;
        if (f.field == 1) {
            if (pb_want(&f, 2, "pieces")) goto fail;
            if (n >= TOK_MAX_PIECES) {
                llava_fail("more than %d pieces", TOK_MAX_PIECES);
                goto fail;
            }
            pbuf pb = {f.data, f.data + f.len};
            pfield g;
            while (pb.p < pb.end) {
                if (pb_next(&pb, &g)) {
                    llava_fail_ctx("piece %d", n);
                    goto fail;
                }
                if (g.field == 1) {
                    if (pb_want(&g, 2, "piece")) goto fail;
                    pool_size += g.len + 1;
                }
            }
            n++;
        } else if (f.field == 2) {
            if (pb_want(&f, 2, "trainer_spec") || parse_trainer(f.data, f.len, &ts)) goto fail;
        } else if (f.field == 3) {
            if (pb_want(&f, 2, "normalizer_spec") || parse_normalizer(f.data, f.len, &ns)) goto fail;
        } else if (f.field == 5) {
            if (pb_want(&f, 2, "denormalizer_spec") || parse_normalizer(f.data, f.len, &dns)) goto fail;
        }
    }
    if (n == 0) {
        llava_fail("no pieces (not a SentencePiece model?)");
        goto fail;
    }
    if (ts.model_type != 2) {
        llava_fail("model_type %d is not BPE (2): only BPE models are supported", ts.model_type);
        goto fail;
    }
    if (ns.charsmap_len) {
        llava_fail("normalization rule \"%.*s\" has a character map; only the identity rule is supported",
                   (int)(ns.name.set ? ns.name.len : 0), ns.name.set ? (const char *)ns.name.s : "");
        goto fail;
    }
    if (dns.charsmap_len) {
        llava_fail("a denormalizer character map is not supported");
        goto fail;
    }
    if (ts.ws_suffix) {
        llava_fail("treat_whitespace_as_suffix is not supported");
        goto fail;
    }
    // Pass 2: the pieces.
    t->n = n;
    t->pool = xmalloc(pool_size + 1);
    t->off = xcalloc((size_t)n, sizeof *t->off);
    t->len = xcalloc((size_t)n, sizeof *t->len);
    t->score = xcalloc((size_t)n, sizeof *t->score);
    t->type = xcalloc((size_t)n, sizeof *t->type);
    size_t used = 0;
    int i = 0;
    b.p = d;
    while (b.p < b.end) {
        if (pb_next(&b, &f)) goto fail;
        if (f.field != 1) continue;
        pbuf pb = {f.data, f.data + f.len};
        pfield g;
        int has_piece = 0;
        t->type[i] = TOK_NORMAL;
        while (pb.p < pb.end) {
            if (pb_next(&pb, &g)) goto fail;
            if (g.field == 1) {  // repeated occurrences: the last one wins, as in protobuf
                t->off[i] = (uint32_t)used;
                t->len[i] = (uint32_t)g.len;
                memcpy(t->pool + used, g.data, g.len);
                used += g.len;
                t->pool[used++] = 0;
                has_piece = 1;
            } else if (g.field == 2) {
                if (pb_want(&g, 5, "score")) goto fail;
                uint32_t u = (uint32_t)g.v;
                float s;
                memcpy(&s, &u, 4);
                if (!isfinite(s)) {
                    llava_fail("piece %d: score is not finite", i);
                    goto fail;
                }
                t->score[i] = s;
            } else if (g.field == 3) {
                if (pb_want(&g, 0, "type")) goto fail;
                if (g.v < 1 || g.v > 6) {
                    llava_fail("piece %d: unknown type %llu", i, (unsigned long long)g.v);
                    goto fail;
                }
                t->type[i] = (uint8_t)g.v;
            }
        }
        if (!has_piece || t->len[i] == 0) {
            llava_fail("piece %d is empty", i);
            goto fail;
        }
        i++;
    }
    // The checks of model_interface.cc InitializePieces.
    ht_init(&t->normal, n);
    ht_init(&t->reserved, n);
    t->unk_id = -1;
    int byte_seen[256] = {0};
    for (i = 0; i < n; i++) {
        int ty = t->type[i];
        int normal = ty == TOK_NORMAL || ty == TOK_USER_DEFINED || ty == TOK_UNUSED;
        if (ht_insert(t, normal ? &t->normal : &t->reserved, i)) {
            llava_fail("piece %d \"%.40s\" is already defined", i, t->pool + t->off[i]);
            goto fail;
        }
        if (normal && t->len[i] > t->max_normal_len) t->max_normal_len = t->len[i];
        if (ty == TOK_UNKNOWN) {
            if (t->unk_id >= 0) {
                llava_fail("unknown piece defined twice (%d and %d)", t->unk_id, i);
                goto fail;
            }
            t->unk_id = i;
        }
        if (ty == TOK_BYTE) {
            if (!ts.byte_fallback) {
                llava_fail("byte piece %d found although byte_fallback is false", i);
                goto fail;
            }
            int v = piece_to_byte(t->pool + t->off[i], t->len[i]);
            if (v < 0) {
                llava_fail("byte piece %d \"%.40s\" is invalid", i, t->pool + t->off[i]);
                goto fail;
            }
            byte_seen[v] = 1;
        }
        if (ty == TOK_USER_DEFINED) t->n_user++;
    }
    if (t->unk_id < 0) {
        llava_fail("no unknown piece");
        goto fail;
    }
    t->byte_fallback = ts.byte_fallback;
    if (t->byte_fallback) {
        for (int v = 0; v < 256; v++) {
            if (!byte_seen[v]) {
                llava_fail("byte_fallback is true but byte piece <0x%02X> is missing", v);
                goto fail;
            }
            char p[8];
            snprintf(p, sizeof p, "<0x%02X>", v);
            t->byte_id[v] = tok_piece_to_id(t, p, 6);
        }
    }
    build_pairs(t);
    t->user = xcalloc((size_t)t->n_user + 1, sizeof *t->user);
    t->n_user = 0;
    for (i = 0; i < n; i++) {
        if (t->type[i] == TOK_USER_DEFINED) {
            t->user[t->n_user++] = i;
            t->user_first[(uint8_t)t->pool[t->off[i]]] = 1;
        }
    }
    t->add_dummy_prefix = ns.add_dummy_prefix;
    t->remove_extra_ws = ns.remove_extra_ws;
    t->escape_ws = ns.escape_ws;
    if (ts.unk_surface.set) {
        t->unk_surface = xmalloc(ts.unk_surface.len + 1);
        memcpy(t->unk_surface, ts.unk_surface.s, ts.unk_surface.len);
        t->unk_surface[ts.unk_surface.len] = 0;
    } else {
        t->unk_surface = xstrdup(DEFAULT_UNK_SURFACE);
    }
    // HF LlamaTokenizer: bos "<s>", eos "</s>", unk "<unk>" (the trainer_spec's piece names, whose defaults these
    // are), split out of the text and mapped to ids with piece_to_id.
    {
        const pstr *names[3] = {&ts.bos_piece, &ts.eos_piece, &ts.unk_piece};
        static const char *defaults[3] = {"<s>", "</s>", "<unk>"};
        for (int k = 0; k < 3; k++) {
            const char *s = defaults[k];
            size_t len = strlen(s);
            if (names[k]->set) {
                s = (const char *)names[k]->s;
                len = names[k]->len;
            }
            if (len == 0) {
                llava_fail("empty special piece name");
                goto fail;
            }
            // Keep a copy inside the pool's lifetime: look it up as a piece; fall back to a private copy.
            int id = tok_piece_to_id(t, s, len);
            size_t plen = 0;
            const char *ps = tok_id_to_piece(t, id, &plen);
            if (plen == len && memcmp(ps, s, len) == 0) {
                t->special[k].s = ps;
            } else {
                llava_fail("special token \"%.*s\" is not a piece of this model", (int)len, s);
                goto fail;
            }
            t->special[k].len = len;
            t->special[k].id = id;
            t->special_first[(uint8_t)s[0]] = 1;
        }
        t->bos_id = t->special[0].id;
        t->eos_id = t->special[1].id;
    }
    t->unk_len_nodummy = count_pieces(t, t->special[2].s, t->special[2].len, 0);
    if (t->unk_len_nodummy < 0) goto fail;
    return t;
fail:
    llava_fail_ctx("tokenizer model");
    tok_free(t);
    return NULL;
}

tokenizer *tok_load(const char *path) {
    size_t len;
    char head[64];
    FILE *f = fopen(path, "rb");
    size_t hn = f ? fread(head, 1, sizeof head, f) : 0;
    if (f) fclose(f);
    size_t pl = strlen(path);
    if (looks_like_json(head, hn) || (pl >= 5 && !strcmp(path + pl - 5, ".json"))) return wrap_bpe(bpe_load(path));
    char *data = read_file(path, TOK_MAX_FILE, &len);
    if (!data) return NULL;
    tokenizer *t = tok_load_mem(data, len);
    free(data);
    if (!t) llava_fail_ctx("%s", path);
    return t;
}

char *tok_default_path(const char *dir) {
    char *sp = path_join(dir, "tokenizer.model");
    if (file_exists(sp)) return sp;
    char *js = path_join(dir, "tokenizer.json");
    if (file_exists(js)) {
        free(sp);
        return js;
    }
    free(js);
    return sp;
}

// ---------------------------------------------------------------------------------------------
// Encoding

// Scratch space of one encode call (a tokenizer is shared between threads; this is not).
typedef struct {
    strbuf norm;  // the normalized text
    struct sym {
        int32_t prev, next;
        uint32_t off, len;
        int32_t id;  // the normal piece this symbol is, or -1
        uint8_t freeze;
    } * sym;
    size_t nsym, capsym;
    struct pair {
        uint64_t key;  // rank of the merged piece's score << 32 | left symbol: the smallest key merges first
        uint32_t size;
        int32_t id;  // the piece the pair merges into
    } * heap;
    size_t nheap, capheap;
    struct rev {
        int32_t id;
        uint32_t left_len;
    } * rev;  // resegmentation of UNUSED pieces (bpe_model.cc rev_merge), keyed by piece id
    size_t nrev, caprev;
    // Output pieces: a span of `norm` (kind 0) or the vocabulary string of `id` (kind 1, byte pieces).
    struct opiece {
        int32_t id;
        uint32_t off, len;
        uint8_t kind;
    } * out;
    size_t nout, capout;
    struct opiece *raw;  // BPE output before byte fallback
    size_t capraw;
    strbuf tmp;  // HF layer: rewritten text
} enc;

static void enc_free(enc *e) {
    free(e->raw);
    free(e->norm.p);
    free(e->sym);
    free(e->heap);
    free(e->rev);
    free(e->out);
    free(e->tmp.p);
}

static size_t user_match(const tokenizer *t, const uint8_t *s, size_t n) {
    size_t best = 0;
    for (int k = 0; k < t->n_user; k++) {
        int id = t->user[k];
        size_t l = t->len[id];
        if (l > best && l <= n && memcmp(s, t->pool + t->off[id], l) == 0) best = l;
    }
    return best;
}

// normalizer.cc Normalize with an empty character map.
static void normalize(const tokenizer *t, const uint8_t *s, size_t n, int add_dummy, strbuf *o) {
    // Every input byte becomes at most 3 output bytes (a space or a bad byte), plus the dummy prefix.
    o->n = 0;
    sb_reserve(o, n * 3 + 4);
    o->p[0] = 0;
    if (n == 0) return;
    size_t i = 0;
    if (t->remove_extra_ws) {
        while (i < n) {
            size_t u = t->n_user && t->user_first[s[i]] ? user_match(t, s + i, n - i) : 0;
            if (u ? !(u == 1 && s[i] == ' ') : s[i] != ' ') break;
            i += u ? u : 1;
        }
        if (i == n) return;
    }
    uint8_t *w = (uint8_t *)o->p;
    if (add_dummy) {
        if (t->escape_ws) {
            memcpy(w, SPACE_SYM, 3);
            w += 3;
        } else {
            *w++ = ' ';
        }
    }
    int prev_space = t->remove_extra_ws;
    const int esc = t->escape_ws, plain = !t->remove_extra_ws && t->n_user == 0;
    while (i < n) {
        const uint8_t *p = s + i;
        if (plain && *p < 0x80) {  // the common case: ASCII, nothing to strip, no user-defined symbols
            if (*p == ' ' && esc) {
                memcpy(w, SPACE_SYM, 3);
                w += 3;
            } else {
                *w++ = *p;
            }
            i++;
            continue;
        }
        size_t take, plen;
        size_t u = t->n_user && t->user_first[*p] ? user_match(t, p, n - i) : 0;
        if (u) {
            take = plen = u;
        } else {
            plen = sp_utf8_len(p, n - i);
            take = plen ? plen : 1;
            if (!plen) {
                p = (const uint8_t *)REPLACEMENT;
                plen = 3;
            }
        }
        if (prev_space)
            while (plen && *p == ' ') p++, plen--;
        if (plen) {
            for (size_t k = 0; k < plen; k++) {
                if (esc && p[k] == ' ') {
                    memcpy(w, SPACE_SYM, 3);
                    w += 3;
                } else {
                    *w++ = p[k];
                }
            }
            prev_space = p[plen - 1] == ' ';
        }
        i += take;
        if (!t->remove_extra_ws) prev_space = 0;
    }
    o->n = (size_t)(w - (uint8_t *)o->p);
    o->p[o->n] = 0;
    if (t->remove_extra_ws) {
        const char *sp = esc ? SPACE_SYM : " ";
        size_t sl = esc ? 3 : 1;
        while (o->n >= sl && memcmp(o->p + o->n - sl, sp, sl) == 0) o->n -= sl;
        o->p[o->n] = 0;
    }
}

// sentencepiece's agenda: larger score first; on a tie, the smaller left index. Scores are replaced by their
// dense rank (equal scores, equal rank), so one integer comparison decides.
static inline int pair_before(const struct pair *a, const struct pair *b) { return a->key < b->key; }

static void heap_push(enc *e, struct pair p) {
    if (e->nheap == e->capheap) {
        e->capheap = e->capheap ? e->capheap * 2 : 256;
        e->heap = xrealloc(e->heap, e->capheap * sizeof *e->heap);
    }
    size_t i = e->nheap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &e->heap[parent])) break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = p;
}

static struct pair heap_pop(enc *e) {
    struct pair top = e->heap[0], last = e->heap[--e->nheap];
    size_t i = 0, n = e->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&e->heap[c + 1], &e->heap[c])) c++;
        if (!pair_before(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

static void maybe_add_pair(const tokenizer *t, enc *e, int left, int right) {
    if (left < 0 || right < 0) return;
    const struct sym *l = &e->sym[left], *r = &e->sym[right];
    if (l->freeze || r->freeze) return;
    uint32_t size = l->len + r->len;
    int id;
    if (l->id >= 0 && r->id >= 0) {
        id = pair_find(t, l->id, r->id);  // exactly the pieces whose string is l + r
    } else {
        if (size > t->max_normal_len) return;
        id = ht_find(t, &t->normal, e->norm.p + l->off, size);
    }
    if (id < 0) return;
    heap_push(e, (struct pair){(uint64_t)t->rank[id] << 32 | (uint32_t)left, size, id});
    if (t->type[id] == TOK_UNUSED) {  // remember how it was made, to split it again at the end
        size_t k = 0;
        while (k < e->nrev && e->rev[k].id != id) k++;
        if (k == e->nrev) {
            if (e->nrev == e->caprev) {
                e->caprev = e->caprev ? e->caprev * 2 : 16;
                e->rev = xrealloc(e->rev, e->caprev * sizeof *e->rev);
            }
            e->nrev++;
        }
        e->rev[k] = (struct rev){id, l->len};
    }
}

static void out_push(enc *e, int32_t id, uint32_t off, uint32_t len, uint8_t kind) {
    if (e->nout == e->capout) {
        e->capout = e->capout ? e->capout * 2 : 256;
        e->out = xrealloc(e->out, e->capout * sizeof *e->out);
    }
    e->out[e->nout++] = (struct opiece){id, off, len, kind};
}

static int rev_left_len(const enc *e, int id) {
    for (size_t k = 0; k < e->nrev; k++)
        if (e->rev[k].id == id) return (int)e->rev[k].left_len;
    return -1;
}

// A piece that is not the result of a known rule comes out as one (piece, id); an UNUSED piece is split back
// into the two symbols it was merged from, recursively (bpe_model.cc resegment). `depth` bounds the recursion.
static void resegment(const tokenizer *t, enc *e, uint32_t off, uint32_t len, int32_t sym_id, int depth) {
    int id = sym_id >= 0 ? t->normal_out[sym_id] : tok_piece_to_id(t, e->norm.p + off, len);
    int ll = t->type[id] == TOK_UNUSED && depth < 64 ? rev_left_len(e, id) : -1;
    if (ll <= 0 || (uint32_t)ll >= len) {
        out_push(e, id, off, len, 0);
        return;
    }
    resegment(t, e, off, (uint32_t)ll, -1, depth + 1);
    resegment(t, e, off + (uint32_t)ll, len - (uint32_t)ll, -1, depth + 1);
}

// Model::SampleEncode (alpha 0) on e->norm: appends (piece, id) to e->out before byte fallback.
static void bpe(const tokenizer *t, enc *e) {
    const uint8_t *s = (const uint8_t *)e->norm.p;
    size_t n = e->norm.n;
    e->nsym = 0;
    e->nheap = 0;
    e->nrev = 0;
    if (n == 0) return;
    if (e->capsym < n) {
        e->capsym = n;
        e->sym = xrealloc(e->sym, n * sizeof *e->sym);
    }
    size_t i = 0;
    while (i < n) {
        size_t u = t->n_user && t->user_first[s[i]] ? user_match(t, s + i, n - i) : 0;
        size_t l = u ? u : one_char_len(s[i]);
        if (l > n - i) l = n - i;
        struct sym *y = &e->sym[e->nsym];
        y->prev = (int32_t)e->nsym - 1;
        y->next = i + l < n ? (int32_t)e->nsym + 1 : -1;
        y->off = (uint32_t)i;
        y->len = (uint32_t)l;
        y->freeze = u != 0;
        y->id = l == 1 ? t->byte_char_id[s[i]] : ht_find(t, &t->normal, (const char *)s + i, l);
        e->nsym++;
        i += l;
    }
    for (size_t k = 1; k < e->nsym; k++) maybe_add_pair(t, e, (int)k - 1, (int)k);
    while (e->nheap) {
        struct pair top = heap_pop(e);
        int left = (int)(uint32_t)top.key;
        struct sym *l = &e->sym[left];
        // The right symbol is the left one's current neighbour: symbols only grow, and a pair whose right symbol
        // was merged away (into the left one) or grew no longer has the recorded size (bpe_model.cc's check).
        if (l->len == 0 || l->next < 0) continue;
        struct sym *r = &e->sym[l->next];
        if (r->len == 0 || l->len + r->len != top.size) continue;  // stale
        l->len += r->len;
        l->id = top.id;
        l->next = r->next;
        if (r->next >= 0) e->sym[r->next].prev = left;
        r->len = 0;
        maybe_add_pair(t, e, l->prev, left);
        maybe_add_pair(t, e, left, l->next);
    }
    for (int k = 0; k != -1; k = e->sym[k].next) resegment(t, e, e->sym[k].off, e->sym[k].len, e->sym[k].id, 0);
}

// SentencePieceProcessor::Encode: normalize, BPE, then byte fallback (or merged unknown runs). Fills e->out.
static int sp_encode_into(const tokenizer *t, const char *text, size_t len, int add_dummy, enc *e) {
    e->nout = 0;
    normalize(t, (const uint8_t *)text, len, add_dummy, &e->norm);
    size_t start = e->nout;
    bpe(t, e);
    // Rewrite e->out[start..] in place into final pieces (byte pieces may add entries: build a new tail).
    size_t nraw = e->nout - start;
    if (nraw == 0) return 0;
    if (e->capraw < nraw) {
        e->capraw = nraw;
        e->raw = xrealloc(e->raw, nraw * sizeof *e->raw);
    }
    struct opiece *raw = e->raw;
    memcpy(raw, e->out + start, nraw * sizeof *raw);
    e->nout = start;
    int prev_unk = 0;
    for (size_t k = 0; k < nraw; k++) {
        int id = raw[k].id, ty = t->type[id];
        int is_unk = ty == TOK_UNKNOWN;
        if (ty == TOK_CONTROL) {
            // sentencepiece leaves such a symbol's text unconsumed and fails the same way.
            return llava_fail("text symbol \"%.*s\" maps to control piece %d", (int)raw[k].len, e->norm.p + raw[k].off,
                              id);
        }
        if (is_unk && t->byte_fallback) {
            for (uint32_t b = 0; b < raw[k].len; b++) {
                int bid = t->byte_id[(uint8_t)e->norm.p[raw[k].off + b]];
                out_push(e, bid, 0, 0, 1);
            }
        } else if (is_unk && prev_unk) {
            e->out[e->nout - 1].len += raw[k].len;  // adjacent spans of the normalized text
        } else {
            out_push(e, id, raw[k].off, raw[k].len, 0);
        }
        prev_unk = is_unk;
    }
    return 0;
}

static inline const char *opiece_str(const tokenizer *t, const enc *e, const struct opiece *p, size_t *len) {
    *len = 0;
    if (p->kind == 1) return tok_id_to_piece(t, p->id, len);
    *len = p->len;
    return e->norm.p + p->off;
}

// Number of pieces, for the unk_token_length of transformers 4.37.
static int count_pieces(const tokenizer *t, const char *text, size_t len, int add_dummy) {
    enc e = {0};
    int rc = sp_encode_into(t, text, len, add_dummy, &e);
    int n = rc ? -1 : (int)e.nout;
    enc_free(&e);
    return n;
}

int tok_sp_encode(const tokenizer *t, const char *text, size_t len, tok_ids *out) {
    if (t->bpe) return bpe_encode(t->bpe, text, len, 0, out);
    enc e = {0};
    int rc = sp_encode_into(t, text, len, t->add_dummy_prefix, &e);
    if (rc == 0)
        for (size_t k = 0; k < e.nout; k++) tok_ids_push(out, e.out[k].id);
    enc_free(&e);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// The HF slow LlamaTokenizer layer

// Finds the next special token at or after position i: leftmost, then longest (the added-tokens trie split).
static int next_special(const tokenizer *t, const char *s, size_t n, size_t i, size_t *at) {
    for (; i < n; i++) {
        if (!t->special_first[(uint8_t)s[i]]) continue;
        int best = -1;
        size_t best_len = 0;
        for (int k = 0; k < 3; k++) {
            size_t l = t->special[k].len;
            if (l > best_len && l <= n - i && memcmp(s + i, t->special[k].s, l) == 0) {
                best = k;
                best_len = l;
            }
        }
        if (best >= 0) {
            *at = i;
            return best;
        }
    }
    return -1;
}

static int starts_with(const char *s, size_t n, const char *p, size_t pn) { return n >= pn && memcmp(s, p, pn) == 0; }

static int is_special_str(const tokenizer *t, const char *s, size_t n) {
    for (int k = 0; k < 3; k++)
        if (t->special[k].len == n && memcmp(t->special[k].s, s, n) == 0) return 1;
    return 0;
}

// What transformers 4.37's tokenize() looks at after the split: the first two tokens of the first chunk.
typedef struct {
    size_t n_tokens;
    int first_is_space;     // tokens[0] == "▁"
    int second_is_special;  // tokens[1] (a piece of the same chunk) is one of the special strings
} chunk_info;

// One text chunk of PreTrainedTokenizer.tokenize: LlamaTokenizer._tokenize, then convert_tokens_to_ids
// (sentencepiece's piece_to_id on each piece string).
static int encode_chunk(const tokenizer *t, tok_mode mode, const char *c, size_t n, enc *e, tok_ids *out,
                        chunk_info *ci) {
    size_t k = 0;
    if (mode == TOK_LEGACY) {
        if (sp_encode_into(t, c, n, t->add_dummy_prefix, e)) return -1;
    } else if (mode == TOK_HF431) {
        // transformers 4.31 LlamaTokenizer._tokenize (legacy=False): only the first chunk starts with "▁"; it loses
        // that "▁" and gets the dummy prefix instead. Any other chunk loses the dummy "▁" of its first piece unless
        // it starts with a space; the shortened piece string is looked up again ("▁lux" -> "lux", unknown -> 0).
        int is_first = starts_with(c, n, SPACE_SYM, 3);
        if (is_first) c += 3, n -= 3;
        if (sp_encode_into(t, c, n, t->add_dummy_prefix, e)) return -1;
        if (!is_first && !(n > 0 && c[0] == ' ') && e->nout > 0) {
            size_t pl = 0;
            const char *ps = opiece_str(t, e, &e->out[0], &pl);
            if (starts_with(ps, pl, SPACE_SYM, 3)) {
                if (pl > 3) tok_ids_push(out, tok_piece_to_id(t, ps + 3, pl - 3));
                k = 1;
            }
        }
    } else {
        // transformers 4.37 LlamaTokenizer._tokenize (legacy=False): the model runs without the dummy prefix; a
        // chunk that starts with "▁" or " " is encoded after "<unk>", and the pieces of "<unk>" are dropped.
        if (starts_with(c, n, SPACE_SYM, 3) || (n > 0 && c[0] == ' ')) {
            strbuf *b = &e->tmp;  // not touched by sp_encode_into; the pieces point into e->norm
            b->n = 0;
            sb_put(b, t->special[2].s, t->special[2].len);
            sb_put(b, c, n);
            if (sp_encode_into(t, b->p, b->n, 0, e)) return -1;
            if (e->nout >= (size_t)t->unk_len_nodummy) k = (size_t)t->unk_len_nodummy;
        } else {
            if (sp_encode_into(t, c, n, 0, e)) return -1;
        }
    }
    if (ci) {
        ci->n_tokens = e->nout - k;
        ci->first_is_space = ci->second_is_special = 0;
        if (e->nout > k) {
            size_t pl = 0;
            const char *ps = opiece_str(t, e, &e->out[k], &pl);
            ci->first_is_space = pl == 3 && memcmp(ps, SPACE_SYM, 3) == 0;
        }
        if (e->nout > k + 1) {
            size_t pl = 0;
            const char *ps = opiece_str(t, e, &e->out[k + 1], &pl);
            ci->second_is_special = is_special_str(t, ps, pl);
        }
    }
    for (; k < e->nout; k++) {
        // convert_tokens_to_ids: piece_to_id of the piece string. That is the id sentencepiece gave, except for a
        // run of unknown characters (without byte fallback), whose text is looked up.
        int id = e->out[k].id;
        if (id == t->unk_id) {
            size_t pl;
            const char *ps = opiece_str(t, e, &e->out[k], &pl);
            id = tok_piece_to_id(t, ps, pl);
        }
        tok_ids_push(out, id);
    }
    return 0;
}

int tok_encode(const tokenizer *t, tok_mode mode, const char *text, size_t len, tok_ids *out) {
    if (t->bpe) return bpe_encode(t->bpe, text, len, 1, out);
    enc e = {0};
    strbuf w = {0};
    int rc = 0;
    tok_ids_push(out, t->bos_id);  // build_inputs_with_special_tokens: bos + ids (add_eos_token is False)
    const char *s = text;
    size_t n = len;
    if (mode != TOK_LEGACY && len > 0) {
        // LlamaTokenizer.tokenize (legacy=False): "▁" + text.replace("▁", " ")
        sb_reserve(&w, len + 3);
        sb_put(&w, SPACE_SYM, 3);
        size_t i = 0, from = 0;
        while (i + 3 <= len) {
            if (memcmp(text + i, SPACE_SYM, 3) == 0) {
                sb_put(&w, text + from, i - from);
                sb_put(&w, " ", 1);
                i += 3;
                from = i;
            } else {
                i++;
            }
        }
        sb_put(&w, text + from, len - from);
        s = w.p;
        n = w.n;
    }
    size_t first_out = out->n;
    chunk_info first = {0};
    int n_chunks = 0, special_after_first = 0;
    size_t i = 0;
    while (i < n) {
        size_t at = n;
        int k = next_special(t, s, n, i, &at);
        if (k < 0) at = n;
        if (at > i) {  // empty chunks are skipped
            if (encode_chunk(t, mode, s + i, at - i, &e, out, n_chunks == 0 ? &first : NULL)) {
                rc = -1;
                break;
            }
            n_chunks++;
        }
        if (k < 0) break;
        if (n_chunks == 1 && out->n == first_out + first.n_tokens) special_after_first = 1;
        tok_ids_push(out, t->special[k].id);
        i = at + t->special[k].len;
    }
    // transformers 4.37 LlamaTokenizer.tokenize: if tokens[0] == "▁" and tokens[1] is a special token, drop
    // tokens[0]. The text always starts with a chunk ("▁..."), so tokens[0] is that chunk's first piece.
    if (rc == 0 && mode == TOK_HF437 && n_chunks > 0 && first.first_is_space) {
        int second_special = first.n_tokens >= 2 ? first.second_is_special : first.n_tokens == 1 && special_after_first;
        if (second_special) {
            memmove(out->v + first_out, out->v + first_out + 1, (out->n - first_out - 1) * sizeof *out->v);
            out->n--;
        }
    }
    free(w.p);
    enc_free(&e);
    return rc;
}

int tok_encode_nospecial(const tokenizer *t, tok_mode mode, const char *text, size_t len, tok_ids *out) {
    if (t->bpe) return bpe_encode(t->bpe, text, len, 0, out);
    size_t at = out->n;
    if (tok_encode(t, mode, text, len, out)) return -1;
    memmove(out->v + at, out->v + at + 1, (out->n - at - 1) * sizeof *out->v);  // the BOS tok_encode puts first
    out->n--;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Decoding (SentencePieceProcessor::Decode)

int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len) {
    if (t->bpe) {
        for (size_t k = 0; k < n; k++)
            if (!bpe_id_to_token(t->bpe, ids[k], NULL)) return llava_fail("decode: id %d names no token", ids[k]);
        return bpe_decode(t->bpe, ids, n, 1, out, out_len);
    }
    strbuf o = {0};
    sb_reserve(&o, 16);
    o.p[0] = 0;
    uint8_t *bytes = xmalloc(n + 1);
    size_t nb = 0;
    int is_bos_ws = 1, bos_ws_seen = 0;
    for (size_t k = 0; k <= n; k++) {
        int id = -1;
        if (k < n) {
            id = ids[k];
            if (id < 0 || id >= t->n) {
                free(bytes);
                free(o.p);
                return llava_fail("decode: invalid id %d (the model has %d pieces)", id, t->n);
            }
            size_t pl = 0;
            const char *ps = tok_id_to_piece(t, id, &pl);
            id = tok_piece_to_id(t, ps, pl);  // Decode works on piece strings
            if (t->type[id] == TOK_BYTE) {
                bytes[nb++] = (uint8_t)piece_to_byte(t->pool + t->off[id], t->len[id]);
                continue;
            }
        }
        // Flush the byte run: each valid character as is, each bad byte as U+FFFD.
        for (size_t b = 0; b < nb;) {
            size_t l = sp_utf8_len(bytes + b, nb - b);
            if (l == 0 && nb - b >= 3 && memcmp(bytes + b, REPLACEMENT, 3) == 0) l = 3;
            if (l) {
                sb_put(&o, bytes + b, l);
                b += l;
            } else {
                sb_put(&o, REPLACEMENT, 3);
                b++;
            }
        }
        nb = 0;
        if (k == n) break;
        if (bos_ws_seen || o.n > 0) is_bos_ws = 0;
        bos_ws_seen = 0;
        int ty = t->type[id];
        size_t pl = 0;
        const char *ps = tok_id_to_piece(t, id, &pl);
        if (ty == TOK_CONTROL) continue;
        if (ty == TOK_UNKNOWN) {
            sb_put(&o, t->unk_surface, strlen(t->unk_surface));
            continue;
        }
        if (is_bos_ws && (t->add_dummy_prefix || t->remove_extra_ws)) {
            if (starts_with(ps, pl, SPACE_SYM, 3)) {
                ps += 3;
                pl -= 3;
                bos_ws_seen = 1;
            }
            if (t->remove_extra_ws) bos_ws_seen = 0;
        }
        size_t from = 0;
        for (size_t i = 0; i + 3 <= pl;) {
            if (memcmp(ps + i, SPACE_SYM, 3) == 0) {
                sb_put(&o, ps + from, i - from);
                sb_put(&o, " ", 1);
                i += 3;
                from = i;
            } else {
                i++;
            }
        }
        sb_put(&o, ps + from, pl - from);
    }
    free(bytes);
    *out = o.p;
    if (out_len) *out_len = o.n;
    return 0;
}
