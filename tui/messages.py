"""Messages shared between the watcher, the app and the screens (small dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from tui.model.runs import RunChange


@dataclass
class RunsChanged(Message):
    """The model changed these runs (posted by the watcher, the poll timer and the loader)."""

    changes: list[RunChange] = field(default_factory=list)

    def can_replace(self, message: Message) -> bool:  # never drop a change: merge instead
        if isinstance(message, RunsChanged):
            self.changes = message.changes + self.changes
            return True
        return False


@dataclass
class ModelLoaded(Message):
    """The first full read of ROOT is done."""

    runs: int = 0


@dataclass
class WatchMode(Message):
    """How ROOT is watched now (``inotify``, ``polling every 1 s``...) and why, when it changed.
    ``ready``: the watches are in place (posted once by the watcher: a change from now on shows)."""

    mode: str = ""
    note: str | None = None
    ready: bool = False
