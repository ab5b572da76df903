#!/usr/bin/env python3
"""Gives a Co-Encoder checkpoint another pooling, starting as close to its old one as it can (standard library).

    python3 scripts/default_model/set_pooling.py SRC DST attn|dynamic [SEED]

SRC is a Co-Encoder folder with pooling "mean" (config.json, safetensors shards, the two tokenizer folders). DST
gets the same tower, connector and decoder with config.json's "pooling" set to the new mode:

- attn: no new weights. The tower's last layer attends from the mean of each span's queries instead of from every
  token (the pooled queries see all keys), and the connector reads its output: the same weights, a different but
  nearby function.
- dynamic: the seed's dynamic weighted average pooling, whose size-estimation and weighted-pooling attentions
  (connector.dynamic_pooling.*) are new: q/k/v/o projections drawn from N(0, 0.02^2) (seeded by SEED, default 0),
  so every token's score starts near 0, its weight near sigmoid(0) = 1/2 (spans start as means), and scale_param
  set so that the first size estimate, 1/2 * scale * (max - min) + min, is a chunk's tokens over the ratio (the
  seed's 0.01 would start at one vector per chunk). The ratio becomes a budget (training's size_loss), not a rule.

docs/default-model.md, "Stage 12", compares the three poolings at equal steps.
"""
import os
import random
import struct
import sys

from grow_tower import fail, read_config, read_model, refuse_existing, write_model_folder

POOL = "connector.dynamic_pooling."


def bf16(values):
    """Little-endian bfloat16 bytes of floats (round to nearest even)."""
    out = bytearray()
    for v in values:
        (bits,) = struct.unpack("<I", struct.pack("<f", v))
        bits += 0x7FFF + ((bits >> 16) & 1)
        out += struct.pack("<H", (bits >> 16) & 0xFFFF)
    return bytes(out)


def dynamic_tensors(config, rng):
    tower = config["context_config"]
    d, heads = tower["hidden_size"], tower["num_attention_heads"]
    kv, hd = tower["num_key_value_heads"], tower["head_dim"]
    shapes = {"q_proj": [heads * hd, d], "k_proj": [kv * hd, d], "v_proj": [kv * hd, d], "o_proj": [1, heads * hd]}
    tensors = {}
    for attention in ("size_estimation_attention", "weighted_pooling_attention"):
        for proj, shape in shapes.items():
            n = shape[0] * shape[1]
            tensors[f"{POOL}{attention}.{proj}.weight"] = ("BF16", shape, bf16(rng.gauss(0.0, 0.02) for _ in range(n)))
    lo, hi = config["min_output_size"], config["max_output_size"]
    target = config["chunk_size"] / config["compression_ratio"]
    # + 0.25: the size is truncated to an integer, so aim a quarter of a vector above the target.
    scale = (target + 0.25 - lo) / (0.5 * (hi - lo))
    tensors[f"{POOL}scale_param"] = ("BF16", [], bf16([scale]))
    return tensors, scale


def main():
    if len(sys.argv) not in (4, 5):
        fail("usage: set_pooling.py SRC DST attn|dynamic [SEED]")
    src, dst, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode not in ("attn", "dynamic"):
        fail(f"the pooling must be attn or dynamic, got '{mode}'")
    if len(sys.argv) == 5 and not sys.argv[4].isdigit():
        fail(f"SEED: expected a whole number, got '{sys.argv[4]}'")
    seed = int(sys.argv[4]) if len(sys.argv) == 5 else 0
    refuse_existing(dst)
    config = read_config(src)
    if config.get("pooling") != "mean":
        fail(f"{src}/config.json: pooling is '{config.get('pooling')}', expected 'mean'")
    tensors = read_model(src)
    note = "no new weights"
    if mode == "dynamic":
        new, scale = dynamic_tensors(config, random.Random(seed))
        tensors.update(new)
        note = f"{len(new)} new tensors, scale_param {scale:.4f}"
    config["pooling"] = mode
    write_model_folder(src, dst, tensors, config)
    print(f"set_pooling: {dst}: pooling {mode} ({note})")


if __name__ == "__main__":
    main()
