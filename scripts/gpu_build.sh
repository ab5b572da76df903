#!/usr/bin/env bash
# Builds Co-Encoder against the CUDA libtorch of the local PyTorch installation, on a machine without apt or
# network: the Debian packages in .deps/ (scripts/offline_deps.sh download) are unpacked beside the tree.
#   scripts/gpu_build.sh [BUILD_DIR] [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
shift || true
scripts/offline_deps.sh unpack >/dev/null
# The fused decode kernels need nvcc; CMake finds it on PATH or through CUDACXX.
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDACXX=/usr/local/cuda/bin/nvcc; fi
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
# nccl.h (data-parallel training) comes with PyTorch's nvidia-nccl wheel.
nccl_include=$(python3 -c '
import glob, os, site
hits = [h for p in site.getsitepackages() for h in glob.glob(os.path.join(p, "nvidia", "*", "include", "nccl.h"))]
print(os.path.dirname(hits[0]) if hits else "")')
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCOENC_DEPS_PREFIX="$PWD/.deps/root/usr" \
  -DCMAKE_PREFIX_PATH="$torch_prefix" -DCOENC_CUDA_ARCHITECTURES=90 ${nccl_include:+-DNCCL_INCLUDE_DIR="$nccl_include"} "$@"
ninja -C "$build" ${COENC_TARGETS:-}  # e.g. COENC_TARGETS="coenc coenc_golden_tests"
