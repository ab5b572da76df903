#!/usr/bin/env python3
"""Deepens the context tower of a Co-Encoder checkpoint without changing what it computes (standard library).

    python3 scripts/default_model/grow_tower.py SRC DST LAYERS

SRC is a Co-Encoder folder (config.json, safetensors shards or one model.safetensors, the two tokenizer folders).
DST gets the same model with a tower of LAYERS layers: the tower's own layers are kept, and each new layer i
(appended after them, before the tower's final norm) starts as a copy of the decoder's layer i with its two
output projections (self_attn.o_proj, mlp.down_proj) set to zero. A pre-norm residual block whose output
projections are zero adds nothing to the residual stream, so DST's tower, connector and answers equal SRC's
exactly; training then has the new layers' capacity to use (docs/default-model.md, "Stage 11").
"""
import contextlib
import json
import os
import shutil
import struct
import sys

TOWER = "context_tower.tower.model.layers."
DECODER = "language_model.model.layers."
ZEROED = ("self_attn.o_proj.weight", "mlp.down_proj.weight")
SHARD_BYTES = 15_800_000


def fail(message):
    script = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    sys.exit(f"{script}: {message}")


def read_config(folder):
    """FOLDER/config.json as a dict, or one line naming it and a non-zero exit."""
    path = os.path.join(folder, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except OSError as e:
        fail(f"{path}: cannot read it ({e.strerror})")
    except ValueError as e:
        fail(f"{path}: not JSON ({e})")
    if not isinstance(config, dict):
        fail(f"{path}: expected a JSON object")
    return config


def read_arguments():
    """SRC DST LAYERS from the command line, and SRC's config.json."""
    if len(sys.argv) != 4:
        fail(f"usage: {os.path.basename(sys.argv[0])} SRC DST LAYERS")
    src, dst, layers = sys.argv[1:]
    if not layers.isdigit():
        fail(f"LAYERS: expected a whole number of layers, got '{layers}'")
    refuse_existing(dst)
    return src, dst, int(layers), read_config(src)


def read_shard(path):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            fail(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        tensors[name] = (entry["dtype"], entry["shape"], data[begin:end])
    return tensors


def read_model(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for name in files:
        tensors.update(read_shard(os.path.join(folder, name)))
    return tensors


def write_model(folder, tensors):
    """Shards of at most SHARD_BYTES in name order, and their index, as the trainer writes them."""
    shards, current, size = [], [], 0
    for name in sorted(tensors):
        nbytes = len(tensors[name][2])
        if current and size + nbytes > SHARD_BYTES:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    shards.append(current)
    weight_map, total = {}, 0
    for k, names in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name in names:
            dtype, shape, data = tensors[name]
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
            offset += len(data)
            weight_map[name] = file
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        with open(os.path.join(folder, file), "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for name in names:
                f.write(tensors[name][2])
        total += offset
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)


def refuse_existing(dst):
    """One line and a non-zero exit where DST exists: these scripts never write over a folder."""
    if os.path.exists(dst):
        fail(f"{dst}: exists already (remove it or name another folder)")


@contextlib.contextmanager
def written_whole(dst):
    """Yields DST.tmp to write a new folder into, then renames it DST: an existing DST is refused, and a failed
    write (one line naming DST) leaves nothing behind."""
    refuse_existing(dst)
    tmp = dst.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
        os.rename(tmp, dst)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        fail(f"{dst}: cannot write the model folder ({e})")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_model_folder(src, dst, tensors, config):
    """DST gets `tensors` (shards and index), `config` as config.json and SRC's two tokenizer folders, written
    whole (`written_whole`)."""
    with written_whole(dst) as tmp:
        os.makedirs(tmp)
        write_model(tmp, tensors)
        write_config(tmp, config)
        for folder in ("context_tokenizer", "text_tokenizer"):
            if os.path.isdir(os.path.join(src, folder)):
                shutil.copytree(os.path.join(src, folder), os.path.join(tmp, folder))


def write_config(folder, config):
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def main():
    src, dst, layers, config = read_arguments()
    if not all(isinstance(config.get(k), dict) for k in ("context_config", "text_config")):
        fail(f"{src}/config.json: no \"context_config\" and \"text_config\": expected a Co-Encoder folder")
    tower_layers = config["context_config"]["num_hidden_layers"]
    decoder_layers = config["text_config"]["num_hidden_layers"]
    if not tower_layers < layers <= decoder_layers:
        fail(f"LAYERS must be more than the tower's {tower_layers} and at most the decoder's {decoder_layers}")
    for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim"):
        if config["context_config"].get(key) != config["text_config"].get(key):
            fail(f"the tower's and the decoder's {key} differ: decoder layers cannot be copied into the tower")
    tensors = read_model(src)
    for i in range(tower_layers, layers):
        prefix = f"{DECODER}{i}."
        copied = [name for name in tensors if name.startswith(prefix)]
        if not copied:
            fail(f"{src}: no tensors named {prefix}*")
        for name in copied:
            dtype, shape, data = tensors[name]
            part = name[len(prefix):]
            tensors[f"{TOWER}{i}.{part}"] = (dtype, shape, bytes(len(data)) if part in ZEROED else data)
    config["context_config"]["num_hidden_layers"] = layers
    write_model_folder(src, dst, tensors, config)
    print(f"grow_tower: {dst}: tower of {layers} layers ({layers - tower_layers} new, from decoder layers "
          f"{tower_layers}-{layers - 1} with zero output projections), {len(tensors)} tensors")


if __name__ == "__main__":
    main()
