"""Run status: exact progress (fast path, slow path, repair), every state, corrupt inputs."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys

import orjson
import pytest
from helpers import default_sigint, read_json, read_until, start_trainkit, trainkit, wait_for, write_config

from trainkit import status as S
from trainkit.launcher import plan
from trainkit.testing import dead_pid, synthetic_run

HOST = socket.gethostname()
ES = {"metric": "val_loss", "mode": "min", "patience": 5, "min_delta": 0.0}


# ------------------------------------------------------------------ pure logic, in tables

@pytest.mark.parametrize("obj,ok", [
    ({"completed_epochs": 3, "total_epochs": 10, "progress_percentage": 30.0, "early_stopped": False,
      "early_stopped_at_epoch": None, "finished": False}, True),
    ({"completed_epochs": 3, "total_epochs": 10, "progress_percentage": 100, "early_stopped": True,
      "early_stopped_at_epoch": 2, "finished": True}, True),
    ({"completed_epochs": 10, "total_epochs": 10, "progress_percentage": 100, "early_stopped": False,
      "finished": True}, True),
    ({"completed_epochs": 3, "total_epochs": 10, "progress_percentage": 57.0, "early_stopped": False}, False),
    ({"completed_epochs": -1, "total_epochs": 10, "progress_percentage": 0, "early_stopped": False}, False),
    ({"completed_epochs": 12, "total_epochs": 10, "progress_percentage": 100, "early_stopped": False}, False),
    ({"completed_epochs": "3", "total_epochs": 10, "progress_percentage": 30, "early_stopped": False}, False),
    ({"completed_epochs": 3, "total_epochs": 10, "progress_percentage": 100, "early_stopped": True,
      "early_stopped_at_epoch": 7}, False),
    ({"completed_epochs": 3, "total_epochs": 10, "progress_percentage": 30.0, "early_stopped": False,
      "finished": True}, False),
    ({"completed_epochs": 3, "total_epochs": 0, "progress_percentage": 0, "early_stopped": False}, False),
    ({"total_epochs": 10}, False),
    ({"completed_epochs": True, "total_epochs": 10, "progress_percentage": 10, "early_stopped": False}, False),
])
def test_check_progress(obj, ok):
    prog, why = S.check_progress(obj)
    assert (prog is not None) is ok, why


@pytest.mark.parametrize("values,total,es,expected", [
    ([1.0] * 4, 10, None, (4, 40.0, False, None)),
    ([1.0] * 10, 10, None, (10, 100.0, False, None)),
    ([1.0, 0.9, 0.8], 10, ES, (3, 30.0, False, None)),
    ([1.0] * 7, 100, {**ES, "patience": 3}, (4, 100.0, True, 3)),  # epochs after the trigger are not counted
    ([1.0, 0.5, 0.6, 0.7], 100, {**ES, "patience": 2}, (4, 100.0, True, 3)),
    ([1.0] * 3, None, None, (3, 0.0, False, None)),
])
def test_recompute_progress(values, total, es, expected):
    prog = S.recompute_progress([{"val_loss": v} for v in values], total, es)
    got = (prog.completed_epochs, prog.progress_percentage, prog.early_stopped, prog.early_stopped_at_epoch)
    assert got == expected


NOW = 10_000.0
ALIVE = lambda pid, started: True  # noqa: E731
GONE = lambda pid, started: False  # noqa: E731
RUNNING_STATUS = {"state": "running", "pid": 123, "host": HOST, "heartbeat_at": NOW - 5, "heartbeat_interval_s": 5,
                  "started_at": NOW - 100}


@pytest.mark.parametrize("status,prog,alive,outputs,expected", [
    (None, S.Progress(), GONE, False, "pending"),
    (None, S.Progress(3, 10), GONE, True, "crashed"),
    (None, S.Progress(10, 10, 100, finished=True), GONE, True, "finished"),
    (None, S.Progress(4, 10, 100, True, 3, True), GONE, True, "early_stopped"),
    (RUNNING_STATUS, S.Progress(3, 10), ALIVE, True, "running"),
    ({**RUNNING_STATUS, "state": "paused"}, S.Progress(3, 10), ALIVE, True, "paused"),
    (RUNNING_STATUS, S.Progress(3, 10), GONE, True, "crashed"),                                # pid gone
    ({**RUNNING_STATUS, "heartbeat_at": NOW - 61}, S.Progress(3, 10), ALIVE, True, "crashed"),  # stale (>= 60 s)
    ({**RUNNING_STATUS, "heartbeat_at": NOW - 59}, S.Progress(3, 10), ALIVE, True, "running"),
    ({**RUNNING_STATUS, "heartbeat_at": NOW - 100, "heartbeat_interval_s": 40}, S.Progress(3, 10), ALIVE, True,
     "running"),                                                                              # 3 x interval
    ({**RUNNING_STATUS, "host": "elsewhere", "heartbeat_at": NOW - 10}, S.Progress(3, 10), GONE, True, "running"),
    ({**RUNNING_STATUS, "host": "elsewhere", "heartbeat_at": NOW - 600}, S.Progress(3, 10), GONE, True, "crashed"),
    ({**RUNNING_STATUS, "heartbeat_at": None}, S.Progress(3, 10), ALIVE, True, "crashed"),
    (RUNNING_STATUS, S.Progress(4, 10, 100, True, 3, True), GONE, True, "early_stopped"),      # final write lost
    ({"state": "finished"}, S.Progress(10, 10, 100, finished=True), GONE, True, "finished"),
    ({"state": "early_stopped"}, S.Progress(4, 10, 100, True, 3, True), GONE, True, "early_stopped"),
    ({"state": "stopped", "stop_reason": "SIGINT received"}, S.Progress(3, 10), GONE, True, "stopped"),
    ({"state": "failed", "error": "ValueError: nan"}, S.Progress(3, 10), GONE, True, "failed"),
    ({"state": "exploded"}, S.Progress(3, 10), GONE, True, "failed"),
])
def test_derive_state(status, prog, alive, outputs, expected):
    state, reason = S.derive_state(status, prog, now=NOW, host=HOST, pid_alive=alive, has_outputs=outputs)
    assert state == expected and reason


def test_pid_reuse_is_not_a_live_run():
    assert S.pid_running(os.getpid(), None)
    assert not S.pid_running(os.getpid(), started_at=0.0)  # this process started long after 1970
    assert not S.pid_running(dead_pid(), None)


# ------------------------------------------------------------------ real folders

def test_the_seeds_case_early_stopped_at_57_of_100(tmp_path):
    """Epoch folders 0..57 of 100, early stopping configured, progress.json missing or corrupt."""
    scores = [1.0 - 0.01 * i for i in range(53)] + [0.48] * 5  # last improvement at epoch 52, patience 5
    for variant in ("missing", "corrupt", "seed-bug"):
        run = synthetic_run(tmp_path, variant, total=100, scores=scores, early_stopping=ES, state=None, progress=False)
        if variant == "corrupt":
            run.progress.write_bytes(b'{"completed_epochs": 58, "total_ep')
        if variant == "seed-bug":  # counted folders: 58 %, contradicted by epoch 58 missing
            run.progress.write_bytes(orjson.dumps({"completed_epochs": 59, "total_epochs": 100,
                                                   "progress_percentage": 59.0, "early_stopped": False}))
        st = S.run_status(run.root, repair=True)
        assert (st.state, st.progress_percentage, st.completed_epochs, st.early_stopped, st.early_stopped_at_epoch) \
            == ("early_stopped", 100.0, 58, True, 57), variant
        repaired = read_json(run.progress)
        assert repaired["early_stopped"] is True and repaired["progress_percentage"] == 100
        assert repaired["early_stopped_at_epoch"] == 57 and repaired["finished"] is True
        assert S.run_status(run.root).progress_source == "progress.json"  # the fast path holds now
    assert plan(tmp_path) == []  # none of them is relaunched


def test_repair_only_with_repair_flag_and_never_for_a_live_run(tmp_path):
    run = synthetic_run(tmp_path, "r", total=10, scores=[1.0, 0.9], state="stopped", progress=False)
    assert S.run_status(run.root).completed_epochs == 2
    assert not run.progress.exists()
    live = synthetic_run(tmp_path, "live", total=10, scores=[1.0, 0.9], state="running", progress=False)
    assert S.run_status(live.root, repair=True).state == "running"
    assert not live.progress.exists()
    S.run_status(run.root, repair=True)
    assert read_json(run.progress)["completed_epochs"] == 2


def test_an_epoch_folder_missing_one_file_ends_the_count(tmp_path):
    run = synthetic_run(tmp_path, "r", total=10, scores=[1.0, 0.9, 0.8, 0.7], state="stopped", progress=False)
    (run.epoch_dir(2) / "optimizer_buffer.json").unlink()
    assert S.progress(run.root).completed_epochs == 2


GARBAGE = [b"", b"{", b'{"state": "runn', b"\x00\x01\xff" * 50, b"[]", b"null", b'"text"', b"1e999",
           b'{"state": 5, "pid": "x", "heartbeat_at": "soon", "host": []}',
           b'{"version": 99, "state": "running", "pid": -1}',
           b'{"completed_epochs": -3, "total_epochs": 10, "progress_percentage": -30, "early_stopped": false}',
           b'{"completed_epochs": 30, "total_epochs": 10, "progress_percentage": 300, "early_stopped": false}']


@pytest.mark.parametrize("target", ["training_status.json", "progress.json", "resolved_config.json",
                                    "checkpoints/current.meta.json", "epochs/epoch_0001/validation_scores.json"])
@pytest.mark.parametrize("content", GARBAGE)
def test_corrupt_files_give_a_result_and_never_raise(tmp_path, target, content):
    run = synthetic_run(tmp_path, "r", total=10, scores=[1.0, 0.9, 0.8], state="stopped", progress=True)
    path = run.root / target
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    st = S.run_status(run.root, repair=True)
    assert st.state in S.STATES
    assert 0 <= st.progress_percentage <= 100
    assert st.total_epochs is None or st.completed_epochs <= st.total_epochs
    if target in ("training_status.json", "progress.json"):  # read on every scan: the problem is named
        assert any(w.startswith(target) for w in st.warnings), st.warnings


def test_future_version_warns_and_reads_known_fields(tmp_path):
    run = synthetic_run(tmp_path, "r", total=10, scores=[1.0], state="stopped")
    body = read_json(run.status)
    run.status.write_bytes(orjson.dumps({**body, "version": 7, "new_field": {"x": 1}}))
    st = S.run_status(run.root)
    assert st.state == "stopped"
    assert any("training_status.json: format version 7 is newer" in w for w in st.warnings)


def test_pending_run_reads_its_yaml_config_but_never_executes_a_py_one(tmp_path):
    (tmp_path / "yaml-run").mkdir()
    (tmp_path / "yaml-run" / "config.yaml").write_text("task: burgers\nepochs: 7\n")
    (tmp_path / "py-run").mkdir()
    marker = tmp_path / "executed"
    (tmp_path / "py-run" / "config.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nconfig = {{}}\n")
    runs = {r.name: r for r in S.scan(tmp_path)}
    assert runs["yaml-run"].state == "pending" and runs["yaml-run"].total_epochs == 7
    assert runs["py-run"].state == "pending" and runs["py-run"].total_epochs is None
    assert not marker.exists()


def test_find_runs_lists_direct_children_with_markers_and_scan_lists_exactly_those(tmp_path):
    """Only folders directly under ROOT holding a run marker are runs (not a file, a hidden folder, a
    link, a folder of notes, a Hugging Face model's config.json). scan() reads each folder once (a
    readable status file is its marker, any other folder is asked for one): the same runs as
    find_runs, whatever the folder holds."""
    synthetic_run(tmp_path, "a-run", scores=[1.0], state="stopped")
    (tmp_path / "b-notes").mkdir()
    (tmp_path / "b-notes" / "notes.md").write_text("nothing\n")
    (tmp_path / "c-progress-only").mkdir()
    (tmp_path / "c-progress-only" / "progress.json").write_text("{}")
    (tmp_path / "d-bad-status").mkdir()
    (tmp_path / "d-bad-status" / "training_status.json").write_text("[1, 2")
    (tmp_path / "e-status-folder").mkdir()
    (tmp_path / "e-status-folder" / "training_status.json").mkdir()
    (tmp_path / "f-config").mkdir()
    (tmp_path / "f-config" / "config.yaml").write_text("epochs: 2\n")
    (tmp_path / "g-model-config").mkdir()  # an HF output folder's config.json is the model's
    (tmp_path / "g-model-config" / "config.json").write_text('{"model_type": "gpt2"}')
    (tmp_path / "g-model-config" / "trainer_state.json").write_text('{"global_step": 1, "log_history": []}')
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "progress.json").write_text("{}")
    os.symlink(tmp_path / "a-run", tmp_path / "h-link")
    (tmp_path / "file.json").write_text("{}")
    expected = S.find_runs(tmp_path)
    assert [os.path.basename(p) for p in expected] == ["a-run", "c-progress-only", "d-bad-status",
                                                        "e-status-folder", "f-config"]
    assert [r.path for r in S.scan(tmp_path, foreign=False)] == expected
    assert {r.name: r.source for r in S.scan(tmp_path)}["g-model-config"] == "hf"


# ------------------------------------------------------------------ every state from real runs

@pytest.mark.slow
def test_every_state_from_real_runs(tmp_path, env):
    root = tmp_path / "experiments"
    base = write_config(tmp_path / "base.yaml")
    # pending: a config, never run
    (root / "pending").mkdir(parents=True)
    (root / "pending" / "config.yaml").write_text(base.read_text())
    # finished
    assert trainkit("train", base, "--run-dir", root / "finished", cwd=tmp_path, env=env).returncode == 0
    # early_stopped
    es = write_config(tmp_path / "es.yaml", epochs=10, early_stopping={"patience": 1, "min_delta": 1e9})
    assert trainkit("train", es, "--run-dir", root / "early", cwd=tmp_path, env=env).returncode == 0
    # failed: the model raises
    (tmp_path / "badtask.py").write_text(
        "from trainkit.tasks.burgers import BurgersTask\n"
        "class Bad(BurgersTask):\n"
        "    def loss(self, model, batch):\n"
        "        raise ValueError('loss exploded')\n"
        "def make():\n"
        "    return Bad()\n")
    bad = write_config(tmp_path / "bad.yaml", task="badtask:make")
    res = trainkit("train", bad, "--run-dir", root / "failed", cwd=tmp_path, env=env)
    assert res.returncode == 1
    # running, paused, stopped, crashed: long runs
    long = write_config(tmp_path / "long.yaml", epochs=500, heartbeat_s=0.2)
    procs = {name: start_trainkit("train", long, "--run-dir", root / name, cwd=tmp_path, env=env)
             for name in ("running", "paused", "stopped", "crashed")}
    try:
        for name in procs:
            # training_status.json, not progress.json: a run writes progress.json when it claims its
            # folder, before its first status (a kill between the two read crashed for another reason)
            wait_for(lambda n=name: (root / n / "training_status.json").exists(), timeout=120,
                     what=f"{name} training")
        from trainkit.runfolder.control import request

        request(root / "paused", "pause")
        procs["stopped"].send_signal(signal.SIGTERM)
        procs["crashed"].send_signal(signal.SIGKILL)
        wait_for(lambda: read_json(root / "paused" / "training_status.json")["state"] == "paused", what="pause")
        for name in ("stopped", "crashed"):
            procs[name].wait(timeout=60)
        runs = {r.name: r for r in S.scan(root)}
        assert {n: r.state for n, r in runs.items()} == {n: n if n != "early" else "early_stopped" for n in runs}
        assert runs["early"].progress_percentage == 100 and runs["finished"].progress_percentage == 100
        assert "loss exploded" in runs["failed"].reason
        assert f"pid {procs['crashed'].pid} is gone" in runs["crashed"].reason

        out = trainkit("status", root, "--json", cwd=tmp_path, env=env)
        assert out.returncode == 0  # whatever the states
        listed = {r["name"]: r for r in orjson.loads(out.stdout)}
        for key in ("name", "state", "completed_epochs", "total_epochs", "progress_percentage", "early_stopped",
                    "early_stopped_at_epoch", "reason", "warnings"):
            assert all(key in r for r in listed.values()), key
        assert listed["crashed"]["state"] == "crashed" and listed["early"]["early_stopped"] is True

        table = trainkit("status", root, cwd=tmp_path, env=env)
        assert table.returncode == 0
        for symbol_state in ("✓ finished", "✓ early_stopped", "✗ failed", "! crashed", "▶ running", "‖ paused",
                             "■ stopped", "○ pending"):
            assert symbol_state in table.stdout
        assert "8 runs: 1 pending, 1 running, 1 paused, 1 finished, 1 early_stopped, 1 stopped, 1 failed, 1 crashed" \
            in table.stdout
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()


def test_status_command_bad_input_and_empty_root(tmp_path, env):
    res = trainkit("status", tmp_path / "nope", cwd=tmp_path, env=env)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no such folder" in res.stderr
    res = trainkit("status", tmp_path, cwd=tmp_path, env=env)
    assert res.returncode == 0 and "no runs under" in res.stdout
    res = trainkit("status", tmp_path, "--json", cwd=tmp_path, env=env)
    assert res.returncode == 0 and orjson.loads(res.stdout) == []


def test_status_never_imports_torch(tmp_path):
    synthetic_run(tmp_path, "a", scores=[1.0], state="stopped")
    code = ("import sys; from trainkit.cli import main; main(['status', sys.argv[1], '--json']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_watch_redraws_until_ctrl_c(tmp_path, env):
    synthetic_run(tmp_path, "a", scores=[1.0], state="stopped")
    proc = subprocess.Popen([sys.executable, "-m", "trainkit", "status", str(tmp_path), "--watch", "--interval", "0.2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    try:
        read_until(proc.stdout, lambda seen: seen.count(b"1 run: 1 stopped") >= 2, timeout=60,
                   what="two redraws")
    finally:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"Traceback" not in err


def test_json_output_is_every_field_of_run_status(tmp_path):
    synthetic_run(tmp_path, "a", scores=[1.0, 0.5], state="running")
    runs = S.scan(tmp_path)
    assert orjson.loads(orjson.dumps(runs)) == [dataclasses.asdict(r) for r in runs]


def test_repair_never_writes_into_a_run_whose_lock_a_live_process_holds(tmp_path):
    """Unreadable status, progress.json gone: the lock (held by a live process) is evidence of
    life, so the run reads as starting and --repair leaves it alone."""
    paths = synthetic_run(tmp_path, "locked", scores=[1.0, 0.9], state="running")
    paths.status.write_bytes(b"{ torn")
    paths.progress.unlink()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        paths.lock.write_bytes(orjson.dumps({"pid": holder.pid, "host": socket.gethostname(), "purpose": "train"}))
        st = S.run_status(paths.root, repair=True)
        assert st.state == "running" and f"locked by pid {holder.pid}" in st.reason
        assert not paths.progress.exists()
        assert [a.name for a in plan(tmp_path)] == []  # nor does the launcher touch it
    finally:
        holder.kill()
        holder.wait()
    paths.lock.unlink()  # the same run without the lock is repaired
    st = S.run_status(paths.root, repair=True)
    assert st.state == "crashed" and paths.progress.exists()


def test_a_pending_config_that_is_unusable_is_named(tmp_path):
    run = tmp_path / "p"
    run.mkdir()
    (run / "config.yaml").write_text("task: burgers\nepochs: .nan\n")
    st = S.run_status(run)
    assert st.state == "pending" and st.total_epochs == 30  # burgers' own default epochs
    assert any("epochs is nan" in w for w in st.warnings), st.warnings
    (run / "config.yaml").unlink()
    (run / "config.yaml").mkdir()  # still a run folder (it has a config.yaml), but not one to read
    assert S.find_runs(tmp_path) == [str(run)]
    st = S.run_status(run)
    assert any(w.startswith("config.yaml: not a regular file") for w in st.warnings), st.warnings
