"""The command line: plain text when not a terminal or with --once, one-line errors, --help."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_once_and_not_a_tty_print_plain_text(real_root):
    r = subprocess.run([sys.executable, "-m", "tui.cli", str(real_root)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "2026-01-01-base" in r.stdout and "✓ finished" in r.stdout
    r = subprocess.run([sys.executable, "-m", "tui.cli", "--once", str(real_root)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "overall 100 %" in r.stdout


@pytest.mark.parametrize("argv, message", [(["/no/such/folder"], "no such folder"),
                                           (["--poll", "0", "."], "--poll must be > 0"),
                                           (["--bogus"], "unrecognized arguments")])
def test_bad_input_is_one_line_and_exit_2(argv, message):
    r = subprocess.run([sys.executable, "-m", "tui.cli", *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1


def test_help_has_examples():
    r = subprocess.run([sys.executable, "-m", "tui.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "examples:" in r.stdout and "--poll" in r.stdout and "nfs" in r.stdout
