// The memory plan of a training run: bytes per rank per kind of buffer, from the model config and
// the training config, as the code allocates them (`llava train` prints it at start; `llava plan`
// prints it for any rank count).
//
// Kinds, and their element sizes on the CUDA backend (CPU: 4 bytes everywhere):
//   params       PARAM, every group (frozen vision tower included), bf16, replicated on every rank;
//                under ZeRO-3 the trained LM's and projector's as this rank's slices plus two gather
//                buffers of their largest segment (a decoder layer, the embeddings, the head)
//   grads        GRAD, fp32, the whole of every trainable group: the buffers the backward
//                accumulates into; under ZeRO-2 (no token budget) the LM's are OPTIM_GRAD_SLOTS
//                slots of its largest bucket instead.
//   grad shard   ZeRO-1/2/3: the reduced gradient of this rank's slices, fp32
//   master       fp32 masters of the trainable groups (CUDA only), sharded with ZeRO-1/2
//   adam m, v    fp32, sharded with ZeRO-1/2
//   activations  the model's activation arenas, planned by model/acts.c's table for the largest
//                micro-batch: per_device_batch samples of model_max_length tokens each (the worst
//                case; LLaVA's batches are shorter), one image each; with activation checkpointing
//                every decoder layer keeps only its input and one layer's activations; plus the
//                loss ledger of a step (fp32 per token). The same plan the model allocates.
//   reserve      CUDA context, cuBLAS workspace and NCCL buffers: a fixed 2 GiB on the GPU
// With train.offload_optimizer cpu the masters (then on the CPU backend too) and m, v are host
// memory, not counted in the device's total; `host` has them and the staging of one bucket's
// gradient slice.
// The sharded kinds count the last rank, which holds the most (it takes each bucket's leftover).
#ifndef LLAVA_TRAIN_MEMPLAN_H
#define LLAVA_TRAIN_MEMPLAN_H

#include <stdint.h>
#include <stdio.h>

#include "model/acts.h"
#include "model/config.h"
#include "model/params.h"
#include "settings.h"

typedef struct {
    // the run
    int world, zero_stage, cuda, checkpointing;
    int per_device_batch, seq_len;
    int images_per_sample;     // mem_plan_images_per_sample
    int act_bytes;             // 2 (bf16) on CUDA, 4 on the CPU
    int grad_groups;           // bit g: group g has gradient buffers
    int grad_slots;            // ZeRO-2: the LM's gradients in OPTIM_GRAD_SLOTS per-layer slots
    int nf4;                   // QLoRA: the decoder layers' linears counted as NF4
    uint64_t numel[N_GROUPS];  // parameters stored per group (vision: layers up to the feature layer)
    uint64_t trainable;        // parameters the optimizer updates
    uint64_t state_per_rank;   // optimizer-state elements of the rank holding the most
    // bytes per rank
    uint64_t params, grads, grad_shard, master, adam_m, adam_v, activations, reserve, total;
    // ZeRO-3: parameters sharded (the fullest rank's slices) and the two gather buffers
    uint64_t sharded_numel, shard_per_rank, gather_numel;
    int shard_frozen;  // train.shard_frozen: the frozen tower among them
    // What each rank sends and receives per step in the ring collectives (the ZeRO paper's count,
    // (world - 1) / world of each): in elements, and in bytes (fp32 gradients, PARAM-dtype
    // parameters); and the same run's under ZeRO-2, for the ratio the paper puts at 1.5 for ZeRO-3.
    double volume_elems, volume_bytes, volume_elems_zero2;
    int offload;    // train.offload_optimizer cpu
    uint64_t host;  // host bytes per rank (offload: masters, m, v and the gradient staging)
} mem_plan;

// The plan of the run `c` describes on `world` ranks (its ZeRO stage, device, batch, model).
int mem_plan_make(const run_settings *s, const model_config *mc, int world, mem_plan *p);
// The images (a video's frames) the plan gives each sample: data.max_images_per_sample, else data.video_frames when
// set, else 1 (the trainer sets max_images to the dataset's own maximum before planning).
int mem_plan_images_per_sample(const run_settings *s);
// The largest pass of a run (per_device_batch samples of model_max_length tokens, mem_plan_images_per_sample images
// each, every one at its most AnyRes tiles): what the trainer reserves before its first step and what the plan counts.
act_shape mem_plan_act_shape(const run_settings *s, const model_config *mc);
// The tower layers a run trains (train.trainable vision, train.vision_unfreeze_last): 0 with a frozen tower.
int mem_plan_vision_layers(const run_settings *s, const model_config *mc);
// Micro-batches per rank per step (train.global_batch_size fixes it when set).
int mem_plan_accum(const run_settings *s, int world);
// Activation bytes of a run: the arenas of model/acts.c's plan for `shape` and the loss ledger of
// a step of `accum` micro-batches.
uint64_t mem_plan_activations(const model_config *mc, const act_shape *shape, int act_bytes, int accum);
// A table of the kinds with their bytes and a verdict against `capacity_bytes` (0: none).
void mem_plan_print(const mem_plan *p, uint64_t capacity_bytes, FILE *out);

#define MEM_PLAN_GPU_BYTES ((uint64_t)80 << 30)  // an 80 GB A100 / H100: 80 GiB

#endif
