"""Reading a run's ``metrics.jsonl`` in bounded memory, whatever its size: its tail first (the
newest records, at full resolution), an overview sampled across the rest (a few KiB at evenly
spaced offsets), then the rest from the start in chunks, each record pushed into a
:class:`~tui.model.downsample.SeriesSet` (a worker's job: :func:`scan` reports as it goes and
stops when cancelled). No read holds more than a chunk of the file."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from trainkit.runfolder.files import MAX_LINE_BYTES, ReadProblem, open_regular
from tui.model.downsample import Point, SeriesSet

MiB = 1024 * 1024
TAIL_BYTES = 1 * MiB  # read first, every record kept (~10,000 steps)
OVERVIEW_BLOCKS = 256  # evenly spaced samples of the rest, shown until the scan reaches them
OVERVIEW_BYTES = 4 * 1024
SCAN_CHUNK = 256 * 1024
STEP_KEYS = ("loss", "lr")  # the numbers of a step record that are charted


@dataclass
class Records:
    """What a read found, in file order: the step metrics' points, the epoch records (a resume's
    rewrite of an epoch replaces it and every later one), the unreadable lines."""

    series: SeriesSet = field(default_factory=SeriesSet)
    epochs: list[dict] = field(default_factory=list)
    bad: int = 0
    first_t: float | None = None  # the time of the first step record read

    def feed(self, recs: list[dict]) -> None:
        self._take(recs, [])

    def parse(self, lines: list[bytes]) -> None:
        """Complete lines (blank lines skipped, others unreadable counted)."""
        self._take([], lines)

    def _take(self, recs: list[dict], lines: list[bytes]) -> None:
        """The records ``recs`` or those the ``lines`` hold (the loop is written for speed: it runs
        once per record of a log of any size)."""
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        cols = [(k, []) for k in STEP_KEYS]
        for item in lines or recs:
            if lines:
                try:
                    r = loads(item)
                except decode_error:
                    if item.strip():
                        self.bad += 1
                    continue
                if type(r) is not dict:
                    self.bad += 1
                    continue
            else:
                r = item
            kind = r.get("kind")
            if kind == "step":
                s = r.get("step")
                if type(s) is not int:
                    continue
                x = float(s)
                t = r.get("t")
                t = t if type(t) is float and t - t == 0.0 else _value(t)
                e = r.get("epoch")
                e = float(e) if type(e) is int else _value(e)
                for k, pts in cols:
                    v = r.get(k)
                    if type(v) is float and v - v == 0.0:
                        pts.append((x, e, t, v))
                    elif v is not None and (v := _value(v)) == v:
                        pts.append((x, e, t, v))
                if self.first_t is None and t == t:
                    self.first_t = t
            elif kind == "epoch" and isinstance(r.get("epoch"), int):
                add_epoch(self.epochs, r)
        for k, pts in cols:
            self.series.extend(k, pts)


def _value(v) -> float:
    """A finite number as a float; NaN for anything else (a bool, a string, inf)."""
    if type(v) is float:
        return v if v - v == 0.0 else math.nan
    if type(v) is int:
        return float(v)
    return math.nan


def add_epoch(epochs: list[dict], r: dict) -> None:
    """An epoch record in file order: a resume that rewrote epoch N drops N and every later one."""
    if epochs and epochs[-1]["epoch"] >= r["epoch"]:
        epochs[:] = [e for e in epochs if e["epoch"] < r["epoch"]]
    epochs.append(r)


@dataclass
class Opening:
    """The first, quick read: the tail (from ``tail_start`` to ``end``, complete lines), and the
    overview of ``[0, tail_start)``: (offset of the sample, point) per metric."""

    tail: Records
    tail_start: int = 0
    end: int = 0
    overview: dict[str, list[tuple[int, Point]]] = field(default_factory=dict)
    first_t: float | None = None
    problem: str | None = None  # why the file could not be read (not a regular file, ...)


def open_log(path: str) -> Opening:
    """The tail and the overview of the metrics log at ``path`` (a missing file: empty)."""
    op = Opening(Records())
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return op
    except ReadProblem as e:
        op.problem = str(e)
        return op
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - TAIL_BYTES)
        data = os.pread(fd, size - start, start)
        last = data.rfind(b"\n")
        first = 0 if start == 0 else data.find(b"\n") + 1
        if last < 0 or first > last:  # no complete line in the tail's bytes: a very long (or torn) last line
            op.tail_start = op.end = _line_start(fd, start) if start else 0
        else:
            op.tail_start, op.end = start + first, start + last + 1
            op.tail.parse(data[first:last].split(b"\n"))
        if op.tail_start > 0:
            _overview(fd, op)
        op.first_t = op.first_t if op.first_t is not None else op.tail.first_t
    finally:
        os.close(fd)
    return op


def _line_start(fd: int, pos: int) -> int:
    """The start of the line that holds byte ``pos`` (looked for at most MAX_LINE_BYTES back)."""
    low = max(0, pos - MAX_LINE_BYTES)
    while pos > low:
        begin = max(low, pos - 64 * 1024)
        i = os.pread(fd, pos - begin, begin).rfind(b"\n")
        if i >= 0:
            return begin + i + 1
        pos = begin
    return low


def _overview(fd: int, op: Opening) -> None:
    n = min(OVERVIEW_BLOCKS, op.tail_start // OVERVIEW_BYTES + 1)
    for k in range(n):
        off = op.tail_start * k // n
        data = os.pread(fd, min(OVERVIEW_BYTES, op.tail_start - off), off)
        first = 0 if off == 0 else data.find(b"\n") + 1
        last = data.rfind(b"\n")
        if first <= 0 < off or last < first:
            continue
        rec = Records()
        rec.parse(data[first:last].split(b"\n"))
        if off == 0:
            op.first_t = rec.first_t
        for name in rec.series.names():  # each sample's lowest and highest point
            pts = rec.series.points(name)
            lo, hi = min(pts, key=lambda p: p[3]), max(pts, key=lambda p: p[3])
            kept = sorted({lo, hi}, key=lambda p: (p[0], p[2]))
            op.overview.setdefault(name, []).extend((off, p) for p in kept)


def scan(path: str, stop_at: int, *, report: Callable[[Records, int], None] | None = None,
         every_s: float = 1.0, cancelled: Callable[[], bool] = lambda: False) -> Records | None:
    """Every record of ``[0, stop_at)`` in chunks; ``report(records, offset)`` every ``every_s``
    seconds. None when cancelled or the file can no longer be read."""
    out = Records()
    try:
        fd = open_regular(path)
    except (FileNotFoundError, ReadProblem):
        return None
    try:
        pos, carry, last_report = 0, b"", time.monotonic()
        while pos < stop_at:
            if cancelled():
                return None
            data = os.pread(fd, min(SCAN_CHUNK, stop_at - pos), pos)
            if not data:
                break
            pos += len(data)
            data = carry + data
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                if len(carry) > MAX_LINE_BYTES:  # a line too long to read: counted, skipped
                    out.bad += 1
                    carry = b""
                    pos = _next_line(fd, pos, stop_at)
                continue
            carry = data[cut + 1:]
            out.parse(data[:cut].split(b"\n"))
            if report is not None and time.monotonic() - last_report >= every_s:
                report(out, pos - len(carry))
                last_report = time.monotonic()
    finally:
        os.close(fd)
    return out


def _next_line(fd: int, pos: int, stop_at: int) -> int:
    while pos < stop_at:
        data = os.pread(fd, min(64 * 1024, stop_at - pos), pos)
        i = data.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(data)
    return stop_at
