"""The experiment lifecycle: new, list (classified), compare, archive, restore, promote, leaderboard.

Functions return result objects (what was done, or why not); nothing here prints or prompts: the
CLI (``trainkit experiments``) and trainmon format them. Torch is never imported.

Layout: ROOT (default ``./experiments``) holds one folder per experiment; beside it the archive
``<ROOT>-archive/``, production configs ``configs/`` and ``reports/leaderboard.csv``.

* :func:`classify` (pure, over :class:`Facts`) and :func:`inspect` (reads a folder) -> ``active``,
  ``success``, ``failed``, ``evaluated``, ``stale``, ``archived``, ``promoted`` with a reason;
* :func:`pick_report` (the run's report: ``reports/default.json``, else the latest written) and
  :func:`read_run_reports` (every report judged: stale by the run's model, by the current gates);
* :func:`new_experiment`, :func:`list_experiments`, :func:`compare`;
* :func:`plan_archive` / :func:`archive`, :func:`plan_restore` / :func:`restore` (plans are read
  only; execution moves under ROOT's lock, reports progress through a callback);
* :func:`check_promotion` / :func:`promote` (with :class:`PromoteRequest`), :func:`leaderboard`.
"""

from __future__ import annotations

import importlib

# name -> the module defining it; loaded on first use, so that `trainkit experiments list` (and
# trainmon's list) do not pay for the move and promotion code.
_WHERE = {
    **dict.fromkeys(("Candidate", "MovePlan", "MoveResult", "Outcome", "archive", "plan_archive", "plan_restore",
                     "restore"), "archiving"),
    **dict.fromkeys(("ACTIVE", "ARCHIVED", "CLASSES", "EVALUATED", "FAILED_CLASS", "PROMOTED", "STALE", "SUCCESS",
                     "Classification", "Facts", "Options", "ReportFact", "Verdict", "classify", "notes_verdict",
                     "pick_report"), "classification"),
    **dict.fromkeys(("RunReport", "read_run_reports", "the_report"), "verdicts"),
    **dict.fromkeys(("Compared", "Comparison", "NewExperiment", "compare", "compare_folders", "list_experiments",
                     "new_experiment"),
                    "experiments"),
    **dict.fromkeys(("Experiment", "inspect"), "facts"),
    **dict.fromkeys(("Layout", "experiment_name"), "layout"),
    **dict.fromkeys(("MoveError", "MoveProgress"), "moves"),
    **dict.fromkeys(("Check", "LeaderRow", "Leaderboard", "PromoteRequest", "PromoteResult", "PromotionPlan",
                     "check_promotion", "leaderboard", "promote"), "promotion"),
}
_ALIASES = {"FAILED": ("classification", "FAILED_CLASS")}  # the class "failed" (trainkit.status has the state)

__all__ = [
    "ACTIVE", "ARCHIVED", "CLASSES", "EVALUATED", "FAILED", "FAILED_CLASS", "PROMOTED", "STALE", "SUCCESS",
    "Candidate", "Check", "Classification", "Compared", "Comparison", "Experiment", "Facts", "Layout", "LeaderRow",
    "Leaderboard", "MoveError", "MovePlan", "MoveProgress", "MoveResult", "NewExperiment", "Options", "Outcome",
    "PromoteRequest", "PromoteResult", "PromotionPlan", "ReportFact", "RunReport", "Verdict",
    "archive", "check_promotion", "classify", "compare", "compare_folders", "experiment_name", "inspect", "leaderboard",
    "list_experiments", "new_experiment", "notes_verdict", "pick_report", "plan_archive", "plan_restore", "promote",
    "read_run_reports", "restore", "the_report",
]


def __getattr__(name: str):
    module, attr = _ALIASES.get(name) or (_WHERE.get(name), name)
    if module is None:
        raise AttributeError(f"module 'trainkit.lifecycle' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"trainkit.lifecycle.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
