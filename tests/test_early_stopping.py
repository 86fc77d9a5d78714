"""Early stopping as a pure rule, table-driven."""

from __future__ import annotations

import math

import pytest

from trainkit.early_stopping import EarlyStopping, replay


@pytest.mark.parametrize("values,kw,expected", [
    ([1.0, 1.0, 1.0, 1.0], {"patience": 2}, 2),                 # the example: stops after epoch 2
    ([1.0, 0.9, 0.8, 0.7], {"patience": 1}, None),              # always improving
    ([1.0, 0.9, 0.95, 0.96, 0.5], {"patience": 2}, 3),
    ([1.0, 0.95, 0.92], {"patience": 1, "min_delta": 0.1}, 1),  # improvement not larger than min_delta
    ([0.1, 0.2, 0.3], {"mode": "max", "patience": 1}, None),
    ([0.3, 0.2, 0.1], {"mode": "max", "patience": 2}, 2),
    ([1.0, math.nan, math.nan], {"patience": 2}, 2),             # NaN is never an improvement
    ([None, None], {"patience": 2}, 1),                         # a missing metric is no improvement
])
def test_replay(values, kw, expected):
    assert replay(values, **kw) == expected


def test_state_round_trip_continues_identically():
    a = EarlyStopping(patience=3)
    for e, v in enumerate([1.0, 0.5, 0.6]):
        a.update(e, {"val_loss": v})
    b = EarlyStopping.from_state(a.state_dict())
    for e, v in enumerate([0.7, 0.8], start=3):
        assert a.update(e, {"val_loss": v}) == b.update(e, {"val_loss": v})
    assert a.stopped_epoch == b.stopped_epoch == 4 and b.best == 0.5 and b.best_epoch == 1
