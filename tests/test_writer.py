"""The one writer of a training session's folder (trainkit.runfolder.writer): the lock before anything is read,
a folder that vanished is never created again, one ``_meta`` schema for every trainer, one rule of
what a resume cuts. Real `trainkit train` subprocesses, real files."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ROOT, read_json, start_trainkit, trainkit, wait_for, write_config

from trainkit.runfolder.writer import EPOCH, EVAL, LOG, STEP, FolderGone, RunWriter, after_checkpoint


def hold_lock(run) -> subprocess.Popen:
    """Another live process holding the run's lock (as `experiments archive` does while it moves it)."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from trainkit.runfolder.lock import RunLock; "
                               "RunLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(120)",
                               str(run / ".trainkit.lock")], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.slow
def test_train_takes_the_runs_lock_before_it_reads_the_run(tmp_path, env):
    """`trainkit train RUN` while another process holds RUN (an archive moving it): refused with
    one line about the lock, before the run's files are read (its checkpoint is not even looked
    at: a damaged one would have been the complaint otherwise), and nothing is written."""
    cfg = write_config(tmp_path / "cfg.yaml", epochs=1)
    run = tmp_path / "run"
    assert trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env).returncode == 0
    (run / "checkpoints" / "current.pt").write_bytes(b"not a checkpoint")
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    holder = hold_lock(run)
    try:
        r = trainkit("train", run, "--epochs", 2, cwd=tmp_path, env=env)
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 2, r.stderr
    assert f"locked by pid {holder.pid}" in r.stderr and "cannot resume" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".trainkit.lock"}
    assert after == before  # the holder's lock aside, nothing touched


@pytest.mark.slow
def test_a_trainer_whose_folder_vanished_stops_with_one_line(tmp_path, env):
    """The run folder is moved away while it trains (by hand: nothing of trainkit's moves a locked
    run): the trainer stops with one line and never creates the folder again where it was."""
    cfg = write_config(tmp_path / "cfg.yaml", epochs=200, data={"n_train": 4096, "n_val": 64, "nx": 32})
    run, moved = tmp_path / "run", tmp_path / "run-moved"
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    try:
        wait_for(lambda: (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size > 0,
                 timeout=120, what="training to start")
        os.rename(run, moved)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out
    said = [line for line in out.splitlines() if "vanished" in line]
    assert len(said) == 1 and str(run) in said[0], out
    assert "Traceback" not in out
    assert not run.exists()


def test_claiming_a_run_folder_that_is_gone_never_creates_it(tmp_path):
    gone = tmp_path / "experiments" / "2026-01-01-gone"
    with pytest.raises(FolderGone, match="no such run folder"):
        RunWriter(gone).claim(new=False)
    assert not gone.exists() and not gone.parent.exists()
    writer = RunWriter(gone).claim(new=True)  # a new run: created, then locked
    assert (gone / ".trainkit.lock").is_file()
    writer.close()
    assert not (gone / ".trainkit.lock").exists()


@pytest.mark.slow
def test_every_trainer_writes_one_meta_schema(tmp_path, env):
    """``resolved_config.json``'s ``_meta`` has the same keys whoever trained: trainkit's engine,
    a callback of another trainer, a synthetic run."""
    from trainkit.integrations.common import ForeignRun
    from trainkit.testing import synthetic_run

    cfg = write_config(tmp_path / "cfg.yaml", epochs=1)
    assert trainkit("train", cfg, "--run-dir", tmp_path / "engine", cwd=tmp_path, env=env).returncode == 0
    foreign = ForeignRun(tmp_path / "hf", trainer="hf", heartbeat_s=0.5)
    foreign.begin({"trainer_args": {}}, total_epochs=1, steps_per_epoch=1, total_steps=1, batch_size=1, global_step=0,
                  epochs_done=0)
    foreign.end("finished")
    synthetic_run(tmp_path, "synthetic", total=2, scores=[1.0])
    metas = {name: read_json(tmp_path / name / "resolved_config.json")["_meta"]
             for name in ("engine", "hf", "synthetic")}
    common = {"version", "trainer", "source", "launch", "overrides", "epochs_arg", "written_at", "history"}
    assert set(metas["hf"]) == common
    assert set(metas["synthetic"]) == common
    assert set(metas["engine"]) - {"task_defaults"} == common
    assert [m["trainer"] for m in metas.values()] == ["trainkit", "hf", "trainkit"]


@pytest.mark.parametrize(("record", "cut"), [
    ({"kind": STEP, "step": 9, "epoch": 2}, False),  # steps 0..9 are in the checkpoint of 10 steps
    ({"kind": STEP, "step": 10, "epoch": 2}, True),
    ({"kind": EVAL, "step": 9, "epoch": 2}, False),  # the evaluation after the 10th step, before the checkpoint
    ({"kind": EVAL, "step": 10, "epoch": 2}, True),
    ({"kind": LOG, "step": 12, "epoch": 3}, True),
    ({"step": 11, "prompt": "2+2"}, True),  # the monitor's records (samples, alerts, layers) by their step
    ({"kind": EPOCH, "epoch": 1, "global_step": 10}, False),  # 2 epochs were complete at the checkpoint
    ({"kind": EPOCH, "epoch": 2, "global_step": 10}, True),  # written after the checkpoint, before a crash
    ({"kind": EPOCH, "epoch": "2"}, False),  # not a record of ours: kept
])
def test_one_rule_of_what_a_resume_cuts(record, cut):
    assert after_checkpoint(10, 2)(record) is cut
