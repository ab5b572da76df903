#!/usr/bin/env bash
# Compiles the CUDA-only C++ of Co-Encoder (the `#if defined(COENC_WITH_CUDA)` parts: CUDA graphs, streams,
# events) for syntax and types on a machine without CUDA, before a GPU machine's time is spent on a build that
# fails. It checks against Debian's libtorch headers (1.13) and the CUDA 11.8 headers of Debian's non-free
# nvidia-cuda-dev, downloaded once into .deps-cuda/ (774 MB; only its headers are unpacked). Not a build: nothing
# is linked or run, and the GPU machine's PyTorch may differ in API (the compat header's business).
#
#   scripts/cuda_syntax_check.sh                        every source file that mentions COENC_WITH_CUDA
#   scripts/cuda_syntax_check.sh src/engine/graph_decoder.cpp ...
set -euo pipefail
cd "$(dirname "$0")/.."
deps=$PWD/.deps-cuda
if [ ! -f "$deps/usr/include/cuda_runtime_api.h" ]; then
  mkdir -p "$deps/apt/lists/partial" "$deps/apt/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm non-free" \
    >"$deps/apt/sources.list"
  apt=(-o Dir::Etc::sourcelist="$deps/apt/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$deps/apt/lists"
       -o Dir::Cache::Archives="$deps/apt/archives")
  apt-get "${apt[@]}" update >/dev/null
  (cd "$deps/apt/archives" && apt-get "${apt[@]}" download nvidia-cuda-dev 2>&1 | grep -v "^W: Download is performed unsandboxed")
  dpkg-deb --fsys-tarfile "$deps"/apt/archives/nvidia-cuda-dev_*.deb | tar -x -C "$deps" --wildcards './usr/include/*'
  rm -f "$deps"/apt/archives/*.deb
fi
# A header PyTorch's build generates and Debian's CPU package leaves out.
mkdir -p "$deps/stub/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' >"$deps/stub/c10/cuda/impl/cuda_cmake_macros.h"
files=("$@")
[ ${#files[@]} -gt 0 ] || mapfile -t files < <(grep -rl 'COENC_WITH_CUDA' src tools tests --include='*.cpp')
status=0
for f in "${files[@]}"; do
  if c++ -std=gnu++17 -fsyntax-only -Wall -Wextra -Wno-unused-parameter -D_GLIBCXX_USE_CXX11_ABI=1 \
       -DCOENC_WITH_CUDA=1 -DCOENC_WITH_SERVER=1 -Iinclude -Isrc -isystem "$deps/stub" \
       -isystem /usr/include/torch/csrc/api/include -isystem "$deps/usr/include" "$f"; then
    echo "ok: $f"
  else
    echo "FAILED: $f" >&2
    status=1
  fi
done
exit $status
