"""What the tests of scripts/*.py share: running a script as a user would (its own process, this interpreter) and
a temporary folder for the files it reads and writes."""
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts")


class ScriptTest(unittest.TestCase):
    SCRIPT = None  # the file name under scripts/

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def run_script(self, *args):
        return subprocess.run([sys.executable, os.path.join(SCRIPTS, self.SCRIPT), *args], capture_output=True,
                              text=True)

    def expect_one_line_error(self, args, words):
        """Runs the script on `args`: it fails (status 1) with one line on stderr that holds `words`."""
        r = self.run_script(*args)
        self.assertEqual(r.returncode, 1, (args, r.stderr))
        self.assertIn(words, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def write(self, name, lines):
        path = os.path.join(self.dir.name, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return path
