#!/usr/bin/env python3
"""Golden data for llava.c's video-frame pooling (model video_pool_mode / video_pool_stride), made with Hugging Face
transformers 4.46.3's LlavaNextVideoForConditionalGeneration (fp32, eager attention, train mode; every dropout is 0),
unpatched.

What the model does with a video (modeling_llava_next_video.py, read in the pinned venv, not copied):
  pixel_values_videos [n_videos, F, 3, S, S]: get_video_features runs all n_videos * F frames through the CLIP tower,
  takes hidden_states[vision_feature_layer] (-2), drops the CLS row ("default": the G x G patch grid, row-major,
  G = S / patch), then vision_resampler = LlavaNextVideoPooler: the frame's rows viewed as (Dv, G, G),
  nn.AvgPool2d(s, s) ("average") or nn.MaxPool2d(s, s) ("max") - kernel s, stride s, no padding, floor: (G // s)^2
  tokens row-major, the last G % s rows / columns dropped - BEFORE the multi_modal_projector (linear_1, GELU erf,
  linear_2). Each video's frames' features are laid one after another (flatten(0, 1): frame after frame, no
  image_newline for videos) and masked_scatter'ed into the video_token_index positions of input_ids in order. Images
  (pixel_values) are not pooled; this golden has none. (LLaVA-NeXT's own repository pools after the projector,
  get_2dPool; llava.c follows transformers.)
  4.46.3 takes its legacy in-model expansion when no row holds video_seq_length video tokens: the config sets
  video_seq_length to one frame's pooled count, so the ordinary path runs (the rows hold F * (G // s)^2).
  The pooler computes its grid side as int(sqrt(n * (S // p^2) // (S // p^2))) = G here (S = 20, p = 4: S // p^2 = 1).

Cases, under ``<out>/<case>/``:
  next_video_avg  spatial_pool_mode "average", stride 2 (seed 601)
  next_video_max  spatial_pool_mode "max", stride 2 (seed 602)
Common: CLIP tower hidden 32 (2 heads of 16), 3 layers (the last unused), intermediate 48, quick_gelu, image_size 20,
patch 4 (G = 5: 25 patches per frame, pooled to 2 x 2 = 4, row 4 and column 4 dropped); LLaMA hidden 64 (2 heads of
32), 2 layers, intermediate 64, vocab 160, untied head; image_token_index 158, video_token_index 157, pad 159.
Weights: make_model_goldens.init_weights (every tensor redrawn from the seed, image_newline included).
Inputs: 2 videos of 3 frames (random N(0, 1) pixels); row 0 = BOS, video 0 (12 tokens), 3 prompt + 4 answer tokens,
EOS; row 1 = text only (BOS, 10 tokens, EOS); row 2 = BOS, 3 prompt tokens, video 1, 5 answer tokens, EOS;
right-padded with the pad id; labels -100 on BOS, the videos and the prompts. Text ids are drawn from 3..156 (not
BOS/EOS, the video, image or pad id).

Written under ``<out>/<case>/`` (tests/test_model_parity.c reads it as make_model_goldens.py's layout):
  model/config.json         llava.c's view of the model: llava-hf's layout with model_type "llava_c" (a variant
                            transformers' Llava cannot run) and LlavaNextVideoConfig's spatial_pool_mode,
                            spatial_pool_stride and video_token_index (AnyRes is left out: llava.c pools video frames
                            on models without it; the golden holds no image)
  model/model.safetensors   the model's parameters under 4.46.3's names (multi_modal_projector.linear_1/2,
                            language_model.*, vision_tower.vision_model.*), without image_newline (unused by videos)
  hf_config.json            the LlavaNextVideoConfig the numbers come from (save_pretrained's config.json)
  inputs.safetensors        input_ids I64 [B, T], attention_mask I64, labels I64, pixel_values_videos F32
                            [2, 3, 3, 20, 20]
  outputs.safetensors       logits F32 [B, T, V], loss F32 [], grad.projector.<name> and grad.projector+lm.<name>
                            (make_model_goldens.TRAINABLE_SETS; the tower frozen)
  vision_grads.safetensors  the tower trainable (make_vision_train_goldens.py's layout, which
                            tests/test_model_parity.c's vision_parity reads): logits, loss and grad.<set>.<name> for
                            "vision+projector" (the whole tower), "vision1+projector" (its last used layer, 1) and
                            "vision+projector+lm"; the gradient flows back through the pooling (AvgPool2d spreads it
                            over each window, MaxPool2d routes it to the window's maximum; row and column 4 get none)
                            into the tower. Left out, as there: the unused layer 2 and post_layernorm (no gradient)
                            and the key biases (zero in exact arithmetic; fp32 leaves noise), and image_newline
  meta.json                 settings, token counts, the checks below, versions

Checks (asserted): the pooled video features equal F.avg_pool2d / F.max_pool2d of the selected features run through
the projector (allclose 1e-6); the logits equal a forward with inputs_embeds spliced by hand from those features
(bitwise); every trainable gradient is nonzero; float64's logits, loss and gradients (the same model in double) give
the fp32 golden's own error, recorded.

Run (from the repository root, CPU only, seconds):
    /tmp/refvenv/bin/python tools/reference/make_llava_next_video_goldens.py
Pinned versions: tools/reference/requirements-llava-next-video.txt. Two runs give byte-identical files.
"""

import copy
import json
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_goldens as mmg  # noqa: E402  (sets CUDA_VISIBLE_DEVICES="" before torch loads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
import transformers  # noqa: E402
from transformers import LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration  # noqa: E402

TEXT = dict(hidden_size=64, num_attention_heads=2, num_hidden_layers=2, intermediate_size=64, vocab_size=160)
VISION = dict(hidden_size=32, num_attention_heads=2, num_hidden_layers=3, intermediate_size=48, image_size=20,
              patch_size=4)
CASES = {
    "next_video_avg": dict(seed=601, mode="average", stride=2),
    "next_video_max": dict(seed=602, mode="max", stride=2),
}
N_VIDEOS, FRAMES = 2, 3
BOS, EOS = mmg.BOS, mmg.EOS
IMAGE_ID, VIDEO_ID, PAD_ID = 158, 157, 159
VP = "vision_tower.vision_model."
K_BIAS = re.compile(re.escape(VP) + r"encoder\.layers\.\d+\.self_attn\.k_proj\.bias")
VISION_SETS = {  # the selected layer S = 1 (hidden_states[-2] of 3 layers)
    "vision+projector": lambda n: n.startswith("vision_tower.") or n.startswith("multi_modal_projector."),
    "vision1+projector": lambda n: n.startswith(VP + "encoder.layers.1.") or n.startswith("multi_modal_projector."),
    "vision+projector+lm": lambda n: n != "image_newline",
}


def unused(n):
    return n.startswith(VP + "encoder.layers.2.") or n.startswith(VP + "post_layernorm.")


def vision_grads(model, inputs, d):
    """The tower trainable: vision_grads.safetensors (the used, non-key-bias tensors' gradients) and a summary."""
    out, info = {}, {}
    for s, t in VISION_SETS.items():
        for n, p in model.named_parameters():
            p.requires_grad_(t(n))
            p.grad = None
        o = model(**inputs)
        o.loss.backward()
        lg, ls = o.logits.detach().clone(), o.loss.detach().clone()
        gr = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
              for n, p in model.named_parameters() if t(n) and n != "image_newline"}
        for p in model.parameters():
            p.grad = None
        if not out:
            out = {"logits": lg.contiguous(), "loss": ls.reshape(()).contiguous()}
        assert torch.equal(lg, out["logits"]), s
        none = sorted(n for n, g in gr.items() if not bool(g.abs().sum() > 0))
        assert none == sorted(n for n in gr if unused(n)), (s, none)
        kb = [n for n in gr if K_BIAS.fullmatch(n) and not unused(n)]
        info[s] = dict(key_bias_fp32_max_abs=max((float(gr[n].abs().max()) for n in kb), default=0.0))
        n_written = 0
        for n, g in gr.items():
            if unused(n) or n in kb:
                continue
            out[f"grad.{s}.{n}"] = g.contiguous()
            n_written += 1
        info[s]["written"] = n_written
    save_file(out, os.path.join(d, "vision_grads.safetensors"))
    for p in model.parameters():
        p.requires_grad_(True)
    return info


def build_config(v):
    V = TEXT["vocab_size"]
    G = VISION["image_size"] // VISION["patch_size"]
    per_frame = (G // v["stride"]) ** 2
    text = dict(model_type="llama", hidden_act="silu", rms_norm_eps=1e-5, rope_theta=10000.0,
                max_position_embeddings=128, num_key_value_heads=TEXT["num_attention_heads"], bos_token_id=BOS,
                eos_token_id=EOS, pad_token_id=PAD_ID, tie_word_embeddings=False, attention_bias=False,
                mlp_bias=False, **TEXT)
    vision = dict(model_type="clip_vision_model", hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3,
                  **VISION)
    cfg = LlavaNextVideoConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_ID,
                               video_token_index=VIDEO_ID, projector_hidden_act="gelu",
                               vision_feature_select_strategy="default", vision_feature_layer=-2,
                               spatial_pool_mode=v["mode"], spatial_pool_stride=v["stride"],
                               image_seq_length=G * G, video_seq_length=per_frame, pad_token_id=PAD_ID,
                               tie_word_embeddings=False, image_grid_pinpoints=[[20, 20]])
    assert V == cfg.text_config.vocab_size
    return cfg, G, per_frame


def build_inputs(per_video, seed):
    g = torch.Generator().manual_seed(seed + 1)

    def text(n):  # 3..156: not BOS/EOS, the video, image or pad id
        return torch.randint(3, VIDEO_ID, (n,), generator=g).tolist()

    vid = [VIDEO_ID] * per_video
    t0, t1, t2, t3 = text(7), text(10), text(3), text(5)
    row0 = [BOS] + vid + t0 + [EOS]
    lab0 = [-100] * (1 + per_video + 3) + t0[3:] + [EOS]
    row1 = [BOS] + t1 + [EOS]
    lab1 = [-100] * 5 + t1[4:] + [EOS]
    row2 = [BOS] + t2 + vid + t3 + [EOS]
    lab2 = [-100] * (1 + 3 + per_video) + t3 + [EOS]
    rows, labs = [row0, row1, row2], [lab0, lab1, lab2]
    T = max(len(r) for r in rows)
    ids = torch.full((3, T), PAD_ID, dtype=torch.int64)
    mask = torch.zeros((3, T), dtype=torch.int64)
    labels = torch.full((3, T), -100, dtype=torch.int64)
    for b, (r, lb) in enumerate(zip(rows, labs)):
        ids[b, :len(r)] = torch.tensor(r)
        mask[b, :len(r)] = 1
        labels[b, :len(lb)] = torch.tensor(lb)
    pix = torch.randn((N_VIDEOS, FRAMES, 3, VISION["image_size"], VISION["image_size"]), generator=g)
    return dict(input_ids=ids, attention_mask=mask, labels=labels, pixel_values_videos=pix)


def manual_video_features(model, pix, G, v):
    """Tower -> hidden_states[-2] -> CLS dropped -> F.avg_pool2d / F.max_pool2d on (Dv, G, G) -> projector."""
    n, f = pix.shape[:2]
    out = model.vision_tower(pix.reshape(n * f, *pix.shape[2:]), output_hidden_states=True)
    sel = out.hidden_states[-2][:, 1:]
    x = sel.view(n * f, G, G, -1).permute(0, 3, 1, 2)
    x = F.avg_pool2d(x, v["stride"]) if v["mode"] == "average" else F.max_pool2d(x, v["stride"])
    x = x.flatten(2).transpose(1, 2)
    return model.multi_modal_projector(x).reshape(-1, model.config.text_config.hidden_size)


def llava_c_config(hf_cfg_path, v):
    """llava.c's config.json: the saved LlavaNextVideoConfig as llava-hf's Llava layout (model_type llava_c) with the
    video pooling keys; the AnyRes keys dropped."""
    with open(hf_cfg_path) as fh:
        c = json.load(fh)
    out = {k: c[k] for k in ("image_token_index", "video_token_index", "pad_token_id", "projector_hidden_act",
                             "vision_feature_layer", "vision_feature_select_strategy", "text_config", "vision_config",
                             "spatial_pool_mode", "spatial_pool_stride", "tie_word_embeddings", "torch_dtype",
                             "transformers_version")}
    out["architectures"] = ["LlavaCForConditionalGeneration"]
    out["model_type"] = "llava_c"
    out["mm_projector_type"] = "mlp2x_gelu"
    out["image_seq_length"] = c["image_seq_length"]
    return out


def run_case(name, out_root):
    v = CASES[name]
    seed = v["seed"]
    torch.manual_seed(seed)
    cfg, G, per_frame = build_config(v)
    model = LlavaNextVideoForConditionalGeneration._from_config(cfg, attn_implementation="eager",
                                                                torch_dtype=torch.float32)
    model = model.float().train()
    mmg.init_weights(model, seed)
    assert model.language_model.lm_head.weight.data_ptr() != model.language_model.model.embed_tokens.weight.data_ptr()

    d = os.path.join(out_root, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    mdir = os.path.join(d, "model")
    os.makedirs(mdir)
    tmp = os.path.join(d, "_hf")
    model.save_pretrained(tmp, safe_serialization=True)
    shutil.copyfile(os.path.join(tmp, "config.json"), os.path.join(d, "hf_config.json"))
    with open(os.path.join(mdir, "config.json"), "w") as fh:
        json.dump(llava_c_config(os.path.join(tmp, "config.json"), v), fh, indent=2, sort_keys=True)
        fh.write("\n")
    shutil.rmtree(tmp)
    params = {n: p.detach().contiguous() for n, p in model.named_parameters() if n != "image_newline"}
    save_file(params, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})

    per_video = FRAMES * per_frame
    inputs = build_inputs(per_video, seed)
    save_file({k: t.contiguous() for k, t in inputs.items()}, os.path.join(d, "inputs.safetensors"))

    results = {s: mmg.hf_grads(model, inputs, t) for s, t in mmg.TRAINABLE_SETS.items()}
    logits, loss, _ = results["projector"]
    for s, (lg, ls, _) in results.items():
        assert torch.equal(lg, logits) and torch.equal(ls, loss), s
    outputs = {"logits": logits.contiguous(), "loss": loss.reshape(()).contiguous()}
    for s, (_, _, grads) in results.items():
        for n, gr in grads.items():
            outputs[f"grad.{s}.{n}"] = gr.contiguous()
    save_file(outputs, os.path.join(d, "outputs.safetensors"))

    notes = {"vision_sets": vision_grads(model, inputs, d)}
    # ---- checks
    with torch.no_grad():
        hf_feat = torch.cat([f.flatten(0, 1) for f in model.get_video_features(
            inputs["pixel_values_videos"], vision_feature_layer=-2, vision_feature_select_strategy="default")])
        man = manual_video_features(model, inputs["pixel_values_videos"], G, v)
        assert hf_feat.shape == (N_VIDEOS * per_video, TEXT["hidden_size"]), hf_feat.shape
        notes["pooled_features_max_abs_diff_vs_manual"] = float((hf_feat - man).abs().max())
        assert notes["pooled_features_max_abs_diff_vs_manual"] <= 1e-6
        emb = model.get_input_embeddings()(inputs["input_ids"])
        m = (inputs["input_ids"] == VIDEO_ID).unsqueeze(-1).expand_as(emb)
        emb = emb.masked_scatter(m, hf_feat)
        o = model(inputs_embeds=emb, attention_mask=inputs["attention_mask"], labels=inputs["labels"])
        notes["logits_equal_hand_spliced"] = bool(torch.equal(o.logits, logits))
        assert notes["logits_equal_hand_spliced"]
    for s, (_, _, grads) in results.items():
        zeros = [n for n, gr in grads.items() if not bool(gr.abs().sum() > 0)]
        assert not zeros, (s, zeros)
    # fp64: the fp32 golden's own error
    m64 = copy.deepcopy(model).double()
    in64 = dict(inputs, pixel_values_videos=inputs["pixel_values_videos"].double())
    r64 = {s: mmg.hf_grads(m64, in64, t) for s, t in mmg.TRAINABLE_SETS.items()}
    real = inputs["attention_mask"].bool()
    notes["fp32_vs_fp64_logits_max_abs"] = float((logits.double() - r64["projector"][0])[real].abs().max())
    notes["fp32_vs_fp64_loss_rel"] = float(abs(loss.double() - r64["projector"][1]) / abs(r64["projector"][1]))
    notes["fp32_vs_fp64_grad_worst_rel_l2"] = max(
        float((gr.double() - r64[s][2][n]).norm() / r64[s][2][n].norm())
        for s, (_, _, grads) in results.items() for n, gr in grads.items())

    meta = dict(case=name, seed=seed, spatial_pool_mode=v["mode"], spatial_pool_stride=v["stride"], grid=G,
                tokens_per_frame=per_frame, frames=FRAMES, videos=N_VIDEOS, tokens_per_video=per_video,
                loss=float(loss), checks=notes,
                versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                              safetensors=safetensors.__version__))
    mmg.write_meta(d, meta)
    print(f"{name}: loss {float(loss):.6f}, {per_frame} tokens per frame, checks {notes}")
    return meta


def main():
    _, out = mmg.run_cases(__doc__, list(CASES), run_case)
    mmg.print_sizes(out, list(CASES))


if __name__ == "__main__":
    main()
