"""What an action would do to each target, and doing it: Textual-free plans over trainkit's
lifecycle (archive, restore, promote), control requests (stop, pause, resume) and the launcher
(relaunch). A plan names every target with what will happen to it, or why nothing will."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainkit import lifecycle, run_control
from trainkit.errors import UserError
from trainkit.formatting import fmt_against, fmt_num, fmt_sig
from trainkit.runfolder import CRASHED, FAILED
from tui.model.views import RunView

Report = Callable[[str], None]


@dataclass
class TargetLine:
    name: str
    what: str
    ok: bool


@dataclass
class ActionPlan:
    """``lines``: one per target (and details); ``execute(report)`` returns the outcome lines."""

    verb: str
    title: str
    lines: list[TargetLine] = field(default_factory=list)
    execute: Callable[[Report], list[str]] | None = None
    details: list[str] = field(default_factory=list)

    @property
    def doable(self) -> int:
        return sum(1 for t in self.lines if t.ok)



def progress_line(p) -> str:
    """One line of a long move's progress (archive, restore)."""
    return f"{p.name}: {p.phase} {p.files_done}/{p.files_total}"

def _names(views: list[RunView]) -> list[str]:
    return [v.name for v in views]


def plan_archive(root: str, views: list[RunView]) -> ActionPlan:
    plan = ActionPlan("archive", f"Archive {len(views)} run{'s' if len(views) != 1 else ''}")
    candidates = []
    for v in views:
        if v.archived:
            plan.lines.append(TargetLine(v.name, "already archived", False))
        elif v.live:
            plan.lines.append(TargetLine(v.name, f"{v.state}: a live run is never archived (stop it first)", False))
        else:
            candidates.append(v.name)
    if not candidates:
        return plan
    try:
        mp = lifecycle.plan_archive(root, candidates)
    except UserError as e:
        plan.lines.extend(TargetLine(n, f"refused: {e}", False) for n in candidates)
        return plan
    target = mp.layout.show(mp.layout.archive)
    for c in mp.selected:
        plan.lines.append(TargetLine(c.name, f"moves to {target}/ ({c.files} files, {_size(c.bytes)}; {c.status})",
                                     True))
    for c in mp.skipped:
        plan.lines.append(TargetLine(c.name, f"not archived: {c.why_not} ({c.status}: {c.reason})", False))
    if mp.selected:
        def run(report: Report) -> list[str]:
            res = lifecycle.archive(mp, progress=lambda p: report(progress_line(p)))
            return [f"archived {o.name}" for o in res.moved] + \
                [f"{o.name} not archived: {o.detail}" for o in res.not_moved]
        plan.execute = run
    return plan


def plan_restore(root: str, views: list[RunView]) -> ActionPlan:
    plan = ActionPlan("restore", f"Restore {len(views)} run{'s' if len(views) != 1 else ''}")
    names = []
    for v in views:
        if not v.archived:
            plan.lines.append(TargetLine(v.name, "not archived (press A to show archived runs)", False))
        else:
            names.append(v.name)
    if not names:
        return plan
    try:
        mp = lifecycle.plan_restore(root, names)
    except UserError as e:
        plan.lines.extend(TargetLine(n, f"refused: {e}", False) for n in names)
        return plan
    for c in mp.selected:
        where = mp.layout.show(mp.layout.root)
        plan.lines.append(TargetLine(c.name, f"moves back to {where}/ ({c.files} files)", True))
    for c in mp.skipped:
        plan.lines.append(TargetLine(c.name, f"not restored: {c.why_not}", False))
    if mp.selected:
        def run(report: Report) -> list[str]:
            res = lifecycle.restore(mp, progress=lambda p: report(progress_line(p)))
            return [f"restored {o.name}" for o in res.moved] + \
                [f"{o.name} not restored: {o.detail}" for o in res.not_moved]
        plan.execute = run
    return plan


def plan_promote(root: str, views: list[RunView]) -> ActionPlan:
    plan = ActionPlan("promote", f"Promote {len(views)} run{'s' if len(views) != 1 else ''}")
    ready = []
    for v in views:
        checked = _promotion_checks(root, v)
        if isinstance(checked, str):
            plan.lines.append(TargetLine(v.name, f"refused: {checked}", False))
            continue
        passing = [(req, c) for req, c in checked if c.ok]
        req, check = passing[0] if passing else checked[0]
        others = [c.report.stem for _, c in checked if c is not check]
        holder = check.holder.experiment if check.holder and check.holder.experiment else None
        limit = req.threshold if isinstance(req.threshold, (int, float)) and not isinstance(req.threshold, bool) \
            else None
        value = fmt_sig(check.value, 6) if limit is None else fmt_against(check.value, limit, 6)
        held = f"{holder} ({fmt_against(check.holder.value, check.value, 6)})" \
            if holder and check.holder.value is not None else \
            holder or ("none" if check.holder is None else check.holder.describe())
        threshold = req.threshold if req.threshold is not None else "none set"
        what = (f"{check.metric} {value} ({check.mode}) from report {check.report.stem}"
                + (f" (other reports: {', '.join(others)})" if others else "")
                + f"; threshold: {threshold}; current holder: {held}; -> {check.layout.show(check.target)}")
        if check.ok:
            ready.append((req, check))
            plan.lines.append(TargetLine(v.name, what, True))
        else:
            plan.lines.append(TargetLine(v.name, f"refused: {check.refusal}. {what}", False))
        plan.details.extend(f"  {v.name}: {'✓' if c.passed else '✗'} {c.name}: {c.detail}" for c in check.checks)
    if ready:
        def run(report: Report) -> list[str]:
            out = []
            for req, check in ready:
                res = lifecycle.promote(req, expect=check)
                out.append(f"promoted {req.name} -> {res.plan.layout.show(res.plan.target)}" if res.promoted
                           else f"{req.name} not promoted: {res.reason}")
            return out
        plan.execute = run
    return plan


def _promotion_checks(root: str, v: RunView):
    """The promotion checks of the run's report (``trainkit.lifecycle.pick_report``: reports/default.json,
    else the one written last; the report `trainkit experiments promote` checks), or why none."""
    req = lifecycle.PromoteRequest(v.name, root=root)
    try:
        return [(req, lifecycle.check_promotion(req))]
    except UserError as e:
        return str(e)


def plan_control(views: list[RunView], what: str) -> ActionPlan:
    """``stop`` (live runs), ``pause`` (running runs) or ``resume`` (paused runs): the rule and the
    request are trainkit's (:mod:`trainkit.run_control`, as ``trainkit stop|pause|resume``)."""
    plan = ActionPlan(what, f"{what.capitalize()} {len(views)} run{'s' if len(views) != 1 else ''}")
    ok = []
    for v in views:
        why = "archived: not running" if v.archived else run_control.refusal(what, v.state)
        if why is None:
            ok.append(v)
            plan.lines.append(TargetLine(v.name, f"writes a {what} request; the trainer acts on it between steps",
                                         True))
        else:
            plan.lines.append(TargetLine(v.name, why, False))
    if ok:
        def run(report: Report) -> list[str]:
            return [run_control.send(Path(v.path), what).line() for v in ok]  # the state read again now
        plan.execute = run
    return plan


def plan_relaunch(root: str, views: list[RunView]) -> ActionPlan:
    from trainkit import launcher

    plan = ActionPlan("relaunch", f"Relaunch {len(views)} run{'s' if len(views) != 1 else ''}")
    names = {v.name for v in views if v.state in (FAILED, CRASHED) and not v.archived}
    actions = {a.name: a for a in launcher.plan(Path(root)) if a.name in names} if names else {}
    todo = []
    for v in views:
        a = actions.get(v.name)
        if v.name not in names:
            plan.lines.append(TargetLine(v.name, f"{v.state}: only failed or crashed runs are relaunched", False))
        elif a is None:
            plan.lines.append(TargetLine(v.name, "nothing to do now (it changed state)", False))
        elif a.action != "relaunch":
            plan.lines.append(TargetLine(v.name, f"not relaunched: {a.reason}", False))
        else:
            todo.append(a)
            plan.lines.append(TargetLine(v.name, f"resumes in the background ({a.reason})", True))
    if todo:
        def run(report: Report) -> list[str]:
            msgs: list[str] = []
            lx = launcher.Launcher(Path(root), max_parallel=10 ** 6, report=msgs.append)
            lx.run(todo, wait=False)
            return msgs or ["nothing was started"]
        plan.execute = run
    return plan


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{fmt_num(n, '.1f')} {unit}"
        n /= 1024
    return f"{n} B"


def root_of(path: str) -> str:
    return os.path.dirname(path)
