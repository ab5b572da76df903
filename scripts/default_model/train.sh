#!/usr/bin/env bash
# Trains the embedded default Co-Encoder from scratch on one GPU, in resumable pieces (docs/default-model.md):
#
#   python3 scripts/prepare_training_data.py            # here: corpus shards + QA train/val files into .train/
#   scripts/default_model/train.sh decoder BUILD [SECONDS]
#       stage 1: pretrain the decoder (decoder.json) on Wikipedia, State-of-the-Union and Gutenberg text; SECONDS
#       is the training-loop budget (time_budget_s), the step count is fitted to it after 25 timed steps
#   scripts/default_model/train.sh co_encoder BUILD [SECONDS] [STOP_AFTER_SECONDS]
#       stage 2: tower (the decoder's first 3 layers, bidirectional), connector and decoder trained together on
#       reconstruction, continuation, compressed and plain-text QA and plain LM (co_encoder.json). With
#       STOP_AFTER_SECONDS the run is interrupted then (SIGINT: the step finishes and a checkpoint is saved); the
#       same command again resumes it exactly, so the run can be cut into pieces of at most 10 minutes.
#   scripts/default_model/train.sh co_encoder_more BUILD
#       stage 3: 2,600 more steps from stage 2's model with reconstruction weighted up (co_encoder_more.json) ->
#       .train/co_encoder2 (about 470 s on an H200)
#
# BUILD is the build folder holding coenc (scripts/gpu_build.sh). Outputs: .train/decoder, .train/co_encoder,
# .train/co_encoder2.
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=${1:?usage: train.sh decoder|co_encoder|co_encoder_more BUILD [SECONDS] [STOP_AFTER_SECONDS]}
coenc=${2:-build}/coenc
budget=${3:-}
stop_after=${4:-}

# The corpus shards (and the QA file, if it travelled compressed) unpacked once into .train/data; a GPU machine may
# lack xz, Python's lzma is always there.
python3 - <<'PY'
import glob, lzma, os, shutil
os.makedirs(".train/data", exist_ok=True)
for src in glob.glob(".train/pretrain/*.txt.xz") + glob.glob(".train/qa-train.jsonl*"):
    dst = os.path.join(".train/data", os.path.basename(src).removesuffix(".xz"))
    if not os.path.exists(dst):
        with (lzma.open(src) if src.endswith(".xz") else open(src, "rb")) as f, open(dst + ".tmp", "wb") as g:
            shutil.copyfileobj(f, g)
        os.rename(dst + ".tmp", dst)
PY

args=()
[ -n "$budget" ] && args+=(--set "time_budget_s=$budget")
case "$stage" in
  decoder)
    "$coenc" train -c scripts/default_model/decoder.json "${args[@]}"
    ;;
  co_encoder)
    [ -d .train/co_encoder/checkpoint ] && args+=(--set resume=true)
    if [ -n "$stop_after" ]; then
      # SIGINT at the deadline: the trainer saves its checkpoint and exits with status 130.
      status=0
      timeout -s INT "$stop_after" "$coenc" train -c scripts/default_model/co_encoder.json "${args[@]}" || status=$?
      [ "$status" -eq 0 ] || [ "$status" -eq 130 ] || [ "$status" -eq 124 ] || exit "$status"
    else
      "$coenc" train -c scripts/default_model/co_encoder.json "${args[@]}"
    fi
    ;;
  co_encoder_more)
    "$coenc" train -c scripts/default_model/co_encoder_more.json
    ;;
  *)
    echo "train.sh: unknown stage '$stage' (expected decoder, co_encoder or co_encoder_more)" >&2
    exit 2
    ;;
esac
