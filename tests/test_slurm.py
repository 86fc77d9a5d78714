"""Runs handed to Slurm: the job script, squeue parsing and the queued state (pure), then a real
one-node cluster started in a temp folder (module-scoped; skipped with the reason where Slurm is
missing, failed instead when TRAINKIT_REQUIRE_SLURM=1 as `make test-slurm` sets)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from helpers import read_json, records, trainkit, wait_for, write_config
from slurm_cluster import Cluster, missing

from trainkit import slurm
from trainkit import status as S
from trainkit.launcher import decide, read_history, record_nodes
from trainkit.slurm import JobView, Options

# --------------------------------------------------------------------------------------------
# pure


def test_job_script_is_requeue_safe_and_appends_to_console_log(tmp_path):
    run = tmp_path / "exp" / "2026-12-01-lr 3e-4"
    text = slurm.job_script(run, python="/venv/bin/python", cwd=tmp_path,
                            options=Options(partition="gpu", time="4:00:00", gpus="1", sbatch_args=["--mem=8G"]))
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for d in ("#SBATCH --requeue", "#SBATCH --open-mode=append", "#SBATCH --signal=B:USR1@90",
              "#SBATCH --partition=gpu", "#SBATCH --time=4:00:00", "#SBATCH --gpus=1", "#SBATCH --mem=8G",
              "#SBATCH --job-name=2026-12-01-lr_3e-4", f"#SBATCH --chdir={tmp_path}"):
        assert d in lines, d
    assert f"#SBATCH '--output={run}/console.log'" in lines  # quoted: the path has a space
    assert f"/venv/bin/python -m trainkit train '{run}' --run-dir '{run}' &" in lines
    assert 'scontrol requeue "$SLURM_JOB_ID"' in text and "trap on_usr1 USR1" in text
    # the directives come before the first command (sbatch stops reading them there)
    first_cmd = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert all(not line.startswith("#SBATCH") for line in lines[first_cmd:])


def test_percent_in_a_path_is_not_a_pattern(tmp_path):
    text = slurm.job_script(tmp_path / "r%j", python="py", cwd=tmp_path, options=Options())
    assert "--output=" + str(tmp_path / "r%%j" / "console.log") in text


@pytest.mark.parametrize("out,job", [("123\n", 123), ("456;cluster\n", 456), ("warning: x\n789\n", 789)])
def test_parse_sbatch(out, job):
    assert slurm.parse_sbatch(out) == job


def test_parse_sbatch_refuses_garbage():
    with pytest.raises(slurm.SlurmError, match="no job id"):
        slurm.parse_sbatch("Submitted batch job\n")


def test_parse_squeue():
    jobs = slurm.parse_squeue("12|PENDING||Priority\n13|RUNNING|node07|None\nnot|a|line\n14|COMPLETING|n1|(null)\n")
    assert jobs == {12: JobView(12, "PENDING", None, "Priority"), 13: JobView(13, "RUNNING", "node07", None),
                    14: JobView(14, "COMPLETING", "n1", None)}
    assert jobs[12].queued and jobs[13].running and all(j.active for j in jobs.values())
    assert not JobView(1, "COMPLETED").active


@pytest.mark.parametrize("state,job,want", [
    ("pending", JobView(5, "PENDING", reason="Priority"), ("queued", "Slurm job 5 pending (Priority)")),
    ("stopped", JobView(5, "REQUEUED"), ("queued", "Slurm job 5 requeued")),  # checkpointed, requeued
    ("crashed", JobView(5, "RUNNING", "n1"), ("running", "starting: Slurm job 5 running on n1")),
    ("pending", JobView(5, "RUNNING", "n1"), ("running", "starting: Slurm job 5 running on n1")),
    ("running", JobView(5, "RUNNING", "n1"), ("running", "epoch 1 (Slurm job 5 on n1)")),
    ("finished", JobView(5, "PENDING"), ("finished", "epoch 1")),  # complete wins
    ("crashed", JobView(5, "COMPLETING", "n1"), ("crashed", "epoch 1")),
    # `scontrol requeue`: the trainer checkpointed and stopped; Slurm holds the job (completing) to requeue it
    ("stopped", JobView(5, "COMPLETING", "n1"),
     ("queued", "Slurm job 5 completing: the trainer stopped (checkpointed), Slurm still holds the job")),
    ("crashed", None, ("crashed", "epoch 1")),  # the job ended: the files decide
])
def test_with_slurm(state, job, want):
    assert S.with_slurm(state, "epoch 1", 5, job) == want


def run_of(state: str, slurm_state: str | None) -> S.RunStatus:
    return S.RunStatus(name="r", path="/x/r", state=state, reason="why", completed_epochs=0, total_epochs=3,
                       progress_percentage=0.0, early_stopped=False, early_stopped_at_epoch=None, finished=False,
                       slurm_job=7, slurm_state=slurm_state)


@pytest.mark.parametrize("state,slurm_state,action", [
    ("queued", "pending", None), ("running", "running", None), ("crashed", "completing", None),
    ("crashed", "completed", "relaunch"), ("crashed", None, "relaunch"), ("pending", None, "launch"),
])
def test_never_submitted_twice_while_slurm_holds_the_job(state, slurm_state, action):
    got = decide(run_of(state, slurm_state), {"launches": [], "given_up": None}, max_crashes=3, started_at=None)
    assert (got.action if got else None) == action


def test_status_without_squeue_falls_back_to_the_files_with_a_warning(tmp_path, monkeypatch):
    root = tmp_path / "exp"
    run = root / "r"
    write_config(run / "config.yaml")
    (run / "launch.json").write_bytes(orjson.dumps({"version": 1, "given_up": None, "launches": [
        {"t": 1.0, "action": "launch", "slurm": {"job_id": 41, "node": None, "submitted_at": 1.0}}]}))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    [r] = S.scan(root)
    assert r.state == "pending" and r.slurm_job == 41 and r.slurm_state is None
    assert any("squeue not found" in w for w in r.warnings)


def test_the_node_is_recorded_once_squeue_shows_it(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    entry = {"t": 1.0, "action": "launch", "slurm": {"job_id": 9, "node": None, "submitted_at": 1.0}}
    (run / "launch.json").write_bytes(orjson.dumps({"version": 1, "given_up": None, "launches": [entry]}))
    seen = S.RunStatus(name="r", path=str(run), state="running", reason="", completed_epochs=0, total_epochs=1,
                       progress_percentage=0.0, early_stopped=False, early_stopped_at_epoch=None, finished=False,
                       slurm_job=9, slurm_state="running", slurm_node="n3")
    assert record_nodes([seen]) == 1
    assert read_history(run)["launches"][0]["slurm"] == {"job_id": 9, "node": "n3", "submitted_at": 1.0}
    assert record_nodes([seen]) == 0  # known already: not rewritten
    other = S.RunStatus(**{**seen.__dict__, "slurm_job": 8})
    assert record_nodes([other]) == 0  # not the last job of the run


# --------------------------------------------------------------------------------------------
# a real one-node cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = missing()
    if why:
        if os.environ.get("TRAINKIT_REQUIRE_SLURM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
    except (RuntimeError, OSError) as e:
        if os.environ.get("TRAINKIT_REQUIRE_SLURM") == "1":
            pytest.fail(str(e))
        pytest.skip(f"the one-node Slurm cluster did not start: {str(e)[:300]}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(c.conf)
    try:
        yield c
    finally:
        c.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


@pytest.fixture
def senv(env, cluster) -> dict:
    return {**env, "SLURM_CONF": str(cluster.conf)}


def launch(root: Path, *args: str, cwd: Path, env: dict) -> list[dict]:
    res = trainkit("launch", root, "--slurm", "--json", *args, cwd=cwd, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    return orjson.loads(res.stdout)


def states(root: Path) -> dict[str, str]:
    return {r.name: r.state for r in S.scan(root)}


def assert_each_step_once(run: Path) -> None:
    steps = [r["step"] for r in records(run, "step")]
    assert steps == sorted(set(steps)), "a step appears twice or out of order"
    done = read_json(run / "checkpoints/current.meta.json")["global_step"]
    assert steps == list(range(done))  # log_every_steps 1: every step once, none missing


def test_dry_run_submits_nothing(tmp_path, senv, cluster):
    root = tmp_path / "exp"
    for name in ("a", "b"):
        write_config(root / name / "config.yaml")
    before = sorted(p.name for p in root.rglob("*"))
    res = trainkit("launch", root, "--slurm", "--dry-run", "--time", "1:00:00", cwd=tmp_path, env=senv)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("#!/bin/bash") == 2 and res.stdout.count("#SBATCH --requeue") == 2
    assert "#SBATCH --time=1:00:00" in res.stdout and "# would submit a (launch: pending" in res.stdout
    as_json = orjson.loads(trainkit("launch", root, "--slurm", "--dry-run", "--json", cwd=tmp_path, env=senv).stdout)
    assert [(a["name"], a["action"]) for a in as_json] == [("a", "launch"), ("b", "launch")]
    assert all(a["script"].startswith("#!/bin/bash\n") and "job_id" not in a for a in as_json)
    assert cluster.jobs() == {}
    assert sorted(p.name for p in root.rglob("*")) == before  # no launch.json, nothing written


def test_held_job_is_queued_and_never_submitted_twice(tmp_path, senv, cluster):
    root = tmp_path / "exp"
    for name in ("a", "b"):
        write_config(root / name / "config.yaml", epochs=1)
    first = launch(root, "--sbatch-arg=--hold", cwd=tmp_path, env=senv)
    assert [(a["name"], a["action"]) for a in first] == [("a", "launch"), ("b", "launch")]
    jobs = {a["name"]: a["job_id"] for a in first}
    try:
        assert set(cluster.jobs()) >= set(jobs.values())
        assert launch(root, cwd=tmp_path, env=senv) == []  # pending jobs: nothing submitted again
        runs = {r["name"]: r for r in orjson.loads(trainkit("status", root, "--json", cwd=tmp_path, env=senv).stdout)}
        for name in ("a", "b"):
            assert runs[name]["state"] == "queued" and runs[name]["slurm_job"] == jobs[name]
            assert runs[name]["slurm_state"] == "pending" and f"Slurm job {jobs[name]} pending" in runs[name]["reason"]
        table = trainkit("status", root, cwd=tmp_path, env=senv).stdout
        assert "queued" in table and f"Slurm job {jobs['a']}" in table
        for name in ("a", "b"):
            [entry] = read_history(root / name)["launches"]
            assert entry["slurm"]["job_id"] == jobs[name] and entry["slurm"]["node"] is None
            assert entry["slurm"]["submitted_at"] > 0 and "pid" not in entry
    finally:
        cluster.run("scancel", *map(str, jobs.values()), check=False)
        wait_for(lambda: not set(cluster.jobs()) & set(jobs.values()), timeout=60, what="jobs cancelled")
    assert states(root) == {"a": "pending", "b": "pending"}  # cancelled before starting: pending again


@pytest.mark.slow
def test_jobs_complete_and_the_runs_are_finished(tmp_path, senv, cluster):
    root = tmp_path / "exp"
    for name in ("a", "b"):
        write_config(root / name / "config.yaml", epochs=2)
    started = launch(root, cwd=tmp_path, env=senv)
    assert len(started) == 2
    assert launch(root, cwd=tmp_path, env=senv) == []  # pending or running: never twice
    wait_for(lambda: states(root) == {"a": "finished", "b": "finished"}, timeout=180, interval=0.5,
             what="both runs finished")
    wait_for(lambda: not cluster.jobs(), timeout=60, interval=0.3, what="the jobs to leave the queue")
    assert launch(root, cwd=tmp_path, env=senv) == []  # complete: never relaunched
    for name in ("a", "b"):
        run = root / name
        assert len(read_history(run)["launches"]) == 1
        assert_each_step_once(run)
        log = (run / "console.log").read_text()
        assert log.count("trainkit: Slurm job") == 1 and "restart 0" in log


@pytest.mark.slow
def test_requeue_from_outside_and_self_requeue_resume_the_same_run(tmp_path, senv, cluster):
    root = tmp_path / "exp"
    run = root / "long"
    write_config(run / "config.yaml", epochs=4, data={"n_train": 4096})  # 256 steps per epoch
    [started] = launch(root, cwd=tmp_path, env=senv)
    job = started["job_id"]

    def step() -> int:  # -1 until the job runs and has written its first status (Slurm says running first)
        status = run / "training_status.json"
        if S.run_status(run).state != "running" or not status.exists():
            return -1
        return read_json(status).get("step") or 0

    wait_for(lambda: step() >= 20, timeout=120, interval=0.2, what="training under Slurm")
    cluster.run("scontrol", "requeue", str(job))  # from outside, mid-training
    seen: set[str] = set()

    def restarted() -> bool:  # meanwhile the run is never "stopped" while Slurm holds its job (completing...)
        [r] = S.scan(root)
        seen.add(r.state)
        return "restart 1" in (run / "console.log").read_text()

    wait_for(restarted, timeout=120, interval=0.1, what="the requeued job to start again")
    assert "stopped" not in seen and seen <= {"running", "queued"}, seen
    mid = read_json(run / "checkpoints/current.meta.json")["global_step"]
    wait_for(lambda: step() > mid + 20, timeout=120, interval=0.2, what="training after the requeue")
    # Slurm's warning signal (time limit near, preemption) to the batch shell: checkpoint, requeue itself
    cluster.run("scancel", "--batch", "--signal=USR1", str(job))
    wait_for(lambda: "restart 2" in (run / "console.log").read_text(), timeout=120, interval=0.5,
             what="the self-requeued job to start again")
    wait_for(lambda: S.run_status(run).state == "finished", timeout=300, interval=0.5, what="finished")
    log = (run / "console.log").read_text()
    assert "got USR1" in log and log.count("trainkit: Slurm job") == 3
    assert_each_step_once(run)
    hist = read_history(run)
    assert len(hist["launches"]) == 1 and hist["launches"][0]["slurm"]["job_id"] == job  # one job, the same run
    assert sorted(p.name for p in root.iterdir()) == ["long"]  # never a new run folder
    wait_for(lambda: job not in cluster.jobs(), timeout=60, interval=0.3, what="the job to end")
    assert launch(root, cwd=tmp_path, env=senv) == []


def test_launch_without_sbatch_and_slurm_options_without_slurm(tmp_path, env):
    root = tmp_path / "exp"
    write_config(root / "a" / "config.yaml")
    res = trainkit("launch", root, "--partition", "gpu", cwd=tmp_path, env=env)
    assert res.returncode == 2 and "--partition is a Slurm option: add --slurm" in res.stderr
    res = trainkit("launch", root, "--slurm", "--wait", cwd=tmp_path, env=env)
    assert res.returncode == 2 and "does not combine with --wait" in res.stderr
    res = trainkit("launch", root, "--slurm", cwd=tmp_path, env={**env, "PATH": str(tmp_path / "empty")})
    assert res.returncode == 2 and "sbatch not found" in res.stderr and res.stderr.count("\n") == 1
    assert not (root / "a" / "launch.json").exists()

