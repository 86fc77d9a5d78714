"""`trainkit train` end to end: real subprocesses, real files, real torch training."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import orjson
import pytest
import torch
from helpers import count_lines, read_json, records, start_trainkit, trainkit, wait_for, write_config

pytestmark = pytest.mark.slow


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_each_once(run: Path, epochs: int) -> list[dict]:
    steps = records(run, "step")
    assert [r["step"] for r in steps] == sorted({r["step"] for r in steps}), "a step appears twice or out of order"
    assert [r["epoch"] for r in records(run, "epoch")] == list(range(epochs))
    return steps


def test_resume_runs_to_the_total_target_each_epoch_once(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml")
    run = tmp_path / "run"
    first = trainkit("train", cfg, "--run-dir", run, "--epochs", 4, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert read_json(run / "checkpoints/current.meta.json")["last_epoch"] == 3

    before_second = len(records(run, "epoch"))
    second = trainkit("train", cfg, "--run-dir", run, "--epochs", 10, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    ran = [r["epoch"] for r in records(run, "epoch")[before_second:]]
    assert ran == [4, 5, 6, 7, 8, 9]  # epochs 4..9 ran once each, nothing before 4 again
    assert read_json(run / "checkpoints/current.meta.json")["last_epoch"] == 9
    assert_each_once(run, 10)
    assert sorted(p.name for p in (run / "epochs").iterdir()) == [f"epoch_{i:04d}" for i in range(10)]
    progress = read_json(run / "progress.json")
    assert (progress["completed_epochs"], progress["total_epochs"], progress["progress_percentage"],
            progress["finished"]) == (10, 10, 100.0, True)
    resolved = read_json(run / "resolved_config.json")
    assert resolved["epochs"] == 10
    assert resolved["_meta"]["history"][-1]["changes"] == [{"field": "epochs", "old": 4, "new": 10}]

    before = snapshot(run)
    again = trainkit("train", cfg, "--run-dir", run, "--epochs", 10, cwd=tmp_path, env=env)
    assert again.returncode == 0
    assert "Requested epochs already completed (last=9)" in again.stdout + again.stderr
    assert snapshot(run) == before  # not a single file touched
    fewer = trainkit("train", cfg, "--run-dir", run, "--epochs", 6, cwd=tmp_path, env=env)
    assert fewer.returncode == 0 and "already completed (last=9)" in fewer.stdout
    assert snapshot(run) == before


BIG = dict(epochs=3, batch_size=32, checkpoint={"every_steps": 7}, model={"width": 512, "depth": 3, "dropout": 0.1},
           data={"n_train": 2048, "n_val": 64, "nx": 32})


def test_kill9_and_signals_at_any_moment_resume_bit_identical(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml", **BIG)
    ref, run = tmp_path / "ref", tmp_path / "run"
    done = trainkit("train", cfg, "--run-dir", ref, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr

    metrics = run / "metrics.jsonl"
    ckpts = run / "checkpoints"

    def kill_when(predicate, sig=signal.SIGKILL, what=""):
        proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
        try:
            wait_for(predicate, timeout=120, interval=0.0005, what=what)
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        return proc.returncode, out

    # 1. kill -9 mid-epoch (between two checkpoints)
    rc, _ = kill_when(lambda: count_lines(metrics) >= 30, what="30 step records")
    assert rc == -signal.SIGKILL
    # 2. kill -9 while a checkpoint is being written (its temp file exists)
    rc, _ = kill_when(lambda: count_lines(metrics) >= 75 and any(p.name.endswith(".tmp") for p in ckpts.iterdir()),
                      what="a checkpoint temp file")
    assert rc == -signal.SIGKILL
    torch.load(ckpts / "current.pt", weights_only=True)  # the previous checkpoint still loads
    # 3. SIGTERM: finish the step, checkpoint, state stopped, exit 0
    rc, out = kill_when(lambda: count_lines(metrics) >= 100, signal.SIGTERM, "100 step records")
    assert rc == 0, out
    status = read_json(run / "training_status.json")
    assert status["state"] == "stopped"
    stopped_at = read_json(ckpts / "current.meta.json")["global_step"]
    assert stopped_at == count_lines(metrics)  # the checkpoint holds every step that was logged
    # 4. kill -9 right after an epoch record
    rc, _ = kill_when(lambda: count_lines(metrics, b'"kind":"epoch"') >= 2, what="2 epoch records")
    assert rc == -signal.SIGKILL
    # 5. SIGINT (Ctrl-C) inside the last epoch
    rc, out = kill_when(lambda: count_lines(metrics) >= 150, signal.SIGINT, "150 step records")
    assert rc == 0, out

    final = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    assert final.returncode == 0, final.stderr
    ref_steps = assert_each_once(ref, 3)
    run_steps = assert_each_once(run, 3)
    assert [(r["step"], r["loss"], r["lr"]) for r in run_steps] == [(r["step"], r["loss"], r["lr"]) for r in ref_steps]
    strip = lambda recs: [{k: v for k, v in r.items() if k not in ("t", "duration_s")} for r in recs]  # noqa: E731
    assert strip(records(run, "epoch")) == strip(records(ref, "epoch"))
    a, b = model_weights(ref / "checkpoints/current.pt"), model_weights(run / "checkpoints/current.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    status = read_json(run / "training_status.json")
    assert (status["state"], status["current_epoch"], status["eta_s"]) == ("finished", 2, 0)


def test_second_ctrl_c_exits_at_once_and_the_checkpoint_stands(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml", **{**BIG, "epochs": 50, "model": {"width": 1024, "depth": 4}})
    run = tmp_path / "run"
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    wait_for(lambda: (run / "checkpoints/current.pt").exists() and count_lines(run / "metrics.jsonl") > 20,
             timeout=120, what="a checkpoint")
    proc.send_signal(signal.SIGINT)
    lines = []
    for line in proc.stdout:  # the first Ctrl-C is acknowledged; the graceful stop is under way
        lines.append(line)
        if "SIGINT received" in line:
            break
    proc.send_signal(signal.SIGINT)  # (two signals sent at once would coalesce into one)
    out = "".join(lines) + proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, out
    assert "exiting at once" in out
    torch.load(run / "checkpoints/current.pt", weights_only=True)
    assert read_json(run / "training_status.json")["state"] == "stopped"
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_early_stopping_counts_as_complete(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml", epochs=10,
                       early_stopping={"metric": "val_loss", "patience": 2, "min_delta": 1.0e9})
    run = tmp_path / "run"
    res = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    progress = read_json(run / "progress.json")
    assert progress["early_stopped"] is True
    assert progress["early_stopped_at_epoch"] == 2
    assert progress["completed_epochs"] == 3
    assert progress["progress_percentage"] == 100
    assert progress["finished"] is True
    status = read_json(run / "training_status.json")
    assert status["state"] == "early_stopped"
    assert status["current_epoch"] == 2 and status["eta_s"] == 0  # the last trained epoch; nothing left
    assert len(list((run / "epochs").iterdir())) == 3

    before = snapshot(run)
    again = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    assert again.returncode == 0 and "early-stopped at epoch 2" in again.stdout
    assert snapshot(run) == before


def test_status_files_always_parse_while_training(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml",
                       **{**BIG, "epochs": 2, "heartbeat_s": 0.05, "checkpoint": {"every_steps": 3}})
    run = tmp_path / "run"
    files = [run / "training_status.json", run / "progress.json", run / "checkpoints/current.meta.json"]
    stop = threading.Event()
    stats = {"reads": 0, "invalid": [], "heartbeats": set()}

    def reader():
        while not stop.is_set():
            for f in files:
                try:
                    data = f.read_bytes()
                except FileNotFoundError:
                    continue
                try:
                    obj = orjson.loads(data)
                    stats["reads"] += 1
                    if f.name == "training_status.json":
                        stats["heartbeats"].add(obj["heartbeat_at"])
                except orjson.JSONDecodeError as e:
                    stats["invalid"].append((f.name, e))

    t = threading.Thread(target=reader)
    t.start()
    try:
        res = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    finally:
        stop.set()
        t.join()
    assert res.returncode == 0, res.stderr
    assert stats["invalid"] == []
    assert stats["reads"] > 500 and len(stats["heartbeats"]) > 5
    status = read_json(run / "training_status.json")
    for key in ("state", "pid", "host", "started_at", "heartbeat_at", "current_epoch", "total_epochs", "step",
                "steps_per_epoch", "loss", "lr", "throughput", "eta_s", "world_size"):
        assert key in status, key
    assert status["pid"] > 0 and status["total_epochs"] == 2 and status["step"] == 128
    sample = orjson.loads((run / "system.jsonl").read_bytes().splitlines()[0])
    assert sample["rss_bytes"] > 0 and "cpu_percent" in sample


def test_device_line_logged_exactly_once(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml", epochs=5)
    run = tmp_path / "run"
    assert trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env).returncode == 0
    log = (run / "train.log").read_text()
    assert log.count("device: cpu") == 1
    assert log.count("model on cpu") == 1


def test_locked_fields_refused_on_resume_other_changes_recorded(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml", epochs=1)
    run = tmp_path / "run"
    assert trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env).returncode == 0
    before = snapshot(run)
    res = trainkit("train", cfg, "--run-dir", run, "--epochs", 2, "--set", "model.width=128", cwd=tmp_path, env=env)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1
    assert "model.width: 64 (run) vs 128 (requested)" in res.stderr
    assert snapshot(run) == before
    ok = trainkit("train", cfg, "--run-dir", run, "--epochs", 2, "--set", "lr=5e-4", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    changes = read_json(run / "resolved_config.json")["_meta"]["history"][-1]["changes"]
    assert {c["field"] for c in changes} == {"epochs", "lr"}
    assert "config change on resume: lr: 0.002 -> 0.0005" in (run / "train.log").read_text()


def test_fresh_moves_old_outputs_aside_and_never_deletes(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml", epochs=2)
    run = tmp_path / "run"
    assert trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env).returncode == 0
    old_metrics = (run / "metrics.jsonl").read_bytes()
    res = trainkit("train", cfg, "--run-dir", run, "--fresh", "--epochs", 1, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    aside = list((run / "superseded").iterdir())
    assert len(aside) == 1
    assert (aside[0] / "metrics.jsonl").read_bytes() == old_metrics
    assert (aside[0] / "checkpoints/current.pt").exists()
    assert [r["epoch"] for r in records(run, "epoch")] == [0]
    assert (run / "config.yaml").exists()  # inputs stay in place


def test_default_run_folder_and_resume_from_the_folder_itself(tmp_path, env):
    cfg = write_config(tmp_path / "my-exp.yaml", epochs=1)
    res = trainkit("train", cfg, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    (run,) = list((tmp_path / "experiments").iterdir())
    assert run.name.endswith("-my-exp") and run.name[:4].isdigit()
    assert (run / "config.yaml").read_bytes() == cfg.read_bytes()
    # re-run through the run folder (reads resolved_config.json, executes nothing) and its config
    res = trainkit("train", run, "--epochs", 2, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    res = trainkit("train", run / "config.yaml", "--epochs", 3, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert_each_once(run, 3)
    assert len(list((tmp_path / "experiments").iterdir())) == 1


def test_control_requests_pause_resume_checkpoint_stop(tmp_path, env):
    from trainkit.runfolder.control import request

    cfg = write_config(tmp_path / "cfg.yaml", **{**BIG, "epochs": 50, "heartbeat_s": 0.2})
    run = tmp_path / "run"
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    try:
        status = lambda: read_json(run / "training_status.json")  # noqa: E731
        wait_for(lambda: count_lines(run / "metrics.jsonl") > 5, timeout=120, what="training")
        request(run, "pause", request_id="p1")
        wait_for(lambda: status()["state"] == "paused", what="paused")
        assert not (run / "control.json").exists()  # consumed
        assert status()["control"]["id"] == "p1"
        n = count_lines(run / "metrics.jsonl")
        time.sleep(1.0)
        assert count_lines(run / "metrics.jsonl") == n  # no steps while paused
        assert read_json(run / "checkpoints/current.meta.json")["global_step"] == n
        hb = status()["heartbeat_at"]
        wait_for(lambda: status()["heartbeat_at"] > hb, what="heartbeat while paused")
        request(run, "resume", request_id="r1")
        wait_for(lambda: status()["state"] == "running" and count_lines(run / "metrics.jsonl") > n + 5,
                 what="running again")
        request(run, "checkpoint", request_id="c1")
        wait_for(lambda: status()["control"] and status()["control"]["id"] == "c1", what="checkpoint ack")
        request(run, "stop", request_id="s1")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert status()["state"] == "stopped"
    log = (run / "train.log").read_text()
    assert "paused on request" in log and "resumed on request" in log and "checkpoint written on request" in log


def test_user_task_by_import_string(tmp_path, env):
    (tmp_path / "mytask.py").write_text(
        "import torch\n"
        "from trainkit.tasks import Task, TaskData\n"
        "class Linear(Task):\n"
        "    def build_data(self, data, cache_dir):\n"
        "        g = torch.Generator().manual_seed(data.get('seed', 0))\n"
        "        x = torch.randn(128, 4, generator=g)\n"
        "        y = x @ torch.tensor([[1.0], [2.0], [-1.0], [0.5]])\n"
        "        return TaskData(train=(x[:96], y[:96]), val=(x[96:], y[96:]))\n"
        "    def build_model(self, model, data):\n"
        "        return torch.nn.Linear(4, 1)\n"
        "def make():\n"
        "    return Linear()\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: mytask:make\nepochs: 3\nlr: 0.05\ndata: {seed: 3}\n")
    res = trainkit("train", cfg, "--run-dir", tmp_path / "run", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    epochs = records(tmp_path / "run", "epoch")
    assert len(epochs) == 3 and epochs[-1]["val_loss"] < epochs[0]["val_loss"]


def test_python_config_runs_and_python_m_matches_console_script(tmp_path, env):
    (tmp_path / "cfg.py").write_text("config = {'task': 'burgers', 'epochs': 1, 'model': {'width': 16, 'depth': 1},"
                                     " 'data': {'n_train': 64, 'n_val': 16, 'nx': 16}}\n")
    res = trainkit("train", tmp_path / "cfg.py", "--run-dir", tmp_path / "run", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert read_json(tmp_path / "run/resolved_config.json")["model"]["width"] == 16
    import shutil
    import subprocess
    import sys

    script = shutil.which("trainkit", path=os.path.dirname(sys.executable))
    assert script, "console script not installed"
    out = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout
    assert trainkit("--help", cwd=tmp_path, env=env).stdout == out.stdout


def test_status_replays_early_stopping_on_any_key_of_the_epoch_record(tmp_path, env):
    """Early stopping on train_loss (not a validation score): with progress.json gone, status
    recomputes from the epoch folders the same stop epoch the engine used, and --repair writes it."""
    cfg = write_config(tmp_path / "cfg.yaml", epochs=12, lr=0.05,
                       early_stopping={"metric": "train_loss", "patience": 2, "min_delta": 0.02})
    run = tmp_path / "runs" / "r"
    assert trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env).returncode == 0
    engine = read_json(run / "progress.json")
    assert engine["early_stopped"] is True and engine["completed_epochs"] < 12  # the rule did trigger
    (run / "progress.json").unlink()
    out = trainkit("status", tmp_path / "runs", "--json", "--repair", cwd=tmp_path, env=env)
    row = orjson.loads(out.stdout)[0]
    assert (row["state"], row["completed_epochs"], row["early_stopped_at_epoch"]) == \
        ("early_stopped", engine["completed_epochs"], engine["early_stopped_at_epoch"])
    repaired = read_json(run / "progress.json")
    assert {k: repaired[k] for k in ("completed_epochs", "early_stopped_at_epoch", "progress_percentage")} == \
        {k: engine[k] for k in ("completed_epochs", "early_stopped_at_epoch", "progress_percentage")}


def test_progress_display_ends_on_the_last_epoch_complete(tmp_path, env):
    """On a terminal the bar ends at 'epoch 3/3 ... 16/16', never 'epoch 4/3 ... 0/16'."""
    import pty
    import re
    import subprocess
    import sys

    cfg = write_config(tmp_path / "cfg.yaml", epochs=3)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "trainkit", "train", str(cfg), "--run-dir", str(tmp_path / "r")],
                            cwd=tmp_path, env={**env, "COLUMNS": "160", "TERM": "xterm"}, stdin=follower,
                            stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))
    shown = re.findall(r"epoch (\d+)/3\D+?(\d+)/16", text)
    assert shown and shown[-1] == ("3", "16"), shown[-5:]
    assert all(int(e) <= 3 for e, _ in shown) and ("4", "0") not in shown


def test_files_keep_the_umask_mode(tmp_path, env):
    """Under umask 022 every file of a run folder is 0644 and every folder 0755 (atomic writes
    included, and metrics.jsonl after a resume): a colleague's trainmon can read the run."""
    import stat
    import subprocess
    import sys

    cfg = write_config(tmp_path / "cfg.yaml", epochs=2)
    run = tmp_path / "run"

    def umask_022():
        os.umask(0o022)

    for epochs in (1, 2):  # train, then resume (rewrites resolved_config.json, trims metrics.jsonl)
        r = subprocess.run([sys.executable, "-m", "trainkit", "train", str(cfg), "--run-dir", str(run), "--epochs",
                            str(epochs)], cwd=tmp_path, env=env, capture_output=True, text=True, preexec_fn=umask_022,
                           timeout=300)
        assert r.returncode == 0, r.stderr
    q = tmp_path / "qs.jsonl"
    q.write_text("".join(orjson.dumps({"id": i, "question": f"{i}+1", "answer": str(i + 1)}).decode() + "\n"
                         for i in range(3)))
    from helpers import eval_env

    r = subprocess.run([sys.executable, "-m", "trainkit", "eval", str(run), "--model", "eval_models:arith",
                        "--questions", str(q)], cwd=tmp_path, env=eval_env(env), capture_output=True, text=True,
                       preexec_fn=umask_022, timeout=300)
    assert r.returncode == 0, r.stderr
    wrong = {str(p.relative_to(run)): oct(stat.S_IMODE(p.stat().st_mode)) for p in [run, *run.rglob("*")]
             if stat.S_IMODE(p.stat().st_mode) != (0o755 if p.is_dir() else 0o644)}
    assert wrong == {}
    assert (run / "checkpoints" / "current.pt").exists() and (run / "evals" / "qs" / "conversations").is_dir()


def test_resume_cuts_the_log_in_place_and_a_tail_reader_ends_with_each_step_once(tmp_path, env):
    """A crash leaves step records newer than the checkpoint; the resume cuts them off the end of
    metrics.jsonl (same inode) and a reader that had already read them, and keeps reading through
    the resume, ends with every step exactly once."""
    from trainkit.runfolder.files import JsonlTail

    cfg = write_config(tmp_path / "cfg.yaml", epochs=3)
    run = tmp_path / "run"
    assert trainkit("train", cfg, "--run-dir", run, "--epochs", 1, cwd=tmp_path, env=env).returncode == 0
    metrics = run / "metrics.jsonl"
    done = read_json(run / "checkpoints/current.meta.json")["global_step"]
    with open(metrics, "ab") as f:  # what a kill -9 after the checkpoint leaves: steps it never saved
        for step in range(done, done + 5):
            f.write(orjson.dumps({"kind": "step", "epoch": 1, "step": step, "loss": 9.0, "lr": 1e-3, "t": 1.0}) + b"\n")
        f.write(b'{"kind": "step", "epo')  # and a torn line
    inode = metrics.stat().st_ino
    tail = JsonlTail(metrics)
    seen: list[dict] = []

    def follow():
        got = tail.read()
        if tail.reset:
            seen.clear()
        seen.extend(got)

    follow()
    assert [r["step"] for r in seen if r.get("kind") == "step"][-1] == done + 4
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    deadline = time.monotonic() + 300
    while proc.poll() is None:  # read along while the resume cuts and appends
        assert time.monotonic() < deadline, "the resume did not finish"
        follow()
        time.sleep(0.005)
    assert proc.returncode == 0, proc.stdout.read()
    follow()
    steps = [r["step"] for r in seen if r.get("kind") == "step"]
    total = read_json(run / "checkpoints/current.meta.json")["global_step"]
    assert steps == list(range(total))  # each step once, in order
    assert [r["epoch"] for r in seen if r.get("kind") == "epoch"] == [0, 1, 2]
    assert metrics.stat().st_ino == inode
    assert all(r["loss"] != 9.0 for r in seen if r.get("kind") == "step")
