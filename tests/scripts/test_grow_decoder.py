#!/usr/bin/env python3
"""scripts/default_model/grow_decoder.py on the shipped default Co-Encoder: the grown decoder keeps every old layer
in order, and each new layer is a copy of the layer before it with its two output projections zero (so the grown
model computes what the original did); the tower and connector are untouched; bad input is one line and writes
nothing."""
import json
import os
import sys
import unittest

from script_test import SCRIPTS, ScriptTest

sys.path.insert(0, os.path.join(SCRIPTS, "default_model"))
from grow_tower import read_model  # noqa: E402  (the script's own reader)

MODEL = os.path.join(SCRIPTS, "..", "models", "default-coenc")
DECODER = "language_model.model.layers."
ZEROED = ("self_attn.o_proj.weight", "mlp.down_proj.weight")  # a pre-norm block's two output projections


def layer(tensors, i):
    prefix = f"{DECODER}{i}."
    return {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}


class GrowDecoder(ScriptTest):
    SCRIPT = os.path.join("default_model", "grow_decoder.py")

    def test_new_layers_are_zeroed_copies_and_the_rest_is_kept(self):
        dst = os.path.join(self.dir.name, "grown")
        r = self.run_script(MODEL, dst, "10")
        self.assertEqual(r.returncode, 0, r.stderr)
        old, new = read_model(MODEL), read_model(dst)
        with open(os.path.join(MODEL, "config.json")) as f:
            config = json.load(f)
        self.assertEqual(config["text_config"]["num_hidden_layers"], 8)
        for name, t in old.items():  # everything outside the decoder's layers, unchanged
            if not name.startswith(DECODER):
                self.assertEqual(new[name], t, name)
        # 8 -> 10: copies follow old layers 1 and 4 (from 0), so the new order is 0 1 1' 2 3 4 4' 5 6 7
        order = [(0, False), (1, False), (1, True), (2, False), (3, False), (4, False), (4, True), (5, False),
                 (6, False), (7, False)]
        for new_index, (old_index, zeroed) in enumerate(order):
            mine, want = layer(new, new_index), layer(old, old_index)
            self.assertEqual(sorted(mine), sorted(want), new_index)
            for part, (dtype, shape, data) in mine.items():
                self.assertEqual((dtype, shape), want[part][:2], (new_index, part))
                expected = bytes(len(data)) if zeroed and part in ZEROED else want[part][2]
                self.assertEqual(data, expected, (new_index, part))
        self.assertFalse(layer(new, 10))
        self.assertEqual(len(new), len(old) + 2 * len(layer(old, 0)))
        with open(os.path.join(dst, "config.json")) as f:
            grown = json.load(f)
        self.assertEqual(grown["text_config"]["num_hidden_layers"], 10)
        grown["text_config"]["num_hidden_layers"] = 8
        self.assertEqual(grown, config)
        self.assertTrue(os.path.isfile(os.path.join(dst, "context_tokenizer", "tokenizer.json")))
        self.assertFalse(os.path.exists(dst + ".tmp"))

    def test_bad_input_is_one_line(self):
        dst = os.path.join(self.dir.name, "out")
        existing = os.path.join(self.dir.name, "existing")
        os.makedirs(existing)
        a_file = os.path.join(self.dir.name, "a-file")
        with open(a_file, "w") as f:
            f.write("not a folder")
        for args, words in [((MODEL, dst, "ten"), "LAYERS: expected a whole number of layers, got 'ten'"),
                            ((MODEL, dst, "8"), "LAYERS must be more than the decoder's 8"),
                            ((MODEL, dst, "17"), "at most twice as many"),
                            ((os.path.join(self.dir.name, "none"), dst, "10"), "none/config.json: cannot read it"),
                            ((MODEL, existing, "10"), "existing: exists already"),
                            ((MODEL, os.path.join(a_file, "grown"), "10"), "cannot write the model folder"),
                            ((MODEL, dst), "usage: grow_decoder.py SRC DST LAYERS")]:
            self.expect_one_line_error(args, words)
            self.assertFalse(os.path.exists(dst))
        self.assertEqual(os.listdir(existing), [])
        self.assertEqual(sorted(os.listdir(self.dir.name)), ["a-file", "existing"])  # no DST.tmp left behind


if __name__ == "__main__":
    unittest.main()
