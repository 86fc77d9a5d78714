"""A lock file per run (``O_CREAT | O_EXCL``) holding pid, host and the process's start time, so that
two processes never train the same run at once. A lock whose pid is gone on this host is stale and
taken over, and so is one whose pid now belongs to another process (a reboot or an OOM kill freed
the pid and a later process got it: its start time differs from the one the lock recorded).

A lock that cannot be written (a full or read-only disk) is never left behind empty: the attempt
raises :class:`LockUnavailable` with one line and removes what it created.

Hand-off: the launcher takes a run's lock with a ``handoff_token`` and starts ``trainkit train``
with ``TRAINKIT_LOCK_TOKEN`` set to it; the child takes the lock over (rewrites it with its own pid),
so no third process can slip in between the launcher's decision and the child's start."""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import psutil

from trainkit.runfolder import RunPaths, readers
from trainkit.runfolder.files import write_json

HANDOFF_ENV = "TRAINKIT_LOCK_TOKEN"


START_TOLERANCE_S = 1.0  # a process's start time as recorded and as read again (clock-tick rounding)


class LockHeld(RuntimeError):
    """The run is locked by a live process; the message names it."""


class LockUnavailable(LockHeld):
    """The lock could not be taken for another reason than a holder (a full or read-only disk, no
    permission); the message is one line and nothing was left behind."""


def process_start_time(pid: int | None = None) -> float | None:
    """When process ``pid`` (default: this one) started, as a Unix time; None when it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError, OverflowError, OSError):
        return None


def _process(pid: int) -> tuple[str, float] | None:
    """(status, start time) of process ``pid`` on this host (psutil keeps the start time it read to
    identify the process); None when there is no such process (or it cannot be inspected)."""
    try:
        p = psutil.Process(pid)
        return p.status(), p.create_time()
    except (psutil.Error, ValueError, OverflowError, OSError):
        return None


def _alive(info: tuple[str, float] | None, started_at: float | None, start_time: float | None) -> bool:
    if info is None or info[0] == psutil.STATUS_ZOMBIE:
        return False
    created = info[1]
    if start_time is not None:
        return abs(created - start_time) <= START_TOLERANCE_S
    return started_at is None or created <= started_at + 5.0


_SUSPENDED = (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)


def pid_alive(pid: int, started_at: float | None = None, *, start_time: float | None = None) -> bool:
    """Whether ``pid`` is a live process on this host (not a zombie) and not another process that
    reused the pid: with ``start_time`` (recorded by the process itself) it must have started then;
    with ``started_at`` (a time the process was already running) it must have started before it,
    give or take 5 s of clock rounding. The one liveness check of trainkit."""
    return _alive(_process(pid), started_at, start_time)


def pid_suspended(pid: int) -> bool:
    """Whether ``pid`` is stopped by a signal (Ctrl-Z, SIGSTOP: process state T) on this host."""
    info = _process(pid)
    return info is not None and info[0] in _SUSPENDED


class ProcessProbe:
    """:func:`pid_alive` and :func:`pid_suspended` for one judgement (a run's state): each pid's
    /proc entry is read once however many questions are asked of it. Make a new one for each
    judgement: it never answers from an earlier moment's reading."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[str, float] | None] = {}

    def _info(self, pid: int) -> tuple[str, float] | None:
        if pid not in self._seen:
            self._seen[pid] = _process(pid)
        return self._seen[pid]

    def alive(self, pid: int, started_at: float | None = None, *, start_time: float | None = None) -> bool:
        return _alive(self._info(pid), started_at, start_time)

    def suspended(self, pid: int) -> bool:
        info = self._info(pid)
        return info is not None and info[0] in _SUSPENDED


def holder_alive(info: dict) -> bool:
    """Whether the process a lock names is alive on this host and is the one that wrote the lock
    (its start time; a lock written before start times were recorded: started before the lock)."""
    pid = info.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False
    start = info.get("pid_started_at")
    if isinstance(start, (int, float)) and not isinstance(start, bool):
        return pid_alive(pid, start_time=start)
    created = info.get("created_at")
    return pid_alive(pid, created if isinstance(created, (int, float)) and not isinstance(created, bool) else None)


def read_lock(path: str | os.PathLike, warnings: list[str] | None = None) -> dict | None:
    """The lock's content, type-checked (None when missing or unusable)."""
    return readers.load(path, readers.LOCK, [] if warnings is None else warnings)


def live_lock(path: str | os.PathLike, warnings: list[str], *, host: str | None = None) -> dict | None:
    """The lock's content when another live process on this host holds it (a lock is evidence of
    life, like a heartbeat); None otherwise. A lock of another host proves nothing here: that
    run's heartbeat decides. A lock this process holds (a launcher re-checking a run under its own
    lock) is not another process's life."""
    info = read_lock(path, warnings)
    if info is None or info.get("host") != (host or socket.gethostname()):
        return None
    return info if info.get("pid") != os.getpid() and holder_alive(info) else None


def lock_is_stale(info: dict | None, *, host: str | None = None) -> bool:
    """Stale when unreadable (a crash while creating it), or its pid is gone on this host or now
    belongs to another process (see :func:`holder_alive`). A lock of another host is never
    presumed stale."""
    if info is None:
        return True
    if info.get("host") != (host or socket.gethostname()):
        return False
    return not holder_alive(info)


def holder_text(info: dict) -> str:
    """``pid 123 on host (train)``, with ``, suspended`` when that process is stopped (Ctrl-Z)."""
    pid = info.get("pid")
    suspended = isinstance(pid, int) and info.get("host") == socket.gethostname() and pid_suspended(pid)
    return (f"pid {pid} on {info.get('host')} ({info.get('purpose', 'train')}"
            + (", suspended: fg or kill -CONT resumes it" if suspended else "") + ")")


def live_eval_locks(run_dir: str | os.PathLike) -> list[tuple[str, dict]]:
    """The evaluations in progress in a run: (name, lock) for each ``evals/.NAME.lock`` held by a
    live process (or by another host). An archive holding the run's lock refuses such a run; an
    evaluation takes its own lock first and then checks the run's (so one of the two always sees
    the other)."""
    out: list[tuple[str, dict]] = []
    try:
        entries = sorted(os.scandir(RunPaths(Path(run_dir)).evals), key=lambda e: e.name)
    except OSError:
        return out
    for e in entries:
        if e.name.startswith(".") and e.name.endswith(".lock") and e.is_file(follow_symlinks=False):
            info = read_lock(e.path)
            if info is not None and not lock_is_stale(info):
                out.append((e.name[1:-len(".lock")], info))
    return out


def _unavailable(path: Path, e: OSError) -> LockUnavailable:
    why = e.strerror or str(e)
    if e.errno == errno.EROFS:
        why = "the filesystem is read-only"
    elif e.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "no space left on the disk" if e.errno == errno.ENOSPC else "disk quota exceeded"
    return LockUnavailable(f"cannot take the run lock {path}: {why}")


class RunLock:
    def __init__(self, path: Path, *, purpose: str = "train", handoff_token: str | None = None) -> None:
        self.path = Path(path)
        self.purpose = purpose
        self.handoff_token = handoff_token
        self.held = False

    def _body(self) -> dict:
        body = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose, "created_at": time.time(),
                "pid_started_at": process_start_time()}
        if self.handoff_token:
            body["handoff_token"] = self.handoff_token
        return body

    def acquire(self, *, accept_token: str | None = None) -> RunLock:
        """Take the lock, or raise :class:`LockHeld` (:class:`LockUnavailable` when the disk
        refuses it: nothing is left behind). ``accept_token``: take over a lock handed to us by a
        launcher that holds it with that token."""
        body = orjson.dumps(self._body())
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            except FileExistsError:
                info = read_lock(self.path)
                if accept_token and info is not None and info.get("handoff_token") == accept_token:
                    try:
                        write_json(self.path, self._body())
                    except OSError as e:
                        raise _unavailable(self.path, e) from None
                    self.held = True
                    return self
                if info is None and self._young():
                    time.sleep(0.05)  # being written by its creator right now
                    continue
                if not lock_is_stale(info):
                    raise LockHeld(f"run is locked by {holder_text(info)}; lock file {self.path}") from None
                self._break_stale(info)
                continue
            except OSError as e:
                raise _unavailable(self.path, e) from None
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:  # a full disk: the file exists but is empty; never leave it
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
                raise _unavailable(self.path, e) from None
            self.held = True
            return self
        raise LockHeld(f"could not take the lock {self.path} (it keeps changing)")

    def _young(self) -> bool:
        try:
            return time.time() - self.path.stat().st_mtime < 2.0
        except FileNotFoundError:
            return False

    def _break_stale(self, seen: dict | None) -> None:
        # Rename first: of two processes breaking the same stale lock only one gets it. If what we
        # renamed is not the stale lock we saw but a fresh one taken meanwhile, put it back.
        grave = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        taken = read_lock(grave)
        if taken != seen and not lock_is_stale(taken):
            try:
                os.link(grave, self.path)
            except FileExistsError:
                pass
        os.unlink(grave)

    def release(self) -> None:
        if self.held:
            info = read_lock(self.path)
            if info is not None and info.get("pid") == os.getpid():
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def take(path: str | os.PathLike, purpose: str, *, wait_s: float = 10.0, poll_s: float = 0.05) -> RunLock:
    """Take the lock file ``path`` for a short critical section (ROOT's launch and lifecycle
    locks): waits up to ``wait_s`` for a live holder to let go, then raises :class:`LockHeld`
    (at once :class:`LockUnavailable` when the disk refuses it)."""
    lock = RunLock(Path(path), purpose=purpose)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return lock.acquire()
        except LockUnavailable:
            raise
        except LockHeld:
            if time.monotonic() >= deadline:
                raise
            time.sleep(poll_s)


@contextmanager
def holding(path: str | os.PathLike, purpose: str, *, wait_s: float = 10.0) -> Iterator[RunLock]:
    """:func:`take`, released at the end of the ``with`` block."""
    lock = take(path, purpose, wait_s=wait_s)
    try:
        yield lock
    finally:
        lock.release()
