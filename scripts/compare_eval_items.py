#!/usr/bin/env python3
"""Two checkpoints' `coenc eval` results, paired item by item.

`coenc eval --out DIR` writes TASK-items.jsonl, every item's own scores by condition. Two runs of the same task,
data and --seed see the same items, so their difference is measured on each item and averaged: its standard
error is far smaller than either score's own, which is what telling two designs apart needs (docs/eval.md).

  scripts/compare_eval_items.py A/qa-items.jsonl B/qa-items.jsonl
prints, for every condition and metric both have: mean A, mean B, B - A and its standard error, and the items.
"""
import math
import signal
import sys
from collections import defaultdict

from jsonl_rows import jsonl_rows


def read(path):
    scores = defaultdict(dict)  # (condition, metric) -> item -> score
    for n, row in jsonl_rows(path, "an item object"):
        try:
            item, condition = row.pop("item"), row.pop("condition")
        except KeyError as e:
            sys.exit(f"{path}:{n}: expected an object with \"item\" and \"condition\" ({e})")
        for metric, v in row.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):  # not "id" or "answer"
                scores[(condition, metric)][item] = v
    return scores


def mean_error(values):
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quietly, into `head`
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if len(sys.argv) == 2 else 2)
    a, b = read(sys.argv[1]), read(sys.argv[2])
    print(f"{'condition':<16} {'metric':<15} {'A':>9} {'B':>9} {'B - A':>9} {'stderr':>8} {'items':>6}")
    for key in sorted(set(a) & set(b)):
        common = sorted(set(a[key]) & set(b[key]))
        if not common:
            continue
        mean_a = sum(a[key][i] for i in common) / len(common)
        mean_b = sum(b[key][i] for i in common) / len(common)
        d, e = mean_error([b[key][i] - a[key][i] for i in common])
        print(f"{key[0]:<16} {key[1]:<15} {mean_a:9.4f} {mean_b:9.4f} {d:+9.4f} {e:8.4f} {len(common):6d}")


if __name__ == "__main__":
    main()
