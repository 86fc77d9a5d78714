"""Shared helpers of the tests: tiny real configs, real `trainkit` subprocesses, readers of the run files.

Imported by name (``from helpers import ...``) from tests/ and tests/tui/; the fixtures are in conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import yaml
import zygote

ROOT = Path(__file__).resolve().parents[1]

# Small enough to train an epoch in a fraction of a second on 2 CPU cores.
TINY = {
    "task": "burgers",
    "epochs": 3,
    "batch_size": 16,
    "lr": 2.0e-3,
    "log_every_steps": 1,
    "heartbeat_s": 0.5,
    "system_every_s": 0.5,
    "model": {"width": 64, "depth": 2},
    "data": {"n_train": 256, "n_val": 64, "nx": 32},
}


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_config(path: Path, **over) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(merge(TINY, over), sort_keys=False))
    return path


def default_sigint() -> None:
    """``preexec_fn`` of a child that a test stops with SIGINT (Ctrl-C): the default disposition.
    A shell's background job (or a CI runner) may start the tests with SIGINT ignored, children
    inherit that, and Python then never raises KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


# the commands that import torch: they start from the zygote (tests/zygote.py) when it can run them
ZYGOTE_COMMANDS = frozenset({"train", "eval", "score"})


def forked(args: tuple[str, ...], env: dict) -> bool:
    """Whether `trainkit ARGS` starts from the zygote: a command that imports torch, where it can."""
    return bool(args) and args[0] in ZYGOTE_COMMANDS and zygote.usable(env)


def trainkit(*args: str, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m trainkit ARGS` to its end, its output captured (a command that trains or evaluates
    is forked from the zygote, which has imported torch: the same process, started faster)."""
    args = tuple(map(str, args))
    if forked(args, env):
        return zygote.run("trainkit", list(args), cwd=cwd, env=env, timeout=timeout)
    return subprocess.run([sys.executable, "-m", "trainkit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def start_trainkit(*args: str, cwd: Path, env: dict) -> subprocess.Popen | zygote.Process:
    """`python -m trainkit ARGS` started, stdout and stderr on one text pipe (from the zygote as
    :func:`trainkit`: a :class:`zygote.Process` answers as a Popen does)."""
    args = tuple(map(str, args))
    if forked(args, env):
        return zygote.Process("trainkit", list(args), cwd=cwd, env=env, merge=True)
    return subprocess.Popen([sys.executable, "-m", "trainkit", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def records(run_dir: Path, kind: str) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    out = []
    for line in path.read_bytes().splitlines():
        rec = orjson.loads(line)  # every line must parse
        if rec.get("kind") == kind:
            out.append(rec)
    return out


def read_json(path: Path) -> dict:
    return orjson.loads(path.read_bytes())


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.01, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def read_until(stream, predicate, timeout: float = 60.0, what: str = "output") -> bytes:
    """Read a pipe until ``predicate(everything read so far)`` holds, with a deadline (a process
    that dies or never prints fails the test instead of hanging it)."""
    import select

    seen = b""
    deadline = time.monotonic() + timeout
    while not predicate(seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}; got {seen[-500:]!r}")
        ready, _, _ = select.select([stream], [], [], min(left, 0.5))
        if ready:
            chunk = stream.read1(4096)
            if not chunk:
                raise AssertionError(f"stream closed while waiting for {what}; got {seen[-500:]!r}")
            seen += chunk
    return seen


def count_lines(path: Path, needle: bytes = b'"kind":"step"') -> int:
    try:
        return path.read_bytes().count(needle)
    except FileNotFoundError:
        return 0


# --- evaluation helpers ----------------------------------------------------------------------

TESTS_DIR = Path(__file__).resolve().parent


def eval_env(env: dict, **extra: str) -> dict:
    """``env`` plus tests/ on PYTHONPATH (for ``--model eval_models:...``) and ``extra`` variables."""
    e = dict(env)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), e.get("PYTHONPATH", "")) if p)
    e.update(extra)
    return e


def arith_questions(n: int, **extra) -> list[dict]:
    """``{"id": i, "question": "i+k", "answer": "..."}`` rows that ``eval_models.arith`` answers."""
    return [{"id": i, "question": f"{i}+{i % 7}", "answer": str(i + i % 7), **extra} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Every line must parse (a torn or interleaved line fails the test)."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"{path} ends with a torn line"
    return [orjson.loads(line) for line in data.splitlines()]


# --- filesystems that fill up or are read-only -------------------------------------------------


def mount_small_filesystem(path: Path, size: str = "1m", *, readonly: bool = False) -> bool:
    """Mount a tmpfs of ``size`` at ``path`` (a real ENOSPC when it is full, a real EROFS with
    ``readonly``). False where this process may not mount (not root, no CAP_SYS_ADMIN)."""
    import shutil

    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    opts = f"size={size}" + (",ro" if readonly else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill_filesystem(path: Path) -> None:
    """Write into ``path`` until its filesystem has no space left."""
    fd = os.open(path / ".filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 1 << 12, 1):  # the last bytes too
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
