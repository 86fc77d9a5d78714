"""The training monitor: alert rules (pure), and real runs with samples, a NaN, a spike, layer
health, and a resume that keeps the monitor's files free of duplicates."""

from __future__ import annotations

import math
import signal

import orjson
import pytest
import torch
from helpers import count_lines, eval_env, read_json, read_jsonl, start_trainkit, trainkit, wait_for, write_config

from trainkit.monitor import AlertRules, pattern_rate


def rules(**kw) -> AlertRules:
    return AlertRules(**{"spike_factor": 4.0, "window": 10, "grad_norm_max": 100.0, "throughput_drop": 0.25,
                         "stall_s": 60.0, **kw})


@pytest.mark.parametrize("losses,kinds", [
    ([1.0] * 10, []),
    ([1.0] * 10 + [float("nan")], ["nonfinite_loss"]),
    ([1.0] * 10 + [float("inf")], ["nonfinite_loss"]),
    ([1.0] * 10 + [5.0], ["loss_spike"]),
    ([1.0] * 10 + [5.0, 6.0, 7.0], ["loss_spike"]),  # one alert per spike, not per step of it
    ([1.0] * 10 + [5.0, 1.0, 5.0], ["loss_spike", "loss_spike"]),
    ([1.0] * 3 + [50.0], []),  # too little history to call anything a spike
])
def test_loss_rules(losses, kinds):
    r = rules()
    found = [a.kind for i, v in enumerate(losses) for a in r.on_step(i, v, None, None)]
    assert found == kinds


def test_gradient_throughput_and_stall_rules():
    r = rules()
    assert [a.kind for a in r.on_step(1, 1.0, 1e6, None)] == ["exploding_gradients"]
    assert [a.kind for a in r.on_step(2, 1.0, float("nan"), None)] == ["exploding_gradients"]
    for i in range(10):
        assert r.on_step(3 + i, 1.0, 1.0, 100.0) == []
    assert [a.kind for a in r.on_step(20, 1.0, 1.0, 10.0)] == ["throughput_collapse"]
    assert r.stalled(5, 59.0) is None and r.stalled(5, 61.0).kind == "stall"


def test_pattern_rate():
    assert pattern_rate([True, False, None, True]) == pytest.approx(2 / 3)
    assert pattern_rate([None, None]) is None


# --- real runs ----------------------------------------------------------------------------------

pytestmark_slow = pytest.mark.slow


def monitor_run(tmp_path, env, name: str, task: str, *, extra_env: dict | None = None, **over):
    cfg = write_config(tmp_path / f"{name}.yaml", task=task, model={}, data={}, epochs=2, batch_size=16,
                       **over)
    run = tmp_path / name
    r = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=eval_env(env, **(extra_env or {})))
    return run, r


@pytest.mark.slow
def test_samples_leave_training_bit_identical_and_are_recorded(tmp_path, env):
    on, r1 = monitor_run(tmp_path, env, "on", "monitor_tasks:sampling_task", seed=3,
                         monitor={"samples_every_steps": 3, "layers_every_steps": 4})
    off, r2 = monitor_run(tmp_path, env, "off", "monitor_tasks:sampling_task", seed=3,
                          monitor={"samples_every_steps": 0, "layers_every_steps": 0})
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    a = torch.load(on / "checkpoints/current.pt", weights_only=True)["model"]
    b = torch.load(off / "checkpoints/current.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # samples changed nothing in training
    samples = read_jsonl(on / "samples.jsonl")
    assert samples and {s["step"] % 3 for s in samples} == {0}
    assert samples[0].keys() >= {"step", "epoch", "prompt", "output", "expected", "correct", "pattern_ok", "t"}
    assert [s["correct"] for s in samples[:2]] == [True, False]
    steps = {r["step"]: r for r in read_jsonl(on / "metrics.jsonl") if r["kind"] == "step"}
    assert steps[3]["sample_accuracy"] == 0.5 and all("grad_norm" in r for r in steps.values())
    layers = read_jsonl(on / "layers.jsonl")
    assert layers and {x["step"] % 4 for x in layers} == {0}
    names = [x["name"] for x in layers[0]["layers"]]
    assert names == ["net.0", "net.3", "net.6"]  # the Linear layers (GELU and Dropout own no parameters)
    assert all(x["grad_norm"] > 0 and x["weight_norm"] > 0 and 0 < x["update_ratio"] < 1 for x in layers[0]["layers"])
    assert not (off / "samples.jsonl").exists() or read_jsonl(off / "samples.jsonl") == []


@pytest.mark.slow
def test_an_injected_nan_raises_the_alert_and_fails_the_run(tmp_path, env):
    run, r = monitor_run(tmp_path, env, "nan", "monitor_tasks:nan_task", extra_env={"MONITOR_NAN_AT": "5"})
    assert r.returncode == 1
    status = read_json(run / "training_status.json")
    assert status["state"] == "failed" and "loss is nan at step 5" in status["error"]
    alerts = read_jsonl(run / "alerts.jsonl")
    # the loss, and the gradients it made (NaN too), at step 5; then the run stopped
    assert [(a["kind"], a["step"]) for a in alerts] == [("nonfinite_loss", 5), ("exploding_gradients", 5)]
    assert status["alerts"][0]["kind"] == "nonfinite_loss"
    assert not any(math.isnan(p.float().sum()) for p in
                   torch.load(run / "checkpoints/current.pt", weights_only=True)["model"].values()) \
        if (run / "checkpoints/current.pt").exists() else True
    out = trainkit("status", tmp_path, "--json", cwd=tmp_path, env=env)
    row = [x for x in orjson.loads(out.stdout) if x["name"] == "nan"][0]
    assert row["state"] == "failed" and "gradient norm nan" in row["alert"]  # the latest alert
    table = trainkit("status", tmp_path, cwd=tmp_path, env=env).stdout
    assert "⚠ nan" in table and "loss is nan at step 5" in table


@pytest.mark.slow
def test_a_spike_raises_the_spike_alert_and_training_goes_on(tmp_path, env):
    run, r = monitor_run(tmp_path, env, "spike", "monitor_tasks:spike_task", extra_env={"MONITOR_SPIKE_AT": "12"})
    assert r.returncode == 0, r.stderr
    alerts = read_jsonl(run / "alerts.jsonl")
    assert [(a["kind"], a["step"]) for a in alerts] == [("loss_spike", 12)]
    assert alerts[0]["value"] > alerts[0]["threshold"] > 0
    assert read_json(run / "training_status.json")["state"] == "finished"


@pytest.mark.slow
def test_resume_keeps_the_monitor_files_free_of_duplicates(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml", task="monitor_tasks:sampling_task", model={}, data={}, epochs=3,
                       batch_size=8, checkpoint={"every_steps": 5},
                       monitor={"samples_every_steps": 1, "layers_every_steps": 1})
    run = tmp_path / "run"
    held = tmp_path / "held"  # the task waits in its training step 23 (checkpoint at 20) until killed
    e = eval_env(env, MONITOR_HOLD_AT="23", MONITOR_HOLD_FILE=str(held))
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=e)
    try:
        wait_for(held.exists, timeout=120, what="the run to reach step 23")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = read_json(run / "checkpoints/current.meta.json")["global_step"]
    assert count_lines(run / "layers.jsonl", b'"layers"') > saved  # records past the checkpoint exist
    again = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=e)
    assert again.returncode == 0, again.stderr
    total = read_json(run / "checkpoints/current.meta.json")["global_step"]
    assert [x["step"] for x in read_jsonl(run / "layers.jsonl")] == list(range(total))
    samples = read_jsonl(run / "samples.jsonl")
    assert [(s["step"], s["prompt"]) for s in samples] == [(i, p) for i in range(total) for p in ("1", "2")]


def test_the_gradient_norm_is_clip_grad_norms_and_carries_a_non_finite_gradient():
    from trainkit.monitor import grad_norm, grad_norm_of

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    torch.nn.functional.mse_loss(model(torch.randn(8, 16)), torch.randn(8, 4)).backward()
    params = list(model.parameters())
    expected = float(torch.nn.utils.clip_grad_norm_(params, float("inf")))
    assert grad_norm_of(params) == pytest.approx(expected, rel=1e-6) and grad_norm(params) == pytest.approx(expected)
    assert grad_norm([torch.nn.Parameter(torch.zeros(3))]) == 0.0  # no gradient at all
    params[0].grad[0, 0] = float("inf")
    assert grad_norm(params) == float("inf")
    params[0].grad[0, 0] = float("nan")
    assert math.isnan(grad_norm(params))


@pytest.mark.slow
def test_each_step_records_the_norm_of_that_steps_gradients(tmp_path, env):
    """The same training with clipping that never clips (the norm comes from clip_grad_norm_) and
    without clipping (the engine's own norm, taken before the optimizer step): the same numbers."""
    runs = []
    for name, over in (("clipped", {"grad_clip": 1e9}), ("own", {})):
        cfg = write_config(tmp_path / f"{name}.yaml", seed=4, log_every_steps=1, **over)
        runs.append((tmp_path / name, trainkit("train", cfg, "--run-dir", tmp_path / name, cwd=tmp_path, env=env)))
    (clipped, r1), (own, r2) = runs
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    a = [r["grad_norm"] for r in read_jsonl(clipped / "metrics.jsonl") if r["kind"] == "step"]
    b = [r["grad_norm"] for r in read_jsonl(own / "metrics.jsonl") if r["kind"] == "step"]
    assert len(a) == len(b) > 10 and all(x > 0 for x in a)
    assert b == pytest.approx(a, rel=1e-5)


@pytest.mark.slow
def test_the_throughput_is_the_steps_rate_whatever_the_epochs_end_takes(tmp_path, env):
    """Validation (here 1 s an epoch against 0.5 s of steps) is not a slower step: the throughput in
    training_status.json is measured over the steps (it read half of it, each epoch's end counted
    in), and no alert says it collapsed."""
    cfg = write_config(tmp_path / "slow.yaml", task="monitor_tasks:slow_validation_task", model={}, data={},
                       epochs=4, batch_size=8)
    r = trainkit("train", cfg, "--run-dir", tmp_path / "slow", cwd=tmp_path, env=eval_env(env))
    assert r.returncode == 0, r.stderr
    steps = [x for x in read_jsonl(tmp_path / "slow" / "metrics.jsonl") if x["kind"] == "step"]
    assert len(steps) == 4 * 16
    alerts = read_jsonl(tmp_path / "slow" / "alerts.jsonl") if (tmp_path / "slow" / "alerts.jsonl").exists() else []
    assert [a for a in alerts if a["kind"] == "throughput_collapse"] == []
    status = read_json(tmp_path / "slow" / "training_status.json")
    assert status["throughput"] > 8 / 0.03 * 0.5  # steps of 30 ms, batches of 8: about 266 samples/s
