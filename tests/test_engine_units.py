"""Pure pieces of the engine and the run-folder session logic, without training."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import torch

from trainkit.config import resolve
from trainkit.errors import UserError
from trainkit.runfolder import RunPaths, choose_run_dir, move_aside, progress_record
from trainkit.train import checkpoint, session
from trainkit.train.engine import epoch_permutation, get_lr


def cfg_with(**kw):
    return resolve({"task": "burgers", **kw}, source="test")


@pytest.mark.parametrize("schedule,step,expected", [
    ({"name": "constant"}, 0, 1e-3),
    ({"name": "constant", "warmup_steps": 10}, 0, 1e-4),
    ({"name": "constant", "warmup_steps": 10}, 9, 1e-3),
    ({"name": "cosine"}, 0, 1e-3),
    ({"name": "cosine"}, 50, 5e-4),
    ({"name": "cosine", "min_lr": 1e-4}, 100, 1e-4),
    ({"name": "linear"}, 25, 7.5e-4),
])
def test_lr_is_a_pure_function_of_the_step(schedule, step, expected):
    cfg = cfg_with(lr=1e-3, lr_schedule=schedule)
    assert get_lr(step, cfg, total_steps=100) == pytest.approx(expected)


def test_epoch_permutation_depends_only_on_seed_and_epoch():
    a = epoch_permutation(0, 3, 100)
    torch.manual_seed(123)  # the global RNG does not matter
    assert torch.equal(a, epoch_permutation(0, 3, 100))
    assert not torch.equal(a, epoch_permutation(0, 4, 100))
    assert not torch.equal(a, epoch_permutation(1, 3, 100))
    assert sorted(a.tolist()) == list(range(100))


@pytest.mark.parametrize("completed,total,early,finished,pct", [
    (0, 10, None, False, 0.0), (3, 10, None, False, 30.0), (10, 10, None, True, 100.0),
    (3, 10, 2, False, 100.0), (1, 3, None, False, 33.33),
])
def test_progress_record(completed, total, early, finished, pct):
    rec = progress_record(completed, total, early_stopped_at=early, finished=finished)
    assert rec["progress_percentage"] == pct
    assert rec["early_stopped"] is (early is not None)
    assert rec["finished"] is (finished or early is not None)


def test_choose_run_dir(tmp_path):
    day = dt.date(2026, 11, 22)
    assert choose_run_dir(Path("cfgs/base line.yaml"), None, today=day) == \
        Path("experiments/2026-11-22-base-line")
    assert choose_run_dir(Path("x.yaml"), "runs/a", today=day) == Path("runs/a")
    run = tmp_path / "experiments" / "2026-11-20-thing"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("task: burgers\n")
    assert choose_run_dir(run / "config.yaml", None, today=day) == run
    other = tmp_path / "configs"
    other.mkdir()
    assert choose_run_dir(other / "config.yaml", None, today=day) == Path("experiments/2026-11-22-config")


def test_move_outputs_aside_keeps_inputs_and_never_overwrites(tmp_path):
    paths = RunPaths(tmp_path)
    (tmp_path / "config.yaml").write_text("task: burgers\n")
    (tmp_path / "notes.md").write_text("✓ worked\n")
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "current.pt").write_bytes(b"x")
    first = move_aside(paths.root, paths.outputs(), now=0)
    assert sorted(p.name for p in first.iterdir()) == ["checkpoints", "metrics.jsonl"]
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "notes.md").exists()
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    second = move_aside(paths.root, paths.outputs(), now=0)  # same second: a new folder, nothing overwritten
    assert second != first and (first / "metrics.jsonl").exists()
    assert move_aside(paths.root, paths.outputs()) is None


def test_resume_from_folder_without_config_is_refused(tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        session.prepare(session.TrainRequest(str(tmp_path)))


def test_checkpoint_refuses_unknown_content_and_newer_format(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "c.pt"
    checkpoint.save(path, model=model, optimizer=opt, state=checkpoint.TrainState(epoch=2), config={"task": "x"})
    loaded = checkpoint.load(path)
    assert loaded.state.epoch == 2 and loaded.state.last_epoch == 1
    raw = torch.load(path, weights_only=True)
    torch.save({**raw, "surprise": 1}, path)
    with pytest.raises(checkpoint.CheckpointError, match="surprise"):
        checkpoint.load(path)
    torch.save({**raw, "format_version": 99}, path)
    with pytest.raises(checkpoint.CheckpointError, match="format 99 is not supported"):
        checkpoint.load(path)
    path.write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match="cannot load checkpoint"):
        checkpoint.load(path)


def test_rng_state_round_trip():
    import random

    state = checkpoint.capture_rng()
    a = (random.random(), torch.rand(3))
    checkpoint.restore_rng(state)
    b = (random.random(), torch.rand(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])
