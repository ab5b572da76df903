"""JSON Lines input for scripts/*.py (the items `coenc eval --out` writes, the corpus's QA files): every line an
object, or one clear line naming the file and line, and a non-zero exit."""
import json
import sys


def jsonl_rows(path, what="a JSON object"):
    """(line number, object) for every non-blank line of `path`."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        sys.exit(f"{path}: cannot read it ({e.strerror})")
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                sys.exit(f"{path}:{n}: not JSON ({e})")
            if not isinstance(row, dict):
                sys.exit(f"{path}:{n}: expected {what}, got {type(row).__name__}")
            yield n, row
