#!/usr/bin/env python3
"""scripts/sample_questions.py: QA rows in the corpus's schema about the sample document, every answer found in it,
options with the right one at its index; a document that lost an answer is one line naming the question."""
import json
import os
import unittest

from script_test import ScriptTest, SCRIPTS

DOCUMENT = os.path.join(SCRIPTS, "..", "examples", "sample-document.txt")


class SampleQuestions(ScriptTest):
    SCRIPT = "sample_questions.py"

    def test_rows_ask_about_the_sample_document(self):
        out = os.path.join(self.dir.name, "q.jsonl")
        r = self.run_script(out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(DOCUMENT, encoding="utf-8") as f:
            document = f.read()
        with open(out, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        self.assertEqual(len(rows), 36)
        self.assertEqual(len({row["id"] for row in rows}), 36)
        places = set()
        for row in rows:
            self.assertEqual(row["context"], document)
            self.assertTrue(row["question"].endswith("?"), row["question"])
            for a in row["answers"]:
                self.assertIn(a.lower(), document.lower(), row["id"])
            if row["options"] is None:
                continue
            self.assertEqual(len(row["options"]), 4)
            at = row["meta"]["answer_index"]
            self.assertEqual(row["options"][at], row["answers"][0])
            for wrong in row["options"][:at] + row["options"][at + 1:]:
                self.assertNotEqual(wrong, row["answers"][0])
            places.add(at)
        self.assertEqual(places, {0, 1, 2, 3})
        self.assertEqual(sum(row["options"] is None for row in rows), 24)

    def test_a_document_without_an_answer_is_one_line(self):
        with open(DOCUMENT, encoding="utf-8") as f:
            document = f.read()
        doc = self.write("doc.txt", [document.replace("Clara Moss", "someone")])
        out = os.path.join(self.dir.name, "q.jsonl")
        r = self.run_script(out, "--doc", doc)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stderr.strip().count("\n"), 0)
        self.assertIn("doc.txt: the answer 'Clara Moss' to 'Who is the headmistress of the Hollin School?' is not in "
                      "the document", r.stderr)
        self.assertFalse(os.path.exists(out))
        r = self.run_script(out, "--doc", os.path.join(self.dir.name, "nowhere.txt"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("nowhere.txt: cannot read it", r.stderr)


if __name__ == "__main__":
    unittest.main()
