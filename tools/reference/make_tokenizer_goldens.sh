#!/bin/sh
# Regenerates tests/data/tokenizer/ (see make_tokenizer_goldens.py). Run from the repository root.
#   LLAMA      the LLaMA/Vicuna tokenizer.model   (default tests/data/tokenizer/llama.model)
#   LLAVA      a git clone of haotian-liu/LLaVA holding commits 44e0562 and c121f04
#   TORCH_SITE a site-packages folder with torch, when the pinned environments lack it (optional)
set -eu
LLAMA=${LLAMA:-tests/data/tokenizer/llama.model}
LLAVA=${LLAVA:?set LLAVA to a clone of https://github.com/haotian-liu/LLaVA}
VENV=${VENV:-/tmp/llava-tok}
for v in 431 437; do
  if [ ! -x "$VENV$v/bin/python" ]; then
    python3 -m venv "$VENV$v"
    "$VENV$v/bin/pip" install -q -r "tools/reference/requirements-tokenizer-$v.txt"
  fi
done
extra=""
if [ -n "${TORCH_SITE:-}" ]; then extra="--torch-site $TORCH_SITE"; fi
script=tools/reference/make_tokenizer_goldens.py
out=tests/data/tokenizer
rm -f $out/*.ids $out/*.prep.jsonl $out/*.decode.tsv $out/corpus.jsonl $out/prompts.jsonl $out/samples.jsonl $out/tiny.model
"$VENV"431/bin/python $script corpus --llama "$LLAMA"
"$VENV"431/bin/python $script samples
"$VENV"431/bin/python $script tiny
"$VENV"431/bin/python $script sp --llama "$LLAMA"
"$VENV"431/bin/python $script hf --llama "$LLAMA" --llava "$LLAVA" $extra
"$VENV"437/bin/python $script hf --llama "$LLAMA" --llava "$LLAVA" $extra
ls -l $out
