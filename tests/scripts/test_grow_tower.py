#!/usr/bin/env python3
"""scripts/default_model/grow_tower.py on the shipped default Co-Encoder: the copy keeps every tensor of the
original, and each new tower layer is the decoder's layer of the same index with its two output projections zero
(so the grown tower computes what the original did); bad input is one line."""
import json
import os
import sys
import unittest

from script_test import SCRIPTS, ScriptTest

sys.path.insert(0, os.path.join(SCRIPTS, "default_model"))
from grow_tower import read_model  # noqa: E402  (the script's own reader)

MODEL = os.path.join(SCRIPTS, "..", "models", "default-coenc")
TOWER, DECODER = "context_tower.tower.model.layers.", "language_model.model.layers."
ZEROED = ("self_attn.o_proj.weight", "mlp.down_proj.weight")  # a pre-norm block's two output projections


class GrowTower(ScriptTest):
    SCRIPT = os.path.join("default_model", "grow_tower.py")

    def test_new_layers_are_the_decoders_with_zero_output_projections(self):
        dst = os.path.join(self.dir.name, "grown")
        r = self.run_script(MODEL, dst, "5")
        self.assertEqual(r.returncode, 0, r.stderr)
        old, new = read_model(MODEL), read_model(dst)
        config = json.load(open(os.path.join(MODEL, "config.json")))
        tower = config["context_config"]["num_hidden_layers"]
        self.assertEqual(tower, 3)
        for name, t in old.items():
            self.assertEqual(new[name], t, name)
        added = sorted(set(new) - set(old))
        self.assertTrue(added)
        for i in (3, 4):
            prefix = f"{TOWER}{i}."
            mine = [n for n in added if n.startswith(prefix)]
            self.assertEqual(len(mine), len([n for n in old if n.startswith(f"{DECODER}{i}.")]))
            for name in mine:
                part = name[len(prefix):]
                dtype, shape, data = new[name]
                want = old[f"{DECODER}{i}.{part}"]
                self.assertEqual((dtype, shape), want[:2], name)
                self.assertEqual(data, bytes(len(data)) if part in ZEROED else want[2], name)
        self.assertEqual(len(added), sum(n.startswith((f"{TOWER}3.", f"{TOWER}4.")) for n in added))
        grown = json.load(open(os.path.join(dst, "config.json")))
        self.assertEqual(grown["context_config"]["num_hidden_layers"], 5)
        grown["context_config"]["num_hidden_layers"] = tower
        self.assertEqual(grown, config)
        self.assertTrue(os.path.isfile(os.path.join(dst, "text_tokenizer", "tokenizer.json")))

    def test_bad_input_is_one_line(self):
        not_json = os.path.join(self.dir.name, "not-json")
        os.makedirs(not_json)
        with open(os.path.join(not_json, "config.json"), "w") as f:
            f.write("{")
        plain = os.path.join(self.dir.name, "plain")
        os.makedirs(plain)
        with open(os.path.join(plain, "config.json"), "w") as f:
            f.write('{"model_type": "llama"}')
        dst = os.path.join(self.dir.name, "out")
        for args, words in [((MODEL, dst, "many"), "LAYERS: expected a whole number of layers, got 'many'"),
                            ((MODEL, dst, "3"), "LAYERS must be more than the tower's 3"),
                            ((MODEL, dst, "9"), "at most the decoder's 8"),
                            ((not_json, dst, "5"), "not-json/config.json: not JSON"),
                            ((plain, dst, "5"), "expected a Co-Encoder folder"),
                            ((os.path.join(self.dir.name, "none"), dst, "5"), "none/config.json: cannot read it"),
                            ((MODEL, dst), "usage: grow_tower.py SRC DST LAYERS")]:
            self.expect_one_line_error(args, words)
            self.assertFalse(os.path.exists(dst))


if __name__ == "__main__":
    unittest.main()
