// Checkpoints that survive anything (ARCHITECTURE.md decision 8): each one is written into a
// temporary folder, every file fsynced, the folder renamed to checkpoint-<step>, and a COMPLETE
// marker written last. Resume takes the newest folder with the marker; older complete ones beyond
// the keep limit are removed only after a newer one is complete.
//
// A checkpoint holds: the trainable groups' fp32 weights (weights.safetensors, internal names),
// AdamW's moments (optimizer.safetensors), and state.json (step, loader position, counters, the
// resolved training config).
//
// Rank-agnostic: whatever the rank count and ZeRO stage, the files hold whole tensors. Saving
// gathers each rank's slices of the optimizer state (and fp32 masters) to rank 0, which alone
// writes; loading has every rank read the files and keep its own slices. A run saved on N ranks
// resumes on M (the loader position is a global step, the same on every rank count).
#ifndef LLAVA_TRAIN_CHECKPOINT_H
#define LLAVA_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "model/llava.h"
#include "optim.h"

typedef struct {
    int step;   // optimizer updates applied
    int epoch;  // loader position: the next step's epoch and step within it
    int64_t loader_step;
    long n_skipped;  // non-finite updates skipped so far
    int consecutive_skipped;
    int64_t tokens_seen;
    int world;          // ranks that wrote it (informational: checkpoints are rank-agnostic)
    char *config_json;  // the resolved training config (malloc'd; may be NULL)
} ckpt_state;

// Writes checkpoint-<state->step> under out_dir and prunes to `keep` complete checkpoints. Every
// rank of o->d calls it (the gathers are collectives); every rank returns rank 0's result.
int ckpt_save(const char *out_dir, const llava_model *m, const optim_state *o, const ckpt_state *st, int keep);
// The newest complete checkpoint's folder (malloc'd), or NULL when there is none.
char *ckpt_latest(const char *out_dir);
// Restores weights and optimizer state into an initialised model and optimizer (each rank its own
// shards, as o's layout says); fills *st.
int ckpt_load(const char *dir, llava_model *m, optim_state *o, ckpt_state *st);
void ckpt_state_free(ckpt_state *st);
// Removes temporary folders a killed run left behind.
void ckpt_clean_partial(const char *out_dir);

#endif
