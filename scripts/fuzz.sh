#!/usr/bin/env bash
# Fuzzes the parsers of outside input with libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer
# (tests/fuzz, docs/reliability.md).
#   scripts/fuzz.sh [SECONDS]        every target for SECONDS of wall time (default 1800), all at once
#   JOBS=2 scripts/fuzz.sh 600       two targets at a time
#   FUZZ_TARGETS="tokenizer safetensors" scripts/fuzz.sh 300
# Needs clang and libFuzzer: on Debian 12 `apt-get install clang libclang-rt-14-dev` (not needed by the test suite:
# CI replays the committed corpus through the same code in its own builds, test_fuzz_replay.cpp).
# Builds into build-fuzz/ (clang, everything instrumented); working corpora, crash inputs and logs (log-RUN,
# time-RUN) go to build-fuzz/fuzz/TARGET/. The fuzzers run under `nice -n 19`: they take only what other work leaves.
# Ends with one line per target: wall and CPU seconds, runs, coverage, crash files; exits non-zero when a target
# found something (a crash, hang, leak or out-of-memory input: the file is in build-fuzz/fuzz/TARGET/crashes/).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-1800}
all=(chat_messages coctx model_config safetensors sentencepiece tokenizer train_config)
read -r -a targets <<<"${FUZZ_TARGETS:-${all[*]}}"
jobs=${JOBS:-${#targets[@]}}
build=build-fuzz
run=$(date -u +%Y%m%dT%H%M%SZ)  # names this run's log and time files, so that runs side by side keep their own

# Largest input per target: a little above the largest seed, so the fuzzer grows inputs around the real layouts.
max_len() {
  case $1 in
    sentencepiece) echo 65536 ;;
    tokenizer) echo 16384 ;;
    coctx | safetensors) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOENC_FUZZ=ON \
    -DCOENC_BUILD_TESTS=OFF >/dev/null
  nice -n 19 cmake --build "$build" -j "${BUILD_JOBS:-$(nproc)}" --target "${targets[@]/#/fuzz_}"
fi

run_target() {
  local name=$1 dir=$build/fuzz/$1
  mkdir -p "$dir/corpus" "$dir/crashes" "$dir/tmp"
  # Leaks: libFuzzer checks each input that allocated more than it freed (-detect_leaks=1). ODR checks off: libtorch
  # and its dependencies define some globals twice, as in the sanitizer build of the tests.
  # time's output (wall, user + system CPU) goes to $dir/time-$run.
  TMPDIR=$dir/tmp ASAN_OPTIONS=detect_odr_violation=0 UBSAN_OPTIONS=print_stacktrace=1 \
    /usr/bin/time -o "$dir/time-$run" -f '%e %U %S' nice -n 19 "$build/fuzz_$name" \
    -max_total_time="$seconds" -max_len="$(max_len "$name")" -timeout=20 -rss_limit_mb=3072 \
    -artifact_prefix="$dir/crashes/" -print_final_stats=1 -detect_leaks=1 \
    "$dir/corpus" "tests/fuzz/corpus/$name" >"$dir/log-$run" 2>&1 || true
}

echo "fuzzing ${targets[*]} for ${seconds} s each, ${jobs} at a time (logs: $build/fuzz/TARGET/log-$run)"
running=0
for name in "${targets[@]}"; do
  run_target "$name" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

found=0
printf '%-14s %8s %8s %10s %8s %8s %s\n' target wall_s cpu_s runs cov corpus crashes
for name in "${targets[@]}"; do
  dir=$build/fuzz/$name
  read -r wall user sys < <(tail -n 1 "$dir/time-$run") || true
  runs=$(grep -ao 'stat::number_of_executed_units: [0-9]*' "$dir/log-$run" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -ao 'cov: [0-9]*' "$dir/log-$run" | tail -1 | grep -o '[0-9]*' || echo "?")
  corpus=$(find "$dir/corpus" -type f | wc -l)
  crashes=$(find "$dir/crashes" -type f | wc -l)
  [ "$crashes" -eq 0 ] || found=1
  cpu=$(awk -v u="${user:-0}" -v s="${sys:-0}" 'BEGIN { print u + s }')
  printf '%-14s %8.0f %8.0f %10s %8s %8s %s\n' "$name" "${wall:-0}" "$cpu" "$runs" "$cov" "$corpus" "$crashes"
  # Every run is also appended to one record, so that the time spent on a target adds up over sessions.
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$name" "${wall:-0}" "$cpu" "$runs" "$cov" \
    "$crashes" >>"$build/fuzz/history.tsv"
done
exit "$found"
