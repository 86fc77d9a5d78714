"""File primitives of the run-folder contract.

* Rewritten JSON files are written atomically: a temp file in the same folder, flush, fsync,
  ``os.replace``. A reader never sees half a file.
* ``.jsonl`` files are append-only, one complete object per line, flushed per line.
* :class:`JsonlTail` reads a growing ``.jsonl`` by byte offset and leaves a torn last line for
  the next read.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

_DUMP_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
KiB, MiB = 1 << 10, 1 << 20
MAX_LINE_BYTES = 8 * MiB  # one JSONL line (a question with its answer, a conversation's record)
MAX_DEPTH = 64  # nesting of a JSON value read from a run folder (orjson writes only 254 levels)
MAX_NODES = 2_000_000  # values walked in one file (YAML aliases can make a small file a huge tree)


class FileFormatError(ValueError):
    """A file exists but does not hold what its reader expects."""


# reading: regular files only, bounded


class ReadProblem(Exception):
    """A file that exists but is not read: the message says why (without the file's name)."""





def _inside(target: str, folder: str) -> bool:
    folder = os.path.realpath(folder)
    return os.path.commonpath([folder, target]) == folder


def open_regular(path: str | os.PathLike, *, within: str | os.PathLike | None = None) -> int:
    """An ``O_RDONLY`` descriptor of ``path`` if it is a regular file (opened without blocking, so a
    FIFO cannot hang the reader). A symlink is followed only when its target lies inside ``within``
    (default: the file's own folder). Raises FileNotFoundError, or :class:`ReadProblem`."""
    return _open_regular(path, within)[0]


_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def _open_regular(path: str | os.PathLike, within: str | os.PathLike | None, *,
                  missing_ok: bool = False) -> tuple[int, os.stat_result] | None:
    """(descriptor, stat) of a regular file, see :func:`open_regular`; ``missing_ok``: None for a
    missing file instead of FileNotFoundError (a scanner's common case, without a second raise)."""
    path = os.fspath(path)
    try:
        fd = os.open(path, _OPEN_FLAGS | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno == errno.ELOOP:  # the last component is a symlink: follow it only inwards
            target = os.path.realpath(path)
            if not _inside(target, os.fspath(within) if within is not None else os.path.dirname(path) or "."):
                raise ReadProblem("a symlink pointing out of the run folder; not followed") from None
            return _open_regular(target, os.path.dirname(target), missing_ok=missing_ok)
        if e.errno == errno.ENOENT:
            if missing_ok:
                return None
            raise FileNotFoundError(path) from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise ReadProblem("unreadable (permission denied)") from None
        if e.errno == errno.ENXIO:  # a FIFO or socket without a writer
            raise ReadProblem("not a regular file (a FIFO or socket)") from None
        raise ReadProblem(f"unreadable ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        raise ReadProblem(f"unreadable ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a device, FIFO or socket"
        raise ReadProblem(f"not a regular file ({kind})")
    return fd, st


def read_limited(path: str | os.PathLike, limit: int, *, within: str | os.PathLike | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes. Raises FileNotFoundError or
    :class:`ReadProblem` (not regular, a symlink out, unreadable, larger than ``limit``)."""
    return _read_opened(*_open_regular(path, within), limit)


def read_limited_or_none(path: str | os.PathLike, limit: int, *,
                         within: str | os.PathLike | None = None) -> bytes | None:
    """:func:`read_limited`, but None for a missing file (no exception: a scan of many runs meets
    many files that are not there)."""
    opened = _open_regular(path, within, missing_ok=True)
    return None if opened is None else _read_opened(*opened, limit)


def _read_opened(fd: int, st: os.stat_result, limit: int) -> bytes:
    """At most ``limit`` bytes of the opened regular file (closed here), else :class:`ReadProblem`."""
    try:
        if st.st_size > limit:
            raise _too_big(limit)
        chunks, total = [], 0
        want = min(limit + 1, st.st_size + 1)  # the size as of fstat and one byte more: a small file is one read
        while total <= limit:  # a short read of a regular file is its end (one that grew reads on)
            try:
                chunk = os.read(fd, want)
            except OSError as e:
                raise ReadProblem(f"unreadable ({e.strerror or e})") from None
            chunks.append(chunk)
            total += len(chunk)
            if len(chunk) < want:
                break
            want = min(limit + 1 - total, 64 * KiB)
    finally:
        os.close(fd)
    if total > limit:
        raise _too_big(limit)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def path_exists(path: str | os.PathLike) -> bool:
    """``os.path.exists`` (a symlink counts when its target exists) as one ``faccessat`` with the
    effective ids: no stat record is made, which halves the cost of the existence checks a scan of
    many runs makes (markers, the epoch files, launch.json)."""
    try:
        return os.access(path, os.F_OK, effective_ids=_EFFECTIVE_IDS)
    except (OSError, ValueError):
        return False


_EFFECTIVE_IDS = os.access in os.supports_effective_ids


def _too_big(limit: int) -> ReadProblem:
    return ReadProblem(f"larger than {limit // KiB:,} KiB; not read")


def read_regular(path: str | os.PathLike, *, within: str | os.PathLike | None = None) -> bytes:
    """Every byte of a regular file (its size is the bound: a FIFO, a device such as ``/dev/zero``
    or a symlink out of ``within`` is refused, never read or waited on). For files a reader needs
    whole whatever their size (``responses.jsonl`` to repair it); the contract's small files use
    :func:`read_limited`. Raises FileNotFoundError or :class:`ReadProblem`."""
    fd, _ = _open_regular(path, within)
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError as e:
        raise ReadProblem(f"unreadable ({e.strerror or e})") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def sha256_regular(path: str | os.PathLike, *, within: str | os.PathLike | None = None) -> str:
    """The sha256 of a regular file, read in chunks (see :func:`read_regular` for what is refused)."""
    import hashlib

    fd, _ = _open_regular(path, within)
    h = hashlib.sha256()
    try:
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
    except OSError as e:
        raise ReadProblem(f"unreadable ({e.strerror or e})") from None
    finally:
        os.close(fd)
    return h.hexdigest()


def open_regular_file(path: str | os.PathLike, *, within: str | os.PathLike | None = None) -> BinaryIO:
    """A binary file object of a regular file (for readers that take one, e.g. ``torch.load``);
    what :func:`open_regular` refuses is refused."""
    return os.fdopen(open_regular(path, within=within), "rb")


def open_append(path: str | os.PathLike) -> int:
    """An ``O_APPEND`` descriptor of ``path`` (created 0666 minus the umask when missing) if it is
    a regular file: a FIFO (whose writer would wait for a reader forever), a device or a symlink is
    refused with :class:`ReadProblem` (its message says why). For logs a child process appends to."""
    import fcntl

    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ReadProblem("a symbolic link; not written through") from None
        if e.errno == errno.ENXIO:
            raise ReadProblem("not a regular file (a FIFO)") from None
        raise ReadProblem(f"cannot be opened ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ReadProblem("not a regular file (a device, FIFO or socket)")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def depth(value: Any, limit: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> int:
    """Nesting depth of a JSON-like value (iterative: a deep value cannot overflow the stack).
    Returns ``limit + 1`` as soon as the value is deeper than ``limit`` or has more than
    ``max_nodes`` values (a YAML alias bomb)."""
    if not isinstance(value, (dict, list)):
        return 0
    deepest, stack, seen = 0, [(value, 1)], 1
    while stack:  # only containers are pushed; scalars are counted in bulk
        v, d = stack.pop()
        if d > deepest:
            deepest = d
            if d > limit:
                return d
        seen += len(v)
        if seen > max_nodes:
            return limit + 1
        for x in (v.values() if isinstance(v, dict) else v):
            if isinstance(x, (dict, list)):
                stack.append((x, d + 1))
    return deepest


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
    tmp = None
    try:  # the temp file is made inside the try: an interrupt right after its creation removes it too
        fd, tmp = _create_temp(path)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise
    if sync_dir:
        fsync_dir(path.parent)


def _create_temp(path: Path) -> tuple[int, str]:
    """A new temp file beside ``path`` (``.<name>.<random>.tmp``), created with mode 0666 minus
    the umask, as a plain ``open()`` would (``mkstemp``'s 0600 would hide the run from a
    colleague's trainmon)."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: could not create a temp file beside it")


def write_json(path: str | os.PathLike, obj: Any, *, durable: bool = True) -> None:
    """Atomically (re)write a JSON file, pretty-printed for humans."""
    data = orjson.dumps(obj, option=_DUMP_OPTS | orjson.OPT_INDENT_2) + b"\n"
    atomic_write(path, lambda f: f.write(data), durable=durable)


def read_json(path: str | os.PathLike, *, limit: int = 64 * MiB) -> Any:
    """Parse a JSON file: a regular file of at most ``limit`` bytes, nested at most
    :data:`MAX_DEPTH` levels. Raises ``FileNotFoundError`` or :class:`FileFormatError` (never
    anything else for a bad file). Typed readers of the contract use :mod:`trainkit.runfolder.readers`."""
    path = Path(path)
    try:
        data = read_limited(path, limit)
    except ReadProblem as e:
        raise FileFormatError(f"{path}: {e}") from None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        what = "empty" if not data.strip() else f"not valid JSON ({e.msg})"
        raise FileFormatError(f"{path}: {what}") from None
    if depth(value) > MAX_DEPTH:
        raise FileFormatError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    return value


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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)

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

    Keeps its byte offset and reads only what was appended, in chunks of at most ``chunk_bytes``
    (and at most ``max_bytes`` per call, when given: the rest waits for the next call); consumes
    up to the last newline and leaves a torn last line for the next read. If the file shrank or
    was replaced (new inode), it starts again from the beginning and sets ``reset``. Lines that
    are not JSON objects, nested deeper than :data:`MAX_DEPTH`, or longer than ``max_line`` are
    counted in ``bad_lines`` and skipped. The file is opened as :func:`open_regular` does (a FIFO,
    a device or a symlink out of its folder is never read): ``problem`` then says why.
    """

    def __init__(self, path: str | os.PathLike, *, max_bytes: int | None = None, max_line: int = MAX_LINE_BYTES,
                 chunk_bytes: int = 4 * MiB) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_line = max_line
        self.chunk_bytes = max(chunk_bytes, 1)
        self.offset = 0
        self.bad_lines = 0
        self.reset = False
        self.problem: str | None = None
        self._inode: int | None = None
        self._last = b""  # the last bytes consumed (up to 64), checked on the next read

    def read(self) -> list[dict]:
        self.reset = False
        self.problem = None
        try:
            fd, st = _open_regular(self.path, None)
        except FileNotFoundError:
            return []
        except ReadProblem as e:
            self.problem = str(e)
            return []
        out: list[dict] = []
        try:
            if (self._inode is not None and st.st_ino != self._inode) or st.st_size < self.offset \
                    or (self._last and os.pread(fd, len(self._last), self.offset - len(self._last)) != self._last):
                self.offset = 0
                self.reset = True
                self._last = b""
            self._inode = st.st_ino
            budget = st.st_size - self.offset if self.max_bytes is None else self.max_bytes
            while budget > 0 and self.offset < st.st_size:
                want = min(self.chunk_bytes, budget, st.st_size - self.offset)
                chunk = os.pread(fd, want, self.offset)
                end = chunk.rfind(b"\n")
                if end < 0:  # a line longer than the chunk
                    before = self.offset
                    if not self._long_line(fd, st.st_size, out):
                        break  # a torn last line: it waits
                    budget -= self.offset - before
                    continue
                self.offset += end + 1
                budget -= end + 1
                self._last = chunk[max(0, end + 1 - 64):end + 1]
                for line in chunk[:end].split(b"\n"):
                    self._parse(line, out)
        finally:
            os.close(fd)
        return out

    def _long_line(self, fd: int, size: int, out: list[dict]) -> bool:
        """At ``offset``, a line longer than a chunk: parse it when it fits ``max_line``, else skip
        it (a bad line). False when it has no newline yet (a torn line: it waits)."""
        pos = self.offset
        while pos < size:
            block = os.pread(fd, min(self.chunk_bytes, size - pos), pos)
            i = block.find(b"\n")
            if i >= 0:
                end = pos + i
                if end - self.offset <= self.max_line:
                    self._parse(os.pread(fd, end - self.offset, self.offset), out)
                else:
                    self.bad_lines += 1
                self.offset = end + 1
                self._last = os.pread(fd, min(64, self.offset), self.offset - min(64, self.offset))
                return True
            pos += len(block)
        return False

    def _parse(self, line: bytes, out: list[dict]) -> None:
        if not line.strip():
            return
        if len(line) > self.max_line:
            self.bad_lines += 1
            return
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.bad_lines += 1
            return
        if isinstance(obj, dict) and depth(obj) <= MAX_DEPTH:
            out.append(obj)
        else:
            self.bad_lines += 1
