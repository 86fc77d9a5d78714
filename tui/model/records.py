"""A run's ``metrics.jsonl`` record by record, whatever its size (LEET's ``inspect``): an index of
where its lines start, built in bounded chunks (a worker's job: :meth:`RecordIndex.scan` stops
after a budget of bytes and goes on where it stopped), and each record read from its byte offset
when it is shown. The index keeps one offset every :data:`STRIDE` lines (or
:data:`STRIDE_BYTES`), so a 2 GB log costs a few hundred KiB; a record is found by reading
forward from the offset before it. Lines that are not a JSON object (a line torn by a crash, a
malformed one) are counted; an incomplete last line waits for its end; a file truncated or
replaced is indexed again from the start."""

from __future__ import annotations

import os
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from trainkit.runfolder.files import MAX_LINE_BYTES, ReadProblem, open_regular
from tui.model.metrics_log import SCAN_CHUNK

STRIDE = 256  # lines between two offsets of the index
STRIDE_BYTES = 256 * 1024  # ... or bytes, whichever comes first (long lines: a short read to any record)
READ = 64 * 1024  # the read size when looking for a record from its block's offset
ROW_BYTES = 64 * 1024  # a line longer than this is not parsed for the list (only when selected)


@dataclass(frozen=True)
class Row:
    """One non-blank line of the log: its number (0-based), where it starts, its length, and the
    record it holds (None: not a JSON object, or too long to read for the list)."""

    index: int
    offset: int
    length: int
    record: dict | None
    raw: bytes | None  # the line's bytes when they were read (None: too long)

    @property
    def kind(self) -> str:
        if self.record is None:
            return "unreadable" if self.raw is not None else "long line"
        kind = self.record.get("kind")
        return kind if isinstance(kind, str) else "-"

    @property
    def step(self) -> int | None:
        step = self.record.get("step") if self.record is not None else None
        return step if type(step) is int else None


def parse(line: bytes) -> dict | None:
    """The record a line holds: a JSON object, else None."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) is dict else None


def iter_lines(fd: int, pos: int, end: int, keep: int) -> Iterator[tuple[int, int, bytes | None]]:
    """(offset, length, bytes) of each complete line in ``[pos, end)``, read in chunks of
    :data:`READ`; the bytes are None for a line longer than ``keep`` (never held whole). A last
    line without its newline is not given."""
    start, parts, size, long = pos, [], 0, False
    while pos < end:
        data = os.pread(fd, min(READ, end - pos), pos)
        if not data:
            return
        i = 0
        while True:
            j = data.find(b"\n", i)
            if j < 0:
                if not long:
                    parts.append(data[i:])
                    size += len(data) - i
                    if size > keep:
                        parts, long = [], True
                break
            if not long:
                parts.append(data[i:j])
                size += j - i
            yield start, pos + j - start, None if long or size > keep else b"".join(parts)
            start, parts, size, long = pos + j + 1, [], 0, False
            i = j + 1
        pos += len(data)


class RecordIndex:
    """Where each non-blank line of a JSONL file starts, built by :meth:`scan` (one thread at a
    time), read by :meth:`rows` and :meth:`find_step` (any thread: they read only the part
    already indexed)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._clear()
        self.problem: str | None = None  # why the file cannot be read (not a regular file, ...)
        self.size = 0  # the file's size at the last scan

    def _clear(self) -> None:
        self.count = 0  # non-blank complete lines indexed
        self.bad = 0  # of those, lines that are not a JSON object (torn or malformed)
        self.offset = 0  # bytes indexed: just after the last complete line
        self.torn = False  # the file ends with an incomplete line (it waits for its end)
        self.ended = False  # the last scan reached the end of the file
        self.lines = array("Q")  # the number of the first line of each block
        self.starts = array("Q")  # ... and its offset
        self.max_step = array("q")  # the largest step of each block's records (-1: none)
        self._inode: int | None = None

    @property
    def done(self) -> bool:
        """Indexed up to the file's end as of the last scan (but for an incomplete last line)."""
        return self.ended

    def progress(self) -> float:
        if self.done:
            return 1.0
        return self.offset / self.size if self.size else 0.0

    def scan(self, budget: int = 4 * SCAN_CHUNK, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Index what was appended since the last scan, ``budget`` bytes at most (call again until
        :attr:`done`). True when the file was truncated or replaced: the index starts again (the
        lines read from the new file on)."""
        try:
            fd = open_regular(self.path)
        except FileNotFoundError:
            self.problem, self.size, self.ended = None, 0, True
            return False
        except ReadProblem as e:
            self.problem, self.ended = str(e), True
            return False
        reset = False
        try:
            st = os.fstat(fd)
            self.problem = None
            if (self._inode is not None and st.st_ino != self._inode) or st.st_size < self.offset:
                self._clear()
                reset = True
            self._inode, self.size = st.st_ino, st.st_size
            stop, self.ended = self.offset + budget, True
            for offset, length, line in iter_lines(fd, self.offset, st.st_size, MAX_LINE_BYTES):
                self.offset = offset + length + 1
                if line is None or line.strip():
                    self._add(offset, line)
                if self.offset >= stop or cancelled():  # the budget spent: the rest on the next call
                    self.ended = self.offset >= st.st_size
                    break
            rest = os.pread(fd, min(READ, st.st_size - self.offset), self.offset) if self.ended else b""
            self.torn = bool(rest.strip())
        finally:
            os.close(fd)
        return reset

    def _add(self, offset: int, line: bytes | None) -> None:
        if not self.lines or self.count - self.lines[-1] >= STRIDE or offset - self.starts[-1] >= STRIDE_BYTES:
            self.lines.append(self.count)
            self.starts.append(offset)
            self.max_step.append(-1)
        record = parse(line) if line is not None else None
        if record is None:
            self.bad += 1
        else:
            step = record.get("step")
            if type(step) is int and step > self.max_step[-1]:
                self.max_step[-1] = step
        self.count += 1

    def rows(self, first: int, n: int, keep: int = ROW_BYTES) -> list[Row]:
        """The indexed lines ``first`` .. ``first + n - 1`` (fewer at the end), read from the offset
        of the block before ``first``; a line longer than ``keep`` is given without its bytes."""
        count = self.count
        first, n = max(0, first), min(n, count - max(0, first))
        if n <= 0 or not self.lines:
            return []
        block = bisect_right(self.lines, first) - 1
        line_no, pos, end = self.lines[block], self.starts[block], self.offset
        out: list[Row] = []
        try:
            fd = open_regular(self.path)
        except (FileNotFoundError, ReadProblem):
            return []
        try:
            for offset, length, line in iter_lines(fd, pos, end, keep):
                if line is not None and not line.strip():
                    continue
                if line_no >= first:
                    out.append(Row(line_no, offset, length, parse(line) if line is not None else None, line))
                    if len(out) >= n:
                        break
                line_no += 1
        finally:
            os.close(fd)
        return out

    def row(self, index: int) -> Row | None:
        """Line ``index`` read whole (up to the longest line a run folder may hold)."""
        found = self.rows(index, 1, keep=MAX_LINE_BYTES)
        return found[0] if found else None

    def find_step(self, step: int) -> int | None:
        """The number of the first line (in file order) whose record's step is ``step`` or more;
        None when no record reaches it."""
        for block, top in enumerate(self.max_step):
            if top < step:
                continue
            last = self.lines[block + 1] if block + 1 < len(self.lines) else self.count
            for r in self.rows(self.lines[block], last - self.lines[block], keep=MAX_LINE_BYTES):
                if r.step is not None and r.step >= step:
                    return r.index
        return None
