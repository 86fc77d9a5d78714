"""What a task gives the engine: data, a model, a loss and a validation pass.

A user task plugs in by import string (``task: mypkg.tasks:make_task``): the function is called
with no arguments and returns a :class:`Task` (subclass it, or any object with these attributes).

Evaluation (``trainkit eval``) uses the optional members ``metric``, ``default_questions``,
``predictor`` and ``build_eval_model``; a task without them still trains, and its runs are
evaluated with ``--questions`` and ``--model``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class TaskData:
    """In-memory tensors; the first dimension of every tensor is the sample index."""

    train: tuple[torch.Tensor, ...]
    val: tuple[torch.Tensor, ...]

    def __post_init__(self) -> None:
        for split in ("train", "val"):
            tensors = getattr(self, split)
            if not tensors or len({t.shape[0] for t in tensors}) != 1:
                raise ValueError(f"TaskData.{split}: tensors must share their first dimension")


class Task(ABC):
    """Base class with the common regression behaviour (MSE loss, val_loss)."""

    name: str = "task"
    #: dataclass describing ``model:`` (None: free-form mapping)
    model_config: type | None = None
    #: dataclass describing ``data:`` (None: free-form mapping)
    data_config: type | None = None
    #: evaluation metric: "accuracy" (exact match, higher is better) or "nrmse" (lower is better)
    metric: str = "accuracy"
    #: the data profile chosen by the config's ``profile:`` (a DataProfile), set by the session
    #: before ``build_data``; None: the task's plain data
    profile: Any = None
    #: whether the task shapes its data through ``profile`` (a config naming a profile for a task
    #: that does not is refused)
    uses_profile: bool = True
    #: settings the task trains well with (``{"epochs": 12, "lr": 2e-3, "lr_schedule": {...}}``), applied
    #: between the schema's defaults and the config file: a config naming only the task trains a useful
    #: model; recorded in resolved_config.json (``_meta.task_defaults``)
    defaults: dict[str, Any] = {}

    @abstractmethod
    def build_data(self, data: dict, cache_dir: Path | None) -> TaskData:
        """Build (or load from ``cache_dir``) the data, deterministically from ``data``."""

    @abstractmethod
    def build_model(self, model: dict, data: TaskData) -> nn.Module:
        """A fresh model; the engine seeds the RNG before calling this."""

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch[0], batch[1]
        return nn.functional.mse_loss(model(x), y)

    @torch.no_grad()
    def validate(self, model: nn.Module, val: tuple[torch.Tensor, ...], batch_size: int) -> dict[str, float]:
        """Epoch metrics; must include ``val_loss``."""
        total, n = 0.0, 0
        for i in range(0, val[0].shape[0], batch_size):
            batch = tuple(t[i:i + batch_size] for t in val)
            total += float(self.loss(model, batch)) * batch[0].shape[0]
            n += batch[0].shape[0]
        return {"val_loss": total / max(n, 1)}

    def validation_metrics(self) -> tuple[str, ...] | None:
        """The names :meth:`validate` returns (for this configuration), so that a misspelt
        ``early_stopping.metric`` is refused before anything is written; None: not declared (the
        engine then validates the untrained model once to learn them)."""
        return None

    # ------------------------------------------------------------------ monitoring (optional)
    def sample_prompts(self) -> list[dict] | None:
        """``[{"prompt": str, "expected": str | None}]`` that the training monitor asks the model
        every ``monitor.samples_every_steps`` (with :meth:`generate`, when the task has one);
        None: no samples."""
        return None

    # ------------------------------------------------------------------ evaluation (optional)
    def default_questions(self, data: dict) -> list[dict] | None:
        """The task's own evaluation set, held out from the training data and generated
        deterministically from ``data``: ``[{"id", "question", "answer", ...}]``. None: no
        default set (``trainkit eval`` then needs ``--questions``)."""
        return None

    def validation_questions(self, data: dict) -> list[dict] | None:
        """The validation items that :meth:`validate` measures, as evaluation questions in its
        order (``[{"id", "question", "answer"}]``): evaluating a checkpoint on them with
        ``trainkit eval --questions`` gives that epoch's validation figure. None: not offered."""
        return None

    def predictor(self, model: nn.Module, device: torch.device) -> Callable[[dict], Any] | None:
        """A callable ``fn(item) -> str | dict`` answering one question with the trained ``model``
        (already on ``device``, in eval mode); it may be called from several threads at once.
        None: no predictor (``trainkit eval`` then needs ``--model``)."""
        return None

    def build_eval_model(self, model: dict, data: dict, cache_dir: Path | None) -> nn.Module:
        """The model to load ``checkpoints/best.pt`` into. By default it builds the data to call
        :meth:`build_model`; override it when the model's shape follows from the config alone."""
        return self.build_model(model, self.build_data(data, cache_dir))
