"""One watcher per root: ``watchfiles.awatch`` on ROOT, filtered to the contract's files; the
loop only routes the changed paths to the model and posts what changed. Polling mode (``--poll``,
a network filesystem, or inotify's watch limit reached) stats the known files on a timer instead."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from textual.message import Message
from watchfiles import BaseFilter, Change, awatch

from trainkit.foreign import watched_name
from trainkit.runfolder import (
    CHECKPOINTS_DIR,
    EPOCHS_DIR,
    EVAL_VIEW,
    EVALS_DIR,
    HISTORY_VIEW,
    MONITOR_VIEW,
    REPORTS_DIR,
    STATE_VIEW,
    files_for,
)
from tui.messages import RunsChanged, WatchMode
from tui.model.runs import RunsModel

DEBOUNCE_MS = 50  # awatch's default 1.6 s is far too slow for a live monitor
STEP_MS = 10
# the contract's files that trainmon's views read (the FILES table says which; .trainkit.lock included)
CONTRACT_NAMES = files_for(STATE_VIEW, HISTORY_VIEW, MONITOR_VIEW, EVAL_VIEW)


class ContractFilter(BaseFilter):
    """Only the files trainmon reads: the contract's names, reports, run folders themselves (a run
    appearing or leaving) and evaluation folders (one appearing: its first files are written before
    the new folder is watched); and the files of runs other tools write (event files,
    ``trainer_state.json``, ``metrics.csv``, ``hparams.yaml``: never a checkpoint's weights). Temp
    files of atomic writes and conversations are ignored."""

    def __init__(self, root: str, *more_roots: str) -> None:
        super().__init__()
        self.root = os.path.abspath(root)
        self.roots = {self.root, *(os.path.abspath(r) for r in more_roots)}
        self.archive_parent = os.path.dirname(self.root)

    def __call__(self, change: Change, path: str) -> bool:
        name = os.path.basename(path)
        if name in CONTRACT_NAMES or watched_name(name):  # before the dot-file rule: the run lock is a dot file
            return True
        parent = os.path.dirname(path)
        if name.startswith("."):  # an evaluation's lock (evals/.NAME.lock): it started or ended
            return name.endswith(".lock") and os.path.basename(parent) == EVALS_DIR
        if parent in self.roots or os.path.dirname(parent) in self.roots and name in (EPOCHS_DIR, CHECKPOINTS_DIR):
            return True
        if os.path.basename(parent) == EVALS_DIR:
            return True
        return name.endswith(".json") and os.path.basename(parent) == REPORTS_DIR


def watch_limit_error(e: BaseException) -> bool:
    text = str(e).lower()
    return "limit" in text or "no space left" in text or "too many open files" in text or "inotify" in text


async def watch_root(model: RunsModel, post: Callable[[Message], object], *, stop: asyncio.Event | None = None,
                     debounce_ms: int = DEBOUNCE_MS) -> str | None:
    """Watch ROOT until cancelled. Returns a reason when it cannot watch (then poll instead).
    Posts ``WatchMode("inotify")`` once the watches are in place: from then on no change is missed."""
    changes_of = awatch(*model.roots, watch_filter=ContractFilter(*model.roots), debounce=debounce_ms, step=STEP_MS,
                        recursive=True, stop_event=stop, force_polling=False, rust_timeout=10_000,
                        ignore_permission_denied=True)  # a run folder this user cannot read is a row with ⚠
    try:
        first = asyncio.ensure_future(anext(changes_of))
        # awatch sets its watches up synchronously in its first step, before it first awaits: one
        # turn of the loop later they are in place (or setting them up failed)
        await asyncio.sleep(0)
        if first.done() and first.exception() is not None:
            raise first.exception()
        post(WatchMode("inotify", ready=True))
        async for changes in _chain(first, changes_of):
            out = model.refresh({p for _, p in changes})
            if out:
                post(RunsChanged(out))
            while model.pending:
                await asyncio.sleep(0.01)  # let the screen draw; the rest on the next tick
                out = model.refresh(set())
                if out:
                    post(RunsChanged(out))
    except (OSError, RuntimeError) as e:
        why = f"inotify unavailable ({e}); polling instead" if watch_limit_error(e) else \
            f"watching failed ({e}); polling instead"
        post(WatchMode("polling", why))
        return why
    except asyncio.CancelledError:
        first.cancel()
        raise
    return None


async def _chain(first: asyncio.Future, rest):
    """The first batch (already awaited as a future), then the rest of the generator."""
    try:
        yield await first
    except StopAsyncIteration:
        return
    async for item in rest:
        yield item
