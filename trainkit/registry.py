"""Resolving a name to an object: a built-in name, an entry point of a package group, or an import
string ``module:attribute``, with "did you mean" for a near miss. Used by tasks, ``--model`` and
data profiles; the folder trainkit runs from is importable (a user's module next to the config).
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from importlib.metadata import entry_points
from typing import Any

from trainkit.errors import UserError, first_line


def import_string(spec: str, *, what: str) -> Any:
    """``module:attr`` (``attr`` may be dotted) -> the object. ``what`` names it in errors, e.g.
    ``task 'x:y'`` or ``--model 'x:y'``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"{what}: expected module:function, an import string (e.g. mypkg.models:answer)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
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
