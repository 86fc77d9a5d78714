"""Runs of different lengths side by side by the fraction of their training (pure, but for reading
the plan from the run folder): a step's place is ``(step + 1) / total steps``, an epoch's
``(epoch + 1) / total epochs``, so the last step of a 100-step run and of a 400-step run are both
at 1.0. The total is the plan (``total_epochs × steps_per_epoch`` in ``training_status.json``,
a foreign run's own target in steps), else what the run did (its last step, its epochs)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from trainkit.runfolder import STATUS_FILE
from trainkit.runfolder.readers import STATUS, load
from tui.model.curves import epoch_positions


@dataclass(frozen=True)
class Plan:
    """How long a run was planned to train (None: not recorded)."""

    epochs: int | None = None
    steps: int | None = None


def read_plan(folder: str, total_epochs: int | None = None, total_steps: int | None = None) -> Plan:
    """The run's plan from its ``training_status.json`` (``total_epochs × steps_per_epoch``); the
    run view's ``total_epochs`` / ``total_steps`` (a foreign run's) where the file has none."""
    status = load(os.path.join(folder, STATUS_FILE), STATUS, []) or {}
    epochs = status.get("total_epochs") or total_epochs or None
    spe = status.get("steps_per_epoch")
    steps = epochs * spe if epochs and spe else total_steps or None
    return Plan(epochs, steps)


def step_total(plan: Plan, last_step: float | None) -> float | None:
    """The steps that make the whole of the run's training: the plan, or (a run without one, or
    one that went past it) its last step + 1."""
    done = last_step + 1 if last_step is not None else None
    if plan.steps and (done is None or done <= plan.steps):
        return float(plan.steps)
    return done


def epoch_total(plan: Plan, last_epoch: int | None) -> float | None:
    """The epochs that make the whole of the run's training: the plan, else its last epoch + 1."""
    done = last_epoch + 1 if last_epoch is not None else None
    if plan.epochs and (done is None or done <= plan.epochs):
        return float(plan.epochs)
    return float(done) if done is not None else None


def fraction_of_epoch(epoch: int, plan: Plan, last_epoch: int | None) -> float | None:
    """An epoch record's place: the fraction of training done at its end."""
    total = epoch_total(plan, last_epoch)
    return (epoch + 1) / total if total else None


def positions(points: list[tuple[float, float, float, float]], mode: str, t0: float | None, plan: Plan
              ) -> list[float]:
    """Each (step, epoch, t, value) point's x on an axis: ``step``, ``time`` (seconds since
    ``t0``; NaN without a time), ``epoch`` (fractional) or ``fraction`` (of the run's training)."""
    if mode == "fraction":
        total = step_total(plan, points[-1][0] if points else None)
        return [(p[0] + 1) / total for p in points] if total else []
    if mode == "epoch":
        return epoch_positions(points)
    if mode == "time":
        zero = t0 if t0 is not None else 0.0
        return [p[2] - zero for p in points]
    return [p[0] for p in points]
