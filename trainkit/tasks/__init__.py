"""Task registry: built-in names, entry points of ``trainkit.tasks``, or ``module:function`` import
strings for user tasks. Importing it imports no torch (``Task`` and ``TaskData`` are loaded from
:mod:`trainkit.tasks.base` on first use), so the torch-free commands can read the built-in tasks'
names and defaults (:mod:`trainkit.tasks.defaults`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainkit import registry
from trainkit.errors import UserError

if TYPE_CHECKING:
    from trainkit.tasks.base import Task, TaskData

BUILTIN = {
    "burgers": "trainkit.tasks.burgers:BurgersTask",
    "arith-chat": "trainkit.tasks.arith_chat:ArithChatTask",
}
ENTRY_POINT_GROUP = "trainkit.tasks"

__all__ = ["BUILTIN", "Task", "TaskData", "get_task"]


def __getattr__(name: str) -> Any:  # PEP 562: torch is imported when a task class is first needed
    if name in ("Task", "TaskData"):
        from trainkit.tasks import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_task(spec: str) -> Task:
    """The task named ``spec``; raises :class:`UserError` with a suggestion when unknown."""
    factory = registry.resolve(spec, kind="task", builtins=BUILTIN, group=ENTRY_POINT_GROUP)
    if not callable(factory):
        raise UserError(f"task {spec!r}: {factory!r} is not callable (give a function or class returning a task)")
    task = factory()
    missing = [m for m in ("build_data", "build_model", "loss", "validate") if not hasattr(task, m)]
    if missing:
        raise UserError(f"task {spec!r}: the object returned lacks {', '.join(missing)}")
    return task
