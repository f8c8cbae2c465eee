// Parameters in flat per-group buffers with named views (ARCHITECTURE.md decision 3).
//
// Groups: the vision tower (frozen in LLaVA), the projector, the language model, and for LoRA the
// adapters (and with QLoRA the LM's linears, held as NF4 instead of a buffer). Each group is one
// contiguous allocation; a view is a named (offset, shape) inside it. The table lists
// every tensor the checkpoint format has, including vision layers LLaVA never runs (the layer after
// the selected feature layer, post_layernorm): those views are marked unused and take no storage.
#ifndef LLAVA_MODEL_PARAMS_H
#define LLAVA_MODEL_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model/io/names.h"
#include "model/io/safetensors.h"

// GROUP_LORA holds the LoRA adapters (model_config.lora), empty when the model has none.
// GROUP_LM_NF4 holds, with QLoRA (lora.bits 4), the decoder layers' seven linears: loaded into the
// host table like any group, then quantised to NF4 and never uploaded (llava_model.nf4).
enum { GROUP_VISION = 0, GROUP_PROJECTOR = 1, GROUP_LM = 2, GROUP_LORA = 3, GROUP_LM_NF4 = 4, N_GROUPS = 5 };
extern const char *const GROUP_NAMES[N_GROUPS];

#define PARAM_MAX_DIMS 4
#define PARAM_ALIGN 8  // views start at multiples of 8 elements

typedef struct {
    char *name;  // internal name (names.h)
    int group;
    int layer;  // encoder / decoder layer index, -1 outside the layer stack
    int used;   // 0: in the checkpoint format but never computed (no storage)
    int ndim;
    int64_t shape[PARAM_MAX_DIMS];
    size_t numel;
    size_t offset;  // element offset inside the group buffer (used views only), a multiple of PARAM_ALIGN
} param_view;

// The views each part of the model computes with, set as the table is built (params.c declares each
// tensor once: its name, shape and the field it lands in). Every field is a view pointer, so a
// layer's views can be walked as an array (the backward reports them as its gradients are final).
// NULL: the model has no such tensor (a bias the config leaves out).
typedef struct {
    const param_view *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    const param_view *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} clip_layer_params;

typedef struct {
    const param_view *in_norm, *q, *q_b, *k, *k_b, *v, *v_b, *o, *o_b;
    const param_view *post_norm, *gate, *gate_b, *up, *up_b, *down, *down_b;
    // LoRA adapters (GROUP_LORA) per LORA_* module: A (r, in), B (out, r); NULL where not adapted
    const param_view *lora_a[LORA_N_TARGETS], *lora_b[LORA_N_TARGETS];
    const param_view *lora_m[LORA_N_TARGETS];  // DoRA's magnitudes (out); NULL without DoRA
} lm_layer_params;

// The weight of a decoder layer's linear by its LoRA module index (LORA_Q .. LORA_DOWN).
static inline const param_view *lm_linear_weight(const lm_layer_params *c, int mod) {
    const param_view *w[LORA_N_TARGETS] = {c->q, c->k, c->v, c->o, c->gate, c->up, c->down};
    return w[mod];
}

typedef struct {
    // vision tower: embeddings, pre-layernorm, every layer of the checkpoint (those past the feature
    // layer are views with used = 0), post-layernorm
    const param_view *patch_w, *patch_b, *cls, *pos_emb, *pre_w, *pre_b, *post_w, *post_b;  // SigLIP: patch_b, no
                                                                                            // cls, pre_w, pre_b
    clip_layer_params *clip;
    int n_clip;
    // projector: linear_1 .. linear_<n_proj> (weight, bias); none for the identity
    const param_view *pw[PROJ_MAX_DEPTH], *pb[PROJ_MAX_DEPTH];
    int n_proj;
    const param_view *newline;  // LLaVA-NeXT's image_newline (d) with AnyRes; NULL without
    // language model: embeddings, layers, final norm, head (the embeddings when tied)
    const param_view *embed, *norm, *head;
    lm_layer_params *lm;
    int n_lm;
} llava_params;

typedef struct {
    param_view *views;  // group-major, then the order the model consumes them
    int n_views;
    int *sorted;                         // view indices sorted by name, for lookup
    size_t group_numel[N_GROUPS];        // storage: used views only, with alignment padding
    uint64_t group_numel_all[N_GROUPS];  // every view, as the checkpoint format counts them
    float *data[N_GROUPS];               // fp32 storage (CPU backend); NULL until allocated
    int pos_from_grid;     // the position embeddings a file holds are for this grid: interpolated at load (0: none)
    int linear_projector;  // one Linear (original LLaVA names it mm_projector without an index)
    llava_params w;        // the views by their place in the model
} param_table;

// Builds the table implied by a model config. No storage is allocated.
int param_table_build(const model_config *mc, param_table *pt);
void param_table_free(param_table *pt);
// A view by its internal name (names.h), for the formats that name tensors (checkpoints, exports);
// the model itself reads pt->w.
const param_view *param_find(const param_table *pt, const char *internal);
int param_alloc(param_table *pt);  // zeroed fp32 storage for every group
float *param_ptr(const param_table *pt, const param_view *v);
// Fills every allocated view: matrices and embeddings N(0, std^2) (Box-Muller on torch_rng draws
// from `seed`, in table order), norm weights 1, biases 0. For models with no weight file.
void param_init_random(param_table *pt, float std, uint64_t seed);
// The same layout of values, but matrices uniform with standard deviation std from a hash of each
// element's index: for benchmarks, where only the scale matters and a 7B-shaped table must fill fast.
void param_init_random_fast(param_table *pt, float std, uint64_t seed);

// What loading a set of safetensors files onto a table found.
typedef struct {
    int n_loaded;                  // tensors copied into the table
    int n_loaded_group[N_GROUPS];  // of them, per group
    int n_ignored;                 // known tensors nobody uses (inv_freq, CLIP text tower, ...)
    int n_unused;                  // tensors of views that are not computed (vision layers past the selected one)
    char **missing;
    int n_missing;  // used views no file provides
    char **unexpected;
    int n_unexpected;  // file tensors that map to nothing in the table
    char **mismatched;
    int n_mismatched;  // "name: file shape [..] vs model [..]"
    int dtype_count[DT_COUNT];
    weight_layout layout;  // the layout the names indicate
} load_report;

// Compares the files' tensors with the table. With `copy` set (and storage allocated) the tensors
// are converted to fp32 into the table; shape mismatches are reported, never copied.
int param_load(param_table *pt, const st_set *s, int copy, load_report *rep);
// The same for the groups in `group_mask` (bit g for group g) only: tensors of other groups are
// passed over, and `filled` (n_views bytes, may be NULL) marks every view that was found. Missing
// views are those of the masked groups that neither this set nor an earlier call filled.
int param_load_groups(param_table *pt, const st_set *s, int copy, int group_mask, char *filled, load_report *rep);
void load_report_free(load_report *rep);

#endif
