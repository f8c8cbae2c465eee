// Writing trained models in the layouts other tools read.
#ifndef LLAVA_MODEL_EXPORT_H
#define LLAVA_MODEL_EXPORT_H

#include "common/dtype.h"
#include "model/llava.h"

// The projector alone with the original LLaVA names (model.mm_projector.{0,2}.{weight,bias}), as
// stage 1 writes mm_projector.bin; stage 2 (`model.pretrain_mm_mlp_adapter`) reads it back.
int export_projector(const llava_model *m, const char *path, dtype_t dtype);

// The whole model as a llava-hf folder (config.json + model.safetensors, legacy key names) that
// transformers' LlavaForConditionalGeneration.from_pretrained loads. A model whose vocabulary has no
// image token (vicuna-based, original LLaVA) gets one, as convert_llava_weights_to_hf.py does:
// <image> = V, <pad> = V + 1, the vocabulary padded to a multiple of 64; the new rows of
// embed_tokens and lm_head are the mean of the existing rows.
int export_llava_hf(const llava_model *m, const char *dir, dtype_t dtype);

#endif
