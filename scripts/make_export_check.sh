#!/usr/bin/env bash
# Makes the input of scripts/check_export_transformers.py (docs/server.md, "Vectors out"): a small Co-Encoder whose
# decoder is models/default itself (frozen, referenced by path, so transformers loads the same decoder from
# models/default), the three exports of one document and question, and `coenc ask`'s greedy answer.
#   scripts/make_export_check.sh [BUILD_DIR] [OUT_DIR]       (defaults: build, .train/export-check)
# Then, where transformers runs:  python3 scripts/check_export_transformers.py models/default OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
coenc=${1:-build}/coenc
out=${2:-.train/export-check}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
# Training text: four documents of the README (the trainer holds one out).
python3 -c '
import sys
t = open("README.md", encoding="utf-8").read(); n = len(t) // 4
sys.stdout.write("\n\n<|doc|>\n".join(t[i * n:(i + 1) * n] for i in range(4)))' >"$work/text.txt"
cat >"$work/config.json" <<JSON
{
  "co_encoder_config": {"model_type": "co_encoder", "context_feature_layer": -1, "projector_hidden_act": "gelu",
    "begin_of_context_token_id": 1, "end_of_context_token_id": 2, "pooling": "mean", "compression_ratio": 4,
    "chunk_size": 64, "min_output_size": 1, "max_output_size": 64, "tower_attention": "bidirectional",
    "context_markers": "learned"},
  "tower_from": "$PWD/models/default", "tower_layers": 2, "decoder_from": "$PWD/models/default",
  "train": {"connector": true, "tower": "frozen", "decoder": "frozen"},
  "objectives": {"reconstruction": 1.0}, "train_files": ["$work/text.txt"], "context_tokens": 64,
  "out": "$work/ckpt", "save_dtype": "f32", "batch_size": 4, "steps": 3, "lr": 1e-3, "warmup_steps": 1,
  "eval_every": 100, "seed": 1, "device": "cpu"
}
JSON
"$coenc" train "$work/config.json" >/dev/null 2>"$work/train.log" || { tail -5 "$work/train.log" >&2; exit 1; }
doc=examples/sample-document.txt question="What is the secret number?"
for export in hf:rows.safetensors npy:rows.npy vllm:request.json; do
  "$coenc" compress -m "$work/ckpt" --doc "$doc" --export "${export%%:*}" --question "$question" -n 32 \
    -o "$out/${export#*:}" -q
done
"$coenc" ask -m "$work/ckpt" --doc "$doc" -n 32 --temp 0 --json -q "$question" >"$out/ask.json"
echo "wrote $out (rows.safetensors, rows.npy, request.json, ask.json)"
