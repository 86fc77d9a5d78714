"""What the charts compute from a metric's points (pure): the smoothed curve (an exponential
moving average, debiased at the start as TensorBoard and W&B draw it), the point under a cursor,
and fractional epochs for an epoch axis."""

from __future__ import annotations

import math
from bisect import bisect_right

# the smoothing weights ``<``/``>`` step through (0: off)
WEIGHTS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99)


def ema(points: list[tuple[float, float]], weight: float) -> list[tuple[float, float]]:
    """``points`` smoothed: each value the debiased exponential moving average of those up to it
    (weight 0: the points themselves). Non-finite values are passed over."""
    if weight <= 0:
        return list(points)
    out, last, n = [], 0.0, 0
    for x, y in points:
        if not math.isfinite(y):
            continue
        n += 1
        last = last * weight + (1 - weight) * y
        out.append((x, last / (1 - weight ** n)))
    return out


def at(points: list[tuple[float, float]], x: float) -> tuple[float, float] | None:
    """The last point at or before ``x`` (points in x order); None before the first."""
    i = bisect_right(points, (x, math.inf))
    return points[i - 1] if i else None


def epoch_positions(points: list[tuple[float, float, float, float]]) -> list[float]:
    """Each (step, epoch, t, value) point's place on an epoch axis: its epoch plus how far into
    that epoch's steps it is (the first step of epoch 2 at 2.0, its last just before 3.0); a point
    without an epoch takes its step."""
    first: dict[float, float] = {}
    last: dict[float, float] = {}
    for s, e, _t, _v in points:
        if e == e:
            first.setdefault(e, s)
            last[e] = s
    out = []
    for s, e, _t, _v in points:
        if e != e:
            out.append(s)
        else:
            span = last[e] - first[e] + 1
            out.append(e + (s - first[e]) / span)
    return out


def nearest_step(steps: list[float], step: float) -> int:
    """The index of the last of ``steps`` (sorted) at or before ``step`` (0 before the first)."""
    return max(0, bisect_right(steps, step) - 1)


def xy(points: list[tuple[float, float, float, float]], mode: str, t0: float | None) -> list[tuple[float, float]]:
    """(x, value) of a step metric's (step, epoch, t, value) points on an x axis: ``step``, ``time``
    (seconds since ``t0``; a point without a time is left out) or ``epoch`` (fractional)."""
    if mode == "epoch":
        xs = epoch_positions(points)
    elif mode == "time":
        zero = t0 if t0 is not None else 0.0
        xs = [p[2] - zero for p in points]
    else:
        xs = [p[0] for p in points]
    return [(x, p[3]) for x, p in zip(xs, points, strict=True) if x == x]


def epoch_x(record: dict, mode: str, t0: float | None) -> float | None:
    """An epoch record's x: its epoch (``step`` axis), its end (``epoch`` axis: epochs done) or
    its time since ``t0``; None when it has no time on a time axis."""
    if mode == "time":
        t = record.get("t")
        ok = isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
        return float(t) - (t0 if t0 is not None else 0.0) if ok else None
    return float(record["epoch"] + (1 if mode == "epoch" else 0))
