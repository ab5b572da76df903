#!/usr/bin/env bash
# One device call that times `coenc compress` of a library (issue 13, section 3) beside the tower alone, on one
# GPU; docs/benchmarks.md ("Bulk compression of a corpus") quotes it. With build-gpu built (scripts/gpu_build.sh or
# scripts/gpu_kernel_check.sh) and a Co-Encoder checkpoint and corpus files on the GPU machine:
#   OUT=$OUT bash scripts/gpu_bulk_check.sh MODEL_DIR CORPUS_FILE...
# MODEL_DIR may be a skeleton filled on the machine (speed does not depend on the weights, and the shipped model
# does not travel in one call beside the tree): `scripts/skeleton_checkpoint.py strip models/default-coenc
# .train/skeleton` here, carry .train/skeleton, then `python3 scripts/skeleton_checkpoint.py fill .train/skeleton
# .gl/rnd` there and pass .gl/rnd. COENC=BINARY times another build (e.g. one of scripts/gpu_ab_build.sh's two).
# Times the tower alone (`coenc bench --tower-chunks`), then the library written to the machine's disk and to
# memory (/dev/shm, where it has room), each followed by a rerun with every document up to date; and the disk's
# own rate for files of a .coctx's size, flushed one by one (fsync) against one flush for all (sync).
set -u
scripts/offline_deps.sh unpack >/dev/null  # the libraries build-gpu/coenc links (a fresh call unpacks them again)
coenc=${COENC:-build-gpu/coenc}
M=$1
shift
C=()
for f in "$@"; do C+=(--corpus "$f"); done
nvidia-smi --query-gpu=name --format=csv,noheader
echo "$(nproc) cores"; df -h . /dev/shm | tail -2
num() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(' '.join('%s=%s' % (k, \
round(d[k], 3) if isinstance(d[k], float) else d[k]) for k in sys.argv[2:]))" "$@"; }
$coenc bench -m "$M" --device cuda --tower-chunks 256 --chunk 128 --gen 0 --prompt 128 --json \
  >"$OUT/tower.json" && python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['tower']; \
print('tower alone, 256 chunks of 128: %.0f tokens/s' % t['tokens_per_s'])" "$OUT/tower.json"
dests=("disk:$PWD/.gl/bulk-out")
shm_free=$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)
if [ "${shm_free:-0}" -gt 12000000 ]; then dests+=("memory:/dev/shm/bulk-out"); fi
for dest in "${dests[@]}"; do
  name=${dest%%:*} out=${dest#*:}
  rm -rf "$out"
  for batch in 256 512; do
    $coenc compress -m "$M" "${C[@]}" -o "$out" --device cuda --batch $batch --json -q --force \
      >"$OUT/bulk-$name-$batch.json" || exit 1
    echo "$name, batch $batch: $(num "$OUT/bulk-$name-$batch.json" documents tokens seconds tokens_per_s \
      model_seconds tokenize_wait_seconds write_wait_seconds)"
  done
  $coenc compress -m "$M" "${C[@]}" -o "$out" --device cuda --json -q >"$OUT/bulk-$name-again.json"
  echo "$name, rerun: $(num "$OUT/bulk-$name-again.json" documents skipped seconds)"
  echo "$name: $(du -sh "$out" | cut -f1) in $(find "$out" -name '*.coctx' | wc -l) files"
  rm -rf "$out"
done
# The disk alone: 4,000 files of 256 KiB on 8 threads, each flushed by itself, then all flushed once.
python3 - "$PWD/.gl/fsync-test" <<'EOF'
import os, sys, time
from concurrent.futures import ThreadPoolExecutor
root, data = sys.argv[1], os.urandom(256 * 1024)
def write(i, flush):
    tmp = f"{root}/{i}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if flush:
            os.fsync(f.fileno())
    os.rename(tmp, f"{root}/{i}.coctx")
for flush in (True, False):
    os.makedirs(root, exist_ok=True)
    t = time.time()
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: write(i, flush), range(4000)))
    if not flush:
        os.sync()
    s = time.time() - t
    how = "fsync each" if flush else "one sync"
    print("disk, 4000 x 256 KiB, %s: %.2f s, %.0f MB/s" % (how, s, 4000 * 0.262144 / s))
    os.system(f"rm -rf {root}")
EOF
