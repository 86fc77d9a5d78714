"""A metric's points in bounded memory, whatever the length of the run: the newest ``recent``
points at full resolution, the older ones in at most ``buckets`` buckets that keep each bucket's
lowest and highest point (so a spike survives), the bucket width doubling as the history grows.
Pure logic: no file, no Textual."""

from __future__ import annotations

from array import array
from operator import itemgetter

# a point: (step, epoch, t, value); epoch and t are NaN when the record had none
Point = tuple[float, float, float, float]
RECENT = 20_000  # points kept at full resolution, at least (the zoomed-in view of the newest steps)
BUCKETS = 4_096  # older buckets, at most (each one or two points)
SLACK = 4_096  # recent points moved to the buckets at a time
_last = itemgetter(-1)


class MinMaxSeries:
    """One metric's points, oldest first; ``extend`` in file order."""

    def __init__(self, *, recent: int = RECENT, buckets: int = BUCKETS) -> None:
        self.recent = tuple(array("d") for _ in range(4))  # the newest points, column-wise (8 bytes a number)
        self.recent_max = max(1, recent)  # kept at full resolution: at least this many (SLACK more at most)
        self.buckets_max = max(2, buckets - buckets % 2)
        self.width = 1  # older points per bucket
        self.buckets: list[tuple[Point, Point]] = []  # each older bucket's (lowest, highest) point
        self._open: list | None = None  # the bucket being filled: [lowest, highest, points in it]

    def extend(self, pts: list[Point]) -> None:
        for col, values in zip(self.recent, zip(*pts, strict=True), strict=True):
            col.extend(values)
        n = len(self.recent[0])
        if n >= self.recent_max + min(self.recent_max, SLACK):
            cut = n - self.recent_max
            self._older(list(zip(*(col[:cut] for col in self.recent), strict=True)))
            for col in self.recent:
                del col[:cut]

    def _older(self, pts: list[Point]) -> None:
        buckets, width = self.buckets, self.width
        op = self._open
        lo, hi, n = op if op is not None else (None, None, 0)
        for p in pts:
            if n == 0:
                lo = hi = p
            elif p[3] < lo[3]:
                lo = p
            elif p[3] > hi[3]:
                hi = p
            n += 1
            if n >= width:
                buckets.append((lo, hi))
                n = 0
                if len(buckets) >= self.buckets_max:
                    self._halve()
                    buckets, width = self.buckets, self.width
        self._open = [lo, hi, n] if n else None

    def _halve(self) -> None:
        """Merge each pair of buckets: the lower of the lows, the higher of the highs."""
        b = self.buckets
        n = len(b) // 2 * 2
        merged = [(a[0] if a[0][3] <= c[0][3] else c[0], a[1] if a[1][3] >= c[1][3] else c[1])
                  for a, c in zip(b[0:n:2], b[1:n:2], strict=True)]
        self.buckets = merged + b[n:]  # an odd last bucket stays as it is
        self.width *= 2

    def points(self) -> list[Point]:
        """Every kept point, oldest first: each older bucket's low and high in the order they were
        logged (one point when they are the same), then the open bucket's, then the recent ones."""
        out: list[Point] = []
        for lo, hi in self.buckets:
            _pair(out, lo, hi)
        if self._open is not None:
            _pair(out, self._open[0], self._open[1])
        out.extend(zip(*self.recent, strict=True))
        return out


def _pair(out: list[Point], a: Point, b: Point) -> None:
    if a is b:
        out.append(a)
    elif (a[0], a[2]) <= (b[0], b[2]):
        out.extend((a, b))
    else:
        out.extend((b, a))


class SeriesSet:
    """Several metrics' :class:`MinMaxSeries`, by name (at most ``max_names``: a log with
    thousands of distinct keys never holds thousands of series)."""

    def __init__(self, *, recent: int = RECENT, buckets: int = BUCKETS, max_names: int = 32) -> None:
        self.series: dict[str, MinMaxSeries] = {}
        self.recent, self.buckets, self.max_names = recent, buckets, max_names

    def extend(self, name: str, pts: list[Point]) -> None:
        if not pts:
            return
        s = self.series.get(name)
        if s is None:
            if len(self.series) >= self.max_names:
                return
            s = self.series[name] = MinMaxSeries(recent=self.recent, buckets=self.buckets)
        s.extend(pts)

    def points(self, name: str) -> list[Point]:
        s = self.series.get(name)
        return s.points() if s is not None else []

    def names(self) -> list[str]:
        return list(self.series)

    def extend_from(self, other: SeriesSet) -> None:
        """Add ``other``'s kept points after this set's (a history read first, then its tail)."""
        for name in other.names():
            self.extend(name, other.points(name))


def thin(pts: list, n: int) -> list:
    """At most about ``n`` of ``pts`` (tuples whose last item is the value, in x order): in
    ``n // 2`` slices, each slice's lowest and highest point, in their order (a spike survives)."""
    if len(pts) <= n:
        return pts
    slices = max(1, n // 2)
    step = len(pts) / slices
    out: list = []
    for i in range(slices):
        sl = pts[int(i * step):int((i + 1) * step)]
        if not sl:
            continue
        lo, hi = min(sl, key=_last), max(sl, key=_last)
        if lo is hi:
            out.append(lo)
        elif sl.index(lo) <= sl.index(hi):
            out.extend((lo, hi))
        else:
            out.extend((hi, lo))
    return out
