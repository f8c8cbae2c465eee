"""The best PyTorch stack we know how to write, measured beside `llava bench-step` on the same card (issue 17).

tools/bench/torch_llava_step.py measures what users run (transformers, padded batches); this script
measures what a performance engineer would write in plain PyTorch for the same training step, so
that llava.c's speed is also judged against a strong baseline, not only a convenient one.

The model: LLaVA-1.5 7B layer shapes, written out here (no transformers): CLIP ViT-L/14-336 with the
23 layers LLaVA computes (vision_feature_layer -2), frozen (eval, run under no_grad); the 2-layer
GELU projector; LLaMA-7B decoder layers (hidden 4096, 32 heads x 128, SwiGLU 11008, RMSNorm eps 1e-5,
RoPE theta 10000, vocabulary 32000 as llava.c's config has it) truncated to --layers. Stage 2 trains
projector + LM (embeddings and head included), stage 1 the projector alone, as `llava bench-step`.

The batches: each step's samples are torch_llava_step.py's (tools/bench/length_mix.py, shared, drawn
from the same seeded generator in the same order: lengths, token ids, pixels), so step k holds the
same samples as that script's step k: LLaVA-1.5's 665K mix (94% image samples of 576 image features + 40-500 text tokens, 6%
text-only of 600-2048), or stage 1's captions (BOS, 576 features, 20-80 tokens). Targets follow app/cmd_bench_step.c: the
second half of each sample, next-token, never an image position.

The choices:
  - one packed sequence per micro-batch, no padding: every sample's tokens one after another, RoPE
    positions restarting at each sample;
  - document masking: --attn flex (default on CUDA) runs torch.nn.attention.flex_attention with a
    BlockMask built from the sample boundaries (causal within a sample, nothing across): the block
    classification (empty / full / partial, 128x128 blocks) is computed on the host from the
    lengths, as a data loader would, and BlockMask.from_kv_blocks makes it (create_block_mask's
    result, without evaluating the mask over T x T); --attn varlen runs torch's own FlashAttention-2
    varlen kernel (torch.nn.attention.varlen, torch 2.10 and later) on cu_seqlens (PyPI has no
    flash-attn wheel, only its source, whose CUDA build is hours of compiling); --attn sdpa-loop
    calls SDPA (flash / cuDNN) once per sample, outside the compiled graphs; --attn sdpa-mask gives
    SDPA an explicit block-diagonal causal mask (the CPU default: torch 2.5's inductor has no CPU
    flex_attention). With --attn auto (the default) a failing run tries again, each attempt
    reported with its error: with less of Liger when the failure came from liger_kernel (its loss
    alone, then none), else with the next attention (flex, varlen, sdpa-loop);
  - the CLIP tower's attention is per image and bidirectional; every image has the same 577 tokens,
    so the images are the batch dimension of one SDPA call (flash backend): the document mask of
    equal-length documents, with no mask to build;
  - torch.compile, regionally (torch's recipe for repeated blocks): each decoder layer, each CLIP
    layer and the projector (and the plain loss), mode --compile default | max-autotune-no-cudagraphs
    | none, with dynamic shapes from the start (--dynamic true; the packed length changes every step,
    and a recompile inside the timed steps would be counted in them: the count of graphs compiled
    during the timed steps is printed);
  - Liger kernels when liger_kernel imports and the device is CUDA: LigerFusedLinearCrossEntropyLoss
    (the head and the loss in chunks, no (T, V) logits), LigerRMSNorm, LigerSwiGLUMLP,
    liger_rotary_pos_emb (--liger auto | all | loss | off); otherwise plain torch with a note;
  - bf16 working weights and gradients, fp32 master weights, torch.optim.AdamW(fused=True) over the
    masters (lr 1e-5, betas 0.9 / 0.999, eps 1e-8, no weight decay), gradients copied to fp32 and
    clipped to norm 1.0 before the step, the masters copied back to the bf16 weights after it: the
    closest to llava.c (bf16 weights, fp32 masters), rather than autocast over fp32 weights;
  - activation checkpointing per decoder layer with --checkpoint (off by default, as `llava
    bench-step` keeps every layer's activations; 4 layers fit an 80 GB card either way);
  - the LM head runs over every token by default, as llava.c's does (--head-rows targets runs it
    over the supervised tokens alone: less work than llava.c does, the FLOP count unchanged).

Timing: each step from the batch on the device (host-built ids, targets, positions, pixels copied
before the clock starts, as torch_llava_step.py does) through the block mask, the tower, forward,
backward and the optimizer, between two device synchronizations. Model FLOPs are counted exactly as
app/cmd_bench_step.c counts them (the LM's matmuls over every token x3 in stage 2, x2 in stage 1,
causal attention 2 n^2 d per layer per sample forward, the tower's forward and the projector per
image), so the last line compares with `bench-step:` and `torch-step:`:
    torch-ideal-step: N tokens/s, S samples/s, T model TFLOP/s, MFU X% of P TFLOP/s

Versions (tools/bench/requirements-ideal.txt): torch 2.11.0 (the GPU machines' image, with Triton
3.6.0), liger-kernel 0.8.5 (pure Python + Triton: carried to the GPU machine as its wheel, unpacked
onto PYTHONPATH; absent, the plain torch path runs); no transformers. tools/gpu_check.sh runs it
after torch_llava_step.py with the same stage, layers and batch:
    python3 tools/bench/torch_ideal_step.py --stage 2 --layers 4 --batch 16 --steps 5 --peak-tflops P
with the liger-kernel wheel from .whl/ when one is there, and prints the last line and the ratio
llava.c / ideal in its summary.

NOT YET RUN ON A GPU: written and checked on a CPU only (torch 2.5.1: the tiny shapes below, the
flex / sdpa-mask / sdpa-loop paths eager, the regional compile with inductor's CPU backend). The CUDA
paths (flex_attention compiled, varlen, Liger, fused AdamW) are untested.

A check of the script on a CPU (tiny shapes, numbers meaningless):
    python3 tools/bench/torch_ideal_step.py --device cpu --tiny --batch 2 --steps 1 --warmup 0
A correctness check (tiny shapes, fp32): the packed step's loss and gradients against each sample
run alone with plain causal SDPA and plain ops, for the chosen --attn, --liger and --compile:
    python3 tools/bench/torch_ideal_step.py --device cpu --tiny --check --attn flex --compile none
"""
import argparse
import gc
import inspect
import os
import sys
import time
import traceback
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from length_mix import length_mix  # noqa: E402  (the same samples as the transformers baseline)

MIX_FROM = "length_mix.length_mix (torch_llava_step.py's samples)"

try:
    from torch.nn.attention.flex_attention import BlockMask, flex_attention
except ImportError:  # torch < 2.5
    BlockMask = flex_attention = None
try:
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # torch < 2.10
    varlen_attn = None

MAX_LEN = 2048  # the mix's longest sample; the varlen kernel's max_seqlen bound
BLOCK = 128  # flex_attention's block size


def liger_module():
    try:
        import liger_kernel.transformers as lk
        return lk, None
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {e}"


# ---------------------------------------------------------------------------------------------- shapes


def model_shapes(tiny, layers):
    if tiny:  # app/cmd_bench_step.c's CPU model: the harness, not a measurement
        return types.SimpleNamespace(d=128, I=344, H=4, V=1000, L=layers or 2, eps=1e-5, theta=10000.0,
                                     dv=64, Iv=128, Hv=2, Lv=2, S=56, P=14, eps_v=1e-5)
    return types.SimpleNamespace(d=4096, I=11008, H=32, V=32000, L=layers or 4, eps=1e-5, theta=10000.0,
                                 dv=1024, Iv=4096, Hv=16, Lv=23, S=336, P=14, eps_v=1e-5)


def flop_counts(c):
    """Per-token LM and per-image FLOPs, as app/cmd_bench_step.c counts them."""
    per_tok_lm = 2.0 * (c.L * (4.0 * c.d * c.d + 3.0 * c.d * c.I) + c.d * c.V)
    Nv = (c.S // c.P) ** 2 + 1
    tpi = Nv - 1
    layer_img = 2.0 * Nv * (4.0 * c.dv * c.dv + 2.0 * c.dv * c.Iv) + 4.0 * Nv * Nv * c.dv
    patch_img = 2.0 * Nv * 3.0 * c.P * c.P * c.dv
    per_img = c.Lv * layer_img + patch_img + 2.0 * (c.d * tpi) * (c.dv + c.d)
    return per_tok_lm, per_img


# ---------------------------------------------------------------------------------------------- model


class RMSNorm(nn.Module):  # LlamaRMSNorm
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return self.weight * rms_normalize(x, self.eps)


def rms_normalize(x, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class SwiGLU(nn.Module):  # LlamaMLP, with LigerSwiGLUMLP's attribute names
    def __init__(self, d, inter):
        super().__init__()
        self.gate_proj = nn.Linear(d, inter, bias=False)
        self.up_proj = nn.Linear(d, inter, bias=False)
        self.down_proj = nn.Linear(inter, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_plain(q, k, cos, sin):  # q, k (1, H, T, D); cos, sin (T, D)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def rope_tables(pos, D, theta, dtype):
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, device=pos.device, dtype=torch.float32) / D))
    f = pos.float()[:, None] * inv[None, :]
    emb = torch.cat((f, f), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def sdpa_per_sample(q, k, v, bounds):
    """Causal SDPA over each sample's slice; bounds a CPU tensor (n, 2). Not traced by dynamo: the
    per-sample slices would make every step a new graph."""
    outs = [F.scaled_dot_product_attention(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], is_causal=True)
            for s, e in bounds.tolist()]
    return torch.cat(outs, dim=2)


sdpa_per_sample_eager = torch.compiler.disable(sdpa_per_sample) if hasattr(torch, "compiler") else sdpa_per_sample


# torch's varlen API says causal as is_causal=True (2.10) or window_size=(-1, 0) (later): read once here,
# not inside the compiled layers.
VARLEN_CAUSAL = ({"is_causal": True} if varlen_attn is not None and "is_causal" in inspect.signature(varlen_attn).parameters
                 else {"window_size": (-1, 0)})


def varlen_call(q, k, v, cu, max_len):
    """q, k, v (T, H, D), the samples one after another; cu their cumulative lengths."""
    return varlen_attn(q, k, v, cu, cu, max_len, max_len, **VARLEN_CAUSAL)


class DecoderLayer(nn.Module):
    def __init__(self, c, attn, liger, flex_fn):
        super().__init__()
        self.H, self.D, self.attn, self.flex_fn = c.H, c.d // c.H, attn, flex_fn
        lk = liger if liger is not None and "layers" in liger.parts else None
        self.liger_rope = lk.liger_rotary_pos_emb if lk is not None else None
        norm = (lambda: lk.LigerRMSNorm(c.d, eps=c.eps)) if lk is not None else (lambda: RMSNorm(c.d, c.eps))
        self.in_norm, self.post_norm = norm(), norm()
        self.qkv = nn.Linear(c.d, 3 * c.d, bias=False)  # q, k, v in one matmul
        self.o = nn.Linear(c.d, c.d, bias=False)
        self.mlp = (lk.LigerSwiGLUMLP(types.SimpleNamespace(hidden_size=c.d, intermediate_size=c.I, hidden_act="silu"))
                    if lk is not None else SwiGLU(c.d, c.I))

    def forward(self, x, cos, sin, ctx):
        T, H, D = x.shape[0], self.H, self.D
        q, k, v = self.qkv(self.in_norm(x)).view(1, T, 3, H, D).unbind(2)  # (1, T, H, D) each
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (1, H, T, D) views
        if self.liger_rope is not None:
            q, k = self.liger_rope(q, k, cos.unsqueeze(0), sin.unsqueeze(0))
        else:
            q, k = rope_plain(q, k, cos, sin)
        if self.attn == "flex":
            a = self.flex_fn(q, k, v, block_mask=ctx[0])
        elif self.attn == "varlen":
            a = varlen_call(q[0].transpose(0, 1), k[0].transpose(0, 1), v[0].transpose(0, 1), ctx[0], ctx[1])
            a = a.unsqueeze(0).transpose(1, 2)
        elif self.attn == "sdpa-loop":
            a = sdpa_per_sample_eager(q, k, v, ctx[0])
        else:  # sdpa-mask
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=ctx[0])
        x = x + self.o(a.transpose(1, 2).reshape(T, H * D))
        return x + self.mlp(self.post_norm(x))


class ClipLayer(nn.Module):  # CLIPEncoderLayer, q/k/v in one matmul
    def __init__(self, c):
        super().__init__()
        self.Hv = c.Hv
        self.ln1, self.ln2 = nn.LayerNorm(c.dv, eps=c.eps_v), nn.LayerNorm(c.dv, eps=c.eps_v)
        self.qkv = nn.Linear(c.dv, 3 * c.dv)
        self.o = nn.Linear(c.dv, c.dv)
        self.fc1, self.fc2 = nn.Linear(c.dv, c.Iv), nn.Linear(c.Iv, c.dv)

    def forward(self, x):  # (n images, 577, dv): each image its own batch row, attention bidirectional
        n, N, dv = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(n, N, 3, self.Hv, dv // self.Hv).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.o(a.transpose(1, 2).reshape(n, N, dv))
        h = self.fc1(self.ln2(x))
        return x + self.fc2(h * torch.sigmoid(1.702 * h))  # quick_gelu


class Tower(nn.Module):  # CLIPVisionModel up to hidden_states[-2], without the class token
    def __init__(self, c):
        super().__init__()
        self.patch = nn.Conv2d(3, c.dv, c.P, stride=c.P, bias=False)
        self.cls = nn.Parameter(torch.zeros(c.dv))
        self.pos = nn.Parameter(torch.zeros((c.S // c.P) ** 2 + 1, c.dv))
        self.pre_ln = nn.LayerNorm(c.dv, eps=c.eps_v)
        self.layers = nn.ModuleList(ClipLayer(c) for _ in range(c.Lv))

    def forward(self, pix):
        x = self.patch(pix).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls.expand(x.shape[0], 1, -1), x), dim=1) + self.pos
        x = self.pre_ln(x)
        for layer in self.layers:
            x = layer(x)
        return x[:, 1:]


def plain_loss(h, norm_w, head_w, targets, eps):
    logits = F.linear(norm_w * rms_normalize(h, eps), head_w)
    return F.cross_entropy(logits.float(), targets, ignore_index=-100)


class Llava(nn.Module):
    def __init__(self, c, attn, liger, flex_fn):
        super().__init__()
        self.c = c
        self.tower = Tower(c)
        self.projector = nn.Sequential(nn.Linear(c.dv, c.d), nn.GELU(), nn.Linear(c.d, c.d))
        self.embed = nn.Embedding(c.V, c.d)
        self.layers = nn.ModuleList(DecoderLayer(c, attn, liger, flex_fn) for _ in range(c.L))
        self.liger_loss = liger is not None and "loss" in liger.parts
        if self.liger_loss:
            self.norm = liger.LigerRMSNorm(c.d, eps=c.eps)
            self.flce = liger.LigerFusedLinearCrossEntropyLoss(ignore_index=-100)
        else:
            self.norm = RMSNorm(c.d, c.eps)
        self.head = nn.Linear(c.d, c.V, bias=False)
        self.loss_fn = plain_loss

    def init_weights(self, std=0.02):
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding, nn.Conv2d)):
                nn.init.normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.tower.cls, std=std)
        nn.init.normal_(self.tower.pos, std=std)

    def compile_regions(self, mode, dynamic):
        kw = {"mode": None if mode == "default" else mode, "dynamic": dynamic}
        for layer in self.layers:
            layer.compile(**kw)
        for layer in self.tower.layers:
            layer.compile(**kw)
        self.projector.compile(**kw)
        if not self.liger_loss:
            self.loss_fn = torch.compile(plain_loss, **kw)

    def forward(self, b, checkpoint=False):
        c = self.c
        x = self.embed(b.ids)
        if b.n_img:
            with torch.no_grad():  # the frozen tower
                feats = self.tower(b.pix)
            img = self.projector(feats.reshape(-1, c.dv))
            x = x.index_copy(0, b.img_rows, img.to(x.dtype))
        cos, sin = rope_tables(b.pos, c.d // c.H, c.theta, x.dtype)
        ctx = b.make_ctx()
        for layer in self.layers:
            if checkpoint:
                x = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, ctx, use_reentrant=False)
            else:
                x = layer(x, cos, sin, ctx)
        if b.head_rows is not None:  # --head-rows targets
            x, targets = x.index_select(0, b.head_rows), b.targets_sel
        else:
            targets = b.targets
        if self.liger_loss:
            return self.flce(self.head.weight, self.norm(x), targets)
        return self.loss_fn(x, self.norm.weight, self.head.weight, targets, c.eps)


# ---------------------------------------------------------------------------------------------- batches


def block_mask_from_docs(lens, T, dev):
    """flex_attention's BlockMask for causal attention within each sample of a packed sequence, from
    the sample lengths: what create_block_mask gives for
        mask_mod(b, h, q, kv) = (doc[q] == doc[kv]) & (q >= kv)
    over the length rounded up to 128 (the tail's doc -1), without evaluating it over T x T. Samples
    are contiguous, so a 128-block covers the documents lo..hi; blocks i (queries) and j (keys) share
    a document when their ranges overlap, and j <= i then leaves a causal pair (the diagonal block
    pairs a token with itself). The pair is full (no mask needed) when both blocks lie whole in one
    and the same document and j < i; else partial."""
    nb = (T + BLOCK - 1) // BLOCK
    doc = torch.full((nb * BLOCK,), -1, dtype=torch.int32)  # the tail past T: no document
    o = 0
    for i, n in enumerate(lens):
        doc[o:o + n] = i
        o += n
    starts = torch.arange(nb) * BLOCK
    lo = doc[starts].long()
    hi = doc[torch.clamp(starts + BLOCK, max=T) - 1].long()
    i, j = torch.arange(nb)[:, None], torch.arange(nb)[None, :]
    some = (lo[i] <= hi[j]) & (lo[j] <= hi[i]) & (j <= i)
    single = (lo == hi) & (starts + BLOCK <= T)  # one document, no tail: create_block_mask's full blocks
    full = (j < i) & single[i] & single[j] & (lo[i] == lo[j])
    partial = some & ~full

    def ordered(dense):  # (kv_num_blocks, kv_indices) as BlockMask keeps them: (1, 1, nb), (1, 1, nb, nb)
        d = dense.to(torch.int32)
        idx = torch.argsort(d, dim=-1, descending=True, stable=True).to(torch.int32)
        return d.sum(-1).to(torch.int32)[None, None].to(dev), idx[None, None].contiguous().to(dev)

    doc_dev = doc.to(dev)

    def doc_mask(b, h, q, kv):
        return (doc_dev[q] == doc_dev[kv]) & (q >= kv)

    kv_n, kv_i = ordered(partial)
    fkv_n, fkv_i = ordered(full)
    kw = {"BLOCK_SIZE": BLOCK, "mask_mod": doc_mask}
    if "seq_lengths" in inspect.signature(BlockMask.from_kv_blocks).parameters:
        kw["seq_lengths"] = (T, T)
    return BlockMask.from_kv_blocks(kv_n, kv_i, fkv_n, fkv_i, **kw), doc_mask


class Batch:
    """One packed micro-batch, built on the host and copied to the device before the clock starts."""

    def __init__(self, c, mix, ids_pad, pix, dev, attn, head_rows, dtype):
        tpi = (c.S // c.P) ** 2
        self.lens = [n for n, _ in mix]
        self.T = T = sum(self.lens)
        self.n_img = sum(1 for _, im in mix if im)
        ids = torch.empty(T, dtype=torch.long)
        targets = torch.full((T,), -100, dtype=torch.long)
        pos = torch.empty(T, dtype=torch.long)
        img_rows, o = [], 0
        for i, (n, image) in enumerate(mix):
            row = ids_pad[i, :n].clone()
            t = torch.arange(n)
            is_img = torch.zeros(n, dtype=torch.bool)
            if image:  # BOS, the image's features, then text (cmd_bench_step.c's layout)
                is_img[1:1 + tpi] = True
                row[1:1 + tpi] = 0  # any id: these rows take the projected features
                img_rows.append(torch.arange(o + 1, o + 1 + tpi))
            ids[o:o + n] = row
            pos[o:o + n] = t
            nxt_img = torch.cat((is_img[1:], torch.ones(1, dtype=torch.bool)))
            sup = (t + 1 < n) & (t > n // 2) & ~nxt_img  # cmd_bench_step.c: answers, the second half
            tgt = torch.full((n,), -100, dtype=torch.long)
            tgt[:-1] = row[1:]
            targets[o:o + n] = torch.where(sup, tgt, torch.full_like(tgt, -100))
            o += n
        self.n_targets = int((targets != -100).sum())
        self.ids, self.targets, self.pos = ids.to(dev), targets.to(dev), pos.to(dev)
        self.img_rows = torch.cat(img_rows).to(dev) if img_rows else None
        self.pix = pix.to(dev, dtype) if self.n_img else None
        self.head_rows = self.targets_sel = None
        if head_rows == "targets":
            sel = (targets != -100).nonzero().flatten()
            self.head_rows, self.targets_sel = sel.to(dev), targets[sel].to(dev)
        self.attn, self.dev = attn, dev
        # the host's part of the attention metadata (a data loader's work)
        cu = torch.zeros(len(self.lens) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(torch.tensor(self.lens), 0)
        self.cu_host = cu
        if attn == "varlen":
            self.cu = cu.to(dev)
        elif attn == "sdpa-mask":
            doc = torch.repeat_interleave(torch.arange(len(self.lens)), torch.tensor(self.lens)).to(dev)
            causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
            self.mask = (doc[:, None] == doc[None, :]) & causal
        elif attn == "sdpa-loop":
            self.bounds = torch.stack((cu[:-1], cu[1:]), dim=1)

    def make_ctx(self):
        """Inside the timed step: the block mask (flex), else what the host built."""
        if self.attn == "flex":
            return (block_mask_from_docs(self.lens, self.T, self.dev)[0],)
        if self.attn == "varlen":
            return (self.cu, MAX_LEN)
        if self.attn == "sdpa-loop":
            return (self.bounds,)
        return (self.mask,)


def draw_batch(args, c, gen, dev, attn, dtype):
    """torch_llava_step.py's draws, in its order: lengths, token ids (B x longest), pixels."""
    tpi = (c.S // c.P) ** 2
    mix = length_mix(args.batch, gen, tpi=tpi, max_len=MAX_LEN, captions=args.stage == 1)
    Tmax = max(n for n, _ in mix)
    ids_pad = torch.randint(3, min(32000, c.V), (args.batch, Tmax), generator=gen)
    n_img = sum(1 for _, im in mix if im)
    pix = torch.randn((n_img, 3, c.S, c.S), generator=gen)
    return Batch(c, mix, ids_pad, pix, dev, attn, args.head_rows, dtype)


# ---------------------------------------------------------------------------------------------- optimizer


class MasterAdamW:
    """bf16 weights and gradients; fp32 masters updated by torch's fused AdamW; weights copied back."""

    def __init__(self, params, dev, lr=1e-5, max_norm=1.0):
        self.params = params
        self.masters = [p.detach().float().clone() for p in params]
        for m in self.masters:
            m.grad = torch.zeros_like(m)
        self.max_norm = max_norm
        self.fused = fused = dev.type == "cuda"
        self.opt = torch.optim.AdamW(self.masters, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                     fused=fused, foreach=None if fused else True)

    @torch.no_grad()
    def step(self):
        have = [(m.grad, p.grad) for m, p in zip(self.masters, self.params) if p.grad is not None]
        for m, p in zip(self.masters, self.params):
            if p.grad is None:  # no gradient this step (the projector's, in a batch without images)
                m.grad.zero_()
        if have:
            torch._foreach_copy_([a for a, _ in have], [b for _, b in have])
        norm = torch.nn.utils.clip_grad_norm_(self.masters, self.max_norm, foreach=self.fused or None)
        self.opt.step()
        torch._foreach_copy_(self.params, self.masters)
        for p in self.params:
            p.grad = None
        return norm


# ---------------------------------------------------------------------------------------------- setup


def resolve_liger(args, dev):
    """The Liger parts in use: a module namespace with .parts, or None (plain torch), and a note."""
    if args.liger == "off":
        return None, "liger: off (--liger off)"
    lk, why = liger_module()
    if lk is None:
        return None, f"liger: liger_kernel not importable ({why}): plain torch for the norm, SwiGLU, RoPE and loss"
    if dev.type != "cuda":
        return None, "liger: liger_kernel is there, but its Triton kernels need CUDA: plain torch on the CPU"
    import liger_kernel
    ver = getattr(liger_kernel, "__version__", None)
    if ver is None:
        try:
            from importlib.metadata import version
            ver = version("liger-kernel")
        except Exception:  # noqa: BLE001
            ver = "?"
    ns = types.SimpleNamespace(LigerRMSNorm=lk.LigerRMSNorm, LigerSwiGLUMLP=lk.LigerSwiGLUMLP,
                               liger_rotary_pos_emb=lk.liger_rotary_pos_emb,
                               LigerFusedLinearCrossEntropyLoss=lk.LigerFusedLinearCrossEntropyLoss,
                               parts={"loss"} if args.liger == "loss" else {"loss", "layers"})
    what = ("fused linear cross-entropy" if args.liger == "loss" else
            "fused linear cross-entropy, RMSNorm, SwiGLU, RoPE")
    return ns, f"liger: liger-kernel {ver}: {what}"


def resolve_attn(args, dev):
    if args.attn != "auto":
        return args.attn
    return "flex" if dev.type == "cuda" else "sdpa-mask"


def build(args, dev, attn, liger, dtype):
    c = model_shapes(args.tiny, args.layers)
    if attn == "flex" and flex_attention is None:
        raise RuntimeError("flex_attention needs torch 2.5 or later")
    if attn == "varlen" and varlen_attn is None:
        raise RuntimeError("torch.nn.attention.varlen is not in this torch (2.10 or later)")
    flex_fn = flex_attention
    if attn == "flex" and args.compile == "none" and dev.type == "cuda":
        # eager flex is a reference path: compiled alone when the layers are not
        flex_fn = torch.compile(flex_attention, dynamic=True if args.dynamic == "true" else None)
    with torch.device(dev):
        model = Llava(c, attn, liger, flex_fn)
    model.init_weights()
    model.to(dtype)
    model.tower.eval().requires_grad_(False)  # frozen, as in LLaVA
    if args.stage == 1:
        model.requires_grad_(False)
        model.projector.requires_grad_(True)
    if args.compile != "none":
        dyn_cfg = torch._dynamo.config
        if hasattr(dyn_cfg, "inline_inbuilt_nn_modules"):
            dyn_cfg.inline_inbuilt_nn_modules = True  # one graph for all the identical layers
        for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                     "accumulated_recompile_limit"):
            if hasattr(dyn_cfg, name):
                setattr(dyn_cfg, name, max(getattr(dyn_cfg, name), 64))
        model.compile_regions(args.compile, True if args.dynamic == "true" else None)
    return c, model


def graphs_compiled():
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001
        return -1


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------- benchmark


def step_benchmark(args, dev, attn, liger, note):
    c, model = build(args, dev, attn, liger, torch.bfloat16)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = MasterAdamW(params, dev)
    per_tok_lm, per_img = flop_counts(c)
    tpi = (c.S // c.P) ** 2
    n_train = sum(p.numel() for p in params)
    print(f"ideal: LM {c.L} layers (hidden {c.d}, {c.H} heads, MLP {c.I}, vocab {c.V}){' (tiny)' if args.tiny else ''}, "
          f"CLIP {c.Lv} layers frozen, {tpi} visual tokens per image, stage {args.stage}: {n_train / 1e6:.1f} M trained "
          f"parameters (bf16, fp32 masters, {'fused' if opt.fused else 'foreach'} AdamW); {args.batch} samples per step", flush=True)
    comp = f"compile {args.compile} (regional, dynamic {args.dynamic})" if args.compile != "none" else "no compile"
    print(f"ideal: attention {attn}; {comp}; {note}; "
          f"checkpointing {'per decoder layer' if args.checkpoint else 'off'}; LM head over "
          f"{'the supervised tokens' if args.head_rows == 'targets' else 'every token'}; batches: {MIX_FROM}", flush=True)
    gen = torch.Generator().manual_seed(7)
    times, toks, flops, samples, step_ms = 0.0, 0, 0.0, 0, []
    graphs_warm = 0
    for step in range(args.warmup + args.steps):
        b = draw_batch(args, c, gen, dev, attn, torch.bfloat16)
        attn_f = sum(2.0 * n * n * c.d * c.L for n in b.lens)
        f = (2.0 if args.stage == 1 else 3.0) * (per_tok_lm * b.T + attn_f) + per_img * b.n_img  # as bench-step
        if step == args.warmup:
            graphs_warm = graphs_compiled()
        sync(dev)
        t0 = time.perf_counter()
        loss = model(b, checkpoint=args.checkpoint)
        loss.backward()
        opt.step()
        sync(dev)
        dt = time.perf_counter() - t0
        print(f"  step {step + 1}: {b.T} tokens (one packed sequence, {len(b.lens)} samples), {b.n_img} images, "
              f"loss {loss.item():.4f}, {dt * 1e3:.1f} ms{' (warm-up)' if step < args.warmup else ''}", flush=True)
        if step >= args.warmup:
            times += dt
            toks += b.T
            flops += f
            samples += args.batch
            step_ms.append((dt, b.T))
        del b, loss
    g_end = graphs_compiled()
    if graphs_warm >= 0 and g_end >= 0:
        print(f"ideal: graphs compiled: {graphs_warm} in the warm-up, {g_end - graphs_warm} during the timed steps"
              f"{' (compiles: their time is in the steps)' if g_end > graphs_warm else ''}")
    if dev.type == "cuda":
        print(f"ideal: peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    med_dt, med_T = sorted(step_ms)[len(step_ms) // 2]
    print(f"ideal: median step {med_dt * 1e3:.1f} ms ({med_T / med_dt:.0f} tokens/s on its {med_T} tokens)")
    tf = flops / times / 1e12
    line = f"torch-ideal-step: {toks / times:.0f} tokens/s, {samples / times:.1f} samples/s, {tf:.1f} model TFLOP/s"
    if args.peak_tflops:
        line += f", MFU {100 * tf / args.peak_tflops:.1f}% of {args.peak_tflops:.0f} TFLOP/s"
    print(line, flush=True)


# ---------------------------------------------------------------------------------------------- check


def reference_loss(model, b, c):
    """Each sample alone, plain eager ops, causal SDPA, positions 0..n-1: what the packed step must equal."""
    tpi = (c.S // c.P) ** 2
    D = c.d // c.H
    img = None
    if b.n_img:
        with torch.no_grad():
            feats = model.tower(b.pix).reshape(-1, c.dv)
        p0, p2 = model.projector[0], model.projector[2]
        img = F.linear(F.gelu(F.linear(feats, p0.weight, p0.bias)), p2.weight, p2.bias)
    total, k, o = 0.0, 0, 0
    for n in b.lens:
        ids, tgt = b.ids[o:o + n], b.targets[o:o + n]
        x = F.embedding(ids, model.embed.weight)
        if b.img_rows is not None and k < b.n_img and int(b.img_rows[k * tpi]) == o + 1:
            x = torch.cat((x[:1], img[k * tpi:(k + 1) * tpi].to(x.dtype), x[1 + tpi:]))
            k += 1
        cos, sin = rope_tables(torch.arange(n, device=x.device), D, c.theta, x.dtype)
        for L in model.layers:
            h = L.in_norm.weight * rms_normalize(x, c.eps)
            q, kk, v = F.linear(h, L.qkv.weight).view(1, n, 3, c.H, D).unbind(2)
            q, kk, v = q.transpose(1, 2), kk.transpose(1, 2), v.transpose(1, 2)
            q, kk = rope_plain(q, kk, cos, sin)
            a = F.scaled_dot_product_attention(q, kk, v, is_causal=True)
            x = x + F.linear(a.transpose(1, 2).reshape(n, c.d), L.o.weight)
            h = L.post_norm.weight * rms_normalize(x, c.eps)
            m = L.mlp
            x = x + F.linear(F.silu(F.linear(h, m.gate_proj.weight)) * F.linear(h, m.up_proj.weight), m.down_proj.weight)
        h = model.norm.weight * rms_normalize(x, c.eps)
        total = total + F.cross_entropy(F.linear(h, model.head.weight).float(), tgt, ignore_index=-100, reduction="sum")
        o += n
    return total / b.n_targets


def run_check(args, dev, attn, liger, note):
    """Tiny shapes: the packed step (the chosen attention, Liger, compile) against each sample run alone."""
    args.tiny = True
    dtype = torch.bfloat16 if attn == "varlen" else torch.float32  # the flash kernel takes 16-bit inputs only
    c, model = build(args, dev, attn, liger, dtype)
    print(f"ideal check: attention {attn}, compile {args.compile}, {note}, {dtype}, stage {args.stage}", flush=True)
    gen = torch.Generator().manual_seed(11)
    b = draw_batch(args, c, gen, dev, attn, dtype)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    ok = True
    if attn == "flex":  # the hand-built BlockMask against create_block_mask's
        from torch.nn.attention.flex_attention import create_block_mask
        mine, doc_mask = block_mask_from_docs(b.lens, b.T, dev)
        nb = (b.T + BLOCK - 1) // BLOCK
        theirs = create_block_mask(doc_mask, None, None, nb * BLOCK, nb * BLOCK, device=dev)
        def dense(num, idx):  # (rows, cols) 0/1 from BlockMask's ordered form
            num, idx = num.reshape(-1).cpu(), idx.reshape(num.numel(), -1).cpu()
            out = torch.zeros(num.numel(), nb, dtype=torch.int32)
            for r in range(num.numel()):
                out[r, idx[r, :num[r]].long()] = 1
            return out[:nb, :nb]

        same = all(torch.equal(dense(getattr(mine, a), getattr(mine, i)), dense(getattr(theirs, a), getattr(theirs, i)))
                   for a, i in (("kv_num_blocks", "kv_indices"), ("full_kv_num_blocks", "full_kv_indices")))
        full = int(dense(mine.full_kv_num_blocks, mine.full_kv_indices).sum())
        print(f"ideal check: block mask ({nb}x{nb} blocks, {full} full) {'equals' if same else 'DIFFERS FROM'} "
              f"create_block_mask's, partial and full blocks each")
        ok &= same
    loss = model(b, checkpoint=args.checkpoint)
    loss.backward()
    g1 = {n: p.grad.detach().float().clone() for n, p in params if p.grad is not None}
    model.zero_grad(set_to_none=True)
    ref = reference_loss(model, b, c)
    ref.backward()
    g2 = {n: p.grad.detach().float().clone() for n, p in params if p.grad is not None}
    tol_l, tol_g = (1e-4, 1e-3) if dtype == torch.float32 else (2e-2, 5e-2)
    dl = abs(loss.item() - ref.item()) / max(abs(ref.item()), 1e-6)
    worst, worst_name = 0.0, ""
    for n in g2:
        if n not in g1:
            worst, worst_name = float("inf"), n + " (no gradient in the packed step)"
            break
        r = float((g1[n] - g2[n]).norm() / (g2[n].norm() + 1e-12))
        if r > worst:
            worst, worst_name = r, n
    ok &= dl < tol_l and worst < tol_g and len(g1) == len(g2)
    print(f"ideal check: {len(b.lens)} samples, {b.T} tokens, {b.n_img} images, {b.n_targets} targets: packed loss "
          f"{loss.item():.6f}, per-sample reference {ref.item():.6f} (relative difference {dl:.2e}, tolerance {tol_l:g}); "
          f"gradients of {len(g2)} tensors, worst relative difference {worst:.2e} ({worst_name}; tolerance {tol_g:g}): "
          f"{'PASS' if ok else 'FAIL'}", flush=True)
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------- main


def liger_blamed(e):
    """Whether a failure came from liger_kernel: a frame of its files, or its path in the message (dynamo's)."""
    return (any("liger_kernel" in fr.filename for fr in traceback.extract_tb(e.__traceback__))
            or "liger_kernel" in str(e))


def next_try(attn, liger, blame_liger):
    """After a failure under --attn auto: less of Liger when the failure came from it (the loss alone, which
    runs outside the compiled regions, then none), else the next attention."""
    if liger is not None and blame_liger:
        if "layers" in liger.parts:
            return attn, types.SimpleNamespace(**{**vars(liger), "parts": {"loss"}}), \
                "liger: fused linear cross-entropy alone after the failure above"
        return attn, None, "liger: off after the failure above (plain torch)"
    order = ["flex"] + (["varlen"] if varlen_attn is not None else []) + ["sdpa-loop"]
    if attn in order and order.index(attn) + 1 < len(order):
        return order[order.index(attn) + 1], liger, None
    return None, None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=None, help="LM decoder layers (default 4; 2 with --tiny)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--stage", type=int, default=2, choices=(1, 2),
                    help="1: projector only on caption lengths (LLaVA's stage 1); 2: projector + LM on the 665K mix")
    ap.add_argument("--tiny", action="store_true", help="small widths, for checking the script on a CPU")
    ap.add_argument("--attn", default="auto", choices=("auto", "flex", "varlen", "sdpa-loop", "sdpa-mask"),
                    help="auto: flex on CUDA (falling back to varlen, then sdpa-loop, on failure), sdpa-mask on the CPU")
    ap.add_argument("--compile", default="default", choices=("default", "max-autotune-no-cudagraphs", "none"))
    ap.add_argument("--dynamic", default="true", choices=("true", "auto"),
                    help="true: compiled regions take any length from the first step; auto: torch's automatic dynamic")
    ap.add_argument("--liger", default="auto", choices=("auto", "all", "loss", "off"),
                    help="auto / all: every Liger kernel named above when importable on CUDA; loss: the fused "
                    "linear cross-entropy alone")
    ap.add_argument("--checkpoint", action="store_true", help="recompute each decoder layer in backward")
    ap.add_argument("--head-rows", default="all", choices=("all", "targets"))
    ap.add_argument("--check", action="store_true", help="tiny shapes: packed loss and gradients against each "
                    "sample alone, then exit (0: pass)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    liger, note = resolve_liger(args, dev)
    attn = resolve_attn(args, dev)
    if args.attn == "auto" and dev.type != "cuda":
        print("ideal: on the CPU the attention is SDPA with an explicit block-diagonal causal mask (--attn auto; "
              "inductor in torch 2.5 has no CPU flex_attention; --attn flex --compile none runs flex eagerly)")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}", flush=True)
    if args.check:
        return run_check(args, dev, attn, liger, note)
    while True:
        try:
            step_benchmark(args, dev, attn, liger, note)
            return 0
        except Exception as e:  # noqa: BLE001
            text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            print(text[-4000:], flush=True)
            print(f"torch-ideal-step: FAILED ({attn}): {type(e).__name__}: {str(e)[:300]}", flush=True)
            blame = liger_blamed(e)
            del e
        nxt = next_try(attn, liger, blame) if args.attn == "auto" else (None, None, None)
        if nxt[0] is None:
            return 1
        attn, liger, new_note = nxt
        note = new_note or note
        print(f"ideal: trying again with attention {attn}, {note}", flush=True)
        torch._dynamo.reset()
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    sys.exit(main())
