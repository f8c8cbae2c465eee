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
// 1 when the model is a variant transformers' Llava cannot express (a projector other than mlp2x_gelu, a visual-
// token reduction): export_llava_hf then writes model_type "llava_c" with mm_projector_type, mm_spatial_pool_mode /
// mm_spatial_pool_stride and mm_vision_keep_tokens, a folder llava.c loads and transformers refuses.
int export_is_llava_c(const model_config *c);

// What transformers' AutoProcessor reads beside an export_llava_hf folder, so that
// LlavaProcessor.from_pretrained(dir) and pipeline(..., model=dir) run on it, and `llava generate
// --model dir` finds its tokenizer (docs/export.md):
//   tokenizer.model          the run's SentencePiece model, copied byte for byte
//   tokenizer_config.json    LlamaTokenizer, legacy false, add_bos_token true, bos/eos/unk from the
//                            tokenizer, <image> and <pad> at the export's ids, model_max_length,
//                            padding_side left (batched generation), chat_template
//   special_tokens_map.json  bos, eos, unk, pad
//   preprocessor_config.json CLIPImageProcessor: resize the shortest edge to the tower's image size,
//                            centre crop to it, bicubic (resample 3), CLIP's mean and std
//   processor_config.json    LlavaProcessor: patch_size, vision_feature_select_strategy (as config.json),
//                            image_token, num_additional_image_tokens 1 (CLIP's class token)
//   chat_template.json       the vicuna_v1 conversation as a Jinja template (LLaVA-1.5's prompt)
typedef struct {
    const char *tokenizer;      // the run's tokenizer.model (required)
    int model_max_length;       // tokenizer_config's model_max_length; <= 0: 2048 (LLaVA-1.5's)
    const char *template_name;  // the template trained on: vicuna_v1 ("v1") or NULL gets its Jinja
                                // chat template; any other none (LLaVA-1.5's would be wrong for it)
} export_processor_options;
int export_llava_hf_processor(const llava_model *m, const char *dir, const export_processor_options *o);

// The template name an export recorded (tokenizer_config.json's "llava_template"), malloc'ed; NULL when none. The
// engine takes it when no template is named, so a model trained with another template answers in it.
char *export_recorded_template(const char *dir);

#endif
