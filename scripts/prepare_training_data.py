#!/usr/bin/env python3
"""Prepares the training and validation files of the default Co-Encoder from ../shared/corpus (standard library).

    python3 scripts/prepare_training_data.py [CORPUS_DIR] [OUT_DIR]      (defaults: ../shared/corpus, .train)

Writes into OUT_DIR (an ignored folder; nothing here is committed):
  pretrain/*.txt.xz       the pretraining shards, copied as they are (the GPU run unpacks them itself)
  qa-train.jsonl.xz       answerable questions of the QA train splits: SQuAD (minus the validation articles),
                          FairytaleQA train, bAbI train (minus every 10th story of each task)
  val/squad-val.jsonl     SQuAD train-split articles held out for choosing designs (never trained on)
  val/fairytaleqa-val.jsonl   FairytaleQA's own validation split
  val/babi-val.jsonl      every 10th bAbI train question of each task (never trained on)
  val/gutenberg-01-part-full.txt.xz   the first 30 MiB of pretrain/gutenberg-01 (never trained on): recon and ppl
  val/gutenberg-01-part.txt.xz        its first 1.5 MiB: the needle's filler text

The corpus README's rule holds: nothing of eval/, of the test or val splits, or of the held-out validation slices
is trained on. Designs are chosen on val/; the test splits are read only for the final table.
"""
import json
import lzma
import os
import shutil
import sys

# Four of SQuAD's 36 train articles, held out as its validation set (the corpus gives SQuAD no val split).
SQUAD_VAL_ARTICLES = {"Amazon rainforest", "Force", "Normans", "Teacher"}
PRETRAIN = ["wiki-00", "sotu-00", "gutenberg-00", "gutenberg-01", "gutenberg-02", "gutenberg-03"]


def items(path):
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    it = json.loads(line)
                except ValueError:
                    it = None
                if not isinstance(it, dict) or any(k not in it for k in ("id", "split", "answers")):
                    sys.exit(f"prepare_training_data: {path}:{n}: expected a QA object with \"id\", \"split\" and "
                             f"\"answers\"")
                yield it


def main():
    here = os.path.dirname(__file__)
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "corpus")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", ".train")
    needed = [os.path.join("pretrain", n + ".txt.xz") for n in PRETRAIN] + \
        [os.path.join("qa", n + ".jsonl.xz") for n in ("squad", "fairytaleqa", "babi")]
    for rel in needed:
        if not os.path.isfile(os.path.join(corpus, rel)):
            sys.exit(f"prepare_training_data: {os.path.join(corpus, rel)}: not found (CORPUS_DIR must be laid out as "
                     "../shared/corpus: pretrain/*.txt.xz, qa/*.jsonl.xz)")
    os.makedirs(os.path.join(out, "pretrain"), exist_ok=True)
    os.makedirs(os.path.join(out, "val"), exist_ok=True)
    for name in PRETRAIN:
        src = os.path.join(corpus, "pretrain", name + ".txt.xz")
        dst = os.path.join(out, "pretrain", name + ".txt.xz")
        if not os.path.exists(dst):
            shutil.copyfile(src, dst)
    train, val = [], {"squad": [], "fairytaleqa": [], "babi": []}
    for it in items(os.path.join(corpus, "qa", "squad.jsonl.xz")):
        if it["split"] != "train" or not it["answers"]:
            continue
        (val["squad"] if it["meta"]["title"] in SQUAD_VAL_ARTICLES else train).append(it)
    for it in items(os.path.join(corpus, "qa", "fairytaleqa.jsonl.xz")):
        if it["split"] == "train":
            train.append(it)
        elif it["split"] == "val":
            val["fairytaleqa"].append(it)
    for it in items(os.path.join(corpus, "qa", "babi.jsonl.xz")):
        if it["split"] != "train":
            continue
        n = int(it["id"].rsplit("-", 1)[1])
        (val["babi"] if n % 10 == 0 else train).append(it)
    with lzma.open(os.path.join(out, "qa-train.jsonl.xz"), "wt", encoding="utf-8") as f:
        for it in train:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    for name, rows in val.items():
        with open(os.path.join(out, "val", name + "-val.jsonl"), "w", encoding="utf-8") as f:
            for it in rows:
                f.write(json.dumps(it, ensure_ascii=False) + "\n")
    # The text validation files: byte prefixes of the one Gutenberg shard no stage trains on (its last document is
    # cut short, as the eval tasks' documents are anyway).
    with lzma.open(os.path.join(corpus, "pretrain", "gutenberg-01.txt.xz"), "rb") as f:
        text = f.read(30 << 20)
    for name, size in (("gutenberg-01-part-full", 30 << 20), ("gutenberg-01-part", 3 << 19)):
        with lzma.open(os.path.join(out, "val", name + ".txt.xz"), "wb", preset=6) as f:
            f.write(text[:size])
    print(f"qa-train.jsonl.xz: {len(train)} questions; val: " + ", ".join(f"{k} {len(v)}" for k, v in val.items()))


if __name__ == "__main__":
    main()
