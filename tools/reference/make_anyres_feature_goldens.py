"""Goldens for the order in which LLaVA-NeXT (AnyRes) lays out one image's features for the language model.

What is reference (pinned in tools/reference/requirements-anyres.txt; this script needs torch 2.5.1 and
transformers 4.46.3 only): transformers 4.46.3 LlavaNextForConditionalGeneration.pack_image_features, i.e. what
the model does between the projector and the language model's inputs_embeds: the base tile's features, then the
tiles of the grid reassembled into one feature canvas, unpad_image's crop of it, an image_newline after every
canvas row, flattened row-major. get_anyres_image_grid_shape (modeling_llava_next) gives the grid.

Method: for each config a tiny LlavaNextConfig (CLIP vision tower with image_size S and patch_size P, so each
tile is a G x G feature grid, G = S // P; a tiny llama text model of hidden size H = 4;
vision_feature_select_strategy "default", i.e. the CLS row is dropped and a tile has G*G rows; the config's
image_grid_pinpoints) and LlavaNextForConditionalGeneration._from_config(config, torch_dtype=float32). For one
image of size (h, w) (pixels, height first, as image_sizes holds it), rows, cols =
get_anyres_image_grid_shape((h, w), pinpoints, S) and T = 1 + rows * cols tiles; image_features = [a float32
tensor (T, G*G, H) whose rows all hold their own id t*G*G + k in every channel (t = 0 the base tile, t >= 1 the
grid tiles in the processor's row-major order, k the row-major position in the tile's G x G grid)] and
image_sizes = torch.tensor([[h, w]]) (a tensor, as forward passes it). pack_image_features(image_features,
image_sizes, vision_feature_select_strategy="default", image_newline=torch.full((H,), -1.0)) is called
directly; channel 0 of its packed features, read as integers, is "order" (-1 = image_newline); every channel is
checked to agree. Its feature_lens is "feature_len". All the cases of a config are also packed in one batched
call, which must give the concatenation of the single calls and the same feature_lens.

Configs: S=28, P=14 (G=2) with pinpoints [[28,56],[56,28],[56,56],[84,28],[28,84]]; S=42, P=14 (G=3) with
[[42,84],[84,42],[84,84]]; and S=28, P=14 with [[28,28],[28,56],[56,28],[56,56]], where [S, S] is a pinpoint,
so small and near-square images select a 1 x 1 grid (T = 2: the base tile plus one grid tile, which still goes
through the crop-and-newline path). Pinpoints are [h, w] in pixels, as transformers takes them. Each config has
a fixed list of image sizes (tall, wide, square, tiny, odd, large) plus its pinpoints and half-pinpoints, plus
the first sizes (h, w <= 600, in row-major order) of three kinds found by a search (searched_sizes): an odd
difference between the canvas side and the truncated scaled side (the symmetric crop keeps one extra
row/column), a scaled side that float arithmetic truncates one below the exact rational value in a way that
moves the crop, and a crop that keeps nothing in one direction.

T = 1 is not reachable through the grid (rows * cols >= 1 always); pack_image_features takes its other branch
only when an image comes with a single tile (anyres off). Each config's "single_tile" records that branch, called
with a (1, G*G, H) tensor: the tile's rows then one newline.

The script also checks, for every (h, w) with 1 <= h, w <= 160 and every config, that the packed order equals
the closed form described in the report (expected_order below).

Output: tests/data/images/anyres/feature_rows.json, one case per line. Two runs are byte-identical (checked:
ids and lengths are integers; nothing depends on the random init or the clock).

Run from the repository root:
    /tmp/refvenv/bin/python tools/reference/make_anyres_feature_goldens.py
"""
import json
import pathlib

import torch
import transformers
from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration
from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape

OUT = pathlib.Path("tests/data/images/anyres/feature_rows.json")
HIDDEN = 4

CONFIGS = [
    (28, 14, [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]]),
    (42, 14, [[42, 84], [84, 42], [84, 84]]),
    (28, 14, [[28, 28], [28, 56], [56, 28], [56, 56]]),
]

# (h, w): tiny, square, odd, 2:1, 3:1, 4:1, 3:2, photo shapes, strips, large.
BASE_SIZES = [
    (1, 1), (5, 9), (9, 5), (2, 3), (3, 200), (200, 3), (13, 31), (31, 13),
    (28, 28), (42, 42), (57, 57), (100, 100), (101, 103), (103, 101), (1000, 1000),
    (37, 53), (53, 37), (61, 97), (97, 61), (29, 57), (57, 29),
    (28, 56), (56, 28), (50, 100), (100, 50), (30, 90), (90, 30), (28, 84), (84, 28),
    (30, 120), (120, 30), (40, 60), (60, 40),
    (480, 640), (640, 480), (1080, 1920), (1920, 1080),
    (500, 120), (120, 500), (333, 777), (777, 333),
]


def make_model(s, p, pinpoints):
    vc = CLIPVisionConfig(image_size=s, patch_size=p, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                          num_attention_heads=2, projection_dim=8)
    tc = LlamaConfig(vocab_size=64, hidden_size=HIDDEN, intermediate_size=8, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=2)
    cfg = LlavaNextConfig(vision_config=vc.to_dict(), text_config=tc.to_dict(), image_grid_pinpoints=pinpoints,
                          vision_feature_select_strategy="default", image_token_index=63)
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration._from_config(cfg, torch_dtype=torch.float32)
    assert model.config.vision_config.image_size == s and model.config.vision_config.patch_size == p
    assert model.config.image_grid_pinpoints == pinpoints
    return model.eval()


def id_features(tiles, g):
    ids = torch.arange(tiles * g * g, dtype=torch.float32).view(tiles, g * g, 1)
    return ids.expand(tiles, g * g, HIDDEN).contiguous()


def read_ids(packed):
    ch0 = packed[:, 0]
    assert torch.equal(packed, ch0[:, None].expand_as(packed)), "channels disagree"
    ids = ch0.to(torch.int64)
    assert torch.equal(ids.to(torch.float32), ch0)
    return ids.tolist()


def unpad_box(h, w, cur_h, cur_w):
    """unpad_image's crop of a cur_h x cur_w canvas for an image of h x w: (top, bottom, left, right) kept."""
    if w / h > cur_w / cur_h:
        new_h = int(h * (cur_w / w))
        pad = (cur_h - new_h) // 2
        return pad, cur_h - pad, 0, cur_w
    new_w = int(w * (cur_h / h))
    pad = (cur_w - new_w) // 2
    return 0, cur_h, pad, cur_w - pad


def expected_order(h, w, rows, cols, g):
    """The layout in closed form: base tile rows 0..G*G-1, then for each kept canvas row y (top..bottom-1) the
    kept canvas columns x (left..right-1) as source row id (1 + (y//G)*cols + x//G)*G*G + (y%G)*G + x%G, then -1."""
    order = list(range(g * g))
    top, bottom, left, right = unpad_box(h, w, rows * g, cols * g)
    for y in range(top, bottom):
        for x in range(left, right):
            order.append((1 + (y // g) * cols + x // g) * g * g + (y % g) * g + x % g)
        order.append(-1)
    return order


def pack_one(model, h, w, tiles, g, newline):
    feats, lens = model.pack_image_features([id_features(tiles, g)], torch.tensor([[h, w]]),
                                            vision_feature_select_strategy="default", image_newline=newline)
    return read_ids(feats), lens.tolist()


def searched_sizes(s, pinpoints, g, known):
    """First sizes in row-major order (h, w <= 600, not already listed) of three kinds: an odd difference between
    the canvas side and the truncated scaled side, some lines kept (the symmetric crop keeps one line more than
    the scaled side); float truncation (int(h * (cur_w / w)) below the exact h * cur_w // w) that changes the
    crop offset; nothing kept in one direction (the order is the base tile, plus only newlines when the columns
    vanish)."""
    want = {"odd": 3, "float": 3, "empty": 2}
    found = {k: [] for k in want}
    for h in range(1, 601):
        for w in range(1, 601):
            if (h, w) in known:
                continue
            rows, cols = get_anyres_image_grid_shape((h, w), pinpoints, s)
            cur_h, cur_w = rows * g, cols * g
            if w / h > cur_w / cur_h:
                cur, got, exact = cur_h, int(h * (cur_w / w)), (h * cur_w) // w
            else:
                cur, got, exact = cur_w, int(w * (cur_h / h)), (w * cur_h) // h
            kept = cur - 2 * ((cur - got) // 2)
            kinds = {"odd": (cur - got) % 2 == 1 and kept > 0,
                     "float": (cur - got) // 2 != (cur - exact) // 2,
                     "empty": kept == 0}
            for k, hit in kinds.items():
                if hit and len(found[k]) < want[k] and all((h, w) not in v for v in found.values()):
                    found[k].append((h, w))
            if all(len(found[k]) == want[k] for k in want):
                return found["odd"] + found["float"] + found["empty"]
    raise AssertionError(f"search incomplete: {found}")


def run_config(s, p, pinpoints):
    g = s // p
    model = make_model(s, p, pinpoints)
    newline = torch.full((HIDDEN,), -1.0)
    sizes = list(BASE_SIZES)
    for ph, pw in pinpoints:
        for hw in ((ph, pw), (ph // 2, pw // 2)):
            if hw not in sizes:
                sizes.append(hw)
    sizes += searched_sizes(s, pinpoints, g, set(sizes))

    cases, all_feats, all_sizes, all_orders, all_lens = [], [], [], [], []
    with torch.no_grad():
        for h, w in sizes:
            rows, cols = get_anyres_image_grid_shape((h, w), pinpoints, s)
            tiles = 1 + rows * cols
            order, lens = pack_one(model, h, w, tiles, g, newline)
            assert lens == [len(order)]
            assert order == expected_order(h, w, rows, cols, g), (h, w)
            cases.append({"image_hw": [h, w], "rows": rows, "cols": cols, "tiles": tiles, "order": order,
                          "feature_len": lens[0]})
            all_feats.append(id_features(tiles, g))
            all_sizes.append([h, w])
            all_orders += order
            all_lens += lens
        feats, lens = model.pack_image_features(all_feats, torch.tensor(all_sizes),
                                                vision_feature_select_strategy="default", image_newline=newline)
        assert read_ids(feats) == all_orders and lens.tolist() == all_lens, "batched call differs"

        for h in range(1, 161):
            for w in range(1, 161):
                rows, cols = get_anyres_image_grid_shape((h, w), pinpoints, s)
                order, _ = pack_one(model, h, w, 1 + rows * cols, g, newline)
                assert order == expected_order(h, w, rows, cols, g), ("sweep", s, pinpoints, h, w)

        h, w = 37, 53
        order, lens = pack_one(model, h, w, 1, g, newline)
        assert order == list(range(g * g)) + [-1] and lens == [len(order)]
        single = {"image_hw": [h, w], "tiles": 1, "order": order, "feature_len": lens[0]}
    return {"image_size": s, "patch_size": p, "grid": g, "pinpoints": pinpoints, "single_tile": single,
            "cases": cases}


def dump(doc):
    d = lambda x: json.dumps(x, separators=(",", ":"))  # noqa: E731
    out = ["{", f'"generator":{d(doc["generator"])},', f'"versions":{d(doc["versions"])},', '"configs":[']
    for ci, c in enumerate(doc["configs"]):
        out.append("{" + ",".join(f'"{k}":{d(c[k])}' for k in ("image_size", "patch_size", "grid", "pinpoints",
                                                                 "single_tile")) + ',"cases":[')
        out += [d(case) + ("," if i + 1 < len(c["cases"]) else "") for i, case in enumerate(c["cases"])]
        out.append("]}" + ("," if ci + 1 < len(doc["configs"]) else ""))
    out += ["]", "}"]
    return "\n".join(out) + "\n"


def main():
    doc = {
        "generator": "tools/reference/make_anyres_feature_goldens.py: transformers "
                     "LlavaNextForConditionalGeneration.pack_image_features on row-id features",
        "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__},
        "configs": [run_config(s, p, pp) for s, p, pp in CONFIGS],
    }
    json.loads(dump(doc))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(dump(doc))
    for c in doc["configs"]:
        print(f"S={c['image_size']} G={c['grid']} pinpoints={c['pinpoints']}: {len(c['cases'])} cases")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
