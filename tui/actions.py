"""What an action would do to each target, and doing it: Textual-free plans over trainkit's
lifecycle (archive, restore, promote), control requests (stop, pause, resume) and the launcher
(relaunch). A plan names every target with what will happen to it, or why nothing will. Runs under
several ROOTs: :func:`per_root` plans each ROOT's runs with that ROOT and joins the plans."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainkit import lifecycle, run_control
from trainkit.errors import UserError
from trainkit.formatting import fmt_against, fmt_num, fmt_sig
from trainkit.runfolder import CRASHED, EVALUATING, FAILED, STOPPED, RunPaths
from trainkit.runfolder.files import ReadProblem, open_append
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


def folder_of(view: RunView) -> str:
    """The run's folder name: what trainkit's lifecycle and launcher call it under its ROOT (the
    name shown may carry its ROOT's name in front, see :meth:`tui.model.runs.RunsModel.name_of`)."""
    return os.path.basename(view.path)


def _shown(views: list[RunView]) -> Callable[[str], str]:
    """A folder name back to the name the workspace shows for it."""
    names = {folder_of(v): v.name for v in views}
    return lambda folder: names.get(folder, folder)


def _title(verb: str, n: int) -> str:
    return f"{verb.capitalize()} {n} run{'s' if n != 1 else ''}"


def per_root(plan_one: Callable[..., ActionPlan], views: list[RunView], home_of: Callable[[str], str | None],
             **options) -> ActionPlan:
    """``plan_one(root, views, **options)`` for each ROOT's runs (``home_of(path)``: the ROOT a run
    is under, or whose archive holds it), joined into one plan: every target's line, ROOT after
    ROOT in the order the runs came, and one execution that does each ROOT's part in turn."""
    groups: dict[str, list[RunView]] = {}
    for v in views:
        root = home_of(v.path)
        if root is None:  # (every run the model lists lies under a ROOT or its archive)
            raise UserError(f"{v.name}: under none of the ROOTs given")
        groups.setdefault(root, []).append(v)
    plans = {root: plan_one(root, vs, **options) for root, vs in groups.items()}
    if len(plans) == 1:
        return next(iter(plans.values()))
    verb = next(iter(plans.values())).verb
    plan = ActionPlan(verb, _title(verb, len(views)), [t for p in plans.values() for t in p.lines],
                      details=[d for p in plans.values() for d in p.details])
    todo = [(root, p.execute) for root, p in plans.items() if p.execute is not None]
    if todo:
        def run(report: Report) -> list[str]:
            out: list[str] = []
            for root, execute in todo:  # one ROOT's failure leaves the others' part done and said
                try:
                    out += execute(report)
                except Exception as e:
                    out.append(f"{verb} under {root} not done: {e}")
            return out
        plan.execute = run
    return plan


def plan_archive(root: str, views: list[RunView]) -> ActionPlan:
    """The runs named (marked, or under the cursor) are archived whenever they are not live, as
    ``trainkit experiments archive NAME`` does; each line shows the class and its reason."""
    plan = ActionPlan("archive", _title("archive", len(views)))
    shown = _shown(views)
    candidates = []
    for v in views:
        if v.archived:
            plan.lines.append(TargetLine(v.name, "already archived", False))
        elif v.live:
            plan.lines.append(TargetLine(v.name, f"{v.state}: a live run is never archived (stop it first)", False))
        elif v.state == EVALUATING:
            plan.lines.append(TargetLine(v.name, f"evaluating ({v.evaluation}): never archived while an evaluation "
                                                 "runs", False))
        else:
            candidates.append(folder_of(v))
    if not candidates:
        return plan
    try:
        mp = lifecycle.plan_archive(root, candidates, options=lifecycle.Options(named=True))
    except UserError as e:
        plan.lines.extend(TargetLine(shown(n), f"refused: {e}", False) for n in candidates)
        return plan
    target = mp.layout.show(mp.layout.archive)
    for c in mp.selected:
        plan.lines.append(TargetLine(shown(c.name), f"moves to {target}/ ({c.files} files, {_size(c.bytes)}); "
                                                    f"classified {c.status}: {c.reason}", True))
    for c in mp.skipped:
        plan.lines.append(TargetLine(shown(c.name), f"not archived: {c.why_not} ({c.status}: {c.reason})", False))
    if mp.selected:
        def run(report: Report) -> list[str]:
            res = lifecycle.archive(mp, progress=lambda p: report(progress_line(p)))
            return [f"archived {shown(o.name)}" for o in res.moved] + \
                [f"{shown(o.name)} not archived: {o.detail}" for o in res.not_moved]
        plan.execute = run
    return plan


def plan_restore(root: str, views: list[RunView]) -> ActionPlan:
    plan = ActionPlan("restore", _title("restore", len(views)))
    shown = _shown(views)
    names = []
    for v in views:
        if not v.archived:
            plan.lines.append(TargetLine(v.name, "not archived (press A to show archived runs)", False))
        else:
            names.append(folder_of(v))
    if not names:
        return plan
    try:
        mp = lifecycle.plan_restore(root, names)
    except UserError as e:
        plan.lines.extend(TargetLine(shown(n), f"refused: {e}", False) for n in names)
        return plan
    for c in mp.selected:
        where = mp.layout.show(mp.layout.root)
        plan.lines.append(TargetLine(shown(c.name), f"moves back to {where}/ ({c.files} files)", True))
    for c in mp.skipped:
        plan.lines.append(TargetLine(shown(c.name), f"not restored: {c.why_not}", False))
    if mp.selected:
        def run(report: Report) -> list[str]:
            res = lifecycle.restore(mp, progress=lambda p: report(progress_line(p)))
            return [f"restored {shown(o.name)}" for o in res.moved] + \
                [f"{shown(o.name)} not restored: {o.detail}" for o in res.not_moved]
        plan.execute = run
    return plan


PROMOTE_OPTIONS = ("report", "metric", "mode", "threshold", "min_improvement", "config_name", "force",
                   "update_leaderboard")
# the CLI's words in a check's text, said as trainmon's promote form says them
FORM_WORDS = (("pass --force to replace it", "choose 'force' in the promote form to replace it"),
              ("pass --metric", "set the metric in the promote form"),
              ("an explicit --threshold", "a threshold in the promote form"),
              ("--threshold", "the threshold"), ("--min-improvement", "the minimum improvement"),
              ("pass --mode", "set the mode in the promote form to"), ("--force", "force"))


def form_words(text: str) -> str:
    """A check's text with the CLI's flags said as the form's fields (never "pass --force" where
    no flag can be passed)."""
    for cli, form in FORM_WORDS:
        text = text.replace(cli, form)
    return text


def plan_promote(root: str, views: list[RunView], **options) -> ActionPlan:
    """Every check of ``trainkit experiments promote`` with the same options (``report``, ``metric``,
    ``mode``, ``threshold``, ``min_improvement``, ``config_name``, ``force`` with its backup,
    ``update_leaderboard``); a refusal names the failing check with its value."""
    plan = ActionPlan("promote", _title("promote", len(views)))
    shown = _shown(views)
    ready = []
    for v in views:
        req = lifecycle.PromoteRequest(folder_of(v), root=root, **{k: val for k, val in options.items()
                                                             if k in PROMOTE_OPTIONS and val is not None})
        try:
            check = lifecycle.check_promotion(req)
        except UserError as e:
            plan.lines.append(TargetLine(v.name, f"refused: {form_words(str(e))}", False))
            continue
        holder = check.holder.experiment if check.holder and check.holder.experiment else None
        limit = req.threshold
        value = fmt_sig(check.value, 6) if limit is None else fmt_against(check.value, limit, 6)
        held = f"{holder} ({fmt_against(check.holder.value, check.value, 6)})" \
            if holder and check.holder.value is not None else \
            holder or ("none" if check.holder is None else check.holder.describe())
        threshold = fmt_sig(req.threshold, 6) if req.threshold is not None else "none set"
        what = (f"{check.metric} {value} ({check.mode}) from report {check.report.stem}; threshold: {threshold}; "
                f"min improvement: {fmt_sig(req.min_improvement, 6)}; current holder: {held}; "
                f"-> {check.layout.show(check.target)}"
                + (f" (the old one backed up to {check.backup.name})" if check.backup else "")
                + ("; leaderboard row" if check.row else ""))
        if check.ok:
            ready.append((req, check))
            plan.lines.append(TargetLine(v.name, what, True))
        else:
            failed = "; ".join(f"{c.name}: {form_words(c.detail)}" for c in check.checks if not c.passed)
            plan.lines.append(TargetLine(v.name, f"refused: {failed}. {what}", False))
        plan.details.extend(f"  {v.name}: {'✓' if c.passed else '✗'} {c.name}: {form_words(c.detail)}"
                            for c in check.checks)
    if ready:
        def run(report: Report) -> list[str]:
            out = []
            for req, check in ready:
                res = lifecycle.promote(req, expect=check)
                out.append(f"promoted {shown(req.name)} -> {res.plan.layout.show(res.plan.target)}"
                           + (f" (backup {res.backup.name})" if res.backup else "") if res.promoted
                           else f"{shown(req.name)} not promoted: {form_words(res.reason or '')}")
            return out
        plan.execute = run
    return plan


def plan_control(views: list[RunView], what: str) -> ActionPlan:
    """``stop`` (live runs), ``pause`` (running runs) or ``resume`` (paused runs): the rule and the
    request are trainkit's (:mod:`trainkit.run_control`, as ``trainkit stop|pause|resume``)."""
    plan = ActionPlan(what, _title(what, len(views)))
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


RELAUNCHED = (FAILED, CRASHED, STOPPED)


def plan_relaunch(root: str, views: list[RunView]) -> ActionPlan:
    """Failed and crashed runs through the launcher (``trainkit launch``'s rules: its retry cap,
    ``launch.json``); a stopped run, which the launcher leaves alone (a stop is respected), is
    resumed as a person would resume it: the launcher's command for the run (``trainkit train
    RUN_DIR``), detached, its output appended where the launcher appends it (``console.log``)."""
    from trainkit import launcher

    plan = ActionPlan("relaunch", _title("relaunch", len(views)))
    names = {folder_of(v) for v in views if v.state in (FAILED, CRASHED) and not v.archived}
    actions = {a.name: a for a in launcher.plan(Path(root)) if a.name in names} if names else {}
    todo, restart = [], []
    for v in views:
        a = actions.get(folder_of(v))
        if v.archived or v.state not in RELAUNCHED:
            plan.lines.append(TargetLine(v.name, f"{'archived' if v.archived else v.state}: only failed, crashed or "
                                                 "stopped runs are relaunched", False))
        elif v.state == STOPPED:
            command = launcher.relaunch_command(Path(v.path), sys.executable)
            if isinstance(command, str):
                plan.lines.append(TargetLine(v.name, f"not restarted: {command}", False))
            else:
                restart.append((v, command))
                out = launcher.output_of(RunPaths(Path(v.path))).name
                plan.lines.append(TargetLine(v.name, f"resumes in the background from its checkpoint ({v.reason}); "
                                                     f"output appended to {out}", True))
        elif a is None:
            plan.lines.append(TargetLine(v.name, "nothing to do now (it changed state)", False))
        elif a.action != "relaunch":
            plan.lines.append(TargetLine(v.name, f"not relaunched: {a.reason}", False))
        else:
            todo.append(a)
            plan.lines.append(TargetLine(v.name, f"resumes in the background ({a.reason})", True))
    if todo or restart:
        def run(report: Report) -> list[str]:
            msgs: list[str] = []
            if todo:
                lx = launcher.Launcher(Path(root), max_parallel=10 ** 6, report=msgs.append)
                lx.run(todo, wait=False)
            msgs += [restart_stopped(v, argv, cwd) for v, (argv, cwd) in restart]
            return msgs or ["nothing was started"]
        plan.execute = run
    return plan


def restart_stopped(v: RunView, argv: list[str], cwd: str | None) -> str:
    """Start the run's own command detached (its own session, stdin closed, output appended where
    the launcher appends it: ``console.log``, which trainkit's trainer caps and recognises as its
    terminal); the trainer takes the run's lock itself, so a second restart fails harmlessly."""
    from trainkit import launcher

    out = launcher.output_of(RunPaths(Path(v.path)))
    try:  # a regular file only: a FIFO would block the opening forever
        log = open_append(out)
    except ReadProblem as e:
        return f"not restarted {v.name}: {out.name}: {e}"
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        os.close(log)
    return f"restarted {v.name} (pid {proc.pid})"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{fmt_num(n, '.1f')} {unit}"
        n /= 1024
    return f"{n} B"

