#!/usr/bin/env bash
# Trains the embedded default Co-Encoder (models/default-coenc) on a GPU: the default 9M decoder (models/default)
# as both context tower and decoder, frozen and referenced by path; only the connector (mean pooling, r = 4,
# chunks of 128 tokens) learns, on reconstruction, continuation and QA (the train split of SQuAD).
#
#   mkdir -p .train && cp ../shared/corpus/pretrain/{wiki-00,sotu-00}.txt.xz ../shared/corpus/qa/squad.jsonl.xz .train/
#   scripts/train_default_co_encoder.sh [BUILD_DIR] [STEPS] [NPROC]
# It writes the checkpoint into models/default-coenc itself (config.json, model.safetensors, the tokenizer folders,
# metrics.jsonl, loss_curve.svg), so that the tower and decoder are referenced as "../default".
set -euo pipefail
cd "$(dirname "$0")/.."
coenc=${1:-build}/coenc
steps=${2:-2000}
nproc=${3:-1}
for f in .train/wiki-00.txt.xz .train/sotu-00.txt.xz; do
  [ -f "${f%.xz}" ] || python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "${f%.xz}"
done
# Only the train split of the QA file (the corpus README: never train on test / val).
python3 - <<'PY'
import json, lzma
with lzma.open(".train/squad.jsonl.xz", "rt") as src, open(".train/squad-train.jsonl", "w") as dst:
    for line in src:
        item = json.loads(line)
        if item["split"] == "train" and item["answers"]:  # answerable questions of the train split
            dst.write(line)
PY
coenc_dir=models/default-coenc
rm -rf "$coenc_dir/checkpoint"
"$coenc" train -c models/default-coenc/train.json --set steps="$steps" --nproc "$nproc"
