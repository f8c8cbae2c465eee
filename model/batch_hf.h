// Packed batches (data/batch.h) from the padded inputs a Hugging Face model takes, with the image
// token repeated once per image feature, as transformers' LlavaProcessor writes it.
#ifndef LLAVA_MODEL_BATCH_HF_H
#define LLAVA_MODEL_BATCH_HF_H

#include <stdint.h>

#include "llava.h"

// Builds a packed batch from Hugging Face-style inputs: input_ids (B, S) with the image token
// repeated once per image feature, attention_mask (B, S) right-padded (NULL: all real), labels
// (B, S) with -100 ignored (NULL: no targets), pixel_values (n_img, 3, H, W) for the images in
// row-major order of their tokens.
int llava_batch_from_hf(llava_batch *b, const llava_model *m, const int64_t *input_ids, const int64_t *attention_mask,
                        const int64_t *labels, int B, int S, const float *pixels, int n_img, int H, int W);

// The same where video_frame (n_img; NULL: none) marks the images that are video frames: under the model's
// video_pool_mode each frame's tokens are tokens_per_video_frame; the batch gets video_frame.
int llava_batch_from_hf_frames(llava_batch *b, const llava_model *m, const int64_t *input_ids,
                               const int64_t *attention_mask, const int64_t *labels, int B, int S, const float *pixels,
                               int n_img, int H, int W, const uint8_t *video_frame);

// The same from a safetensors file holding input_ids, and optionally attention_mask, labels and
// pixel_values, or instead pixel_values_videos (videos, frames, 3, H, W) with the config's video_token_index repeated
// per frame feature, as LlavaNextVideo takes them (what `llava forward --inputs` reads). *B and *S receive input_ids' shape.
int llava_batch_from_file(llava_batch *b, const llava_model *m, const char *path, int *B, int *S);

// The same for an AnyRes model (LLaVA-NeXT): `tiles` holds every image's tiles one after another (image i's 1 + rows
// * cols, its grid from sizes[i] = (height, width) under the model's pinpoints), and each image's <image> tokens are
// its merged features (image_anyres_feature_rows); the batch gets feat_rows.
int llava_batch_from_hf_anyres(llava_batch *b, const llava_model *m, const int64_t *input_ids,
                               const int64_t *attention_mask, const int64_t *labels, int B, int S, const float *tiles,
                               int n_images, const int64_t *sizes);

#endif
