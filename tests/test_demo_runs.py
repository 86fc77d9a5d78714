"""`make demo` (tools/demo_runs.py): the arith-chat run learns what examples/arith_chat.yaml learns
(whose test checks its 80 % gate), the next commands are printed, and a Ctrl-C ends the demo
cleanly on a real terminal (a pseudo-terminal here): no traceback, the runs go on, and the way to
stop them is said."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import subprocess
import sys
import termios
import threading
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import ROOT, wait_for

sys.path.insert(0, str(ROOT / "tools"))
import demo_runs  # noqa: E402


def test_the_demo_arith_chat_run_trains_the_example_config_with_its_gate():
    """Only what the monitor shows differs (samples and layer health answer with the RNG forked, so
    the weights are the example's): test_arith_chat's example test covers its >= 80 % gate."""
    example = yaml.safe_load((ROOT / "examples" / "arith_chat.yaml").read_text())
    command, demo = demo_runs.runs()["demo-arith-chat"]
    assert command == "run"
    shown = {"log_every_steps", "monitor"}
    assert {k: v for k, v in demo.items() if k not in shown} == {k: v for k, v in example.items() if k not in shown}
    assert demo["eval"]["gates"]["accuracy"]["min"] == 0.8
    assert set(demo["monitor"]) - {"samples_every_steps", "layers_every_steps"} == set(example["monitor"]) - \
        {"samples_every_steps", "layers_every_steps"}


def test_the_next_steps_name_three_commands_and_how_to_stop_the_runs():
    text = demo_runs.next_steps(Path("experiments"))
    commands = re.findall(r"^  (trainkit [a-z ]+|trainmon)\b", text, re.M)
    assert commands[:3] == ["trainkit status", "trainmon", "trainkit experiments list"]
    assert "go on in the background" in text and text.endswith("trainkit stop --all")
    assert ". .venv/bin/activate" in text
    assert demo_runs.next_steps(Path("elsewhere")).endswith("trainkit stop --all --root elsewhere")


def _controlling_tty(slave: int):
    def setup() -> None:  # a session of its own whose terminal is the pty, as a shell's would be
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    return setup


@pytest.mark.slow
def test_ctrl_c_during_the_demo_ends_it_cleanly_and_the_runs_go_on(tmp_path, env):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, b"\x00\x24\x00\x78\x00\x00\x00\x00")  # 36 x 120
    root = tmp_path / "experiments"
    env = {**env, "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "demo_runs.py"), "--root", str(root)],
                            stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path, env=env,
                            preexec_fn=_controlling_tty(slave), close_fds=True)
    os.close(slave)
    seen = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    pids: list[int] = []
    try:
        wait_for(lambda: seen.count(b"started ") >= 3, 60, what="the three runs started")
        pids = [int(p) for p in re.findall(rb"\(pid (\d+);", bytes(seen))]
        wait_for(lambda: b"\x1b[?1049h" in seen, 60, what="trainmon on the terminal")  # its screen is up
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: SIGINT to the foreground group
        assert proc.wait(timeout=60) == 130
        reader.join(timeout=10)
        out = bytes(seen).decode(errors="replace")
        assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
        assert "interrupted." in out and f"trainkit stop --all --root {root}" in out, out[-2000:]
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert alive == pids  # the runs go on (their own sessions: the Ctrl-C never reached them)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        _end(pids)


def _end(pids: list[int]) -> None:
    """Stop the demo's runs and everything they started (the pipeline's stages too)."""
    procs = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            procs.extend([p, *p.children(recursive=True)])
        except psutil.NoSuchProcess:
            pass
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


@pytest.mark.parametrize("environ, cpus, runs, threads", [
    ({}, 2, 3, "1"),  # three runs on 2 cores: one thread each
    ({}, 16, 3, "5"),
    ({}, None, 3, "1"),
    ({}, 8, 1, None),  # one run alone: torch's own choice
    ({"OMP_NUM_THREADS": "4"}, 2, 3, "4"),  # the user's own setting stands
])
def test_runs_side_by_side_get_their_share_of_the_cores(environ, cpus, runs, threads):
    """What `make demo` and `trainkit launch --max-parallel N` give each run they start."""
    from trainkit.launcher import threads_env

    env = threads_env({"PATH": "/bin", **environ}, runs, cpus)
    assert env.get("OMP_NUM_THREADS") == threads and env["PATH"] == "/bin"
