#!/usr/bin/env python3
"""Golden data for llava.c's LoRA adapters, made with Hugging Face PEFT + transformers.

The base model is tests/data/golden/model/tiny64 (LlavaForConditionalGeneration, fp32, eager attention; LM: LLaMA
hidden 128, 2 layers, 2 heads, intermediate 100, vocab 300; projector mlp2x_gelu), run on its own inputs.safetensors.
Adapters go on the LANGUAGE MODEL's linears only (a regex target_modules: the llava-hf vision tower has q_proj/k_proj/
v_proj too). PEFT initialises lora_B to zero, which would make every lora_A gradient zero, so after get_peft_model every
lora_B is set to seeded N(0, 0.02^2) values, and the projector's modules_to_save copy gets seeded N(0, 0.02^2) noise
added, so that the adapter differs from the base everywhere. lora_A keeps PEFT's own init (kaiming_uniform a=sqrt(5):
U(-1/sqrt(in), 1/sqrt(in)), checked). Cases (CASES below), each written under <out>/<case>/ (default
tests/data/golden/lora/):

  r4            r=4, lora_alpha=8, q/k/v/o/gate/up/down of the LM, modules_to_save=["multi_modal_projector"]
  r8_rslora_qv  r=8, lora_alpha=16, use_rslora (scaling alpha/sqrt(r)), q_proj and v_proj of the LM, no projector
  r4_dora       the r4 config with use_dora=True (same seed: the same A, B and projector as r4)

  adapter/              what peft_model.save_pretrained writes (adapter_config.json, adapter_model.safetensors,
                        README.md); the tensors are the adapter as the forward below used it
  outputs.safetensors   logits F32 [B,T,V] and loss F32 [] of model.train() (every dropout 0) with labels;
                        grad.<key> F32 for every trainable tensor, <key> EXACTLY its key in adapter_model.safetensors;
                        merged_logits F32 [B,T,V] of peft_model.merge_and_unload() on the same inputs (eval mode)
  merged/               (with write_merged_dir, off: 2.4 MB) the merged model, save_pretrained(safe_serialization=True)
  meta.json             versions, config, tensor names and shapes, loss, the checks below with their numbers, the
                        naming facts (key prefixes) and, from PEFT's source, where dropout and scaling are applied

Checks (printed, and recorded in meta.json):
  * only language_model linears are adapted (the expected list of modules, none in the vision tower or projector);
  * max|A| <= 1/sqrt(in) for every lora_A as PEFT made it; every lora_B was zero before we set it;
  * the gradients' keys (mapped with PEFT's own get_peft_model_state_dict) are exactly the adapter file's keys, and
    every gradient is nonzero;
  * PeftModel.from_pretrained(fresh base, adapter/) reproduces logits and loss (max abs diff, bitwise flag);
  * an independent re-statement (plain transformers model, our own wrapper y = x W^T + s B(A x), DoRA:
    y = m/||W + s B A||_row (detached) * (W + s B A) x, projector replaced from the adapter file) reproduces PEFT's
    logits, loss and gradients; for DoRA also how much the gradients would differ without the detach;
  * merge_and_unload gives the unmerged logits up to fp32 rounding (max abs diff), and merged/ reloads bit for bit.

Run (from the repository root, CPU only, about half a minute):
    python tools/reference/make_lora_goldens.py   (in a venv from tools/reference/requirements-lora.txt)
Options: --out DIR (default tests/data/golden/lora), --cases r4,r8_rslora_qv,r4_dora.
Pinned versions: tools/reference/requirements-lora.txt (torch 2.5.1, transformers 4.46.3, safetensors 0.4.5,
numpy 2.1.3, peft 0.13.2).
"""

import argparse
import hashlib
import inspect
import json
import math
import os
import shutil
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only; the goldens must not depend on a GPU
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # PEFT's save_pretrained may ask the hub about base_model_name_or_path

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import safetensors  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402
import transformers  # noqa: E402
from transformers import LlavaForConditionalGeneration  # noqa: E402
import peft  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict  # noqa: E402
from peft.tuners.lora import layer as lora_layer  # noqa: E402
from peft.tuners.lora import dora as lora_dora  # noqa: E402

PINNED = {"torch": "2.5.1", "transformers": "4.46.3", "safetensors": "0.4.5", "numpy": "2.1.3", "peft": "0.13.2"}

BASE = "tests/data/golden/model/tiny64"  # relative to the repository root (it becomes base_model_name_or_path)
BASE_MODEL = BASE + "/model"

LM_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
# target_modules as a regex string: PEFT re.fullmatch-es it against each module's full name in
# LlavaForConditionalGeneration (4.46.3 layout: language_model.model.layers.<i>...). A list of short names
# (["q_proj", ...], what LLaVA's find_all_linear_names returns) would also hit vision_tower's q_proj/k_proj/v_proj.
# A regex string is also saved verbatim, while a list is turned into a set and saved in hash order (not byte-stable).
TARGET_ALL = r"language_model\.model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
TARGET_QV = r"language_model\.model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"

CASES = {
    "r4": dict(seed=4004, lora=dict(r=4, lora_alpha=8, target_modules=TARGET_ALL,
                                    modules_to_save=["multi_modal_projector"]),
               expect=LM_LINEARS, write_merged_dir=False),
    "r8_rslora_qv": dict(seed=8008, lora=dict(r=8, lora_alpha=16, use_rslora=True, target_modules=TARGET_QV),
                         expect=("self_attn.q_proj", "self_attn.v_proj"), write_merged_dir=False),
    "r4_dora": dict(seed=4004, lora=dict(r=4, lora_alpha=8, use_dora=True, target_modules=TARGET_ALL,
                                         modules_to_save=["multi_modal_projector"]),
                    expect=LM_LINEARS, write_merged_dir=False),
}
COMMON = dict(lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
B_STD = 0.02          # lora_B ~ N(0, B_STD^2) after get_peft_model
PROJ_NOISE_STD = 0.02  # added to every tensor of the projector's modules_to_save copy
KEY_PREFIX = "base_model.model."

TASK_TYPE_REASON = (
    "task_type='CAUSAL_LM', as LLaVA's train.py sets it. get_peft_model then returns PeftModelForCausalLM and "
    "PeftModel.from_pretrained(LlavaForConditionalGeneration, adapter/) picks the same class from adapter_config.json; "
    "its forward passes pixel_values through **kwargs to LlavaForConditionalGeneration.forward. task_type=None "
    "(plain PeftModel) was checked on r4 to give the same adapter keys, tensors and logits bit for bit, so the choice "
    "does not change the golden; the key prefix is 'base_model.model.' either way.")

DROPOUT_FACTS = dict(
    where=("lora_dropout is applied to the layer input x before lora_A: result = base_layer(x) + "
           "lora_B(lora_A(dropout(x))) * scaling (peft/tuners/lora/layer.py, Linear.forward). The base path "
           "base_layer(x) sees the undropped x."),
    modules=("update_layer creates one nn.Dropout(p=lora_dropout) per adapted module and adapter "
             "(self.lora_dropout[adapter_name]; nn.Identity when lora_dropout == 0), so every adapted linear draws "
             "its own mask on each call: q_proj, k_proj and v_proj share the same input (the normed hidden state) but "
             "each draws an independent mask (in call order q, k, v, o, gate, up, down per layer for LLaMA)."),
    mask=("nn.Dropout: in train mode each element kept with probability 1-p and scaled by 1/(1-p); identity in eval "
          "mode. The mask has the shape of x ([B,T,in]) and comes from torch's global RNG."),
    dora=("with use_dora, x = dropout(x) is applied first and the DoRA term is computed from the dropped x: "
          "result = base_layer(x_orig) + (m/||W+sBA||_row - 1) * (x_drop W^T) + (m/||W+sBA||_row) * s*B(A x_drop); "
          "with p=0 this equals m/||W+sBA||_row * (W + s B A) x (+ bias)."),
)
SCALING_FACTS = dict(
    normal="scaling = lora_alpha / r (update_layer; a Python float)",
    rslora="scaling = lora_alpha / math.sqrt(r) when use_rslora (update_layer; a Python float)",
    applied=("lora_B(lora_A(x)) * scaling: an fp32 tensor times a Python float, i.e. the scaling is rounded to fp32 "
             "and the product is an fp32 multiply (checked by this script: x*s == x*float32(s) bitwise, != "
             "float32(double(x)*s)); merge uses get_delta_weight = (B @ A) * scaling, W += delta"),
)
DORA_FACTS = dict(
    magnitude=("lora_magnitude_vector (one value per output feature, shape [out]) is initialised in dora_init as "
               "torch.linalg.norm(W + scaling * (B @ A), dim=1) on W [out, in], i.e. the L2 norm of each OUTPUT row "
               "over the input dimension (DoraLinearLayer.get_weight_norm; fan_in_fan_out False). PEFT calls it "
               "while B is still zero, so m starts as ||W||_row; this golden then sets B randomly, so m != "
               "||W + s B A||_row here (m/norm != 1: the test sees the ratio)."),
    forward=("DoraLinearLayer.forward: lora_weight = lora_B(lora_A(eye(in))).T.detach(); "
             "weight_norm = ||W + scaling*lora_weight||_row, then weight_norm = weight_norm.detach() (DoRA paper "
             "section 4.3: the norm is treated as a constant, no gradient flows through it); "
             "result += (m/weight_norm - 1) * F.linear(x, W) + (m/weight_norm) * lora_B(lora_A(x)) * scaling."),
    norm_detached_in_backward=True,
    merge=("merge: weight_norm = ||W + delta||_row (delta = scaling * B @ A), W <- (m/weight_norm)[:,None] * "
           "(W + delta)"),
    saved_key=("the magnitude's parameter is ...lora_magnitude_vector.default.weight in the module; "
               "get_peft_model_state_dict strips '.weight' and the adapter name, so the file key is "
               "...<linear>.lora_magnitude_vector (no .weight)"),
)


def set_determinism():
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_num_threads(1)  # one thread: the same reduction order on every machine this runs on (same ISA)
    torch.set_default_dtype(torch.float32)


def load_base():
    m = LlavaForConditionalGeneration.from_pretrained(BASE_MODEL, attn_implementation="eager",
                                                      torch_dtype=torch.float32)
    return m.float()


def md5(path):
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()


def maxdiff(a, b):
    return float((a.double() - b.double()).abs().max())


def rel(a, b):
    return float((a.double() - b.double()).norm() / max(float(b.double().norm()), 1e-300))


def adapted_modules(peft_model):
    """{module name relative to LlavaForConditionalGeneration: LoraLayer} of every adapted module."""
    out = {}
    for n, m in peft_model.named_modules():
        if isinstance(m, lora_layer.LoraLayer):
            assert n.startswith(KEY_PREFIX), n
            out[n[len(KEY_PREFIX):]] = m
    return out


# ------------------------------------------------------------------------------------------------------------------
# Independent re-statement of the adapted forward (no PEFT): used only for checking.
# ------------------------------------------------------------------------------------------------------------------
class RefLora(torch.nn.Module):
    def __init__(self, base, A, B, scaling, magnitude=None, detach_norm=True):
        super().__init__()
        self.base = base
        self.A = torch.nn.Parameter(A.clone())
        self.B = torch.nn.Parameter(B.clone())
        self.m = None if magnitude is None else torch.nn.Parameter(magnitude.clone())
        self.s = scaling
        self.detach_norm = detach_norm

    def forward(self, x):
        W = self.base.weight
        y = F.linear(x, W)
        lo = F.linear(F.linear(x, self.A), self.B) * self.s
        if self.m is None:
            out = y + lo
        else:
            Wp = W + self.s * (self.B @ self.A)
            n = torch.linalg.norm(Wp.detach() if self.detach_norm else Wp, dim=1)
            out = (self.m / n)[None] * (y + lo)
        if self.base.bias is not None:
            out = out + self.base.bias
        return out


def ref_model(adapter, scaling, modules, dora, detach_norm=True):
    """A fresh base model with our own LoRA wrappers, weights from the adapter file; returns (model, {key: param})."""
    model = load_base()
    for p in model.parameters():
        p.requires_grad_(False)
    params = {}
    for name in modules:
        parent_name, child = name.rsplit(".", 1)
        parent = model.get_submodule(parent_name)
        k = KEY_PREFIX + name
        mag = adapter[k + ".lora_magnitude_vector"] if dora else None
        w = RefLora(getattr(parent, child), adapter[k + ".lora_A.weight"], adapter[k + ".lora_B.weight"], scaling,
                    mag, detach_norm)
        setattr(parent, child, w)
        params[k + ".lora_A.weight"] = w.A
        params[k + ".lora_B.weight"] = w.B
        if dora:
            params[k + ".lora_magnitude_vector"] = w.m
    sd = dict(model.named_parameters())
    for k, v in adapter.items():
        if ".lora_" in k:
            continue
        hf = k[len(KEY_PREFIX):]
        assert hf.startswith("multi_modal_projector."), k
        with torch.no_grad():
            sd[hf].copy_(v)
        sd[hf].requires_grad_(True)
        params[k] = sd[hf]
    return model, params


def ref_merge(adapter, scaling, modules, dora):
    """Base state dict with the adapter merged our way: W + s B A (DoRA: m/||W + s B A||_row * (W + s B A))."""
    sd = {k: v.clone() for k, v in load_base().state_dict().items()}
    for name in modules:
        k = KEY_PREFIX + name
        W = sd[name + ".weight"]
        Wp = W + scaling * (adapter[k + ".lora_B.weight"] @ adapter[k + ".lora_A.weight"])
        if dora:
            Wp = (adapter[k + ".lora_magnitude_vector"] / torch.linalg.norm(Wp, dim=1))[:, None] * Wp
        sd[name + ".weight"] = Wp
    for k, v in adapter.items():
        if ".lora_" not in k:
            sd[k[len(KEY_PREFIX):]] = v.clone()
    return sd


def forward_backward(model, inputs, params):
    for p in params.values():
        p.grad = None
    out = model(**inputs)
    out.loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in params.items()}
    for p in params.values():
        p.grad = None
    return out.logits.detach().clone(), out.loss.detach().clone(), grads


def build_peft(case, task_type):
    """Base model -> get_peft_model -> seeded B and projector noise. Returns (peft_model, init facts)."""
    c = CASES[case]
    base = load_base()
    cfg = LoraConfig(**{**COMMON, "task_type": task_type, **c["lora"]})
    torch.manual_seed(c["seed"])  # PEFT's kaiming_uniform_ init of lora_A draws from the global RNG
    pm = get_peft_model(base, cfg)
    mods = adapted_modules(pm)
    init = dict(lora_A=[], lora_B_all_zero_before=True, dora_magnitude_init_max_rel_diff_to_row_norm_W=None)
    g = torch.Generator().manual_seed(c["seed"] + 1)
    worst_mag = 0.0
    with torch.no_grad():
        for name in sorted(mods):
            m = mods[name]
            A = m.lora_A["default"].weight
            B = m.lora_B["default"].weight
            fan_in = A.shape[1]
            bound = 1.0 / math.sqrt(fan_in)
            init["lora_A"].append(dict(module=name, shape=list(A.shape), max_abs=float(A.abs().max()),
                                       bound_1_over_sqrt_in=bound, within_bound=bool(float(A.abs().max()) <= bound)))
            assert float(A.abs().max()) <= bound, (name, float(A.abs().max()), bound)
            init["lora_B_all_zero_before"] &= bool((B == 0).all())
            if m.use_dora["default"]:
                W = m.get_base_layer().weight
                mag = m.lora_magnitude_vector["default"].weight
                worst_mag = max(worst_mag, float(((mag - torch.linalg.norm(W, dim=1)).abs()
                                                  / torch.linalg.norm(W, dim=1)).max()))
            B.copy_(B_STD * torch.randn(B.shape, generator=g))
        assert init["lora_B_all_zero_before"]
        if any(m.use_dora["default"] for m in mods.values()):
            init["dora_magnitude_init_max_rel_diff_to_row_norm_W"] = worst_mag
            assert worst_mag < 1e-6, worst_mag
        if init["dora_magnitude_init_max_rel_diff_to_row_norm_W"] is not None:
            ratio = 0.0
            for m in mods.values():
                W, A, B = m.get_base_layer().weight, m.lora_A["default"].weight, m.lora_B["default"].weight
                n = torch.linalg.norm(W + m.scaling["default"] * (B @ A), dim=1)
                ratio = max(ratio, float((m.lora_magnitude_vector["default"].weight / n - 1).abs().max()))
            init["dora_max_abs_m_over_norm_minus_1_after_random_B"] = ratio
        if "modules_to_save" in c["lora"]:
            wrapper = pm.base_model.model.multi_modal_projector
            copy = wrapper.modules_to_save["default"]
            for n, p in sorted(copy.named_parameters()):
                p.add_(PROJ_NOISE_STD * torch.randn(p.shape, generator=g))
            orig = dict(wrapper.original_module.named_parameters())
            init["projector_copy_max_abs_diff_to_base"] = max(maxdiff(p, orig[n]) for n, p in copy.named_parameters())
    return pm, mods, init


def run_case(case, out_root, inputs):
    c = CASES[case]
    d = os.path.join(out_root, case)
    if os.path.isdir(d):
        shutil.rmtree(d)
    adir = os.path.join(d, "adapter")
    dora = bool(c["lora"].get("use_dora", False))
    r, alpha = c["lora"]["r"], c["lora"]["lora_alpha"]
    scaling = alpha / math.sqrt(r) if c["lora"].get("use_rslora", False) else alpha / r

    pm, mods, init = build_peft(case, COMMON["task_type"])
    checks = dict(init=init)

    # only language-model linears, exactly the expected ones
    expect = sorted(f"language_model.model.layers.{i}.{s}" for i in range(2) for s in c["expect"])
    assert sorted(mods) == expect, sorted(mods)
    checks["adapted_modules"] = expect
    checks["no_vision_or_projector_module_adapted"] = not any(n.startswith(("vision_tower", "multi_modal_projector"))
                                                              for n in mods)
    checks["peft_scaling"] = {n: m.scaling["default"] for n, m in sorted(mods.items())}
    assert all(v == scaling for v in checks["peft_scaling"].values())
    checks["peft_model_class"] = type(pm).__name__
    trainable = {n: p for n, p in pm.named_parameters() if p.requires_grad}

    pm.save_pretrained(adir)
    adapter = load_file(os.path.join(adir, "adapter_model.safetensors"))
    with open(os.path.join(adir, "adapter_config.json")) as fh:
        acfg = json.load(fh)

    # forward + backward in train mode (every dropout is 0: lora_dropout, attention_dropout, CLIP dropout)
    pm.train()
    assert not any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in pm.modules())
    logits, loss, grads_raw = forward_backward(pm, inputs, trainable)
    # PEFT's own renaming (the one save_pretrained used) maps parameter names to adapter-file keys
    grads = get_peft_model_state_dict(pm, state_dict=grads_raw, save_embedding_layers=False)
    assert len(grads) == len(grads_raw)
    assert sorted(grads) == sorted(adapter), set(grads) ^ set(adapter)
    for k in adapter:
        assert grads[k].shape == adapter[k].shape, k
    zero = sorted(k for k, g in grads.items() if not bool(g.abs().sum() > 0))
    assert not zero, zero
    checks["every_grad_nonzero"] = True
    values = get_peft_model_state_dict(pm, save_embedding_layers=False)
    checks["adapter_file_equals_forward_params_bitwise"] = all(torch.equal(values[k], adapter[k]) for k in adapter)
    assert checks["adapter_file_equals_forward_params_bitwise"]
    checks["trainable_param_names_example"] = sorted(trainable)[:3]

    # eval mode (unmerged) gives the same numbers
    pm.eval()
    with torch.no_grad():
        o = pm(**inputs)
    checks["eval_vs_train_logits_bitwise_equal"] = bool(torch.equal(o.logits, logits) and torch.equal(o.loss, loss))

    # reload: PeftModel.from_pretrained(fresh base, adapter/)
    rm = PeftModel.from_pretrained(load_base(), adir)
    rm.train()
    with torch.no_grad():
        o = rm(**inputs)
    checks["reload"] = dict(peft_class=type(rm).__name__,
                            max_abs_logit_diff=maxdiff(o.logits, logits), loss_diff=float(o.loss - loss),
                            bitwise_equal=bool(torch.equal(o.logits, logits) and torch.equal(o.loss, loss)))
    assert checks["reload"]["max_abs_logit_diff"] <= 1e-6, checks["reload"]
    del rm

    # independent re-statement (no PEFT), weights from the adapter file
    ref, rparams = ref_model(adapter, scaling, expect, dora)
    ref.train()
    rl, rls, rg = forward_backward(ref, inputs, rparams)
    assert sorted(rg) == sorted(grads)
    worst_k = max(grads, key=lambda k: rel(grads[k], rg[k]))
    checks["independent_restatement"] = dict(
        max_abs_logit_diff=maxdiff(rl, logits), loss_diff=float(rls - loss),
        grad_worst_rel_l2=rel(grads[worst_k], rg[worst_k]), grad_worst_key=worst_k)
    assert checks["independent_restatement"]["max_abs_logit_diff"] < 1e-5, checks["independent_restatement"]
    assert checks["independent_restatement"]["grad_worst_rel_l2"] < 1e-5, checks["independent_restatement"]
    del ref
    if dora:  # what a C implementation that forgot the detach would get
        ref, rparams = ref_model(adapter, scaling, expect, dora, detach_norm=False)
        ref.train()
        _, _, rg2 = forward_backward(ref, inputs, rparams)
        diffs = {k: rel(rg2[k], grads[k]) for k in grads}
        checks["dora_grads_if_norm_not_detached"] = dict(
            worst_rel_l2_vs_golden=max(diffs.values()), worst_key=max(diffs, key=diffs.get),
            min_rel_l2_lora_A_B=min(v for k, v in diffs.items() if ".lora_A." in k or ".lora_B." in k))
        del ref

    # merge_and_unload (the projector's modules_to_save copy replaces the original)
    merged = pm.merge_and_unload()
    merged.eval()
    assert type(merged) is LlavaForConditionalGeneration
    with torch.no_grad():
        mo = merged(**inputs)
    merged_logits = mo.logits.detach().clone()
    msd = merged.state_dict()
    rsd = ref_merge(adapter, scaling, expect, dora)
    assert sorted(msd) == sorted(rsd)
    checks["merged"] = dict(max_abs_logit_diff_vs_unmerged=maxdiff(merged_logits, logits),
                            loss_diff_vs_unmerged=float(mo.loss - loss),
                            max_abs_weight_diff_vs_independent_merge=max(maxdiff(msd[k], rsd[k]) for k in msd),
                            projector_is_adapter_copy=all(torch.equal(msd[k[len(KEY_PREFIX):]], v)
                                                          for k, v in adapter.items() if ".lora_" not in k))
    assert checks["merged"]["max_abs_logit_diff_vs_unmerged"] < 1e-4, checks["merged"]
    if c["write_merged_dir"]:
        mdir = os.path.join(d, "merged")
        merged.save_pretrained(mdir, safe_serialization=True)
        base_keys = sorted(load_file(os.path.join(BASE_MODEL, "model.safetensors")))
        merged_keys = sorted(load_file(os.path.join(mdir, "model.safetensors")))
        mm = LlavaForConditionalGeneration.from_pretrained(mdir, attn_implementation="eager", torch_dtype=torch.float32)
        mm.eval()
        with torch.no_grad():
            o = mm(**inputs)
        checks["merged"]["dir_keys_equal_base_keys"] = merged_keys == base_keys
        checks["merged"]["dir_reload_bitwise_equal"] = bool(torch.equal(o.logits, merged_logits))
        assert checks["merged"]["dir_keys_equal_base_keys"] and checks["merged"]["dir_reload_bitwise_equal"]
        del mm
    del merged, pm

    # task_type None gives the same adapter and logits (recorded for r4)
    if case == "r4":
        pn, _, _ = build_peft(case, None)
        pn.train()
        with torch.no_grad():
            o = pn(**inputs)
        sdn = get_peft_model_state_dict(pn, save_embedding_layers=False)
        checks["task_type_none"] = dict(peft_class=type(pn).__name__, same_keys=sorted(sdn) == sorted(adapter),
                                        same_tensors=all(torch.equal(sdn[k], adapter[k]) for k in adapter),
                                        logits_bitwise_equal=bool(torch.equal(o.logits, logits)))
        assert all(v for k, v in checks["task_type_none"].items() if k != "peft_class"), checks["task_type_none"]
        del pn

    # outputs
    outputs = {"logits": logits.contiguous(), "loss": loss.reshape(()).contiguous(),
               "merged_logits": merged_logits.contiguous()}
    for k in sorted(grads):
        outputs["grad." + k] = grads[k].contiguous()
    opath = os.path.join(d, "outputs.safetensors")
    save_file(outputs, opath, metadata={"format": "pt"})

    def listing(path):
        with safe_open(path, "pt") as fh:
            return {k: dict(dtype=str(fh.get_slice(k).get_dtype()), shape=list(fh.get_slice(k).get_shape()))
                    for k in sorted(fh.keys())}

    kinds = {}
    for k in sorted(adapter):
        kind = ("lora_A" if ".lora_A." in k else "lora_B" if ".lora_B." in k else
                "lora_magnitude_vector" if k.endswith(".lora_magnitude_vector") else "modules_to_save")
        kinds.setdefault(kind, []).append(k)
    am = inputs["attention_mask"].bool()
    meta = dict(
        case=case, seed=c["seed"], base_model=BASE_MODEL, inputs=BASE + "/inputs.safetensors",
        versions=dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
                      safetensors=safetensors.__version__, numpy=np.__version__, python=sys.version.split()[0]),
        lora_config=dict(COMMON, **c["lora"]),
        init=dict(lora_A=("PEFT's own: kaiming_uniform_(a=sqrt(5)) on [r, in] = U(-1/sqrt(in), 1/sqrt(in)), from "
                          "torch.manual_seed(seed) just before get_peft_model; the lora_A tensors in "
                          "adapter_model.safetensors are these initial values (nothing is stepped)"),
                  lora_B=f"PEFT zeros, then N(0, {B_STD}^2) from torch.Generator().manual_seed(seed+1), modules in "
                         "sorted name order",
                  projector=(f"modules_to_save copy += N(0, {PROJ_NOISE_STD}^2), same generator after the B's, "
                             "parameters in sorted name order" if "modules_to_save" in c["lora"] else None)),
        scaling=dict(value=scaling, fp32_hex=np.float32(scaling).tobytes().hex(), facts=SCALING_FACTS),
        adapter_config_keys={k: acfg.get(k) for k in ("base_model_name_or_path", "target_modules", "r",
                                                      "lora_alpha", "use_rslora", "use_dora", "modules_to_save",
                                                      "lora_dropout", "bias", "task_type", "peft_type",
                                                      "fan_in_fan_out", "layers_to_transform", "rank_pattern",
                                                      "alpha_pattern", "init_lora_weights")},
        naming=dict(
            key_prefix=KEY_PREFIX,
            scheme=("adapter keys are 'base_model.model.' + <module name in LlavaForConditionalGeneration> + "
                    "'.lora_A.weight' / '.lora_B.weight'" + (" / '.lora_magnitude_vector'" if dora else "") +
                    ("; the projector copy is saved as 'base_model.model.' + <its base key> "
                     "(PEFT drops 'modules_to_save.' and the adapter name '.default')"
                     if "modules_to_save" in c["lora"] else "") +
                    "; grad.<key> in outputs.safetensors uses the same keys"),
            examples={k: v[:3] for k, v in kinds.items()},
            in_module_parameter_names=("inside the PeftModel the parameters are named e.g. " +
                                       ", ".join(checks["trainable_param_names_example"]) +
                                       " (adapter name 'default'; modules_to_save.default for the projector copy)"),
        ),
        dropout=DROPOUT_FACTS,
        dora=DORA_FACTS if dora else None,
        task_type_choice=TASK_TYPE_REASON,
        target_modules_note=("a regex string, re.fullmatch-ed against full module names; short names "
                             "(LLaVA's find_all_linear_names) would also match vision_tower.*.self_attn.{q,k,v}_proj "
                             "in the llava-hf layout. In haotian-liu/LLaVA the CLIP tower is built after "
                             "get_peft_model (delay_load), so there the short names only hit the LM."),
        stats=dict(B=int(logits.shape[0]), T=int(logits.shape[1]), V=int(logits.shape[2]), loss=float(loss),
                   loss_hex=loss.numpy().astype(np.float32).tobytes().hex(),
                   max_abs_logit=float(logits.abs().max()),
                   rms_logit_real_positions=float(logits[am].pow(2).mean().sqrt())),
        checks=checks,
        grad_stats={k: dict(shape=list(g.shape), max_abs=float(g.abs().max()), l2=float(g.norm()))
                    for k, g in sorted(grads.items())},
        files=dict(adapter_model=listing(os.path.join(adir, "adapter_model.safetensors")), outputs=listing(opath)),
    )
    # with the base weights (no adapter) for scale: how much the adapter moves the logits
    base = load_base()
    base.eval()
    with torch.no_grad():
        meta["stats"]["max_abs_logit_diff_adapter_vs_base"] = maxdiff(base(**inputs).logits, logits)
    with open(os.path.join(d, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True)
        fh.write("\n")
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "data", "golden", "lora"))
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.chdir(os.path.join(here, "..", ".."))  # BASE is relative to the repository root
    have = {"torch": torch.__version__, "transformers": transformers.__version__, "safetensors": safetensors.__version__,
            "numpy": np.__version__, "peft": peft.__version__}
    for k, v in PINNED.items():
        if not have[k].startswith(v):
            print(f"WARNING: {k} {have[k]} != pinned {v}; goldens will not be byte-identical", file=sys.stderr)
    # the facts recorded in meta.json as text are checked against the PEFT source installed here
    src = inspect.getsource(lora_layer.LoraLayer.update_layer)
    assert "nn.Dropout(p=lora_dropout)" in src and "lora_alpha / math.sqrt(r)" in src and "lora_alpha / r" in src
    assert "lora_B(lora_A(dropout(x))) * scaling" in inspect.getsource(lora_layer.Linear.forward)
    dsrc = inspect.getsource(lora_dora.DoraLinearLayer)
    assert "weight_norm = weight_norm.detach()" in dsrc and "torch.linalg.norm(weight, dim=1)" in dsrc
    assert "lora_weight.detach()" in dsrc
    # "scaling rounded to fp32, one fp32 product": an fp32 tensor times a Python float on the CPU
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    s = 16 / math.sqrt(8)
    assert torch.equal(x * s, x * torch.tensor(np.float32(s))) and not torch.equal(x * s, (x.double() * s).float())
    set_determinism()
    inputs = load_file(os.path.join(BASE, "inputs.safetensors"))
    os.makedirs(out, exist_ok=True)
    metas = [run_case(n, out, inputs) for n in args.cases.split(",")]

    print()
    print(f"{'case':<13} {'scaling':>8} {'loss':>10} {'adapter-vs-base':>15} {'merged-vs-unm':>13} {'reload':>8} "
          f"{'bitwise':>7} {'indep dlogit':>12} {'indep grad':>10} {'max|A|/bound':>12}")
    for m in metas:
        ch = m["checks"]
        ab = max(a["max_abs"] / a["bound_1_over_sqrt_in"] for a in ch["init"]["lora_A"])
        print(f"{m['case']:<13} {m['scaling']['value']:>8.5f} {m['stats']['loss']:>10.6f} "
              f"{m['stats']['max_abs_logit_diff_adapter_vs_base']:>15.3e} "
              f"{ch['merged']['max_abs_logit_diff_vs_unmerged']:>13.3e} {ch['reload']['max_abs_logit_diff']:>8.1e} "
              f"{str(ch['reload']['bitwise_equal']):>7} {ch['independent_restatement']['max_abs_logit_diff']:>12.3e} "
              f"{ch['independent_restatement']['grad_worst_rel_l2']:>10.2e} {ab:>12.4f}")
        if "dora_grads_if_norm_not_detached" in ch:
            print(f"{'':<13} DoRA grads without the norm detach differ by rel L2 up to "
                  f"{ch['dora_grads_if_norm_not_detached']['worst_rel_l2_vs_golden']:.3e}")
    print()
    total = 0
    for m in metas:
        for dp, dns, fns in sorted(os.walk(os.path.join(out, m["case"]))):
            dns.sort()
            for fn in sorted(fns):
                pth = os.path.join(dp, fn)
                sz = os.path.getsize(pth)
                total += sz
                print(f"  {os.path.relpath(pth, out):<45} {sz:>9}  {md5(pth)}")
    print(f"  total {total} bytes")


if __name__ == "__main__":
    main()
