"""LLaVA's length mix for the step benchmarks, in one place (torch only): torch_llava_step.py,
torch_ideal_step.py and torch_generate.py draw the same samples from the same generator.

Stage 2 (LLaVA's 665K mix): 94% of samples carry an image (its tpi features plus 40-500 text tokens),
the rest are text-only conversations of 600-2048 tokens; stage 1 (the 558K captions): every sample an
image and a 20-80 token caption. Each sample is (length, has_image), cut to max_len.
"""
import torch


def length_mix(batch, gen, tpi=576, max_len=2048, captions=False):
    out = []
    for _ in range(batch):
        if captions:  # stage 1: LLaVA's 558K captions, every sample an image and 20-80 caption tokens
            out.append((1 + tpi + 20 + int(torch.randint(0, 61, (1,), generator=gen)), True))
            continue
        image = int(torch.randint(0, 100, (1,), generator=gen)) >= 6
        if image:
            n = 40 + int(torch.randint(0, 461, (1,), generator=gen)) + tpi
        else:
            n = 600 + int(torch.randint(0, 1449, (1,), generator=gen))
        out.append((min(n, max_len), image))
    return out
