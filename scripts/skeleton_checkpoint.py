#!/usr/bin/env python3
"""A checkpoint's skeleton: every file of the folder, but each .safetensors file cut to its header.

Speed checks on the GPU machine (scripts/gpu_bulk_check.sh) need a model of the shipped shape, not its weights,
and the 82 MB of models/default-coenc do not travel in one device call beside the tree. So:

  here:   scripts/skeleton_checkpoint.py strip models/default-coenc .train/skeleton     (~1 MB)
  there:  scripts/skeleton_checkpoint.py fill .train/skeleton .gl/random-coenc           (random weights)

`fill` writes each tensor the header names with random values of its dtype and shape (small positive weights,
norms' weights 1), and copies every other file as it is. Python alone, no torch.
"""
import json
import os
import shutil
import struct
import sys


def read_header(path):
    """The 8-byte length and header bytes of a .safetensors file, and the header as a dict; one line and exit 1 for
    a file that is not one (too short, a length past its end, a header that is not a JSON object of tensors)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            sys.exit(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            sys.exit(f"{path}: not a safetensors file (a header of {n} bytes announced, {size - 8} present)")
        header = f.read(n)
    try:
        parsed = json.loads(header)
    except (UnicodeDecodeError, ValueError) as e:
        sys.exit(f"{path}: not a safetensors file (its header is not JSON: {e})")
    if not isinstance(parsed, dict):
        sys.exit(f"{path}: not a safetensors file (its header is not a JSON object)")
    for key, v in parsed.items():
        if key == "__metadata__":
            continue
        if not (isinstance(v, dict) and isinstance(v.get("dtype"), str) and isinstance(v.get("shape"), list)
                and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2):
            sys.exit(f"{path}: tensor {key}: expected \"dtype\", \"shape\" and two \"data_offsets\" in the header")
    return raw + header, parsed


def each_file(src, dst, safetensors):
    """Copies every file of src to the same place under dst, except .safetensors files: safetensors(s, d)."""
    for root, _, files in os.walk(src):
        rel = os.path.relpath(root, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for name in files:
            s, d = os.path.join(root, name), os.path.join(dst, rel, name)
            if name.endswith(".safetensors"):
                safetensors(s, d)
            else:
                shutil.copyfile(s, d)


def strip(src, dst):
    def header_only(s, d):
        raw, _ = read_header(s)
        with open(d, "wb") as f:
            f.write(raw)

    each_file(src, dst, header_only)


# Little-endian bytes of one value of each dtype: small positive weights ~0.008-0.03 (the high byte fixes sign and
# exponent, the rest is random) and 1.0 for norms' weights.
SMALL_HIGH_BYTE = {"BF16": 0x3C, "F16": 0x20, "F32": 0x3C}
ONE = {"BF16": b"\x80\x3f", "F16": b"\x00\x3c", "F32": b"\x00\x00\x80\x3f"}


def random_values(dtype, count, norm):
    width = len(ONE[dtype])
    if norm:
        return ONE[dtype] * count
    data = bytearray(os.urandom(width * count))
    data[width - 1 :: width] = bytes([SMALL_HIGH_BYTE[dtype]]) * count
    return bytes(data)


def fill(src, dst):
    def random_weights(s, d):
        raw, header = read_header(s)
        entries = sorted((v["data_offsets"][0], k, v) for k, v in header.items() if k != "__metadata__")
        with open(d + ".tmp", "wb") as f:
            f.write(raw)
            written = 0
            for begin, key, v in entries:
                if begin != written:
                    sys.exit(f"{s}: tensor {key} starts at byte {begin} of the data, expected {written}")
                if v["dtype"] not in ONE:
                    sys.exit(f"{s}: tensor {key} has dtype {v['dtype']} (expected one of {sorted(ONE)})")
                count = 1
                for n in v["shape"]:
                    count *= n
                norm = key.endswith("norm.weight") or "layernorm" in key
                data = random_values(v["dtype"], count, norm)
                if len(data) != v["data_offsets"][1] - begin:
                    sys.exit(f"{s}: tensor {key} spans {v['data_offsets']} but its shape needs {len(data)} bytes")
                f.write(data)
                written += len(data)
        os.replace(d + ".tmp", d)

    each_file(src, dst, random_weights)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("strip", "fill"):
        sys.exit("usage: skeleton_checkpoint.py strip SRC_DIR DST_DIR | fill SKELETON_DIR DST_DIR")
    (strip if sys.argv[1] == "strip" else fill)(sys.argv[2], sys.argv[3])
