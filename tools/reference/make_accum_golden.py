#!/usr/bin/env python3
"""Golden step loss and gradient of LLaVA's loss normalisation under gradient accumulation.

LLaVA-1.5 trains with the Hugging Face Trainer (transformers 4.37.2) and accelerate: every micro-batch's loss is the
model's own loss (the mean cross-entropy over that micro-batch's target tokens), accelerate's backward divides it by
gradient_accumulation_steps, the gradients of the micro-batches add up, and DDP averages the ranks. So the step's
loss and gradient are those of the MEAN OF THE MICRO-BATCHES' TOKEN MEANS, not of one mean over the step's tokens.
llava.c's train.loss_normalization=llava promises exactly that (train/trainer.c, train_step_passes).

This script runs it in transformers + torch on the tiny64 golden model (tests/data/golden/model/tiny64, fp32, eager
attention; the vision tower frozen, projector + whole LM trainable as in stage 2) and its inputs.safetensors (3 rows,
6, 9 and 8 target tokens) split into 2 micro-batches with different target counts:

    micro-batch 0 = rows 0 and 1 (15 targets)     micro-batch 1 = row 2 (8 targets)

as Trainer.training_step does it (model(**micro).loss / 2, .backward(), twice). The step loss is the sum of the two
scaled losses (what Trainer logs), the gradient what .grad holds after both backwards. Then
clip_grad_norm_(trainable, inf) gives the gradient norm the way Trainer measures it.

The same in fp64 (model.double()): how far torch's fp32 result is from it justifies the test's tolerances
(tests/test_trajectory.c, test_llava_normalisation). Also recorded, to show the test can tell them apart: the loss
under other weightings (one mean over all 23 targets, i.e. the micro-batches weighted by their target counts; twice
the mean of means) and how far their gradients are from the golden one.

Written, under <out> (default tests/data/golden/trajectory/):
  accum.safetensors   loss F32 [1], grad_norm F64 [1], micro_loss F32 [2] (each micro-batch's token mean),
                      grad.<hf name> F32 (every trainable tensor's gradient, fp32 run)
  accum.json          the split, versions, the numbers above, the fp32-vs-fp64 drift, the other weightings

Run (from the repository root, CPU only, a few seconds):
    python tools/reference/make_accum_golden.py   (in a venv from tools/reference/requirements-model.txt)
"""

import argparse
import hashlib
import json
import os
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only; the goldens must not depend on a GPU
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402
import transformers  # noqa: E402
from transformers import LlavaForConditionalGeneration  # noqa: E402

PINNED = {"torch": "2.5.1", "transformers": "4.46.3", "safetensors": "0.4.5", "numpy": "2.1.3"}
MODEL = "tests/data/golden/model/tiny64"
MICRO_ROWS = ([0, 1], [2])  # rows of inputs.safetensors per micro-batch
GA = len(MICRO_ROWS)


def set_determinism():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)


def trainable(hf):  # TRAIN_PROJECTOR_LM
    return hf.startswith("multi_modal_projector.") or hf.startswith("language_model.")


def micro_inputs(inputs, rows, dtype):
    """The rows of the padded batch, with the pixel values of their images (one image per row that has image
    tokens, in row order, as the golden inputs are laid out)."""
    image_token = 298
    has_img = [bool((inputs["input_ids"][r] == image_token).any()) for r in range(inputs["input_ids"].shape[0])]
    img_of_row = {}
    for r in range(len(has_img)):
        if has_img[r]:
            img_of_row[r] = len(img_of_row)
    out = {k: inputs[k][rows] for k in ("input_ids", "attention_mask", "labels")}
    imgs = [img_of_row[r] for r in rows if has_img[r]]
    if imgs:
        out["pixel_values"] = inputs["pixel_values"][imgs].to(dtype)
    return out


def run(dtype):
    model = LlavaForConditionalGeneration.from_pretrained(os.path.join(MODEL, "model"), attn_implementation="eager",
                                                          torch_dtype=torch.float32)
    model = model.to(dtype).train()  # dropout is 0 everywhere, so train == eval numerically
    inputs = load_file(os.path.join(MODEL, "inputs.safetensors"))
    params = dict(model.named_parameters())
    names = [n for n in params if trainable(n)]
    for n, p in params.items():
        p.requires_grad_(trainable(n))
    n_targets, micro_loss, grads = [], [], []
    step_loss = 0.0
    for rows in MICRO_ROWS:
        mi = micro_inputs(inputs, rows, dtype)
        n_targets.append(int((mi["labels"][:, 1:] != -100).sum()))  # HF shifts labels left by one
        loss = model(**mi).loss  # the token mean over this micro-batch's targets
        micro_loss.append(float(loss))
        (loss / GA).backward()  # accelerate's backward divides by gradient_accumulation_steps
        step_loss += float(loss / GA)  # Trainer's tr_loss: the sum of the scaled losses
        grads.append({n: params[n].grad.detach().clone() for n in names})  # running sums after each micro-batch
    g = {n: params[n].grad.detach().clone() for n in names}
    norm = float(torch.nn.utils.clip_grad_norm_([params[n] for n in names], float("inf")))
    # Each micro-batch's own gradient (of its token mean), for the other weightings below.
    own = [{n: GA * grads[0][n] for n in names}, {n: GA * (grads[1][n] - grads[0][n]) for n in names}]
    return names, dict(loss=step_loss, micro_loss=micro_loss, n_targets=n_targets, grad=g, norm=norm, own=own)


def rel_l2(a, b, names):
    num = sum(float((a[n].double() - b[n].double()).square().sum()) for n in names)
    den = sum(float(b[n].double().square().sum()) for n in names)
    return (num / den) ** 0.5


def md5(path):
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "data", "golden", "trajectory"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.chdir(os.path.join(here, "..", ".."))
    have = {"torch": torch.__version__, "transformers": transformers.__version__,
            "safetensors": safetensors.__version__, "numpy": np.__version__}
    for k, v in PINNED.items():
        if not have[k].startswith(v):
            print(f"WARNING: {k} {have[k]} != pinned {v}; goldens will not be byte-identical", file=sys.stderr)
    set_determinism()
    names, a = run(torch.float32)
    names64, r = run(torch.float64)
    assert names == names64
    t = a["n_targets"]
    assert len(set(t)) == len(t), f"the micro-batches need different target counts: {t}"

    # Per-tensor drift of the fp32 gradient from the fp64 one, and overall.
    per_tensor = {n: rel_l2({n: a["grad"][n]}, {n: r["grad"][n]}, [n]) for n in names
                  if float(r["grad"][n].double().norm()) > 0}
    drift = dict(loss_rel=abs(a["loss"] - r["loss"]) / r["loss"], grad_norm_rel=abs(a["norm"] - r["norm"]) / r["norm"],
                 grad_rel_l2=rel_l2(a["grad"], r["grad"], names), grad_rel_l2_worst_tensor=max(per_tensor.values()),
                 grad_rel_l2_worst_tensor_name=max(per_tensor, key=per_tensor.get))

    # The weightings a bug could put in instead, in fp64: loss, and the rel L2 distance of the gradient from golden.
    L, own = r["micro_loss"], r["own"]
    total = sum(t)
    # One mean over the step's targets (global_tokens; under llava, micro-batches weighted by their target counts),
    # and the mean of means doubled.
    wrong = {"token_mean_over_step": [x / total for x in t], "twice_the_mean_of_means": [2.0 / GA] * GA}
    others = {}
    for key, w in wrong.items():
        gw = {n: sum(w[i] * own[i][n] for i in range(GA)) for n in names}
        others[key] = dict(weights=w, loss=sum(w[i] * L[i] for i in range(GA)),
                           loss_rel_from_golden=abs(sum(w[i] * L[i] for i in range(GA)) - r["loss"]) / r["loss"],
                           grad_rel_l2_from_golden=rel_l2(gw, r["grad"], names))

    os.makedirs(out, exist_ok=True)
    tensors = {"loss": torch.tensor([a["loss"]], dtype=torch.float32),
               "grad_norm": torch.tensor([a["norm"]], dtype=torch.float64),
               "micro_loss": torch.tensor(a["micro_loss"], dtype=torch.float32)}
    for n in names:
        tensors[f"grad.{n}"] = a["grad"][n].contiguous()
    tpath = os.path.join(out, "accum.safetensors")
    save_file(tensors, tpath, metadata={"format": "pt"})
    meta = dict(model=MODEL, micro_batches=[dict(rows=rows, n_targets=n) for rows, n in zip(MICRO_ROWS, t)],
                gradient_accumulation_steps=GA, world=1,
                normalisation="mean over micro-batches of each micro-batch's token-mean cross-entropy "
                              "(Trainer.training_step + accelerate backward / gradient_accumulation_steps)",
                versions=dict(have, python=sys.version.split()[0]),
                fp32=dict(loss=a["loss"], micro_loss=a["micro_loss"], grad_norm=a["norm"]),
                fp64=dict(loss=r["loss"], micro_loss=r["micro_loss"], grad_norm=r["norm"]),
                drift_fp32_vs_fp64=drift, other_weightings_fp64=others)
    mpath = os.path.join(out, "accum.json")
    with open(mpath, "w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")
    print(f"micro-batches {t} targets, token means {a['micro_loss']}, step loss {a['loss']:.9g}, "
          f"grad norm {a['norm']:.9g}")
    print("fp32 vs fp64:", json.dumps(drift))
    for k, v in others.items():
        print(f"  {k}: loss {v['loss']:.9g} (rel {v['loss_rel_from_golden']:.3g}), "
              f"grad rel L2 {v['grad_rel_l2_from_golden']:.3g}")
    for p in (tpath, mpath):
        print(f"  {os.path.relpath(p):<50} {os.path.getsize(p):>9}  {md5(p)}")


if __name__ == "__main__":
    main()
