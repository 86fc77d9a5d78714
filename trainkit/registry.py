"""Resolving a name to an object: a built-in name, an entry point of a package group, or an import
string ``module:attribute``, with "did you mean" for a near miss. Used by tasks, ``--model`` and
data profiles; the folder trainkit runs from is importable (a user's module next to the config).

A module is never imported from inside a run folder or a folder of runs (ROOT): in a shared
experiments folder anyone who can write a run could otherwise have ``task:
experiments.theirrun.payload:make`` run their code. Where a module would come from is found
without executing anything (the path finders), before it is imported.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.machinery
import os
import sys
from importlib.metadata import entry_points
from typing import Any

from trainkit.errors import UserError, first_line
from trainkit.runfolder import CONFIG_STEM, RUN_MARKERS


def import_string(spec: str, *, what: str) -> Any:
    """``module:attr`` (``attr`` may be dotted) -> the object. ``what`` names it in errors, e.g.
    ``task 'x:y'`` or ``--model 'x:y'``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"{what}: expected module:function, an import string (e.g. mypkg.models:answer)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    runs = run_folder_on_the_way(module_name)
    if runs is not None:
        raise UserError(f"{what}: module {module_name!r} would be imported from {runs}, a run folder or a folder of "
                        "runs; trainkit never imports code from there (make it a package, or put it beside your "
                        "config)")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's module: one line
        raise UserError(f"{what}: cannot import module {module_name!r} ({first_line(e, limit=300)})") from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise UserError(f"{what}: module {module_name!r} has no attribute {attr!r}")
    return obj


# what marks a run folder here: the files trainkit writes into one, and the data configs of a pending
# run (config.py and config.json are left out: Python packages hold modules and data files of that name)
MARKERS = tuple(m for m in RUN_MARKERS if m not in (CONFIG_STEM + ".py", CONFIG_STEM + ".json"))


def _is_runs_folder(folder: str) -> bool:
    """A run folder (it holds a run's file), or a folder holding run folders (a ROOT)."""
    if any(os.path.exists(os.path.join(folder, m)) for m in MARKERS):
        return True
    try:
        with os.scandir(folder) as it:
            children = [e.path for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    except OSError:
        return False
    return any(os.path.exists(os.path.join(c, m)) for c in children[:10_000] for m in MARKERS)


def run_folder_on_the_way(module_name: str) -> str | None:
    """The package folder on the way to ``module_name`` that is a run folder or a folder of runs,
    found with the path finders alone (nothing is executed); None when there is none (or the
    module is already imported, built in, or not found: the import then decides)."""
    if module_name in sys.modules:
        return None
    parts = module_name.split(".")
    search: list[str] | None = None
    for i in range(len(parts) - 1):  # the packages; the module itself may sit in the last one
        try:
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:i + 1]), search)
        except (ImportError, ValueError):
            return None
        if spec is None or spec.submodule_search_locations is None:
            return None
        search = list(spec.submodule_search_locations)
        for folder in search:
            if _is_runs_folder(folder):
                return folder
    return None


def _group(group: str | None) -> dict[str, Any]:
    if group is None:
        return {}
    return {ep.name: ep for ep in entry_points(group=group)}


def names(builtins: dict[str, str], group: str | None = None) -> list[str]:
    """Every name known: the built-ins, then the entry points of ``group`` (sorted)."""
    return list(builtins) + sorted(n for n in _group(group) if n not in builtins)


def resolve(spec: str, *, kind: str, builtins: dict[str, str], group: str | None = None) -> Any:
    """The object ``spec`` names: a built-in (``builtins`` maps names to import strings), an entry
    point of ``group``, or an import string. Unknown names raise :class:`UserError` listing the
    known ones, with the nearest as a suggestion."""
    if spec in builtins:
        return import_string(builtins[spec], what=f"{kind} {spec!r}")
    eps = _group(group)
    if spec in eps:
        try:
            return eps[spec].load()
        except Exception as e:
            raise UserError(f"{kind} {spec!r}: cannot load entry point {eps[spec].value!r} "
                            f"({first_line(e, limit=300)})") from None
    if ":" in spec:
        return import_string(spec, what=f"{kind} {spec!r}")
    known = names(builtins, group)
    near = difflib.get_close_matches(spec, known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise UserError(f"unknown {kind} {spec!r}{hint}; known: {', '.join(known)}, or an import string "
                    "module:function")
