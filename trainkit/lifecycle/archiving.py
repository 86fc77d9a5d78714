"""Archive and restore: plan (read only: the selection, what would move, why others do not), then
execute the plan under ROOT's lock.

Only what was named or selected moves. ``active`` experiments and live runs are never archived,
and a live run is never restored: each candidate's run lock is taken (so no training or evaluation
can start on it while it moves) and it is classified again just before its move. An interrupted
cross-filesystem move is finished (or rolled back) first by the next archive or restore.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trainkit.errors import UserError
from trainkit.lifecycle import moves
from trainkit.lifecycle.classification import (
    ACTIVE,
    ARCHIVED,
    DEFAULTS,
    EVALUATED,
    FAILED_CLASS,
    PROMOTED,
    STALE,
    SUCCESS,
    Options,
)
from trainkit.lifecycle.facts import inspect
from trainkit.lifecycle.layout import Layout, experiment_dir, experiment_folders, experiment_name, root_lock
from trainkit.lifecycle.metadata import read_metadata, update_metadata
from trainkit.lifecycle.moves import Moved, MoveError, Progress
from trainkit.runfolder import DEFAULT_ROOT, LIVE, LOCK_FILE, readers
from trainkit.runfolder.lock import LockHeld, RunLock, holder_text, live_eval_locks, read_lock

ARCHIVE, RESTORE = "archive", "restore"
STATUS_CHOICES = ("all", SUCCESS, FAILED_CLASS, EVALUATED, STALE)
SELECTED_BY = {"all": (SUCCESS, FAILED_CLASS, EVALUATED, STALE), SUCCESS: (SUCCESS,), FAILED_CLASS: (FAILED_CLASS,),
               EVALUATED: (EVALUATED,), STALE: (STALE,)}


@dataclass
class Candidate:
    """An experiment considered for a move."""

    name: str
    src: Path
    dst: Path
    status: str
    reason: str
    files: int = 0
    bytes: int = 0
    why_not: str | None = None  # set for the ones that are not selected


@dataclass
class MovePlan:
    op: str  # archive | restore
    layout: Layout
    selected: list[Candidate] = field(default_factory=list)
    skipped: list[Candidate] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # interrupted moves finished first (either way)
    retry: list[str] = field(default_factory=list)  # named ones with an interrupted move the other way
    chosen: bool = True  # False: no NAME and no --status, nothing was chosen
    status: str | None = None
    named: bool = False
    options: Options = DEFAULTS

    @property
    def source(self) -> Path:
        return self.layout.root if self.op == ARCHIVE else self.layout.archive

    @property
    def target(self) -> Path:
        return self.layout.archive if self.op == ARCHIVE else self.layout.root


@dataclass
class Outcome:
    name: str
    src: Path
    dst: Path
    moved: bool
    detail: str  # rename | copy, or why not
    files: int = 0
    bytes: int = 0


@dataclass
class MoveResult:
    plan: MovePlan
    moved: list[Outcome] = field(default_factory=list)
    not_moved: list[Outcome] = field(default_factory=list)
    finished: list[Outcome] = field(default_factory=list)  # interrupted moves finished or rolled back


BeforeMove = Callable[[Candidate], None]


# --------------------------------------------------------------------------------------------
# plans (read only)


def _why_not_archived(status: str, wanted: str | None) -> str | None:
    if status == ACTIVE:
        return "active experiments are never archived"
    if wanted is None:
        return None
    if status not in SELECTED_BY[wanted]:
        return f"not selected by --status {wanted}" + (" (archive it by name)" if status == PROMOTED else "")
    return None


def plan_archive(root: str | os.PathLike = DEFAULT_ROOT, names: Sequence[str] = (), *, status: str | None = None,
                 archive_dir: str | os.PathLike | None = None, now: float | None = None,
                 options: Options = DEFAULTS) -> MovePlan:
    """Which experiments an archive would move (NAMEs, filtered by ``status`` when given; or every
    experiment of ROOT with that ``status``), with their file count and size. Writes nothing."""
    layout = Layout.at(root, archive_dir=archive_dir)
    layout.check_apart("the archive", layout.archive)
    if status is not None and status not in STATUS_CHOICES:
        raise UserError(f"--status {status!r}: choose one of {', '.join(STATUS_CHOICES)}")
    if not layout.root.is_dir():
        raise UserError(f"{root}: no such folder")
    plan = MovePlan(ARCHIVE, layout, status=status, named=bool(names), options=options,
                    pending=[moves.pending_name(j) for j in _journals(layout)])
    if names:
        folders = _unique([experiment_dir(layout.root, n, elsewhere=layout.archive) for n in
                           _not_pending(plan, layout.root, names)])
    elif status:
        folders = [layout.root / n for n in experiment_folders(layout.root)]
    else:
        plan.chosen = False
        return plan
    now = time.time() if now is None else now
    host = socket.gethostname()
    for folder in folders:
        if folder.name in plan.pending:
            continue  # its interrupted move is finished first
        exp, _, tree = inspect(folder, now=now, options=options, host=host)
        c = Candidate(folder.name, folder, layout.archive / folder.name, exp.status, exp.reason, tree.files, tree.bytes)
        c.why_not = _why_not_archived(exp.status, status)
        if c.why_not is None and os.path.lexists(c.dst):
            c.why_not = f"{layout.show(c.dst)} already exists (never overwritten)"
        (plan.selected if c.why_not is None else plan.skipped).append(c)
    return plan


def plan_restore(root: str | os.PathLike = DEFAULT_ROOT, names: Sequence[str] = (), *,
                 archive_dir: str | os.PathLike | None = None, now: float | None = None) -> MovePlan:
    """Which archived experiments a restore would move back to ROOT. Writes nothing."""
    layout = Layout.at(root, archive_dir=archive_dir)
    layout.check_apart("the archive", layout.archive)
    if not names:
        raise UserError("name the experiments to restore (trainkit experiments list --archived shows them)")
    if not layout.archive.is_dir():
        raise UserError(f"there is no archive at {layout.archive}")
    plan = MovePlan(RESTORE, layout, named=True, pending=[moves.pending_name(j) for j in _journals(layout)])
    now = time.time() if now is None else now
    host = socket.gethostname()
    for folder in _unique([experiment_dir(layout.archive, n, elsewhere=layout.root, where="in")
                           for n in _not_pending(plan, layout.archive, names)]):
        if folder.name in plan.pending:
            continue
        exp, _, tree = inspect(folder, now=now, host=host, in_archive=True)
        c = Candidate(folder.name, folder, layout.root / folder.name, exp.status, exp.reason, tree.files, tree.bytes)
        if exp.status == ACTIVE:
            c.why_not = "a live run is never moved"
        elif os.path.lexists(c.dst):
            c.why_not = f"{layout.show(c.dst)} already exists (never overwritten)"
        (plan.selected if c.why_not is None else plan.skipped).append(c)
    return plan


def _unique(paths: list[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


def _journals(layout: Layout) -> list[Path]:
    """Interrupted moves either way: archives (journals in the archive), restores (in ROOT)."""
    return [*moves.pending(layout.archive), *moves.pending(layout.root)]


def _not_pending(plan: MovePlan, base: Path, names: Sequence[str]) -> list[str]:
    """The NAMEs without an interrupted move; the others are finished first (and those whose move
    went the other way are planned again afterwards: ``retry``)."""
    out = []
    for ref in names:
        name = experiment_name(base, ref)
        if name not in plan.pending:
            out.append(ref)
        elif moves.journal_path(base / name).exists():  # a move into ``base``: the other way
            plan.retry.append(name)
    return out


def _journal_name(journal: Path) -> str:
    return moves.pending_name(journal)


# --------------------------------------------------------------------------------------------
# execution


def archive(plan: MovePlan, *, progress: Progress | None = None, before_move: BeforeMove | None = None) -> MoveResult:
    """Carry out an archive plan (see :func:`plan_archive`); ``before_move`` is called with each
    candidate right before its run lock is taken (a hook for tests and for trainmon's progress)."""
    return _execute(plan, progress=progress, before_move=before_move)


def restore(plan: MovePlan, *, progress: Progress | None = None, before_move: BeforeMove | None = None) -> MoveResult:
    """Carry out a restore plan (see :func:`plan_restore`): the undo of an archive."""
    return _execute(plan, progress=progress, before_move=before_move)


def _execute(plan: MovePlan, *, progress: Progress | None, before_move: BeforeMove | None) -> MoveResult:
    result = MoveResult(plan)
    if not plan.chosen or (not plan.selected and not plan.pending and not _journals(plan.layout)):
        return result
    with root_lock(plan.layout, plan.op):
        plan.target.mkdir(parents=True, exist_ok=True)
        for journal in _journals(plan.layout):  # whichever way they went: an archive, a restore
            result.finished.append(_finish(plan, journal, progress))
        for c in plan.selected + _replan(plan, result):
            if before_move is not None:
                before_move(c)
            out = _move_one(plan, c, progress)
            (result.moved if out.moved else result.not_moved).append(out)
    return result


def _replan(plan: MovePlan, result: MoveResult) -> list[Candidate]:
    """The named experiments whose interrupted move (the other way) is over now: planned again,
    so that `restore NAME` after an archive of NAME was killed restores it (and vice versa)."""
    if not plan.retry:
        return []
    try:
        again = plan_archive(plan.layout.root, plan.retry, status=plan.status, archive_dir=plan.layout.archive,
                             options=plan.options) if plan.op == ARCHIVE else \
            plan_restore(plan.layout.root, plan.retry, archive_dir=plan.layout.archive)
    except UserError as e:  # e.g. the finished move already put it where it was asked to go
        result.not_moved.extend(Outcome(n, plan.source / n, plan.target / n, False, str(e)) for n in plan.retry
                                if not (plan.target / n).is_dir())
        return []
    plan.skipped.extend(again.skipped)
    return again.selected


def _finish(plan: MovePlan, journal: Path, progress: Progress | None) -> Outcome:
    name = _journal_name(journal)
    j = readers.load(journal, moves.JOURNAL, []) or {}
    src = Path(j.get("src", plan.source / name))
    dst = Path(j.get("dst", plan.target / name))
    lock = _take_lock(src) if src.is_dir() else None
    if isinstance(lock, str):
        return Outcome(name, src, dst, False, f"interrupted move left pending: {lock}")
    try:
        moved = moves.resume(journal, on_done=record_move, progress=progress, recorded=is_recorded)
    except (MoveError, OSError) as e:
        return Outcome(name, src, dst, False, f"interrupted move still pending: {e}")
    finally:
        _release(lock, src, dst)
    if moved.rolled_back:
        return Outcome(name, src, dst, False, f"rolled back: {moved.rolled_back}")
    return Outcome(name, src, dst, True, "finished the interrupted copy", moved.files, moved.bytes)


def _move_one(plan: MovePlan, c: Candidate, progress: Progress | None) -> Outcome:
    if not c.src.is_dir():
        return Outcome(c.name, c.src, c.dst, False, f"no longer in {plan.layout.show(plan.source)}")
    lock = _take_lock(c.src)
    if isinstance(lock, str):
        return Outcome(c.name, c.src, c.dst, False, f"live: {lock}")
    try:
        evaluating = live_eval_locks(c.src)  # after the run's lock: an evaluation starting now sees ours
        if evaluating:
            name, info = evaluating[0]
            return Outcome(c.name, c.src, c.dst, False, f"live: evaluation {name} in progress ({holder_text(info)})")
        exp, facts, _ = inspect(c.src, options=plan.options, in_archive=plan.op == RESTORE, ignore_own_lock=True)
        if plan.op == ARCHIVE:
            why = _why_not_archived(exp.status, plan.status)
        else:
            why = "a live run is never moved" if exp.status == ACTIVE else None
        if facts.state in LIVE:
            why = "a live run is never moved"
        if why:
            return Outcome(c.name, c.src, c.dst, False, f"{why} (checked just before the move: {exp.status}: "
                                                        f"{exp.reason})")
        record = {"op": plan.op, "at": time.time(), "status": exp.status, "reason": exp.reason,
                  "from": str(c.src), "to": str(c.dst)}
        try:
            moved = moves.move(c.src, c.dst, record=record, on_done=record_move, progress=progress)
        except MoveError as e:
            return Outcome(c.name, c.src, c.dst, False, str(e))
        except OSError as e:
            return Outcome(c.name, c.src, c.dst, False, f"{e}; nothing is lost: run the command again to finish "
                                                        "or roll back the move")
    finally:
        _release(lock, c.src, c.dst)
    if moved.rolled_back:
        return Outcome(c.name, c.src, c.dst, False, f"rolled back: {moved.rolled_back}")
    return Outcome(c.name, c.src, c.dst, True, moved.method, moved.files, moved.bytes)


def _take_lock(folder: Path) -> RunLock | str:
    lock = RunLock(folder / LOCK_FILE, purpose="experiments move")
    try:
        return lock.acquire()
    except LockHeld as e:
        return str(e)


def _release(lock: RunLock | str | None, src: Path, dst: Path) -> None:
    """Release the run lock wherever it is now (a rename took it along to ``dst``)."""
    if not isinstance(lock, RunLock):
        return
    if src.exists():
        lock.release()
        return
    moved_lock = dst / LOCK_FILE
    info = read_lock(moved_lock)
    if info is not None and info.get("pid") == os.getpid():
        moved_lock.unlink(missing_ok=True)
    lock.held = False


def is_recorded(dst: Path, record: dict) -> bool:
    """Whether ``dst``'s ``metadata.json`` holds this very move (written by :func:`record_move`)."""
    at = record.get("at")
    if at is None:
        return False
    meta = read_metadata(dst)
    return meta.get("archived_at" if record.get("op") == ARCHIVE else "restored_at") == at


def record_move(dst: Path, moved: Moved, record: dict) -> None:
    """Write the move into the moved experiment's ``metadata.json``."""
    files, size = moved.files, moved.bytes
    if record.get("op") == ARCHIVE:
        def change(meta: dict) -> None:
            meta["archived_at"] = record["at"]
            meta["archive"] = {"status": record.get("status"), "reason": record.get("reason"),
                               "original_path": record.get("from"), "archive_path": str(dst),
                               "method": moved.method, "files": files, "bytes": size, "manifest": moved.manifest}
    else:
        def change(meta: dict) -> None:
            last = meta.pop("archive", None)
            if isinstance(last, dict):
                last = {k: v for k, v in last.items() if k != "manifest"}
                meta.setdefault("history", []).append({**last, "archived_at": meta.get("archived_at"),
                                                       "restored_at": record["at"]})
            meta["archived_at"] = None
            meta["restored_at"] = record["at"]
            meta["restored_from"] = record.get("from")
    update_metadata(dst, change)


__all__ = ["ARCHIVE", "ARCHIVED", "RESTORE", "STATUS_CHOICES", "Candidate", "MovePlan", "MoveResult", "Outcome",
           "archive", "plan_archive", "plan_restore", "record_move", "restore"]
