// `llava train`: a resolved training config in, a trained model out.
//
// A run is a trainer that is opened (backend, model, dataset, loader, optimizer, the checkpoint to
// resume from), stepped (the loader's step of accumulation micro-batches, each possibly in
// token-budget chunks; forward and backward with LLaVA's loss normalisation; AdamW at the
// schedule's lr), logged (a metrics line, the progress line), checkpointed every save_steps, and
// finished (the exported results, every rank's verdict). Resume continues from the newest complete
// checkpoint and reproduces the uninterrupted run's loss curve bit for bit on the CPU backend.
#ifndef LLAVA_TRAIN_TRAINER_H
#define LLAVA_TRAIN_TRAINER_H

#include <stdint.h>

#include "config.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "model/config.h"
#include "model/llava.h"
#include "optim.h"
#include "settings.h"

struct dist;

typedef struct {
    struct dist *dist;  // the process group this rank belongs to (NULL: one process)
    int resume;         // continue from the newest complete checkpoint in output_dir
    int quiet;          // no progress line
    int stop_after;     // > 0: return after this many steps of this invocation (tests)
    // When not NULL, receives what the run measured of itself (tests compare it with the plan).
    struct train_stats *stats;
} train_options;

typedef struct train_stats {
    int steps;                    // optimizer steps this invocation ran
    uint64_t backend_peak_bytes;  // the most the backend's allocator held at once (backend.h)
    uint64_t device_used_bytes;   // the device's memory in use after the first step (CUDA: cudaMemGetInfo)
    uint64_t plan_total_bytes;    // `llava plan`'s total for this run on this rank count
    uint64_t plan_activation_bytes;
} train_stats;

// Runs the whole configured training on this rank. Every rank of opt->dist calls it with the same
// config: each trains on its share of every global batch (data/loader.h), gradients are reduced
// and the optimizer state sharded as train.zero_stage says (train/optim.h), and rank 0 alone writes
// metrics, checkpoints and results. Returns 0, or -1 with llava_errmsg(); a rank that fails should
// end the job (dist_abort), since the others would wait for it in their next collective.
// train_run reads the config into settings (settings.h) and runs train_run_settings.
int train_run(const train_config *c, const train_options *opt);
int train_run_settings(const run_settings *s, const train_options *opt);
// What train_run returns when a signal (SIGTERM, SIGINT) stopped the run after a step and its
// checkpoint, on every rank: `llava train` exits with this status (EX_TEMPFAIL, "try again"), and
// `--resume` continues bit for bit. A second signal ends the process at once (status 128 + signal).
#define TRAIN_STOPPED 75

// A step's forward and backward passes, as the trainer runs them (tests drive them directly): this
// rank's micro-batches micro[0..accum), each pass (chunk) with its weight under
// train.loss_normalization. LLaVA's (global_tokens 0): chunk targets / micro-batch targets / V, V the
// micro-batches of the step over every rank, so that the gradient the reduction sums over the ranks
// is that of the mean of the micro-batches' token means, as the Hugging Face Trainer with accelerate
// and DDP computes it, when every micro-batch has targets (otherwise see train_step_loss).
// global_tokens: chunk targets / step_targets (the step's targets over every rank), one token mean.
// Zeroes the gradients first, reduces them over the ranks after the last pass (optim_reduce), and
// reads the passes' losses back into *losses (grown as needed, *losses_cap its length). *loss_sum
// receives this rank's part of the step's loss: each pass's mean loss times its weight, summed.
// Returns 0, or -1 with llava_errmsg() (a malformed batch).
int train_step_passes(llava_model *m, optim_state *os, const loader_micro *micro, int accum, int V, int global_tokens,
                      double step_targets, float **losses, size_t *losses_cap, double *loss_sum);
// The step's loss from train_step_passes' loss_sum summed over every rank, and in *grad_scale the
// scale optim_step applies to the reduced gradient. LLaVA's: the mean over the n_micro_nonempty
// micro-batches that have targets (a micro-batch without targets has no mean; LLaVA would get NaN),
// so loss_sum * V / n_micro_nonempty and a gradient scale of V / n_micro_nonempty (1 when all have
// targets); NaN when none has. global_tokens: loss_sum, and scale 1.
double train_step_loss(int global_tokens, double loss_sum, int V, double n_micro_nonempty, float *grad_scale);

// The model config a training run builds: from model.init, or from model.llm (a LLaMA folder)
// plus model.vision_tower (a CLIP folder) and the mm_* keys (build.c).
int train_model_config(const run_settings *s, model_config *out);

// The model a run trains, with its weights from the configured sources: model.init, or model.llm +
// model.vision_tower, and model.pretrain_mm_mlp_adapter or a freshly initialised projector.
int train_build_model(const run_settings *s, llava_backend *be, llava_model *m);

// The tokenizer a run uses (malloc'd): model.tokenizer, else the tokenizer.model beside the LM's (or the
// whole model's) weights. Prep tokenizes with it, and the llava-hf export copies it.
char *train_tokenizer_path(const run_settings *s);

// The prepared dataset. A data.data_path that does not exist is refused by name. A LLaVA JSON (".json") is
// prepared into output_dir/dataset.h5, which is used again only while it records the same inputs as the run
// asks (the JSON's path, size and md5, the tokenizer's md5, template, tokenizer mode, image aspect,
// model_max_length and image folder); otherwise it is prepared again (a temporary file renamed over it). An
// HDF5 file given as data.data_path is used as it is. Either way a file prepared with another template or
// tokenizer mode, or storing pixels of another aspect, is refused. What prep recorded is in *ds (dataset.h).
int train_open_dataset(const run_settings *s, llava_dataset *ds);
// The same where check_source = 0 skips comparing the file with its source (the other ranks of a
// run, once rank 0 has checked or prepared it).
int train_open_dataset_as(const run_settings *s, llava_dataset *ds, int check_source);
// eval.data_path prepared the same way (the training data's template, tokenizer, aspect and length)
// into output_dir/eval_dataset.h5, its images from eval.image_folder or data.image_folder.
int train_open_eval_dataset(const run_settings *s, llava_dataset *ds, int check_source);
// What a dataset was prepared from, as JSON (malloc'd): what a checkpoint's state.json records.
char *train_dataset_json(const llava_dataset *ds);

#endif
