"""What the server reads from its ROOTs: the run index (``trainkit.status`` over every run, reusing
the result of runs whose files did not change; several ROOTs named as ``trainkit status`` names
them), one run's status line and detail, and metric pages.

No HTTP here. Every read of a run folder goes through :func:`resolve_run` first (a direct child of
its ROOT that ``find_runs`` would list), and the files this module opens itself must resolve inside
the run folder (a symlinked file pointing elsewhere reads as missing).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from trainkit.formatting import fmt_duration, fmt_progress, fmt_sig, format_age
from trainkit.lifecycle.verdicts import read_run_reports, the_report, verdict_line
from trainkit.runfolder import (
    CHECKPOINTS_DIR,
    EPOCHS_DIR,
    LIVE,
    METRICS_FILE,
    PROGRESS_FILE,
    RUN_MARKERS,
    RUNNING,
    STATUS_FILE,
    VALIDATION_SCORES_FILE,
    RunPaths,
    epoch_dir,
)
from trainkit.runfolder.files import JsonlTail, ReadProblem, open_regular, read_json_object_or_none
from trainkit.status import RunStatus, find_runs, run_status

METRICS_MAX_BYTES = 4 << 20  # per /metrics response; the rest comes with the next offset
REUSE_MAX_S = 30.0  # a finished run's entry is recomputed at least this often even if nothing changed
EPOCH_TAIL_BYTES = 1 << 16  # how far back in metrics.jsonl to look for the last epoch record


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


# --------------------------------------------------------------------------------------------
# names and files


def resolve_run(root: str, name: str) -> str | None:
    """The folder of run ``name`` (already percent-decoded, once), or None unless it is a direct,
    non-hidden, non-symlinked child folder of ``root`` holding a run marker (``find_runs``'s rule)
    whose real path lies in ROOT's real path."""
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
        return None
    path = os.path.join(root, name)
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):  # a symlink is never a run (find_runs does not follow)
            return None
        if os.path.dirname(os.path.realpath(path)) != os.path.realpath(root):
            return None
    except (OSError, ValueError):
        return None
    from trainkit.foreign import model_config_only  # an HF output folder's config.json is the model's

    if model_config_only(path):
        return None
    return path if any(os.path.exists(f"{path}/{m}") for m in RUN_MARKERS) else None


def inside(path: str, run_dir: str) -> bool:
    real = os.path.realpath(path)
    return real.startswith(os.path.realpath(run_dir) + os.sep)


def read_object(path: str, run_dir: str) -> dict | None:
    """The JSON object at ``path`` if it resolves inside ``run_dir``; None when missing or malformed."""
    return read_json_object_or_none(path) if inside(path, run_dir) else None


def _stat_key(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


# --------------------------------------------------------------------------------------------
# the index of all runs


@dataclass(frozen=True)
class Entry:
    status: RunStatus  # as computed at ``computed_at`` (heartbeat age then)
    key: tuple  # the stats it was computed from
    computed_at: float
    activity_at: float  # heartbeat_at; else the newest status/progress mtime; else the folder's mtime
    started_at: float | None  # live runs only: what orders two active runs


@dataclass(frozen=True)
class Snapshot:
    runs: list[RunStatus]
    body: bytes  # orjson of ``runs``: what /runs sends (as `trainkit status --json`, unindented)
    active: str | None  # the name of the most recently active run
    at: float
    # several ROOTs: each listed name -> (its ROOT, its name there); one ROOT: empty (names are its own)
    where: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)


def _aged(rs: RunStatus, seconds: float) -> RunStatus:
    if rs.heartbeat_age_s is None or seconds <= 0:
        return rs
    return dataclasses.replace(rs, heartbeat_age_s=rs.heartbeat_age_s + seconds)


def choose_active(entries: list[Entry]) -> Entry | None:
    """Running or paused runs first, the most recently started of them (so the line does not flip
    between two runs whose heartbeats alternate); with none active, the largest heartbeat_at,
    falling back to the newest status/progress mtime."""
    live = [e for e in entries if e.status.state in LIVE]
    if live:
        return max(live, key=lambda e: (e.started_at or e.activity_at, e.activity_at, e.status.name))
    return max(entries, key=lambda e: (e.activity_at, e.status.name), default=None)


class RunIndex:
    """``trainkit.status.scan`` for the server: the same ``find_runs`` and ``run_status``, but a run
    whose folder, status, progress, epochs and checkpoints stats did not change since the last
    refresh, and that is not running or paused (whose state depends on the clock and the pid), keeps
    its previous result (its heartbeat age moved on), for at most ``REUSE_MAX_S``. Several ROOTs
    (``trainkit serve ROOT [ROOT...]``): listed as ``trainkit.roots.scan_roots`` lists them, each
    ROOT's runs by name, the ROOTs in the order given, the names made unique by the same rule."""

    def __init__(self, root: str | list[str], *, stale_s: float | None = None) -> None:
        from trainkit.roots import distinct
        from trainkit.serve.foreign_runs import ForeignIndex

        self.roots = distinct([root] if isinstance(root, str) else list(root))
        self.root = self.roots[0]
        self.stale_s = stale_s
        # the runs other tools wrote (listed with their source), one index per ROOT
        self.foreign = {r: ForeignIndex(r) for r in self.roots}
        self.reused = self.computed = 0  # for tests and the benchmark
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def key(self, path: str) -> tuple:
        return tuple(_stat_key(p) for p in (path, f"{path}/{STATUS_FILE}", f"{path}/{PROGRESS_FILE}",
                                             f"{path}/{EPOCHS_DIR}", f"{path}/{CHECKPOINTS_DIR}"))

    def entry(self, path: str, *, now: float, host: str) -> Entry:
        key = self.key(path)
        old = self._entries.get(path)
        if (old is not None and old.key == key and old.status.state not in LIVE
                and now - old.computed_at < REUSE_MAX_S):
            self.reused += 1
            return old
        self.computed += 1
        rs = run_status(path, now=now, host=host, stale_s=self.stale_s)
        folder, status, prog = key[0], key[1], key[2]
        if rs.heartbeat_age_s is not None:
            activity = now - rs.heartbeat_age_s
        elif status or prog:
            activity = max(k[0] for k in (status, prog) if k) / 1e9
        else:
            activity = folder[0] / 1e9 if folder else 0.0
        started = None
        if rs.state in LIVE:
            started = _num((read_object(f"{path}/{STATUS_FILE}", path) or {}).get("started_at"))
        return Entry(rs, key, now, activity, started)

    def refresh(self) -> Snapshot:
        with self._lock:
            now, host = time.time(), socket.gethostname()
            entries: dict[str, Entry] = {}
            groups = []
            for root in self.roots:
                mine = {p: self.entry(p, now=now, host=host) for p in find_runs(root)}
                entries.update(mine)
                runs = [_aged(e.status, now - e.computed_at) for e in mine.values()]
                runs += self.foreign[root].runs(set(mine), now)
                runs.sort(key=lambda r: r.name)  # as trainkit status --json orders them
                groups.append((root, runs))
            self._entries = entries
            active = choose_active(list(entries.values()))
            if len(groups) == 1:
                runs = groups[0][1]
                return Snapshot(runs, orjson.dumps(runs), active.status.name if active else None, now)
            return named_apart(groups, active.status.path if active else None, now)


def named_apart(groups: list[tuple[str, list[RunStatus]]], active_path: str | None, now: float) -> Snapshot:
    """The runs of several ROOTs in one list, named as ``trainkit status`` names them
    (:func:`trainkit.roots.unique_names`), and where each name lies. A renamed run is a copy: the
    index's kept results keep their own names."""
    from trainkit.roots import labels, unique_names

    runs: list[RunStatus] = []
    where: dict[str, tuple[str, str]] = {}
    active = None
    named = unique_names(((root, [r.name for r in group]) for root, group in groups),
                         labels([root for root, _ in groups]))  # never the ROOT as given: no absolute path
    for (root, group), names in zip(groups, named, strict=True):
        for r, name in zip(group, names, strict=True):
            where[name] = (root, r.name)
            if r.path == active_path:
                active = name
            runs.append(r if name == r.name else dataclasses.replace(r, name=name))
    return Snapshot(runs, orjson.dumps(runs), active, now, where)


# --------------------------------------------------------------------------------------------
# one run

STATUS_KEYS = ("running", "current_epoch", "total_epochs", "loss", "name", "state", "progress_percentage", "eta_s",
               "heartbeat_age_s")


def no_status() -> dict:
    return {k: False if k == "running" else None for k in STATUS_KEYS}


def status_line(path: str, *, stale_s: float | None = None, text: bool = False) -> dict:
    """The seed's ``running``/``current_epoch``/``total_epochs``/``loss`` plus name, state, progress,
    ETA and heartbeat age. State and progress come from ``run_status``; epoch, loss and ETA from
    ``training_status.json`` (a wrongly typed value reads as null); the ETA only while the run is
    running (a crashed, stopped or paused run has none). ``text``: also ``text``, the numbers as
    every surface prints them (:func:`numbers_text`)."""
    rs = run_status(path, stale_s=stale_s)
    st = read_object(f"{path}/{STATUS_FILE}", path) or {}
    total = rs.total_epochs if rs.total_epochs is not None else _int(st.get("total_epochs"))
    line = {"running": rs.state in LIVE, "current_epoch": _int(st.get("current_epoch")), "total_epochs": total,
            "loss": _num(st.get("loss")), "name": rs.name, "state": rs.state,
            "progress_percentage": rs.progress_percentage,
            "eta_s": _num(st.get("eta_s")) if rs.state == RUNNING else None,
            "heartbeat_age_s": rs.heartbeat_age_s}
    if text:
        line["text"] = {**numbers_text(rs, line["loss"]), "eta": fmt_duration(line["eta_s"]),
                        "heartbeat_age": format_age(rs.heartbeat_age_s)}
    return line


def numbers_text(rs: RunStatus, loss: float | None) -> dict:
    """A run's numbers as text, by the one formatter (the page shows these, so that the browser,
    the CLI and trainmon round alike): ``progress`` (199/200 is 99.5 %, never 100 %), ``loss``
    (3.344e-05, never 0.0000) and ``best``; the status line adds ``eta`` and ``heartbeat_age``."""
    return {"progress": fmt_progress(rs.completed_epochs, rs.total_epochs, rs.early_stopped), "loss": fmt_sig(loss),
            "best": f"{rs.best_metric} {fmt_sig(rs.best_value)}" if rs.best_metric and rs.best_value is not None
            else "-"}


def runs_with_text(runs: list[RunStatus]) -> list[dict]:
    """``/runs`` with each run's numbers as text too (``?text=1``, for the page)."""
    return [{**{f.name: getattr(r, f.name) for f in dataclasses.fields(r)}, "text": numbers_text(r, r.last_loss)}
            for r in runs]


def last_epoch_record(path: str, rs: RunStatus) -> dict | None:
    """The last complete epoch's ``validation_scores.json`` (it holds every number of the epoch
    record); else the last epoch record in the tail of ``metrics.jsonl``."""
    if rs.completed_epochs > 0:
        rec = read_object(f"{epoch_dir(path, rs.completed_epochs - 1)}/{VALIDATION_SCORES_FILE}", path)
        if rec is not None:
            return rec
    try:  # a regular file inside the run only: a FIFO or a link to /dev/zero is never read
        fd = open_regular(f"{path}/{METRICS_FILE}", within=path)
    except (FileNotFoundError, ReadProblem):
        return None
    try:
        size = os.fstat(fd).st_size
        lines = os.pread(fd, min(size, EPOCH_TAIL_BYTES), max(0, size - EPOCH_TAIL_BYTES)).split(b"\n")
    except OSError:
        return None
    finally:
        os.close(fd)
    for line in reversed(lines[1:] if size > EPOCH_TAIL_BYTES else lines):  # the first may be cut
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("kind") == "epoch":
            return rec
    return None


REPORT_KEYS = ("metric", "gates_passed", "completed", "planned", "done", "ok", "error", "measured_fraction",
               "min_ok_fraction", "profile", "model", "model_sha256", "written_at")


def report_summaries(path: str) -> dict[str, dict]:
    """Per report: its figures, and as judged by trainkit.lifecycle.verdicts (``verdict``: passed,
    failed, no gates, incomplete or stale; ``verdict_text``; ``the_run_report``: the one the run is
    judged by, ``pick_report``'s rule)."""
    out: dict[str, dict] = {}
    reports = RunPaths(Path(path)).reports
    if not reports.is_dir() or not inside(str(reports), path):
        return out
    judged = {r.name: r for r in read_run_reports(path)}
    chosen = the_report(list(judged.values()))
    for p in sorted(reports.glob("*.json")):
        rep = read_object(str(p), path)
        if rep is None:
            out[p.stem] = {"error": f"{p.name}: missing, malformed or not a JSON object"}
            continue
        summary = {k: rep.get(k) for k in REPORT_KEYS}
        metric = rep.get("metric")
        summary["value"] = rep.get(metric) if isinstance(metric, str) else None
        rr = judged.get(p.stem)
        summary.update(verdict=rr.fact.judged if rr else None,
                       verdict_text=verdict_line(rr.judgement) if rr else None,
                       the_run_report=rr is not None and rr is chosen)
        out[p.stem] = summary
    return out


def run_detail(path: str, *, stale_s: float | None = None) -> dict:
    """One run: its status (as in /runs), the status and progress files, the latest epoch record and
    the summary of each report."""
    rs = run_status(path, stale_s=stale_s)
    return {"run": rs, "training_status": read_object(f"{path}/{STATUS_FILE}", path),
            "progress": read_object(f"{path}/{PROGRESS_FILE}", path), "latest_epoch": last_epoch_record(path, rs),
            "report_summaries": report_summaries(path)}


def metrics_page(path: str, after: int, *, max_bytes: int = METRICS_MAX_BYTES) -> dict:
    """The records of ``metrics.jsonl`` from byte offset ``after``: complete lines only, at most
    ``max_bytes`` (``more`` says there is more to fetch now), and ``next``, the offset to ask for
    next. ``reset``: the file shrank below ``after`` (a resume trimmed it) and was read from 0."""
    file = f"{path}/{METRICS_FILE}"
    try:
        size = os.stat(file).st_size if inside(file, path) else None
    except OSError:
        size = None
    if size is None:  # no metrics (yet, or moved aside by --fresh): start again from 0
        return {"records": [], "next": 0, "more": False, "reset": after > 0, "bad_lines": 0}
    tail = JsonlTail(file, max_bytes=max_bytes)
    tail.offset = after
    records = tail.read()
    start = 0 if tail.reset else after
    more = size - start > max_bytes and tail.offset < size
    return {"records": records, "next": tail.offset, "more": more, "reset": tail.reset, "bad_lines": tail.bad_lines}
