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
#include "model/config.h"
#include "model/llava.h"
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

// The model config a training run builds: from model.init, or from model.llm (a LLaMA folder)
// plus model.vision_tower (a CLIP folder) and the mm_* keys (build.c).
int train_model_config(const run_settings *s, model_config *out);

// The model a run trains, with its weights from the configured sources: model.init, or model.llm +
// model.vision_tower, and model.pretrain_mm_mlp_adapter or a freshly initialised projector.
int train_build_model(const run_settings *s, llava_backend *be, llava_model *m);

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
// What a dataset was prepared from, as JSON (malloc'd): what a checkpoint's state.json records.
char *train_dataset_json(const llava_dataset *ds);

#endif
