"""The run-folder contract of DESIGN.md, written once: every file and folder name (the ``FILES``
table), the run states (the ``STATES`` table), the config suffixes, the content of
``progress.json``, and moving outputs aside.

The package holds the contract's whole house: this module (names, tables, paths), ``files`` (atomic
writes, bounded regular-file reads, JSONL tails), ``readers`` (typed, bounded readers of each
file), ``lock`` (the run lock), ``control`` (``control.json`` requests) and ``live`` (the live
status and system samples). Every reader and writer takes its names from here (a grep for a
contract file name outside this package finds only docs and tests); every view of states and
files derives from the two tables (a state without a symbol, label, style or order fails a test).
Readers that scan thousands of runs join the ``*_FILE`` names onto a string root; everything else
uses :class:`RunPaths` / :class:`EvalPaths`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from trainkit.formatting import percent_value
from trainkit.runfolder.files import fsync_dir

FORMAT_VERSION = 1

# ---------------------------------------------------------------------------------------------
# names

CONFIG_STEM = "config"
CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml", ".py")
CONFIG_FILES = tuple(CONFIG_STEM + s for s in CONFIG_SUFFIXES)
NOTES_FILE = "notes.md"
METADATA_FILE = "metadata.json"
RESOLVED_CONFIG_FILE = "resolved_config.json"
STATUS_FILE = "training_status.json"
PROGRESS_FILE = "progress.json"
METRICS_FILE = "metrics.jsonl"
SYSTEM_FILE = "system.jsonl"
SAMPLES_FILE = "samples.jsonl"  # the monitor's inference samples
ALERTS_FILE = "alerts.jsonl"  # the monitor's alerts
LAYERS_FILE = "layers.jsonl"  # the monitor's per-layer health
CONTROL_FILE = "control.json"
LOG_FILE = "train.log"
CONSOLE_FILE = "console.log"  # what the process printed (stdout/stderr), capped: see trainkit.console
CONSOLE_OLD_FILE = CONSOLE_FILE + ".1"  # the one older part kept when console.log passed its cap
LAUNCH_FILE = "launch.json"
LOCK_FILE = ".trainkit.lock"
EPOCHS_DIR = "epochs"
CHECKPOINTS_DIR = "checkpoints"
CURRENT_CKPT_FILE = "current.pt"
CURRENT_META_FILE = "current.meta.json"
BEST_CKPT_FILE = "best.pt"
EVALS_DIR = "evals"
REPORTS_DIR = "reports"
SUPERSEDED_DIR = "superseded"
# per epoch, in epochs/epoch_NNNN/: an epoch counts as complete when all three exist
EPOCH_FILES = ("training_losses.pt", "optimizer_buffer.json", "validation_scores.json")
VALIDATION_SCORES_FILE = EPOCH_FILES[2]
# per evaluation, in evals/<name>/
PRECHECK_FILE = "precheck.jsonl"
RESPONSES_FILE = "responses.jsonl"
CONVERSATIONS_DIR = "conversations"
SUMMARY_FILE = "test_summary.json"
SESSIONS_FILE = "sessions.jsonl"

# beside ROOT (experiments/): the archive, promoted production configs, the leaderboard
ARCHIVE_SUFFIX = "-archive"  # experiments -> experiments-archive
PRODUCTION_DIR = "configs"
LEADERBOARD_FILE = "leaderboard.csv"  # in reports/ beside ROOT
LAUNCH_LOCK = ".trainkit-launch.lock"  # in ROOT (hidden: never a run): launchers count and start one at a time

# A folder directly under ROOT holding one of these is a run.
RUN_MARKERS = (RESOLVED_CONFIG_FILE, PROGRESS_FILE, STATUS_FILE, *CONFIG_FILES)


EPOCH_PREFIX = "epoch_"


def epoch_dir_name(epoch: int) -> str:
    return f"{EPOCH_PREFIX}{epoch:04d}"


def epoch_dir(root: str, epoch: int) -> str:
    """``root/epochs/epoch_NNNN`` as a string (the fast path of scanners)."""
    return f"{root}/{EPOCHS_DIR}/{epoch_dir_name(epoch)}"


# ---------------------------------------------------------------------------------------------
# the files: one table (name, kind, moved aside by --fresh, what needs it)

JSON, JSONL, TEXT, BINARY, FOLDER = "json", "jsonl", "text", "binary", "folder"
# what needs a file: the state of a run (status, trainmon's row), a run's history (trainmon's
# detail), its training monitor, its evaluations, the experiment lifecycle
STATE_VIEW, HISTORY_VIEW, MONITOR_VIEW, EVAL_VIEW, LIFECYCLE_VIEW = "state", "history", "monitor", "evals", "lifecycle"


@dataclass(frozen=True)
class FileInfo:
    """One entry of the contract: a file or folder of a run folder (``where``: its folder inside
    the run, '' for the top)."""

    name: str
    kind: str  # json (rewritten atomically) | jsonl (append-only) | text | binary | folder
    fresh: bool  # an output of training: `trainkit train --fresh` moves it aside
    views: frozenset[str]  # who reads it: trainmon watches exactly the files its views need
    where: str = ""


def _f(name: str, kind: str, fresh: bool, *views: str, where: str = "") -> FileInfo:
    return FileInfo(name, kind, fresh, frozenset(views), where)


FILES: tuple[FileInfo, ...] = (
    *(_f(n, TEXT, False, STATE_VIEW) for n in CONFIG_FILES),
    _f(NOTES_FILE, TEXT, False, LIFECYCLE_VIEW),
    _f(METADATA_FILE, JSON, False, LIFECYCLE_VIEW),
    _f(RESOLVED_CONFIG_FILE, JSON, True, STATE_VIEW, HISTORY_VIEW),
    _f(STATUS_FILE, JSON, True, STATE_VIEW),
    _f(PROGRESS_FILE, JSON, True, STATE_VIEW),
    _f(METRICS_FILE, JSONL, True, STATE_VIEW, HISTORY_VIEW),
    _f(SYSTEM_FILE, JSONL, True, HISTORY_VIEW),
    _f(SAMPLES_FILE, JSONL, True, MONITOR_VIEW),
    _f(ALERTS_FILE, JSONL, True, MONITOR_VIEW),
    _f(LAYERS_FILE, JSONL, True, MONITOR_VIEW),
    _f(CONTROL_FILE, JSON, True),
    _f(LOG_FILE, TEXT, True, HISTORY_VIEW),
    _f(CONSOLE_FILE, TEXT, True, HISTORY_VIEW),
    _f(CONSOLE_OLD_FILE, TEXT, True),
    _f(LAUNCH_FILE, JSON, False, STATE_VIEW, LIFECYCLE_VIEW),
    _f(LOCK_FILE, JSON, False, STATE_VIEW),
    _f(EPOCHS_DIR, FOLDER, True, STATE_VIEW),
    *(_f(n, BINARY if n.endswith(".pt") else JSON, False, *((STATE_VIEW,) if n == VALIDATION_SCORES_FILE else ()),
         where=EPOCHS_DIR + "/" + EPOCH_PREFIX + "*") for n in EPOCH_FILES),
    _f(CHECKPOINTS_DIR, FOLDER, True, STATE_VIEW),
    _f(CURRENT_CKPT_FILE, BINARY, False, where=CHECKPOINTS_DIR),
    _f(CURRENT_META_FILE, JSON, False, STATE_VIEW, HISTORY_VIEW, where=CHECKPOINTS_DIR),
    _f(BEST_CKPT_FILE, BINARY, False, LIFECYCLE_VIEW, where=CHECKPOINTS_DIR),
    _f(EVALS_DIR, FOLDER, True, EVAL_VIEW),
    _f(PRECHECK_FILE, JSONL, False, EVAL_VIEW, where=EVALS_DIR + "/*"),
    _f(RESPONSES_FILE, JSONL, False, EVAL_VIEW, where=EVALS_DIR + "/*"),
    _f(CONVERSATIONS_DIR, FOLDER, False, where=EVALS_DIR + "/*"),
    _f(SUMMARY_FILE, JSON, False, EVAL_VIEW, where=EVALS_DIR + "/*"),
    _f(SESSIONS_FILE, JSONL, False, where=EVALS_DIR + "/*"),
    _f(REPORTS_DIR, FOLDER, True, EVAL_VIEW, LIFECYCLE_VIEW),
    _f(SUPERSEDED_DIR, FOLDER, False),
)
FILE_INFO = {(f.where, f.name): f for f in FILES}


def files_for(*views: str) -> frozenset[str]:
    """The names of the files (not folders) that any of ``views`` reads."""
    return frozenset(f.name for f in FILES if f.kind != FOLDER and f.views & set(views))


# ---------------------------------------------------------------------------------------------
# the states: one table (name, symbol, label, order, live?, complete?, style)

# written to training_status.json by a trainer
RUNNING, PAUSED, FINISHED, EARLY_STOPPED, STOPPED, FAILED = (
    "running", "paused", "finished", "early_stopped", "stopped", "failed")
# only ever derived by readers (queued: handed to Slurm, its job pending; suspended: its process is
# stopped by a signal, Ctrl-Z or SIGSTOP, process state T; evaluating: trainmon's view of a trained
# run while an evaluation of it runs, e.g. after `trainkit run` trained it)
PENDING, CRASHED, QUEUED, SUSPENDED, EVALUATING = "pending", "crashed", "queued", "suspended", "evaluating"


@dataclass(frozen=True)
class StateInfo:
    name: str
    symbol: str  # one character, also readable without colour
    label: str  # the short word trainmon shows
    order: int  # sort order in a list of runs: what needs a look first
    live: bool  # a process is working on the run (its heartbeat is judged)
    complete: bool  # 100 %, never relaunched
    style: str  # Rich style (trainmon); every state also reads without colour (symbol + word)
    written: bool  # a trainer writes it into training_status.json (else only readers derive it)


STATE_TABLE: tuple[StateInfo, ...] = (
    StateInfo(PENDING, "○", "pending", 7, False, False, "dim", False),
    StateInfo(QUEUED, "◔", "queued", 6, False, False, "blue", False),
    StateInfo(RUNNING, "▶", "running", 0, True, False, "bold green", True),
    StateInfo(EVALUATING, "◆", "evaluating", 1, False, False, "bold blue", False),
    StateInfo(PAUSED, "‖", "paused", 2, True, False, "yellow", True),
    StateInfo(SUSPENDED, "z", "suspended", 3, True, False, "bold yellow", False),
    StateInfo(FINISHED, "✓", "finished", 10, False, True, "cyan", True),
    StateInfo(EARLY_STOPPED, "✓", "early-stop", 9, False, True, "cyan", True),
    StateInfo(STOPPED, "■", "stopped", 8, False, False, "magenta", True),
    StateInfo(FAILED, "✗", "failed", 5, False, False, "bold red", True),
    StateInfo(CRASHED, "!", "crashed", 4, False, False, "bold red", False),
)
STATE = {s.name: s for s in STATE_TABLE}
STATES = tuple(s.name for s in STATE_TABLE)
WRITTEN_STATES = tuple(s.name for s in STATE_TABLE if s.written)
COMPLETE = tuple(s.name for s in STATE_TABLE if s.complete)  # 100 %, never relaunched
LIVE = tuple(s.name for s in STATE_TABLE if s.live)


# ---------------------------------------------------------------------------------------------
# paths


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    def _(self, name: str) -> Path:
        return self.root / name

    resolved_config = property(lambda self: self._(RESOLVED_CONFIG_FILE))
    status = property(lambda self: self._(STATUS_FILE))
    progress = property(lambda self: self._(PROGRESS_FILE))
    metrics = property(lambda self: self._(METRICS_FILE))
    system = property(lambda self: self._(SYSTEM_FILE))
    samples = property(lambda self: self._(SAMPLES_FILE))
    alerts = property(lambda self: self._(ALERTS_FILE))
    layers = property(lambda self: self._(LAYERS_FILE))
    control = property(lambda self: self._(CONTROL_FILE))
    log = property(lambda self: self._(LOG_FILE))
    console = property(lambda self: self._(CONSOLE_FILE))
    launch = property(lambda self: self._(LAUNCH_FILE))
    lock = property(lambda self: self._(LOCK_FILE))
    notes = property(lambda self: self._(NOTES_FILE))
    metadata = property(lambda self: self._(METADATA_FILE))
    epochs = property(lambda self: self._(EPOCHS_DIR))
    checkpoints = property(lambda self: self._(CHECKPOINTS_DIR))
    evals = property(lambda self: self._(EVALS_DIR))
    reports = property(lambda self: self._(REPORTS_DIR))
    superseded = property(lambda self: self._(SUPERSEDED_DIR),
                          doc="Where ``--fresh`` moves earlier outputs (one timestamped folder per fresh start).")
    current_ckpt = property(lambda self: self.checkpoints / CURRENT_CKPT_FILE)
    current_meta = property(lambda self: self.checkpoints / CURRENT_META_FILE)
    best_ckpt = property(lambda self: self.checkpoints / BEST_CKPT_FILE)

    def epoch_dir(self, epoch: int) -> Path:
        return self.epochs / epoch_dir_name(epoch)

    def epoch_dirs(self) -> list[tuple[int, Path]]:
        """The ``epoch_NNNN`` folders that exist, as (epoch, path), in order."""
        found = []
        for p in self.epochs.glob(EPOCH_PREFIX + "*"):
            n = p.name[len(EPOCH_PREFIX):]
            if n.isdigit() and p.name == epoch_dir_name(int(n)):
                found.append((int(n), p))
        return sorted(found)

    def report(self, name: str) -> Path:
        """``reports/<name>.json``: the report of evaluation ``name``."""
        return self.reports / f"{name}.json"

    def eval_paths(self, name: str) -> EvalPaths:
        return EvalPaths(self.evals / name)

    def config_file(self) -> Path | None:
        """The run's own config (``config.yaml``, ``.yml``, ``.json``, ``.toml`` or ``.py``)."""
        for name in CONFIG_FILES:
            p = self.root / name
            if p.is_file():
                return p
        return None

    def outputs(self) -> list[Path]:
        """Outputs of training (``fresh`` in the ``FILES`` table); ``--fresh`` moves exactly these
        aside. Inputs (config, notes.md, metadata.json) and the launcher's record stay where they are."""
        return [self.root / f.name for f in FILES if f.fresh and not f.where]


@dataclass(frozen=True)
class EvalPaths:
    """The files of one evaluation, ``RUN_DIR/evals/NAME/``."""

    root: Path

    @classmethod
    def of(cls, run_dir: Path, name: str) -> EvalPaths:
        return RunPaths(Path(run_dir)).eval_paths(name)

    @property
    def name(self) -> str:
        return self.root.name

    precheck = property(lambda self: self.root / PRECHECK_FILE)
    responses = property(lambda self: self.root / RESPONSES_FILE)
    conversations = property(lambda self: self.root / CONVERSATIONS_DIR)
    summary = property(lambda self: self.root / SUMMARY_FILE)
    sessions = property(lambda self: self.root / SESSIONS_FILE,
                        doc="One ``start`` and one ``end`` line per ``trainkit eval`` session (for ``duration_s``).")

    @property
    def lock(self) -> Path:
        """Beside the folder, so that ``--fresh`` can move the folder while holding the lock."""
        return self.root.parent / f".{self.root.name}.lock"


# ---------------------------------------------------------------------------------------------
# where a config's run folder goes

RUN_NAME = re.compile(r"\d{4}-\d{2}-\d{2}-.+")  # YYYY-MM-DD-slug
DEFAULT_ROOT = Path("experiments")


def slugify(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return slug or "run"


def looks_like_run_dir(folder: Path) -> bool:
    return (RUN_NAME.fullmatch(folder.name) is not None or folder.parent.name == DEFAULT_ROOT.name
            or (folder / RESOLVED_CONFIG_FILE).exists() or (folder / CHECKPOINTS_DIR).is_dir())


def choose_run_dir(config_path: Path, run_dir: str | None, *, today: dt.date | None = None,
                   root: Path = DEFAULT_ROOT) -> Path:
    """``--run-dir``; else the config's folder when it is a run folder's ``config.*``;
    else ``experiments/<date>-<config stem>``."""
    if run_dir:
        return Path(run_dir)
    if config_path.stem == CONFIG_STEM and looks_like_run_dir(config_path.parent.resolve()):
        return config_path.parent
    today = today or dt.date.today()
    return root / f"{today.isoformat()}-{slugify(config_path.stem)}"


# ---------------------------------------------------------------------------------------------
# progress.json


def progress_percentage(completed: int, total: int | None, early_stopped: bool) -> float:
    """completed / total x 100 (2 decimals, never rounded onto 100 or 0: 19,999 of 20,000 is 99.99);
    an early-stopped run is complete: 100."""
    if early_stopped:
        return 100.0
    if not total:
        return 0.0
    return percent_value(min(completed, total) / total * 100, 2)


def progress_record(completed: int, total: int | None, *, early_stopped_at: int | None, finished: bool) -> dict:
    """The content of ``progress.json``. Early-stopped and finished runs are 100 %."""
    early = early_stopped_at is not None
    pct = 100.0 if finished else progress_percentage(completed, total, early)
    return {
        "version": FORMAT_VERSION,
        "completed_epochs": completed,
        "total_epochs": total,
        "progress_percentage": pct,
        "early_stopped": early,
        "early_stopped_at_epoch": early_stopped_at,
        "finished": bool(finished or early),
        "updated_at": time.time(),
    }


# ---------------------------------------------------------------------------------------------
# moving outputs aside (never deleting)


def move_aside(run_dir: Path, items: list[Path], *, now: float | None = None) -> Path | None:
    """Move each existing path of ``items`` (inside ``run_dir``) into a new
    ``superseded/<UTC time>/`` folder, keeping its path relative to the run folder. Never deletes,
    never overwrites. Returns that folder, or None when there was nothing to move."""
    present = [p for p in items if p.exists()]
    if not present:
        return None
    stamp = dt.datetime.fromtimestamp(now or time.time(), dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = RunPaths(run_dir).superseded
    dest, n = base / stamp, 1
    while dest.exists():
        n += 1
        dest = base / f"{stamp}-{n}"
    for p in present:
        target = dest / p.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, target)
    fsync_dir(run_dir)
    return dest


# ---------------------------------------------------------------------------------------------
# a state as every view shows it (an unknown name, from a newer trainkit, reads as itself)


def symbol_of(state: str | None) -> str:
    info = STATE.get(state or "")
    return info.symbol if info else "?"


def label_of(state: str | None) -> str:
    info = STATE.get(state or "")
    return info.label if info else str(state)


def style_of(state: str | None) -> str:
    info = STATE.get(state or "")
    return info.style if info else ""


def order_of(state: str | None) -> int:
    info = STATE.get(state or "")
    return info.order if info else len(STATE_TABLE)
