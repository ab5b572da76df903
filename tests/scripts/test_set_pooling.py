#!/usr/bin/env python3
"""scripts/default_model/set_pooling.py on the shipped default Co-Encoder: `attn` changes config.json's pooling and
nothing else; `dynamic` adds the seed's two pooling attentions, small and seeded, and a scale whose first size
estimate is a chunk's tokens over the ratio; bad input is one line and writes nothing."""
import json
import os
import struct
import sys
import unittest

from script_test import SCRIPTS, ScriptTest

sys.path.insert(0, os.path.join(SCRIPTS, "default_model"))
from grow_tower import read_model  # noqa: E402  (the script's own reader)

MODEL = os.path.join(SCRIPTS, "..", "models", "default-coenc")
POOL = "connector.dynamic_pooling."


def floats(data):
    """bfloat16 bytes as floats."""
    return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for (h,) in struct.iter_unpack("<H", data)]


class SetPooling(ScriptTest):
    SCRIPT = os.path.join("default_model", "set_pooling.py")

    def config(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            return json.load(f)

    def test_attn_changes_the_pooling_only(self):
        dst = os.path.join(self.dir.name, "attn")
        r = self.run_script(MODEL, dst, "attn")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(read_model(dst), read_model(MODEL))
        config, want = self.config(dst), self.config(MODEL)
        self.assertEqual((want["pooling"], config["pooling"]), ("mean", "attn"))
        config["pooling"] = "mean"
        self.assertEqual(config, want)

    def test_dynamic_adds_small_seeded_attentions_and_a_planned_scale(self):
        a, b, c = (os.path.join(self.dir.name, n) for n in ("a", "b", "c"))
        for dst, seed in ((a, "1"), (b, "1"), (c, "2")):
            r = self.run_script(MODEL, dst, "dynamic", seed)
            self.assertEqual(r.returncode, 0, r.stderr)
        old, new = read_model(MODEL), read_model(a)
        for name, t in old.items():
            self.assertEqual(new[name], t, name)
        added = sorted(set(new) - set(old))
        self.assertEqual(len(added), 9)  # q/k/v/o of two attentions, and the scale
        self.assertTrue(all(n.startswith(POOL) for n in added))
        self.assertEqual(new, read_model(b))  # the same seed, the same weights
        self.assertNotEqual(new[POOL + "size_estimation_attention.q_proj.weight"],
                            read_model(c)[POOL + "size_estimation_attention.q_proj.weight"])
        q = floats(new[POOL + "weighted_pooling_attention.q_proj.weight"][2])
        self.assertLess(max(abs(v) for v in q), 0.2)  # N(0, 0.02^2): every score starts near 0
        self.assertGreater(max(abs(v) for v in q), 0.02)
        config = self.config(a)
        self.assertEqual(config["pooling"], "dynamic")
        (scale,) = floats(new[POOL + "scale_param"][2])
        lo, hi = config["min_output_size"], config["max_output_size"]
        first = 0.5 * scale * (hi - lo) + lo  # the first size estimate, with every score at sigmoid(0) = 1/2
        self.assertAlmostEqual(first, config["chunk_size"] / config["compression_ratio"] + 0.25, delta=0.1)

    def test_bad_input_is_one_line(self):
        attn = os.path.join(self.dir.name, "attn")
        self.assertEqual(self.run_script(MODEL, attn, "attn").returncode, 0)
        dst = os.path.join(self.dir.name, "out")
        for args, words in [((MODEL, dst, "max"), "the pooling must be attn or dynamic, got 'max'"),
                            ((MODEL, dst, "dynamic", "x"), "SEED: expected a whole number, got 'x'"),
                            ((attn, dst, "dynamic"), "pooling is 'attn', expected 'mean'"),
                            ((MODEL, attn, "dynamic"), "attn: exists already"),
                            ((os.path.join(self.dir.name, "none"), dst, "attn"), "none/config.json: cannot read it"),
                            ((MODEL, dst), "usage: set_pooling.py SRC DST attn|dynamic [SEED]")]:
            self.expect_one_line_error(args, words)
            self.assertFalse(os.path.exists(dst))


if __name__ == "__main__":
    unittest.main()
