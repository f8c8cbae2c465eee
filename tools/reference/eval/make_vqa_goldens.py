"""Goldens for the VQA-family scorers (eval/bench_textvqa.c, bench_vqav2.c, bench_vizwiz.c, bench_vizwiz_val.c,
bench_gqa.c, eval/vqa_norm.c): synthetic benchmark data in each official format, answers files built to hit every
branch of the normalisations and of the pairing, and what the OFFICIAL code, run unmodified, makes of
them. Writes tests/data/eval/{textvqa,vqav2,vizwiz,gqa}/ and tests/data/eval/vqa_norm.json, which
tests/test_eval_vqa.c reads; nothing here is re-stated, only data is generated.

The official code is read from clones (or bare mirrors) given on the command line, at the commits
below, and executed as it is (a module's code is never edited; LLaVA's package __init__, which
imports torch, is replaced by an empty one so that llava.eval.m4c_evaluator imports alone):

  --llava  haotian-liu/LLaVA @ c121f0432da27facab705978f83c4ada465e46fd
           llava/eval/m4c_evaluator.py (EvalAIAnswerProcessor, TextVQAAccuracyEvaluator),
           llava/eval/eval_textvqa.py, scripts/convert_vqav2_for_submission.py,
           scripts/convert_vizwiz_for_submission.py, scripts/convert_gqa_for_eval.py
  --vqa    GT-Vision-Lab/VQA @ a013f0043c1e2cdc995922dfe257f7149aa9af06
           PythonHelperTools/vqaTools/vqa.py, PythonEvaluationTools/vqaEvaluation/vqaEval.py (Python 2.7),
           also for VizWiz val (vizwiz_val): VizWiz's own evaluation code (the VizWiz API) is not reachable
           at a known source and commit, so its reference is this VQA evaluator on VizWiz's answers in the
           VQA v2 layout (make_vizwiz_val says how they are converted); VizWiz's challenge reports the same
           VQA accuracy
  --gqa-eval  GQA's eval.py as LLaVA's docs/Evaluation.md has it modified (the gist
           haotian-liu/db6eddc2a984b4cbcc8a7f26fd523187, which this machine cannot reach): a copy of it is
           afra-baas/LLaVA @ 57e09fef925779d620ea63c286179a807adfe015 playground/data/eval/gqa/data/eval.py
           (one debug print added; xyang583/ARDS holds the same code). More than one may be given, e.g.
           SHI-Labs/VCoder @ 2f95684dddff603383b18d59dd7153481a98863e playground/data/eval/gqa/data/eval/eval.py
           (GQA's later eval.py, which loads choices and scene graphs when there are some): every one must
           print the same numbers, and the first one's are the golden.

Interpreters: this script under Python 3.10 (LLaVA's; its Unicode tables are the ones
make_pyunicode_tables.py reads), with tools/reference/eval/requirements-vqa.txt installed (tqdm, which
m4c_evaluator.py and eval.py import); vqaEval.py under Python 2.7 (--python2). From the repository root:

    python3.10 -m venv /tmp/vqa310 && /tmp/vqa310/bin/pip install -r tools/reference/eval/requirements-vqa.txt
    /tmp/vqa310/bin/python tools/reference/eval/make_vqa_goldens.py --llava /path/to/LLaVA \\
        --vqa /path/to/VQA --gqa-eval afra-baas+LLaVA:57e09fef...:playground/data/eval/gqa/data/eval.py \\
        --python2 python2.7

(On this project's machines: Python 2.7 and 3.10 are pyenv's, /root/.pyenv/versions/2.7.18/bin/python2.7
and a venv made from /root/.pyenv/versions/3.10.13; the clones are the bare mirrors
/work/.mirror/<owner>+<name>/repo, a --gqa-eval given as /work/.mirror/afra-baas+LLaVA/repo:57e09fef...:PATH.)

A --gqa-eval is a file path, or REPO:COMMIT:PATH read with git show.

Where the official code has no answer for a case (a question without an answer: eval_textvqa.py averages
over the answers given, eval.py and vqaEval.py refuse to run, convert_vizwiz_for_submission.py asserts),
the golden is the official run on the answers with each missing question answered "" — which the data
makes score 0 there (no annotator answer of those questions normalises to "") — the number a scorer
that counts a missing answer as wrong must give.
"""
import argparse
import contextlib
import hashlib
import io
import json
import os
import pathlib
import random
import runpy
import shutil
import subprocess
import sys
import tempfile
import types

OUT = pathlib.Path("tests/data/eval")
LLAVA_COMMIT = "c121f0432da27facab705978f83c4ada465e46fd"
VQA_COMMIT = "a013f0043c1e2cdc995922dfe257f7149aa9af06"
SUFFIX = "\nAnswer the question using a single word or phrase."
VIZWIZ_SUFFIX = ("\nWhen the provided information is insufficient, respond with 'Unanswerable'."
                 "\nAnswer the question using a single word or phrase.")


def git_show(repo, commit, path):
    return subprocess.check_output(["git", "-C", repo, "show", "%s:%s" % (commit, path)])


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def write(path, text):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# Answer surface forms: each list holds spellings a model or an annotator might give, chosen to hit a
# branch of the normalisations (case, final periods, articles, number words, contractions, the
# punctuation rule, commas in numbers, the 32-period limit, Unicode lower/split/strip/digits).
FORMS = {
    "yes": ["yes", "Yes", "YES", "yes.", "Yes.", " yes ", "yes\n", "Yes!", "\tyes"],
    "no": ["no", "No", "no.", "No, it is not.", "NO", "no!"],
    "2": ["2", "two", "Two", "2.", "two.", "TWO"],
    "10": ["10", "ten", "Ten.", "10."],
    "0": ["0", "none", "zero", "None.", "Zero"],
    "1000": ["1000", "1,000", "1,000.", "1 000"],
    "3.5": ["3.5", "3.5.", "3.5!", "3,5"],
    "dog": ["dog", "a dog", "The dog", "the dog.", "A Dog", "an dog", "dog?"],
    "hot dog": ["hot dog", "hot-dog", "Hot Dog", "hot - dog", "hotdog", "hot_dog"],
    "dont": ["don't", "dont", "Dont", "do not", "DONT."],
    "johns": ["john's", "John's", "johns", "john 's", "JOHN'S"],
    "st louis": ["st louis", "St. Louis", "st.louis", "st. louis", "St Louis."],
    "coca cola": ["coca cola", "Coca-Cola", "coca-cola", "COCA COLA", "coca_cola", "coca/cola"],
    "left": ["left", "left/right", "left / right", "(left)", "[left]", "{left}"],
    "cafe": ["café", "Café", "CAFÉ", "cafe", "CAFE\u0301"],
    "unanswerable": ["unanswerable", "Unanswerable", "unanswerable.", "Unanswerable!", "unsuitable"],
    "time": ["12:30", "12.30", "12:30.", "12 30"],
    "money": ["$5", "5 dollars", "$5.00", "5", "$ 5"],
    "empty": ["", " ", "a", "the", ".", "An", "THE."],
    "odd": ["x+y=z", "e-mail", "@home", "`tick`", "back\\slash", 'quote"d', "a;b", "a ; b", "<b>", "what?",
            "wow!", "1,,000", "1,2,3", "v1.2.3", "a.b.c.", "...", "." * 40 + "x", "yall'll", "ow's'at",
            "somebody'd", "Im", "I'm", "it's", "its", "mr.smith", ".5", "5.", "e.g.", "x , y", "1, 000"],
    "unicode": ["\u039f\u0394\u039f\u03a3", "\u03bf\u03b4\u03bf\u03c2", "\u0130stanbul", "istanbul",
                "\u0661\u0662.\u0665", "5.\u0663", "1\u00a0000", "a\u180eb", "a b", "\uff34\uff57\uff4f",
                "STRASSE", "stra\u00dfe", "\u01c5", "\U00010400", "\U00010428", "\U0001f44d",
                "\u03a3\u0391", "\u0391\u03a3'\u03a3", "\u2028yes\u3000"],
}
EMPTY_FORMS = set(FORMS["empty"])


def all_forms():
    out = []
    for v in FORMS.values():
        out.extend(v)
    return out


class Official:
    """The official modules, imported from the given clones into a temporary directory."""

    def __init__(self, args, tmp):
        self.args = args
        self.tmp = pathlib.Path(tmp)
        pkg = self.tmp / "llava_pkg"
        (pkg / "llava" / "eval").mkdir(parents=True)
        (pkg / "scripts").mkdir()
        (pkg / "llava" / "__init__.py").write_text("")  # stands in for LLaVA's, which imports the model
        (pkg / "llava" / "eval" / "__init__.py").write_text("")
        self.sources = {}
        for path in ["llava/eval/m4c_evaluator.py", "llava/eval/eval_textvqa.py",
                     "scripts/convert_vqav2_for_submission.py", "scripts/convert_vizwiz_for_submission.py",
                     "scripts/convert_gqa_for_eval.py"]:
            b = git_show(args.llava, LLAVA_COMMIT, path)
            (pkg / path).write_bytes(b)
            self.sources["haotian-liu/LLaVA@%s:%s" % (LLAVA_COMMIT, path)] = sha256(b)
        self.pkg = pkg
        sys.path.insert(0, str(pkg))
        import llava.eval.m4c_evaluator as m4c  # noqa: E402
        import llava.eval.eval_textvqa as textvqa  # noqa: E402
        self.m4c = m4c
        self.textvqa = textvqa
        vqa = self.tmp / "vqa"
        vqa.mkdir()
        for path, name in [("PythonHelperTools/vqaTools/vqa.py", "vqa.py"),
                           ("PythonEvaluationTools/vqaEvaluation/vqaEval.py", "vqaEval.py")]:
            b = git_show(args.vqa, VQA_COMMIT, path)
            (vqa / name).write_bytes(b)
            self.sources["GT-Vision-Lab/VQA@%s:%s" % (VQA_COMMIT, path)] = sha256(b)
        self.vqa = vqa
        self.gqa_evals = []
        for spec in args.gqa_eval:
            if os.path.isfile(spec):
                b, name = pathlib.Path(spec).read_bytes(), spec
            else:  # REPO:COMMIT:PATH, REPO a clone or a bare mirror (.../owner+name/repo)
                repo, commit, path = spec.split(":", 2)
                b = git_show(repo, commit, path)
                owner_name = pathlib.Path(repo).resolve()
                owner_name = (owner_name.parent.name if owner_name.name == "repo" else owner_name.name).replace("+", "/")
                name = "%s@%s:%s" % (owner_name, commit, path)
            f = self.tmp / ("gqa_eval_%d.py" % len(self.gqa_evals))
            f.write_bytes(b)
            self.gqa_evals.append((name, f))
            self.sources["GQA eval.py " + name] = sha256(b)

    def run_script(self, path, argv, cwd=None):
        """Runs an official script as __main__ with argv; returns (stdout, its globals)."""
        old_argv, old_cwd = sys.argv, os.getcwd()
        sys.argv = [str(path)] + argv
        buf = io.StringIO()
        try:
            if cwd:
                os.chdir(cwd)
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
                g = runpy.run_path(str(path), run_name="__main__")
        finally:
            sys.argv = old_argv
            os.chdir(old_cwd)
        return buf.getvalue(), g

    def python2(self, code, payload):
        """Runs Python 2.7 code with the VQA modules importable; payload in as JSON, result out as JSON."""
        d = pathlib.Path(tempfile.mkdtemp(dir=self.tmp))
        (d / "in.json").write_text(json.dumps(payload))
        (d / "run.py").write_text(code)
        subprocess.run([self.args.python2, str(d / "run.py"), str(self.vqa), str(d / "in.json"),
                        str(d / "out.json")], check=True, stdout=subprocess.DEVNULL)
        return json.loads((d / "out.json").read_text())


PY2_NORM = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from vqaEval import VQAEval
class NoQuestions(object):
    def getQuesIds(self):
        return []
e = VQAEval(NoQuestions(), None, n=2)
strs = json.load(open(sys.argv[2]))
out = []
for s in strs:
    p = e.processPunctuation(s)
    out.append([p, e.processDigitArticle(p)])
json.dump({'version': sys.version.split()[0], 'out': out}, open(sys.argv[3], 'w'))
"""

PY2_ROUND = r"""
import json, sys
json.dump([round(v, 2) for v in json.load(open(sys.argv[2]))], open(sys.argv[3], 'w'))
"""

PY2_UNICODE = r"""
import json, sys
cps = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
low = u"".join(unichr(c) for c in cps if unichr(c).lower() != unichr(c))
json.dump({'lower': [low, low.lower()], 'space': [c for c in cps if unichr(c).isspace()]}, open(sys.argv[3], 'w'))
"""

PY2_EVAL = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from vqa import VQA
from vqaEval import VQAEval
p = json.load(open(sys.argv[2]))
vqa = VQA(p['annotations'], p['questions'])
res = vqa.loadRes(p['results'], p['questions'])
e = VQAEval(vqa, res, n=2)
e.evaluate(p['quesIds'])
json.dump({'accuracy': e.accuracy, 'evalQA': dict((str(k), v) for k, v in e.evalQA.items())},
          open(sys.argv[3], 'w'))
"""


# ---------------------------------------------------------------------------------------------
def make_norm(off):
    strs = all_forms() + ["Hello, World", "3,000,000", "1,000, 2", "x. 5", "n.5", ". 5", "a.5.b", "yes .", "'s",
                          "it'S", "He's here", "?!", "a?b", "1?2", "2,3", "\u0661,\u0662", "SOMEBODY'D", "i'dve",
                          "Id've", "yall'd've", "hed've", "\u00a0yes\u00a0", "\x1cyes\x1f", "\x85no"]
    evalai = off.m4c.EvalAIAnswerProcessor()
    # every entry of the official tables, alone and capitalised in a phrase
    P = off.m4c.EvalAIAnswerProcessor
    for w in list(P.CONTRACTIONS) + list(P.NUMBER_MAP) + P.ARTICLES:
        strs += [w, "%s %s." % (w.capitalize(), w)]
    py2 = off.python2(PY2_NORM, strs)
    cases = [{"in": s, "evalai": evalai(s), "vqa_punctuation": p, "vqa_digit_article": d}
             for s, (p, d) in zip(strs, py2["out"])]
    # Python 2's round(x, 2) (vqaEval's setAccuracy), halfway cases included.
    values = [k / 8.0 for k in range(-20, 200)] + [k / 8.0 + 40 for k in range(0, 80, 3)] + [2.675, 1.005, 48.445, 0.285, 99.995, 100.0, 33.333333333333336,
                                                   66.66666666666667, 12.345, 5e-324, 1e300, 0.0]
    rounds = off.python2(PY2_ROUND, values)
    # The character tables whole: every code point lower() changes (Python 3.10 and 2.7; capital sigma
    # aside, its context decides), every isspace() and every isdecimal() code point.
    cps = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    low3 = "".join(chr(c) for c in cps if c != 0x3A3 and chr(c).lower() != chr(c))
    uni = off.python2(PY2_UNICODE, None)
    tables = {"py3_lower": [low3, low3.lower()], "py2_lower": uni["lower"],
              "py3_space": [c for c in cps if chr(c).isspace()], "py2_space": uni["space"],
              "py3_decimal": [c for c in cps if chr(c).isdecimal()]}
    note = ("each case: [in, EvalAIAnswerProcessor()(in) under Python %s, VQAEval.processPunctuation(in) and "
            "processDigitArticle(processPunctuation(in)) under Python %s]" % (sys.version.split()[0], py2["version"]))
    lines = ['{"note": %s,' % json.dumps(note), ' "cases": [']
    lines += ["  %s," % json.dumps([c["in"], c["evalai"], c["vqa_punctuation"], c["vqa_digit_article"]],
                                   ensure_ascii=False) for c in cases]
    lines[-1] = lines[-1][:-1]
    lines += [' ],', ' "py2_round_2": %s,' % json.dumps([[v, r] for v, r in zip(values, rounds)])]
    lines += [' "tables": %s}' % json.dumps(tables, ensure_ascii=False)]
    write(OUT / "vqa_norm.json", "\n".join(lines) + "\n")
    return len(cases)


def answer_line(qid, prompt, text, i):
    return {"question_id": qid, "prompt": prompt, "text": text, "answer_id": "a%d" % i, "model_id": "m",
            "metadata": {}}


def pick_gt(rng, concept_pool, allow_empty=True):
    """Ten annotator answers: a main concept's forms, some of a second one."""
    a, b = rng.sample(concept_pool, 2)
    k = rng.choice([10, 9, 7, 5, 4, 3, 2, 1])
    out = [rng.choice(FORMS[a]) for _ in range(k)] + [rng.choice(FORMS[b]) for _ in range(10 - k)]
    rng.shuffle(out)
    return out, a


def normalises_empty(evalai, answers):
    return any(evalai(x) == "" for x in answers)


# ---------------------------------------------------------------------------------------------
def make_textvqa(off, rng):
    d = OUT / "textvqa"
    if d.exists():
        shutil.rmtree(d)
    evalai = off.m4c.EvalAIAnswerProcessor()
    concepts = [c for c in FORMS if c != "unicode"] + ["unicode"]
    data, questions, concept_of = [], [], []
    qid = 34602
    images = ["%016x" % rng.getrandbits(64) for _ in range(32)]
    words = ["brand", "number", "word", "name", "time", "price", "team", "title", "color", "letter"]
    for n in range(64):
        img = images[n // 2]
        q = "what is the %s %s?" % (words[n % len(words)], ["shown", "on the sign", "here", "written"][n % 4])
        if n % 11 == 3:
            q = q.capitalize()  # the annotation's own case; both sides are lowered
        gts, concept = pick_gt(rng, concepts)
        data.append({"question": q, "image_id": img, "answers": gts, "question_id": qid, "set_name": "val"})
        qid += 1
        ocr = ", ".join(rng.sample(["dakota", "STOP", "cola", "12:30", "2", "café"], 2))
        form = n % 9
        text_q = q.lower() if n % 5 else q.upper()  # lowered by prompt_processor and by the annotation key
        if form == 7:
            text = "Reference OCR token: %s\n%s%s" % (ocr, text_q, SUFFIX)
        elif form == 8:
            text = "%s%s" % (text_q, SUFFIX)  # no OCR line: two lines
        elif form == 6:
            text = "OCR tokens: %s Question: %s Short answer:" % (ocr, text_q)
        else:
            text = "%s\nReference OCR token: %s%s" % (text_q, ocr, SUFFIX)
        questions.append({"question_id": img, "image": img + ".jpg", "text": text, "category": "default"})
        concept_of.append(concept)
    # The same (image, question) twice in the annotations: the dict keeps the last, which both of its
    # questions are scored against.
    dup = dict(data[10])
    dup["question_id"] = qid
    dup["answers"] = [rng.choice(FORMS["2"]) for _ in range(10)]
    data.insert(40, dup)
    questions.insert(41, dict(questions[10]))
    concept_of.insert(41, "2")
    ann = {"dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data}
    write(d / "TextVQA_0.5.1_val.json", compact(ann))
    qrows = questions
    write(d / "llava_textvqa_val_v051_ocr.jsonl", jsonl(qrows))
    # The annotation each question is scored against (by the official's own key).
    key = {(a["image_id"], a["question"].lower()): a for a in data}

    def gts_of(q):
        return key[(q["question_id"], off.textvqa.prompt_processor(q["text"]))]["answers"]

    def answer_for(q, i):
        c = concept_of[i]
        r = rng.random()
        if r < 0.45:
            t = rng.choice(FORMS[c])  # a spelling of the annotators' main answer
        elif r < 0.6:
            t = rng.choice(gts_of(q))
        else:
            t = rng.choice(all_forms())
        return answer_line(q["question_id"], q["text"], t, i)

    complete = [answer_for(q, i) for i, q in enumerate(qrows)]
    write(d / "answers" / "complete.jsonl", jsonl(complete))
    # Shuffled, and some questions without an answer (only where "" scores 0).
    order = list(range(len(complete)))
    rng.shuffle(order)
    drop = set()
    for i in order:
        if len(drop) < 7 and not normalises_empty(evalai, gts_of(qrows[i])):
            drop.add(i)
    missing_rows = [complete[i] for i in order if i not in drop]
    write(d / "answers" / "missing.jsonl", jsonl(missing_rows))
    # Errors: a prompt of four lines (prompt_processor asserts), a line that is not JSON.
    bad = [dict(complete[0]), dict(complete[1])]
    bad[1]["prompt"] = "a\nb\nc\nd"
    write(d / "answers" / "bad_prompt.jsonl", jsonl(bad))
    write(d / "answers" / "malformed.jsonl", jsonl(complete[:2]) + '{"question_id": "x", "text": \n')

    def official(rows):
        f = off.tmp / "textvqa_result.jsonl"
        f.write_text(jsonl(rows))
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            off.textvqa.eval_single(str(d / "TextVQA_0.5.1_val.json"), str(f))
        # the raw number behind the printed one, by the same official functions
        annotations = {(a["image_id"], a["question"].lower()): a for a in ann["data"]}
        pred_list = [{"pred_answer": r["text"],
                      "gt_answers": annotations[(r["question_id"], off.textvqa.prompt_processor(r["prompt"]))]["answers"]}
                     for r in rows]
        with contextlib.redirect_stderr(io.StringIO()):
            raw = off.m4c.TextVQAAccuracyEvaluator().eval_pred_list(pred_list)
        printed = [l for l in buf.getvalue().splitlines() if l.startswith("Accuracy")][0]
        samples = [l for l in buf.getvalue().splitlines() if l.startswith("Samples")][0]
        assert printed == "Accuracy: {:.2f}%".format(100. * raw)
        return {"printed": printed, "samples": samples, "accuracy": 100. * raw, "questions": len(qrows)}

    filled = missing_rows + [answer_line(qrows[i]["question_id"], qrows[i]["text"], "", 90000 + i) for i in sorted(drop)]
    golden = {
        "complete": dict(official(complete), missing=0),
        "missing": dict(official(filled), missing=len(drop)),
    }
    return golden


# ---------------------------------------------------------------------------------------------
def make_gqa(off, rng):
    d = OUT / "gqa"
    if d.exists():
        shutil.rmtree(d)
    golds = ["yes", "no", "red", "left", "right", "dog", "hot dog", "2", "table", "caf\u00e9", "istanbul",
             "\u03bf\u03b4\u03bf\u03c2", "wood", "metal", "man", "woman"]
    structural = ["query", "verify", "logical", "choose", "compare"]
    semantic = ["obj", "attr", "rel", "cat", "global"]
    groups = [None, "color", "material", "places", None, "weather"]
    qs, llava = {}, []
    for n in range(64):
        qid = str(201307251 + 97 * n)
        st = structural[n % 5]
        gold = ("yes" if n % 3 else "no") if st in ("verify", "logical") else rng.choice(golds)
        qs[qid] = {  # the fields eval.py reads (GQA's files have more)
            "semantic": [{"operation": "select", "argument": "scene"},
                         {"operation": "query name" if n % 4 else "exist", "argument": "x"}],
            "question": "Is it %d?" % n, "isBalanced": n % 23 != 5,
            "groups": {"global": groups[n % len(groups)], "local": "l%d" % (n % 7)}, "answer": gold,
            "types": {"detailed": "d", "semantic": semantic[n % 5], "structural": st}}
        llava.append({"question_id": qid, "image": "n%06d.jpg" % n, "text": "Is it %d?%s" % (n, SUFFIX)})
    write(d / "data" / "testdev_balanced_questions.json", compact(qs))
    write(d / "llava_gqa_testdev_balanced.jsonl", jsonl(llava))
    spell = {"yes": FORMS["yes"] + ["yes..", "Yes.."], "no": FORMS["no"], "red": ["red", "Red.", "RED", "the red"],
             "caf\u00e9": FORMS["cafe"], "istanbul": ["\u0130stanbul", "istanbul", "ISTANBUL."],
             "\u03bf\u03b4\u03bf\u03c2": ["\u039f\u0394\u039f\u03a3", "\u039f\u0394\u039f\u03a3.", "\u03bf\u03b4\u03bf\u03c3"],
             "hot dog": FORMS["hot dog"], "2": FORMS["2"]}

    def answer(qid, i):
        g = qs[qid]["answer"]
        r = rng.random()
        t = rng.choice(spell.get(g, [g, g.capitalize() + ".", g + " "])) if r < 0.7 else rng.choice(all_forms())
        return answer_line(qid, llava[0]["text"], t, i)

    complete = [answer(q["question_id"], i) for i, q in enumerate(llava)]
    complete.insert(20, answer(llava[25]["question_id"], 999))  # a repeat: the later line counts
    complete.append(answer_line("999999999", "x", "yes", 998))  # not a GQA question: ignored
    write(d / "answers" / "complete.jsonl", jsonl(complete))
    drop = set(rng.sample(range(len(llava)), 6))
    missing = [a for a in complete if a["question_id"] not in {llava[i]["question_id"] for i in drop}]
    write(d / "answers" / "missing.jsonl", jsonl(missing))

    def official(rows, questions):
        """convert_gqa_for_eval.py, then each eval.py (missing questions answered "": eval.py needs one)."""
        w = pathlib.Path(tempfile.mkdtemp(dir=off.tmp))
        (w / "data").mkdir()
        (w / "merge.jsonl").write_text(jsonl(rows))
        off.run_script(off.pkg / "scripts/convert_gqa_for_eval.py",
                       ["--src", str(w / "merge.jsonl"), "--dst", str(w / "data/testdev_balanced_predictions.json")])
        converted = (w / "data/testdev_balanced_predictions.json").read_bytes()
        preds = json.loads(converted)
        have = {p["questionId"] for p in preds}
        preds += [{"questionId": q, "prediction": ""} for q in questions if q not in have]
        (w / "data/testdev_balanced_predictions.json").write_text(json.dumps(preds))
        (w / "data/testdev_balanced_questions.json").write_text(json.dumps(questions))
        results = []
        for name, f in off.gqa_evals:
            out, g = off.run_script(f, ["--tier", "testdev_balanced"], cwd=w / "data")
            printed = [l for l in out.splitlines() if l.split(":")[0] in
                       ("Binary", "Open", "Accuracy", "Distribution")]
            results.append((name, printed, g["scores"]))
        for name, printed, _ in results[1:]:
            assert printed == results[0][1], (name, printed, results[0][1])
        s = results[0][2]
        return converted, {"printed": results[0][1], "accuracy": s["accuracy"], "binary": s["binary"],
                           "open": s["open"], "distribution": s["distribution"],
                           "questions": sum(1 for q in questions.values() if q["isBalanced"]),
                           "missing": sum(1 for q in questions if q not in have and questions[q]["isBalanced"]),
                           "agreeing_eval_py": [r[0] for r in results]}

    golden = {}
    for name, rows, questions in [("complete", complete, qs), ("missing", missing, qs),
                                  ("first30", complete, {k: qs[k] for k in list(qs)[:30]})]:
        converted, g = official(rows, questions)
        if name != "first30":
            write(d / "official" / name / "testdev_balanced_predictions.json", converted)
        golden[name] = g
    return golden


# ---------------------------------------------------------------------------------------------
def make_vqav2(off, rng):
    d = OUT / "vqav2"
    if d.exists():
        shutil.rmtree(d)
    # test-dev: LLaVA's files, and the official converter's upload file.
    test = []
    for n in range(60):
        img = 262144 + 3 * (n // 3)
        test.append({"question_id": img * 1000 + n % 3, "image": "COCO_test2015_%012d.jpg" % img,
                     "text": "What is %d?%s" % (n, SUFFIX), "category": "default"})
    dev = [q for i, q in enumerate(test) if i % 3 != 2]
    write(d / "llava_vqav2_mscoco_test2015.jsonl", jsonl(test))
    write(d / "llava_vqav2_mscoco_test-dev2015.jsonl", jsonl(dev))
    ans = [answer_line(q["question_id"], q["text"], rng.choice(all_forms()), i) for i, q in enumerate(dev)
           if i % 9 != 4]
    ans.insert(20, answer_line(dev[21]["question_id"], dev[21]["text"], "Two.", 900))  # a repeat: the last counts
    ans.append(answer_line(test[2]["question_id"], test[2]["text"], "THE DOG", 901))  # in test2015, not test-dev
    ans.append(answer_line(123, "x", "yes", 902))  # in neither: ignored
    write(d / "answers" / "test-dev.jsonl", jsonl(ans))
    w = pathlib.Path(tempfile.mkdtemp(dir=off.tmp))
    (w / "answers/llava_vqav2_mscoco_test-dev2015/llava-v1.5-7b").mkdir(parents=True)
    shutil.copy(d / "answers/test-dev.jsonl", w / "answers/llava_vqav2_mscoco_test-dev2015/llava-v1.5-7b/merge.jsonl")
    shutil.copy(d / "llava_vqav2_mscoco_test2015.jsonl", w / "llava_vqav2_mscoco_test2015.jsonl")
    off.run_script(off.pkg / "scripts/convert_vqav2_for_submission.py",
                   ["--dir", str(w), "--ckpt", "llava-v1.5-7b", "--split", "llava_vqav2_mscoco_test-dev2015"])
    upload = (w / "answers_upload/llava_vqav2_mscoco_test-dev2015/llava-v1.5-7b.json").read_bytes()
    write(d / "official" / "llava_vqav2_mscoco_test-dev2015.json", upload)
    dev_ids = {q["question_id"] for q in dev}
    golden = {"test-dev": {"questions": len(dev), "missing": len(dev_ids - {a["question_id"] for a in ans}),
                           "submission_questions": len(test)}}

    # val2014: the official VQA files, LLaVA's question format, and vqaEval.py on what the converter uploads.
    concepts = [c for c in FORMS if c not in ("empty", "unicode")]
    questions, annotations = [], []
    ans_types = {"yes": "yes/no", "no": "yes/no", "2": "number", "10": "number", "0": "number", "1000": "number"}
    for n in range(64):
        img = 42 + 7 * (n // 2)
        qid = img * 1000 + n % 2
        q = "What is in picture %d?" % n
        questions.append({"image_id": img, "question": q, "question_id": qid})
        if n % 13 == 0:  # the ten agree: compared as they are, unnormalised
            gt = [rng.choice(["yes", "Yes", " two ", "dog", "hot-dog"])] * 10
            concept = {"yes": "yes", "Yes": "yes", " two ": "2", "dog": "dog", "hot-dog": "hot dog"}[gt[0]]
        else:
            gt, concept = pick_gt(rng, concepts + ["unicode", "empty"])
        annotations.append({"question_type": "what is", "multiple_choice_answer": gt[0],
                            "answers": [{"answer": a, "answer_confidence": ["yes", "maybe", "no"][i % 3],
                                         "answer_id": i + 1} for i, a in enumerate(gt)],
                            "image_id": img, "answer_type": ans_types.get(concept, "other"), "question_id": qid,
                            "_concept": concept})
    info = {"description": "synthetic", "version": "2.0"}
    lic = {"name": "none", "url": "none"}
    write(d / "v2_OpenEnded_mscoco_val2014_questions.json",
          compact({"info": info, "task_type": "Open-Ended", "data_type": "mscoco", "license": lic,
                   "data_subtype": "val2014", "questions": questions}))
    anns_clean = [{k: v for k, v in a.items() if not k.startswith("_")} for a in annotations]
    write(d / "v2_mscoco_val2014_annotations.json",
          compact({"info": info, "license": lic, "data_subtype": "val2014", "annotations": anns_clean}))
    val_llava = [{"question_id": q["question_id"], "image": "COCO_val2014_%012d.jpg" % q["image_id"],
                  "text": q["question"] + SUFFIX, "category": "default"} for q in questions]
    write(d / "llava_vqav2_mscoco_val2014.jsonl", jsonl(val_llava))  # what prepare() must write

    def val_answer(i):
        a = annotations[i]
        r = rng.random()
        t = rng.choice(FORMS[a["_concept"]]) if r < 0.5 else (
            rng.choice(a["answers"])["answer"] if r < 0.7 else rng.choice(all_forms()))
        return answer_line(val_llava[i]["question_id"], val_llava[i]["text"], t, i)

    complete = [val_answer(i) for i in range(len(val_llava))]
    write(d / "answers" / "val_complete.jsonl", jsonl(complete))
    # Questions left unanswered: only where an uploaded "" scores 0 (no annotator answer that is, or
    # that vqaEval's steps make, empty).
    gts = sorted({x["answer"] for a in annotations for x in a["answers"]})
    normed = dict(zip(gts, off.python2(PY2_NORM, [g.strip() for g in gts])["out"]))
    drop = [i for i in range(len(annotations)) if i % 7 == 1 and not any(
        x["answer"].strip() == "" or normed[x["answer"]][1] == "" for x in annotations[i]["answers"])][:6]
    missing = [a for i, a in enumerate(complete) if i not in drop]
    write(d / "answers" / "val_missing.jsonl", jsonl(missing))

    def official_val(rows, first=None):
        w = pathlib.Path(tempfile.mkdtemp(dir=off.tmp))
        (w / "answers/val/ckpt").mkdir(parents=True)
        (w / "answers/val/ckpt/merge.jsonl").write_text(jsonl(rows))
        (w / "llava_vqav2_mscoco_test2015.jsonl").write_text(jsonl(val_llava))  # the converter's "all questions"
        off.run_script(off.pkg / "scripts/convert_vqav2_for_submission.py",
                       ["--dir", str(w), "--ckpt", "ckpt", "--split", "val"])
        results = w / "answers_upload/val/ckpt.json"
        ids = [q["question_id"] for q in (val_llava[:first] if first else val_llava)]
        r = off.python2(PY2_EVAL, {"annotations": str(d / "v2_mscoco_val2014_annotations.json"),
                                   "questions": str(d / "v2_OpenEnded_mscoco_val2014_questions.json"),
                                   "results": str(results), "quesIds": ids})
        have = {a["question_id"] for a in rows}
        return {"accuracy": r["accuracy"]["overall"], "perAnswerType": r["accuracy"]["perAnswerType"],
                "printed": "Overall Accuracy is: %.02f" % r["accuracy"]["overall"], "questions": len(ids),
                "missing": sum(1 for i in ids if i not in have)}

    golden["val_complete"] = official_val(complete)
    golden["val_missing"] = official_val(missing)
    golden["val_first30"] = official_val(complete, first=30)
    return golden


# ---------------------------------------------------------------------------------------------
def make_vizwiz(off, rng):
    d = OUT / "vizwiz"
    if d.exists():
        shutil.rmtree(d)
    test = [{"question_id": n, "image": "VizWiz_test_%08d.jpg" % n, "text": "What is this %d?%s" % (n, VIZWIZ_SUFFIX)}
            for n in range(40)]
    write(d / "llava_test.jsonl", jsonl(test))
    ans = [answer_line(q["question_id"], q["text"], rng.choice(all_forms() + FORMS["unanswerable"] * 3), i)
           for i, q in enumerate(test)]
    rng.shuffle(ans)
    ans.insert(10, answer_line(test[5]["question_id"], test[5]["text"], "Unanswerable.", 900))  # the last counts
    write(d / "answers" / "complete.jsonl", jsonl(ans))
    missing = [a for a in ans if a["question_id"] not in (3, 17, 30)]
    write(d / "answers" / "missing.jsonl", jsonl(missing))
    w = pathlib.Path(tempfile.mkdtemp(dir=off.tmp))
    off.run_script(off.pkg / "scripts/convert_vizwiz_for_submission.py",
                   ["--annotation-file", str(d / "llava_test.jsonl"), "--result-file", str(d / "answers/complete.jsonl"),
                    "--result-upload-file", str(w / "answers_upload/llava-v1.5-7b.json")])
    write(d / "official" / "answers_upload.json", (w / "answers_upload/llava-v1.5-7b.json").read_bytes())
    golden = {"complete": {"questions": len(test), "missing": 0}, "missing": {"questions": len(test), "missing": 3}}
    golden.update(make_vizwiz_val(off, rng, d))
    return golden


def make_vizwiz_val(off, rng, d):
    """vizwiz_val (eval/bench_vizwiz_val.c): VizWiz's val.json (the Annotations.zip format), the question
    file prepare() must write from it, and the official VQA accuracy of what convert_vizwiz_for_submission.py
    would upload. VizWiz's own evaluation code (the VizWiz API's vqaEval.py) is not reachable at a known source
    and commit (third-party copies, e.g. TRI-ML/vlm-evaluation vlm_eval/util/evaluation/vizwiz/eval.py, leave
    out by position and normalise the answer always and the annotators' answers never), so the reference is
    the VQA evaluator, whose accuracy VizWiz's challenge reports: GT-Vision-Lab's vqa.py/vqaEval.py, unmodified
    (Python 2.7), on VizWiz's answers converted to the VQA v2 layout: a questions file and an annotations
    file whose question_id and image_id are VizWiz's image name, question_type "none" (VizWiz has none),
    and the ten answers with their answer_confidence and the answer_id 1..10 that VQA v2's answers carry
    (without it vqaEval's `item != gtAnsDatum` would leave out every answer equal to the one held out,
    answer_confidence included, not that one alone). The upload file's {"image", "answer"} become
    {"question_id": image, "answer"}: VizWiz's question ids are its image names."""
    types = {"yes": "yes/no", "no": "yes/no", "2": "number", "10": "number", "0": "number", "1000": "number",
             "3.5": "number", "unanswerable": "unanswerable"}
    concepts = [c for c in FORMS if c not in ("empty", "unicode")]
    texts = {5: "\u00bfQu\u00e9 es esto? caf\u00e9 \U0001f44d", 9: 'Read "this" \\ label\nplease',
             14: "  what color?  ", 21: "", 33: "Is it\ton?"}
    val = []
    for n in range(60):
        image = "VizWiz_val_%08d.jpg" % n
        if n % 11 == 0:  # the ten agree: compared as they are, unnormalised
            gt = [rng.choice(["unanswerable", "yes", "Yes", " two ", "dog", "hot-dog", "Unanswerable"])] * 10
            concept = {"yes": "yes", "Yes": "yes", " two ": "2", "dog": "dog", "hot-dog": "hot dog"}.get(
                gt[0], "unanswerable")
        elif n % 4 == 1:  # unanswerable for most annotators, as VizWiz's often are
            k = rng.choice([10, 9, 8, 6, 4, 3])
            gt = [rng.choice(FORMS["unanswerable"][:2]) for _ in range(k)] + \
                [rng.choice(all_forms()) for _ in range(10 - k)]
            rng.shuffle(gt)
            concept = "unanswerable"
        else:
            gt, concept = pick_gt(rng, concepts + ["unicode", "empty"])
        val.append({"image": image, "question": texts.get(n, "What is this %d?" % n),
                    "answers": [{"answer": a, "answer_confidence": rng.choice(["yes", "maybe", "no"])} for a in gt],
                    "answer_type": types.get(concept, "other"), "answerable": int(concept != "unanswerable"),
                    "_concept": concept})
    clean = [{k: v for k, v in q.items() if not k.startswith("_")} for q in val]
    write(d / "val.json", compact(clean))
    val_llava = [{"question_id": q["image"], "image": q["image"], "text": q["question"] + VIZWIZ_SUFFIX} for q in val]
    write(d / "llava_val.jsonl", jsonl(val_llava))  # what prepare() must write

    def val_answer(i):
        q = val[i]
        r = rng.random()
        t = rng.choice(FORMS[q["_concept"]]) if r < 0.4 else (
            rng.choice(q["answers"])["answer"] if r < 0.6 else
            rng.choice(FORMS["unanswerable"]) if r < 0.75 else rng.choice(all_forms()))
        return answer_line(val_llava[i]["question_id"], val_llava[i]["text"], t, i)

    complete = [val_answer(i) for i in range(len(val))]
    # a repeat: the last counts
    complete.insert(12, answer_line(val_llava[20]["question_id"], val_llava[20]["text"], "Unanswerable.", 900))
    complete.append(answer_line("VizWiz_test_00000001.jpg", "x", "yes", 901))  # not a val question: ignored
    complete.append(answer_line(3, "x", "yes", 902))  # a number id: no val question has it
    write(d / "answers" / "val_complete.jsonl", jsonl(complete))
    # Questions left unanswered: only where an uploaded "" scores 0 (no annotator answer that is, or that
    # vqaEval's steps make, empty).
    gts = sorted({x["answer"] for q in val for x in q["answers"]})
    normed = dict(zip(gts, off.python2(PY2_NORM, [g.strip() for g in gts])["out"]))
    drop = [i for i in range(len(val)) if i % 5 == 2 and not any(
        x["answer"].strip() == "" or normed[x["answer"]][1] == "" for x in val[i]["answers"])][:8]
    assert len(drop) >= 5, drop
    missing = [a for a in complete if a["question_id"] not in {val_llava[i]["question_id"] for i in drop}]
    write(d / "answers" / "val_missing.jsonl", jsonl(missing))

    info = {"description": "synthetic VizWiz val in the VQA v2 layout", "version": "2.0"}
    lic = {"name": "none", "url": "none"}
    w = pathlib.Path(tempfile.mkdtemp(dir=off.tmp))
    (w / "questions.json").write_text(json.dumps(
        {"info": info, "task_type": "Open-Ended", "data_type": "vizwiz", "license": lic, "data_subtype": "val",
         "questions": [{"image_id": q["image"], "question": q["question"], "question_id": q["image"]} for q in val]}))
    (w / "annotations.json").write_text(json.dumps(
        {"info": info, "license": lic, "data_subtype": "val", "annotations": [
            {"question_id": q["image"], "image_id": q["image"], "question_type": "none",
             "answer_type": q["answer_type"], "multiple_choice_answer": q["answers"][0]["answer"],
             "answers": [dict(a, answer_id=i + 1) for i, a in enumerate(q["answers"])]} for q in val]}))

    def official_val(rows, first=None):
        """convert_vizwiz_for_submission.py over the val question file (a missing answer given as "": the
        converter asserts there is one), then vqaEval.py on its upload file."""
        r = pathlib.Path(tempfile.mkdtemp(dir=off.tmp))
        have = {a["question_id"] for a in rows}
        filled = rows + [answer_line(q["question_id"], q["text"], "", 800 + i) for i, q in enumerate(val_llava)
                         if q["question_id"] not in have]
        (r / "merge.jsonl").write_text(jsonl(filled))
        (r / "llava_val.jsonl").write_text(jsonl(val_llava))
        off.run_script(off.pkg / "scripts/convert_vizwiz_for_submission.py",
                       ["--annotation-file", str(r / "llava_val.jsonl"), "--result-file", str(r / "merge.jsonl"),
                        "--result-upload-file", str(r / "answers_upload/val.json")])
        upload = json.loads((r / "answers_upload/val.json").read_text())
        results = [{"question_id": x["image"], "answer": x["answer"]} for x in upload]
        (r / "results.json").write_text(json.dumps(results))
        ids = [q["question_id"] for q in (val_llava[:first] if first else val_llava)]
        e = off.python2(PY2_EVAL, {"annotations": str(w / "annotations.json"), "questions": str(w / "questions.json"),
                                   "results": str(r / "results.json"), "quesIds": ids})
        return {"accuracy": e["accuracy"]["overall"], "perAnswerType": e["accuracy"]["perAnswerType"],
                "printed": "Overall Accuracy is: %.02f" % e["accuracy"]["overall"], "questions": len(ids),
                "missing": sum(1 for i in ids if i not in have)}

    return {"val_complete": official_val(complete), "val_missing": official_val(missing),
            "val_first30": official_val(complete, first=30)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llava", required=True)
    ap.add_argument("--vqa", required=True)
    ap.add_argument("--gqa-eval", action="append", required=True)
    ap.add_argument("--python2", default="python2.7")
    args = ap.parse_args()
    assert sys.version_info[:2] == (3, 10), "run under Python 3.10, LLaVA's interpreter"
    with tempfile.TemporaryDirectory() as tmp:
        off = Official(args, tmp)
        n = make_norm(off)
        goldens = {}
        for name, fn in [("textvqa", make_textvqa), ("gqa", make_gqa), ("vqav2", make_vqav2), ("vizwiz", make_vizwiz)]:
            goldens[name] = fn(off, random.Random("llava.c eval " + name))
        py2 = subprocess.check_output([args.python2, "-c", "import sys; print(sys.version.split()[0])"]).decode().strip()
        for name, g in goldens.items():
            g["_official"] = {"sources_sha256": off.sources, "python3": sys.version.split()[0], "python2": py2,
                              "tqdm": __import__("tqdm").__version__}
            write(OUT / name / "golden.json", json.dumps(g, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    print("wrote %s: %d normalisation cases, %s" % (OUT, n, ", ".join(goldens)))


if __name__ == "__main__":
    main()
