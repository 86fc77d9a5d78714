"""The workspace's filter language, sort keys and grouping (pure functions over run views).

Filter: space-separated terms, all must hold. ``key OP value`` with OP one of ``>= <= != > < =``
(``~`` for "contains") compares a flattened config key (``model.width``, ``lr``) or a run field
(``state``, ``name``, ``progress``, ``loss``, ``best``, ``epoch``); numbers compare as numbers
(``lr>=1e-3``). A bare word is a substring of the run's name.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from trainkit.runfolder import STATES, order_of
from tui.model.views import RunView

OPS = (">=", "<=", "!=", ">", "<", "=", "~")
TERM = re.compile(r"^([A-Za-z_][\w.\-]*)\s*(>=|<=|!=|>|<|=|~)\s*(.*)$")
SORTS = ("name", "state", "progress", "loss", "recent")


class FilterError(ValueError):
    """A filter that cannot be understood (the message says which term)."""


@dataclass(frozen=True)
class Term:
    key: str | None  # None: a bare word (substring of the name)
    op: str
    value: str


def parse_filter(text: str) -> list[Term]:
    terms = []
    for word in text.split():
        m = TERM.match(word)
        if m is None:
            if any(op in word for op in OPS):
                raise FilterError(f"cannot read {word!r}: write key=value, key>=value, ...")
            terms.append(Term(None, "~", word))
            continue
        key, op, value = m.groups()
        if value == "":
            raise FilterError(f"{word!r}: a value is missing after {op}")
        if key == "state" and op in ("=", "!=") and value not in STATES and value.replace("-", "_") not in STATES:
            raise FilterError(f"state={value}: one of {', '.join(STATES)}")
        terms.append(Term(key, op, value))
    return terms


def field_value(view: RunView, key: str) -> Any:
    fields = {"name": view.name, "state": view.state, "progress": view.percentage, "loss": view.last_loss,
              "best": view.best_value, "epoch": view.completed}
    if key in fields:
        return fields[key]
    return view.config.get(key, _MISSING)


_MISSING = object()


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def term_holds(term: Term, view: RunView) -> bool:
    if term.key is None:
        return term.value.lower() in view.name.lower()
    have = field_value(view, term.key)
    if have is _MISSING or have is None:
        return term.op == "!="
    want = term.value
    if term.key == "state":
        want = want.replace("-", "_")
    if term.op == "~":
        return want.lower() in str(have).lower()
    a, b = _number(have), _number(want)
    if a is not None and b is not None:
        if term.op == "=":
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
        if term.op == "!=":
            return not math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
        return {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[term.op]
    text = str(have).lower() if not isinstance(have, bool) else str(have).lower()
    if term.op == "=":
        return text == want.lower()
    if term.op == "!=":
        return text != want.lower()
    return False  # an order on a non-number


def matches(terms: list[Term], view: RunView) -> bool:
    return all(term_holds(t, view) for t in terms)


def sort_key(key: str):
    """A key function for ``sorted`` over run views (missing values last)."""
    inf = float("inf")
    if key == "name":
        return lambda v: v.name
    if key == "state":
        return lambda v: (order_of(v.state), v.name)
    if key == "progress":
        return lambda v: (-v.fraction, v.name)
    if key == "loss":
        return lambda v: (v.last_loss if v.last_loss is not None else inf, v.name)
    if key == "recent":
        return lambda v: (-v.changed_at, v.name)
    raise ValueError(f"unknown sort {key!r}; one of {', '.join(SORTS)}")


def group_value(view: RunView, key: str) -> str:
    v = field_value(view, key)
    return "(none)" if v is _MISSING or v is None else str(v)


def arrange(views: list[RunView], *, terms: list[Term], sort: str, group: str | None) -> list[RunView]:
    """The views that pass the filter, sorted, grouped (stable: groups in order of their value)."""
    kept = sorted((v for v in views if matches(terms, v)), key=sort_key(sort))
    if group:
        kept.sort(key=lambda v: _group_order(group_value(v, group)))
    return kept


def _group_order(text: str):
    n = _number(text)
    return (0, n, "") if n is not None else (1, 0.0, text)


def config_keys(views: list[RunView]) -> list[str]:
    """Every flattened config key (for grouping suggestions)."""
    keys: set[str] = set()
    for v in views:
        keys.update(v.config)
    return sorted(keys)
