"""`trainkit stop|pause|resume|checkpoint`: what trainmon's keys do, from a script, on a real training
run (the request written to control.json, the trainer's acknowledgement waited for), the refusals
of runs that are not live, and trainmon's actions going through the same rule and function."""

from __future__ import annotations

import pytest
from helpers import read_json, start_trainkit, trainkit, wait_for, write_config

from trainkit import run_control
from trainkit.runfolder import LIVE, STATES

# ---------------------------------------------------------------------------------------------
# the rule (pure)


@pytest.mark.parametrize("what,state,refused", [
    ("stop", "running", None),
    ("stop", "paused", None),
    ("stop", "suspended", None),
    ("stop", "finished", "not running (finished)"),
    ("stop", "crashed", "not running (crashed)"),
    ("pause", "running", None),
    ("pause", "paused", "already paused"),
    ("pause", "stopped", "not running (stopped)"),
    ("resume", "paused", None),
    ("resume", "running", "already running"),
    ("resume", "pending", "not running (pending)"),
    ("checkpoint", "running", None),
    ("checkpoint", "paused", "paused: a paused run's checkpoint was written when it paused"),
    ("checkpoint", "early_stopped", "not running (early_stopped)"),
])
def test_which_runs_a_request_acts_on(what, state, refused):
    assert run_control.refusal(what, state) == refused


def test_every_state_that_is_not_live_is_refused_by_every_request():
    for what in run_control.ACTS_ON:
        for state in STATES:
            why = run_control.refusal(what, state)
            assert (why is None) <= (state in LIVE), (what, state)
            if state not in LIVE:
                assert why == f"not running ({state})"


# ---------------------------------------------------------------------------------------------
# the commands on a real run


@pytest.mark.slow
def test_pause_resume_checkpoint_stop_a_real_run_from_the_command_line(tmp_path, env):
    root = tmp_path / "experiments"
    cfg = write_config(tmp_path / "long.yaml", epochs=500)
    run = root / "2026-01-01-long"
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    try:
        wait_for(lambda: (run / "checkpoints" / "current.pt").exists(), 120, what="the first checkpoint")
        status = run / "training_status.json"
        wait_for(lambda: status.exists() and read_json(status)["state"] == "running", 60, what="running")

        first = (run / "checkpoints" / "current.pt").stat().st_mtime_ns
        r = trainkit("checkpoint", run.name, "--root", root, "--wait", "--timeout", "60", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.splitlines() == [f"{run.name}: checkpoint requested",
                                         f"{run.name}: checkpointed (acknowledged)"]
        assert (run / "checkpoints" / "current.pt").stat().st_mtime_ns > first
        assert read_json(status)["control"]["request"] == "checkpoint"

        r = trainkit("pause", f"experiments/{run.name}", "--wait", cwd=tmp_path, env=env)  # a path under ROOT
        assert r.returncode == 0 and r.stdout.splitlines()[-1] == f"{run.name}: paused (acknowledged)", r.stdout
        assert read_json(status)["state"] == "paused"
        again = trainkit("pause", run.name, cwd=tmp_path, env=env)
        assert again.returncode == 1 and again.stdout.strip() == f"{run.name}: already paused", again.stdout
        assert not (run / "control.json").exists()  # a refused request writes nothing

        r = trainkit("resume", "--all", "--wait", cwd=tmp_path, env=env)  # ROOT ./experiments
        assert r.returncode == 0 and r.stdout.splitlines()[-1] == f"{run.name}: resumed (acknowledged)", r.stdout
        assert read_json(status)["state"] == "running"

        r = trainkit("stop", "--all", "--state", "running", "--root", root, "--wait", cwd=tmp_path, env=env)
        assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith(f"{run.name}: stopped"), r.stdout
        assert proc.wait(timeout=60) == 0
        assert read_json(status)["state"] == "stopped"
        assert read_json(status)["stop_reason"].startswith("stop requested")

        after = trainkit("stop", run.name, "--root", root, cwd=tmp_path, env=env)
        assert after.returncode == 1 and after.stdout.strip() == f"{run.name}: not running (stopped)"
        nothing = trainkit("stop", "--all", "--root", root, cwd=tmp_path, env=env)
        assert nothing.returncode == 0 and nothing.stdout.strip() == \
            f"nothing to stop: no run under {root} is running, paused or suspended"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("args,message", [
    ((), "name the runs to stop"),
    (("--state", "running"), "--state filters --all"),
    (("--all", "--state", "runing"), "--state 'runing': not a state"),
    (("nope",), "nope: no run folder under experiments"),
    (("x", "--all"), "give RUN names or --all, not both"),
    (("--all", "--root", "missing"), "missing: no such folder"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, env, args, message):
    (tmp_path / "experiments").mkdir()
    r = trainkit("stop", *args, cwd=tmp_path, env=env)
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr


def test_trainmon_refuses_with_the_same_rule_and_writes_through_the_same_function(tmp_path):
    from trainkit.testing import synthetic_run
    from tui.actions import plan_control
    from tui.model.views import RunView

    done = synthetic_run(tmp_path, "done", total=2, scores=[1.0, 0.9], state="finished")
    plan = plan_control([RunView(name="done", path=str(done.root), state="finished")], "stop")
    assert [(t.name, t.what, t.ok) for t in plan.lines] == [("done", "not running (finished)", False)]
    assert plan.execute is None
    # a view that still says running when the key is pressed: the request reads the run again
    stale = plan_control([RunView(name="done", path=str(done.root), state="running")], "stop")
    assert stale.execute is not None and stale.execute(lambda _: None) == ["done: not running (finished)"]
    assert not done.control.exists()
