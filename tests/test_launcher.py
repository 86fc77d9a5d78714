"""The launcher: what it starts and never starts, detached runs, locks, crash loops."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from helpers import read_json, start_trainkit, trainkit, wait_for, write_config

from trainkit import status as S
from trainkit.launcher import Action, crashes_in_a_row, decide, read_history
from trainkit.runfolder.lock import LockHeld, RunLock
from trainkit.testing import dead_pid, synthetic_run


def snapshot(folder):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_of(state: str, completed: int = 2) -> S.RunStatus:
    return S.RunStatus(name="r", path="/x/r", state=state, reason="why", completed_epochs=completed, total_epochs=10,
                       progress_percentage=20.0, early_stopped=False, early_stopped_at_epoch=None, finished=False)


@pytest.mark.parametrize("state,action", [
    ("pending", "launch"), ("failed", "relaunch"), ("crashed", "relaunch"), ("finished", None),
    ("early_stopped", None), ("running", None), ("paused", None), ("stopped", None),
])
def test_decide_by_state(state, action):
    got = decide(run_of(state), {"launches": [], "given_up": None}, max_crashes=3, started_at=None)
    assert (got.action if got else None) == action


@pytest.mark.parametrize("launches,completed,n", [
    ([], 2, 1),
    ([{"action": "relaunch", "completed_before": 2}], 2, 2),
    ([{"action": "relaunch", "completed_before": 2}, {"action": "relaunch", "completed_before": 2}], 2, 3),
    ([{"action": "relaunch", "completed_before": 1}, {"action": "relaunch", "completed_before": 2}], 2, 2),
    ([{"action": "relaunch", "completed_before": 2}], 3, 1),  # progress since the last relaunch: a new series
    ([{"action": "launch", "completed_before": 2}], 2, 1),
])
def test_crashes_in_a_row(launches, completed, n):
    assert crashes_in_a_row({"launches": launches}, completed) == n


def test_give_up_after_max_crashes_and_respect_it():
    hist = {"launches": [{"action": "relaunch", "completed_before": 2}] * 2, "given_up": None}
    assert decide(run_of("crashed"), hist, max_crashes=3, started_at=None).action == "give_up"
    assert decide(run_of("crashed"), hist, max_crashes=4, started_at=None).action == "relaunch"
    gave_up = {**hist, "given_up": {"t": 100.0}}
    assert decide(run_of("failed"), gave_up, max_crashes=3, started_at=50.0) is None
    assert decide(run_of("failed"), gave_up, max_crashes=3, started_at=150.0).action == "give_up"  # retried by hand


def test_dry_run_plan_changes_nothing(tmp_path, env):
    root = tmp_path / "experiments"
    synthetic_run(root, "a-running", scores=[1.0], state="running")
    synthetic_run(root, "b-crashed", scores=[1.0], state="running", pid=dead_pid())
    synthetic_run(root, "c-failed", scores=[1.0], state="failed")
    synthetic_run(root, "d-finished", total=2, scores=[1.0, 0.9], state="finished")
    synthetic_run(root, "e-early", total=9, scores=[1.0, 1.0], state="early_stopped",
                  early_stopping={"metric": "val_loss", "patience": 1})
    synthetic_run(root, "f-stopped", scores=[1.0], state="stopped")
    synthetic_run(root, "g-paused", scores=[1.0], state="paused")
    (root / "h-pending").mkdir()
    (root / "h-pending" / "config.yaml").write_text("task: burgers\n")
    before = snapshot(root)
    res = trainkit("launch", root, "--dry-run", "--json", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    got = orjson.loads(res.stdout)
    assert [(a["name"], a["action"]) for a in got] == [
        ("b-crashed", "relaunch"), ("c-failed", "relaunch"), ("h-pending", "launch")]
    assert all(set(a) == {"name", "action", "reason", "argv", "cwd"} and a["reason"] for a in got)
    assert got[0]["argv"][1:5] == ["-m", "trainkit", "train", str(root / "b-crashed")]
    assert got[0]["cwd"] == str(tmp_path)
    text = trainkit("launch", root, "--dry-run", cwd=tmp_path, env=env)
    assert "would relaunch b-crashed: crashed: pid" in text.stdout and "  argv: " in text.stdout
    assert snapshot(root) == before


@pytest.mark.slow
def test_launch_detached_runs_with_max_parallel_and_wait(tmp_path, env):
    root = tmp_path / "experiments"
    cfg = write_config(tmp_path / "c.yaml", epochs=2, data={"n_train": 2048})
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "config.yaml").write_text(cfg.read_text())
    crashing = start_trainkit("train", root / "b" / "config.yaml", cwd=tmp_path, env=env)
    # progress.json exists from the claim on: wait for the epoch it records
    wait_for(lambda: (root / "b" / "progress.json").exists()
             and read_json(root / "b" / "progress.json")["completed_epochs"] >= 1, timeout=120, what="b's first epoch")
    crashing.kill()  # kill -9 after epoch 0: b is crashed with 1 of 2 epochs done
    crashing.wait()
    synthetic_run(root, "done", total=1, scores=[1.0], state="finished")
    before_done = snapshot(root / "done")

    res = trainkit("launch", root, "--max-parallel", "1", "--wait", "--json", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    started = orjson.loads(res.stdout)
    assert [(a["name"], a["action"]) for a in started] == [("a", "launch"), ("b", "relaunch")]
    assert "a exited with code 0" in res.stderr and "b exited with code 0" in res.stderr
    runs = {r.name: r for r in S.scan(root)}
    assert runs["a"].state == "finished" and runs["b"].state == "finished"
    assert runs["b"].completed_epochs == 2  # resumed from epoch 1, not restarted
    assert snapshot(root / "done") == before_done
    hist = read_history(root / "b")
    assert [x["action"] for x in hist["launches"]] == ["relaunch"]
    assert hist["launches"][0]["state_before"] == "crashed"
    log = (root / "a" / "train.log").read_text()
    assert log.count("finished 2 epochs") == 1  # stdout and the engine's log are not doubled
    # max-parallel 1: b started only after a finished
    a_end = read_json(root / "a" / "training_status.json")["heartbeat_at"]
    b_start = hist["launches"][0]["t"]
    assert b_start >= a_end - 0.5
    assert not (root / "a" / ".trainkit.lock").exists() and not (root / "b" / ".trainkit.lock").exists()


@pytest.mark.slow
def test_launched_run_survives_the_launcher_and_holds_the_lock(tmp_path, env):
    root = tmp_path / "experiments"
    write_config(root / "long" / "config.yaml", epochs=300)
    # no --wait: the launcher exits at once; room for 2 runs: each gets half the cores' threads
    res = trainkit("launch", root, "--max-parallel", "2", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    pid = read_history(root / "long")["launches"][0]["pid"]
    try:
        child_env = dict(kv.split(b"=", 1) for kv in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if kv)
        share = env.get("OMP_NUM_THREADS") or str(max(1, os.cpu_count() // 2))
        assert child_env[b"OMP_NUM_THREADS"] == share.encode()
        # running by its own status (the lock alone reads "starting"): a SIGTERM before the trainer
        # has its handlers would kill it mid-import, with no status written
        wait_for(lambda: (st := S.run_status(root / "long")).state == "running" and st.heartbeat_age_s is not None,
                 timeout=120, what="running")
        lock = read_json(root / "long" / ".trainkit.lock")
        assert lock["pid"] == pid  # handed over to the child
        assert os.getsid(pid) == pid  # its own session: survives the SSH session's hangup
        user = trainkit("train", root / "long", cwd=tmp_path, env=env)  # a user trying the same run
        assert user.returncode == 2 and f"locked by pid {pid}" in user.stderr
        again = trainkit("launch", root, "--dry-run", "--json", cwd=tmp_path, env=env)
        assert orjson.loads(again.stdout) == []
    finally:
        os.kill(pid, 15)
        seen: list = []
        try:
            wait_for(lambda: seen.append(S.run_status(root / "long")) or seen[-1].state == "stopped", timeout=60,
                     what="stopped")
        except AssertionError as e:  # say what it read instead, and what the run printed
            log = root / "long" / "console.log"
            raise AssertionError(f"{seen[-1].state}: {seen[-1].reason}; pid {pid} alive: {_alive(pid)}; "
                                 f"console.log ends {log.read_text()[-1500:] if log.exists() else None!r}") from e
    assert orjson.loads(trainkit("launch", root, "--dry-run", "--json", cwd=tmp_path, env=env).stdout) == []


@pytest.mark.slow
def test_two_launchers_at_the_same_moment_launch_once(tmp_path, env):
    root = tmp_path / "experiments"
    write_config(root / "only" / "config.yaml", epochs=2)
    cmd = [sys.executable, "-m", "trainkit", "launch", str(root), "--wait"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("launch only (pid" in o for o in outs) == 1, outs
    assert len(read_history(root / "only")["launches"]) == 1
    assert (root / "only" / "train.log").read_text().count("run folder:") == 1
    assert S.run_status(root / "only").state == "finished"


def test_crash_loop_is_marked_failed_not_relaunched_forever(tmp_path, env):
    root = tmp_path / "experiments"
    run = synthetic_run(root, "loop", scores=[1.0, 0.9], state="running", pid=dead_pid())
    (run.root / "launch.json").write_bytes(orjson.dumps({"version": 1, "given_up": None, "launches": [
        {"t": time.time() - 50, "action": "relaunch", "completed_before": 2},
        {"t": time.time() - 20, "action": "relaunch", "completed_before": 2}]}))
    res = trainkit("launch", root, cwd=tmp_path, env=env)
    assert res.returncode == 0
    assert "gave up on loop" in res.stdout
    st = S.run_status(run.root)
    assert st.state == "failed" and "3 times in a row without progress" in st.reason
    assert read_history(run.root)["given_up"] is not None
    assert orjson.loads(trainkit("launch", root, "--dry-run", "--json", cwd=tmp_path, env=env).stdout) == []


def test_stale_lock_is_broken_live_lock_is_respected(tmp_path):
    path = tmp_path / ".trainkit.lock"
    path.write_bytes(orjson.dumps({"pid": dead_pid(), "host": os.uname().nodename}))
    lock = RunLock(path).acquire()
    assert read_json(path)["pid"] == os.getpid()
    with pytest.raises(LockHeld, match=f"locked by pid {os.getpid()}"):
        RunLock(path).acquire()
    lock.release()
    assert not path.exists()
    handed = RunLock(path, handoff_token="t0k").acquire()
    assert handed.held
    with pytest.raises(LockHeld):
        RunLock(path).acquire(accept_token="wrong")
    assert RunLock(path).acquire(accept_token="t0k").held


def test_launch_bad_input(tmp_path, env):
    for args, msg in ((["launch", tmp_path / "nope"], "no such folder"),
                      (["launch", tmp_path, "--max-parallel", "0"], "--max-parallel must be >= 1"),
                      (["launch", tmp_path, "--dry-run", "--wait"], "does not combine")):
        res = trainkit(*args, cwd=tmp_path, env=env)
        assert res.returncode == 2 and msg in res.stderr and res.stderr.count("\n") == 1, res.stderr


def test_action_json_shape():
    assert Action("n", "/p", "launch", "why").to_json() == {"name": "n", "action": "launch", "reason": "why"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
