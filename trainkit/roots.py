"""Several ROOTs at once (``trainkit status ROOT [ROOT...]``, ``trainmon ROOT [ROOT...]``): each one
scanned as it would be alone, and the runs' names kept unique: the first ROOT's names are as they
are (its actions name them), a later ROOT's run whose name is already taken is shown with its
ROOT's folder name in front (``other/2026-12-01-base``), or with the ROOT as given when that is
taken too."""

from __future__ import annotations

import os
from collections.abc import Iterable


def distinct(roots: list[str]) -> list[str]:
    """The ROOTs in the order given, each folder once (the same folder named twice, or by a link)."""
    seen: set[str] = set()
    out = []
    for r in roots:
        real = os.path.realpath(r)
        if real not in seen:
            seen.add(real)
            out.append(r)
    return out


def unique_name(name: str, root: str, taken: set[str], *, label: str | None = None) -> str:
    """``name`` of a run under ``root``, made unique among ``taken`` (pure; adds the result to it).
    ``label``: what names the ROOT when its folder name is taken too (default: the ROOT as given)."""
    out = name
    if out in taken:
        out = f"{os.path.basename(os.path.abspath(root))}/{name}"
    if out in taken:
        out = f"{label or root.rstrip('/')}/{name}"
    n = 2
    base = out
    while out in taken:  # the same ROOT given twice under different spellings is folded by distinct()
        out = f"{base} ({n})"
        n += 1
    taken.add(out)
    return out


def unique_names(groups: Iterable[tuple[str, list[str]]],
                 label_of: dict[str, str] | None = None) -> list[list[str]]:
    """Each ROOT's run names (ROOTs in the order given, each one's names in its order) made unique
    across the ROOTs by :func:`unique_name`: what ``trainkit status`` and ``trainkit serve`` call
    the runs of several ROOTs (pure). ``label_of``: each ROOT's label (:func:`labels`) where the ROOT
    as given must not be shown (serve shows no absolute path)."""
    taken: set[str] = set()
    label_of = label_of or {}
    return [[unique_name(n, root, taken, label=label_of.get(root)) for n in names] for root, names in groups]


def labels(roots: list[str]) -> dict[str, str]:
    """A short label of each ROOT, none twice: ``.`` for the first, a later one's folder name, with
    `` (2)``, `` (3)``... when an earlier ROOT has that name (``trainkit serve`` reads a later ROOT's
    paths under it) (pure)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for i, r in enumerate(roots):
        base = "." if i == 0 else os.path.basename(os.path.abspath(r))
        label, n = base, 2
        while label in used:
            label, n = f"{base} ({n})", n + 1
        used.add(label)
        out[r] = label
    return out


def scan_roots(roots: list[str], **options) -> list:
    """:func:`trainkit.status.scan` of every ROOT, the names made unique; sorted by name within
    each ROOT, the ROOTs in the order given."""
    from trainkit.status import scan

    groups = [(root, scan(root, **options)) for root in distinct(roots)]
    out = []
    for (_, runs), names in zip(groups, unique_names((root, [r.name for r in runs]) for root, runs in groups),
                                strict=True):
        for r, name in zip(runs, names, strict=True):
            r.name = name
        out.extend(runs)
    return out
