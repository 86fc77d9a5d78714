"""Classification of an experiment: a pure function of a few facts read from disk, plus ``now``.

Precedence (the first rule that applies wins):

1. ``active``    the run is live: ``trainkit.status`` says running or paused, or a live process holds
                 its ``.trainkit.lock`` (training, evaluating, being moved);
2. ``archived``  the folder is in the archive, or ``metadata.json`` has ``archived_at``;
3. ``promoted``  ``metadata.json`` records a promotion that no later promotion replaced;
4. ``active``    anything in the folder changed in the last ``active_days`` (7) days; the reason
                 also says what the verdict will be once it settles;
5. ``success`` / ``failed`` by ``notes.md``: its last line starting with ✓ or ✗ (a person's
                 verdict beats the machine's);
6. by THE RUN'S REPORT (:func:`pick_report`: ``reports/default.json``, else the most recently
   written): ``failed`` when its gates failed, ``success`` when they passed, ``evaluated`` when no
   gate is configured (neither success nor failure) or when the report is stale (its model is no
   longer ``checkpoints/best.pt``: never success); an incomplete evaluation is no verdict;
7. ``failed``    the run is ``failed`` or ``crashed`` past the launcher's retry cap (``launch.json``);
8. ``stale``     nothing changed for more than ``stale_days`` (30) days;
9. ``active``    otherwise: no verdict yet, and not stale yet.

Rules 4 and 9 guard the bulk selection (``archive --status``): an experiment NAMED explicitly
(``archive NAME``, trainmon's ``a``; :attr:`Options.named`) is archived whenever it is not live, so
for it they give the class the experiment settles into instead (its verdict, else ``stale``), with
what the guard would have said in the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trainkit.formatting import fmt_sig, format_age
from trainkit.runfolder import CRASHED, FAILED, LIVE

ACTIVE, SUCCESS, FAILED_CLASS, EVALUATED, STALE, ARCHIVED, PROMOTED = (
    "active", "success", "failed", "evaluated", "stale", "archived", "promoted")
CLASSES = (ACTIVE, SUCCESS, FAILED_CLASS, EVALUATED, STALE, ARCHIVED, PROMOTED)
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
    named: bool = False
    """The experiment was named explicitly (``archive NAME``, trainmon's ``a``): only a live run
    (rule 1) is ``active``; rules 4 and 9 give the class it settles into (its verdict, else
    ``stale``) with what they would have said in the reason."""


DEFAULTS = Options()


@dataclass(frozen=True)
class Verdict:
    """A line of ``notes.md`` starting with ✓ or ✗ (after an optional list bullet)."""

    line: int  # 1-based
    success: bool
    text: str


# The verdict of one report (see trainkit.lifecycle.verdicts.judge).
PASSED, GATES_FAILED, NO_GATES, INCOMPLETE, STALE_REPORT = "passed", "failed", "no gates", "incomplete", "stale"
DEFAULT_REPORT = "default"  # reports/default.json: the task's own held-out questions (what `trainkit run` writes)


@dataclass(frozen=True)
class ReportFact:
    """One ``reports/<name>.json``, judged. ``gates_passed``: what its gates say now (None: no gate);
    ``verdict``: what counts (:data:`PASSED`, :data:`GATES_FAILED`, :data:`NO_GATES`,
    :data:`INCOMPLETE` or :data:`STALE_REPORT`; None: derived from ``gates_passed`` and ``completed``)."""

    name: str  # reports/<name>.json
    gates_passed: bool | None
    completed: bool | None = True
    metric: str | None = None
    value: float | None = None
    written_at: float | None = None  # the report's written_at (else the file's mtime)
    verdict: str | None = None
    detail: str = ""  # why: the gate reasons, the stale model, "judged by the current gates ..."
    ok: int | None = None
    planned: int | None = None

    @property
    def judged(self) -> str:
        if self.verdict is not None:
            return self.verdict
        if self.completed is False:
            return INCOMPLETE
        return {True: PASSED, False: GATES_FAILED}.get(self.gates_passed, NO_GATES)


def pick_report(reports) -> ReportFact | None:
    """THE RUN'S REPORT, the one rule every view uses (list, compare, promote, serve, trainmon):
    ``reports/default.json`` when there is one, else the most recently written (``written_at``; the
    name breaks a tie). ``promote --report NAME`` picks another explicitly."""
    reports = list(reports)
    for r in reports:
        if r.name == DEFAULT_REPORT:
            return r
    if not reports:
        return None
    return max(reports, key=lambda r: (r.written_at if isinstance(r.written_at, (int, float)) else float("-inf"),
                                       r.name))


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


def report_text(r: ReportFact) -> str:
    """``report reports/NAME.json: gates passed (nrmse 0.05)``, with the reason where it matters."""
    value = f" ({r.metric} {fmt_sig(r.value)})" if r.metric and isinstance(r.value, (int, float)) else ""
    words = {PASSED: "gates passed", GATES_FAILED: "gates failed", NO_GATES: "evaluated, no gates",
             INCOMPLETE: "evaluation incomplete", STALE_REPORT: "stale"}[r.judged]
    return f"report reports/{r.name}.json: {words}{value}" + (f"; {r.detail}" if r.detail else "")


def verdict(facts: Facts, now: float, options: Options = DEFAULTS) -> Classification | None:
    """Rules 5-8: success, failed, evaluated or stale, or None when there is no verdict (yet)."""
    if facts.notes is not None:
        status = SUCCESS if facts.notes.success else FAILED_CLASS
        return Classification(status, f"notes.md line {facts.notes.line}: {facts.notes.text}")
    r = pick_report(facts.reports)
    if r is not None and r.judged != INCOMPLETE:
        status = {PASSED: SUCCESS, GATES_FAILED: FAILED_CLASS}.get(r.judged, EVALUATED)
        return Classification(status, report_text(r))
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
        shown = f" ({p.get('metric')} {fmt_sig(value)})" if isinstance(value, (int, float)) else ""
        return Classification(PROMOTED, f"promoted to {p.get('production_config') or p.get('target')}{shown}")
    age = None if facts.last_change is None else now - facts.last_change
    if age is not None and age < options.active_days * DAY_S:
        recent = f"changed {format_age(age)} ago ({facts.last_changed})"
        later = verdict(facts, now, options)
        if options.named:
            return _settled(later, recent)
        if later is not None and later.status != STALE:
            recent += f"; then {later.status}: {later.reason}"
        return Classification(ACTIVE, recent)
    later = verdict(facts, now, options)
    if later is not None:
        return later
    guard = f"last change {format_age(age)} ago (stale after {options.stale_days:g} d)"
    if options.named:
        return _settled(None, guard)
    return Classification(ACTIVE, f"no verdict yet; {guard}")


def _settled(later: Classification | None, guard: str) -> Classification:
    """An experiment named explicitly and not live: the class it settles into (its verdict, else
    stale: no verdict), and what the guard of the bulk selection would have said."""
    if later is None or later.status == STALE:
        return Classification(STALE, f"no verdict yet; {guard}; named explicitly and not live")
    return Classification(later.status, f"{later.reason}; {guard}; named explicitly and not live")
