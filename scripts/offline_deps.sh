#!/usr/bin/env bash
# Builds on a machine with no network and no apt (e.g. a GPU box that only has CUDA, CMake and PyTorch) need the
# few Debian packages Co-Encoder uses besides libtorch. They are all small and self-contained:
#
#   here (Debian 12, with network):  scripts/offline_deps.sh download      -> .deps/*.deb
#   copy the tree (with .deps/) to the offline machine, then:
#   there:                           scripts/offline_deps.sh unpack        -> .deps/root/usr/...
#                                    cmake -S . -B build -DCOENC_DEPS_PREFIX=$PWD/.deps/root/usr \
#                                          -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')"
set -euo pipefail
cd "$(dirname "$0")/.."
# cpp-httplib (coenc serve) is a library built with brotli, OpenSSL and zlib, whose header includes theirs: their
# -dev packages come along (the machine's own libssl3 / zlib / brotli serve at run time; the runtime .debs are
# there for a machine without them).
packages=(nlohmann-json3-dev libcli11-dev libcpp-httplib-dev libcpp-httplib0.11 libbrotli1 libbrotli-dev libssl-dev
          libssl3 zlib1g-dev libsentencepiece-dev libsentencepiece0 libutf8proc-dev libutf8proc2 liblzma-dev liblzma5
          googletest libgtest-dev)
case "${1:-}" in
  download)
    mkdir -p .deps
    (cd .deps && apt-get download "${packages[@]}")
    ;;
  unpack)
    mkdir -p .deps/root
    for f in .deps/*.deb; do dpkg-deb -x "$f" .deps/root; done
    # The -dev packages' .so links point at the runtime libraries by relative name; nothing else to fix.
    echo "unpacked into .deps/root (pass -DCOENC_DEPS_PREFIX=$PWD/.deps/root/usr to cmake)"
    ;;
  *)
    echo "usage: $0 download|unpack" >&2
    exit 2
    ;;
esac
