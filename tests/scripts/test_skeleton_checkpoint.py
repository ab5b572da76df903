#!/usr/bin/env python3
"""scripts/skeleton_checkpoint.py on the shipped default Co-Encoder: strip keeps every file and each shard's header
only; fill gives back shards of the original sizes and headers that coenc loads and runs (norms' weights 1, the
rest random); a file that is not safetensors is one line naming it."""
import json
import os
import struct
import subprocess
import unittest

from script_test import SCRIPTS, ScriptTest

MODEL = os.path.join(SCRIPTS, "..", "models", "default-coenc")
COENC = os.environ.get("COENC_BINARY", os.path.join(SCRIPTS, "..", "build", "coenc"))


def header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return n, json.loads(f.read(n))


class SkeletonCheckpoint(ScriptTest):
    SCRIPT = "skeleton_checkpoint.py"

    def files(self, folder):
        out = {}
        for root, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(root, name)
                out[os.path.relpath(path, folder)] = os.path.getsize(path)
        return out

    def test_strip_then_fill_gives_a_model_of_the_same_shapes(self):
        skeleton, filled = os.path.join(self.dir.name, "skeleton"), os.path.join(self.dir.name, "filled")
        r = self.run_script("strip", MODEL, skeleton)
        self.assertEqual(r.returncode, 0, r.stderr)
        original = self.files(MODEL)
        stripped = self.files(skeleton)
        self.assertEqual(set(stripped), set(original))
        shards = [f for f in original if f.endswith(".safetensors")]
        self.assertGreater(len(shards), 1)
        for f in shards:
            n, _ = header(os.path.join(MODEL, f))
            self.assertEqual(stripped[f], 8 + n, f)  # the header alone
        self.assertLess(sum(stripped[f] for f in shards), 1 << 20)

        r = self.run_script("fill", skeleton, filled)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.files(filled), original)
        for f in shards:
            self.assertEqual(header(os.path.join(filled, f)), header(os.path.join(MODEL, f)), f)
        # A norm's weights are 1.0 (bf16 0x3f80); another tensor's bytes differ from the shipped ones.
        f = shards[0]
        n, h = header(os.path.join(filled, f))
        with open(os.path.join(filled, f), "rb") as fp:
            data = fp.read()[8 + n:]
        norms = [k for k in h if k.endswith("norm.weight")]
        self.assertTrue(norms)
        begin, end = h[norms[0]]["data_offsets"]
        self.assertEqual(data[begin:end], b"\x80\x3f" * ((end - begin) // 2))
        with open(os.path.join(MODEL, f), "rb") as fp:
            self.assertNotEqual(fp.read()[8 + n:], data)
        # coenc loads it and answers (nonsense: the weights are random).
        doc = os.path.join(self.dir.name, "doc.txt")
        with open(doc, "w") as fp:
            fp.write("The secret number is 48213. The rest of the text says nothing.")
        run = subprocess.run([COENC, "ask", "-m", filled, "--doc", doc, "-n", "3", "What is the secret number?"],
                             capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)

    def test_a_file_that_is_not_safetensors_is_named(self):
        src = os.path.join(self.dir.name, "src")
        os.makedirs(src)
        not_one = "model.safetensors: not a safetensors file ("
        cases = [(b"abc", not_one + "shorter than its 8-byte header length"),
                 (struct.pack("<Q", 1 << 40) + b"{}", not_one + "a header of 1099511627776 bytes announced, 2 present"),
                 (struct.pack("<Q", 5) + b"abcde", not_one + "its header is not JSON"),
                 (struct.pack("<Q", 2) + b"[]", not_one + "its header is not a JSON object"),
                 (struct.pack("<Q", 14) + b'{"w": {"x":1}}', 'model.safetensors: tensor w: expected "dtype", "shape"')]
        for data, words in cases:
            with open(os.path.join(src, "model.safetensors"), "wb") as f:
                f.write(data)
            for command in ("strip", "fill"):
                self.expect_one_line_error((command, src, os.path.join(self.dir.name, "out-" + command)), words)

if __name__ == "__main__":
    unittest.main()
