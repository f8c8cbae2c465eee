#!/usr/bin/env python3
"""Golden data for running a CLIP vision tower at another image size than it was trained for, its position embeddings
interpolated as transformers 4.46.3's CLIPVisionEmbeddings.interpolate_pos_encoding does (bicubic, torch 2.5.1, CPU).

What is reference. transformers' ``LlavaForConditionalGeneration`` (fp32, eager attention: CLIP tower, LLaMA LM,
transformers' own mlp2x_gelu projector, the <image> merge, the loss), unchanged except that ``get_image_features`` is
replaced on the instance by 4.46.3's own body with one argument added: the tower is called with
``interpolate_pos_encoding=True`` (4.46.3's Llava never passes it; CLIPVisionEmbeddings.forward then refuses any
pixel size other than vision_config.image_size).

What interpolate_pos_encoding computes (transformers 4.46.3, models/clip/modeling_clip.py; read, not copied).
Dv = vision hidden, p = patch_size, P = position_embedding.weight: [1 + G*G, Dv] (row 0: the class position, row
1 + r*G + c: patch (r, c)), G = image_size / p the grid the tower was trained for; the image is H x W pixels.
  * num_patches = rows of the embeddings - 1 = (H / p) * (W / p); num_positions = G*G.
    Early return (not tracing): num_patches == num_positions and H == W -> P itself (position_embedding(position_ids),
    the weight rows in order, bit for bit), nothing interpolated.
  * Otherwise: class_pos = P[0] kept unchanged; the patch rows P[1:] reshaped to (1, S, S, Dv), S = int(sqrt(G*G)),
    permuted to (1, Dv, S, S) (a view: row r, column c of channel d is P[1 + r*S + c, d]);
    F.interpolate(size=(H', W'), H' = H // p, W' = W // p, mode="bicubic", align_corners=False) (size given, no
    scale_factor: torch's scales are None), permuted back to (1, H', W', Dv) and viewed as (1, H'*W', Dv) row-major:
    new row 1 + i*W' + j is output pixel (i, j); torch.cat((class_pos, patches)) -> [1 + H'*W', Dv], added to
    [CLS, patch embeddings] in place of P. Nothing else changes (patch conv, class embedding, layers). It runs on
    every forward in the parameter's dtype (fp32); no gradient reaches the frozen tower here. (The trained
    image_size itself is never read on this path; with a square image only G*G vs (H/p)^2 decides.)
  * Bicubic (torch's upsample_bicubic2d, CPU, float32: aten/src/ATen/native/UpSample.h and cpu/UpSampleKernel.cpp,
    upsample_generic_Nd_kernel_impl with HelperInterpCubic). Separable, the same per axis (here both axes G -> G'):
      scale = float(G) / G'                                          (fp32 division)
      src(i) = scale * (i + 0.5) - 0.5                               (i = 0..G'-1; negative values kept for cubic)
      i0 = min(floor(src), G - 1);  t = min(max(src - i0, 0), 1)
      taps k = 0..3 at index clamp(i0 - 1 + k, 0, G - 1)          (border: the edge row/column repeated, no zeros)
      weights, A = -0.75 (Keys' cubic convolution as OpenCV; not Pillow's -0.5, which torch uses only with antialias):
        cc1(x) = ((A + 2) * x - (A + 3)) * x * x + 1                  (|x| <= 1)
        cc2(x) = ((A * x - 5A) * x + 8A) * x - 4A                     (1 < |x| < 2)
        w0 = cc2(t + 1), w1 = cc1(t), w2 = cc1(1 - t), w3 = cc2(2 - t)
      out[d, i, j] = sum_a wy_a(i) * (sum_b wx_b(j) * in[d, iy_a(i), ix_b(j)])   (the width pass inside, the height
      pass outside; clamped taps stay separate terms, weights not merged)
    Exact fp32 order (both found bit for bit below; which one runs depends on the CPU kernel torch dispatches to):
      x86 with AVX2 or AVX512 (torch 2.5.1's wheel, GCC 9.3, evidently contracting some a*b+c to fused
      multiply-adds; this machine: AVX512, so the goldens):
        src = fmaf(scale, (float)i + 0.5f, -0.5f)   (one rounding); t = src - (float)i0;
        cc1/cc2 every operation rounded to fp32, no fma (fusing (A+2)*x - (A+3) gave the same on all 3360 weight
        sets tried while writing this, sizes 2..38 -> 2..57); 1 - t, t + 1 and (1 - t) + 1 each rounded to fp32;
        dot4(v, w) = fmaf(v3, w3, fmaf(v2, w2, fmaf(v0, w0, v1 * w1)))  (v1*w1 rounded, then fused in that order);
        row_a = dot4(in[d, iy_a, ix_0..3], wx); out = dot4(row_0..3, wy).
      torch's default (no-AVX) kernel (ATEN_CPU_CAPABILITY=default): every operation rounded separately:
        src = (scale * ((float)i + 0.5f)) - 0.5f; dot4 = ((v0*w0 + v1*w1) + v2*w2) + v3*w3.
    Checked here: F.interpolate's fp32 result equals the x86 emulation bit for bit (AVX512, and AVX2 in a
    subprocess with ATEN_CPU_CAPABILITY=avx2) and the default kernel's result (ATEN_CPU_CAPABILITY=default) equals the
    separate-rounding emulation bit for bit; the two differ in about half the interpolated values, by <= 1.2e-7
    (absolute: many ulps for values near zero).
    fp32 weights are not the exact ones: cc2's intermediate terms are ~3..6, so w0 / w3 carry absolute errors up to
    ~5e-7 (4 -> 6: w0(t = 0.8333) = -0.017360687 in fp32, -0.0173611111 exactly); hence an exact (fp64) evaluation
    lands up to 7.5e-7 from the golden for interp_up (6.1e-8 for interp_down, whose weights are exact).
    For 6 -> 4 (interp_down) scale = 1.5 and src = 0.25, 1.75, 3.25, 4.75 (t = 0.25 / 0.75; the weights are exact
    dyadic numbers: 0.25 -> (-0.10546875, 0.87890625, 0.26171875, -0.03515625)); for 4 -> 6 (interp_up) scale =
    fp32(2/3) = 0.666666686534881591796875 and src(3) is where the two kernels differ (fma: 1.8333333730697632,
    separate roundings: 1.8333334922790527).

Cases (written under ``<out>/<case>/``, the layout of make_model_goldens.py; tests/test_model_parity.c reads it):
  interp_up    a CLIP tower trained for 16 px in 4x4 patches (4x4 grid, 17 positions) run at 24 px (6x6: 36 patches)
  interp_down  a CLIP tower trained for 24 px (6x6 grid, 37 positions) run at 16 px (4x4: 16 patches)
Common: make_ablation_goldens.py's model minus its variants: LLaMA LM hidden 64 (2 heads of 32), 2 layers,
intermediate 64, vocab 160 (image id 158, pad id 159), untied head; CLIP tower (quick_gelu) hidden 32 (2 heads of 16),
3 layers (the last unused), intermediate 48, patch 4; vision_feature_layer -2, strategy "default" (CLS dropped);
projector mlp2x_gelu (transformers' LlavaMultiModalProjector: linear_1 [64, 32], GELU erf, linear_2 [64, 64]);
make_model_goldens.py's rows (image after BOS, text only, image in the middle; 2 images), its init_weights and its
input builder, the pixel_values drawn at the run size.

Files:
  model/config.json          LlavaConfig.save_pretrained's, then: "model_type": "llava_c",
                             "architectures": ["LlavaCForConditionalGeneration"], "mm_projector_type": "mlp2x_gelu",
                             "mm_vision_image_size": the run size (24 / 16), "image_seq_length": the run-time tokens
                             per image (36 / 16); vision_config.image_size stays the trained size (16 / 24)
  model/model.safetensors    save_pretrained's (4.46.3's legacy names); embeddings.position_embedding.weight is the
                             tower's own [1 + G*G, 32] (17 / 37 rows): the loader interpolates
  inputs.safetensors         input_ids I64 [B,T], pixel_values F32 [2, 3, run, run], attention_mask I64, labels I64
  outputs.safetensors        logits F32 [B,T,V], loss F32 [], grad.projector.<name>, grad.projector+lm.<name> (the
                             tower frozen in both sets), interp.position_embedding F32 [1 + G'*G', 32] (37 / 17 rows:
                             interpolate_pos_encoding's result, the one the forward added; row 0 = the class row)
  meta.json                  settings, tokens, loss, the checks below, versions

Checks (asserted; numbers in meta.json):
  * equal sizes: on each case's config run at its trained size (image_seq_length G*G), the patched model gives
    transformers' unpatched model's logits, loss and every gradient of both sets bit for bit (the early return);
    interpolate_pos_encoding at the trained size returns the weight bit for bit, and F.interpolate to the same size
    returns its input bit for bit (so a loader may skip it or not);
  * the interpolated embedding the forward used (recorded from inside it) equals interp.position_embedding bit for bit;
  * an explicit float64 loop of the formulas above (A = -0.75, clamped taps) against F.interpolate on the float64
    embedding (max |diff| recorded, < 1e-14) and against the fp32 golden (recorded); near misses (A = -0.5, zero or
    reflected borders instead of clamped, align_corners=True, antialias=True, bilinear, the patch rows read
    column-major, the grid taken one row early) are told apart (each max |diff| from the golden recorded, > 1e-3);
  * the fp32 emulations above: the x86-FMA order equals the golden bit for bit (on an AVX2/AVX512 machine; on an
    AVX512 one F.interpolate in a subprocess with ATEN_CPU_CAPABILITY=avx2 gives the golden's bits too), and the
    separate-rounding order equals F.interpolate run in a subprocess with ATEN_CPU_CAPABILITY=default bit for bit
    (its max |diff| from the golden recorded: <= 1.2e-7);
  * the folder reloads (load_state_dict, strict) to the same logits bit for bit; every trainable tensor has a nonzero
    gradient; the same patched model in float64 bounds HF fp32's errors (max |logit| diff, grad rel-L2 < 1e-4);
  * end to end, bilinear instead of bicubic for the embedding changes the logits (max |diff| recorded);
  * transformers with the folder: AutoConfig refuses it (model_type llava_c); LlavaForConditionalGeneration.
    from_pretrained loads every tensor but its forward refuses the run-size pixels (recorded).

Run (from the repository root, CPU only, a few seconds):
    /tmp/refvenv/bin/python tools/reference/make_interp_goldens.py
Options: --out DIR (default tests/data/golden/model), --cases interp_up,interp_down (default both).
Pinned versions: tools/reference/requirements-ablation.txt (torch 2.5.1, transformers 4.46.3, safetensors 0.4.5,
numpy 2.1.3), unchanged. Two runs give byte-identical files (one thread, deterministic algorithms).
"""

import copy
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import types
from collections import OrderedDict
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_goldens as mmg  # noqa: E402  (sets CUDA_VISIBLE_DEVICES="" before torch loads)
import make_ablation_goldens as abl  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import safetensors  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402
import transformers  # noqa: E402

TEXT = abl.TEXT
PATCH = 4
CASES = OrderedDict([
    ("interp_up", dict(seed=311, train_size=16, run_size=24)),
    # 6 -> 4 reaches one tap past each border (src 0.25: taps -1..2; 4.75: 3..6): a reflected border is the clamp there
    ("interp_down", dict(seed=312, train_size=24, run_size=16, near_misses_equal=["reflect_border"])),
])
A_CUBIC = -0.75
FP64_LOOP_BOUND = 1e-14
NEAR_MISS_MIN = 1e-3


def vision_of(size):
    return dict(abl.VISION, image_size=size, patch_size=PATCH)


# ------------------------------------------------------------------------------------------------------------------
# The model: transformers' get_image_features with interpolate_pos_encoding=True
# ------------------------------------------------------------------------------------------------------------------
def patched_get_image_features(self, pixel_values, vision_feature_layer, vision_feature_select_strategy):
    """4.46.3's LlavaForConditionalGeneration.get_image_features, the tower called with interpolate_pos_encoding."""
    image_outputs = self.vision_tower(pixel_values, output_hidden_states=True, interpolate_pos_encoding=True)
    selected_image_feature = image_outputs.hidden_states[vision_feature_layer]
    if vision_feature_select_strategy == "default":
        selected_image_feature = selected_image_feature[:, 1:]
    elif vision_feature_select_strategy == "full":
        selected_image_feature = selected_image_feature
    else:
        raise ValueError(f"Unexpected select feature strategy: {vision_feature_select_strategy}")
    return self.multi_modal_projector(selected_image_feature)


def patch_model(model):
    model.get_image_features = types.MethodType(patched_get_image_features, model)
    emb = model.vision_tower.vision_model.embeddings
    orig = types.MethodType(type(emb).interpolate_pos_encoding, emb)  # the class's (not a copied instance's)

    def recording(embeddings, height, width):  # records what the forward added; returns it unchanged
        out = orig(embeddings, height, width)
        model._interp_seen = out.detach().clone()
        return out

    emb.interpolate_pos_encoding = recording
    return model


def interp_pos(model, run_size):
    """transformers' interpolate_pos_encoding for a run_size image: [1 + G'^2, Dv]."""
    emb = model.vision_tower.vision_model.embeddings
    Gr = run_size // emb.patch_size
    dummy = torch.zeros(1, 1 + Gr * Gr, emb.embed_dim, dtype=emb.position_embedding.weight.dtype)
    with torch.no_grad():
        return type(emb).interpolate_pos_encoding(emb, dummy, run_size, run_size)[0].detach().clone()


# ------------------------------------------------------------------------------------------------------------------
# The interpolation restated: float64 loop, fp32 emulations of torch's two CPU kernels
# ------------------------------------------------------------------------------------------------------------------
def cc1(x, A):
    return ((A + 2) * x - (A + 3)) * x * x + 1


def cc2(x, A):
    return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A


def taps64(G, Gn, A=A_CUBIC, border="clamp", align_corners=False):
    """Per output index: 4 (index or None, weight) pairs, float64. border: clamp (torch), zero, reflect."""
    res = []
    for i in range(Gn):
        if align_corners:
            src = i * (G - 1) / (Gn - 1) if Gn > 1 else 0.0
        else:
            src = (i + 0.5) * G / Gn - 0.5
        i0 = min(math.floor(src), G - 1)
        t = min(max(src - i0, 0.0), 1.0)
        w = [cc2(t + 1, A), cc1(t, A), cc1(1 - t, A), cc2(2 - t, A)]
        row = []
        for k in range(4):
            j = i0 - 1 + k
            if border == "clamp":
                j = max(min(j, G - 1), 0)
            elif border == "reflect":  # ... 1 0 | 0 1 ... (half-sample symmetric)
                j = -j - 1 if j < 0 else (2 * G - 1 - j if j > G - 1 else j)
            elif not 0 <= j < G:
                j = None
            row.append((j, w[k]))
        res.append(row)
    return res


def bicubic_loop64(x, Gn, **kw):
    """x: [C, G, G] float64 -> [C, Gn, Gn]: out[:, i, j] = sum_a wy_a sum_b wx_b x[:, iy_a, ix_b]."""
    C, G, _ = x.shape
    t = taps64(G, Gn, **kw)
    out = torch.zeros(C, Gn, Gn, dtype=torch.float64)
    for i in range(Gn):
        for j in range(Gn):
            acc = torch.zeros(C, dtype=torch.float64)
            for iy, wy in t[i]:
                if iy is None:
                    continue
                row = torch.zeros(C, dtype=torch.float64)
                for ix, wx in t[j]:
                    if ix is not None:
                        row = row + wx * x[:, iy, ix]
                acc = acc + wy * row
            out[:, i, j] = acc
    return out


f32 = np.float32


def fma32(a, b, c):
    """fmaf(a, b, c) elementwise, correctly rounded: a*b is exact in float64; a float64 sum then rounded to float32
    can only differ from the exact sum's rounding when the float64 sum is exactly halfway between two float32 values
    (a nearer float64 would otherwise exist); there the sign of the two-sum error decides."""
    a, b, c = (np.asarray(v, dtype=np.float32).astype(np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    bb = s - p
    err = (p - (s - bb)) + (c - bb)  # s + err == p + c exactly (Knuth's two-sum)
    r = s.astype(np.float32)
    lo = np.where(r.astype(np.float64) <= s, r, np.nextafter(r, f32(-np.inf)))
    hi = np.where(r.astype(np.float64) >= s, r, np.nextafter(r, f32(np.inf)))
    tie = (lo != hi) & (s == (lo.astype(np.float64) + hi.astype(np.float64)) / 2) & (err != 0)
    return np.where(tie, np.where(err > 0, hi, lo), r).astype(np.float32)


def fma32_exact(a, b, c):
    """The same with Fractions (a check of fma32)."""
    x = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    r = f32(float(x))
    cands = [r, np.nextafter(r, f32(np.inf)), np.nextafter(r, f32(-np.inf))]
    return min(cands, key=lambda v: (abs(Fraction(float(v)) - x), int(np.array(v).view(np.uint32)) & 1))


def taps32(G, Gn, fused_src):
    """torch's HelperInterpCubic::compute_indices_weights in float32: (indices, weights) per output index."""
    scale = f32(f32(G) / f32(Gn))
    A = f32(A_CUBIC)

    def c1(x):  # every operation rounded to float32
        return f32(f32(f32(f32(f32(A + f32(2)) * x) - f32(A + f32(3))) * x) * x) + f32(1)

    def c2(x):
        return f32(f32(f32(f32(f32(A * x) - f32(f32(5) * A)) * x) + f32(f32(8) * A)) * x) - f32(f32(4) * A)

    res = []
    for i in range(Gn):
        h = f32(f32(i) + f32(0.5))
        src = fma32(scale, h, f32(-0.5))[()] if fused_src else f32(f32(scale * h) - f32(0.5))
        i0 = min(int(np.floor(src)), G - 1)
        t = f32(min(max(f32(src - f32(i0)), f32(0)), f32(1)))
        x2 = f32(f32(1) - t)
        w = [c2(f32(t + f32(1))), c1(t), c1(x2), c2(f32(x2 + f32(1)))]
        res.append(([max(min(i0 - 1 + k, G - 1), 0) for k in range(4)], w, float(src)))
    return res


def dot4(v, w, fused):
    if fused:  # fmaf(v3, w3, fmaf(v2, w2, fmaf(v0, w0, v1 * w1)))
        r = fma32(v[0], w[0], (v[1] * w[1]).astype(np.float32))
        r = fma32(v[2], w[2], r)
        return fma32(v[3], w[3], r)
    r = (v[0] * w[0]).astype(np.float32) + (v[1] * w[1]).astype(np.float32)
    r = r.astype(np.float32) + (v[2] * w[2]).astype(np.float32)
    return (r.astype(np.float32) + (v[3] * w[3]).astype(np.float32)).astype(np.float32)


def bicubic_emul32(x, Gn, fused):
    """x: [C, G, G] float32 numpy -> [C, Gn, Gn]; fused: the x86 AVX2/AVX512 kernel's order, else the default's."""
    C, G, _ = x.shape
    t = taps32(G, Gn, fused)
    out = np.zeros((C, Gn, Gn), np.float32)
    for i in range(Gn):
        iy, wy, _ = t[i]
        for j in range(Gn):
            ix, wx, _ = t[j]
            rows = [dot4([x[:, iy[a], ix[b]] for b in range(4)], wx, fused) for a in range(4)]
            out[:, i, j] = dot4(rows, wy, fused)
    return out


def pos_from_grid(class_row, grid):
    """[C, Gn, Gn] -> [1 + Gn^2, C] rows in row-major grid order, after the class row."""
    C = grid.shape[0]
    return torch.cat([class_row.reshape(1, C), grid.reshape(C, -1).T], 0)


DEFAULT_KERNEL_CODE = r"""
import sys, torch, torch.nn.functional as F
from safetensors.torch import load_file, save_file
torch.set_num_threads(1)
d = load_file(sys.argv[1])
out = {}
for k, v in d.items():
    G = int(round((v.shape[0] - 1) ** 0.5)); Gn = int(k.split("_")[-1])
    x = v[1:].reshape(1, G, G, v.shape[1]).permute(0, 3, 1, 2)
    y = F.interpolate(x, size=(Gn, Gn), mode="bicubic", align_corners=False)
    out[k] = torch.cat([v[:1], y.permute(0, 2, 3, 1).reshape(-1, v.shape[1])], 0).contiguous()
save_file(out, sys.argv[2])
print(torch.backends.cpu.get_cpu_capability())
"""


def kernel_interp(pos, Gn, capability):
    """F.interpolate's result with another of torch's CPU kernels: a subprocess with ATEN_CPU_CAPABILITY."""
    with tempfile.TemporaryDirectory() as td:
        a, b = os.path.join(td, "in.safetensors"), os.path.join(td, "out.safetensors")
        save_file({f"pos_{Gn}": pos.contiguous()}, a)
        env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, CUDA_VISIBLE_DEVICES="")
        r = subprocess.run([sys.executable, "-c", DEFAULT_KERNEL_CODE, a, b], env=env, capture_output=True, text=True,
                           check=True)
        return load_file(b)[f"pos_{Gn}"], r.stdout.strip()


def interpolation_checks(model, v, golden):
    """The interpolation against the float64 loop, near misses, the fp32 emulations and torch's default kernel."""
    emb = model.vision_tower.vision_model.embeddings
    P = emb.position_embedding.weight.detach().clone()  # [1 + G^2, Dv]
    Dv = P.shape[1]
    G = v["train_size"] // PATCH
    Gn = v["run_size"] // PATCH
    grid = P[1:].reshape(G, G, Dv).permute(2, 0, 1)  # [Dv, G, G]: grid[d, r, c] = P[1 + r*G + c, d]
    res = {}

    # float64 loop of the stated formulas vs torch (fp64 and the fp32 golden)
    loop = pos_from_grid(P[0].double(), bicubic_loop64(grid.double(), Gn))
    t64 = F.interpolate(grid.double()[None], size=(Gn, Gn), mode="bicubic", align_corners=False)[0]
    torch64 = pos_from_grid(P[0].double(), t64)
    res["fp64_loop_vs_torch_fp64_max_abs"] = float((loop - torch64).abs().max())
    assert res["fp64_loop_vs_torch_fp64_max_abs"] < FP64_LOOP_BOUND, res
    res["fp64_loop_vs_golden_fp32_max_abs"] = float((loop - golden.double()).abs().max())
    res["golden_class_row_unchanged"] = bool(torch.equal(golden[0], P[0]))
    assert res["golden_class_row_unchanged"]
    res["golden_max_abs"] = float(golden.abs().max())
    res["taps"] = [dict(src=(i + 0.5) * G / Gn - 0.5, indices=[j for j, _ in row], weights=[w for _, w in row])
                   for i, row in enumerate(taps64(G, Gn))]

    # near misses: each differs from the golden by more than NEAR_MISS_MIN
    x = grid[None]
    alts = {
        "A_minus_0.5": pos_from_grid(P[0].double(), bicubic_loop64(grid.double(), Gn, A=-0.5)),
        "zero_border": pos_from_grid(P[0].double(), bicubic_loop64(grid.double(), Gn, border="zero")),
        "reflect_border": pos_from_grid(P[0].double(), bicubic_loop64(grid.double(), Gn, border="reflect")),
        "align_corners_true": pos_from_grid(P[0], F.interpolate(x, size=(Gn, Gn), mode="bicubic",
                                                                align_corners=True)[0]),
        "antialias_true": pos_from_grid(P[0], F.interpolate(x, size=(Gn, Gn), mode="bicubic", align_corners=False,
                                                            antialias=True)[0]),
        "bilinear": pos_from_grid(P[0], F.interpolate(x, size=(Gn, Gn), mode="bilinear", align_corners=False)[0]),
        "grid_read_column_major": pos_from_grid(P[0], F.interpolate(x.transpose(2, 3), size=(Gn, Gn), mode="bicubic",
                                                                    align_corners=False)[0]),
    }
    # the class row interpolated with the patches: the 1 + G^2 rows as a padded grid is not defined; instead the
    # class row taken as patch (0, 0) of the grid (a plausible off-by-one in the row split)
    shifted = P[:-1].reshape(G, G, Dv).permute(2, 0, 1)[None]
    alts["rows_off_by_one"] = pos_from_grid(P[0], F.interpolate(shifted, size=(Gn, Gn), mode="bicubic",
                                                                align_corners=False)[0])
    near = {k: float((a.double() - golden.double()).abs().max()) for k, a in alts.items()}
    same = sorted(k for k, d in near.items() if d <= NEAR_MISS_MIN)
    assert same == v.get("near_misses_equal", []), (same, near)
    res["near_misses_max_abs_diff_from_golden"] = near
    res["near_misses_not_told_apart"] = same

    # fp32 emulations of torch's two CPU kernels
    rng = np.random.default_rng(7)
    ta, tb, tc = (rng.standard_normal(400).astype(np.float32) for _ in range(3))
    assert all(fma32(ta[i], tb[i], tc[i])[()] == fma32_exact(ta[i], tb[i], tc[i]) for i in range(400))
    xs = grid.numpy()
    cap = torch.backends.cpu.get_cpu_capability()
    fused = pos_from_grid(P[0], torch.from_numpy(bicubic_emul32(xs, Gn, fused=True)))
    plain = pos_from_grid(P[0], torch.from_numpy(bicubic_emul32(xs, Gn, fused=False)))
    res["cpu_capability"] = cap
    res["emulation_x86_fma_equals_golden"] = bool(torch.equal(fused, golden))
    if cap in ("AVX2", "AVX512"):
        assert res["emulation_x86_fma_equals_golden"], float((fused - golden).abs().max())
    dflt, dcap = kernel_interp(P, Gn, "default")
    res["default_kernel_capability"] = dcap
    res["default_kernel_equals_emulation_separate_roundings"] = bool(torch.equal(dflt, plain))
    assert res["default_kernel_equals_emulation_separate_roundings"], float((dflt - plain).abs().max())
    res["default_kernel_vs_golden_max_abs"] = float((dflt - golden).abs().max())
    res["default_kernel_vs_golden_elements_differing"] = int((dflt != golden).sum())
    if cap == "AVX512":  # the AVX2 kernel too (the same code, compiled for AVX2 + FMA)
        avx2, acap = kernel_interp(P, Gn, "avx2")
        res["avx2_kernel_capability"] = acap
        res["avx2_kernel_equals_golden"] = bool(torch.equal(avx2, golden))
        assert res["avx2_kernel_equals_golden"] and acap == "AVX2", (acap, float((avx2 - golden).abs().max()))
    res["src_fp32"] = dict(fused=[s for _, _, s in taps32(G, Gn, True)],
                           separate=[s for _, _, s in taps32(G, Gn, False)])
    res["fp32_weights_fused_src"] = [[float(w) for w in ws] for _, ws, _ in taps32(G, Gn, True)]

    # equal sizes: the early return gives the weight; F.interpolate to the same size is the identity
    same = interp_pos(model, v["train_size"])
    res["early_return_equals_weight"] = bool(torch.equal(same, P))
    ident = F.interpolate(x, size=(G, G), mode="bicubic", align_corners=False)
    res["bicubic_same_size_is_identity"] = bool(torch.equal(ident, x))
    assert res["early_return_equals_weight"] and res["bicubic_same_size_is_identity"]
    return res


# ------------------------------------------------------------------------------------------------------------------
def build(v, image_size, n_tok):
    c = dict(text=TEXT, vision=vision_of(image_size), rows=abl.ROWS)
    cfg, image_token, pad_token, P = mmg.build_config(c)
    cfg.image_seq_length = n_tok
    return c, cfg, image_token, pad_token


def self_check_equal_sizes(v):
    """At the trained size: transformers' unpatched model vs the patched one, bit for bit."""
    G = v["train_size"] // PATCH
    c, cfg, image_token, pad_token = build(v, v["train_size"], G * G)
    inputs, _ = mmg.build_inputs(c, cfg, image_token, pad_token, G * G, v["seed"])
    plain = abl.new_model(cfg)
    mmg.init_weights(plain, v["seed"])
    patched = patch_model(copy.deepcopy(plain))
    patched._interp_seen = None
    r_plain = abl.run_sets(plain, inputs)
    r_patch = abl.run_sets(patched, inputs)
    ok = abl.bitwise_same(r_plain, r_patch)
    assert ok, "the patched model at the trained size is not transformers' model"
    seen = patched._interp_seen
    weight = patched.vision_tower.vision_model.embeddings.position_embedding.weight
    assert seen is not None and torch.equal(seen[0], weight)
    return dict(bitwise_equal_logits_loss_grads=ok, gradients_compared=sum(len(g) for _, _, g in r_plain.values()),
                loss=float(r_plain["projector"][1]), image_seq_length=G * G, pixel_size=v["train_size"],
                embedding_added_equals_weight=True)


def end_to_end_bilinear(model, inputs, logits, run_size):
    """Logits with the embedding interpolated bilinearly instead (a near miss seen end to end)."""
    m = patch_model(copy.deepcopy(model))
    emb = m.vision_tower.vision_model.embeddings
    P = emb.position_embedding.weight.detach()
    G = int(round((P.shape[0] - 1) ** 0.5))
    Gn = run_size // PATCH
    x = P[1:].reshape(1, G, G, -1).permute(0, 3, 1, 2)
    y = F.interpolate(x, size=(Gn, Gn), mode="bilinear", align_corners=False)
    y = y.permute(0, 2, 3, 1).reshape(1, -1, P.shape[1])
    alt = torch.cat([P[None, :1], y], 1)
    emb.interpolate_pos_encoding = lambda e, h, w: alt
    with torch.no_grad():
        o = m(**inputs)
    return float((o.logits - logits).abs().max())


def plain_llava_behaviour(mdir, inputs):
    """AutoConfig must refuse the folder; LlavaForConditionalGeneration.from_pretrained loads it (recorded)."""
    res = {}
    try:
        transformers.AutoConfig.from_pretrained(mdir)
        res["autoconfig"] = "loaded"
    except (ValueError, KeyError) as e:
        res["autoconfig"] = "refused: " + type(e).__name__
    assert res["autoconfig"] != "loaded"
    tl = transformers.utils.logging
    tl.set_verbosity_error()
    try:
        m, info = transformers.LlavaForConditionalGeneration.from_pretrained(
            mdir, attn_implementation="eager", torch_dtype=torch.float32, output_loading_info=True)
        res["llava_from_pretrained"] = dict(missing_keys=sorted(info["missing_keys"]),
                                            unexpected_keys=sorted(info["unexpected_keys"]))
        try:
            with torch.no_grad():
                m(**inputs)
            res["llava_forward"] = "runs"
        except Exception as e:  # noqa: BLE001  (recorded, not raised)
            res["llava_forward"] = "fails: " + type(e).__name__ + ": " + str(e).split("\n")[0][:160]
    except Exception as e:  # noqa: BLE001
        res["llava_from_pretrained"] = "fails: " + type(e).__name__ + ": " + str(e).split("\n")[0][:160]
    return res


def run_case(name, out_root):
    v = CASES[name]
    seed = v["seed"]
    torch.manual_seed(seed)
    G, Gn = v["train_size"] // PATCH, v["run_size"] // PATCH
    n_tok = Gn * Gn
    c, cfg, image_token, pad_token = build(v, v["train_size"], n_tok)
    model = patch_model(abl.new_model(cfg))
    mmg.init_weights(model, seed)
    attn_classes = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Attention")})
    assert all("Sdpa" not in a and "Flash" not in a for a in attn_classes), attn_classes
    pe_shape = list(model.vision_tower.vision_model.embeddings.position_embedding.weight.shape)
    assert pe_shape == [1 + G * G, abl.VISION["hidden_size"]], pe_shape

    d = os.path.join(out_root, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    mdir = os.path.join(d, "model")
    model.save_pretrained(mdir, safe_serialization=True)
    cpath = os.path.join(mdir, "config.json")
    with open(cpath) as fh:
        cj = json.load(fh)
    assert cj["image_seq_length"] == n_tok and cj["vision_config"]["image_size"] == v["train_size"]
    cj["model_type"] = "llava_c"
    cj["architectures"] = ["LlavaCForConditionalGeneration"]
    cj["mm_projector_type"] = "mlp2x_gelu"
    cj["mm_vision_image_size"] = v["run_size"]
    with open(cpath, "w") as fh:  # PretrainedConfig.to_json_file's format
        fh.write(json.dumps(cj, indent=2, sort_keys=True) + "\n")
    added = {k: cj[k] for k in ["model_type", "architectures", "mm_projector_type", "mm_vision_image_size",
                                 "image_seq_length"]}
    added["vision_config.image_size"] = cj["vision_config"]["image_size"]
    added["vision_config.patch_size"] = cj["vision_config"]["patch_size"]

    # inputs: the pixel values at the run size
    cfg_run = copy.deepcopy(cfg)
    cfg_run.vision_config.image_size = v["run_size"]
    inputs, lens = mmg.build_inputs(c, cfg_run, image_token, pad_token, n_tok, seed)
    assert list(inputs["pixel_values"].shape[1:]) == [3, v["run_size"], v["run_size"]]
    save_file({k: t.contiguous() for k, t in inputs.items()}, os.path.join(d, "inputs.safetensors"))

    # goldens
    model._interp_seen = None
    results = abl.run_sets(model, inputs)
    logits, loss, _ = results["projector"]
    for s, (lg, ls, _) in results.items():
        assert torch.equal(lg, logits) and torch.equal(ls, loss), s
    seen = model._interp_seen
    pos = interp_pos(model, v["run_size"])
    assert list(pos.shape) == [1 + n_tok, abl.VISION["hidden_size"]]
    assert seen is not None and torch.equal(seen[0], pos), "the forward added another embedding"
    outputs = {"logits": logits.contiguous(), "loss": loss.reshape(()).contiguous()}
    for s, (_, _, gr) in results.items():
        for n, g in gr.items():
            outputs[f"grad.{s}.{n}"] = g.contiguous()
    outputs["interp.position_embedding"] = pos.contiguous()
    save_file(outputs, os.path.join(d, "outputs.safetensors"))

    # checks
    checks = {"forward_used_interp_position_embedding": True}
    saved = load_file(os.path.join(mdir, "model.safetensors"))
    pnames = [n for n, _ in model.named_parameters()]
    assert sorted(saved) == sorted(pnames), set(saved) ^ set(pnames)
    checks["saved_key_count"] = len(saved)
    checks["saved_position_embedding_shape"] = list(
        saved["vision_tower.vision_model.embeddings.position_embedding.weight"].shape)
    re_m = patch_model(abl.new_model(cfg))
    re_m.load_state_dict(saved, strict=True)
    with torch.no_grad():
        o2 = re_m(**inputs)
    checks["reload_bitwise_equal"] = bool(torch.equal(o2.logits, logits) and torch.equal(o2.loss, loss))
    assert checks["reload_bitwise_equal"]
    for s, (_, _, gr) in results.items():
        zeros = [n for n, g in gr.items() if not bool(g.abs().sum() > 0)]
        assert not zeros, (s, zeros)
    checks["gradient_counts"] = {s: len(gr) for s, (_, _, gr) in results.items()}

    checks["interpolation"] = interpolation_checks(model, v, pos)

    m64 = patch_model(copy.deepcopy(model).double())
    in64 = dict(inputs, pixel_values=inputs["pixel_values"].double())
    r64 = abl.run_sets(m64, in64)
    lg64, ls64, _ = r64["projector+lm"]
    pos64 = interp_pos(m64, v["run_size"])
    fp64 = dict(max_abs_logit_diff=float((logits.double() - lg64).abs().max()),
                loss_rel_diff=float(abs(loss.double() - ls64) / ls64), loss_fp64=float(ls64),
                interp_position_embedding_max_abs_diff=float((pos.double() - pos64).abs().max()))
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

    checks["end_to_end_bilinear_max_abs_logit_diff"] = end_to_end_bilinear(model, inputs, logits, v["run_size"])
    assert checks["end_to_end_bilinear_max_abs_logit_diff"] > NEAR_MISS_MIN
    checks["self_check_equal_sizes"] = self_check_equal_sizes(v)
    checks["transformers_with_this_folder"] = plain_llava_behaviour(mdir, inputs)

    am = inputs["attention_mask"].bool()
    V = cfg.text_config.vocab_size
    stats = dict(
        B=int(inputs["input_ids"].shape[0]), T=int(inputs["input_ids"].shape[1]), V=V,
        n_images=int(inputs["pixel_values"].shape[0]), trained_grid=[G, G], run_grid=[Gn, Gn],
        tokens_per_image=n_tok, row_lengths=lens,
        n_label_tokens_counted=int((inputs["labels"][:, 1:] != -100).sum()),
        loss=float(loss), loss_hex=loss.numpy().astype(np.float32).tobytes().hex(),
        loss_bits="0x%08X" % struct.unpack("<I", loss.numpy().astype(np.float32).tobytes())[0],
        max_abs_logit=float(logits.abs().max()), max_abs_logit_real_positions=float(logits[am].abs().max()))
    gstats = {s: {n: dict(shape=list(g.shape), max_abs=float(g.abs().max()), l2=float(g.norm()))
                  for n, g in gr.items()} for s, (_, _, gr) in results.items()}
    meta = dict(
        case=name, seed=seed, generator="tools/reference/make_interp_goldens.py",
        versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                      safetensors=safetensors.__version__, numpy=np.__version__),
        train_size=v["train_size"], run_size=v["run_size"], patch_size=PATCH, config_json_keys=added,
        tokens_per_image=n_tok, image_token_id=image_token, pad_token_id=pad_token, bos_token_id=mmg.BOS,
        eos_token_id=mmg.EOS, vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy, projector="mlp2x_gelu",
        text=TEXT, vision=vision_of(v["train_size"]), attention_classes=attn_classes, loss=float(loss),
        stats=stats, checks=checks, grad_stats=gstats)
    mmg.write_meta(d, meta)
    return meta


def main():
    metas, out = mmg.run_cases(__doc__, CASES, run_case)

    print(f"{'case':<12} {'trained':>7} {'run':>4} {'tok':>3} {'T':>3} {'loss':>11} {'HF32 vs 64':>10} "
          f"{'grad rel':>9} {'loop64-torch64':>14} {'loop64-fp32':>11} {'dflt-fp32':>9} {'self-check':>10}")
    for m in metas:
        ch = m["checks"]
        it = ch["interpolation"]
        gw = max(x["worst_rel_l2"] for x in ch["hf_fp32_vs_fp64"]["grad_worst_rel_l2"].values())
        sc = "bitwise" if ch["self_check_equal_sizes"]["bitwise_equal_logits_loss_grads"] else "DIFFERS"
        print(f"{m['case']:<12} {m['train_size']:>7} {m['run_size']:>4} {m['tokens_per_image']:>3} "
              f"{m['stats']['T']:>3} {m['loss']:>11.8f} {ch['hf_fp32_vs_fp64']['max_abs_logit_diff']:>10.2e} "
              f"{gw:>9.2e} {it['fp64_loop_vs_torch_fp64_max_abs']:>14.2e} "
              f"{it['fp64_loop_vs_golden_fp32_max_abs']:>11.2e} {it['default_kernel_vs_golden_max_abs']:>9.2e} "
              f"{sc:>10}")
    for m in metas:
        ch = m["checks"]
        it = ch["interpolation"]
        print(f"  {m['case']}: config.json " + json.dumps(m["config_json_keys"]))
        print(f"    loss {m['loss']!r} ({m['stats']['loss_bits']}), row lengths "
              f"{m['stats']['row_lengths']}, gradients {ch['gradient_counts']}")
        print(f"    x86-fma emulation == golden: {it['emulation_x86_fma_equals_golden']} ({it['cpu_capability']}); "
              f"default kernel ({it['default_kernel_capability']}) == separate-rounding emulation: "
              f"{it['default_kernel_equals_emulation_separate_roundings']}, differs from the golden in "
              f"{it['default_kernel_vs_golden_elements_differing']} elements")
        print("    near misses (max |diff| from golden): " + ", ".join(
            f"{k} {x:.2e}" for k, x in it["near_misses_max_abs_diff_from_golden"].items())
            + f"; bilinear end to end: logits {ch['end_to_end_bilinear_max_abs_logit_diff']:.2e}")
        print("    transformers: " + json.dumps(ch["transformers_with_this_folder"]))
    print()
    mmg.print_sizes(out, [m["case"] for m in metas])


if __name__ == "__main__":
    main()
