"""File primitives of the run-folder contract.

* Rewritten JSON files are written atomically: a temp file in the same folder, flush, fsync,
  ``os.replace``. A reader never sees half a file.
* ``.jsonl`` files are append-only, one complete object per line, flushed per line.
* :class:`JsonlTail` reads a growing ``.jsonl`` by byte offset and leaves a torn last line for
  the next read.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

_DUMP_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class FileFormatError(ValueError):
    """A file exists but does not hold what its reader expects."""


def dumps(obj: Any) -> bytes:
    """One-line JSON bytes (no trailing newline)."""
    return orjson.dumps(obj, option=_DUMP_OPTS)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], *, durable: bool = True,
                 sync_dir: bool = False) -> None:
    """Write ``path`` through a temp file in the same folder, then ``os.replace`` it into place.

    ``write`` receives the open binary temp file. If anything fails (or the process dies) the
    previous content of ``path`` stands and the temp file is removed (or left as ``.*.tmp``).
    ``durable`` fsyncs the data before the rename (a reader or a crash never sees a partial file);
    ``sync_dir`` also fsyncs the folder so the rename itself survives a power loss.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        fsync_dir(path.parent)


def write_json(path: str | os.PathLike, obj: Any, *, durable: bool = True) -> None:
    """Atomically (re)write a JSON file, pretty-printed for humans."""
    data = orjson.dumps(obj, option=_DUMP_OPTS | orjson.OPT_INDENT_2) + b"\n"
    atomic_write(path, lambda f: f.write(data), durable=durable)


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file. Raises ``FileNotFoundError`` or :class:`FileFormatError` (never anything else
    for a bad file)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        what = "empty" if not data.strip() else f"not valid JSON ({e.msg})"
        raise FileFormatError(f"{path}: {what}") from None


def read_json_object(path: str | os.PathLike) -> dict:
    """Like :func:`read_json` but the top level must be an object."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise FileFormatError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def read_json_object_or_none(path: str | os.PathLike) -> dict | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object (for
    readers that fall back quietly; those that must say why call :func:`read_json_object`)."""
    try:
        return read_json_object(path)
    except (FileNotFoundError, FileFormatError, OSError):
        return None


def cleanup_temp_files(folder: str | os.PathLike) -> int:
    """Remove ``.*.tmp`` leftovers of writes that a crash interrupted. Returns how many."""
    n = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for e in entries:
        if e.name.startswith(".") and e.name.endswith(".tmp") and e.is_file(follow_symlinks=False):
            try:
                os.unlink(e.path)
                n += 1
            except FileNotFoundError:
                pass
    return n


class JsonlWriter:
    """Append-only JSON-lines writer: one complete object per line, flushed per line.

    A single ``os.write`` per record on an ``O_APPEND`` descriptor, so a line is never split
    between two writes and concurrent readers see whole lines or nothing of a new line.
    """

    def __init__(self, path: str | os.PathLike, *, durable: bool = False) -> None:
        self.path = Path(path)
        self.durable = durable
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: Any) -> None:
        os.write(self._fd, orjson.dumps(record, option=_DUMP_OPTS | orjson.OPT_APPEND_NEWLINE))
        if self.durable:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncate_tail(path: str | os.PathLike, drop: Callable[[dict], bool], *, block: int = 1 << 16) -> int:
    """Cut the records that ``drop`` selects off the end of an append-only JSONL file, in place.

    Reads backwards from the end, a block at a time, until the first line (from the end) that is
    kept: everything after it (dropped records, a torn last line, unparseable tail lines) is cut
    with one ``truncate``. The cost follows the size of the cut, not of the file, and the inode
    stays: a reader that keeps an offset sees the file shrink and re-reads from the start (see
    :class:`JsonlTail`). Returns the number of complete lines dropped; a missing file is 0.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        end = _complete_end(fd, size, block)  # a torn last line (no newline) always goes
        pos, dropped = end, 0
        carry = None  # the end of the line that the previous block began inside (None: none yet)
        while pos > 0:  # complete lines before `end`, from the last backwards
            start = max(0, pos - block)
            data = os.pread(fd, pos - start, start)
            lines = (data + carry if carry is not None else data[:-1]).split(b"\n")  # data[:-1]: the final newline
            pos = start
            carry = lines.pop(0) if start > 0 else None
            for line in reversed(lines):
                rec = _parse(line)
                if rec is not None and not drop(rec):
                    pos = -1
                    break
                end -= len(line) + 1
                dropped += bool(line.strip())
        if end < size:
            os.ftruncate(fd, end)
        return dropped
    finally:
        os.close(fd)


def _complete_end(fd: int, size: int, block: int) -> int:
    """The offset just after the last newline of the file (0 when it has none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - block)
        i = os.pread(fd, pos - start, start).rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


def _parse(line: bytes) -> dict | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Every complete, parseable object line of a JSONL file (a torn or bad line is skipped)."""
    tail = JsonlTail(path)
    yield from tail.read()


class JsonlTail:
    """Incremental reader of an append-only JSONL file.

    Keeps its byte offset, reads only what was appended (at most ``max_bytes`` per call),
    consumes up to the last newline and leaves a torn last line for the next read. If the file
    shrank or was replaced (new inode), it starts again from the beginning and sets ``reset``.
    Lines that are not JSON objects are counted in ``bad_lines`` and skipped.
    """

    def __init__(self, path: str | os.PathLike, *, max_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.offset = 0
        self.bad_lines = 0
        self.reset = False
        self._inode: int | None = None

    def read(self) -> list[dict]:
        self.reset = False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        try:
            st = os.fstat(fd)
            if (self._inode is not None and st.st_ino != self._inode) or st.st_size < self.offset:
                self.offset = 0
                self.reset = True
            self._inode = st.st_ino
            available = st.st_size - self.offset
            want = available if self.max_bytes is None else min(available, self.max_bytes)
            if want <= 0:
                return []
            chunk = os.pread(fd, want, self.offset)
            end = chunk.rfind(b"\n")
            while end < 0 and want < available:  # one line longer than max_bytes: read just that line
                want = min(available, want * 2)
                chunk = os.pread(fd, want, self.offset)
                end = chunk.find(b"\n")
        finally:
            os.close(fd)
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        for line in chunk[:end].split(b"\n"):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.bad_lines += 1
                continue
            if isinstance(obj, dict):
                out.append(obj)
            else:
                self.bad_lines += 1
        return out
