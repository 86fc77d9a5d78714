"""A Lightning ``lightning_logs/version_N`` folder, read-only: ``metrics.csv`` (``CSVLogger``),
``hparams.yaml``, the names of ``checkpoints/*.ckpt`` (``epoch=2-step=300.ckpt``: never loaded) and,
for a ``TensorBoardLogger`` folder without a CSV, its event files. Lightning records no target
(``max_epochs`` is the Trainer's, not the module's): the total is unknown unless the hyperparameters
name ``max_epochs`` or ``max_steps``."""

from __future__ import annotations

import csv
import io
import os
import re

import yaml

from trainkit.foreign.common import (
    LIGHTNING_CHECKPOINTS,
    LIGHTNING_HPARAMS,
    LIGHTNING_METRICS,
    MAX_TAIL,
    Foreign,
    has_events,
    loss_tag,
)
from trainkit.runfolder.files import MiB, ReadProblem, read_limited

METRICS_LIMIT = 256 * MiB
HPARAMS_LIMIT = 1 * MiB
CKPT = re.compile(r"(?:^|[-_])epoch=(\d+)(?:[-_]step=(\d+))?")


def read_metrics(path: str, warnings: list[str]) -> list[dict[str, float]]:
    """The rows of ``metrics.csv`` with their numbers (blank cells left out; a torn last line kept out)."""
    try:
        data = read_limited(os.path.join(path, LIGHTNING_METRICS), METRICS_LIMIT)
    except FileNotFoundError:
        return []
    except ReadProblem as e:
        warnings.append(f"{LIGHTNING_METRICS}: {e}")
        return []
    text = data.decode("utf-8", errors="replace")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # the last line is being written
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        row = {}
        for k, v in raw.items():
            if k is None or v in (None, ""):
                continue
            try:
                row[k] = float(v)
            except ValueError:
                continue
        if row:
            rows.append(row)
    return rows


def hparams(path: str, warnings: list[str]) -> dict:
    try:
        data = read_limited(os.path.join(path, LIGHTNING_HPARAMS), HPARAMS_LIMIT)
    except FileNotFoundError:
        return {}
    except ReadProblem as e:
        warnings.append(f"{LIGHTNING_HPARAMS}: {e}")
        return {}
    try:
        value = yaml.safe_load(data)
    except yaml.YAMLError:
        warnings.append(f"{LIGHTNING_HPARAMS}: not YAML")
        return {}
    return value if isinstance(value, dict) else {}


def checkpoints(path: str) -> list[tuple[int, int | None, str]]:
    """(epoch, step, name) of each ``checkpoints/*.ckpt`` from its name, in (epoch, step) order."""
    folder = os.path.join(path, LIGHTNING_CHECKPOINTS)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    out = []
    for n in names:
        m = CKPT.search(n)
        if n.endswith(".ckpt") and m:
            out.append((int(m.group(1)), int(m.group(2)) if m.group(2) else None, n))
    return sorted(out, key=lambda c: (c[0], c[1] or 0))


def summarize(path: str, f: Foreign) -> None:
    rows = read_metrics(path, f.warnings)
    if not rows and has_events(path):  # a TensorBoardLogger folder
        from trainkit.foreign import tensorboard

        summary = tensorboard.summarize(path, f)
        if summary is not None:  # epochs done: how often an epoch-level value was logged, else the epoch scalar
            ended = [t["n"] for tag, t in summary.tags.items() if tag.endswith("_epoch")]
            if ended:
                f.epoch = max(ended)
            elif "epoch" in summary.tags:
                f.epoch = summary.tags["epoch"]["last_value"]
    else:
        steps = [int(r["step"]) for r in rows if "step" in r]
        f.step = max(steps) if steps else None
        epochs = [r["epoch"] for r in rows if "epoch" in r]
        tags = sorted({k for r in rows for k in r if k not in ("epoch", "step")})
        name = loss_tag(tags)
        losses = [r[name] for r in rows if name in r] if name else []
        f.last_loss = losses[-1] if losses else None
        f.loss_tail = losses[-MAX_TAIL:]
        val = [t for t in tags if "loss" in t.lower() and any(w in t.lower() for w in ("val", "valid"))]
        if val:
            best = min(((r[val[0]], r) for r in rows if val[0] in r), key=lambda x: x[0], default=None)
            if best is not None:
                f.best_metric, f.best_value = val[0], best[0]
                f.best_where = f"epoch {int(best[1]['epoch'])}" if "epoch" in best[1] else None
        if epochs:
            f.epoch = max(epochs) + 1 if _epoch_ended(rows, max(epochs)) else max(epochs)
    ckpts = checkpoints(path)
    if ckpts:
        last = ckpts[-1]
        f.epoch = max(f.epoch or 0, last[0] + 1)
        if last[1]:  # the name counts the steps done; the CSV's step is the last step's index
            f.step = max(f.step if f.step is not None else -1, last[1] - 1)
    params = hparams(path, f.warnings)
    for key in ("max_epochs", "epochs"):
        if isinstance(params.get(key), int) and params[key] > 0:
            f.total_epochs = params[key]
    if isinstance(params.get("max_steps"), int) and params["max_steps"] > 0:
        f.total_steps = params["max_steps"]
    if f.total_epochs and f.epoch is not None and f.epoch >= f.total_epochs:
        f.finished = True
    elif f.total_steps and f.step is not None and f.step + 1 >= f.total_steps:
        f.finished = True
    for key in ("model", "model_name", "_class_path", "name"):
        if isinstance(params.get(key), str):
            f.model = params[key]
            break


def _epoch_ended(rows: list[dict], epoch: float) -> bool:
    """An epoch-level value (``*_epoch``, or a validation number) was logged for ``epoch``."""
    return any(r.get("epoch") == epoch and any(k.endswith("_epoch") or k.startswith("val") for k in r) for r in rows)


def scalars(path: str) -> dict[str, list[tuple[float, float]]]:
    rows = read_metrics(path, [])
    if not rows and has_events(path):
        from trainkit.foreign import tensorboard

        return tensorboard.scalars(path)
    out: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if "step" not in r:
            continue
        for k, v in r.items():
            if k not in ("step", "epoch"):
                out.setdefault(k, []).append((r["step"], v))
    return out
