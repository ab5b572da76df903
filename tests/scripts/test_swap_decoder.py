#!/usr/bin/env python3
"""scripts/default_model/swap_decoder.py: the shipped default Co-Encoder's own decoder, taken out as a plain
decoder folder and swapped back in, gives a checkpoint whose every tensor and config equals the original's and
whose `coenc eval` NLLs are the original's to the last digit; a decoder of another width, a folder that is not a
model or a destination that exists is one line and no folder written."""
import json
import os
import shutil
import subprocess
import sys
import unittest

from script_test import SCRIPTS, ScriptTest

sys.path.insert(0, os.path.join(SCRIPTS, "default_model"))
from grow_tower import read_model, write_model  # noqa: E402  (the script's own reader and writer)

MODEL = os.path.join(SCRIPTS, "..", "models", "default-coenc")
SMALL = os.path.join(SCRIPTS, "..", "models", "default")  # a decoder of width 320, the Co-Encoder's is 512
COENC = os.environ.get("COENC_BINARY", os.path.join(SCRIPTS, "..", "build", "coenc"))
DOC = os.path.join(SCRIPTS, "..", "examples", "sample-document.txt")
PREFIX = "language_model."


class SwapDecoder(ScriptTest):
    SCRIPT = os.path.join("default_model", "swap_decoder.py")

    def own_decoder(self):
        """The shipped Co-Encoder's decoder as a plain decoder folder, as `coenc train` writes one."""
        folder = os.path.join(self.dir.name, "decoder")
        os.makedirs(folder)
        tensors = {n[len(PREFIX):]: t for n, t in read_model(MODEL).items() if n.startswith(PREFIX)}
        write_model(folder, tensors)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(json.load(open(os.path.join(MODEL, "config.json")))["text_config"], f)
        shutil.copy(os.path.join(MODEL, "text_tokenizer", "tokenizer.json"), folder)
        return folder

    def test_its_own_decoder_swapped_back_changes_nothing(self):
        dst = os.path.join(self.dir.name, "swapped")
        r = self.run_script(MODEL, self.own_decoder(), dst)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.load(open(os.path.join(dst, "config.json"))),
                         json.load(open(os.path.join(MODEL, "config.json"))))
        self.assertEqual(read_model(dst), read_model(MODEL))
        self.assertFalse(os.path.exists(dst + ".tmp"))
        # and coenc reads it as the same model: every condition's NLL equal
        with open(DOC, encoding="utf-8") as f:
            data = self.write("doc.txt", [f.read()])
        nll = []
        for m in (MODEL, dst):
            r = subprocess.run([COENC, "eval", "-m", m, "--task", "ppl", "--data", data, "--ratio", "4", "--limit", "1",
                                "--context-tokens", "256", "--target-tokens", "32", "--json", "-q"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            nll.append({k: v["nll"] for k, v in json.loads(r.stdout)["conditions"].items()})
        self.assertEqual(set(nll[0]), {"none", "full", "compressed@4"})
        self.assertEqual(nll[0], nll[1])

    def test_bad_input_is_one_line_and_writes_nothing(self):
        dst = os.path.join(self.dir.name, "out")
        own = self.own_decoder()
        other_tokenizer = os.path.join(self.dir.name, "other-tokenizer")
        shutil.copytree(own, other_tokenizer)
        with open(os.path.join(other_tokenizer, "tokenizer.json"), "a") as f:
            f.write(" ")  # a byte more: another tokenizer as far as the check knows
        not_json = os.path.join(self.dir.name, "not-json")
        shutil.copytree(own, not_json)
        with open(os.path.join(not_json, "config.json"), "w") as f:
            f.write("{")
        def co_encoder_like(name, config):  # all a Co-Encoder folder has, its config aside
            folder = os.path.join(self.dir.name, name)
            shutil.copytree(os.path.join(MODEL, "text_tokenizer"), os.path.join(folder, "text_tokenizer"))
            for file, text in (("config.json", config), ("model.safetensors", "")):
                with open(os.path.join(folder, file), "w") as f:
                    f.write(text)
            return folder
        for args, words in [((MODEL, SMALL, dst), "hidden_size 320 differs from"),
                            ((MODEL, other_tokenizer, dst), "other-tokenizer/tokenizer.json differs from"),
                            ((MODEL, not_json, dst), "not-json/config.json: not JSON"),
                            ((co_encoder_like("a", "{}"), own, dst), "no \"text_config\": expected a Co-Encoder"),
                            ((co_encoder_like("b", '{"text_config": 1}'), own, dst), "no \"text_config\""),
                            ((co_encoder_like("c", "[]"), own, dst), "c/config.json: expected a JSON object"),
                            ((MODEL, os.path.join(self.dir.name, "none"), dst),
                             "none/config.json: not found: expected a decoder folder"),
                            ((SMALL, own, dst),
                             "text_tokenizer/tokenizer.json: not found: expected a Co-Encoder folder"),
                            ((MODEL, SMALL, self.dir.name), "exists already"),
                            ((MODEL, SMALL), "usage: swap_decoder.py SRC DECODER DST")]:
            self.expect_one_line_error(args, words)
            self.assertFalse(os.path.exists(dst))


if __name__ == "__main__":
    unittest.main()
