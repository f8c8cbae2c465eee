#!/usr/bin/env bash
# Builds the GPU binaries here (sm_90 by default) and packs them, with the shared libraries they
# need that a bare CUDA image lacks (cJSON, HDF5 and its dependencies, OpenBLAS, libjpeg, libpng),
# into .deps/gpu-bundle.tar.xz. tools/gpu_check.sh unpacks it on a GPU machine that has no package
# registry and runs the tests and benchmarks without building there. CUDA's own libraries (cudart,
# cuBLASLt, NCCL) and glibc/libstdc++ are taken from the GPU machine.
#
#   tools/gpu_bundle.sh [ARCH]        # ARCH: 90 (H100/H200, default), 80 (A100), ...
set -euo pipefail
ARCH=${1:-90}
cd "$(dirname "$0")/.."
B=build-sm$ARCH
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DLLAVA_CUDA_ARCHS="$ARCH" -DLLAVA_FUZZ=OFF -DLLAVA_MPI=OFF >/dev/null
cmake --build "$B" -j "$(nproc)" >/dev/null
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$B" "$stage/lib"
cp "$B/llava" "$B"/gpu_test_* "$B/test_op_preconditions" "$B/CTestTestfile.cmake" "$stage/$B/"
strip --strip-debug "$stage/$B"/* 2>/dev/null || true
ldd "$B/llava" "$B"/gpu_test_* | awk '/=>/ {print $3}' | sort -u |
  grep -vE '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux[^/]*|libstdc\+\+|libgcc_s|libcudart|libcublas|libcublasLt|libnccl)\.so' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+changes') sm_$ARCH $(date -u +%FT%TZ)" > "$stage/BUNDLE"
mkdir -p .deps
tar -C "$stage" -cJf .deps/gpu-bundle.tar.xz .
ls -la .deps/gpu-bundle.tar.xz
cat "$stage/BUNDLE"
