#!/usr/bin/env python3
"""scripts/make_repeat_probe.py: every document is one passage of the source repeated on its own lines up to the
length asked for, the same seed gives the same probe, and bad input is one line naming the file or flag."""
import lzma
import os
import unittest

from script_test import ScriptTest

SEPARATOR = "\n\n<|doc|>\n"


class MakeRepeatProbe(ScriptTest):
    SCRIPT = "make_repeat_probe.py"

    def setUp(self):
        super().setUp()
        words = [f"w{i}" for i in range(3000)]
        self.docs = [" ".join(words[k * 500:(k + 1) * 500]) for k in range(6)] + ["short"]
        self.source = os.path.join(self.dir.name, "src.txt.xz")
        with lzma.open(self.source, "wt", encoding="utf-8") as f:
            f.write(SEPARATOR.join(self.docs))

    def probe(self, *flags):
        out = os.path.join(self.dir.name, "probe.txt")
        r = self.run_script(self.source, out, *flags)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out, encoding="utf-8") as f:
            return f.read()

    def test_each_document_repeats_one_passage_of_the_source(self):
        text = self.probe("--passage-chars", "100", "--doc-chars", "1000", "--docs", "12")
        docs = text.split(SEPARATOR)
        self.assertEqual(len(docs), 12)
        passages = set()
        for d in docs:
            lines = d.split("\n")
            self.assertGreaterEqual(len(d), 1000)
            self.assertEqual(len(set(lines)), 1, d[:200])  # one passage, said again and again
            self.assertGreaterEqual(len(lines), 2)
            self.assertTrue(any(lines[0] in s for s in self.docs[:6]), lines[0])  # cut from the source
            self.assertLessEqual(len(lines[0]), 100)
            passages.add(lines[0])
        self.assertGreater(len(passages), 6)  # from random places
        self.assertEqual(text, self.probe("--passage-chars", "100", "--doc-chars", "1000", "--docs", "12"))
        self.assertNotEqual(text, self.probe("--passage-chars", "100", "--doc-chars", "1000", "--docs", "12",
                                             "--seed", "2"))

    def test_bad_input_is_one_line(self):
        out = os.path.join(self.dir.name, "probe.txt")
        r = self.run_script(os.path.join(self.dir.name, "nowhere.txt"), out)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stderr.strip().count("\n"), 0)
        self.assertIn("nowhere.txt: cannot read it", r.stderr)
        r = self.run_script(self.source, out, "--passage-chars", "100000")
        self.assertIn("no document is longer than --passage-chars (100000)", r.stderr)
        r = self.run_script(self.source, out, "--docs", "0")
        self.assertIn("--docs must be > 0", r.stderr)
        self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    unittest.main()
