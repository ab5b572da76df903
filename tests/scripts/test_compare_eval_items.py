#!/usr/bin/env python3
"""scripts/compare_eval_items.py on hand-made item files: the paired means, difference and standard error are
checked against values worked out by hand, and bad input gives one line naming the file (and line)."""
import os
import unittest

from script_test import ScriptTest


class CompareEvalItems(ScriptTest):
    SCRIPT = "compare_eval_items.py"

    def rows(self, output):
        """condition, metric -> (A, B, B - A, stderr, items) from the printed table."""
        table = {}
        for line in output.splitlines()[1:]:
            cols = line.split()
            table[(cols[0], cols[1])] = tuple(float(c) for c in cols[2:6]) + (int(cols[6]),)
        return table

    def test_pairs_items_and_gives_the_standard_error_of_the_difference(self):
        # f1 of items 0..3: A 0.2 0.4 0.6 0.8, B 0.5 0.4 0.9 0.8 -> differences 0.3 0 0.3 0, mean 0.15,
        # sample variance 0.03, standard error sqrt(0.03 / 4) = 0.0866.
        a = self.write("a.jsonl", [
            '{"item": 0, "condition": "full", "f1": 0.2, "id": "q0", "answer": "x"}',
            '{"item": 1, "condition": "full", "f1": 0.4, "id": "q1", "answer": "y"}',
            '{"item": 2, "condition": "full", "f1": 0.6, "id": "q2", "answer": "z"}',
            '{"item": 3, "condition": "full", "f1": 0.8, "id": "q3", "answer": "w"}',
            '{"item": 0, "condition": "compressed@4", "f1": 1.0, "em": true}',
            '',
        ])
        b = self.write("b.jsonl", [
            '{"item": 0, "condition": "full", "f1": 0.5}',
            '{"item": 1, "condition": "full", "f1": 0.4}',
            '{"item": 2, "condition": "full", "f1": 0.9}',
            '{"item": 3, "condition": "full", "f1": 0.8}',
            '{"item": 9, "condition": "full", "f1": 1.0}',
            '{"item": 0, "condition": "compressed@4", "f1": 0.0}',
        ])
        r = self.run_script(a, b)
        self.assertEqual(r.returncode, 0, r.stderr)
        table = self.rows(r.stdout)
        mean_a, mean_b, diff, err, items = table[("full", "f1")]
        self.assertEqual(items, 4)  # item 9 is only in B
        self.assertAlmostEqual(mean_a, 0.5, places=4)
        self.assertAlmostEqual(mean_b, 0.65, places=4)
        self.assertAlmostEqual(diff, 0.15, places=4)
        self.assertAlmostEqual(err, 0.0866, places=4)
        # one common item: a difference, no standard error; booleans ("em": true) and strings are not metrics
        mean_a, mean_b, diff, err, items = table[("compressed@4", "f1")]
        self.assertEqual((mean_a, mean_b, diff, items), (1.0, 0.0, -1.0, 1))
        self.assertNotEqual(err, err)  # nan
        self.assertNotIn(("compressed@4", "em"), table)
        self.assertNotIn(("full", "id"), table)

    def test_a_missing_file_is_one_line_naming_it(self):
        a = self.write("a.jsonl", ['{"item": 0, "condition": "full", "f1": 1}'])
        missing = os.path.join(self.dir.name, "nowhere.jsonl")
        r = self.run_script(a, missing)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stderr.strip().count("\n"), 0)
        self.assertIn("nowhere.jsonl: cannot read it", r.stderr)

    def test_a_malformed_line_names_file_and_line(self):
        a = self.write("a.jsonl", ['{"item": 0, "condition": "full", "f1": 1}'])
        b = self.write("b.jsonl", ['{"item": 0, "condition": "full", "f1": 1}', '{"condition": "full", "f1": 1}'])
        r = self.run_script(a, b)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("b.jsonl:2: expected an object with \"item\" and \"condition\"", r.stderr)
        c = self.write("c.jsonl", ["not json"])
        r = self.run_script(c, a)
        self.assertIn("c.jsonl:1: not JSON", r.stderr)
        d = self.write("d.jsonl", ["[1, 2]"])
        r = self.run_script(a, d)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stderr.strip().count("\n"), 0)
        self.assertIn("d.jsonl:1: expected an item object, got list", r.stderr)

    def test_usage(self):
        r = self.run_script("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("paired item by item", r.stdout)
        self.assertEqual(self.run_script().returncode, 2)


if __name__ == "__main__":
    unittest.main()
