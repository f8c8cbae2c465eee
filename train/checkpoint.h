// Checkpoints that survive anything (ARCHITECTURE.md decision 8): each one is written into a
// temporary folder, every file fsynced and read back against the CRC-32C computed while it was
// written, the folder renamed to checkpoint-<step>, and the COMPLETE manifest (every file's length
// and CRC-32C) written last. Resume takes the newest complete checkpoint whose files match their
// manifest; a damaged one is named and set aside (damaged-checkpoint-<step>), never deleted, and
// the run falls back to the newest good one. Older complete checkpoints beyond the keep limit are
// removed only after a newer one is complete and verified, and only good ones count toward it.
//
// A checkpoint holds: the trainable groups' fp32 weights (weights.safetensors, internal names),
// AdamW's moments (optimizer.safetensors), state.json (step, loader position, counters, the recent
// losses of the spike check, the dataset's source, the resolved training config) and COMPLETE.
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
    int world;            // ranks that wrote it (informational: checkpoints are rank-agnostic)
    char *config_json;    // the resolved training config (malloc'd; may be NULL)
    double *loss_window;  // the recent accepted losses the spike check compares with (malloc'd on load)
    int n_loss_window;
    char *dataset_json;  // what the dataset was prepared from (written only; may be NULL)
} ckpt_state;

// The checkpoints this process has verified (or written and read back): rotation does not read them
// again. Zero-initialised; ckpt_verified_free at the end.
typedef struct {
    int *steps;
    int n;
} ckpt_verified;
void ckpt_verified_free(ckpt_verified *v);

// Writes checkpoint-<state->step> under out_dir, reads it back against its checksums, and prunes to
// the `keep` newest good checkpoints (`verified`: what this process knows good; may be NULL). Every
// rank of o->d calls it (the gathers are collectives); every rank returns rank 0's result.
int ckpt_save(const char *out_dir, const llava_model *m, const optim_state *o, const ckpt_state *st, int keep,
              ckpt_verified *verified);
// The newest complete checkpoint's folder (malloc'd), or NULL when there is none (not verified).
char *ckpt_latest(const char *out_dir);
// The newest complete checkpoint whose files match their manifest (malloc'd), or NULL. Damaged ones
// found on the way are named on stderr and set aside. Adds what it verified to `v` (may be NULL).
char *ckpt_latest_good(const char *out_dir, ckpt_verified *v);
// 1 when every file of checkpoint folder `dir` has its manifest's length and CRC-32C, 2 for a
// checkpoint written before checksums (nothing to compare), 0 with the reason in why otherwise.
int ckpt_verify(const char *dir, char *why, size_t cap);
// Restores weights and optimizer state into an initialised model and optimizer (each rank its own
// shards, as o's layout says); fills *st.
int ckpt_load(const char *dir, llava_model *m, optim_state *o, ckpt_state *st);
void ckpt_state_free(ckpt_state *st);
// Removes temporary folders a killed run left behind.
void ckpt_clean_partial(const char *out_dir);

#endif
