#!/usr/bin/env python3
"""Greedy generation goldens for the engine (one prompt alone, and many in one batch), by transformers 4.46.3.

For each of tiny64, tiny128 and tinygqa (a grouped-query model this script makes: 4 query heads sharing 2 key/value
heads of 32, written to tests/data/golden/model/tinygqa/model), six prompts of 3 to 46 tokens, three with one image
(the image's place is image_seq_length copies of image_token_index, as transformers' processor expands it) and three
text only, go through generate(do_sample=False, max_new_tokens=16, eos 2, pad = the model's pad id), fp32, eager:

  single          each prompt alone (batch of 1): LlavaForConditionalGeneration.generate for a prompt with an image,
                  its language_model.generate for a text-only one (4.46.3's LLaVA cannot start from input_ids that
                  hold no image tokens, see below). The script checks that the LLaVA model with its legacy path off
                  (image_seq_length 0) makes the same tokens with the same logits, bit for bit.
  batched         all six in ONE left-padded batch (pad id, attention_mask 0 on the padding), images of the image
                  rows in batch order, through LlavaForConditionalGeneration.generate as 4.46.3 ships it.
  batched_fixed   the same batch with the model's legacy path off (config.image_seq_length = 0, see below).

Why two batched runs: in 4.46.3 LlavaForConditionalGeneration.forward takes its "legacy" path whenever no row of
input_ids holds image_seq_length image tokens, which is every decoding step (one new token per row). For a step of one
token that path rebuilds the attention mask from the key cache (every cached position attended unless its first key
component sums to exactly 0 over the heads) and sets position_ids = (cache length + 1) - 1 for every row. So from the
second new token on, a left-padded row attends to its padding and is placed as if the padding were text: the padded
rows' answers change. With image_seq_length 0 the legacy test is always false (4.47 removed the path), the mask stays
transformers' and the position ids come from LlamaForCausalLM.prepare_inputs_for_generation (cumsum of the mask - 1,
1 on padding), and every row gives its single answer. The prefill step is the same in both (not legacy: the image
rows hold image_seq_length image tokens).

Written per model, beside its model folder: generate_batch.json (prompts, new ids, logit gaps, and for two prompts
every step's logits of the single run) and generate_batch.safetensors (pixel_values of the image prompts). For
tinygqa also inputs.safetensors and outputs.safetensors (logits and loss of make_model_goldens.py's three training
rows; no gradients), so `llava forward` can be checked on it. See tests/data/golden/model/README.md.
Pinned versions: tools/reference/requirements-model.txt. Run from the repository root (CPU only, about a minute):
    python tools/reference/make_generate_batch_golden.py
"""
import hashlib
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_goldens as mmg  # noqa: E402  (sets CUDA_VISIBLE_DEVICES="" before torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
import transformers  # noqa: E402
from transformers import LlavaForConditionalGeneration  # noqa: E402

ROOT = "tests/data/golden/model"
CONFIGS = ["tiny64", "tiny128", "tinygqa"]
MAX_NEW = 16
EOS = 2
STEP_LOGIT_PROMPTS = [2, 3]  # the 40-token text prompt and the prompt with its image in the middle

# The GQA model: the tiny64 vision style (CLIP, quick_gelu, layer -2, 16x16 images in 4x4 patches, the last layer
# unused) at width 64 to stay small, and an LM whose 4 query heads share 2 key/value heads of 32.
TINYGQA = dict(
    seed=32,
    text=dict(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, intermediate_size=64,
              vocab_size=310),
    vision=dict(hidden_size=64, num_attention_heads=1, num_hidden_layers=3, intermediate_size=64, image_size=16,
                patch_size=4),
    rows=dict(a=9, b=13, c1=3, c2=8),
)


def md5(path):
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()


def f32(x):
    """The shortest decimal of an fp32 value (it reads back to the same fp32)."""
    return float(str(np.float32(x)))


def make_tinygqa():
    c = TINYGQA
    torch.manual_seed(c["seed"])
    cfg, image_token, pad_token, P = mmg.build_config(c)
    model = LlavaForConditionalGeneration._from_config(cfg, attn_implementation="eager", torch_dtype=torch.float32)
    model = model.float().eval()
    mmg.init_weights(model, c["seed"])
    d = os.path.join(ROOT, "tinygqa")
    if os.path.isdir(os.path.join(d, "model")):
        shutil.rmtree(os.path.join(d, "model"))
    model.save_pretrained(os.path.join(d, "model"), safe_serialization=True)
    inputs, lens = mmg.build_inputs(c, cfg, image_token, pad_token, P, c["seed"])
    save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(d, "inputs.safetensors"))
    re = LlavaForConditionalGeneration.from_pretrained(os.path.join(d, "model"), attn_implementation="eager",
                                                       torch_dtype=torch.float32).eval()
    with torch.no_grad():
        out = model(**inputs)
        out2 = re(**inputs)
    assert torch.equal(out.logits, out2.logits) and torch.equal(out.loss, out2.loss)
    save_file({"logits": out.logits.contiguous(), "loss": out.loss.reshape(()).contiguous()},
              os.path.join(d, "outputs.safetensors"))
    print(f"tinygqa: rows {lens}, loss {float(out.loss):.7f}, attention classes "
          f"{sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith('Attention')})}")
    return float(out.loss)


def make_prompts(name, V, image_token, P, seed):
    g = torch.Generator().manual_seed(seed + 7)

    def text(n):  # ordinary ids: not BOS/EOS (1, 2), not the image token (V-2), not pad (V-1)
        return torch.randint(3, V - 2, (n,), generator=g).tolist()

    img = [image_token] * P
    prompts = [
        ([1] + text(2), False),                              # 3 tokens, text only
        ([1] + img + text(5), True),                         # image right after BOS
        ([1] + text(39), False),                             # 40 tokens, text only
        ([1] + text(4) + img + text(9), True),               # image in the middle
        ([1] + text(11), False),                             # 12 tokens, text only
        ([1] + text(2) + img + text(18), True),              # image, then a longer text
    ]
    lens = [len(p) for p, _ in prompts]
    assert len(set(lens)) == len(lens), lens
    return prompts


def gaps_of(logits_steps, row):
    out = []
    for s in logits_steps:
        top = torch.topk(s[row], 2).values
        out.append(float(top[0] - top[1]))
    return out


def cut(new):
    """A batched row's new ids up to its eos (included); generate pads the rows that ended."""
    out = []
    for t in new:
        out.append(t)
        if t == EOS:
            break
    return out


def dumps(out):
    """JSON with one line per key, per prompt and per step of logits (readable diffs, no line per number)."""
    c = lambda v: json.dumps(v, separators=(",", ":"))  # noqa: E731
    rows = []
    for r in out["prompts"]:
        parts = [f"{json.dumps(k)}:{c(v)}" for k, v in r.items() if k != "step_logits"]
        if "step_logits" in r:
            parts.append('"step_logits":[\n    ' + ",\n    ".join(c(s) for s in r["step_logits"]) + "]")
        rows.append("  {" + ", ".join(parts) + "}")
    head = [f" {json.dumps(k)}: {c(v)}" for k, v in out.items() if k != "prompts"]
    return "{\n" + ",\n".join(head) + ',\n "prompts": [\n' + ",\n".join(rows) + "\n ]\n}\n"


def run_config(name):
    d = os.path.join(ROOT, name)
    model = LlavaForConditionalGeneration.from_pretrained(os.path.join(d, "model"), torch_dtype=torch.float32,
                                                          attn_implementation="eager").eval()
    cfg = model.config
    V, image_token, pad = cfg.text_config.vocab_size, cfg.image_token_index, cfg.pad_token_id
    P = cfg.image_seq_length
    H = cfg.vision_config.image_size
    seed = {"tiny64": 64, "tiny128": 128, "tinygqa": 32}[name]
    prompts = make_prompts(name, V, image_token, P, seed)
    n_img = sum(1 for _, has in prompts if has)
    gpix = torch.Generator().manual_seed(seed + 11)
    pixel_values = torch.randn((n_img, 3, H, H), generator=gpix)
    kw = dict(do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=pad, output_logits=True,
              return_dict_in_generate=True)

    rows, img_index = [], 0
    for i, (ids, has) in enumerate(prompts):
        x = torch.tensor([ids])
        pix = pixel_values[img_index:img_index + 1] if has else None
        with torch.no_grad():
            if has:
                o = model.generate(input_ids=x, attention_mask=torch.ones_like(x), pixel_values=pix, **kw)
            else:
                o = model.language_model.generate(input_ids=x, attention_mask=torch.ones_like(x), **kw)
            # the same prompt through the LLaVA model with its legacy path off: the same tokens and logits
            cfg.image_seq_length = 0
            o2 = model.generate(input_ids=x, attention_mask=torch.ones_like(x), pixel_values=pix, **kw)
            cfg.image_seq_length = P
        new = o.sequences[0, len(ids):].tolist()
        assert o2.sequences[0, len(ids):].tolist() == new, (name, i)
        assert all(torch.equal(a, b) for a, b in zip(o.logits, o2.logits)), (name, i)
        gaps = gaps_of(o.logits, 0)
        row = {"ids": ids, "length": len(ids), "image": img_index if has else -1, "new_single": new,
               "single_top2_gap": [f32(g) for g in gaps], "single_min_top2_gap": f32(min(gaps))}
        if i in STEP_LOGIT_PROMPTS:
            row["step_logits"] = [[f32(v) for v in s[0].tolist()] for s in o.logits]
        row["_logits"] = [s[0] for s in o.logits]
        rows.append(row)
        img_index += has

    # one left-padded batch of all prompts
    B, T = len(prompts), max(len(p) for p, _ in prompts)
    input_ids = torch.full((B, T), pad, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    for i, (ids, _) in enumerate(prompts):
        input_ids[i, T - len(ids):] = torch.tensor(ids)
        attention_mask[i, T - len(ids):] = 1
    results = {}
    for key, isl in (("batched", P), ("batched_fixed", 0)):
        cfg.image_seq_length = isl
        with torch.no_grad():
            o = model.generate(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, **kw)
        cfg.image_seq_length = P
        results[key] = o
    for i, row in enumerate(rows):
        for key, o in results.items():
            new = cut(o.sequences[i, T:].tolist())
            row["new_" + key] = new
            row[key + "_same_as_single"] = new == row["new_single"]
            gaps = gaps_of(o.logits[:len(new)], i)
            row[key + "_min_top2_gap"] = f32(min(gaps))
            # logits of the steps before the first differing token (the same inputs so far)
            agree = 0
            while agree < min(len(new), len(row["new_single"])) and new[agree] == row["new_single"][agree]:
                agree += 1
            n = min(agree + 1, len(new), len(row["_logits"]))
            diff = max(float((o.logits[s][i] - row["_logits"][s]).abs().max()) for s in range(n))
            row[key + "_max_abs_logit_diff"] = f32(diff)
            row[key + "_steps_compared"] = n
    for row in rows:
        del row["_logits"]

    out = {
        "config": name,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "safetensors": safetensors.__version__},
        "max_new_tokens": MAX_NEW, "eos": EOS, "pad": pad, "bos": 1, "image_token": image_token,
        "image_seq_length": P, "vocab_size": V,
        "pixel_values": {"file": "generate_batch.safetensors", "tensor": "pixel_values",
                         "shape": list(pixel_values.shape)},
        "batch": {"T": T, "padding": "left", "pad_id": pad,
                  "attention_mask": "1 on each prompt's tokens (the last length of its T), 0 on the padding",
                  "position_ids": "prefill: cumsum(attention_mask) - 1, 1 on padding (LlamaForCausalLM."
                                  "prepare_inputs_for_generation); decoding: batched_fixed the same rule, batched "
                                  "(4.46.3's legacy path) the cache length for every row",
                  "order": list(range(len(rows)))},
        "step_logits_prompts": STEP_LOGIT_PROMPTS,
        "prompts": rows,
    }
    save_file({"pixel_values": pixel_values.contiguous()}, os.path.join(d, "generate_batch.safetensors"))
    with open(os.path.join(d, "generate_batch.json"), "w") as fh:
        fh.write(dumps(out))
    return out


def main():
    for k, v in mmg.PINNED.items():
        have = {"torch": torch.__version__, "transformers": transformers.__version__,
                "safetensors": safetensors.__version__}[k]
        if not have.startswith(v):
            print(f"WARNING: {k} {have} != pinned {v}; goldens will not be byte-identical", file=sys.stderr)
    mmg.set_determinism()
    make_tinygqa()
    print(f"{'config':<8} {'#':>2} {'len':>3} {'img':>3} {'min gap':>9} {'batched=single':>14} {'fixed=single':>12} "
          f"{'fixed dlogit':>12} {'new (single)'}")
    for name in CONFIGS:
        out = run_config(name)
        for i, r in enumerate(out["prompts"]):
            print(f"{name:<8} {i:>2} {r['length']:>3} {r['image']:>3} {r['single_min_top2_gap']:>9.3g} "
                  f"{str(r['batched_same_as_single']):>14} {str(r['batched_fixed_same_as_single']):>12} "
                  f"{r['batched_fixed_max_abs_logit_diff']:>12.2e} {r['new_single']}")
    print()
    for name in CONFIGS:
        d = os.path.join(ROOT, name)
        for dp, _, fns in sorted(os.walk(d)):
            for fn in sorted(fns):
                p = os.path.join(dp, fn)
                if name != "tinygqa" and not fn.startswith("generate_batch"):
                    continue
                print(f"  {os.path.relpath(p, ROOT):<40} {os.path.getsize(p):>9}  {md5(p)}")


if __name__ == "__main__":
    main()
