"""The stack users would otherwise run, measured beside `llava bench-step` on the same GPU.

PyTorch + transformers LlavaForConditionalGeneration in bf16 with SDPA attention, LLaVA-1.5 7B
layer shapes (CLIP ViT-L/14-336 frozen, the 2-layer GELU projector, LLaMA-7B decoder layers
truncated to --layers so it fits one GPU), trained on batches of LLaVA-1.5's length mix padded as
the HF collator pads them (94% image samples with 40-500 text tokens, 6% text-only of 600-2048).
AdamW (torch, fused) over projector + LM as in stage 2, or with --stage 1 over the projector
alone on caption lengths (every sample an image and 20-80 tokens), as `llava bench-step --stage 1`.
Prints tokens/s (real tokens, image features included, as llava.c counts them), samples/s and
model TFLOP/s on the same FLOP count.

Also times torch's SDPA attention (flash backend where it applies) forward+backward at the
attention shapes of one packed micro-batch, for comparison with `llava bench-kernels`.

Run on the GPU machine (its image has torch and transformers):
    python3 tools/bench/torch_llava_step.py --layers 4 --batch 16 --steps 5
A smoke test of the script itself on a CPU (tiny shapes, numbers meaningless):
    python3 tools/bench/torch_llava_step.py --device cpu --tiny --batch 2 --steps 1 --warmup 0
The attention timing runs first and the model step after it, each reporting its own failure, so
that one broken half (a transformers API change, say) does not lose the other's number.
"""
import argparse
import os
import sys
import time

import torch
import transformers
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from length_mix import length_mix  # noqa: E402  (the step benchmarks' shared samples)


def step_benchmark(args, dev, gen):
    d, I, L, V = 4096, 11008, args.layers, 32064
    dv, Lv = 1024, 23
    if args.tiny:
        d, I, V, dv = 256, 512, 32064, 128
    text = LlamaConfig(hidden_size=d, intermediate_size=I, num_hidden_layers=L, num_attention_heads=d // 128,
                       vocab_size=V, rms_norm_eps=1e-5, max_position_embeddings=4096)
    vision = CLIPVisionConfig(hidden_size=dv, intermediate_size=4 * dv, num_hidden_layers=24, num_attention_heads=dv // 64,
                              image_size=336, patch_size=14, projection_dim=768)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=32000, vision_feature_layer=-2,
                      image_seq_length=576)
    cfg._attn_implementation = "sdpa"
    model = LlavaForConditionalGeneration(cfg).to(dev, torch.bfloat16)
    tower = model.vision_tower if hasattr(model, "vision_tower") else model.model.vision_tower  # transformers 5
    for p in tower.parameters():  # frozen, as in LLaVA
        p.requires_grad_(False)
    if args.stage == 1:  # the projector alone trains
        proj = model.multi_modal_projector if hasattr(model, "multi_modal_projector") else model.model.multi_modal_projector
        for p in model.parameters():
            p.requires_grad_(False)
        for p in proj.parameters():
            p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=dev.type == "cuda")
    per_tok_lm = 2.0 * (L * (4 * d * d + 3 * d * I) + d * V)
    Nv = 577
    per_img = 2.0 * Nv * (Lv * (4 * dv * dv + 2 * dv * 4096) + 3 * 14 * 14 * dv) + Lv * 4.0 * Nv * Nv * dv + \
        2.0 * 576 * 4096 * (dv + d)
    times, toks, flops, samples = 0.0, 0, 0.0, 0
    for step in range(args.warmup + args.steps):
        mix = length_mix(args.batch, gen, captions=args.stage == 1)
        T = max(n for n, _ in mix)
        ids = torch.randint(3, 32000, (args.batch, T), generator=gen)
        mask = torch.zeros((args.batch, T), dtype=torch.long)
        labels = torch.full((args.batch, T), -100, dtype=torch.long)
        for i, (n, image) in enumerate(mix):
            mask[i, :n] = 1
            if image:
                ids[i, 1:577] = 32000
            labels[i, n // 2:n] = ids[i, n // 2:n]
            labels[i, 1:577] = -100 if image else labels[i, 1:577]
        n_img = sum(1 for _, im in mix if im)
        pix = torch.randn((n_img, 3, 336, 336), generator=gen)
        ids, mask, labels, pix = ids.to(dev), mask.to(dev), labels.to(dev), pix.to(dev, torch.bfloat16)
        sync(dev)
        t0 = time.perf_counter()
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pix if n_img else None, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(dev)
        dt = time.perf_counter() - t0
        real = sum(n for n, _ in mix)
        attn = sum(2.0 * n * n * d * L for n, _ in mix)
        f = (2.0 if args.stage == 1 else 3.0) * (per_tok_lm * real + attn) + per_img * n_img  # as bench-step counts
        print(f"  step {step + 1}: {real} real tokens (padded to {args.batch}x{T}), {n_img} images, "
              f"loss {out.loss.item():.4f}, {dt * 1e3:.1f} ms{' (warm-up)' if step < args.warmup else ''}")
        if step >= args.warmup:
            times += dt
            toks += real
            flops += f
            samples += args.batch
    tf = flops / times / 1e12
    line = f"torch-step: {toks / times:.0f} tokens/s, {samples / times:.1f} samples/s, {tf:.1f} model TFLOP/s"
    if args.peak_tflops:
        line += f", MFU {100 * tf / args.peak_tflops:.1f}% of {args.peak_tflops:.0f} TFLOP/s"
    print(line, flush=True)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def attention_benchmark(args, dev, gen):
    """torch's attention at our shapes: one packed micro-batch of LLaVA-mix sequences, 32 heads x 128."""
    F = torch.nn.functional
    lens = [n for n, _ in length_mix(args.batch, gen)]
    if args.tiny:
        lens = [min(n, 64) for n in lens]
    q = [torch.randn((1, 32, n, 128), device=dev, dtype=torch.bfloat16, requires_grad=True) for n in lens]
    for _ in range(2):
        for x in q:
            F.scaled_dot_product_attention(x, x, x, is_causal=True).sum().backward()
    sync(dev)
    t0 = time.perf_counter()
    reps = 5
    for _ in range(reps):
        for x in q:
            F.scaled_dot_product_attention(x, x, x, is_causal=True).sum().backward()
    sync(dev)
    dt = (time.perf_counter() - t0) / reps
    af = sum(3.0 * 2.0 * n * n * 128 * 32 for n in lens)  # causal fwd (QK^T + PV) x 3 for fwd+bwd
    print(f"torch-attention-mix: {len(lens)} causal sequences ({sum(lens)} tokens, 32x128 heads) fwd+bwd {dt * 1e3:.2f} ms, "
          f"{af / dt / 1e12:.1f} TFLOP/s", flush=True)


def attention_shapes(args, dev, gen):
    """SDPA at the shapes `llava bench-kernels` times, with CUDA events (median of 20 after 5 warm-ups):
    the LM's causal 1x2048 tokens, 32 heads x 128, and CLIP's 16 images x 577 tokens, 16 heads x 64.
    FLOPs counted as bench-kernels counts them (causal: half the square)."""
    F = torch.nn.functional
    for name, (B, H, N, D, causal) in (("lm causal 1x2048 H=32 D=128", (1, 32, 2048, 128, True)),
                                       ("clip 16x577 H=16 D=64", (16, 16, 577, 64, False))):
        if args.tiny:
            N = 64
        q, k, v = (torch.randn((B, H, N, D), device=dev, dtype=torch.bfloat16, generator=None, requires_grad=True)
                   for _ in range(3))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        do = torch.randn_like(o)

        def fwd():
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        def bwd():
            torch.autograd.grad(o, (q, k, v), do, retain_graph=True)

        res = []
        for fn in (fwd, bwd):
            for _ in range(5):
                fn()
            ms = []
            for _ in range(20):
                if dev.type == "cuda":
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a.record()
                    fn()
                    b.record()
                    b.synchronize()
                    ms.append(a.elapsed_time(b))
                else:
                    t0 = time.perf_counter()
                    fn()
                    ms.append((time.perf_counter() - t0) * 1e3)
            res.append(sorted(ms)[len(ms) // 2])
        f = 4.0 * B * H * N * N * D * (0.5 if causal else 1.0)
        print(f"torch-attention {name}: forward {res[0]:.4f} ms {f / res[0] / 1e9:.1f} TFLOP/s, "
              f"backward {res[1]:.4f} ms {2.5 * f / res[1] / 1e9:.1f} TFLOP/s (2.5x forward FLOPs)", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--stage", type=int, default=2, choices=(1, 2),
                    help="1: projector only on caption lengths (LLaVA's stage 1); 2: projector + LM on the 665K mix")
    ap.add_argument("--tiny", action="store_true", help="small widths, for checking the script on a CPU")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}", flush=True)
    rc = 0
    for name, fn in (("attention", attention_shapes), ("attention-mix", attention_benchmark),
                     ("step", step_benchmark)):
        try:
            fn(args, dev, torch.Generator().manual_seed(7))
        except Exception as e:  # report and go on to the other half
            print(f"torch-{name}: FAILED: {type(e).__name__}: {e}", flush=True)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
