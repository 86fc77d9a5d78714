"""The loss curves beside the runs table on a wide terminal (pure: no Textual): which runs are
drawn (the highlighted one, then the marked ones), their loss points, and a small cache
of their histories (opened by the detail's bounded reader, followed as they grow)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

WIDE = 140  # columns: from this width the workspace shows the curves beside the table
MAX_CURVES = 6  # the highlighted run and up to five marked runs
CACHED = 12  # histories kept (those drawn, and the last few highlighted)


def overlaid(current: str | None, marked: set[str], order: list[str], limit: int = MAX_CURVES) -> list[str]:
    """The runs whose loss is drawn: the highlighted run first, then the marked runs in the
    table's ``order`` (a marked run filtered out of the table is left out), at most ``limit``."""
    keys = [current] if current is not None else []
    keys += [k for k in order if k in marked and k != current]
    return keys[:limit]


def loss_points(history) -> list[tuple[float, float]]:
    """(step, loss) of a history (trainkit's or another tool's: its loss tag)."""
    return [(p[0], p[3]) for p in history.points("loss")]


class Histories:
    """Histories by run key, the least recently used dropped beyond ``size``; ``open`` is the
    reader (the detail's ``load_history`` with ``History.open``: the tail and an overview, bounded)."""

    def __init__(self, open: Callable[[str], object], size: int = CACHED) -> None:
        self.open, self.size = open, size
        self._by_key: OrderedDict[str, object] = OrderedDict()

    def get(self, key: str):
        h = self._by_key.get(key)
        if h is not None:
            self._by_key.move_to_end(key)
        return h

    def missing(self, keys: list[str]) -> list[str]:
        return [k for k in keys if k not in self._by_key]

    def put(self, key: str, history, keep: list[str] = ()) -> None:
        """Keep ``history``; drop the oldest beyond the size, never one of ``keep`` (those drawn)."""
        self._by_key[key] = history
        self._by_key.move_to_end(key)
        for old in list(self._by_key):
            if len(self._by_key) <= self.size:
                break
            if old not in keep and old != key:
                del self._by_key[old]

    def follow(self, key: str) -> bool:
        """Read what the run appended (True: its curve changed). A log that was truncated or
        replaced is dropped, to be opened again."""
        h = self._by_key.get(key)
        if h is None or not h.update():
            return False
        if h.reload:
            del self._by_key[key]
        return True

    def clear(self) -> None:
        self._by_key.clear()

    def __contains__(self, key: str) -> bool:
        return key in self._by_key
