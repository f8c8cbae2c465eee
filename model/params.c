#include "params.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/torch_rng.h"
#include "common/util.h"

const char *const GROUP_NAMES[N_GROUPS] = {"vision", "projector", "lm", "lora", "lm-nf4"};

// The builder: views are appended to a growing array, so the fields of pt->w receive their view's
// index while building and the pointers once the array has its final place (fix-ups).
typedef struct {
    const param_view **slot;
    int view;
} fixup;

typedef struct {
    param_table *pt;
    int cap;
    fixup *fix;
    int n_fix, cap_fix;
} builder;

// Dimension names of the shapes in the spec tables below, resolved against the config.
enum { D_NONE = 0, D_DV, D_IV, D_CIN, D_PATCH, D_NPOS, D_DT, D_IT, D_QD, D_KVD, D_VOCAB, D_RANK };

typedef struct {
    int64_t dv, iv, cin, patch, npos, dt, it, qd, kvd, vocab, rank;
} dims;

static int64_t dim_of(const dims *z, int d) {
    switch (d) {
    case D_DV: return z->dv;
    case D_IV: return z->iv;
    case D_CIN: return z->cin;
    case D_PATCH: return z->patch;
    case D_NPOS: return z->npos;
    case D_DT: return z->dt;
    case D_IT: return z->it;
    case D_QD: return z->qd;
    case D_KVD: return z->kvd;
    case D_VOCAB: return z->vocab;
    case D_RANK: return z->rank;
    }
    return 0;
}

// When a tensor exists.
enum {
    ALWAYS = 0,
    IF_ATTN_BIAS,
    IF_QKV_BIAS,  // q, k, v biases: attention_bias, or Qwen2's (whose o_proj has none)
    IF_MLP_BIAS,
    IF_PROJ_BIAS,
    IF_CLIP,    // CLIP's tower only: the class token and the pre-layernorm
    IF_SIGLIP,  // SigLIP's only: the patch embedding's bias
    IF_UNTIED,
    IF_LORA_Q,                               // IF_LORA_Q + LORA_x: the module is adapted
    IF_DORA_Q = IF_LORA_Q + LORA_N_TARGETS,  // IF_DORA_Q + LORA_x: the module is adapted with DoRA
};

// One tensor: its name (after the prefix of its part: "vision.encoder.layers.<l>." and so on), the
// field of the part's struct it lands in, its shape in named dimensions, and when it exists.
typedef struct {
    const char *name;
    size_t field;  // offsetof in clip_layer_params, lm_layer_params or llava_params
    int shape[4];
    int when;
} view_spec;

#define CL(f) offsetof(clip_layer_params, f)
#define LM(f) offsetof(lm_layer_params, f)
#define TOP(f) offsetof(llava_params, f)

// In checkpoint order, which fixes each view's place in its group's flat buffer.
static const view_spec VISION_EMBED[] = {
    {"vision.embeddings.class_embedding", TOP(cls), {D_DV}, IF_CLIP},
    {"vision.embeddings.patch_embedding.weight", TOP(patch_w), {D_DV, D_CIN, D_PATCH, D_PATCH}, ALWAYS},
    {"vision.embeddings.patch_embedding.bias", TOP(patch_b), {D_DV}, IF_SIGLIP},
    {"vision.embeddings.position_embedding.weight", TOP(pos_emb), {D_NPOS, D_DV}, ALWAYS},
    {"vision.pre_layrnorm.weight", TOP(pre_w), {D_DV}, IF_CLIP},
    {"vision.pre_layrnorm.bias", TOP(pre_b), {D_DV}, IF_CLIP},
};
static const view_spec CLIP_LAYER[] = {
    {"layer_norm1.weight", CL(ln1_w), {D_DV}, ALWAYS},
    {"layer_norm1.bias", CL(ln1_b), {D_DV}, ALWAYS},
    {"self_attn.q_proj.weight", CL(q_w), {D_DV, D_DV}, ALWAYS},
    {"self_attn.q_proj.bias", CL(q_b), {D_DV}, ALWAYS},
    {"self_attn.k_proj.weight", CL(k_w), {D_DV, D_DV}, ALWAYS},
    {"self_attn.k_proj.bias", CL(k_b), {D_DV}, ALWAYS},
    {"self_attn.v_proj.weight", CL(v_w), {D_DV, D_DV}, ALWAYS},
    {"self_attn.v_proj.bias", CL(v_b), {D_DV}, ALWAYS},
    {"self_attn.out_proj.weight", CL(o_w), {D_DV, D_DV}, ALWAYS},
    {"self_attn.out_proj.bias", CL(o_b), {D_DV}, ALWAYS},
    {"layer_norm2.weight", CL(ln2_w), {D_DV}, ALWAYS},
    {"layer_norm2.bias", CL(ln2_b), {D_DV}, ALWAYS},
    {"mlp.fc1.weight", CL(fc1_w), {D_IV, D_DV}, ALWAYS},
    {"mlp.fc1.bias", CL(fc1_b), {D_IV}, ALWAYS},
    {"mlp.fc2.weight", CL(fc2_w), {D_DV, D_IV}, ALWAYS},
    {"mlp.fc2.bias", CL(fc2_b), {D_DV}, ALWAYS},
};
static const view_spec VISION_POST[] = {
    {"vision.post_layernorm.weight", TOP(post_w), {D_DV}, ALWAYS},
    {"vision.post_layernorm.bias", TOP(post_b), {D_DV}, ALWAYS},
};

static const view_spec LM_EMBED[] = {
    {"lm.model.embed_tokens.weight", TOP(embed), {D_VOCAB, D_DT}, ALWAYS},
};
static const view_spec LM_LAYER[] = {
    {"input_layernorm.weight", LM(in_norm), {D_DT}, ALWAYS},
    {"self_attn.q_proj.weight", LM(q), {D_QD, D_DT}, ALWAYS},
    {"self_attn.q_proj.bias", LM(q_b), {D_QD}, IF_QKV_BIAS},
    {"self_attn.k_proj.weight", LM(k), {D_KVD, D_DT}, ALWAYS},
    {"self_attn.k_proj.bias", LM(k_b), {D_KVD}, IF_QKV_BIAS},
    {"self_attn.v_proj.weight", LM(v), {D_KVD, D_DT}, ALWAYS},
    {"self_attn.v_proj.bias", LM(v_b), {D_KVD}, IF_QKV_BIAS},
    {"self_attn.o_proj.weight", LM(o), {D_DT, D_QD}, ALWAYS},
    {"self_attn.o_proj.bias", LM(o_b), {D_DT}, IF_ATTN_BIAS},
    {"post_attention_layernorm.weight", LM(post_norm), {D_DT}, ALWAYS},
    {"mlp.gate_proj.weight", LM(gate), {D_IT, D_DT}, ALWAYS},
    {"mlp.gate_proj.bias", LM(gate_b), {D_IT}, IF_MLP_BIAS},
    {"mlp.up_proj.weight", LM(up), {D_IT, D_DT}, ALWAYS},
    {"mlp.up_proj.bias", LM(up_b), {D_IT}, IF_MLP_BIAS},
    {"mlp.down_proj.weight", LM(down), {D_DT, D_IT}, ALWAYS},
    {"mlp.down_proj.bias", LM(down_b), {D_DT}, IF_MLP_BIAS},
};
// The adapters, in a group of their own (PEFT's names after the adapted module's name). A module's
// A and B are side by side, so the layer's adapters are one contiguous run (one gradient bucket).
#define LORA_SPEC(mod, field, in, out)                                                                                 \
    {mod ".lora_A.weight", LM(lora_a[field]), {D_RANK, in}, IF_LORA_Q + field},                                        \
        {mod ".lora_B.weight", LM(lora_b[field]), {out, D_RANK}, IF_LORA_Q + field}, {                                 \
        mod ".lora_magnitude_vector", LM(lora_m[field]), {out}, IF_DORA_Q + field                                      \
    }
static const view_spec LM_LORA[] = {
    LORA_SPEC("self_attn.q_proj", LORA_Q, D_DT, D_QD),  LORA_SPEC("self_attn.k_proj", LORA_K, D_DT, D_KVD),
    LORA_SPEC("self_attn.v_proj", LORA_V, D_DT, D_KVD), LORA_SPEC("self_attn.o_proj", LORA_O, D_QD, D_DT),
    LORA_SPEC("mlp.gate_proj", LORA_GATE, D_DT, D_IT),  LORA_SPEC("mlp.up_proj", LORA_UP, D_DT, D_IT),
    LORA_SPEC("mlp.down_proj", LORA_DOWN, D_IT, D_DT),
};
static const view_spec LM_TOP[] = {
    {"lm.model.norm.weight", TOP(norm), {D_DT}, ALWAYS},
    {"lm.lm_head.weight", TOP(head), {D_VOCAB, D_DT}, IF_UNTIED},
};

static int spec_exists(const view_spec *s, const model_config *mc) {
    switch (s->when) {
    case IF_ATTN_BIAS: return mc->text.attention_bias;
    case IF_QKV_BIAS: return mc->text.attention_bias || mc->text.qkv_bias;
    case IF_MLP_BIAS: return mc->text.mlp_bias;
    case IF_PROJ_BIAS: return mc->glue.projector_bias;
    case IF_CLIP: return !mc->vision.siglip;
    case IF_SIGLIP: return mc->vision.siglip;
    case IF_UNTIED: return !mc->text.tie_word_embeddings;
    }
    if (s->when >= IF_DORA_Q) return mc->lora.r > 0 && mc->lora.dora && (mc->lora.targets >> (s->when - IF_DORA_Q) & 1);
    if (s->when >= IF_LORA_Q) return mc->lora.r > 0 && (mc->lora.targets >> (s->when - IF_LORA_Q) & 1);
    return 1;
}

static int add_view(builder *b, int group, int layer, int used, const char *name, int ndim, const int64_t *shape) {
    param_table *pt = b->pt;
    if (pt->n_views == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        pt->views = xrealloc(pt->views, sizeof(param_view) * (size_t)b->cap);
    }
    param_view *v = &pt->views[pt->n_views];
    memset(v, 0, sizeof *v);
    v->name = xstrdup(name);
    v->group = group;
    v->layer = layer;
    v->used = used;
    v->ndim = ndim;
    v->numel = 1;
    for (int i = 0; i < ndim; i++) {
        v->shape[i] = shape[i];
        v->numel *= (size_t)shape[i];
    }
    pt->group_numel_all[group] += v->numel;
    if (used) {
        // Each view starts on a multiple of PARAM_ALIGN elements (16 bytes in bf16): GEMM libraries
        // and vector loads want aligned matrices, and odd-sized views would misalign the rest.
        size_t start = (pt->group_numel[group] + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
        v->offset = start;
        pt->group_numel[group] = start + v->numel;
    } else {
        v->offset = (size_t)-1;
    }
    return pt->n_views++;
}

// Adds the views of `specs` (n of them) named prefix + spec name, and has each land in the field
// of `part` (a clip_layer_params, lm_layer_params or the llava_params itself).
static void add_specs(builder *b, const model_config *mc, const dims *z, const view_spec *specs, int n, int group,
                      int layer, int used, const char *prefix, void *part) {
    for (int i = 0; i < n; i++) {
        const view_spec *s = &specs[i];
        if (!spec_exists(s, mc)) continue;
        int64_t shape[PARAM_MAX_DIMS];
        int ndim = 0;
        while (ndim < PARAM_MAX_DIMS && s->shape[ndim] != D_NONE) {
            shape[ndim] = dim_of(z, s->shape[ndim]);
            ndim++;
        }
        char name[192];
        snprintf(name, sizeof name, "%s%s", prefix, s->name);
        // QLoRA: a decoder layer's linear weights (not its norms or biases) in the NF4 group.
        int g = group;
        if (group == GROUP_LM && layer >= 0 && mc->lora.bits == 4 && ndim == 2) g = GROUP_LM_NF4;
        int idx = add_view(b, g, layer, used, name, ndim, shape);
        if (b->n_fix == b->cap_fix) {
            b->cap_fix = b->cap_fix ? 2 * b->cap_fix : 256;
            b->fix = xrealloc(b->fix, sizeof(fixup) * (size_t)b->cap_fix);
        }
        b->fix[b->n_fix++] = (fixup){(const param_view **)((char *)part + s->field), idx};
    }
}

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void build_vision(builder *b, const model_config *mc, const dims *z) {
    const clip_vision_config *c = &mc->vision;
    llava_params *w = &b->pt->w;
    // A bare CLIP tower runs every layer; inside LLaVA only those up to the feature layer.
    int run = mc->has_projector ? llava_vision_layers_used(mc) : c->num_hidden_layers;
    add_specs(b, mc, z, VISION_EMBED, N_OF(VISION_EMBED), GROUP_VISION, -1, 1, "", w);
    w->n_clip = c->num_hidden_layers;
    w->clip = xcalloc((size_t)(w->n_clip ? w->n_clip : 1), sizeof(clip_layer_params));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "vision.encoder.layers.%d.", l);
        add_specs(b, mc, z, CLIP_LAYER, N_OF(CLIP_LAYER), GROUP_VISION, l, l < run, prefix, &w->clip[l]);
    }
    // The post-layernorm exists in every checkpoint; only a bare tower computes with it.
    add_specs(b, mc, z, VISION_POST, N_OF(VISION_POST), GROUP_VISION, -1, !mc->has_projector, "", w);
}

// linear_1 (d, Dv), then linear_2 .. linear_N (d, d): LLaVA's mlp{N}x_gelu in nn.Sequential's order.
static void build_projector(builder *b, const model_config *mc, const dims *z) {
    llava_params *w = &b->pt->w;
    w->n_proj = mc->glue.projector_depth;
    for (int k = 0; k < w->n_proj; k++) {
        char wn[48], bn[48];
        snprintf(wn, sizeof wn, "projector.linear_%d.weight", k + 1);
        snprintf(bn, sizeof bn, "projector.linear_%d.bias", k + 1);
        view_spec s[2] = {
            {wn, TOP(pw) + sizeof(const param_view *) * (size_t)k, {D_DT, k == 0 ? D_DV : D_DT}, ALWAYS},
            {bn, TOP(pb) + sizeof(const param_view *) * (size_t)k, {D_DT}, IF_PROJ_BIAS},
        };
        add_specs(b, mc, z, s, 2, GROUP_PROJECTOR, -1, 1, "", w);
    }
    // LLaVA-NeXT's AnyRes: the newline after each row of an image's unpadded features (trained with the projector).
    if (mc->glue.anyres) {
        view_spec nl[1] = {{"projector.image_newline", TOP(newline), {D_DT}, ALWAYS}};
        add_specs(b, mc, z, nl, 1, GROUP_PROJECTOR, -1, 1, "", w);
    }
}

static void build_lm(builder *b, const model_config *mc, const dims *z) {
    llava_params *w = &b->pt->w;
    add_specs(b, mc, z, LM_EMBED, N_OF(LM_EMBED), GROUP_LM, -1, 1, "", w);
    w->n_lm = mc->text.num_hidden_layers;
    w->lm = xcalloc((size_t)(w->n_lm ? w->n_lm : 1), sizeof(lm_layer_params));
    for (int l = 0; l < w->n_lm; l++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "lm.model.layers.%d.", l);
        add_specs(b, mc, z, LM_LAYER, N_OF(LM_LAYER), GROUP_LM, l, 1, prefix, &w->lm[l]);
    }
    add_specs(b, mc, z, LM_TOP, N_OF(LM_TOP), GROUP_LM, -1, 1, "", w);
    for (int l = 0; l < w->n_lm && mc->lora.r > 0; l++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "lm.model.layers.%d.", l);
        add_specs(b, mc, z, LM_LORA, N_OF(LM_LORA), GROUP_LORA, l, 1, prefix, &w->lm[l]);
    }
}

static int cmp_view_idx(const void *a, const void *b, void *ctx) {
    const param_table *pt = ctx;
    return strcmp(pt->views[*(const int *)a].name, pt->views[*(const int *)b].name);
}

int param_table_build(const model_config *mc, param_table *pt) {
    memset(pt, 0, sizeof *pt);
    builder b = {pt, 0, NULL, 0, 0};
    if (mc->has_projector && !(mc->has_vision && mc->has_text))
        return llava_fail(
            "model config: the vision tower config is unknown (original LLaVA config naming \"%s\"); "
            "give the tower's folder",
            mc->vision_tower_name);
    const clip_vision_config *vc = &mc->vision;
    const llama_config *tc = &mc->text;
    int64_t grid = vc->patch_size ? vc->image_size / vc->patch_size : 0;
    dims z = {.dv = vc->hidden_size,
              .iv = vc->intermediate_size,
              .cin = vc->num_channels,
              .patch = vc->patch_size,
              .npos = grid * grid + vision_has_cls(vc),
              .dt = tc->hidden_size,
              .it = tc->intermediate_size,
              .qd = (int64_t)tc->num_attention_heads * tc->head_dim,
              .kvd = (int64_t)tc->num_key_value_heads * tc->head_dim,
              .vocab = tc->vocab_size,
              .rank = mc->lora.r};
    if (mc->has_vision) build_vision(&b, mc, &z);
    if (mc->has_projector) build_projector(&b, mc, &z);
    if (mc->has_text) build_lm(&b, mc, &z);
    for (int i = 0; i < b.n_fix; i++) *b.fix[i].slot = &pt->views[b.fix[i].view];
    free(b.fix);
    if (mc->has_text) pt->w.head = tc->tie_word_embeddings ? pt->w.embed : pt->w.head;
    pt->linear_projector = mc->has_projector && mc->glue.projector_depth == 1;
    if (mc->has_vision && mc->vision.pos_grid && mc->vision.pos_grid != grid) pt->pos_from_grid = mc->vision.pos_grid;
    pt->sorted = xmalloc(sizeof(int) * (size_t)(pt->n_views ? pt->n_views : 1));
    for (int i = 0; i < pt->n_views; i++) pt->sorted[i] = i;
    qsort_r(pt->sorted, (size_t)pt->n_views, sizeof(int), cmp_view_idx, pt);
    return 0;
}

void param_table_free(param_table *pt) {
    free(pt->w.clip);
    free(pt->w.lm);
    for (int i = 0; i < pt->n_views; i++) free(pt->views[i].name);
    free(pt->views);
    free(pt->sorted);
    for (int g = 0; g < N_GROUPS; g++) free(pt->data[g]);
    memset(pt, 0, sizeof *pt);
}

const param_view *param_find(const param_table *pt, const char *name) {
    int lo = 0, hi = pt->n_views - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const param_view *v = &pt->views[pt->sorted[mid]];
        int c = strcmp(v->name, name);
        if (c == 0) return v;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

int param_alloc(param_table *pt) {
    for (int g = 0; g < N_GROUPS; g++) {
        free(pt->data[g]);
        pt->data[g] = pt->group_numel[g] ? xcalloc(pt->group_numel[g], sizeof(float)) : NULL;
    }
    return 0;
}

float *param_ptr(const param_table *pt, const param_view *v) {
    return (v->used && pt->data[v->group]) ? pt->data[v->group] + v->offset : NULL;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// fast: uniform on [-sqrt(3) std, sqrt(3) std] from a hash of the element's index, a few ns per
// element instead of Box-Muller's tens (a 7B-shaped model for a benchmark in seconds, not a minute).
static void init_views(param_table *pt, float std, uint64_t seed, int fast) {
    torch_rng r;
    torch_rng_seed(&r, seed);
    const float a = std * 1.7320508f;
    uint64_t idx = seed * 0x100000000ull;
    for (int i = 0; i < pt->n_views; i++) {
        const param_view *v = &pt->views[i];
        float *p = param_ptr(pt, v);
        if (!p) continue;
        int is_norm = strstr(v->name, "norm") != NULL && strstr(v->name, ".weight") != NULL;
        int matrix = v->ndim >= 2 || strstr(v->name, "class_embedding") != NULL;
        for (size_t k = 0; k < v->numel; k++) {
            if (is_norm) p[k] = 1.0f;
            else if (!matrix) p[k] = 0.0f;
            else if (fast) p[k] = a * ((float)(splitmix64(idx++) >> 40) * 0x1p-23f - 1.0f);
            else {
                // Box-Muller on two 24-bit uniforms.
                double u1 = ((torch_rng_next(&r) >> 8) + 1.0) / 16777217.0, u2 = (torch_rng_next(&r) >> 8) / 16777216.0;
                p[k] = std * (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
            }
        }
    }
}

void param_init_random(param_table *pt, float std, uint64_t seed) { init_views(pt, std, seed, 0); }

void param_init_random_fast(param_table *pt, float std, uint64_t seed) { init_views(pt, std, seed, 1); }

static void push(char ***list, int *n, char *s) {
    *list = xrealloc(*list, sizeof(char *) * (size_t)(*n + 1));
    (*list)[(*n)++] = s;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

int param_load(param_table *pt, const st_set *s, int copy, load_report *rep) {
    return param_load_groups(pt, s, copy, (1 << N_GROUPS) - 1, NULL, rep);
}

// torch's cubic convolution weights (A = -0.75) for a source offset t in [0, 1): the points at -1, 0, 1, 2.
static void cubic_weights(float t, float w[4]) {
    const float A = -0.75f;
    float x1 = t + 1.0f, x2 = 1.0f - t, x3 = 2.0f - t;
    w[0] = ((A * x1 - 5.0f * A) * x1 + 8.0f * A) * x1 - 4.0f * A;
    w[1] = ((A + 2.0f) * t - (A + 3.0f)) * t * t + 1.0f;
    w[2] = ((A + 2.0f) * x2 - (A + 3.0f)) * x2 * x2 + 1.0f;
    w[3] = ((A * x3 - 5.0f * A) * x3 + 8.0f * A) * x3 - 4.0f * A;
}

// transformers' interpolate_pos_encoding (CLIP): the class position kept, the patch positions as a gs x gs grid
// resized to gd x gd by F.interpolate(mode="bicubic", align_corners=False): source scale * (o + 0.5) - 0.5 with
// scale = gs / gd in fp32, the four points around it on each axis clamped to the grid, rows then columns.
static void interp_pos_bicubic(const float *src, int gs, float *dst, int gd, int C, int cls) {
    if (cls) memcpy(dst, src, sizeof(float) * (size_t)C);
    const float *s = src + (size_t)cls * C;
    float *d = dst + (size_t)cls * C, scale = (float)gs / (float)gd;
    for (int oy = 0; oy < gd; oy++) {
        float ry = scale * ((float)oy + 0.5f) - 0.5f, fy = floorf(ry), wy[4];
        cubic_weights(ry - fy, wy);
        for (int ox = 0; ox < gd; ox++) {
            float rx = scale * ((float)ox + 0.5f) - 0.5f, fx = floorf(rx), wx[4];
            cubic_weights(rx - fx, wx);
            for (int c = 0; c < C; c++) {
                float rows[4];
                for (int i = 0; i < 4; i++) {
                    int y = (int)fy - 1 + i;
                    y = y < 0 ? 0 : y >= gs ? gs - 1 : y;
                    float acc = 0;
                    for (int j = 0; j < 4; j++) {
                        int x = (int)fx - 1 + j;
                        x = x < 0 ? 0 : x >= gs ? gs - 1 : x;
                        acc += wx[j] * s[((size_t)y * gs + x) * C + c];
                    }
                    rows[i] = acc;
                }
                d[((size_t)oy * gd + ox) * C + c] =
                    wy[0] * rows[0] + wy[1] * rows[1] + wy[2] * rows[2] + wy[3] * rows[3];
            }
        }
    }
}

int param_load_groups(param_table *pt, const st_set *s, int copy, int group_mask, char *filled, load_report *rep) {
    memset(rep, 0, sizeof *rep);
    rep->layout = LAYOUT_UNKNOWN;
    int saw_original_only = 0, saw_lm_plain = 0;
    char *found = filled ? filled : xcalloc((size_t)(pt->n_views ? pt->n_views : 1), 1);
    for (int i = 0; i < s->n_entries; i++) {
        const st_tensor *t = s->entries[i];
        const st_file *f = &s->files[s->file_of[i]];
        rep->dtype_count[t->dtype]++;
        char *internal = NULL;
        weight_layout lay;
        name_status st = name_to_internal(t->name, &internal, &lay);
        if (st == NAME_IGNORED) {
            rep->n_ignored++;
            continue;
        }
        if (st == NAME_UNKNOWN) {
            push(&rep->unexpected, &rep->n_unexpected, xstrdup(t->name));
            continue;
        }
        if (!(group_mask & (1 << name_group_of(internal)))) {
            free(internal);
            continue;  // another source provides this group
        }
        if (lay == LAYOUT_LLAVA_ORIGINAL) saw_original_only = 1;
        else if (lay == LAYOUT_UNKNOWN) saw_lm_plain = 1;
        else if (rep->layout == LAYOUT_UNKNOWN || rep->layout == LAYOUT_CLIP) rep->layout = lay;
        const param_view *v = param_find(pt, internal);
        free(internal);
        if (!v) {
            push(&rep->unexpected, &rep->n_unexpected, xstrdup(t->name));
            continue;
        }
        found[v - pt->views] = 1;
        int same = t->ndim == v->ndim && t->numel == v->numel;
        for (int k = 0; same && k < v->ndim; k++) same = t->shape[k] == v->shape[k];
        // A tower run at another image size: the file's position embeddings (its own grid) are interpolated.
        if (!same && pt->pos_from_grid && strcmp(v->name, "vision.embeddings.position_embedding.weight") == 0 &&
            t->ndim == 2 && v->ndim == 2 && t->shape[1] == v->shape[1]) {
            int gs = pt->pos_from_grid, gd = 0, cls = (int)(t->shape[0] - (int64_t)gs * gs);
            while ((int64_t)(gd + 1) * (gd + 1) + cls <= v->shape[0]) gd++;
            if ((cls == 0 || cls == 1) && (int64_t)gd * gd + cls == v->shape[0]) {
                float *tmp = xmalloc(sizeof(float) * (size_t)t->numel), *dst = copy ? param_ptr(pt, v) : NULL;
                int rc = copy ? st_tensor_to_f32(f, t, tmp) : 0;
                if (rc == 0 && dst) interp_pos_bicubic(tmp, gs, dst, gd, (int)v->shape[1], cls);
                free(tmp);
                if (rc != 0) {
                    if (!filled) free(found);
                    return -1;
                }
                rep->n_loaded++;
                rep->n_loaded_group[v->group]++;
                continue;
            }
        }
        if (!same) {
            char a[96], b[96];
            shape_str(a, sizeof a, t->ndim, t->shape);
            shape_str(b, sizeof b, v->ndim, v->shape);
            push(&rep->mismatched, &rep->n_mismatched, xasprintf("%s: file %s vs model %s", t->name, a, b));
            continue;
        }
        if (!v->used) {
            rep->n_unused++;
            continue;
        }
        if (copy) {
            float *dst = param_ptr(pt, v);
            if (!dst || st_tensor_to_f32(f, t, dst) != 0) {
                if (!filled) free(found);
                return dst ? -1 : llava_fail("param_load: storage for %s is not allocated", v->name);
            }
            // A NaN or infinity would only show as a NaN loss or no answer, far from its cause.
            size_t bad = 0, at = f32_first_nonfinite(dst, v->numel, &bad);
            if (bad) {
                if (!filled) free(found);
                return llava_fail("%s: tensor \"%s\" holds %zu value%s that %s not finite (%s at element %zu of %zu%s)",
                                  f->path, t->name, bad, bad == 1 ? "" : "s", bad == 1 ? "is" : "are",
                                  f32_nonfinite_name(dst[at]), at, v->numel, t->dtype == DT_F32 ? "" : ", as fp32");
            }
        }
        rep->n_loaded++;
        rep->n_loaded_group[v->group]++;
    }
    for (int i = 0; i < pt->n_views; i++)
        if (!found[i] && pt->views[i].used && (group_mask & (1 << pt->views[i].group)))
            push(&rep->missing, &rep->n_missing, xstrdup(pt->views[i].name));
    if (!filled) free(found);
    if (rep->layout == LAYOUT_UNKNOWN) {
        if (saw_original_only) rep->layout = LAYOUT_LLAVA_ORIGINAL;
        else if (saw_lm_plain) rep->layout = LAYOUT_LLAMA;
    } else if (saw_original_only && rep->layout == LAYOUT_CLIP) {
        rep->layout = LAYOUT_LLAVA_ORIGINAL;
    }
    return 0;
}

void load_report_free(load_report *rep) {
    for (int i = 0; i < rep->n_missing; i++) free(rep->missing[i]);
    for (int i = 0; i < rep->n_unexpected; i++) free(rep->unexpected[i]);
    for (int i = 0; i < rep->n_mismatched; i++) free(rep->mismatched[i]);
    free(rep->missing);
    free(rep->unexpected);
    free(rep->mismatched);
    memset(rep, 0, sizeof *rep);
}
