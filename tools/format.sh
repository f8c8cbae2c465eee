#!/usr/bin/env bash
# Formats every C and CUDA source of the repository with .clang-format (clang-format 14, Debian
# bookworm's), or with --check lists the files that differ and fails: what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
CF=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$CF" ]; then
  echo "format: clang-format not found (tools/install-deps.sh installs it)" >&2
  exit 1
fi
mapfile -t files < <(git ls-files '*.c' '*.h' '*.cu' '*.cuh')
if [ "${1:-}" = "--check" ]; then
  bad=()
  for f in "${files[@]}"; do
    "$CF" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    echo "format: ${#bad[@]} files differ from .clang-format ($("$CF" --version)); run make format:" >&2
    printf '  %s\n' "${bad[@]}" >&2
    exit 1
  fi
  echo "format: ${#files[@]} files match .clang-format"
else
  "$CF" -i "${files[@]}"
  echo "format: ${#files[@]} files formatted"
fi
