#!/usr/bin/env python3
"""Checks an AnyRes (llava_next) folder that `llava train` exported with transformers 4.46.3, by hand.

`llava train PRESET --set data.image_aspect_ratio=anyres --set data.image_grid_pinpoints=...` writes OUTPUT/model as
a llava_next folder (config.json with image_grid_pinpoints, model.safetensors with image_newline,
preprocessor_config.json naming LlavaNextImageProcessor, processor_config.json LlavaNextProcessor). This script loads it
with AutoProcessor and LlavaNextForConditionalGeneration (fp32, eager), asks one question about one image through the
processor and the chat template, and writes the processor's tensors (input_ids, attention_mask, pixel_values
(1, tiles, 3, S, S), image_sizes) to --inputs and the logits to --logits (.npy), for `llava forward --model DIR
--inputs IN --out OUT` to be compared with. It prints the classes, the shapes, the number of image tokens the processor
expanded and the greedy answer. Requirements: requirements-model.txt (torch 2.5.1, transformers 4.46.3), Pillow.

    python tools/reference/check_export_llava_next.py OUTPUT/model IMAGE.png [--inputs IN] [--logits L.npy]
"""
import argparse

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoProcessor, LlavaNextForConditionalGeneration


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("image")
    ap.add_argument("--inputs", default="next_inputs.safetensors")
    ap.add_argument("--logits", default="next_logits.npy")
    ap.add_argument("--question", default="What color is the shape?")
    a = ap.parse_args()
    proc = AutoProcessor.from_pretrained(a.model)
    model = LlavaNextForConditionalGeneration.from_pretrained(a.model, torch_dtype=torch.float32,
                                                              attn_implementation="eager").eval()
    print(type(proc).__name__, type(proc.image_processor).__name__, type(model).__name__)
    img = Image.open(a.image).convert("RGB")
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": a.question}]}]
    prompt = proc.apply_chat_template(msgs, add_generation_prompt=True)
    inp = proc(images=img, text=prompt, return_tensors="pt")
    n_img = int((inp["input_ids"] == model.config.image_token_index).sum())
    print({k: tuple(v.shape) for k, v in inp.items()}, "image tokens", n_img)
    with torch.no_grad():
        out = model(**inp)
    save_file({"input_ids": inp["input_ids"].contiguous(), "attention_mask": inp["attention_mask"].contiguous(),
               "pixel_values": inp["pixel_values"].float().contiguous(), "image_sizes": inp["image_sizes"].contiguous()},
              a.inputs)
    np.save(a.logits, out.logits[0].numpy())
    g = model.generate(**inp, max_new_tokens=4, do_sample=False)
    print("generate:", repr(proc.decode(g[0, inp["input_ids"].shape[1]:], skip_special_tokens=True)))


if __name__ == "__main__":
    main()
