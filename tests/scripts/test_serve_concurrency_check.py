#!/usr/bin/env python3
"""scripts/serve_concurrency_check.py against the real `coenc serve` (COENC_BINARY, set by CTest) on the CPU with
the shipped 9M decoder (models/default): answers decoded together equal the same answers decoded alone, the
script says so and exits 0; answers that differ make it exit 1 (a stand-in server whose every answer is new);
a server that cannot start is one line and a non-zero exit, at once."""
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SCRIPT = os.path.join(ROOT, "scripts", "serve_concurrency_check.py")
COENC = os.environ.get("COENC_BINARY", os.path.join(ROOT, "build", "coenc"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, coenc=COENC):
    return subprocess.run([sys.executable, SCRIPT, coenc, *args, "--port", str(free_port())], capture_output=True,
                          text=True, timeout=600)


# Stands in for `coenc serve`: answers /health, and each completion with a text it has not given before.
FAKE_SERVE = """import http.server, json, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
count = [0]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)
    def do_GET(self): self.reply({"status": "ok"})
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"])); count[0] += 1
        self.reply({"choices": [{"text": " answer %d" % count[0]}]})
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


class ServeConcurrencyCheck(unittest.TestCase):
    def test_answers_together_equal_answers_alone(self):
        r = run(os.path.join(ROOT, "models", "default"), "--tokens", "12", "--parallel", "4")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        last = r.stdout.strip().splitlines()[-1]
        self.assertTrue(last.startswith("4/4 identical"), r.stdout)
        self.assertEqual(r.stdout.count('"identical": true'), 4, r.stdout)

    def test_answers_that_differ_make_it_fail(self):
        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "fake-coenc")
            with open(fake, "w") as f:
                f.write(f"#!{sys.executable}\n" + FAKE_SERVE)
            os.chmod(fake, 0o755)
            r = run("some-model", coenc=fake)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertTrue(r.stdout.strip().splitlines()[-1].startswith("0/4 identical"), r.stdout)
        self.assertEqual(r.stdout.count('"identical": false'), 4, r.stdout)

    def test_a_server_that_cannot_start_is_reported_at_once(self):
        t0 = time.time()
        r = run(os.path.join(ROOT, "tests", "scripts", "no-such-model"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no-such-model: model directory not found", r.stderr)
        self.assertIn("serve_concurrency_check: the server exited with status", r.stderr)
        self.assertLess(time.time() - t0, 60)


if __name__ == "__main__":
    unittest.main()
