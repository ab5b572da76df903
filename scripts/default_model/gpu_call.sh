#!/usr/bin/env bash
# One call on a lent GPU machine whose commands may run at most 10 minutes (docs/default-model.md, "Training"):
# builds coenc once, runs the part of a training stage that fits the call, and packs what must come back into
# $OUT as xz-compressed pieces of at most 15 MiB (join them with `cat NAME.tar.xz.* | xz -dc | tar x`). A model of
# the default's size (82 MB of bf16 weights, ~58 MB compressed) comes back whole in the call that trains it: the
# machine is given back 30 s after a call, so a second call to fetch the rest can find a fresh machine.
#
#   gpu_call.sh decoder                      build, stage 1 (decoder pretraining), pack .train/decoder
#   gpu_call.sh decoder_all | decoder_all_more  stage 21's two parts the same way (.train/decoder_all, _more)
#   gpu_call.sh co_encoder TOTAL_SECONDS     stage 2 within this call; interrupted and checkpointed at the call's
#                                            deadline, resumed by the next call with the same TOTAL_SECONDS; packs
#                                            .train/co_encoder once the run has finished
#   gpu_call.sh co_encoder_more            stage 3, packs .train/co_encoder2
#   gpu_call.sh co_encoder_long TOTAL_SECONDS  stage 4, in pieces like stage 2; packs .train/co_encoder3 at the end
#   gpu_call.sh STAGE TOTAL_SECONDS          any other resumable stage of stages.sh (stages 5 to 20), the same way
#   gpu_call.sh together TOTAL_SECONDS STAGE...  several of those stages at once on the same GPU(s), each in
#                                            the call's time (an ablation at equal tokens); packs each finished one
#                                            and copies the first one's pieces into $OUT (they share the GPU's
#                                            memory: two runs of the default's size fit an H200, not an H100)
#   gpu_call.sh stash DIR [DIR...]           puts carried files where the stages read them: *.txt.xz into
#                                            .train/pretrain, qa-train.jsonl.xz into .train, pieces NAME.tar.xz.* of a
#                                            packed model (with NAME.count: their number) into .train/pieces, joined
#                                            into .train/NAME once all are there: a model may travel over several calls
#                                            (*.log and metrics.jsonl, which come back beside pieces, are skipped)
#   gpu_call.sh eval VAL_DIR MODEL...        the validation evaluation of each model on the GPU (bf16) into $OUT, its
#                                            jobs spread over all the machine's GPUs
#   gpu_call.sh pack NAME                    packs .train/NAME into .train/pack/NAME (pieces and NAME.count); also
#                                            here, to carry a model there (e.g. the shipped folder copied to .train)
#   gpu_call.sh pieces NAME FIRST LAST|all   copies pieces FIRST..LAST (1-based) of a packed NAME into $OUT, with
#                                            NAME.count (which `stash` needs to join them when they travel again)
#                                            ($OUT takes at most 64 MiB a call)
# PIECES=K brings back only the first K pieces of a finished stage ($OUT takes 64 MiB: a 10-layer decoder's model
# packs into 5 pieces, the last fetched by the next call with `gpu_call.sh pieces NAME 5 all`).
# NPROC=N trains on N GPUs (train.sh). CALL_SECONDS (default 560) is the call's own deadline, counted from this script's start.
set -euo pipefail
cd "$(dirname "$0")/../.."
deadline=${CALL_SECONDS:-560}
out=${OUT:-}
[ -n "$out" ] || [ "${1:-}" = pack ] || { echo "gpu_call: set OUT to the folder whose files come back" >&2; exit 2; }
build=build-gpu
source scripts/default_model/stages.sh  # stage_dir, resumable_stage
export PYTHONUNBUFFERED=1

ensure_built() {
  if [ ! -x "$build/coenc" ]; then
    COENC_TARGETS=coenc scripts/gpu_build.sh "$build" >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
    echo "gpu_call: built coenc in ${SECONDS}s"
  fi
}

# pack NAME: .train/NAME's model files as .train/pack/NAME/NAME.tar.xz.aa, .ab, ... (15 MiB each, xz: bf16
# weights shrink to ~70%) and NAME.count, their number, which `stash` needs to know when all have arrived.
pack() {
  local name=$1
  rm -rf ".train/pack/$name" && mkdir -p ".train/pack/$name"
  (cd .train && find "$name" -maxdepth 2 -type f ! -path "*/checkpoint*" -print0 | sort -z |
     tar --null -cf - -T -) | xz -T0 -6 | split -b 15M - ".train/pack/$name/$name.tar.xz."
  ls ".train/pack/$name/$name.tar.xz."* | wc -l >".train/pack/$name/$name.count"
  ls -l ".train/pack/$name"
}

pieces() {
  local name=$1 first=$2 last=$3 i=0
  [ "$last" = all ] && last=$(cat ".train/pack/$name/$name.count")
  for f in ".train/pack/$name/$name.tar.xz."*; do
    i=$((i + 1))
    if [ "$i" -ge "$first" ] && [ "$i" -le "$last" ]; then cp "$f" "$out/"; fi
  done
  cp ".train/pack/$name/$name.count" "$out/"
}

cmd=${1:-}
resumable_stage "$cmd" && cmd=train
case "$cmd" in
  decoder | decoder_all | decoder_all_more)
    ensure_built
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    budget=$((deadline - SECONDS - 70))
    echo "gpu_call: $cmd with a ${budget}s training budget"
    scripts/default_model/train.sh "$cmd" "$build" "$budget" 2>&1 | tee "$out/$cmd.log" | grep -v '^tokenizing'
    pack "$cmd"
    pieces "$cmd" 1 all
    ;;
  train)  # a resumable stage: `gpu_call.sh STAGE TOTAL_SECONDS` comes here (below)
    stage=$1 total=${2:?usage: gpu_call.sh $1 TOTAL_SECONDS}
    dir=$(stage_dir "$stage")
    ensure_built
    stop_after=$((deadline - SECONDS - 40))
    echo "gpu_call: $stage (${total}s in all), this part stops after ${stop_after}s"
    scripts/default_model/train.sh "$stage" "$build" "$total" "$stop_after" 2>&1 | tee "$out/$stage.log" |
      grep -v '^tokenizing'
    cp ".train/$dir/metrics.jsonl" "$out/" 2>/dev/null || true
    if [ -f ".train/$dir/model.safetensors" ] || [ -f ".train/$dir/model.safetensors.index.json" ]; then  # finished
      pack "$dir"
      pieces "$dir" 1 "${PIECES:-all}"
    fi
    ;;
  together)
    total=${2:?usage: gpu_call.sh together TOTAL_SECONDS STAGE...}
    shift 2
    ensure_built
    stop_after=$((deadline - SECONDS - 60))
    echo "gpu_call: $* at once (${total}s each), stopping after ${stop_after}s"
    pids=()
    for stage in "$@"; do
      scripts/default_model/train.sh "$stage" "$build" "$total" "$stop_after" >"$out/$stage.log" 2>&1 &
      pids+=($!)
    done
    status=0
    for p in "${pids[@]}"; do wait "$p" || status=$?; done
    first=1
    for stage in "$@"; do
      dir=$(stage_dir "$stage")
      grep -v '^tokenizing' "$out/$stage.log" | tail -4
      # ($OUT takes 8 files: the first stage's metrics travel inside its pieces)
      [ "$first" = 1 ] || cp ".train/$dir/metrics.jsonl" "$out/$dir-metrics.jsonl" 2>/dev/null || true
      if [ -f ".train/$dir/model.safetensors.index.json" ] || [ -f ".train/$dir/model.safetensors" ]; then
        pack "$dir" >/dev/null
        if [ "$first" = 1 ]; then pieces "$dir" 1 all; fi
      fi
      first=0
    done
    exit "$status"
    ;;
  stash)
    shift
    mkdir -p .train/pretrain .train/pieces
    for d in "$@"; do
      for f in "$d"/*; do
        case "$(basename "$f")" in
          *.txt.xz) cp "$f" .train/pretrain/ ;;
          qa-train.jsonl.xz) cp "$f" .train/ ;;
          *.tar.* | *.count) cp "$f" .train/pieces/ ;;
          *.log | metrics.jsonl) ;;  # a training run's log, fetched with its pieces from the call that packed them
          *) echo "gpu_call: stash: $f is not a shard, the QA file or a model piece" >&2; exit 2 ;;
        esac
      done
    done
    # Join every model whose pieces are all here (NAME.count, carried with them, says how many there are).
    for name in $(ls .train/pieces 2>/dev/null | sed -n 's/\.tar\.xz\.[a-z]*$//p' | sort -u); do
      want=$(cat ".train/pieces/$name.count" 2>/dev/null || echo 0)
      have=$(ls ".train/pieces/$name.tar.xz."* | wc -l)
      if [ "$have" -eq "$want" ]; then
        rm -rf ".train/$name" && cat ".train/pieces/$name.tar.xz."* | xz -dc | tar -x -C .train &&
          echo "gpu_call: joined .train/$name"
      fi
    done
    ensure_built
    ;;
  co_encoder_more)
    ensure_built
    scripts/default_model/train.sh co_encoder_more "$build" 2>&1 | tee "$out/co_encoder2.log" | grep -v '^tokenizing'
    cp .train/co_encoder2/metrics.jsonl "$out/metrics2.jsonl"
    pack co_encoder2
    pieces co_encoder2 1 all
    ;;
  pack)
    pack "${2:?usage: gpu_call.sh pack NAME}"
    ;;
  pieces)
    pieces "${2:?}" "${3:?}" "${4:?}"
    ;;
  eval)
    # The validation evaluation of docs/default-model.md for each model, on this GPU (bf16): one JSON line per
    # task in $OUT/NAME-eval.jsonl, the needle heatmap in $OUT/NAME-needle.svg, every item's scores (each task's
    # --out folder, NAME/TASK-or-SET/) in $OUT/items.tar.xz, to pair models with scripts/compare_eval_items.py.
    val=${2:?usage: gpu_call.sh eval VAL_DIR MODEL...}
    shift 2
    ensure_built
    # One job per model and task, spread over the machine's GPUs (CUDA_VISIBLE_DEVICES), results in task order.
    gpus=$(nvidia-smi -L | wc -l) jobs=() k=0
    rm -rf .train/eval-out && mkdir -p .train/eval-parts .train/eval-out
    # the repeat probe (in-context copying: docs/default-model.md, "The decoder does not copy what it reads")
    scripts/make_repeat_probe.py "$val/gutenberg-01-part-full.txt.xz" .train/eval-parts/repeat.txt >/dev/null
    # questions about examples/sample-document.txt, text outside the corpus (docs/default-model.md, "Text it never saw")
    scripts/sample_questions.py .train/eval-parts/sample-questions.jsonl
    for m in "$@"; do
      name=$(basename "$m") ratios=4,8 needle=4,8,16
      items=.train/eval-out/$name
      # dynamic pooling has one ratio, the one it was trained at
      if grep -q '"pooling": *"dynamic"' "$m/config.json"; then ratios=4 needle=4; fi
      for set in babi fairytaleqa squad; do
        jobs+=("$name|--task qa --data $val/$set-val.jsonl --ratio $ratios --limit 300 --out $items/$set")
      done
      text=$val/gutenberg-01-part-full.txt.xz
      jobs+=("$name|--task recon --data $text --ratio $ratios --limit 150 --out $items/recon")
      jobs+=("$name|--task ppl --data $text --ratio $ratios --limit 100 --out $items/ppl")
      jobs+=("$name|--task lookup --data $text --ratio $ratios --limit 200 --out $items/lookup")
      jobs+=("$name|--task cloze --data $text --ratio $ratios --limit 300 --out $items/cloze")
      jobs+=("$name|--task ppl --data .train/eval-parts/repeat.txt --ratio $ratios --limit 30 --out $items/repeat")
      jobs+=("$name|--task qa --data .train/eval-parts/sample-questions.jsonl --ratio $ratios --out $items/sample")
      jobs+=("$name|--task needle --data $val/gutenberg-01-part.txt.xz --ratio $needle --limit 2 --out $items/needle")
    done
    declare -A model_of
    for m in "$@"; do model_of[$(basename "$m")]=$m; done
    pids=()
    for j in "${jobs[@]}"; do
      name=${j%%|*} flags=${j#*|}
      # shellcheck disable=SC2086  # flags are words
      CUDA_VISIBLE_DEVICES=$((k % gpus)) "$build/coenc" eval -m "${model_of[$name]}" --device cuda --json -q $flags \
        >".train/eval-parts/$k.json" 2>".train/eval-parts/$k.err" &
      pids+=($!) k=$((k + 1))
      # at most two jobs a GPU at a time
      if [ "${#pids[@]}" -ge $((2 * gpus)) ]; then wait "${pids[0]}" || true; pids=("${pids[@]:1}"); fi
    done
    wait
    k=0
    for m in "$@"; do name=$(basename "$m"); : >"$out/$name-eval.jsonl"; done
    for j in "${jobs[@]}"; do
      name=${j%%|*}
      if [ -s ".train/eval-parts/$k.json" ]; then cat ".train/eval-parts/$k.json" >>"$out/$name-eval.jsonl"
      else echo "gpu_call: eval of $name failed: ${j#*|}"; tail -3 ".train/eval-parts/$k.err"; fi
      k=$((k + 1))
    done
    for m in "$@"; do
      name=$(basename "$m")
      cp ".train/eval-out/$name/needle/needle.svg" "$out/$name-needle.svg" 2>/dev/null || true
    done
    # one file for every model's items ($OUT takes 8 files: three models are 3 x 2 + 1)
    tar -C .train/eval-out -cJf "$out/items.tar.xz" . 2>/dev/null || true
    echo "gpu_call: evaluated $* in ${SECONDS}s on $gpus GPU(s)"
    ;;
  *)
    echo "usage: gpu_call.sh decoder | co_encoder_more | STAGE TOTAL_SECONDS | together TOTAL_SECONDS STAGE... |" \
      "stash DIR... | eval VAL_DIR MODEL... | pack NAME | pieces NAME FIRST LAST|all;" \
      "STAGE one of: $(resumable_stages)" >&2
    exit 2
    ;;
esac
