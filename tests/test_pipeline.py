"""The burgers task's own evaluation and `trainkit run` end to end: real training, real evaluation,
real subprocesses (and a kill -9 of the whole pipeline during training)."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import (
    count_lines,
    eval_env,
    read_json,
    read_jsonl,
    records,
    trainkit,
    wait_for,
    write_config,
    write_jsonl,
)

from trainkit import cli
from trainkit.errors import EXIT_GATES
from trainkit.runfolder import control
from trainkit.runfolder.lock import pid_alive
from trainkit.tasks.burgers import BurgersData, BurgersTask, ResidualMLP, eval_seed

pytestmark = pytest.mark.slow

GATES = {"eval": {"gates": {"nrmse": {"max": 5.0}}}}


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir) -> Path:
    """One TINY burgers run with an nrmse gate, trained once for this module (tests copy it)."""
    base = tmp_path_factory.mktemp("trained")
    env = {**os.environ, "TRAINKIT_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1"}
    r = trainkit("train", write_config(base / "cfg.yaml", **GATES), "--run-dir", base / "run", cwd=base, env=env)
    assert r.returncode == 0, r.stderr
    return base / "run"


def test_burgers_default_eval_is_held_out_and_scored_by_pooled_nrmse(trained, tmp_path, env, cache_dir):
    run = shutil.copytree(trained, tmp_path / "run")
    r = trainkit("eval", run, "--workers", "2", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    d = run / "evals" / "default"
    summary = read_json(d / "test_summary.json")
    assert (summary["task"], summary["metric"], summary["planned"], summary["ok"], summary["completed"]) == \
        ("burgers", "nrmse", 64, 64, True)
    assert summary["planned"] >= 50 and summary["model"].startswith("checkpoint:checkpoints/best.pt sha256:")

    # The number is the pooled NRMSE of the run's best model on the held-out questions, recomputed here.
    cfg = read_json(run / "resolved_config.json")
    data = BurgersData(**cfg["data"])
    model = ResidualMLP(data.nx, cfg["model"]["width"], cfg["model"]["depth"], cfg["model"]["dropout"])
    model.load_state_dict(torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"])
    questions = BurgersTask().default_questions(cfg["data"])
    u0 = torch.tensor([q["question"] for q in questions], dtype=torch.float32)
    true = torch.tensor([q["answer"] for q in questions], dtype=torch.float64)
    with torch.no_grad():
        pred = model.eval()(u0).double()
    assert summary["nrmse"] == pytest.approx(float((pred - true).norm() / true.norm()), rel=1e-6)

    # Held out: another seed than the training data, and no question is a training or validation sample.
    assert eval_seed(data.seed) != data.seed
    td = BurgersTask().build_data(cfg["data"], cache_dir)
    seen = torch.cat([td.train[0], td.val[0]]).double()
    assert float(torch.cdist(u0.double(), seen).min()) > 1e-3

    lines = read_jsonl(d / "responses.jsonl")
    conv = read_json(d / "conversations" / "q0_s0.json")
    line0 = next(x for x in lines if x["question_id"] == 0)
    assert conv["score"] == line0["score"] and [m["role"] for m in conv["messages"]] == ["user", "assistant"]
    assert math.isclose(line0["score"], float((pred[0] - true[0]).norm() / true[0].norm()), rel_tol=1e-6)

    rep = read_json(run / "reports" / "default.json")
    assert rep["final_nrmse"] == summary["nrmse"] and rep["gates"] == {"nrmse": {"max": 5.0}}
    assert rep["gates_passed"] is True and rep["version"] == 1

    before = snapshot(run)
    again = trainkit("eval", run, cwd=tmp_path, env=env)
    assert again.returncode == 0 and "already complete" in again.stdout
    assert snapshot(run) == before


def test_burgers_default_questions_are_deterministic_held_out_and_enough():
    data = BurgersData(nx=16).__dict__
    a, b = BurgersTask().default_questions(data), BurgersTask().default_questions(data)
    assert a == b and len(a) >= 50 and len({q["id"] for q in a}) == len(a)
    assert all(len(q["question"]) == len(q["answer"]) == 16 for q in a)
    assert all(torch.tensor(q["question"]).double().tolist() == q["question"] for q in a[:3])  # float32 values
    assert BurgersTask().default_questions({**data, "seed": 1}) != a
    assert all(eval_seed(s) != s for s in range(1000))


def test_a_user_task_without_evaluation_members_trains_and_asks_for_model_and_questions(tmp_path, env, capsys,
                                                                                        monkeypatch):
    e = eval_env(env)
    cfg = write_config(tmp_path / "cfg.yaml", task="eval_tasks:plain_task", model={}, data={}, epochs=1)
    assert trainkit("train", cfg, "--run-dir", tmp_path / "run", cwd=tmp_path, env=e).returncode == 0
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("TRAINKIT_CACHE_DIR", env["TRAINKIT_CACHE_DIR"])
    assert cli.main(["eval", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no default question set; give --questions FILE" in err, err
    q = write_jsonl(tmp_path / "qs.jsonl", [{"id": 1, "question": [0.0] * 16, "answer": [0.0] * 16}])
    assert cli.main(["eval", str(tmp_path / "run"), "--questions", str(q)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no predictor for its own model; give --model module:function" in err, err


def test_trainkit_run_end_to_end_and_rerun_skips_finished_stages(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml", **GATES)
    run = tmp_path / "run"
    r = trainkit("run", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    for stage in ("[1/3] train", "[2/3] eval default", "[3/3] report"):
        assert stage in r.stderr
    assert (r.stdout + r.stderr).count("gates passed") == 1  # the report line once, from stage 3
    assert read_json(run / "progress.json")["finished"] is True
    summary = read_json(run / "evals" / "default" / "test_summary.json")
    assert summary["completed"] and summary["planned"] == 64
    rep = read_json(run / "reports" / "default.json")
    assert (rep["gates_passed"], rep["final_nrmse"], rep["gates"]) == (True, summary["nrmse"], {"nrmse": {"max": 5.0}})

    evals = snapshot(run / "evals")
    again = trainkit("run", cfg, "--run-dir", run, "--set", "eval.gates.nrmse.max=0.001", cwd=tmp_path, env=env)
    assert again.returncode == EXIT_GATES == 3, again.stderr  # every stage ran, the gate failed: like a failed test
    assert "Requested epochs already completed" in again.stdout and "already complete" in again.stdout
    assert snapshot(run / "evals") == evals  # the finished evaluation was skipped, not redone
    rep = read_json(run / "reports" / "default.json")  # but the report applies the gate asked for now
    assert rep["gates_passed"] is False and rep["gates"] == {"nrmse": {"max": 0.001}}
    assert "gates FAILED: nrmse" in again.stderr and "> max 0.001" in again.stderr


def test_trainkit_run_resumes_after_a_kill_during_training(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml", epochs=8, checkpoint={"every_steps": 16},
                       model={"width": 256, "depth": 3}, data={"n_train": 1024, "n_val": 64, "nx": 32})
    run = tmp_path / "run"
    with open(tmp_path / "first.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "trainkit", "run", str(cfg), "--run-dir", str(run)],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: count_lines(run / "metrics.jsonl") >= 2, what="training steps")
        control.request(run, "pause")  # holds training mid-way, deterministically, until the kill
        wait_for(lambda: (run / "training_status.json").exists()
                 and read_json(run / "training_status.json").get("state") == "paused", what="paused")
        train_pid = read_json(run / "training_status.json")["pid"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the pipeline and its training child, at once
        proc.wait()
    wait_for(lambda: not pid_alive(train_pid), what="the killed training to be gone")
    # paused after two steps, maybe inside epoch 0: progress.json may not exist yet
    progress = read_json(run / "progress.json") if (run / "progress.json").exists() else {}
    assert not progress.get("finished") and not (run / "evals").exists()

    again = trainkit("run", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming" in (run / "train.log").read_text()
    assert [r["epoch"] for r in records(run, "epoch")] == list(range(8))  # each epoch once
    steps = [r["step"] for r in records(run, "step")]
    assert steps == sorted(set(steps))
    assert read_json(run / "evals" / "default" / "test_summary.json")["completed"] is True
    assert read_json(run / "reports" / "default.json")["gates_passed"] is None  # no gates configured: exit 0
