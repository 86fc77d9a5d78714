"""Where the lifecycle reads and writes, and what names an experiment.

ROOT (default ``./experiments``) holds the experiments, one folder each, directly under it. Beside
ROOT: the archive ``<ROOT>-archive/``, production configs in ``configs/`` and the leaderboard
``reports/leaderboard.csv``. An experiment is given by its NAME (the folder name) or by a path to
the folder inside ROOT (``experiments/2026-11-22-x/``, as tab completion writes it); anything else
(outside ROOT, nested deeper, ``..``, a leading dot, an empty name) is refused with one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trainkit.errors import UserError
from trainkit.runfolder import ARCHIVE_SUFFIX, DEFAULT_ROOT, LEADERBOARD_FILE, PRODUCTION_DIR, REPORTS_DIR, RUN_NAME
from trainkit.runfolder.lock import LockHeld, LockUnavailable, take

LEADERBOARD_CSV = Path(REPORTS_DIR) / LEADERBOARD_FILE
ROOT_LOCK = ".trainkit-lifecycle.lock"  # hidden: never taken for an experiment
LOCK_WAIT_S = 10.0


@dataclass(frozen=True)
class Layout:
    """Absolute paths of ROOT, its archive, the production folder and the leaderboard."""

    root: Path
    archive: Path
    production: Path
    leaderboard: Path

    @classmethod
    def at(cls, root: str | os.PathLike = DEFAULT_ROOT, *, archive_dir: str | os.PathLike | None = None,
           production_dir: str | os.PathLike | None = None,
           leaderboard_csv: str | os.PathLike | None = None) -> Layout:
        r = Path(os.path.abspath(root))
        if r.parent == r:
            raise UserError(f"{root}: ROOT cannot be the filesystem root")
        base = r.parent
        return cls(
            root=r,
            archive=Path(os.path.abspath(archive_dir)) if archive_dir else base / f"{r.name}{ARCHIVE_SUFFIX}",
            production=Path(os.path.abspath(production_dir)) if production_dir else base / PRODUCTION_DIR,
            leaderboard=Path(os.path.abspath(leaderboard_csv)) if leaderboard_csv else base / LEADERBOARD_CSV)

    def check_apart(self, what: str, folder: Path) -> None:
        """``folder`` (the archive, the production folder) must be neither ROOT nor inside it, else
        it would read as an experiment."""
        inside = os.path.realpath(folder) + os.sep
        if inside.startswith(os.path.realpath(self.root) + os.sep):
            raise UserError(f"{what} {folder} is inside ROOT {self.root}; choose a folder beside it")

    def show(self, path: Path) -> str:
        """``path`` relative to the folder holding ROOT when it lies below it (for messages)."""
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)


def check_name(name: str) -> str:
    """A valid experiment folder name, or :class:`UserError`."""
    if not name:
        raise UserError("an experiment name cannot be empty")
    if "/" in name or "\\" in name or os.sep in name or "\0" in name:
        raise UserError(f"{name!r}: an experiment name cannot contain a path separator")
    if name in (".", ".."):
        raise UserError(f"{name!r} is not an experiment name")
    if name.startswith("."):
        raise UserError(f"{name!r}: an experiment name cannot start with a dot")
    if len(name.encode()) > 255:
        raise UserError(f"{name[:40]}...: an experiment name is at most 255 bytes")
    return name


def experiment_name(base: Path, ref: str) -> str:
    """The name of the experiment ``ref`` designates in ``base`` (ROOT or the archive): a bare NAME,
    or a path (absolute or relative to the current folder) to a folder directly inside ``base``."""
    text = ref.rstrip("/" + os.sep) or ref
    if "/" not in text and os.sep not in text:
        return check_name(text)
    if ".." in Path(text).parts:
        raise UserError(f"{ref}: '..' is not allowed in an experiment path")
    p = Path(os.path.abspath(text))
    if os.path.realpath(p.parent) != os.path.realpath(base):
        raise UserError(f"{ref}: not a folder directly inside {base} (give a NAME, or a path to one of its folders)")
    return check_name(p.name)


def experiment_dir(base: Path, ref: str, *, elsewhere: Path | None = None, where: str = "under") -> Path:
    """The existing experiment folder ``ref`` in ``base``; ``elsewhere`` (the archive, or ROOT) is
    only named in the message when the experiment is there instead."""
    name = experiment_name(base, ref)
    path = base / name
    if path.is_symlink():
        raise UserError(f"{path}: is a symbolic link, not an experiment folder")
    if not path.is_dir():
        hint = ""
        if elsewhere is not None and (elsewhere / name).is_dir():
            hint = f" (it is in {elsewhere})"
        raise UserError(f"no experiment {name!r} {where} {base}{hint}")
    return path


def experiment_folders(base: Path) -> list[str]:
    """Names of the experiment folders directly under ``base`` (hidden entries and links skipped), sorted."""
    try:
        with os.scandir(base) as it:
            return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def slug(name: str) -> str:
    """The experiment name without its ``YYYY-MM-DD-`` prefix."""
    return name[11:] if RUN_NAME.fullmatch(name) and len(name) > 11 else name


@contextmanager
def held(path: Path, purpose: str, *, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the lock file ``path`` (a :class:`~trainkit.runfolder.lock.RunLock`: O_EXCL, pid and host, a dead
    holder's lock is broken). Waits up to ``wait_s`` for a live holder, then refuses with one line."""
    try:
        lock = take(path, purpose, wait_s=wait_s)
    except LockHeld as e:
        raise UserError(str(e) if isinstance(e, LockUnavailable) else f"busy: {e}") from None
    try:
        yield
    finally:
        lock.release()


def root_lock(layout: Layout, purpose: str, *, wait_s: float = LOCK_WAIT_S):
    """ROOT's lifecycle lock (``ROOT/.trainkit-lifecycle.lock``): two moves or promotions never race."""
    layout.root.mkdir(parents=True, exist_ok=True)
    return held(layout.root / ROOT_LOCK, f"experiments {purpose}", wait_s=wait_s)
