#!/usr/bin/env python3
"""Deepens the decoder of a Co-Encoder checkpoint without changing what it computes (standard library).

    python3 scripts/default_model/grow_decoder.py SRC DST LAYERS

SRC is a Co-Encoder folder (config.json, safetensors shards or one model.safetensors, the two tokenizer folders).
DST gets the same model with a decoder of LAYERS layers: new layers are spread evenly through the decoder, each
a copy of the layer before it with its two output projections (self_attn.o_proj, mlp.down_proj) set to zero. A
pre-norm residual block whose output projections are zero adds nothing to the residual stream, so DST's answers,
NLLs and plain-text perplexity equal SRC's exactly; training then has the new layers' capacity to use
(docs/default-model.md, "Stage 13"). The tower and the connector are copied unchanged.
"""

from grow_tower import ZEROED, fail, read_arguments, read_model, write_model_folder

DECODER = "language_model.model.layers."


def grown_order(old, new):
    """Which old layer each of the new decoder's layers starts from, and whether it is a zeroed copy.

    The (new - old) copies follow old layers spread evenly: 8 -> 10 copies layers 1 and 4 (counted from 0)."""
    extra = new - old
    copied = {((k + 1) * old) // (extra + 1) - 1 for k in range(extra)}
    order = []
    for i in range(old):
        order.append((i, False))
        if i in copied:
            order.append((i, True))
    return order


def main():
    src, dst, layers, config = read_arguments()
    old = config["text_config"]["num_hidden_layers"]
    if not old < layers <= 2 * old:
        fail(f"LAYERS must be more than the decoder's {old} and at most twice as many")
    tensors = read_model(src)
    layer_tensors = {name: t for name, t in tensors.items() if name.startswith(DECODER)}
    for name in layer_tensors:
        del tensors[name]
    order = grown_order(old, layers)
    for new_index, (old_index, zeroed) in enumerate(order):
        prefix = f"{DECODER}{old_index}."
        parts = [name[len(prefix):] for name in layer_tensors if name.startswith(prefix)]
        if not parts:
            fail(f"{src}: no tensors named {prefix}*")
        for part in parts:
            dtype, shape, data = layer_tensors[prefix + part]
            if zeroed and part in ZEROED:
                data = bytes(len(data))
            tensors[f"{DECODER}{new_index}.{part}"] = (dtype, shape, data)
    config["text_config"]["num_hidden_layers"] = layers
    write_model_folder(src, dst, tensors, config)
    copies = [old_index for old_index, zeroed in order if zeroed]
    print(f"grow_decoder: {dst}: decoder of {layers} layers ({len(copies)} new: zeroed copies following old layers "
          f"{', '.join(map(str, copies))}), {len(tensors)} tensors")


if __name__ == "__main__":
    main()
