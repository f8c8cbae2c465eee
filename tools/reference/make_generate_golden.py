"""Greedy generation by transformers on the golden tiny64 model, for `llava generate`'s test.

For each row of tests/data/golden/model/tiny64/inputs.safetensors (its real tokens up to its
closing eos, and its image if it has one), LlavaForConditionalGeneration.generate(do_sample=False) makes up to 12 new tokens
(fp32, eager attention, stopping at eos id 2). Written: the prompt, the new ids, and at each step
the gap between the two largest logits (so a test can see that no step is a near tie).
Pinned versions: tools/reference/requirements-model.txt. Run from the repository root:
    python tools/reference/make_generate_golden.py
"""
import json

import torch
from safetensors.torch import load_file
from transformers import LlavaForConditionalGeneration

DIR = "tests/data/golden/model/tiny64"


def main():
    model = LlavaForConditionalGeneration.from_pretrained(DIR + "/model", torch_dtype=torch.float32,
                                                          attn_implementation="eager").eval()
    inp = load_file(DIR + "/inputs.safetensors")
    image_token = model.config.image_token_index
    rows, img = [], 0
    for r in range(inp["input_ids"].shape[0]):
        n = int(inp["attention_mask"][r].sum()) - 1  # the prompt without its closing eos
        ids = inp["input_ids"][r, :n].unsqueeze(0)
        has_image = bool((ids == image_token).any())
        pix = inp["pixel_values"][img:img + 1] if has_image else None
        img += has_image
        # A text-only row goes to the language model itself: transformers 4.46's LLaVA generate
        # takes its legacy path for a prompt without image tokens and fails there.
        gen = model if has_image else model.language_model
        kw = {"pixel_values": pix} if has_image else {}
        with torch.no_grad():
            out = gen.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12,
                               eos_token_id=2, pad_token_id=299, output_scores=True, return_dict_in_generate=True, **kw)
        new = out.sequences[0, n:].tolist()
        gaps = []
        for s in out.scores:
            top = torch.topk(s[0], 2).values
            gaps.append(float(top[0] - top[1]))
        rows.append({"prompt": ids[0].tolist(), "image": img - 1 if has_image else -1, "new": new, "top2_gap": gaps})
    with open(DIR + "/generate.json", "w") as f:
        json.dump({"max_new_tokens": 12, "eos": 2, "rows": rows}, f, indent=1)
        f.write("\n")
    for r in rows:
        print(len(r["prompt"]), r["image"], r["new"], "min gap %.3g" % min(r["top2_gap"]))


if __name__ == "__main__":
    main()
