"""A config that names only its task trains with the task's own defaults (schema < task < file <
command line, key by key): `task: arith-chat` is the example's training (99-100 %), `task: burgers`
30 epochs at lr 2e-3; the defaults are recorded in resolved_config.json, shown by `trainkit train
--help` and used by `trainkit status` for a pending run's epochs."""

from __future__ import annotations

import pytest
import yaml
from helpers import ROOT, eval_env, read_json, records, trainkit

from trainkit import config
from trainkit.errors import UserError
from trainkit.tasks.burgers import BurgersTask
from trainkit.tasks.configured import configured_task, task_defaults
from trainkit.tasks.defaults import ARITH_CHAT, BURGERS


class TwoEpochBurgers(BurgersTask):
    """``task: test_task_defaults:TwoEpochBurgers``: a user's task declaring its own defaults."""

    defaults = {"epochs": 2, "lr": 5e-3, "model": {"width": 16, "depth": 1},
                "data": {"n_train": 64, "n_val": 32, "nx": 16}}


class BadDefaults(BurgersTask):
    defaults = ["epochs", 2]


def resolved(data: dict, sets: list[str] = (), epochs: int | None = None) -> config.TrainConfig:
    cfg = config.resolve(data, source="c.yaml", sets=list(sets), epochs=epochs, task_defaults=task_defaults)
    configured_task(cfg, source="c.yaml")
    return cfg


def test_a_task_alone_gets_its_own_defaults():
    arith = resolved({"task": "arith-chat"})
    assert (arith.epochs, arith.seed, arith.batch_size, arith.lr) == (8, 1, 32, 2e-3)
    assert (arith.lr_schedule.name, arith.lr_schedule.warmup_steps, arith.lr_schedule.min_lr) == ("cosine", 50, 1e-4)
    burgers = resolved({"task": "burgers"})
    assert (burgers.epochs, burgers.lr, burgers.lr_schedule.name, burgers.seed) == (30, 2e-3, "constant", 0)


def test_file_and_command_line_win_key_by_key():
    cfg = resolved({"task": "arith-chat", "lr_schedule": {"min_lr": 1e-5}, "epochs": 3}, sets=["lr=1e-3"])
    assert (cfg.epochs, cfg.lr, cfg.seed) == (3, 1e-3, 1)
    assert (cfg.lr_schedule.name, cfg.lr_schedule.warmup_steps, cfg.lr_schedule.min_lr) == ("cosine", 50, 1e-5)
    assert resolved({"task": "burgers"}, epochs=4).epochs == 4
    assert resolved({"task": "burgers"}, sets=["task=arith-chat"]).seed == 1  # the task named last decides


def test_a_task_alone_is_the_example_config_that_passes_its_gate():
    """`task: arith-chat` trains exactly what examples/arith_chat.yaml trains (test_arith_chat's
    example test checks >= 80 % held-out accuracy; it reaches 99-100 %): every setting that shapes
    the weights is the same; only logging, the monitor's cadence and the gate differ."""
    example = yaml.safe_load((ROOT / "examples" / "arith_chat.yaml").read_text())
    shown = {"log_every_steps", "monitor", "eval"}
    a = {k: v for k, v in config.to_dict(resolved({"task": "arith-chat"})).items() if k not in shown}
    b = {k: v for k, v in config.to_dict(resolved(example)).items() if k not in shown}
    assert a == b


def test_a_users_task_declares_its_defaults_and_bad_ones_are_refused(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    cfg = resolved({"task": "test_task_defaults:TwoEpochBurgers", "lr": 1e-3})
    assert (cfg.epochs, cfg.lr, cfg.model["width"], cfg.data["n_train"]) == (2, 1e-3, 16, 64)
    with pytest.raises(UserError, match="its defaults must be a mapping of config keys, not list"):
        resolved({"task": "test_task_defaults:BadDefaults"})


def test_the_builtin_tasks_declare_the_table_and_help_shows_it(tmp_path, env):
    from trainkit.tasks.arith_chat import ArithChatTask

    assert ArithChatTask.defaults == ARITH_CHAT and BurgersTask.defaults == BURGERS
    out = trainkit("train", "--help", cwd=tmp_path, env=env).stdout
    assert "  burgers      epochs 30, lr 0.002\n" in out
    assert "  arith-chat   epochs 8, seed 1, batch_size 32, lr 0.002, lr_schedule.name cosine" in out


def test_a_pending_run_shows_its_tasks_epochs(tmp_path, env):
    for name, task in (("a", "arith-chat"), ("b", "burgers")):
        (tmp_path / "experiments" / name).mkdir(parents=True)
        (tmp_path / "experiments" / name / "config.yaml").write_text(f"task: {task}\n")
    import orjson

    rows = orjson.loads(trainkit("status", "--json", cwd=tmp_path, env=env).stdout)
    assert {r["name"]: r["total_epochs"] for r in rows} == {"a": 8, "b": 30}


@pytest.mark.slow
def test_task_arith_chat_alone_trains_and_records_its_defaults(tmp_path, env):
    """A config that says only `task: arith-chat`, trained for 1 of its 8 epochs (a minute for all
    8): the resolved config holds the task's settings and records them under _meta.task_defaults,
    and the loss falls (the whole run is the example's, whose test checks the 80 % gate)."""
    cfg = tmp_path / "only-task.yaml"
    cfg.write_text("task: arith-chat\n")
    run = tmp_path / "run"
    done = trainkit("train", cfg, "--run-dir", run, "--epochs", "1", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    res = read_json(run / "resolved_config.json")
    assert (res["epochs"], res["seed"], res["batch_size"], res["lr"]) == (1, 1, 32, 2e-3)
    assert res["lr_schedule"] == {"name": "cosine", "warmup_steps": 50, "min_lr": 1e-4}
    assert res["_meta"]["task_defaults"] == ARITH_CHAT
    losses = [r["loss"] for r in records(run, "step")]
    assert len(losses) == 25 and sum(losses[-5:]) < 0.5 * sum(losses[:5])  # 250 steps, a record every 10


@pytest.mark.slow
def test_a_users_task_defaults_are_recorded(tmp_path, env):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("task: test_task_defaults:TwoEpochBurgers\n")
    run = tmp_path / "run"
    done = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=eval_env(env))
    assert done.returncode == 0, done.stderr[-2000:]
    res = read_json(run / "resolved_config.json")
    assert res["epochs"] == 2 and res["lr"] == 5e-3 and res["_meta"]["task_defaults"] == TwoEpochBurgers.defaults
    assert read_json(run / "progress.json")["completed_epochs"] == 2
    # a resume reads resolved_config.json: the record stays what the run started from
    again = trainkit("train", run, "--epochs", "3", cwd=tmp_path, env=eval_env(env))
    assert again.returncode == 0, again.stderr[-2000:]
    assert read_json(run / "resolved_config.json")["_meta"]["task_defaults"] == TwoEpochBurgers.defaults
