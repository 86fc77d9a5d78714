"""Task registry: built-in names, or ``module:function`` import strings for user tasks."""

from __future__ import annotations

import difflib
import importlib
import os
import sys

from trainkit.config import ConfigError
from trainkit.tasks.base import Task, TaskData

BUILTIN = {
    "burgers": "trainkit.tasks.burgers:BurgersTask",
}

__all__ = ["BUILTIN", "Task", "TaskData", "get_task"]


def get_task(spec: str) -> Task:
    """The task named ``spec``; raises :class:`ConfigError` with a suggestion when unknown."""
    target = BUILTIN.get(spec)
    if target is None:
        if ":" not in spec:
            near = difflib.get_close_matches(spec, list(BUILTIN), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"unknown task {spec!r}{hint}; built-in tasks: {', '.join(BUILTIN)}, "
                              "or give an import string module:function")
        target = spec
    module_name, _, attr = target.partition(":")
    if os.getcwd() not in sys.path:  # a user's task module next to where they run trainkit
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"task {spec!r}: cannot import module {module_name!r} ({e})") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise ConfigError(f"task {spec!r}: module {module_name!r} has no attribute {attr!r}")
    task = factory()
    missing = [m for m in ("build_data", "build_model", "loss", "validate") if not hasattr(task, m)]
    if missing:
        raise ConfigError(f"task {spec!r}: the object returned lacks {', '.join(missing)}")
    return task
