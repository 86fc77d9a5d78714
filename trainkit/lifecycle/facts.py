"""Reading an experiment folder into :class:`~trainkit.lifecycle.classification.Facts` (the I/O half of
the classification) and into the :class:`Experiment` rows of ``trainkit experiments list``.

One pass over the folder (``os.scandir``, ``lstat`` only, links never followed) gives the newest
modification time, the file count and size; ``trainkit.status`` gives the run state; the rest is
``notes.md``, ``reports/*.json`` (judged by :mod:`trainkit.lifecycle.verdicts`), ``metadata.json``,
``launch.json`` and ``.trainkit.lock``. Nothing is written and nothing from the folder is executed.
"""

from __future__ import annotations

import math
import os
import socket
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from trainkit.lifecycle.classification import (
    DEFAULTS,
    Classification,
    Facts,
    Options,
    ReportFact,
    classify,
    notes_verdict,
    pick_report,
)
from trainkit.lifecycle.metadata import current_promotion, read_metadata
from trainkit.lifecycle.verdicts import read_run_reports, report_value  # noqa: F401 (report_value: re-exported)
from trainkit.runfolder import (
    CHECKPOINTS_DIR,
    CRASHED,
    FAILED,
    LAUNCH_FILE,
    LIVE,
    LOCK_FILE,
    METADATA_FILE,
    METRICS_FILE,
    NOTES_FILE,
    REPORTS_DIR,
    RUN_MARKERS,
    STATUS_FILE,
    readers,
)
from trainkit.runfolder.files import MiB, ReadProblem, read_limited
from trainkit.runfolder.lock import lock_is_stale, read_lock
from trainkit.status import load_json, run_status

# Written by the lifecycle itself (or a lock holder): not a change of the experiment.
NOT_A_CHANGE = (METADATA_FILE, LOCK_FILE)


@dataclass
class TreeStats:
    files: int = 0  # regular files and links (NOT_A_CHANGE files aside, like a move's manifest)
    bytes: int = 0
    last_change: float | None = None
    last_changed: str | None = None
    top: set[str] = field(default_factory=set)  # names directly in the folder
    special: list[str] = field(default_factory=list)  # fifos, sockets, devices (cannot be copied)
    unreadable: list[str] = field(default_factory=list)  # folders that could not be listed


def tree_stats(folder: str) -> TreeStats:
    """Count, size and newest mtime of everything below ``folder`` (directories' own mtimes and
    :data:`NOT_A_CHANGE` files at the top do not count as a change). A tight loop: ``list`` runs it
    over every experiment."""
    out = TreeStats()
    files = size = 0
    newest, newest_entry, newest_rel = -math.inf, None, ""
    stack = [(folder, "")]
    is_reg, is_link = stat.S_ISREG, stat.S_ISLNK
    while stack:
        d, rel = stack.pop()
        try:
            it = os.scandir(d)
        except OSError as e:
            out.unreadable.append(f"{rel or './'}: {e.strerror or e}")
            continue
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append((e.path, f"{rel}{e.name}/"))
                    if not rel:
                        out.top.add(e.name)
                    continue
                if not rel:
                    out.top.add(e.name)
                    if e.name in NOT_A_CHANGE:
                        continue
                st = e.stat(follow_symlinks=False)
                mode = st.st_mode
                if not (is_reg(mode) or is_link(mode)):
                    out.special.append(f"{rel}{e.name}")
                    continue
                files += 1
                size += st.st_size
                if st.st_mtime > newest:
                    newest, newest_entry, newest_rel = st.st_mtime, e.name, rel
    out.files, out.bytes = files, size
    if newest_entry is None:  # no files: the folder's own time
        out.last_change, out.last_changed = os.lstat(folder).st_mtime, "."
    else:
        out.last_change, out.last_changed = newest, newest_rel + newest_entry
    return out


def read_reports(folder: str, warnings: list[str]) -> tuple[ReportFact, ...]:
    """Every ``reports/*.json`` (sorted by name), judged: stale by the run's model, by the gates
    of the config now (see :mod:`trainkit.lifecycle.verdicts`)."""
    return tuple(r.fact for r in read_run_reports(folder, warnings))


NOTES_LIMIT = 4 * MiB  # notes.md read at most (a FIFO, a device or a link out of the run is never read)


def read_notes(folder: str, warnings: list[str]):
    try:
        data = read_limited(f"{folder}/{NOTES_FILE}", NOTES_LIMIT, within=folder)
    except FileNotFoundError:
        return None
    except ReadProblem as e:
        warnings.append(f"{NOTES_FILE}: {e}")
        return None
    return notes_verdict(data.decode("utf-8", errors="replace"))


def lock_holder(folder: str, *, host: str, ignore_own: bool) -> str | None:
    """Who holds the run's ``.trainkit.lock`` when it is a live process (a lock of another host counts)."""
    info = read_lock(Path(folder) / LOCK_FILE)
    if info is None or lock_is_stale(info, host=host):
        return None
    if ignore_own and info.get("pid") == os.getpid() and info.get("host") == host:
        return None
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('purpose', 'train')})"


def past_retry_cap(folder: str, state: str, completed: int, max_crashes: int, warnings: list[str]) -> str | None:
    """Why the launcher will not relaunch this failed/crashed run (its own rule), or None."""
    from trainkit.launcher import decide, read_history
    from trainkit.status import RunStatus

    history = read_history(Path(folder), warnings)
    status = load_json(f"{folder}/{STATUS_FILE}", []) or {}
    started = status.get("started_at")
    run = RunStatus(name=os.path.basename(folder), path=folder, state=state, reason="", completed_epochs=completed,
                    total_epochs=None, progress_percentage=0.0, early_stopped=False, early_stopped_at_epoch=None,
                    finished=False)
    action = decide(run, history, max_crashes=max_crashes,
                    started_at=started if isinstance(started, (int, float)) else None)
    if action is not None and action.action == "give_up":
        return action.reason
    if action is None and history["given_up"] is not None:
        return f"the launcher gave up: {history['given_up'].get('reason', 'no reason recorded')}"
    return None


def own_lock(folder: str, host: str) -> bool:
    info = read_lock(Path(folder) / LOCK_FILE)
    return info is not None and info.get("pid") == os.getpid() and info.get("host") == host


def state_without_lock(folder: str, *, now: float, host: str, stale_s: float | None) -> tuple[str, str]:
    """The run state as ``trainkit.status`` derives it from the files alone, leaving out the run
    lock (which this process holds while it moves the folder)."""
    from trainkit import status as S

    warnings: list[str] = []
    st = S.load_json(f"{folder}/{STATUS_FILE}", warnings, readers.STATUS)
    prog = S.progress(folder, warnings=warnings, status=st)
    has_outputs = st is None and (os.path.exists(f"{folder}/{CHECKPOINTS_DIR}")
                                  or os.path.exists(f"{folder}/{METRICS_FILE}"))
    return S.derive_state(st, prog, now=now, host=host, pid_alive=S.pid_running, has_outputs=has_outputs,
                          stale_s=stale_s)


@dataclass
class Experiment:
    """One row of ``trainkit experiments list``."""

    name: str
    path: str
    status: str
    reason: str
    state: str | None = None
    state_reason: str | None = None
    progress_percentage: float | None = None
    completed_epochs: int | None = None
    total_epochs: int | None = None
    best_metric: str | None = None
    best_value: float | None = None
    report: str | None = None  # the run's report (reports/<report>.json; see pick_report)
    report_verdict: str | None = None  # passed, failed, no gates, incomplete, stale
    report_metric: str | None = None
    report_value: float | None = None
    last_change: float | None = None
    last_changed: str | None = None
    files: int = 0
    bytes: int = 0
    archived_at: float | None = None
    warnings: list[str] = field(default_factory=list)


def inspect(folder: str | os.PathLike, *, now: float | None = None, options: Options = DEFAULTS,
            in_archive: bool = False, host: str | None = None, ignore_own_lock: bool = False,
            stale_s: float | None = None) -> tuple[Experiment, Facts, TreeStats]:
    """Gather the facts of one experiment folder and classify it."""
    folder = os.fspath(folder)
    now = time.time() if now is None else now
    host = host or socket.gethostname()
    warnings: list[str] = []
    tree = tree_stats(folder)
    warnings.extend(f"cannot list {u}; its files are not counted" for u in tree.unreadable)
    run = None
    if any(m in tree.top for m in RUN_MARKERS):
        run = run_status(folder, now=now, host=host, stale_s=stale_s)
        warnings.extend(run.warnings)
        if ignore_own_lock and run.state in LIVE and LOCK_FILE in tree.top and own_lock(folder, host):
            run.state, run.reason = state_without_lock(folder, now=now, host=host, stale_s=stale_s)
    meta = read_metadata(Path(folder), warnings) if METADATA_FILE in tree.top else {}
    archived_at = meta.get("archived_at")
    reports = read_reports(folder, warnings) if REPORTS_DIR in tree.top else ()
    cap = None
    # without launch.json the launcher never ran: no retry cap to be past (unless the cap is one run)
    if run is not None and run.state in (FAILED, CRASHED) and (LAUNCH_FILE in tree.top or options.max_crashes <= 1):
        cap = past_retry_cap(folder, run.state, run.completed_epochs, options.max_crashes, warnings)
    facts = Facts(
        name=os.path.basename(folder),
        state=run.state if run else None, state_reason=run.reason if run else "",
        lock_holder=lock_holder(folder, host=host, ignore_own=ignore_own_lock) if LOCK_FILE in tree.top else None,
        past_retry_cap=cap, last_change=tree.last_change, last_changed=tree.last_changed,
        notes=read_notes(folder, warnings) if NOTES_FILE in tree.top else None, reports=reports,
        in_archive=in_archive, archived_at=archived_at if isinstance(archived_at, (int, float)) else None,
        promotion=current_promotion(meta))
    c: Classification = classify(facts, now, options)
    shown = pick_report(reports)
    exp = Experiment(
        name=facts.name, path=folder, status=c.status, reason=c.reason, state=facts.state,
        state_reason=facts.state_reason or None,
        progress_percentage=run.progress_percentage if run else None,
        completed_epochs=run.completed_epochs if run else None, total_epochs=run.total_epochs if run else None,
        best_metric=run.best_metric if run else None, best_value=run.best_value if run else None,
        report=shown.name if shown else None, report_verdict=shown.judged if shown else None,
        report_metric=shown.metric if shown else None, report_value=shown.value if shown else None,
        last_change=tree.last_change, last_changed=tree.last_changed, files=tree.files, bytes=tree.bytes,
        archived_at=facts.archived_at, warnings=warnings)
    return exp, facts, tree
