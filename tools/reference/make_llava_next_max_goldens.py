#!/usr/bin/env python3
"""Golden data for llava.c's LLaVA-NeXT anyres_max_N cap (model forward/backward), made with transformers 4.46.3.

The cap (LLaVA-NeXT's llava_arch.py under image_aspect_ratio "anyres_max_N"; transformers'
LlavaOnevisionForConditionalGeneration.pack_image_features under vision_aspect_ratio "anyres_max_N"): after
unpad_image an image's (C, h, w) feature map, when times = sqrt(h * w / (N * G^2)) > 1.1 (G = features per tile side),
is resized with F.interpolate(size=[int(h // times), int(w // times)], mode="bilinear") (align_corners False) before
the newline column is appended; the base tile is untouched.

Reference: transformers' LlavaNextForConditionalGeneration (fp32, eager attention, train mode, as
make_llava_next_goldens.py), its pack_image_features replaced on the instance by transformers' own
LlavaOnevisionForConditionalGeneration.pack_image_features (unmodified, called as a plain function on the LlavaNext
model: it reads only config.vision_config.image_size / patch_size and config.image_grid_pinpoints, which LlavaNextConfig
has) with vision_aspect_ratio = config.vision_aspect_ratio. LlavaNext's own pack_image_features has no cap, and
LlavaOnevision itself differs elsewhere (its processor, its video path), so the LlavaNext model with Onevision's packing
is the one transformers model that runs LLaVA-NeXT's anyres_max arithmetic on a CLIP + LLaMA model. config.json is what
save_pretrained writes, "model_type": "llava_next" plus "vision_aspect_ratio": "anyres_max_3" (the key llava.c reads;
transformers' LlavaNext keeps it as an unused attribute, so from_pretrained alone would run uncapped: the reload check
below installs the same packing).

Case next_max_tiny (seed 502), under ``<out>/next_max_tiny/``: make_llava_next_goldens.py's tiny model (CLIP 28 px,
patch 14: G = 2; LLaMA hidden 64, vocab 160), with image_grid_pinpoints [[28,56],[56,28],[56,56],[56,84],[84,56]]
(grids 1x2, 2x1, 2x2, 2x3, 3x2) and anyres_max_3 (12 features' worth):
  a: 29 x 57 (h x w), row 0   best 56x84, grid 2x3, 7 tiles, canvas 4x6, nothing cropped (aspect 1.97 vs 1.5: rows
                              would be, new_h = int(29 * 6/57) = 3, (4 - 3) // 2 = 0 rows each side), kept 4 x 6 = 24:
                              times = sqrt(24 / 12) = 1.414 > 1.1, resized to 4 // 1.414 = 2 x 6 // 1.414 = 4
                              (source rows 2 (o + 0.5) - 0.5, columns 1.5 (o + 0.5) - 0.5: weights 1/4, 3/4 apart
                              from the rows' 1/2), 4 + 2 * 5 = 14 features
  b: 30 x 24, row 2           make_llava_next_goldens.py's b: grid 2x1, kept 2 x 2 = 4, times 0.577: not resized,
                              4 + 2 * 3 = 10 features
The rows are make_llava_next_goldens.build_rows' (each image block its capped count of <image> tokens; the processor's
token expansion counts uncapped features, so input_ids are built here and only LlavaNextImageProcessor runs, its
pixel_values and image_sizes).

Written: make_llava_next_goldens.py's layout (model/, inputs.safetensors, outputs.safetensors with logits, loss and
grad.projector.* / grad.projector+lm.*, images/, meta.json).

Checks (asserted; numbers to meta.json):
  * pack_image_features' feature_lens are the capped counts; image b's block equals the projected tile features
    gathered by make_anyres_feature_goldens.expected_order bit for bit; image a's equals its kept 4 x 6 map (the same
    gather, base tile and newlines dropped) through F.interpolate to 2 x 4 and the newline column, bit for bit;
  * the logits equal a hand masked_scatter of that packing run through the language model, bit for bit;
  * from_pretrained (with the packing installed) reloads to the same logits and loss bit for bit;
  * every trainable tensor has a nonzero gradient; each image row alone gives its batch logits within 1e-5;
  * the float64 model gives HF fp32's error (max |logit| and worst gradient rel-L2 bounded by 1e-4).

Run (from the repository root, CPU only, a few seconds):
    /tmp/refvenv/bin/python tools/reference/make_llava_next_max_goldens.py
Options: --out DIR (default tests/data/golden/model), --cases next_max_tiny (the default).
Pinned versions: tools/reference/requirements-model.txt (torch 2.5.1, transformers 4.46.3, safetensors 0.4.5,
numpy 2.1.3, Pillow 11.0.0), as make_llava_next_goldens.py.
"""

import copy
import math
import os
import shutil
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_goldens as mmg  # noqa: E402  (sets CUDA_VISIBLE_DEVICES="" before torch loads)
import make_ablation_goldens as mag  # noqa: E402
import make_siglip_goldens as msg  # noqa: E402
import make_anyres_goldens as mar  # noqa: E402
import make_llava_next_goldens as mln  # noqa: E402
from make_anyres_feature_goldens import expected_order  # noqa: E402

import json  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402
from PIL import Image  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import LlavaNextForConditionalGeneration, LlavaOnevisionForConditionalGeneration  # noqa: E402
from transformers.image_processing_utils import select_best_resolution  # noqa: E402
from transformers.models.llava_next import modeling_llava_next as hf_mod  # noqa: E402

SEED = 502
PINPOINTS = [[28, 56], [56, 28], [56, 56], [56, 84], [84, 56]]
MAX_NUM_PATCHES = 3
IMAGES = {"a": (29, 57), "b": (30, 24)}  # name -> (height, width): a to row 0, b to row 2
CASES = {"next_max_tiny": dict(seed=SEED)}


def capped_pack(self, image_features, image_sizes, vision_feature_select_strategy, image_newline=None):
    """LlavaNext's pack_image_features call, answered by transformers' LlavaOnevision packing (the cap)."""
    assert vision_feature_select_strategy == "default"
    return LlavaOnevisionForConditionalGeneration.pack_image_features(
        self, image_features, image_sizes, image_newline=image_newline,
        vision_aspect_ratio=self.config.vision_aspect_ratio)


def install(model):
    model.pack_image_features = types.MethodType(capped_pack, model)
    return model


def image_plan(h, w, G, S):
    best = select_best_resolution((h, w), PINPOINTS)
    rows, cols = hf_mod.get_anyres_image_grid_shape((h, w), PINPOINTS, S)
    tiles = hf_mod.image_size_to_num_patches((h, w), PINPOINTS, S)
    assert tiles == 1 + rows * cols
    kh, kw = hf_mod.unpad_image(torch.empty(1, rows * G, cols * G), (h, w)).shape[1:]
    times = math.sqrt(kh * kw / (MAX_NUM_PATCHES * G * G))
    oh, ow = (int(kh // times), int(kw // times)) if times > 1.1 else (kh, kw)
    return dict(size_hw=[h, w], best_resolution_hw=list(best), grid_rows=rows, grid_cols=cols, tiles=tiles,
                kept_rows=kh, kept_cols=kw, times=times, resized=times > 1.1, out_rows=oh, out_cols=ow,
                features=G * G + oh * (ow + 1))


def run_case(name, out_root):
    seed = CASES[name]["seed"]
    torch.manual_seed(seed)
    mln.PINPOINTS = PINPOINTS  # build_case_config reads it
    cfg, image_token, pad_token, G = mln.build_case_config()
    cfg.vision_aspect_ratio = f"anyres_max_{MAX_NUM_PATCHES}"
    S = cfg.vision_config.image_size
    V = cfg.text_config.vocab_size
    model = LlavaNextForConditionalGeneration._from_config(cfg, attn_implementation="eager", torch_dtype=torch.float32)
    model = install(model.float().train())
    mmg.init_weights(model, seed)
    pnames = [n for n, _ in model.named_parameters()]
    assert pnames[0] == "image_newline"

    d = os.path.join(out_root, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    mdir = os.path.join(d, "model")
    model.save_pretrained(mdir, safe_serialization=True)
    with open(os.path.join(mdir, "config.json")) as fh:
        cj = json.load(fh)
    assert cj["model_type"] == "llava_next" and cj["image_grid_pinpoints"] == PINPOINTS
    assert cj["vision_aspect_ratio"] == f"anyres_max_{MAX_NUM_PATCHES}"

    # ---- images, as PNG files, read back; the image processor alone
    idir = os.path.join(d, "images")
    os.makedirs(idir)
    pils, plans = [], {}
    for i, (iname, (h, w)) in enumerate(IMAGES.items()):
        a = mar.make_fixture(w, h, i)
        path = os.path.join(idir, f"{iname}.png")
        Image.fromarray(a).save(path, optimize=True)
        im = Image.open(path).convert("RGB")
        assert np.array_equal(np.array(im), a)
        pils.append(im)
        plans[iname] = image_plan(h, w, G, S)
        plans[iname]["png"] = f"images/{iname}.png"
    assert plans["a"]["resized"] and not plans["b"]["resized"], plans
    n_feat = {k: p["features"] for k, p in plans.items()}
    enc = mar.hf_processor(S, PINPOINTS)(pils, return_tensors="pt")
    pixel_values, image_sizes = enc["pixel_values"], enc["image_sizes"]
    tiles = [p["tiles"] for p in plans.values()]
    assert tuple(pixel_values.shape) == (len(IMAGES), max(tiles), 3, S, S), pixel_values.shape
    for i, p in enumerate(plans.values()):
        assert image_sizes[i].tolist() == p["size_hw"]
        assert not bool(pixel_values[i, p["tiles"]:].any())

    rows, masks, _ = mln.build_rows(n_feat, image_token, pad_token, V, seed)
    lens = [len(x) for x in rows]
    B, T = len(rows), max(lens)
    input_ids = torch.full((B, T), pad_token, dtype=torch.int64)
    attention_mask = torch.zeros((B, T), dtype=torch.int64)
    labels = torch.full((B, T), -100, dtype=torch.int64)
    for b, (row, m) in enumerate(zip(rows, masks)):
        input_ids[b, :len(row)] = torch.tensor(row)
        attention_mask[b, :len(row)] = 1
        labels[b, :len(row)] = torch.tensor([-100 if mk else t for t, mk in zip(row, m)])
    for iname, p in plans.items():
        p["batch_row"] = 0 if iname == "a" else 2
        p["first_token_position"] = int((input_ids[p["batch_row"]] == image_token).nonzero()[0])
        assert int((input_ids[p["batch_row"]] == image_token).sum()) == p["features"]
    inputs = dict(input_ids=input_ids, pixel_values=pixel_values, image_sizes=image_sizes,
                  attention_mask=attention_mask, labels=labels)
    save_file({**{k: v.contiguous() for k, v in inputs.items()}, "tiles_per_image": torch.tensor(tiles)},
              os.path.join(d, "inputs.safetensors"))

    # ---- goldens
    results = {s: mmg.hf_grads(model, inputs, t) for s, t in mln.TRAINABLE_SETS.items()}
    logits, loss, _ = results["projector"]
    for s, (lg, ls, _) in results.items():
        assert torch.equal(lg, logits) and torch.equal(ls, loss), s
    outputs = {"logits": logits.contiguous(), "loss": loss.reshape(()).contiguous()}
    for s, (_, _, gr) in results.items():
        for n, g in gr.items():
            outputs[f"grad.{s}.{n}"] = g.contiguous()
    save_file(outputs, os.path.join(d, "outputs.safetensors"))
    for p in model.parameters():
        p.requires_grad_(False)

    # ---- checks
    checks = {}
    saved = load_file(os.path.join(mdir, "model.safetensors"))
    assert sorted(saved) == sorted(pnames)
    re_m = install(LlavaNextForConditionalGeneration.from_pretrained(mdir, attn_implementation="eager",
                                                                     torch_dtype=torch.float32))
    re_m.train()
    with torch.no_grad():
        o2 = re_m(**inputs)
    checks["reload_bitwise_equal"] = bool(torch.equal(o2.logits, logits) and torch.equal(o2.loss, loss))
    assert checks["reload_bitwise_equal"]
    del re_m
    for s, (_, _, gr) in results.items():
        zeros = [n for n, g in gr.items() if not bool(g.abs().sum() > 0)]
        assert not zeros, (s, zeros)
    checks["gradient_counts"] = {s: len(gr) for s, (_, _, gr) in results.items()}

    with torch.no_grad():
        per_image = model.get_image_features(pixel_values, image_sizes, cfg.vision_feature_layer,
                                             cfg.vision_feature_select_strategy)
        packed, feature_lens = model.pack_image_features(per_image, image_sizes, "default",
                                                         image_newline=model.image_newline)
        assert feature_lens.tolist() == list(n_feat.values()), feature_lens
        # by hand: the uncapped order's gather; for a resized image its kept map through F.interpolate
        want = []
        for i, p in enumerate(plans.values()):
            flat = per_image[i].reshape(-1, per_image[i].shape[-1])
            order = expected_order(*p["size_hw"], p["grid_rows"], p["grid_cols"], G)
            if not p["resized"]:
                want += [model.image_newline if k < 0 else flat[k] for k in order]
                continue
            want += [flat[k] for k in order[:G * G]]
            kept = [k for k in order[G * G:] if k >= 0]
            assert len(kept) == p["kept_rows"] * p["kept_cols"]
            fmap = flat[kept].reshape(p["kept_rows"], p["kept_cols"], -1).permute(2, 0, 1)
            small = torch.nn.functional.interpolate(fmap[None], [p["out_rows"], p["out_cols"]], mode="bilinear",
                                                    align_corners=False)[0]
            for y in range(p["out_rows"]):
                want += [small[:, y, x] for x in range(p["out_cols"])] + [model.image_newline]
        checks["packed_equals_hand_resize_bitwise"] = bool(torch.equal(packed, torch.stack(want)))
        assert checks["packed_equals_hand_resize_bitwise"]
        emb = model.get_input_embeddings()(input_ids)
        emb = emb.masked_scatter((input_ids == image_token)[..., None].expand_as(emb), packed)
        lg_hand = model.language_model(inputs_embeds=emb, attention_mask=attention_mask).logits
        checks["logits_equal_hand_masked_scatter_bitwise"] = bool(torch.equal(lg_hand, logits))
        assert checks["logits_equal_hand_masked_scatter_bitwise"]
        worst = 0.0
        for i, p in enumerate(plans.values()):
            b, Lb = p["batch_row"], lens[p["batch_row"]]
            lg = model(input_ids=input_ids[b:b + 1, :Lb], attention_mask=attention_mask[b:b + 1, :Lb],
                       pixel_values=pixel_values[i:i + 1, :p["tiles"]], image_sizes=image_sizes[i:i + 1]).logits
            worst = max(worst, msg.maxabs(lg[0], logits[b, :Lb]))
        checks["image_row_alone_vs_batch_max_abs_logit_diff"] = worst
        assert worst < 1e-5, worst

    m64 = install(copy.deepcopy(model).double())
    in64 = dict(inputs, pixel_values=pixel_values.double())
    with msg.true_fp64_softmax():
        r64 = {s: mmg.hf_grads(m64, in64, t) for s, t in mln.TRAINABLE_SETS.items()}
    lg64, ls64, _ = r64["projector+lm"]
    am = attention_mask.bool()
    fp64 = dict(max_abs_logit_diff=msg.maxabs(logits, lg64),
                max_abs_logit_diff_real_positions=msg.maxabs(logits[am], lg64[am]),
                loss_rel_diff=float(abs(loss.double() - ls64) / ls64), loss_fp64=float(ls64))
    worst_g = {}
    for s, (_, _, gr) in results.items():
        wr, wn = 0.0, None
        for n, g in gr.items():
            e = mmg.rel(g, r64[s][2][n])
            if e > wr:
                wr, wn = e, n
        assert wr < 1e-4, (s, wn, wr)
        worst_g[s] = dict(worst_rel_l2=wr, param=wn)
    fp64["grad_worst_rel_l2"] = worst_g
    assert fp64["max_abs_logit_diff"] < 1e-4, fp64
    checks["hf_fp32_vs_fp64"] = fp64

    stats = dict(B=B, T=T, V=V, n_images=len(IMAGES), row_lengths=lens, loss=float(loss),
                 loss_hex=loss.numpy().astype(np.float32).tobytes().hex(),
                 max_abs_logit_real_positions=float(logits[am].abs().max()))
    meta = dict(
        case=name, seed=seed, generator="tools/reference/make_llava_next_max_goldens.py",
        reference="LlavaNextForConditionalGeneration with LlavaOnevisionForConditionalGeneration.pack_image_features",
        versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                      safetensors=safetensors.__version__, numpy=np.__version__,
                      tokenizers=tokenizers.__version__, pillow=Image.__version__),
        config_json={k: cj[k] for k in ["model_type", "image_grid_pinpoints", "vision_aspect_ratio",
                                        "image_seq_length", "image_token_index"]},
        image_token_id=image_token, pad_token_id=pad_token, text=mag.TEXT, vision=mln.VISION, tile_grid=G,
        images=plans, stats=stats, checks=checks)
    mmg.write_meta(d, meta)
    return meta


def main():
    metas, out = mmg.run_cases(__doc__, CASES, run_case)
    for m in metas:
        f = m["checks"]["hf_fp32_vs_fp64"]
        print(f"{m['case']}: B {m['stats']['B']} T {m['stats']['T']} loss {m['stats']['loss']!r}; fp32 vs fp64 max "
              f"|logit| {f['max_abs_logit_diff']:.2e}, grad worst rel-L2 "
              + ", ".join(f"{s} {v['worst_rel_l2']:.2e}" for s, v in f["grad_worst_rel_l2"].items()))
        for iname, p in m["images"].items():
            print(f"  image {iname}: {p['size_hw']} grid {p['grid_rows']}x{p['grid_cols']} kept "
                  f"{p['kept_rows']}x{p['kept_cols']} times {p['times']:.3f} -> {p['out_rows']}x{p['out_cols']} "
                  f"features {p['features']}")
    print()
    mmg.print_sizes(out, [m["case"] for m in metas])


if __name__ == "__main__":
    main()
