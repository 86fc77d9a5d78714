"""A metric's points in bounded memory (tui.model.downsample, pure): the newest at full
resolution, the older ones as each bucket's low and high, a spike never lost."""

from __future__ import annotations

import pytest

from tui.model.curves import at, ema, epoch_positions
from tui.model.downsample import MinMaxSeries, thin


def points(n: int, spikes: dict[int, float]) -> list[tuple[float, float, float, float]]:
    return [(float(i), 0.0, 1000.0 + i, spikes.get(i, 1.0 / (1 + i))) for i in range(n)]


@pytest.mark.parametrize("n, recent, buckets, batch", [
    (10, 100, 8, 3),  # all of it recent
    (1_000, 100, 8, 7),  # many halvings
    (50_000, 1_000, 64, 4_096),  # batches larger than the buckets
    (7_777, 10, 16, 1),  # one point at a time
])
def test_spikes_survive_and_memory_is_bounded(n, recent, buckets, batch):
    spikes = {n // 3: 99.0, n // 2: -99.0, n - recent - 1: 50.0}
    pts = points(n, spikes)
    s = MinMaxSeries(recent=recent, buckets=buckets)
    for i in range(0, n, batch):
        s.extend(pts[i:i + batch])
    kept = s.points()
    values = [p[3] for p in kept]
    assert max(values) == 99.0 and min(values) == -99.0 and (n < recent or 50.0 in values)
    assert kept[-min(n, recent):] == pts[-min(n, recent):]  # the newest at full resolution
    assert [p[0] for p in kept] == sorted(p[0] for p in kept) and kept[0] == pts[0]
    assert len(kept) <= 2 * recent + 2 * buckets + 2


@pytest.mark.parametrize("n, want", [(5, 10), (1_000, 100), (1_001, 7), (3, 1)])
def test_thin_keeps_each_slices_low_and_high_in_order(n, want):
    pts = [(float(i), float(i % 13) if i != n // 2 else 1e6) for i in range(n)]
    out = thin(pts, want)
    assert len(out) <= max(want, 2) or out == pts
    assert max(y for _, y in out) == max(y for _, y in pts) and min(y for _, y in out) == min(y for _, y in pts)
    assert [x for x, _ in out] == sorted(x for x, _ in out)


@pytest.mark.parametrize("weight, ys, want", [
    (0.0, [1.0, 3.0], [1.0, 3.0]),
    (0.5, [1.0, 3.0], [1.0, (0.5 * 0.5 + 1.5) / 0.75]),  # debiased: the first value is itself
    (0.9, [2.0, 2.0, 2.0], [2.0, 2.0, 2.0]),  # a constant stays constant
])
def test_ema_is_debiased_as_tensorboard_draws_it(weight, ys, want):
    got = [y for _, y in ema([(float(i), y) for i, y in enumerate(ys)], weight)]
    assert got == pytest.approx(want)


def test_the_point_under_a_cursor_and_epoch_positions():
    pts = [(0.0, 1.0), (10.0, 2.0), (20.0, 3.0)]
    assert at(pts, -1) is None and at(pts, 0) == (0.0, 1.0) and at(pts, 15) == (10.0, 2.0) and at(pts, 99) == pts[-1]
    nan = float("nan")
    steps = [(0.0, 0.0), (1.0, 0.0), (2.0, 1.0), (3.0, 1.0), (9.0, nan)]  # (step, epoch)
    assert epoch_positions([(s, e, nan, 1.0) for s, e in steps]) == [0.0, 0.5, 1.0, 1.5, 9.0]
