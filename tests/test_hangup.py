"""The connection drops: SIGHUP (an SSH drop without tmux, ``tmux kill-pane``, a closed terminal) and a
terminal that goes away while the process lives on (``&`` + ``disown``, ``setsid``, ``nohup`` without a
redirect). Real subprocesses on a real pseudo-terminal whose far end the test closes; real training."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
from helpers import (
    arith_questions,
    count_lines,
    eval_env,
    read_json,
    records,
    start_trainkit,
    trainkit,
    wait_for,
    write_config,
    write_jsonl,
)

pytestmark = pytest.mark.slow

CFG = dict(epochs=3, batch_size=32, checkpoint={"every_steps": 7}, model={"width": 256, "depth": 3},
           data={"n_train": 2048, "n_val": 64, "nx": 32})


class Terminal:
    """A pseudo-terminal for one child process. ``controlling``: the child's session has it as its
    controlling terminal (closing it sends the kernel's SIGHUP); else the child only writes to it
    (``setsid``, ``disown``: no SIGHUP, but every write after the close fails with EIO).
    ``ignore_hup``: the child starts with SIGHUP ignored (``nohup``). What the child prints is read
    and kept until :meth:`hang_up` closes the far end."""

    def __init__(self, *, controlling: bool, ignore_hup: bool = False) -> None:
        self.controlling, self.ignore_hup = controlling, ignore_hup
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.seen = bytearray()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)

    def _drain(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    return

    def _child_setup(self) -> None:  # runs in the child, after fds 0-2 are the terminal
        os.setsid()
        if self.controlling:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        signal.signal(signal.SIGHUP, signal.SIG_IGN if self.ignore_hup else signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    def start(self, *args: str, cwd: Path, env: dict) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "trainkit", *map(str, args)], cwd=cwd, env=env,
                                stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                preexec_fn=self._child_setup)
        os.close(self.slave)
        self._reader.start()
        return proc

    def hang_up(self) -> None:
        """The SSH session drops: the far end of the terminal is closed."""
        self._stop.set()
        self._reader.join(timeout=5)
        os.close(self.master)


def finish(proc: subprocess.Popen, timeout: float = 180) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def losses(run: Path) -> list[tuple]:
    steps = records(run, "step")
    assert [r["step"] for r in steps] == sorted({r["step"] for r in steps}), "a step appears twice or out of order"
    return [(r["step"], r["loss"], r["lr"]) for r in steps]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir):
    """The same config trained without interruption (what every resumed run must equal)."""
    env = {**os.environ, "TRAINKIT_CACHE_DIR": str(cache_dir)}
    base = tmp_path_factory.mktemp("hangup-ref")
    cfg = write_config(base / "cfg.yaml", **CFG)
    r = trainkit("train", cfg, "--run-dir", base / "ref", cwd=base, env=env)
    assert r.returncode == 0, r.stderr
    return cfg, base / "ref"


def assert_stopped_by_sighup_at_the_current_step(run: Path) -> int:
    status = read_json(run / "training_status.json")
    assert status["state"] == "stopped" and "SIGHUP" in status["stop_reason"], status
    step = read_json(run / "checkpoints" / "current.meta.json")["global_step"]
    # the checkpoint is at the current step (every logged step is in it), not the last periodic one
    assert step == count_lines(run / "metrics.jsonl") == status["step"]
    return step


def test_sighup_stops_train_with_a_checkpoint_and_it_resumes_bit_identical(tmp_path, env, reference):
    cfg, ref = reference
    run = tmp_path / "run"
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    try:
        wait_for(lambda: count_lines(run / "metrics.jsonl") >= 40, timeout=120, interval=0.001, what="40 steps")
        proc.send_signal(signal.SIGHUP)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "SIGHUP received" in out
    assert assert_stopped_by_sighup_at_the_current_step(run) >= 40
    again = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert losses(run) == losses(ref)
    assert read_json(run / "training_status.json")["state"] == "finished"


def test_a_closed_terminal_stops_train_like_sighup_and_it_resumes(tmp_path, env, reference):
    cfg, ref = reference
    run = tmp_path / "run"
    term = Terminal(controlling=True)
    proc = term.start("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    wait_for(lambda: count_lines(run / "metrics.jsonl") >= 40, timeout=120, interval=0.001, what="40 steps")
    assert b"epoch" in term.seen  # the live display was drawing on the terminal
    term.hang_up()
    assert finish(proc) == 0
    assert_stopped_by_sighup_at_the_current_step(run)
    again = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert losses(run) == losses(ref)


@pytest.mark.parametrize("how", ["setsid", "nohup"])
def test_the_terminal_goes_away_and_the_pipeline_still_trains_evaluates_and_reports(tmp_path, env, how):
    """``setsid trainkit run`` (or ``&`` + ``disown``): no SIGHUP, every write after the SSH drop fails
    with EIO. ``nohup`` without a redirect: the SIGHUP is ignored, the writes fail the same way.
    The run finishes, is evaluated and reported; the exit code is 0."""
    cfg = write_config(tmp_path / "cfg.yaml", epochs=4, data={"n_train": 1024, "n_val": 64, "nx": 32})
    run = tmp_path / "run"
    term = Terminal(controlling=how == "nohup", ignore_hup=how == "nohup")
    proc = term.start("run", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    wait_for(lambda: count_lines(run / "metrics.jsonl") >= 5, timeout=120, what="training steps")
    term.hang_up()
    assert finish(proc, timeout=300) == 0
    status = read_json(run / "training_status.json")
    assert (status["state"], status["error"]) == ("finished", None)
    assert read_json(run / "evals" / "default" / "test_summary.json")["completed"] is True
    assert (run / "reports" / "default.json").exists()


def test_sighup_stops_an_evaluation_and_it_resumes(tmp_path, env):
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(12))
    gate = tmp_path / "gate"
    gate.mkdir()
    run, d = tmp_path / "run", tmp_path / "run" / "evals" / "qs"
    args = ["eval", run, "--model", "eval_models:gated", "--questions", q]
    log = tmp_path / "eval.log"
    gated = eval_env(env, EVAL_GATE_DIR=str(gate), EVAL_GATE_FROM="5")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "trainkit", *map(str, args)], cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT, env=gated)
    try:
        wait_for(lambda: count_lines(d / "responses.jsonl", b"\n") == 5, what="5 finished items")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: b"SIGHUP received" in log.read_bytes(), what="the stop request to be seen")
        for i in range(12):
            (gate / str(i)).touch()  # lets the item in flight finish; no new one may start
    finally:
        rc = finish(proc, timeout=60)
    assert rc == 130, log.read_text()
    summary = read_json(d / "test_summary.json")
    assert summary["completed"] is False and summary["done"] in (5, 6)
    again = trainkit(*args, cwd=tmp_path, env=eval_env(env))
    assert again.returncode == 0, again.stderr
    assert read_json(d / "test_summary.json")["done"] == 12


def test_sighup_to_the_pipeline_stops_training_gracefully_and_a_rerun_finishes(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml", epochs=3, data={"n_train": 2048, "n_val": 64, "nx": 32},
                       model={"width": 256, "depth": 3})
    run = tmp_path / "run"
    term = Terminal(controlling=True)
    proc = term.start("run", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    wait_for(lambda: count_lines(run / "metrics.jsonl") >= 10, timeout=120, what="training steps")
    term.hang_up()  # the pipeline and its training stage both get the hang-up
    assert finish(proc) == 130
    status = read_json(run / "training_status.json")
    assert status["state"] == "stopped" and "SIGHUP" in status["stop_reason"]  # not crashed
    again = trainkit("run", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [r["epoch"] for r in records(run, "epoch")] == [0, 1, 2]
    assert read_json(run / "evals" / "default" / "test_summary.json")["completed"] is True
