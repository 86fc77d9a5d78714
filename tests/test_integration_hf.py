"""The Hugging Face callback (trainkit.integrations.hf): a tiny Qwen2 model built from its config (no
download) trained by ``transformers.Trainer`` writes a run folder that ``trainkit status`` reads."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import ROOT, read_json, read_jsonl, records, trainkit, wait_for

from trainkit.testing import dead_pid

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HAVE_HF = all(importlib.util.find_spec(m) is not None for m in ("transformers", "accelerate"))
needs_hf = pytest.mark.skipif(not HAVE_HF, reason="transformers/accelerate not installed (pip install 'trainkit[hf]')")


def test_importing_trainkit_integrations_imports_no_framework():
    code = ("import sys, trainkit, trainkit.integrations, trainkit.integrations.common, trainkit.runfolder.writer, "
            "trainkit.status; "
            "bad = [m for m in ('transformers', 'lightning', 'pytorch_lightning', 'accelerate', 'torch') "
            "if m in sys.modules]; print(*bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------------------------------------
# a tiny model, data and trainer


STATUS_KEYS = {"version", "state", "pid", "host", "started_at", "heartbeat_at", "heartbeat_interval_s",
               "current_epoch", "total_epochs", "step", "steps_per_epoch", "loss", "lr", "throughput", "eta_s",
               "world_size", "device", "error", "stop_reason", "control", "alerts"}
PROGRESS_KEYS = {"version", "completed_epochs", "total_epochs", "progress_percentage", "early_stopped",
                 "early_stopped_at_epoch", "finished", "updated_at"}


class CharTokenizer:
    eos_token_id = 0
    chat_template = None

    def encode(self, text, add_special_tokens=False):
        return [1 + ord(c) % 99 for c in text]

    def decode(self, ids):
        return "".join(chr(96 + i % 26) for i in ids)


def tiny_model():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32))


def data(n=16, length=8):
    import torch

    g = torch.Generator().manual_seed(0)
    return [{"input_ids": (ids := torch.randint(1, 100, (length,), generator=g)), "labels": ids.clone()}
            for _ in range(n)]


def make_trainer(tmp_path, callbacks, *, trainer_cls=None, **over):
    from transformers import Trainer, TrainingArguments

    kw = {"output_dir": str(tmp_path / "out"), "num_train_epochs": 2, "per_device_train_batch_size": 4,
          "learning_rate": 1e-3, "logging_steps": 1, "save_strategy": "no", "report_to": "none", "use_cpu": True,
          "disable_tqdm": True, "seed": 0}
    kw.update(over)
    cls = trainer_cls or Trainer
    extra = {"eval_dataset": data(8)} if kw.get("eval_strategy", "no") != "no" else {}
    return cls(model=tiny_model(), args=TrainingArguments(**kw), train_dataset=data(), callbacks=callbacks, **extra)


def callback(run_dir, **kw):
    from trainkit.integrations.hf import TrainkitCallback

    kw.setdefault("heartbeat_s", 0.5)
    kw.setdefault("system_every_s", 0.1)
    kw.setdefault("control_every_s", 0.0)
    kw.setdefault("monitor", {"samples_every_steps": 0, "layers_every_steps": 2})
    return TrainkitCallback(run_dir, **kw)


def at_step(step, action, hook="on_step_end"):
    """A callback that runs ``action(state)`` once, at ``hook`` of global step ``step``."""
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        done = False

    def fire(self, args, state, control, **kwargs):
        if state.global_step == step and not self.done:
            self.done = True
            action(state)

    setattr(Probe, hook, fire)
    return Probe()


def status_of(root: Path, env: dict, name: str) -> dict:
    done = trainkit("status", root, "--json", cwd=root, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return next(r for r in json.loads(done.stdout) if r["name"] == name)


# ------------------------------------------------------------------------------------------------


@needs_hf
def test_run_folder_matches_the_contract_and_status_reads_it_running_then_finished(tmp_path, env):
    run = tmp_path / "runs" / "2026-12-02-hf"
    seen = {}
    probe = at_step(3, lambda state: seen.update(status_of(run.parent, env, run.name)))
    cb = callback(run)
    make_trainer(tmp_path, [cb, probe]).train()

    assert seen["state"] == "running", seen
    after = status_of(run.parent, env, run.name)
    assert (after["state"], after["progress_percentage"], after["completed_epochs"]) == ("finished", 100.0, 2)
    assert not [w for w in after.get("warnings", []) if "progress" in w]

    status = read_json(run / "training_status.json")
    assert STATUS_KEYS <= set(status)
    assert status["state"] == "finished" and status["error"] is None
    assert isinstance(status["current_epoch"], int) and status["current_epoch"] == 1
    assert isinstance(status["epoch_float"], float) and status["epoch_float"] == 2.0
    assert (status["step"], status["steps_per_epoch"], status["total_epochs"]) == (8, 4, 2)
    assert isinstance(status["loss"], float) and isinstance(status["lr"], float) and status["eta_s"] == 0.0
    progress = read_json(run / "progress.json")
    assert set(progress) == PROGRESS_KEYS
    assert (progress["completed_epochs"], progress["finished"], progress["progress_percentage"]) == (2, True, 100.0)
    resolved = read_json(run / "resolved_config.json")
    assert resolved["_meta"]["trainer"] == "hf" and resolved["epochs"] == 2
    assert resolved["model_config"]["hidden_size"] == 32 and "trainer_args" in resolved

    steps = records(run, "step")
    assert [r["step"] for r in steps] == list(range(8))
    for r in steps:
        assert {"kind", "epoch", "step", "loss", "lr", "grad_norm", "t"} <= set(r)
        assert isinstance(r["epoch"], int) and math.isfinite(r["loss"]) and r["grad_norm"] > 0
    assert [r["epoch"] for r in steps] == [0] * 4 + [1] * 4
    epochs = records(run, "epoch")
    assert [(r["epoch"], r["global_step"]) for r in epochs] == [(0, 4), (1, 8)]
    assert all(isinstance(r["train_loss"], float) for r in epochs)
    assert read_jsonl(run / "system.jsonl")  # the heartbeat's samples
    layers = read_jsonl(run / "layers.jsonl")
    assert [r["step"] for r in layers] == [0, 2, 4, 6] and layers[0]["layers"][0]["grad_norm"] is not None
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".trainkit.lock"]
    assert not (run / ".trainkit.lock").exists()  # released at the end


@needs_hf
@pytest.mark.parametrize("order", ["ours_first", "early_stopping_first"])
def test_early_stopping_reads_as_early_stopped_at_100_percent(tmp_path, env, order):
    from transformers import EarlyStoppingCallback

    run = tmp_path / "runs" / "es"
    ours, es = callback(run), EarlyStoppingCallback(early_stopping_patience=1)
    trainer = make_trainer(tmp_path, [ours, es] if order == "ours_first" else [es, ours], learning_rate=0.0,
                           num_train_epochs=5, eval_strategy="epoch", save_strategy="epoch",
                           load_best_model_at_end=True, metric_for_best_model="eval_loss", save_total_limit=1)
    trainer.train()

    progress = read_json(run / "progress.json")
    assert (progress["early_stopped"], progress["early_stopped_at_epoch"], progress["completed_epochs"],
            progress["progress_percentage"], progress["finished"]) == (True, 1, 2, 100.0, True)
    assert read_json(run / "training_status.json")["state"] == "early_stopped"
    row = status_of(run.parent, env, run.name)
    assert (row["state"], row["progress_percentage"], row["early_stopped_at_epoch"]) == ("early_stopped", 100.0, 1)
    epochs = records(run, "epoch")
    assert [r["epoch"] for r in epochs] == [0, 1] and all("val_loss" in r for r in epochs)


@needs_hf
def test_a_stop_request_stops_the_run_with_a_checkpoint(tmp_path, env):
    from trainkit.runfolder import control

    run = tmp_path / "runs" / "stop"
    probe = at_step(3, lambda state: control.request(run, "stop"))  # before ours: seen at this step
    make_trainer(tmp_path, [probe, callback(run)], save_strategy="steps", save_steps=100).train()

    status = read_json(run / "training_status.json")
    assert status["state"] == "stopped" and "stop requested" in status["stop_reason"]
    assert status["control"]["request"] == "stop" and status["step"] == 3
    assert (tmp_path / "out" / "checkpoint-3").is_dir()  # saved where it stopped, to resume from
    assert [r["step"] for r in records(run, "step")] == [0, 1, 2]
    assert not (run / "control.json").exists()
    assert status_of(run.parent, env, run.name)["state"] == "stopped"


@needs_hf
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
    probe = at_step(2, lambda state: (control.request(run, "pause"), helper.start()))
    make_trainer(tmp_path, [probe, callback(run)], save_strategy="steps", save_steps=100).train()
    helper.join(timeout=5)

    assert seen["row"]["state"] == "paused"
    status = read_json(run / "training_status.json")
    assert status["state"] == "finished" and status["control"]["request"] == "resume"
    assert (tmp_path / "out" / "checkpoint-2").is_dir()  # the pause's checkpoint
    assert [r["step"] for r in records(run, "step")] == list(range(8))


@needs_hf
def test_a_resumed_run_has_each_step_once(tmp_path, env):
    run = tmp_path / "runs" / "resume"

    def crash(state):
        raise RuntimeError("simulated crash")

    first = callback(run)
    trainer = make_trainer(tmp_path, [first, at_step(5, crash, hook="on_log")], save_strategy="steps", save_steps=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        first.run(trainer)
    status = read_json(run / "training_status.json")
    assert status["state"] == "failed" and "simulated crash" in status["error"]
    assert [r["step"] for r in records(run, "step")] == [0, 1, 2, 3, 4]

    second = callback(run)
    second.run(make_trainer(tmp_path, [second], save_strategy="steps", save_steps=3),
               resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-3"))
    assert second.runlog.trimmed >= 2
    assert [r["step"] for r in records(run, "step")] == list(range(8))
    assert [r["epoch"] for r in records(run, "epoch")] == [0, 1]
    assert [r["step"] for r in read_jsonl(run / "layers.jsonl")] == [0, 2, 4, 6]
    assert read_json(run / "training_status.json")["state"] == "finished"


@needs_hf
def test_inference_samples_appear(tmp_path):
    run = tmp_path / "runs" / "samples"
    cb = callback(run, tokenizer=CharTokenizer(), sample_prompts=["abc", {"prompt": "xy", "expected": "z"}],
                  monitor={"samples_every_steps": 3, "max_new_tokens": 4, "layers_every_steps": 0})
    make_trainer(tmp_path, [cb]).train()
    samples = read_jsonl(run / "samples.jsonl")
    assert [(s["step"], s["prompt"]) for s in samples] == [(0, "abc"), (0, "xy"), (3, "abc"), (3, "xy"),
                                                           (6, "abc"), (6, "xy")]
    assert all(isinstance(s["output"], str) and len(s["output"]) <= 4 for s in samples)
    assert samples[1]["expected"] == "z" and isinstance(samples[1]["correct"], bool)
    step3 = next(r for r in records(run, "step") if r["step"] == 3)
    assert "sample_accuracy" in step3


@needs_hf
def test_a_nan_loss_raises_the_alert_and_fails_the_run(tmp_path, env):
    from transformers import Trainer

    class NanAt2(Trainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            loss = super().compute_loss(model, inputs, *args, **kwargs)
            return loss * float("nan") if self.state.global_step == 2 else loss

    run = tmp_path / "runs" / "nan"
    make_trainer(tmp_path, [callback(run)], trainer_cls=NanAt2, logging_nan_inf_filter=False).train()
    alerts = read_jsonl(run / "alerts.jsonl")
    assert alerts[0]["kind"] == "nonfinite_loss" and alerts[0]["step"] == 2
    status = read_json(run / "training_status.json")
    assert status["state"] == "failed" and "nan" in status["error"].lower()
    assert status["alerts"][0]["kind"] == "nonfinite_loss" and status["step"] == 3
    row = status_of(run.parent, env, run.name)
    assert row["state"] == "failed" and row["alert"]


@pytest.mark.slow
@needs_hf
def test_the_example_script_runs_and_shows_up(tmp_path, env):
    run = tmp_path / "experiments" / "2026-12-02-example"
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "hf_tiny_qwen.py"), str(run)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = status_of(run.parent, env, run.name)
    assert (row["state"], row["progress_percentage"]) == ("finished", 100.0)
    assert read_json(run / "resolved_config.json")["_meta"]["relaunch"]["argv"][1].endswith("hf_tiny_qwen.py")


def test_a_foreign_run_is_judged_by_its_files_and_relaunched_only_as_recorded(tmp_path):
    """The run folder of another trainer (no epoch folders): ``trainkit status`` takes its
    progress.json as it is (no false repair), and ``trainkit launch`` starts it again only with the
    command it recorded. Torch-free: written through ForeignRun, the callbacks' shared part."""
    from trainkit import launcher, status
    from trainkit.integrations.common import ForeignRun, RunRefused

    def crashed_run(name, relaunch):
        log = ForeignRun(tmp_path / name, trainer="hf", heartbeat_s=0.5, relaunch=relaunch)
        log.begin({"trainer_args": {"lr": 0.1}}, total_epochs=3, steps_per_epoch=2, total_steps=6, batch_size=1,
                  global_step=0, epochs_done=0)
        for g in (1, 2):
            log.step_done(g, g / 2)
            assert log.log_step(g, g / 2, loss=1.0 / g, lr=0.1, grad_norm=1.0) is None
        log.epoch_end(0, global_step=2, lr=0.1)
        log.close()  # the process dies here: the state stays running
        return tmp_path / name

    plain, recorded = crashed_run("plain", False), crashed_run("recorded", True)
    row = status.run_status(plain, pid_alive=lambda pid, started: False, repair=True)
    assert (row.state, row.completed_epochs, row.total_epochs, row.progress_percentage) == ("crashed", 1, 3, 33.33)
    assert row.progress_source == "progress.json" and row.warnings == []
    assert read_json(plain / "progress.json")["completed_epochs"] == 1  # not "repaired" to 0

    why = launcher.relaunch_command(plain, sys.executable)
    assert isinstance(why, str) and "relaunch=True" in why
    argv, cwd = launcher.relaunch_command(recorded, sys.executable, recorded=True)
    assert argv[0] == sys.executable and cwd == os.getcwd()
    (tmp_path / "engine-run").mkdir()
    own_argv, own_cwd = launcher.relaunch_command(tmp_path / "engine-run", "python")
    assert own_argv[:5] == ["python", "-m", "trainkit", "train", str(tmp_path / "engine-run")] and own_cwd is None

    dead = read_json(plain / "training_status.json")  # the process that wrote it is gone
    dead["pid"] = dead_pid()
    (plain / "training_status.json").write_bytes(json.dumps(dead).encode())
    refused = ForeignRun(plain, trainer="hf", heartbeat_s=0.5)  # a new training from step 0 in the same folder
    with pytest.raises(RunRefused, match="holds another run.*fresh=True"):
        refused.begin({}, total_epochs=1, steps_per_epoch=2, total_steps=2, batch_size=1, global_step=0,
                      epochs_done=0)
    assert not (plain / ".trainkit.lock").exists()
    again = ForeignRun(plain, trainer="hf", heartbeat_s=0.5, fresh=True)  # asked: moved aside, never deleted
    again.begin({}, total_epochs=1, steps_per_epoch=2, total_steps=2, batch_size=1, global_step=0, epochs_done=0)
    again.close()
    assert again.moved_aside is not None and (again.moved_aside / "metrics.jsonl").stat().st_size > 0
    assert not (plain / "metrics.jsonl").exists() or (plain / "metrics.jsonl").stat().st_size == 0
