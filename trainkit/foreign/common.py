"""What the readers of other tools' folders share: the names those tools use, the summary of a
foreign run (:class:`Foreign`), and small pure helpers."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

HF, LIGHTNING, TENSORBOARD = "hf", "lightning", "tensorboard"
SOURCES = (HF, LIGHTNING, TENSORBOARD)
QUIET_S = 120.0  # no process of this host holds a file open: a write this recent still means running
EVENTS_PREFIX = "events.out.tfevents."
HF_STATE = "trainer_state.json"
HF_CHECKPOINT_PREFIX = "checkpoint-"
LIGHTNING_LOGS = "lightning_logs"
LIGHTNING_VERSION_PREFIX = "version_"
LIGHTNING_METRICS = "metrics.csv"
LIGHTNING_HPARAMS = "hparams.yaml"
LIGHTNING_CHECKPOINTS = "checkpoints"  # ModelCheckpoint's folder (the same word as trainkit's own, by chance)
MAX_TAIL = 16  # points kept for a sparkline


@dataclass
class Foreign:
    """What a foreign run folder says, read-only."""

    source: str
    path: str
    name: str  # the path under ROOT (``lightning_logs/version_0``)
    step: int | None = None  # the last global step recorded
    total_steps: int | None = None  # the trainer's target in steps (HF max_steps), None: unknown
    epoch: float | None = None  # epochs done, as the trainer counts them (HF: a float)
    total_epochs: int | None = None
    last_loss: float | None = None
    loss_tail: list[float] = field(default_factory=list)  # the last losses, for a sparkline
    best_metric: str | None = None
    best_value: float | None = None
    best_where: str | None = None  # the checkpoint or step of the best
    model: str | None = None
    finished: bool | None = None  # the trainer's own word: True finished, False not, None: it keeps none
    early_stopped: bool = False
    stopped_by_trainer: bool = False  # the trainer decided to stop (HF should_training_stop)
    last_write: float | None = None  # the newest modification time of its files
    held_by: int | None = None  # the pid of a live process of this host holding one of its files open
    pace: tuple[float, int, float, int] | None = None  # (time, step) of an early and of the latest record: the rate
    warnings: list[str] = field(default_factory=list)


#: Within :func:`one_look`: each folder's entries as listed the first time it was asked for.
_LISTINGS: ContextVar[dict[str, tuple[dict[str, bool], list[os.DirEntry]]] | None] = \
    ContextVar("trainkit_foreign_listings", default=None)


@contextmanager
def one_look() -> Iterator[None]:
    """Within it (one scan of a ROOT, in this thread or task), each folder is listed once, however
    many readers ask what it holds: the scan judges one snapshot of each folder. Outside it every
    question lists the folder again."""
    token = _LISTINGS.set({})
    try:
        yield
    finally:
        _LISTINGS.reset(token)


def _listing(path: str) -> tuple[dict[str, bool], list[os.DirEntry]]:
    memo = _LISTINGS.get()
    if memo is not None:
        hit = memo.get(path)
        if hit is not None:
            return hit
    names: dict[str, bool] = {}
    found: list[os.DirEntry] = []
    try:
        with os.scandir(path) as it:
            for e in it:
                try:
                    names[e.name] = e.is_dir(follow_symlinks=False)
                except OSError:
                    names[e.name] = False
                found.append(e)
    except OSError:
        pass
    if memo is not None:
        memo[path] = (names, found)
    return names, found


def entries(path: str) -> dict[str, bool]:
    """{name: whether it is a folder (a symlink is not)} of what ``path`` holds; {} when it cannot be
    listed. Listed once within :func:`one_look`."""
    return _listing(path)[0]


def dir_entries(path: str) -> list[os.DirEntry]:
    """The ``os.DirEntry`` of each thing ``path`` holds (their stat is cached on them), as :func:`entries`."""
    return _listing(path)[1]


def may_hold(folder: str, name: str) -> bool:
    """False when, within :func:`one_look`, ``folder``'s listing shows no ``name`` (nothing to ask);
    True otherwise, and outside a look without listing anything: a caller that asks for one or two
    names then does better asking for them."""
    return _LISTINGS.get() is None or name in entries(folder)


def _names(path: str) -> list[str]:
    return sorted(entries(path))


def is_real_dir(path: str) -> bool:
    """A folder that is not a symlink (within :func:`one_look`: from its parent's listing)."""
    if _LISTINGS.get() is not None:
        parent, name = os.path.split(path)
        listing = entries(parent) if name and parent else None
        if listing:  # (an empty one may be a folder that cannot be listed: asked directly)
            return listing.get(name, False)
    return os.path.isdir(path) and not os.path.islink(path)


def watched_name(name: str) -> bool:
    """A file whose change a live view of foreign runs must see (event files, ``trainer_state.json``,
    ``metrics.csv``, ``hparams.yaml``); never a checkpoint's weights."""
    return name in (HF_STATE, LIGHTNING_METRICS, LIGHTNING_HPARAMS) or name.startswith(EVENTS_PREFIX)


def has_events(path: str) -> bool:
    return any(n.startswith(EVENTS_PREFIX) for n in _names(path))


def loss_tag(tags: list[str]) -> str | None:
    """The training loss among scalar tags: ``loss``, ``train_loss``, ``train/loss``... (not a
    validation or evaluation loss)."""
    def plain(t: str) -> str:
        return t.lower().replace("/", "_").replace(".", "_")

    for want in ("loss", "train_loss", "train_loss_step", "training_loss", "loss_train", "train_loss_epoch"):
        for t in tags:
            if plain(t) == want:
                return t
    for t in tags:
        p = plain(t)
        if "loss" in p and not any(w in p for w in ("val", "eval", "test")):
            return t
    return None


def finite(v: object) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def cache_folder(kind: str) -> str:
    """The user's cache folder of a reader's summaries (``hf``, ``tensorboard``) under
    :func:`trainkit.config.default_cache_dir`, worked out again only when the variables it follows
    change (a scan asks once per folder)."""
    return os.path.join(_cache_root(os.environ.get("TRAINKIT_CACHE_DIR"), os.environ.get("XDG_CACHE_HOME"),
                                    os.environ.get("HOME")), kind)


@functools.lru_cache(maxsize=8)
def _cache_root(*_variables: str | None) -> str:
    from trainkit.config import default_cache_dir

    return os.fspath(default_cache_dir())
