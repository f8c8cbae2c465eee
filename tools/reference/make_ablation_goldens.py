#!/usr/bin/env python3
"""Golden data for llava.c's model variants ("research ablations": projector depth, identity projector, visual-token
reduction), made with Hugging Face transformers 4.46.3 and LLaVA-NeXT's projector / pooling arithmetic.

What is reference. transformers' ``LlavaForConditionalGeneration`` (fp32, eager attention) runs the CLIP tower, the
LLaMA language model, the <image> merge (masked_scatter) and the loss, unchanged. Two parts of it are replaced on the
instance, restating in torch what LLaVA-NeXT does (LLaVA-VL/LLaVA-NeXT at df17966, read, not copied):
``multi_modal_projector`` by llava/model/multimodal_projector/builder.py's build_vision_projector, and
``get_image_features`` by: tower forward (output_hidden_states and output_attentions) -> select -> reduce -> projector,
the reduction being llava/model/llava_arch.py's get_2dPool (moved before the projector) or attention pruning.

Semantics (what the C side implements). Dv = vision hidden, d = text hidden, G = image_size / patch_size.
  Selection: hidden_states[vision_feature_layer] (here -2: the output of vision layer L-2, 0-based, of L layers; the
    last layer is unused), strategy "default": CLS dropped, leaving the G x G patch grid, row-major (token
    p = row * G + col).
  Projector, mm_projector_type (builder.py):
    mlp{N}x_gelu  Linear(Dv, d), then N-1 times [GELU, Linear(d, d)]; biases on; GELU exact (erf):
                  0.5 * x * (1 + erf(x / sqrt 2)). mlp2x_gelu is transformers' own LlavaMultiModalProjector.
    linear        = mlp1x_gelu: one Linear(Dv, d) (builder.py's nn.Linear).
    identity      the features unchanged (needs Dv == d); no projector tensors at all.
  Reduction between the selected features and the projector (none: all G*G tokens):
    mm_spatial_pool_mode average / max, mm_spatial_pool_stride s: the tokens viewed as a (Dv, G, G) image per
      image, F.avg_pool2d(x, s) / F.max_pool2d(x, s) (kernel s, stride s, no padding, floor mode, as get_2dPool):
      out[c, i, j] = mean (or max) over a, b in 0..s-1 of x[c, i*s + a, j*s + b], for i, j < G // s;
      rows/columns past (G // s) * s are dropped. (G // s)^2 tokens, row-major (token i * (G // s) + j).
    mm_spatial_pool_mode bilinear, stride s: F.interpolate(x, size=(Go, Go), mode="bilinear",
      align_corners=False), Go = ceil(G / s), as get_2dPool. Separable; per axis, output i samples
      src = max((i + 0.5) * (G / Go) - 0.5, 0), i0 = floor(src), i1 = min(i0 + 1, G - 1), l = src - i0, and
      out = (1 - l) * x[i0] + l * x[i1] (rows, then columns, the weights multiplied: (1-ly)(1-lx) x[y0,x0] + ...).
      For G = 5, s = 2: Go = 3, src = 1/3, 2, 11/3 -> (0,1, l 1/3), (2,3, l 0), (3,4, l 2/3). Go^2 tokens, row-major.
    mm_vision_keep_tokens K (pruning; only with a CLS token and strategy default; not with pooling): in the vision
      layer whose output is the selected feature (layer L-2 for -2: transformers' attentions[-2], eager), the
      attention probabilities of the CLS query (row 0 of softmax over all 1 + G*G keys, CLS key included: not
      renormalised) at the G*G patch keys, averaged over the heads:
        score[p] = (1/H) sum_h softmax_j((q_h[0] * dh^-0.5) . k_h[j])[1 + p],  p in 0..G*G-1
      (CLIP scales q by dh^-0.5 before the product); keep the K patches with the highest score (ties: lower index
      first, i.e. a stable descending sort), in ascending index order. The scores only pick indices (no gradient
      flows through them); the kept patch features go on unchanged.
  image_seq_length (tokens per image) becomes (G // s)^2, ceil(G / s)^2 or K; input_ids carry image_token_index that
  many times per image (as transformers' processor expands <image>), so 4.46.3 does not take its legacy merge path.

Cases (each written like make_model_goldens.py's configs, under ``<out>/<case>/``):
  abl_mlp3x     mlp3x_gelu, no reduction (25 tokens per image)
  abl_identity  identity projector (vision hidden 64 = text hidden 64), no reduction (25 tokens)
  abl_avgpool   average, s 2 on the 5x5 grid: 2x2 = 4 tokens (row 4 and column 4 dropped); mlp2x_gelu
  abl_maxpool   max, s 2 on the 5x5 grid: 4 tokens; projector linear (= mlp1x_gelu: one Linear)
  abl_bilinear  bilinear, s 2 on the 5x5 grid: 3x3 = 9 tokens; mlp2x_gelu
  abl_prune     keep K = 7 of the 25 patches; mlp2x_gelu
Common: LLaMA LM hidden 64 (2 heads of 32), 2 layers, intermediate 64, vocab 160, untied; CLIP tower (quick_gelu)
hidden 32 (2 heads of 16; 64 for abl_identity), 3 layers (the last unused), intermediate 48, 20x20 images in 4x4
patches; make_model_goldens.py's rows (image after BOS, text only, image in the middle), weights (init_weights) and
input builder, which this script imports.

Written under ``<out>/<case>/``, the layout of make_model_goldens.py (tests/test_model_parity.c reads it unchanged):
  model/config.json          what LlavaConfig.save_pretrained writes, then changed: "model_type": "llava_c",
                             "architectures": ["LlavaCForConditionalGeneration"] (AutoConfig/AutoModel refuse it;
                             see the last check for LlavaForConditionalGeneration), "mm_projector_type",
                             "mm_spatial_pool_mode" (absent without pooling),
                             "mm_spatial_pool_stride" (s; 1 without pooling), "mm_vision_keep_tokens" (absent when 0),
                             "image_seq_length" = the tokens per image
  model/generation_config.json, model/model.safetensors   save_pretrained's (4.46.3's legacy names:
                             multi_modal_projector.linear_1 .. linear_N .{weight,bias}, language_model.*,
                             vision_tower.vision_model.*); identity has no multi_modal_projector.* tensor
  inputs.safetensors         input_ids I64 [B,T], pixel_values F32 [N_img,3,H,W], attention_mask I64, labels I64
  outputs.safetensors        logits F32 [B,T,V], loss F32 [], grad.projector.<name> (projector trainable; none for
                             identity), grad.projector+lm.<name> (projector and every language_model.* tensor);
                             the vision tower is frozen in both sets
  meta.json                  the case's settings, tokens per image, loss, the checks below, the pruned indices, scores
                             and margins (abl_prune), what transformers does with the folder, versions

Checks (each asserted; the numbers go to meta.json and are printed):
  * self-check of the patching: the patched model with mlp2x_gelu and no reduction (on each case's base config)
    gives transformers' unpatched model's logits, loss and every gradient of both sets bit for bit;
  * the reduction functions equal explicit loops (the formulas above) in float64 on the case's real features;
  * the same patched model in float64 gives the "exact" numbers: HF fp32's max |logit| error, loss error and worst
    per-tensor gradient rel-L2 error are recorded (bounded by 1e-4); abl_prune's fp64 scores keep the same patches;
  * abl_prune: no tie at the cut, the margin between the K-th and (K+1)-th score is printed and must exceed 1e-4
    (the scores are ~0.04, fp32 noise ~1e-8);
  * model.safetensors holds exactly the patched model's parameters (projector names linear_1..N) and loads back
    (load_state_dict, strict) to the same logits bit for bit; every trainable tensor has a nonzero gradient;
  * near misses are told apart (recorded): adaptive pooling, ceil mode, align_corners=True, antialias, the attention
    of another layer, one head, scores of the patch queries, the kept tokens in score order (only renormalising each
    head's CLS probabilities over the patches keeps the same patches here);
  * transformers' AutoConfig refuses the folder (model_type llava_c: ValueError). LlavaForConditionalGeneration.
    from_pretrained called directly does NOT refuse it: it warns that llava_c is not llava and loads what fits
    (abl_mlp3x: linear_3 dropped with only an info message, abl_identity / abl_maxpool: projector tensors newly
    drawn, and both mlp3x and identity then run, giving other logits; the reduced cases fail in forward on the
    token count). What it did is recorded per case.

Run (from the repository root, CPU only, a few seconds):
    /tmp/refvenv/bin/python tools/reference/make_ablation_goldens.py
Options: --out DIR (default tests/data/golden/model), --cases abl_mlp3x,... (default all six).
Pinned versions: tools/reference/requirements-ablation.txt (torch 2.5.1, transformers 4.46.3, safetensors 0.4.5,
numpy 2.1.3: the model venv). Two runs give byte-identical files (one thread, deterministic algorithms).
"""

import copy
import json
import logging
import math
import os
import re
import shutil
import sys
import types
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_goldens as mmg  # noqa: E402  (sets CUDA_VISIBLE_DEVICES="" before torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, LlavaForConditionalGeneration  # noqa: E402

NEXT_COMMIT = "df17966"  # LLaVA-VL/LLaVA-NeXT: builder.py's build_vision_projector, llava_arch.py's get_2dPool

TEXT = dict(hidden_size=64, num_attention_heads=2, num_hidden_layers=2, intermediate_size=64, vocab_size=160)
VISION = dict(hidden_size=32, num_attention_heads=2, num_hidden_layers=3, intermediate_size=48, image_size=20,
              patch_size=4)
VISION_64 = dict(VISION, hidden_size=64)  # identity: the tower's width is the LM's
ROWS = dict(a=8, b=11, c1=4, c2=7)

# projector, pool mode (None: no pooling), stride, keep_tokens (0: no pruning)
CASES = OrderedDict([
    ("abl_mlp3x", dict(seed=301, projector="mlp3x_gelu", pool=None, stride=1, keep=0, vision=VISION)),
    ("abl_identity", dict(seed=302, projector="identity", pool=None, stride=1, keep=0, vision=VISION_64)),
    ("abl_avgpool", dict(seed=303, projector="mlp2x_gelu", pool="average", stride=2, keep=0, vision=VISION)),
    ("abl_maxpool", dict(seed=304, projector="linear", pool="max", stride=2, keep=0, vision=VISION)),
    ("abl_bilinear", dict(seed=305, projector="mlp2x_gelu", pool="bilinear", stride=2, keep=0, vision=VISION)),
    ("abl_prune", dict(seed=306, projector="mlp2x_gelu", pool=None, stride=1, keep=7, vision=VISION)),
])
PRUNE_MIN_MARGIN = 1e-4
BOS, EOS = mmg.BOS, mmg.EOS


# ------------------------------------------------------------------------------------------------------------------
# The variant: LLaVA-NeXT's projector and reductions restated in torch
# ------------------------------------------------------------------------------------------------------------------
def projector_depth(ptype):
    """builder.py: "linear" is one nn.Linear (= mlp1x_gelu), "mlp{N}x_gelu" N Linears, "identity" none."""
    if ptype == "identity":
        return 0
    if ptype == "linear":
        return 1
    m = re.fullmatch(r"mlp(\d+)x_gelu", ptype)
    assert m and int(m.group(1)) >= 1, ptype
    return int(m.group(1))


def build_projector(ptype, Dv, d):
    """build_vision_projector's modules in its order (Linear(Dv, d), then [GELU(), Linear(d, d)] x (N-1)), named
    linear_1 .. linear_N so that the saved keys are multi_modal_projector.linear_k.{weight,bias}."""
    depth = projector_depth(ptype)
    if depth == 0:
        assert Dv == d, (Dv, d)
        return nn.Identity()
    mods = [("linear_1", nn.Linear(Dv, d))]
    for k in range(2, depth + 1):
        mods += [(f"act_{k - 1}", nn.GELU()), (f"linear_{k}", nn.Linear(d, d))]  # nn.GELU(): exact erf
    return nn.Sequential(OrderedDict(mods))


def tokens_per_image(G, v):
    if v["keep"]:
        return v["keep"]
    if v["pool"] in ("average", "max"):
        return (G // v["stride"]) ** 2
    if v["pool"] == "bilinear":
        return math.ceil(G / v["stride"]) ** 2
    return G * G


def pool_2d(feat, G, mode, s):
    """get_2dPool's arithmetic on [N, G*G, C] patch features (row-major): view as (N, C, G, G), pool, back."""
    N, P, C = feat.shape
    assert P == G * G
    x = feat.view(N, G, G, C).permute(0, 3, 1, 2).contiguous()
    if mode == "average":
        x = F.avg_pool2d(x, s)  # kernel s, stride s, padding 0, ceil_mode False
    elif mode == "max":
        x = F.max_pool2d(x, s)
    elif mode == "bilinear":
        Go = math.ceil(G / s)
        x = F.interpolate(x, size=[Go, Go], mode="bilinear", align_corners=False)
    else:
        raise ValueError(mode)
    return x.permute(0, 2, 3, 1).reshape(N, -1, C)


def cls_scores(attn):
    """attn: [N, H, 1+P, 1+P] softmax probabilities of the selected layer; the CLS query's probabilities at the
    patch keys, averaged over the heads: [N, P]."""
    return attn[:, :, 0, 1:].mean(dim=1)


def keep_indices(scores, K):
    """The K highest scores (ties: lower index first: a stable descending sort), in ascending index order."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :K]
    return torch.sort(order, dim=1).values


def reduce_features(feat, attn, G, v):
    if v["keep"]:
        with torch.no_grad():
            keep = keep_indices(cls_scores(attn), v["keep"])
        return torch.gather(feat, 1, keep[:, :, None].expand(-1, -1, feat.shape[-1]))
    if v["pool"]:
        return pool_2d(feat, G, v["pool"], v["stride"])
    return feat


def selected_attention_layer(fl, n_layers):
    """hidden_states[fl] (fl < 0: counted from the end of the n_layers + 1 states) is the output of layer idx - 1."""
    idx = fl if fl >= 0 else n_layers + 1 + fl
    return idx - 1


def patched_get_image_features(self, pixel_values, vision_feature_layer, vision_feature_select_strategy):
    """Replaces LlavaForConditionalGeneration.get_image_features on the instance: tower -> select -> reduce ->
    projector. Keeps what it saw in self._abl_last (for the checks)."""
    v = self._abl_variant
    vc = self.config.vision_config
    G = vc.image_size // vc.patch_size
    out = self.vision_tower(pixel_values, output_hidden_states=True, output_attentions=True)
    feat = out.hidden_states[vision_feature_layer]
    if vision_feature_select_strategy == "default":
        feat = feat[:, 1:]
    else:
        assert vision_feature_select_strategy == "full" and not v["pool"] and not v["keep"]
    attn = out.attentions[selected_attention_layer(vision_feature_layer, vc.num_hidden_layers)]
    reduced = reduce_features(feat, attn, G, v)
    self._abl_last = dict(feat=feat.detach(), attn=attn.detach(), reduced=reduced.detach(),
                          attentions=[a.detach() for a in out.attentions])
    return self.multi_modal_projector(reduced)


def bind_image_features(model, v):
    model._abl_variant = dict(v)
    model.get_image_features = types.MethodType(patched_get_image_features, model)
    return model


def patch_model(model, v):
    vc, tc = model.config.vision_config, model.config.text_config
    model.multi_modal_projector = build_projector(v["projector"], vc.hidden_size, tc.hidden_size)
    return bind_image_features(model, v)


def build_case_config(v, n_tokens):
    c = dict(text=TEXT, vision=v["vision"], rows=ROWS)
    cfg, image_token, pad_token, P = mmg.build_config(c)
    cfg.image_seq_length = n_tokens
    return c, cfg, image_token, pad_token, P


def new_model(cfg):
    m = LlavaForConditionalGeneration._from_config(cfg, attn_implementation="eager", torch_dtype=torch.float32)
    return m.float().train()  # dropout is 0 everywhere: train == eval numerically


# ------------------------------------------------------------------------------------------------------------------
# Explicit loops (float64) for the reduction check
# ------------------------------------------------------------------------------------------------------------------
def loop_reduce(feat, scores, G, v):
    N, P, C = feat.shape
    x = feat.view(N, G, G, C)  # [n, row, col, c]
    if v["keep"]:
        out = []
        for n in range(N):
            sc = scores[n].tolist()
            order = sorted(range(P), key=lambda p: (-sc[p], p))[: v["keep"]]
            out.append(torch.stack([feat[n, p] for p in sorted(order)]))
        return torch.stack(out)
    s = v["stride"]
    if v["pool"] in ("average", "max"):
        Go = G // s
        out = torch.zeros(N, Go * Go, C, dtype=feat.dtype)
        for i in range(Go):
            for j in range(Go):
                blk = x[:, i * s:(i + 1) * s, j * s:(j + 1) * s, :].reshape(N, s * s, C)
                out[:, i * Go + j] = blk.mean(1) if v["pool"] == "average" else blk.max(1).values
        return out
    if v["pool"] == "bilinear":
        Go = math.ceil(G / s)

        def taps(i):
            src = max((i + 0.5) * (G / Go) - 0.5, 0.0)
            i0 = int(math.floor(src))
            return i0, min(i0 + 1, G - 1), src - i0

        out = torch.zeros(N, Go * Go, C, dtype=feat.dtype)
        for i in range(Go):
            y0, y1, ly = taps(i)
            for j in range(Go):
                x0, x1, lx = taps(j)
                out[:, i * Go + j] = ((1 - ly) * (1 - lx) * x[:, y0, x0] + (1 - ly) * lx * x[:, y0, x1]
                                      + ly * (1 - lx) * x[:, y1, x0] + ly * lx * x[:, y1, x1])
        return out
    return feat


# ------------------------------------------------------------------------------------------------------------------
def grads(model, inputs, trainable):
    """mmg.hf_grads, or (no trainable tensor: the identity projector's "projector" set) a forward only."""
    if not any(trainable(n) for n, _ in model.named_parameters()):
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            out = model(**inputs)
        return out.logits.detach().clone(), out.loss.detach().clone(), {}
    return mmg.hf_grads(model, inputs, trainable)


def run_sets(model, inputs):
    return {s: grads(model, inputs, t) for s, t in mmg.TRAINABLE_SETS.items()}


def bitwise_same(ra, rb):
    for s in ra:
        la, lsa, ga = ra[s]
        lb, lsb, gb = rb[s]
        if not (torch.equal(la, lb) and torch.equal(lsa, lsb) and sorted(ga) == sorted(gb)
                and all(torch.equal(ga[n], gb[n]) for n in ga)):
            return False
    return True


def self_check_plain(cfg_full, inputs_full, seed):
    """The patched model with mlp2x_gelu and no reduction against transformers' unpatched model: bit for bit."""
    plain = new_model(cfg_full)
    mmg.init_weights(plain, seed)
    patched = copy.deepcopy(plain)
    sd = {k: v.clone() for k, v in plain.multi_modal_projector.state_dict().items()}
    patch_model(patched, dict(projector="mlp2x_gelu", pool=None, stride=1, keep=0))
    patched.multi_modal_projector.load_state_dict(sd, strict=True)
    assert sorted(n for n, _ in plain.named_parameters()) == sorted(n for n, _ in patched.named_parameters())
    r_plain = run_sets(plain, inputs_full)
    r_patch = run_sets(patched, inputs_full)
    ok = bitwise_same(r_plain, r_patch)
    assert ok, "the patched mlp2x_gelu model is not transformers' model"
    n_grads = sum(len(g) for _, _, g in r_plain.values())
    return dict(bitwise_equal_logits_loss_grads=ok, gradients_compared=n_grads,
                loss=float(r_plain["projector"][1]), image_seq_length=cfg_full.image_seq_length)


def near_misses(last, G, v, sel_layer):
    """What plausible mistakes would change: for the pooling modes the reduced features' max |diff| from the
    golden's (fp32), for pruning the patches kept. Recorded to show the golden tells them apart."""
    feat, red = last["feat"], last["reduced"]
    N, P, C = feat.shape
    res = {}
    if v["pool"]:
        x = feat.view(N, G, G, C).permute(0, 3, 1, 2)
        s, Go = v["stride"], (G // v["stride"] if v["pool"] != "bilinear" else math.ceil(G / v["stride"]))
        back = lambda y: y.permute(0, 2, 3, 1).reshape(N, -1, C)  # noqa: E731
        alts = {}
        if v["pool"] == "average":
            alts["adaptive_avg_pool2d"] = F.adaptive_avg_pool2d(x, Go)
            alts["avg_pool2d_ceil_mode_tokens"] = F.avg_pool2d(x, s, ceil_mode=True).shape[-1] ** 2
        elif v["pool"] == "max":
            alts["adaptive_max_pool2d"] = F.adaptive_max_pool2d(x, Go)
            alts["max_pool2d_ceil_mode_tokens"] = F.max_pool2d(x, s, ceil_mode=True).shape[-1] ** 2
        else:
            alts["align_corners_true"] = F.interpolate(x, size=[Go, Go], mode="bilinear", align_corners=True)
            alts["antialias_true"] = F.interpolate(x, size=[Go, Go], mode="bilinear", align_corners=False,
                                                   antialias=True)
            alts["adaptive_avg_pool2d"] = F.adaptive_avg_pool2d(x, Go)
            alts["scale_factor_1_over_s_tokens"] = F.interpolate(x, scale_factor=1 / s, mode="bilinear").shape[-1] ** 2
        for k, y in alts.items():
            res[k] = y if isinstance(y, int) else float((back(y) - red).abs().max())
    if v["keep"]:
        K = v["keep"]
        att = last["attentions"]
        a = att[sel_layer]
        golden = keep_indices(cls_scores(a), K).tolist()
        alts = {
            "last_layer_attention": cls_scores(att[-1]),
            "previous_layer_attention": cls_scores(att[sel_layer - 1]),
            "renormalised_over_patches_per_head": (a[:, :, 0, 1:] / a[:, :, 0, 1:].sum(-1, keepdim=True)).mean(1),
            "first_head_only": a[:, 0, 0, 1:],
            "patch_queries_mean_attention_received": a[:, :, 1:, 1:].mean(dim=(1, 2)),
        }
        for k, sc in alts.items():
            kept = keep_indices(sc, K).tolist()
            res[k] = dict(kept=kept, same_as_golden=kept == golden)
        score_order = torch.sort(cls_scores(a), dim=1, descending=True, stable=True).indices[:, :K].tolist()
        res["kept_in_score_order_instead_of_index_order"] = dict(order=score_order,
                                                                 same_as_golden=score_order == golden)
    return res


def plain_llava_behaviour(mdir, inputs, logits):
    """What transformers does with the folder: AutoConfig must refuse it; LlavaForConditionalGeneration.from_pretrained
    only warns about the model_type (recorded: missing/unexpected keys, whether forward runs, whether it matches)."""
    res = {}
    try:
        AutoConfig.from_pretrained(mdir)
        res["autoconfig"] = "loaded"
    except (ValueError, KeyError) as e:
        res["autoconfig"] = "refused: " + type(e).__name__
    assert res["autoconfig"] != "loaded"
    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage().replace(mdir, "<model>").split("\n")[0][:200])
    tl = transformers.utils.logging
    tl.disable_default_handler()
    tl.set_verbosity_warning()
    tl.get_logger("transformers").addHandler(handler)
    try:
        m, info = LlavaForConditionalGeneration.from_pretrained(mdir, attn_implementation="eager",
                                                                torch_dtype=torch.float32, output_loading_info=True)
        res["llava_from_pretrained"] = dict(missing_keys=sorted(info["missing_keys"]),
                                            unexpected_keys=sorted(info["unexpected_keys"]))
        try:
            with torch.no_grad():
                o = m(**inputs)
            res["llava_forward"] = ("runs, logits equal to the golden" if torch.equal(o.logits, logits)
                                    else "runs, logits differ from the golden (a different model)")
        except Exception as e:  # noqa: BLE001  (recorded, not raised)
            res["llava_forward"] = "fails: " + type(e).__name__ + ": " + str(e).split("\n")[0][:160]
    except Exception as e:  # noqa: BLE001
        res["llava_from_pretrained"] = "fails: " + type(e).__name__ + ": " + str(e).split("\n")[0][:160]
    finally:
        tl.get_logger("transformers").removeHandler(handler)
        tl.set_verbosity_error()
        tl.enable_default_handler()
    res["llava_from_pretrained_warnings"] = records
    return res


def run_case(name, out_root):
    v = CASES[name]
    seed = v["seed"]
    torch.manual_seed(seed)
    G = v["vision"]["image_size"] // v["vision"]["patch_size"]
    n_tok = tokens_per_image(G, v)
    c, cfg, image_token, pad_token, P_full = build_case_config(v, n_tok)
    assert P_full == G * G
    model = patch_model(new_model(cfg), v)
    mmg.init_weights(model, seed)
    attn_classes = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Attention")})
    assert all("Sdpa" not in a and "Flash" not in a for a in attn_classes), attn_classes
    assert model.language_model.lm_head.weight.data_ptr() != model.language_model.model.embed_tokens.weight.data_ptr()

    d = os.path.join(out_root, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    mdir = os.path.join(d, "model")
    model.save_pretrained(mdir, safe_serialization=True)
    cpath = os.path.join(mdir, "config.json")
    with open(cpath) as fh:
        cj = json.load(fh)
    assert cj["image_seq_length"] == n_tok
    cj["model_type"] = "llava_c"
    cj["architectures"] = ["LlavaCForConditionalGeneration"]
    cj["mm_projector_type"] = v["projector"]
    if v["pool"]:
        cj["mm_spatial_pool_mode"] = v["pool"]
    cj["mm_spatial_pool_stride"] = v["stride"]
    if v["keep"]:
        cj["mm_vision_keep_tokens"] = v["keep"]
    with open(cpath, "w") as fh:  # PretrainedConfig.to_json_file's format
        fh.write(json.dumps(cj, indent=2, sort_keys=True) + "\n")
    added = {k: cj[k] for k in ["model_type", "architectures", "mm_projector_type", "mm_spatial_pool_mode",
                                 "mm_spatial_pool_stride", "mm_vision_keep_tokens", "image_seq_length"] if k in cj}

    inputs, lens = mmg.build_inputs(c, cfg, image_token, pad_token, n_tok, seed)
    save_file({k: t.contiguous() for k, t in inputs.items()}, os.path.join(d, "inputs.safetensors"))

    # ---- goldens
    results = run_sets(model, inputs)
    logits, loss, _ = results["projector"]
    for s, (lg, ls, _) in results.items():
        assert torch.equal(lg, logits) and torch.equal(ls, loss), s
    outputs = {"logits": logits.contiguous(), "loss": loss.reshape(()).contiguous()}
    for s, (_, _, gr) in results.items():
        for n, g in gr.items():
            outputs[f"grad.{s}.{n}"] = g.contiguous()
    save_file(outputs, os.path.join(d, "outputs.safetensors"))

    # ---- checks
    checks = {}
    saved = load_file(os.path.join(mdir, "model.safetensors"))
    pnames = [n for n, _ in model.named_parameters()]
    assert sorted(saved) == sorted(pnames), set(saved) ^ set(pnames)
    depth = projector_depth(v["projector"])
    proj_keys = sorted(k for k in saved if k.startswith("multi_modal_projector."))
    assert proj_keys == sorted(f"multi_modal_projector.linear_{k}.{w}" for k in range(1, depth + 1)
                               for w in ("weight", "bias")), proj_keys
    checks["saved_key_count"] = len(saved)
    checks["projector_keys"] = proj_keys
    re_m = patch_model(new_model(cfg), v)
    re_m.load_state_dict(saved, strict=True)
    with torch.no_grad():
        o2 = re_m(**inputs)
    checks["reload_bitwise_equal"] = bool(torch.equal(o2.logits, logits) and torch.equal(o2.loss, loss))
    assert checks["reload_bitwise_equal"]

    for s, (_, _, gr) in results.items():
        zeros = [n for n, g in gr.items() if not bool(g.abs().sum() > 0)]
        assert not zeros, (s, zeros)
    gp, gpl = results["projector"][2], results["projector+lm"][2]
    checks["projector_grads_equal_across_sets"] = all(torch.equal(gp[n], gpl[n]) for n in gp)
    checks["gradient_counts"] = {s: len(gr) for s, (_, _, gr) in results.items()}

    # the reduction against explicit loops, float64, on this case's real features
    with torch.no_grad():
        model(**inputs)
    last = model._abl_last
    feat64 = last["feat"].double()
    scores32 = cls_scores(last["attn"])
    red64 = reduce_features(feat64, last["attn"].double(), G, v)
    loop64 = loop_reduce(feat64, cls_scores(last["attn"].double()), G, v)
    assert red64.shape == (inputs["pixel_values"].shape[0], n_tok, feat64.shape[-1])
    checks["reduction_vs_loops_max_abs_fp64"] = float((red64 - loop64).abs().max())
    assert checks["reduction_vs_loops_max_abs_fp64"] < 1e-12, checks["reduction_vs_loops_max_abs_fp64"]
    checks["reduced_fp32_vs_fp64_max_abs"] = float((last["reduced"].double() - red64).abs().max())

    # float64 run of the same patched model ("exact" numbers)
    m64 = bind_image_features(copy.deepcopy(model).double(), v)
    in64 = dict(inputs, pixel_values=inputs["pixel_values"].double())
    r64 = run_sets(m64, in64)
    lg64, ls64, _ = r64["projector+lm"]
    fp64 = dict(max_abs_logit_diff=float((logits.double() - lg64).abs().max()),
                loss_rel_diff=float(abs(loss.double() - ls64) / ls64), loss_fp64=float(ls64))
    worst = {}
    for s, (_, _, gr) in results.items():
        wr, wn = 0.0, None
        for n, g in gr.items():
            e = mmg.rel(g, r64[s][2][n])
            if e > wr:
                wr, wn = e, n
        assert wr < 1e-4, (s, wn, wr)
        worst[s] = dict(worst_rel_l2=wr, param=wn)
    fp64["grad_worst_rel_l2"] = worst
    assert fp64["max_abs_logit_diff"] < 1e-4, fp64
    checks["hf_fp32_vs_fp64"] = fp64

    prune = None
    if v["keep"]:
        K = v["keep"]
        kept = keep_indices(scores32, K)
        with torch.no_grad():
            m64(**in64)
        scores64 = cls_scores(m64._abl_last["attn"])
        kept64 = keep_indices(scores64, K)
        assert torch.equal(kept, kept64), (kept, kept64)
        srt = torch.sort(scores32, dim=1, descending=True, stable=True).values
        margins = (srt[:, K - 1] - srt[:, K]).tolist()
        assert min(margins) > PRUNE_MIN_MARGIN, margins
        first_k = list(range(K))
        assert all(k != first_k for k in kept.tolist())
        prune = dict(K=K, kept_indices=kept.tolist(),
                     kept_rows_cols=[[[p // G, p % G] for p in row] for row in kept.tolist()],
                     margin_kth_minus_k1th=margins,
                     kth_score=srt[:, K - 1].tolist(), k1th_score=srt[:, K].tolist(),
                     scores_fp32=[[float(x) for x in row] for row in scores32],
                     scores_fp32_vs_fp64_max_abs=float((scores32.double() - scores64).abs().max()),
                     fp64_keeps_same=True,
                     attention_layer=selected_attention_layer(cfg.vision_feature_layer,
                                                              cfg.vision_config.num_hidden_layers),
                     heads=cfg.vision_config.num_attention_heads)
        checks["prune"] = prune

    checks["near_misses"] = near_misses(last, G, v, selected_attention_layer(cfg.vision_feature_layer,
                                                                             cfg.vision_config.num_hidden_layers))
    cfg_full = copy.deepcopy(cfg)
    cfg_full.image_seq_length = G * G
    inputs_full, _ = mmg.build_inputs(c, cfg_full, image_token, pad_token, G * G, seed)
    checks["self_check_plain_mlp2x"] = self_check_plain(cfg_full, inputs_full, seed)

    checks["transformers_with_this_folder"] = plain_llava_behaviour(mdir, inputs, logits)

    am = inputs["attention_mask"].bool()
    V = cfg.text_config.vocab_size
    stats = dict(
        B=int(inputs["input_ids"].shape[0]), T=int(inputs["input_ids"].shape[1]), V=V,
        n_images=int(inputs["pixel_values"].shape[0]), patch_grid=[G, G], tokens_per_image=n_tok,
        row_lengths=lens, n_label_tokens_counted=int((inputs["labels"][:, 1:] != -100).sum()),
        loss=float(loss), loss_hex=loss.numpy().astype(np.float32).tobytes().hex(),
        max_abs_logit=float(logits.abs().max()), max_abs_logit_real_positions=float(logits[am].abs().max()),
        rms_reduced_features=float(last["reduced"].pow(2).mean().sqrt()), log_V=math.log(V))
    gstats = {s: {n: dict(shape=list(g.shape), max_abs=float(g.abs().max()), l2=float(g.norm()))
                  for n, g in gr.items()} for s, (_, _, gr) in results.items()}
    variant = dict(mm_projector_type=v["projector"], projector_depth=depth, mm_spatial_pool_mode=v["pool"],
                   mm_spatial_pool_stride=v["stride"], mm_vision_keep_tokens=v["keep"],
                   vision_feature_layer=cfg.vision_feature_layer,
                   vision_feature_select_strategy=cfg.vision_feature_select_strategy)
    meta = dict(
        case=name, seed=seed, generator="tools/reference/make_ablation_goldens.py",
        llava_next_commit=NEXT_COMMIT,
        versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                      safetensors=safetensors.__version__, numpy=np.__version__),
        variant=variant, config_json_keys=added, tokens_per_image=n_tok,
        image_token_id=image_token, pad_token_id=pad_token, bos_token_id=BOS, eos_token_id=EOS,
        text=TEXT, vision=v["vision"], attention_classes=attn_classes, loss=float(loss), stats=stats,
        checks=checks, grad_stats=gstats)
    mmg.write_meta(d, meta)
    return meta


def main():
    metas, out = mmg.run_cases(__doc__, CASES, run_case)

    print(f"{'case':<13} {'projector':<11} {'reduction':<14} {'tok':>3} {'T':>3} {'loss':>10} {'HF32 vs 64':>10} "
          f"{'grad rel':>9} {'self-check':>10}")
    for m in metas:
        v, ch = m["variant"], m["checks"]
        red = (f"{v['mm_spatial_pool_mode']} s{v['mm_spatial_pool_stride']}" if v["mm_spatial_pool_mode"]
               else (f"keep {v['mm_vision_keep_tokens']}" if v["mm_vision_keep_tokens"] else "none"))
        gw = max(x["worst_rel_l2"] for x in ch["hf_fp32_vs_fp64"]["grad_worst_rel_l2"].values())
        sc = "bitwise" if ch["self_check_plain_mlp2x"]["bitwise_equal_logits_loss_grads"] else "DIFFERS"
        print(f"{m['case']:<13} {v['mm_projector_type']:<11} {red:<14} {m['tokens_per_image']:>3} "
              f"{m['stats']['T']:>3} {m['loss']:>10.6f} {ch['hf_fp32_vs_fp64']['max_abs_logit_diff']:>10.2e} "
              f"{gw:>9.2e} {sc:>10}")
    for m in metas:
        print(f"  {m['case']}: config.json " + json.dumps(m["config_json_keys"]))
        print(f"    gradients: {m['checks']['gradient_counts']}; transformers: "
              + json.dumps(m["checks"]["transformers_with_this_folder"]))
        pr = m["checks"].get("prune")
        if pr:
            for i, (k, mg) in enumerate(zip(pr["kept_indices"], pr["margin_kth_minus_k1th"])):
                print(f"    image {i}: kept {k}; score K-th {pr['kth_score'][i]:.6f} (K+1)-th "
                      f"{pr['k1th_score'][i]:.6f}, margin {mg:.3e}")
            print(f"    scores fp32 vs fp64 max |diff| {pr['scores_fp32_vs_fp64_max_abs']:.2e}")
    print()
    mmg.print_sizes(out, [m["case"] for m in metas])


if __name__ == "__main__":
    main()
