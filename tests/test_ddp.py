"""DDP under torchrun, two CPU processes with gloo (`torchrun --standalone`): the shards, the
parameters across ranks, the match with one process, resume after kill -9 of the whole job, another
world size, and a rank that dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import psutil
import pytest
import torch
from helpers import count_lines, eval_env, read_json, read_jsonl, records, trainkit, wait_for, write_config

from trainkit.runfolder import control
from trainkit.runfolder.lock import pid_alive
from trainkit.train.engine import epoch_permutation

pytestmark = pytest.mark.slow

DDP = dict(task="ddp_tasks:recording_task", model={}, data={}, epochs=2, batch_size=8, lr=0.01)


def torchrun(n: int, *args, cwd: Path, env: dict, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
           "-m", "trainkit", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **popen)


def start_torchrun(n: int, *args, cwd: Path, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
           "-m", "trainkit", *map(str, args)]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def kill_job(job: subprocess.Popen) -> None:
    """kill -9 of torchrun and every rank, waiting until none is left (the next run takes the lock)."""
    procs = [job.pid, *(c.pid for c in psutil.Process(job.pid).children(recursive=True))] \
        if psutil.pid_exists(job.pid) else [job.pid]
    for pid in procs:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    job.wait()
    wait_for(lambda: not any(pid_alive(p) for p in procs), timeout=60, what="the job's processes to be gone")


@pytest.fixture
def denv(env, tmp_path) -> dict:
    rec = tmp_path / "records"
    rec.mkdir()
    return eval_env(env, OMP_NUM_THREADS="1", DDP_RECORD_DIR=str(rec))


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoints/current.pt", weights_only=True)["model"]


def test_two_processes_split_each_batch_into_disjoint_shards_and_log_each_step_once(tmp_path, denv):
    cfg = write_config(tmp_path / "cfg.yaml", **DDP)
    run = tmp_path / "run"
    r = torchrun(2, "train", cfg, "--run-dir", run, cwd=tmp_path, env=denv)
    assert r.returncode == 0, r.stderr[-3000:]
    steps = [s["step"] for s in records(run, "step")]
    assert steps == list(range(24))  # 2 epochs x 96/8 steps, each once (rank 0 writes)
    assert [e["epoch"] for e in records(run, "epoch")] == [0, 1]
    status = read_json(run / "training_status.json")
    assert (status["state"], status["world_size"]) == ("finished", 2)
    assert read_json(run / "resolved_config.json")["_meta"]["launch"]["torchrun"] == {"nproc_per_node": 2, "nnodes": 1}
    rec = Path(denv["DDP_RECORD_DIR"])
    r0, r1 = read_jsonl(rec / "rank0.jsonl"), read_jsonl(rec / "rank1.jsonl")
    assert len(r0) == len(r1) == 24
    for step, (a, b) in enumerate(zip(r0, r1, strict=True)):
        epoch, k = divmod(step, 12)
        batch = epoch_permutation(0, epoch, 96)[k * 8:(k + 1) * 8].tolist()
        assert a["ids"] == batch[:4] and b["ids"] == batch[4:]  # contiguous, disjoint, the whole batch
        assert a["params"] == b["params"]  # identical parameters on both ranks at every step
    for p in run.rglob("*"):  # one writer: no file of another rank
        assert "rank" not in p.name
    system = read_jsonl(run / "system.jsonl")  # rank 0's process, and it says so
    assert system and all((s["rank"], s["world_size"]) == (0, 2) for s in system)


def test_ddp_follows_a_single_process_run(tmp_path, denv):
    cfg = write_config(tmp_path / "cfg.yaml", **DDP)
    assert torchrun(2, "train", cfg, "--run-dir", tmp_path / "ddp", cwd=tmp_path, env=denv).returncode == 0
    single = trainkit("train", cfg, "--run-dir", tmp_path / "one", cwd=tmp_path, env=denv)
    assert single.returncode == 0, single.stderr
    a, b = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    for k in a:  # the same gradient, summed in another order
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    la = [s["loss"] for s in records(tmp_path / "ddp", "step")]
    lb = [s["loss"] for s in records(tmp_path / "one", "step")]
    assert la == pytest.approx(lb, rel=1e-4, abs=1e-6)


def test_kill9_of_the_whole_job_then_resume_is_bit_identical(tmp_path, denv):
    cfg = write_config(tmp_path / "cfg.yaml", **{**DDP, "epochs": 3, "checkpoint": {"every_steps": 5}})
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert torchrun(2, "train", cfg, "--run-dir", ref, cwd=tmp_path, env=denv).returncode == 0
    job = start_torchrun(2, "train", cfg, "--run-dir", run, cwd=tmp_path, env=denv)
    try:
        wait_for(lambda: count_lines(run / "metrics.jsonl") >= 17, timeout=120, what="17 steps")
    finally:
        kill_job(job)  # torchrun and both ranks at once
    assert read_json(run / "checkpoints/current.meta.json")["global_step"] < 36
    again = torchrun(2, "train", cfg, "--run-dir", run, cwd=tmp_path, env=denv)
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = weights(ref), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [(s["step"], s["loss"]) for s in records(run, "step")]
    assert losses == [(s["step"], s["loss"]) for s in records(ref, "step")]


def test_resuming_with_another_world_size_says_so_and_skips_no_sample(tmp_path, denv):
    cfg = write_config(tmp_path / "cfg.yaml", **{**DDP, "epochs": 3, "checkpoint": {"every_steps": 4}})
    run = tmp_path / "run"
    job = start_torchrun(2, "train", cfg, "--run-dir", run, cwd=tmp_path, env={**denv, "DDP_SLOW_S": "0.05"})
    try:
        wait_for(lambda: count_lines(run / "metrics.jsonl") >= 6, timeout=120, what="6 steps")
        control.request(run, "pause")  # holds both ranks mid-epoch (checkpointed) until the kill
        wait_for(lambda: read_json(run / "training_status.json")["state"] == "paused", what="paused")
    finally:
        kill_job(job)
    saved = read_json(run / "checkpoints/current.meta.json")["global_step"]
    assert 0 < saved < 36 and saved % 12  # inside an epoch
    rec = Path(denv["DDP_RECORD_DIR"])
    for f in rec.iterdir():
        f.unlink()
    one = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=denv)
    assert one.returncode == 0, one.stderr
    assert "resuming with 1 process(es); the checkpoint was written by 2" in (run / "train.log").read_text()
    seen = [i for r in read_jsonl(rec / "rank0.jsonl") for i in r["ids"]]
    epoch, k = divmod(saved, 12)
    rest = epoch_permutation(0, epoch, 96)[k * 8:].tolist()
    assert seen[:len(rest)] == rest  # the epoch goes on where it was: no sample skipped or repeated
    assert [s["step"] for s in records(run, "step")] == list(range(36))


def test_a_batch_not_divisible_by_the_processes_is_refused(tmp_path, denv):
    cfg = write_config(tmp_path / "cfg.yaml", **{**DDP, "batch_size": 7})
    r = torchrun(2, "train", cfg, "--run-dir", tmp_path / "run", cwd=tmp_path, env=denv)
    assert r.returncode != 0
    assert "batch_size 7 is not divisible by the 2 processes of torchrun" in r.stderr


def test_a_rank_that_dies_takes_the_job_down_the_run_reads_crashed_and_relaunches_under_torchrun(tmp_path, denv):
    cfg = write_config(tmp_path / "cfg.yaml", **{**DDP, "epochs": 6, "heartbeat_s": 0.2})
    run = tmp_path / "experiments" / "run"
    job = start_torchrun(2, "train", cfg, "--run-dir", run, cwd=tmp_path, env={**denv, "DDP_SLOW_S": "0.02"})
    try:
        wait_for(lambda: count_lines(run / "metrics.jsonl") >= 5, timeout=120, what="training")
        workers = [p for p in psutil.Process(job.pid).children(recursive=True) if "trainkit" in " ".join(p.cmdline())]
        rank1 = [p for p in workers if p.environ().get("RANK") == "1"]
        assert rank1, [p.cmdline() for p in workers]
        rank1[0].kill()
        assert job.wait(timeout=120) != 0  # torchrun takes the others down
    finally:
        if job.poll() is None:
            kill_job(job)
    out = trainkit("status", tmp_path / "experiments", "--json", cwd=tmp_path, env=denv)
    row = orjson.loads(out.stdout)[0]
    assert row["state"] == "crashed", row
    relaunch = trainkit("launch", tmp_path / "experiments", "--wait", cwd=tmp_path, env=denv)
    assert relaunch.returncode == 0, relaunch.stderr
    status = read_json(run / "training_status.json")
    assert (status["state"], status["world_size"]) == ("finished", 2)  # the same way: 2 processes
    assert [s["step"] for s in records(run, "step")] == list(range(72))
