"""Runs other tools wrote (:mod:`trainkit.foreign`: Hugging Face output folders, Lightning versions,
TensorBoard event folders) in trainmon, read-only: found under ROOT by what they hold, each one a
:class:`RunView` like a trainkit run's (state, progress in steps or epochs, loss sparkline, best
metric, ETA when the target is known); a TensorBoard run is read incrementally (an
:class:`EventTail` per run: an append costs what was appended). :class:`ForeignHistory` gives the
detail and compare screens every scalar tag as a series; :func:`refusal` says why an action that
needs trainkit's files is off for such a run."""

from __future__ import annotations

import os
import shlex

from trainkit import foreign as F
from trainkit.foreign.tensorboard import EventTail
from tui.model.history import History
from tui.model.views import RunView

SOURCE_WORDS = {F.HF: "Hugging Face", F.LIGHTNING: "Lightning", F.TENSORBOARD: "TensorBoard"}
OFF = {  # what each action needs that a foreign run does not have
    "stop": "its trainer reads no trainkit control file",
    "pause": "its trainer reads no trainkit control file",
    "resume": "its trainer reads no trainkit control file",
    "checkpoint": "its trainer reads no trainkit control file",
    "relaunch": "trainkit does not know the command that trained it",
    "promote": "it has no trainkit config to promote",
}


def refusal(verb: str, view: RunView, base: str | None = None, root: str | None = None) -> str | None:
    """Why ``verb`` is off for ``view`` (a foreign run), in one line; None when it may go ahead.
    Archive and restore move folders directly under ROOT (``base``: the ROOT or archive it is
    under; None: its name is its path there): a run nested deeper (a Lightning version) moves with
    the folder that holds it, and the command that moves it names its ROOT (``root``)."""
    if view.source == "trainkit":
        return None
    tool = SOURCE_WORDS.get(view.source, view.source)
    if verb in ("archive", "restore"):
        rel = view.name if base is None else os.path.relpath(view.path, base)
        if "/" not in rel:
            return None
        top = rel.split("/", 1)[0]
        where = f" --root {shlex.quote(root)}" if root else ""
        return (f"{view.name}: {verb} moves folders directly under ROOT; this {tool} run is inside {top}/ "
                f"({verb} {top} with trainkit experiments {verb} {shlex.quote(top)}{where})")
    return f"{view.name}: {verb} is off for a {tool} run ({OFF.get(verb, 'it needs trainkit files')})"


signature = F.signature  # (path, size, mtime) of the files its state is read from: polling, the catch-up


def fill(view: RunView, f: F.Foreign, now: float) -> None:
    """A foreign run's row from its summary, judged as ``trainkit status`` judges it."""
    from trainkit.status import foreign_status

    rs = foreign_status(f, now=now)
    view.source = f.source
    view.state, view.reason = rs.state, rs.reason
    view.completed, view.total, view.percentage = rs.completed_epochs, rs.total_epochs, rs.progress_percentage
    view.early_stopped = rs.early_stopped
    view.best_metric, view.best_value = rs.best_metric, rs.best_value
    view.last_loss = rs.last_loss
    view.losses.clear()
    view.losses.extend(f.loss_tail)
    view.step, view.total_steps = f.step, f.total_steps
    view.eta_s = F.eta_s(f, rs.state)
    view.heartbeat_at = f.last_write  # its "heartbeat": the last write of its files
    view.fraction = 1.0 if view.complete else rs.progress_percentage / 100
    view.config = {k: v for k, v in (("source", f.source), ("model.name", f.model)) if v is not None}
    view.warnings = list(rs.warnings)


class ForeignRuns:
    """The foreign runs of one or more bases (ROOT, its archive), by their folder (the run's key)."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[str, str]] = {}  # key -> (source, the base its name is relative to)
        self.tails: dict[str, EventTail] = {}  # TensorBoard runs: read incrementally
        self.held: dict[str, int] = {}  # key -> pid of the live process of this host writing it
        self.sigs: dict[str, tuple] = {}

    def discover(self, bases: list[str], skip: set[str]) -> set[str]:
        """Find them again (``skip``: trainkit's run folders); returns their keys."""
        known: dict[str, tuple[str, str]] = {}
        for base in bases:
            for source, path in F.discover(base, skip=skip):
                known[path] = (source, base)
        new = [k for k in known if k not in self.known]
        for k in [k for k in self.tails if k not in known]:
            del self.tails[k]
        self.known = known
        if new:
            self.held.update(F.writers(new))
        return set(known)

    def key_of(self, path: str) -> str | None:
        """The foreign run whose folder holds ``path`` (or is it)."""
        p = path
        while len(p) > 1:
            if p in self.known:
                return p
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
        return None

    def recheck_writers(self, keys: list[str]) -> None:
        """Which of ``keys`` a live process of this host still writes (one pass over the processes)."""
        found = F.writers(keys)
        for k in keys:
            self.held.pop(k, None)
        self.held.update(found)

    def changed(self) -> list[str]:
        """The known runs whose files changed since they were read (polling, the catch-up)."""
        return [k for k in self.known if signature(k) != self.sigs.get(k)]

    def update(self, key: str, view: RunView, now: float) -> None:
        """Read the run again into ``view``. A TensorBoard run is read from its event files' cached
        summaries (as ``trainkit status`` reads them: an unchanged file costs a stat) until it is
        live; from then on through its :class:`EventTail` (an append costs what was appended)."""
        source, base = self.known[key]
        tail = self.tails.get(key)
        self.sigs[key] = signature(key)
        f = F.read(source, key, root=base, tail=tail)
        pid = self.held.get(key)
        if pid is not None and not _alive(pid):
            self.held.pop(key, None)
            pid = None
        f.held_by = pid
        view.name = f.name
        fill(view, f, now)
        if source == F.TENSORBOARD and tail is None and view.live and not f.warnings:
            tail = EventTail(key)
            try:
                tail.read()  # up to now (as the summary just read); the next change reads only what it appended
            except Exception:  # another tool's file: the cached summaries go on being used
                return
            self.tails[key] = tail


def _alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


class ForeignHistory:
    """What the detail and compare screens draw for a foreign run: every scalar tag as a series by
    step (``loss`` also names the training loss, so that compare overlays it with trainkit's);
    no epochs table, no system samples. :meth:`update` reads what was appended (a TensorBoard
    run) or reads again what changed (``trainer_state.json``, ``metrics.csv``)."""

    def __init__(self, path: str, source: str) -> None:
        self.path, self.source = path, source
        self.by_tag: dict[str, list[tuple[float, float]]] = {}
        self.tail = EventTail(path) if source == F.TENSORBOARD else None
        self.sig: tuple | None = None
        self.epochs: list = []
        self.system: list = []
        self.monitor = ""
        self.bad_lines = 0
        self.warnings: list[str] = []

    @classmethod
    def load(cls, path: str, source: str) -> ForeignHistory:
        h = cls(path, source)
        h.update()
        return h

    def update(self) -> bool:
        try:
            if self.tail is not None:
                new = self.tail.read()
                for tag, step, value in new:
                    pts = self.by_tag.setdefault(tag, [])
                    pts.append((float(step), value))
                    if len(pts) > 1 and pts[-2][0] > pts[-1][0]:
                        pts.sort(key=lambda p: p[0])
                return bool(new)
            sig = signature(self.path)
            if sig == self.sig:
                return False
            self.sig = sig
            self.by_tag = {k: v for k, v in F.scalars(self.source, self.path).items() if k != "epoch"}
            return True
        except Exception as e:  # another tool's files: the warning says what went wrong
            from trainkit.errors import first_line

            self.warnings = [f"cannot read the scalars ({first_line(e, limit=200)})"]
            return False

    # what the detail asks of a trainkit history being read in the background: all here is read
    complete = True
    reload = False
    problem = None
    tail_start = 0

    def scan(self, report=None, cancelled=lambda: False) -> None:
        return None

    def refine(self, found, offset: int) -> None:
        return None

    def progress(self) -> float:
        return 1.0

    @property
    def steps(self) -> list[tuple[float, float]]:
        return max(self.by_tag.values(), key=len, default=[])

    def metric_names(self) -> list[str]:
        return sorted(self.by_tag)

    def series(self, name: str, x: str = "step") -> list[tuple[float, float]]:
        """A tag's (step, value) points (``x`` time: the same, event files' times are not kept)."""
        if name not in self.by_tag and name == "loss":
            tag = F.loss_tag(sorted(self.by_tag))
            return list(self.by_tag.get(tag, [])) if tag else []
        return list(self.by_tag.get(name, []))

    def points(self, name: str) -> list[tuple[float, float, float, float]]:
        """(step, epoch, time, value) as trainkit's history gives them (epoch and time unknown: NaN)."""
        nan = float("nan")
        return [(x, nan, nan, y) for x, y in self.series(name)]

    def start_time(self) -> float | None:
        return None

    def system_info(self) -> dict:
        return {}

    def system_names(self) -> list[str]:
        return []

    def system_series(self, name: str) -> list[tuple[float, float]]:
        return []

    def epoch_rows(self) -> list:
        return []


def load_history(model, key: str, trainkit_history=History.load) -> History | ForeignHistory:
    """The detail's or compare's history of the run ``key``: a foreign run's scalars, else
    ``trainkit_history(key)`` (``History.load``, or ``History.open`` for a reader that scans later)."""
    known = model.foreign.known.get(key)
    if known is not None:
        return ForeignHistory.load(key, known[0])
    return trainkit_history(key)
