#!/usr/bin/env python3
"""Answers decoded together by `coenc serve --parallel N` against the same answers decoded alone.

Starts the server, asks each prompt alone (one after the other), then all at once, greedy, and prints both and
whether they agree (docs/server.md, "Concurrency"); exits 1 unless every answer is the same both ways. Standard
library only, so it runs on the GPU machine too.

  scripts/serve_concurrency_check.py COENC MODEL [--device cuda] [--dtype f32] [--parallel 4] [--tokens 48]
"""
import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.request

PROMPTS = ["The capital of France is", "Once upon a time, a small fox", "The rules of chess say that",
           "In the year 1900, the city of"]


def complete(port, prompt, tokens):
    body = json.dumps({"prompt": prompt, "max_tokens": tokens, "temperature": 0}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body,
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["choices"][0]["text"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("coenc")
    ap.add_argument("model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--port", type=int, default=8093)
    a = ap.parse_args()
    server = subprocess.Popen([a.coenc, "serve", "-m", a.model, "--port", str(a.port), "--parallel",
                               str(a.parallel), "--device", a.device, "--dtype", a.dtype, "-q"])
    try:
        for _ in range(600):
            if server.poll() is not None:
                sys.exit(f"serve_concurrency_check: the server exited with status {server.returncode} before it "
                         "answered (its own message is above)")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{a.port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            sys.exit("serve_concurrency_check: the server did not come up in 5 minutes")
        t0 = time.time()
        alone = [complete(a.port, p, a.tokens) for p in PROMPTS]
        t_alone = time.time() - t0
        together = [None] * len(PROMPTS)

        def ask(i):
            together[i] = complete(a.port, PROMPTS[i], a.tokens)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(PROMPTS))]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_together = time.time() - t0
        same = 0
        for p, x, y in zip(PROMPTS, alone, together):
            same += x == y
            print(json.dumps({"prompt": p, "alone": x, "together": y, "identical": x == y}))
        print(f"{same}/{len(PROMPTS)} identical; alone {t_alone:.2f} s one after the other, "
              f"together {t_together:.2f} s")
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=60)
    sys.exit(0 if same == len(PROMPTS) else 1)


if __name__ == "__main__":
    main()
