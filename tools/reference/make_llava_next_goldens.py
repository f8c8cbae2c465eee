#!/usr/bin/env python3
"""Golden data for llava.c's LLaVA-NeXT (AnyRes) model forward/backward, made with Hugging Face transformers 4.46.3.

Reference: transformers' own ``LlavaNextForConditionalGeneration`` (fp32, eager attention, train mode; every dropout
is 0), unpatched, and its ``LlavaNextProcessor`` (``LlavaNextImageProcessor`` + a tiny in-memory word-level tokenizer)
for pixel_values, image_sizes and the <image> expansion of input_ids. Nothing is replaced; config.json is what
save_pretrained writes ("model_type": "llava_next"), and from_pretrained loads the folder back to the same numbers.

What the model does with an image (modeling_llava_next.py, read in the pinned venv; S = vision image_size, p = patch,
G = S / p, d = text hidden):
  pixel_values [N_img, T_max, 3, S, S] (the processor pads every image's tiles to the batch's T_max with zero tiles);
    get_image_features keeps the first T_i = image_size_to_num_patches(image_sizes[i], pinpoints, S) tiles of each
    image (1 base tile, the whole image squashed to S x S, then rows * cols grid tiles, row-major), runs them all
    through the CLIP tower, takes hidden_states[vision_feature_layer] (-2), drops the CLS row ("default": G*G rows
    per tile, row-major), and applies LlavaNextMultiModalProjector (linear_1 Dv->d, GELU erf, linear_2 d->d).
  pack_image_features, per image: rows, cols = get_anyres_image_grid_shape((h, w), pinpoints, S) (pinpoints read as
    (height, width)); the grid tiles' features laid out as one (rows*G) x (cols*G) canvas; unpad_image's crop of it
    (float arithmetic: if w/h > cur_w/cur_h, new_h = int(h * (cur_w / w)) and (cur_h - new_h) // 2 canvas rows are
    dropped at the top AND the bottom, else the same for columns); an image_newline vector (parameter
    "image_newline", [d], a top-level parameter of the model) appended after every kept canvas row; the image's
    features = the base tile's G*G rows, then the kept canvas rows (each: its kept columns, then image_newline),
    G*G + kept_rows * (kept_cols + 1) in all (tools/reference/make_anyres_feature_goldens.py's expected_order gives
    the source rows; feature_rows.json holds many sizes).
  The features of all images, in image order, are scattered into the <image> positions of input_ids in row-major
    order (masked_scatter), so input_ids must hold each image's exact feature count of <image> tokens (the
    processor's expansion; 4.46.3 checks the total and raises otherwise). A row may hold several images.
  4.46.3 takes its legacy in-model expansion path when no row holds image_seq_length <image> tokens
    (LlavaNextConfig's default 576); the config sets image_seq_length = G*G = 4, the fewest features an image with a
    non-empty crop can have, so the ordinary path runs (checked: the golden logits equal a hand-made masked_scatter
    of pack_image_features' output run through the language model, bit for bit).
  Then LLaMA and the loss exactly as in LlavaForConditionalGeneration (make_model_goldens.py): labels shifted by one,
    positions with attention_mask 0 dropped, mean cross-entropy over labels != -100.

Case next_tiny (seed 501), under ``<out>/next_tiny/``:
  CLIP tower hidden 32 (2 heads of 16), 3 layers (the last unused), intermediate 48, quick_gelu, image_size 28,
  patch_size 14 (G = 2: 4 features per tile, CLS dropped), vision_feature_layer -2, strategy "default"; projector
  mlp2x_gelu (LlavaNextMultiModalProjector); image_grid_pinpoints [[28,56],[56,28],[56,56]] ((height, width): grids
  1x2, 2x1, 2x2); image_newline; LLaMA hidden 64 (2 heads of 32), 2 layers, intermediate 64, vocab 160, untied head
  (image id 158, pad id 159) (make_ablation_goldens.py's sizes, make_model_goldens.build_config's text config).
  Weights: make_model_goldens.init_weights (every tensor redrawn from seed 501); it covers image_newline, which it
  draws as the other 1-D weights, 1 + 0.1 * N(0, 1) (its "norm weight" branch; image_newline is the first parameter
  in named_parameters, so the first draws).
  Two synthetic images (make_anyres_goldens.make_fixture), written as PNG to images/ and read back (the processor is
  given the PIL images of those files):
    a: 60 x 36 (h x w), portrait 3:5   best resolution 56x56, grid 2x2, 5 tiles, canvas 4x4, aspect 0.6 < 1 so
                                       columns are cropped: new_w = int(36 * (4/60)) = 2, one column dropped on each
                                       side, kept 4 rows x 2 cols: 4 + 4 * 3 = 16 features
    b: 30 x 24, portrait 4:5           best resolution 56x28, grid 2x1, 3 tiles (padded to 5 in pixel_values),
                                       canvas 4x2, aspect 0.8 > 0.5 so rows are cropped: new_h = int(30 * (2/24))
                                       = 2, one row dropped at the top and the bottom, kept 2 rows x 2 cols:
                                       4 + 2 * 3 = 10 features; the processor resizes it to 35x28 and pads
                                       (56 - 35) // 2 = 10 rows on both sides, so its padded image is 55 rows
                                       (its second grid tile is 27 rows before the tile's own resize)
    (the two branches of unpad_image, each with a real crop; LlavaNextProcessor's integer count agrees with the
    model's for both, asserted: for some sizes 4.46.3's processor and model disagree.)
  Rows (make_model_goldens.build_inputs' pattern and label masks): row 0 = BOS, image a, 3 prompt + 3 answer tokens,
  EOS; row 1 = text only (BOS, 9 tokens with the pad id once at a real position, EOS); row 2 = BOS, 3 prompt tokens,
  image b, 6 answer tokens, EOS; right-padded with the pad id; labels -100 on BOS, the images and the prompts.

Written under ``<out>/next_tiny/``, make_model_goldens.py's layout:
  model/config.json, model/generation_config.json, model/model.safetensors   save_pretrained's, unchanged
                         (image_newline, vision_tower.vision_model.*, multi_modal_projector.linear_{1,2}.*,
                         language_model.*); LlavaNextConfig writes its text_config and vision_config as differences
                         from LlamaConfig's and CLIPVisionConfig's defaults (no hidden_act, layer_norm_eps,
                         rope_theta, bos/eos ids: quick_gelu, 1e-5, 10000.0, 1, 2), as llava-hf's v1.6 configs do
  inputs.safetensors     input_ids I64 [B,T], attention_mask I64 [B,T], labels I64 [B,T] (the processor's ids and mask),
                         pixel_values F32 [N_img, T_max, 3, 28, 28] exactly as the processor returns and the model is
                         given (zero tiles past an image's own), image_sizes I64 [N_img, 2] ((height, width), the
                         processor's), tiles_per_image I64 [N_img]
  outputs.safetensors    logits F32 [B,T,V], loss F32 [], grad.projector.<name> (multi_modal_projector.* and
                         image_newline trainable), grad.projector+lm.<name> (plus language_model.*); the vision tower
                         frozen in both
  images/a.png, b.png    the source images (RGB, 8 bit)
  meta.json              per image its size, best resolution, grid, tiles, crop, features and the processor's count;
                         the checks below; versions

Checks (each asserted; numbers to meta.json):
  * the processor's input_ids equal the rows built here with each image's feature count (the model's, from
    get_anyres_image_grid_shape and unpad_image; the processor's _get_number_of_features - 1; and
    len(make_anyres_feature_goldens.expected_order(...)): all equal); its pixel_values of each image equal
    make_anyres_goldens.run_hf's single-image processing, zero past the image's tiles;
  * pack_image_features' feature_lens are those counts, and its output equals the projected tile features gathered
    by expected_order (image_newline at -1), bit for bit;
  * model.safetensors holds exactly named_parameters; from_pretrained reloads to the same logits and loss bit for bit;
  * every trainable tensor has a nonzero gradient; with everything trainable, the tensors without gradient are
    exactly the last vision layer and post_layernorm;
  * each image row run alone (its own pixel_values and image_sizes) gives its batch logits within 1e-5;
  * the same model in float64 (softmax kept in float64) gives the "exact" numbers: HF fp32's max |logit| error, loss
    error and worst per-tensor gradient rel-L2 error per set are recorded (bounded by 1e-4).

Size: about 1.03 MB (under 1 MiB): model.safetensors 514 KB and the projector+lm gradients 338 KB are fixed by the
sizes; pixel_values with image a's 5 tiles is 94 KB (two 3-tile images would save 38 KB but drop the 2x2 grid and
the tile padding).

Run (from the repository root, CPU only, a few seconds):
    /tmp/refvenv/bin/python tools/reference/make_llava_next_goldens.py
Options: --out DIR (default tests/data/golden/model), --cases next_tiny (the default).
Pinned versions: tools/reference/requirements-model.txt (torch 2.5.1, transformers 4.46.3, safetensors 0.4.5,
numpy 2.1.3, Pillow 11.0.0; tokenizers as transformers 4.46.3 pulls it). Two runs give byte-identical files (one
thread, deterministic algorithms; PNGs by Pillow's encoder).
"""

import copy
import json
import math
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_goldens as mmg  # noqa: E402  (sets CUDA_VISIBLE_DEVICES="" before torch loads)
import make_ablation_goldens as mag  # noqa: E402
import make_siglip_goldens as msg  # noqa: E402
import make_anyres_goldens as mar  # noqa: E402
from make_anyres_feature_goldens import expected_order, unpad_box  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402
from PIL import Image  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor,  # noqa: E402
                          PreTrainedTokenizerFast)
from transformers.image_processing_utils import select_best_resolution  # noqa: E402
from transformers.models.llava_next import modeling_llava_next as hf_mod  # noqa: E402

SEED = 501
PINPOINTS = [[28, 56], [56, 28], [56, 56]]
VISION = dict(mag.VISION, image_size=28, patch_size=14)
ROWS = dict(a=6, b=9, c1=3, c2=6)
# name -> (height, width); image a goes to row 0 (after BOS), image b to row 2 (after the prompt)
IMAGES = {"a": (60, 36), "b": (30, 24)}
CASES = {"next_tiny": dict(seed=SEED)}
BOS, EOS = mmg.BOS, mmg.EOS
TRAINABLE_SETS = {
    "projector": lambda n: n.startswith("multi_modal_projector.") or n == "image_newline",
    "projector+lm": lambda n: (n.startswith("multi_modal_projector.") or n == "image_newline"
                               or n.startswith("language_model.")),
}


def build_case_config():
    """make_model_goldens.build_config's CLIP and LLaMA sub-configs under a LlavaNextConfig."""
    c = dict(text=mag.TEXT, vision=VISION, rows=ROWS)
    base, image_token, pad_token, _ = mmg.build_config(c)
    G = VISION["image_size"] // VISION["patch_size"]
    cfg = LlavaNextConfig(vision_config=base.vision_config.to_dict(), text_config=base.text_config.to_dict(),
                          image_token_index=image_token, projector_hidden_act="gelu",
                          vision_feature_select_strategy="default", vision_feature_layer=-2,
                          image_grid_pinpoints=PINPOINTS, image_seq_length=G * G, pad_token_id=pad_token,
                          tie_word_embeddings=False)
    return cfg, image_token, pad_token, G


def tiny_tokenizer(V, image_token, pad_token):
    """A word-level tokenizer over "<unk>" 0, "<s>" 1, "</s>" 2, "t3".."t157", "<image>" 158, "<pad>" 159: text
    "t5 <image> t9" is those ids; the special tokens are split out before the whitespace split."""
    vocab = {"<unk>": 0, "<s>": BOS, "</s>": EOS, "<image>": image_token, "<pad>": pad_token}
    vocab.update({f"t{i}": i for i in range(3, V) if i not in (image_token, pad_token)})
    assert sorted(vocab.values()) == list(range(V))
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", additional_special_tokens=["<image>"], padding_side="right")


def image_plan(h, w, G, S):
    """The model's view of one image: best resolution, grid, tiles, unpad crop, feature count."""
    best = select_best_resolution((h, w), PINPOINTS)
    rows, cols = hf_mod.get_anyres_image_grid_shape((h, w), PINPOINTS, S)
    tiles = hf_mod.image_size_to_num_patches((h, w), PINPOINTS, S)
    assert tiles == 1 + rows * cols
    kh, kw = hf_mod.unpad_image(torch.empty(1, rows * G, cols * G), (h, w)).shape[1:]
    top, bottom, left, right = unpad_box(h, w, rows * G, cols * G)
    assert (bottom - top, right - left) == (kh, kw)
    return dict(size_hw=[h, w], best_resolution_hw=list(best), grid_rows=rows, grid_cols=cols, tiles=tiles,
                canvas_hw=[rows * G, cols * G], kept_box_top_bottom_left_right=[top, bottom, left, right],
                kept_rows=kh, kept_cols=kw, features=G * G + kh * (kw + 1))


def build_rows(n_feat, image_token, pad_token, V, seed):
    """make_model_goldens.build_inputs' three rows and label masks, each image block n_feat[name] tokens long."""
    g = torch.Generator().manual_seed(seed + 1)
    r = ROWS

    def text(n):
        return torch.randint(3, V - 2, (n,), generator=g).tolist()

    pa, pb = n_feat["a"], n_feat["b"]
    t0 = text(r["a"])
    row0 = [BOS] + [image_token] * pa + t0 + [EOS]
    k0 = mmg.N_PROMPT_MASKED["row0"]
    m0 = [True] * (1 + pa + k0) + [False] * (r["a"] - k0) + [False]
    t1 = text(r["b"])
    t1[r["b"] // 2 + 1] = pad_token
    row1 = [BOS] + t1 + [EOS]
    k1 = mmg.N_PROMPT_MASKED["row1"]
    m1 = [True] * (1 + k1) + [False] * (r["b"] - k1) + [False]
    t2a, t2b = text(r["c1"]), text(r["c2"])
    row2 = [BOS] + t2a + [image_token] * pb + t2b + [EOS]
    m2 = [True] * (1 + r["c1"] + pb) + [False] * r["c2"] + [False]
    # the same rows as text for the processor: one "<image>" per image, which it expands
    words = {BOS: "<s>", EOS: "</s>", pad_token: "<pad>"}

    def as_text(ids):
        return " ".join(words.get(i, f"t{i}") for i in ids)

    texts = [as_text([BOS] + t0 + [EOS]).replace("<s> ", "<s> <image> ", 1), as_text(row1),
             as_text([BOS] + t2a) + " <image> " + as_text(t2b + [EOS])]
    return [row0, row1, row2], [m0, m1, m2], texts


def run_case(name, out_root):
    seed = CASES[name]["seed"]
    torch.manual_seed(seed)
    cfg, image_token, pad_token, G = build_case_config()
    S = cfg.vision_config.image_size
    V = cfg.text_config.vocab_size
    model = LlavaNextForConditionalGeneration._from_config(cfg, attn_implementation="eager", torch_dtype=torch.float32)
    model = model.float().train()
    mmg.init_weights(model, seed)
    attn_classes = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Attention")})
    assert attn_classes == ["CLIPAttention", "LlamaAttention"], attn_classes
    drop = sorted({float(m.p) for m in model.modules() if isinstance(m, torch.nn.Dropout)})
    assert drop in ([], [0.0]), drop
    assert cfg.vision_config.attention_dropout == 0.0 and cfg.text_config.attention_dropout == 0.0
    assert model.language_model.lm_head.weight.data_ptr() != model.language_model.model.embed_tokens.weight.data_ptr()
    pnames = [n for n, _ in model.named_parameters()]
    assert pnames[0] == "image_newline" and tuple(model.image_newline.shape) == (cfg.text_config.hidden_size,)

    d = os.path.join(out_root, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    mdir = os.path.join(d, "model")
    model.save_pretrained(mdir, safe_serialization=True)
    with open(os.path.join(mdir, "config.json")) as fh:
        cj = json.load(fh)
    assert cj["model_type"] == "llava_next" and cj["image_grid_pinpoints"] == PINPOINTS

    # ---- images, as PNG files, read back
    idir = os.path.join(d, "images")
    os.makedirs(idir)
    pils, arrays, plans = [], [], {}
    for i, (iname, (h, w)) in enumerate(IMAGES.items()):
        a = mar.make_fixture(w, h, i)
        path = os.path.join(idir, f"{iname}.png")
        Image.fromarray(a).save(path, optimize=True)
        im = Image.open(path).convert("RGB")
        assert np.array_equal(np.array(im), a)
        pils.append(im)
        arrays.append(a)
        plans[iname] = image_plan(h, w, G, S)
    n_feat = {k: p["features"] for k, p in plans.items()}
    assert len(set(n_feat.values())) == len(n_feat)
    assert len({(p["grid_rows"], p["grid_cols"]) for p in plans.values()}) == len(plans)

    # ---- the processor: pixel_values, image_sizes, the expanded input_ids
    rows, masks, texts = build_rows(n_feat, image_token, pad_token, V, seed)
    proc = LlavaNextProcessor(image_processor=mar.hf_processor(S, PINPOINTS),
                              tokenizer=tiny_tokenizer(V, image_token, pad_token),
                              patch_size=cfg.vision_config.patch_size, vision_feature_select_strategy="default")
    enc = proc(images=pils, text=texts, padding=True, add_special_tokens=False, return_tensors="pt")
    lens = [len(x) for x in rows]
    assert len(set(lens)) == len(lens), lens
    B, T = len(rows), max(lens)
    input_ids = torch.full((B, T), pad_token, dtype=torch.int64)
    attention_mask = torch.zeros((B, T), dtype=torch.int64)
    labels = torch.full((B, T), -100, dtype=torch.int64)
    for b, (row, m) in enumerate(zip(rows, masks)):
        input_ids[b, :len(row)] = torch.tensor(row)
        attention_mask[b, :len(row)] = 1
        labels[b, :len(row)] = torch.tensor([-100 if mk else t for t, mk in zip(row, m)])
    assert torch.equal(enc["input_ids"], input_ids), (enc["input_ids"], input_ids)
    assert torch.equal(enc["attention_mask"], attention_mask)
    assert bool((labels[input_ids == image_token] == -100).all())
    pixel_values, image_sizes = enc["pixel_values"], enc["image_sizes"]
    assert pixel_values.dtype == torch.float32 and image_sizes.dtype == torch.int64
    tiles = [p["tiles"] for p in plans.values()]
    assert tuple(pixel_values.shape) == (len(IMAGES), max(tiles), 3, S, S), pixel_values.shape
    for i, (iname, p) in enumerate(plans.items()):
        assert image_sizes[i].tolist() == p["size_hw"]
        pv1, _, _, plan1 = mar.run_hf(arrays[i], S, PINPOINTS)  # the processor on this image alone
        assert np.array_equal(pixel_values[i, :p["tiles"]].numpy(), pv1)
        assert not bool(pixel_values[i, p["tiles"]:].any())
        h, w = p["size_hw"]
        p["processor_tokens"] = LlavaNextProcessor._get_number_of_features(proc, h, w, S, S) - 1
        p["processor_tokens_in_input_ids"] = int((input_ids == image_token).sum(1)[0 if iname == "a" else 2])
        p["expected_order_len"] = len(expected_order(h, w, p["grid_rows"], p["grid_cols"], G))
        p["resized_hw"], p["padded_hw"], p["paste_offset_hw"] = plan1["resized"], plan1["padded"], plan1["offset"]
        assert p["features"] == p["processor_tokens"] == p["processor_tokens_in_input_ids"] == p["expected_order_len"], p
        p["png"] = f"images/{iname}.png"
        p["batch_row"] = 0 if iname == "a" else 2
        p["first_token_position"] = int((input_ids[p["batch_row"]] == image_token).nonzero()[0])
    inputs = dict(input_ids=input_ids, pixel_values=pixel_values, image_sizes=image_sizes,
                  attention_mask=attention_mask, labels=labels)
    save_file({**{k: v.contiguous() for k, v in inputs.items()}, "tiles_per_image": torch.tensor(tiles)},
              os.path.join(d, "inputs.safetensors"))

    # ---- goldens
    results = {s: mmg.hf_grads(model, inputs, t) for s, t in TRAINABLE_SETS.items()}
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
    assert sorted(saved) == sorted(pnames), set(saved) ^ set(pnames)
    assert all(t.dtype == torch.float32 for t in saved.values())
    checks["saved_key_count"] = len(saved)
    checks["image_newline_saved"] = dict(name="image_newline", shape=list(saved["image_newline"].shape),
                                         init="make_model_goldens.init_weights: 1 + 0.1 * N(0,1) (1-D branch)",
                                         mean=float(saved["image_newline"].mean()),
                                         std=float(saved["image_newline"].std()))
    re_m = LlavaNextForConditionalGeneration.from_pretrained(mdir, attn_implementation="eager",
                                                             torch_dtype=torch.float32)
    re_m.train()
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

    # the packed features: feature_lens, the order by expected_order, the merge into the language model
    with torch.no_grad():
        per_image = model.get_image_features(pixel_values, image_sizes, cfg.vision_feature_layer,
                                             cfg.vision_feature_select_strategy)
        packed, feature_lens = model.pack_image_features(per_image, image_sizes, "default",
                                                         image_newline=model.image_newline)
        assert feature_lens.tolist() == list(n_feat.values()), feature_lens
        gathered = []
        for i, (iname, p) in enumerate(plans.items()):
            assert tuple(per_image[i].shape) == (p["tiles"], G * G, cfg.text_config.hidden_size)
            flat = per_image[i].reshape(-1, per_image[i].shape[-1])
            h, w = p["size_hw"]
            for k in expected_order(h, w, p["grid_rows"], p["grid_cols"], G):
                gathered.append(model.image_newline if k < 0 else flat[k])
        checks["packed_equals_expected_order_gather_bitwise"] = bool(torch.equal(packed, torch.stack(gathered)))
        assert checks["packed_equals_expected_order_gather_bitwise"]
        emb = model.get_input_embeddings()(input_ids)
        emb = emb.masked_scatter((input_ids == image_token)[..., None].expand_as(emb), packed)
        lg_hand = model.language_model(inputs_embeds=emb, attention_mask=attention_mask).logits
        checks["logits_equal_hand_masked_scatter_bitwise"] = bool(torch.equal(lg_hand, logits))
        assert checks["logits_equal_hand_masked_scatter_bitwise"]

        # each image row alone
        worst = 0.0
        for i, (iname, p) in enumerate(plans.items()):
            b, Lb = p["batch_row"], lens[p["batch_row"]]
            lg = model(input_ids=input_ids[b:b + 1, :Lb], attention_mask=attention_mask[b:b + 1, :Lb],
                       pixel_values=pixel_values[i:i + 1, :p["tiles"]], image_sizes=image_sizes[i:i + 1]).logits
            worst = max(worst, msg.maxabs(lg[0], logits[b, :Lb]))
        checks["image_row_alone_vs_batch_max_abs_logit_diff"] = worst
        assert worst < 1e-5, worst

    # parameters without gradient with everything trainable: the last vision layer and post_layernorm
    nog = msg.no_gradient_params(model, inputs)
    L = cfg.vision_config.num_hidden_layers
    vp = "vision_tower.vision_model."
    expect = sorted(n for n in pnames if n.startswith(f"{vp}encoder.layers.{L - 1}.") or
                    n.startswith(f"{vp}post_layernorm."))
    assert nog == expect, set(nog) ^ set(expect)
    checks["params_without_gradient_all_trainable"] = nog

    # float64 ("exact") numbers
    m64 = copy.deepcopy(model).double()
    in64 = dict(inputs, pixel_values=pixel_values.double())
    with msg.true_fp64_softmax():
        r64 = {s: mmg.hf_grads(m64, in64, t) for s, t in TRAINABLE_SETS.items()}
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
    fp64["image_newline_grad_rel_l2"] = {s: mmg.rel(gr["image_newline"], r64[s][2]["image_newline"])
                                         for s, (_, _, gr) in results.items()}
    fp64["note"] = "float64 model, softmax kept in float64 (make_siglip_goldens.true_fp64_softmax)"
    assert fp64["max_abs_logit_diff"] < 1e-4, fp64
    checks["hf_fp32_vs_fp64"] = fp64

    stats = dict(B=B, T=T, V=V, n_images=len(IMAGES), row_lengths=lens,
                 n_label_tokens_counted=int((labels[:, 1:] != -100).sum()), loss=float(loss),
                 loss_hex=loss.numpy().astype(np.float32).tobytes().hex(),
                 max_abs_logit=float(logits.abs().max()), max_abs_logit_real_positions=float(logits[am].abs().max()),
                 rms_packed_image_features=float(packed.pow(2).mean().sqrt()), log_V=math.log(V),
                 grad_l2={s: {n: float(g.norm()) for n, g in gr.items() if not n.startswith("language_model.")}
                          for s, (_, _, gr) in results.items()})
    meta = dict(
        case=name, seed=seed, generator="tools/reference/make_llava_next_goldens.py",
        versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                      safetensors=safetensors.__version__, numpy=np.__version__,
                      tokenizers=tokenizers.__version__, pillow=Image.__version__),
        config_json={k: cj[k] for k in ["model_type", "architectures", "image_grid_pinpoints", "image_seq_length",
                                        "image_token_index", "projector_hidden_act", "vision_feature_layer",
                                        "vision_feature_select_strategy", "tie_word_embeddings"]},
        image_token_id=image_token, pad_token_id=pad_token, bos_token_id=BOS, eos_token_id=EOS,
        text=mag.TEXT, vision=VISION, tile_grid=G, features_per_tile=G * G, images=plans,
        processor=dict(texts=texts, image_processor=proc.image_processor.to_dict(),
                       patch_size=proc.patch_size, vision_feature_select_strategy="default"),
        attention_classes=attn_classes, stats=stats, checks=checks)
    for k in ("image_processor_type", "_processor_class"):
        meta["processor"]["image_processor"].pop(k, None)
    mmg.write_meta(d, meta)
    return meta


def main():
    metas, out = mmg.run_cases(__doc__, CASES, run_case)
    for m in metas:
        ch = m["checks"]
        f = ch["hf_fp32_vs_fp64"]
        print(f"{m['case']}: B {m['stats']['B']} T {m['stats']['T']} loss {m['stats']['loss']!r} "
              f"(0x{m['stats']['loss_hex']}); fp32 vs fp64 max |logit| {f['max_abs_logit_diff']:.2e}, "
              f"grad worst rel-L2 " + ", ".join(f"{s} {v['worst_rel_l2']:.2e} ({v['param']})"
                                                for s, v in f["grad_worst_rel_l2"].items()))
        for iname, p in m["images"].items():
            print(f"  image {iname}: {p['size_hw'][0]}x{p['size_hw'][1]} best {p['best_resolution_hw']} grid "
                  f"{p['grid_rows']}x{p['grid_cols']} tiles {p['tiles']} kept {p['kept_rows']}x{p['kept_cols']} "
                  f"box {p['kept_box_top_bottom_left_right']} features {p['features']} "
                  f"(processor {p['processor_tokens']}) row {p['batch_row']} at {p['first_token_position']}")
        print(f"  gradients {ch['gradient_counts']}; row alone vs batch "
              f"{ch['image_row_alone_vs_batch_max_abs_logit_diff']:.2e}")
    print()
    mmg.print_sizes(out, [m["case"] for m in metas])


if __name__ == "__main__":
    main()
