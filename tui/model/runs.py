"""The in-memory model of the runs under ROOT: file events in, changed run views out.

``refresh(changed_paths)`` is the only entry point after construction: ``None`` means "look at
everything" (start-up, polling); a set of paths means "look again at these" (an event never means
"one append"). JSON files are re-read through :func:`trainkit.status.run_status` (one source of
truth for states and progress); ``metrics.jsonl`` is tailed by offset. Work per call is
time-boxed: what is left waits in :attr:`RunsModel.pending` for the next call.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from trainkit.foreign import model_config_only, watched_name
from trainkit.lifecycle.experiments import flatten
from trainkit.roots import distinct, unique_name
from trainkit.runfolder import (
    ALERTS_FILE,
    ARCHIVE_SUFFIX,
    CHECKPOINTS_DIR,
    COMPLETE,
    CONFIG_FILES,
    CONSOLE_FILE,
    CURRENT_META_FILE,
    EPOCHS_DIR,
    EVALS_DIR,
    EVALUATING,
    LAUNCH_FILE,
    LAYERS_FILE,
    LIVE,
    LOCK_FILE,
    LOG_FILE,
    METRICS_FILE,
    PROGRESS_FILE,
    REPORTS_DIR,
    RESOLVED_CONFIG_FILE,
    RUN_MARKERS,
    RUNNING,
    SAMPLES_FILE,
    STATUS_FILE,
    SYSTEM_FILE,
    readers,
)
from trainkit.runfolder.files import JsonlTail
from trainkit.runfolder.lock import pid_alive
from trainkit.slurm import JobView
from trainkit.status import read_run, stale_after, summarize
from tui.model.evals import running_evaluation
from tui.model.foreign import ForeignRuns
from tui.model.tail import tail_from_end
from tui.model.views import SPARK_POINTS, RunView

# What a changed file means for a run.
ROW, METRICS, CONFIG, SYSTEM, LOG, EVALS, FOLDER = "row", "metrics", "config", "system", "log", "evaluations", "folder"
MONITOR = "monitor"  # the training monitor's samples, alerts or layer health
MONITOR_FILES = {SAMPLES_FILE, ALERTS_FILE, LAYERS_FILE}
ROW_FILES = {STATUS_FILE, PROGRESS_FILE, LOCK_FILE, LAUNCH_FILE}
POLLED = (STATUS_FILE, PROGRESS_FILE, LOCK_FILE, METRICS_FILE, RESOLVED_CONFIG_FILE, SYSTEM_FILE, LOG_FILE,
          CONSOLE_FILE, f"{CHECKPOINTS_DIR}/{CURRENT_META_FILE}", SAMPLES_FILE, ALERTS_FILE, LAYERS_FILE)


def is_step(rec: dict) -> bool:
    return rec.get("kind") == "step" and isinstance(rec.get("loss"), (int, float)) and not isinstance(rec["loss"], bool)


@dataclass
class RunChange:
    """What changed about one run: ``added``, ``updated`` (``what`` says which parts) or ``removed``."""

    name: str
    kind: str
    what: frozenset[str] = frozenset()


@dataclass
class _Entry:
    view: RunView
    tail: JsonlTail | None = None
    sigs: dict[str, tuple] = field(default_factory=dict)
    good_status: bool = False
    pid: int | None = None
    host: str | None = None
    started_at: float | None = None
    status: dict = field(default_factory=dict)
    loaded_ns: int = 0
    slurm_job: int | None = None  # the Slurm job of the run's last launch (launch.json)
    skipped_note: str | None = None  # a metrics line too long to read, skipped at the first read (it stays said)


def _sig(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class RunsModel:
    """The runs under ``root`` and ``extra_roots`` (with ``archived``, in each one's
    ``<root>-archive`` too)."""

    def __init__(self, root: str | os.PathLike, *, clock: Callable[[], float] = time.time,
                 stale_s: float | None = None, archived: bool = False, extra_roots: tuple = ()) -> None:
        self.root = os.path.abspath(root)
        # more ROOTs given on the command line: scanned and watched too (their runs are named
        # after their ROOT when an earlier ROOT holds the same name); each ROOT has its archive
        self.roots = [os.path.abspath(r) for r in distinct([os.fspath(root), *map(os.fspath, extra_roots)])]
        self.archives = [r + ARCHIVE_SUFFIX for r in self.roots]
        self.archive = self.archives[0]
        self.clock = clock
        self.stale_s = stale_s
        self.show_archived = archived
        self.host = socket.gethostname()
        self.runs: dict[str, RunView] = {}
        self._entries: dict[str, _Entry] = {}
        self._dirty: dict[str, set[str]] = {}
        self._folder_sigs: dict[str, tuple | None] = {}
        self._extra: dict[str, tuple | None] = {}  # files a screen asked to be polled (an open evaluation)
        self.pending = 0
        self.loaded = False
        # Slurm's view of the recorded jobs (the app asks squeue off the event loop every few
        # seconds and sets it): None until known, or when squeue is unavailable (then the files
        # alone decide, with ``slurm_problems`` as the runs' warnings)
        self.slurm_jobs: dict[int, JobView] | None = None
        self.slurm_problems: list[str] = []
        self._slurm_keys: set[str] = set()  # the runs whose last launch was handed to Slurm
        # stat the polled files of each run when it is loaded (a polling root). False (inotify):
        # skip those stats; should polling start later, a file newer than the load counts as changed.
        self.stat_at_load = True
        self.foreign = ForeignRuns()  # the runs other tools wrote (read-only; tui.model.foreign)

    # ------------------------------------------------------------------ public
    def refresh(self, changed_paths: set[str] | None = None, budget_s: float | None = 0.05) -> list[RunChange]:
        """Look again (everything when ``changed_paths`` is None); at most ``budget_s`` of reading
        (None: no limit). Returns the changes; :attr:`pending` counts runs left for the next call."""
        t0 = time.perf_counter()
        out: list[RunChange] = []
        if changed_paths is None:
            out.extend(self._poll())
        else:
            out.extend(self._route(changed_paths))
        first = True
        while self._dirty and (first or budget_s is None or time.perf_counter() - t0 < budget_s):
            first = False
            key, what = self._dirty.popitem()  # not next(iter()) + pop: that scans the freed slots, O(n^2)
            change = self._update(key, what)
            if change is not None:
                out.append(change)
        self.pending = len(self._dirty)
        self.loaded = self.loaded or not self._dirty
        return out

    def check_liveness(self) -> list[RunChange]:
        """Live runs whose heartbeat went stale or whose pid vanished (no file event tells that):
        re-read only those. Cheap when nothing changed (no file is read)."""
        now = self.clock()
        foreign_live = [k for k, e in self._entries.items() if e.view.source != "trainkit" and e.view.live]
        if foreign_live:  # their writers and their last writes decide: judge them again
            self.foreign.recheck_writers(foreign_live)
            for key in foreign_live:
                self._dirty.setdefault(key, set()).add(ROW)
        for key, e in self._entries.items():
            v = e.view
            if v.source != "trainkit":
                continue
            if v.state == EVALUATING:  # a killed evaluation changes no file: look again
                self._dirty.setdefault(key, set()).add(ROW)
                continue
            if v.state not in LIVE:
                continue
            limit = self.stale_s if self.stale_s is not None else stale_after(e.status)
            stale = v.heartbeat_at is not None and now - v.heartbeat_at > limit
            if stale or (e.pid is not None and e.host == self.host and not pid_alive(e.pid, e.started_at)):
                self._dirty.setdefault(key, set()).add(ROW)
        return self.refresh(set(), budget_s=None) if self._dirty else []

    def catch_up(self, chunk: int = 200):
        """What changed between a run's first read and the moment the watcher's watches were in
        place (no event tells that): a generator that stats each run's files (and its evaluations'
        folder: an evaluation's lock comes and goes there) ``chunk`` runs at a time, yielding
        between chunks; a file newer than the run's read makes the run dirty."""
        self._discover()
        for key in self.foreign.changed():
            self._dirty.setdefault(key, set()).add(ROW)
        keys = list(self._entries)
        for i in range(0, len(keys), chunk):
            for key in keys[i:i + chunk]:
                e = self._entries.get(key)
                if e is None:
                    continue
                for name in (*POLLED, EVALS_DIR):
                    s = _sig(f"{key}/{name}")
                    if s is not None and s[0] >= e.loaded_ns - 2_000_000_000:
                        self._route({f"{key}/{name}"})
            yield

    def slurm_runs(self) -> list[str]:
        """The runs whose last launch was handed to Slurm (their state needs squeue's view)."""
        return sorted(k for k in self._slurm_keys if k in self._entries)

    def set_slurm(self, jobs: dict[int, JobView] | None, problems: list[str]) -> list[RunChange]:
        """Slurm's view of the recorded jobs (from one squeue call): the runs handed to Slurm are
        judged again (only when that view changed: an idle screen stays idle)."""
        if jobs == self.slurm_jobs and problems == self.slurm_problems:
            return []
        self.slurm_jobs, self.slurm_problems = jobs, problems
        for key in self.slurm_runs():
            self._dirty.setdefault(key, set()).add(ROW)
        return self.refresh(set(), budget_s=None) if self._dirty else []

    def drop_archived(self) -> None:
        """Forget the archived runs (the archive is hidden again)."""
        for k in [k for k, v in self.runs.items() if v.archived]:
            self._entries.pop(k, None)
            self.runs.pop(k, None)
            self.foreign.known.pop(k, None)

    def watch_extra(self, path: str) -> None:
        """Poll ``path`` too (an open evaluation's files) when polling."""
        self._extra.setdefault(os.path.abspath(path), _sig(path))

    def unwatch_extra(self, path: str) -> None:
        self._extra.pop(os.path.abspath(path), None)

    def summary(self) -> dict:
        """Counts per state and overall progress (trainkit's :func:`summarize`)."""
        return summarize([_Summary(v) for v in self.runs.values() if not v.archived])

    def key_of(self, path: str) -> str | None:
        """The run key (its folder path) of any path inside a run, else None."""
        path = os.path.abspath(path)
        for base in (*self.roots, *self.archives):
            if path.startswith(base + os.sep):
                first = path[len(base) + 1:].split(os.sep, 1)[0]
                if first and not first.startswith("."):
                    return f"{base}{os.sep}{first}"
        return None

    def root_of(self, key: str) -> str | None:
        """The ROOT (or the archive) a run's folder is under."""
        return next((b for b in (*self.roots, *self.archives) if key.startswith(b + os.sep)), None)

    def home_of(self, key: str) -> str | None:
        """The ROOT a run belongs to: the one it is under, or the one whose archive holds it (the
        ROOT its actions name it in)."""
        base = self.root_of(key)
        return self.roots[self.archives.index(base)] if base in self.archives and base not in self.roots else base

    def in_archive(self, key: str) -> bool:
        """Whether a run's folder is in a ROOT's archive."""
        base = self.root_of(key)
        return base in self.archives and base not in self.roots

    def name_of(self, key: str, name: str) -> str:
        """A run's name, unique across the ROOTs: a later ROOT's run whose name an earlier ROOT also
        holds gets its ROOT's folder name in front (:func:`trainkit.roots.unique_name`); so does an
        archived run among the archives."""
        base = self.root_of(key)
        bases = self.roots if base in self.roots else self.archives
        if base not in bases or base == bases[0]:
            return name
        earlier = bases[:bases.index(base)]
        if not any(os.path.lexists(os.path.join(r, name)) for r in earlier):
            return name
        taken = {v.name for k, v in self.runs.items() if k != key} | {name}
        return unique_name(name, base, taken)

    def bases(self) -> list[str]:
        """The folders whose run folders are read: the ROOTs, and their archives when shown."""
        return self.roots + ([a for a in self.archives if a not in self.roots] if self.show_archived else [])

    # ------------------------------------------------------------------ routing
    def _route(self, paths: set[str]) -> list[RunChange]:
        out = []
        for p in paths:
            p = os.path.abspath(p)
            fkey = self.foreign.key_of(p)
            if fkey is not None:  # a file of a run another tool writes: read it again
                self._dirty.setdefault(fkey, set()).add(ROW)
                continue
            key = self.key_of(p)
            if watched_name(os.path.basename(p)) and key not in self._entries:
                self._discover()  # maybe a new foreign run (an event file, a trainer state, a metrics.csv)
                fkey = self.foreign.key_of(p)
                if fkey is not None:
                    self._dirty.setdefault(fkey, set()).add(ROW)
                continue
            if key is None:
                if p in self.roots or p in self.archives:
                    self._discover()
                continue
            rel = p[len(key) + 1:] if len(p) > len(key) else ""
            parts = rel.split(os.sep) if rel else []
            base = parts[-1] if parts else ""
            if key not in self._entries:
                if self.in_archive(key) and not self.show_archived:
                    continue
                self._dirty.setdefault(key, set()).add(FOLDER)
                continue
            kinds = self._dirty.setdefault(key, set())
            if not parts:
                kinds.add(FOLDER)
            elif len(parts) == 1 and base in ROW_FILES:
                kinds.add(ROW)
            elif len(parts) == 1 and base == METRICS_FILE:
                kinds.add(METRICS)
            elif len(parts) == 1 and base == RESOLVED_CONFIG_FILE:
                kinds.update((CONFIG, ROW))
            elif len(parts) == 1 and base in CONFIG_FILES:
                kinds.add(ROW)
            elif len(parts) == 1 and base == SYSTEM_FILE:
                kinds.add(SYSTEM)
            elif len(parts) == 1 and base in (LOG_FILE, CONSOLE_FILE):
                kinds.add(LOG)
            elif len(parts) == 1 and base in MONITOR_FILES:
                kinds.add(MONITOR)
            elif parts[0] in (CHECKPOINTS_DIR, EPOCHS_DIR):
                kinds.add(ROW)
            elif parts[0] in (EVALS_DIR, REPORTS_DIR):
                kinds.add(EVALS)
                if parts[0] == EVALS_DIR:  # an evaluation started, went on or ended: the row says so
                    kinds.add(ROW)
            if not kinds:
                del self._dirty[key]
        return out

    def _discover(self) -> None:
        """Add new run folders, drop vanished ones."""
        bases = self.bases()
        found = {k for r in bases for k in run_folders(r)}
        found |= self.foreign.discover(bases, skip=found)
        for key in found - set(self._entries):
            self._dirty.setdefault(key, set()).add(FOLDER)
        for key in set(self._entries) - found:
            self._dirty.setdefault(key, set()).add(FOLDER)

    def _poll(self) -> list[RunChange]:
        """Stat what is known; a changed signature makes its run dirty."""
        out: list[RunChange] = []
        bases = self.bases()
        if any(self._folder_sigs.get(b, 0) != _sig(b) for b in bases) or not self.loaded and not self._dirty:
            for b in bases:
                self._folder_sigs[b] = _sig(b)
            self._discover()
        elif self.loaded:  # a foreign run appears deeper than ROOT's own folders (a new version_N)
            for key in self.foreign.discover(bases, skip={k for k, e in self._entries.items()
                                                          if e.view.source == "trainkit"}) - set(self._entries):
                self._dirty.setdefault(key, set()).add(FOLDER)
        for key in self.foreign.changed():
            self._dirty.setdefault(key, set()).add(ROW)
        for key, e in self._entries.items():
            if e.view.source != "trainkit":
                continue
            for name in POLLED:
                s = _sig(f"{key}/{name}")
                if name not in e.sigs:  # not stat-ed at load (see stat_at_load)
                    e.sigs[name] = s
                    if s is not None and s[0] >= e.loaded_ns - 2_000_000_000:
                        self._route({f"{key}/{name}"})
                elif e.sigs.get(name) != s:
                    e.sigs[name] = s
                    self._route({f"{key}/{name}"})
        for path, old in list(self._extra.items()):
            s = _sig(path)
            if s != old:
                self._extra[path] = s
                key = self.key_of(path)
                if key in self._entries:
                    self._dirty.setdefault(key, set()).add(EVALS)
        return out

    # ------------------------------------------------------------------ reading one run
    def _update(self, key: str, what: set[str]) -> RunChange | None:
        e = self._entries.get(key)
        if key in self.foreign.known or (e is not None and e.view.source != "trainkit"):
            return self._update_foreign(key, e)
        if FOLDER in what:
            if not is_run_folder(key):
                if e is None:
                    return None
                del self._entries[key]
                name = self.runs.pop(key).name
                return RunChange(key, "removed", frozenset({name}))
            if e is None:
                e = self._load(key)
                return RunChange(key, "added", frozenset({ROW, METRICS}))
            what = what | {ROW, METRICS, CONFIG}
        if e is None:
            return None
        done: set[str] = set()
        if CONFIG in what:
            self._read_config(e)
        if ROW in what:
            self._read_row(e)
            done.add(ROW)
        if METRICS in what:
            if self._read_metrics(e):
                done.add(METRICS)
        done |= what & {SYSTEM, LOG, EVALS, MONITOR}
        if not done:
            return None
        e.view.changed_at = self.clock()
        return RunChange(key, "updated", frozenset(done))

    def _update_foreign(self, key: str, e: _Entry | None) -> RunChange | None:
        """A run another tool writes: added, read again (row and sparkline together) or removed."""
        if key not in self.foreign.known:
            if e is None:
                return None
            del self._entries[key]
            return RunChange(key, "removed", frozenset({self.runs.pop(key).name}))
        added = e is None
        if e is None:
            e = _Entry(RunView(os.path.basename(key), key, archived=self.in_archive(key)))
            self._entries[key] = e
            self.runs[key] = e.view
        self.foreign.update(key, e.view, self.clock())
        e.view.name = self.name_of(key, e.view.name)
        e.view.changed_at = self.clock()
        return RunChange(key, "added" if added else "updated", frozenset({ROW, METRICS}))

    def _load(self, key: str) -> _Entry:
        view = RunView(self.name_of(key, os.path.basename(key)), key, archived=self.in_archive(key))
        e = _Entry(view)
        self._entries[key] = e
        self.runs[key] = view
        self._read_config(e)
        self._read_row(e)
        recs, e.tail = tail_from_end(f"{key}/{METRICS_FILE}", SPARK_POINTS, is_step)
        view.losses.extend(float(r["loss"]) for r in recs)
        view.bad_lines = e.tail.bad_lines
        view.metrics_problem = f"{METRICS_FILE}: {e.tail.problem}" if e.tail.problem else None
        if e.tail.problem and e.tail.offset:  # a line too long to read: skipped for good, said for good
            e.skipped_note, e.tail.problem = view.metrics_problem, None
        if recs and view.last_loss is None:
            view.last_loss = view.losses[-1]
        try:
            view.changed_at = os.stat(key).st_mtime
        except OSError:
            view.changed_at = 0.0
        e.loaded_ns = time.time_ns()
        if self.stat_at_load:
            for name in POLLED:
                e.sigs[name] = _sig(f"{key}/{name}")
        return e

    def _read_config(self, e: _Entry) -> None:
        warnings: list[str] = []
        cfg = readers.load(f"{e.view.path}/{RESOLVED_CONFIG_FILE}", readers.RESOLVED_CONFIG, warnings)
        if cfg is not None:
            e.view.config = flatten({k: v for k, v in cfg.items() if k != "_meta"})

    def _read_row(self, e: _Entry) -> None:
        v = e.view
        unreadable = folder_problem(v.path)
        if unreadable is not None:
            v.state, v.reason, v.warnings = "pending", unreadable, [unreadable]
            return
        e.slurm_job = recorded_slurm_job(v.path)
        (self._slurm_keys.add if e.slurm_job is not None else self._slurm_keys.discard)(v.path)
        jobs = None if e.slurm_job is None or self.slurm_jobs is None else self.slurm_jobs
        rs, status = read_run(v.path, now=self.clock(), host=self.host, stale_s=self.stale_s, slurm_jobs=jobs)
        status_broken = status is None and any(w.startswith(STATUS_FILE) for w in rs.warnings)
        problems = list(rs.warnings)
        if e.slurm_job is not None and self.slurm_jobs is None:
            problems += self.slurm_problems
        if status_broken and e.good_status:
            # a malformed status file: keep the last good values, mark the run
            v.warnings = problems
            return
        e.good_status = status is not None
        status = status or {}
        v.state, v.reason = rs.state, rs.reason
        v.evaluation = None
        if rs.state not in LIVE and rs.state in (*COMPLETE, "stopped"):
            running = running_evaluation(v.path)  # a trained run being evaluated now (trainkit run, eval)
            if running is not None:
                v.state, v.evaluation = EVALUATING, running
                v.reason = f"evaluation {running} (training {rs.state}: {rs.reason})"
        v.completed, v.total, v.percentage = rs.completed_epochs, rs.total_epochs, rs.progress_percentage
        v.early_stopped = rs.early_stopped
        v.alert = rs.alert
        v.best_metric, v.best_value = rs.best_metric, rs.best_value
        if rs.last_loss is not None:
            v.last_loss = rs.last_loss
        v.throughput = status.get("throughput") if v.live else None
        v.eta_s = status.get("eta_s") if v.state == RUNNING else None  # a paused or dead run has no ETA
        v.heartbeat_at = status.get("heartbeat_at")
        v.step, v.lr = status.get("step"), status.get("lr")
        e.pid, e.host, e.started_at = status.get("pid"), status.get("host"), status.get("started_at")
        e.status = status
        v.fraction = _fraction(v, status)
        v.warnings = problems

    def _read_metrics(self, e: _Entry) -> bool:
        tail = e.tail
        if tail is None:
            return False
        before = tail.offset
        recs = tail.read()
        problem = f"{METRICS_FILE}: {tail.problem}" if tail.problem else e.skipped_note
        if problem != e.view.metrics_problem:
            e.view.metrics_problem = problem
            recs = recs or []
            changed_problem = True
        else:
            changed_problem = False
        if tail.reset:
            e.view.losses.clear()
        steps = [float(r["loss"]) for r in recs if is_step(r)]
        e.view.losses.extend(steps)
        epochs = any(r.get("kind") == "epoch" for r in recs)  # no step of its own: the detail's charts still change
        changed = bool(steps) or epochs or tail.reset or tail.bad_lines != e.view.bad_lines or changed_problem
        e.view.bad_lines = tail.bad_lines
        if steps:
            e.view.last_loss = steps[-1]
        if tail.max_bytes and tail.offset - before >= tail.max_bytes // 2:
            self._dirty.setdefault(e.view.path, set()).add(METRICS)  # maybe more: read it next time
        return changed


def run_folders(base: str) -> list[str]:
    """The run folders directly under ``base``: those holding a run marker, and those that cannot
    be looked into (permissions): they are shown with the reason, never left out."""
    out = []
    try:
        it = os.scandir(base)
    except OSError:
        return out
    with it:
        for entry in it:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            if is_run_folder(entry.path):
                out.append(entry.path)
    return out


def is_run_folder(path: str) -> bool:
    if any(os.path.exists(f"{path}/{m}") for m in RUN_MARKERS):
        return not model_config_only(path)  # an HF output folder's config.json is the model's
    return os.path.isdir(path) and folder_problem(path) is not None


def folder_problem(path: str) -> str | None:
    """Why the run folder cannot be read (a user without the permissions), or None."""
    if os.access(path, os.R_OK | os.X_OK):
        return None
    if not os.path.isdir(path):
        return None
    return "cannot read the folder: permission denied (its owner or mode keeps this user out)"


def recorded_slurm_job(path: str) -> int | None:
    """The Slurm job id of the run's last launch, when it was handed to Slurm."""
    if not os.path.exists(f"{path}/{LAUNCH_FILE}"):
        return None
    from trainkit.slurm import recorded_job

    rec = recorded_job(path, [])
    return rec.get("job_id") if rec else None


def _fraction(v: RunView, status: dict) -> float:
    if v.complete:
        return 1.0
    if not v.total:
        return 0.0
    done = float(v.completed)
    spe, step, epoch = status.get("steps_per_epoch"), status.get("step"), status.get("current_epoch")
    if v.live and spe and isinstance(step, int) and epoch == v.completed:
        done += min(1.0, max(0.0, (step - epoch * spe) / spe))
    return min(1.0, done / v.total)


@dataclass
class _Summary:
    """The fields of :class:`trainkit.status.RunStatus` that :func:`summarize` reads."""

    view: RunView

    @property
    def state(self) -> str:
        return self.view.state

    @property
    def total_epochs(self) -> int | None:
        return self.view.total

    @property
    def completed_epochs(self) -> int:
        return self.view.completed

    @property
    def early_stopped(self) -> bool:
        return self.view.early_stopped

