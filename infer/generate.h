// Greedy decoding with a trained model: what `llava generate` answers with, and how a fine-tuned
// checkpoint is looked at. The model runs over the prompt and the tokens made so far (no KV cache:
// each new token costs one full forward pass, fine for answers of a few hundred tokens), and the
// most likely next token is appended, until `eos` or `max_new` tokens.
#ifndef LLAVA_INFER_GENERATE_H
#define LLAVA_INFER_GENERATE_H

#include <stdint.h>

#include "model/llava.h"

// prompt: token ids with the model's image token repeated once per image feature (as transformers'
// processor makes them); pixels (n_img, 3, H, W), normalised, or NULL. `out` receives up to max_new
// ids (the eos included when it comes). Returns their count, or -1 with llava_errmsg().
int llava_generate_greedy(llava_model *m, const int64_t *prompt, int n_prompt, const float *pixels, int n_img, int H,
                          int W, int max_new, int eos, int64_t *out);

#endif
