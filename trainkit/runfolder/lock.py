"""A lock file per run (``O_CREAT | O_EXCL``) holding pid and host, so that two processes never
train the same run at once. A lock whose pid is gone on this host is stale and taken over.

Hand-off: the launcher takes a run's lock with a ``handoff_token`` and starts ``trainkit train``
with ``TRAINKIT_LOCK_TOKEN`` set to it; the child takes the lock over (rewrites it with its own pid),
so no third process can slip in between the launcher's decision and the child's start."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import orjson
import psutil

from trainkit.runfolder import readers
from trainkit.runfolder.files import write_json

HANDOFF_ENV = "TRAINKIT_LOCK_TOKEN"


class LockHeld(RuntimeError):
    """The run is locked by a live process; the message names it."""


def pid_alive(pid: int, started_at: float | None = None) -> bool:
    """Whether ``pid`` is a live process on this host (not a zombie) and, when ``started_at`` is
    given, not a newer process that reused the pid (it must have started before ``started_at``,
    give or take 5 s of clock rounding). The one liveness check of trainkit."""
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or p.create_time() <= started_at + 5.0
    except (psutil.Error, ValueError, OverflowError, OSError):
        return False


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
    pid = info.get("pid")
    return info if isinstance(pid, int) and pid != os.getpid() and pid_alive(pid) else None


def lock_is_stale(info: dict | None, *, host: str | None = None) -> bool:
    """Stale when unreadable (a crash while creating it) or its pid is gone on this host.
    A lock of another host is never presumed stale."""
    if info is None:
        return True
    if info.get("host") != (host or socket.gethostname()):
        return False
    pid = info.get("pid")
    return not isinstance(pid, int) or not pid_alive(pid)


class RunLock:
    def __init__(self, path: Path, *, purpose: str = "train", handoff_token: str | None = None) -> None:
        self.path = Path(path)
        self.purpose = purpose
        self.handoff_token = handoff_token
        self.held = False

    def _body(self) -> dict:
        body = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose, "created_at": time.time()}
        if self.handoff_token:
            body["handoff_token"] = self.handoff_token
        return body

    def acquire(self, *, accept_token: str | None = None) -> RunLock:
        """Take the lock, or raise :class:`LockHeld`. ``accept_token``: take over a lock handed to
        us by a launcher that holds it with that token."""
        body = orjson.dumps(self._body())
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                info = read_lock(self.path)
                if accept_token and info is not None and info.get("handoff_token") == accept_token:
                    write_json(self.path, self._body())
                    self.held = True
                    return self
                if info is None and self._young():
                    time.sleep(0.05)  # being written by its creator right now
                    continue
                if not lock_is_stale(info):
                    raise LockHeld(f"run is locked by pid {info.get('pid')} on {info.get('host')} "
                                   f"({info.get('purpose', 'train')}, lock file {self.path})") from None
                self._break_stale(info)
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
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
