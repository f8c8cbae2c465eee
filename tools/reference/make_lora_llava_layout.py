#!/usr/bin/env python3
"""The r4 PEFT golden adapter (tests/data/golden/lora/r4/adapter) re-saved the way LLaVA's own LoRA runs save theirs,
for llava.c's reader of LLaVA's released LoRA checkpoints (liuhaotian/llava-v1.5-7b-lora and the like).

What LLaVA c121f04's llava/train/train.py writes at the end of a --lora_enable run (safe_save_model_for_hf_trainer
path for LoRA, train() lines "if training_args.lora_enable:"):
  adapter_config.json       PEFT's LoraConfig, target_modules the list find_all_linear_names returns (the LM's
                            linear module names; LLaVA builds the vision tower after get_peft_model, so a list
                            adapts the language model only there)
  adapter_model.bin         model.save_pretrained(state_dict=lora params): torch.save of a dict whose keys are
                            LlavaLlamaForCausalLM's names behind "base_model.model.", adapter name removed:
                            base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
  non_lora_trainables.bin   torch.save of the other trained parameters (the projector):
                            base_model.model.model.mm_projector.0.weight, ...mm_projector.2.bias
The tensors are the r4 golden's own values (nothing recomputed), so a reader that maps both name schemes onto one
model must give the r4 golden's logits bit for bit (tests/test_lora.c).

Run (repository root; torch and safetensors as in requirements-lora.txt):
    python tools/reference/make_lora_llava_layout.py     # writes tests/data/golden/lora/r4_llava/
"""

import json
import os

import torch
from safetensors.torch import load_file

SRC = "tests/data/golden/lora/r4/adapter"
OUT = "tests/data/golden/lora/r4_llava"
# find_all_linear_names returns a set's list; this is one order of it (PEFT treats the list as a set)
TARGETS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def main():
    t = load_file(os.path.join(SRC, "adapter_model.safetensors"))
    lora, other = {}, {}
    for k, v in t.items():
        if ".lora_" in k:
            assert k.startswith("base_model.model.language_model.model."), k
            lora["base_model.model.model." + k[len("base_model.model.language_model.model."):]] = v.clone()
        else:
            assert k.startswith("base_model.model.multi_modal_projector.linear_"), k
            rest = k[len("base_model.model.multi_modal_projector.linear_"):]  # "1.weight"
            idx = {"1": "0", "2": "2"}[rest[0]]
            other["base_model.model.model.mm_projector." + idx + rest[1:]] = v.clone()
    os.makedirs(OUT, exist_ok=True)
    torch.save(lora, os.path.join(OUT, "adapter_model.bin"))
    torch.save(other, os.path.join(OUT, "non_lora_trainables.bin"))
    cfg = json.load(open(os.path.join(SRC, "adapter_config.json")))
    cfg["target_modules"] = TARGETS
    cfg["modules_to_save"] = None
    cfg["base_model_name_or_path"] = "./checkpoints/vicuna-7b-v1.5"  # what a stage-2 LoRA run records
    with open(os.path.join(OUT, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    print(f"{len(lora)} LoRA tensors, {len(other)} projector tensors -> {OUT}")


if __name__ == "__main__":
    main()
