"""Every read goes through the bounded, regular-file-only readers (trainkit/runfolder/files.py and
readers.py): a FIFO never hangs a command, a symlink to /dev/zero never eats memory. The source is
scanned for reads that bypass them (``open(`` for reading, ``.read_bytes()``, ``.read_text()``);
the few that are not run-folder files are listed with the reason. Then the commands that read
notes.md and metrics.jsonl meet a FIFO and a link to /dev/zero."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import trainkit

from trainkit.testing import synthetic_run

REPO = Path(__file__).resolve().parents[1]
READERS = {"trainkit/runfolder/files.py", "trainkit/runfolder/readers.py"}
NOT_RUN_FILES = {  # (file, what it reads) -> why it may read it directly
    ("trainkit/serve/api.py", "read_bytes"): "the package's own page.html (package data)",
    ("trainkit/evaluation/plan.py", "read_bytes"): "the questions file the user names on the command line "
                                                    "(a pipe such as <(...) is welcome)",
    ("trainkit/foreign/tensorboard.py", "open"): "trainkit's own cache in the user's cache folder, read bounded",
    ("tui/model/mounts.py", "open"): "the kernel's /proc/self/mountinfo",
    ("tui/demo.py", "read_bytes"): "the demo's own status file, which it has just written",
}


def reads_in(path: Path) -> list[tuple[int, str]]:
    """(line, what) for each read in ``path`` that is not a write: ``open(...)`` without a w/a/x
    mode, ``.read_bytes()``, ``.read_text()``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name in ("read_bytes", "read_text") and isinstance(f, ast.Attribute):
            out.append((node.lineno, name))
        elif name == "open" and (isinstance(f, ast.Name) or (isinstance(f.value, ast.Name)
                                                              and f.value.id in ("io", "builtins"))):
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                 None)
            text = mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else "r"
            if not (set(text) & set("wax")) or "+" in text:
                out.append((node.lineno, "open"))
    return out


def test_no_read_bypasses_the_bounded_readers():
    found = []
    for package in ("trainkit", "tui"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel in READERS:
                continue
            found += [f"{rel}:{line}: {what}" for line, what in reads_in(path) if (rel, what) not in NOT_RUN_FILES]
    assert found == [], "read these through trainkit.runfolder.files (read_limited, read_regular, open_regular...)"


def test_the_scan_finds_a_read():
    code = "open(p)\nopen(p, 'rb')\nopen(p, 'wb')\nopen(p, mode='ab')\nPath(p).read_text()\nio.open(p)\nos.open(p)\n"
    tmp = REPO / "tests" / "__scan_probe__.py"
    try:
        tmp.write_text(code)
        assert [what for _, what in reads_in(tmp)] == ["open", "open", "read_text", "open"]
    finally:
        tmp.unlink()


# --------------------------------------------------------------------------------------------
# the commands meet a FIFO and /dev/zero


@pytest.fixture
def hostile_root(tmp_path):
    root = tmp_path / "experiments"
    fifo_notes = synthetic_run(root, "2026-01-01-fifo", total=2, scores=[1.0, 0.5], state="finished").root
    os.mkfifo(fifo_notes / "notes.md")
    zero_notes = synthetic_run(root, "2026-01-01-zero", total=2, scores=[1.0, 0.5], state="finished").root
    (zero_notes / "notes.md").symlink_to("/dev/zero")
    fifo_metrics = synthetic_run(root, "2026-01-01-fifo-metrics", total=2, scores=[], state="stopped").root
    (fifo_metrics / "metrics.jsonl").unlink()
    os.mkfifo(fifo_metrics / "metrics.jsonl")
    return root


def test_experiments_list_and_archive_never_hang_on_a_fifo_or_dev_zero(tmp_path, env, hostile_root):
    r = trainkit("experiments", "list", cwd=tmp_path, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "2026-01-01-fifo" in r.stdout and "2026-01-01-zero" in r.stdout
    a = trainkit("experiments", "archive", "2026-01-01-fifo", "2026-01-01-zero", "--dry-run", cwd=tmp_path, env=env,
                 timeout=60)
    assert a.returncode == 0, a.stderr


def test_serve_answers_for_a_run_whose_metrics_is_a_fifo(tmp_path, env, hostile_root):
    import http.client

    proc = subprocess.Popen([sys.executable, "-m", "trainkit", "serve", str(hostile_root), "--port", "0"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().rsplit(":", 1)[1].strip("/\n"))
        for _ in range(3):  # and every later request for it
            for target in ("/runs/2026-01-01-fifo-metrics", "/runs/2026-01-01-fifo-metrics/metrics?after=0",
                           "/runs"):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                t0 = time.monotonic()
                conn.request("GET", target)
                resp = conn.getresponse()
                resp.read()
                conn.close()
                assert resp.status == 200 and time.monotonic() - t0 < 5, target
    finally:
        proc.terminate()
        proc.wait(timeout=30)
