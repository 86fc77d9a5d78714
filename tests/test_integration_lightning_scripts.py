"""The Lightning callback and logger under the scripts users write from Lightning's own
documentation: a LightningModule that ``self.log``s its metrics, the usual ``Trainer`` options
(``accumulate_grad_batches``, ``val_check_interval < 1``, ``EarlyStopping``, ``ModelCheckpoint``),
``validate()``/``test()`` after ``fit()``, two experiments from one folder, an exception and a second
``fit()`` in the same process, and ``logger=TrainkitLogger()``. Each test is a user's complaint about
issue 23, section 1."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from helpers import read_json, records, trainkit

pytestmark = pytest.mark.skipif(importlib.util.find_spec("lightning") is None,
                                reason="lightning not installed (pip install 'trainkit[lightning]')")


def regressor(lr=1e-2, *, fail_at=None):
    import lightning as L
    import torch
    import torch.nn.functional as F

    class LitRegressor(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"lr": lr})
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
            self.micro: list[tuple[int, float]] = []  # (epoch, loss) of every batch, as training_step saw it

        def training_step(self, batch, batch_idx):
            if self.global_step == fail_at:
                raise RuntimeError("CUDA out of memory (simulated)")
            x, y = batch
            loss = F.mse_loss(self.net(x), y)
            self.micro.append((self.current_epoch, loss.item()))
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            self.log("batch_in_epoch", float(batch_idx), on_step=True, on_epoch=False)  # a step-only number
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.mse_loss(self.net(x), y))

        def test_step(self, batch, batch_idx):
            x, y = batch
            self.log("test_loss", F.mse_loss(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    return LitRegressor()


def loaders(n=24, batch_size=4):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(dim=1, keepdim=True).sin()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size), DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)


def trainer(tmp_path, callbacks=(), **over):
    import lightning as L

    kw = {"max_epochs": 2, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1, "logger": False,
          "enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False,
          "num_sanity_val_steps": 0, "default_root_dir": str(tmp_path / "out")}
    kw.update(over)
    return L.Trainer(callbacks=list(callbacks), **kw)


def callback(run_dir=None, **kw):
    from trainkit.integrations.lightning import TrainkitCallback

    kw.setdefault("heartbeat_s", 0.5)
    kw.setdefault("control_every_s", 0.0)
    kw.setdefault("monitor", {"samples_every_steps": 0, "layers_every_steps": 0})
    return TrainkitCallback(run_dir, **kw)


def status_of(run: Path, env: dict) -> dict:
    done = trainkit("status", run.parent, "--json", cwd=run.parent, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return next(r for r in json.loads(done.stdout) if r["name"] == run.name)


# ------------------------------------------------------------------------------------------------
# defect 1: gradient accumulation


@pytest.mark.parametrize("n", [1, 2, 3])
def test_the_recorded_loss_is_the_users_loss_under_gradient_accumulation(tmp_path, n):
    """accumulate_grad_batches=N: a step's loss is the mean of its N micro-batches' losses as
    training_step returned them (with N=1: exactly the train_loss_step the module logged)."""
    run = tmp_path / "runs" / f"accumulate-{n}"
    module = regressor()
    train, val = loaders()
    trainer(tmp_path, [callback(run)], accumulate_grad_batches=n).fit(module, train, val)

    windows = [module.micro[i:i + n] for i in range(0, len(module.micro), n)]
    expected = [sum(loss for _, loss in w) / n for w in windows]
    steps = records(run, "step")
    assert [r["step"] for r in steps] == list(range(12 // n))
    assert [r["loss"] for r in steps] == pytest.approx(expected, rel=1e-6)
    if n == 1:
        assert [r["loss"] for r in steps] == pytest.approx([r["logged"]["train_loss_step"] for r in steps], rel=1e-7)
    epochs = records(run, "epoch")
    assert [r["train_loss"] for r in epochs] == pytest.approx(
        [sum(expected[:len(expected) // 2]) / (len(expected) // 2), sum(expected[len(expected) // 2:]) /
         (len(expected) // 2)], rel=1e-6)


# ------------------------------------------------------------------------------------------------
# defects 4 and 5: a mid-epoch early stop; the epoch record's own keys


def test_an_early_stop_on_a_mid_epoch_validation_stops_in_the_epoch_it_happened(tmp_path, env):
    from lightning.pytorch.callbacks import EarlyStopping

    run = tmp_path / "runs" / "half-epochs"
    train, val = loaders()
    trainer(tmp_path, [callback(run), EarlyStopping(monitor="val_loss", patience=2)], val_check_interval=0.5,
            max_epochs=5).fit(regressor(lr=0.0), train, val)

    progress = read_json(run / "progress.json")
    assert (progress["early_stopped"], progress["early_stopped_at_epoch"], progress["progress_percentage"]) == \
        (True, 1, 100.0)
    status = read_json(run / "training_status.json")
    assert (status["state"], status["current_epoch"]) == ("early_stopped", 1)
    assert [r["epoch"] for r in records(run, "epoch")] == [0]  # epoch 1 was cut short: no record
    row = status_of(run, env)
    assert (row["state"], row["early_stopped_at_epoch"]) == ("early_stopped", 1)
    evals = records(run, "eval")  # the stopping validation is there, at its step
    assert [(r["global_step"], r["epoch"], r["split"]) for r in evals] == [(3, 0, "val"), (6, 0, "val"), (9, 1, "val")]


def test_epoch_records_keep_trainkits_keys_and_the_users_values_apart(tmp_path):
    """The module logs train_loss (on_step and on_epoch) and a step-only number: the epoch record's
    train_loss is trainkit's mean, the module's epoch value is under logged (this epoch's, not the
    previous one's), step-only numbers stay in the step records."""
    run = tmp_path / "runs" / "keys"
    module = regressor()
    train, val = loaders()
    trainer(tmp_path, [callback(run)], max_epochs=3).fit(module, train, val)

    steps, epochs = records(run, "step"), records(run, "epoch")
    for e, rec in enumerate(epochs):
        mine = [s["loss"] for s in steps if s["epoch"] == e]
        theirs = [loss for epoch, loss in module.micro if epoch == e]
        assert rec["train_loss"] == pytest.approx(sum(mine) / len(mine), rel=1e-12)
        assert rec["logged"]["train_loss_epoch"] == pytest.approx(sum(theirs) / len(theirs), rel=1e-6)
        assert "batch_in_epoch" not in rec and "batch_in_epoch" not in rec["logged"]
        assert "train_loss_step" not in rec["logged"] and isinstance(rec["val_loss"], float)
    assert [s["logged"]["batch_in_epoch"] for s in steps] == [float(i % 6) for i in range(18)]


# ------------------------------------------------------------------------------------------------
# defect 6: one run per experiment


def test_two_experiments_from_one_folder_are_two_runs(tmp_path, env, monkeypatch):
    from lightning.pytorch.loggers import CSVLogger

    monkeypatch.chdir(tmp_path)
    train, val = loaders()
    for lr in (1e-2, 1e-3):  # two experiments, the same script and folder, the logger's version_N
        trainer(tmp_path, [callback()], default_root_dir=str(tmp_path), logger=CSVLogger(tmp_path)).fit(
            regressor(lr), train, val)
    reused = callback()
    for _ in range(2):  # one callback object reused for a second Trainer
        trainer(tmp_path, [reused], default_root_dir=str(tmp_path)).fit(regressor(), train, val)

    runs = sorted((tmp_path / "experiments").iterdir(), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    assert [r.name.rsplit("-", 1)[1] for r in runs] == ["version_0", "version_1", "version_2", "version_3"]
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0", "version_1"]
    assert [read_json(r / "resolved_config.json")["hparams"]["lr"] for r in runs] == [1e-2, 1e-3, 1e-2, 1e-2]
    for run in runs:
        assert status_of(run, env)["state"] == "finished" and not (run / "superseded").exists()


# ------------------------------------------------------------------------------------------------
# defect 7: BEST


def test_best_is_the_model_checkpoints_best(tmp_path, env):
    from lightning.pytorch.callbacks import ModelCheckpoint

    run = tmp_path / "runs" / "best"
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", mode="min", save_top_k=1)
    train, val = loaders()
    trainer(tmp_path, [callback(run), saver], enable_checkpointing=True, max_epochs=3).fit(regressor(), train, val)

    meta = read_json(run / "checkpoints" / "current.meta.json")
    assert (meta["best_metric"], meta["best_mode"]) == ("val_loss", "min")
    assert meta["best_loss"] == pytest.approx(float(saver.best_model_score), rel=1e-7)
    assert meta["best_checkpoint"] == saver.best_model_path
    assert f"epoch={meta['best_epoch']}" in Path(saver.best_model_path).name
    row = status_of(run, env)
    assert row["best_metric"] == "val_loss" and row["best_value"] == meta["best_loss"]


# ------------------------------------------------------------------------------------------------
# defect 10: every scalar at its step; validate() and test() after fit()


def test_validate_and_test_after_fit_are_recorded(tmp_path):
    run = tmp_path / "runs" / "after"
    module = regressor()
    train, val = loaders()
    t = trainer(tmp_path, [callback(run)])
    t.fit(module, train, val)
    validated = t.validate(module, val, verbose=False)
    tested = t.test(module, val, verbose=False)

    evals = records(run, "eval")
    assert [(r["split"], r["global_step"]) for r in evals] == [("val", 6), ("val", 12), ("validate", 12), ("test", 12)]
    assert evals[2]["val_loss"] == pytest.approx(validated[0]["val_loss"], rel=1e-7)
    assert evals[3]["test_loss"] == pytest.approx(tested[0]["test_loss"], rel=1e-7)
    assert read_json(run / "training_status.json")["state"] == "finished"
    assert not (run / ".trainkit.lock").exists()


# ------------------------------------------------------------------------------------------------
# defect 3: an exception, then fit() again in the same process


def test_an_exception_fails_the_run_and_fit_again_is_a_new_attempt(tmp_path, env):
    run = tmp_path / "runs" / "again"
    cb = callback(run)
    train, val = loaders()
    with pytest.raises(RuntimeError, match="out of memory"):
        trainer(tmp_path, [cb]).fit(regressor(fail_at=3), train, val)
    status = read_json(run / "training_status.json")
    assert status["state"] == "failed" and "out of memory" in status["error"]
    assert not (run / ".trainkit.lock").exists()
    trainer(tmp_path, [cb]).fit(regressor(), train, val)
    assert status_of(run, env)["state"] == "finished"
    assert [r["step"] for r in records(run, "step")] == list(range(12))


# ------------------------------------------------------------------------------------------------
# defect 11: a Lightning logger


def test_the_trainkit_logger_alone_writes_the_run(tmp_path, env):
    from trainkit.integrations.lightning import TrainkitLogger

    run = tmp_path / "runs" / "logger"
    logger = TrainkitLogger(run, heartbeat_s=0.5, monitor={"layers_every_steps": 0})
    train, val = loaders()
    trainer(tmp_path, logger=logger).fit(regressor(lr=3e-2), train, val)

    assert logger.log_dir == str(run) and not (tmp_path / "out" / "trainkit").exists()
    row = status_of(run, env)
    assert (row["state"], row["progress_percentage"], row["completed_epochs"]) == ("finished", 100.0, 2)
    assert read_json(run / "resolved_config.json")["hparams"] == {"lr": 3e-2}
    assert [r["step"] for r in records(run, "step")] == list(range(12))
    assert [r["epoch"] for r in records(run, "epoch")] == [0, 1]
