"""The run's own model for ``trainkit eval``: ``checkpoints/best.pt`` (or another checkpoint of the
run, ``--model checkpoint:PATH``) loaded without executing code (``weights_only=True``) into the model
rebuilt from ``resolved_config.json`` (read, never executed) by the configured task (its profile
included: :mod:`trainkit.tasks.configured`), wrapped by the task's predictor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainkit.errors import UserError, first_line
from trainkit.evaluation.items import ModelFn
from trainkit.runfolder import RESOLVED_CONFIG_FILE, RunPaths
from trainkit.train.checkpoint import CheckpointError, load_weights
from trainkit.train.device import resolve_device


def checkpoint_predictor(run_dir: Path, config: dict, task: Any, *, device: str | None,
                         cache_dir: Path | None, path: Path | None = None) -> ModelFn:
    best = path or RunPaths(Path(run_dir)).best_ckpt
    name = config.get("task")
    make_predictor = getattr(task, "predictor", None)
    if make_predictor is None:
        raise UserError(f"task {name!r} has no predictor for its own model; give --model module:function")
    dev = resolve_device(device or config.get("device") or "auto")
    try:
        weights = load_weights(best)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    model_cfg, data_cfg = dict(config.get("model") or {}), dict(config.get("data") or {})
    build = getattr(task, "build_eval_model", None)
    if build is not None:
        model = build(model_cfg, data_cfg, cache_dir)
    else:
        model = task.build_model(model_cfg, task.build_data(data_cfg, cache_dir))
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError) as e:
        raise UserError(f"{best}: does not fit the model built from {RESOLVED_CONFIG_FILE} "
                        f"({first_line(e, lines=2, limit=200)})") from None
    model.to(dev).eval()
    fn = make_predictor(model, dev)
    if fn is None:
        raise UserError(f"task {name!r} has no predictor for its own model; give --model module:function")
    return fn
