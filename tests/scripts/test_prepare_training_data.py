#!/usr/bin/env python3
"""scripts/prepare_training_data.py on a miniature corpus laid out as ../shared/corpus: the corpus README's rule
(nothing of a test or val split, nor of the held-out slices, is trained on) is checked on what it writes, every
file it promises is there, and a corpus that is not there or a damaged line is one line naming the file."""
import json
import lzma
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "prepare_training_data.py")
PRETRAIN = ["wiki-00", "sotu-00", "gutenberg-00", "gutenberg-01", "gutenberg-02", "gutenberg-03"]


def qa(id_, split, answers=("a",), **meta):
    return {"id": id_, "split": split, "context": "c " + id_, "question": "q " + id_, "answers": list(answers),
            "options": None, "meta": meta}


class PrepareTrainingData(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.corpus = os.path.join(self.tmp.name, "corpus")
        self.out = os.path.join(self.tmp.name, "out")
        os.makedirs(os.path.join(self.corpus, "pretrain"))
        os.makedirs(os.path.join(self.corpus, "qa"))
        for name in PRETRAIN:
            with lzma.open(os.path.join(self.corpus, "pretrain", name + ".txt.xz"), "wt", encoding="utf-8") as f:
                f.write(f"text of {name}\n\n<|doc|>\nmore of {name}\n")
        self.squad = [qa("s1", "train", title="Normans"), qa("s2", "train", title="Oxygen"),
                      qa("s3", "train", answers=(), title="Oxygen"), qa("s4", "test", title="Oxygen"),
                      qa("s5", "train", title="Teacher")]
        self.fairy = [qa("f1", "train"), qa("f2", "val"), qa("f3", "test")]
        self.babi = [qa(f"babi-qa1-train-{n:04d}", "train", task=1) for n in range(1, 22)] + \
            [qa("babi-qa1-test-0001", "test", task=1)]
        for name, rows in (("squad", self.squad), ("fairytaleqa", self.fairy), ("babi", self.babi)):
            self.write_qa(name, [json.dumps(r) for r in rows])

    def tearDown(self):
        self.tmp.cleanup()

    def write_qa(self, name, lines):
        with lzma.open(os.path.join(self.corpus, "qa", name + ".jsonl.xz"), "wt", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def run_script(self, corpus=None):
        return subprocess.run([sys.executable, SCRIPT, corpus or self.corpus, self.out], capture_output=True,
                              text=True)

    def ids(self, path, xz=False):
        opener = lzma.open if xz else open
        with opener(path, "rt", encoding="utf-8") as f:
            return [json.loads(line)["id"] for line in f if line.strip()]

    def test_splits_keep_validation_and_test_out_of_training(self):
        r = self.run_script()
        self.assertEqual(r.returncode, 0, r.stderr)
        train = self.ids(os.path.join(self.out, "qa-train.jsonl.xz"), xz=True)
        val = {name: self.ids(os.path.join(self.out, "val", name + "-val.jsonl"))
               for name in ("squad", "fairytaleqa", "babi")}
        # SQuAD: train-split questions with an answer, minus the held-out articles (Normans, Teacher)
        self.assertEqual(val["squad"], ["s1", "s5"])
        self.assertEqual(val["fairytaleqa"], ["f2"])
        self.assertEqual(val["babi"], ["babi-qa1-train-0010", "babi-qa1-train-0020"])
        expected = ["s2", "f1"] + [f"babi-qa1-train-{n:04d}" for n in range(1, 22) if n % 10]
        self.assertEqual(train, expected)
        # the rule itself: no validation or test item is trained on
        held_out = set(sum(val.values(), [])) | {r["id"] for r in self.squad + self.fairy + self.babi
                                                 if r["split"] != "train"}
        self.assertFalse(held_out & set(train))
        self.assertIn("qa-train.jsonl.xz: 21 questions; val: squad 2, fairytaleqa 1, babi 2", r.stdout)
        # the shards as they were, and the text validation files cut from the one shard no stage trains on
        for name in PRETRAIN:
            with open(os.path.join(self.out, "pretrain", name + ".txt.xz"), "rb") as a, \
                    open(os.path.join(self.corpus, "pretrain", name + ".txt.xz"), "rb") as b:
                self.assertEqual(a.read(), b.read())
        for name in ("gutenberg-01-part-full", "gutenberg-01-part"):
            with lzma.open(os.path.join(self.out, "val", name + ".txt.xz"), "rt", encoding="utf-8") as f:
                self.assertEqual(f.read(), "text of gutenberg-01\n\n<|doc|>\nmore of gutenberg-01\n")

    def test_a_missing_corpus_is_one_line_naming_the_file(self):
        r = self.run_script(os.path.join(self.tmp.name, "nowhere"))
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stderr.strip().count("\n"), 0, r.stderr)
        self.assertIn(os.path.join("nowhere", "pretrain", "wiki-00.txt.xz") + ": not found", r.stderr)
        self.assertFalse(os.path.exists(self.out))

    def test_a_damaged_line_names_file_and_line(self):
        self.write_qa("fairytaleqa", [json.dumps(self.fairy[0]), '{"id": "f9", "answers": []}'])
        r = self.run_script()
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stderr.strip().count("\n"), 0, r.stderr)
        self.assertIn("fairytaleqa.jsonl.xz:2: expected a QA object with \"id\", \"split\" and \"answers\"", r.stderr)


if __name__ == "__main__":
    unittest.main()
