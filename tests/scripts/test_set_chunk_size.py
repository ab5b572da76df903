#!/usr/bin/env python3
"""scripts/default_model/set_chunk_size.py on the shipped default Co-Encoder: the copy differs from it in
config.json's chunk_size alone, and coenc compresses with the new chunks; a chunk the tower's positions cannot
hold, a folder that is not a Co-Encoder or a destination that exists is one line and no folder written."""
import filecmp
import json
import math
import os
import subprocess
import unittest

from script_test import SCRIPTS, ScriptTest

MODEL = os.path.join(SCRIPTS, "..", "models", "default-coenc")
COENC = os.environ.get("COENC_BINARY", os.path.join(SCRIPTS, "..", "build", "coenc"))
DOC = os.path.join(SCRIPTS, "..", "examples", "sample-document.txt")


class SetChunkSize(ScriptTest):
    SCRIPT = os.path.join("default_model", "set_chunk_size.py")

    def test_the_copy_compresses_in_chunks_of_the_new_size(self):
        dst = os.path.join(self.dir.name, "c512")
        r = self.run_script(MODEL, dst, "512")
        self.assertEqual(r.returncode, 0, r.stderr)
        old, new = (json.load(open(os.path.join(d, "config.json"))) for d in (MODEL, dst))
        self.assertEqual(new.pop("chunk_size"), 512)
        self.assertNotEqual(old.pop("chunk_size"), 512)
        self.assertEqual(new, old)
        names = sorted(n for n in os.listdir(MODEL) if n != "config.json")
        self.assertEqual(sorted(n for n in os.listdir(dst) if n != "config.json"), names)
        shards = [n for n in names if n.endswith(".safetensors")]
        self.assertTrue(shards)
        _, mismatch, errors = filecmp.cmpfiles(MODEL, dst, shards, shallow=False)
        self.assertEqual((mismatch, errors), ([], []))
        coctx = os.path.join(self.dir.name, "doc.coctx")
        r = subprocess.run([COENC, "compress", "-m", dst, "--doc", DOC, "-o", coctx, "-q"], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        info = json.loads(subprocess.run([COENC, "inspect", coctx, "--json"], capture_output=True, text=True,
                                         check=True).stdout)
        self.assertEqual(info["chunk_size"], 512)
        self.assertEqual(info["n_chunks"], math.ceil(info["n_tokens"] / 512))
        self.assertGreater(info["n_tokens"], 512)  # more than one chunk, so the size is what splits it

    def test_bad_input_is_one_line_and_writes_nothing(self):
        dst = os.path.join(self.dir.name, "out")
        odd = os.path.join(self.dir.name, "odd")
        os.makedirs(odd)
        config = json.load(open(os.path.join(MODEL, "config.json")))
        config["context_config"]["max_position_embeddings"] = "2048"
        with open(os.path.join(odd, "config.json"), "w") as f:
            json.dump(config, f)
        for args, words in [((odd, dst, "512"), "max_position_embeddings: expected a whole number, got '2048'"),
                            ((MODEL, dst, "4096"), "must be 1 to 2048 tokens"),
                            ((MODEL, dst, "many"), "expected a whole number"),
                            ((DOC, dst, "512"), "sample-document.txt/config.json"),
                            ((MODEL, self.dir.name, "512"), "exists already")]:
            self.expect_one_line_error(args, words)
            self.assertFalse(os.path.exists(dst))


if __name__ == "__main__":
    unittest.main()
