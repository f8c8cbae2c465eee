"""Golden trajectories of torch.optim.AdamW and the Hugging Face cosine schedule.

Writes tests/data/optim/adamw.json: two parameter tensors (one in a weight-decay group, one not),
a fixed sequence of gradients and learning rates, and the parameters after every step, from
torch.optim.AdamW (fp32, CPU, default single-tensor path). Also the multipliers of
transformers.get_cosine_schedule_with_warmup / get_linear_schedule_with_warmup at the step counts
LLaVA-1.5's 8-GPU runs use (2181 steps, 66 warmup; 5198 steps, 156 warmup).

And tests/data/optim/adamw_eps.json: AdamW where eps matters. Gradients of magnitude 1e-9..1e-7
(log-uniform, random signs, two elements always 0) with eps 1e-8, so |g| / (|g| + eps) runs from
0.09 to 0.91 and every update depends on eps: without it each element would move by about lr
(0/0 for the zero-gradient ones), with eps inside the sqrt (sqrt(v + eps) ~ 1e-4) by about
lr * 1e-3. A file of its own so that adamw.json stays as first committed: regenerated on another
CPU, torch's fp32 results there can differ in the last bit (4 values of b did, by 1 ulp).
Pinned versions: tools/reference/requirements-model.txt. Run from the repository root:
    python tools/reference/make_optim_goldens.py
"""
import json
import pathlib

import torch
from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

OUT = pathlib.Path("tests/data/optim")


def schedule_multipliers(fn, warmup, total, steps):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = fn(opt, num_warmup_steps=warmup, num_training_steps=total)
    out = {}
    # LambdaLR evaluates lambda(last_epoch); the lr used by update k is the value after k-1 steps.
    for s in range(total + 1):
        if s in steps:
            out[s] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    return out


def eps_regime():
    """AdamW with |grad| around eps: 5 steps of torch.optim.AdamW on 48 fp32 weights."""
    g = torch.Generator().manual_seed(11)
    n, eps, wd = 48, 1e-8, 0.1
    p0 = torch.randn(n, generator=g) * 0.05
    p = torch.nn.Parameter(p0.clone())
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.999), eps=eps, weight_decay=wd)
    lrs = [1e-3, 1e-3, 5e-4, 1e-3, 2e-4]
    steps = []
    for lr in lrs:
        mag = 10.0 ** (-9.0 + 2.0 * torch.rand(n, generator=g))  # 1e-9 .. 1e-7
        sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        grad = (mag * sign).to(torch.float32)
        grad[0] = 0.0
        grad[n - 1] = 0.0
        p.grad = grad.clone()
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        steps.append({"lr": lr, "grad": grad.tolist(), "p": p.detach().tolist()})
    return {"p0": p0.tolist(), "betas": [0.9, 0.999], "eps": eps, "weight_decay": wd, "steps": steps,
            "torch": torch.__version__}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    a = torch.randn(37, generator=g)
    b = torch.randn(5, 3, generator=g) * 0.1
    pa = torch.nn.Parameter(a.clone())
    pb = torch.nn.Parameter(b.clone())
    opt = torch.optim.AdamW([{"params": [pa], "weight_decay": 0.1}, {"params": [pb], "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    lrs = [0.0, 3e-4, 1e-3, 7e-4, 2e-4, 1e-5]
    steps = []
    for lr in lrs:
        ga = torch.randn(37, generator=g) * 0.5
        gb = torch.randn(5, 3, generator=g) * 0.01
        pa.grad = ga.clone()
        pb.grad = gb.clone()
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        steps.append({"lr": lr, "grad_a": ga.tolist(), "grad_b": gb.flatten().tolist(),
                      "a": pa.detach().tolist(), "b": pb.detach().flatten().tolist()})
    # Gradient clipping as Trainer applies it (torch.nn.utils.clip_grad_norm_).
    ys = torch.randn(11, generator=g) * 3.0
    xc = torch.nn.Parameter(torch.zeros(11))
    xc.grad = ys.clone()
    n2 = torch.nn.utils.clip_grad_norm_([xc], max_norm=1.0)
    clip = {"grad_before": ys.tolist(), "grad_after": xc.grad.tolist(), "norm": float(n2), "max_norm": 1.0}

    pts = [0, 1, 22, 65, 66, 67, 1000, 2180, 2181]
    pts2 = [0, 1, 22, 155, 156, 157, 2600, 5197, 5198]
    sched = {
        "cosine_2181_66": schedule_multipliers(get_cosine_schedule_with_warmup, 66, 2181, set(pts)),
        "cosine_5198_156": schedule_multipliers(get_cosine_schedule_with_warmup, 156, 5198, set(pts2)),
        "linear_5198_156": schedule_multipliers(get_linear_schedule_with_warmup, 156, 5198, set(pts2)),
    }
    data = {"adamw": {"a0": a.tolist(), "b0": b.flatten().tolist(), "betas": [0.9, 0.999], "eps": 1e-8,
                      "weight_decay_a": 0.1, "weight_decay_b": 0.0, "steps": steps},
            "clip": clip, "schedules": sched, "torch": torch.__version__}
    (OUT / "adamw.json").write_text(json.dumps(data, indent=0) + "\n")
    print("wrote", OUT / "adamw.json")
    (OUT / "adamw_eps.json").write_text(json.dumps(eps_regime(), indent=0) + "\n")
    print("wrote", OUT / "adamw_eps.json")


if __name__ == "__main__":
    main()
