"""The Hugging Face callback under the scripts users write from the Trainer's own documentation: a
tiny Qwen3 built from its config (no download), the usual ``TrainingArguments`` (``max_steps``
shorter than an epoch, evaluation every N steps, the best model loaded at the end, a streaming
``IterableDataset``, ``resume_from_checkpoint``), ``evaluate()``/``predict()`` after ``train()``,
a notebook that runs a cell again after an exception, and ``report_to="trainkit"``. Each test is a
user's complaint about issue 23, section 1."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, read_json, records, trainkit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = [pytest.mark.slow,  # each test trains a real model (a user's Trainer script)
              pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("transformers", "accelerate")),
                                 reason="transformers/accelerate not installed (pip install '.[hf]')")]


# ------------------------------------------------------------------------------------------------
# what a user's script has: a model from a config, token rows, TrainingArguments


def tiny_qwen():
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    return Qwen3ForCausalLM(Qwen3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                        max_position_embeddings=32))


def rows(n, *, seed=0, length=8):
    import torch

    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": (ids := torch.randint(1, 64, (length,), generator=g)), "labels": ids.clone()}
            for _ in range(n)]


def arguments(out, **over):
    from transformers import TrainingArguments

    kw = {"output_dir": str(out), "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
          "learning_rate": 5e-3, "logging_steps": 1, "save_strategy": "no", "report_to": "none", "use_cpu": True,
          "disable_tqdm": True, "seed": 0}
    kw.update(over)
    return TrainingArguments(**kw)


def callback(run_dir=None, **kw):
    from trainkit.integrations.hf import TrainkitCallback

    kw.setdefault("heartbeat_s", 0.5)
    kw.setdefault("control_every_s", 0.0)
    kw.setdefault("monitor", {"samples_every_steps": 0, "layers_every_steps": 0})
    return TrainkitCallback(run_dir, **kw)


def at_step(step, action, hook="on_step_end"):
    """A callback of the user's that runs ``action(state)`` once, at ``hook`` of global step ``step``."""
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        done = False

    def fire(self, args, state, control, **kwargs):
        if state.global_step == step and not self.done:
            self.done = True
            action(state)

    setattr(Probe, hook, fire)
    return Probe()


def status_of(run: Path, env: dict) -> dict:
    done = trainkit("status", run.parent, "--json", cwd=run.parent, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return next(r for r in json.loads(done.stdout) if r["name"] == run.name)


def crash(state):
    raise RuntimeError("CUDA out of memory (simulated)")


# ------------------------------------------------------------------------------------------------
# defects 2 and 7: evaluations off an epoch end, the best


def test_a_max_steps_run_records_every_evaluation_at_its_step_and_the_trainers_best(tmp_path, env):
    """The usual LLM fine-tune: max_steps shorter than an epoch, evaluation every 2 steps, the best
    model loaded at the end. Every evaluation is in the folder at its step, as in log_history, and
    BEST is the Trainer's best, with its checkpoint."""
    from transformers import Trainer

    run = tmp_path / "experiments" / "2026-12-02-sft"
    args = arguments(tmp_path / "out", max_steps=6, eval_strategy="steps", eval_steps=2, save_strategy="steps",
                     save_steps=2, load_best_model_at_end=True, metric_for_best_model="eval_loss")
    trainer = Trainer(model=tiny_qwen(), args=args, train_dataset=rows(64), eval_dataset=rows(8, seed=1),
                      callbacks=[callback(run)])
    trainer.train()

    hf = [(h["step"], h["eval_loss"]) for h in trainer.state.log_history if "eval_loss" in h]
    assert len(hf) == 3
    assert [(r["global_step"], r["val_loss"]) for r in records(run, "eval")] == hf
    assert [r["step"] for r in records(run, "eval")] == [1, 3, 5]  # 0-based, as the step records
    meta = read_json(run / "checkpoints" / "current.meta.json")
    assert (meta["best_metric"], meta["best_loss"], meta["best_mode"]) == ("val_loss", trainer.state.best_metric, "min")
    assert meta["best_checkpoint"] == trainer.state.best_model_checkpoint
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{meta['best_step'] + 1}")
    row = status_of(run, env)
    assert (row["state"], row["best_metric"], row["best_value"]) == ("finished", "val_loss", trainer.state.best_metric)


def test_every_evaluation_of_an_epoch_is_kept_and_the_epoch_shows_its_last(tmp_path):
    from transformers import Trainer

    run = tmp_path / "runs" / "each-step"
    args = arguments(tmp_path / "out", num_train_epochs=2, eval_strategy="steps", eval_steps=1)
    trainer = Trainer(model=tiny_qwen(), args=args, train_dataset=rows(16), eval_dataset=rows(4, seed=1),
                      callbacks=[callback(run)])
    trainer.train()

    evals = {r["global_step"]: r["val_loss"] for r in records(run, "eval")}
    assert sorted(evals) == list(range(1, 9))
    epochs = records(run, "epoch")
    assert [(r["epoch"], r["val_loss"]) for r in epochs] == [(0, evals[4]), (1, evals[8])]


# ------------------------------------------------------------------------------------------------
# defect 3: notebooks


def test_a_notebook_cell_run_again_after_an_exception_is_a_new_attempt(tmp_path, env):
    """In a kernel: a plain trainer.train() raises (the user's bug, 3 steps in). The run reads
    failed with the error and its lock is free; running the cell again (a new Trainer) trains the
    same run to the end, each step once."""
    from transformers import Trainer

    run = tmp_path / "runs" / "notebook"
    args = arguments(tmp_path / "out", num_train_epochs=2)
    first = Trainer(model=tiny_qwen(), args=args, train_dataset=rows(16), callbacks=[callback(run), at_step(3, crash)])
    with pytest.raises(RuntimeError, match="out of memory"):
        first.train()
    status = read_json(run / "training_status.json")
    assert status["state"] == "failed" and "out of memory" in status["error"]
    assert not (run / ".trainkit.lock").exists()
    assert status_of(run, env)["state"] == "failed"

    again = Trainer(model=tiny_qwen(), args=args, train_dataset=rows(16), callbacks=[callback(run)])
    again.train()  # the same cell, run again: not LockHeld by the kernel's own pid
    assert read_json(run / "training_status.json")["state"] == "finished"
    assert [r["step"] for r in records(run, "step")] == list(range(8))
    assert not (run / "superseded").exists()

    with pytest.raises(RuntimeError, match="holds another run.*fresh=True"):  # a finished run is never overwritten
        Trainer(model=tiny_qwen(), args=args, train_dataset=rows(16), callbacks=[callback(run)]).train()
    assert read_json(run / "training_status.json")["state"] == "finished"


def test_the_same_trainer_trained_again_after_an_exception(tmp_path):
    from transformers import Trainer

    run = tmp_path / "runs" / "same"
    trainer = Trainer(model=tiny_qwen(), args=arguments(tmp_path / "out", max_steps=5), train_dataset=rows(16),
                      callbacks=[callback(run), at_step(2, crash)])
    with pytest.raises(RuntimeError):
        trainer.train()
    assert read_json(run / "training_status.json")["state"] == "failed"
    trainer.train()
    assert read_json(run / "training_status.json")["state"] == "finished"
    assert [r["step"] for r in records(run, "step")] == list(range(5))


def test_the_callback_attached_twice_writes_the_run_once(tmp_path, monkeypatch):
    """``report_to="trainkit"`` and ``callbacks=[TrainkitCallback()]`` in one Trainer."""
    from transformers import Trainer

    import trainkit.integrations.hf  # noqa: F401

    monkeypatch.chdir(tmp_path)
    args = arguments(tmp_path / "out", max_steps=4, report_to="trainkit", run_name="twice")
    Trainer(model=tiny_qwen(), args=args, train_dataset=rows(16), callbacks=[callback()]).train()
    (run,) = (tmp_path / "experiments").iterdir()
    assert run.name.endswith("-twice")
    assert [r["step"] for r in records(run, "step")] == [0, 1, 2, 3]
    assert read_json(run / "training_status.json")["state"] == "finished"


def test_the_callback_takes_the_lock_before_it_touches_a_file(tmp_path):
    """Another process trains this run: its status write is in flight (a temp file). A second
    training pointed at the same folder is refused with one line and touches nothing."""
    from transformers import Trainer

    run = tmp_path / "runs" / "busy"
    run.mkdir(parents=True)
    in_flight = run / ".training_status.json.0a1b2c3d.tmp"
    in_flight.write_text("{")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from trainkit.runfolder.lock import RunLock; "
                               "RunLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(120)",
                               str(run / ".trainkit.lock")], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in run.iterdir())
        trainer = Trainer(model=tiny_qwen(), args=arguments(tmp_path / "out", max_steps=2), train_dataset=rows(8),
                          callbacks=[callback(run)])
        with pytest.raises(RuntimeError, match=f"locked by pid {holder.pid}") as refused:
            trainer.train()
        assert "\n" not in str(refused.value)
        assert in_flight.exists() and sorted(p.name for p in run.iterdir()) == before
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------------------------------
# defects 8 and 9: the epoch's steps, unknown totals


def test_steps_per_epoch_are_the_dataloaders_and_a_resume_keeps_an_unfinished_epoch_unfinished(tmp_path, env):
    """44 rows in batches of 4 are 11 steps per epoch; max_steps=12 (two epochs, the second cut
    short). Killed after the checkpoint of step 10 (epoch 0.91), then resumed: epoch 0 is not
    complete until its 11th step."""
    from transformers import Trainer

    run = tmp_path / "runs" / "resume"
    args = arguments(tmp_path / "out", max_steps=12, save_strategy="steps", save_steps=10)
    seen = {}
    probe = at_step(5, lambda state: seen.update(status=read_json(run / "training_status.json")))
    with pytest.raises(RuntimeError):
        Trainer(model=tiny_qwen(), args=args, train_dataset=rows(44),
                callbacks=[callback(run), probe, at_step(10, crash, hook="on_save")]).train()
    assert (seen["status"]["steps_per_epoch"], seen["status"]["total_epochs"]) == (11, 2)

    def look(state):
        seen.update(progress=read_json(run / "progress.json"), row=status_of(run, env))

    Trainer(model=tiny_qwen(), args=args, train_dataset=rows(44), callbacks=[callback(run), at_step(11, look)]).train(
        resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-10"))
    assert seen["progress"]["completed_epochs"] == 0 and seen["progress"]["progress_percentage"] == 0.0
    assert (seen["row"]["completed_epochs"], seen["row"]["progress_percentage"]) == (0, 0.0)
    assert [(r["epoch"], r["global_step"]) for r in records(run, "epoch")] == [(0, 11)]
    assert read_json(run / "progress.json")["finished"] is True


def test_a_streaming_dataset_shows_its_steps_never_a_sentinel(tmp_path, env):
    import torch
    from torch.utils.data import IterableDataset
    from transformers import Trainer

    class Stream(IterableDataset):
        def __iter__(self):
            g = torch.Generator().manual_seed(0)
            while True:
                ids = torch.randint(1, 64, (8,), generator=g)
                yield {"input_ids": ids, "labels": ids.clone()}

    run = tmp_path / "runs" / "stream"
    seen = {}
    probe = at_step(3, lambda state: seen.update(row=status_of(run, env),
                                                 status=read_json(run / "training_status.json")))
    Trainer(model=tiny_qwen(), args=arguments(tmp_path / "out", max_steps=6), train_dataset=Stream(),
            callbacks=[callback(run), probe]).train()
    assert (seen["status"]["total_epochs"], seen["status"]["steps_per_epoch"]) == (1, 6)
    assert seen["row"]["total_epochs"] == 1
    assert read_json(run / "progress.json")["total_epochs"] == 1
    assert read_json(run / "resolved_config.json")["epochs"] == 1
    row = status_of(run, env)
    assert (row["state"], row["total_epochs"], row["progress_percentage"]) == ("finished", 1, 100.0)


# ------------------------------------------------------------------------------------------------
# defect 10: every scalar at its step, resumed epochs whole, evaluate()/predict() after train()


def test_a_mid_epoch_resume_keeps_the_epochs_earlier_losses_in_its_mean(tmp_path):
    from transformers import Trainer

    run = tmp_path / "runs" / "mean"
    args = arguments(tmp_path / "out", num_train_epochs=2, save_strategy="steps", save_steps=2)
    with pytest.raises(RuntimeError):
        Trainer(model=tiny_qwen(), args=args, train_dataset=rows(16),
                callbacks=[callback(run), at_step(3, crash)]).train()
    Trainer(model=tiny_qwen(), args=args, train_dataset=rows(16), callbacks=[callback(run)]).train(
        resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    steps = records(run, "step")
    assert [r["step"] for r in steps] == list(range(8))
    epoch0 = records(run, "epoch")[0]
    losses = [r["loss"] for r in steps if r["epoch"] == 0]
    assert epoch0["train_loss"] == pytest.approx(sum(losses) / 4, rel=1e-12)


def test_every_number_logged_is_recorded_at_its_step_and_evaluations_after_train_too(tmp_path):
    from transformers import Trainer

    class MyTrainer(Trainer):  # a user's own numbers, logged the Trainer's way
        def training_step(self, model, inputs, *args, **kwargs):
            loss = super().training_step(model, inputs, *args, **kwargs)
            if self.state.global_step % 2 == 1:
                self.log({"tokens_seen": float(8 * 4 * (self.state.global_step + 1))})
            return loss

    run = tmp_path / "runs" / "logged"
    trainer = MyTrainer(model=tiny_qwen(), args=arguments(tmp_path / "out", max_steps=4), train_dataset=rows(16),
                        eval_dataset=rows(4, seed=1), callbacks=[callback(run)])
    trainer.train()
    metrics = trainer.evaluate()
    predicted = trainer.predict(rows(4, seed=2))

    logged = records(run, "log")
    mine = [(r["global_step"], r["logged"]["tokens_seen"]) for r in logged if "tokens_seen" in r["logged"]]
    hf = [(h["step"], h["tokens_seen"]) for h in trainer.state.log_history if "tokens_seen" in h]
    assert mine == hf and len(mine) == 2
    summary = next(r for r in logged if "train_loss" in r["logged"])
    assert summary["global_step"] == 4 and summary["logged"]["train_runtime"] > 0
    evals = records(run, "eval")
    assert [(r["split"], r["global_step"]) for r in evals] == [("eval", 4), ("test", 4)]
    assert evals[0]["val_loss"] == metrics["eval_loss"] and evals[1]["test_loss"] == predicted.metrics["test_loss"]
    assert not (run / ".trainkit.lock").exists()
    assert read_json(run / "training_status.json")["state"] == "finished"


# ------------------------------------------------------------------------------------------------
# defects 6 and 11: one run per experiment; one import and one argument


def test_report_to_trainkit_writes_a_run_per_run_name(tmp_path, env):
    """The two lines a user copies: ``import trainkit.integrations.hf`` and ``report_to="trainkit"``."""
    script = tmp_path / "sft.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import trainkit.integrations.hf  # noqa: F401
from transformers import Trainer, TrainingArguments
from test_integration_hf_scripts import rows, tiny_qwen

args = TrainingArguments(output_dir="out", run_name=sys.argv[1], max_steps=3, per_device_train_batch_size=4,
                         logging_steps=1, report_to="trainkit", use_cpu=True, disable_tqdm=True)
Trainer(model=tiny_qwen(), args=args, train_dataset=rows(16)).train()
""")
    for name in ("lr-a", "lr-b"):
        done = subprocess.run([sys.executable, str(script), name], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    runs = sorted((tmp_path / "experiments").iterdir())
    assert [r.name.split("-", 3)[-1] for r in runs] == ["lr-a", "lr-b"]
    for run in runs:
        assert status_of(run, env)["state"] == "finished"
        assert read_json(run / "resolved_config.json")["_meta"]["trainer"] == "hf"

    again = subprocess.run([sys.executable, str(script), "lr-a"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)  # the same run name from step 0: never moved aside silently
    assert again.returncode != 0 and "holds another run" in again.stderr and "fresh=True" in again.stderr
    assert not (runs[0] / "superseded").exists() and status_of(runs[0], env)["state"] == "finished"
