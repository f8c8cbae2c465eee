// The no-cache reference path of generation: each new token costs one full forward pass over the
// prompt and the tokens made so far (llava_pass, the training forward), and the most likely next
// token is appended, until `eos` or `max_new` tokens. Slow, and simple enough to trust: the engine
// (engine.h), which decodes through the KV cache, is tested against it token for token
// (tests/test_engine.c), and `llava generate --no-cache` answers with it.
#ifndef LLAVA_INFER_GENERATE_H
#define LLAVA_INFER_GENERATE_H

#include <stdint.h>

#include "model/llava.h"

// prompt: token ids with the model's image token repeated once per image feature (as transformers'
// processor makes them); pixels (n_img, 3, H, W), normalised, or NULL. `out` receives up to max_new
// ids (the eos included when it comes). Returns their count, or -1 with llava_errmsg(). Under the model's
// video_pool_mode a prompt whose image tokens are n_img x tokens_per_video_frame takes the images as one video's
// frames (pooled).
int llava_generate_greedy(llava_model *m, const int64_t *prompt, int n_prompt, const float *pixels, int n_img, int H,
                          int W, int max_new, int eos, int64_t *out);

#endif
