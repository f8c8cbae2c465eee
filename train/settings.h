// The resolved configuration as typed values: train/config.h's JSON tree (presets, `--set`
// overrides, schema checks) is read here once, and nothing below this layer looks a key up by
// its string. Each section of the schema has its struct; strings are copies owned by the settings.
#ifndef LLAVA_TRAIN_SETTINGS_H
#define LLAVA_TRAIN_SETTINGS_H

#include "config.h"
#include "data/image.h"
#include "data/tokenizer.h"
#include "model/config.h"
#include "schedule.h"

typedef struct {
    char *llm, *vision_tower, *init, *tokenizer, *pretrain_mm_mlp_adapter;  // NULL: not set
    int projector_depth;                                                    // mm_projector_type (model/config.h)
    spatial_pool_mode pool_mode;                                            // mm_spatial_pool_mode
    int pool_stride;                                                        // mm_spatial_pool_stride
    spatial_pool_mode video_pool_mode;                                      // video frames only (LlavaNextVideo)
    int video_pool_stride;                                                  // its kernel and stride
    int keep_tokens;                                                        // mm_vision_keep_tokens
    int vision_image_size;                                                  // mm_vision_image_size (0: the tower's)
    int vision_select_layer;                                                // mm_vision_select_layer
    int drop_cls;                                                           // mm_vision_select_feature == "patch"
    // model.ignore_unexpected_weights: skip tensors the model config has no place for (else an error)
    int ignore_unexpected_weights;
} model_settings;

typedef struct {
    char *data_path, *image_folder;
    char *template_name;  // "plain" or "vicuna_v1"
    char *tokenizer_mode_name;
    tok_mode tokenizer_mode;
    char *aspect_name;  // "square", "pad" or "anyres"
    image_aspect aspect;
    int anyres;            // image_aspect_ratio anyres: LLaVA-NeXT's tiles (aspect is pad for the tiles' own)
    int anyres_max;        // image_aspect_ratio anyres_max_N (AnyRes too): N, the model's cap; 0 for plain anyres
    char *grid_pinpoints;  // data.image_grid_pinpoints
    int model_max_length;
    int video_frames;  // data.video_frames
    int max_images;    // data.max_images_per_sample: the most images (a video's frames) a sample brings; 0: the
                       // dataset's own maximum at train time (mem_plan_images_per_sample)
    int group_by_modality_length;
    int num_workers;
    int truncate_after_splice;
    int sampler_seed;          // -1: torch's default generator seed
    int single_process_order;  // data.sampler_order llava-single-process
    int prefetch;
    int token_budget;  // 0: one pass per micro-batch
    int strict;
} data_settings;

typedef struct {
    int stage;
    int projector, lm, vision, lora;  // what train.trainable names
    char **freeze;                    // name prefixes kept frozen
    int n_freeze;
    double num_train_epochs;
    int max_steps;  // <= 0: run the epochs
    int per_device_batch, per_device_eval_batch, grad_accum, global_batch;
    double learning_rate, projector_lr;  // projector_lr NaN: learning_rate
    double vision_lr;                    // mm_vision_tower_lr; NaN: learning_rate
    int vision_last;                     // train.vision_unfreeze_last (0: the whole tower, when vision trains)
    int vision_checkpointing;            // train.vision_gradient_checkpointing
    double weight_decay, beta1, beta2, eps, max_grad_norm;
    sched_type schedule;
    double warmup_ratio;
    int warmup_steps;
    int loss_global_tokens;  // loss_normalization == "global_tokens"
    int seed;
    int bf16, tf32, gradient_checkpointing;
    int zero_stage;
    int offload_optimizer;  // train.offload_optimizer cpu: optimizer state and update on the host
    int offload_threads;    // its threads per rank (0: the node's cores shared among its ranks)
    int shard_frozen;       // train.shard_frozen: ZeRO-3 shards the frozen tower too
    char *device;           // "cpu" or "cuda"
    int max_nonfinite_steps;
    double loss_spike_factor;  // 0: off
    int ignore_memory_plan;
    int collective_timeout_s;  // train.nccl_timeout_s when set, else train.collective_timeout_s
    int init_timeout_s;
} train_settings;

typedef struct {
    int enabled, r, use_rslora;
    int bits;  // 4: QLoRA (the LM's linears through NF4), 16: as loaded
    double alpha, dropout;
    char **target_modules;
    int n_target_modules;
    char *init_adapter;  // NULL: fresh adapters
} lora_settings;

typedef struct {
    char *output_dir;
    int save_steps;  // 0: no checkpoints but the last
    int save_total_limit;
} checkpoint_settings;

typedef struct {
    int logging_steps;
    int jsonl;        // report_to has "jsonl": metrics.jsonl in the output folder
    int tensorboard;  // report_to has "tensorboard": event files in <output folder>/runs/ (tblog.h)
} log_settings;

typedef struct {
    int steps;                       // evaluation_strategy "steps": the eval loss every `every` steps
    int every;                       // eval_steps (logging_steps when 0)
    char *data_path, *image_folder;  // image_folder NULL: data.image_folder
} eval_settings;

typedef struct {
    model_settings model;
    data_settings data;
    train_settings train;
    lora_settings lora;
    checkpoint_settings checkpoint;
    log_settings log;
    eval_settings eval;
    char *source;       // the preset it came from
    char *config_json;  // the resolved configuration as JSON (what checkpoints record)
} run_settings;

// Reads every key of a resolved, validated config. 0, or -1 with llava_errmsg() (a value the
// schema allows but the settings cannot represent).
int settings_from_config(const train_config *c, run_settings *s);
void settings_free(run_settings *s);
// The same from a preset path and `--set` overrides (what tests and tools use): load, set,
// validate, read. 0 or -1.
int settings_load(const char *preset, const char *const *sets, int n_sets, run_settings *s);

#endif
