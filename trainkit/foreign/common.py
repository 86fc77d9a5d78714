"""What the readers of other tools' folders share: the names those tools use, the summary of a
foreign run (:class:`Foreign`), and small pure helpers."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

HF, LIGHTNING, TENSORBOARD = "hf", "lightning", "tensorboard"
SOURCES = (HF, LIGHTNING, TENSORBOARD)
QUIET_S = 120.0  # no process of this host holds a file open: a write this recent still means running
EVENTS_PREFIX = "events.out.tfevents."
HF_STATE = "trainer_state.json"
HF_CHECKPOINT_PREFIX = "checkpoint-"
LIGHTNING_LOGS = "lightning_logs"
LIGHTNING_VERSION_PREFIX = "version_"
LIGHTNING_METRICS = "metrics.csv"
LIGHTNING_HPARAMS = "hparams.yaml"
LIGHTNING_CHECKPOINTS = "checkpoints"  # ModelCheckpoint's folder (the same word as trainkit's own, by chance)
MAX_TAIL = 16  # points kept for a sparkline


@dataclass
class Foreign:
    """What a foreign run folder says, read-only."""

    source: str
    path: str
    name: str  # the path under ROOT (``lightning_logs/version_0``)
    step: int | None = None  # the last global step recorded
    total_steps: int | None = None  # the trainer's target in steps (HF max_steps), None: unknown
    epoch: float | None = None  # epochs done, as the trainer counts them (HF: a float)
    total_epochs: int | None = None
    last_loss: float | None = None
    loss_tail: list[float] = field(default_factory=list)  # the last losses, for a sparkline
    best_metric: str | None = None
    best_value: float | None = None
    best_where: str | None = None  # the checkpoint or step of the best
    model: str | None = None
    finished: bool | None = None  # the trainer's own word: True finished, False not, None: it keeps none
    early_stopped: bool = False
    stopped_by_trainer: bool = False  # the trainer decided to stop (HF should_training_stop)
    last_write: float | None = None  # the newest modification time of its files
    held_by: int | None = None  # the pid of a live process of this host holding one of its files open
    pace: tuple[float, int, float, int] | None = None  # (time, step) of an early and of the latest record: the rate
    warnings: list[str] = field(default_factory=list)


def _names(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def watched_name(name: str) -> bool:
    """A file whose change a live view of foreign runs must see (event files, ``trainer_state.json``,
    ``metrics.csv``, ``hparams.yaml``); never a checkpoint's weights."""
    return name in (HF_STATE, LIGHTNING_METRICS, LIGHTNING_HPARAMS) or name.startswith(EVENTS_PREFIX)


def has_events(path: str) -> bool:
    return any(n.startswith(EVENTS_PREFIX) for n in _names(path))


def loss_tag(tags: list[str]) -> str | None:
    """The training loss among scalar tags: ``loss``, ``train_loss``, ``train/loss``... (not a
    validation or evaluation loss)."""
    def plain(t: str) -> str:
        return t.lower().replace("/", "_").replace(".", "_")

    for want in ("loss", "train_loss", "train_loss_step", "training_loss", "loss_train", "train_loss_epoch"):
        for t in tags:
            if plain(t) == want:
                return t
    for t in tags:
        p = plain(t)
        if "loss" in p and not any(w in p for w in ("val", "eval", "test")):
            return t
    return None


def finite(v: object) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None
