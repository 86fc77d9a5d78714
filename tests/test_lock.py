"""The run lock under faults: a pid reused by another process (reboot, OOM kill), a full or read-only
disk when the lock is taken, a run suspended with Ctrl-Z. Real processes, real filesystems (a tmpfs
where this process may mount one), real training for the suspended run."""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from helpers import (
    count_lines,
    fill_filesystem,
    mount_small_filesystem,
    read_json,
    start_trainkit,
    trainkit,
    unmount,
    wait_for,
    write_config,
)

from trainkit import status as S
from trainkit.runfolder.lock import LockHeld, LockUnavailable, RunLock, process_start_time
from trainkit.testing import synthetic_run

HOST = socket.gethostname()


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    wait_for(lambda: process_start_time(proc.pid) is not None, what="the process to start")
    yield proc
    proc.kill()
    proc.wait()


def write_lock(run: Path, **body) -> Path:
    path = run / ".trainkit.lock"
    path.write_bytes(orjson.dumps({"host": HOST, "purpose": "train", **body}))
    return path


# --------------------------------------------------------------------------------------------
# a pid that was reused


def test_a_lock_whose_pid_now_belongs_to_another_process_is_stale(tmp_path, sleeper):
    """A reboot (or an OOM kill) freed the trainer's pid and another process got it: the crashed run
    reads crashed, never "running" forever, and the next trainer takes the lock over."""
    hour_ago = time.time() - 3600
    run = synthetic_run(tmp_path, "2026-01-01-reused", scores=[1.0], state="running", pid=sleeper.pid,
                        heartbeat_age_s=3600)
    lock = write_lock(run.root, pid=sleeper.pid, created_at=hour_ago, pid_started_at=hour_ago)
    st = S.run_status(run.root)
    assert st.state == "crashed", st.reason
    assert RunLock(lock).acquire().held  # taken over, not "locked by pid ..."


def test_an_older_lock_without_a_start_time_is_judged_by_when_it_was_written(tmp_path, sleeper):
    run = synthetic_run(tmp_path, "2026-01-01-old", scores=[1.0], state="running", pid=sleeper.pid,
                        heartbeat_age_s=3600)
    lock = write_lock(run.root, pid=sleeper.pid, created_at=time.time() - 3600)  # the pid's process is younger
    assert S.run_status(run.root).state == "crashed"
    assert RunLock(lock).acquire().held


def test_the_lock_of_the_process_that_wrote_it_is_respected(tmp_path, sleeper):
    run = synthetic_run(tmp_path, "2026-01-01-held", scores=[1.0], state="stopped")
    lock = write_lock(run.root, pid=sleeper.pid, created_at=time.time(), pid_started_at=process_start_time(sleeper.pid))
    st = S.run_status(run.root)
    assert st.state == "running" and f"locked by pid {sleeper.pid}" in st.reason
    with pytest.raises(LockHeld, match=f"locked by pid {sleeper.pid}"):
        RunLock(lock).acquire()
    mine = RunLock(tmp_path / "mine.lock").acquire()
    assert abs(read_json(mine.path)["pid_started_at"] - process_start_time()) < 1.0  # recorded by every lock


# --------------------------------------------------------------------------------------------
# a full or read-only disk


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "fs"
    if not mount_small_filesystem(mnt, "256k"):
        yield None
        return
    try:
        yield mnt
    finally:
        unmount(mnt)


def _no_file_bigger_than(limit: int):
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_file_size


def test_a_full_disk_when_the_lock_is_taken_is_one_line_and_leaves_no_lock(tmp_path, small_fs, env):
    base = small_fs or tmp_path
    run = base / "2026-01-01-full"
    write_config(run / "config.yaml", epochs=1)
    if small_fs is not None:  # a real ENOSPC: the tmpfs is full
        fill_filesystem(small_fs)
        with pytest.raises(LockUnavailable, match="no space left"):
            RunLock(run / ".trainkit.lock").acquire()
        assert not (run / ".trainkit.lock").exists()
        r = trainkit("train", run / "config.yaml", "--run-dir", run, cwd=tmp_path, env=env)
    else:  # not allowed to mount: no file may grow past 0 bytes (EFBIG), as a full disk refuses writes
        r = subprocess.run([sys.executable, "-m", "trainkit", "train", str(run / "config.yaml"), "--run-dir",
                            str(run)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                           preexec_fn=_no_file_bigger_than(0))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "cannot take the run lock" in r.stderr and "Traceback" not in r.stderr
    assert not (run / ".trainkit.lock").exists()  # no empty lock left to block the next try


def test_a_read_only_disk_when_the_lock_is_taken_is_one_line(tmp_path, small_fs, env):
    base = small_fs or tmp_path
    run = base / "2026-01-01-ro"
    write_config(run / "config.yaml", epochs=1)
    if small_fs is not None:
        assert subprocess.run(["mount", "-o", "remount,ro", str(small_fs)]).returncode == 0
        why = "read-only"
    elif os.geteuid() != 0:
        run.chmod(0o555)
        why = "permission denied"
    else:
        pytest.skip("root that may not mount: no way to make a folder unwritable here")
    with pytest.raises(LockUnavailable, match=why):
        RunLock(run / ".trainkit.lock").acquire()
    r = trainkit("train", run / "config.yaml", "--run-dir", run, cwd=tmp_path, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and why in r.stderr.lower(), r.stderr
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------------------------
# Ctrl-Z


def status_of(root: Path, env: dict, cwd: Path) -> dict:
    r = trainkit("status", root, "--json", "--stale-after", "1", cwd=cwd, env=env)
    assert r.returncode == 0, r.stderr
    return orjson.loads(r.stdout)[0]


LONG = dict(epochs=200, data={"n_train": 512, "n_val": 64, "nx": 32})


@pytest.mark.slow
def test_a_suspended_run_reads_suspended_not_starting(tmp_path, env):
    root = tmp_path / "experiments"
    cfg = write_config(tmp_path / "cfg.yaml", **LONG)
    run = root / "2026-01-01-z"
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    try:
        wait_for(lambda: count_lines(run / "metrics.jsonl") >= 5, timeout=120, what="training steps")
        proc.send_signal(signal.SIGSTOP)  # the process state T, as after Ctrl-Z
        # the heartbeat goes stale (--stale-after 1) while the process holds its lock
        row = wait_for(lambda: (lambda r: r if (r["heartbeat_age_s"] or 0) > 1.5 else None)(
            status_of(root, env, tmp_path)), timeout=30, what="a stale heartbeat")
        assert row["state"] == "suspended" and f"pid {proc.pid} is suspended" in row["reason"], row
        table = trainkit("status", root, "--stale-after", "1", cwd=tmp_path, env=env).stdout
        assert "z suspended" in table and "kill -CONT" in table
        proc.send_signal(signal.SIGCONT)
        wait_for(lambda: status_of(root, env, tmp_path)["state"] == "running", timeout=30, what="running again")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    assert read_json(run / "training_status.json")["state"] == "stopped"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install -y tmux)")
def test_ctrl_z_in_a_terminal_then_fg_then_the_pane_killed(tmp_path, env):
    """A real Ctrl-Z in an interactive shell in tmux: suspended; fg: running again; ``tmux kill-pane``
    (the hang-up): stopped with a checkpoint at the current step, not crashed."""
    root = tmp_path / "experiments"
    cfg = write_config(tmp_path / "cfg.yaml", **LONG)
    run = root / "2026-01-01-tmux"
    sock, session = f"trainkit-test-{os.getpid()}", "z"
    keep = {k: env[k] for k in ("TRAINKIT_CACHE_DIR", "PYTHONPATH") if env.get(k)}
    command = " ".join(["env", *(f"{k}={shlex.quote(v)}" for k, v in keep.items()), shlex.quote(sys.executable),
                        "-m", "trainkit", "train", shlex.quote(str(cfg)), "--run-dir", shlex.quote(str(run))])

    def tmux(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", *args], capture_output=True, text=True,
                              cwd=tmp_path)

    shell = "bash --norc --noprofile -i"
    assert tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "30", shell).returncode == 0
    try:
        tmux("send-keys", "-t", session, command, "Enter")
        wait_for(lambda: count_lines(run / "metrics.jsonl") >= 5, timeout=120, what="training steps")
        tmux("send-keys", "-t", session, "C-z")
        wait_for(lambda: status_of(root, env, tmp_path)["state"] == "suspended", timeout=30, what="suspended")
        tmux("send-keys", "-t", session, "fg", "Enter")
        wait_for(lambda: status_of(root, env, tmp_path)["state"] == "running", timeout=30, what="running again")
        steps = count_lines(run / "metrics.jsonl")
        wait_for(lambda: count_lines(run / "metrics.jsonl") > steps, timeout=30, what="training to go on")
        tmux("kill-pane", "-t", session)
        wait_for(lambda: read_json(run / "training_status.json")["state"] != "running", timeout=60,
                 what="the trainer to stop")
    finally:
        tmux("kill-server")
    status = read_json(run / "training_status.json")
    assert status["state"] == "stopped" and "SIGHUP" in status["stop_reason"], status
    assert read_json(run / "checkpoints" / "current.meta.json")["global_step"] == count_lines(run / "metrics.jsonl")
