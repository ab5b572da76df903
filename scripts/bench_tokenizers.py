#!/usr/bin/env python3
"""Single-thread encode throughput of Hugging Face `tokenizers`, to set beside `coenc tokenize --bench`.

Encodes every line of FILE (newline included, special tokens not added) with encode_batch on one thread,
REPEAT times with a freshly loaded tokenizer each time (so the word cache starts empty, as coenc's does),
and prints the best time as one JSON line with the same fields as `coenc tokenize --bench`.

Run with parallelism off, as the benchmark table in docs/benchmarks.md was:
  TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 python3 scripts/bench_tokenizers.py tokenizer.json FILE
"""
import argparse
import json
import os
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

from tokenizers import Tokenizer  # noqa: E402 (the environment must be set first)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tokenizer", help="tokenizer.json")
    p.add_argument("file", help="text file; each line is encoded separately")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    data = open(a.file, "rb").read().decode("utf-8", "replace")
    lines = [l + "\n" for l in data.split("\n")]
    if lines and lines[-1] == "\n" and data.endswith("\n"):
        lines.pop()
    nbytes = sum(len(l.encode("utf-8")) for l in lines)
    best, tokens = float("inf"), 0
    for _ in range(a.repeat):
        tok = Tokenizer.from_file(a.tokenizer)
        t0 = time.perf_counter()
        enc = tok.encode_batch(lines, add_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
        tokens = sum(len(e.ids) for e in enc)
    import tokenizers
    print(json.dumps({"impl": "hf-tokenizers " + tokenizers.__version__, "file": a.file, "lines": len(lines),
                      "bytes": nbytes, "tokens": tokens, "seconds": best, "mb_per_s": nbytes / best / 1e6,
                      "threads": 1, "repeat": a.repeat}))


if __name__ == "__main__":
    main()
