#!/usr/bin/env bash
# The GPU check, one call on a machine with an NVIDIA GPU: build for its architecture, run the GPU
# tests, the kernel benchmark, the training-step benchmark and the PyTorch baseline beside it, then
# print a short table. Every log goes to OUTDIR. Meant to finish in under 8 minutes on one H100.
#
#   tools/gpu_check.sh OUTDIR
#
# Libraries the build needs (cJSON, HDF5, OpenBLAS, libjpeg, libpng) come from the system, or, on a
# machine with no package registry, from Debian packages carried in .deps/debs (tools/gpu_deps.sh
# downloads them on a machine that has one); they are unpacked into .deps/root.
set -uo pipefail
OUT=${1:?usage: tools/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
exec > >(tee "$OUT/gpu_check.log") 2>&1
start=$(date +%s)
echo "== gpu_check: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
ARCH=${ARCH:-90}

if [ -d .deps/debs ] && ! pkg-config --exists libcjson 2>/dev/null; then
  echo "== unpacking carried packages into .deps/root"
  mkdir -p .deps/root
  for f in .deps/debs/*.deb; do dpkg -x "$f" .deps/root; done
  R=$PWD/.deps/root
  export CMAKE_PREFIX_PATH="$R/usr:${CMAKE_PREFIX_PATH:-}"
  export PKG_CONFIG_PATH="$R/usr/lib/x86_64-linux-gnu/pkgconfig:$R/usr/share/pkgconfig:$R/usr/lib/x86_64-linux-gnu/openblas-pthread/pkgconfig:${PKG_CONFIG_PATH:-}"
  export PKG_CONFIG_SYSROOT_DIR=""
  export CPATH="$R/usr/include:$R/usr/include/hdf5/serial:$R/usr/include/x86_64-linux-gnu:${CPATH:-}"
  export LIBRARY_PATH="$R/usr/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu/hdf5/serial:$R/usr/lib/x86_64-linux-gnu/openblas-pthread:${LIBRARY_PATH:-}"
  export LD_LIBRARY_PATH="$LIBRARY_PATH:${LD_LIBRARY_PATH:-}"
  HDF5_HINT="-DHDF5_ROOT=$R/usr -DHDF5_INCLUDE_DIRS=$R/usr/include/hdf5/serial"
  # pkg-config files carry absolute /usr prefixes: point them at the unpacked tree.
  for pc in $(find "$R" -name '*.pc'); do sed -i "s|^prefix=/usr|prefix=$R/usr|" "$pc"; done
fi

echo "== build (sm_$ARCH)"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DLLAVA_CUDA_ARCHS="$ARCH" -DLLAVA_FUZZ=OFF ${HDF5_HINT:-} \
  > "$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; echo "gpu_check: configure failed"; exit 1; }
cmake --build build-gpu -j "$(nproc)" > "$OUT/build.log" 2>&1 || { grep -E "error" "$OUT/build.log" | head -30; echo "gpu_check: build failed"; exit 1; }
echo "   built in $(( $(date +%s) - start )) s"

echo "== GPU tests (ctest -L gpu)"
(cd build-gpu && timeout 300 ctest -L gpu --output-on-failure) > "$OUT/ctest-gpu.log" 2>&1
ctest_rc=$?
grep -E "Test +#|tests passed|FAIL|err" "$OUT/ctest-gpu.log" | head -40

echo "== kernel benchmark"
timeout 180 build-gpu/llava bench-kernels > "$OUT/bench-kernels.log" 2>&1
cat "$OUT/bench-kernels.log" | tail -40
PEAK=$(grep -oE "peak[^0-9]*[0-9.]+ TFLOP/s" "$OUT/bench-kernels.log" | grep -oE "[0-9.]+" | tail -1)

echo "== training step, llava.c"
timeout 180 build-gpu/llava bench-step --device cuda --layers 4 --batch 16 --steps 5 ${PEAK:+--peak-tflops $PEAK} \
  > "$OUT/bench-step.log" 2>&1
tail -8 "$OUT/bench-step.log"

echo "== training step, PyTorch + transformers (bf16, SDPA), same shapes and length mix"
timeout 240 python3 tools/bench/torch_llava_step.py --layers 4 --batch 16 --steps 5 ${PEAK:+--peak-tflops $PEAK} \
  > "$OUT/torch-step.log" 2>&1
tail -8 "$OUT/torch-step.log"

echo
echo "== summary ($(( $(date +%s) - start )) s)"
printf "%-28s %s\n" "GPU tests" "$(grep -E 'tests passed' "$OUT/ctest-gpu.log" || echo "did not finish (rc $ctest_rc)")"
printf "%-28s %s\n" "llava.c step" "$(grep -E '^bench-step:' "$OUT/bench-step.log" | tail -1 || echo n/a)"
printf "%-28s %s\n" "PyTorch step" "$(grep -E '^torch-step:' "$OUT/torch-step.log" | tail -1 || echo n/a)"
printf "%-28s %s\n" "PyTorch attention" "$(grep -E '^torch-attention:' "$OUT/torch-step.log" | tail -1 || echo n/a)"
ours=$(grep -oE '^bench-step: [0-9]+' "$OUT/bench-step.log" | grep -oE '[0-9]+$')
theirs=$(grep -oE '^torch-step: [0-9]+' "$OUT/torch-step.log" | grep -oE '[0-9]+$')
if [ -n "${ours:-}" ] && [ -n "${theirs:-}" ]; then
  printf "%-28s %s\n" "tokens/s ratio (ours/torch)" "$(awk -v a="$ours" -v b="$theirs" 'BEGIN{printf "%.2f", a/b}')"
fi
exit $ctest_rc
