#!/usr/bin/env python3
"""Puts a plain decoder into a Co-Encoder checkpoint in place of its own (standard library).

    python3 scripts/default_model/swap_decoder.py SRC DECODER DST

SRC is a Co-Encoder folder, DECODER a Llama decoder folder as `coenc train` writes it (config.json, safetensors,
tokenizer.json) of the same width and tokenizer. DST gets SRC's tower and connector with DECODER as the language
model (written under a temporary name and renamed; an existing DST is refused). It exists to measure a newly
pretrained decoder with `coenc eval`: the conditions `none` and `full` read the decoder alone, so they measure
DECODER; the compressed ones pair it with a connector trained for another decoder and mean nothing
(docs/default-model.md, "Stage 21").
"""

import filecmp
import os
import sys

from grow_tower import fail, read_config, read_model, refuse_existing, write_model_folder

WIDTH_KEYS = ("hidden_size", "vocab_size")
WEIGHTS = ("model.safetensors.index.json", "model.safetensors")


def main():
    if len(sys.argv) != 4:
        fail(f"usage: {os.path.basename(sys.argv[0])} SRC DECODER DST")
    src, decoder, dst = sys.argv[1:]
    refuse_existing(dst)
    for folder, tokenizer, what in ((src, os.path.join("text_tokenizer", "tokenizer.json"), "a Co-Encoder folder"),
                                    (decoder, "tokenizer.json", "a decoder folder as `coenc train` writes it")):
        for name in ("config.json", tokenizer):
            if not os.path.isfile(os.path.join(folder, name)):
                fail(f"{os.path.join(folder, name)}: not found: expected {what}")
        if not any(os.path.isfile(os.path.join(folder, w)) for w in WEIGHTS):
            fail(f"{folder}: neither {' nor '.join(WEIGHTS)}: expected {what}")
    config, decoder_config = read_config(src), read_config(decoder)
    if not isinstance(config.get("text_config"), dict):
        fail(f"{src}/config.json: no \"text_config\": expected a Co-Encoder folder")
    for key in WIDTH_KEYS:
        if config["text_config"].get(key) != decoder_config.get(key):
            fail(f"{decoder}: {key} {decoder_config.get(key)} differs from {src}'s decoder "
                 f"({config['text_config'].get(key)})")
    src_tokenizer = os.path.join(src, "text_tokenizer", "tokenizer.json")
    if not filecmp.cmp(src_tokenizer, os.path.join(decoder, "tokenizer.json"), shallow=False):
        fail(f"{decoder}/tokenizer.json differs from {src_tokenizer}")
    tensors = {name: t for name, t in read_model(src).items() if not name.startswith("language_model.")}
    for name, t in read_model(decoder).items():
        tensors["language_model." + name] = t
    config["text_config"] = decoder_config
    write_model_folder(src, dst, tensors, config)
    print(f"swap_decoder: {dst}: {src}'s tower and connector, {decoder}'s decoder "
          f"({decoder_config['num_hidden_layers']} layers), {len(tensors)} tensors")


if __name__ == "__main__":
    main()
