#!/bin/sh
# Runs a fuzz target for a few seconds over its committed corpus (copied, so the run never edits
# the repository). Fails when the target finds a crash, leak, timeout or sanitizer error.
# Usage: run_fuzz.sh TARGET CORPUS_DIR SECONDS
set -u
target=$1 corpus=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus"
cp -r "$corpus"/. "$work/corpus"/
"$target" -max_total_time="$seconds" -seed=1 -max_len=4096 -timeout=5 -rss_limit_mb=2048 \
  -artifact_prefix="$work/" "$work/corpus" >"$work/log" 2>&1
rc=$?
tail -n 5 "$work/log"
if [ $rc -ne 0 ]; then
  grep -E "ERROR|SUMMARY|Test unit written" "$work/log" | head -n 20
  echo "fuzz: $(basename "$target") FAILED (exit $rc)"
  exit 1
fi
echo "fuzz: $(basename "$target") ran ${seconds}s over $(ls "$corpus" | wc -l) seed inputs without findings"
