#!/usr/bin/env python3
"""Every program under scripts/ (a file that starts with "#!") is executable, as the docs and
scripts/default_model/gpu_call.sh run them: a program without its mode fails there with status 126, which a
script that runs it under `set -e` turns into a silent stop (stage 22's evaluation call, 2026-12-07)."""
import os
import unittest

from script_test import SCRIPTS


def programs():
    for folder, _, files in os.walk(SCRIPTS):
        for name in sorted(files):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                if f.read(2) == b"#!":
                    yield path


class ScriptModes(unittest.TestCase):
    def test_every_program_is_executable(self):
        found = list(programs())
        self.assertGreater(len(found), 10)  # the walk found the scripts
        for path in found:
            with self.subTest(path=os.path.relpath(path, SCRIPTS)):
                self.assertTrue(os.access(path, os.X_OK), f"{path} starts with #! but is not executable (chmod +x)")


if __name__ == "__main__":
    unittest.main()
