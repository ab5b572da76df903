#!/usr/bin/env python3
"""How often a `coenc eval --task qa` answer is copied from the item's context, by condition.

An extractive set (SQuAD: every gold answer is a span of the context) asks the decoder to copy; a decoder that
answers with names the context does not hold has not learnt to. `coenc eval --out DIR` writes qa-items.jsonl
(each item's answer by condition, with the item's "id"); the QA file is the one evaluated (its lines carry the
same "id" and the "context").

  scripts/answers_in_context.py DIR/qa-items.jsonl .train/val/squad-val.jsonl
prints, for every condition: the answers, the share found in their context (case-insensitive, as a substring),
the share empty, and the share of gold answers found there (100% on SQuAD).
"""
import signal
import sys
from collections import defaultdict

from jsonl_rows import jsonl_rows


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quietly, into `head`
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if len(sys.argv) == 2 else 2)
    items_path, qa_path = sys.argv[1], sys.argv[2]
    items = {}
    for n, row in jsonl_rows(qa_path, "a QA object"):
        if not isinstance(row.get("id"), str) or not isinstance(row.get("context"), str):
            sys.exit(f"{qa_path}:{n}: expected string fields \"id\" and \"context\"")
        answers = row.get("answers", [])
        items[row["id"]] = (row["context"].lower(), [answers] if isinstance(answers, str) else answers)
    counts = defaultdict(lambda: [0, 0, 0, 0])  # condition -> answers, in context, empty, gold in context
    missing = 0
    for n, row in jsonl_rows(items_path, "an item object"):
        if "answer" not in row or "condition" not in row or "id" not in row:
            sys.exit(f"{items_path}:{n}: expected fields \"id\", \"condition\" and \"answer\" (qa items of `coenc eval`)")
        if row["id"] not in items:
            missing += 1
            continue
        context, gold = items[row["id"]]
        c = counts[row["condition"]]
        answer = row["answer"].strip().lower()
        c[0] += 1
        c[1] += bool(answer) and answer in context
        c[2] += not answer
        c[3] += any(g.strip().lower() in context for g in gold if isinstance(g, str))
    if not counts:
        sys.exit(f"{items_path}: no item's id is in {qa_path} (evaluated on another file?)")
    print(f"{'condition':<16} {'answers':>8} {'in context':>11} {'empty':>7} {'gold in context':>16}")
    for condition in sorted(counts):
        n, found, empty, gold = counts[condition]
        print(f"{condition:<16} {n:8d} {100 * found / n:10.1f}% {100 * empty / n:6.1f}% {100 * gold / n:15.1f}%")
    if missing:
        print(f"({missing} item rows name ids not in {qa_path}: left out)")


if __name__ == "__main__":
    main()
