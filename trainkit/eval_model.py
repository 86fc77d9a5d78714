"""The run's own model for ``trainkit eval``: ``checkpoints/best.pt`` loaded without executing code
(``weights_only=True``) into the model rebuilt from ``resolved_config.json`` (read, never executed),
wrapped by the task's predictor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainkit.checkpoint import CHECKPOINT_VERSION
from trainkit.config import ConfigError
from trainkit.device import resolve_device
from trainkit.eval_items import ModelFn
from trainkit.runfolder import RunPaths


def _first_line(e: BaseException) -> str:
    """The class and the first two lines of an error (torch puts the detail on the second)."""
    text = " ".join(line.strip() for line in str(e).strip().splitlines()[:2] if line.strip()) or "no detail"
    text = f"{e.__class__.__name__}: {text}"
    return text if len(text) <= 200 else text[:197] + "..."


def checkpoint_predictor(run_dir: Path, config: dict, task: Any, *, device: str | None,
                         cache_dir: Path | None) -> ModelFn:
    best = RunPaths(Path(run_dir)).best_ckpt
    name = config.get("task")
    make_predictor = getattr(task, "predictor", None)
    if make_predictor is None:
        raise ConfigError(f"task {name!r} has no predictor for its own model; give --model module:function")
    dev = resolve_device(device or config.get("device") or "auto")
    try:
        ck = torch.load(best, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged or foreign file: one line
        raise ConfigError(f"{best}: cannot load the model without executing code ({e.__class__.__name__}; "
                          "a damaged file, or not a trainkit checkpoint)") from None
    if not isinstance(ck, dict) or ck.get("format_version") != CHECKPOINT_VERSION or "model" not in ck:
        version = ck.get("format_version") if isinstance(ck, dict) else None
        raise ConfigError(f"{best}: not a trainkit best-model checkpoint of format {CHECKPOINT_VERSION} "
                          f"(format {version!r})")
    model_cfg, data_cfg = dict(config.get("model") or {}), dict(config.get("data") or {})
    build = getattr(task, "build_eval_model", None)
    if build is not None:
        model = build(model_cfg, data_cfg, cache_dir)
    else:
        model = task.build_model(model_cfg, task.build_data(data_cfg, cache_dir))
    try:
        model.load_state_dict(ck["model"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise ConfigError(f"{best}: does not fit the model built from resolved_config.json "
                          f"({_first_line(e)})") from None
    model.to(dev).eval()
    fn = make_predictor(model, dev)
    if fn is None:
        raise ConfigError(f"task {name!r} has no predictor for its own model; give --model module:function")
    return fn
