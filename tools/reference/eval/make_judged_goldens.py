"""Goldens for the judged benchmarks (eval/bench_judged.c, eval/judge.c): synthetic LLaVA-Bench in the Wild
and MM-Vet data in LLaVA's formats, and what LLaVA's own scripts, run unmodified, make of it. Writes
tests/data/eval/llavabench/ and tests/data/eval/mmvet/, which tests/test_eval_judged.c reads; nothing
here is re-stated, only data is generated and the official code is run.

The official code is read from a clone (or a bare mirror) of haotian-liu/LLaVA given on the command line,
at the commit below, and executed as it is:

  llava/eval/eval_gpt_review_bench.py  one review request per question, reviews.jsonl, parse_score
  llava/eval/summarize_gpt_review.py   the printed summary of a reviews file (numpy)
  scripts/convert_mmvet_for_eval.py    MM-Vet's results.json

eval_gpt_review_bench.py imports `openai` (0.x) and calls openai.ChatCompletion.create: a stub module put
on sys.path in its place records every call (the system and user messages, model, temperature,
max_tokens) and answers with a canned review per question, whose first lines hit every branch of
parse_score ("8 9", "7,6", two spaces, a prefix, "10 9.5", a leading space, "\\r", an empty review,
words, "1e1 5"). The rule file is LLaVA's format (category -> role, prompt) in words of our own.

LLaVA pairs questions, reference answers and model answers by line; the C scorer pairs them by
question_id. The "missing" run drops one model answer: the golden there is the official script run on
the answers with that line put back as {"question_id": id, "text": "", "answer_id": null}, which is
what the C scorer asks the judge about a question without an answer.

From the repository root, with numpy installed (summarize_gpt_review.py imports it):

    /tmp/refvenv/bin/python tools/reference/eval/make_judged_goldens.py --llava /path/to/LLaVA

--llava is a clone or a bare mirror (git show reads it). The goldens record LLaVA's commit, each source
file's sha256, and the Python and numpy versions.
"""
import argparse
import contextlib
import hashlib
import io
import json
import pathlib
import platform
import runpy
import subprocess
import sys
import tempfile

import numpy

OUT = pathlib.Path("tests/data/eval")
LLAVA_COMMIT = "c121f0432da27facab705978f83c4ada465e46fd"
SOURCES = ["llava/eval/eval_gpt_review_bench.py", "llava/eval/summarize_gpt_review.py",
           "scripts/convert_mmvet_for_eval.py"]


def git_show(repo, commit, path):
    return subprocess.check_output(["git", "-C", repo, "show", "%s:%s" % (commit, path)])


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def write(path, data):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


# ---------------------------------------------------------------------------------------------
# LLaVA-Bench in the Wild: 12 questions over 5 images, the three categories, numeric and string
# question ids (one non-ASCII, one a digit string), captions as a string and as a list, one image
# listed twice in context.jsonl (the script's dict keeps the last).

QUESTIONS = [
    (0, "001.jpg", "conv", "What colour is the umbrella?"),
    (1, "001.jpg", "detail", "Describe the scene in detail."),
    (2, "002.jpg", "complex", "Why might the cyclist be in a hurry?\nThink about the weather."),
    (3, "002.jpg", "conv", "How many wheels can you see?"),
    ("q-4", "003.jpg", "detail", "Describe the caf\u00e9's menu board, including any \"specials\"."),
    ("fr\u00fch-5", "003.jpg", "complex", "What would a visitor from M\u00fcnchen order here, and why?"),
    (6, "004.jpg", "conv", "Is the dog on the left or the right?"),
    (7, "004.jpg", "detail", "Give a detailed description of the image \U0001f436."),
    ("8", "005.jpg", "complex", "What is unusual about this painting?"),
    (9, "005.jpg", "conv", "Who painted it?"),
    (10, "001.jpg", "detail", "List every object on the table.\tTabs\tand a backslash \\ too."),
    (11, "002.jpg", "complex", "\u00bfQu\u00e9 pasar\u00e1 despu\u00e9s? Answer in English."),
]

CONTEXT = [
    {"id": "ctx-1", "image": "001.jpg", "caption": "A red umbrella stands over a small table with two cups."},
    {"id": "ctx-2", "image": "002.jpg",
     "caption": ["A cyclist rides along a wet street.", "Dark clouds hang above the houses.",
                 "A bicycle with two wheels, one of them muddy."]},
    {"id": "ctx-3", "image": "003.jpg",
     "caption": ["A caf\u00e9 in M\u00fcnchen.", "The menu board reads \"Kaffee & Kuchen\" \u2014 \u20ac3,50.",
                 "Specials: Apfelstrudel \U0001f370"]},
    {"id": "ctx-4a", "image": "004.jpg", "caption": "A stale caption the script's dict replaces."},
    {"id": "ctx-5", "image": "005.jpg", "caption": "A painting of a sunflower field with a melting clock."},
    {"id": "ctx-4b", "image": "004.jpg", "caption": ["A brown dog sits on the right of a bench.", ""]},
]

REFERENCE = [  # GPT-4's answers; some without an answer_id (answer1_id falls back to the question_id)
    "The umbrella is red.",
    "A red umbrella shades a small table set with two cups; the light suggests late afternoon.",
    "Dark clouds are gathering, so the cyclist probably wants to get home before it rains.",
    "Two wheels are visible.",
    "The board lists \"Kaffee & Kuchen\" for \u20ac3,50 and an Apfelstrudel special.",
    "Probably Kaffee und Kuchen: it is the local afternoon custom, and it is on the board.",
    "The dog is on the right.",
    "A brown dog sits on the right side of a wooden bench in a park.",
    "A melting clock lies in a sunflower field, mixing a surrealist motif with a pastoral scene.",
    "The style recalls Salvador Dal\u00ed, though the painting is not signed.",
    "Two cups, a saucer and the umbrella's pole.",
    "It will probably rain soon, and the cyclist will get wet.",
]
REF_HAS_ID = [True, True, False, True, False, True, True, False, True, True, False, True]

MODEL = [  # the model's answers: non-ASCII, quotes, newlines, emoji, control characters
    "It is red \U0001f534.",
    "The image shows a \"red\" umbrella over a table.\nTwo cups stand on it.\n\nThat's all.",
    "Because it looks like rain \u2614 \u2014 the clouds are dark.",
    "I can see 2 wheels.",
    "The menu board says \u201cKaffee & Kuchen\u201d for \u20ac3,50; the special is Apfelstrudel \U0001f370.",
    "A visitor would order Kaffee und Kuchen (coffee and cake).\r\nIt is the custom.",
    "Right.",
    "A dog \U0001f415 sits on a bench.\tIt is brown.\\n is not a newline here.",
    "The clock is melting \u2013 that's unusual \U0001f62e!",
    "Salvador Dal\u00ed, I think. \u4e0d\u786e\u5b9a\u3002",
    "Cups \u00d72, a saucer, the pole.\u0001\u007f",
    "Rain \u2192 a wet cyclist \U0001f6b4\u200d\u2642\ufe0f.",
]
MODEL_ANSWER_IDS = ["aXk2Lm9uZTAwMQ", "Bw3xUq7kPz", "cQ9ddv2Rr1", 31337, "d\u00e9j\u00e0-vu-4", "eW8p0Qq", "fZ1y2",
                    "gH5t6", "hJ7u8", "iK9o0", "jL1p2", "kM3q4"]
MISSING = 6  # the question whose answer the "missing" run drops

# The canned reviews, one per question, in question order. First lines hit every branch of parse_score.
REVIEWS = [
    "8 9\nBoth answers name the colour; the second adds an emoji.",
    "7,6\nThe first answer matches the context more closely.",
    "8  9\nTwo spaces between the scores.",
    "score: 7 8\nA prefix the parser does not expect.",
    "10 9.5\nAssistant 2 quotes the board with \u201ccurly\u201d quotes, \u00e9 \U0001f600.\n\nA \"second\" paragraph.",
    " 7 8\nA leading space.",
    "7 8\r\nA Windows line end.",
    "",
    "x y\nNot numbers at all.",
    "1e1 5\nThe exponent form.",
    "7.3 8.1\nScores that are not round in binary.",
    "6.7,9.2",
]

# parse_score on these as well, not through the script (nothing else reaches it).
PARSE_EXTRA = [
    "inf 5", "-Infinity 2", "nan 1", "NaN -nan", "infinit 5", "7 nan(1)", "1_0 5", "1__0 5", "_1 5", "1_ 5",
    "1e1_0 2", "\t7 8", "7\t 8", "7\x0b 8", "7\x1c 8", "+7 -8", ".5 5.", ". 5", "0x10 5", "7 8 ", "7,8,", "7,8",
    "1e400 5", "1e-400 5", "7 \u0668", "\uff17 \uff18", "\u0661\u0662 3", "7\u00a0 8", "7\u3000 8", "\u3000 7",
    "7 8\u2028more", "7\u200b 8", "\u22127 8", "7 8\n9 9", "9 8\r\nrest", "  ", " ", "7", "7 8 9", "1e 5",
    "e5 5", "1.2.3 4", "1e+ 5", "1E-2 3", "007 08", "-0 0", "8,  9", ",8 9", "\u00e9 9", "0.1 0.7",
]

RULE = {
    "default": {"role": "Assistant",
                "prompt": "Judge the two answers above for helpfulness and accuracy. Start with one line "
                          "holding just the two scores (1 to 10) for Assistant 1 and Assistant 2, separated by "
                          "a space; explain your verdict on the following lines."},
    "llava_bench_conv": {"role": "Assistant",
                         "prompt": "You are shown a short conversation about a picture, described to you in "
                                   "words above. Rate how well each assistant answered the user's question "
                                   "(correct, relevant, precise).\nOutput one line with two scores from 1 to 10, "
                                   "the first for Assistant 1 and the second for Assistant 2, separated by a "
                                   "space. Then explain, without letting the order of the answers sway you."},
    "llava_bench_detail": {"role": "Assistant",
                           "prompt": "The user asked for a detailed description. Compare both descriptions "
                                     "with the \"context\" above: reward accuracy and useful detail, penalise "
                                     "invented objects.\nFirst line: two scores, 1\u201310, for Assistant 1 and "
                                     "Assistant 2, separated by a space. Reasons follow on the next lines."},
    "llava_bench_complex": {"role": "AI helper",
                            "prompt": "This question needs reasoning beyond what is visible. Assess whether "
                                      "each AI helper's reasoning is sound and grounded in the context.\n\n"
                                      "Give the two scores (1 to 10) on the first line, AI helper 1 first, "
                                      "separated by a space, and your explanation afterwards."},
}


def rule_json():
    # LLaVA's layout: one category per line.
    lines = ['    %s: %s' % (json.dumps(k), json.dumps(v)) for k, v in RULE.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


STUB = """\
# openai 0.x as eval_gpt_review_bench.py uses it (written by make_judged_goldens.py): ChatCompletion.create
# records its arguments and answers with the next canned review; error.RateLimitError exists.
import types

CALLS = []
REPLIES = []


class RateLimitError(Exception):
    pass


error = types.SimpleNamespace(RateLimitError=RateLimitError)


class ChatCompletion:
    @staticmethod
    def create(**kwargs):
        CALLS.append(kwargs)
        return {"choices": [{"message": {"role": "assistant", "content": REPLIES[len(CALLS) - 1]}}]}
"""


def run_script(path, argv):
    """Runs a script as __main__ with argv; returns its stdout."""
    old_argv = sys.argv
    sys.argv = [str(path)] + argv
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv = old_argv
    return buf.getvalue()


def summary(printed):
    """summarize_gpt_review.py's printed lines (`category relative reference model`) as JSON."""
    out = {}
    for line in printed.splitlines():
        f = line.split(" ")
        if len(f) == 4:
            out[f[0]] = {"relative": float(f[1]), "reference": float(f[2]), "model": float(f[3]),
                         "printed": line}
    return out


def llavabench(tmp, scripts, stub, official):
    d = OUT / "llavabench"
    questions = [{"question_id": q, "image": img, "text": t, "category": c} for q, img, c, t in QUESTIONS]
    refs = []
    for i, (q, text) in enumerate(zip([q[0] for q in QUESTIONS], REFERENCE)):
        r = {"question_id": q, "text": text}
        if REF_HAS_ID[i]:
            r["answer_id"] = "gpt4-%02d" % i
        r["model_id"] = "gpt-4-0314"
        r["metadata"] = {}
        refs.append(r)
    answers = [{"question_id": q[0], "prompt": q[3], "text": MODEL[i], "answer_id": MODEL_ANSWER_IDS[i],
                "model_id": "llava-v1.5-7b", "metadata": {}} for i, q in enumerate(QUESTIONS)]
    write(d / "questions.jsonl", jsonl(questions))
    write(d / "context.jsonl", jsonl(CONTEXT))
    write(d / "answers_gpt4.jsonl", jsonl(refs))
    write(d / "rule.json", rule_json())
    write(d / "answers/complete.jsonl", jsonl(answers))
    write(d / "answers/missing.jsonl", jsonl(a for i, a in enumerate(answers) if i != MISSING))
    # What the official script reads in the missing run: the dropped line as the C scorer fills it.
    filled = list(answers)
    filled[MISSING] = {"question_id": QUESTIONS[MISSING][0], "text": "", "answer_id": None}
    golden = {"_official": official, "reviews": REVIEWS, "missing_question": MISSING, "runs": {}}
    for run, ans in [("complete", answers), ("missing", filled)]:
        ans_path = tmp / ("answers_%s.jsonl" % run)
        ans_path.write_text(jsonl(ans))
        out = tmp / ("reviews_%s.jsonl" % run)
        argv = ["-q", str(d / "questions.jsonl"), "-c", str(d / "context.jsonl"), "-a", str(d / "answers_gpt4.jsonl"),
                str(ans_path), "-r", str(d / "rule.json"), "-o", str(out)]
        stub.CALLS.clear()
        stub.REPLIES[:] = REVIEWS
        run_script(scripts["llava/eval/eval_gpt_review_bench.py"], argv)
        assert len(stub.CALLS) == len(QUESTIONS), len(stub.CALLS)
        requests = [dict(c) for c in stub.CALLS]
        reviews = out.read_bytes()
        write(d / ("official/%s/reviews.jsonl" % run), reviews)
        # A rerun of the official script asks nothing: it resumes from the reviews file.
        stub.CALLS.clear()
        run_script(scripts["llava/eval/eval_gpt_review_bench.py"], argv)
        assert not stub.CALLS and out.read_bytes() == reviews
        printed = run_script(scripts["llava/eval/summarize_gpt_review.py"], ["-f", str(out)])
        golden["runs"][run] = {
            "answers": "answers/%s.jsonl" % run,
            "questions": len(QUESTIONS),
            "missing": 1 if run == "missing" else 0,
            "requests": requests,
            "reviews_file": "official/%s/reviews.jsonl" % run,
            "summary_printed": printed,
            "summary": summary(printed),
        }
    # parse_score itself, on the canned reviews and on more first lines.
    g = runpy.run_path(str(scripts["llava/eval/eval_gpt_review_bench.py"]), run_name="official_module")
    cases = []
    for review in REVIEWS + PARSE_EXTRA:
        with contextlib.redirect_stdout(io.StringIO()):
            s = g["parse_score"](review)
        cases.append({"review": review, "parsed": isinstance(s[0], float), "score": [repr(x) for x in s]})
    golden["parse_score"] = cases
    write(d / "golden.json", json.dumps(golden, indent=1, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# MM-Vet: LLaVA's question file and answers with numeric and string ids, a repeated id (first place,
# last text), a numeric id and the same digits as a string (one key), an answer to no question.

MMVET_QUESTIONS = [(0, "What is written on the sign?"), (1, "How many apples are there?"),
                   (2, "What is the total price?"), (3, "Explain the joke."), (4, "Which country is this?"),
                   (5, "What is the person holding?"), ("x6", "Read the equation and solve it."),
                   ("\u00fc7", "Describe the chart.")]

MMVET_ANSWERS = [
    (3, "The joke is that the cat is \"reading\" the newspaper \U0001f431."),
    (0, "STOP"),
    (1, "There are 3 apples \U0001f34e\U0001f34e\U0001f34e."),
    ("x6", "x = 2\nbecause 2x + 1 = 5.\tDone."),
    ("2", "$4.50 (as a string id)"),
    (2, "\u20ac4,50 \u2014 the total."),
    (3, "A cat \u201creads\u201d the paper: it's a pun.\r\nSecond line \\ backslash."),
    (4, "Japan \U0001f1ef\U0001f1f5"),
    (5, "An umbrella.\u0001\u007f\u2028"),
    ("\u00fc7", "A bar chart; values rise from 1 to 7 \u2191."),
    (99, "An answer to no question."),
]
MMVET_MISSING = 4  # the question whose answer the "missing" run drops


def mmvet(scripts, official):
    d = OUT / "mmvet"
    qs = [{"question_id": q, "image": "v1_%s.png" % q, "text": t} for q, t in MMVET_QUESTIONS]
    write(d / "llava-mm-vet.jsonl", jsonl(qs))
    answers = [{"question_id": q, "prompt": "", "text": t, "answer_id": "mv%02d" % i, "model_id": "llava-v1.5-7b",
                "metadata": {}} for i, (q, t) in enumerate(MMVET_ANSWERS)]
    runs = {"complete": answers, "missing": [a for a in answers if a["question_id"] != MMVET_MISSING],
            "empty": []}
    golden = {"_official": official, "runs": {}}
    for run, ans in runs.items():
        src = d / ("answers/%s.jsonl" % run)
        write(src, jsonl(ans))
        dst = d / ("official/%s/results.json" % run)
        dst.parent.mkdir(parents=True, exist_ok=True)
        run_script(scripts["scripts/convert_mmvet_for_eval.py"], ["--src", str(src), "--dst", str(dst)])
        result = json.loads(dst.read_text())
        missing = sum("v1_%s" % q["question_id"] not in result for q in qs)
        golden["runs"][run] = {"answers": "answers/%s.jsonl" % run, "results_file": "official/%s/results.json" % run,
                               "questions": len(qs), "missing": missing, "keys": len(result)}
    write(d / "golden.json", json.dumps(golden, indent=1, ensure_ascii=False) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llava", required=True, help="a clone or bare mirror of haotian-liu/LLaVA")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = pathlib.Path(t)
        scripts, sources = {}, {}
        for path in SOURCES:
            b = git_show(args.llava, LLAVA_COMMIT, path)
            f = tmp / "official" / path
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b)
            scripts[path] = f
            sources["haotian-liu/LLaVA@%s:%s" % (LLAVA_COMMIT, path)] = sha256(b)
        official = {"llava_commit": LLAVA_COMMIT, "sources_sha256": sources, "python": platform.python_version(),
                    "numpy": numpy.__version__}
        (tmp / "stub").mkdir()
        (tmp / "stub" / "openai.py").write_text(STUB)
        sys.path.insert(0, str(tmp / "stub"))  # what the script's `import openai` finds
        import openai as stub  # noqa: E402
        llavabench(tmp, scripts, stub, official)
        mmvet(scripts, official)
    print("wrote", OUT / "llavabench", "and", OUT / "mmvet")


if __name__ == "__main__":
    main()
