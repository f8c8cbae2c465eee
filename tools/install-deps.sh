#!/usr/bin/env bash
# Installs, from Debian's packages, whatever llava.c needs to build and test that this machine lacks.
# Safe to run again: it asks apt only for missing packages, and does nothing when all are present.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config       # compiler and build
  libcjson-dev                           # configs, safetensors headers, LLaVA JSON
  libhdf5-dev                            # prepared datasets (llava prep)
  libopenblas-dev                        # GEMMs on the CPU backend
  libjpeg62-turbo-dev libpng-dev          # image decoding (GIF is decoded by data/image_gif.c)
  libopenmpi-dev openmpi-bin             # data-parallel tests on the CPU
  libmicrohttpd-dev                      # llava serve's HTTP server
  libcurl4-openssl-dev                   # llava eval's judge (an OpenAI-compatible endpoint)
  curl                                   # llava serve's tests talk to it with curl
  clang libclang-rt-14-dev               # libFuzzer targets run in the test suite
  clang-format                           # the formatting check (make format-check)
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all build dependencies present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
