"""The Lightning callback (trainkit.integrations.lightning): a tiny LightningModule trained by
``lightning.Trainer`` writes a run folder that ``trainkit status`` reads."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import ROOT, read_json, read_jsonl, records, trainkit, wait_for

HAVE_LIGHTNING = importlib.util.find_spec("lightning") is not None
pytestmark = pytest.mark.skipif(not HAVE_LIGHTNING,
                                reason="lightning not installed (pip install 'trainkit[lightning]')")

STATUS_KEYS = {"version", "state", "pid", "host", "started_at", "heartbeat_at", "heartbeat_interval_s",
               "current_epoch", "total_epochs", "step", "steps_per_epoch", "loss", "lr", "throughput", "eta_s",
               "world_size", "device", "error", "stop_reason", "control", "alerts"}
PROGRESS_KEYS = {"version", "completed_epochs", "total_epochs", "progress_percentage", "early_stopped",
                 "early_stopped_at_epoch", "finished", "updated_at"}


def module(lr=1e-2, nan_at=None):
    import lightning as L
    import torch

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"lr": lr})
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
            self.embed = torch.nn.Embedding(100, 8)  # a tiny "language model" for the samples
            self.head = torch.nn.Linear(8, 100)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            return loss * float("nan") if self.global_step == nan_at else loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=lr)

        def generate(self, input_ids, max_new_tokens=4, logits_processor=None, **kwargs):
            ids = input_ids
            for _ in range(max_new_tokens):
                scores = self.head(self.embed(ids[:, -1]))
                for proc in logits_processor or []:
                    scores = proc(ids, scores)
                ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], dim=1)
            return ids

    torch.manual_seed(0)
    return Tiny()


def loaders(n=16, batch_size=4):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(dim=1, keepdim=True).sin()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size), DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)


def fit(tmp_path, callbacks, *, lr=1e-2, nan_at=None, ckpt_path=None, **over):
    import lightning as L

    kw = {"max_epochs": 2, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1, "logger": False,
          "enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False,
          "num_sanity_val_steps": 0, "default_root_dir": str(tmp_path / "out")}
    kw.update(over)
    trainer = L.Trainer(callbacks=callbacks, **kw)
    train, val = loaders()
    trainer.fit(module(lr, nan_at), train, val, ckpt_path=ckpt_path)
    return trainer


def callback(run_dir, **kw):
    from trainkit.integrations.lightning import TrainkitCallback

    kw.setdefault("heartbeat_s", 0.5)
    kw.setdefault("system_every_s", 0.1)
    kw.setdefault("control_every_s", 0.0)
    kw.setdefault("monitor", {"samples_every_steps": 0, "layers_every_steps": 2})
    return TrainkitCallback(run_dir, **kw)


def at_step(step, action):
    """A callback that runs ``action()`` once, at the end of global step ``step``."""
    from lightning.pytorch.callbacks import Callback

    class Probe(Callback):
        done = False

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == step and not self.done:
                self.done = True
                action()

    return Probe()


def status_of(root: Path, env: dict, name: str) -> dict:
    done = trainkit("status", root, "--json", cwd=root, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return next(r for r in json.loads(done.stdout) if r["name"] == name)


# ------------------------------------------------------------------------------------------------


def test_run_folder_matches_the_contract_and_status_reads_it_running_then_finished(tmp_path, env):
    run = tmp_path / "runs" / "2026-12-02-lightning"
    seen = {}
    fit(tmp_path, [callback(run), at_step(3, lambda: seen.update(status_of(run.parent, env, run.name)))])

    assert seen["state"] == "running", seen
    after = status_of(run.parent, env, run.name)
    assert (after["state"], after["progress_percentage"], after["completed_epochs"]) == ("finished", 100.0, 2)
    status = read_json(run / "training_status.json")
    assert STATUS_KEYS <= set(status)
    assert (status["state"], status["current_epoch"], status["step"], status["steps_per_epoch"],
            status["total_epochs"]) == ("finished", 1, 8, 4, 2)
    assert isinstance(status["epoch_float"], float) and status["eta_s"] == 0.0
    progress = read_json(run / "progress.json")
    assert set(progress) == PROGRESS_KEYS and progress["finished"] is True
    resolved = read_json(run / "resolved_config.json")
    assert resolved["_meta"]["trainer"] == "lightning" and resolved["hparams"] == {"lr": 0.01}
    steps = records(run, "step")
    assert [r["step"] for r in steps] == list(range(8)) and [r["epoch"] for r in steps] == [0] * 4 + [1] * 4
    assert all(math.isfinite(r["loss"]) and r["grad_norm"] > 0 and r["lr"] == 0.01 for r in steps)
    epochs = records(run, "epoch")
    assert [(r["epoch"], r["global_step"]) for r in epochs] == [(0, 4), (1, 8)]
    assert all(isinstance(r["val_loss"], float) and isinstance(r["train_loss"], float) for r in epochs)
    assert read_jsonl(run / "system.jsonl")
    assert [r["step"] for r in read_jsonl(run / "layers.jsonl")] == [0, 2, 4, 6]
    assert not (run / ".trainkit.lock").exists()


@pytest.mark.parametrize("order", ["ours_first", "early_stopping_first"])
def test_early_stopping_reads_as_early_stopped_at_100_percent(tmp_path, env, order):
    from lightning.pytorch.callbacks import EarlyStopping

    run = tmp_path / "runs" / "es"
    ours, es = callback(run), EarlyStopping(monitor="val_loss", patience=1)
    fit(tmp_path, [ours, es] if order == "ours_first" else [es, ours], lr=0.0, max_epochs=5)
    progress = read_json(run / "progress.json")
    assert (progress["early_stopped"], progress["early_stopped_at_epoch"], progress["completed_epochs"],
            progress["progress_percentage"]) == (True, 1, 2, 100.0)
    row = status_of(run.parent, env, run.name)
    assert (row["state"], row["progress_percentage"], row["early_stopped_at_epoch"]) == ("early_stopped", 100.0, 1)
    assert [r["epoch"] for r in records(run, "epoch")] == [0, 1]


def test_a_stop_request_stops_the_run_with_a_checkpoint(tmp_path, env):
    from trainkit.runfolder import control

    run = tmp_path / "runs" / "stop"
    ours = callback(run)
    trainer = fit(tmp_path, [at_step(3, lambda: control.request(run, "stop")), ours])
    status = read_json(run / "training_status.json")
    assert (status["state"], status["step"], status["control"]["request"]) == ("stopped", 3, "stop")
    assert [p.name for p in ours.checkpoints] == ["trainkit-step=3.ckpt"] and ours.checkpoints[0].is_file()
    assert trainer.global_step == 3 and records(run, "epoch") == []
    assert status_of(run.parent, env, run.name)["state"] == "stopped"


def test_pause_then_resume(tmp_path, env):
    from trainkit.runfolder import control

    run = tmp_path / "runs" / "pause"
    seen = {}

    def resume_when_paused():
        wait_for(lambda: (run / "training_status.json").exists()
                 and read_json(run / "training_status.json")["state"] == "paused", timeout=60, what="paused")
        seen["row"] = status_of(run.parent, env, run.name)
        control.request(run, "resume")

    helper = threading.Thread(target=resume_when_paused, daemon=True)
    ours = callback(run)
    fit(tmp_path, [at_step(2, lambda: (control.request(run, "pause"), helper.start())), ours])
    helper.join(timeout=5)
    assert seen["row"]["state"] == "paused"
    status = read_json(run / "training_status.json")
    assert (status["state"], status["control"]["request"]) == ("finished", "resume")
    assert [p.name for p in ours.checkpoints] == ["trainkit-step=2.ckpt"]  # the pause's checkpoint
    assert [r["step"] for r in records(run, "step")] == list(range(8))


def test_a_resumed_run_has_each_step_once(tmp_path, env):
    from lightning.pytorch.callbacks import ModelCheckpoint

    run = tmp_path / "runs" / "resume"
    ckpts = tmp_path / "ckpts"

    def crash():
        raise RuntimeError("simulated crash")

    saver = ModelCheckpoint(dirpath=ckpts, filename="{epoch}", save_top_k=-1, every_n_epochs=1,
                            save_on_train_epoch_end=True)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tmp_path, [callback(run), saver, at_step(6, crash)], enable_checkpointing=True)
    status = read_json(run / "training_status.json")
    assert status["state"] == "failed" and "simulated crash" in status["error"]
    assert [r["step"] for r in records(run, "step")] == list(range(6))

    fit(tmp_path, [callback(run)], ckpt_path=str(ckpts / "epoch=0.ckpt"))
    assert [r["step"] for r in records(run, "step")] == list(range(8))
    assert [r["epoch"] for r in records(run, "epoch")] == [0, 1]
    assert read_json(run / "training_status.json")["state"] == "finished"


class CharTokenizer:
    eos_token_id = None

    def encode(self, text, add_special_tokens=False):
        return [1 + ord(c) % 99 for c in text]

    def decode(self, ids):
        return "".join(chr(96 + i % 26) for i in ids)


def test_inference_samples_appear(tmp_path):
    run = tmp_path / "runs" / "samples"
    cb = callback(run, tokenizer=CharTokenizer(), sample_prompts=["abc", {"prompt": "xy", "expected": "z"}],
                  monitor={"samples_every_steps": 3, "max_new_tokens": 4, "layers_every_steps": 0})
    fit(tmp_path, [cb])
    samples = read_jsonl(run / "samples.jsonl")
    assert [(s["step"], s["prompt"]) for s in samples] == [(0, "abc"), (0, "xy"), (3, "abc"), (3, "xy"),
                                                           (6, "abc"), (6, "xy")]
    assert all(isinstance(s["output"], str) and len(s["output"]) == 4 for s in samples)
    assert "sample_accuracy" in next(r for r in records(run, "step") if r["step"] == 3)


def test_a_nan_loss_raises_the_alert_and_fails_the_run(tmp_path, env):
    run = tmp_path / "runs" / "nan"
    fit(tmp_path, [callback(run)], nan_at=2)
    alerts = read_jsonl(run / "alerts.jsonl")
    assert alerts[0]["kind"] == "nonfinite_loss" and alerts[0]["step"] == 2
    status = read_json(run / "training_status.json")
    assert status["state"] == "failed" and "nan" in status["error"].lower() and status["step"] == 3
    assert status_of(run.parent, env, run.name)["state"] == "failed"


@pytest.mark.slow
def test_the_example_script_runs_and_shows_up(tmp_path, env):
    run = tmp_path / "experiments" / "2026-12-02-example"
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "lightning_tiny.py"), str(run)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = status_of(run.parent, env, run.name)
    assert (row["state"], row["progress_percentage"]) == ("finished", 100.0)
