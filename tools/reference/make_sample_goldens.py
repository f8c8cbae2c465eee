#!/usr/bin/env python3
"""Golden data for infer/sample.c: transformers 4.46.3's logits warpers for do_sample=True.

The warpers are not built here by hand: a GenerationConfig(do_sample=True, temperature, top_k, top_p) goes through
the golden tiny64 model's own GenerationMixin._get_logits_processor, the method generate() calls, so the list (and
its order: temperature, top-k, top-p, each only when it is not the identity) is transformers'. The script first checks
that this is the list generate() applies: a real model.language_model.generate(do_sample=True, output_logits=True,
output_scores=True) on tiny64, whose processed scores must equal the list applied to its raw logits, bit for bit.

Inputs are fixed fp32 logits: 6 rows of V=300 ("small") and one row of V=32000 ("big"):
  small row 0  N(0, 2^2)
  small row 1  N(0, 3.5^2)                     peaked
  small row 2  N(0, 0.5^2)                     flat: top-p keeps many tokens
  small row 3  round(N(0,1) * 4) / 2           exact ties everywhere (steps of 0.5), three tokens tied at the maximum
  small row 4  N(0, 1), token 137 = 25         one dominant logit (probability ~1)
  small row 5  N(0, 1.5^2), 20 tokens at -inf  tokens already masked
  big row      N(0, 2.5^2) rounded to bf16     LLaMA-sized vocabulary, with the ties bf16 logits have
The grid: small rows x temperature {0.5, 0.7, 1.0, 1.3} x top_k {0, 1, 5, 50, V+10} x top_p {1.0, 0.95, 0.5, 0.01}
(the full product, 480 cases); the big row x temperature {0.7, 1.0} x the same top_k and top_p (40 cases). top_k 0
and top_p 1.0 are "off" (no warper), temperature 1.0 too. temperature and top_p are passed to transformers as the
Python floats written here (decimals); a C caller holds them as fp32 (see infer/sample.c for how it recovers the
decimal of top_p; torch itself rounds the temperature to fp32).

Written to tests/data/golden/sample/warp.safetensors (see README.md there for every tensor).
Pinned versions: tools/reference/requirements-model.txt. Run from the repository root (CPU only, a few seconds):
    python tools/reference/make_sample_goldens.py
"""
import hashlib
import json
import os
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
import transformers  # noqa: E402
from transformers import GenerationConfig, LlavaForConditionalGeneration, LogitsProcessorList  # noqa: E402

PINNED = {"torch": "2.5.1", "transformers": "4.46.3", "safetensors": "0.4.5"}
MODEL = "tests/data/golden/model/tiny64/model"
OUT = "tests/data/golden/sample"
TEMPS = [0.5, 0.7, 1.0, 1.3]
BIG_TEMPS = [0.7, 1.0]
TOP_PS = [1.0, 0.95, 0.5, 0.01]


def set_determinism():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)


def processors(model, temperature, top_k, top_p):
    gc = GenerationConfig(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p)
    model._prepare_special_tokens(gc, kwargs_has_attention_mask=True, device="cpu")
    return model._get_logits_processor(generation_config=gc, input_ids_seq_length=1,
                                       encoder_input_ids=torch.zeros((1, 1), dtype=torch.long),
                                       prefix_allowed_tokens_fn=None, logits_processor=LogitsProcessorList(),
                                       device="cpu", model_kwargs={})


def check_against_generate(model):
    """The list _get_logits_processor builds is the one generate() applies (order included)."""
    lm = model.language_model
    ids = torch.tensor([[1, 17, 45, 203, 9, 77]])
    for (t, k, p) in [(0.7, 50, 0.9), (1.3, 5, 0.5), (0.5, 0, 0.95)]:
        torch.manual_seed(0)
        out = lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=t,
                          top_k=k, top_p=p, max_new_tokens=4, eos_token_id=2, pad_token_id=299, output_logits=True,
                          output_scores=True, return_dict_in_generate=True)
        procs = processors(lm, t, k, p)
        for s, (raw, warped) in enumerate(zip(out.logits, out.scores)):
            seq = out.sequences[:, :ids.shape[1] + s]
            assert torch.equal(procs(seq, raw.clone()), warped), (t, k, p, s)
    names = [type(x).__name__ for x in processors(lm, 0.7, 50, 0.9)]
    assert names == ["TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"], names
    assert len(processors(lm, 1.0, 0, 1.0)) == 0
    gc = GenerationConfig(do_sample=False)
    model._prepare_special_tokens(gc, kwargs_has_attention_mask=True, device="cpu")
    assert len(lm._get_logits_processor(gc, 1, None, None, LogitsProcessorList(), device="cpu", model_kwargs={})) == 0
    return names


def make_rows():
    g = torch.Generator().manual_seed(2024)
    V = 300
    rows = [2.0 * torch.randn(V, generator=g), 3.5 * torch.randn(V, generator=g), 0.5 * torch.randn(V, generator=g)]
    r3 = torch.round(torch.randn(V, generator=g) * 4) / 2
    top = float(r3.max())
    r3[[40, 41, 250]] = top  # three tokens tied at the maximum (one far from the other two)
    rows.append(r3)
    r4 = torch.randn(V, generator=g)
    r4[137] = 25.0
    rows.append(r4)
    r5 = 1.5 * torch.randn(V, generator=g)
    r5[torch.randperm(V, generator=g)[:20]] = -float("inf")
    rows.append(r5)
    small = torch.stack(rows).float()
    big = (2.5 * torch.randn(32000, generator=g)).to(torch.bfloat16).float().unsqueeze(0)
    return small, big


def f32_ulp(x):
    x = np.float32(abs(x))
    return float(np.nextafter(x, np.float32(np.inf)) - x)


def run_group(model, logits, temps):
    R, V = logits.shape
    scaled = []
    for t in temps:
        procs = processors(model, t, 0, 1.0)
        scaled.append(procs(torch.zeros((R, 1), dtype=torch.long), logits.clone()))
    scaled = torch.stack(scaled)
    cases = dict(row=[], t_index=[], temperature=[], top_k=[], top_p=[], keep=[], kept=[], tie_split=[])
    worst_margin = (float("inf"), None)
    for r in range(R):
        for ti, t in enumerate(temps):
            for k in [0, 1, 5, 50, V + 10]:
                for p in TOP_PS:
                    procs = processors(model, t, k, p)
                    out = procs(torch.zeros((1, 1), dtype=torch.long), logits[r:r + 1].clone())[0]
                    keep = out != -float("inf")
                    # the kept scores are exactly the temperature's scores (the filters only write -inf)
                    assert torch.equal(out[keep], scaled[ti, r][keep]), (r, t, k, p)
                    vmin = float(out[keep].min())
                    split = bool(((scaled[ti, r] == vmin) & ~keep).any())
                    if p < 1.0:  # how close transformers' own cumulative sums come to the threshold (fp32 steps)
                        after_k = processors(model, t, k, 1.0)(torch.zeros((1, 1), dtype=torch.long),
                                                               logits[r:r + 1].clone())[0]
                        cum = torch.sort(after_k)[0].softmax(-1).cumsum(-1).double().numpy()
                        thr = float(np.float32(1 - p))
                        m = float(np.min(np.abs(cum - thr))) / f32_ulp(thr)
                        if m < worst_margin[0]:
                            worst_margin = (m, dict(row=r, temperature=t, top_k=k, top_p=p))
                    cases["row"].append(r)
                    cases["t_index"].append(ti)
                    cases["temperature"].append(t)
                    cases["top_k"].append(k)
                    cases["top_p"].append(p)
                    cases["keep"].append(np.packbits(keep.numpy().astype(np.uint8)))
                    cases["kept"].append(int(keep.sum()))
                    cases["tie_split"].append(int(split))
    t = {
        "logits": logits.contiguous(),
        "temperatures": torch.tensor(temps, dtype=torch.float32),
        "scaled": scaled.contiguous(),
        "case_row": torch.tensor(cases["row"], dtype=torch.int32),
        "case_t_index": torch.tensor(cases["t_index"], dtype=torch.int32),
        "case_temperature": torch.tensor(cases["temperature"], dtype=torch.float32),
        "case_top_k": torch.tensor(cases["top_k"], dtype=torch.int32),
        "case_top_p": torch.tensor(cases["top_p"], dtype=torch.float32),
        "case_keep": torch.from_numpy(np.stack(cases["keep"])),
        "case_kept": torch.tensor(cases["kept"], dtype=torch.int32),
        "case_tie_split": torch.tensor(cases["tie_split"], dtype=torch.uint8),
    }
    return t, worst_margin


def main():
    for k, v in PINNED.items():
        have = {"torch": torch.__version__, "transformers": transformers.__version__,
                "safetensors": safetensors.__version__}[k]
        if not have.startswith(v):
            print(f"WARNING: {k} {have} != pinned {v}", file=sys.stderr)
    set_determinism()
    model = LlavaForConditionalGeneration.from_pretrained(MODEL, torch_dtype=torch.float32,
                                                          attn_implementation="eager").eval()
    names = check_against_generate(model)
    small, big = make_rows()
    ts, ms = run_group(model, small, TEMPS)
    tb, mb = run_group(model, big, BIG_TEMPS)
    tensors = {**{"small." + k: v for k, v in ts.items()}, **{"big." + k: v for k, v in tb.items()}}
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "warp.safetensors")
    save_file(tensors, path, metadata={"transformers": transformers.__version__, "torch": torch.__version__,
                                       "processors": ",".join(names)})
    with open(path, "rb") as fh:
        md5 = hashlib.md5(fh.read()).hexdigest()
    for name, t in (("small", ts), ("big", tb)):
        print(f"{name}: {len(t['case_row'])} cases, kept min/max {int(t['case_kept'].min())}/{int(t['case_kept'].max())},"
              f" tie splits {int(t['case_tie_split'].sum())}")
    print("closest cumsum to 1 - top_p, in fp32 steps of the threshold: small %.3g %s, big %.3g %s"
          % (ms[0], json.dumps(ms[1]), mb[0], json.dumps(mb[1])))
    print(f"{path} {os.path.getsize(path)} bytes md5 {md5}")


if __name__ == "__main__":
    main()
