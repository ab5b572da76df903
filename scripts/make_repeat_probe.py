#!/usr/bin/env python3
"""Documents of one passage said again and again: a probe of in-context copying for `coenc eval --task ppl`.

Each output document is a passage of --passage-chars characters, taken from a random place of a random document
of SOURCE (corpus format: documents separated by "\\n\\n<|doc|>\\n"; .xz too), repeated on separate lines until the
document holds at least --doc-chars characters. `coenc eval --task ppl` then scores target tokens that repeat
text the context already holds: a decoder that copies what it has read (induction) brings the `full` NLL near 0,
one that does not stays near its NLL on ordinary text; `compressed@R` says the same of the vectors.

  scripts/make_repeat_probe.py .train/val/gutenberg-01-part-full.txt.xz /tmp/repeat.txt
  coenc eval -m CKPT --task ppl --data /tmp/repeat.txt --ratio 4 --limit 30

Use held-out text (the val shard), so that the decoder cannot know the passages by heart.
"""
import argparse
import lzma
import os
import random
import sys

SEPARATOR = "\n\n<|doc|>\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="\n".join(__doc__.split("\n")[2:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="text in corpus format (.txt or .txt.xz)")
    ap.add_argument("out", help="the probe to write (.txt, corpus format)")
    ap.add_argument("--passage-chars", type=int, default=400, help="characters of the repeated passage [400]")
    ap.add_argument("--doc-chars", type=int, default=4000, help="at least this many characters a document [4000]")
    ap.add_argument("--docs", type=int, default=40, help="documents to write [40]")
    ap.add_argument("--seed", type=int, default=1, help="which passages [1]")
    a = ap.parse_args()
    for name in ("passage_chars", "doc_chars", "docs"):
        if getattr(a, name) <= 0:
            sys.exit(f"--{name.replace('_', '-')} must be > 0, got {getattr(a, name)}")
    try:
        opener = lzma.open if a.source.endswith(".xz") else open
        with opener(a.source, "rt", encoding="utf-8") as f:
            text = f.read(64 << 20)  # the first 64 MiB are plenty
    except (OSError, lzma.LZMAError, UnicodeDecodeError) as e:
        sys.exit(f"{a.source}: cannot read it as UTF-8 text ({e})")
    docs = [d for d in text.split(SEPARATOR) if len(d.strip()) > a.passage_chars]
    if not docs:
        sys.exit(f"{a.source}: no document is longer than --passage-chars ({a.passage_chars})")
    rng = random.Random(a.seed)
    out = []
    for _ in range(a.docs):
        d = rng.choice(docs)
        start = rng.randrange(0, len(d) - a.passage_chars + 1)
        passage = d[start:start + a.passage_chars].strip()
        repeats = -(-(a.doc_chars + 1) // (len(passage) + 1))  # n passages and n - 1 newlines: >= doc_chars
        out.append("\n".join([passage] * max(2, repeats)))
    tmp = a.out + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(SEPARATOR.join(out))
        os.replace(tmp, a.out)
    except OSError as e:
        sys.exit(f"{a.out}: cannot write it ({e.strerror})")
    print(f"{a.out}: {len(out)} documents, passages of {a.passage_chars} characters repeated to >= {a.doc_chars}")


if __name__ == "__main__":
    main()
