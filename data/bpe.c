// Byte-level BPE from a Hugging Face tokenizer.json, step for step what the `tokenizers` library (0.20) does
// (bpe.h; docs/tokenizer.md). The library's pipeline, and where each step lives below:
//   1. added tokens that are not "normalized" are cut out of the raw text (leftmost-longest, lstrip/rstrip);
//   2. each remaining piece is normalized (NFC) and the "normalized" added tokens are cut out of it;
//   3. the pre-tokenizers split each piece (Split regexes, then ByteLevel: its prefix space and GPT-2 regex);
//   4. BPE encodes each piece: whole-word lookup under ignore_merges, else the merges by rank;
//   5. the post-processor's template puts its special tokens around the ids.
// The pieces are worked on as raw bytes: the byte-level alphabet (byte -> printable character) is applied to the
// vocabulary once at load instead of to the text at every call.
#include "bpe.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_unicode.h"
#include "common/util.h"
#include "strbuf.h"

#define BPE_MAX_FILE ((size_t)64 << 20)
#define BPE_MAX_ID (1 << 22)
#define BPE_MAX_STEPS 8
#define BPE_MAX_ALTS 16

// ---------------------------------------------------------------------------------------------
// Hash maps: byte strings (kept as spans of one pool) -> int, and merge pairs -> (rank, new id)

typedef struct {
    uint32_t off, len;
} span;

typedef struct {
    span key;
    int32_t val;
} sm_ent;

typedef struct {
    sm_ent *e;
    size_t n, cap;
    uint32_t *slot;  // entry index + 1; 0 = empty
    size_t mask;
} strmap;

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 31);
}

static int32_t sm_get(const strmap *m, const char *pool, const void *s, size_t len) {
    if (!m->slot) return -1;
    for (size_t i = hash_bytes(s, len) & m->mask;; i = (i + 1) & m->mask) {
        uint32_t k = m->slot[i];
        if (!k) return -1;
        const sm_ent *e = &m->e[k - 1];
        if (e->key.len == len && memcmp(pool + e->key.off, s, len) == 0) return e->val;
    }
}

static void sm_rehash(strmap *m, const char *pool, size_t nslots) {
    free(m->slot);
    m->slot = xcalloc(nslots, sizeof *m->slot);
    m->mask = nslots - 1;
    for (size_t k = 0; k < m->n; k++) {
        size_t i = hash_bytes(pool + m->e[k].key.off, m->e[k].key.len) & m->mask;
        while (m->slot[i]) i = (i + 1) & m->mask;
        m->slot[i] = (uint32_t)(k + 1);
    }
}

// Inserts key -> val; returns 1 (and changes nothing) when the key is there already.
static int sm_put(strmap *m, const char *pool, span key, int32_t val) {
    if (sm_get(m, pool, pool + key.off, key.len) >= 0) return 1;
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 256;
        m->e = xrealloc(m->e, m->cap * sizeof *m->e);
    }
    m->e[m->n++] = (sm_ent){key, val};
    if (!m->slot || m->n * 2 > m->mask + 1) {
        size_t ns = 64;
        while (ns < m->n * 4) ns *= 2;
        sm_rehash(m, pool, ns);
    } else {
        size_t i = hash_bytes(pool + key.off, key.len) & m->mask;
        while (m->slot[i]) i = (i + 1) & m->mask;
        m->slot[i] = (uint32_t)m->n;
    }
    return 0;
}

static void sm_free(strmap *m) {
    free(m->e);
    free(m->slot);
}

typedef struct {
    uint64_t key;  // left id << 32 | right id; UINT64_MAX = empty
    uint32_t rank;
    int32_t new_id;
} merge_ent;

static inline size_t pair_hash(uint64_t k, size_t mask) { return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & mask; }

static const merge_ent *merge_get(const merge_ent *tab, size_t mask, int32_t a, int32_t b) {
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = pair_hash(k, mask);; i = (i + 1) & mask) {
        if (tab[i].key == k) return &tab[i];
        if (tab[i].key == UINT64_MAX) return NULL;
    }
}

// ---------------------------------------------------------------------------------------------
// Unicode: UTF-8, the regex classes, NFC (tables from bpe_unicode.h, generated from the library)

static inline size_t utf8_decode1(const unsigned char *s, uint32_t *cp) {  // s is valid UTF-8
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] < 0xE0) {
        *cp = (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
        return 2;
    }
    if (s[0] < 0xF0) {
        *cp = (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        return 3;
    }
    *cp = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    return 4;
}

static inline size_t utf8_len(uint32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }

static void utf8_put(strbuf *o, uint32_t c) {
    char b[4];
    size_t n = utf8_len(c);
    if (n == 1) {
        b[0] = (char)c;
    } else if (n == 2) {
        b[0] = (char)(0xC0 | c >> 6);
        b[1] = (char)(0x80 | (c & 0x3F));
    } else if (n == 3) {
        b[0] = (char)(0xE0 | c >> 12);
        b[1] = (char)(0x80 | (c >> 6 & 0x3F));
        b[2] = (char)(0x80 | (c & 0x3F));
    } else {
        b[0] = (char)(0xF0 | c >> 18);
        b[1] = (char)(0x80 | (c >> 12 & 0x3F));
        b[2] = (char)(0x80 | (c >> 6 & 0x3F));
        b[3] = (char)(0x80 | (c & 0x3F));
    }
    sb_put(o, b, n);
}

static int in_ranges(const bpe_range *r, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid].lo) hi = mid;
        else if (c > r[mid].hi) lo = mid + 1;
        else return 1;
    }
    return 0;
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

// Character classes of the pre-tokenizer regexes.
enum { C_L = 1, C_N = 2, C_S = 4, C_NL = 8 };  // \p{L}, \p{N}, \s, [\r\n]

static uint8_t cp_class(uint32_t c) {
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return C_L;
        if (c >= '0' && c <= '9') return C_N;
        if (c == '\r' || c == '\n') return C_S | C_NL;
        if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return C_S;
        return 0;
    }
    if (in_ranges(BPE_LETTER, NELEM(BPE_LETTER), c)) return C_L;
    if (in_ranges(BPE_NUMBER, NELEM(BPE_NUMBER), c)) return C_N;
    if (in_ranges(BPE_SPACE, NELEM(BPE_SPACE), c)) return C_S;
    return 0;
}

static int is_space_cp(uint32_t c) { return (cp_class(c) & C_S) != 0; }

static uint32_t ccc_of(uint32_t c) {
    if (c < 0x300) return 0;
    size_t lo = 0, hi = NELEM(BPE_CCC);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < BPE_CCC[mid].lo) hi = mid;
        else if (c > BPE_CCC[mid].hi) lo = mid + 1;
        else return BPE_CCC[mid].ccc;
    }
    return 0;
}

static const bpe_decomp *decomp_of(uint32_t c) {
    size_t lo = 0, hi = NELEM(BPE_DECOMP);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < BPE_DECOMP[mid].cp) hi = mid;
        else if (c > BPE_DECOMP[mid].cp) lo = mid + 1;
        else return &BPE_DECOMP[mid];
    }
    return NULL;
}

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21, TCOUNT = 28 };
enum { NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static int compose_of(uint32_t a, uint32_t b, uint32_t *out) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT) {
        *out = SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
        return 1;
    }
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT) {
        *out = a + (b - TBASE);
        return 1;
    }
    size_t lo = 0, hi = NELEM(BPE_COMPOSE);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const bpe_compose *e = &BPE_COMPOSE[mid];
        if (a < e->a || (a == e->a && b < e->b)) hi = mid;
        else if (a > e->a || b > e->b) lo = mid + 1;
        else {
            *out = e->c;
            return 1;
        }
    }
    return 0;
}

// Growable code point buffer.
typedef struct {
    uint32_t *v;
    size_t n, cap;
} cpbuf;

static void cp_push(cpbuf *b, uint32_t c) {
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->v = xrealloc(b->v, b->cap * sizeof *b->v);
    }
    b->v[b->n++] = c;
}

// NFC of the valid UTF-8 s[0..n) into *out (replacing its content). Text below U+0300 is already NFC (nothing below
// it decomposes, and nothing composes without a character from U+0300 up), which the lead byte 0xCC tells.
static void nfc(const char *s, size_t n, strbuf *out, cpbuf *d) {
    out->n = 0;
    int simple = 1;
    for (size_t i = 0; i < n && simple; i++) simple = (unsigned char)s[i] < 0xCC;
    if (simple) {
        sb_put(out, s, n);
        return;
    }
    // Decompose.
    d->n = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        i += utf8_decode1((const unsigned char *)s + i, &c);
        if (c >= SBASE && c < SBASE + SCOUNT) {
            uint32_t k = c - SBASE;
            cp_push(d, LBASE + k / NCOUNT);
            cp_push(d, VBASE + (k % NCOUNT) / TCOUNT);
            if (k % TCOUNT) cp_push(d, TBASE + k % TCOUNT);
            continue;
        }
        const bpe_decomp *e = c >= 0xC0 ? decomp_of(c) : NULL;
        if (e) {
            for (uint32_t k = 0; k < e->len; k++) cp_push(d, BPE_DECOMP_POOL[e->off + k]);
        } else {
            cp_push(d, c);
        }
    }
    // Canonical order: a stable insertion sort of each run of non-starters by combining class.
    for (size_t i = 1; i < d->n; i++) {
        uint32_t c = d->v[i], k = ccc_of(c);
        if (k == 0) continue;
        size_t j = i;
        while (j > 0) {
            uint32_t kp = ccc_of(d->v[j - 1]);
            if (kp == 0 || kp <= k) break;
            d->v[j] = d->v[j - 1];
            j--;
        }
        d->v[j] = c;
    }
    // Compose, in place: o is the output length, starter the index of the last starter in the output.
    size_t o = 0;
    long starter = -1;
    uint32_t last_ccc = 0;
    for (size_t i = 0; i < d->n; i++) {
        uint32_t c = d->v[i], k = ccc_of(c), comp;
        if (starter >= 0 && (last_ccc < k || (last_ccc == 0 && (long)o - 1 == starter)) &&
            compose_of(d->v[starter], c, &comp)) {
            d->v[starter] = comp;
            continue;
        }
        if (k == 0) starter = (long)o;
        last_ccc = k;
        d->v[o++] = c;
    }
    for (size_t i = 0; i < o; i++) utf8_put(out, d->v[i]);
}

// The byte-level alphabet: byte -> code point (GPT-2's bytes_to_unicode).
static void byte_chars(uint32_t bc[256]) {
    uint32_t n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        bc[b] = keep ? (uint32_t)b : 256 + n++;
    }
}

// String::from_utf8_lossy: each maximal prefix of a valid sequence that cannot be completed, or each byte that
// cannot start one, becomes U+FFFD.
static void utf8_lossy(const unsigned char *s, size_t n, strbuf *o) {
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b < 0x80) {
            sb_put(o, s + i, 1);
            i++;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            need = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 3;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 4;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        } else {
            sb_put(o, "\xEF\xBF\xBD", 3);
            i++;
            continue;
        }
        size_t k = 1;
        while (k < need && i + k < n) {
            unsigned char c = s[i + k];
            if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) break;
            k++;
        }
        if (k == need) sb_put(o, s + i, need);
        else sb_put(o, "\xEF\xBF\xBD", 3);
        i += k;
    }
}

// ---------------------------------------------------------------------------------------------
// The pre-tokenizer regexes: the alternatives these models use, each matched by hand with the regex engine's
// leftmost-first, greedy-with-backtracking semantics.

enum {
    ALT_CONTR_CI,     // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    ALT_LIT,          // 's  (one of the contractions, case-sensitive, as GPT-2 writes them)
    ALT_SP_L,         //  ?\p{L}+
    ALT_SP_N,         //  ?\p{N}+
    ALT_SP_O,         //  ?[^\s\p{L}\p{N}]+
    ALT_SP_O_NL,      //  ?[^\s\p{L}\p{N}]+[\r\n]*
    ALT_PRE_L,        // [^\r\n\p{L}\p{N}]?\p{L}+
    ALT_N3,           // \p{N}{1,3}
    ALT_N1,           // \p{N}
    ALT_WS_NL,        // \s*[\r\n]+
    ALT_WS_NOT_LAST,  // \s+(?!\S)
    ALT_WS,           // \s+
};

typedef struct {
    uint8_t kind, lit_len;
    char lit[4];
} alt;

static const struct {
    const char *re;
    uint8_t kind;
} KNOWN_ALTS[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)", ALT_CONTR_CI},
    {"'s", ALT_LIT},
    {"'t", ALT_LIT},
    {"'re", ALT_LIT},
    {"'ve", ALT_LIT},
    {"'m", ALT_LIT},
    {"'ll", ALT_LIT},
    {"'d", ALT_LIT},
    {" ?\\p{L}+", ALT_SP_L},
    {" ?\\p{N}+", ALT_SP_N},
    {" ?[^\\s\\p{L}\\p{N}]+", ALT_SP_O},
    {" ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*", ALT_SP_O_NL},
    {"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+", ALT_PRE_L},
    {"\\p{N}{1,3}", ALT_N3},
    {"\\p{N}", ALT_N1},
    {"\\s*[\\r\\n]+", ALT_WS_NL},
    {"\\s+(?!\\S)", ALT_WS_NOT_LAST},
    {"\\s+", ALT_WS},
};

// The ByteLevel pre-tokenizer's own regex (use_regex).
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// Splits a pattern at its top-level '|' and recognises each alternative. -1 with an error naming the first one
// this matcher does not implement.
static int compile_pattern(const char *re, alt *alts, int *n_alt) {
    size_t n = strlen(re);
    *n_alt = 0;
    for (size_t i = 0; i <= n;) {
        size_t j = i;
        int paren = 0, bracket = 0;
        while (j < n) {
            char ch = re[j];
            if (ch == '\\' && j + 1 < n) {
                j += 2;
                continue;
            }
            if (bracket) {
                if (ch == ']') bracket = 0;
            } else if (ch == '[') {
                bracket = 1;
            } else if (ch == '(') {
                paren++;
            } else if (ch == ')') {
                paren--;
            } else if (ch == '|' && paren == 0) {
                break;
            }
            j++;
        }
        size_t len = j - i;
        int found = -1;
        for (size_t k = 0; k < NELEM(KNOWN_ALTS) && found < 0; k++)
            if (strlen(KNOWN_ALTS[k].re) == len && memcmp(KNOWN_ALTS[k].re, re + i, len) == 0) found = (int)k;
        if (found < 0)
            return llava_fail("pre_tokenizer Split: the regex alternative \"%.*s\" is not supported (pattern \"%s\")",
                              (int)len, re + i, re);
        if (*n_alt == BPE_MAX_ALTS) return llava_fail("pre_tokenizer Split: more than %d alternatives", BPE_MAX_ALTS);
        alt *a = &alts[(*n_alt)++];
        memset(a, 0, sizeof *a);
        a->kind = KNOWN_ALTS[found].kind;
        if (a->kind == ALT_LIT) {
            a->lit_len = (uint8_t)len;
            memcpy(a->lit, re + i, len);
        }
        i = j + 1;
    }
    return 0;
}

static inline int is_other(uint8_t f) { return !(f & (C_L | C_N | C_S)); }

static inline uint32_t fold_ci(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's';  // LATIN SMALL LETTER LONG S folds to 's' (the only non-ASCII fold these use)
    return c;
}

// The end of the alternative's match at i (exclusive), or 0 when it does not match there.
static size_t alt_match(const alt *a, const uint32_t *c, const uint8_t *f, size_t n, size_t i) {
    size_t j = i;
    switch (a->kind) {
    case ALT_CONTR_CI: {
        if (c[i] != '\'' || i + 1 >= n) return 0;
        uint32_t x = fold_ci(c[i + 1]);
        if (x == 's' || x == 't' || x == 'm' || x == 'd') return i + 2;
        if (i + 2 >= n) return 0;
        uint32_t y = fold_ci(c[i + 2]);
        if ((x == 'r' && y == 'e') || (x == 'v' && y == 'e') || (x == 'l' && y == 'l')) return i + 3;
        return 0;
    }
    case ALT_LIT:
        if (i + a->lit_len > n) return 0;
        for (size_t k = 0; k < a->lit_len; k++)
            if (c[i + k] != (unsigned char)a->lit[k]) return 0;
        return i + a->lit_len;
    case ALT_SP_L:
    case ALT_SP_N: {
        uint8_t cls = a->kind == ALT_SP_L ? C_L : C_N;
        if (c[j] == ' ' && j + 1 < n && (f[j + 1] & cls)) j++;
        if (!(f[j] & cls)) return 0;
        while (j < n && (f[j] & cls)) j++;
        return j;
    }
    case ALT_SP_O:
    case ALT_SP_O_NL:
        if (c[j] == ' ' && j + 1 < n && is_other(f[j + 1])) j++;
        if (!is_other(f[j])) return 0;
        while (j < n && is_other(f[j])) j++;
        if (a->kind == ALT_SP_O_NL)
            while (j < n && (f[j] & C_NL)) j++;
        return j;
    case ALT_PRE_L:
        if (!(f[j] & (C_NL | C_L | C_N)) && j + 1 < n && (f[j + 1] & C_L)) j++;
        if (!(f[j] & C_L)) return 0;
        while (j < n && (f[j] & C_L)) j++;
        return j;
    case ALT_N3:
        if (!(f[j] & C_N)) return 0;
        j++;
        while (j < n && j < i + 3 && (f[j] & C_N)) j++;
        return j;
    case ALT_N1: return (f[j] & C_N) ? j + 1 : 0;
    case ALT_WS_NL: {
        // \s* takes the whole run, then gives back until [\r\n]+ can match: the match ends after the run's last
        // \r or \n.
        size_t last = 0;
        int any = 0;
        while (j < n && (f[j] & C_S)) {
            if (f[j] & C_NL) {
                last = j;
                any = 1;
            }
            j++;
        }
        return any ? last + 1 : 0;
    }
    case ALT_WS_NOT_LAST:
        // \s+ then "not followed by a non-space": the whole run at the end of the text, else the run less its last
        // character (which then starts the next piece, as in " word").
        while (j < n && (f[j] & C_S)) j++;
        if (j == i) return 0;
        if (j == n) return j;
        return j - 1 > i ? j - 1 : 0;
    case ALT_WS:
        while (j < n && (f[j] & C_S)) j++;
        return j > i ? j : 0;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// The tokenizer

typedef struct {
    span content;  // as written
    span pattern;  // what is matched: the content, normalized when the token is "normalized"
    int32_t id;
    uint8_t lstrip, rstrip, normalized, special;
} added_tok;

// A set of added tokens matched leftmost-longest (the library's Aho-Corasick MatchKind::LeftmostLongest).
typedef struct {
    uint32_t *idx;  // indices into added[], by first byte, longer patterns first
    uint32_t n;
    uint32_t first[257];
} addset;

typedef struct {
    int bytelevel;         // 1: the ByteLevel pre-tokenizer (prefix space, then its regex when n_alt > 0)
    int add_prefix_space;  // ByteLevel
    int n_alt;
    alt alts[BPE_MAX_ALTS];
} pstep;

struct bpe_tokenizer {
    strbuf pool;  // every string of the tokenizer
    int32_t n_model, id_limit, vocab_size, bos, eos, unk_id;
    int fuse_unk, byte_fallback, ignore_merges, nfc;
    span *model_str;    // [id_limit] the model's token as written (len 0 = no model token: tokens are not empty)
    span *dec;          // [id_limit] the bytes the ByteLevel decoder gives for the id's token
    uint8_t *has_tok;   // [id_limit]
    uint8_t *special;   // [id_limit]
    int32_t *added_of;  // [id_limit] index into added[] (the token the id decodes to), or -1
    strmap vocab;       // model token as written -> id
    strmap raw;         // model token as bytes -> id, for tokens made of byte-level characters only
    strmap added_map;   // added token content -> id
    merge_ent *merges;
    size_t merge_mask;
    int32_t byte_id[256];  // the model id of each byte's character, or -1
    int32_t fb[256][2];    // byte_fallback: ids of <0xXX> for the UTF-8 bytes of the byte's character
    int fb_n[256];         // how many (0: not all present)
    int n_steps;
    pstep steps[BPE_MAX_STEPS];
    added_tok *added;
    size_t n_added;
    addset raw_set, norm_set;  // added tokens matched before / after normalization
    int32_t *pre, *post;       // the template's special ids around the sequence
    size_t n_pre, n_post;
};

static span pool_add(strbuf *p, const void *s, size_t n) {
    span r = {(uint32_t)p->n, (uint32_t)n};
    sb_put(p, s, n);
    return r;
}

#define PSTR(t, sp) ((t)->pool.p + (sp).off)

void bpe_free(bpe_tokenizer *t) {
    if (!t) return;
    free(t->pool.p);
    free(t->model_str);
    free(t->dec);
    free(t->has_tok);
    free(t->special);
    free(t->added_of);
    sm_free(&t->vocab);
    sm_free(&t->raw);
    sm_free(&t->added_map);
    free(t->merges);
    free(t->added);
    free(t->raw_set.idx);
    free(t->norm_set.idx);
    free(t->pre);
    free(t->post);
    free(t);
}

// ---------------------------------------------------------------------------------------------
// Loading

static const char *jtype(const cJSON *o) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

// A boolean field: absent or null gives def; anything but a boolean is an error.
static int jbool(const cJSON *o, const char *key, int def, int *out, const char *where) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v)) return llava_fail("%s: \"%s\" is not a boolean", where, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int jstr_ok(const cJSON *v, const char *where) {
    if (!cJSON_IsString(v) || !v->valuestring) return llava_fail("%s: not a string", where);
    if (!utf8_valid((const uint8_t *)v->valuestring, strlen(v->valuestring))) return llava_fail("%s: not UTF-8", where);
    return 0;
}

static int parse_model(bpe_tokenizer *t, const cJSON *m) {
    const char *ty = jtype(m);
    if (!ty || strcmp(ty, "BPE") != 0)
        return llava_fail("model type %s is not supported (only BPE)", ty ? ty : "(none)");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
        return llava_fail("model: BPE dropout is not supported (it makes encoding random)");
    static const char *const EMPTY_ONLY[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t k = 0; k < 2; k++) {
        v = cJSON_GetObjectItemCaseSensitive(m, EMPTY_ONLY[k]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && v->valuestring[0] == 0))
            return llava_fail("model: %s is not supported (only null or \"\")", EMPTY_ONLY[k]);
    }
    if (jbool(m, "fuse_unk", 0, &t->fuse_unk, "model") || jbool(m, "byte_fallback", 0, &t->byte_fallback, "model") ||
        jbool(m, "ignore_merges", 0, &t->ignore_merges, "model"))
        return -1;
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab");
    if (!cJSON_IsObject(vocab)) return llava_fail("model: no \"vocab\" object");
    // Ids: integers below BPE_MAX_ID, each once.
    int32_t n = 0, max_id = -1;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= BPE_MAX_ID ||
            e->valuedouble != (double)(int32_t)e->valuedouble)
            return llava_fail("model: vocab entry %d: the id is not an integer in [0, %d)", (int)n, BPE_MAX_ID);
        if (!e->string || !utf8_valid((const uint8_t *)e->string, strlen(e->string)) || !e->string[0])
            return llava_fail("model: vocab entry %d: the token is empty or not UTF-8", (int)n);
        if ((int32_t)e->valuedouble > max_id) max_id = (int32_t)e->valuedouble;
        n++;
    }
    if (n == 0) return llava_fail("model: the vocab is empty");
    if (max_id >= 4 * n + 1024) return llava_fail("model: vocab ids up to %d for %d tokens", (int)max_id, (int)n);
    t->n_model = n;
    t->id_limit = max_id + 1;  // grows with the added tokens
    t->model_str = xcalloc((size_t)t->id_limit, sizeof *t->model_str);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id = (int32_t)e->valuedouble;
        if (t->model_str[id].len) return llava_fail("model: vocab id %d is given to two tokens", (int)id);
        span s = pool_add(&t->pool, e->string, strlen(e->string));
        if (sm_put(&t->vocab, t->pool.p, s, id))
            return llava_fail("model: vocab token \"%s\" appears twice", e->string);
        t->model_str[id] = s;
    }
    // unk_token
    t->unk_id = -1;
    v = cJSON_GetObjectItemCaseSensitive(m, "unk_token");
    if (v && !cJSON_IsNull(v)) {
        if (jstr_ok(v, "model: unk_token")) return -1;
        t->unk_id = sm_get(&t->vocab, t->pool.p, v->valuestring, strlen(v->valuestring));
        if (t->unk_id < 0) return llava_fail("model: unk_token \"%s\" is not in the vocab", v->valuestring);
    }
    // Merges: "a b" strings (the legacy form, "#version" lines skipped) or [a, b] pairs, one form for all. A pair
    // given twice keeps the later rank, as the library's map does.
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (!cJSON_IsArray(merges)) return llava_fail("model: no \"merges\" array");
    size_t n_merges = (size_t)cJSON_GetArraySize(merges), slots = 64;
    while (slots < n_merges * 2 + 2) slots *= 2;
    t->merges = xmalloc(slots * sizeof *t->merges);
    for (size_t i = 0; i < slots; i++) t->merges[i].key = UINT64_MAX;
    t->merge_mask = slots - 1;
    int form = -1;  // 0 strings, 1 pairs
    uint32_t rank = 0;
    strbuf cat = {0};
    int rc = 0;
    for (const cJSON *e = merges->child; e && rc == 0; e = e->next) {
        const char *a, *b;
        size_t la, lb;
        int this_form = cJSON_IsString(e) ? 0 : cJSON_IsArray(e) ? 1 : -1;
        if (this_form < 0 || (form >= 0 && this_form != form)) {
            rc = llava_fail("model: merge %u is neither a \"a b\" string nor an [a, b] pair like the others",
                            (unsigned)rank + 1);
            break;
        }
        form = this_form;
        if (form == 0) {
            if (jstr_ok(e, "model: merge")) {
                rc = -1;
                break;
            }
            if (strncmp(e->valuestring, "#version", 8) == 0) continue;
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                rc = llava_fail("model: merge %u \"%s\" is not two tokens separated by one space", (unsigned)rank + 1,
                                e->valuestring);
                break;
            }
            a = e->valuestring;
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else {
            const cJSON *x = e->child, *y = x ? x->next : NULL;
            if (!x || !y || y->next || jstr_ok(x, "model: merge") || jstr_ok(y, "model: merge")) {
                rc = llava_fail("model: merge %u is not a pair of strings", (unsigned)rank + 1);
                break;
            }
            a = x->valuestring;
            la = strlen(a);
            b = y->valuestring;
            lb = strlen(b);
        }
        int32_t ia = sm_get(&t->vocab, t->pool.p, a, la), ib = sm_get(&t->vocab, t->pool.p, b, lb);
        cat.n = 0;
        sb_put(&cat, a, la);
        sb_put(&cat, b, lb);
        int32_t in = sm_get(&t->vocab, t->pool.p, cat.p, cat.n);
        if (ia < 0 || ib < 0 || in < 0) {
            rc = llava_fail("model: merge %u (\"%.*s\" \"%.*s\") uses a token missing from the vocab",
                            (unsigned)rank + 1, (int)la, a, (int)lb, b);
            break;
        }
        uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        size_t i = pair_hash(key, t->merge_mask);
        while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
        t->merges[i] = (merge_ent){key, rank, in};
        rank++;
    }
    free(cat.p);
    return rc;
}

// The bytes the ByteLevel decoder gives for a token: each character mapped back to its byte when all are
// byte-level characters, else the token's own UTF-8.
static span bytelevel_decode(strbuf *pool, span tok, const int16_t *char_byte) {
    strbuf tmp = {0};
    const unsigned char *s = (const unsigned char *)pool->p + tok.off;
    int all = 1;
    for (size_t i = 0; i < tok.len && all;) {
        uint32_t c;
        i += utf8_decode1(s + i, &c);
        if (c >= 0x144 || char_byte[c] < 0) all = 0;
        else {
            char b = (char)char_byte[c];
            sb_put(&tmp, &b, 1);
        }
    }
    span r;
    if (all) {
        r = pool_add(pool, tmp.p, tmp.n);
    } else {
        r = tok;
    }
    free(tmp.p);
    return r;
}

// Order of an added-token set: by first byte, longer patterns first.
static int added_before(const bpe_tokenizer *t, uint32_t ia, uint32_t ib) {
    const added_tok *a = &t->added[ia], *b = &t->added[ib];
    unsigned char fa = (unsigned char)PSTR(t, a->pattern)[0], fb = (unsigned char)PSTR(t, b->pattern)[0];
    if (fa != fb) return fa < fb;
    return a->pattern.len > b->pattern.len;
}

static void build_addset(bpe_tokenizer *t, addset *s, int normalized) {
    s->n = 0;
    s->idx = xmalloc((t->n_added + 1) * sizeof *s->idx);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized) s->idx[s->n++] = (uint32_t)i;
    // Sort by first byte, then longer first (insertion sort: added tokens are few).
    for (uint32_t i = 1; i < s->n; i++) {
        uint32_t x = s->idx[i], j = i;
        while (j > 0 && added_before(t, x, s->idx[j - 1])) {
            s->idx[j] = s->idx[j - 1];
            j--;
        }
        s->idx[j] = x;
    }
    memset(s->first, 0, sizeof s->first);
    for (uint32_t i = 0; i < s->n; i++) s->first[(unsigned char)PSTR(t, t->added[s->idx[i]].pattern)[0] + 1]++;
    for (int b = 0; b < 256; b++) s->first[b + 1] += s->first[b];
}

// The library's AddedVocabulary::add_tokens: the id is the one the content already has (an earlier added token or
// the model's vocabulary), else the next one after the vocabulary / the largest added id. The "id" written in the
// file is not used (the library only warns when it differs).
static int parse_added(bpe_tokenizer *t, const cJSON *arr) {
    if (!arr || cJSON_IsNull(arr)) return 0;
    if (!cJSON_IsArray(arr)) return llava_fail("added_tokens is not an array");
    size_t cap = (size_t)cJSON_GetArraySize(arr);
    t->added = xcalloc(cap + 1, sizeof *t->added);
    int32_t max_added = -1;
    strbuf norm = {0};
    cpbuf d = {0};
    int rc = 0;
    for (const cJSON *e = arr->child; e && rc == 0; e = e->next) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsObject(e) || jstr_ok(c, "added_tokens: content")) {
            rc = llava_fail("added_tokens: an entry without a string \"content\"");
            break;
        }
        int single_word = 0, lstrip = 0, rstrip = 0, normalized = 1, special = 0;
        if (jbool(e, "single_word", 0, &single_word, "added_tokens") ||
            jbool(e, "lstrip", 0, &lstrip, "added_tokens") || jbool(e, "rstrip", 0, &rstrip, "added_tokens") ||
            jbool(e, "normalized", 1, &normalized, "added_tokens") ||
            jbool(e, "special", 0, &special, "added_tokens")) {
            rc = -1;
            break;
        }
        if (single_word) {
            rc = llava_fail("added token \"%s\": single_word is not supported", c->valuestring);
            break;
        }
        size_t len = strlen(c->valuestring);
        if (len == 0) continue;  // the library ignores empty tokens
        int32_t prev = sm_get(&t->added_map, t->pool.p, c->valuestring, len);
        if (prev >= 0) {
            const added_tok *p = &t->added[t->added_of[prev]];
            if (p->lstrip == lstrip && p->rstrip == rstrip && p->normalized == normalized && p->special == special)
                continue;  // the same token again: ignored, as by the library
            rc = llava_fail("added token \"%s\" appears twice with different options", c->valuestring);
            break;
        }
        int32_t id = sm_get(&t->vocab, t->pool.p, c->valuestring, len);
        if (id < 0) id = max_added < 0 ? t->n_model : (max_added >= t->n_model ? max_added + 1 : t->n_model);
        if (id >= BPE_MAX_ID) {
            rc = llava_fail("added token \"%s\": id %d is too large", c->valuestring, (int)id);
            break;
        }
        if (id > max_added) max_added = id;
        if (id >= t->id_limit) {
            int32_t nl = id + 1;
            t->model_str = xrealloc(t->model_str, (size_t)nl * sizeof *t->model_str);
            memset(t->model_str + t->id_limit, 0, (size_t)(nl - t->id_limit) * sizeof *t->model_str);
            t->added_of = xrealloc(t->added_of, (size_t)nl * sizeof *t->added_of);
            for (int32_t k = t->id_limit; k < nl; k++) t->added_of[k] = -1;
            t->id_limit = nl;
        }
        added_tok *a = &t->added[t->n_added];
        a->content = pool_add(&t->pool, c->valuestring, len);
        a->id = id;
        a->lstrip = (uint8_t)lstrip;
        a->rstrip = (uint8_t)rstrip;
        a->normalized = (uint8_t)normalized;
        a->special = (uint8_t)special;
        if (normalized && t->nfc) {
            nfc(c->valuestring, len, &norm, &d);
            a->pattern = pool_add(&t->pool, norm.p, norm.n);
        } else {
            a->pattern = a->content;
        }
        sm_put(&t->added_map, t->pool.p, a->content, id);
        t->added_of[id] = (int32_t)t->n_added;
        t->n_added++;
    }
    free(norm.p);
    free(d.v);
    return rc;
}

static int parse_normalizer(bpe_tokenizer *t, const cJSON *n, int depth) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *ty = jtype(n);
    if (ty && strcmp(ty, "NFC") == 0) {
        t->nfc = 1;
        return 0;
    }
    if (ty && strcmp(ty, "Sequence") == 0 && depth == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(list)) return llava_fail("normalizer Sequence: no \"normalizers\" array");
        for (const cJSON *e = list->child; e; e = e->next)
            if (parse_normalizer(t, e, 1)) return -1;
        return 0;
    }
    return llava_fail("normalizer %s is not supported (only NFC)", ty ? ty : "(no type)");
}

static int parse_pretok(bpe_tokenizer *t, const cJSON *p, int depth) {
    if (!p || cJSON_IsNull(p))
        return llava_fail("pre_tokenizer null is not supported (byte-level BPE needs ByteLevel)");
    const char *ty = jtype(p);
    if (ty && strcmp(ty, "Sequence") == 0 && depth == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list)) return llava_fail("pre_tokenizer Sequence: no \"pretokenizers\" array");
        for (const cJSON *e = list->child; e; e = e->next)
            if (parse_pretok(t, e, 1)) return -1;
        return 0;
    }
    if (t->n_steps == BPE_MAX_STEPS) return llava_fail("pre_tokenizer: more than %d steps", BPE_MAX_STEPS);
    pstep *st = &t->steps[t->n_steps];
    memset(st, 0, sizeof *st);
    if (ty && strcmp(ty, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        if (!cJSON_IsObject(pat) || !re)
            return llava_fail("pre_tokenizer Split: only a {\"Regex\": ...} pattern is supported");
        if (jstr_ok(re, "pre_tokenizer Split: pattern")) return -1;
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0)
            return llava_fail("pre_tokenizer Split: behavior %s is not supported (only Isolated)",
                              cJSON_IsString(beh) ? beh->valuestring : "(none)");
        const cJSON *inv = cJSON_GetObjectItemCaseSensitive(p, "invert");
        if (!cJSON_IsFalse(inv)) return llava_fail("pre_tokenizer Split: invert must be false");
        if (compile_pattern(re->valuestring, st->alts, &st->n_alt)) return -1;
    } else if (ty && strcmp(ty, "ByteLevel") == 0) {
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(p, "add_prefix_space");
        if (!cJSON_IsBool(aps)) return llava_fail("pre_tokenizer ByteLevel: add_prefix_space is not a boolean");
        st->bytelevel = 1;
        st->add_prefix_space = cJSON_IsTrue(aps);
        int use_regex = 1;
        if (jbool(p, "use_regex", 1, &use_regex, "pre_tokenizer ByteLevel")) return -1;
        if (use_regex && compile_pattern(GPT2_PATTERN, st->alts, &st->n_alt)) return -1;
    } else {
        return llava_fail("pre_tokenizer %s is not supported (only ByteLevel, Split and Sequence)",
                          ty ? ty : "(no type)");
    }
    t->n_steps++;
    return 0;
}

// The "ids" of a TemplateProcessing special token, checked.
static const cJSON *template_special(const cJSON *specials, const char *name, int32_t id_limit) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(specials, name), "ids");
    if (!cJSON_IsArray(arr)) {
        llava_fail("post_processor TemplateProcessing: no special token \"%s\"", name);
        return NULL;
    }
    for (const cJSON *e = arr->child; e; e = e->next)
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= id_limit ||
            e->valuedouble != (double)(int32_t)e->valuedouble) {
            llava_fail("post_processor TemplateProcessing: special token \"%s\" has an id out of range", name);
            return NULL;
        }
    return arr;
}

static void push_id(int32_t **v, size_t *n, int32_t id) {
    *v = xrealloc(*v, (*n + 1) * sizeof **v);
    (*v)[(*n)++] = id;
}

static int parse_post(bpe_tokenizer *t, const cJSON *p, int depth, int *have_template) {
    if (!p || cJSON_IsNull(p)) return 0;
    const char *ty = jtype(p);
    if (ty && strcmp(ty, "ByteLevel") == 0) return 0;  // offsets only
    if (ty && strcmp(ty, "Sequence") == 0 && depth == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "processors");
        if (!cJSON_IsArray(list)) return llava_fail("post_processor Sequence: no \"processors\" array");
        for (const cJSON *e = list->child; e; e = e->next)
            if (parse_post(t, e, 1, have_template)) return -1;
        return 0;
    }
    if (ty && strcmp(ty, "TemplateProcessing") == 0) {
        if (*have_template) return llava_fail("post_processor: two TemplateProcessing");
        *have_template = 1;
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
        if (!cJSON_IsArray(single)) return llava_fail("post_processor TemplateProcessing: no \"single\" template");
        int seen_a = 0;
        for (const cJSON *e = single->child; e; e = e->next) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
            const cJSON *sq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
            if (sp) {
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "id");
                if (!cJSON_IsString(name))
                    return llava_fail("post_processor TemplateProcessing: a SpecialToken without id");
                const cJSON *arr = template_special(specials, name->valuestring, t->id_limit);
                if (!arr) return -1;
                for (const cJSON *x = arr->child; x; x = x->next) {
                    if (seen_a) push_id(&t->post, &t->n_post, (int32_t)x->valuedouble);
                    else push_id(&t->pre, &t->n_pre, (int32_t)x->valuedouble);
                }
            } else if (sq) {
                const cJSON *id = cJSON_GetObjectItemCaseSensitive(sq, "id");
                if (!cJSON_IsString(id) || strcmp(id->valuestring, "A") != 0 || seen_a)
                    return llava_fail(
                        "post_processor TemplateProcessing: the single template must hold sequence A "
                        "once");
                seen_a = 1;
            } else {
                return llava_fail(
                    "post_processor TemplateProcessing: an item that is neither SpecialToken nor "
                    "Sequence");
            }
        }
        if (!seen_a) return llava_fail("post_processor TemplateProcessing: the single template lacks sequence A");
        return 0;
    }
    return llava_fail("post_processor %s is not supported (only ByteLevel, TemplateProcessing and Sequence)",
                      ty ? ty : "(no type)");
}

static int config_token(const bpe_tokenizer *t, const cJSON *cfg, const char *key, int32_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return llava_fail("tokenizer_config.json: %s is not a string", key);
    *out = bpe_token_to_id(t, v->valuestring, strlen(v->valuestring));
    if (*out < 0) return llava_fail("tokenizer_config.json: %s \"%s\" is not a token", key, v->valuestring);
    return 0;
}

static int load(bpe_tokenizer *t, const char *json, size_t len, const char *config, size_t config_len) {
    // The JSON parser ends a string at "\u0000"; no tokenizer needs one, so refuse rather than truncate.
    for (size_t i = 0; i + 6 <= len; i++)
        if (json[i] == '\\' && json[i + 1] == 'u' && memcmp(json + i + 2, "0000", 4) == 0)
            return llava_fail("a string holds \\u0000 (not supported)");
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return llava_fail("not a JSON object");
    }
    int rc = 0, have_template = 0;
    static const char *const NULL_ONLY[] = {"truncation", "padding"};
    for (size_t k = 0; k < 2 && rc == 0; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, NULL_ONLY[k]);
        if (v && !cJSON_IsNull(v)) rc = llava_fail("%s is set (not supported)", NULL_ONLY[k]);
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (rc == 0 && !cJSON_IsObject(model)) rc = llava_fail("no \"model\" object");
    if (rc == 0) rc = parse_model(t, model);
    if (rc == 0) rc = parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), 0);
    if (rc == 0) {
        t->added_of = xmalloc((size_t)t->id_limit * sizeof *t->added_of);
        for (int32_t k = 0; k < t->id_limit; k++) t->added_of[k] = -1;
        rc = parse_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"));
    }
    if (rc == 0) rc = parse_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), 0);
    if (rc == 0) {
        int n_bl = 0;
        for (int k = 0; k < t->n_steps; k++) n_bl += t->steps[k].bytelevel;
        if (n_bl != 1 || !t->steps[t->n_steps - 1].bytelevel)
            rc = llava_fail("pre_tokenizer: byte-level BPE needs exactly one ByteLevel pre-tokenizer, last");
    }
    if (rc == 0) rc = parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), 0, &have_template);
    if (rc == 0) {
        const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
        const char *ty = jtype(dec);
        if (!ty || strcmp(ty, "ByteLevel") != 0)
            rc = llava_fail("decoder %s is not supported (only ByteLevel)", ty ? ty : "null");
    }
    cJSON_Delete(root);
    if (rc) return rc;

    // Byte-level views of the vocabulary.
    uint32_t bc[256];
    int16_t char_byte[0x144];
    byte_chars(bc);
    for (int c = 0; c < 0x144; c++) char_byte[c] = -1;
    for (int b = 0; b < 256; b++) char_byte[bc[b]] = (int16_t)b;
    // The model's tokens as bytes (those made of byte-level characters only), and what each id decodes to.
    t->dec = xcalloc((size_t)t->id_limit, sizeof *t->dec);
    t->has_tok = xcalloc((size_t)t->id_limit, 1);
    t->special = xcalloc((size_t)t->id_limit, 1);
    for (int32_t id = 0; id < t->id_limit; id++) {
        if (t->model_str[id].len) {
            span raw = bytelevel_decode(&t->pool, t->model_str[id], char_byte);
            if (raw.off != t->model_str[id].off) sm_put(&t->raw, t->pool.p, raw, id);
            t->dec[id] = raw;
            t->has_tok[id] = 1;
        }
        if (t->added_of[id] >= 0) {  // the added token's content is what the id stands for
            const added_tok *a = &t->added[t->added_of[id]];
            t->dec[id] = bytelevel_decode(&t->pool, a->content, char_byte);
            t->special[id] = a->special;
            t->has_tok[id] = 1;
        }
    }
    for (int b = 0; b < 256; b++) {
        strbuf one = {0};
        utf8_put(&one, bc[b]);
        t->byte_id[b] = sm_get(&t->vocab, t->pool.p, one.p, one.n);
        t->fb_n[b] = 0;
        if (t->byte_fallback) {
            int ok = 1;
            for (size_t k = 0; k < one.n && ok; k++) {
                char name[8];
                snprintf(name, sizeof name, "<0x%02X>", (unsigned char)one.p[k]);
                t->fb[b][k] = sm_get(&t->vocab, t->pool.p, name, strlen(name));
                ok = t->fb[b][k] >= 0;
            }
            if (ok) t->fb_n[b] = (int)one.n;
        }
        free(one.p);
    }
    build_addset(t, &t->raw_set, 0);
    build_addset(t, &t->norm_set, 1);
    // get_vocab_size(true): the model's tokens and the added contents not among them.
    t->vocab_size = t->n_model;
    for (size_t k = 0; k < t->n_added; k++)
        if (sm_get(&t->vocab, t->pool.p, PSTR(t, t->added[k].content), t->added[k].content.len) < 0) t->vocab_size++;
    t->bos = t->eos = -1;
    if (config) {
        cJSON *cfg = cJSON_ParseWithLength(config, config_len);
        if (!cfg || !cJSON_IsObject(cfg)) rc = llava_fail("tokenizer_config.json: not a JSON object");
        if (rc == 0) rc = config_token(t, cfg, "bos_token", &t->bos);
        if (rc == 0) rc = config_token(t, cfg, "eos_token", &t->eos);
        cJSON_Delete(cfg);
    } else if (t->n_pre == 1) {
        t->bos = t->pre[0];
    }
    return rc;
}

bpe_tokenizer *bpe_load_mem(const char *json, size_t len, const char *config, size_t config_len) {
    bpe_tokenizer *t = xcalloc(1, sizeof *t);
    if (load(t, json, len, config, config_len)) {
        bpe_free(t);
        return NULL;
    }
    return t;
}

bpe_tokenizer *bpe_load(const char *path) {
    size_t len, clen = 0;
    char *json = read_file(path, BPE_MAX_FILE, &len);
    if (!json) return NULL;
    char *dir = path_dirname(path);
    char *cpath = path_join(dir, "tokenizer_config.json");
    char *config = NULL;
    int rc = 0;
    if (file_exists(cpath)) {
        config = read_file(cpath, BPE_MAX_FILE, &clen);
        if (!config) rc = -1;
    }
    bpe_tokenizer *t = NULL;
    if (rc == 0) {
        t = bpe_load_mem(json, len, config, clen);
        if (!t) llava_fail_ctx("%s", path);
    }
    free(json);
    free(config);
    free(dir);
    free(cpath);
    return t;
}

// ---------------------------------------------------------------------------------------------
// Queries

int bpe_token_to_id(const bpe_tokenizer *t, const char *s, size_t len) {
    int32_t id = sm_get(&t->added_map, t->pool.p, s, len);
    return id >= 0 ? id : sm_get(&t->vocab, t->pool.p, s, len);
}

const char *bpe_id_to_token(const bpe_tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->id_limit || !t->has_tok[id]) return NULL;
    span s = t->added_of[id] >= 0 ? t->added[t->added_of[id]].content : t->model_str[id];
    if (len) *len = s.len;
    return PSTR(t, s);
}

int bpe_is_special(const bpe_tokenizer *t, int id) { return id >= 0 && id < t->id_limit && t->special[id]; }
int bpe_bos_id(const bpe_tokenizer *t) { return t->bos; }
int bpe_unk_id(const bpe_tokenizer *t) { return t->unk_id; }
int bpe_eos_id(const bpe_tokenizer *t) { return t->eos; }
int bpe_vocab_size(const bpe_tokenizer *t) { return t->vocab_size; }
int bpe_id_limit(const bpe_tokenizer *t) { return t->id_limit; }

int bpe_decode(const bpe_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **out, size_t *out_len) {
    strbuf bytes = {0}, o = {0};
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->id_limit || !t->has_tok[id]) continue;
        if (skip_special && t->special[id]) continue;
        sb_put(&bytes, PSTR(t, t->dec[id]), t->dec[id].len);
    }
    utf8_lossy((const unsigned char *)bytes.p, bytes.n, &o);
    sb_reserve(&o, 0);
    free(bytes.p);
    *out = o.p;
    *out_len = o.n;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Encoding

typedef struct {
    int32_t c, prev, next;
    uint32_t alive;
} sym;

typedef struct {
    uint32_t rank, pos;
    int32_t new_id;
} hent;

typedef struct {
    tok_ids *out;
    cpbuf cp[BPE_MAX_STEPS];
    uint8_t *fl[BPE_MAX_STEPS];
    size_t fl_cap[BPE_MAX_STEPS];
    strbuf prefix[BPE_MAX_STEPS];
    strbuf norm;
    cpbuf nfc_tmp;
    sym *sy;
    size_t sy_cap;
    hent *hp;
    size_t hp_n, hp_cap;
} enc_ctx;

static void ctx_free(enc_ctx *c) {
    for (int k = 0; k < BPE_MAX_STEPS; k++) {
        free(c->cp[k].v);
        free(c->fl[k]);
        free(c->prefix[k].p);
    }
    free(c->norm.p);
    free(c->nfc_tmp.v);
    free(c->sy);
    free(c->hp);
}

static inline int hent_less(const hent *a, const hent *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(enc_ctx *c, hent e) {
    if (c->hp_n == c->hp_cap) {
        c->hp_cap = c->hp_cap ? c->hp_cap * 2 : 64;
        c->hp = xrealloc(c->hp, c->hp_cap * sizeof *c->hp);
    }
    size_t i = c->hp_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hent_less(&e, &c->hp[p])) break;
        c->hp[i] = c->hp[p];
        i = p;
    }
    c->hp[i] = e;
}

static hent heap_pop(enc_ctx *c) {
    hent top = c->hp[0], last = c->hp[--c->hp_n];
    size_t i = 0, n = c->hp_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const hent *best = &last;
        if (l < n && hent_less(&c->hp[l], best)) {
            m = l;
            best = &c->hp[l];
        }
        if (r < n && hent_less(&c->hp[r], best)) m = r;
        if (m == i) break;
        c->hp[i] = c->hp[m];
        i = m;
    }
    if (n) c->hp[i] = last;
    return top;
}

static void sym_add(enc_ctx *c, size_t *n, int32_t id) {
    if (*n == c->sy_cap) {
        c->sy_cap = c->sy_cap ? c->sy_cap * 2 : 64;
        c->sy = xrealloc(c->sy, c->sy_cap * sizeof *c->sy);
    }
    c->sy[*n] = (sym){id, (int32_t)*n - 1, (int32_t)*n + 1, 1};
    (*n)++;
}

// BPE of one pre-token (raw bytes): the library's BPE::merge_word and Word::merge_all.
static void bpe_word(const bpe_tokenizer *t, enc_ctx *c, const unsigned char *w, size_t n) {
    if (n == 0) return;
    if (t->ignore_merges) {
        int32_t id = sm_get(&t->raw, t->pool.p, w, n);
        if (id >= 0) {
            tok_ids_push(c->out, id);
            return;
        }
    }
    size_t ns = 0;
    int32_t unk = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[w[i]];
        if (id >= 0) {
            if (unk >= 0) {
                sym_add(c, &ns, unk);
                unk = -1;
            }
            sym_add(c, &ns, id);
            continue;
        }
        if (t->fb_n[w[i]]) {  // byte_fallback (a pending unknown stays pending, as in the library)
            for (int k = 0; k < t->fb_n[w[i]]; k++) sym_add(c, &ns, t->fb[w[i]][k]);
            continue;
        }
        if (t->unk_id >= 0) {
            if (unk >= 0 && !t->fuse_unk) sym_add(c, &ns, unk);
            unk = t->unk_id;
        }
        // no unk_token: the library drops the character
    }
    if (unk >= 0) sym_add(c, &ns, unk);
    if (ns == 0) return;
    c->sy[ns - 1].next = -1;
    c->hp_n = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        const merge_ent *m = merge_get(t->merges, t->merge_mask, c->sy[i].c, c->sy[i + 1].c);
        if (m) heap_push(c, (hent){m->rank, (uint32_t)i, m->new_id});
    }
    while (c->hp_n) {
        hent top = heap_pop(c);
        sym *s = &c->sy[top.pos];
        if (!s->alive || s->next < 0) continue;
        sym right = c->sy[s->next];
        const merge_ent *m = merge_get(t->merges, t->merge_mask, s->c, right.c);
        if (!m || m->new_id != top.new_id) continue;  // an expired entry
        int32_t next_pos = s->next;
        s->c = top.new_id;
        s->next = right.next;
        c->sy[next_pos].alive = 0;
        if (right.next >= 0) c->sy[right.next].prev = (int32_t)top.pos;
        if (s->prev >= 0) {
            const merge_ent *mp = merge_get(t->merges, t->merge_mask, c->sy[s->prev].c, s->c);
            if (mp) heap_push(c, (hent){mp->rank, (uint32_t)s->prev, mp->new_id});
        }
        if (s->next >= 0) {
            const merge_ent *mn = merge_get(t->merges, t->merge_mask, s->c, c->sy[s->next].c);
            if (mn) heap_push(c, (hent){mn->rank, top.pos, mn->new_id});
        }
    }
    for (size_t i = 0; i < ns; i++)
        if (c->sy[i].alive) tok_ids_push(c->out, c->sy[i].c);
}

// Pre-tokenizer step k on the piece s[0..n), then the remaining steps and BPE on each resulting piece.
static void pretok(const bpe_tokenizer *t, enc_ctx *c, int k, const char *s, size_t n) {
    if (n == 0) return;
    if (k == t->n_steps) {
        bpe_word(t, c, (const unsigned char *)s, n);
        return;
    }
    const pstep *st = &t->steps[k];
    if (st->bytelevel && st->add_prefix_space && s[0] != ' ') {
        strbuf *p = &c->prefix[k];
        p->n = 0;
        sb_put(p, " ", 1);
        sb_put(p, s, n);
        s = p->p;
        n = p->n;
    }
    if (st->n_alt == 0) {
        pretok(t, c, k + 1, s, n);
        return;
    }
    // Decode into code points and their classes.
    cpbuf *cb = &c->cp[k];
    cb->n = 0;
    for (size_t i = 0; i < n;) {
        uint32_t ch;
        i += utf8_decode1((const unsigned char *)s + i, &ch);
        cp_push(cb, ch);
    }
    if (c->fl_cap[k] < cb->n) {
        c->fl_cap[k] = cb->cap;
        c->fl[k] = xrealloc(c->fl[k], c->fl_cap[k]);
    }
    uint8_t *f = c->fl[k];
    for (size_t i = 0; i < cb->n; i++) f[i] = cp_class(cb->v[i]);
    // Split, Isolated: every match is a piece, and so is every stretch between matches.
    size_t i = 0, bi = 0, gap_b = 0;
    int in_gap = 0;
    while (i < cb->n) {
        size_t e = 0;
        for (int a = 0; a < st->n_alt && !e; a++) e = alt_match(&st->alts[a], cb->v, f, cb->n, i);
        if (!e) {
            if (!in_gap) {
                in_gap = 1;
                gap_b = bi;
            }
            bi += utf8_len(cb->v[i]);
            i++;
            continue;
        }
        if (in_gap) {
            pretok(t, c, k + 1, s + gap_b, bi - gap_b);
            in_gap = 0;
        }
        size_t eb = bi;
        for (size_t j = i; j < e; j++) eb += utf8_len(cb->v[j]);
        pretok(t, c, k + 1, s + bi, eb - bi);
        bi = eb;
        i = e;
    }
    if (in_gap) pretok(t, c, k + 1, s + gap_b, bi - gap_b);
}

// The leftmost-longest match of the set in s[from..n): 0 and the match, or -1 when none.
static int addset_find(const bpe_tokenizer *t, const addset *set, const char *s, size_t n, size_t from, size_t *ms,
                       size_t *me, const added_tok **tok) {
    if (set->n == 0) return -1;
    for (size_t p = from; p < n; p++) {
        unsigned char b = (unsigned char)s[p];
        for (uint32_t k = set->first[b]; k < set->first[b + 1]; k++) {
            const added_tok *a = &t->added[set->idx[k]];
            if (a->pattern.len <= n - p && memcmp(PSTR(t, a->pattern), s + p, a->pattern.len) == 0) {
                *ms = p;
                *me = p + a->pattern.len;
                *tok = a;
                return 0;
            }
        }
    }
    return -1;
}

static size_t prev_cp_start(const char *s, size_t i) {
    do i--;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
    return i;
}

// One piece of text after the added-token split of stage `stage` (0 raw, 1 normalized).
static void segment(const bpe_tokenizer *t, enc_ctx *c, int stage, const char *s, size_t n);

// The library's AddedVocabulary::find_matches and split_with_indices: the tokens of the set, each widened over the
// whitespace before it (lstrip) and after it (rstrip), and the text between them.
static void split_added(const bpe_tokenizer *t, enc_ctx *c, int stage, const addset *set, const char *s, size_t n) {
    size_t start_offset = 0, from = 0, ms, me;
    const added_tok *a;
    while (from < n && addset_find(t, set, s, n, from, &ms, &me, &a) == 0) {
        size_t start = ms, stop = me;
        from = me;  // the search goes on after the match itself, not after what rstrip takes
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t p = prev_cp_start(s, ns);
                uint32_t ch;
                utf8_decode1((const unsigned char *)s + p, &ch);
                if (!is_space_cp(ch)) break;
                ns = p;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (stop < n) {
                uint32_t ch;
                size_t l = utf8_decode1((const unsigned char *)s + stop, &ch);
                if (!is_space_cp(ch)) break;
                stop += l;
            }
        }
        if (start_offset < start) segment(t, c, stage, s + start_offset, start - start_offset);
        tok_ids_push(c->out, a->id);
        start_offset = stop;
    }
    if (start_offset < n) segment(t, c, stage, s + start_offset, n - start_offset);
}

static void segment(const bpe_tokenizer *t, enc_ctx *c, int stage, const char *s, size_t n) {
    if (n == 0) return;
    if (stage == 0) {
        if (t->nfc) {  // (nothing below normalizes again: c->norm stays as it is until this piece is done)
            nfc(s, n, &c->norm, &c->nfc_tmp);
            split_added(t, c, 1, &t->norm_set, c->norm.p, c->norm.n);
            return;
        }
        split_added(t, c, 1, &t->norm_set, s, n);
        return;
    }
    pretok(t, c, 0, s, n);
}

int bpe_encode(const bpe_tokenizer *t, const char *text, size_t len, int add_special, tok_ids *out) {
    if (!utf8_valid((const uint8_t *)text, len)) return llava_fail("bpe_encode: the text is not UTF-8");
    enc_ctx c = {0};
    c.out = out;
    if (add_special)
        for (size_t i = 0; i < t->n_pre; i++) tok_ids_push(out, t->pre[i]);
    split_added(t, &c, 0, &t->raw_set, text, len);
    if (add_special)
        for (size_t i = 0; i < t->n_post; i++) tok_ids_push(out, t->post[i]);
    ctx_free(&c);
    return 0;
}
