#!/usr/bin/env python3
"""Greedy generation that stops at eos, by transformers 4.46.3's generate: <cfg>/generate_eos.json.

In the goldens of make_generate_batch_golden.py no prompt ever emits eos (2) within its 16 new tokens, so stopping at
eos is never compared with transformers there. Here the eos id is set to a token the greedy continuation does emit
mid-way: per model (tiny64, tiny128, tinygqa), the 5th new token of the first image prompt whose 5th token is not
among its first 4 (so that prompt stops after exactly 5 tokens, eos included; other prompts that happen to emit the
same token stop there too). The six prompts and images are those of <cfg>/generate_batch.json and
generate_batch.safetensors (read, not rewritten), and generate runs as that script runs it, with eos_token_id = the
chosen id (do_sample=False, max_new_tokens=16, pad = the model's pad id, fp32, eager):

  single    each prompt alone: LlavaForConditionalGeneration.generate for a prompt with an image, its
            language_model.generate for a text-only one; the same tokens from the LLaVA model with its legacy path
            off (image_seq_length 0) are checked here.
  batched   all six in ONE left-padded batch with the legacy path off (the golden's batched_fixed): a row that
            emitted eos is padded with the pad id until the longest row ends; recorded as generate returned it.

Checked here: every row's tokens are its 16 tokens of generate_batch.json (new_single) cut after the first eos, the
batched rows equal the single ones up to and including eos, and only pad ids follow eos in a batched row.

Written: tests/data/golden/model/<cfg>/generate_eos.json. Pinned versions: tools/reference/requirements-model.txt.
Run from the repository root (CPU only, a few seconds):
    python tools/reference/make_generate_eos_golden.py
"""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_goldens as mmg  # noqa: E402  (sets CUDA_VISIBLE_DEVICES="" before torch loads)

import torch  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
import transformers  # noqa: E402
from transformers import LlavaForConditionalGeneration  # noqa: E402

ROOT = "tests/data/golden/model"
CONFIGS = ["tiny64", "tiny128", "tinygqa"]
STOP_AT = 5  # the chosen prompt emits eos as its 5th new token


def md5(path):
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()


def cut(new, eos):
    """The new ids up to the first eos, included."""
    return new[:new.index(eos) + 1] if eos in new else list(new)


def choose_eos(prompts):
    for k, p in enumerate(prompts):
        new = p["new_single"]
        if p["image"] >= 0 and new[STOP_AT - 1] not in new[:STOP_AT - 1]:
            return k, new[STOP_AT - 1]
    raise SystemExit("no image prompt whose 5th new token is new")


def run_config(name):
    d = os.path.join(ROOT, name)
    with open(os.path.join(d, "generate_batch.json")) as fh:
        gb = json.load(fh)
    pixel_values = load_file(os.path.join(d, "generate_batch.safetensors"))["pixel_values"]
    model = LlavaForConditionalGeneration.from_pretrained(os.path.join(d, "model"), torch_dtype=torch.float32,
                                                          attn_implementation="eager").eval()
    cfg = model.config
    P, pad = cfg.image_seq_length, cfg.pad_token_id
    assert gb["pad"] == pad and gb["image_seq_length"] == P
    prompts = gb["prompts"]
    k_eos, eos = choose_eos(prompts)
    kw = dict(do_sample=False, max_new_tokens=gb["max_new_tokens"], eos_token_id=eos, pad_token_id=pad)

    rows = []
    for i, p in enumerate(prompts):
        x = torch.tensor([p["ids"]])
        pix = pixel_values[p["image"]:p["image"] + 1] if p["image"] >= 0 else None
        with torch.no_grad():
            if pix is not None:
                o = model.generate(input_ids=x, attention_mask=torch.ones_like(x), pixel_values=pix, **kw)
            else:
                o = model.language_model.generate(input_ids=x, attention_mask=torch.ones_like(x), **kw)
            cfg.image_seq_length = 0
            o2 = model.generate(input_ids=x, attention_mask=torch.ones_like(x), pixel_values=pix, **kw)
            cfg.image_seq_length = P
        new = o[0, len(p["ids"]):].tolist()
        assert o2[0, len(p["ids"]):].tolist() == new, (name, i)
        assert new == cut(p["new_single"], eos), (name, i, new, p["new_single"])
        rows.append({"new_single": new, "stops_at_eos": eos in new})
    assert rows[k_eos]["stops_at_eos"] and len(rows[k_eos]["new_single"]) == STOP_AT

    # One left-padded batch, the legacy path off (batched_fixed in generate_batch.json).
    B, T = len(prompts), max(p["length"] for p in prompts)
    input_ids = torch.full((B, T), pad, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    for i, p in enumerate(prompts):
        input_ids[i, T - p["length"]:] = torch.tensor(p["ids"])
        attention_mask[i, T - p["length"]:] = 1
    cfg.image_seq_length = 0
    with torch.no_grad():
        o = model.generate(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, **kw)
    cfg.image_seq_length = P
    for i, row in enumerate(rows):
        full = o[i, T:].tolist()
        new = cut(full, eos)
        assert new == row["new_single"], (name, i, new, row["new_single"])
        assert all(t == pad for t in full[len(new):]), (name, i, full)
        row["batched_row"] = full  # as generate returned it: pad ids after eos

    out = {"config": name,
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "safetensors": safetensors.__version__},
           "prompts_from": "generate_batch.json (ids, image) and generate_batch.safetensors (pixel_values)",
           "max_new_tokens": gb["max_new_tokens"], "pad": pad, "eos": eos,
           "eos_chosen_as": f"the {STOP_AT}th new token of prompt {k_eos} (its first {STOP_AT - 1} do not hold it)",
           "eos_prompt": k_eos, "prompts": rows}
    path = os.path.join(d, "generate_eos.json")
    c = lambda v: json.dumps(v, separators=(",", ":"))  # noqa: E731
    head = [f" {json.dumps(k)}: {c(v)}" for k, v in out.items() if k != "prompts"]
    body = ",\n".join("  " + c(r) for r in rows)
    with open(path, "w") as fh:
        fh.write("{\n" + ",\n".join(head) + ',\n "prompts": [\n' + body + "\n ]\n}\n")
    return out, path


def main():
    for k, v in mmg.PINNED.items():
        have = {"torch": torch.__version__, "transformers": transformers.__version__,
                "safetensors": safetensors.__version__}[k]
        if not have.startswith(v):
            print(f"WARNING: {k} {have} != pinned {v}; goldens will not be byte-identical", file=sys.stderr)
    mmg.set_determinism()
    for name in CONFIGS:
        out, path = run_config(name)
        stops = [(i, len(r["new_single"])) for i, r in enumerate(out["prompts"]) if r["stops_at_eos"]]
        print(f"{name:<8} eos {out['eos']:>3} (prompt {out['eos_prompt']}): rows stopping at eos (row, tokens) "
              f"{stops}  {os.path.relpath(path)} {os.path.getsize(path)} {md5(path)}")


if __name__ == "__main__":
    main()
