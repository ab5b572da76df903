#!/usr/bin/env python3
"""Copies a Co-Encoder checkpoint with another chunk size (standard library).

    python3 scripts/default_model/set_chunk_size.py SRC DST N

SRC is a Co-Encoder folder (config.json, safetensors shards, the two tokenizer folders). DST gets the same files,
with config.json's "chunk_size" set to N: the tower then reads a document N tokens at a time, each chunk alone
(bidirectional within it), and the connector pools each chunk into N / ratio vectors. No weight changes: the
tower's rotary positions then reach N - 1, so N runs from 1 to the tower's max_position_embeddings. DST is written
under a temporary name and renamed. docs/default-model.md, "Stage 20", trains stage 10's model on chunks of 512.
"""
import os
import shutil
import sys

from grow_tower import fail, read_config, write_config, written_whole


def main():
    if len(sys.argv) != 4:
        fail("usage: set_chunk_size.py SRC DST N")
    src, dst, n = sys.argv[1:]
    try:
        n = int(n)
    except ValueError:
        fail(f"N: expected a whole number of tokens, got '{n}'")
    config_path = os.path.join(src, "config.json")
    config = read_config(src)
    if config.get("model_type") != "co_encoder" or not isinstance(config.get("context_config"), dict):
        fail(f"{config_path}: not a Co-Encoder config (model_type \"co_encoder\" with a context_config)")
    limit = config["context_config"].get("max_position_embeddings")
    if not isinstance(limit, int):
        fail(f"{config_path}: context_config.max_position_embeddings: expected a whole number, got {limit!r}")
    if not 1 <= n <= limit:
        fail(f"N = {n}: a chunk must be 1 to {limit} tokens (context_config.max_position_embeddings of {config_path})")
    with written_whole(dst) as tmp:
        shutil.copytree(src, tmp)
        old, config["chunk_size"] = config.get("chunk_size"), n
        write_config(tmp, config)
    print(f"{dst}: {src} with chunks of {n} tokens (was {old})")


if __name__ == "__main__":
    main()
