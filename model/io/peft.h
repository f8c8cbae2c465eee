// LoRA adapters in PEFT's folder layout, the files people load with PeftModel.from_pretrained:
//   adapter_config.json        LoraConfig: r, lora_alpha, use_rslora, lora_dropout, target_modules, ...
//   adapter_model.safetensors  the adapters under the wrapped model's names behind "base_model.model."
//                              (base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight
//                              for a llava-hf base), and the modules_to_save (the projector) the same way.
// LLaVA's own LoRA checkpoints name the same tensors after its LlavaLlamaForCausalLM
// (base_model.model.model.layers.0...), with the projector in non_lora_trainables.bin: both name
// schemes map onto the model's internal names (names.c).
#ifndef LLAVA_MODEL_PEFT_H
#define LLAVA_MODEL_PEFT_H

#include "common/dtype.h"
#include "model/config.h"
#include "model/llava.h"

// Reads dir/adapter_config.json into *out (r, alpha, rslora, dropout, the LM modules adapted).
// target_modules may be a list of module names (PEFT matches each as the last part of a module's
// name; only the language model's linears are adapted here, as LLaVA's find_all_linear_names
// leaves out the vision tower and projector) or a regular expression PEFT matches against whole
// module names (tried here on llava-hf's language-model names). Refused, naming the key: another
// peft_type, rank_pattern / alpha_pattern / layers_to_transform, bias other than "none", a pattern
// that adapts the vision tower or no LM module. use_dora sets out->dora (the model folds DoRA into its
// base weights at load). 0, or -1 with llava_errmsg().
int peft_read_config(const char *dir, lora_config *out);

// The weight files of an adapter folder, in the order they load (malloc'd paths, *n of them):
// adapter_model.safetensors or adapter_model.bin (a torch.save zip, read without running its
// pickle), then LLaVA's non_lora_trainables.bin (the projector) when the folder has one. 0, or -1
// with an error naming the folder when it has no adapter weights.
int peft_weight_files(const char *dir, char ***paths, int *n);

typedef struct {
    const char *base_model;  // adapter_config's base_model_name_or_path (NULL: "")
    int with_projector;      // also the projector, as modules_to_save ["multi_modal_projector"]
    dtype_t dtype;           // stored type of the tensors (F32, BF16, F16)
} peft_write_options;

// Writes the model's adapters (GROUP_LORA) as a PEFT folder for a llava-hf base (the layout
// export_llava_hf writes): adapter_config.json and adapter_model.safetensors, each written to a
// temporary file and renamed into place.
int peft_write_adapter(const llava_model *m, const char *dir, const peft_write_options *o);

#endif
