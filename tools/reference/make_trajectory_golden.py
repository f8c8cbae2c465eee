#!/usr/bin/env python3
"""Golden training trajectory for llava.c: 10 AdamW steps of the tiny64 golden model, made with transformers + torch.

The model is tests/data/golden/model/tiny64 (LlavaForConditionalGeneration, fp32, eager attention), trained on its own
inputs.safetensors (the same batch every step) the way llava.c's stage 2 and the Hugging Face Trainer do it:

  * the vision tower frozen, the projector and the whole language model (embeddings and lm_head included) trainable;
  * loss = HF's loss (mean cross-entropy over the target tokens), then loss.backward();
  * torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM) (its return value, the norm before clipping, is logged);
  * torch.optim.AdamW (single-tensor path, as on the CPU by default) in two param groups, as LLaVA's trainer builds
    them: weight decay for every trainable tensor except those whose llava.c internal name (train/io/names.c) contains
    "bias" or "norm" (param_decays in train/optim.c); checked here against HF Trainer's own rule (LayerNorm and
    LlamaRMSNorm modules, and "bias");
  * then scheduler.step() of get_cosine_schedule_with_warmup(warmup 2, total 10): update k runs at
    lr * lambda(k - 1), so update 1 runs at lr 0 (llava.c's lr_at_update(c, k, 0)).

The same trajectory is run a second time in fp64 (model.double()): how far torch's own fp32 trajectory drifts from it,
per step and in the metrics tests/test_trajectory.c uses, is what justifies that test's tolerances. Written, under
<out> (default tests/data/golden/trajectory/):

  trajectory.safetensors
      loss       F32 [10]   loss computed before update k (k = 1..10), fp32 run
      grad_norm  F64 [10]   clip_grad_norm_'s return value before update k (an fp32 number)
      lr         F64 [10]   the lr update k used
      stats.<hf name>             F64 [10, 3]  per step k: max |p_k - p_0|, sum of p_k, ||p_k - p_0||_2 (fp64 sums
                                               of the fp32 values, in element order)
      params.step<k>.<hf name>    F32          every trainable tensor after update k, k in SNAPSHOT_STEPS
  meta.json  hyperparameters, versions, per-step numbers of both runs, which steps clipped, the fp32-vs-fp64 drift

p_0 is tiny64/model/model.safetensors. The parameters after update 1 (lr 0) equal p_0 bit for bit (checked here), so
that file is the step-1 snapshot and is not stored again.

Run (from the repository root, CPU only, a few seconds):
    python tools/reference/make_trajectory_golden.py   (in a venv from tools/reference/requirements-model.txt)
Pinned versions: tools/reference/requirements-model.txt.
"""

import argparse
import hashlib
import json
import math
import os
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only; the goldens must not depend on a GPU
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402
import transformers  # noqa: E402
from transformers import LlavaForConditionalGeneration, get_cosine_schedule_with_warmup  # noqa: E402
from transformers.pytorch_utils import ALL_LAYERNORM_LAYERS  # noqa: E402
from transformers.trainer_pt_utils import get_parameter_names  # noqa: E402

PINNED = {"torch": "2.5.1", "transformers": "4.46.3", "safetensors": "0.4.5", "numpy": "2.1.3"}

MODEL = "tests/data/golden/model/tiny64"
# Hyperparameters. lr 1e-3 moves every trainable weight by about lr per update (Adam on one repeated batch is close
# to sign descent), far above fp32 noise, and the loss still falls smoothly (6.38 -> ~1.7). weight_decay 0.1 makes
# the decay term 10% of an update for unit-size weights, so putting it on the wrong tensors shows. MAX_GRAD_NORM sits
# between the gradient norms of the early steps (clipped) and the late ones (not clipped), with a few % margin on
# both sides (the script checks the margin).
HP = dict(lr=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.999, eps=1e-8, warmup_steps=2, total_steps=10,
          max_grad_norm=3.6)
SNAPSHOT_STEPS = (2, 10)
CLIP_MARGIN = 0.01  # every grad norm at least 1% away from MAX_GRAD_NORM: the clip decision is not a coin toss


def set_determinism():
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_num_threads(1)  # one thread: the same reduction order on every machine this runs on (same ISA)
    torch.set_default_dtype(torch.float32)


# The prefix rules of train/io/names.c for the legacy llava-hf layout (the rest of the name is kept as it is).
NAME_RULES = (("language_model.model.", "lm.model."), ("language_model.lm_head.", "lm.lm_head."),
              ("vision_tower.vision_model.", "vision."), ("multi_modal_projector.", "projector."))


def internal_name(hf):
    for ext, internal in NAME_RULES:
        if hf.startswith(ext):
            return internal + hf[len(ext):]
    raise KeyError(hf)


def decays(hf):  # param_decays in train/optim.c
    n = internal_name(hf)
    return "bias" not in n and "norm" not in n


def trainable(hf):  # TRAIN_PROJECTOR_LM
    return hf.startswith("multi_modal_projector.") or hf.startswith("language_model.")


def run(dtype):
    """The 10 steps in `dtype`. Returns (names, p0, per-step records) with parameters kept in `dtype`."""
    model = LlavaForConditionalGeneration.from_pretrained(os.path.join(MODEL, "model"), attn_implementation="eager",
                                                          torch_dtype=torch.float32)
    model = model.to(dtype).train()  # dropout is 0 everywhere (attention_dropout 0.0), so train == eval numerically
    inputs = load_file(os.path.join(MODEL, "inputs.safetensors"))
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)

    params = dict(model.named_parameters())
    names = [n for n in params if trainable(n)]
    for n, p in params.items():
        p.requires_grad_(trainable(n))
    # HF Trainer's rule (get_decay_parameter_names): not inside a LayerNorm-like module, and no "bias" in the name.
    hf_decay = {n for n in get_parameter_names(model, ALL_LAYERNORM_LAYERS) if "bias" not in n}
    assert {n for n in names if decays(n)} == hf_decay & set(names), "llava.c's decay rule differs from HF Trainer's"
    groups = [{"params": [params[n] for n in names if decays(n)], "weight_decay": HP["weight_decay"]},
              {"params": [params[n] for n in names if not decays(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"], foreach=False)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=HP["warmup_steps"],
                                            num_training_steps=HP["total_steps"])
    p0 = {n: params[n].detach().clone() for n in names}
    recs = []
    for k in range(1, HP["total_steps"] + 1):
        lr = opt.param_groups[0]["lr"]
        assert all(g["lr"] == lr for g in opt.param_groups)
        loss = model(**inputs).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_([params[n] for n in names], HP["max_grad_norm"])
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        recs.append(dict(loss=float(loss), norm=float(norm), lr=float(lr),
                         clipped=bool(HP["max_grad_norm"] / (float(norm) + 1e-6) < 1.0),
                         p={n: params[n].detach().clone() for n in names}))
    return names, p0, recs


def stats(p, p0):
    """max |p - p0|, sum p, ||p - p0|| in fp64 (the differences of fp32 values are exact in fp64)."""
    d = p.double() - p0.double()
    return [float(d.abs().max()), float(p.double().sum()), float(d.norm())]


# ------------------------------------------------------------------------------------------------------------------
# The comparison tests/test_trajectory.c makes, applied here to torch fp32 (A) against torch fp64 (R). Per tensor:
#   norm_rel   | ||dA|| - ||dR|| | / ||dR||             (d = p_k - p_0; a flipped sign leaves it unchanged)
#   max_rel    | max|dA| - max|dR| | / max|dR|
#   mean_shift | sum pA - sum pR | / (sqrt(n) ||dR||)   (mean difference in units of the rms update)
# and on full snapshots, with S_k = sum of the lrs of updates 1..k (no weight moves further than about S_k):
#   outliers   elements with |pA - pR| > OUTLIER_FRAC * S_k, counted over all tensors
#   rel_l2     ||pA - pR|| / ||dR|| over the other elements
#   max_abs    max |pA - pR| / S_k over all elements
# ------------------------------------------------------------------------------------------------------------------
OUTLIER_FRAC = 1e-3


def compare(names, pA, p0A, pR, p0R, S):
    out = dict(norm_rel=0.0, max_rel=0.0, mean_shift=0.0, rel_l2=0.0, max_abs=0.0, outliers=0, worst={})

    def worse(key, val, n):
        if val > out[key]:
            out[key] = val
            out["worst"][key] = n

    for n in names:
        a, r = pA[n].double(), pR[n].double()
        dA, dR = a - p0A[n].double(), r - p0R[n].double()
        nR = float(dR.norm())
        if nR == 0:
            continue
        worse("norm_rel", abs(float(dA.norm()) - nR) / nR, n)
        worse("max_rel", abs(float(dA.abs().max()) - float(dR.abs().max())) / float(dR.abs().max()), n)
        worse("mean_shift", abs(float(a.sum()) - float(r.sum())) / (math.sqrt(a.numel()) * nR), n)
        diff = (a - r).abs()
        out_mask = diff > OUTLIER_FRAC * S
        out["outliers"] += int(out_mask.sum())
        worse("rel_l2", float(diff[~out_mask].norm()) / nR, n)
        worse("max_abs", float(diff.max()) / S, n)
    return out


def md5(path):
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "data", "golden", "trajectory"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.chdir(os.path.join(here, "..", ".."))  # MODEL is relative to the repository root
    have = {"torch": torch.__version__, "transformers": transformers.__version__,
            "safetensors": safetensors.__version__, "numpy": np.__version__}
    for k, v in PINNED.items():
        if not have[k].startswith(v):
            print(f"WARNING: {k} {have[k]} != pinned {v}; goldens will not be byte-identical", file=sys.stderr)
    set_determinism()

    names, p0, r32 = run(torch.float32)
    names64, p064, r64 = run(torch.float64)
    assert names == names64
    K = HP["total_steps"]

    # Update 1 runs at lr 0: decay factor 1 and a zero step, so nothing moves (the model file is the step-1 snapshot).
    assert r32[0]["lr"] == 0.0 and all(torch.equal(r32[0]["p"][n], p0[n]) for n in names)
    for r in (r32, r64):
        for rec in r:
            assert abs(rec["norm"] - HP["max_grad_norm"]) > CLIP_MARGIN * HP["max_grad_norm"], rec["norm"]
    clipped = [k + 1 for k in range(K) if r32[k]["clipped"]]
    assert clipped == [k + 1 for k in range(K) if r64[k]["clipped"]]
    assert 0 < len(clipped) < K, clipped

    # fp32 against fp64, step by step
    drift = []
    S = 0.0
    for k in range(K):
        S += r32[k]["lr"]
        a, b = r32[k], r64[k]
        row = dict(step=k + 1, loss_rel=abs(a["loss"] - b["loss"]) / b["loss"],
                   grad_norm_rel=abs(a["norm"] - b["norm"]) / b["norm"], lr_diff=abs(a["lr"] - b["lr"]))
        if S > 0:
            row.update(compare(names, a["p"], p0, b["p"], p064, S))
        drift.append(row)

    os.makedirs(out, exist_ok=True)
    tensors = {
        "loss": torch.tensor([r["loss"] for r in r32], dtype=torch.float32),
        "grad_norm": torch.tensor([r["norm"] for r in r32], dtype=torch.float64),
        "lr": torch.tensor([r["lr"] for r in r32], dtype=torch.float64),
    }
    for n in names:
        tensors[f"stats.{n}"] = torch.tensor([stats(r["p"][n], p0[n]) for r in r32], dtype=torch.float64)
        for k in SNAPSHOT_STEPS:
            tensors[f"params.step{k}.{n}"] = r32[k - 1]["p"][n].contiguous()
    tpath = os.path.join(out, "trajectory.safetensors")
    save_file(tensors, tpath, metadata={"format": "pt"})

    meta = dict(
        model=MODEL, hyperparameters=HP, schedule="get_cosine_schedule_with_warmup",
        snapshot_steps=list(SNAPSHOT_STEPS), step1_params_equal_model_file=True, outlier_frac=OUTLIER_FRAC,
        versions=dict(have, python=sys.version.split()[0]),
        trainable=[dict(name=n, internal=internal_name(n), numel=p0[n].numel(), decays=decays(n)) for n in names],
        clipped_steps=clipped,
        steps=[dict(step=k + 1, lr=r32[k]["lr"], loss_fp32=r32[k]["loss"], loss_fp64=r64[k]["loss"],
                    grad_norm_fp32=r32[k]["norm"], grad_norm_fp64=r64[k]["norm"], clipped=r32[k]["clipped"])
               for k in range(K)],
        drift_fp32_vs_fp64=drift,
        drift_fp32_vs_fp64_worst={key: max(d.get(key, 0) for d in drift)
                                  for key in ("loss_rel", "grad_norm_rel", "lr_diff", "norm_rel", "max_rel",
                                              "mean_shift", "rel_l2", "max_abs", "outliers")},
    )
    mpath = os.path.join(out, "meta.json")
    with open(mpath, "w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")

    print(f"{'k':>2} {'lr':>9} {'loss fp32':>10} {'grad norm':>9} clip | fp32 vs fp64: {'loss':>7} {'norm':>8} "
          f"{'norm_rel':>8} {'max_rel':>8} {'mean_sh':>8} {'rel_l2':>8} {'max_abs':>8} outl")
    for k in range(K):
        d = drift[k]
        line = (f"{k + 1:>2} {r32[k]['lr']:>9.3e} {r32[k]['loss']:>10.6f} {r32[k]['norm']:>9.5f} "
                f"{'yes' if r32[k]['clipped'] else ' no':>4} | {'':>13} {d['loss_rel']:>7.1e} "
                f"{d['grad_norm_rel']:>8.1e}")
        if "rel_l2" in d:
            line += (f" {d['norm_rel']:>8.1e} {d['max_rel']:>8.1e} {d['mean_shift']:>8.1e} {d['rel_l2']:>8.1e} "
                     f"{d['max_abs']:>8.1e} {d['outliers']:>4}")
        print(line)
    total = 0
    for p in (tpath, mpath):
        sz = os.path.getsize(p)
        total += sz
        print(f"  {os.path.relpath(p):<55} {sz:>9}  {md5(p)}")
    print(f"  total {total} bytes")


if __name__ == "__main__":
    main()
