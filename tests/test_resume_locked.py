"""Changing a locked field (task, profile, model, data) on resume is refused with the locked-field
message, naming the field and both values, and nothing is written: a changed `task` used to be
blamed on a key of the run's data ("unknown key data.'nx'") by the new task's schema."""

from __future__ import annotations

import pytest
import yaml
from helpers import TINY, merge, read_json, trainkit, write_config


@pytest.fixture
def trained(tmp_path, env):
    cfg = write_config(tmp_path / "c.yaml", epochs=1)
    run = tmp_path / "run"
    done = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    return cfg, run


LOCKED = "cannot resume {run}: locked field changed: {what} (use --fresh to start over, or another --run-dir)"


def test_a_changed_task_is_named_as_a_locked_field(tmp_path, env, trained):
    cfg, run = trained
    before = (run / "resolved_config.json").read_bytes()
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(merge(TINY, {"task": "arith-chat", "epochs": 2})))
    cases = [("train", other, "--run-dir", run), ("train", run, "--set", "task=arith-chat"),
             ("train", cfg, "--run-dir", run, "--set", "task=arith-chat")]
    for args in cases:
        r = trainkit(*args, cwd=tmp_path, env=env)
        assert r.returncode == 2, r.stderr
        task = "task: 'burgers' (run) vs 'arith-chat' (requested)"
        assert r.stderr.strip().splitlines() == ["trainkit train: error: " + LOCKED.format(run=run, what=task)]
    r = trainkit("train", run, "--set", "profile=emoji_think", cwd=tmp_path, env=env)
    assert r.returncode == 2 and LOCKED.format(run=run, what="profile: None (run) vs 'emoji_think' (requested)") \
        in r.stderr, r.stderr
    r = trainkit("train", run, "--set", "model.width=32", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "locked field changed: model.width: 64 (run) vs 32 (requested)" in r.stderr
    assert (run / "resolved_config.json").read_bytes() == before
    assert read_json(run / "progress.json")["completed_epochs"] == 1
