#!/usr/bin/env python3
"""lmms-eval's OpenAI backend against `llava serve`, compared with `llava generate` (not run in CI).

Standard library only; lmms-eval runs from its own venv (--venv). From the repository root:

    python3 -m venv /tmp/lmmsvenv && /tmp/lmmsvenv/bin/pip install lmms-eval==0.7.3
    python3 tools/reference/lmms_eval_demo/run_lmms_eval_demo.py \
        --llava build/llava --demo build/demo-fast --venv /tmp/lmmsvenv

What it does, all under /tmp/lmms_eval_demo (llava_demo_qa.yaml reads its data file from there):
 1. writes the demo's first --n held-out questions (data/eval_qa.json) twice: data/llava_demo_qa.jsonl
    for the lmms-eval task ({"question_id", "image_path", "question", "answer"}) and questions.jsonl
    in LLaVA's question format for `llava generate --questions`;
 2. runs `llava generate --questions` (greedy, --max-new-tokens 16) into generate_answers.jsonl, and
    `llava generate --json` once per question for its prompt_tokens;
 3. starts `llava serve` (stderr to serve.log), runs `lmms-eval eval --model openai` with the task in
    this folder (--include_path), the Hub and datasets offline, then stops the server with SIGTERM;
 4. prints lmms-eval's exact_match, generate's exact match on the same questions, how many answers
    differ between the two (each one listed), how many prompts differ in length (the server's
    usage.prompt_tokens, which lmms-eval logs per sample, against generate's: an added system prompt or
    instruction would show here), and the server's requests by status; writes summary.json.
Exits 1 if lmms-eval fails, a request failed (a status other than 200), or anything differs.
"""
import argparse
import collections
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = "/tmp/lmms_eval_demo"  # llava_demo_qa.yaml's data_files path lies under it
TASK = "llava_demo_qa"


def norm(s):
    return s.strip().lower()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llava", default="build/llava")
    ap.add_argument("--demo", default="build/demo-fast", help="the demo folder (make demo / ctest demo_fast)")
    ap.add_argument("--venv", default="/tmp/lmmsvenv", help="a venv with lmms-eval installed")
    ap.add_argument("--n", type=int, default=100, help="the first N held-out questions")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--api-key", default="sk-local")
    ap.add_argument("--model-args-extra", default="", help="appended to --model_args, e.g. num_concurrent=1")
    ap.add_argument("--force-simple", action="store_true",
                    help="lmms-eval's simple OpenAI class (text part before the image) instead of the chat one")
    a = ap.parse_args()

    demo = os.path.abspath(a.demo)
    llava = os.path.abspath(a.llava)
    model = os.path.join(demo, "checkpoints/stage2/model")
    tokenizer = os.path.join(demo, "tokenizer.model")
    os.makedirs(os.path.join(WORK, "data"), exist_ok=True)

    # 1. The questions.
    with open(os.path.join(demo, "data/eval_qa.json")) as f:
        items = json.load(f)[: a.n]
    docs = []
    for it in items:
        human, gpt = it["conversations"][0], it["conversations"][1]
        assert human["from"] == "human" and gpt["from"] == "gpt" and human["value"].startswith("<image>\n")
        docs.append({
            "question_id": it["id"],
            "image": it["image"],
            "image_path": os.path.join(demo, "data", it["image"]),
            "question": human["value"][len("<image>\n"):],
            "answer": gpt["value"],
        })
    with open(os.path.join(WORK, "data", TASK + ".jsonl"), "w") as f:
        for d in docs:
            f.write(json.dumps({k: d[k] for k in ("question_id", "image_path", "question", "answer")}) + "\n")
    qpath = os.path.join(WORK, "questions.jsonl")
    with open(qpath, "w") as f:
        for d in docs:
            f.write(json.dumps({"question_id": d["question_id"], "image": d["image"], "text": d["question"]}) + "\n")
    print(f"wrote {len(docs)} questions to {WORK}/data/{TASK}.jsonl and {qpath}")

    # 2. llava generate on the same questions.
    apath = os.path.join(WORK, "generate_answers.jsonl")
    if os.path.exists(apath):
        os.remove(apath)  # a rerun would skip answered question_ids
    cmd = [llava, "generate", "--model", model, "--tokenizer", tokenizer, "--questions", qpath,
           "--image-folder", os.path.join(demo, "data"), "--answers", apath,
           "--max-new-tokens", "16", "--temperature", "0"]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    gen = {}
    with open(apath) as f:
        for line in f:
            o = json.loads(line)
            gen[o["question_id"]] = o["text"]
    # Each question's prompt length as llava builds it (the default system prompt, the image, the question),
    # to hold against the server's usage.prompt_tokens that lmms-eval records per sample.
    gen_prompt_tokens = {}
    for d in docs:
        r = subprocess.run([llava, "generate", "--model", model, "--tokenizer", tokenizer, "--image", d["image_path"],
                            "--prompt", d["question"], "--max-new-tokens", "16", "--temperature", "0", "--json"],
                           check=True, capture_output=True, text=True)
        gen_prompt_tokens[d["question_id"]] = json.loads(r.stdout.strip().splitlines()[-1])["prompt_tokens"]

    # 3. llava serve + lmms-eval.
    log_path = os.path.join(WORK, "serve.log")
    log = open(log_path, "w")
    scmd = [llava, "serve", "--model", model, "--tokenizer", tokenizer, "--port", str(a.port),
            "--api-key", a.api_key]
    print("+", " ".join(scmd), "2>", log_path, flush=True)
    server = subprocess.Popen(scmd, stdout=subprocess.PIPE, stderr=log, text=True)
    line = server.stdout.readline()
    print(line.rstrip(), flush=True)
    if "listening on" not in line:
        server.kill()
        sys.exit("llava serve did not start; see " + log_path)

    out_dir = os.path.join(WORK, "lmms_out")
    env = dict(os.environ)
    env.update({
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": os.path.join(WORK, "hf_home"),
        "LMMS_EVAL_DATASETS_CACHE": os.path.join(WORK, "hf_datasets_cache"),
        "WANDB_MODE": "disabled",
    })
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_API_BASE", None)
    model_args = f"model=llava-demo,base_url=http://127.0.0.1:{a.port}/v1,api_key={a.api_key}"
    if a.model_args_extra:
        model_args += "," + a.model_args_extra
    ecmd = [os.path.join(a.venv, "bin", "lmms-eval"), "eval", "--model", "openai", "--model_args", model_args,
            "--tasks", TASK, "--include_path", HERE, "--batch_size", "1",
            "--output_path", out_dir, "--log_samples"] + (["--force_simple"] if a.force_simple else [])
    print("+", " ".join(ecmd), flush=True)
    t0 = time.time()
    try:
        rc = subprocess.run(ecmd, env=env, cwd=WORK).returncode
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
    print(f"lmms-eval exited {rc} after {time.time() - t0:.0f} s; llava serve exited {server.returncode}")

    # 4. Compare.
    status = collections.Counter()
    with open(log_path) as f:
        for line in f:
            m = re.match(r"llava serve: (GET|POST) (\S+) (\d{3}) ", line)
            if m:
                status[f"{m.group(1)} {m.group(2)} {m.group(3)}"] += 1
    print("server requests:", dict(status))
    results = [p for p in glob.glob(os.path.join(out_dir, "**", "*_results.json"), recursive=True)
               if os.path.getmtime(p) >= t0]
    samples = [p for p in glob.glob(os.path.join(out_dir, "**", f"*_samples_{TASK}.jsonl"), recursive=True)
               if os.path.getmtime(p) >= t0]
    if rc != 0 or not results or not samples:
        # lmms-eval 0.7.3 logs an error during evaluation and still exits 0: look for its files
        sys.exit("lmms-eval failed: no results from this run under " + out_dir)
    results.sort(key=os.path.getmtime)
    samples.sort(key=os.path.getmtime)
    with open(results[-1]) as f:
        res = json.load(f)
    lmms_acc = res["results"][TASK]["exact_match,none"]
    lmms_prompt_tokens = {}  # question_id -> the server's usage.prompt_tokens for lmms-eval's request
    lmms = {}  # question_id -> lmms-eval's answer text (doc_id is the row in the task's jsonl)
    with open(samples[-1]) as f:
        for line in f:
            s = json.loads(line)
            r = s["filtered_resps"]
            while isinstance(r, list):
                r = r[0]
            lmms[docs[s["doc_id"]]["question_id"]] = r
            lmms_prompt_tokens[docs[s["doc_id"]]["question_id"]] = s["token_counts"][0]["input_tokens"]

    gen_acc = sum(norm(gen[d["question_id"]]) == norm(d["answer"]) for d in docs) / len(docs)
    # The raw texts, not normalised: greedy decoding of the same prompt must give the same bytes.
    differ = [d for d in docs if gen[d["question_id"]] != lmms.get(d["question_id"], "<missing>")]
    print(f"lmms-eval exact_match ({TASK}, {len(lmms)} samples): {lmms_acc:.4f}   ({results[-1]})")
    print(f"llava generate exact match ({len(docs)} questions):   {gen_acc:.4f}")
    prompt_differ = [d["question_id"] for d in docs
                     if lmms_prompt_tokens.get(d["question_id"]) != gen_prompt_tokens[d["question_id"]]]
    print(f"prompts whose token count differs (server's usage vs llava generate --json): {len(prompt_differ)}"
          + (f" {prompt_differ[:10]}" if prompt_differ else ""))
    print(f"answers that differ between the two: {len(differ)}")
    for d in differ:
        print(f"  {d['question_id']} {d['question']!r}: generate {gen[d['question_id']]!r}, "
              f"lmms-eval {lmms.get(d['question_id'], '<missing>')!r}, expected {d['answer']!r}")
    summary = {"lmms_eval_exact_match": lmms_acc, "generate_exact_match": gen_acc, "n": len(docs),
               "lmms_eval_samples": len(lmms), "differ": [d["question_id"] for d in differ],
               "prompt_tokens_differ": prompt_differ,
               "server_requests": dict(status), "results_file": results[-1], "samples_file": samples[-1]}
    with open(os.path.join(WORK, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    ok = (not differ and not prompt_differ and len(lmms) == len(docs) and abs(lmms_acc - gen_acc) < 1e-9
          and all(k.endswith(" 200") for k in status))
    print("AGREE" if ok else "DISAGREE")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
