"""Golden sample orders for data/sampler.c.

The grouped sampler is re-stated here from the description of LLaVA's llava/train/llava_trainer.py
in spec llava15-recipe.md §7.1 (random permutation, megabatches of world*batch, stable sort by
length, split into even chunks by running length sum, modality-separated megabatches shuffled with
the sampler's generator and the two last ones merged and sorted at the end). Batches are dealt to
ranks by accelerate 0.21's own BatchSamplerShard (even_batches=True), imported, not re-stated.

--llava DIR (a clone of haotian-liu/LLaVA) is required: the re-statement is checked against LLaVA's own
functions at commit c121f04, run unmodified, before anything is written, and orders.json records that
cross-check (LLaVA's commit, the cases and seeds compared, how many orders were identical), which
tests/test_sampler.c asserts.
Pinned versions: tools/reference/requirements-sampler.txt. Run from the repository root:
    python tools/reference/make_sampler_goldens.py --llava /path/to/LLaVA
"""
import argparse
import json
import math
import pathlib
import subprocess

import torch
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler

OUT = pathlib.Path("tests/data/sampler")
TORCH_DEFAULT_SEED = 67280421310721


def even_chunks(indices, lengths, k):
    if len(indices) % k != 0:
        return [indices[i::k] for i in range(k)]
    per = len(indices) // k
    chunks = [[] for _ in range(k)]
    sums = [0] * k
    for i in indices:
        best = sums.index(min(sums))
        chunks[best].append(i)
        sums[best] += lengths[i]
        if len(chunks[best]) == per:
            sums[best] = float("inf")
    return chunks


def length_grouped(lengths, batch, world, generator):
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    size = world * batch
    out = []
    for s in range(0, len(perm), size):
        mb = sorted(perm[s:s + size], key=lambda i: lengths[i], reverse=True)
        for chunk in even_chunks(mb, lengths, world):
            out.extend(chunk)
    return out


def modality_grouped(lengths, batch, world, generator):
    assert all(l != 0 for l in lengths)
    if all(l > 0 for l in lengths) or all(l < 0 for l in lengths):
        return length_grouped(lengths, batch, world, generator)
    mm = [(i, l) for i, l in enumerate(lengths) if l > 0]
    lang = [(i, -l) for i, l in enumerate(lengths) if l < 0]
    mm_order = [mm[i][0] for i in length_grouped([l for _, l in mm], batch, world, None)]
    lang_order = [lang[i][0] for i in length_grouped([l for _, l in lang], batch, world, None)]
    size = world * batch
    mm_mb = [mm_order[i:i + size] for i in range(0, len(mm_order), size)]
    lang_mb = [lang_order[i:i + size] for i in range(0, len(lang_order), size)]
    last = mm_mb[-1] + lang_mb[-1]
    mbs = mm_mb[:-1] + lang_mb[:-1]
    mbs = [mbs[i] for i in torch.randperm(len(mbs), generator=generator).tolist()]
    if last:
        mbs.append(sorted(last))
    return [i for mb in mbs for i in mb]


def llava_functions(llava_dir):
    """LLaVA's own sampler functions at c121f04, taken from git and run unmodified."""
    src = subprocess.run(["git", "-C", llava_dir, "show", "c121f04:llava/train/llava_trainer.py"],
                         check=True, capture_output=True, text=True).stdout
    start = src.index("def split_to_even_chunks")
    end = src.index("class LengthGroupedSampler")
    ns = {"torch": torch, "math": math}
    exec(compile(src[start:end], "llava_trainer.py@c121f04", "exec"), ns)
    return ns["get_modality_length_grouped_indices"]


def single_process_orders(case, epochs, llava):
    """LLaVA launched as one process (python, no launcher): its sampler has no generator of its own, so
    every draw is the global generator's, seeded 42 by HF's set_seed; each epoch the DataLoader's
    iterator first draws one int64 (its base seed), then LLaVA's own grouped function runs."""
    torch.manual_seed(case["inner_seed"])
    orders = []
    for _ in range(epochs):
        torch.empty((), dtype=torch.int64).random_()
        orders.append(llava(case["lengths"], case["batch"], case["ranks"], None))
    return orders


def epoch_orders(case, epochs, reference):
    g = torch.Generator()
    g.manual_seed(case["seed"])
    torch.manual_seed(case["inner_seed"])
    orders = []
    for _ in range(epochs):
        for _ in range(case["inner_skip"]):
            torch.empty((), dtype=torch.int32).random_()  # one 32-bit draw of the global generator
        if case["lengths"] is None:
            orders.append(torch.randperm(case["n"], generator=g).tolist())
        else:
            orders.append(reference(case["lengths"], case["batch"], case["ranks"], g))
    return orders


def rank_batches(order, batch, ranks):
    sampler = BatchSampler(order, batch_size=batch, drop_last=False)
    return [[list(b) for b in BatchSamplerShard(sampler, num_processes=ranks, process_index=r, even_batches=True)]
            for r in range(ranks)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llava", required=True, help="a clone of haotian-liu/LLaVA to check the re-statement against")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(3)

    def signed_lengths(n, text_share):
        ls = (torch.randint(1, 400, (n,), generator=g)).tolist()
        flip = torch.rand(n, generator=g).tolist()
        return [-l if f < text_share else l for l, f in zip(ls, flip)]

    cases = [
        {"name": "random_even", "n": 1000, "batch": 8, "ranks": 4, "lengths": None},
        {"name": "random_short_tail", "n": 1003, "batch": 8, "ranks": 4, "lengths": None},
        {"name": "random_tiny", "n": 10, "batch": 4, "ranks": 4, "lengths": None},
        {"name": "grouped_mixed", "n": 700, "batch": 4, "ranks": 8, "lengths": signed_lengths(700, 0.1)},
        {"name": "grouped_mixed_skip", "n": 531, "batch": 3, "ranks": 5, "lengths": signed_lengths(531, 0.3),
         "inner_skip": 2},
        {"name": "grouped_image_only", "n": 300, "batch": 4, "ranks": 2, "lengths": signed_lengths(300, 0.0)},
        {"name": "grouped_ties", "n": 96, "batch": 4, "ranks": 4, "lengths": [((i * 7) % 5 + 1) * (1 if i % 6 else -1)
                                                                              for i in range(96)]},
    ]
    # Single-process launches (data.sampler_order llava-single-process): LLaVA's own function, run
    # with the global generator as such a launch has it.
    single = [
        {"name": "single_mixed", "n": 203, "batch": 4, "ranks": 1, "lengths": signed_lengths(203, 0.2),
         "single_process": True},
        {"name": "single_image_only", "n": 120, "batch": 8, "ranks": 2, "lengths": signed_lengths(120, 0.0),
         "single_process": True},
    ]
    reference = modality_grouped
    llava = llava_functions(args.llava)
    commit = subprocess.run(["git", "-C", args.llava, "rev-parse", "c121f04"], check=True, capture_output=True,
                            text=True).stdout.strip()
    seeds = [1, TORCH_DEFAULT_SEED]
    compared, identical, checked_cases = 0, 0, []
    for case in cases:
        if case["lengths"] is None:
            continue
        checked_cases.append(case["name"])
        for seed in seeds:
            torch.manual_seed(42)
            a = modality_grouped(case["lengths"], case["batch"], case["ranks"], torch.Generator().manual_seed(seed))
            torch.manual_seed(42)
            b = llava(case["lengths"], case["batch"], case["ranks"], torch.Generator().manual_seed(seed))
            compared += 1
            identical += a == b
            assert a == b, f"re-statement differs from LLaVA on {case['name']}"
    print(f"re-statement identical to LLaVA {commit[:7]} on {identical} of {compared} grouped orders")
    crosscheck = {"llava_commit": commit, "function": "llava/train/llava_trainer.py:get_modality_length_grouped_indices",
                  "cases": checked_cases, "seeds": seeds, "orders_compared": compared, "orders_identical": identical}
    for case in single:
        case["seed"], case["inner_seed"], case["inner_skip"] = 0, 42, 2  # 2: one int64 draw of 32-bit words
        case["orders"] = single_process_orders(case, 2, llava)
        case["rank_batches"] = [rank_batches(o, case["batch"], case["ranks"]) for o in case["orders"]]
    for case in cases:
        case.setdefault("seed", TORCH_DEFAULT_SEED)
        case.setdefault("inner_seed", 42)
        case.setdefault("inner_skip", 0)
        orders = epoch_orders(case, 2, reference)
        case["orders"] = orders
        case["rank_batches"] = [rank_batches(o, case["batch"], case["ranks"]) for o in orders]
    (OUT / "orders.json").write_text(json.dumps({"torch": torch.__version__, "llava_crosscheck": crosscheck, "cases": cases + single}) + "\n")
    print("wrote", OUT / "orders.json", sum(len(c["orders"][0]) for c in cases), "samples per epoch over", len(cases),
          "cases")


if __name__ == "__main__":
    main()
