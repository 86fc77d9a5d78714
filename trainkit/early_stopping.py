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

    def update(self, epoch: int, metrics: dict) -> bool:
        """Feed one epoch's metrics; True when training should stop after this epoch.

        A missing or non-finite metric counts as no improvement (a NaN loss never becomes best).
        """
        if self.should_stop:
            return True
        value = metrics.get(self.metric)
        if is_better(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.bad_epochs = float(value), epoch, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                self.stopped_epoch = epoch
        return self.should_stop

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
