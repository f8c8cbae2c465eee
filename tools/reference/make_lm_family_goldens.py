#!/usr/bin/env python3
"""Golden data for llava.c's model on other language-model families (Qwen2, Llama 3.1 rope, Mistral), made with
Hugging Face transformers 4.46.3.

The same files, names and layout as make_model_goldens.py (which this script imports), so the C parity test reads
them unchanged. For each config a random fp32 ``LlavaForConditionalGeneration`` (eager attention, fixed seeds) with
make_model_goldens.py's CLIP tower and projector (quick_gelu, vision_feature_layer -2, 16x16 images in 4x4 patches,
the last vision layer unused, gelu projector; width 32 to stay small) and a language model of another family:

  tinyqwen2    Qwen2ForCausalLM (model_type "qwen2"): q/k/v biases (o_proj none), 4 query heads sharing 2 key/value
               heads of 16, tie_word_embeddings true (lm_head IS embed_tokens: no lm_head tensor is saved and the one
               gradient, grad.*.language_model.model.embed_tokens.weight, holds both uses), rope_theta 1e6,
               rms_norm_eps 1e-6, use_sliding_window false (4.46.3 then stores sliding_window null).
  tinyllama3   LlamaForCausalLM with Llama 3.1's rope: rope_theta 500000, rope_scaling {"rope_type": "llama3",
               "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 48};
               2 query heads sharing 1 key/value head of 32. With head_dim 32 and theta 5e5 the 16 wavelengths
               2*pi/inv_freq are 6.3, 14.3, 32.5, 73.9, ...: one is kept (< 48/4 = 12), two are smoothed
               (in [12, 48]) and thirteen divided by 8 (> 48); the longest row is 58 tokens (positions 0..57, beyond
               original_max_position_embeddings).
  tinymistral  MistralForCausalLM (model_type "mistral"): 4 query heads sharing 2 key/value heads of 16,
               sliding_window 8 (rows of 18 to 31 tokens), rope_theta 1e4. In 4.46.3 the window is applied in the
               4D mask that MistralModel._update_causal_mask builds for the eager path
               (_prepare_4d_causal_attention_mask_with_cache_position): key j is visible to query i iff
               i - sliding_window < j <= i (and attention_mask[j] == 1), i and j being cache positions (0-based
               token indices here; every row starts at 0, right padding). The script checks that against the mask
               the attention layers really receive, and that dropping the window changes the logits.

Written under ``<out>/<cfg>/`` exactly as make_model_goldens.py does:
  model/                 what save_pretrained writes (config.json, generation_config.json, model.safetensors)
  inputs.safetensors     input_ids I64 [B,T], pixel_values F32 [N_img,3,H,W], attention_mask I64 [B,T], labels I64 [B,T]
  outputs.safetensors    logits F32 [B,T,V], loss F32 [], grad.projector.<name>, grad.projector+lm.<name>
  meta.json              sizes, losses, the checks below, the text_config keys config.json holds, the rope inverse
                         frequencies (float64 list of the fp32 buffer) and the family facts (window, llama3 bands)

Checks (each asserted; the numbers go to meta.json and are printed):
  * the saved folder reloads with from_pretrained to the same logits and loss, bit for bit;
  * an independent torch re-implementation (make_model_goldens.py's, extended with q/k/v biases, GQA, tied lm_head,
    llama3 frequencies and the sliding window) reproduces HF's logits in fp32 and, in fp64, gives the "exact"
    numbers HF's fp32 deviates from (logits, loss, every gradient);
  * the rope inverse frequencies computed here (fp32, transformers' expression order) equal the model's buffer bit
    for bit; the fp64 ones are recorded beside them;
  * every trainable parameter has a nonzero gradient (and the embedding rows that are zero are exactly those
    predicted: ids that reach no counted target, through the window where there is one);
  * each sample run alone gives the same logits as in the padded batch.

Run (from the repository root, CPU only, a few seconds):
    python tools/reference/make_lm_family_goldens.py   (in a venv from tools/reference/requirements-model.txt)
Options: --out DIR (default tests/data/golden/model), --configs tinyqwen2,tinyllama3,tinymistral.
Pinned versions: tools/reference/requirements-model.txt (the same as make_model_goldens.py).
"""

import argparse
import json
import math
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_goldens as mmg  # noqa: E402  (sets CUDA_VISIBLE_DEVICES="" before torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402
import transformers  # noqa: E402
from transformers import LlavaConfig, LlavaForConditionalGeneration  # noqa: E402

# The CLIP tower of tiny64 (3 layers, layer 2 unused, 16 patches of 4x4 on 16x16 images) at width 32, one head.
VISION = dict(hidden_size=32, num_attention_heads=1, num_hidden_layers=3, intermediate_size=48, image_size=16,
              patch_size=4)
COMMON_TEXT = dict(hidden_act="silu", max_position_embeddings=128, num_hidden_layers=2, hidden_size=64,
                   intermediate_size=64)

CONFIGS = {
    "tinyqwen2": dict(
        seed=2002,
        text=dict(model_type="qwen2", num_attention_heads=4, num_key_value_heads=2, vocab_size=160,
                  rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
                  use_sliding_window=False, sliding_window=4096, max_window_layers=28),
        rows=dict(a=9, b=13, c1=3, c2=8),
    ),
    "tinyllama3": dict(
        seed=3003,
        text=dict(model_type="llama", num_attention_heads=2, num_key_value_heads=1, vocab_size=128,
                  rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 48},
                  attention_bias=False, mlp_bias=False),
        rows=dict(a=40, b=20, c1=5, c2=30),
    ),
    "tinymistral": dict(
        seed=4004,
        text=dict(model_type="mistral", num_attention_heads=4, num_key_value_heads=2, vocab_size=150,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, sliding_window=8),
        rows=dict(a=12, b=16, c1=4, c2=9),
    ),
}
DEFAULT_CONFIGS = ["tinyqwen2", "tinyllama3", "tinymistral"]
BOS, EOS = mmg.BOS, mmg.EOS

# text_config keys a config parser needs for these families; "<absent>" when config.json does not hold the key
PARSER_KEYS = ["model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
               "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "hidden_act", "rms_norm_eps",
               "rope_theta", "rope_scaling", "max_position_embeddings", "sliding_window", "use_sliding_window",
               "max_window_layers", "attention_bias", "mlp_bias", "tie_word_embeddings", "pad_token_id",
               "bos_token_id", "eos_token_id", "attention_dropout"]


def build_config(c):
    V = c["text"]["vocab_size"]
    image_token, pad_token = V - 2, V - 1
    P = (VISION["image_size"] // VISION["patch_size"]) ** 2
    text = dict(COMMON_TEXT, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=pad_token)
    text.update(c["text"])
    vision = dict(model_type="clip_vision_model", hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3,
                  **VISION)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                      projector_hidden_act="gelu", vision_feature_select_strategy="default", vision_feature_layer=-2,
                      image_seq_length=P, pad_token_id=pad_token, tie_word_embeddings=text["tie_word_embeddings"])
    return cfg, image_token, pad_token, P


def head_dim_of(tc):
    hd = getattr(tc, "head_dim", None)
    return hd if hd else tc.hidden_size // tc.num_attention_heads


def window_of(tc):
    """The window 4.46.3's eager mask applies: MistralModel / Qwen2Model read config.sliding_window (Qwen2Config
    stores None when use_sliding_window is false); LlamaConfig has none."""
    if tc.model_type in ("mistral", "qwen2"):
        return tc.sliding_window
    return None


def rope_inv_freq(tc, dtype):
    """The rope inverse frequencies. float32: transformers' own expressions and order (compared bit for bit with the
    model's buffer); float64: the same formulas evaluated in float64 (the "exact" frequencies)."""
    hd = head_dim_of(tc)
    if dtype == torch.float32:
        inv = 1.0 / (tc.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    else:
        inv = 1.0 / (tc.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = getattr(tc, "rope_scaling", None)
    bands = None
    if rs is not None:
        assert rs["rope_type"] == "llama3", rs
        factor, lo, hi, old = (rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"],
                               rs["original_max_position_embeddings"])
        low_w, high_w = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_w, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_w) * ~(wavelen > low_w)
        out = torch.where(medium, smoothed, scaled)
        bands = ["smoothed" if bool(m) else ("scaled" if bool(w > low_w) else "kept")
                 for m, w in zip(medium, wavelen)]
        return out, inv, bands
    return inv, inv, bands


def model_inv_freq(model, tc):
    lm = model.language_model.model
    if tc.model_type == "mistral":  # 4.46.3's Mistral keeps one rotary module per attention layer
        bufs = [layer.self_attn.rotary_emb.inv_freq for layer in lm.layers]
        assert all(torch.equal(b, bufs[0]) for b in bufs)
        return bufs[0].detach().clone()
    return lm.rotary_emb.inv_freq.detach().clone()


# ------------------------------------------------------------------------------------------------------------------
# Independent re-implementation (make_model_goldens.spec_forward's, extended): float32 mimics HF, float64 = "exact".
# ------------------------------------------------------------------------------------------------------------------
def spec_forward(P, cfg, inp, dtype, window="config"):
    vc, tc = cfg.vision_config, cfg.text_config
    f = lambda k: P[k]  # noqa: E731
    pix = inp["pixel_values"].to(dtype)
    ids, am, labels = inp["input_ids"], inp["attention_mask"], inp["labels"]
    N = pix.shape[0]
    p, D = vc.patch_size, vc.hidden_size
    G = vc.image_size // p
    vp = "vision_tower.vision_model."

    def ln(x, pre):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + vc.layer_norm_eps) * f(pre + ".weight") + f(pre + ".bias")

    x = pix.reshape(N, 3, G, p, G, p).permute(0, 2, 4, 1, 3, 5).reshape(N, G * G, 3 * p * p)
    h = x @ f(vp + "embeddings.patch_embedding.weight").reshape(D, -1).T
    h = torch.cat([f(vp + "embeddings.class_embedding").expand(N, 1, D), h], 1)
    h = h + f(vp + "embeddings.position_embedding.weight")[None]
    h = ln(h, vp + "pre_layrnorm")
    hs = [h]
    Hv = vc.num_attention_heads
    dh = D // Hv
    for l in range(vc.num_hidden_layers):
        lp = vp + f"encoder.layers.{l}."
        r = h
        xx = ln(h, lp + "layer_norm1")
        lin = lambda t, n: t @ f(lp + n + ".weight").T + f(lp + n + ".bias")  # noqa: E731
        q = lin(xx, "self_attn.q_proj").reshape(N, -1, Hv, dh).transpose(1, 2)
        k = lin(xx, "self_attn.k_proj").reshape(N, -1, Hv, dh).transpose(1, 2)
        v = lin(xx, "self_attn.v_proj").reshape(N, -1, Hv, dh).transpose(1, 2)
        S = (q * dh ** -0.5) @ k.transpose(-1, -2)
        o = torch.softmax(S, -1) @ v
        o = o.transpose(1, 2).reshape(N, -1, D)
        h = r + lin(o, "self_attn.out_proj")
        r = h
        xx = ln(h, lp + "layer_norm2")
        m = lin(xx, "mlp.fc1")
        m = m * torch.sigmoid(1.702 * m)
        h = r + lin(m, "mlp.fc2")
        hs.append(h)
    feat = hs[cfg.vision_feature_layer][:, 1:]
    pp = "multi_modal_projector."
    y = feat @ f(pp + "linear_1.weight").T + f(pp + "linear_1.bias")
    y = 0.5 * y * (1 + torch.erf(y / math.sqrt(2.0)))
    y = y @ f(pp + "linear_2.weight").T + f(pp + "linear_2.bias")

    lm = "language_model.model."
    E = F.embedding(ids, f(lm + "embed_tokens.weight"), padding_idx=tc.pad_token_id)
    mask = ids == cfg.image_token_index
    E = E.clone()
    E[mask] = y.reshape(-1, y.shape[-1])
    B, T, d = E.shape
    Hq, Hkv = tc.num_attention_heads, tc.num_key_value_heads
    hd = head_dim_of(tc)
    rep = Hq // Hkv

    def rms(x, w):
        return w * (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + tc.rms_norm_eps))

    inv = rope_inv_freq(tc, dtype)[0]
    ang = inv[None, :] * torch.arange(T, dtype=dtype)[:, None]
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)

    def rope(t):
        rot = torch.cat([-t[..., hd // 2:], t[..., : hd // 2]], -1)
        return t * cos + rot * sin

    W = window_of(tc) if window == "config" else window
    neg = torch.finfo(dtype).min
    qi, kj = torch.arange(T)[:, None], torch.arange(T)[None, :]
    bad = kj > qi
    if W is not None:
        bad = bad | (kj <= qi - W)
    bad = bad[None] | (am[:, None, :] == 0)  # [B,T,T]
    addmask = torch.zeros(B, 1, T, T, dtype=dtype).masked_fill(bad[:, None], neg)

    def lin(t, lp, n):
        out = t @ f(lp + n + ".weight").T
        b = P.get(lp + n + ".bias")
        return out if b is None else out + b

    h = E
    for l in range(tc.num_hidden_layers):
        lp = lm + f"layers.{l}."
        xx = rms(h, f(lp + "input_layernorm.weight"))
        q = rope(lin(xx, lp, "self_attn.q_proj").reshape(B, T, Hq, hd).transpose(1, 2))
        k = rope(lin(xx, lp, "self_attn.k_proj").reshape(B, T, Hkv, hd).transpose(1, 2))
        v = lin(xx, lp, "self_attn.v_proj").reshape(B, T, Hkv, hd).transpose(1, 2)
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)  # query head i uses key/value head i // rep
        S = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + addmask
        o = (torch.softmax(S, -1) @ v).transpose(1, 2).reshape(B, T, Hq * hd)
        h = h + lin(o, lp, "self_attn.o_proj")
        xx = rms(h, f(lp + "post_attention_layernorm.weight"))
        g = lin(xx, lp, "mlp.gate_proj")
        h = h + lin(F.silu(g) * lin(xx, lp, "mlp.up_proj"), lp, "mlp.down_proj")
    h = rms(h, f(lm + "norm.weight"))
    head = P.get("language_model.lm_head.weight")
    if head is None:
        assert tc.tie_word_embeddings
        head = f(lm + "embed_tokens.weight")
    logits = h @ head.T
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
    return logits, loss


# ------------------------------------------------------------------------------------------------------------------
def capture_masks(model, inputs):
    """The 4D additive masks the LM's attention layers receive in a plain forward (one per layer)."""
    got = []

    def hook(mod, args, kwargs):
        got.append(kwargs["attention_mask"].detach().clone())

    hs = [layer.self_attn.register_forward_pre_hook(hook, with_kwargs=True)
          for layer in model.language_model.model.layers]
    try:
        with torch.no_grad():
            out = model(**inputs)
    finally:
        for hh in hs:
            hh.remove()
    return got, out


def check_masks(masks, am, W):
    """Every layer's mask: 0 where key j is visible to query i, finfo.min elsewhere; visible iff j <= i,
    (W: i - W < j) and attention_mask[j] == 1. Returns the count of entries checked."""
    B, T = am.shape
    qi, kj = torch.arange(T)[:, None], torch.arange(T)[None, :]
    vis = kj <= qi
    if W is not None:
        vis = vis & (kj > qi - W)
    vis = vis[None] & (am[:, None, :] == 1)  # [B,T,T]
    for m in masks:
        assert m.shape == (B, 1, T, T), m.shape
        m = m[:, 0]
        assert bool((m[vis] == 0).all()), "a visible key masked"
        assert bool((m[~vis] == torch.finfo(m.dtype).min).all()), "a hidden key not fully masked"
    return int(vis.numel())


def run_config(name, out_root):
    c = CONFIGS[name]
    seed = c["seed"]
    torch.manual_seed(seed)
    cfg, image_token, pad_token, P = build_config(c)
    tc = cfg.text_config
    model = LlavaForConditionalGeneration._from_config(cfg, attn_implementation="eager", torch_dtype=torch.float32)
    model = model.float().train()  # dropout is 0 everywhere, so train == eval numerically
    mmg.init_weights(model, seed)  # (with tied weights the shared tensor is drawn once, under embed_tokens' name)
    if c["text"]["tie_word_embeddings"]:
        with torch.no_grad():  # N(0, 1) rows as lm_head would give logits of rms 8: scale them to the untied
            # lm_head's init, N(0, 1/hidden), so that the logits (and HF's fp32 error on them) are of tiny64's size
            model.language_model.model.embed_tokens.weight.mul_(1.0 / math.sqrt(cfg.text_config.hidden_size))

    attn_classes = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Attention")})
    assert all("Sdpa" not in a and "Flash" not in a for a in attn_classes), attn_classes
    assert model.language_model.config._attn_implementation == "eager"
    lm_head = model.language_model.lm_head.weight
    emb = model.language_model.model.embed_tokens
    tied = lm_head.data_ptr() == emb.weight.data_ptr()
    assert tied == bool(tc.tie_word_embeddings), (tied, tc.tie_word_embeddings)
    assert emb.padding_idx == pad_token
    W = window_of(tc)
    attn0 = model.language_model.model.layers[0].self_attn
    has_qkv_bias = attn0.q_proj.bias is not None
    assert has_qkv_bias == (tc.model_type == "qwen2")
    assert (attn0.k_proj.bias is not None) == has_qkv_bias and (attn0.v_proj.bias is not None) == has_qkv_bias
    assert attn0.o_proj.bias is None

    d = os.path.join(out_root, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    mdir = os.path.join(d, "model")
    model.save_pretrained(mdir, safe_serialization=True)

    inputs, lens = mmg.build_inputs(c, cfg, image_token, pad_token, P, seed)
    save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(d, "inputs.safetensors"))
    T = int(inputs["input_ids"].shape[1])

    # ---- goldens
    results = {}
    for set_name, trainable in mmg.TRAINABLE_SETS.items():
        results[set_name] = mmg.hf_grads(model, inputs, trainable)
    logits, loss, _ = results["projector"]
    for set_name, (lg, ls, _) in results.items():
        assert torch.equal(lg, logits) and torch.equal(ls, loss), set_name
    outputs = {"logits": logits.contiguous(), "loss": loss.reshape(()).contiguous()}
    for set_name, (_, _, grads) in results.items():
        for n, gr in grads.items():
            outputs[f"grad.{set_name}.{n}"] = gr.contiguous()
    save_file(outputs, os.path.join(d, "outputs.safetensors"))

    # ---- checks
    notes = {}
    for n, p in model.named_parameters():
        p.requires_grad_(False)
    saved = load_file(os.path.join(mdir, "model.safetensors"))
    pnames = [n for n, _ in model.named_parameters()]
    assert sorted(saved) == sorted(pnames), set(saved) ^ set(pnames)
    notes["saved_key_count"] = len(saved)
    notes["lm_head_saved"] = "language_model.lm_head.weight" in saved
    notes["lm_head_tied_to_embed_tokens"] = tied
    notes["qkv_bias"] = has_qkv_bias

    # reload round trip (and the reloaded model is tied the same way)
    re = LlavaForConditionalGeneration.from_pretrained(mdir, attn_implementation="eager", torch_dtype=torch.float32)
    re.train()
    assert (re.language_model.lm_head.weight.data_ptr() == re.language_model.model.embed_tokens.weight.data_ptr()) \
        == tied
    with torch.no_grad():
        o2 = re(**inputs)
    notes["reload_bitwise_equal"] = bool(torch.equal(o2.logits, logits) and torch.equal(o2.loss, loss))
    assert notes["reload_bitwise_equal"]
    del re

    # the masks the attention layers receive, against the inequality
    masks, o3 = capture_masks(model, inputs)
    assert torch.equal(o3.logits, logits)
    n_checked = check_masks(masks, inputs["attention_mask"], W)
    am = inputs["attention_mask"].bool()
    fam = {"model_type": tc.model_type}
    fam["mask_rule"] = ("key j visible to query i iff j <= i and attention_mask[j] == 1" if W is None else
                        f"key j visible to query i iff i - sliding_window < j <= i (sliding_window = {W}) and "
                        "attention_mask[j] == 1; i, j = cache positions (0-based token indices, right padding); "
                        "masked means the additive mask holds finfo(float32).min")
    fam["mask_checked_layers"] = len(masks)
    fam["mask_checked_entries_per_layer"] = n_checked
    if W is not None:
        fam["mask_code_4_46_3"] = (
            "MistralModel._prepare_4d_causal_attention_mask_with_cache_position: diagonal_attend_mask = "
            "arange(target_length) > cache_position.reshape(-1, 1); if config.sliding_window is not None (and the "
            "cache is not a SlidingWindowCache): sliding_attend_mask = arange(target_length) <= "
            "(cache_position.reshape(-1, 1) - config.sliding_window); diagonal_attend_mask |= sliding_attend_mask; "
            "causal_mask = full(min_dtype) * diagonal_attend_mask; then positions with attention_mask 0 are "
            "filled with min_dtype. So masked iff j > i or j <= i - sliding_window.")
        fam["visible_keys_per_query"] = f"min(i + 1, {W}) before padding"
        # rows whose padding queries see no key at all (every key in their window is padding): softmax of an
        # all-min row is uniform over all T keys; such positions are padding, not compared by tests
        full = []
        for b in range(am.shape[0]):
            for i in range(T):
                if not any(bool(am[b, j]) for j in range(max(0, i - W + 1), i + 1)):
                    full.append([b, i])
        fam["fully_masked_query_positions_(padding)"] = full
        # the window matters: logits without it
        cfg_lm = model.language_model.config
        assert cfg_lm is tc or cfg_lm.sliding_window == W
        saved_w = cfg_lm.sliding_window
        cfg_lm.sliding_window = None
        try:
            masks_nw, o_nw = capture_masks(model, inputs)
        finally:
            cfg_lm.sliding_window = saved_w
        check_masks(masks_nw, inputs["attention_mask"], None)
        dl = (o_nw.logits - logits).abs()
        fam["no_window_max_abs_logit_diff_real_positions"] = float(dl[am].max())
        fam["no_window_loss"] = float(o_nw.loss)
        fam["window_loss"] = float(loss)
        first = {}
        for b in range(am.shape[0]):
            diffpos = [t for t in range(lens[b]) if float(dl[b, t].max()) > 0]
            first[f"row{b}"] = dict(length=lens[b], first_position_differing=min(diffpos) if diffpos else None,
                                    positions_equal_bitwise=lens[b] - len(diffpos))
        fam["no_window_rows"] = first
        assert fam["no_window_max_abs_logit_diff_real_positions"] > 1e-2, fam
        for b in range(am.shape[0]):  # positions i < W see no difference (bit for bit)
            assert first[f"row{b}"]["first_position_differing"] >= W, first
        # the spec without a window reproduces HF without a window (fp32)
        sd_ = {k: v.detach() for k, v in model.state_dict().items()}
        with torch.no_grad():
            lgnw32, _ = spec_forward(sd_, cfg, inputs, torch.float32, window=None)
        fam["no_window_spec32_max_abs_logit_diff_real_positions"] = float((lgnw32 - o_nw.logits)[am].abs().max())
        assert fam["no_window_spec32_max_abs_logit_diff_real_positions"] < 1e-4
        if tc.model_type == "mistral":
            fam["no_window_note"] = "the same model with config.sliding_window = None (full causal attention)"
    notes["family"] = fam

    # rope inverse frequencies
    inv_model = model_inv_freq(model, tc)
    inv32, base32, bands = rope_inv_freq(tc, torch.float32)
    inv64, base64, bands64 = rope_inv_freq(tc, torch.float64)
    assert torch.equal(inv32, inv_model), (inv32, inv_model)
    assert bands == bands64, (bands, bands64)
    rope = dict(head_dim=head_dim_of(tc), rope_theta=tc.rope_theta, rope_scaling=getattr(tc, "rope_scaling", None),
                inv_freq_fp32_as_float64=[float(x) for x in inv_model.double()],
                inv_freq_fp32_bits_hex=[np.float32(x).tobytes()[::-1].hex() for x in inv_model.numpy()],
                inv_freq_float64_exact=[float(x) for x in inv64],
                fp32_vs_float64_max_rel=float(((inv_model.double() - inv64) / inv64).abs().max()),
                recomputed_fp32_equal_to_model_buffer=True,
                source=("model.language_model.model.layers[*].self_attn.rotary_emb.inv_freq (identical in every layer)"
                        if tc.model_type == "mistral" else "model.language_model.model.rotary_emb.inv_freq"),
                max_position_in_inputs=T - 1)
    if bands is not None:
        rs = tc.rope_scaling
        old = rs["original_max_position_embeddings"]
        wl = (2 * math.pi / base64).tolist()
        rope["llama3"] = dict(
            low_freq_wavelen=old / rs["low_freq_factor"], high_freq_wavelen=old / rs["high_freq_factor"],
            rule=("wavelen = 2*pi/inv_freq (fp32); wavelen < high_freq_wavelen: kept; wavelen > low_freq_wavelen: "
                  "inv_freq/factor; otherwise smoothed: s = (old/wavelen - low_freq_factor)/(high_freq_factor - "
                  "low_freq_factor), (1-s)*inv_freq/factor + s*inv_freq"),
            table=[dict(i=i, wavelen=wl[i], band=bands[i], unscaled_inv_freq=float(base32[i]),
                        inv_freq=float(inv_model[i]), ratio_to_unscaled=float(inv64[i] / base64[i]))
                   for i in range(len(bands))],
            kept=[i for i, b in enumerate(bands) if b == "kept"],
            smoothed=[i for i, b in enumerate(bands) if b == "smoothed"],
            scaled=[i for i, b in enumerate(bands) if b == "scaled"],
            positions_beyond_original_max=T - 1 >= old)
        assert rope["llama3"]["kept"] and rope["llama3"]["smoothed"] and rope["llama3"]["scaled"], bands
        assert T - 1 >= old and max(lens) - 1 >= old
        # the scaling matters: the model with the unscaled frequencies
        buf = model.language_model.model.rotary_emb.inv_freq
        keep = buf.clone()
        buf.copy_(base32)
        try:
            with torch.no_grad():
                o_ns = model(**inputs)
        finally:
            buf.copy_(keep)
        rope["llama3"]["unscaled_max_abs_logit_diff_real_positions"] = float((o_ns.logits - logits)[am].abs().max())
        assert rope["llama3"]["unscaled_max_abs_logit_diff_real_positions"] > 1e-3
        with torch.no_grad():
            assert torch.equal(model(**inputs).logits, logits)
    notes["rope"] = rope

    # zero-gradient bookkeeping
    V = tc.vocab_size
    Lm = tc.num_hidden_layers
    reach = None if W is None else Lm * (W - 1)  # how far back (in positions) a token can influence a logit
    zero_report = {}
    for set_name, (_, _, grads) in results.items():
        zeros = [n for n, g in grads.items() if not bool(g.abs().sum() > 0)]
        assert not zeros, (set_name, zeros)
        ge = grads.get("language_model.model.embed_tokens.weight")
        if ge is None:
            continue
        nz_rows = set(torch.nonzero(ge.abs().sum(1) > 0).flatten().tolist())
        real_ids = set(inputs["input_ids"][am].tolist())
        ids_, lab_ = inputs["input_ids"], inputs["labels"]
        influencing = set()
        for b in range(ids_.shape[0]):
            outs = [s - 1 for s in range(1, ids_.shape[1]) if lab_[b, s] != -100]  # logit positions counted
            for t in range(ids_.shape[1]):
                if any(o >= t and (reach is None or o - t <= reach) for o in outs):
                    influencing.add(int(ids_[b, t]))
        rep = dict(embed_rows_nonzero=len(nz_rows), embed_rows_total=V, influence_reach_positions=reach)
        if tied:  # the lm_head use gives every row a gradient
            assert nz_rows == set(range(V)), sorted(set(range(V)) - nz_rows)
            rep["note"] = "tied: embed_tokens is also lm_head, so every row has a gradient"
        else:
            expect = influencing - {image_token, pad_token}
            assert nz_rows == expect, (sorted(nz_rows ^ expect))
            rep.update(pad_row_zero=bool(ge[pad_token].abs().sum() == 0),
                       image_row_zero=bool(ge[image_token].abs().sum() == 0),
                       eos_row_zero=bool(ge[EOS].abs().sum() == 0),
                       zero_rows_of_ids_present=sorted(real_ids - nz_rows),
                       lm_head_rows_all_nonzero=bool((grads["language_model.lm_head.weight"].abs().sum(1) > 0).all()))
        rep["pad_token_used_at_real_position"] = bool(pad_token in real_ids)
        zero_report[set_name] = rep
    notes["zero_grads"] = zero_report
    gp, gpl = results["projector"][2], results["projector+lm"][2]
    notes["projector_grads_equal_across_sets"] = all(torch.equal(gp[n], gpl[n]) for n in gp)
    notes["projector_grads_max_absdiff_across_sets"] = max(float((gp[n] - gpl[n]).abs().max()) for n in gp)

    # the vision tower influences the output except its last layer and post_layernorm
    for n, p in model.named_parameters():
        p.requires_grad_(True)
        p.grad = None
    model(**inputs).loss.backward()
    unused = sorted(n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0))
    Lv = cfg.vision_config.num_hidden_layers
    allowed = lambda n: (n.startswith(f"vision_tower.vision_model.encoder.layers.{Lv - 1}.")  # noqa: E731
                         or n.startswith("vision_tower.vision_model.post_layernorm."))
    assert all(allowed(n) for n in unused), unused
    notes["params_without_influence"] = unused
    for n, p in model.named_parameters():
        p.requires_grad_(False)
        p.grad = None

    # per-sample runs vs the padded batch
    with torch.no_grad():
        img_rows = [b for b in range(len(lens)) if bool((inputs["input_ids"][b] == image_token).any())]
        worst = 0.0
        for b, Lb in enumerate(lens):
            sub = dict(input_ids=inputs["input_ids"][b:b + 1, :Lb], attention_mask=inputs["attention_mask"][b:b + 1, :Lb])
            if b in img_rows:
                sub["pixel_values"] = inputs["pixel_values"][img_rows.index(b):img_rows.index(b) + 1]
            else:  # 4.46.3 cannot run a text-only batch from input_ids (see make_model_goldens.py)
                sub["inputs_embeds"] = model.get_input_embeddings()(sub.pop("input_ids"))
            lg = model(**sub).logits
            worst = max(worst, float((lg[0] - logits[b, :Lb]).abs().max()))
        notes["single_vs_batch_max_abs_logit_diff"] = worst
        assert worst < 1e-4, worst

    # labels on pad positions: 4.46.3 drops positions with attention_mask 0 before the CE
    with torch.no_grad():
        lab2 = inputs["labels"].clone()
        lab2[inputs["attention_mask"] == 0] = 5
        l_padlab = model(**{**inputs, "labels": lab2}).loss
    notes["loss_with_real_labels_on_pad_positions"] = dict(
        hf_4_46_3_with_attention_mask=float(l_padlab), equal_to_golden=bool(torch.equal(l_padlab, loss)))

    # independent spec implementation, fp32 and fp64
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    if tied:
        assert sd["language_model.lm_head.weight"].data_ptr() == sd["language_model.model.embed_tokens.weight"].data_ptr()
        del sd["language_model.lm_head.weight"]  # the spec uses embed_tokens as the head
    with torch.no_grad():
        lg32, ls32 = spec_forward(sd, cfg, inputs, torch.float32)
    P64 = {k: v.double().requires_grad_(True) for k, v in sd.items()}
    lg64, ls64 = spec_forward(P64, cfg, inputs, torch.float64)
    ls64.backward()
    lg64 = lg64.detach()
    spec = dict(
        fp32_max_abs_logit_diff=float((lg32 - logits).abs().max()),
        fp32_max_abs_logit_diff_real_positions=float((lg32 - logits)[am].abs().max()),
        fp32_loss_diff=float(ls32 - loss),
        fp64_max_abs_logit_diff=float((lg64 - logits.double()).abs().max()),
        fp64_max_abs_logit_diff_real_positions=float((lg64 - logits.double())[am].abs().max()),
        fp64_loss_rel_diff=float(abs(ls64.detach() - loss.double()) / ls64.detach()),
        fp64_loss=float(ls64),
    )
    worst_g = {}
    for set_name, (_, _, grads) in results.items():
        wr, wn = 0.0, None
        for n, g in grads.items():
            e = mmg.rel(g, P64[n].grad)
            if e > wr:
                wr, wn = e, n
        assert wr < 1e-4, (set_name, wn, wr)
        worst_g[set_name] = dict(worst_rel_l2=wr, param=wn)
    spec["fp64_grad_worst_rel_l2"] = worst_g
    notes["spec_reimplementation"] = spec
    assert spec["fp32_max_abs_logit_diff"] < 1e-4 and spec["fp64_max_abs_logit_diff"] < 1e-4, spec

    # the text_config transformers wrote to config.json
    with open(os.path.join(mdir, "config.json")) as fh:
        cj = json.load(fh)
    tcj = cj["text_config"]
    parser = {k: tcj.get(k, "<absent>") for k in PARSER_KEYS}
    top = {k: cj.get(k, "<absent>") for k in ["model_type", "architectures", "tie_word_embeddings",
                                               "image_token_index", "image_seq_length", "pad_token_id",
                                               "vision_feature_layer", "vision_feature_select_strategy",
                                               "projector_hidden_act"]}

    with torch.no_grad():
        feats = model.get_image_features(inputs["pixel_values"], cfg.vision_feature_layer,
                                         cfg.vision_feature_select_strategy)
        te = model.language_model.model.embed_tokens(inputs["input_ids"])
    stats = dict(
        B=int(inputs["input_ids"].shape[0]), T=T, V=V, n_images=int(inputs["pixel_values"].shape[0]),
        patches_per_image=P, row_lengths=lens,
        n_label_tokens_counted=int((inputs["labels"][:, 1:] != -100).sum()),
        loss=float(loss), loss_hex=loss.numpy().astype(np.float32).tobytes().hex(),
        max_abs_logit=float(logits.abs().max()), max_abs_logit_real_positions=float(logits[am].abs().max()),
        rms_logit_real_positions=float(logits[am].pow(2).mean().sqrt()),
        rms_image_features=float(feats.pow(2).mean().sqrt()), rms_text_embeddings=float(te[am].pow(2).mean().sqrt()),
        log_V=math.log(V),
    )
    gstats = {}
    for set_name, (_, _, grads) in results.items():
        gstats[set_name] = {n: dict(shape=list(g.shape), max_abs=float(g.abs().max()), l2=float(g.norm()))
                            for n, g in grads.items()}

    meta = dict(
        config=name, seed=seed, generator="tools/reference/make_lm_family_goldens.py",
        versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                      safetensors=safetensors.__version__, numpy=np.__version__),
        image_token_id=image_token, pad_token_id=pad_token, bos_token_id=BOS, eos_token_id=EOS,
        attention_classes=attn_classes, text_config_config_json=tcj, text_config_parser_keys=parser,
        top_level_config_keys=top, stats=stats, checks=notes, grad_stats=gstats,
    )
    with open(os.path.join(d, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True)
        fh.write("\n")
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "data", "golden", "model"))
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS))
    args = ap.parse_args()
    mmg.warn_unpinned()
    mmg.set_determinism()
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    metas = [run_config(n, out) for n in args.configs.split(",")]

    for m in metas:
        ch = m["checks"]
        print(f"\n== {m['config']}  text_config (config.json): "
              + json.dumps({k: v for k, v in m["text_config_parser_keys"].items() if v != "<absent>"}))
        absent = [k for k, v in m["text_config_parser_keys"].items() if v == "<absent>"]
        print(f"   absent keys: {absent}")
        fam = ch["family"]
        print(f"   mask: {fam['mask_rule']}")
        if "no_window_max_abs_logit_diff_real_positions" in fam:
            print(f"   without the window: max |dlogit| {fam['no_window_max_abs_logit_diff_real_positions']:.4g} "
                  f"(real positions), loss {fam['window_loss']:.6f} -> {fam['no_window_loss']:.6f}; rows "
                  + json.dumps(fam["no_window_rows"]))
        r = ch["rope"]
        print(f"   inv_freq (head_dim {r['head_dim']}, theta {r['rope_theta']:g}): "
              + " ".join(f"{x:.6g}" for x in r["inv_freq_fp32_as_float64"]))
        if "llama3" in r:
            l3 = r["llama3"]
            print(f"   llama3: high_freq_wavelen {l3['high_freq_wavelen']} low_freq_wavelen {l3['low_freq_wavelen']}; "
                  f"kept {l3['kept']} smoothed {l3['smoothed']} scaled {l3['scaled']}; max position "
                  f"{r['max_position_in_inputs']}; unscaled rope moves logits by "
                  f"{l3['unscaled_max_abs_logit_diff_real_positions']:.4g}")
            for row in l3["table"]:
                print(f"     i={row['i']:>2} wavelen {row['wavelen']:>12.4f} {row['band']:<8} "
                      f"{row['unscaled_inv_freq']:.8g} -> {row['inv_freq']:.8g} (x{row['ratio_to_unscaled']:.6g})")

    print()
    print(f"{'config':<12} {'B':>2} {'T':>3} {'V':>4} {'img':>3} {'loss':>10} {'ln V':>7} {'max|logit|':>10} "
          f"{'spec32 dlogit':>13} {'HF32 vs 64':>10} {'grad rel (worst)':>16} {'single-vs-batch':>15}")
    for m in metas:
        s, ch = m["stats"], m["checks"]
        sp = ch["spec_reimplementation"]
        gw = max(v["worst_rel_l2"] for v in sp["fp64_grad_worst_rel_l2"].values())
        print(f"{m['config']:<12} {s['B']:>2} {s['T']:>3} {s['V']:>4} {s['n_images']:>3} {s['loss']:>10.6f} "
              f"{s['log_V']:>7.4f} {s['max_abs_logit']:>10.4f} {sp['fp32_max_abs_logit_diff']:>13.2e} "
              f"{sp['fp64_max_abs_logit_diff']:>10.2e} {gw:>16.2e} {ch['single_vs_batch_max_abs_logit_diff']:>15.2e}")
    print()
    total = 0
    for m in metas:
        root = os.path.join(out, m["config"])
        for dp, _, fns in sorted(os.walk(root)):
            for fn in sorted(fns):
                pth = os.path.join(dp, fn)
                sz = os.path.getsize(pth)
                total += sz
                print(f"  {os.path.relpath(pth, out):<45} {sz:>9}  {mmg.md5(pth)}")
    print(f"  total {total} bytes")


if __name__ == "__main__":
    main()
