"""The runs other tools wrote (:mod:`trainkit.foreign`), for the server: listed in ``/runs`` with their
``source``, and ``/runs/NAME`` for one of them. A foreign run's name is its path under ROOT and may
hold a ``/`` (``pl/lightning_logs/version_0``): a client percent-encodes it as one path segment
(``/runs/pl%2Flightning_logs%2Fversion_0``, what ``encodeURIComponent`` gives). :func:`resolve` accepts
such a name only when each of its parts is a plain, non-hidden, non-symlinked folder inside ROOT
and :func:`trainkit.foreign.classify` finds that very folder a run; anything else is no run (404).

No HTTP here. A run's summary is kept while the files it was read from (event files,
``trainer_state.json``, ``metrics.csv``) are unchanged and it is not running."""

from __future__ import annotations

import os
import stat
import threading
import time

from trainkit import foreign as F
from trainkit.runfolder import LIVE
from trainkit.status import RunStatus, foreign_status

REUSE_MAX_S = 30.0  # as the trainkit runs' index: a kept summary is judged again at least this often


def resolve(root: str, name: str) -> tuple[str, str] | None:
    """(source, folder) of the foreign run ``name`` (already percent-decoded, once) under ``root``, or
    None: an empty, absolute, hidden, ``..``, ``.`` or back-slashed part, a symlink anywhere on the
    way, a folder outside ROOT's real path, or a folder that is not a run another tool wrote."""
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return None
    parts = name.split("/")
    if any(not p or p.startswith(".") for p in parts):  # "", ".", "..", hidden
        return None
    path = root
    try:
        for p in parts:
            path = os.path.join(path, p)
            if not stat.S_ISDIR(os.lstat(path).st_mode):  # a symlink is never followed
                return None
        real_root = os.path.realpath(root)
        if not os.path.realpath(path).startswith(real_root + os.sep):
            return None
    except (OSError, ValueError):
        return None
    top = os.path.join(root, parts[0])
    for source, folder in F.classify(top):
        if os.path.normpath(folder) == os.path.normpath(path):
            return source, path
    return None


class ForeignIndex:
    """The foreign runs under ROOT, each read again only when its files changed (or it is live, or
    :data:`REUSE_MAX_S` passed)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._kept: dict[str, tuple[tuple, float, F.Foreign]] = {}  # path -> (signature, read at, summary)
        self._lock = threading.Lock()

    def runs(self, skip: set[str], now: float | None = None) -> list[RunStatus]:
        now = time.time() if now is None else now
        with self._lock:
            found = F.discover(self.root, skip=skip)
            kept, fresh = {}, []
            for source, path in found:
                sig = F.signature(path)
                old = self._kept.get(path)
                if old is not None and old[0] == sig and now - old[1] < REUSE_MAX_S and old[2].held_by is None:
                    kept[path] = old
                    continue
                fresh.append((source, path, sig))
            read = [(F.read(source, path, root=self.root), sig) for source, path, sig in fresh]
            held = F.writers([f.path for f, _ in read if not (f.finished or f.early_stopped)])
            for f, sig in read:
                f.held_by = held.get(f.path)
                kept[f.path] = (sig, now, f)
            self._kept = kept
            out = []
            for _, _, f in kept.values():
                rs = foreign_status(f, now=now)
                if rs.state in LIVE:  # judged by the clock: read again next time
                    kept[f.path] = (None, now, f)
                out.append(rs)
            return out


def detail(source: str, path: str, root: str) -> dict:
    """One foreign run: its status (as in /runs), ``source``, and per scalar tag its count and last
    (step, value); the files of trainkit's own runs (status, progress, epoch, reports) are null."""
    f = F.read(source, path, root=root)
    f.held_by = F.writers([path]).get(path)
    scalars = F.scalars(source, path)
    tags = {tag: {"n": len(points), "last_step": points[-1][0], "last_value": points[-1][1]}
            for tag, points in sorted(scalars.items()) if points}
    return {"run": foreign_status(f, now=time.time()), "source": source, "scalars": tags,
            "training_status": None, "progress": None, "latest_epoch": None, "report_summaries": {}}
