"""The Python API does what the CLI does: the same config gives the same run folder."""

from __future__ import annotations

import orjson
import pytest
import torch
from helpers import TINY, eval_env, read_json, records, trainkit, write_config, write_jsonl

import trainkit as tk
from trainkit.errors import UserError

pytestmark = pytest.mark.slow


def comparable(run) -> dict:
    strip = lambda recs: [{k: v for k, v in r.items() if k not in ("t", "duration_s")} for r in recs]  # noqa: E731
    resolved = {k: v for k, v in read_json(run / "resolved_config.json").items() if k != "_meta"}
    weights = torch.load(run / "checkpoints/current.pt", weights_only=True)["model"]
    return {"steps": strip(records(run, "step")), "epochs": strip(records(run, "epoch")), "config": resolved,
            "progress": {k: v for k, v in read_json(run / "progress.json").items() if k != "updated_at"},
            "weights": {k: v.tolist() for k, v in weights.items()}}


def test_run_job_and_the_cli_give_the_same_run_folder(tmp_path, env, monkeypatch):
    cfg = write_config(tmp_path / "cfg.yaml", epochs=2)
    cli_run, api_run = tmp_path / "cli", tmp_path / "api"
    r = trainkit("train", cfg, "--run-dir", cli_run, "--set", "lr=0.003", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    monkeypatch.setenv("TRAINKIT_CACHE_DIR", env["TRAINKIT_CACHE_DIR"])
    result = tk.run_job(cfg, run_dir=api_run, overrides={"lr": 0.003})
    assert (result.state, result.exit_code, result.run_dir) == ("finished", 0, api_run)
    meta = read_json(api_run / "checkpoints/current.meta.json")
    assert (result.best_metric, result.best_value) == ("val_loss", meta["best_loss"])
    assert comparable(api_run) == comparable(cli_run)
    again = tk.run_job(cfg, run_dir=api_run, overrides={"lr": 0.003})  # complete: nothing to do
    assert again.state == "finished" and again.exit_code == 0
    mapping = tk.run_job({**TINY, "epochs": 2, "lr": 0.003}, run_dir=tmp_path / "mapping")
    assert mapping.state == "finished" and comparable(tmp_path / "mapping") == comparable(cli_run)
    with pytest.raises(UserError, match="unknown key 'lrr'"):
        tk.run_job(cfg, run_dir=tmp_path / "bad", overrides={"lrr": 1})


def test_evaluate_gives_what_the_cli_writes(tmp_path, env, monkeypatch):
    q = write_jsonl(tmp_path / "qs.jsonl", [{"id": i, "question": f"{i}+2", "answer": str(i + 2)} for i in range(6)])
    r = trainkit("eval", tmp_path / "cli", "--model", "eval_models:arith", "--questions", q, cwd=tmp_path,
                 env=eval_env(env))
    assert r.returncode == 0, r.stderr
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(eval_env(env)["PYTHONPATH"].split(":")[0]))
    ev = tk.evaluate(tmp_path / "api", model="eval_models:arith", questions=str(q))
    assert ev.exit_code == 0 and ev.summary["accuracy"] == 1.0 and ev.report["gates_passed"] is None  # no gates
    cli = read_json(tmp_path / "cli/evals/qs/test_summary.json")
    drop = ("duration_s", "mean_latency_s")
    assert {k: v for k, v in ev.summary.items() if k not in drop} == {k: v for k, v in cli.items() if k not in drop}
    assert orjson.dumps(ev.report)  # a plain, JSON-able result
