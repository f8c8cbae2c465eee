// `llava train`: a resolved training config in, a trained model out.
//
// The loop: the loader's step (accumulation micro-batches, each possibly in token-budget chunks),
// forward and backward with LLaVA's loss normalisation, AdamW at the schedule's lr, a line of
// metrics, a checkpoint every save_steps. Resume continues from the newest complete checkpoint and
// reproduces the uninterrupted run's loss curve bit for bit on the CPU backend.
#ifndef LLAVA_TRAIN_TRAINER_H
#define LLAVA_TRAIN_TRAINER_H

#include "config.h"
#include "model/config.h"
#include "model/llava.h"

struct dist;

typedef struct {
    struct dist *dist;  // the process group this rank belongs to (NULL: one process)
    int resume;         // continue from the newest complete checkpoint in output_dir
    int quiet;          // no progress line
    int stop_after;     // > 0: return after this many steps of this invocation (tests)
} train_options;

// Runs the whole configured training on this rank. Every rank of opt->dist calls it with the same
// config: each trains on its share of every global batch (data/loader.h), gradients are reduced
// and the optimizer state sharded as train.zero_stage says (train/optim.h), and rank 0 alone writes
// metrics, checkpoints and results. Returns 0, or -1 with llava_errmsg(); a rank that fails should
// end the job (dist_abort), since the others would wait for it in their next collective.
int train_run(const train_config *c, const train_options *opt);

// The model config a training run builds: from model.init, or from model.llm (a LLaMA folder)
// plus model.vision_tower (a CLIP folder) and the mm_* keys.
int train_model_config(const train_config *c, model_config *out);

// The model a run trains, with its weights from the configured sources: model.init, or model.llm +
// model.vision_tower, and model.pretrain_mm_mlp_adapter or a freshly initialised projector.
int train_build_model(const train_config *c, llava_backend *be, llava_model *m);

#endif
