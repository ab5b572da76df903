#!/usr/bin/env bash
# One device call that times `coenc compress` of a library (issue 13, section 3) beside the tower alone, on one
# GPU; docs/benchmarks.md ("Bulk compression of a corpus") quotes it. With build-gpu built (scripts/gpu_build.sh or
# scripts/gpu_kernel_check.sh) and a Co-Encoder checkpoint and corpus files on the GPU machine:
#   OUT=$OUT bash scripts/gpu_bulk_check.sh MODEL_DIR CORPUS_FILE...
# MODEL_DIR may be a skeleton filled on the machine (speed does not depend on the weights, and the shipped model
# does not travel in one call beside the tree): `scripts/skeleton_checkpoint.py strip models/default-coenc
# .train/skeleton` here, carry .train/skeleton, then `python3 scripts/skeleton_checkpoint.py fill .train/skeleton
# .gl/rnd` there and pass .gl/rnd. COENC=BINARY times another build (e.g. one of scripts/gpu_ab_build.sh's two).
# Times the tower alone and compress's batches of it (`coenc bench --tower-chunks`: tower, connector, vectors to
# the host; with and without the CUDA graphs of full batches), then the library written to memory (/dev/shm, where
# it has room; else the machine's disk) at batch 256 as shipped, without the graphs (COENC_CONTEXT_GRAPHS=0) and
# each group written before the next is queued (COENC_BULK_OVERLAP=0), alternated twice, checks that all wrote the
# same files, times the first corpus file against 4 copies of it (the steady rate and the cost paid once per run),
# times one traced run (COENC_TRACE_BATCHES=1), and reruns it with every document up to date; on a
# machine of several GPUs, --nproc N against one GPU; then the disk's own rate for files of a .coctx's size, flushed
# one by one (fsync) against one flush for all (sync).
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
for graphs in 1 0; do
  COENC_CONTEXT_GRAPHS=$graphs $coenc bench -m "$M" --device cuda --tower-chunks 256 --chunk 128 --gen 0 --prompt 128 \
    --json >"$OUT/tower.json" && python3 -c "import json,sys; j=json.load(open(sys.argv[1])); t, c=j['tower'], \
j['compress']; print('COENC_CONTEXT_GRAPHS=%s: tower alone, 256 chunks of 128: %.0f tokens/s; compress, 8 batches of \
them: %.0f' % (sys.argv[2], t['tokens_per_s'], c['tokens_per_s']))" "$OUT/tower.json" $graphs
done
shm_free=$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)
if [ "${shm_free:-0}" -gt 12000000 ]; then name=memory out=/dev/shm/bulk; else name=disk out=$PWD/.gl/bulk; fi
# Three ways, alternated twice: as shipped (full batches from CUDA graphs, each group queued before the one before
# it is written), without the graphs (COENC_CONTEXT_GRAPHS=0), and each group collected, described and written
# before the next is queued (COENC_BULK_OVERLAP=0). (Without the padding of short masked batches, the since removed
# COENC_PAD_ROWS=0, it took 1.7-2.0 times as long on an H100: docs/benchmarks.md.)
rm -rf "$out-ship" "$out-graph0" "$out-seq"
for run in 1 2; do
  for way in ship graph0 seq; do
    graphs=1 overlap=1
    [ $way = graph0 ] && graphs=0
    [ $way = seq ] && overlap=0
    COENC_CONTEXT_GRAPHS=$graphs COENC_BULK_OVERLAP=$overlap $coenc compress -m "$M" "${C[@]}" -o "$out-$way" \
      --device cuda --batch 256 --json -q --force >"$OUT/bulk-$way-$run.json" || exit 1
    echo "$name, batch 256, COENC_CONTEXT_GRAPHS=$graphs COENC_BULK_OVERLAP=$overlap, run $run: $(num \
      "$OUT/bulk-$way-$run.json" documents tokens seconds tokens_per_s model_seconds tokenize_wait_seconds \
      write_wait_seconds)"
  done
done
for way in graph0 seq; do
  diff -rq "$out-ship" "$out-$way" >/dev/null && echo "$way wrote the same files as ship" ||
    echo "$way's files DIFFER from ship's: $(diff -rq "$out-ship" "$out-$way" | wc -l) files"
done
rm -rf "$out-seq" "$out-graph0"
# A library 4 times as long (the first corpus file said 4 times) against the file once, alternated twice: the
# difference of the two runs is the steady rate, what each token costs once the run is going; the rest of a run's
# time is what it pays once (the first groups' cuDNN plans and graph captures, the first block's tokenizing).
python3 - "$1" "$out-one.txt" "$out-four.txt" <<'PY'
import lzma, sys
src = sys.argv[1]
text = (lzma.open(src, "rt") if src.endswith(".xz") else open(src)).read()
open(sys.argv[2], "w").write(text)
open(sys.argv[3], "w").write("\n\n<|doc|>\n".join([text] * 4))
PY
for run in 1 2; do
  for n in four one; do
    $coenc compress -m "$M" --corpus "$out-$n.txt" -o "$out-$n" --device cuda --batch 256 --json -q --force \
      >"$OUT/bulk-$n-$run.json" || exit 1
    echo "$name, the first corpus file x $n, run $run: $(num "$OUT/bulk-$n-$run.json" documents tokens seconds \
      tokens_per_s write_wait_seconds tokenize_wait_seconds)"
  done
  python3 -c "import json,sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); r = (a['tokens'] - b['tokens']) / \
(a['seconds'] - b['seconds']); print('steady rate %.0f tokens/s; paid once %.2f s' % (r, b['seconds'] - b['tokens'] / r))" \
    "$OUT/bulk-four-$run.json" "$OUT/bulk-one-$run.json"
done
rm -rf "$out-one" "$out-four" "$out-one.txt" "$out-four.txt"
# Where the host's time goes in each group's compress_chunks (COENC_TRACE_BATCHES=1), summed over the groups.
COENC_TRACE_BATCHES=1 $coenc compress -m "$M" "${C[@]}" -o "$out-trace" --device cuda --batch 256 --json -q \
  --force >"$OUT/bulk-trace.json" 2>"$OUT/bulk-trace.log" || exit 1
python3 - "$OUT/bulk-trace.log" "$OUT/bulk-trace.json" <<'PY'
import json, re, sys
keys = ["ms", "ids", "forward", "copy", "away", "wait", "gather"]
tot, n = dict.fromkeys(keys + ["batches", "masked", "rows", "chunks"], 0.0), 0
for line in open(sys.argv[1]):
    m = re.match(r"compress_chunks: (\d+) chunks in (\d+) batches \((\d+) masked, (\d+) rows\) ([\d.]+) ms: ids "
                 r"([\d.]+), forward ([\d.]+), copy ([\d.]+), away ([\d.]+), wait ([\d.]+), gather ([\d.]+)", line)
    if not m: continue
    n += 1
    for k, v in zip(["chunks", "batches", "masked", "rows"] + keys, m.groups()): tot[k] += float(v)
r = json.loads(open(sys.argv[2]).read().splitlines()[0])
print("traced run: %d groups, %d chunks in %d batches (%d masked, %d rows); model step %.2f s, of which "
      "compress_chunks %.2f s (host: ids %.2f, forward %.2f, copy %.2f, away %.2f, wait %.2f, gather %.2f s); "
      "%.0f tokens/s" %
      (n, tot["chunks"], tot["batches"], tot["masked"], tot["rows"], r["model_seconds"], tot["ms"] / 1e3,
       tot["ids"] / 1e3, tot["forward"] / 1e3, tot["copy"] / 1e3, tot["away"] / 1e3, tot["wait"] / 1e3,
       tot["gather"] / 1e3, r["tokens_per_s"]))
PY
$coenc compress -m "$M" "${C[@]}" -o "$out-ship" --device cuda --json -q >"$OUT/bulk-again.json"
echo "$name, rerun: $(num "$OUT/bulk-again.json" documents skipped seconds)"
echo "$name: $(du -sh "$out-ship" | cut -f1) in $(find "$out-ship" -name '*.coctx' | wc -l) files"
rm -rf "$out-ship" "$out-trace"
# Several GPUs: --nproc N (one process a GPU, each every N-th document) against one, alternated; the aggregate
# rate is all processes' tokens over the slowest one's seconds (model load excluded, as for one process).
ngpu=$(nvidia-smi -L | wc -l)
if [ "$ngpu" -gt 1 ]; then
  for run in 1 2; do
    for n in 1 "$ngpu"; do
      rm -rf "$out-n$n"
      t0=$(date +%s.%N)
      $coenc compress -m "$M" "${C[@]}" -o "$out-n$n" --device cuda --batch 256 --json -q --force --nproc "$n" \
        >"$OUT/bulk-nproc$n-$run.json" || exit 1
      wall=$(python3 -c "import sys,time; print('%.2f' % (time.time() - float(sys.argv[1])))" "$t0")
      python3 - "$OUT/bulk-nproc$n-$run.json" "$n" "$wall" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
tokens, slowest = sum(r["tokens"] for r in rows), max(r["seconds"] for r in rows)
print("--nproc %s: %d processes, %d documents, %d tokens in %.2f s (slowest process): %.0f tokens/s; %s s wall "
      "with process start and model load" % (sys.argv[2], len(rows), sum(r["documents"] for r in rows), tokens,
                                             slowest, tokens / slowest, sys.argv[3]))
PY
    done
  done
  diff -rq "$out-n1" "$out-n$ngpu" >/dev/null && echo "one and $ngpu GPUs wrote identical files" ||
    echo "one and $ngpu GPUs' files DIFFER: $(diff -rq "$out-n1" "$out-n$ngpu" | wc -l) files"
  rm -rf "$out-n1" "$out-n$ngpu"
fi
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
