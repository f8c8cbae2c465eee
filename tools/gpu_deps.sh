#!/usr/bin/env bash
# Downloads the Debian packages the build needs into .deps/debs, to carry to a GPU machine that
# has no package registry (tools/gpu_check.sh unpacks them there). Run on a Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps/debs
cd .deps/debs
pkgs="libcjson-dev libcjson1 libhdf5-dev libhdf5-103-1 libhdf5-hl-100 libsz2 libaec0 libcurl4 libopenblas-dev
      libopenblas0-pthread libopenblas-pthread-dev libgfortran5 libjpeg62-turbo-dev libjpeg62-turbo libpng-dev libpng16-16"
apt-get download $pkgs
ls -la
