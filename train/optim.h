// The optimizer over the model's flat parameter groups, in two halves: the reduction of gradients
// over ranks with ZeRO sharding, slots and overlap (reduce.c), and the update: the global gradient
// norm, clipping and AdamW at the schedule's learning rate (adamw.c). The schedule itself is
// schedule.h.
#ifndef LLAVA_TRAIN_OPTIM_H
#define LLAVA_TRAIN_OPTIM_H

#include "model/llava.h"
#include "train/dist/dist.h"
#include "train/schedule.h"

typedef struct {
    double lr;            // peak learning rate
    double projector_lr;  // the projector's peak (LLaVA's mm_projector_lr); NaN: lr
    double vision_lr;     // the vision tower's (LLaVA-NeXT's mm_vision_tower_lr); NaN or 0 (unset): lr
    double beta1, beta2, eps, weight_decay;
    double max_grad_norm;  // 0: no clipping
    sched_type schedule;
    int total_steps;  // optimizer updates in the run
    int warmup_steps;
} optim_config;

// Learning rate of update k (1-based) for the projector or the rest.
double lr_at_update(const optim_config *c, int k, int projector);
// The same for the parameters of group g (GROUP_*): the projector's, the tower's or the base rate's schedule.
double lr_for_group(const optim_config *c, int k, int g);
// Names that LLaVA keeps out of weight decay: biases and LayerNorm / RMSNorm weights.
int param_decays(const char *internal_name);

// Gradient buckets: the unit of reduction and of sharding. A bucket is a contiguous run of
// trainable views (used, not frozen) of one group within one layer (split further past
// OPTIM_BUCKET_MAX elements), so frozen parameters are never reduced, and on the GPU a layer's
// bucket can be reduced as soon as its backward is done. Each bucket is cut into `world` slices
// (dist.h's layout: n / world each, the last rank also takes the n % world left over); a rank keeps
// the optimizer state (m, v, fp32 master) of its slices only (ZeRO-1 and 2), and the reduced
// gradient of its slices only (its `grad_shard`).
#define OPTIM_BUCKET_MAX ((size_t)1 << 28)
// ZeRO-2 gradient slots (optim_use_grad_slots): buffers of the largest LM bucket's size that the
// backward's buckets take in turn. Three: one being filled, one or two still being reduced.
#define OPTIM_GRAD_SLOTS 3

typedef struct {
    int group, layer;
    int view_first, view_last;  // the views it holds (table order, inclusive)
    size_t lo, n;               // elements [lo, lo + n) of the group's flat buffer
    size_t own_lo, own_n;       // this rank's slice (offsets in the group buffer); the whole bucket on ZeRO-0
    size_t state_off;           // where that slice starts in the group's state arrays
} grad_bucket;

// ZeRO-3: a part is a run of a sharded group cut into `world` slices as dist.h lays them out: a
// bucket of a trained group (its slice is the optimizer state's), or for the frozen tower under
// train.shard_frozen a layer's run of views; `off` is where this rank's slice sits in the group's
// shard. A segment is what is gathered at once: the parts of one group and layer (a decoder layer,
// the embeddings, the final norm with the head, the projector, a tower layer), contiguous.
typedef struct {
    size_t lo, n;          // elements [lo, lo + n) of the group buffer
    size_t own_lo, own_n;  // this rank's slice
    size_t off;            // the slice's place in the group's shard (pshard)
    int group;
} shard_part;

typedef struct {
    int group, layer;
    int p_first, p_last;  // its parts
    size_t lo, n;         // elements [lo, lo + n) of the group buffer
} param_segment;

typedef struct {
    // F32 on the backend, for trainable groups. ZeRO-0: the group's whole length, indexed like the
    // group buffer (frozen views' entries stay 0). ZeRO-1/2: this rank's slices back to back.
    float *m[N_GROUPS], *v[N_GROUPS];
    float *master[N_GROUPS];      // fp32 masters where PARAM is not fp32 (NULL on the CPU), same layout
    float *grad_shard[N_GROUPS];  // ZeRO-1/2: the reduced gradient of this rank's slices, same layout
    size_t state_numel[N_GROUPS];
    grad_bucket *buckets;
    int n_buckets;
    int zero;  // the ZeRO stage in effect: 0 for the single backend
    dist *d;   // the process group (a one-process one when none was given)
    int own_dist;
    int step;        // updates applied so far
    long n_skipped;  // updates skipped for non-finite gradients
    // The reduction overlapped with the backward (optim_arm): per view its bucket (-1: none), per
    // bucket its views not yet final, the next bucket to issue (buckets go out from the last one
    // down, the order the backward finishes them, so every rank issues them in the same order).
    int *view_bucket, *left;
    int next;
    int armed;
    llava_model *armed_model;               // the model the hooks report on
    long issued_in_backward, issued_total;  // counts, for the log and the tests
    // Issued after the backward: behind (or being) a bucket that no view of the pass finished (a
    // text-only micro-batch leaves the projector's unwritten), and of those, the times the first
    // one held back was partly finished (a view that never reported final: must stay 0).
    long issued_after, stalled;
    char *issued;  // per bucket: its reduction went out in this pass
    // ZeRO-2 gradient slots: the LM group has no GRAD buffer; per bucket the slot it holds in this
    // pass (-1: none), per slot its bucket (-1: free) and the mark after that bucket's reduction.
    int slotted;
    float *slots[OPTIM_GRAD_SLOTS];
    size_t slot_n;
    int *bucket_slot;
    int slot_bucket[OPTIM_GRAD_SLOTS];
    uint64_t slot_mark[OPTIM_GRAD_SLOTS];
    int slot_next;
    int passes;  // reductions done in this step so far (ZeRO-2)
    // ZeRO-3 (optim_shard_params): per group whether its parameters are sharded; then this rank's
    // slices of them (PARAM, the state layout: the fp32 masters' twin in the working dtype), the
    // segments, two gather buffers per sharded group (the segment in use and the next one, gathered
    // ahead), which segment each buffer holds and the mark after its gather, per segment the buffer
    // holding it (-1: none), per group the segment in use (-1: none).
    char sharded[N_GROUPS];
    char frozen_shard[N_GROUPS];  // sharded though frozen (train.shard_frozen: the tower)
    void *pshard[N_GROUPS];
    shard_part *parts;
    int n_parts;
    param_segment *segs;
    int n_segs;
    int *view_seg;
    void *gbuf[N_GROUPS][2];
    int gbuf_seg[N_GROUPS][2];
    uint64_t gbuf_mark[N_GROUPS][2];
    int *seg_buf;
    int cur_seg[N_GROUPS];
    long gathers_ahead, gathers_on_demand;  // counts, for the log and the tests
    // Offload (optim_init_ex): m, v and fp32 masters (always, also on the CPU backend) in host memory
    // of the `host` CPU backend, which runs AdamW on them; host_grad stages a bucket's gradient slice.
    int offload;
    llava_backend *host;
    float *host_grad;
    int host_threads;       // threads the host update is split over (elementwise, so the same bits); 1 at init
    size_t host_chunk_min;  // the fewest elements worth a thread (1 << 16 at init)
} optim_state;

// Allocates state for every group that has gradients, on one process.
void optim_init(optim_state *s, const llava_model *m);
// The same on the ranks of `d` (NULL: one process) with ZeRO stage 0, 1 or 2. A one-process group
// (the single backend) never shards: its arithmetic is exactly the one-process path. A group of one
// rank of MPI or NCCL runs the stage asked for (each collective is then a copy).
void optim_init_dist(optim_state *s, const llava_model *m, dist *d, int zero_stage);
// The same with the optimizer offloaded (offload 1, train.offload_optimizer cpu): m, v and the fp32
// masters in host memory; each step's update downloads this rank's reduced gradient slices (the
// gradient norm is still computed where they are), runs the CPU backend's AdamW on the host, the
// same arithmetic as the GPU kernel's (kernels/cuda/optim.cu), and uploads the updated masters as
// the working parameters. On the CPU backend the result is bit-identical to no offload.
void optim_init_ex(optim_state *s, const llava_model *m, dist *d, int zero_stage, int offload);
// The optimizer state (m, v, master) to or from host fp32, wherever it lives (the backend, or the
// host when offloaded): what checkpoints use.
void optim_state_read(const optim_state *s, const llava_model *m, const float *state, float *out, size_t n);
void optim_state_write(const optim_state *s, const llava_model *m, float *state, const float *in, size_t n);
void optim_free(optim_state *s, const llava_model *m);
// ZeRO-2 without the LM's full-size GRAD buffer: frees it and has the backward accumulate each
// bucket into one of OPTIM_GRAD_SLOTS slots, zeroed (or, after the step's first reduction, loaded
// with this rank's accumulated slice) when the bucket is first written, sent off by reduce-scatter
// when the bucket is final, and reused once that reduce-scatter is done. Needs one backward pass
// per reduction, every pass armed (no token budget: chunks of one micro-batch would have to keep
// every bucket between passes). Returns 1 when slots are in use, 0 when the state does not allow
// them (not ZeRO-2, or the LM does not train).
int optim_use_grad_slots(optim_state *s, llava_model *m);

// ZeRO-3 (zero stage 3 on two or more ranks, or one MPI / NCCL rank): the trained LM's and
// projector's parameters are sharded like their optimizer state (LoRA adapters, a trained tower
// and frozen groups stay whole on every rank; the frozen tower too unless `shard_frozen`). Frees those groups' PARAM buffers, keeps this rank's
// slices, and has the model gather each segment into one of two buffers when it computes with it
// (llava_model.param_need), the next segment's gather issued as that one starts (ahead, on the
// NCCL stream while the layer computes). Every update invalidates the gathered buffers. Returns
// the number of sharded groups (0: the state shards none). With `shard_frozen` a frozen vision tower
// is sharded too (train.shard_frozen; a tower that trains stays whole): the layers that run, each
// gathered as the tower computes it, the next ahead (after the last layer, the first again: a
// frozen tower never changes, so its gathers outlive the updates). Call after optim_init_dist,
// before optim_use_grad_slots.
int optim_shard_params(optim_state *s, llava_model *m, int shard_frozen);
// Makes every sharded group whole again on every rank (PARAM buffers all-gathered), for what
// needs the model as one piece after training: the export. The state stays as it was.
void optim_params_whole(optim_state *s, llava_model *m);
// Checkpoints: this rank's slice of bucket b of sharded group g to host fp32 `out` (own_n values);
// and from host `whole` (the group's layout) this rank's slice of every bucket of g.
void optim_pshard_download(const optim_state *s, const llava_model *m, int g, int b, float *out);
void optim_pshard_upload(optim_state *s, llava_model *m, int g, const float *whole);
// Forgets what the gather buffers hold (the parameters changed under them).
void optim_params_changed(optim_state *s);

// The global L2 norm of all gradients (NaN/inf when any is non-finite), from this process's full
// gradient buffers.
double grad_global_norm(const llava_model *m);

// Gradient reduction over the ranks, called by the step loop around each micro-batch's backward
// (the model's GRAD buffers are zeroed once at the start of the step, as on one process):
//   optim_micro_begin(s, m, i)   before micro-batch i's backward (i = 0 starts the step). ZeRO-2,
//                                i > 0: zeroes the GRAD buffers and puts this rank's accumulated
//                                slices back into them, so the next reduce-scatter adds to what is
//                                there (gradient slots do the same when a bucket takes a slot).
//   optim_micro_end(s, m)        after it. ZeRO-2: reduce-scatter of every bucket into grad_shard.
//   optim_reduce(s, m)           after the last one. ZeRO-0: all-reduce of every bucket (then every
//                                rank holds the summed gradient); ZeRO-1: reduce-scatter of every
//                                bucket into grad_shard; ZeRO-2: nothing left to do.
// The callers scale their losses so that the SUM over ranks is the step's gradient.
//
// Overlap: optim_arm(s, m, 1) before the pass whose backward ends the gradients that the next
// reduction (optim_micro_end on ZeRO-2, optim_reduce on ZeRO-0/1) sends: the last forward/backward
// before it. The model then reports each view as its gradient becomes final, and each bucket's
// reduction is issued (dist_*_async) as soon as its views are done and the buckets after it have
// gone, while the backward goes on; the reduction call issues whatever is left and waits for all.
// optim_arm(s, m, 0) (or no call) before other passes: nothing is issued during them. Only the
// nccl backend runs the issued collectives concurrently; MPI runs each at once (the same order, so
// CI checks the bookkeeping).
void optim_arm(optim_state *s, llava_model *m, int final_pass);
void optim_micro_begin(optim_state *s, llava_model *m, int micro);
void optim_micro_end(optim_state *s, llava_model *m);
void optim_reduce(optim_state *s, llava_model *m);

// One update: global norm, optional clipping, then AdamW per view (ZeRO-1/2: per view and slice)
// at the lr of schedule update `k` (1-based; the run's step, which keeps counting over skipped
// updates); ZeRO-1/2 then all-gather the updated parameters. Gradients are scaled by `grad_scale`
// first. Returns the norm before clipping. A non-finite norm skips the update on every rank
// (nothing changes, n_skipped counts it) and returns the norm.
double optim_step(optim_state *s, llava_model *m, const optim_config *c, float grad_scale, int k);

#endif
