#!/usr/bin/env python3
"""Golden gradients for llava.c with a TRAINABLE vision tower, made with Hugging Face transformers 4.46.3.

What is reference. The committed golden cases' own torch models, rebuilt exactly as the scripts that wrote them
build them (fp32, eager attention, train mode; dropout is 0 everywhere), with the committed model.safetensors loaded
into them (load_state_dict, strict: nothing re-initialised), run on the committed inputs.safetensors:
  tiny64                      make_model_goldens.py: transformers' own LlavaForConditionalGeneration, CLIP tower
                              (3 layers, vision_feature_layer -2, strategy "default")
  abl_avgpool, abl_maxpool,   make_ablation_goldens.py: the same class with multi_modal_projector and
  abl_bilinear, abl_prune     get_image_features replaced on the instance (its patch_model: LLaVA-NeXT's projector,
                              the pooling / CLS-attention pruning between the selected features and the projector);
                              CLIP tower, 3 layers, -2, "default"
  siglip_full, siglip_default make_siglip_goldens.py: transformers' own class, unpatched, SigLIP tower (3 layers;
                              "full" -1 / "default" -2)
This script imports those three scripts (their config builders, patch_model and new_model) rather than restating
them, and asserts that the committed weights and inputs are what those scripts make (init_weights with the case's
seed, build_inputs: bit for bit) and that the forward's logits and loss equal the committed outputs.safetensors'
bit for bit: the model is the one the existing goldens came from. One exception, tiny64: its outputs.safetensors was
made on another CPU type (tests/data/golden/model/README.md: rerunning make_model_goldens.py reproduces its model
and inputs but not the last bits of its outputs), so here its loss is equal bit for bit and its logits within
1e-5 (2.7e-6 on this AVX512 CPU); the logits written are this forward's, the one the gradients come from.

Gradient sets. The loss is transformers' (the mean CE over the counted targets); one forward and backward per set,
with requires_grad set on exactly the set's parameters (the others frozen: requires_grad False, but the gradient
still flows through them, e.g. through the frozen language model back to the image features):
  vision+projector      every vision_tower.* and every multi_modal_projector.* parameter; language model frozen
  vision1+projector     only the tower's last USED layer, vision_tower.vision_model.encoder.layers.{S}.*, plus
                        multi_modal_projector.*; S is the layer whose output is the selected feature:
                        hidden_states[vision_feature_layer] is the output of layer L + vision_feature_layer (0-based,
                        of L layers), so S = L - 2 for -2 (here layer 1) and S = L - 1 for -1 (siglip_full: layer 2)
  vision+projector+lm   tower, projector and every language_model.* parameter (everything); written for abl_avgpool
                        only, to keep the files small
Which parameters get no gradient. LLaVA reads the tower's hidden_states[vision_feature_layer] only, so the layers
past S (encoder.layers.{S+1..L-1}: for -2 the last layer), post_layernorm (applied to the last layer's output, for
last_hidden_state / the pooled output) and SigLIP's attention-pooling head (head.*) are computed in the forward but
never reach the loss: their .grad stays None. Those, and only those, are left out of the file and listed as
"no_gradient" in the json; a trainable parameter outside that list without a gradient (None or all zero) is an
error. abl_prune: the kept tokens are picked by a topk of the CLS attention under no_grad, so the gradient reaches
the tower only through the kept tokens' features (and, through attention, every earlier token); nothing else is
special. abl_maxpool: only each window's maximum gets the gradient; abl_avgpool drops grid row and column 4.
Zero in exact arithmetic: the tower's key biases (encoder.layers.{0..S}.self_attn.k_proj.bias, CLIP and SigLIP).
Adding b to every key adds q.b to all the scores of a query, which softmax ignores, so their gradient is exactly 0;
torch's fp32 backward leaves rounding noise (|g| ~1e-9, against ~1e-2 for the other tensors) and fp64 ~1e-17. They
are not written either (a relative comparison of noise means nothing); the json lists them per set as
"zero_in_exact_arithmetic" with the fp32 and fp64 max |g|. (LLaMA has no attention biases.)

Written, under ``<out>/<case>/`` (default out: tests/data/golden/model, i.e. beside the case's other files; the
case itself is always read from tests/data/golden/model/<case>/):
  vision_grads.safetensors  logits F32 [B,T,V], loss F32 [] (the same forward; equal to outputs.safetensors'),
                            grad.<set>.<name> F32 for each set above and each parameter of the set that has a
                            gradient, <name> as transformers' named_parameters gives it (e.g.
                            vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight,
                            multi_modal_projector.linear_1.weight, language_model.model.layers.0.mlp.up_proj.weight)
  vision_grads.json         versions; the selected layer S; per set the trainable and written tensor counts, the
                            no_gradient and zero_in_exact_arithmetic names, the fp64 check (worst per-tensor rel-L2
                            error and its parameter); max |logit| fp32 vs fp64; the comparison with
                            outputs.safetensors; indented, keys sorted
Sizes: tiny64's tower (hidden 128) makes its file about 1.5 MB (its vision+projector+lm set would add 2.1 MB, so it
has none); the others are 0.16-0.61 MB.

Checks (each asserted; the numbers go to vision_grads.json and are printed):
  * the committed folder loads strict into the rebuilt model; its weights and inputs are the case script's, bit for
    bit; every set's forward gives the same logits and loss, equal to the committed outputs.safetensors' bit for bit
    (tiny64: loss bit for bit, logits within 1e-5, see above);
  * per set, the parameters without gradient are exactly the trainable ones among encoder.layers past S,
    post_layernorm.* and head.*; the key biases' fp32 gradients are below 1e-6 and their fp64 ones below 1e-12, and
    every written tensor's fp64 gradient has a norm above 1e-9 (nothing else is zero in disguise);
  * the same model in float64 (copy.deepcopy(model).double(), pixel_values as float64; float64 softmax throughout,
    make_siglip_goldens.true_fp64_softmax, since 4.46.3's LlamaAttention / SiglipAttention round the attention
    probabilities to fp32 even in a float64 model) gives the same no-gradient lists, and every written gradient is
    within 1e-4 relative L2 (||g32 - g64|| / ||g64||, per tensor) of its float64 value; the worst per set and the max
    |logit| difference are recorded. (LLaMA's RoPE angles stay fp32 in 4.46.3 even in a float64 model.)

Run (from the repository root, CPU only, a few seconds):
    /tmp/refvenv/bin/python tools/reference/make_vision_train_goldens.py [--out DIR] [--cases a,b]
Default cases: tiny64,abl_avgpool,abl_maxpool,abl_bilinear,abl_prune,siglip_full,siglip_default.
Pinned versions: tools/reference/requirements-ablation.txt (torch 2.5.1, transformers 4.46.3, safetensors 0.4.5,
numpy 2.1.3; the model venv). Two runs give byte-identical files (one thread, deterministic algorithms).
"""

import copy
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_goldens as mmg  # noqa: E402  (sets CUDA_VISIBLE_DEVICES="" before torch loads)
import make_ablation_goldens as mag  # noqa: E402
import make_siglip_goldens as sgl  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402
import transformers  # noqa: E402

GOLDEN = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data",
                                       "golden", "model"))
CASES = ["tiny64", "abl_avgpool", "abl_maxpool", "abl_bilinear", "abl_prune", "siglip_full", "siglip_default"]
LM_SET_CASES = ("abl_avgpool",)
VP = "vision_tower.vision_model."
FP64_BOUND = 1e-4
# Cases whose committed outputs.safetensors were made on another CPU type (tests/data/golden/model/README.md: rerunning
# make_model_goldens.py reproduces model and inputs but not the last bits of the outputs): here the logits may differ
# by fp32 rounding (the weights and inputs are still checked bit for bit against the script).
OTHER_CPU = ("tiny64",)
OTHER_CPU_LOGIT_TOL = 1e-5
# The tower's key biases: adding b to every key adds q.b to every score of a query, which softmax ignores, so their
# gradient is zero in exact arithmetic; fp32 leaves rounding noise (~1e-9), fp64 ~1e-17. Not written; listed.
K_BIAS = re.compile(re.escape(VP) + r"encoder\.layers\.\d+\.self_attn\.k_proj\.bias")
K_BIAS_FP64_MAX = 1e-12
K_BIAS_FP32_MAX = 1e-6


SET_SEMANTICS = {
    "vision+projector": "every vision_tower.* and multi_modal_projector.* parameter trainable; language model frozen",
    "vision1+projector": ("vision_tower.vision_model.encoder.layers.{selected_layer}.* (the last used layer) and "
                          "multi_modal_projector.* trainable; the rest frozen"),
    "vision+projector+lm": "every parameter trainable",
}


def is_tower(n):
    return n.startswith("vision_tower.")


def is_projector(n):
    return n.startswith("multi_modal_projector.")


def gradient_sets(case, S):
    """The trainable predicates of the case's sets, in the order written."""
    sets = {
        "vision+projector": lambda n: is_tower(n) or is_projector(n),
        "vision1+projector": lambda n: n.startswith(f"{VP}encoder.layers.{S}.") or is_projector(n),
    }
    if case in LM_SET_CASES:
        sets["vision+projector+lm"] = lambda n: True
    return sets


def build_model(case):
    """The case's model as its script builds it (before init_weights), its config and what the script's own
    weights and inputs come from: (model, cfg, variant (ablation cases) or None, seed, (c, image_token, pad_token,
    tokens per image))."""
    if case in mmg.CONFIGS:
        c = mmg.CONFIGS[case]
        cfg, image_token, pad_token, P = mmg.build_config(c)
        return mag.new_model(cfg), cfg, None, c["seed"], (c, image_token, pad_token, P)
    if case in mag.CASES:
        v = mag.CASES[case]
        G = v["vision"]["image_size"] // v["vision"]["patch_size"]
        n_tok = mag.tokens_per_image(G, v)
        c, cfg, image_token, pad_token, _ = mag.build_case_config(v, n_tok)
        return mag.patch_model(mag.new_model(cfg), v), cfg, v, v["seed"], (c, image_token, pad_token, n_tok)
    if case in sgl.CASES:
        c, cfg, image_token, pad_token, _, n_tok = sgl.build_case_config(sgl.CASES[case])
        return mag.new_model(cfg), cfg, None, sgl.SEED, (c, image_token, pad_token, n_tok)
    raise ValueError(f"unknown case {case}")


def script_consistency(case, saved, inputs):
    """The committed weights and inputs are what the case's script makes (init_weights with its seed,
    build_inputs): every tensor bit for bit."""
    model, cfg, _, seed, (c, image_token, pad_token, n_tok) = build_model(case)
    mmg.init_weights(model, seed)
    sd = model.state_dict()
    assert sorted(sd) == sorted(saved) and all(torch.equal(sd[k], saved[k]) for k in saved), case
    ref, _ = mmg.build_inputs(c, cfg, image_token, pad_token, n_tok, seed)
    assert sorted(ref) == sorted(inputs) and all(torch.equal(ref[k], inputs[k]) for k in ref), case
    return dict(weights_equal_script_init=True, inputs_equal_script_build_inputs=True, seed=seed)


def run_grads(model, inputs, trainable):
    """One forward/backward with exactly `trainable` requiring grad: logits, loss, {name: grad} of the trainable
    parameters whose grad is neither None nor all zero, and the sorted names of those that are."""
    for n, p in model.named_parameters():
        p.requires_grad_(trainable(n))
        p.grad = None
    out = model(**inputs)
    out.loss.backward()
    grads, none = {}, []
    for n, p in model.named_parameters():
        if not trainable(n):
            assert p.grad is None, n
        elif p.grad is None or not bool(p.grad.abs().sum() > 0):
            none.append(n)
        else:
            grads[n] = p.grad.detach().clone()
    for p in model.parameters():
        p.grad = None
        p.requires_grad_(False)
    return out.logits.detach().clone(), out.loss.detach().clone(), grads, sorted(none)


def run_case(case, out_root):
    src = os.path.join(GOLDEN, case)
    torch.manual_seed(0)  # the construction draws weights that the strict load below replaces
    model, cfg, variant = build_model(case)[:3]
    saved = load_file(os.path.join(src, "model", "model.safetensors"))
    model.load_state_dict(saved, strict=True)
    model.train()
    attn_classes = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Attention")})
    assert all("Sdpa" not in a and "Flash" not in a for a in attn_classes), attn_classes
    with open(os.path.join(src, "model", "config.json")) as fh:
        cj = json.load(fh)
    vc = cfg.vision_config
    for k in ("image_seq_length", "vision_feature_layer", "vision_feature_select_strategy", "image_token_index"):
        assert cj[k] == getattr(cfg, k), (case, k, cj[k], getattr(cfg, k))
    for k in ("model_type", "num_hidden_layers", "hidden_size", "image_size", "patch_size", "hidden_act"):
        assert cj["vision_config"][k] == getattr(vc, k), (case, k)
    inputs = load_file(os.path.join(src, "inputs.safetensors"))
    committed = load_file(os.path.join(src, "outputs.safetensors"))
    origin = script_consistency(case, saved, inputs)

    L = vc.num_hidden_layers
    fl = cfg.vision_feature_layer
    S = mag.selected_attention_layer(fl, L)  # hidden_states[fl] is the output of layer S
    assert S == (L - 2 if fl == -2 else L - 1), (fl, S)

    def unused(n):
        return (any(n.startswith(f"{VP}encoder.layers.{li}.") for li in range(S + 1, L))
                or n.startswith(VP + "post_layernorm.") or n.startswith(VP + "head."))

    sets = gradient_sets(case, S)
    pnames = [n for n, _ in model.named_parameters()]
    res = {s: run_grads(model, inputs, t) for s, t in sets.items()}
    logits, loss = res["vision+projector"][:2]
    for s, (lg, ls, _, _) in res.items():
        assert torch.equal(lg, logits) and torch.equal(ls, loss), (case, s)
    vs = dict(logits_bitwise_equal=bool(torch.equal(logits, committed["logits"])),
              loss_bitwise_equal=bool(torch.equal(loss, committed["loss"])),
              max_abs_logit_diff=float((logits - committed["logits"]).abs().max()),
              loss_diff=float(loss - committed["loss"]))
    if case in OTHER_CPU:  # its outputs.safetensors came from another CPU type: the last bits of the logits differ
        assert vs["max_abs_logit_diff"] < OTHER_CPU_LOGIT_TOL and vs["loss_bitwise_equal"], (case, vs)
    else:
        assert vs["logits_bitwise_equal"] and vs["loss_bitwise_equal"], (case, vs)
    info = {}
    for s, (_, _, gr, none) in res.items():
        expect = sorted(n for n in pnames if sets[s](n) and unused(n))
        assert none == expect, (case, s, set(none) ^ set(expect))
        assert sorted(gr) == sorted(n for n in pnames if sets[s](n) and not unused(n)), (case, s)
        info[s] = dict(trainable=sum(1 for n in pnames if sets[s](n)), written=len(gr), no_gradient=none)

    # float64 ("exact") run of the same model
    m64 = copy.deepcopy(model).double()
    if variant is not None:
        mag.bind_image_features(m64, variant)
    in64 = dict(inputs, pixel_values=inputs["pixel_values"].double())
    with sgl.true_fp64_softmax():
        r64 = {s: run_grads(m64, in64, t) for s, t in sets.items()}
    lg64 = r64["vision+projector"][0]
    fp64 = dict(max_abs_logit_diff=float((logits.double() - lg64).abs().max()),
                loss_fp64=float(r64["vision+projector"][1]),
                loss_rel_diff=float(abs(loss.double() - r64["vision+projector"][1]) / r64["vision+projector"][1]))
    assert fp64["max_abs_logit_diff"] < FP64_BOUND, fp64
    for s, (_, _, gr, none) in res.items():
        assert r64[s][3] == none, (case, s)
        g64 = r64[s][2]
        kb = sorted(n for n in gr if K_BIAS.fullmatch(n))
        assert kb == sorted(n for n in pnames if sets[s](n) and K_BIAS.fullmatch(n) and not unused(n)), (case, s)
        info[s]["zero_in_exact_arithmetic"] = kb
        info[s]["zero_in_exact_arithmetic_fp32_max_abs"] = max((float(gr[n].abs().max()) for n in kb), default=0.0)
        info[s]["zero_in_exact_arithmetic_fp64_max_abs"] = max((float(g64[n].abs().max()) for n in kb), default=0.0)
        for n in kb:  # zero in exact arithmetic: fp32 leaves rounding noise, fp64 ~1e-17
            assert float(g64[n].norm()) < K_BIAS_FP64_MAX and float(gr[n].norm()) < K_BIAS_FP32_MAX, (case, s, n)
            del gr[n]
        for n in gr:  # nothing else is a zero in disguise
            assert float(g64[n].norm()) > 1e3 * K_BIAS_FP64_MAX, (case, s, n)
        info[s]["written"] = len(gr)
        wr, wn = 0.0, None
        for n, g in gr.items():
            e = mmg.rel(g, r64[s][2][n])
            if e > wr:
                wr, wn = e, n
        assert wr < FP64_BOUND, (case, s, wn, wr)
        info[s]["fp64_worst_rel_l2"] = wr
        info[s]["fp64_worst_param"] = wn

    d = os.path.join(out_root, case)
    os.makedirs(d, exist_ok=True)
    outputs = {"logits": logits.contiguous(), "loss": loss.reshape(()).contiguous()}
    for s, (_, _, gr, _) in res.items():
        for n in pnames:
            if n in gr:
                outputs[f"grad.{s}.{n}"] = gr[n].contiguous()
    save_file(outputs, os.path.join(d, "vision_grads.safetensors"))

    meta = dict(
        case=case, generator="tools/reference/make_vision_train_goldens.py",
        versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                      safetensors=safetensors.__version__, numpy=np.__version__),
        model_class=type(model).__name__, patched=variant is not None, attention_classes=attn_classes,
        vision_model_type=vc.model_type, vision_num_hidden_layers=L, vision_feature_layer=fl,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy, selected_layer=S,
        origin=origin, vs_outputs_safetensors=vs, loss=float(loss),
        sets=info, set_semantics=SET_SEMANTICS, fp64=fp64,
        fp64_note=("copy.deepcopy(model).double(), pixel_values float64, softmax kept in float64 "
                   "(make_siglip_goldens.true_fp64_softmax); rel-L2 per tensor ||g32 - g64|| / ||g64||"))
    with open(os.path.join(d, "vision_grads.json"), "w") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True)
        fh.write("\n")
    return meta


def main():
    metas, out = mmg.run_cases(__doc__, CASES, run_case)
    print(f"{'case':<15} {'S':>2} {'set':<20} {'written':>7} {'no grad':>7} {'fp64 rel (worst)':>16}  param")
    for m in metas:
        for s, x in m["sets"].items():
            print(f"{m['case']:<15} {m['selected_layer']:>2} {s:<20} {x['written']:>7} {len(x['no_gradient']):>7} "
                  f"{x['fp64_worst_rel_l2']:>16.2e}  {x['fp64_worst_param']}")
        print(f"{'':<15}    max |logit| fp32 vs fp64 {m['fp64']['max_abs_logit_diff']:.2e}; no gradient: "
              + ", ".join(n.replace(VP, "") for n in m["sets"]["vision+projector"]["no_gradient"]))
    print()
    total = 0
    for m in metas:
        for fn in ("vision_grads.safetensors", "vision_grads.json"):
            pth = os.path.join(out, m["case"], fn)
            sz = os.path.getsize(pth)
            total += sz
            print(f"  {os.path.relpath(pth, out):<45} {sz:>9}  {mmg.md5(pth)}")
    print(f"  total {total} bytes")


if __name__ == "__main__":
    main()
