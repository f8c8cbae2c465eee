#!/usr/bin/env bash
# Answers files made by `llava eval`, scored by LLaVA's own scripts (run unmodified from a LLaVA clone):
# the demo's model answers POPE's and TextVQA's synthetic data (tests/data/eval/, every image drawn
# from one demo picture), then llava/eval/eval_pope.py and eval_textvqa.py read those answers files
# and print their scores beside ours (scores.json). Recorded once by hand (docs/eval.md); not in CI.
#
#   tools/reference/eval/roundtrip_llava.sh LLAVA_CLONE DEMO_DIR BUILD_DIR [WORK]
#   (DEMO_DIR: what `llava demo --out DIR` made; Python 3 with tqdm for eval_textvqa.py)
set -euo pipefail
LLAVA=${1:?LLaVA clone}; DEMO=${2:?demo folder}; B=${3:?build folder}; W=${4:-$(mktemp -d)}
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$W" && cd "$W"
pic="$DEMO/data/images/eval_00000.png"
draw() {  # every image a question file names, under FOLDER
  "$PY" - "$1" "$2" "$pic" <<'PY'
import json, os, shutil, sys
qfile, folder, pic = sys.argv[1:]
for line in open(qfile):
    q = json.loads(line)
    p = os.path.join(folder, q["image"])
    os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
    shutil.copy(pic, p)
PY
}
mkdir -p llava/eval && touch llava/__init__.py llava/eval/__init__.py
for f in eval_pope m4c_evaluator eval_textvqa; do git -C "$LLAVA" show c121f04:llava/eval/$f.py > llava/eval/$f.py; done
rm -rf pope textvqa && cp -r "$REPO/tests/data/eval/pope" pope && cp -r "$REPO/tests/data/eval/textvqa" textvqa
draw pope/llava_pope_test.jsonl pope/val2014
draw textvqa/llava_textvqa_val_v051_ocr.jsonl textvqa/train_images
for b in pope textvqa; do
  "$B/llava" eval --model "$DEMO/checkpoints/stage2/model" --tokenizer "$DEMO/tokenizer.model" --benchmark $b \
    --data $b --out out_$b > /dev/null
done
echo "== POPE: LLaVA's eval_pope.py on llava eval's answers (F1, acc, precision, recall, yes ratio per split)"
"$PY" llava/eval/eval_pope.py --annotation-dir pope/coco --question-file pope/llava_pope_test.jsonl \
  --result-file out_pope/answers.jsonl | grep -E "Category|^[0-9.]+, "
echo "== POPE: llava eval's scores.json"
"$PY" -c "import json; s = json.load(open('out_pope/scores.json'))
for k, v in sorted(s['splits'].items()): print(k, 'f1 %.3f acc %.3f' % (v['f1'] / 100, v['acc'] / 100))
print('mean F1', s['f1'])"
echo "== TextVQA: LLaVA's eval_textvqa.py on llava eval's answers"
"$PY" -m llava.eval.eval_textvqa --annotation-file textvqa/TextVQA_0.5.1_val.json --result-file out_textvqa/answers.jsonl 2>/dev/null | grep Accuracy
echo "== TextVQA: llava eval's scores.json"
"$PY" -c "import json; print(json.load(open('out_textvqa/scores.json')))"
