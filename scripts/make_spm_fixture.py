#!/usr/bin/env python3
"""Reference ids of a real SentencePiece model for the tokenizer golden tests.

Encodes every case of tests/golden/tokenizer/cases.bin with the SentencePiece library itself (Debian's
libsentencepiece, the one `spm_encode` is built on; no coenc code is involved) and writes NAME.ids beside
cases.bin in the format of scripts/make_tokenizer_fixtures.py, with an empty special-token section:
SentencePiece encodes "<s>" written in the text as text.

Like the other fixtures, each case is first decoded as Python does with errors="replace" (invalid UTF-8 becomes
U+FFFD per maximal invalid subsequence, the rule of coenc::Tokenizer), and the round-trip flag says whether
SentencePiece's own Decode() gives that text back.

`spm_encode` reads one text per line, so it cannot take the cases that hold a newline. A small C++ program
against the same library (compiled here with g++ -lsentencepiece) encodes all cases; the script then runs
`spm_encode --output_format=id` (with and without --extra_options=bos) on every case without a newline and
stops unless both agree on every id. It also checks that the "bos" option only puts the BOS id in front, so the
fixture stores the ids without BOS and the tests prepend it.

Usage (needs Debian's `sentencepiece` and `libsentencepiece-dev`, and the model from
scripts/fetch_test_vocabs.sh):
  python3 scripts/make_spm_fixture.py --model tests/data/npm/mistral/tokenizer.model --name mistral
"""
import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_fixtures import OUT_DIR, read_cases, uvarint  # noqa: E402

# Reads texts (u32 length + bytes) on stdin; writes per text: the ids, the ids with the "bos" option and
# Decode(ids), each as u32 count + items (int32 ids or bytes). Little-endian, as the host is.
REFERENCE_CC = r"""
#include <sentencepiece_processor.h>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>
static void put(const void* p, size_t n) { fwrite(p, 1, n, stdout); }
static void put_ids(const std::vector<int>& ids) {
  uint32_t n = ids.size();
  put(&n, 4);
  put(ids.data(), 4 * n);
}
int main(int argc, char** argv) {
  sentencepiece::SentencePieceProcessor sp, sp_bos;
  if (argc != 2 || !sp.Load(argv[1]).ok() || !sp_bos.Load(argv[1]).ok() ||
      !sp_bos.SetEncodeExtraOptions("bos").ok()) return 2;
  uint32_t len;
  while (fread(&len, 4, 1, stdin) == 1) {
    std::string text(len, '\0');
    if (fread(&text[0], 1, len, stdin) != len) return 3;
    std::vector<int> ids, with_bos;
    std::string back;
    if (!sp.Encode(text, &ids).ok() || !sp_bos.Encode(text, &with_bos).ok() || !sp.Decode(ids, &back).ok())
      return 4;
    put_ids(ids);
    put_ids(with_bos);
    uint32_t n = back.size();
    put(&n, 4);
    put(back.data(), n);
  }
  return 0;
}
"""


def reference_encode(model, texts, workdir):
    src = os.path.join(workdir, "spm_reference.cc")
    exe = os.path.join(workdir, "spm_reference")
    with open(src, "w") as f:
        f.write(REFERENCE_CC)
    subprocess.run(["g++", "-O2", "-std=c++17", src, "-o", exe, "-lsentencepiece"], check=True)
    payload = b"".join(struct.pack("<I", len(t)) + t for t in (t.encode("utf-8") for t in texts))
    out = subprocess.run([exe, model], input=payload, stdout=subprocess.PIPE, check=True).stdout
    pos = 0

    def take(size):
        nonlocal pos
        (n,) = struct.unpack_from("<I", out, pos)
        chunk = out[pos + 4:pos + 4 + n * size]
        pos += 4 + n * size
        return chunk

    results = []
    for _ in texts:
        ids = list(struct.unpack(f"<{len(c := take(4)) // 4}i", c))
        with_bos = list(struct.unpack(f"<{len(c := take(4)) // 4}i", c))
        back = take(1).decode("utf-8")
        results.append((ids, with_bos, back))
    assert pos == len(out), "reference output has trailing bytes"
    return results


def spm_encode(model, texts, workdir, extra):
    path = os.path.join(workdir, "lines.txt")
    with open(path, "wb") as f:
        f.write(b"".join(t.encode("utf-8") + b"\n" for t in texts))
    cmd = ["spm_encode", f"--model={model}", "--output_format=id", f"--input={path}"] + extra
    lines = subprocess.run(cmd, stdout=subprocess.PIPE, check=True).stdout.decode().split("\n")
    assert lines[-1] == "" and len(lines) == len(texts) + 1, "spm_encode gave a different number of lines"
    return [[int(x) for x in line.split()] for line in lines[:-1]]


def version_of(package):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], stdout=subprocess.PIPE, text=True)
    return out.stdout.strip() or "unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a SentencePiece tokenizer.model")
    p.add_argument("--name", required=True, help="writes tests/golden/tokenizer/NAME.ids")
    p.add_argument("--bos-id", type=int, default=1, help="the model's BOS id (checked against the 'bos' option)")
    args = p.parse_args()

    cases = read_cases(os.path.join(OUT_DIR, "cases.bin"))
    texts = [c.decode("utf-8", "replace") for c in cases]
    with tempfile.TemporaryDirectory() as workdir:
        results = reference_encode(args.model, texts, workdir)
        single = [i for i, t in enumerate(texts) if "\n" not in t]
        plain = spm_encode(args.model, [texts[i] for i in single], workdir, [])
        bos = spm_encode(args.model, [texts[i] for i in single], workdir, ["--extra_options=bos"])
    for k, i in enumerate(single):
        assert plain[k] == results[i][0], f"case {i}: spm_encode {plain[k]} != library {results[i][0]}"
        assert bos[k] == results[i][1], f"case {i}: spm_encode with bos {bos[k]} != library {results[i][1]}"
    for i, (ids, with_bos, _) in enumerate(results):
        assert with_bos == [args.bos_id] + ids, f"case {i}: the 'bos' option does more than prepend {args.bos_id}"

    out = bytearray(uvarint(len(texts)) + uvarint(1))
    round_trips = 0
    for text, (ids, _, back) in zip(texts, results):
        flags = 1 if back == text else 0
        round_trips += flags
        out += bytes([flags]) + uvarint(len(ids)) + b"".join(uvarint(i) for i in ids)
    out += uvarint(0)  # no special-token section: SentencePiece does not parse "<s>" in text
    with open(os.path.join(OUT_DIR, args.name + ".ids"), "wb") as f:
        f.write(out)

    meta_path = os.path.join(OUT_DIR, "meta.json")
    meta = json.load(open(meta_path))
    meta["vocabularies"][args.name] = {
        "library": "libsentencepiece " + version_of("libsentencepiece0"), "bytes": len(out),
        "model_sha256": hashlib.sha256(open(args.model, "rb").read()).hexdigest(),
        "checked_against_spm_encode": len(single), "round_trips": round_trips,
    }
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{args.name}: {len(texts)} cases ({len(single)} also through spm_encode, {round_trips} round trip), "
          f"{len(out)} bytes, {sum(len(r[0]) for r in results)} ids")


if __name__ == "__main__":
    main()
