#!/usr/bin/env python3
"""Prompt token ids of benchmark questions, as LLaVA's eval scripts build them.

For the first questions of each benchmark's question file under tests/data/eval/ (the synthetic files in
each official format; ScienceQA and MMBench: the question texts their model_vqa_science.py /
model_vqa_mmbench.py build, tests/data/eval/<bench>/golden/prepare.jsonl), this runs LLaVA's own code
unmodified, taken from a clone at c121f04 with `git show`: llava/conversation.py's vicuna_v1 template
(what every scripts/v1_5/eval/*.sh passes as --conv-mode) and llava/mm_utils.py's tokenizer_image_token,
as model_vqa_loader.py / model_vqa.py do it:

    qs = "<image>\\n" + text            (when the question has an image)
    conv.append_message(USER, qs); conv.append_message(ASSISTANT, None); prompt = conv.get_prompt()
    ids = tokenizer_image_token(prompt, tokenizer, IMAGE_TOKEN_INDEX)

with the LLaMA tokenizer (the repository's shared tokenizer.model) as vicuna-7b-v1.5 configures it
(LlamaTokenizer, the slow one LLaVA asks for with use_fast=False, legacy=False), under transformers 4.37.2
(LLaVA HEAD's pin). Writes tests/data/eval/prompts.json; tests/test_eval_prompts.c checks that
llava.c's engine builds the same ids (engine_prompt_ids, tokenizer mode hf437).

    python3 -m venv /tmp/tok437 && /tmp/tok437/bin/pip install -r tools/reference/eval/requirements-prompts.txt
    /tmp/tok437/bin/python tools/reference/eval/make_prompt_goldens.py --llava /path/to/LLaVA \\
        --tokenizer ../shared/testdata/llama/tokenizer.model
"""
import argparse
import hashlib
import json
import pathlib
import subprocess
import sys
import types

import transformers
from transformers import LlamaTokenizer

COMMIT = "c121f04"
EVAL = pathlib.Path("tests/data/eval")
# (benchmark, question file under tests/data/eval, whether every question has an image)
SOURCES = [
    ("vqav2", "vqav2/llava_vqav2_mscoco_test-dev2015.jsonl", None),
    ("gqa", "gqa/llava_gqa_testdev_balanced.jsonl", None),
    ("vizwiz", "vizwiz/llava_test.jsonl", None),
    ("scienceqa", "scienceqa/golden/prepare.jsonl", None),
    ("textvqa", "textvqa/llava_textvqa_val_v051_ocr.jsonl", None),
    ("pope", "pope/llava_pope_test.jsonl", None),
    ("mme", "MME/llava_mme.jsonl", None),
    ("mmbench", "mmbench/golden/prepare.jsonl", True),  # model_vqa_mmbench.py: every row has its image
    ("mmbench_cn", "mmbench_cn/golden/prepare.jsonl", True),
    ("seed", "seed_bench/llava-seed-bench.jsonl", None),
    ("llavabench", "llavabench/questions.jsonl", None),
    ("mmvet", "mmvet/llava-mm-vet.jsonl", None),
]
PER_BENCH = 3


def llava_module(llava, path, name, extra_globals=None):
    src = subprocess.run(["git", "-C", llava, "show", f"{COMMIT}:{path}"], check=True, capture_output=True,
                         text=True).stdout
    mod = types.ModuleType(name)
    if extra_globals:
        mod.__dict__.update(extra_globals)
    exec(compile(src, f"{path}@{COMMIT}", "exec"), mod.__dict__)
    return mod, hashlib.sha256(src.encode()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llava", required=True, help="a clone (or bare mirror) of haotian-liu/LLaVA")
    ap.add_argument("--tokenizer", required=True, help="the LLaMA tokenizer.model")
    args = ap.parse_args()
    # conversation.py imports PIL for its image helpers, which the prompt never touches.
    sys.modules.setdefault("PIL", types.ModuleType("PIL"))
    sys.modules["PIL"].Image = types.ModuleType("PIL.Image")
    sys.modules.setdefault("PIL.Image", sys.modules["PIL"].Image)
    conv_mod, conv_sha = llava_module(args.llava, "llava/conversation.py", "llava_conversation")
    # tokenizer_image_token alone, cut from mm_utils.py (whose imports pull in torch and PIL).
    src = subprocess.run(["git", "-C", args.llava, "show", f"{COMMIT}:llava/mm_utils.py"], check=True,
                         capture_output=True, text=True).stdout
    start = src.index("def tokenizer_image_token")
    end = src.index("def get_model_name_from_path")
    ns = {"IMAGE_TOKEN_INDEX": -200, "torch": None}
    exec(compile(src[start:end], f"llava/mm_utils.py@{COMMIT}", "exec"), ns)
    tokenizer_image_token = ns["tokenizer_image_token"]
    tok = LlamaTokenizer(vocab_file=args.tokenizer, legacy=False)
    out = []
    for bench, rel, all_images in SOURCES:
        lines = [json.loads(l) for l in (EVAL / rel).read_text().splitlines() if l.strip()][:PER_BENCH]
        for q in lines:
            has_image = bool(all_images) or ("image" in q and q["image"] is not None)
            qs = q["text"]
            if has_image:
                qs = "<image>" + "\n" + qs
            conv = conv_mod.conv_templates["vicuna_v1"].copy()
            conv.append_message(conv.roles[0], qs)
            conv.append_message(conv.roles[1], None)
            prompt = conv.get_prompt()
            ids = tokenizer_image_token(prompt, tok, -200)
            out.append({"benchmark": bench, "question_id": q["question_id"], "text": q["text"], "image": has_image,
                        "prompt": prompt, "ids": ids})
    meta = {"llava_commit": COMMIT, "conversation_py_sha256": conv_sha, "transformers": transformers.__version__,
            "tokenizer": "LlamaTokenizer(legacy=False)",
            "tokenizer_model_sha256": hashlib.sha256(pathlib.Path(args.tokenizer).read_bytes()).hexdigest()}
    (EVAL / "prompts.json").write_text(json.dumps({"meta": meta, "prompts": out}, ensure_ascii=False, indent=0) + "\n")
    print(f"wrote {EVAL / 'prompts.json'}: {len(out)} prompts over {len(SOURCES)} benchmarks")


if __name__ == "__main__":
    main()
