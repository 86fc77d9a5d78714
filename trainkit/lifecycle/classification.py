"""Classification of an experiment: a pure function of a few facts read from disk, plus ``now``.

Precedence (the first rule that applies wins):

1. ``active``   the run is live: ``trainkit.status`` says running or paused, or a live process holds
                its ``.trainkit.lock`` (training, evaluating, being moved);
2. ``archived`` the folder is in the archive, or ``metadata.json`` has ``archived_at``;
3. ``promoted`` ``metadata.json`` records a promotion that no later promotion replaced;
4. ``active``   anything in the folder changed in the last ``active_days`` (7) days; the reason
                also says what the verdict will be once it settles;
5. ``success`` / ``failed`` by ``notes.md``: its last line starting with ✓ or ✗ (a person's
                verdict beats the machine's);
6. ``failed``   a report in ``reports/`` with ``gates_passed: false`` (any one failing report);
7. ``success``  a report with ``gates_passed: true``  (reports with ``completed: false`` are no verdict);
8. ``failed``   the run is ``failed`` or ``crashed`` past the launcher's retry cap (``launch.json``);
9. ``stale``    nothing changed for more than ``stale_days`` (30) days;
10. ``active``  otherwise: no verdict yet, and not stale yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trainkit.formatting import format_age
from trainkit.runfolder import CRASHED, FAILED, LIVE

ACTIVE, SUCCESS, FAILED_CLASS, STALE, ARCHIVED, PROMOTED = (
    "active", "success", "failed", "stale", "archived", "promoted")
CLASSES = (ACTIVE, SUCCESS, FAILED_CLASS, STALE, ARCHIVED, PROMOTED)
DAY_S = 86400.0

SUCCESS_MARKS = ("✓", "✔")
FAILURE_MARKS = ("✗", "✘")
_BULLET = re.compile(r"^(?:[-*+]\s+)?")


@dataclass(frozen=True)
class Options:
    """The day limits of the classification and the launcher's retry cap."""

    active_days: float = 7.0
    """Anything changed more recently than this keeps an experiment ``active``."""
    stale_days: float = 30.0
    """Nothing changed for longer than this (and no verdict): ``stale``."""
    max_crashes: int = 3
    """A run failed or crashed this many times in a row without progress is past the retry cap."""


DEFAULTS = Options()


@dataclass(frozen=True)
class Verdict:
    """A line of ``notes.md`` starting with ✓ or ✗ (after an optional list bullet)."""

    line: int  # 1-based
    success: bool
    text: str


@dataclass(frozen=True)
class ReportFact:
    name: str  # reports/<name>.json
    gates_passed: bool | None
    completed: bool | None = True
    metric: str | None = None
    value: float | None = None


@dataclass(frozen=True)
class Facts:
    """What the classification needs, gathered from an experiment folder (see :mod:`.facts`)."""

    name: str
    state: str | None = None  # trainkit.status state; None: not a run folder
    state_reason: str = ""
    lock_holder: str | None = None  # "pid 12 on host (train)": a live process holds .trainkit.lock
    past_retry_cap: str | None = None  # why the launcher will not relaunch a failed/crashed run
    last_change: float | None = None  # newest modification time of any file (metadata.json aside)
    last_changed: str | None = None  # its path, relative to the folder
    notes: Verdict | None = None
    reports: tuple[ReportFact, ...] = ()
    in_archive: bool = False
    archived_at: float | None = None
    promotion: dict | None = None  # the current promotion record of metadata.json


@dataclass(frozen=True)
class Classification:
    status: str
    reason: str


def notes_verdict(text: str) -> Verdict | None:
    """The last ✓/✗ line of a ``notes.md`` text (leading spaces and a ``-``/``*``/``+`` bullet
    allowed; lines inside an HTML comment ``<!-- ... -->`` do not count)."""
    found = None
    in_comment = False
    for i, raw in enumerate(text.splitlines(), 1):
        line = _BULLET.sub("", raw.strip(), count=1)
        if in_comment or line.startswith("<!--"):
            in_comment = "-->" not in line[4 if not in_comment else 0:]
            continue
        if line.startswith(SUCCESS_MARKS):
            found = Verdict(i, True, line)
        elif line.startswith(FAILURE_MARKS):
            found = Verdict(i, False, line)
    return found


def _report_text(r: ReportFact, verdict: str) -> str:
    value = f" ({r.metric} {r.value:.4g})" if r.metric and isinstance(r.value, (int, float)) else ""
    return f"report reports/{r.name}.json: {verdict}{value}"


def verdict(facts: Facts, now: float, options: Options = DEFAULTS) -> Classification | None:
    """Rules 5-9: success, failed or stale, or None when there is no verdict (yet)."""
    if facts.notes is not None:
        status = SUCCESS if facts.notes.success else FAILED_CLASS
        return Classification(status, f"notes.md line {facts.notes.line}: {facts.notes.text}")
    decided = [r for r in facts.reports if r.completed is not False and isinstance(r.gates_passed, bool)]
    for r in decided:
        if not r.gates_passed:
            return Classification(FAILED_CLASS, _report_text(r, "gates failed"))
    for r in decided:
        return Classification(SUCCESS, _report_text(r, "gates passed"))
    if facts.state in (FAILED, CRASHED) and facts.past_retry_cap:
        return Classification(FAILED_CLASS, f"run {facts.state}: {facts.past_retry_cap}")
    age = None if facts.last_change is None else now - facts.last_change
    if age is None or age > options.stale_days * DAY_S:
        since = "no files" if age is None else f"nothing changed for {format_age(age)}"
        return Classification(STALE, f"{since} (stale after {options.stale_days:g} d)")
    return None


def classify(facts: Facts, now: float, options: Options = DEFAULTS) -> Classification:
    """The lifecycle class of an experiment and why (see the module docstring for the precedence)."""
    if facts.state in LIVE:
        return Classification(ACTIVE, f"{facts.state}: {facts.state_reason}")
    if facts.lock_holder:
        return Classification(ACTIVE, f"locked by {facts.lock_holder}")
    if facts.in_archive or facts.archived_at is not None:
        when = f" {format_age(now - facts.archived_at)} ago" if facts.archived_at is not None else ""
        where = "in the archive" if facts.in_archive else "under ROOT, but metadata.json says archived"
        return Classification(ARCHIVED, f"archived{when} ({where})")
    if facts.promotion is not None:
        p = facts.promotion
        value = p.get("value")
        shown = f" ({p.get('metric')} {value:.4g})" if isinstance(value, (int, float)) else ""
        return Classification(PROMOTED, f"promoted to {p.get('production_config') or p.get('target')}{shown}")
    age = None if facts.last_change is None else now - facts.last_change
    if age is not None and age < options.active_days * DAY_S:
        recent = f"changed {format_age(age)} ago ({facts.last_changed})"
        later = verdict(facts, now, options)
        if later is not None and later.status != STALE:
            recent += f"; then {later.status}: {later.reason}"
        return Classification(ACTIVE, recent)
    later = verdict(facts, now, options)
    if later is not None:
        return later
    return Classification(ACTIVE, f"no verdict yet; last change {format_age(age)} ago "
                                  f"(stale after {options.stale_days:g} d)")
