#!/usr/bin/env bash
# Trains the embedded default model (models/default) on a GPU: a 9M-parameter Llama-shaped decoder with the
# 8k byte-level BPE tokenizer in models/default, on Wikipedia, Gutenberg and State-of-the-Union text from the
# corpus pack. The number of steps is fitted to a time budget from a short calibration run.
#
#   mkdir -p .train && cp ../shared/corpus/pretrain/{wiki-00,gutenberg-00,sotu-00}.txt.xz .train/
#   scripts/train_default_model.sh [BUILD_DIR] [SECONDS]
# then copy .train/out/{model.safetensors,config.json} into models/default.
set -euo pipefail
cd "$(dirname "$0")/.."
coenc=${1:-build}/coenc
budget=${2:-300}
for f in .train/*.txt.xz; do
  [ -f "${f%.xz}" ] || python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "${f%.xz}"
done
rm -rf .train/calib .train/out
"$coenc" train models/default/train.json --quiet --set out=../../.train/calib --set steps=60 --set eval_every=20 \
  --set eval_batches=1 >/dev/null
tok_s=$(tail -1 .train/calib/metrics.jsonl | python3 -c 'import json, sys; print(json.load(sys.stdin)["tokens_per_s"])')
steps=$(python3 -c "print(int($budget * $tok_s / (64 * 512)))")
echo "calibration: $tok_s tokens/s -> $steps steps in ${budget}s"
"$coenc" train models/default/train.json --set steps="$steps"
