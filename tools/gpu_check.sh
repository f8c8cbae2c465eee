#!/usr/bin/env bash
# The GPU check, one call on a machine with an NVIDIA GPU: the GPU tests (ctest -L gpu), the kernel
# benchmark, the training-step benchmark and the PyTorch baseline beside it, generation speed
# (llava bench-generate and PyTorch's generate beside it), compute-sanitizer if time is left, then a
# short table. Every log goes to OUTDIR (at most 8 files). Meant to finish in about 7 minutes on one
# H100.
#
#   tools/gpu_check.sh OUTDIR
#
# Binaries: from .deps/gpu-bundle.tar.xz when it exists (tools/gpu_bundle.sh builds it on a machine
# with the build's libraries: nothing is compiled on the GPU machine, which may have no package
# registry), else built here for the local GPU's architecture (the libraries then come from the
# system). The bundle's test list holds absolute paths of the machine that built it (/work/main):
# when this checkout lives elsewhere, /work/main is made a link to it.
#
# LLAVA_GPU_CHECK_BUDGET (seconds, default 420) bounds the optional steps at the end;
# LLAVA_GPU_CHECK_SKIP="tests kernels step torch ideal generate sanitizer" leaves those steps out (a rerun that needs only some);
# LLAVA_GPU_CHECK_IDEAL_ARGS adds arguments to tools/bench/torch_ideal_step.py (--attn varlen, say);
# LLAVA_GPU_CHECK_GEN_LAYERS (default 32: all of LLaVA-7B's, 13.5 GB of bf16 weights) and
# LLAVA_GPU_CHECK_GEN_ARGS (extra arguments to both generation benchmarks) shape the generation step;
# LLAVA_GPU_CHECK_KERNEL_ARGS adds arguments to bench-kernels (--only attention, say);
# LLAVA_GPU_CHECK_STAGE=1 runs both training-step benchmarks as stage 1 (projector only, captions);
# LLAVA_PEAK_TFLOPS gives the bf16 peak for MFU when the kernel benchmark (which measures it) is skipped.
# A GPU test that skips (no usable device) fails the check: the exit status is the tests' verdict.
set -uo pipefail
OUT=${1:?usage: tools/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
REPO=$PWD
BUDGET=${LLAVA_GPU_CHECK_BUDGET:-420}
exec > >(tee "$OUT/gpu_check.log") 2>&1
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
skip() { [[ " ${LLAVA_GPU_CHECK_SKIP:-} " == *" $1 "* ]]; }
# (The commit that counts is the bundle's, printed below: a copied checkout's git may be stale.)
echo "== gpu_check on $(hostname), $(date -u +%FT%TZ); checkout $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader || true
grep -E '^PRETTY_NAME' /etc/os-release 2>/dev/null || true
command -v nvcc >/dev/null && nvcc --version | tail -2 | head -1
ORIG_LD=${LD_LIBRARY_PATH:-}

if [ -f .deps/gpu-bundle.tar.xz ]; then
  rm -rf .deps/bundle && mkdir -p .deps/bundle
  tar -C .deps/bundle -xJf .deps/gpu-bundle.tar.xz || { echo "gpu_check: cannot unpack the bundle"; exit 1; }
  echo "== bundle: $(cat .deps/bundle/BUNDLE)"
  B=$(cd .deps/bundle && ls -d build-sm* | head -1)
  if [ "$REPO" != /work/main ]; then
    if [ -e /work/main ]; then echo "gpu_check: /work/main exists and is not this checkout: ctest paths will be wrong"
    else mkdir -p /work && ln -s "$REPO" /work/main && echo "   /work/main -> $REPO"; fi
  fi
  rm -rf "$B" && cp -r ".deps/bundle/$B" "$B"
  export LD_LIBRARY_PATH="$REPO/.deps/bundle/lib${ORIG_LD:+:$ORIG_LD}"
  # CUDA's libraries come from this machine: find the ones the loader does not see yet.
  for lib in $(ldd "$B/llava" "$B/gpu_test_dist_nccl" | awk '/not found/ {print $1}' | sort -u); do
    p=$(find /usr/local /usr/lib /opt -name "$lib" 2>/dev/null | head -1)
    if [ -n "$p" ]; then export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$p")"; echo "   $lib: $p"
    else echo "   $lib: not found on this machine"; fi
  done
  ldd "$B/llava" | grep -E "cudart|cublas|nccl|not found"
else
  B=build-gpu
  ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
  ARCH=${ARCH:-90}
  echo "== build (sm_$ARCH)"
  cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DLLAVA_CUDA_ARCHS="$ARCH" -DLLAVA_FUZZ=OFF -DLLAVA_MPI=OFF \
    > "$OUT/build.log" 2>&1 && cmake --build "$B" -j "$(nproc)" >> "$OUT/build.log" 2>&1 ||
    { grep -E "error|Error" "$OUT/build.log" | head -30; echo "gpu_check: build failed"; exit 1; }
fi
echo "   ready after $(elapsed) s"

ctest_rc=0
if ! skip tests; then
echo "== GPU tests (ctest -L gpu)"
(cd "$B" && timeout 210 ctest -L gpu --timeout 100 -V) > "$OUT/ctest-gpu.log" 2>&1
ctest_rc=$?
grep -E "Test +#|tests passed|tests failed|passed, [0-9]+ failed" "$OUT/ctest-gpu.log"
# On a GPU machine a skipped GPU test is a failure: it found no device it could use (ctest counts
# a skip as passed), or was not run at all.
skipped=$(grep -cE "\*\*\*Skipped|Not Run" "$OUT/ctest-gpu.log")
if [ "$skipped" -gt 0 ]; then
  echo "gpu_check: $skipped GPU test(s) skipped or not run on a GPU machine: that is a failure"
  grep -E "\*\*\*Skipped|Not Run" "$OUT/ctest-gpu.log"
  [ $ctest_rc -ne 0 ] || ctest_rc=1
fi
if [ $ctest_rc -ne 0 ]; then  # the failures, for the reply's tail
  grep -E "FAIL|rror" "$OUT/ctest-gpu.log" | grep -v "Test +#" | head -40
fi
fi

PEAK=${LLAVA_PEAK_TFLOPS:-}
STAGE=${LLAVA_GPU_CHECK_STAGE:-2}  # the training-step benchmarks: 2 (665K mix, 16 per step) or 1 (captions, 32)
SB=$([ "$STAGE" = 1 ] && echo 32 || echo 16)
if ! skip kernels; then
  echo "== kernel benchmark ($(elapsed) s)"
  timeout 120 "$B/llava" bench-kernels --reps 10 ${LLAVA_GPU_CHECK_KERNEL_ARGS:-} > "$OUT/bench-kernels.log" 2>&1
  echo "   rc $?"; tail -55 "$OUT/bench-kernels.log"
  PEAK=$(grep -E "^peaks measured" "$OUT/bench-kernels.log" | grep -oE "= [0-9.]+ TFLOP/s" | grep -oE "[0-9.]+" | head -1)
fi

if ! skip step; then
  echo "== training step, llava.c ($(elapsed) s)"
  timeout 90 "$B/llava" bench-step --device cuda --stage "$STAGE" --layers 4 --batch "$SB" --steps 5 \
    ${PEAK:+--peak-tflops $PEAK} > "$OUT/bench-step.log" 2>&1
  echo "   rc $?"; tail -10 "$OUT/bench-step.log"
  if [ "$STAGE" = 2 ]; then  # LoRA r 128 (LLaVA's recipe) on the same shapes: docs/lora.md wants >= 1.3x
    echo "== training step with LoRA r 128, llava.c ($(elapsed) s)"
    timeout 90 "$B/llava" bench-step --device cuda --stage 2 --lora 128 --layers 4 --batch "$SB" --steps 5 \
      ${PEAK:+--peak-tflops $PEAK} > "$OUT/bench-step-lora.log" 2>&1
    echo "   rc $?"; tail -3 "$OUT/bench-step-lora.log"
    # Research knobs (docs/ablations.md): 144 visual tokens (average pooling, stride 2) instead of 576, and the
    # whole CLIP tower trained (its layers recomputed) on the 576-token shapes.
    echo "== training step with 144 visual tokens, then with the tower trained, llava.c ($(elapsed) s)"
    timeout 60 "$B/llava" bench-step --device cuda --stage 2 --pool 2 --layers 4 --batch "$SB" --steps 5 \
      ${PEAK:+--peak-tflops $PEAK} > "$OUT/bench-step-pool.log" 2>&1
    echo "   rc $?"; tail -2 "$OUT/bench-step-pool.log"
    timeout 60 "$B/llava" bench-step --device cuda --stage 2 --train-vision all --layers 4 --batch "$SB" --steps 5 \
      ${PEAK:+--peak-tflops $PEAK} > "$OUT/bench-step-vision.log" 2>&1
    echo "   rc $?"; tail -2 "$OUT/bench-step-vision.log"
  fi
fi

if ! skip torch; then
  echo "== training step, PyTorch + transformers (bf16, SDPA), same shapes and length mix ($(elapsed) s)"
  LD_LIBRARY_PATH=$ORIG_LD PYTHONUNBUFFERED=1 timeout 150 python3 tools/bench/torch_llava_step.py --stage "$STAGE" \
    --layers 4 --batch "$SB" --steps 5 ${PEAK:+--peak-tflops $PEAK} > "$OUT/torch-step.log" 2>&1
  echo "   rc $?"; tail -10 "$OUT/torch-step.log"
fi

# The ideal PyTorch stack on the same samples (issue 17): one packed sequence per step with document
# masking (flex_attention), regional torch.compile, Liger kernels, fused AdamW on fp32 masters. Liger
# comes from its wheel in .whl/ (carried: pip download --no-deps -d .whl liger-kernel==0.8.5), unpacked
# onto PYTHONPATH; without it the script says so and runs plain torch.
if ! skip ideal; then
  echo "== training step, ideal PyTorch (packed, flex_attention, torch.compile, Liger), same shapes and samples ($(elapsed) s)"
  IDEAL_PATH=
  LIGER_WHL=$(ls .whl/liger_kernel-*.whl 2>/dev/null | head -1)
  if [ -n "$LIGER_WHL" ]; then
    IDEAL_PATH=$(mktemp -d) && python3 -m zipfile -e "$LIGER_WHL" "$IDEAL_PATH" && echo "   liger-kernel: $LIGER_WHL" ||
      { echo "   liger-kernel: cannot unpack $LIGER_WHL"; IDEAL_PATH=; }
  fi
  LD_LIBRARY_PATH=$ORIG_LD PYTHONPATH="${IDEAL_PATH}${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 timeout 240 \
    python3 tools/bench/torch_ideal_step.py --stage "$STAGE" --layers 4 --batch "$SB" --steps 5 \
    ${PEAK:+--peak-tflops $PEAK} ${LLAVA_GPU_CHECK_IDEAL_ARGS:-} > "$OUT/torch-ideal-step.log" 2>&1
  echo "   rc $?"; grep -vE '^ +(File|\^)' "$OUT/torch-ideal-step.log" | tail -14
fi

# Generation, llava.c and PyTorch in turn on the same card: LLaVA-7B's language model (random
# weights) after a 600-token prompt (the image prompt) at batch 1, and a batch of 64 prompts of 700
# tokens (the length mix's typical one; torch_generate.py's own default is the mix itself), 128 new
# tokens each, greedy, no early stop. Both print one JSON line; the summary compares them. Skipped
# when less than 150 s of the budget is left.
GEN_LAYERS=${LLAVA_GPU_CHECK_GEN_LAYERS:-32}
if ! skip generate; then
  left=$(( BUDGET - $(elapsed) ))
  if [ $left -lt 150 ]; then
    echo "== generation: skipped, ${left} s of the budget left"
  else
    : > "$OUT/generate.log"
    for run in "1 600" "64 700"; do
      read -r gb gp <<< "$run"
      echo "== generation, llava.c: batch $gb, prompt $gp tokens, $GEN_LAYERS layers ($(elapsed) s)"
      echo "#### llava bench-generate batch $gb prompt $gp" >> "$OUT/generate.log"
      timeout 120 "$B/llava" bench-generate --device cuda --shape 7b --layers "$GEN_LAYERS" --batch "$gb" \
        --prompt-tokens "$gp" --new-tokens 128 --json ${LLAVA_GPU_CHECK_GEN_ARGS:-} >> "$OUT/generate.log" 2>&1
      echo "   rc $?"; grep -E '^\{' "$OUT/generate.log" | tail -1
    done
    echo "== generation, PyTorch + transformers generate (static cache, bf16, SDPA) ($(elapsed) s)"
    echo "#### torch_generate.py" >> "$OUT/generate.log"
    LD_LIBRARY_PATH=$ORIG_LD PYTHONUNBUFFERED=1 timeout 240 python3 tools/bench/torch_generate.py \
      --layers "$GEN_LAYERS" --prompt-tokens 600 --new-tokens 128 --batch 64 --batch-prompts 700 \
      ${LLAVA_GPU_CHECK_GEN_ARGS:-} >> "$OUT/generate.log" 2>&1
    echo "   rc $?"; sed -n '/^#### torch_generate.py/,$p' "$OUT/generate.log" | tail -4
  fi
fi

# Nsight Compute on the attention kernels (LLAVA_GPU_CHECK_PROFILE=1): the first forward, dK/dV
# and dQ launches of the LM shape (12 launches), with the sections that say why a kernel is slow. Clocks are left
# as they are (--clock-control none).
if [ "${LLAVA_GPU_CHECK_PROFILE:-0}" = 1 ]; then
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  if [ -n "$NCU" ]; then
    echo "== ncu: attention kernels ($(elapsed) s)"
    timeout 70 "$NCU" --clock-control none -k 'regex:attn_(fwd|bwd_dkdv|bwd_dq)_kernel' --launch-count 12 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section ComputeWorkloadAnalysis \
      --section MemoryWorkloadAnalysis --section WarpStateStats --section SourceCounters \
      "$B/llava" bench-kernels --only "lm causal" --reps 1 > "$OUT/ncu-attention.txt" 2>&1
    echo "   rc $?"
    grep -E "attn_|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Theoretical Occ|Issue Slots Busy|Block Limit" \
      "$OUT/ncu-attention.txt" | head -40
  else
    echo "== ncu: not found"
  fi
fi

# compute-sanitizer, as far as the budget goes: memcheck of the whole model and of a short training
# run, then racecheck (shared memory) and memcheck of the attention kernels on their quick set, then
# of the decode kernels on their registry cases.
if ! skip sanitizer && command -v compute-sanitizer >/dev/null; then
  : > "$OUT/sanitizer.log"
  while read -r tool name cmd; do
    left=$(( BUDGET - $(elapsed) ))
    if [ $left -lt 45 ]; then echo "== sanitizer: no time left for $tool $name"; continue; fi
    echo "== compute-sanitizer $tool: $name (${left} s left)"
    echo "#### $tool $name" >> "$OUT/sanitizer.log"
    LLAVA_TEST_QUICK=1 timeout $(( left - 15 )) compute-sanitizer --tool "$tool" --error-exitcode 9 $cmd \
      >> "$OUT/sanitizer.log" 2>&1 < /dev/null
    echo "   rc $? (9: errors found, 124: ran out of time)"
    tail -3 "$OUT/sanitizer.log" | grep -E "ERROR SUMMARY|RACECHECK SUMMARY" || true
  done <<LIST
memcheck model $B/gpu_test_cuda_model
memcheck demo-fast $B/llava demo --fast --check --device cuda --out /tmp/demo-sanitized
racecheck attention-quick $B/gpu_test_cuda_attention
memcheck attention-quick $B/gpu_test_cuda_attention
memcheck attention-decode $B/gpu_test_cuda_ops attention_decode
racecheck attention-decode $B/gpu_test_cuda_ops attention_decode
LIST
fi

echo
echo "== summary ($(elapsed) s)"
printf "%-28s %s\n" "GPU tests" "$(grep -sE 'tests passed' "$OUT/ctest-gpu.log" || echo "not run or did not finish (rc $ctest_rc)")"
grep -sE "^ *[0-9]+/[0-9]+ Test" "$OUT/ctest-gpu.log" | sed 's/^/  /'
printf "%-28s %s\n" "llava.c step" "$(grep -sE '^bench-step:' "$OUT/bench-step.log" | tail -1 || echo n/a)"
printf "%-28s %s\n" "llava.c LoRA step" "$(grep -sE '^bench-step:' "$OUT/bench-step-lora.log" | tail -1 || echo n/a)"
printf "%-28s %s\n" "llava.c 144-token step" "$(grep -sE '^bench-step:' "$OUT/bench-step-pool.log" | tail -1 || echo n/a)"
printf "%-28s %s\n" "llava.c tower-trained step" "$(grep -sE '^bench-step:' "$OUT/bench-step-vision.log" | tail -1 || echo n/a)"
printf "%-28s %s\n" "PyTorch step" "$(grep -sE '^torch-step:' "$OUT/torch-step.log" | tail -1 || echo n/a)"
grep -sE '^torch-attention' "$OUT/torch-step.log" | sed 's/^/  /'
printf "%-28s %s\n" "PyTorch ideal step" "$(grep -sE '^torch-ideal-step:' "$OUT/torch-ideal-step.log" | tail -1 || echo n/a)"
grep -sE '^ideal: attention' "$OUT/torch-ideal-step.log" | tail -1 | sed 's/^/  /'
[ -f "$OUT/bench-kernels.log" ] && grep -E '^attention' "$OUT/bench-kernels.log" | tr -s ' ' | sed 's/^/  llava.c /'
ours=$(grep -soE '^bench-step: [0-9]+' "$OUT/bench-step.log" | grep -oE '[0-9]+$')
theirs=$(grep -soE '^torch-step: [0-9]+' "$OUT/torch-step.log" | grep -oE '[0-9]+$')
if [ -n "${ours:-}" ] && [ -n "${theirs:-}" ]; then
  printf "%-28s %s\n" "tokens/s ratio (ours/torch)" "$(awk -v a="$ours" -v b="$theirs" 'BEGIN{printf "%.2f", a/b}')"
fi
ideal=$(grep -soE '^torch-ideal-step: [0-9]+' "$OUT/torch-ideal-step.log" | tail -1 | grep -oE '[0-9]+$')
if [ -n "${ours:-}" ] && [ -n "${ideal:-}" ]; then
  printf "%-28s %s\n" "tokens/s ratio (ours/ideal)" "$(awk -v a="$ours" -v b="$ideal" 'BEGIN{printf "%.2f", a/b}')"
fi
# Generation: llava.c's JSON lines (one per run, by batch) against torch_generate.py's (impl "torch").
if [ -f "$OUT/generate.log" ]; then
  python3 - "$OUT/generate.log" "$GEN_LAYERS" <<'PY' || echo "generation: no comparison (rc $?)"
import json, sys
ours, torch = {}, None
for line in open(sys.argv[1], errors="replace"):
    line = line.strip()
    if not line.startswith("{"):
        continue
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if j.get("impl") == "torch":
        torch = j
    elif "decode_tokens_per_s" in j:
        ours[int(j.get("batch", 0))] = j
theirs = {}
for key in ("batch1", "batched"):
    r = (torch or {}).get(key)
    if r and "error" not in r:
        theirs[int(r["batch"])] = r
print(f"generation, {sys.argv[2]} layers (llava.c / PyTorch{' ' + torch['transformers'] if torch else ''})")
print(f"  {'':<26} {'llava.c':>10} {'PyTorch':>10} {'ours/torch':>10}")
def row(what, a, b, fmt="{:.1f}"):
    fa = fmt.format(a) if a is not None else "n/a"
    fb = fmt.format(b) if b is not None else "n/a"
    ratio = f"{a / b:.2f}" if a and b else ""
    print(f"  {what:<26} {fa:>10} {fb:>10} {ratio:>10}")
for batch in sorted(set(ours) | set(theirs)):
    o, t = ours.get(batch, {}), theirs.get(batch, {})
    p = o.get("prompt_tokens", t.get("prompt_tokens"))
    row(f"batch {batch} x {p}: TTFT ms", o.get("ttft_ms"), t.get("ttft_ms"))
    row(f"  decode tokens/s", o.get("decode_tokens_per_s"), t.get("decode_tokens_per_s"))
    if batch == 1:  # the bound is batch 1's (every token reads all the weights)
        row(f"  of the bandwidth bound", o.get("fraction_of_bound"), t.get("fraction_of_bound"), "{:.1%}")
PY
fi
exit $ctest_rc
