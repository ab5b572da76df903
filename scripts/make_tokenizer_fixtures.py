#!/usr/bin/env python3
"""Reference fixtures for the tokenizer golden tests.

Two steps, run in different places:

  inputs     (anywhere with Python 3 and the shared corpus) writes tests/golden/tokenizer/cases.bin: the test
             inputs, deterministic for a given corpus. Sources: English prose and Japanese from the corpus,
             source code from the Python standard library, and generated cases for digit runs, whitespace,
             Chinese, emoji and other 4-byte characters, combining marks, invalid UTF-8, special-token text,
             contractions and mixed scripts.
  reference  (where the Hugging Face `tokenizers` and `sentencepiece` packages are installed) encodes every
             case with each vocabulary and writes <name>.ids beside cases.bin, plus meta.json recording the
             library versions.

File formats (all integers are unsigned LEB128 varints):
  cases.bin   count, then per case: byte length, bytes (any bytes, not necessarily UTF-8).
  NAME.ids    count, stride (entry k is case k * stride), then per entry: flags byte (bit 0:
              decode(encode(text)) == text in the reference),
              number of ids, ids. `text` is the case decoded as Python does with errors="replace".
              Cases holding special-token text are then encoded again with special tokens NOT parsed
              (split_special_tokens); that section follows: count, then per such case: case index, number
              of ids, ids.

Usage:
  python3 scripts/make_tokenizer_fixtures.py inputs --corpus ../shared/corpus
  python3 scripts/make_tokenizer_fixtures.py reference --vocab qwen3=DIR --vocab llama3=DIR \\
      --subset-vocab llama2=DIR --spm tiny_spm=FILE --trained trained=DIR/tokenizer.json
"""
import argparse
import glob
import io
import json
import lzma
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "tests", "golden", "tokenizer")

SPECIAL_TEXTS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
    "<|start_header_id|>", "<|end_header_id|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<|reserved_special_token_5|>", "<|fim_prefix|>", "<s>", "</s>",
]


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_uvarint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def read_cases(path):
    buf = open(path, "rb").read()
    n, pos = read_uvarint(buf, 0)
    cases = []
    for _ in range(n):
        length, pos = read_uvarint(buf, pos)
        cases.append(buf[pos:pos + length])
        pos += length
    return cases


# ---- inputs ------------------------------------------------------------------------------------------------
def corpus_lines(path, max_bytes):
    with lzma.open(path, "rb") as f:
        data = f.read(max_bytes)
    return [l for l in data.decode("utf-8", "ignore").split("\n") if l.strip()]


def clip(rng, text, lo, hi):
    if len(text) <= hi:
        return text
    start = rng.randrange(0, len(text) - lo)
    return text[start:start + rng.randint(lo, hi)]


def make_inputs(corpus, seed=1234):
    rng = random.Random(seed)
    cases = []

    def add(text):
        cases.append(text.encode("utf-8") if isinstance(text, str) else text)

    # English prose.
    prose = corpus_lines(os.path.join(corpus, "pretrain", "gutenberg-00.txt.xz"), 4 << 20)
    prose += corpus_lines(os.path.join(corpus, "pretrain", "wiki-00.txt.xz"), 4 << 20)
    for line in rng.sample(prose, 2400):
        add(clip(rng, line, 15, 70))
    # Source code, one to three consecutive lines with their indentation.
    code_lines = []
    for path in sorted(glob.glob("/usr/lib/python3*/*.py"))[:60]:
        code_lines += open(path, encoding="utf-8", errors="ignore").read().split("\n")
    for _ in range(1500):
        i = rng.randrange(0, len(code_lines) - 3)
        text = "\n".join(code_lines[i:i + rng.randint(1, 3)])
        if rng.random() < 0.3:
            text = text.replace("    ", "\t")
        add(clip(rng, text, 10, 70) or "pass")
    # Digit runs.
    fullwidth = "０１２３４５６７８９"
    arabic = "٠١٢٣٤٥٦٧٨٩"
    for k in range(800):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40)))
        kind = k % 8
        if kind == 0:
            add(digits)
        elif kind == 1:
            add(f"{rng.randint(0, 10**9):,}.{rng.randint(0, 99)}")
        elif kind == 2:
            add(f"abc{digits}def {digits[:5]}x")
        elif kind == 3:
            add(" " + digits + " " + digits[::-1])
        elif kind == 4:
            add("".join(rng.choice(fullwidth) for _ in range(rng.randint(1, 12))))
        elif kind == 5:
            add("".join(rng.choice(arabic) for _ in range(rng.randint(1, 12))) + " ½ ² Ⅻ")
        elif kind == 6:
            add(f"v{rng.randint(0, 9)}.{rng.randint(0, 99)}.{rng.randint(0, 999)}-rc{rng.randint(1, 9)}")
        else:
            add(f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:34:56Z")
    # Whitespace runs.
    spaces = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u00a0", "\u3000", "\u2009",
              "\u2028", "\x0b", "\x0c", "\x85", "     "]
    words = ["hello", "world", "x", "foo", "Bar", "123", "!", "é", "日本", "'s"]
    for _ in range(800):
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append("".join(rng.choice(spaces) for _ in range(rng.randint(1, 4))))
            if rng.random() < 0.7:
                parts.append(rng.choice(words))
        add("".join(parts))
    # Japanese.
    ja = corpus_lines(os.path.join(corpus, "ja", "aozora-00.txt.xz"), 4 << 20)
    for line in rng.sample(ja, 1400):
        add(clip(rng, line, 5, 30))
    # Chinese: common Han characters with Chinese punctuation, and some fixed sentences.
    han = "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从"
    zh_fixed = ["我们今天去学校。", "自然语言处理是人工智能的一个分支。", "他说：“你好，世界！”", "价格为１２３元，约合18美元。",
                "北京是中华人民共和国的首都。"]
    for k in range(700):
        if k % 7 == 0:
            add(rng.choice(zh_fixed))
        else:
            text = "".join(rng.choice(han) for _ in range(rng.randint(2, 20)))
            add(text + rng.choice(["，", "。", "！", "？", "、", "", " ", "；"]) + "".join(rng.choice(han) for _ in range(rng.randint(0, 8))))
    # Emoji and other 4-byte characters.
    emoji = ["😀", "👍", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "🇺🇸", "❤️", "🤖", "🧑‍💻", "🏳️‍🌈", "✨", "🎉", "𝐀𝐁𝐂", "𝔘𝔫𝔦", "𠀀𠀁", "𩸽", "🀄", "😂😂😂"]
    for _ in range(600):
        parts = [rng.choice(emoji) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.6:
            parts.insert(rng.randint(0, len(parts)), rng.choice([" hello ", "ok", " 123", "日本語", "\n"]))
        add("".join(parts))
    # Combining marks, decomposed forms (NFC changes them), Hangul jamo, Indic and Vietnamese text.
    bases = "aeiouAEIOUnc"
    for k in range(600):
        kind = k % 5
        if kind == 0:
            add("".join(rng.choice(bases) + "".join(chr(rng.randint(0x300, 0x36F)) for _ in range(rng.randint(1, 3)))
                        for _ in range(rng.randint(1, 5))))
        elif kind == 1:
            add("cafe\u0301 re\u0301sume\u0301 " + rng.choice(["nai\u0308ve", "A\u030a", "o\u0308", "\u0301alone"]))
        elif kind == 2:
            add("".join(chr(0x1100 + rng.randint(0, 18)) + chr(0x1161 + rng.randint(0, 20)) for _ in range(rng.randint(1, 4))))
        elif kind == 3:
            add(rng.choice(["नमस्ते दुनिया", "Tiếng Việt có dấu", "ﬁ ﬂ Å Ω K", "क्षत्रिय", "עִבְרִית", "العَرَبِيَّة"]))
        else:
            add("x" + "\u0301" * rng.randint(1, 8) + " \u200d\u200c\ufeff zero-width")
    # Invalid UTF-8: stray continuation bytes, truncated sequences, overlong forms, surrogates, 0xFF.
    bad = [b"\x80", b"\xbf", b"\xc0\x80", b"\xc3", b"\xe3\x81", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\xf4\x90\x80\x80",
           b"\xff", b"\xfe", b"\xe2\x82", b"\xc2\x41"]
    for k in range(600):
        if k % 4 == 0:
            add(bytes(rng.randrange(256) for _ in range(rng.randint(1, 24))))
        else:
            parts = [rng.choice([b"hello", b" world", "日本".encode(), b"123", b" "]) for _ in range(rng.randint(0, 3))]
            for _ in range(rng.randint(1, 3)):
                parts.insert(rng.randint(0, len(parts)), rng.choice(bad))
            add(b"".join(parts))
    # Special-token text inside user input, whole and partial.
    for k in range(500):
        tok = rng.choice(SPECIAL_TEXTS)
        kind = k % 5
        if kind == 0:
            add(tok)
        elif kind == 1:
            add(f"<|im_start|>user\nWhat is {rng.randint(1, 99)}?<|im_end|>\n<|im_start|>assistant\n")
        elif kind == 2:
            add(f"before {tok} after{rng.choice(SPECIAL_TEXTS)}")
        elif kind == 3:
            add(tok[: rng.randint(1, len(tok) - 1)] + " partial " + tok)
        else:
            add(f"  {tok}  \n{tok}{tok}x")
    # Contractions, case and apostrophes.
    for _ in range(300):
        w = rng.choice(["I", "you", "they", "it", "we", "Don", "CAN", "she"])
        c = rng.choice(["'s", "'S", "'t", "'T", "'re", "'RE", "'ve", "'Ve", "'m", "'M", "'ll", "'LL", "'d", "'D", "'ſ", "’s", "'x", "''"])
        add(f"{w}{c} {rng.choice(['go', 'GO', '1', '!'])}{rng.choice(['', chr(39), ' ' + chr(39) + 'quoted' + chr(39)])}")
    # Mixed scripts, controls and rare characters.
    ranges = [(0x20, 0x7E), (0xA0, 0xFF), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF), (0x600, 0x6FF),
              (0xE00, 0xE7F), (0xAC00, 0xD7A3), (0x3040, 0x30FF), (0x2000, 0x206F), (0x0, 0x1F), (0xE000, 0xE0FF),
              (0x1F300, 0x1F5FF), (0x10000, 0x1007F), (0xFFF0, 0xFFFD)]
    for _ in range(800):
        lo, hi = rng.choice(ranges)
        add("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 16))))
    # A few long cases: the long-word merge path and long runs.
    add("1234567890" * 100)
    add("a" * 700)
    add(" " * 300 + "x")
    add("\n" * 200)
    add("".join(rng.choice(han) for _ in range(600)))
    add("supercalifragilisticexpialidocious" * 20)
    add("".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(300)))
    add("🤖" * 100)
    return cases


def cmd_inputs(args):
    cases = make_inputs(args.corpus)
    out = bytearray(uvarint(len(cases)))
    for c in cases:
        out += uvarint(len(c)) + c
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "cases.bin"), "wb") as f:
        f.write(out)
    print(f"{len(cases)} cases, {len(out)} bytes")


# ---- reference ---------------------------------------------------------------------------------------------
def has_special_text(text):
    return any(s in text for s in SPECIAL_TEXTS)


def write_ids(path, encode, decode, encode_unparsed, all_texts, stride=1):
    texts = all_texts[::stride]
    out = bytearray(uvarint(len(texts)) + uvarint(stride))
    for text in texts:
        ids = encode(text)
        flags = 1 if decode(ids) == text else 0
        out += bytes([flags]) + uvarint(len(ids)) + b"".join(uvarint(i) for i in ids)
    special = [i for i, t in enumerate(texts) if encode_unparsed and has_special_text(t)]
    out += uvarint(len(special))
    for i in special:
        ids = encode_unparsed(texts[i])
        out += uvarint(i * stride) + uvarint(len(ids)) + b"".join(uvarint(x) for x in ids)
    with open(path, "wb") as f:
        f.write(out)
    return len(out)


def cmd_reference(args):
    import tokenizers
    from tokenizers import Tokenizer

    cases = read_cases(os.path.join(OUT_DIR, "cases.bin"))
    texts = [c.decode("utf-8", "replace") for c in cases]
    # Vocabularies not named in this run keep their entries.
    meta_path = os.path.join(OUT_DIR, "meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {"vocabularies": {}}
    meta.update({"tokenizers_version": tokenizers.__version__, "cases": len(texts)})
    stride = max(1, len(texts) // args.subset_cases)
    vocabs = [(spec, 1) for spec in args.vocab] + [(spec, stride) for spec in args.subset_vocab or []]
    for spec, vocab_stride in vocabs:
        name, path = spec.split("=", 1)
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        tok = Tokenizer.from_file(path)
        unparsed = Tokenizer.from_file(path)
        unparsed.encode_special_tokens = True
        size = write_ids(os.path.join(OUT_DIR, name + ".ids"),
                         lambda t: tok.encode(t, add_special_tokens=False).ids,
                         lambda ids: tok.decode(ids, skip_special_tokens=False),
                         lambda t: unparsed.encode(t, add_special_tokens=False).ids, texts, vocab_stride)
        meta["vocabularies"][name] = {"library": "tokenizers", "bytes": size, "stride": vocab_stride}
        print(f"{name}: {size} bytes")
    for spec in args.spm or []:
        import sentencepiece
        name, path = spec.split("=", 1)
        sp = sentencepiece.SentencePieceProcessor(model_file=path)
        size = write_ids(os.path.join(OUT_DIR, name + ".ids"), lambda t: sp.encode(t),
                         lambda ids: sp.decode(ids), None, texts, stride)
        meta["vocabularies"][name] = {"library": "sentencepiece " + sentencepiece.__version__, "bytes": size,
                                      "stride": stride}
        print(f"{name}: {size} bytes")
    for spec in args.trained or []:
        name, path = spec.split("=", 1)
        tok = Tokenizer.from_file(path)
        size = write_ids(os.path.join(OUT_DIR, name + ".ids"),
                         lambda t: tok.encode(t, add_special_tokens=False).ids,
                         lambda ids: tok.decode(ids, skip_special_tokens=False), None, texts, stride)
        meta["vocabularies"][name] = {"library": "tokenizers", "bytes": size, "stride": stride}
        print(f"{name}: {size} bytes")
    with open(os.path.join(OUT_DIR, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("inputs")
    a.add_argument("--corpus", required=True, help="the shared corpus folder (holds pretrain/ and ja/)")
    r = sub.add_parser("reference")
    r.add_argument("--vocab", action="append", default=[], help="NAME=DIR or NAME=tokenizer.json")
    r.add_argument("--subset-vocab", action="append", help="as --vocab, on every k-th case only (--subset-cases)")
    r.add_argument("--spm", action="append", help="NAME=tokenizer.model")
    r.add_argument("--subset-cases", type=int, default=1000,
                   help="about how many cases (every k-th) to encode with --subset-vocab, --spm and --trained")
    r.add_argument("--trained", action="append", help="NAME=tokenizer.json written by `coenc tokenizer train`")
    args = p.parse_args()
    cmd_inputs(args) if args.cmd == "inputs" else cmd_reference(args)


if __name__ == "__main__":
    main()
