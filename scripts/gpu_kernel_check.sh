#!/usr/bin/env bash
# One device call that checks and times the CUDA decode / prefill kernels (src/kernels/decode_kernels.cu), side
# by side on one card; docs/benchmarks.md quotes it. On the GPU machine (carry .deps; the tree and its carry must
# stay under 64 MiB: move models/default-coenc out of the tree first):
#   OUT=$OUT bash scripts/gpu_kernel_check.sh
# Builds coenc and the unit + golden tests, runs the CUDA tests, checks that greedy decoding of models/default
# gives the same text with programmatic dependent launch off (COENC_PDL=0), and times Llama-3-8B-shape decode at
# contexts 128 and 4,000 with PDL on and off; then, while the call has time, the context tower (Qwen2-0.5B shape,
# 64 x 512), a 4k / 32k prefill and the time to first token of a 32k document, each with the prefill RoPE kernel
# on and off (COENC_ROPE_QK=0) and beside transformers in the same call. Results in $OUT/results.tar.xz.
set -u
scripts/offline_deps.sh unpack >/dev/null
T0=$SECONDS
COENC_TARGETS="coenc coenc_unit_tests coenc_golden_tests" scripts/gpu_build.sh build-gpu >$OUT/build.log 2>&1 ||
  { tail -30 $OUT/build.log; exit 1; }
echo "built in $((SECONDS - T0))s"; nvidia-smi --query-gpu=name --format=csv,noheader
build-gpu/tests/coenc_unit_tests --gtest_filter='*Cuda*:DecodeKernels*' >$OUT/tests.log 2>&1; tail -1 $OUT/tests.log
build-gpu/tests/coenc_golden_tests --gtest_filter='*Cuda*' >>$OUT/tests.log 2>&1; tail -1 $OUT/tests.log
grep -E "FAILED|Failure" $OUT/tests.log | head -5
mkdir -p /tmp/gen /tmp/bench
for pdl in 1 0; do
  COENC_PDL=$pdl build-gpu/coenc generate -m models/default --device cuda --temp 0 --ignore-eos -n 300 \
    -p "Once upon a time" >/tmp/gen/pdl$pdl.txt 2>/dev/null
done
cmp /tmp/gen/pdl1.txt /tmp/gen/pdl0.txt &&
  echo "greedy text identical with and without PDL ($(wc -c </tmp/gen/pdl1.txt) bytes)"
for ctx in 128 4000; do
  for pdl in 1 0; do
    COENC_PDL=$pdl build-gpu/coenc bench --shape llama3-8b --device cuda --dtype bf16 --prompt 512 --gen 128 \
      --decode-ctx $ctx --json >/tmp/bench/pdl$pdl-$ctx.json
    python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['decode']; print(sys.argv[1].split('/')[-1], \
'%.3f ms/token, %.3f of copy %.0f GB/s, %.3f of spec' % (d['seconds_per_token']*1e3, d['fraction_of_measured'], \
d['measured_copy_gbs'], d['fraction_of_spec']))" /tmp/bench/pdl$pdl-$ctx.json
  done
done
# the RoPE kernel on (rope1) and off (rope0, apply_rope's ATen kernels as on main), each beside transformers
seconds() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], \
d['tower']['seconds'] if 'tower' in d else [p['seconds'] for p in d['prefill']])" "$1"; }
if [ $((SECONDS - T0)) -lt 400 ]; then
  for rope in 1 0 1 0; do
    COENC_ROPE_QK=$rope build-gpu/coenc bench --shape qwen2-0.5b --device cuda --dtype bf16 --prompt 512 --gen 0 \
      --tower-chunks 64 --chunk 512 --json >/tmp/bench/tower-rope$rope.json && seconds /tmp/bench/tower-rope$rope.json
  done
  python3 scripts/bench_transformers.py --shape qwen2-0.5b --tower-chunks 64 --chunk 512 >/tmp/bench/tower-hf.json
  tail -c 400 /tmp/bench/tower-hf.json
fi
if [ $((SECONDS - T0)) -lt 440 ]; then
  for rope in 1 0; do
    COENC_ROPE_QK=$rope build-gpu/coenc bench --shape llama3-8b --device cuda --dtype bf16 --prompt 4096,32768 \
      --gen 0 --json >/tmp/bench/prefill-rope$rope.json && seconds /tmp/bench/prefill-rope$rope.json
  done
  python3 scripts/bench_transformers.py --shape llama3-8b --prompt 4096 32768 >/tmp/bench/prefill-hf.json
  tail -c 400 /tmp/bench/prefill-hf.json
fi
if [ $((SECONDS - T0)) -lt 500 ]; then  # time to first token, 32k document, r = 8 and 16 (issue 13's rows)
  for rope in 1 0; do
    COENC_ROPE_QK=$rope build-gpu/coenc bench --shape llama3-8b --device cuda --dtype bf16 --prompt 512 --gen 0 \
      --ttft 32768 --ratios 8,16 --reps 3 >/tmp/bench/ttft-rope$rope.txt 2>&1; tail -8 /tmp/bench/ttft-rope$rope.txt
  done
fi
tar -C /tmp -cJf $OUT/results.tar.xz gen bench
echo "total $((SECONDS - T0))s"
