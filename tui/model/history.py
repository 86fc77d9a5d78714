"""The full history of one run, loaded on demand (the run detail): step and epoch records,
system samples, the epochs table with the best epoch marked and the early-stopping counter
replayed from ``resolved_config.json``'s ``early_stopping``, and the log's tail."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trainkit.early_stopping import is_better, settings_timeline, trace
from trainkit.runfolder import (
    CHECKPOINTS_DIR,
    CURRENT_META_FILE,
    METRICS_FILE,
    RESOLVED_CONFIG_FILE,
    STATUS_FILE,
    SYSTEM_FILE,
    readers,
)
from trainkit.runfolder.files import JsonlTail
from tui.model.downsample import Point, thin
from tui.model.metrics_log import SCAN_CHUNK, Records, add_epoch, open_log, scan

SKIP = {"kind", "epoch", "step", "t", "global_step"}
SYSTEM_SKIP = {"t", "rank", "world_size"}  # numbers of a system record that are not charted
SNAPSHOT_POINTS = 4_096  # of the history being read, per metric (drawn until the whole of it is read)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class EpochRow:
    epoch: int
    values: dict[str, float]
    duration_s: float | None
    best: bool = False
    bad_epochs: int = 0  # the early-stopping counter after this epoch
    patience: int | None = None  # the patience in force at this epoch (None: early stopping off)
    stopped: bool = False


@dataclass
class History:
    """Everything the run detail draws, in bounded memory whatever the size of ``metrics.jsonl``:
    :meth:`open` reads its tail (full resolution) and an overview of the rest; :meth:`scan` (a
    worker's job) reads the rest and :meth:`refine` takes what it found, the history downsampled
    (min/max per bucket); :meth:`update` reads what was appended since."""

    path: str
    epochs: list[dict] = field(default_factory=list)
    system: list[dict] = field(default_factory=list)
    early_stopping: dict | None = None
    timeline: list = field(default_factory=list)  # the settings in force from each epoch (resumes change them)
    monitor: str = "val_loss"
    mode: str = "min"
    bad_lines: int = 0
    warnings: list[str] = field(default_factory=list)
    started_at: float | None = None  # training_status.json's (the latest session's start)
    tail_start: int = 0  # the history before this offset is read by the scan
    scanned: int = 0  # how far the scan got (the whole history read when it reaches tail_start)
    complete: bool = True
    reload: bool = False  # the log was truncated or replaced: open it again
    _tail: Records = field(default_factory=Records)  # the tail and what was appended since
    _history: Records | None = None  # the scan's records (all of them once complete)
    _partial: dict[str, list[Point]] = field(default_factory=dict)  # the scan's points so far
    _overview: dict[str, list[tuple[int, Point]]] = field(default_factory=dict)
    _first_t: float | None = None
    _metrics: JsonlTail | None = None
    _system: JsonlTail | None = None

    @classmethod
    def load(cls, path: str) -> History:
        """Opened and scanned to the end (for callers that can wait)."""
        h = cls.open(path)
        h.refine(h.scan(), h.tail_start)
        return h

    @classmethod
    def open(cls, path: str) -> History:
        h = cls(path)
        cfg = readers.load(f"{path}/{RESOLVED_CONFIG_FILE}", readers.RESOLVED_CONFIG, h.warnings) or {}
        h.early_stopping = readers.load_early_stopping(cfg, h.warnings)
        resumes = cfg.get("_meta")
        h.timeline = settings_timeline(h.early_stopping, resumes.get("history") if isinstance(resumes, dict) else None)
        meta = readers.load(f"{path}/{CHECKPOINTS_DIR}/{CURRENT_META_FILE}", readers.CURRENT_META, h.warnings) or {}
        if h.early_stopping:
            h.monitor, h.mode = h.early_stopping["metric"], h.early_stopping["mode"]
        elif isinstance(meta.get("best_metric"), str):
            h.monitor = meta["best_metric"]
            h.mode = "max" if any(k in h.monitor for k in ("acc", "f1", "auc", "bleu")) else "min"
        status = readers.load(f"{path}/{STATUS_FILE}", readers.STATUS, []) or {}
        h.started_at = float(status["started_at"]) if _num(status.get("started_at")) else None
        op = open_log(f"{path}/{METRICS_FILE}")
        h._tail, h._overview, h._first_t, h.tail_start = op.tail, op.overview, op.first_t, op.tail_start
        h.complete = op.tail_start == 0
        if h.complete:  # the tail is the whole log
            h._history, h._tail = h._tail, Records()
        h._metrics = JsonlTail(f"{path}/{METRICS_FILE}", max_bytes=SCAN_CHUNK)
        h._metrics.offset = op.end
        h._metrics.problem = op.problem
        h._system = JsonlTail(f"{path}/{SYSTEM_FILE}")
        h._settle()
        h.update()
        return h

    def scan(self, report=None, cancelled=lambda: False) -> Records | None:
        """The history before the tail, read in full (a worker's job: thread-safe, it changes
        nothing here); ``report(records, offset)`` as it goes."""
        if self.complete:
            return Records()
        return scan(f"{self.path}/{METRICS_FILE}", self.tail_start, report=report, cancelled=cancelled)

    @staticmethod
    def snapshot(records: Records) -> tuple[dict[str, list[Point]], list[dict], int]:
        """What :meth:`refine` needs of a scan in progress (copied in the worker's thread)."""
        return ({n: thin(records.series.points(n), SNAPSHOT_POINTS) for n in records.series.names()},
                list(records.epochs), records.bad)

    def refine(self, found: Records | tuple | None, offset: int) -> None:
        """Take the scan's records: all of them (``Records``, the history complete) or a snapshot
        of those before ``offset``."""
        if found is None or self.complete:
            return
        if isinstance(found, Records):
            found.series.extend_from(self._tail.series)
            for r in self._tail.epochs:
                add_epoch(found.epochs, r)
            found.bad += self._tail.bad
            self._history, self._tail, self._partial, self._overview = found, Records(), {}, {}
            self.scanned, self.complete = self.tail_start, True
        else:
            self._partial, epochs, bad = found
            self._history = Records(epochs=epochs, bad=bad)
            self.scanned = offset
        self._settle()

    def _settle(self) -> None:
        """The epochs and the count of unreadable lines from what is read so far."""
        epochs = list(self._history.epochs) if self._history is not None else []
        for r in self._tail.epochs:
            add_epoch(epochs, r)
        self.epochs = epochs
        bad = self._tail.bad + (self._history.bad if self._history is not None else 0)
        self.bad_lines = bad + (self._metrics.bad_lines if self._metrics is not None else 0)

    def update(self) -> bool:
        """Read what was appended. True when anything changed; a truncated or replaced log sets
        ``reload`` (its history must be read again) and reads nothing."""
        if self.reload:
            return False
        new = 0
        while True:
            recs = self._metrics.read()
            if self._metrics.reset:
                self.reload = True
                return True
            if not recs:
                break
            new += len(recs)
            (self._history if self.complete else self._tail).feed(recs)
        if new:
            self._settle()
        sys_recs = self._system.read()
        if self._system.reset:
            self.system.clear()
        self.system.extend(r for r in sys_recs if _num(r.get("t")))
        return bool(new) or bool(sys_recs) or self._system.reset

    @property
    def problem(self) -> str | None:
        """Why the metrics log could not be read (None: read, or missing)."""
        return self._metrics.problem if self._metrics is not None else None

    def progress(self) -> float:
        """How much of the history is read, 0..1 (1: every record)."""
        return 1.0 if self.complete or not self.tail_start else min(1.0, self.scanned / self.tail_start)

    def points(self, name: str) -> list[Point]:
        """A step metric's points, oldest first: while the scan runs, what it read so far, the
        overview's samples beyond it, then the tail."""
        if self.complete:
            return self._history.series.points(name)
        out = list(self._partial.get(name, ()))
        out.extend(p for off, p in self._overview.get(name, ()) if off >= self.scanned)
        out.extend(self._tail.series.points(name))
        return out

    # ------------------------------------------------------------------ derived
    def start_time(self) -> float | None:
        """The run's start, the one zero of every wall-time axis: the earliest of the status's
        ``started_at`` and the first step, epoch and system record (a resumed run's ``started_at``
        is its latest session's; its first records are older)."""
        times = [r["t"] for rs in (self.epochs, self.system) for r in rs[:1] if _num(r.get("t"))]
        if self._first_t is not None:
            times.append(self._first_t)
        if self.started_at is not None:
            times.append(self.started_at)
        return min(times) if times else None

    def system_info(self) -> dict:
        """``rank`` and ``world_size`` of the latest system record that has them (under DDP the
        samples are one rank's process); empty when not recorded."""
        for r in reversed(self.system[-50:]):
            ws = r.get("world_size")
            if isinstance(ws, int) and not isinstance(ws, bool):
                rank = r.get("rank")
                return {"world_size": ws, "rank": rank if isinstance(rank, int) and not isinstance(rank, bool) else 0}
        return {}

    def metric_names(self) -> list[str]:
        """Every charted metric: ``loss`` and ``lr`` of the steps, then the epoch records' numbers."""
        names: list[str] = []
        if self.points("loss"):
            names.append("loss")
        for r in self.epochs:
            for k, v in r.items():
                if k not in SKIP and _num(v) and f"epoch:{k}" not in names:
                    names.append(f"epoch:{k}")
        if self.points("lr"):
            names.append("lr")
        return names

    def series(self, name: str, x: str = "step") -> list[tuple[float, float]]:
        """(x, y) points of a metric; ``x`` is ``step`` (the global step, or the epoch) or ``time``."""
        if name.startswith("epoch:"):
            key = name[6:]
            return [(float(r["t"] if x == "time" and _num(r.get("t")) else r["epoch"]), float(r[key]))
                    for r in self.epochs if _num(r.get(key))]
        if x == "time":
            return [(p[2], p[3]) for p in self.points(name) if not math.isnan(p[2])]
        return [(p[0], p[3]) for p in self.points(name)]

    def system_names(self) -> list[str]:
        names: list[str] = []
        for r in self.system[-50:]:
            for k, v in r.items():
                if k not in SYSTEM_SKIP and _num(v) and k not in names:
                    names.append(k)
        return names

    def system_series(self, name: str) -> list[tuple[float, float]]:
        return [(float(r["t"]), float(r[name])) for r in self.system if _num(r.get(name))]

    def epoch_rows(self) -> list[EpochRow]:
        """One row per finished epoch: the best (by the monitored metric) marked, and the
        early-stopping counter replayed as the trainer counted it."""
        by_epoch: dict[int, dict] = {r["epoch"]: r for r in self.epochs}
        records = [by_epoch.get(i) for i in range(max(by_epoch) + 1)] if by_epoch else []
        counted = {t.epoch: t for t in trace(records, self.timeline or settings_timeline(self.early_stopping, None))}
        best_value, best_i = None, None
        rows = []
        for r in self.epochs:
            values = {k: float(v) for k, v in r.items() if k not in SKIP and k != "duration_s" and _num(v)}
            row = EpochRow(r["epoch"], values, float(r["duration_s"]) if _num(r.get("duration_s")) else None)
            if is_better(r.get(self.monitor), best_value, self.mode):
                best_value, best_i = float(r[self.monitor]), len(rows)
            t = counted.get(r["epoch"])
            if t is not None and t.active:
                row.stopped, row.bad_epochs, row.patience = t.stopped, t.bad_epochs, t.patience
            rows.append(row)
        if best_i is not None:
            rows[best_i].best = True
        return rows
