#!/usr/bin/env python3
"""scripts/serve_concurrency_check.py against the real `coenc serve` (COENC_BINARY, set by CTest) on the CPU with
the shipped 9M decoder (models/default): answers decoded together equal the same answers decoded alone, the
script says so and exits 0; a server that cannot start is one line and a non-zero exit, at once."""
import os
import socket
import subprocess
import sys
import time
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SCRIPT = os.path.join(ROOT, "scripts", "serve_concurrency_check.py")
COENC = os.environ.get("COENC_BINARY", os.path.join(ROOT, "build", "coenc"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, COENC, *args, "--port", str(free_port())], capture_output=True,
                          text=True, timeout=600)


class ServeConcurrencyCheck(unittest.TestCase):
    def test_answers_together_equal_answers_alone(self):
        r = run(os.path.join(ROOT, "models", "default"), "--tokens", "12", "--parallel", "4")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        last = r.stdout.strip().splitlines()[-1]
        self.assertTrue(last.startswith("4/4 identical"), r.stdout)
        self.assertEqual(r.stdout.count('"identical": true'), 4, r.stdout)

    def test_a_server_that_cannot_start_is_reported_at_once(self):
        t0 = time.time()
        r = run(os.path.join(ROOT, "tests", "scripts", "no-such-model"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no-such-model: model directory not found", r.stderr)
        self.assertIn("serve_concurrency_check: the server exited with status", r.stderr)
        self.assertLess(time.time() - t0, 60)


if __name__ == "__main__":
    unittest.main()
