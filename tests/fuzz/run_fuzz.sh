#!/bin/sh
# Runs a fuzz target for a few seconds over its committed corpus (copied, so the run never edits
# the repository). Usage: run_fuzz.sh TARGET CORPUS_DIR SECONDS
set -e
target=$1 corpus=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$corpus"/. "$work"/
"$target" -max_total_time="$seconds" -seed=1 -max_len=4096 -timeout=5 -rss_limit_mb=2048 \
  -artifact_prefix="$work/" "$work" 2>&1 | tail -n 5
echo "fuzz: $(basename "$target") ran ${seconds}s over $(ls "$corpus" | wc -l) seed inputs without findings"
