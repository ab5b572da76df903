#!/usr/bin/env bash
# Two builds of coenc in one device call, for timings side by side on one card (GPU machines differ from call to
# call by more than most changes gain: compare only within a call). The tree travels without .git, so the older
# version comes from a patch made here:
#   here:   git diff BASE HEAD -- src include tools > .train/ab.patch      (carry .train/ab.patch and .deps)
#   there:  bash scripts/gpu_ab_build.sh .train/ab.patch                     -> .gl/coenc-new, .gl/coenc-old
# then e.g. `COENC=.gl/coenc-old OUT=$OUT bash scripts/gpu_bulk_check.sh ...` and the same with .gl/coenc-new.
# Builds the tree as it is (coenc and the unit tests: COENC_TARGETS), then the tree with the patch reversed (coenc
# only), and leaves the tree as it was. The binaries are self-contained (libcoenc is static).
set -euo pipefail
cd "$(dirname "$0")/.."
patch_file=$1
[ -f "$patch_file" ] || { echo "$patch_file: no such patch (make it with git diff BASE HEAD)" >&2; exit 2; }
mkdir -p .gl
patch -R -p1 --dry-run <"$patch_file" >/dev/null ||
  { echo "$patch_file: does not reverse cleanly on this tree (made against another HEAD?)" >&2; exit 2; }
# The tree's files may keep the mtimes they had where they were copied from: make ninja see them as changed.
files=$(grep '^+++ b/' "$patch_file" | cut -c7-)
touch $files
COENC_TARGETS=${COENC_TARGETS:-"coenc coenc_unit_tests"} scripts/gpu_build.sh build-gpu
cp build-gpu/coenc .gl/coenc-new
patch -R -p1 <"$patch_file" >/dev/null
trap 'patch -p1 <"$patch_file" >/dev/null' EXIT  # the tree as it was, whatever happens next
ninja -C build-gpu coenc
cp build-gpu/coenc .gl/coenc-old
echo "built .gl/coenc-new (the tree) and .gl/coenc-old (the tree without $patch_file)"
