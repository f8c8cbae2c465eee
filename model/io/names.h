// Tensor names: the layouts checkpoints come in, mapped onto one internal naming, and back.
//
// Internal names are a group prefix plus the Hugging Face name inside that component:
//   vision.<name after "vision_model.">        e.g. vision.encoder.layers.3.mlp.fc1.weight
//   projector.linear_{1,2}.{weight,bias}
//   lm.<LlamaForCausalLM name>                 e.g. lm.model.layers.0.self_attn.q_proj.weight, lm.lm_head.weight
#ifndef LLAVA_NAMES_H
#define LLAVA_NAMES_H

#include <stddef.h>

typedef enum {
    LAYOUT_LLAVA_HF_LEGACY = 0,  // llava-hf as published: language_model.model.*, vision_tower.vision_model.*
    LAYOUT_LLAVA_HF,             // transformers >= 4.52: model.language_model.*, model.vision_tower.vision_model.*
    LAYOUT_LLAVA_ORIGINAL,       // haotian-liu: model.*, model.mm_projector.{0,2}, model.vision_tower.vision_tower.*
    LAYOUT_LLAMA,                // plain vicuna: model.*, lm_head.weight
    LAYOUT_CLIP,                 // plain CLIP: vision_model.* (text tower ignored)
    LAYOUT_UNKNOWN,
} weight_layout;

// As the parameter groups (model/params.h). LoRA adapters are named after the module they adapt
// (lm.model.layers.0.self_attn.q_proj.lora_A.weight) and form a group of their own.
typedef enum { NAME_GROUP_VISION = 0, NAME_GROUP_PROJECTOR = 1, NAME_GROUP_LM = 2, NAME_GROUP_LORA = 3 } name_group;

typedef enum {
    NAME_MAPPED = 0,   // *internal holds the internal name
    NAME_IGNORED = 1,  // a known tensor we never use (inv_freq, position_ids, CLIP text tower, logit_scale)
    NAME_UNKNOWN = 2,  // matches no layout
} name_status;

// Maps an external tensor name to its internal name (malloc'd into *internal when NAME_MAPPED).
// `layout` (may be NULL) receives the layout the name indicates, LAYOUT_UNKNOWN when ambiguous
// (a plain "model.*" name is both vicuna and original LLaVA).
name_status name_to_internal(const char *external, char **internal, weight_layout *layout);
// The group an internal name belongs to, or -1.
int name_group_of(const char *internal);
// The external name of an internal one in `layout` (malloc'd), or NULL when the layout has no
// place for it (a projector in a plain vicuna file). `linear_projector` selects the original
// layout's name for a single-Linear projector (model.mm_projector.weight).
char *name_from_internal(const char *internal, weight_layout layout, int linear_projector);
const char *layout_name(weight_layout l);

#endif
