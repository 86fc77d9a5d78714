"""The learning rate as a pure function of the step, and how it continues when a resume changes it.

A run's schedule is ``get_lr(step, ...)``: linear warmup to ``lr`` over ``warmup_steps``, then
``constant``, ``cosine`` or ``linear`` decay to ``min_lr`` at the last step. Its last step follows
from the config (epochs x steps per epoch), so a resume that changes ``epochs``, ``batch_size`` or
a schedule setting would change the whole curve, and the learning rate would jump (a cosine run of
3 epochs resumed with ``--epochs 5`` went from 1.6e-5 back to 1.1e-3). Instead a resume that changes
any input of the schedule re-anchors it (:func:`anchor_on_resume`): from the resume step on, the
learning rate starts at the value of the last step taken and

- ``cosine`` / ``linear``: goes on along the same curve from that point, stretched (or shrunk) so
  that it reaches ``min_lr`` at the new last step; an unfinished warmup first continues linearly
  from that value to ``lr``;
- ``constant``: is ``lr`` (a changed ``lr`` is what was asked for and applies; nothing else moves it).

A resume that changes nothing keeps the same function: the resumed run is bit-identical.
"""

from __future__ import annotations

import math

from trainkit.config import TrainConfig


def _coeff_at(name: str, frac: float) -> float:
    """The decay's share of ``lr - min_lr`` at ``frac`` (0..1) of the way to the last step."""
    frac = min(1.0, max(0.0, frac))
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    return 1.0 - frac  # linear


def _frac_of(name: str, coeff: float) -> float:
    """The inverse of :func:`_coeff_at`: where on the curve the share is ``coeff``."""
    coeff = min(1.0, max(0.0, coeff))
    if name == "cosine":
        return math.acos(2.0 * coeff - 1.0) / math.pi
    return 1.0 - coeff


def get_lr(step: int, cfg: TrainConfig, total_steps: int, anchor: dict | None = None) -> float:
    """Learning rate at the global ``step`` (0-based) of a run whose last step is ``total_steps``;
    ``anchor`` (``{"step", "lr", "end"}``, see :func:`anchor_on_resume`) continues a re-anchored one."""
    sched = cfg.lr_schedule
    warmup, peak, floor = sched.warmup_steps, cfg.lr, sched.min_lr
    if anchor is None:
        if step < warmup:
            return peak * (step + 1) / warmup
        if sched.name == "constant":
            return peak
        span = max(1, total_steps - warmup)
        return floor + _coeff_at(sched.name, (step - warmup) / span) * (peak - floor)
    a_step, a_lr, end = int(anchor["step"]), float(anchor["lr"]), int(anchor.get("end", total_steps))
    if step < warmup:  # the warmup goes on from the anchor's value to the peak
        if step <= a_step:
            return a_lr
        return a_lr + (peak - a_lr) * (step - a_step) / max(1, warmup - 1 - a_step)
    if sched.name == "constant":
        return peak
    if a_step >= warmup:
        start, coeff0 = a_step, (a_lr - floor) / (peak - floor) if peak != floor else 1.0
    else:
        start, coeff0 = warmup, 1.0
    frac0 = _frac_of(sched.name, coeff0)
    frac = frac0 + (1.0 - frac0) * (step - start) / max(1, end - start)
    return floor + _coeff_at(sched.name, frac) * (peak - floor)


def schedule_inputs(cfg: TrainConfig) -> dict:
    """What the schedule is a function of, besides the step and the last step."""
    s = cfg.lr_schedule
    return {"name": s.name, "warmup_steps": s.warmup_steps, "min_lr": s.min_lr, "lr": cfg.lr}


def remaining_steps(n_train: int, batch_size: int, epoch: int, samples_in_epoch: int, epochs: int) -> int:
    """Optimizer steps left from a position (``epoch``, ``samples_in_epoch``) to the end of ``epochs``."""
    if epoch >= epochs:
        return 0
    per_epoch = math.ceil(n_train / batch_size)
    this_epoch = math.ceil(max(0, n_train - samples_in_epoch) / batch_size)
    return this_epoch + (epochs - epoch - 1) * per_epoch


def anchor_on_resume(*, step: int, old_cfg: TrainConfig, old_end: int, old_anchor: dict | None,
                     new_cfg: TrainConfig, new_end: int) -> dict | None:
    """The anchor of the resumed session: the old one when nothing the schedule depends on changed
    (same inputs, same last step), else a new one at ``step`` starting from the learning rate the
    old schedule gives there. ``old_end`` / ``new_end``: the last step before and after."""
    if schedule_inputs(old_cfg) == schedule_inputs(new_cfg) and old_end == new_end:
        return old_anchor
    lr_now = get_lr(max(0, step - 1), old_cfg, old_end, old_anchor)  # the rate of the last step taken
    return {"step": step, "lr": lr_now, "end": new_end}
