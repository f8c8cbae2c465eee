// The LLaVA model, written once for every backend: CLIP vision tower (frozen, forward only, up to
// the feature layer), projector (Linear-GELU-Linear), LLaMA decoder, the splice of image features
// into a packed token stream, and the shifted cross-entropy. All arithmetic goes through the
// llava_ops table (kernels/ops.h).
#ifndef LLAVA_MODEL_LLAVA_H
#define LLAVA_MODEL_LLAVA_H

#include <stdint.h>

#include "acts.h"
#include "config.h"
#include "data/batch.h"
#include "kernels/backend.h"
#include "params.h"

// What receives gradients. Stage 1 trains the projector (gradients flow through the frozen LM);
// stage 2 trains the projector and the LM, or with LoRA the projector and the adapters on a frozen
// LM. The vision tower is frozen in LLaVA-1.5; llava_model_set_vision_trainable adds it (or its top
// layers) to any of these sets, as LLaVA-NeXT's unfreeze_mm_vision_tower does.
typedef enum { TRAIN_NONE = 0, TRAIN_PROJECTOR = 1, TRAIN_PROJECTOR_LM = 2, TRAIN_PROJECTOR_LORA = 3 } trainable_set;

// How the loader treats what the weight files hold beyond this model's config.
typedef struct {
    // 0 (the default): a tensor the config has no place for is an error naming it (the first few and
    // the count): a config.json that declares fewer layers than the weights hold would otherwise run a
    // smaller model and give other answers. 1: such tensors are skipped and counted
    // (llava_model.n_unexpected_ignored). Tensors the loader ignores on purpose (rotary inv_freq,
    // position_ids, CLIP's text tower, vision layers past the feature layer) are never unexpected.
    int ignore_unexpected;
    // A PEFT LoRA adapter folder (model/io/peft.h) to run on top of the model, unmerged: its
    // adapter_config.json gives the adapters' shape, its weights the adapters and whatever else it
    // saved (the projector as modules_to_save), which replace the model's own. NULL: none.
    const char *adapter;
} llava_load_options;

typedef struct {
    llava_backend *be;     // the context every op runs in (not owned)
    const llava_ops *ops;  // be->ops
    model_config cfg;
    param_table pt;          // names, shapes, offsets (host storage freed after upload)
    void *params[N_GROUPS];  // PARAM buffers on the backend, one per group
    float *grads[N_GROUPS];  // GRAD buffers for trainable groups, NULL for frozen ones
    trainable_set trainable;
    weight_layout layout;        // the layout the weights were loaded from
    int tokens_per_image;        // patches after dropping CLS
    int tokens_per_video_frame;  // a video frame's, under cfg.glue.video_pool_mode (else tokens_per_image)
    int vision_layers;           // layers actually run
    int padding_idx;             // embed_tokens row that never gets a gradient (-1: none)
    char *filled;                // while building: which views have weights
    char *frozen;                // per view: frozen inside a trainable group (NULL: none)
    int checkpoint_layers;       // recompute each decoder layer in backward instead of keeping
                                 // its activations (less memory, one more forward)
    int vision_train;            // tower layers that train, from the feature layer down (0: a frozen tower); all
                                 // vision_layers of them: the embeddings and the pre-layernorm too
    int checkpoint_vision;       // the same recomputation for the trained tower layers
    // The loader's options (set between llava_model_create and the first llava_model_add_weights),
    // and how many tensors of the files it skipped under load_opts.ignore_unexpected.
    llava_load_options load_opts;
    int n_unexpected_ignored;
    // Called in the backward as soon as a trainable view's gradient is final for this pass (its
    // index in pt.views), in the order the backward finishes them: the LM head and final norm, the
    // decoder layers from the last, the embeddings, the projector. NULL: nothing is called. The
    // data-parallel reduction starts each bucket from it (optim_arm).
    void (*grad_final)(void *ctx, int view);
    void *grad_final_ctx;
    // ZeRO-2 without full gradient buffers: a group marked here has no GRAD buffer (grads[g] is
    // NULL); the optimizer hands out, per bucket and pass, a zeroed slot that the backward
    // accumulates into, and sends it off when the bucket is final. grad_slot(ctx, view) is where
    // view's gradient goes in this pass.
    // The weights the vision tower came from (a folder or file; NULL: none): where the export finds
    // the tower's layers that LLaVA never runs and the model does not keep.
    char *vision_source;
    char grad_slotted[N_GROUPS];
    float *(*grad_slot)(void *ctx, int view);
    void *grad_slot_ctx;
    // ZeRO-3: a group marked here has no whole PARAM buffer (params[g] is NULL); its parameters are
    // sharded over the ranks and gathered a segment (a decoder layer, the embeddings, the final norm
    // and head, the projector) at a time. The model calls param_need(ctx, view, dir) before it
    // computes with a segment (the view is any of its views; dir +1 in the forward, -1 in the
    // backward, the direction the next segment lies in, which the optimizer gathers ahead), and
    // reads each view at param_at(ctx, view), valid until the next param_need of another segment.
    char param_sharded[N_GROUPS];
    void (*param_need)(void *ctx, int view, int dir);
    void *(*param_at)(void *ctx, int view);
    void *param_ctx;
    // The activations (model/acts.h): the plan, its three arenas on the backend (ACT, F32, I32) and
    // where each buffer is in them. Planned on the first pass, or ahead by llava_model_reserve.
    act_plan acts_plan;
    void *arena[3];
    llava_acts acts;
    // The loss ledger: every pass's per-token losses (F32 on the backend) since the last reset, read
    // back once (llava_model_losses_read) instead of after every pass.
    float *ledger;
    size_t ledger_cap, ledger_used;
    // LoRA's dropout: the seed of the next training pass's masks (the trainer sets it per pass from
    // the run's seed, step and micro-batch, so a resumed run draws the same masks), and whether the
    // pass under way drops (set by llava_pass).
    uint64_t lora_pass_seed;
    int lora_dropout_on;
    // QLoRA (cfg.lora.bits 4): GROUP_LM_NF4's weights as NF4 on the backend, per view (NULL for other
    // views): the packed codes then the absmax codes (bytes, one I32 buffer), the fp32 second-level
    // absmaxes and the offset. Each linear dequantises its weight into nf4_scratch (ACT, the largest
    // such weight) when it runs, so no whole bf16 copy of the LM exists; nf4_tables (272 F32) are the
    // NF4 levels and the statistics' codes.
    struct llava_nf4_weight {
        uint8_t *bytes;
        float *absmax2;
        float offset;
        size_t packed_bytes;
    } * nf4;
    float *nf4_tables;
    void *nf4_scratch;
    llava_rope_scaling rope;  // the LM's rope_scaling (type LLAVA_ROPE_DEFAULT: none)
} llava_model;

// 1 when group g receives gradients (its GRAD buffer, or slots handed out by the optimizer).
int llava_model_trains(const llava_model *m, int g);

// Loads a model folder (config.json + safetensors, any supported layout) onto backend `be`.
// Missing tensors are an error, and so are tensors the config has no place for (see
// llava_load_options); tensors of vision layers past the feature layer are skipped.
int llava_model_load(llava_model *m, const char *dir, llava_backend *be);
// The same with options (NULL: the defaults).
int llava_model_load_opts(llava_model *m, const char *dir, llava_backend *be, const llava_load_options *o);

// The same in steps, for a model put together from several folders (vicuna + CLIP + a projector
// file): create from a config, add the weights of each source for the groups it provides (bit g
// of group_mask for group g), initialise what no file has, then finish (which fails when a tensor
// is still missing, and uploads the weights to the backend). Set m->load_opts between create and
// the first add_weights.
int llava_model_create(llava_model *m, const model_config *cfg, llava_backend *be);
int llava_model_add_weights(llava_model *m, const char *path, int group_mask, int *n_loaded);
// The weights of a LoRA adapter folder (model/io/peft.h) onto a model created with its
// adapter_config's lora: the adapters and whatever else it saved (a projector), which replace what
// earlier sources gave. 0, or -1 with llava_errmsg().
int llava_model_add_adapter(llava_model *m, const char *dir);
// The projector as nn.Linear initialises a fresh one (uniform in +-1/sqrt(fan_in)), from `seed`.
void llava_model_init_projector(llava_model *m, uint64_t seed);
// Row o of an adapted weight with its adapter folded in, as PEFT's merge computes W + s B A:
// out[i] = w[i] + s (B A)[o][i], the product summed in fp64 and rounded once. w, out (I); a (r, I),
// b (O, r); out may be w.
void llava_lora_merged_row(const float *w, const float *a, const float *b, int r, int64_t I, int64_t o, float s,
                           float *out);
// AnyRes' image_newline as LLaVA-NeXT initialises it: N(0, 1) / sqrt(hidden size), from `seed`.
void llava_model_init_newline(llava_model *m, uint64_t seed);
// Fresh LoRA adapters as PEFT initialises them: every A uniform in +-1/sqrt(in) (kaiming_uniform
// with a = sqrt(5)) drawn from `seed` in table order, every B zero, so the model starts as its base.
void llava_model_init_lora(llava_model *m, uint64_t seed);
// Every weight random (matrices and embeddings N(0, std^2), norm weights 1, biases 0): for
// benchmarks and tests that need a model of a given shape and no file.
void llava_model_init_random(llava_model *m, float std, uint64_t seed);
void llava_model_init_random_fast(llava_model *m, float std, uint64_t seed);  // benchmarks: param_init_random_fast
int llava_model_finish(llava_model *m);
// Allocates gradient buffers for the groups `t` trains (and frees the others).
void llava_model_set_trainable(llava_model *m, trainable_set t);
void llava_model_free(llava_model *m);
void llava_model_zero_grads(llava_model *m);
// The vision tower trains: its last `last_n` layers that run (counted down from the feature layer), or
// every one with the embeddings and the pre-layernorm when last_n < 0 or >= m->vision_layers; 0 freezes
// it again. The group's gradients exist while the model trains anything (llava_model_set_trainable, in
// either order); the layers below the trained ones are frozen by name. Refused (-1 with llava_errmsg())
// for a tower whose position embeddings were interpolated at load, whose table then is not the file's.
// Returns the number of trained layers.
int llava_model_set_vision_trainable(llava_model *m, int last_n);
// Reads a gradient set as `llava forward --grads` and the golden files name them: parts joined by '+',
// each "projector", "lm", "lora" or "vision" ("visionN": the tower's last N layers). The projector is
// part of every set that trains anything (as LLaVA's stages), so "lm" stands for "projector+lm".
// Sets *t and *vision_last (0: tower frozen; -1: all of it). 0, or -1 with llava_errmsg().
int llava_parse_grad_set(const char *s, trainable_set *t, int *vision_last);
// Freezes every parameter whose internal name starts with `prefix` (e.g. "lm.model.embed_tokens",
// "lm.model.layers.0.", "projector."): no weight gradient is computed for it and the optimizer
// leaves it alone. Returns how many parameters matched, or -1 (with an error) for none.
int llava_model_freeze(llava_model *m, const char *prefix);
// 1 when a parameter receives no updates (its group is frozen, or it was frozen by name).
int llava_model_is_frozen(const llava_model *m, const param_view *v);

// Plans the activation arenas for passes up to `s` (model/acts.h) and allocates them, so that no
// pass of a run allocates: the trainer reserves its largest micro-batch before the first step. A
// pass larger than the plan grows it (one reallocation). 0, or -1 with llava_errmsg().
int llava_model_reserve(llava_model *m, const act_shape *s);
// Makes room in the loss ledger for n per-token losses (a step's tokens), so no pass grows it.
void llava_model_reserve_losses(llava_model *m, size_t n);

// The projected image-feature rows of a batch (without AnyRes, its image positions): tokens_per_image per image,
// tokens_per_video_frame per video frame (b->video_frame) under cfg.glue.video_pool_mode.
int llava_batch_features(const llava_model *m, const llava_batch *b);

// One forward (and, with `backward`, backward) pass over a packed batch, enqueued on the backend:
// nothing waits for the device. Its per-token losses (b->T of them, 0 where no target) are appended
// to the model's loss ledger; gradients of loss * loss_scale are accumulated into m->grads as
// below. `logits_out` (T, V) host, if not NULL, receives the logits (that waits). Returns 0, or -1
// with llava_errmsg() when the batch is malformed.
int llava_pass(llava_model *m, const llava_batch *b, int backward, float loss_scale, float *logits_out);
// ZeRO-3: the param_need calls of one pass's forward (and with `backward` its backward), in the
// order a pass makes them, without computing: a rank whose micro-batch has nothing to train on (or
// whose evaluation batch is another rank's) runs this in its pass's place, so every rank gathers the
// same segments in the same order. Nothing without sharding.
void llava_model_param_walk(llava_model *m, int backward);
// Empties the ledger (before a step's passes).
void llava_model_losses_reset(llava_model *m);
// Copies the ledger's losses to host `out` (the sum of the passes' T since the reset) and returns
// their count: the one wait of a step.
size_t llava_model_losses_read(llava_model *m, float *out);
// The mean loss of a pass over its targets from its per-token losses (NaN without targets), summed
// in fp64 and rounded to fp32 as llava_forward_backward reports it.
double llava_pass_loss(const float *losses, const llava_batch *b);

// One forward (and, with `backward`, backward) pass over a packed batch. The loss is the mean of
// the per-token cross-entropy over the batch's targets (what Hugging Face's loss gives for the
// same samples padded into one batch) times `loss_scale`; gradients of loss * loss_scale are
// accumulated into m->grads. `logits_out` (T, V) host, if not NULL, receives the logits.
// Returns the mean loss (without loss_scale), or NAN with an error when the batch is malformed.
float llava_forward_backward(llava_model *m, const llava_batch *b, int backward, float loss_scale, float *logits_out);

// ---------------------------------------------------------------------------------------------
// Inference: a paged KV cache, and passes that extend sequences held in it.
//
// The cache keeps every layer's keys and values (ACT: fp32 on the CPU, bf16 on CUDA) in blocks of
// block_size token rows shared by all sequences; a sequence (a slot) owns a list of blocks, taken
// from the free list as it grows and given back when it ends, so finished sequences free their
// memory at once and no sequence needs its worst-case length reserved in one piece.
typedef struct {
    int n_layers, kvd;   // layers; key/value features per token (Hkv * head_dim)
    int block_size;      // token rows per block
    int n_blocks;        // blocks in the pool
    int max_seqs;        // slots
    int max_blocks;      // blocks a slot may hold (max_context / block_size, rounded up)
    void **k, **v;       // per layer (n_blocks * block_size, kvd) ACT on the backend
    int32_t *table;      // host (max_seqs, max_blocks): each slot's blocks in order, -1 past its end
    int *len;            // host (max_seqs): tokens cached per slot
    int *held;           // host (max_seqs): blocks held per slot
    char *open;          // host (max_seqs): slot in use
    int32_t *free_list;  // host: the free blocks (a stack)
    int n_free;
    // I32 on the backend for one pass's index arrays (cache rows, sequences, last tokens, block
    // table), grown as passes need
    int32_t *d_idx;
    size_t cap_idx;
} llava_kv;

// A cache of n_blocks blocks of block_size tokens for up to max_seqs sequences of up to max_context
// tokens each, on the model's backend. 0, or -1 with llava_errmsg().
int llava_kv_init(llava_kv *kv, llava_model *m, int n_blocks, int block_size, int max_seqs, int max_context);
void llava_kv_free(llava_kv *kv, llava_model *m);
// Bytes of keys and values one cached token takes (all layers).
size_t llava_kv_token_bytes(const llava_model *m);
// A free slot (its length 0), or -1 when all are open.
int llava_kv_open(llava_kv *kv);
// Ends a slot: its blocks go back to the pool.
void llava_kv_close(llava_kv *kv, int slot);
// Blocks a slot needs to hold n tokens, and makes sure it holds them (taking blocks from the pool).
// 0, or -1 when the pool or the slot's table is short (nothing is taken then).
int llava_kv_blocks_for(const llava_kv *kv, int n_tokens);
int llava_kv_grow(llava_kv *kv, int slot, int n_tokens);

// One inference pass (forward only, no loss). Sequence s of batch b continues slot slots[s]: its
// tokens take positions kv->len[slot] onwards (b->pos must say so), their keys and values are
// written to the cache, and the slot's length grows by their count. The slots must hold blocks for
// the new length (llava_kv_grow). `logits` (n_seq, V) host receives the logits of each sequence's
// last token. When every sequence starts at position 0 (a prefill), attention runs over the batch's
// own keys exactly as in training (attention_forward), so its logits are the bits of llava_pass's;
// otherwise every query attends to its slot's cache (attention_decode). Enqueued on the backend;
// the logits' download waits. 0, or -1 with llava_errmsg().
int llava_infer_pass(llava_model *m, llava_kv *kv, const llava_batch *b, const int *slots, float *logits);

#endif
