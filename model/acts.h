// The activations of one forward (and backward) pass, as one table (acts.c): every buffer the
// model computes with, its kind, its shape in the sizes of the pass, and the phases of the pass it
// lives through. The table drives both
//   - the allocation: the model keeps one arena per buffer kind (ACT, F32, I32), planned once for
//     the largest pass a run will see (llava_model_reserve), each buffer at an offset where no
//     buffer alive at the same time overlaps it; a pass allocates, clears and frees nothing, and
//   - the activation line of `llava plan` (train/memplan.c), which is this plan's arena bytes.
#ifndef LLAVA_MODEL_ACTS_H
#define LLAVA_MODEL_ACTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

// The phases of a pass, in order. A buffer lives from its first phase to its last, inclusive.
enum {
    ACT_PHASE_INPUT = 0,    // the batch's integer arrays arrive
    ACT_PHASE_VISION,       // the vision tower's forward
    ACT_PHASE_PROJECTOR,    // the projector's forward
    ACT_PHASE_LM,           // embeddings, the splice, the decoder layers, the head and the loss
    ACT_PHASE_LM_BACKWARD,  // the head's and the decoder layers' backward
    ACT_PHASE_EMBED_BACKWARD,
    ACT_PHASE_PROJECTOR_BACKWARD,
    ACT_PHASE_VISION_BACKWARD,  // a trainable tower's layers (from the top) and embeddings
    ACT_N_PHASES
};

// The largest pass a plan must hold.
typedef struct {
    int T;                     // tokens in the packed batch
    int n_seq;                 // sequences
    int n_img;                 // images
    int backward;              // the passes run backward
    int checkpointing;         // recompute each decoder layer in backward (one layer's activations kept)
    int inference;             // generation passes (llava_infer_pass): two layer inputs used in turn instead of
                               // L + 1, logits for each sequence's last token only; no backward
    int vision_train;          // the passes train this many vision layers from the feature layer down (0: the tower is
                               // frozen); all the layers run: the embeddings and the pre-layernorm too
    int vision_checkpointing;  // recompute each trained vision layer in backward (one layer's activations kept)
} act_shape;

// One vision layer's activations that its backward reads (a frozen layer's forward computes with one such
// set as scratch, where x1, x2 and the MLP's output share a buffer and h_mid is the residual stream itself).
typedef struct {
    void *x1, *q, *k, *v, *att, *h_mid, *x2, *mid, *act;  // ACT (R rows)
    float *mean1, *rstd1, *mean2, *rstd2, *lse;           // F32
} vis_saved;

// One decoder layer's activations that its backward reads.
typedef struct {
    void *n1, *q, *k, *v, *att, *h_mid, *n2, *gate, *up, *s;  // ACT
    float *rstd1, *rstd2, *lse;                               // F32
} lm_saved;

// Where each activation of a pass is (pointers into the arenas); what model/llava.c computes with.
typedef struct {
    // input: ids, targets, positions (T); sequence boundaries (n_seq + 1); image rows (M features)
    int32_t *ids, *targets, *pos, *cu, *img_rows;
    // vision tower: pixels (n_img, 3, H, W); patches (n_img * Np, 3 P^2); their embeddings
    // (n_img * Np, Dv); residual stream and scratch (R = n_img * (Np + 1) rows, Dv); the attention
    // and MLP buffers of one layer; each image's sequence boundaries; the rows kept as features
    float *pix;
    void *patches, *pe, *vh, *vx, *vq, *vk, *vv, *vatt, *vmid, *vact;
    float *vmean, *vrstd, *vlse;
    int32_t *vcu, *vrows;
    // a token reduction's input: the selected features of every image (n_img * G^2, Dv)
    void *vsel;
    // a trainable tower: the input of each trained layer (vin[j] for layer first + j), their saved
    // activations (vsaved: one set per trained layer, or one when recomputed), the embeddings before the
    // pre-layernorm and its statistics (the whole tower trained), the ids of the embeddings' backward
    // (each row's position, the class-token rows' 0, the patch rows); in backward the features' gradient (M, Dv),
    // the selected features' (before a reduction), and the tower's gradients and scratch (R rows)
    void **vin;
    vis_saved *vsaved;
    int n_vin, n_vsaved;
    void *vemb;
    float *vpre_mean, *vpre_rstd;
    int32_t *vids;
    void *dfeat, *dsel, *dvh, *dvx, *dvy, *dvq, *dvk, *dvv, *dvatt, *dvmid;
    // AnyRes: the image positions (up to T), each one's source row of the projected tile features (-1: the
    // newline), the newline's ids (0 at its rows, -1 elsewhere), each tile feature's position (-1: cropped); the
    // features in the stream's order, the newline rows, and in backward their gradient
    int32_t *any_rows, *any_src, *any_nl, *any_inv;
    void *any_feat, *any_tmp, *any_grad;
    // anyres_max_N: the resized images' kept features (source rows, image after image) and the positions of their
    // resized features among the image positions; one image's kept map gathered (the resize's input), and in
    // backward the resized features' gradient and one image's map's gradient
    int32_t *rz_rows, *rz_pos;
    void *rz_grid, *rz_dout, *rz_dgrid;
    // projector: its input features (M, Dv); linear_1 .. linear_{N-1}'s outputs and their GELUs (M rows
    // each), the last Linear's output (M, d)
    void *feat, *a1, *g1, *f;
    // language model: every layer's input hs[0..L] (T, d); the saved activations of each decoder
    // layer kept for backward (n_saved sets: L, or 1 when recomputed or forward only); scratch; the
    // final norm's output and statistics; the logits (T, V), turned into their gradient in place
    void **hs;
    lm_saved *saved;
    int n_saved;
    void *tmp, *hn, *logits;
    float *rstd_f;
    // backward scratch
    void *dhn, *dh, *dx, *ds, *dgate, *dup, *dq, *datt, *dk, *dv, *df, *dg1;
    // LoRA (models with adapters): an adapted linear's input after dropout, then its adapter's
    // output (T, widest of d, I, qd); A's output (T, r); in backward its gradient (T, r)
    void *lx, *lu, *ldu;
} llava_acts;

// One buffer of a plan.
typedef struct {
    const char *name;  // the table's name ("hs", "saved.gate", ...)
    int row;           // its row of the table
    int index;         // which one of its kind (layer of hs or of the saved sets), else 0
    int kind;          // BUF_ACT, BUF_F32 or BUF_I32
    size_t bytes;      // its size
    size_t offset;     // bytes into its kind's arena
    int first, last;   // the phases it lives through
} act_buf;

typedef struct {
    act_shape shape;
    int act_bytes;  // bytes per ACT element on the backend planned for (2 bf16, 4 fp32)
    act_buf *bufs;
    int n_bufs;
    size_t arena_bytes[3];  // per kind: ACT, F32, I32 (index kind_slot)
    uint64_t total_bytes;   // the three arenas
    uint64_t peak_live;     // the most bytes alive in any one phase (the arenas' lower bound)
} act_plan;

// Plans the activations of passes up to `s` for model `mc` on a backend of act_bytes per ACT
// element. Returns 0, or -1 with llava_errmsg() for an impossible shape.
int act_plan_make(const model_config *mc, const act_shape *s, int act_bytes, act_plan *p);
void act_plan_free(act_plan *p);
// 1 when a pass of shape `s` fits plan `p` (every size at most the planned one).
int act_plan_holds(const act_plan *p, const act_shape *s);
// Points every field of `a` into the arenas (base[k] for kind slot k), allocating a->hs and
// a->saved (free them with act_bind_free).
void act_bind(const act_plan *p, void *const base[3], const model_config *mc, llava_acts *a);
void act_bind_free(llava_acts *a);
// The arena slot of a buffer kind (ACT 0, F32 1, I32 2).
int act_kind_slot(int kind);
// The plan as a table: one line per buffer kind and phase peak (for `llava plan --acts`).
void act_plan_print(const act_plan *p, FILE *out);

#endif
