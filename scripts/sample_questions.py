#!/usr/bin/env python3
"""Questions about examples/sample-document.txt, as a QA .jsonl for `coenc eval --task qa`.

The sample document (an invented island, written for this project) is text that is not in ../shared/corpus, so its
questions measure the default model on what it was never trained on: 24 open questions (greedy answer, EM and F1)
and 12 with four options each (the most likely option; chance is 25%). Every answer is checked against the
document: a question whose answer the document does not contain is an error naming it, so the document and its
questions cannot drift apart.

  scripts/sample_questions.py /tmp/sample-questions.jsonl
  coenc eval -m models/default-coenc --task qa --data /tmp/sample-questions.jsonl --ratio 4,8
"""
import argparse
import json
import os
import sys

DOCUMENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "sample-document.txt")

# (question, accepted answers): each answer is a span of the document.
OPEN = [
    ("What is the secret number?", ["73914"]),
    ("When was the lighthouse built?", ["1862"]),
    ("Who built the lighthouse?", ["Margaret Doyle", "the engineer Margaret Doyle"]),
    ("What is the name of the island's town?", ["Port Hollin"]),
    ("How many people live on the island?", ["About two thousand", "two thousand"]),
    ("From which mainland town does the ferry sail?", ["Westmere"]),
    ("How long does the ferry crossing take?", ["about ninety minutes", "ninety minutes"]),
    ("Who bought the land around the harbour in 1604?", ["Robert Hollin", "a merchant named Robert Hollin"]),
    ("In which year did a great storm destroy most of the fishing boats?", ["1851"]),
    ("Who was the last keeper of the lighthouse?", ["Thomas Fenwick"]),
    ("When was the light made automatic?", ["1984"]),
    ("Who is the headmistress of the Hollin School?", ["Clara Moss"]),
    ("When was the school founded?", ["1888"]),
    ("Who gave the library to the town?", ["Edward Quill", "a sea captain named Edward Quill"]),
    ("How many books does the library hold?", ["about twelve thousand", "twelve thousand"]),
    ("What is the largest cheese farm?", ["Brackenfield Farm"]),
    ("What is the most common seabird on the island?", ["the puffin", "puffin"]),
    ("What is the highest point of the island?", ["Carn Hill"]),
    ("What is the name of the river?", ["the Sella", "Sella"]),
    ("What is the ferry company's ship called?", ["the Morning Star", "Morning Star"]),
    ("On which day is the Lantern Night held?", ["the last Saturday of October", "last Saturday of October"]),
    ("Which painter was born on the island?", ["Lucy Arden"]),
    ("What novel did James Carrow write?", ["The Night of the Boats"]),
    ("When was the Anchor Hotel opened?", ["1898"]),
]

# (question, the right option, three wrong ones): the right option is a span of the document.
CHOICE = [
    ("What colour is the band on the lighthouse?", "red", ["blue", "green", "black"]),
    ("Where does the lighthouse stand?", "Kellan Point", ["Carn Hill", "Harbour Street", "Brackenfield Farm"]),
    ("What is the island's cheese made from?", "the milk of sheep",
     ["the milk of cows", "the milk of goats", "the milk of deer"]),
    ("In which month is the cheese fair held?", "August", ["May", "October", "December"]),
    ("What is the warmest month on the island?", "July", ["January", "March", "October"]),
    ("Which animals are there many of on the island?", "hares and rabbits",
     ["foxes and deer", "wolves and bears", "goats and pigs"]),
    ("How many times a day does the bus travel along the main road?", "four", ["two", "seven", "ten"]),
    ("What takes visitors around the island in summer?", "the Little Tern", ["the Morning Star", "a train", "a bus"]),
    ("What was the island known for in the eighteenth century?", "its wool", ["its coal", "its wine", "its gold"]),
    ("Where is Margaret Doyle buried?", "the churchyard of St Brendan's Church",
     ["the lighthouse cottage", "Westmere", "Carn Hill"]),
    ("What did the government build in 1879?", "a new harbour wall", ["a lighthouse", "a school", "a railway"]),
    ("Where can Lucy Arden's paintings be seen?", "the town hall of Port Hollin",
     ["the library", "the Anchor Hotel", "the ferry"]),
]


def fail(message):
    print(f"sample_questions.py: {message}", file=sys.stderr)
    sys.exit(1)


def items(document, doc_name):
    lower = document.lower()
    out = []
    for i, (question, answers) in enumerate(OPEN):
        for a in answers:
            if a.lower() not in lower:
                fail(f"{doc_name}: the answer {a!r} to {question!r} is not in the document")
        out.append({"id": f"sample-open-{i + 1:02d}", "source": "co-encoder examples/sample-document.txt",
                    "split": "test", "context": document, "question": question, "answers": answers,
                    "options": None, "meta": {}})
    for i, (question, right, wrong) in enumerate(CHOICE):
        if right.lower() not in lower:
            fail(f"{doc_name}: the answer {right!r} to {question!r} is not in the document")
        at = i % 4  # the right option's place turns, so that no place is always right
        options = wrong[:at] + [right] + wrong[at:]
        out.append({"id": f"sample-choice-{i + 1:02d}", "source": "co-encoder examples/sample-document.txt",
                    "split": "test", "context": document, "question": question, "answers": [right],
                    "options": options, "meta": {"answer_index": at}})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="\n".join(__doc__.split("\n")[2:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="the QA .jsonl to write")
    ap.add_argument("--doc", default=DOCUMENT,
                    help="the document the questions ask about [examples/sample-document.txt]")
    args = ap.parse_args()
    try:
        with open(args.doc, encoding="utf-8") as f:
            document = f.read()
    except (OSError, UnicodeDecodeError) as e:
        fail(f"{args.doc}: cannot read it ({e.strerror if isinstance(e, OSError) else 'not UTF-8'})")
    rows = items(document, args.doc)
    tmp = args.out + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, args.out)
    except OSError as e:
        fail(f"{args.out}: cannot write it ({e.strerror})")
    print(f"{args.out}: {len(OPEN)} open questions, {len(CHOICE)} with options", file=sys.stderr)


if __name__ == "__main__":
    main()
