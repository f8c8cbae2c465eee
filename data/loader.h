// The loader: a prepared dataset in, packed batches out, one optimizer step at a time.
//
// Each step gives this rank its `accum` micro-batches (virtual ranks rank, rank + world, ...; see
// data/sampler.h). Worker threads decode and preprocess the images of the next `prefetch` steps
// while the current one trains. The position (epoch, step) is all the state there is: a resumed
// run recomputes the same sample order and sees exactly the batches an uninterrupted one would.
// A sample whose image cannot be read at training time is dropped from its batch, counted and
// reported by id; it never stops the run.
#ifndef LLAVA_DATA_LOADER_H
#define LLAVA_DATA_LOADER_H

#include <stdint.h>

#include "batch.h"
#include "dataset.h"
#include "image.h"
#include "sampler.h"

typedef struct {
    const llava_dataset *ds;
    int batch;               // per-device batch (samples per micro-batch)
    int world, rank, accum;  // ranks and gradient accumulation: virtual ranks = world * accum
    int group_by_modality;   // LLaVA's grouped sampler (else the random one)
    int sequential;          // the samples in file order (evaluation), neither of the above
    uint64_t seed;           // the sampler generator's seed (TORCH_DEFAULT_SEED reproduces LLaVA)
    uint64_t inner_seed;     // the global generator of the grouped sampler (LLaVA: the run's seed)
    int single_generator;    // every draw from the global generator (sampler.h: a single-process launch)
    int inner_skip;          // 32-bit draws of the global generator before each epoch's order
    int tokens_per_image;    // image features spliced in per image (576 for CLIP-L/336)
    // Features per video frame (the model's video_pool_mode: (G / s)^2); 0: tokens_per_image. A video sample's frames
    // are marked in the batch's video_frame.
    int tokens_per_video_frame;
    int image_size;            // side of the square input (336)
    image_aspect aspect;       // square (stage 1) or pad (stage 2)
    image_processor proc;      // the tower's image processor (CLIP's, or SigLIP's)
    const char *image_folder;  // images' paths are relative to it (NULL: the dataset's)
    int max_len_after_splice;  // > 0: truncate each sequence after the image is spliced in (LLaVA HEAD)
    int token_budget;          // > 0: split a micro-batch into chunks of at most this many tokens
    int threads;               // image workers (0: none, decode on the calling thread)
    int prefetch;              // steps prepared ahead
    // LLaVA-NeXT's anyres: each image becomes its tiles (anyres_cfg; tokens_per_image per tile, anyres_grid per
    // side) and its <image> the features LLaVA-NeXT's merge lays out (image_anyres_feature_rows); 0: off
    int anyres;
    int anyres_grid;
    image_anyres_config anyres_cfg;
} loader_config;

typedef struct {
    int epoch;
    int64_t step;  // the next step within the epoch
} loader_pos;

// One micro-batch, possibly in several chunks (token budget). Its loss is the token mean over all
// its chunks: scale chunk c's mean loss by chunks[c].n_targets / n_targets.
typedef struct {
    llava_batch *chunks;
    int n_chunks;
    int n_samples;     // samples in the micro-batch after dropping unreadable ones
    int64_t *samples;  // (n_samples) their dataset indices, in stream order
    int n_dropped;
    int64_t n_tokens;
    int64_t n_targets;
} loader_micro;

typedef struct {
    loader_micro *micro;  // (accum)
    int accum;
    loader_pos pos;  // which step this is
} loader_step;

typedef struct loader loader;

loader *loader_create(const loader_config *c, loader_pos start);
void loader_free(loader *l);
int64_t loader_steps_per_epoch(const loader *l);
// The position of the next step loader_next returns: what a checkpoint stores.
loader_pos loader_position(const loader *l);
// Fills *s with the next step and advances (rolling into the next epoch at the end of one).
int loader_next(loader *l, loader_step *s);
void loader_step_free(loader_step *s);
// Seconds loader_next has spent waiting for image workers: near 0 when prefetching keeps up.
double loader_wait_seconds(const loader *l);
// Why the loader leaves a sample out of its micro-batch, each counted apart (the trainer reports them
// by name). `llava prep` keeps most of these out of its file already; at train time they remain
// possible when an image file changed after prep, or with a dataset prepared by hand.
typedef enum {
    LOADER_DROP_IMAGE_UNREADABLE = 0,  // the image could not be read or decoded
    LOADER_DROP_TOO_MANY_IMAGES,       // more than one <image> in the sample
    LOADER_DROP_IMAGE_NO_TOKEN,        // an image file but no <image> in the text
    LOADER_DROP_TOKEN_NO_IMAGE,        // an <image> in the text but no image file
    LOADER_DROP_IMAGE_CUT,             // truncation after the splice would cut the image
    LOADER_DROP_VIDEO_ANYRES,          // a video sample under AnyRes (which tiles images, not frames)
    LOADER_N_DROP
} loader_drop;
extern const char *const LOADER_DROP_NAMES[LOADER_N_DROP];
// Samples dropped so far, and the id of the last one; by_reason (LOADER_N_DROP, may be NULL)
// receives the counts per reason.
int64_t loader_dropped(const loader *l, const char **last_id, int64_t *by_reason);

#endif
