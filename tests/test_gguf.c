// The GGUF export (model/io/gguf.h, `llava export --format gguf`) and the GGUF reader.
//
// The model: a tiny llava-hf folder made here (written by export_llava_hf, read back by
// llava_model_load) around the committed SentencePiece tokenizer tests/data/tokenizer/tiny.model (700
// pieces): vocabulary 704 (<image> 700, <pad> 701, two [PADn] placeholders), LM hidden 32, 2 heads of 16
// with 1 key/value head, intermediate 80 (not a multiple of 32: Q8_0 falls back to F16 for ffn_down),
// CLIP hidden 32, 3 layers of which LLaVA's vision_feature_layer -2 runs 2. (The golden tiny64 model's
// vocabulary, 300, matches no committed tokenizer: exporting it with tiny.model is refused, checked below.)
//
// Checked for each of f32, f16, bf16 and q8_0, on weights with full fp32 mantissas:
//  - every key of both files (name, type, value), the vocabulary entry by entry against the tokenizer;
//  - every tensor's name, shape and type, and its values against the model's: F32 equal, F16 and BF16
//    equal to the model's value rounded to nearest even, Q8_0 within its rounding bound; Q and K through
//    the inverse of the RoPE row permutation, and through RoPE itself: Hugging Face's rotate-half RoPE on
//    the model's Q and K gives the same scores as llama.cpp's pairwise RoPE on the exported ones;
//  - `llava export` writes the same bytes as the library.
// Against the gguf package (tools/reference/check_gguf.py, gguf 0.19.0): tests/data/gguf holds the
// export of this model with f16-exact weights (F16 and Q8_0 language models, F16 mmproj);
// gguf_reader.json is what gguf.GGUFReader reads from them. Our reader must agree key by key and tensor by
// tensor (sha256 of every array and tensor), our Q8_0 must dequantise to the values gguf.quants.dequantize
// gives and equal gguf.quants.quantize's bytes, and exporting the model again must give the same bytes.
// With LLAVA_UPDATE_GOLDEN=1 the test writes the three files instead (then rerun check_gguf.py).
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "app/commands.h"
#include "check.h"
#include "common/dtype.h"
#include "common/util.h"
#include "data/tokenizer.h"
#include "model/config.h"
#include "model/io/export.h"
#include "model/io/gguf.h"
#include "model/llava.h"

#define GOLDEN "tests/data/gguf"
#define TOKENIZER "tests/data/tokenizer/tiny.model"
#define GOLDEN_NAME "llava.c gguf test model"

// ---------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), to compare with the hashes check_gguf.py records.

typedef struct {
    uint32_t h[8];
    uint8_t buf[64];
    uint64_t len;
    size_t fill;
} sha256_ctx;

static const uint32_t SHA_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(sha256_ctx *c, const uint8_t *p) {
    uint32_t w[64], s[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(s, c->h, sizeof s);
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ror(s[4], 6) ^ ror(s[4], 11) ^ ror(s[4], 25);
        uint32_t ch = (s[4] & s[5]) ^ (~s[4] & s[6]);
        uint32_t t1 = s[7] + S1 + ch + SHA_K[i] + w[i];
        uint32_t S0 = ror(s[0], 2) ^ ror(s[0], 13) ^ ror(s[0], 22);
        uint32_t mj = (s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]);
        uint32_t t2 = S0 + mj;
        memmove(s + 1, s, 7 * sizeof(uint32_t));
        s[4] += t1;
        s[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++) c->h[i] += s[i];
}

static void sha256_init(sha256_ctx *c) {
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, H0, sizeof H0);
    c->len = 0;
    c->fill = 0;
}

static void sha256_update(sha256_ctx *c, const void *data, size_t n) {
    const uint8_t *p = data;
    c->len += n;
    while (n) {
        size_t k = 64 - c->fill < n ? 64 - c->fill : n;
        memcpy(c->buf + c->fill, p, k);
        c->fill += k, p += k, n -= k;
        if (c->fill == 64) sha256_block(c, c->buf), c->fill = 0;
    }
}

// The digest as 64 lowercase hex digits.
static void sha256_hex(sha256_ctx *c, char out[65]) {
    uint64_t bits = c->len * 8;
    uint8_t pad = 0x80, zero = 0, lenb[8];
    sha256_update(c, &pad, 1);
    while (c->fill != 56) sha256_update(c, &zero, 1);
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(c, lenb, 8);
    for (int i = 0; i < 8; i++) snprintf(out + 8 * i, 9, "%08x", c->h[i]);
}

static void sha256_of(const void *data, size_t n, char out[65]) {
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, data, n);
    sha256_hex(&c, out);
}

// ---------------------------------------------------------------------------------------------
// The model

static const char *CONFIG =
    "{\"architectures\": [\"LlavaForConditionalGeneration\"], \"model_type\": \"llava\",\n"
    " \"image_token_index\": 700, \"pad_token_id\": 701, \"projector_hidden_act\": \"gelu\",\n"
    " \"vision_feature_layer\": -2, \"vision_feature_select_strategy\": \"default\", \"image_seq_length\": 4,\n"
    " \"text_config\": {\"model_type\": \"llama\", \"vocab_size\": 704, \"hidden_size\": 32, \"intermediate_size\": "
    "80,\n"
    "   \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"head_dim\": 16,\n"
    "   \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0, \"hidden_act\": \"silu\",\n"
    "   \"bos_token_id\": 1, \"eos_token_id\": 2, \"pad_token_id\": 701},\n"
    " \"vision_config\": {\"model_type\": \"clip_vision_model\", \"hidden_size\": 32, \"intermediate_size\": 48,\n"
    "   \"num_hidden_layers\": 3, \"num_attention_heads\": 2, \"image_size\": 16, \"patch_size\": 8,\n"
    "   \"projection_dim\": 32, \"layer_norm_eps\": 1e-05, \"hidden_act\": \"quick_gelu\"}}\n";

static uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Deterministic weights from integer hashes (no libm). With `exact` every value is a float16 (so the F16
// file holds the weights themselves): matrices k/4096, embeddings k/1024, norm weights 1 + j/1024,
// biases k/16384 for |k| < 1024, |j| <= 128. Without it the values have full fp32 mantissas.
static float weight(const param_view *v, size_t i, int view, int exact) {
    uint64_t h = splitmix(((uint64_t)view << 40) ^ i ^ 0x51ed270b27a8e3c1ull);
    size_t nl = strlen(v->name);
    int is_bias = nl > 5 && !strcmp(v->name + nl - 5, ".bias");
    int is_norm = !is_bias && v->ndim == 1 && strstr(v->name, "class_embedding") == NULL;
    int is_embed = strstr(v->name, "embed") != NULL;
    if (exact) {
        int k = (int)(h % 2047) - 1023;
        if (is_bias) return (float)k / 16384.0f;
        if (is_norm) return 1.0f + (float)(k / 8) / 1024.0f;
        return (float)k / (is_embed ? 1024.0f : 4096.0f);
    }
    float u = (float)(int64_t)(h >> 40) / 8388608.0f - 1.0f;  // 24 random bits in [-1, 1)
    if (is_bias) return 0.05f * u;
    if (is_norm) return 1.0f + 0.1f * u;
    return u * (is_embed ? 1.0f : 0.25f);
}

// Writes the model folder (config.json + model.safetensors in llava-hf layout, F32) and its tokenizer.
static void make_model(const char *dir, int exact) {
    model_config cfg;
    CHECK(model_config_parse(CONFIG, strlen(CONFIG), "test config", &cfg) == 0, "%s", llava_errmsg());
    llava_model m;
    CHECK(llava_model_create(&m, &cfg, test_cpu()) == 0, "%s", llava_errmsg());
    llava_model_init_random(&m, 0.02f, 1);  // marks every view filled; the values are replaced
    for (int i = 0; i < m.pt.n_views; i++) {
        const param_view *v = &m.pt.views[i];
        if (!v->used) continue;
        float *p = param_ptr(&m.pt, v);
        for (size_t k = 0; k < v->numel; k++) p[k] = weight(v, k, i, exact);
    }
    CHECK(llava_model_finish(&m) == 0, "%s", llava_errmsg());
    CHECK(export_llava_hf(&m, dir, DT_F32) == 0, "%s", llava_errmsg());
    llava_model_free(&m);
    size_t n;
    char *tok = read_file(TOKENIZER, 1 << 20, &n);
    char *dst = path_join(dir, "tokenizer.model");
    CHECK(tok && write_file_atomic(dst, tok, n) == 0, "%s", llava_errmsg());
    free(tok);
    free(dst);
}

// A view's values as the model holds them (Hugging Face layout).
static float *view_values(const llava_model *m, const char *internal) {
    const param_view *v = param_find(&m->pt, internal);
    if (!v) return NULL;
    float *out = xmalloc(sizeof(float) * v->numel);
    m->ops->download(m->be, BUF_PARAM, out, (const char *)m->params[v->group] + v->offset * m->ops->act_bytes,
                     v->numel);
    return out;
}

// ---------------------------------------------------------------------------------------------
// Keys

typedef struct {
    const char *key;
    int type;
    double num;       // UINT32, INT32, FLOAT32, BOOL
    const char *str;  // STRING
} want_kv;

static void check_kv(const gguf_file *f, int index, const want_kv *w, const char *what) {
    CHECK(index < f->n_kv, "%s: key %d (%s) missing: %d keys", what, index, w->key, f->n_kv);
    if (index >= f->n_kv) return;
    const gguf_kv *kv = &f->kv[index];
    CHECK(!strcmp(kv->key, w->key), "%s: key %d is %s, want %s", what, index, kv->key, w->key);
    CHECK(kv->type == w->type, "%s: %s has type %s, want %s", what, w->key, gguf_vtype_name(kv->type),
          gguf_vtype_name(w->type));
    if (kv->type != w->type) return;
    double got = 0;
    uint32_t u = 0;
    if (kv->size >= 4) memcpy(&u, kv->p, 4);
    switch (w->type) {
    case GGUF_STRING:
        CHECK(kv->size == strlen(w->str) && !memcmp(kv->p, w->str, kv->size), "%s: %s = \"%.*s\", want \"%s\"", what,
              w->key, (int)kv->size, (const char *)kv->p, w->str);
        return;
    case GGUF_UINT32: got = u; break;
    case GGUF_INT32: got = (int32_t)u; break;
    case GGUF_FLOAT32: {
        float x;
        memcpy(&x, &u, 4);
        got = x;
        CHECK(x == (float)w->num, "%s: %s = %.9g, want %.9g", what, w->key, got, w->num);
        return;
    }
    case GGUF_BOOL: got = kv->p[0]; break;
    default: return;  // arrays are checked by the caller
    }
    CHECK(got == w->num, "%s: %s = %.9g, want %.9g", what, w->key, got, w->num);
}

static const gguf_kv *check_array(const gguf_file *f, int index, const char *key, int type, uint64_t n,
                                  const char *what) {
    want_kv w = {key, GGUF_ARRAY, 0, NULL};
    check_kv(f, index, &w, what);
    const gguf_kv *kv = gguf_find_kv(f, key);
    CHECK(kv && kv->type == GGUF_ARRAY && kv->arr_type == type && kv->n == n, "%s: %s: %s[%llu], want %s[%llu]", what,
          key, kv ? gguf_vtype_name(kv->arr_type) : "absent", kv ? (unsigned long long)kv->n : 0ull,
          gguf_vtype_name(type), (unsigned long long)n);
    return kv && kv->type == GGUF_ARRAY && kv->arr_type == type && kv->n == n ? kv : NULL;
}

static void check_lm_keys(const gguf_file *f, const tokenizer *tok, const char *ftype_name, uint32_t file_type,
                          const char *name) {
    char what[64];
    snprintf(what, sizeof what, "lm %s", ftype_name);
    const want_kv head[] = {
        {"general.architecture", GGUF_STRING, 0, "llama"},
        {"general.type", GGUF_STRING, 0, "model"},
        {"general.name", GGUF_STRING, 0, name},
        {"llama.block_count", GGUF_UINT32, 2, NULL},
        {"llama.context_length", GGUF_UINT32, 256, NULL},
        {"llama.embedding_length", GGUF_UINT32, 32, NULL},
        {"llama.feed_forward_length", GGUF_UINT32, 80, NULL},
        {"llama.attention.head_count", GGUF_UINT32, 2, NULL},
        {"llama.attention.head_count_kv", GGUF_UINT32, 1, NULL},
        {"llama.rope.freq_base", GGUF_FLOAT32, 10000.0, NULL},
        {"llama.attention.layer_norm_rms_epsilon", GGUF_FLOAT32, 1e-6, NULL},
        {"llama.attention.key_length", GGUF_UINT32, 16, NULL},
        {"llama.attention.value_length", GGUF_UINT32, 16, NULL},
        {"general.file_type", GGUF_UINT32, file_type, NULL},
        {"llama.vocab_size", GGUF_UINT32, 704, NULL},
        {"llama.rope.dimension_count", GGUF_UINT32, 16, NULL},
        {"tokenizer.ggml.model", GGUF_STRING, 0, "llama"},
        {"tokenizer.ggml.pre", GGUF_STRING, 0, "default"},
    };
    int nh = (int)(sizeof head / sizeof head[0]);
    for (int i = 0; i < nh; i++) check_kv(f, i, &head[i], what);
    const gguf_kv *toks = check_array(f, nh, "tokenizer.ggml.tokens", GGUF_STRING, 704, what);
    const gguf_kv *scores = check_array(f, nh + 1, "tokenizer.ggml.scores", GGUF_FLOAT32, 704, what);
    const gguf_kv *types = check_array(f, nh + 2, "tokenizer.ggml.token_type", GGUF_INT32, 704, what);
    int n_pieces = tok_n_pieces(tok), bad = 0, n_user = 0;
    for (int i = 0; toks && scores && types && i < 704; i++) {
        size_t len, plen = 0;
        const char *s = gguf_arr_str(toks, (uint64_t)i, &len);
        uint32_t sb = gguf_arr_u32(scores, (uint64_t)i);
        float score;
        memcpy(&score, &sb, 4);
        int32_t type = (int32_t)gguf_arr_u32(types, (uint64_t)i);
        char made[32];
        const char *want;
        float want_score;
        int want_type;
        if (i < n_pieces) {
            want = tok_id_to_piece(tok, i, &plen);
            want_score = tok_piece_score(tok, i);
            want_type = tok_piece_type(tok, i);
            if (want_type == TOK_USER_DEFINED) want_type = TOK_NORMAL, n_user++;  // the converter's rule
        } else {
            if (i == 700) snprintf(made, sizeof made, "<image>");
            else if (i == 701) snprintf(made, sizeof made, "<pad>");
            else snprintf(made, sizeof made, "[PAD%d]", i);
            want = made;
            plen = strlen(made);
            want_score = i <= 701 ? -1000.0f : -10000.0f;
            want_type = i <= 701 ? TOK_CONTROL : TOK_UNUSED;
        }
        if (!s || len != plen || memcmp(s, want, len) || score != want_score || type != want_type) {
            if (bad++ < 3)
                CHECK(0, "%s: token %d: \"%.*s\" %g type %d, want \"%.*s\" %g type %d", what, i, (int)len, s ? s : "",
                      (double)score, type, (int)plen, want, (double)want_score, want_type);
        }
    }
    CHECK(bad == 0, "%s: %d of 704 tokens differ", what, bad);
    CHECK(n_user == 1, "%s: tiny.model's user-defined piece <sep> not seen (%d)", what, n_user);
    const want_kv tail[] = {
        {"tokenizer.ggml.bos_token_id", GGUF_UINT32, 1, NULL},
        {"tokenizer.ggml.eos_token_id", GGUF_UINT32, 2, NULL},
        {"tokenizer.ggml.unknown_token_id", GGUF_UINT32, 0, NULL},
        {"tokenizer.ggml.padding_token_id", GGUF_UINT32, 701, NULL},
        {"tokenizer.ggml.add_bos_token", GGUF_BOOL, 1, NULL},
        {"tokenizer.ggml.add_eos_token", GGUF_BOOL, 0, NULL},
        {"general.quantization_version", GGUF_UINT32, 2, NULL},
    };
    int nt = (int)(sizeof tail / sizeof tail[0]);
    for (int i = 0; i < nt; i++) check_kv(f, nh + 3 + i, &tail[i], what);
    CHECK(f->n_kv == nh + 3 + nt, "%s: %d keys, want %d", what, f->n_kv, nh + 3 + nt);
    CHECK(f->version == 3 && f->alignment == 32, "%s: version %u alignment %u", what, f->version, f->alignment);
}

static void check_mmproj_keys(const gguf_file *f, int f32, const char *name) {
    const char *what = f32 ? "mmproj f32" : "mmproj f16";
    const want_kv keys[] = {
        {"general.architecture", GGUF_STRING, 0, "clip"},
        {"clip.has_text_encoder", GGUF_BOOL, 0, NULL},
        {"clip.has_vision_encoder", GGUF_BOOL, 1, NULL},
        {"clip.has_llava_projector", GGUF_BOOL, 1, NULL},
        {"general.file_type", GGUF_UINT32, f32 ? 0 : 1, NULL},
        {"general.name", GGUF_STRING, 0, name},
        {"general.description", GGUF_STRING, 0, "image encoder for LLaVA"},
        {"clip.projector_type", GGUF_STRING, 0, "mlp"},
        {"clip.vision.image_size", GGUF_UINT32, 16, NULL},
        {"clip.vision.patch_size", GGUF_UINT32, 8, NULL},
        {"clip.vision.embedding_length", GGUF_UINT32, 32, NULL},
        {"clip.vision.feed_forward_length", GGUF_UINT32, 48, NULL},
        {"clip.vision.projection_dim", GGUF_UINT32, 32, NULL},
        {"clip.vision.attention.head_count", GGUF_UINT32, 2, NULL},
        {"clip.vision.attention.layer_norm_epsilon", GGUF_FLOAT32, 1e-5, NULL},
        {"clip.vision.block_count", GGUF_UINT32, 2, NULL},
    };
    int n = (int)(sizeof keys / sizeof keys[0]);
    for (int i = 0; i < n; i++) check_kv(f, i, &keys[i], what);
    // vision_feature_layer -2 of 3 layers: hidden_states[2], the output of layer 1 (2 layers run)
    const gguf_kv *fl = check_array(f, n, "clip.vision.feature_layer", GGUF_INT32, 1, what);
    CHECK(fl && gguf_arr_u32(fl, 0) == 2, "%s: feature_layer %u", what, fl ? gguf_arr_u32(fl, 0) : 0);
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    const gguf_kv *m = check_array(f, n + 1, "clip.vision.image_mean", GGUF_FLOAT32, 3, what);
    const gguf_kv *s = check_array(f, n + 2, "clip.vision.image_std", GGUF_FLOAT32, 3, what);
    for (int i = 0; m && s && i < 3; i++) {
        uint32_t a = gguf_arr_u32(m, (uint64_t)i), b = gguf_arr_u32(s, (uint64_t)i);
        float x, y;
        memcpy(&x, &a, 4);
        memcpy(&y, &b, 4);
        CHECK(x == mean[i] && y == std[i], "%s: mean/std[%d] %g %g", what, i, (double)x, (double)y);
    }
    want_kv gelu = {"clip.use_gelu", GGUF_BOOL, 0, NULL};  // quick_gelu
    check_kv(f, n + 3, &gelu, what);
    CHECK(f->n_kv == n + 4, "%s: %d keys, want %d", what, f->n_kv, n + 4);
}

// ---------------------------------------------------------------------------------------------
// Tensors

enum { T_AS_IS = 0, T_PERM_Q, T_PERM_K };

typedef struct {
    const char *gguf;      // GGUF name (printf pattern with the layer)
    const char *internal;  // the model's view (printf pattern with the layer)
    int ndim;
    int64_t shape[4];  // PyTorch shape
    int vector;        // F32 whatever the type
    int perm;
} want_tensor;

// The values of GGUF tensor `got` (HF layout after undoing the permutation) against the model's `ref`.
// Returns the number of values outside their bound.
static size_t compare_values(const gguf_tensor *t, const float *ref, int perm, int n_head, int rows, const char *what,
                             double *worst_ratio) {
    size_t n = (size_t)t->numel, bad = 0;
    float *got = xmalloc(sizeof(float) * n), *hf = xmalloc(sizeof(float) * n);
    CHECK(gguf_tensor_to_f32(t, got) == 0, "%s: %s", what, llava_errmsg());
    if (perm) {
        // HF row h*hd + k is GGUF row h*hd + 2i + j with k = j*hd/2 + i (the inverse of the converter's
        // permutation, written out here independently of the exporter)
        int hd = rows / n_head, cols = (int)(n / (size_t)rows);
        for (int h = 0; h < n_head; h++)
            for (int k = 0; k < hd; k++) {
                int i = k % (hd / 2), j = k / (hd / 2);
                memcpy(hf + ((size_t)h * hd + k) * cols, got + ((size_t)h * hd + 2 * i + j) * cols,
                       sizeof(float) * (size_t)cols);
            }
    } else {
        memcpy(hf, got, sizeof(float) * n);
    }
    for (size_t i = 0; i < n; i++) {
        float want = ref[i];
        int ok = 1;
        switch (t->type) {
        case GGML_TYPE_F32: ok = hf[i] == want; break;
        case GGML_TYPE_F16: ok = hf[i] == f16_to_f32(f32_to_f16(want)); break;
        case GGML_TYPE_BF16: ok = hf[i] == bf16_to_f32(f32_to_bf16(want)); break;
        case GGML_TYPE_Q8_0: break;
        default: ok = 0;
        }
        if (!ok && bad++ < 2)
            CHECK(0, "%s[%zu] = %.9g, want %.9g (type %d)", what, i, (double)hf[i], (double)want, t->type);
    }
    if (t->type == GGML_TYPE_Q8_0) {
        // Per block of 32 (in GGUF order): the scale d = max|x|/127 as fp32, stored as fp16 d16; each value
        // round(x/d)*d16 is within d/2 of x*d16/d, so within d/2*(d16/d) + |x|*|d16-d|/d of x.
        const float *x = ref;
        float *xp = NULL;
        if (perm) {  // the model's values in GGUF order
            xp = xmalloc(sizeof(float) * n);
            int hd = rows / n_head, cols = (int)(n / (size_t)rows);
            for (int h = 0; h < n_head; h++)
                for (int k = 0; k < hd; k++) {
                    int i = k % (hd / 2), j = k / (hd / 2);
                    memcpy(xp + ((size_t)h * hd + 2 * i + j) * cols, ref + ((size_t)h * hd + k) * cols,
                           sizeof(float) * (size_t)cols);
                }
            x = xp;
        }
        for (size_t b = 0; b < n / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            double d = amax / 127.0f;
            const uint8_t *blk = t->data + b * 34;
            double d16 = f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
            for (int j = 0; j < 32; j++) {
                double xv = x[b * 32 + j], q = (double)(int8_t)blk[2 + j] * d16;
                double bound =
                    0.5 * d * (d16 / (d > 0 ? d : 1)) + fabs(xv) * fabs(d16 - d) / (d > 0 ? d : 1) + 1e-7 * d;
                double err = fabs(q - xv);
                if (d > 0 && err / (0.5 * d) > *worst_ratio) *worst_ratio = err / (0.5 * d);
                if (err > bound && bad++ < 2)
                    CHECK(0, "%s: Q8_0 block %zu value %d: %.9g for %.9g (|err| %.3g > %.3g)", what, b, j, q, xv, err,
                          bound);
            }
        }
        free(xp);
    }
    free(got);
    free(hf);
    return bad;
}

static int lm_tensor_type(const want_tensor *w, gguf_out_type t) {
    if (w->vector) return GGML_TYPE_F32;
    switch (t) {
    case GGUF_OUT_F32: return GGML_TYPE_F32;
    case GGUF_OUT_F16: return GGML_TYPE_F16;
    case GGUF_OUT_BF16: return GGML_TYPE_BF16;
    case GGUF_OUT_Q8_0: return w->shape[w->ndim - 1] % 32 == 0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F16;
    }
    return -1;
}

static const want_tensor LM_GLOBAL[] = {
    {"token_embd.weight", "lm.model.embed_tokens.weight", 2, {704, 32}, 0, T_AS_IS},
    {"output_norm.weight", "lm.model.norm.weight", 1, {32}, 1, T_AS_IS},
    {"output.weight", "lm.lm_head.weight", 2, {704, 32}, 0, T_AS_IS},
};
static const want_tensor LM_LAYER[] = {
    {"blk.%d.attn_norm.weight", "lm.model.layers.%d.input_layernorm.weight", 1, {32}, 1, T_AS_IS},
    {"blk.%d.attn_q.weight", "lm.model.layers.%d.self_attn.q_proj.weight", 2, {32, 32}, 0, T_PERM_Q},
    {"blk.%d.attn_k.weight", "lm.model.layers.%d.self_attn.k_proj.weight", 2, {16, 32}, 0, T_PERM_K},
    {"blk.%d.attn_v.weight", "lm.model.layers.%d.self_attn.v_proj.weight", 2, {16, 32}, 0, T_AS_IS},
    {"blk.%d.attn_output.weight", "lm.model.layers.%d.self_attn.o_proj.weight", 2, {32, 32}, 0, T_AS_IS},
    {"blk.%d.ffn_norm.weight", "lm.model.layers.%d.post_attention_layernorm.weight", 1, {32}, 1, T_AS_IS},
    {"blk.%d.ffn_gate.weight", "lm.model.layers.%d.mlp.gate_proj.weight", 2, {80, 32}, 0, T_AS_IS},
    {"blk.%d.ffn_up.weight", "lm.model.layers.%d.mlp.up_proj.weight", 2, {80, 32}, 0, T_AS_IS},
    {"blk.%d.ffn_down.weight", "lm.model.layers.%d.mlp.down_proj.weight", 2, {32, 80}, 0, T_AS_IS},
};
// mmproj: the converter names fc1 ffn_down and fc2 ffn_up.
static const want_tensor MM_GLOBAL[] = {
    {"mm.0.weight", "projector.linear_1.weight", 2, {32, 32}, 0, T_AS_IS},
    {"mm.0.bias", "projector.linear_1.bias", 1, {32}, 1, T_AS_IS},
    {"mm.2.weight", "projector.linear_2.weight", 2, {32, 32}, 0, T_AS_IS},
    {"mm.2.bias", "projector.linear_2.bias", 1, {32}, 1, T_AS_IS},
    {"v.class_embd", "vision.embeddings.class_embedding", 1, {32}, 1, T_AS_IS},
    {"v.patch_embd.weight", "vision.embeddings.patch_embedding.weight", 4, {32, 3, 8, 8}, 0, T_AS_IS},
    {"v.position_embd.weight", "vision.embeddings.position_embedding.weight", 2, {5, 32}, 0, T_AS_IS},
    {"v.pre_ln.weight", "vision.pre_layrnorm.weight", 1, {32}, 1, T_AS_IS},
    {"v.pre_ln.bias", "vision.pre_layrnorm.bias", 1, {32}, 1, T_AS_IS},
};
static const want_tensor MM_LAYER[] = {
    {"v.blk.%d.attn_k.weight", "vision.encoder.layers.%d.self_attn.k_proj.weight", 2, {32, 32}, 0, T_AS_IS},
    {"v.blk.%d.attn_k.bias", "vision.encoder.layers.%d.self_attn.k_proj.bias", 1, {32}, 1, T_AS_IS},
    {"v.blk.%d.attn_v.weight", "vision.encoder.layers.%d.self_attn.v_proj.weight", 2, {32, 32}, 0, T_AS_IS},
    {"v.blk.%d.attn_v.bias", "vision.encoder.layers.%d.self_attn.v_proj.bias", 1, {32}, 1, T_AS_IS},
    {"v.blk.%d.attn_q.weight", "vision.encoder.layers.%d.self_attn.q_proj.weight", 2, {32, 32}, 0, T_AS_IS},
    {"v.blk.%d.attn_q.bias", "vision.encoder.layers.%d.self_attn.q_proj.bias", 1, {32}, 1, T_AS_IS},
    {"v.blk.%d.attn_out.weight", "vision.encoder.layers.%d.self_attn.out_proj.weight", 2, {32, 32}, 0, T_AS_IS},
    {"v.blk.%d.attn_out.bias", "vision.encoder.layers.%d.self_attn.out_proj.bias", 1, {32}, 1, T_AS_IS},
    {"v.blk.%d.ln1.weight", "vision.encoder.layers.%d.layer_norm1.weight", 1, {32}, 1, T_AS_IS},
    {"v.blk.%d.ln1.bias", "vision.encoder.layers.%d.layer_norm1.bias", 1, {32}, 1, T_AS_IS},
    {"v.blk.%d.ffn_down.weight", "vision.encoder.layers.%d.mlp.fc1.weight", 2, {48, 32}, 0, T_AS_IS},
    {"v.blk.%d.ffn_down.bias", "vision.encoder.layers.%d.mlp.fc1.bias", 1, {48}, 1, T_AS_IS},
    {"v.blk.%d.ffn_up.weight", "vision.encoder.layers.%d.mlp.fc2.weight", 2, {32, 48}, 0, T_AS_IS},
    {"v.blk.%d.ffn_up.bias", "vision.encoder.layers.%d.mlp.fc2.bias", 1, {32}, 1, T_AS_IS},
    {"v.blk.%d.ln2.weight", "vision.encoder.layers.%d.layer_norm2.weight", 1, {32}, 1, T_AS_IS},
    {"v.blk.%d.ln2.bias", "vision.encoder.layers.%d.layer_norm2.bias", 1, {32}, 1, T_AS_IS},
};

// pat with its "%d" (if any) replaced by the layer.
static void fmt_layer(char *out, size_t cap, const char *pat, int layer) {
    const char *at = strstr(pat, "%d");
    if (!at) {
        snprintf(out, cap, "%s", pat);
        return;
    }
    snprintf(out, cap, "%.*s%d%s", (int)(at - pat), pat, layer, at + 2);
}

// One expected tensor at position *idx of f: name, shape (reversed), type and values.
static void check_tensor(const gguf_file *f, int *idx, const llava_model *m, const want_tensor *w, int layer, int type,
                         const char *what, size_t *n_bad, double *worst) {
    char gname[96], iname[128], label[160];
    fmt_layer(gname, sizeof gname, w->gguf, layer);
    fmt_layer(iname, sizeof iname, w->internal, layer);
    snprintf(label, sizeof label, "%s %s", what, gname);
    int i = (*idx)++;
    if (i >= f->n_tensors) {
        CHECK(0, "%s: missing (only %d tensors)", label, f->n_tensors);
        return;
    }
    const gguf_tensor *t = &f->tensors[i];
    CHECK(!strcmp(t->name, gname), "%s: tensor %d is %s", label, i, t->name);
    int shape_ok = t->n_dims == w->ndim;
    for (int d = 0; shape_ok && d < w->ndim; d++) shape_ok = t->ne[d] == w->shape[w->ndim - 1 - d];
    CHECK(shape_ok, "%s: dims %d [%lld %lld %lld %lld]", label, t->n_dims, (long long)t->ne[0], (long long)t->ne[1],
          (long long)t->ne[2], (long long)t->ne[3]);
    CHECK(t->type == type, "%s: type %s, want %s", label, ggml_type_label(t->type), ggml_type_label(type));
    float *ref = view_values(m, iname);
    CHECK(ref != NULL, "%s: the model has no %s", label, iname);
    if (!ref || !shape_ok || t->type != type) {
        free(ref);
        return;
    }
    int heads = w->perm == T_PERM_Q ? m->cfg.text.num_attention_heads : m->cfg.text.num_key_value_heads;
    *n_bad += compare_values(t, ref, w->perm, heads, (int)w->shape[0], label, worst);
    free(ref);
}

static void check_lm_tensors(const gguf_file *f, const llava_model *m, gguf_out_type ot, const char *what) {
    int idx = 0;
    size_t bad = 0;
    double worst = 0;
    check_tensor(f, &idx, m, &LM_GLOBAL[0], 0, lm_tensor_type(&LM_GLOBAL[0], ot), what, &bad, &worst);
    for (int l = 0; l < 2; l++)
        for (size_t k = 0; k < sizeof LM_LAYER / sizeof LM_LAYER[0]; k++)
            check_tensor(f, &idx, m, &LM_LAYER[k], l, lm_tensor_type(&LM_LAYER[k], ot), what, &bad, &worst);
    for (int k = 1; k < 3; k++)
        check_tensor(f, &idx, m, &LM_GLOBAL[k], 0, lm_tensor_type(&LM_GLOBAL[k], ot), what, &bad, &worst);
    CHECK(f->n_tensors == idx, "%s: %d tensors, want %d", what, f->n_tensors, idx);
    CHECK(bad == 0, "%s: %zu values out of bound", what, bad);
    if (ot == GGUF_OUT_Q8_0) printf("%s: Q8_0 worst |error| / (scale/2) = %.4f\n", what, worst);
}

static void check_mmproj_tensors(const gguf_file *f, const llava_model *m, int f32, const char *what) {
    int idx = 0;
    size_t bad = 0;
    double worst = 0;
    int mat = f32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    for (size_t k = 0; k < sizeof MM_GLOBAL / sizeof MM_GLOBAL[0]; k++) {
        const want_tensor *w = &MM_GLOBAL[k];
        int type = w->vector ? GGML_TYPE_F32 : w->ndim == 4 ? GGML_TYPE_F16 : mat;
        check_tensor(f, &idx, m, w, 0, type, what, &bad, &worst);
    }
    for (int l = 0; l < 2; l++)
        for (size_t k = 0; k < sizeof MM_LAYER / sizeof MM_LAYER[0]; k++)
            check_tensor(f, &idx, m, &MM_LAYER[k], l, MM_LAYER[k].vector ? GGML_TYPE_F32 : mat, what, &bad, &worst);
    CHECK(f->n_tensors == idx, "%s: %d tensors, want %d (vision layer 2 is past the feature layer)", what, f->n_tensors,
          idx);
    CHECK(bad == 0, "%s: %zu values out of bound", what, bad);
}

// ---------------------------------------------------------------------------------------------
// RoPE: what the permutation is for. Scores q.k per head under Hugging Face's rotate-half RoPE on the
// model's Q/K rows equal those under llama.cpp's pairwise RoPE (LLAMA_ROPE_TYPE_NORM: dims 2i and
// 2i+1 rotated by pos * theta^(-2i/d)) on the exported (F32) rows.

static void matvec(const float *W, const float *x, float *y, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)W[(size_t)r * cols + c] * x[c];
        y[r] = (float)s;
    }
}

static void rope_half(double *v, int hd, int pos, double theta) {
    for (int i = 0; i < hd / 2; i++) {
        double a = pos * pow(theta, -2.0 * i / hd), c = cos(a), s = sin(a);
        double x0 = v[i], x1 = v[i + hd / 2];
        v[i] = x0 * c - x1 * s;
        v[i + hd / 2] = x1 * c + x0 * s;
    }
}

static void rope_pairs(double *v, int hd, int pos, double theta) {
    for (int i = 0; i < hd / 2; i++) {
        double a = pos * pow(theta, -2.0 * i / hd), c = cos(a), s = sin(a);
        double x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * c - x1 * s;
        v[2 * i + 1] = x0 * s + x1 * c;
    }
}

static void check_rope(const gguf_file *f, const llava_model *m) {
    const int d = 32, hd = 16, hq = 2;
    float *qh = view_values(m, "lm.model.layers.1.self_attn.q_proj.weight");
    float *kh = view_values(m, "lm.model.layers.1.self_attn.k_proj.weight");
    const gguf_tensor *tq = gguf_find_tensor(f, "blk.1.attn_q.weight"),
                      *tk = gguf_find_tensor(f, "blk.1.attn_k.weight");
    CHECK(qh && kh && tq && tk && tq->type == GGML_TYPE_F32, "rope: tensors missing");
    if (!(qh && kh && tq && tk && tq->type == GGML_TYPE_F32)) return;
    float *qg = xmalloc(sizeof(float) * 32 * 32), *kg = xmalloc(sizeof(float) * 16 * 32);
    gguf_tensor_to_f32(tq, qg);
    gguf_tensor_to_f32(tk, kg);
    float x1[32], x2[32], q1h[32], k2h[16], q1g[32], k2g[16];
    for (int i = 0; i < d; i++) x1[i] = sinf(0.7f * i + 0.3f), x2[i] = cosf(1.3f * i);
    matvec(qh, x1, q1h, 32, d), matvec(kh, x2, k2h, 16, d), matvec(qg, x1, q1g, 32, d), matvec(kg, x2, k2g, 16, d);
    double worst = 0, largest = 0;
    const int positions[][2] = {{0, 0}, {5, 2}, {17, 3}, {100, 99}, {255, 1}};
    for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++)
        for (int h = 0; h < hq; h++) {
            double a[16], b[16], c[16], e[16];
            for (int i = 0; i < hd; i++) a[i] = q1h[h * hd + i], b[i] = k2h[i], c[i] = q1g[h * hd + i], e[i] = k2g[i];
            rope_half(a, hd, positions[pi][0], 10000.0), rope_half(b, hd, positions[pi][1], 10000.0);
            rope_pairs(c, hd, positions[pi][0], 10000.0), rope_pairs(e, hd, positions[pi][1], 10000.0);
            double s_hf = 0, s_gg = 0;
            for (int i = 0; i < hd; i++) s_hf += a[i] * b[i], s_gg += c[i] * e[i];
            worst = fmax(worst, fabs(s_hf - s_gg));
            largest = fmax(largest, fabs(s_hf));
        }
    CHECK(worst <= 1e-5 * fmax(1.0, largest), "rope: HF and llama.cpp scores differ by %.3g (largest %.3g)", worst,
          largest);
    // and without the permutation they would not agree: the check can fail
    double unperm = 0;
    for (int h = 0; h < hq; h++) {
        double a[16], b[16], c[16], e[16];
        for (int i = 0; i < hd; i++) a[i] = c[i] = q1h[h * hd + i], b[i] = e[i] = k2h[i];
        rope_half(a, hd, 17, 10000.0), rope_half(b, hd, 3, 10000.0);
        rope_pairs(c, hd, 17, 10000.0), rope_pairs(e, hd, 3, 10000.0);
        double s1 = 0, s2 = 0;
        for (int i = 0; i < hd; i++) s1 += a[i] * b[i], s2 += c[i] * e[i];
        unperm = fmax(unperm, fabs(s1 - s2));
    }
    CHECK(unperm > 1e-3, "rope: unpermuted rows agree too (%.3g): the check proves nothing", unperm);
    printf(
        "rope: scores q.k with HF's RoPE on HF rows vs llama.cpp's on the exported rows: max |diff| %.2e (%.2e "
        "without the permutation)\n",
        worst, unperm);
    free(qh), free(kh), free(qg), free(kg);
}

// ---------------------------------------------------------------------------------------------
// gguf_reader.json: what the gguf package read from the committed files.

static int same_file(const char *a, const char *b) {
    size_t la, lb;
    char *x = read_file(a, 64u << 20, &la), *y = read_file(b, 64u << 20, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void check_against_reader(const char *file, const cJSON *jf) {
    char path[256];
    snprintf(path, sizeof path, GOLDEN "/%s", file);
    gguf_file f;
    CHECK(gguf_open(&f, path) == 0, "%s", llava_errmsg());
    if (!f.buf) return;
    char hex[65];
    sha256_of(f.buf, f.len, hex);
    CHECK(!strcmp(hex, jstr(jf, "sha256")), "%s: file sha256 %s, the script read %s", file, hex, jstr(jf, "sha256"));
    CHECK(f.version == jnum(jf, "version") && f.alignment == jnum(jf, "alignment") &&
              (double)f.data_offset == jnum(jf, "data_offset"),
          "%s: version %u alignment %u data at %llu", file, f.version, f.alignment, (unsigned long long)f.data_offset);
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(jf, "keys"), *k;
    CHECK(cJSON_GetArraySize(keys) == f.n_kv, "%s: %d keys, the script %d", file, f.n_kv, cJSON_GetArraySize(keys));
    int i = 0, n_arrays = 0;
    cJSON_ArrayForEach(k, keys) {
        if (i >= f.n_kv) break;
        const gguf_kv *kv = &f.kv[i++];
        const char *name = jstr(k, "name");
        CHECK(!strcmp(kv->key, name), "%s: key %d %s, the script %s", file, i - 1, kv->key, name);
        CHECK(!strcmp(gguf_vtype_name(kv->type), jstr(k, "type")), "%s: %s type %s, the script %s", file, name,
              gguf_vtype_name(kv->type), jstr(k, "type"));
        const cJSON *val = cJSON_GetObjectItemCaseSensitive(k, "value");
        uint32_t u = 0;
        if (kv->size >= 4) memcpy(&u, kv->p, 4);
        if (kv->type == GGUF_ARRAY) {
            n_arrays++;
            sha256_of(kv->p, kv->size, hex);
            CHECK(!strcmp(gguf_vtype_name(kv->arr_type), jstr(k, "element_type")) &&
                      (double)kv->n == jnum(k, "count") && !strcmp(hex, jstr(k, "sha256")),
                  "%s: %s: %s[%llu] sha256 %s, the script %s[%g] %s", file, name, gguf_vtype_name(kv->arr_type),
                  (unsigned long long)kv->n, hex, jstr(k, "element_type"), jnum(k, "count"), jstr(k, "sha256"));
        } else if (kv->type == GGUF_STRING) {
            CHECK(cJSON_IsString(val) && strlen(val->valuestring) == kv->size &&
                      !memcmp(val->valuestring, kv->p, kv->size),
                  "%s: %s = \"%.*s\"", file, name, (int)kv->size, (const char *)kv->p);
        } else if (kv->type == GGUF_BOOL) {
            CHECK(cJSON_IsBool(val) && cJSON_IsTrue(val) == (kv->p[0] != 0), "%s: %s = %d", file, name, kv->p[0]);
        } else if (kv->type == GGUF_FLOAT32) {
            float x;
            memcpy(&x, &u, 4);
            CHECK(cJSON_IsNumber(val) && val->valuedouble == (double)x, "%s: %s = %.9g", file, name, (double)x);
        } else {
            CHECK(cJSON_IsNumber(val) && val->valuedouble == (double)u, "%s: %s = %u", file, name, u);
        }
    }
    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(jf, "tensors"), *t;
    CHECK(cJSON_GetArraySize(tensors) == f.n_tensors, "%s: %d tensors, the script %d", file, f.n_tensors,
          cJSON_GetArraySize(tensors));
    i = 0;
    int n_q8 = 0;
    cJSON_ArrayForEach(t, tensors) {
        if (i >= f.n_tensors) break;
        const gguf_tensor *g = &f.tensors[i++];
        const char *name = jstr(t, "name");
        CHECK(!strcmp(g->name, name), "%s: tensor %d %s, the script %s", file, i - 1, g->name, name);
        const cJSON *ne = cJSON_GetObjectItemCaseSensitive(t, "ne");
        int ne_ok = cJSON_GetArraySize(ne) == g->n_dims;
        for (int d = 0; ne_ok && d < g->n_dims; d++) ne_ok = cJSON_GetArrayItem(ne, d)->valuedouble == (double)g->ne[d];
        CHECK(ne_ok, "%s: %s: shape differs from the script's", file, name);
        CHECK(!strcmp(ggml_type_label(g->type), jstr(t, "type")) && (double)g->nbytes == jnum(t, "n_bytes") &&
                  (double)(f.data_offset + g->offset) == jnum(t, "data_offset"),
              "%s: %s: %s %llu bytes at %llu, the script %s %g at %g", file, name, ggml_type_label(g->type),
              (unsigned long long)g->nbytes, (unsigned long long)(f.data_offset + g->offset), jstr(t, "type"),
              jnum(t, "n_bytes"), jnum(t, "data_offset"));
        sha256_of(g->data, (size_t)g->nbytes, hex);
        CHECK(!strcmp(hex, jstr(t, "sha256")), "%s: %s: data sha256 %s, the script %s", file, name, hex,
              jstr(t, "sha256"));
        if (g->type == GGML_TYPE_Q8_0) {
            n_q8++;
            // our dequantisation against gguf.quants.dequantize, bit for bit (float32, little-endian)
            float *v = xmalloc(sizeof(float) * (size_t)g->numel);
            gguf_tensor_to_f32(g, v);
            sha256_of(v, sizeof(float) * (size_t)g->numel, hex);
            CHECK(!strcmp(hex, jstr(t, "dequantized_sha256")), "%s: %s: dequantised sha256 %s, gguf.quants %s", file,
                  name, hex, jstr(t, "dequantized_sha256"));
            free(v);
            const cJSON *req = cJSON_GetObjectItemCaseSensitive(t, "requantized_equal");
            CHECK(cJSON_IsTrue(req), "%s: %s: gguf.quants.quantize of the weights gives other bytes", file, name);
            CHECK(jnum(t, "max_error_over_half_scale") <= 1.0 + 254.0 / 2048,
                  "%s: %s: gguf measured |error| %.4f x scale/2", file, name, jnum(t, "max_error_over_half_scale"));
        }
    }
    printf("%s: our reader = gguf.GGUFReader on %d keys (%d arrays) and %d tensors%s\n", file, f.n_kv, n_arrays,
           f.n_tensors, n_q8 ? "; Q8_0 dequantised = gguf.quants.dequantize" : "");
    gguf_close(&f);
}

// ---------------------------------------------------------------------------------------------
// Reader robustness: every truncation of a file is refused (never read past the end), and so are a few
// corruptions.

static void check_reader_refusals(const char *path) {
    size_t n;
    char *buf = read_file(path, 1 << 24, &n);
    CHECK(buf != NULL, "%s", llava_errmsg());
    if (!buf) return;
    gguf_file f;
    int accepted = 0;
    size_t step = n > 4000 ? 7 : 1;
    for (size_t len = 0; len < n; len += (len < 2000 ? 1 : step))
        if (gguf_parse(&f, buf, len, "truncated") == 0) accepted++, gguf_close(&f);
    CHECK(accepted == 0, "%d truncations of %s accepted", accepted, path);
    char *bad = xmalloc(n);
    memcpy(bad, buf, n);
    bad[0] = 'X';
    CHECK(gguf_parse(&f, bad, n, "magic") != 0, "bad magic accepted");
    memcpy(bad, buf, n);
    bad[4] = 9;
    CHECK(gguf_parse(&f, bad, n, "version") != 0, "version 9 accepted");
    memcpy(bad, buf, n);
    bad[16] = (char)0xff, bad[17] = (char)0xff, bad[18] = (char)0xff;  // the key count
    CHECK(gguf_parse(&f, bad, n, "kv count") != 0, "a huge key count accepted");
    CHECK(gguf_parse(&f, buf, n, "whole") == 0, "%s", llava_errmsg());
    gguf_close(&f);
    free(bad);
    free(buf);
}

// ---------------------------------------------------------------------------------------------

static char *out_path(const char *dir, const char *stem, gguf_out_type t) {
    char name[64];
    snprintf(name, sizeof name, "%s-%s.gguf", stem, gguf_out_type_name(t));
    return path_join(dir, name);
}

int main(void) {
    char *tmp = check_tmpdir();
    char *model_dir = path_join(tmp, "model"), *exact_dir = path_join(tmp, "exact");
    make_model(model_dir, 0);
    make_model(exact_dir, 1);
    tokenizer *tok = tok_load(TOKENIZER);
    CHECK(tok != NULL, "%s", llava_errmsg());
    CHECK(tok_n_pieces(tok) == 700, "tiny.model has %d pieces", tok_n_pieces(tok));

    // (a) every type, full-precision weights, read back with our reader
    llava_model m;
    CHECK(llava_model_load(&m, model_dir, test_cpu()) == 0, "%s", llava_errmsg());
    CHECK(m.vision_layers == 2, "vision layers %d", m.vision_layers);
    const uint32_t file_types[] = {0, 1, 32, 7};
    for (int ti = 0; ti < 4; ti++) {
        gguf_out_type t = (gguf_out_type)ti;
        char *lm = out_path(tmp, "lm", t), *mm = out_path(tmp, "mmproj", t);
        gguf_export_info li, mi;
        CHECK(gguf_export_lm(&m, tok, t, "test", lm, &li) == 0, "%s", llava_errmsg());
        CHECK(gguf_export_mmproj(&m, t, "test", mm, &mi) == 0, "%s", llava_errmsg());
        CHECK(li.n_fallback == (t == GGUF_OUT_Q8_0 ? 2 : 0), "%d Q8_0 fallbacks", li.n_fallback);
        gguf_file f;
        CHECK(gguf_open(&f, lm) == 0, "%s", llava_errmsg());
        if (f.buf) {
            CHECK((uint64_t)f.len == li.bytes, "lm %s: %zu bytes, the writer said %llu", gguf_out_type_name(t), f.len,
                  (unsigned long long)li.bytes);
            check_lm_keys(&f, tok, gguf_out_type_name(t), file_types[ti], "test");
            char what[32];
            snprintf(what, sizeof what, "lm %s", gguf_out_type_name(t));
            check_lm_tensors(&f, &m, t, what);
            if (t == GGUF_OUT_F32) check_rope(&f, &m);
            gguf_close(&f);
        }
        CHECK(gguf_open(&f, mm) == 0, "%s", llava_errmsg());
        if (f.buf) {
            check_mmproj_keys(&f, t == GGUF_OUT_F32, "test");
            check_mmproj_tensors(&f, &m, t == GGUF_OUT_F32, t == GGUF_OUT_F32 ? "mmproj f32" : "mmproj f16");
            gguf_close(&f);
        }
        printf("%s: lm %d tensors %llu bytes, mmproj %d tensors %llu bytes\n", gguf_out_type_name(t), li.n_tensors,
               (unsigned long long)li.bytes, mi.n_tensors, (unsigned long long)mi.bytes);
        free(lm);
        free(mm);
    }

    // `llava export` writes what the library writes (its name given; the model folder's tokenizer.model)
    {
        char *cli_out = path_join(tmp, "cli");
        char *argv[] = {"export", "--format", "gguf", "--model", model_dir, "--out",
                        cli_out,  "--type",   "q8_0", "--name",  "test",    NULL};
        CHECK(cmd_export(11, argv) == 0, "llava export failed");
        char *a = path_join(cli_out, "model-q8_0.gguf"), *b = out_path(tmp, "lm", GGUF_OUT_Q8_0);
        char *c = path_join(cli_out, "mmproj-model-f16.gguf"), *d = out_path(tmp, "mmproj", GGUF_OUT_Q8_0);
        CHECK(same_file(a, b), "llava export's %s differs from the library's", a);
        CHECK(same_file(c, d), "llava export's %s differs from the library's", c);
        free(a), free(b), free(c), free(d);
        char *bad_type[] = {"export", "--format", "gguf",   "--model", model_dir,
                            "--out",  cli_out,    "--type", "q4_0",    NULL};
        CHECK(cmd_export(9, bad_type) == 2, "--type q4_0 accepted");
        char *misspelt[] = {"export", "--format", "gguf", "--modle", model_dir, "--out", cli_out, NULL};
        CHECK(cmd_export(7, misspelt) == 2, "--modle accepted");
        char *bad_fmt[] = {"export", "--format", "onnx", "--model", model_dir, "--out", cli_out, NULL};
        CHECK(cmd_export(7, bad_fmt) == 2, "--format onnx accepted");
        // the golden tiny64 model (vocabulary 300) with a 700-piece tokenizer: refused, naming both
        char *mismatch[] = {"export", "--format", "gguf",        "--model", "tests/data/golden/model/tiny64/model",
                            "--out",  cli_out,    "--tokenizer", TOKENIZER, NULL};
        CHECK(cmd_export(9, mismatch) == 1, "a tokenizer larger than the vocabulary accepted");
        CHECK_ERR_HAS("700 pieces");
        free(cli_out);
    }
    llava_model_free(&m);

    // (b) the committed files: f16-exact weights, so the F16 file holds the weights themselves
    llava_model e;
    CHECK(llava_model_load(&e, exact_dir, test_cpu()) == 0, "%s", llava_errmsg());
    const char *update = getenv("LLAVA_UPDATE_GOLDEN");
    int writing = update && *update == '1';
    const char *gdir = writing ? GOLDEN : tmp;
    if (writing) mkdir_p(GOLDEN);
    char *g_f16 = path_join(gdir, "model-f16.gguf"), *g_q8 = path_join(gdir, "model-q8_0.gguf");
    char *g_mm = path_join(gdir, "mmproj-model-f16.gguf");
    CHECK(gguf_export_lm(&e, tok, GGUF_OUT_F16, GOLDEN_NAME, g_f16, NULL) == 0, "%s", llava_errmsg());
    CHECK(gguf_export_lm(&e, tok, GGUF_OUT_Q8_0, GOLDEN_NAME, g_q8, NULL) == 0, "%s", llava_errmsg());
    CHECK(gguf_export_mmproj(&e, GGUF_OUT_F16, GOLDEN_NAME, g_mm, NULL) == 0, "%s", llava_errmsg());
    {  // the f16-exact weights really are: the F16 file's values equal the model's
        gguf_file f;
        CHECK(gguf_open(&f, g_f16) == 0, "%s", llava_errmsg());
        if (f.buf) check_lm_tensors(&f, &e, GGUF_OUT_F16, "golden lm f16");
        gguf_close(&f);
        float *w = view_values(&e, "lm.model.layers.0.mlp.up_proj.weight");
        int exact = 1;
        for (size_t i = 0; w && i < 80 * 32; i++) exact &= f16_to_f32(f32_to_f16(w[i])) == w[i];
        CHECK(w && exact, "the golden model's weights are not f16-exact");
        free(w);
    }
    llava_model_free(&e);
    if (writing) {
        printf("wrote %s, %s, %s; now run tools/reference/check_gguf.py\n", g_f16, g_q8, g_mm);
    } else {
        CHECK(same_file(g_f16, GOLDEN "/model-f16.gguf"), "model-f16.gguf differs from the committed file");
        CHECK(same_file(g_q8, GOLDEN "/model-q8_0.gguf"), "model-q8_0.gguf differs from the committed file");
        CHECK(same_file(g_mm, GOLDEN "/mmproj-model-f16.gguf"),
              "mmproj-model-f16.gguf differs from the committed file");
        size_t n;
        char *text = read_file(GOLDEN "/gguf_reader.json", 16u << 20, &n);
        CHECK(text != NULL, "%s", llava_errmsg());
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        CHECK(j != NULL, GOLDEN "/gguf_reader.json does not parse");
        const cJSON *files = j ? cJSON_GetObjectItemCaseSensitive(j, "files") : NULL;
        const char *names[] = {"model-f16.gguf", "model-q8_0.gguf", "mmproj-model-f16.gguf"};
        for (int i = 0; i < 3; i++) {
            const cJSON *jf = files ? cJSON_GetObjectItemCaseSensitive(files, names[i]) : NULL;
            CHECK(jf != NULL, "gguf_reader.json has no %s", names[i]);
            if (jf) check_against_reader(names[i], jf);
        }
        cJSON_Delete(j);
        free(text);
        check_reader_refusals(GOLDEN "/mmproj-model-f16.gguf");
    }
    free(g_f16), free(g_q8), free(g_mm);
    tok_free(tok);
    free(model_dir);
    free(exact_dir);
    check_rm_rf(tmp);
    free(tmp);
    return check_done();
}
