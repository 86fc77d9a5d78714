"""Early stopping as a pure state machine: it only raises a flag; the loop decides when to look.

``patience`` = epochs without an improvement of more than ``min_delta``, after which training
stops. The first epoch always sets the best. With patience 2 and no improvement after epoch 0,
``update`` returns True after epoch 2.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields


def finite(value: object) -> bool:
    """A number that can be compared: int or float, not bool, not NaN or infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_better(value: object, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """The one rule for "better": ``value`` beats ``best`` by more than ``min_delta`` in the
    direction of ``mode`` (min: lower is better). Anything beats no best; a missing or non-finite
    value never is better (a NaN loss never becomes best)."""
    if not finite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


@dataclass
class EarlyStopping:
    metric: str = "val_loss"
    mode: str = "min"
    patience: int = 5
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_epoch: int | None = None

    @property
    def should_stop(self) -> bool:
        return self.stopped_epoch is not None

    def update(self, epoch: int, metrics: dict, *, may_stop: bool = True) -> bool:
        """Feed one epoch's metrics; True when training should stop after this epoch.

        A missing or non-finite metric counts as no improvement (a NaN loss never becomes best).
        ``may_stop=False`` counts without ever stopping (:meth:`rebuilt`).
        """
        if self.should_stop:
            return True
        value = metrics.get(self.metric)
        if is_better(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.bad_epochs = float(value), epoch, 0
        else:
            self.bad_epochs += 1
            if may_stop and self.bad_epochs >= self.patience:
                self.stopped_epoch = epoch
        return self.should_stop

    @classmethod
    def rebuilt(cls, records: list[dict | None], **settings: object) -> EarlyStopping:
        """The state the rule ``settings`` reaches over the epoch records ``records`` (epoch i's
        numbers at index i), counted without stopping: what a run resumed with a changed metric or
        mode starts from (the best and the epochs without an improvement since, under the new rule)."""
        es = cls(**settings)
        for epoch, rec in enumerate(records):
            es.update(epoch, rec or {}, may_stop=False)
        return es

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict, **settings: object) -> EarlyStopping:
        """Rebuild from :meth:`state_dict`; ``settings`` (e.g. a patience changed on resume) win."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**state, **settings}.items() if k in known})


def replay(values: list[float | None], *, metric: str = "val_loss", mode: str = "min", patience: int = 5,
           min_delta: float = 0.0) -> int | None:
    """The epoch at which the rule triggers over a sequence of per-epoch values, or None."""
    es = EarlyStopping(metric, mode, patience, min_delta)
    for epoch, v in enumerate(values):
        if es.update(epoch, {metric: v}):
            return epoch
    return None


# ---------------------------------------------------------------------------------------------
# settings that change on resume (resolved_config.json's _meta.history)

DEFAULTS = {"metric": "val_loss", "mode": "min", "patience": 5, "min_delta": 0.0}
SETTING_NAMES = tuple(DEFAULTS)
Timeline = list[tuple[int, dict | None]]


def normalized(settings: object) -> dict | None:
    """Early-stopping settings with every key (defaults filled in), or None when off or unusable."""
    if not isinstance(settings, dict):
        return None
    out = {}
    for k, default in DEFAULTS.items():
        v = settings.get(k, default)
        ok = (isinstance(v, str) and v) if k == "metric" else (v in ("min", "max")) if k == "mode" else \
            (finite(v) and v >= (1 if k == "patience" else 0))
        out[k] = v if ok else default
    out["patience"] = int(out["patience"])
    out["min_delta"] = float(out["min_delta"])
    return out


def settings_timeline(current: object, history: object) -> Timeline:
    """``[(from_epoch, settings or None), ...]``: the early-stopping settings in force from each
    epoch on, rebuilt from the run's settings now (``current``) by undoing the changes recorded in
    ``_meta.history`` (``[{"at_epoch": n, "changes": [{"field", "old", "new"}, ...]}, ...]``, the
    changes of each resume, applied from the epoch it resumed in). Malformed entries are skipped."""
    entries = [h for h in history if isinstance(h, dict) and isinstance(h.get("at_epoch"), int)
               and not isinstance(h.get("at_epoch"), bool) and isinstance(h.get("changes"), list)] \
        if isinstance(history, list) else []
    after = normalized(current)
    points: list[tuple[int, dict | None]] = []
    for h in reversed(entries):
        before = None if after is None else dict(after)
        touched = False
        for c in h["changes"]:
            name = c.get("field") if isinstance(c, dict) else None
            if name == "early_stopping":
                before, touched = normalized(c.get("old")), True
            elif isinstance(name, str) and name.startswith("early_stopping.") and name[15:] in DEFAULTS:
                before = dict(before or DEFAULTS)
                before[name[15:]] = c.get("old")
                before, touched = normalized(before), True
        if touched:
            points.append((max(0, h["at_epoch"]), after))
            after = before
    points.append((0, after))
    points.reverse()
    return points


def settings_at(timeline: Timeline, epoch: int) -> dict | None:
    """The settings in force at ``epoch``'s end (the last change from an epoch <= ``epoch``)."""
    found = timeline[0][1] if timeline else None
    for start, settings in timeline:
        if start <= epoch:
            found = settings
    return found


def carried_over(es: EarlyStopping | None, settings: dict | None, records: list[dict | None]) -> EarlyStopping | None:
    """The early stopping that continues after the settings became ``settings``: none when off; the
    same counters with a new patience or min_delta; rebuilt over ``records`` (the epochs before)
    when the metric or the mode changed or it was off. The engine on resume and every replay
    (status, trainmon) take this same step, so they agree."""
    if settings is None:
        return None
    if es is None or es.metric != settings["metric"] or es.mode != settings["mode"]:
        return EarlyStopping.rebuilt(records, **settings)
    return EarlyStopping.from_state(es.state_dict(), **settings)


@dataclass
class EpochTrace:
    """The early-stopping counter after one epoch, as the trainer counted it."""

    epoch: int
    active: bool  # early stopping was on at this epoch's end
    bad_epochs: int
    patience: int | None
    stopped: bool


def trace(records: list[dict | None], timeline: Timeline) -> list[EpochTrace]:
    """Early stopping replayed over the epoch records (epoch i at index i) with the settings in force
    at each epoch (:func:`settings_timeline`); the list ends at the epoch that stopped the run."""
    out: list[EpochTrace] = []
    es: EarlyStopping | None = None
    previous: object = ()
    for epoch, rec in enumerate(records):
        settings = settings_at(timeline, epoch)
        if settings != previous:
            es = carried_over(es, settings, records[:epoch])
            previous = settings
        stopped = es.update(epoch, rec or {}) if es is not None else False
        out.append(EpochTrace(epoch, es is not None, es.bad_epochs if es else 0, es.patience if es else None, stopped))
        if stopped:
            break
    return out


def stopped_at(records: list[dict | None], timeline: Timeline) -> int | None:
    """The epoch after which early stopping ended the run, or None."""
    t = trace(records, timeline)
    return t[-1].epoch if t and t[-1].stopped else None


def best_rule(config: dict | None) -> tuple[str, str]:
    """(metric, mode) that ``best.pt`` is chosen by under a (resolved) config: early stopping's
    metric and mode, else ``val_loss`` (min)."""
    es = normalized((config or {}).get("early_stopping"))
    return (es["metric"], es["mode"]) if es else ("val_loss", "min")
