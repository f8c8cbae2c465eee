#!/usr/bin/env python3
"""Golden data for llava.c's model with a SigLIP vision tower, made with Hugging Face transformers 4.46.3.

Reference: transformers' own ``LlavaForConditionalGeneration`` (fp32, eager attention), unpatched, whose
``vision_config`` is a ``SiglipVisionConfig`` (model_type "siglip_vision_model"), so that AutoModel.from_config builds
``SiglipVisionModel`` as the tower. Nothing is replaced; config.json is what save_pretrained writes ("model_type":
"llava"), and from_pretrained loads the folder back to the same numbers.

SigLIP's vision forward in transformers 4.46.3 (models/siglip/modeling_siglip.py, read in the pinned venv; each
statement is also checked numerically by this script against an independent re-implementation, ``spec_tower``):
  D = hidden_size, H = num_attention_heads, dh = D / H, p = patch_size, G = image_size / p, P = G * G.
  SiglipVisionEmbeddings: patch_embedding = Conv2d(3, D, kernel p, stride p, padding "valid") WITH a bias
    (nn.Conv2d's default; CLIP's has bias=False); patches row-major (token t = row * G + col; flatten(2).transpose),
    x[t] = W . pixels of patch t (weight [D, 3, p, p], in (channel, y, x) order) + bias;
    + position_embedding.weight [P, D] (num_positions = num_patches: P rows, no "+1"), row t added to token t
    (position_ids = arange(P), a non-persistent buffer, not saved). NO class token (no class_embedding parameter)
    and NO pre-layernorm (SiglipVisionTransformer has none; CLIP's pre_layrnorm does not exist here).
    hidden_states[0] = these P embeddings. (interpolate_pos_encoding, off by default, is not used by Llava.)
  SiglipEncoderLayer (pre-norm), for each of the L layers:
    r = h; h = layer_norm1(h) (nn.LayerNorm, eps = layer_norm_eps, 1e-6 by default, with weight and bias);
    q, k, v = q_proj(h), k_proj(h), v_proj(h) (Linear D->D, all WITH biases), split into H heads of dh;
    A = softmax((q . k^T) * dh^-0.5) over all P keys (no mask), computed as
    softmax(..., dtype=torch.float32).to(q.dtype) (so even a float64 model rounds A to fp32; CLIP's is a plain
    softmax); DIFFERENT from CLIP in rounding only: SigLIP multiplies the product q.k^T by the scale
    (matmul(q, k^T) * scale), CLIP scales q before the product (q_proj(h) * scale);
    o = out_proj(A . v, heads concatenated) (Linear D->D with bias); h = r + o;
    r = h; h = layer_norm2(h); h = fc2(act(fc1(h))) (fc1 D->intermediate, fc2 intermediate->D, both with biases),
    act = ACT2FN[hidden_act], default "gelu_pytorch_tanh" = PytorchGELUTanh = F.gelu(x, approximate="tanh")
    = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (not erf GELU, not quick_gelu); h = r + h.
  hidden_states (output_hidden_states=True, SiglipEncoder): a tuple of L + 1 tensors [N, P, D]: hidden_states[0] the
    embeddings, hidden_states[i] the output of layer i - 1 (0-based), hidden_states[L] = hidden_states[-1] the last
    layer's output BEFORE post_layernorm.
  After the encoder, SiglipVisionTransformer applies post_layernorm (LayerNorm, eps layer_norm_eps) to give
    last_hidden_state, then (use_head: true unless the config has "vision_use_head": false; SiglipVisionConfig has no
    such key, so the tiny configs here have a head) the attention-pooling head: head.probe [1,1,D],
    head.attention (torch.nn.MultiheadAttention: in_proj_weight [3D, D], in_proj_bias [3D], out_proj.{weight,bias}),
    head.layernorm, head.mlp.fc1/fc2. Both run in every forward but LLaVA reads hidden_states only, so neither reaches
    the output: no gradient, and a C implementation need not compute (or load) them.
  LLaVA (models/llava/modeling_llava.py get_image_features): feat = hidden_states[vision_feature_layer]; strategy
    "default": feat[:, 1:] (drops the first token: for CLIP the CLS, for SigLIP the top-left PATCH (row 0, col 0),
    transformers does not look at whether a CLS exists), "full": feat unchanged; then LlavaMultiModalProjector
    (linear_1 Dv->d, GELU erf (projector_hidden_act "gelu"), linear_2 d->d, with biases).
  Easy to miss: the score scaling order (after the product, unlike CLIP), the softmax's fp32 upcast, the unused
  head / post_layernorm still being computed, and "default" dropping a patch. And one trap outside the model:
  4.46.3's LlavaProcessor (processing_llava.py, lines 150-152) expands <image> to G*G + 1 tokens, minus 1 for
  "default", i.e. it assumes a CLS token: for SigLIP it gives 26 ("full") and 25 ("default") where the model makes
  25 and 24 features, and forward then raises "Image features and image tokens do not match" (checked). These
  goldens' input_ids carry the model's counts (image_seq_length 25 / 24).

Cases (written under ``<out>/<case>/``; the same weights (seed 401), images and text in both):
  siglip_full     vision_feature_select_strategy "full", vision_feature_layer -1 (as llava-onevision's llava-hf
                  configs): all 25 patch tokens of hidden_states[3] (layer 2's output, before post_layernorm); every
                  encoder layer used; image_seq_length 25.
  siglip_default  strategy "default", vision_feature_layer -2: hidden_states[2][:, 1:] (layer 1's output, patch 0
                  dropped): 24 tokens (patches 1..24, row-major); layer 2 unused; image_seq_length 24.
Common: SiglipVisionConfig hidden 32, 2 heads of 16, 3 layers, intermediate 48, image 20 in 4x4 patches (G = 5,
P = 25), layer_norm_eps 1e-6, gelu_pytorch_tanh; projector mlp2x_gelu (transformers' LlavaMultiModalProjector); the
language model of make_ablation_goldens.py (LLaMA, hidden 64, 2 heads of 32, 2 layers, intermediate 64, vocab 160,
untied head; image id 158, pad id 159); make_model_goldens.py's rows (image after BOS, text only, image in the
middle), weights (init_weights: every tensor redrawn, the head's included) and input builder, which this script
imports (with make_ablation_goldens.py's sizes and its run_sets).

Written under ``<out>/<case>/``, the layout of make_model_goldens.py (tests/test_model_parity.c reads it unchanged):
  model/config.json, model/generation_config.json, model/model.safetensors   save_pretrained's, unchanged (legacy
                         names: vision_tower.vision_model.*, multi_modal_projector.linear_{1,2}.*, language_model.*)
  inputs.safetensors     input_ids I64 [B,T], pixel_values F32 [2,3,20,20], attention_mask I64, labels I64
  outputs.safetensors    logits F32 [B,T,V], loss F32 [], grad.projector.<name> (4), grad.projector+lm.<name> (25);
                         the vision tower is frozen in both sets
  meta.json              settings, tokens per image, loss, the saved parameter names, the checks below, versions

Checks (each asserted; the numbers go to meta.json and are printed):
  * model.safetensors holds exactly the model's named_parameters (no class_embedding, no pre_layrnorm, no
    position_ids buffer; patch_embedding.bias present; position_embedding [P, D]; head.* present); the list is
    recorded; AutoConfig reads vision_config as SiglipVisionConfig and from_pretrained reloads to the same logits
    and loss bit for bit;
  * hidden_states[0] equals conv(pixels) + bias + position_embedding (bit for bit with the module's own conv, and
    within fp32 rounding of an unfold-and-matmul), has P rows (no CLS), and hidden_states[-1] is not
    last_hidden_state (post_layernorm of it is, bit for bit);
  * spec_tower (this docstring's statements, torch ops written out, tanh GELU by its formula) reproduces every
    hidden state: in fp64 against the fp64 model (softmax kept in fp64) to ~1e-15, in fp32 to fp32 rounding; near
    misses (erf GELU, no conv bias, post_layernorm applied to the selected layer, another layer, another drop than
    the first token) are measured and recorded; CLIP's q-first scaling gives the same bits here (dh^-0.5 = 0.25);
  * get_image_features equals the projector of the selected slice bit for bit; the tokens per image are 25 / 24;
  * every trainable tensor has a nonzero gradient; with EVERY parameter trainable, the ones without a gradient are
    exactly head.*, post_layernorm.* and (siglip_default) encoder.layers.2.* (listed);
  * the same model in float64 gives the "exact" numbers: HF fp32's max |logit| error, loss error and worst
    per-tensor gradient rel-L2 error are recorded (bounded by 1e-4).

Run (from the repository root, CPU only, a few seconds):
    /tmp/refvenv/bin/python tools/reference/make_siglip_goldens.py
Options: --out DIR (default tests/data/golden/model), --cases siglip_full,siglip_default (the default).
Pinned versions: tools/reference/requirements-ablation.txt (torch 2.5.1, transformers 4.46.3, safetensors 0.4.5,
numpy 2.1.3; the model venv), which this script shares with make_ablation_goldens.py. Two runs give byte-identical
files (one thread, deterministic algorithms).
"""

import contextlib
import copy
import json
import math
import os
import shutil
import struct
import sys
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_goldens as mmg  # noqa: E402  (sets CUDA_VISIBLE_DEVICES="" before torch loads)
import make_ablation_goldens as mag  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, LlavaConfig, LlavaForConditionalGeneration, SiglipVisionConfig  # noqa: E402

SEED = 401
SIGLIP = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=3,
              num_attention_heads=2, num_channels=3, image_size=20, patch_size=4, layer_norm_eps=1e-6,
              hidden_act="gelu_pytorch_tanh", attention_dropout=0.0)
CASES = OrderedDict([
    ("siglip_full", dict(strategy="full", layer=-1)),
    ("siglip_default", dict(strategy="default", layer=-2)),
])
VP = "vision_tower.vision_model."
BOS, EOS = mmg.BOS, mmg.EOS


def build_case_config(v):
    """make_model_goldens.build_config's text config (make_ablation_goldens' sizes) under a SigLIP tower."""
    c = dict(text=mag.TEXT, vision=mag.VISION, rows=mag.ROWS)
    base, image_token, pad_token, _ = mmg.build_config(c)  # its CLIP vision_config is discarded
    G = SIGLIP["image_size"] // SIGLIP["patch_size"]
    n_tok = G * G - (1 if v["strategy"] == "default" else 0)
    cfg = LlavaConfig(vision_config=dict(SIGLIP), text_config=base.text_config.to_dict(),
                      image_token_index=image_token, projector_hidden_act="gelu",
                      vision_feature_select_strategy=v["strategy"], vision_feature_layer=v["layer"],
                      image_seq_length=n_tok, pad_token_id=pad_token, tie_word_embeddings=False)
    assert isinstance(cfg.vision_config, SiglipVisionConfig)
    return c, cfg, image_token, pad_token, G, n_tok


# ------------------------------------------------------------------------------------------------------------------
# Independent statement of SigLIP's tower (the docstring), with switches for the near misses
# ------------------------------------------------------------------------------------------------------------------
def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def spec_tower(P, vc, pix, dtype, act="tanh", conv_bias=True, q_first=False):
    """Returns (hidden_states list of L + 1 [N, P, D], last_hidden_state = post_layernorm(hidden_states[-1]))."""
    f = lambda k: P[VP + k].to(dtype)  # noqa: E731
    pix = pix.to(dtype)
    N, p, D = pix.shape[0], vc.patch_size, vc.hidden_size
    G = vc.image_size // p
    H = vc.num_attention_heads
    dh = D // H

    def ln(x, pre):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + vc.layer_norm_eps) * f(pre + ".weight") + f(pre + ".bias")

    def lin(x, pre):
        return x @ f(pre + ".weight").T + f(pre + ".bias")

    x = pix.reshape(N, 3, G, p, G, p).permute(0, 2, 4, 1, 3, 5).reshape(N, G * G, 3 * p * p)  # (c, y, x) per patch
    h = x @ f("embeddings.patch_embedding.weight").reshape(D, -1).T
    if conv_bias:
        h = h + f("embeddings.patch_embedding.bias")
    h = h + f("embeddings.position_embedding.weight")[None]
    hs = [h]
    for li in range(vc.num_hidden_layers):
        lp = f"encoder.layers.{li}."
        r = h
        xx = ln(h, lp + "layer_norm1")
        q = lin(xx, lp + "self_attn.q_proj").reshape(N, -1, H, dh).transpose(1, 2)
        k = lin(xx, lp + "self_attn.k_proj").reshape(N, -1, H, dh).transpose(1, 2)
        vv = lin(xx, lp + "self_attn.v_proj").reshape(N, -1, H, dh).transpose(1, 2)
        S = (q * dh ** -0.5) @ k.transpose(-1, -2) if q_first else (q @ k.transpose(-1, -2)) * dh ** -0.5
        o = (torch.softmax(S, -1) @ vv).transpose(1, 2).reshape(N, -1, D)
        h = r + lin(o, lp + "self_attn.out_proj")
        r = h
        xx = ln(h, lp + "layer_norm2")
        m = lin(xx, lp + "mlp.fc1")
        m = gelu_tanh(m) if act == "tanh" else gelu_erf(m)
        h = r + lin(m, lp + "mlp.fc2")
        hs.append(h)
    return hs, ln(h, "post_layernorm")


@contextlib.contextmanager
def true_fp64_softmax():
    """SiglipAttention (and LlamaAttention) eager call softmax(..., dtype=torch.float32).to(q.dtype): a float64 model
    still rounds its attention probabilities to fp32. Inside this block softmax keeps float64 input in float64, so the
    float64 runs are float64 throughout (the "exact" numbers). nn.functional.softmax is looked up at call time."""
    orig = torch.nn.functional.softmax

    def softmax(input, dim=None, _stacklevel=3, dtype=None):  # noqa: A002  (torch's signature)
        if dtype is torch.float32 and input.dtype == torch.float64:
            dtype = None
        return orig(input, dim=dim, _stacklevel=_stacklevel, dtype=dtype)

    torch.nn.functional.softmax = softmax
    try:
        yield
    finally:
        torch.nn.functional.softmax = orig


def select(hs, cfg):
    feat = hs[cfg.vision_feature_layer]
    return feat[:, 1:] if cfg.vision_feature_select_strategy == "default" else feat


def maxabs(a, b):
    return float((a.double() - b.double()).abs().max())


# ------------------------------------------------------------------------------------------------------------------
def tower_checks(model, cfg, pix, G):
    """hidden_states[0], hidden_states[-1] vs last_hidden_state, spec_tower in fp32 / fp64, the near misses."""
    vc = cfg.vision_config
    tower = model.vision_tower
    L = vc.num_hidden_layers
    res = {}
    with torch.no_grad():
        out = tower(pix, output_hidden_states=True)
        hs = out.hidden_states
        assert len(hs) == L + 1, len(hs)
        assert all(tuple(h.shape) == (pix.shape[0], G * G, vc.hidden_size) for h in hs)
        emb = tower.vision_model.embeddings
        conv = emb.patch_embedding(pix).flatten(2).transpose(1, 2)
        h0_mod = conv + emb.position_embedding.weight[None]
        res["hidden_states_0_rows"] = int(hs[0].shape[1])
        res["hidden_states_0_equals_conv_plus_bias_plus_position_bitwise"] = bool(torch.equal(hs[0], h0_mod))
        assert res["hidden_states_0_equals_conv_plus_bias_plus_position_bitwise"]
        Wp = emb.patch_embedding.weight
        unf = F.unfold(pix, vc.patch_size, stride=vc.patch_size).transpose(1, 2)  # [N, P, 3*p*p], (c, y, x)
        h0_mm = unf @ Wp.reshape(vc.hidden_size, -1).T + emb.patch_embedding.bias + emb.position_embedding.weight[None]
        res["hidden_states_0_vs_unfold_matmul_max_abs"] = maxabs(hs[0], h0_mm)
        assert res["hidden_states_0_vs_unfold_matmul_max_abs"] < 1e-5
        res["patch_embedding_has_bias"] = emb.patch_embedding.bias is not None
        res["position_embedding_rows"] = int(emb.position_embedding.weight.shape[0])
        res["has_class_embedding"] = hasattr(emb, "class_embedding")
        res["has_pre_layernorm"] = any("pre_layrnorm" in n or "pre_layernorm" in n
                                       for n, _ in tower.named_parameters())
        assert res["patch_embedding_has_bias"] and res["position_embedding_rows"] == G * G
        assert not res["has_class_embedding"] and not res["has_pre_layernorm"]
        res["uses_head"] = bool(tower.vision_model.use_head)
        res["attention_classes"] = sorted({type(m).__name__ for m in tower.modules()
                                           if type(m).__name__.endswith("Attention")})
        res["activation_class"] = type(tower.vision_model.encoder.layers[0].mlp.activation_fn).__name__
        post = tower.vision_model.post_layernorm(hs[-1])
        res["post_layernorm_of_hidden_states_last_equals_last_hidden_state_bitwise"] = bool(
            torch.equal(post, out.last_hidden_state))
        res["hidden_states_last_vs_last_hidden_state_max_abs"] = maxabs(hs[-1], out.last_hidden_state)
        assert res["post_layernorm_of_hidden_states_last_equals_last_hidden_state_bitwise"]
        assert res["hidden_states_last_vs_last_hidden_state_max_abs"] > 0.1

        P32 = {k: t.detach() for k, t in model.state_dict().items()}
        s32, last32 = spec_tower(P32, vc, pix, torch.float32)
        res["spec_fp32_vs_hf_fp32_hidden_states_max_abs"] = [maxabs(a, b) for a, b in zip(s32, hs)]
        res["spec_fp32_vs_hf_fp32_last_hidden_state_max_abs"] = maxabs(last32, out.last_hidden_state)
        assert max(res["spec_fp32_vs_hf_fp32_hidden_states_max_abs"]) < 1e-5

        t64 = copy.deepcopy(tower).double()
        out64_asis = t64(pix.double(), output_hidden_states=True)
        with true_fp64_softmax():
            out64 = t64(pix.double(), output_hidden_states=True)
        s64, last64 = spec_tower(P32, vc, pix, torch.float64)
        res["hf_fp64_fp32_softmax_vs_fp64_softmax_hidden_states_max_abs"] = [
            maxabs(a, b) for a, b in zip(out64_asis.hidden_states, out64.hidden_states)]
        res["spec_fp64_vs_hf_fp64_hidden_states_max_abs"] = [maxabs(a, b) for a, b in zip(s64, out64.hidden_states)]
        res["spec_fp64_vs_hf_fp64_last_hidden_state_max_abs"] = maxabs(last64, out64.last_hidden_state)
        assert max(res["spec_fp64_vs_hf_fp64_hidden_states_max_abs"]) < 1e-12
        assert res["spec_fp64_vs_hf_fp64_last_hidden_state_max_abs"] < 1e-12
        res["hf_fp32_vs_fp64_hidden_states_max_abs"] = [maxabs(a, b) for a, b in zip(hs, out64.hidden_states)]

        # near misses, fp64, on the selected features (what the projector sees)
        sel = select(s64, cfg)
        nm = {}
        nm["gelu_erf_instead_of_tanh"] = maxabs(select(spec_tower(P32, vc, pix, torch.float64, act="erf")[0], cfg),
                                                sel)
        nm["patch_conv_without_bias"] = maxabs(select(spec_tower(P32, vc, pix, torch.float64,
                                                                 conv_bias=False)[0], cfg), sel)
        # dh = 16: the scale 0.25 is a power of two, so the order of the scaling changes no bit here (nor for
        # siglip-base's dh 64); with so400m's dh 72 (scale not a power of two) it would change the last bits only
        s32_qf = spec_tower(P32, vc, pix, torch.float32, q_first=True)[0]
        res["clip_q_first_scaling_spec_fp32_bitwise_equal_here"] = all(torch.equal(a, b) for a, b in zip(s32_qf, s32))
        sel_post = t64.vision_model.post_layernorm(s64[cfg.vision_feature_layer])
        if cfg.vision_feature_select_strategy == "default":
            sel_post = sel_post[:, 1:]
        nm["post_layernorm_applied_to_selected_layer"] = maxabs(sel_post, sel)
        if cfg.vision_feature_select_strategy == "default":
            nm["last_patch_dropped_instead_of_first"] = maxabs(s64[cfg.vision_feature_layer][:, :-1], sel)
            nm["hidden_states_minus_1_instead_of_minus_2"] = maxabs(s64[-1][:, 1:], sel)
        else:
            nm["hidden_states_minus_2_instead_of_minus_1"] = maxabs(s64[-2], sel)
        for k in ("gelu_erf_instead_of_tanh", "patch_conv_without_bias", "post_layernorm_applied_to_selected_layer"):
            assert nm[k] > 1e-4, (k, nm[k])
        res["near_misses_selected_features_fp64_max_abs"] = nm
        res["rms_selected_features"] = float(select(hs, cfg).pow(2).mean().sqrt())
        res["rms_hidden_states"] = [float(h.pow(2).mean().sqrt()) for h in hs]
    return res


def no_gradient_params(model, inputs):
    """Every parameter trainable: the ones whose gradient is None or all zeros."""
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None
    model(**inputs).loss.backward()
    out = sorted(n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0))
    for p in model.parameters():
        p.requires_grad_(False)
        p.grad = None
    return out


def run_case(name, out_root):
    v = CASES[name]
    torch.manual_seed(SEED)
    c, cfg, image_token, pad_token, G, n_tok = build_case_config(v)
    model = mag.new_model(cfg)
    mmg.init_weights(model, SEED)
    attn_classes = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Attention")})
    assert all("Sdpa" not in a and "Flash" not in a for a in attn_classes), attn_classes
    assert "SiglipAttention" in attn_classes, attn_classes
    assert model.language_model.lm_head.weight.data_ptr() != model.language_model.model.embed_tokens.weight.data_ptr()

    d = os.path.join(out_root, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    mdir = os.path.join(d, "model")
    model.save_pretrained(mdir, safe_serialization=True)
    with open(os.path.join(mdir, "config.json")) as fh:
        cj = json.load(fh)
    assert cj["image_seq_length"] == n_tok and cj["model_type"] == "llava"
    assert cj["vision_config"]["model_type"] == "siglip_vision_model"

    inputs, lens = mmg.build_inputs(c, cfg, image_token, pad_token, n_tok, SEED)
    save_file({k: t.contiguous() for k, t in inputs.items()}, os.path.join(d, "inputs.safetensors"))

    # ---- goldens
    results = mag.run_sets(model, inputs)
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
    vision_keys = sorted(k for k in saved if k.startswith("vision_tower."))
    L = cfg.vision_config.num_hidden_layers
    per_layer = sorted(f"{VP}encoder.layers.{li}.{s}.{w}" for li in range(L) for w in ("weight", "bias")
                       for s in ("layer_norm1", "layer_norm2", "self_attn.q_proj", "self_attn.k_proj",
                                 "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"))
    head = sorted(VP + "head." + s for s in ("probe", "attention.in_proj_weight", "attention.in_proj_bias",
                                              "attention.out_proj.weight", "attention.out_proj.bias",
                                              "layernorm.weight", "layernorm.bias", "mlp.fc1.weight",
                                              "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"))
    expect = sorted([VP + "embeddings.patch_embedding.weight", VP + "embeddings.patch_embedding.bias",
                     VP + "embeddings.position_embedding.weight", VP + "post_layernorm.weight",
                     VP + "post_layernorm.bias"] + per_layer + head)
    assert vision_keys == expect, set(vision_keys) ^ set(expect)
    checks["saved_key_count"] = len(saved)
    checks["vision_key_count"] = len(vision_keys)
    checks["vision_parameters_saved"] = {k: list(saved[k].shape) for k in vision_keys}
    checks["other_parameters_saved"] = {k: list(saved[k].shape) for k in sorted(saved) if k not in vision_keys}
    checks["all_saved_float32"] = all(t.dtype == torch.float32 for t in saved.values())
    assert checks["all_saved_float32"]

    ac = AutoConfig.from_pretrained(mdir)
    checks["autoconfig"] = dict(model_type=ac.model_type, vision_config_class=type(ac.vision_config).__name__,
                                vision_use_head_in_config=hasattr(ac.vision_config, "vision_use_head"))
    assert checks["autoconfig"]["vision_config_class"] == "SiglipVisionConfig"
    re_m = LlavaForConditionalGeneration.from_pretrained(mdir, attn_implementation="eager", torch_dtype=torch.float32)
    re_m.train()
    checks["reloaded_tower_class"] = type(re_m.vision_tower).__name__
    with torch.no_grad():
        o2 = re_m(**inputs)
    checks["reload_bitwise_equal"] = bool(torch.equal(o2.logits, logits) and torch.equal(o2.loss, loss))
    assert checks["reload_bitwise_equal"]
    del re_m

    for s, (_, _, gr) in results.items():
        zeros = [n for n, g in gr.items() if not bool(g.abs().sum() > 0)]
        assert not zeros, (s, zeros)
    gp, gpl = results["projector"][2], results["projector+lm"][2]
    checks["projector_grads_equal_across_sets"] = all(torch.equal(gp[n], gpl[n]) for n in gp)
    checks["gradient_counts"] = {s: len(gr) for s, (_, _, gr) in results.items()}

    # the tower
    pix = inputs["pixel_values"]
    checks["tower"] = tower_checks(model, cfg, pix, G)
    with torch.no_grad():
        hs = model.vision_tower(pix, output_hidden_states=True).hidden_states
        feats = model.get_image_features(pix, cfg.vision_feature_layer, cfg.vision_feature_select_strategy)
        ref = model.multi_modal_projector(select(hs, cfg))
    checks["image_features_shape"] = list(feats.shape)
    checks["image_features_equal_projector_of_selected_slice_bitwise"] = bool(torch.equal(feats, ref))
    assert checks["image_features_equal_projector_of_selected_slice_bitwise"] and feats.shape[1] == n_tok
    sel_layer_index = cfg.vision_feature_layer % (L + 1)
    checks["selected"] = dict(
        hidden_states_index=cfg.vision_feature_layer, hidden_states_index_nonnegative=sel_layer_index,
        output_of_encoder_layer_0_based=sel_layer_index - 1,
        tokens=("patches 1..24 (patch 0, top-left, dropped: no CLS to drop)"
                if cfg.vision_feature_select_strategy == "default" else "patches 0..24 (all)"),
        unused_encoder_layers=list(range(sel_layer_index, L)))
    n_proc = G * G + 1 - (1 if cfg.vision_feature_select_strategy == "default" else 0)  # processing_llava.py
    in_proc, _ = mmg.build_inputs(c, cfg, image_token, pad_token, n_proc, SEED)
    try:
        with torch.no_grad():
            model(**in_proc)
        got = "runs"
    except ValueError as e:
        got = "ValueError: " + str(e).split("\n")[0][:120]
    assert got.startswith("ValueError: Image features and image tokens do not match"), got
    checks["llava_processor_4_46_3_token_count"] = dict(tokens_per_image=n_proc, forward_with_that_count=got)

    # which parameters get no gradient at all (everything trainable)
    nog = no_gradient_params(model, inputs)
    expect_nog = sorted(n for n in pnames if n.startswith(VP + "head.") or n.startswith(VP + "post_layernorm.")
                        or any(n.startswith(f"{VP}encoder.layers.{li}.") for li in range(sel_layer_index, L)))
    assert nog == expect_nog, set(nog) ^ set(expect_nog)
    checks["params_without_gradient_all_trainable"] = nog
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, logits)

    # float64 run of the same model ("exact" numbers)
    m64 = copy.deepcopy(model).double()
    in64 = dict(inputs, pixel_values=inputs["pixel_values"].double())
    r64_asis = mag.run_sets(m64, in64)
    with true_fp64_softmax():
        r64 = mag.run_sets(m64, in64)
    lg64, ls64, _ = r64["projector+lm"]
    am = inputs["attention_mask"].bool()
    fp64 = dict(max_abs_logit_diff=maxabs(logits, lg64), max_abs_logit_diff_real_positions=maxabs(logits[am], lg64[am]),
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
    fp64["note"] = ("float64 throughout (true_fp64_softmax); transformers' own .double() model rounds the attention "
                    "probabilities to fp32 (SiglipAttention, LlamaAttention): its logits differ from these by "
                    "max_abs_logit_diff_hf_double_as_is_vs_true_fp64")
    fp64["max_abs_logit_diff_hf_double_as_is_vs_true_fp64"] = maxabs(r64_asis["projector+lm"][0], lg64)
    assert fp64["max_abs_logit_diff"] < 1e-4, fp64
    checks["hf_fp32_vs_fp64"] = fp64

    V = cfg.text_config.vocab_size
    stats = dict(
        B=int(inputs["input_ids"].shape[0]), T=int(inputs["input_ids"].shape[1]), V=V,
        n_images=int(pix.shape[0]), patch_grid=[G, G], tokens_per_image=n_tok, row_lengths=lens,
        n_label_tokens_counted=int((inputs["labels"][:, 1:] != -100).sum()),
        loss=float(loss), loss_hex=loss.numpy().astype(np.float32).tobytes().hex(),
        max_abs_logit=float(logits.abs().max()), max_abs_logit_real_positions=float(logits[am].abs().max()),
        rms_image_features=float(feats.pow(2).mean().sqrt()), log_V=math.log(V))
    gstats = {s: {n: dict(shape=list(g.shape), max_abs=float(g.abs().max()), l2=float(g.norm()))
                  for n, g in gr.items()} for s, (_, _, gr) in results.items()}
    vkeys = ["model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_channels", "image_size", "patch_size", "layer_norm_eps", "hidden_act", "attention_dropout"]
    meta = dict(
        case=name, seed=SEED, generator="tools/reference/make_siglip_goldens.py",
        versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                      safetensors=safetensors.__version__, numpy=np.__version__),
        config_json=dict({k: cj[k] for k in ["model_type", "architectures", "image_seq_length", "image_token_index",
                                              "pad_token_id", "projector_hidden_act", "vision_feature_layer",
                                              "vision_feature_select_strategy", "tie_word_embeddings"]},
                         vision_config={k: cj["vision_config"].get(k, "<absent>")
                                        for k in vkeys + ["vision_use_head"]}),
        tokens_per_image=n_tok, image_token_id=image_token, pad_token_id=pad_token, bos_token_id=BOS,
        eos_token_id=EOS, text=mag.TEXT, vision=SIGLIP, attention_classes=attn_classes, loss=float(loss),
        stats=stats, checks=checks, grad_stats=gstats)
    mmg.write_meta(d, meta)
    return meta


def main():
    metas, out = mmg.run_cases(__doc__, CASES, run_case)

    print(f"{'case':<15} {'strategy':<8} {'layer':>5} {'tok':>3} {'T':>3} {'loss':>11} {'HF32 vs 64':>10} "
          f"{'grad rel':>9} {'spec64 hs':>9}")
    for m in metas:
        cj, ch = m["config_json"], m["checks"]
        gw = max(x["worst_rel_l2"] for x in ch["hf_fp32_vs_fp64"]["grad_worst_rel_l2"].values())
        sp = max(ch["tower"]["spec_fp64_vs_hf_fp64_hidden_states_max_abs"])
        print(f"{m['case']:<15} {cj['vision_feature_select_strategy']:<8} {cj['vision_feature_layer']:>5} "
              f"{m['tokens_per_image']:>3} {m['stats']['T']:>3} {m['loss']:>11.8f} "
              f"{ch['hf_fp32_vs_fp64']['max_abs_logit_diff']:>10.2e} {gw:>9.2e} {sp:>9.2e}")
    for m in metas:
        ch = m["checks"]
        bits = struct.unpack("<I", bytes.fromhex(m["stats"]["loss_hex"]))[0]
        print(f"  {m['case']}: loss {m['loss']!r} (0x{bits:08X}); "
              f"gradients {ch['gradient_counts']}; selected {json.dumps(ch['selected'])}")
        print(f"    no gradient with everything trainable ({len(ch['params_without_gradient_all_trainable'])}): "
              + ", ".join(n.replace(VP, "") for n in ch["params_without_gradient_all_trainable"]))
        print("    near misses (fp64 max |diff| of the selected features): "
              + json.dumps(ch["tower"]["near_misses_selected_features_fp64_max_abs"]))
        tw = ch["tower"]
        print(f"    hidden_states[-1] vs last_hidden_state {tw['hidden_states_last_vs_last_hidden_state_max_abs']:.3g}"
              f"; spec fp32 vs HF fp32 {max(tw['spec_fp32_vs_hf_fp32_hidden_states_max_abs']):.2e}")
    print("  vision parameters saved: " + ", ".join(
        f"{k.replace(VP, '')} {s}" for k, s in metas[0]["checks"]["vision_parameters_saved"].items()))
    print()
    mmg.print_sizes(out, [m["case"] for m in metas])


if __name__ == "__main__":
    main()
