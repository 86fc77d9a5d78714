"""The checkpoint: one dict with everything a bit-exact resume needs.

Saved atomically (temp file in the same folder, fsync, rename), so a kill -9 at any moment leaves
the previous checkpoint loadable. Loaded with ``weights_only=True``: a checkpoint never executes
code. Loading pops the keys it knows and refuses leftovers or a newer format.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainkit.errors import first_line
from trainkit.runfolder.files import atomic_write, open_regular_file

CHECKPOINT_VERSION = 2  # 2 added state.lr_anchor; version 1 is still read
READABLE_VERSIONS = (1, 2)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message is one line."""


@dataclass
class TrainState:
    """Counters of where training stands. ``epoch`` is the epoch in progress (0-based);
    ``samples_in_epoch`` how far into that epoch's permutation it got."""

    epoch: int = 0
    samples_in_epoch: int = 0
    global_step: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    early_stopping: dict | None = None
    early_stopped_at_epoch: int | None = None
    #: where the learning-rate schedule was re-anchored when a resume changed its inputs:
    #: ``{"step", "lr", "end"}`` (see :func:`trainkit.train.schedule.get_lr`); None: the plain schedule
    lr_anchor: dict | None = None

    @property
    def last_epoch(self) -> int | None:
        return self.epoch - 1 if self.epoch > 0 else None


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np
    except ImportError:
        return state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = {"kind": kind, "keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)}
    return state


def restore_rng(state: dict[str, Any]) -> None:
    state = dict(state)
    py = state.pop("python")
    random.setstate((py[0], tuple(py[1]), py[2]))
    torch.set_rng_state(state.pop("torch"))
    cuda = state.pop("cuda", None)
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    np_state = state.pop("numpy", None)
    if np_state is not None:
        try:
            import numpy as np
        except ImportError:
            pass
        else:
            np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype("uint32"), np_state["pos"],
                                 np_state["has_gauss"], np_state["cached"]))
    if state:
        raise CheckpointError(f"unknown RNG state entries in checkpoint: {', '.join(sorted(state))}")


def save(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainState,
         config: dict) -> None:
    """Write the checkpoint atomically; the previous file stands until the new one is complete."""
    ckpt = {
        "format_version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": {
            "epoch": state.epoch,
            "samples_in_epoch": state.samples_in_epoch,
            "global_step": state.global_step,
            "epoch_losses": torch.tensor(state.epoch_losses, dtype=torch.float64),
            "best_value": state.best_value,
            "best_epoch": state.best_epoch,
            "early_stopping": state.early_stopping,
            "early_stopped_at_epoch": state.early_stopped_at_epoch,
            "lr_anchor": state.lr_anchor,
        },
        "rng": capture_rng(),
        "config": config,
    }
    atomic_write(path, lambda f: torch.save(ckpt, f), sync_dir=True)


@dataclass
class Loaded:
    model: dict
    optimizer: dict
    state: TrainState
    rng: dict
    config: dict


def _read(path: Path) -> dict:
    """The checkpoint's dict (on the CPU, ``weights_only``: nothing is executed), its format
    version checked and popped."""
    try:  # a regular file only: a FIFO or a device is refused, never waited on
        with open_regular_file(path, within=os.sep) as f:
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged or foreign file: one line
        raise CheckpointError(f"{path}: cannot load checkpoint ({first_line(e, limit=300)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a trainkit checkpoint (top level is {type(ckpt).__name__})")
    ckpt = dict(ckpt)
    version = ckpt.pop("format_version", None)
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: checkpoint format {version!r} is not supported by this trainkit "
                              f"(it reads formats {', '.join(map(str, READABLE_VERSIONS))})")
    return ckpt


def load(path: Path) -> Loaded:
    """Read a checkpoint (on the CPU) without executing anything; refuses unknown content."""
    ckpt = _read(path)
    try:
        raw = dict(ckpt.pop("state"))
        loaded = Loaded(model=ckpt.pop("model"), optimizer=ckpt.pop("optimizer"), rng=ckpt.pop("rng"),
                        config=ckpt.pop("config"), state=TrainState(
                            epoch=int(raw.pop("epoch")),
                            samples_in_epoch=int(raw.pop("samples_in_epoch")),
                            global_step=int(raw.pop("global_step")),
                            epoch_losses=[float(v) for v in raw.pop("epoch_losses").tolist()],
                            best_value=raw.pop("best_value"),
                            best_epoch=raw.pop("best_epoch"),
                            early_stopping=raw.pop("early_stopping"),
                            early_stopped_at_epoch=raw.pop("early_stopped_at_epoch"),
                            lr_anchor=raw.pop("lr_anchor", None)))
    except KeyError as e:
        raise CheckpointError(f"{path}: checkpoint lacks {e.args[0]!r}") from None
    leftovers = sorted(ckpt) + sorted(f"state.{k}" for k in raw)
    if leftovers:
        raise CheckpointError(f"{path}: checkpoint holds entries this trainkit does not know: {', '.join(leftovers)}")
    return loaded


@dataclass
class Best:
    """``checkpoints/best.pt``: the model at the best value of the monitored metric."""

    model: dict
    epoch: int | None
    metric: str | None
    value: float | None
    config: dict
    mode: str | None = None  # min or max (None: written before the mode was recorded)


def load_best(path: Path) -> Best:
    """Read ``best.pt`` without executing anything. Raises :class:`CheckpointError`."""
    ckpt = _read(path)
    if not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: not a trainkit best-model checkpoint (no model weights)")
    return Best(model=ckpt["model"], epoch=ckpt.get("epoch"), metric=ckpt.get("metric"), value=ckpt.get("value"),
                config=ckpt.get("config") or {}, mode=ckpt.get("mode"))


def load_weights(path: Path) -> dict:
    """The model weights of ``best.pt`` or of a full checkpoint (``current.pt``), loaded without
    executing anything. Raises :class:`CheckpointError`."""
    ckpt = _read(path)
    if not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: not a trainkit checkpoint (no model weights)")
    return ckpt["model"]


def save_best(path: Path, *, model: torch.nn.Module, epoch: int, metric: str, mode: str, value: float,
              config: dict) -> None:
    """``best.pt``: the model, the epoch it is from, and the rule it is best by (metric, mode, value)."""
    ckpt = {"format_version": CHECKPOINT_VERSION, "model": model.state_dict(), "epoch": epoch,
            "metric": metric, "mode": mode, "value": value, "config": config}
    atomic_write(path, lambda f: torch.save(ckpt, f), sync_dir=True)


def relabel_best(path: Path, *, metric: str, mode: str, value: float | None, config: dict) -> None:
    """Rewrite ``best.pt``'s rule (metric, mode, value) and config, keeping its weights and epoch."""
    ckpt = _read(path)
    ckpt.update({"format_version": CHECKPOINT_VERSION, "metric": metric, "mode": mode, "value": value,
                 "config": config})
    atomic_write(path, lambda f: torch.save(ckpt, f), sync_dir=True)
