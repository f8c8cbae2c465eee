"""Goldens for the scorers of POPE, ScienceQA, MME, SEED-Bench, MMBench and MMBench-CN (eval/score_*.c).

Synthetic benchmark data in each official format (small, made here, deterministic) goes under
tests/data/eval/<bench>/ in LLaVA's playground layout, with answer files built to reach every branch
of the official parsers, and the official code is run UNMODIFIED on it; what it prints and the files it
writes are the goldens tests/test_eval_choice.c compares our scorers with. Nothing here is re-stated:
each official file is exec'd from a git object (a clone or mirror of its repository, at a pinned
commit), only the world around it is replaced (the model, torch and the image loader are stubs, so
the eval scripts build their prompts and write their answer files without a GPU):

  haotian-liu/LLaVA @ c121f0432da27facab705978f83c4ada465e46fd (main, 2024-05-12):
      llava/eval/eval_pope.py, llava/eval/eval_science_qa.py, llava/eval/model_vqa_science.py,
      llava/eval/model_vqa_mmbench.py, scripts/convert_seed_for_submission.py,
      scripts/convert_mmbench_for_submission.py, llava/conversation.py, llava/constants.py
  haotian-liu/LLaVA @ 32cebc3809441cc40d8ac7b2855d148308741f2a (a commit of a contributor's pull request,
      on no branch, that GitHub serves from the repository; it committed the contents of LLaVA's eval.zip):
      playground/data/eval/MME/convert_answer_to_mme.py (ships only in eval.zip)
  BradyFU/Awesome-Multimodal-Large-Language-Models @ 1c1d69e138b57cf8b0400427927bfb8ed4285458
      (branch Evaluation): tools/eval_tool.zip -> eval_tool/calculation.py (MME's official tool)
  open-compass/VLMEvalKit @ c6bdffd3a3f2772ce9eaa157d7d31ec741b245b0 (2024-03-19):
      vlmeval/utils/matching_util.py (can_infer) and vlmeval/evaluate/multiple_choice.py
      (multiple_choice_eval with model='exact_matching': MMBench's CircularEval without the GPT step)

Pinned packages: tools/reference/eval/requirements-choice.txt. From the repository root:
    python3 -m venv /tmp/evvenv && /tmp/evvenv/bin/pip install -r tools/reference/eval/requirements-choice.txt
    /tmp/evvenv/bin/python tools/reference/eval/make_choice_goldens.py \
        --llava /path/to/LLaVA --mme-tool /path/to/Awesome-Multimodal-Large-Language-Models \
        --vlmevalkit /path/to/VLMEvalKit
(each path a clone, or a bare mirror, holding the commit named above).
"""
import argparse
import base64
import contextlib
import io
import json
import os
import pathlib
import runpy
import shutil
import subprocess
import sys
import tempfile
import types
import zipfile

OUT = pathlib.Path("tests/data/eval")
LLAVA_COMMIT = "c121f0432da27facab705978f83c4ada465e46fd"
LLAVA_EVALZIP_COMMIT = "32cebc3809441cc40d8ac7b2855d148308741f2a"
MME_TOOL_COMMIT = "1c1d69e138b57cf8b0400427927bfb8ed4285458"
VLMEVAL_COMMIT = "c6bdffd3a3f2772ce9eaa157d7d31ec741b245b0"
SHORT = "\nAnswer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."

ARGS = None


def git_show(repo, commit, path, binary=False):
    out = subprocess.run(["git", "-C", repo, "show", f"{commit}:{path}"], check=True, capture_output=True).stdout
    return out if binary else out.decode("utf-8")


def llava_src(path):
    return git_show(ARGS.llava, LLAVA_COMMIT, path)


def run_script(src, name, argv, cwd=None, init_globals=None):
    """Runs a script's source as __main__ with argv; returns (stdout, exception or None)."""
    tmp = tempfile.mkdtemp()
    p = os.path.join(tmp, name)
    with open(p, "w") as f:
        f.write(src)
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = [p] + argv
    buf = io.StringIO()
    err = None
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(buf):
            runpy.run_path(p, init_globals=init_globals, run_name="__main__")
    except Exception as e:  # the official code's own failure is part of what it did
        err = f"{type(e).__name__}: {e}"
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        shutil.rmtree(tmp)
    return buf.getvalue(), err


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


# ---------------------------------------------------------------------------------------------------
# A stub world for LLaVA's model_vqa_*.py: the scripts run unmodified, build their prompts, "generate"
# the scripted answers in order and write their answers files.


class _T:
    def __init__(self, prompt=None):
        self.prompt = prompt

    def unsqueeze(self, *_):
        return self

    def half(self):
        return self

    def cuda(self):
        return self

    def __getitem__(self, _):
        return self


class StubWorld:
    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.prompts = []  # the full conversation prompt of each generate call
        self.n = 0

    def install(self):
        world = self
        mods = {}

        def mod(name, **attrs):
            m = types.ModuleType(name)
            m.__dict__.update(attrs)
            mods[name] = m
            return m

        class InferenceMode(contextlib.ContextDecorator):
            def __enter__(self):
                return self

            def __exit__(self, *a):
                return False

        mod("torch", inference_mode=InferenceMode)
        mod("tqdm", tqdm=lambda it, **k: it)
        counter = {"n": 0}

        def uuid():
            counter["n"] += 1
            return f"answer{counter['n']:04d}"

        mod("shortuuid", uuid=uuid)
        llava = mod("llava")
        llava.__path__ = []
        consts = mod("llava.constants")
        exec(compile(llava_src("llava/constants.py"), "llava/constants.py", "exec"), consts.__dict__)
        conv = mod("llava.conversation")
        exec(compile(llava_src("llava/conversation.py"), "llava/conversation.py", "exec"), conv.__dict__)

        class Tokenizer:
            def batch_decode(self, ids, skip_special_tokens=True):
                out = world.outputs[world.n]
                world.n += 1
                return [out]

        class Model:
            class config:
                mm_use_im_start_end = False

            def generate(self, input_ids, **kw):
                world.prompts.append(input_ids.prompt)
                return input_ids

        mod("llava.model")
        mod("llava.model.builder", load_pretrained_model=lambda *a, **k: (Tokenizer(), Model(), None, 2048))
        mod("llava.utils", disable_torch_init=lambda: None)

        class Img:
            size = (4, 4)

        mod(
            "llava.mm_utils",
            tokenizer_image_token=lambda prompt, *a, **k: _T(prompt),
            process_images=lambda imgs, *a, **k: _T(),
            load_image_from_base64=lambda s: Img(),
            get_model_name_from_path=lambda p: "llava-v1.5-13b",
        )
        self.saved = {k: sys.modules.get(k) for k in mods}
        sys.modules.update(mods)
        self.img = Img

    def uninstall(self):
        for k, v in self.saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def user_message(prompt):
    """The user turn of a vicuna_v1 prompt built by llava/conversation.py."""
    head = "USER: "
    i = prompt.index(head) + len(head)
    assert prompt.endswith(" ASSISTANT:")
    return prompt[i:-len(" ASSISTANT:")]


def run_model_script(path, argv, outputs, patch_image=False):
    w = StubWorld(outputs)
    w.install()
    try:
        g = {}
        if patch_image:  # model_vqa_science opens the image file: a stub image instead
            pil = types.ModuleType("PIL")
            pil.Image = types.SimpleNamespace(open=lambda p: w.img())
            saved = sys.modules.get("PIL")
            sys.modules["PIL"] = pil
        try:
            out, err = run_script(llava_src(path), os.path.basename(path), argv, init_globals=g)
        finally:
            if patch_image:
                if saved is None:
                    sys.modules.pop("PIL", None)
                else:
                    sys.modules["PIL"] = saved
    finally:
        w.uninstall()
    assert err is None, err
    assert w.n == len(outputs), (w.n, len(outputs))
    return [user_message(p) for p in w.prompts]


# ---------------------------------------------------------------------------------------------------
# POPE


POPE_OBJECTS = ["snowboard", "backpack", "person", "dining table", "car", "dog", "chair", "bottle"]
POPE_TEXTS = [
    "Yes", "No", "No.", "Yes, there is a snowboard in the image.", "No, there is not.", "There is no dog",
    "Not sure", "not", "I do not see one. No.", "Yes.No", "no,", "No\nthere is", "NO", "Yes. But no",
    "", "The answer is no", "Nope", "yes", "no", "Yes", "No", "There is a car, not a bus.", "No.",
    "Yes",
]


def make_pope():
    d = OUT / "pope"
    questions, labels = [], {}
    qid = 0
    for ci, cat in enumerate(["adversarial", "popular", "random"]):
        labels[cat] = []
        for k in range(8):
            qid += 1
            img = f"COCO_val2014_{310196 + 7 * k + ci:012d}.jpg"
            obj = POPE_OBJECTS[(k + ci) % len(POPE_OBJECTS)]
            label = "yes" if (k * 3 + ci) % 5 < 2 or k == 0 else "no"
            if cat == "random" and k < 2:
                label = "no"
            questions.append({"question_id": qid, "image": img, "text": f"Is there a {obj} in the image?{SHORT}",
                              "category": cat})
            labels[cat].append({"question_id": k + 1, "image": img, "text": f"Is there a {obj} in the image?",
                                "label": label})
    write_jsonl(d / "llava_pope_test.jsonl", questions)
    for cat, rows in labels.items():
        write_jsonl(d / "coco" / f"coco_pope_{cat}.json", rows)

    def answers(rows):
        return [{"question_id": q["question_id"], "prompt": q["text"], "text": t, "answer_id": f"a{q['question_id']}",
                 "model_id": "llava-v1.5-13b", "metadata": {}} for q, t in rows]

    full = answers(zip(questions, POPE_TEXTS))
    write_jsonl(d / "answers" / "full.jsonl", full)
    # Missing answers (2 in adversarial, 1 in random) and two popular answers swapped: the script pairs
    # answers with labels by their order within a category, so the pairs shift.
    missing = [a for a in full if a["question_id"] not in (3, 6, 20)]
    i9 = next(i for i, a in enumerate(missing) if a["question_id"] == 9)
    missing[i9], missing[i9 + 1] = missing[i9 + 1], missing[i9]
    write_jsonl(d / "answers" / "missing.jsonl", missing)
    for case in ["full", "missing"]:
        out, err = run_script(llava_src("llava/eval/eval_pope.py"), "eval_pope.py",
                              ["--annotation-dir", str(d / "coco"), "--question-file",
                               str(d / "llava_pope_test.jsonl"), "--result-file", str(d / "answers" / f"{case}.jsonl")])
        assert err is None, err
        write_json(d / "golden" / f"{case}.json", {"official": "llava/eval/eval_pope.py @ " + LLAVA_COMMIT,
                                                   "stdout": out, "splits": parse_pope(out)})


def parse_pope(out):
    res, cur = {}, None
    lines = out.splitlines()
    for i, l in enumerate(lines):
        if l.startswith("Category: "):
            cat = l[len("Category: "):].split(",")[0]
            cur = res[cat] = {"samples": int(l.split("# samples: ")[1])}
        elif l == "TP\tFP\tTN\tFN\t":
            tp, fp, tn, fn = (int(x) for x in lines[i + 1].split("\t"))
            cur.update(TP=tp, FP=fp, TN=tn, FN=fn)
        else:
            for key, name in [("Accuracy: ", "acc"), ("Precision: ", "precision"), ("Recall: ", "recall"),
                              ("F1 score: ", "f1"), ("Yes ratio: ", "yes_ratio")]:
                if l.startswith(key):
                    cur[name] = float(l[len(key):])  # repr of a float: the exact double
    return res


# ---------------------------------------------------------------------------------------------------
# ScienceQA

SQA_PROBLEMS = [
    # id, question, choices, answer, hint, image, split
    ("4", "Which figure of speech is used in this text?\nSing, O goddess.", ["chiasmus", "apostrophe"], 1, "", None,
     "test"),
    ("5", "Which of these states is farthest north?", ["Maryland", "New Hampshire", "Rhode Island", "Vermont"], 3,
     "", "image.png", "test"),
    ("11", "What is the name of the colony shown?", ["Maryland", "New Hampshire", "Rhode Island", "Vermont"], 1,
     "", "image.png", "test"),
    ("15", "Which word would you find on a dictionary page?", ["service", "stockade"], 1,
     "shot - suit", None, "test"),
    ("22", "Which of these organisms contains matter that was once part of the lichen?", ["bilberry", "mushroom"], 1,
     "Below is a food web from a tundra ecosystem.", "image.png", "test"),
    ("23", "How long does it take to bake lasagna in the oven?", ["33 minutes", "33 hours"], 0,
     "Select the better estimate.", None, "test"),
    ("26", "Which material is this spatula made of?", ["rubber", "cotton"], 0, "", "image.png", "test"),
    ("27", "Select the fish below.", ["salmon", "frog", "eagle"], 0, "", None, "test"),
    ("29", "Which tense does the sentence use?", ["past tense", "present tense", "future tense"], 2, "", None,
     "test"),
    ("42", "Identify the question that the experiment can best answer.", ["Does it slide?", "Does it roll?"], 0,
     "The passage below describes an experiment.", "image.png", "test"),
    ("46", "Which animal's mouth is also adapted to tear through meat?", ["sea otter", "bison", "koala", "goat",
                                                                         "lynx"], 4, "", "image.png", "test"),
    ("47", "Is the following trait inherited or acquired?", ["acquired", "inherited"], 1, "Ann has red hair.",
     None, "test"),
    ("51", "What does the verbal irony in this text suggest?", ["The vacation was fun.", "It rained."], 1, "",
     None, "test"),
    ("61", "Think about the magnetic force between the magnets.", ["attract", "repel"], 0, "", "image.png", "test"),
    ("62", "Which is a compound sentence?", ["I ran.", "I ran, and she walked."], 1, "", None, "val"),
    ("78", "Which is smoother?", ["rock", "silk scarf"], 1, "", "image.png", "train"),
]
# The model's answers, in question order (ids 4..61 of the test split, then nothing for val/train).
SQA_OUTPUTS = {
    "4": "B", "5": "D.", "11": "B. New Hampshire", "15": "The answer is B.", "22": "The answer is B",
    "23": "The answer is A, because", "26": "(A)", "27": "a", "29": "", "42": "The answer is A. The answer is B.",
    "46": "E", "47": "FAILED", "51": "C", "61": "A",
}


def sqa_value(p):
    """A question in the format of LLaVA's eval.zip llava_test_CQM-A.json (question, context, lettered
    options; "<image>\\n" first for image questions)."""
    pid, q, choices, ans, hint, image, split = p
    s = q
    if hint:
        s = f"Context: {hint}\n{q}"
    s += "".join(f"\n{'ABCDE'[i]}. {c}" for i, c in enumerate(choices))
    if image:
        s = "<image>\n" + s
    if pid == "15":  # surrounding whitespace, which model_vqa_science strips
        s = "  " + s + "\n"
    if pid == "42":  # "<image>" last, as scripts/convert_sqa_to_llava.py places it
        s = s[len("<image>\n"):] + "\n<image>"
    return s


def make_sqa():
    d = OUT / "scienceqa"
    problems, splits = {}, {"test": [], "val": [], "train": []}
    for p in SQA_PROBLEMS:
        pid, q, choices, ans, hint, image, split = p
        problems[pid] = {"question": q, "choices": choices, "answer": ans, "hint": hint, "image": image,
                         "task": "closed choice", "grade": "grade3", "subject": "natural science",
                         "topic": "science", "category": "x", "skill": "x", "lecture": "", "solution": "",
                         "split": split}
        splits[split].append(pid)
    write_json(d / "problems.json", problems)
    write_json(d / "pid_splits.json", splits)
    conv = []
    for p in SQA_PROBLEMS:
        pid, image = p[0], p[5]
        if p[6] != "test":
            continue
        e = {"id": pid}
        if image:
            e["image"] = f"{pid}/{image}"
        e["conversations"] = [{"from": "human", "value": sqa_value(p)}, {"from": "gpt", "value": "ABCDE"[p[3]]}]
        conv.append(e)
    with open(d / "llava_test_CQM-A.json", "w") as f:
        json.dump(conv, f, indent=2)
    # model_vqa_science.py, unmodified, writes the answers file and builds the prompts.
    ans_path = d / "answers" / "model.jsonl"
    prompts = run_model_script("llava/eval/model_vqa_science.py",
                               ["--model-path", "liuhaotian/llava-v1.5-13b", "--question-file",
                                str(d / "llava_test_CQM-A.json"), "--image-folder", str(d / "images" / "test"),
                                "--answers-file", str(ans_path), "--single-pred-prompt", "--temperature", "0",
                                "--conv-mode", "vicuna_v1"],
                               [SQA_OUTPUTS[e["id"]] for e in conv], patch_image=True)
    # The question file prepare() writes: the user turn less the "<image>\n" the generator adds.
    qs = []
    for e, user in zip(conv, prompts):
        if "image" in e:
            assert user.startswith("<image>\n")
            user = user[len("<image>\n"):]
        q = {"question_id": e["id"]}
        if "image" in e:
            q["image"] = e["image"]
        q["text"] = user
        qs.append(q)
    write_jsonl(d / "golden" / "prepare.jsonl", qs)
    full = [json.loads(l) for l in open(ans_path)]
    # Two answers missing (one image question, one not): the script scores them 'FAILED' with the prompt
    # 'Unknown', which moves the image question out of the IMG subset.
    write_jsonl(d / "answers" / "missing.jsonl", [a for a in full if a["question_id"] not in ("11", "47")])
    # Our generator's answers may carry the prompt without "<image>": not an official case (the script
    # would find no IMG question); our scorer takes the image from problems.json and must agree with "model".
    write_jsonl(d / "answers" / "noimage_prompt.jsonl",
                [dict(a, prompt=a["prompt"].replace("<image>\n", "")) for a in full])
    for case in ["model", "missing"]:
        tmp = pathlib.Path(tempfile.mkdtemp())
        out, err = run_script(llava_src("llava/eval/eval_science_qa.py"), "eval_science_qa.py",
                              ["--base-dir", str(d), "--result-file", str(d / "answers" / f"{case}.jsonl"),
                               "--output-file", str(tmp / "output.json"), "--output-result", str(tmp / "result.json")])
        assert err is None, err
        g = {"official": "llava/eval/eval_science_qa.py @ " + LLAVA_COMMIT, "stdout": out,
             "output": json.load(open(tmp / "output.json")), "result": json.load(open(tmp / "result.json"))}
        shutil.rmtree(tmp)
        write_json(d / "golden" / f"{case}.json", g)


# ---------------------------------------------------------------------------------------------------
# MME

MME_PERCEPTION = ["existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
                  "OCR"]
MME_COGNITION = ["commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"]
MME_NESTED = {"artwork", "celebrity", "landmark", "posters", "scene"}  # images/ + questions_answers_YN/
# Answers cycle through these (lower-cased, then "yes"/"no" exactly or within the first 4 characters).
MME_TEXTS = ["Yes", "No", "yes", "No.", "Yes, there is", "Not sure", "There is a cat", "nope", "The answer is yes",
             "", "y", "YES", "No", "Yes", "noyes", "No", "Yes", "No", "Yes", "no"]


MME_PARSE_CASES = ["Yes", "No", "yes", "no", "YES", "Not sure", "nope", "noyes", "yesno", "The answer is yes",
                   "y", "", "n", "No.", "Yes, there is", "\u0130yes", "\u0130\u0130no", "\u00e9yes", "ye s", " no",
                   "  no", "   no", "There is no cat", "know", "Nobody", "eyes"]


def make_mme():
    d = OUT / "MME"
    root = d / "MME_Benchmark_release_version"
    if root.exists():
        shutil.rmtree(root)
    questions = []
    k = 0
    for cat in MME_PERCEPTION + MME_COGNITION:
        nimg = 2 if cat in ("existence", "artwork", "code_reasoning") else 1
        for j in range(nimg):
            k += 1
            name = f"{1000 + k:04d}"
            ext = ".png" if cat in MME_COGNITION else ".jpg"
            if cat in MME_NESTED:
                (root / cat / "images").mkdir(parents=True, exist_ok=True)
                (root / cat / "images" / ".keep").write_text("")
                qa = root / cat / "questions_answers_YN"
                image = f"{cat}/images/{name}{ext}"
            else:
                qa = root / cat
                image = f"{cat}/{name}{ext}"
            qa.mkdir(parents=True, exist_ok=True)
            lines = []
            for qi, gt in enumerate(["Yes", "No"] if (k % 3) else ["No", "Yes"]):
                q = f"Is there thing {k}-{qi} in the {cat} image?"
                sep = "  " if (cat == "count" and qi == 1) else " "  # MME's files hold a few double spaces
                lines.append(f"{q}{sep}Please answer yes or no.\t{gt}")
                questions.append({"question_id": image, "image": image, "text": q + SHORT, "category": cat})
            (qa / f"{name}.txt").write_text("\n".join(lines) + "\n")
    write_jsonl(d / "llava_mme.jsonl", questions)
    full = [{"question_id": q["question_id"], "prompt": q["text"], "text": MME_TEXTS[i % len(MME_TEXTS)],
             "answer_id": f"a{i}", "model_id": "llava-v1.5-13b", "metadata": {}} for i, q in enumerate(questions)]
    write_jsonl(d / "answers" / "full.jsonl", full)
    # Two answers missing. The official pipeline pairs a category's lines by order (two per image) and would
    # shift; we score a missing answer as an empty one in its place, so the golden is the official result
    # for the answers with "" in place of the missing ones (answers/missing_filled.jsonl).
    drop = {3, 10}
    write_jsonl(d / "answers" / "missing.jsonl", [a for i, a in enumerate(full) if i not in drop])
    filled = [dict(a, text="") if i in drop else a for i, a in enumerate(full)]
    write_jsonl(d / "answers" / "missing_filled.jsonl", filled)
    convert = git_show(ARGS.llava, LLAVA_EVALZIP_COMMIT, "playground/data/eval/MME/convert_answer_to_mme.py")
    with zipfile.ZipFile(io.BytesIO(git_show(ARGS.mme_tool, MME_TOOL_COMMIT, "tools/eval_tool.zip",
                                             binary=True))) as z:
        calc = z.read("eval_tool/calculation.py").decode("utf-8")
    for case, src in [("full", "full"), ("missing", "missing_filled")]:
        work = pathlib.Path(tempfile.mkdtemp())
        shutil.copytree(root, work / "MME_Benchmark_release_version")
        (work / "answers").mkdir()
        shutil.copy(d / "answers" / f"{src}.jsonl", work / "answers" / "exp.jsonl")
        out1, err = run_script(convert, "convert_answer_to_mme.py", ["--experiment", "exp"], cwd=work)
        assert err is None, err
        out2, err = run_script(calc, "calculation.py", ["--results_dir", "answers/exp"], cwd=work / "eval_tool")
        assert err is None, err
        files = {p.name: p.read_text() for p in sorted((work / "eval_tool" / "answers" / "exp").iterdir())}
        # The per-task numbers calculation.py computes (it prints only the scores): its own class, run on
        # its own files, unmodified, for acc and acc_plus.
        ns = {}
        exec(compile(calc, "calculation.py", "exec"), ns)
        cal = ns["calculate_metrics"]()
        tasks = {}
        for t in MME_PERCEPTION + MME_COGNITION:
            lines = open(work / "eval_tool" / "answers" / "exp" / f"{t}.txt").readlines()
            gts, preds, plus, nimg = [], [], 0, 0
            for items in cal.divide_chunks(lines):
                nimg += 1
                ok = 0
                for it in items:
                    _, _, g, p = it.split("\t")
                    g, p = g.lower(), cal.parse_pred_ans(p.lower())
                    gts.append(g)
                    preds.append(p)
                    ok += g == p
                plus += ok == 2
            m = cal.compute_metric(gts, preds)
            tasks[t] = {"acc": float(m["acc"]), "acc_plus": plus / nimg, "other_num": int(m["other_num"]),
                        "TP": int(m["TP"]), "FN": int(m["FN"]), "TN": int(m["TN"]), "FP": int(m["FP"]),
                        "precision": float(m["precision"]), "recall": float(m["recall"])}
        parse = {a: cal.parse_pred_ans(a.lower() + "\n") for a in MME_PARSE_CASES}
        shutil.rmtree(work)
        write_json(d / "golden" / f"{case}.json", {"parse_pred_ans": parse,
            "official": ["playground/data/eval/MME/convert_answer_to_mme.py @ " + LLAVA_EVALZIP_COMMIT,
                         "BradyFU/Awesome-Multimodal-Large-Language-Models tools/eval_tool.zip calculation.py @ "
                         + MME_TOOL_COMMIT],
            "answers": f"answers/{src}.jsonl", "stdout": out2, "files": files, "tasks": tasks,
            "scores": parse_mme(out2)})


def parse_mme(out):
    res, cur = {}, None
    for l in out.splitlines():
        if l.startswith("=========== "):
            cur = l.split()[1]
        elif l.startswith("total score: "):
            res[cur] = float(l[len("total score: "):])
        elif " score: " in l and l.startswith("\t"):
            name, v = l.strip().split("  score: ")
            res[name] = float(v)
    return res


# ---------------------------------------------------------------------------------------------------
# SEED-Bench

SEED_TYPES = ["Scene Understanding", "Instance Identity", "Instance Attributes", "Instance Location",
              "Instances Counting", "Spatial Relation", "Instance Interaction", "Visual Reasoning",
              "Text Understanding", "Action Recognition", "Action Prediction", "Procedure Understanding"]


def make_seed():
    d = OUT / "seed_bench"
    qs, ll, ans = [], [], []
    texts = ["A", "B", "C", "D", "A.", "a", "The answer is A", "B", "C", "", "D", "A"]
    n = 0
    for t, name in enumerate(SEED_TYPES, start=1):
        for j in range(3 if t % 2 else 2):
            n += 1
            video = t >= 10
            qid = f"{100000 + 37 * n}" if not (video and j == 1) else f"v{n}_{j}"
            data_id = f"{n:05d}.jpg" if not video else f"v{n}.mp4"
            right = "ABCD"[(n * 7) % 4]
            q = {"answer": right, "choice_a": f"one {n}", "choice_b": f"two {n}", "choice_c": f"three {n}",
                 "choice_d": f"four {n}", "data_id": data_id, "data_type": "video" if video else "image",
                 "question": f"What is shown {n}?", "question_id": qid, "question_type_id": t}
            qs.append(q)
            image = f"SEED-Bench-image/{data_id}" if not video else f"SEED-Bench-video-image/v{n}.png"
            lqid = int(qid) if qid.isdigit() else qid
            text = (q["question"] + "".join(f"\n{c}. {q['choice_' + c.lower()]}" for c in "ABCD") + "\n" + LETTER)
            ll.append({"image": image, "text": text, "category": name, "question_id": lqid})
            # (every type keeps a right answer: the script stops with KeyError on a type whose questions
            # were all answered and all wrong, its correct count never set)
            out = right if (n * 5) % 7 < 4 or j == 0 else texts[n % len(texts)]
            ans.append({"question_id": lqid, "prompt": text, "text": out, "answer_id": f"a{n}",
                        "model_id": "llava-v1.5-13b", "metadata": {}})
    write_json(d / "SEED-Bench.json", {"question_type": {name: i for i, name in enumerate(SEED_TYPES, start=1)},
                                       "questions": qs})
    write_jsonl(d / "llava-seed-bench.jsonl", ll)
    write_jsonl(d / "answers" / "full.jsonl", ans)
    # Missing answers, a repeated id (the script keeps the last), and an id written as a string where the
    # annotation's id is a number ("100037": the script looks it up as int 100037 and misses it, but its
    # upload step finds it by the string).
    miss = [a for a in ans if a["question_id"] not in (ll[4]["question_id"], ll[21]["question_id"])]
    miss.append(dict(miss[0], text="D" if miss[0]["text"] != "D" else "C"))
    miss[1] = dict(miss[1], question_id=str(miss[1]["question_id"]))
    write_jsonl(d / "answers" / "missing.jsonl", miss)
    conv = llava_src("scripts/convert_seed_for_submission.py")
    for case in ["full", "missing"]:
        tmp = pathlib.Path(tempfile.mkdtemp())
        out, err = run_script(conv, "convert_seed_for_submission.py",
                              ["--annotation-file", str(d / "SEED-Bench.json"), "--result-file",
                               str(d / "answers" / f"{case}.jsonl"), "--result-upload-file", str(tmp / "upload.jsonl")])
        assert err is None or case == "missing", err
        g = {"official": "scripts/convert_seed_for_submission.py @ " + LLAVA_COMMIT, "stdout": out, "error": err}
        if err is None:
            g["upload"] = open(tmp / "upload.jsonl").read()
        shutil.rmtree(tmp)
        write_json(d / "golden" / f"{case}.json", g)


# ---------------------------------------------------------------------------------------------------
# MMBench / MMBench-CN


def tiny_images():
    from PIL import Image
    out = []
    for i, fmt in enumerate(["PNG", "JPEG"]):
        im = Image.new("RGB", (4, 3), (40 * i + 10, 200, 90))
        b = io.BytesIO()
        im.save(b, fmt)
        out.append(base64.b64encode(b.getvalue()).decode())
    return out


def rot(opts, r):
    return opts[r:] + opts[:r]


def mmbench_rows(cn):
    """Rows as in the MMBench dev TSVs: each question, then its circular copies at index + k * 1e6 with
    the options rotated (the TSV's own CircularEval copies)."""
    imgs = tiny_images()
    if not cn:
        base = [
            # index, question, hint, options, answer letter, category, l2
            (0, "What is the main object in the image?", None, ["teddy bear", "rabbit", "cat", "dog"], "A",
             "image_scene", "coarse_perception"),
            (1, "Which of these states is farthest north?", "Look at the map.", ["Vermont", "Maryland"], "A",
             "geography", "logic_reasoning"),
            (2, '"Quoted" start: which color is the sky?', "nan", ["blue", "green", "red"], "A",
             "attribute_recognition", "finegrained_perception (instance-level)"),
            (3, 'Is the word "cat" on the mat?', None, ["Yes", "No", "None"], "A", "spatial_relationship",
             "relation_reasoning"),
            (5, "Which one is the largest?", "Three animals.\nPick one.", ["mouse", "elephant", "cat", "dog"],
             "B", "image_scene", "coarse_perception"),
        ]
    else:
        base = [
            (10, "图中最主要的物体是什么?", None, ["泰迪熊", "兔子", "猫", "狗"], "A", "image_scene", "coarse_perception"),
            (11, "哪个州最靠北?", "看地图。", ["佛蒙特", "马里兰"], "A", "geography", "logic_reasoning"),
            (12, "天空是什么颜色?", None, ["蓝色", "绿色", "红色"], "A", "attribute_recognition",
             "finegrained_perception (instance-level)"),
        ]
    rows = []
    for idx, q, hint, opts, ans, cat, l2 in base:
        n = len(opts)
        a = "ABCD".index(ans)
        for r in range(n):
            o = rot(opts, r)
            rows.append({"index": idx + r * 1000000, "question": q, "hint": hint,
                         "A": o[0], "B": o[1] if n > 1 else None, "C": o[2] if n > 2 else None,
                         "D": o[3] if n > 3 else None, "answer": "ABCD"[(a - r) % n], "category": cat,
                         "image": imgs[(idx + r) % 2], "source": "synthetic", "l2-category": l2, "comment": None,
                         "split": "dev"})
    return rows


def tsv_field(v):
    """A TSV field: quoted (pandas' reading: "" inside for one ") where it starts with a quote or holds a
    tab or a line break, as the MMBench files quote their multi-line hints; a quote inside a field that
    does not start with one is kept as it is."""
    if v is None:
        return ""
    if v.startswith('"') or any(c in v for c in "\t\n\r"):
        return '"' + v.replace('"', '""') + '"'
    return v


MMB_OUT = {
    False: {0: "A", 1000000: "D.", 2000000: "The answer is C", 3000000: "(B)",
            1: "A", 1000001: "B",
            2: "A. blue", 1000002: "I think it is blue", 2000002: "B",
            3: "A", 1000003: "C", 2000003: "Z",
            5: "b", 1000005: "A", 2000005: "D", 3000005: "C"},
    True: {10: "A", 1000010: "D", 2000010: "C", 3000010: "B",
           11: "A", 1000011: "A B",
           12: "蓝色", 1000012: "C", 2000012: "B"},
}


def make_mmbench(cn):
    name = "mmbench_cn" if cn else "mmbench"
    split = "mmbench_dev_cn_20231003" if cn else "mmbench_dev_20230712"
    d = OUT / name
    rows = mmbench_rows(cn)
    cols = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source", "l2-category",
            "comment", "split"]
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{split}.tsv", "w", newline="") as f:
        f.write("\t".join(cols) + "\n")
        for r in rows:
            f.write("\t".join(tsv_field(r[c]) if c != "index" else str(r[c]) for c in cols) + "\n")
    import pandas as pd
    order = list(pd.read_table(d / f"{split}.tsv")["index"])
    outputs = [MMB_OUT[cn][i] for i in order]
    ans_path = d / "answers" / split / "llava-v1.5-13b.jsonl"
    argv = ["--model-path", "liuhaotian/llava-v1.5-13b", "--question-file", str(d / f"{split}.tsv"),
            "--answers-file", str(ans_path), "--single-pred-prompt", "--temperature", "0", "--conv-mode", "vicuna_v1"]
    if cn:
        argv += ["--lang", "cn"]
    prompts = run_model_script("llava/eval/model_vqa_mmbench.py", argv, outputs)
    qs = []
    for i, user in zip(order, prompts):
        assert user.startswith("<image>\n")
        qs.append({"question_id": i, "text": user[len("<image>\n"):]})
    write_jsonl(d / "golden" / "prepare.jsonl", qs)
    # The upload file: scripts/convert_mmbench_for_submission.py, unmodified (an .xlsx: its cells here).
    up = pathlib.Path(tempfile.mkdtemp())
    out, err = run_script(llava_src("scripts/convert_mmbench_for_submission.py"), "convert_mmbench_for_submission.py",
                          ["--annotation-file", str(d / f"{split}.tsv"), "--result-dir", str(ans_path.parent),
                           "--upload-dir", str(up), "--experiment", "llava-v1.5-13b"])
    assert err is None, err
    x = pd.read_excel(up / "llava-v1.5-13b.xlsx", dtype=object, keep_default_na=False)
    upload_tsv = pd.read_excel(up / "llava-v1.5-13b.xlsx").to_csv(sep="\t", index=False, lineterminator="\n")
    cells = [list(x.columns)] + [[None if v == "" else (int(v) if isinstance(v, int) else str(v)) for v in row]
                                 for row in x.itertuples(index=False)]
    # Missing answers: one rotation of one question and the whole of another.
    full = [json.loads(l) for l in open(ans_path)]
    gone = {1000000, 1, 1000001} if not cn else {1000012}
    write_jsonl(d / "answers" / "missing.jsonl", [a for a in full if a["question_id"] not in gone])
    g = {"official": ["llava/eval/model_vqa_mmbench.py, scripts/convert_mmbench_for_submission.py @ " + LLAVA_COMMIT,
                      "open-compass/VLMEvalKit vlmeval/evaluate/multiple_choice.py multiple_choice_eval("
                      "model='exact_matching') @ " + VLMEVAL_COMMIT],
         "upload_xlsx_columns": cells[0], "upload_tsv": upload_tsv}
    shutil.rmtree(up)
    for case, path in [("model", ans_path), ("missing", d / "answers" / "missing.jsonl")]:
        g[case] = vlmeval_exact(d / f"{split}.tsv", path, table=(case == "model" and not cn))
    write_json(d / "golden" / "golden.json", g)


ABCD = {"A": "teddy bear", "B": "rabbit", "C": "cat", "D": "dog"}
AB_D = {"A": "Yes", "B": "No", "D": "Maybe"}
CAN_INFER_CASES = [(a, ABCD) for a in [
    "A", "B.", "(C)", "[D]", "The answer is C", "The answer is C.", "a", "A B", "A or B?", "Z", "z", "",
    "nan", "I think it is a cat", "cat and dog", "Teddy Bear!", "TEDDY BEAR", "rabbit", "RABBIT.", "B: rabbit",
    "B\trabbit", "B\u3000rabbit", "B\u00a0", "E", "A.B", "A,B", "Cannot determine the answer", "Z. none",
    "Failed to obtain answer via API A", "Failed to obtain answer via API, a cat", "{D}", "#A", "*B*", "!C!",
    "A;", "the answer is a", "Option A", "AB", "\u00c9 cat", "I'm sorry, but without the image provided A",
]] + [(a, AB_D) for a in ["C", "D", "maybe", "yes", "no", "C D", "Yes or No"]] + [
    (a, {"A": "\u72d7", "B": "\u732b", "C": "\u00c9t\u00e9", "D": "\u0414\u043e\u043c"}) for a in
    ["\u732b", "\u732b\u548c\u72d7", "B", "\u00e9t\u00e9", "\u0434\u043e\u043c", "\uff22"]]


def make_mmbench_rounds():
    """A TSV without circular copies (the English questions less the one whose options have a gap), asked
    as LLaVA's --all-rounds asks it: model_vqa_mmbench.py rotates the options shown once per round and
    writes question_id = index with round_id. Round r shows the options of the dev TSV's copy
    index + r * 1e6, so the model answers each round as the copy was answered, and the CircularEval
    golden is VLMEvalKit's exact matching on the TSV with those copies."""
    import pandas as pd
    d = OUT / "mmbench_rounds"
    rows = [r for r in mmbench_rows(False) if r["index"] % 1000000 != 3]
    cols = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source", "l2-category",
            "comment", "split"]
    d.mkdir(parents=True, exist_ok=True)
    with_copies = pathlib.Path(tempfile.mkdtemp()) / "copies.tsv"
    for path, keep in [(d / "mmbench_dev_20230712.tsv", lambda r: r["index"] < 1000000), (with_copies, lambda r: True)]:
        with open(path, "w", newline="") as f:
            f.write("\t".join(cols) + "\n")
            for r in rows:
                if keep(r):
                    f.write("\t".join(tsv_field(r[c]) if c != "index" else str(r[c]) for c in cols) + "\n")
    main = list(pd.read_table(d / "mmbench_dev_20230712.tsv")["index"])
    nopt = {r["index"]: sum(r[c] is not None for c in "ABCD") for r in rows if r["index"] < 1000000}
    outputs = [MMB_OUT[False][i + k * 1000000] for i in main for k in range(nopt[i])]
    ans_path = d / "answers" / "llava-v1.5-13b.jsonl"
    prompts = run_model_script("llava/eval/model_vqa_mmbench.py",
                               ["--model-path", "liuhaotian/llava-v1.5-13b", "--question-file",
                                str(d / "mmbench_dev_20230712.tsv"), "--answers-file", str(ans_path), "--all-rounds",
                                "--single-pred-prompt", "--temperature", "0", "--conv-mode", "vicuna_v1"], outputs)
    qs, k = [], 0
    for i in main:
        for r in range(nopt[i]):
            qs.append({"question_id": i + r * 1000000, "text": prompts[k][len("<image>\n"):]})
            k += 1
    write_jsonl(d / "golden" / "prepare.jsonl", qs)
    copies_answers = with_copies.parent / "answers.jsonl"
    write_jsonl(copies_answers, [{"question_id": a["question_id"] + a["round_id"] * 1000000, "text": a["text"]}
                                 for a in map(json.loads, open(ans_path))])
    g = {"official": "llava/eval/model_vqa_mmbench.py --all-rounds @ " + LLAVA_COMMIT + "; CircularEval: VLMEvalKit "
         "exact matching @ " + VLMEVAL_COMMIT + " on the same questions as a TSV with copies",
         "model": vlmeval_exact(with_copies, copies_answers)}
    shutil.rmtree(with_copies.parent)
    write_json(d / "golden" / "golden.json", g)


def vlmeval_exact(tsv, answers, table=False):
    """VLMEvalKit's multiple_choice_eval with the exact_matching policy, unmodified, on an eval file made of
    the TSV (less the images) and the answers' predictions (a missing one left empty, as the xlsx would)."""
    import pandas as pd
    stub_names = ["matplotlib", "matplotlib.pyplot", "seaborn", "tabulate", "huggingface_hub", "sty", "requests",
                  "decord"]

    class Any(types.ModuleType):
        def __getattr__(self, k):
            if k.startswith("__"):
                raise AttributeError(k)
            return lambda *a, **kw: None

    saved = {k: sys.modules.get(k) for k in stub_names + ["vlmeval", "vlmeval.smp", "vlmeval.utils",
                                                          "vlmeval.evaluate", "vlmeval.evaluate.misc"]}
    try:
        for k in stub_names:
            sys.modules[k] = Any(k)
        sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
        pkg = types.ModuleType("vlmeval")
        pkg.__path__ = []
        sys.modules["vlmeval"] = pkg
        smp = types.ModuleType("vlmeval.smp")
        smp.__path__ = []
        smp.__package__ = "vlmeval.smp"
        sys.modules["vlmeval.smp"] = smp
        for f in ["file", "vlm", "misc", "log"]:
            m = types.ModuleType(f"vlmeval.smp.{f}")
            m.__package__ = "vlmeval.smp"
            src = git_show(ARGS.vlmevalkit, VLMEVAL_COMMIT, f"vlmeval/smp/{f}.py")
            exec(compile(src, f"vlmeval/smp/{f}.py", "exec"), m.__dict__)
            sys.modules[m.__name__] = m
            for k, v in m.__dict__.items():
                if not k.startswith("__"):
                    setattr(smp, k, v)
        utils = types.ModuleType("vlmeval.utils")
        utils.__path__ = []
        sys.modules["vlmeval.utils"] = utils
        mu = types.ModuleType("vlmeval.utils.matching_util")
        mu.__package__ = "vlmeval.utils"
        sys.modules[mu.__name__] = mu
        exec(compile(git_show(ARGS.vlmevalkit, VLMEVAL_COMMIT, "vlmeval/utils/matching_util.py"),
                     "matching_util.py", "exec"), mu.__dict__)
        utils.can_infer = mu.can_infer
        utils.track_progress_rich = None
        utils.TSVDataset = None
        ev = types.ModuleType("vlmeval.evaluate")
        ev.__path__ = []
        sys.modules["vlmeval.evaluate"] = ev
        sys.modules["vlmeval.evaluate.misc"] = types.ModuleType("vlmeval.evaluate.misc")
        sys.modules["vlmeval.evaluate.misc"].build_judge = None
        mc = {"__name__": "vlmeval.evaluate.multiple_choice"}
        exec(compile(git_show(ARGS.vlmevalkit, VLMEVAL_COMMIT, "vlmeval/evaluate/multiple_choice.py"),
                     "multiple_choice.py", "exec"), mc)
        df = pd.read_table(tsv)
        df = df.drop(columns=["image"])
        pred = {}
        for l in open(answers):
            a = json.loads(l)
            pred[a["question_id"]] = a["text"]
        df["prediction"] = [pred.get(i, "") for i in df["index"]]
        work = pathlib.Path(tempfile.mkdtemp())
        ef = work / "eval.xlsx"
        df.to_excel(ef, index=False, engine="openpyxl")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            acc = mc["multiple_choice_eval"](str(ef), dataset="default", model="exact_matching")
        res = pd.read_excel(work / "eval_exact_matching_result.xlsx")
        hits = {int(i): int(h) for i, h in zip(res["index"], res["hit"])}
        accd = {c: (list(acc[c])[0] if c != "split" else list(acc[c])[0]) for c in acc.columns}
        accd = {k: (float(v) if k != "split" else v) for k, v in accd.items()}
        shutil.rmtree(work)
        # can_infer per row, for the row-level check
        rows = {}
        for _, r in df.iterrows():
            choices = {ch: r[ch] for ch in "ABCD" if not pd.isna(r[ch])}
            rows[int(r["index"])] = mu.can_infer(str(r["prediction"]) if r["prediction"] != "" else "nan", choices)
        g = {"hit": hits, "acc": accd, "can_infer": rows}
        if table:  # can_infer on its own, case by case
            g["table"] = [{"answer": ans, "choices": ch, "result": mu.can_infer(ans, dict(ch)) or None}
                          for ans, ch in CAN_INFER_CASES]
        return g
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--llava", required=True)
    ap.add_argument("--mme-tool", required=True)
    ap.add_argument("--vlmevalkit", required=True)
    ARGS = ap.parse_args()
    make_pope()
    make_sqa()
    make_mme()
    make_seed()
    make_mmbench(False)
    make_mmbench(True)
    make_mmbench_rounds()


if __name__ == "__main__":
    main()
