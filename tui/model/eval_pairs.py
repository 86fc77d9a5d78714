"""The same item in two evaluations, without Textual: the other evaluations (of this run or of any
run under the roots) that hold an item, and the items two evaluations share. An evaluation holds
an item when ``responses.jsonl`` lists it (read through :class:`~tui.model.evals.EvalItems`, the
bounded tail); its conversation file is looked at first (a stat, never a read) so that evaluations
without it are not read at all."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from trainkit.runfolder import CONVERSATIONS_DIR, EVALS_DIR
from tui.model.evals import EvalItems, Item, item_key


@dataclass
class Other:
    """Another evaluation that holds the item: its run's name, its name, the item there, how many
    items it shares with the first evaluation."""

    run: str
    name: str
    items: EvalItems
    item: Item
    shared: int

    @property
    def label(self) -> str:
        return f"{self.run} / {self.name}"


def eval_dirs(run_dir: str) -> list[str]:
    """The evaluation folders of a run, by name (hidden entries, the locks, left out)."""
    try:
        with os.scandir(os.path.join(run_dir, EVALS_DIR)) as it:
            return sorted(e.path for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def others_holding(item: Item, eval_dir: str, run_dirs: Iterable[str], keys: Iterable[tuple[str, int]],
                   cancelled: Callable[[], bool] = lambda: False) -> list[Other]:
    """The evaluations of ``run_dirs`` other than ``eval_dir`` whose ``responses.jsonl`` lists
    ``item``, those of ``eval_dir``'s own run first, then by run and name; ``keys`` are the first
    evaluation's items (counted as shared). Stops early, with what it found, when ``cancelled()``."""
    here = os.path.abspath(eval_dir)
    own_run = os.path.dirname(os.path.dirname(here))
    wanted = item_key(item)
    mine = set(keys)
    out: list[Other] = []
    for run in sorted({os.path.abspath(r) for r in run_dirs} | {own_run}, key=lambda r: (r != own_run, r)):
        for folder in eval_dirs(run):
            if cancelled():
                return out
            if folder == here or not os.path.exists(os.path.join(folder, CONVERSATIONS_DIR, item.file)):
                continue
            other = EvalItems(folder)
            other.update()  # the whole file in one call (the tail's reads are bounded per line)
            index = other.index_of(wanted)
            if index is None:
                continue
            shared = sum(1 for k in mine if other.index_of(k) is not None)
            out.append(Other(Path(run).name, Path(folder).name, other, other.items[index], shared))
    return out


def shared_items(a: list[Item], b: EvalItems) -> list[tuple[str, int]]:
    """The keys of the items of ``a`` that ``b`` lists too, in ``a``'s order."""
    return [k for k in map(item_key, a) if b.index_of(k) is not None]
