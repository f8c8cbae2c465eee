"""Generation speed of the stack users would otherwise run, measured beside `llava bench-generate`.

transformers `generate` with a static KV cache (cache_implementation="static"), bf16 weights and
SDPA attention, on a LlamaForCausalLM with LLaVA-1.5-7B's language-model shapes (hidden 4096, 32
heads of 128, MLP 11008, vocabulary 32000, 32 layers: 13.5 GB of bf16 weights, which fit an 80 GB
card with room for the batch-64 cache), random weights. Greedy, and no early stop: min_new_tokens =
max_new_tokens, so every run generates exactly --new-tokens tokens whatever the random model says.
Three numbers:
  1. batch-1 decode tokens/s after a --prompt-tokens prompt (600: LLaVA's image prompt, 576 image
     features and the text around them), over --new-tokens (128) tokens;
  2. time to the first token of that prompt (the prefill of 600 tokens and one sampling step);
  3. tokens/s at --batch (64) with prompts of LLaVA's length mix (tools/bench/torch_llava_step.py's:
     94% image samples of 576 + 40-500 text tokens, 6% text-only of 600-2048; left-padded to the
     longest, as generate wants), or with every prompt --batch-prompts tokens long.
Timing: a streamer records the host clock as each step's tokens reach the host (generate copies
them there every step, after the GPU finished the step): the first token's arrival after the call
began is the TTFT, and the steps after it give the decode rate (batch x (new - 1) tokens over their
time). Medians over --reps runs after a warm-up run (cache allocation, cuBLAS plans, compilation).

Also reported: the bf16 weight bytes and a memory-bandwidth bound on decode, as `llava
bench-generate` reports them: every decode step reads all weights once and each sequence's cached
keys and values (2 x layers x context x hidden x 2 bytes, at the mean context of the run), so
tokens/s <= batch x copy bandwidth / those bytes, with the copy bandwidth measured here (a 1 GiB
device-to-device copy, bytes read plus written).

Output: one JSON line (keys below), then a table for people.

Run on the GPU machine (its image has torch and transformers; requirements-generate.txt pins the
versions the numbers are meant to come from):
    python3 tools/bench/torch_generate.py                       # 32 layers, batch 1 and 64
    python3 tools/bench/torch_generate.py --compile             # the forward under torch.compile
A check of the script itself on a CPU (toy sizes, numbers meaningless):
    python3 tools/bench/torch_generate.py --device cpu --layers 1 --hidden 256 --prompt-tokens 40 \\
        --new-tokens 8 --batch 4 --reps 1
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import transformers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
from transformers.generation.streamers import BaseStreamer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from length_mix import length_mix  # noqa: E402  (the same length mix as the step benchmark)


class StepClock(BaseStreamer):
    """Host time at each put(): the prompt first, then every generated step's tokens."""

    def __init__(self):
        self.t = []

    def put(self, value):
        self.t.append(time.perf_counter())

    def end(self):
        pass


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def build_model(args, dev):
    d = args.hidden
    heads = max(1, d // 128)
    inter = args.intermediate or int(round(11008 * d / 4096))
    cfg = LlamaConfig(hidden_size=d, intermediate_size=inter, num_hidden_layers=args.layers,
                      num_attention_heads=heads, num_key_value_heads=heads, vocab_size=args.vocab,
                      rms_norm_eps=1e-5, max_position_embeddings=4096, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0, tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    dtype = getattr(torch, args.dtype)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise in the final dtype, on the device: no fp32 copy of 7B
    try:
        with torch.device(dev):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    return model, cfg, n_params * torch.finfo(dtype).bits // 8


def generation_config(args, new_tokens):
    g = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0,
                         eos_token_id=2, bos_token_id=1)
    g.cache_implementation = "static"  # set after __init__: transformers 4.46's wants a StaticCacheConfig there
    # Newer transformers compile the decoding step by themselves when the cache is static (on a
    # GPU): the plain run must stay eager, and --compile uses that mechanism where it exists.
    if auto_compile():
        g.disable_compile = not args.compile
        if args.compile:
            g.compile_config = transformers.CompileConfig()
            g.compile_config._compile_all_devices = torch.device(args.device).type != "cuda"  # the CPU check
    return g


def auto_compile():
    return hasattr(transformers, "CompileConfig") and hasattr(GenerationConfig(), "disable_compile")


def copy_bandwidth(dev):
    """GB/s of a 1 GiB device-to-device copy (read + written), best of 5 after 2 warm-ups."""
    if dev.type != "cuda":
        return 0.0
    n = 1 << 28  # fp32 elements: 1 GiB
    src = torch.empty(n, dtype=torch.float32, device=dev).uniform_()
    dst = torch.empty_like(src)
    best = float("inf")
    for i in range(7):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        dst.copy_(src)
        b.record()
        b.synchronize()
        if i >= 2:
            best = min(best, a.elapsed_time(b))
    del src, dst
    torch.cuda.empty_cache()
    return 2.0 * n * 4 / (best * 1e-3) / 1e9


def prompts(args, batch, spec, gen):
    """Token ids (batch, longest) left-padded with 0, their attention mask, and the lengths."""
    if spec == "mix":
        lens = [n for n, _ in length_mix(batch, gen)]
    else:
        lens = [int(spec)] * batch
    longest = max(lens)
    ids = torch.zeros((batch, longest), dtype=torch.long)
    mask = torch.zeros((batch, longest), dtype=torch.long)
    for i, n in enumerate(lens):
        ids[i, longest - n:] = torch.randint(3, args.vocab, (n,), generator=gen)
        ids[i, longest - n] = 1  # BOS
        mask[i, longest - n:] = 1
    return ids, mask, lens


def measure(model, args, dev, batch, spec, gen):
    """Median TTFT (ms) and decode tokens/s over args.reps runs after one warm-up."""
    ids, mask, lens = prompts(args, batch, spec, gen)
    ids, mask = ids.to(dev), mask.to(dev)
    cfg = generation_config(args, args.new_tokens)
    ttft, rate, total = [], [], []
    for rep in range(args.warmup + args.reps):
        clock = StepClock()
        sync(dev)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg, streamer=clock)
        sync(dev)
        t1 = time.perf_counter()
        got = out.shape[1] - ids.shape[1]
        if got != args.new_tokens:
            raise RuntimeError(f"generated {got} tokens, wanted {args.new_tokens}")
        steps = clock.t[1:]  # clock.t[0]: the prompt, put before any work
        if rep < args.warmup:
            continue
        ttft.append((steps[0] - t0) * 1e3)
        if len(steps) > 1:
            rate.append(batch * (len(steps) - 1) / (steps[-1] - steps[0]))
        total.append(batch * args.new_tokens / (t1 - t0))
        print(f"  batch {batch}, prompts {spec}: run {rep + 1 - args.warmup}: TTFT {ttft[-1]:.1f} ms, "
              f"decode {rate[-1] if rate else 0:.1f} tokens/s, {total[-1]:.1f} tokens/s overall", flush=True)
    return {
        "batch": batch,
        "prompts": spec,
        "prompt_tokens": round(sum(lens) / len(lens), 1),
        "longest_prompt": max(lens),
        "new_tokens": args.new_tokens,
        "ttft_ms": round(statistics.median(ttft), 3),
        "decode_tokens_per_s": round(statistics.median(rate), 2) if rate else 0.0,
        "tokens_per_s": round(statistics.median(total), 2),  # generated tokens over the whole call
    }


def add_bound(r, weight_bytes, cfg, bw_gbs, dtype_bytes):
    """The bandwidth bound of decode: weights + each sequence's cache at the mean context, per step."""
    ctx = r["prompt_tokens"] + r["new_tokens"] / 2.0
    kv = 2.0 * cfg.num_hidden_layers * ctx * cfg.hidden_size * dtype_bytes * r["batch"]
    bound = r["batch"] * bw_gbs * 1e9 / (weight_bytes + kv) if bw_gbs > 0 else 0.0
    r["bound_tokens_per_s"] = round(bound, 2)
    r["fraction_of_bound"] = round(r["decode_tokens_per_s"] / bound, 4) if bound > 0 else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4096, help="256 for a CPU check (heads = hidden / 128)")
    ap.add_argument("--intermediate", type=int, default=0, help="MLP width (default 11008 x hidden / 4096)")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--prompt-tokens", type=int, default=600)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64, help="the throughput run's batch (0: skip it)")
    ap.add_argument("--batch-prompts", default="mix", help="'mix' (LLaVA's length mix) or a prompt length")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="the forward under torch.compile")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {name}", flush=True)

    model, cfg, weight_bytes = build_model(args, dev)
    if args.compile and not auto_compile():
        # transformers before automatic compilation: the recipe of its static-cache documentation
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    bw = copy_bandwidth(dev)
    dtype_bytes = torch.finfo(getattr(torch, args.dtype)).bits // 8
    gen = torch.Generator().manual_seed(args.seed)
    res = {"impl": "torch", "torch": torch.__version__, "transformers": transformers.__version__, "device": name,
           "layers": args.layers, "hidden": args.hidden, "compile": args.compile, "weight_bytes": weight_bytes,
           "copy_bandwidth_gbs": round(bw, 1)}
    rc = 0
    runs = [("batch1", 1, str(args.prompt_tokens))]
    if args.batch > 0:
        runs.append(("batched", args.batch, args.batch_prompts))
    for key, batch, spec in runs:
        try:
            r = measure(model, args, dev, batch, spec, gen)
            add_bound(r, weight_bytes, cfg, bw, dtype_bytes)
            res[key] = r
        except Exception as e:  # report and go on to the other measurement
            print(f"torch-generate {key}: FAILED: {type(e).__name__}: {e}", flush=True)
            res[key] = {"error": f"{type(e).__name__}: {e}"}
            rc = 1
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    print(json.dumps(res), flush=True)
    print(f"\ntorch {torch.__version__} + transformers {transformers.__version__}, {name}: {args.layers} layers, "
          f"hidden {args.hidden}, {weight_bytes / 1e9:.2f} GB of weights, static cache, "
          f"{'torch.compile' if args.compile else 'eager'}; copy bandwidth {bw:.0f} GB/s")
    print(f"{'run':<28} {'TTFT ms':>9} {'decode tok/s':>13} {'tok/s (call)':>13} {'bound tok/s':>12} {'of bound':>9}")
    for key, batch, spec in runs:
        r = res[key]
        what = f"batch {batch}, prompts {spec}"
        if "error" in r:
            print(f"{what:<28} {r['error']}")
            continue
        print(f"{what:<28} {r['ttft_ms']:>9.1f} {r['decode_tokens_per_s']:>13.1f} {r['tokens_per_s']:>13.1f} "
              f"{r['bound_tokens_per_s']:>12.1f} {100 * r['fraction_of_bound']:>8.1f}%")
    return rc


if __name__ == "__main__":
    sys.exit(main())
