#include "params.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "data/sampler.h"

const char *const GROUP_NAMES[N_GROUPS] = {"vision", "projector", "lm"};

typedef struct {
    param_table *pt;
    int cap;
} builder;

static void add_view(builder *b, int group, int layer, int used, const char *name, int ndim, ...) {
    param_table *pt = b->pt;
    if (pt->n_views == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        pt->views = xrealloc(pt->views, sizeof(param_view) * (size_t)b->cap);
    }
    param_view *v = &pt->views[pt->n_views++];
    memset(v, 0, sizeof *v);
    v->name = xstrdup(name);
    v->group = group;
    v->layer = layer;
    v->used = used;
    v->ndim = ndim;
    v->numel = 1;
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim; i++) {
        v->shape[i] = va_arg(ap, int64_t);
        v->numel *= (size_t)v->shape[i];
    }
    va_end(ap);
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
}

#define I64(x) ((int64_t)(x))

static void build_vision(builder *b, const model_config *mc) {
    const clip_vision_config *c = &mc->vision;
    int64_t D = c->hidden_size, I = c->intermediate_size, P = c->patch_size, C = c->num_channels;
    int64_t G = c->image_size / c->patch_size;
    // A bare CLIP tower runs every layer; inside LLaVA only those up to the feature layer.
    int run = mc->has_projector ? llava_vision_layers_used(mc) : c->num_hidden_layers;
    int post_used = !mc->has_projector;
    char n[160];
    const int g = GROUP_VISION;
    add_view(b, g, -1, 1, "vision.embeddings.class_embedding", 1, D);
    add_view(b, g, -1, 1, "vision.embeddings.patch_embedding.weight", 4, D, C, P, P);
    add_view(b, g, -1, 1, "vision.embeddings.position_embedding.weight", 2, G * G + 1, D);
    add_view(b, g, -1, 1, "vision.pre_layrnorm.weight", 1, D);
    add_view(b, g, -1, 1, "vision.pre_layrnorm.bias", 1, D);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        int u = l < run;
        static const char *const proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        snprintf(n, sizeof n, "vision.encoder.layers.%d.layer_norm1.weight", l);
        add_view(b, g, l, u, n, 1, D);
        snprintf(n, sizeof n, "vision.encoder.layers.%d.layer_norm1.bias", l);
        add_view(b, g, l, u, n, 1, D);
        for (int k = 0; k < 4; k++) {
            snprintf(n, sizeof n, "vision.encoder.layers.%d.self_attn.%s.weight", l, proj[k]);
            add_view(b, g, l, u, n, 2, D, D);
            snprintf(n, sizeof n, "vision.encoder.layers.%d.self_attn.%s.bias", l, proj[k]);
            add_view(b, g, l, u, n, 1, D);
        }
        snprintf(n, sizeof n, "vision.encoder.layers.%d.layer_norm2.weight", l);
        add_view(b, g, l, u, n, 1, D);
        snprintf(n, sizeof n, "vision.encoder.layers.%d.layer_norm2.bias", l);
        add_view(b, g, l, u, n, 1, D);
        snprintf(n, sizeof n, "vision.encoder.layers.%d.mlp.fc1.weight", l);
        add_view(b, g, l, u, n, 2, I, D);
        snprintf(n, sizeof n, "vision.encoder.layers.%d.mlp.fc1.bias", l);
        add_view(b, g, l, u, n, 1, I);
        snprintf(n, sizeof n, "vision.encoder.layers.%d.mlp.fc2.weight", l);
        add_view(b, g, l, u, n, 2, D, I);
        snprintf(n, sizeof n, "vision.encoder.layers.%d.mlp.fc2.bias", l);
        add_view(b, g, l, u, n, 1, D);
    }
    add_view(b, g, -1, post_used, "vision.post_layernorm.weight", 1, D);
    add_view(b, g, -1, post_used, "vision.post_layernorm.bias", 1, D);
}

static void build_projector(builder *b, const model_config *mc) {
    int64_t Dv = mc->vision.hidden_size, d = mc->text.hidden_size;
    const int g = GROUP_PROJECTOR;
    add_view(b, g, -1, 1, "projector.linear_1.weight", 2, d, Dv);
    if (mc->glue.projector_bias) add_view(b, g, -1, 1, "projector.linear_1.bias", 1, d);
    if (mc->glue.projector == PROJ_MLP2X_GELU) {
        add_view(b, g, -1, 1, "projector.linear_2.weight", 2, d, d);
        if (mc->glue.projector_bias) add_view(b, g, -1, 1, "projector.linear_2.bias", 1, d);
    }
}

static void build_lm(builder *b, const model_config *mc) {
    const llama_config *c = &mc->text;
    int64_t d = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    int64_t qd = I64(c->num_attention_heads) * c->head_dim, kvd = I64(c->num_key_value_heads) * c->head_dim;
    char n[160];
    const int g = GROUP_LM;
    add_view(b, g, -1, 1, "lm.model.embed_tokens.weight", 2, V, d);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        snprintf(n, sizeof n, "lm.model.layers.%d.input_layernorm.weight", l);
        add_view(b, g, l, 1, n, 1, d);
        const char *names[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        int64_t out[4] = {qd, kvd, kvd, d}, in[4] = {d, d, d, qd};
        for (int k = 0; k < 4; k++) {
            snprintf(n, sizeof n, "lm.model.layers.%d.self_attn.%s.weight", l, names[k]);
            add_view(b, g, l, 1, n, 2, out[k], in[k]);
            if (c->attention_bias) {
                snprintf(n, sizeof n, "lm.model.layers.%d.self_attn.%s.bias", l, names[k]);
                add_view(b, g, l, 1, n, 1, out[k]);
            }
        }
        snprintf(n, sizeof n, "lm.model.layers.%d.post_attention_layernorm.weight", l);
        add_view(b, g, l, 1, n, 1, d);
        const char *mlp[3] = {"gate_proj", "up_proj", "down_proj"};
        int64_t mo[3] = {I, I, d}, mi[3] = {d, d, I};
        for (int k = 0; k < 3; k++) {
            snprintf(n, sizeof n, "lm.model.layers.%d.mlp.%s.weight", l, mlp[k]);
            add_view(b, g, l, 1, n, 2, mo[k], mi[k]);
            if (c->mlp_bias) {
                snprintf(n, sizeof n, "lm.model.layers.%d.mlp.%s.bias", l, mlp[k]);
                add_view(b, g, l, 1, n, 1, mo[k]);
            }
        }
    }
    add_view(b, g, -1, 1, "lm.model.norm.weight", 1, d);
    if (!c->tie_word_embeddings) add_view(b, g, -1, 1, "lm.lm_head.weight", 2, V, d);
}

static int cmp_view_idx(const void *a, const void *b, void *ctx) {
    const param_table *pt = ctx;
    return strcmp(pt->views[*(const int *)a].name, pt->views[*(const int *)b].name);
}

int param_table_build(const model_config *mc, param_table *pt) {
    memset(pt, 0, sizeof *pt);
    builder b = {pt, 0};
    if (mc->has_projector && !(mc->has_vision && mc->has_text))
        return llava_fail("model config: the vision tower config is unknown (original LLaVA config naming \"%s\"); "
                          "give the tower's folder",
                          mc->vision_tower_name);
    if (mc->has_vision) build_vision(&b, mc);
    if (mc->has_projector) build_projector(&b, mc);
    if (mc->has_text) build_lm(&b, mc);
    pt->linear_projector = mc->has_projector && mc->glue.projector == PROJ_LINEAR;
    pt->sorted = xmalloc(sizeof(int) * (size_t)(pt->n_views ? pt->n_views : 1));
    for (int i = 0; i < pt->n_views; i++) pt->sorted[i] = i;
    qsort_r(pt->sorted, (size_t)pt->n_views, sizeof(int), cmp_view_idx, pt);
    return 0;
}

void param_table_free(param_table *pt) {
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
    for (int i = 0; i < ndim && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

int param_load(param_table *pt, const st_set *s, int copy, load_report *rep) {
    return param_load_groups(pt, s, copy, (1 << N_GROUPS) - 1, NULL, rep);
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
        }
        rep->n_loaded++;
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
