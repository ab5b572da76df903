#!/usr/bin/env python3
"""scripts/answers_in_context.py on hand-made files: the shares of answers found in their context (and empty, and
gold answers found) are checked against counts worked out by hand, and bad input gives one line naming the file
(and line)."""
import os
import unittest

from script_test import ScriptTest


class AnswersInContext(ScriptTest):
    SCRIPT = "answers_in_context.py"

    def qa(self):
        return self.write("qa.jsonl", [
            '{"id": "a", "context": "The Normans came from Normandy in 911.", "question": "q",'
            ' "answers": ["Normandy"]}',
            '{"id": "b", "context": "Paris is the capital.", "question": "q", "answers": "Lyon"}',
            '',
        ])

    def rows(self, output):
        """condition -> (answers, in context %, empty %, gold in context %) from the printed table."""
        table = {}
        for line in output.splitlines()[1:]:
            if line.startswith("("):
                continue
            cols = line.split()
            table[cols[0]] = (int(cols[1]),) + tuple(float(c.rstrip("%")) for c in cols[2:5])
        return table

    def test_counts_answers_found_in_their_own_context(self):
        items = self.write("items.jsonl", [
            '{"item": 0, "condition": "full", "id": "a", "answer": " normandy", "f1": 1}',  # case-insensitive
            '{"item": 1, "condition": "full", "id": "b", "answer": " Normandy"}',  # in a's context, not b's
            '{"item": 0, "condition": "none", "id": "a", "answer": ""}',
            '{"item": 1, "condition": "none", "id": "b", "answer": " capital"}',
            '{"item": 2, "condition": "none", "id": "zzz", "answer": " x"}',  # not in the QA file: left out
        ])
        r = self.run_script(items, self.qa())
        self.assertEqual(r.returncode, 0, r.stderr)
        table = self.rows(r.stdout)
        self.assertEqual(table["full"], (2, 50.0, 0.0, 50.0))  # gold "Lyon" is not in b's context
        self.assertEqual(table["none"], (2, 50.0, 50.0, 50.0))
        self.assertIn("1 item rows name ids not in", r.stdout)

    def test_bad_input_is_one_line_naming_the_file(self):
        qa = self.qa()
        r = self.run_script(os.path.join(self.dir.name, "nowhere.jsonl"), qa)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stderr.strip().count("\n"), 0)
        self.assertIn("nowhere.jsonl: cannot read it", r.stderr)
        items = self.write("items.jsonl", ['{"item": 0, "condition": "full", "id": "a", "answer": "x"}',
                                           '{"item": 1, "id": "a"}'])
        r = self.run_script(items, qa)
        self.assertIn("items.jsonl:2: expected fields \"id\", \"condition\" and \"answer\"", r.stderr)
        bad_qa = self.write("bad.jsonl", ['{"id": "a", "context": "c"}', 'not json'])
        r = self.run_script(items, bad_qa)
        self.assertIn("bad.jsonl:2: not JSON", r.stderr)
        other = self.write("other.jsonl", ['{"item": 0, "condition": "full", "id": "q9", "answer": "x"}'])
        r = self.run_script(other, qa)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no item's id is in", r.stderr)

    def test_usage(self):
        r = self.run_script("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("copied from the item's context", r.stdout)
        self.assertEqual(self.run_script().returncode, 2)


if __name__ == "__main__":
    unittest.main()
