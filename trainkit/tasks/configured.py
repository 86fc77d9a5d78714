"""The one way a run's task is built: task, data and model settings, data profile, from a config.

Training (a new run and a resume), evaluation of a run folder, the training monitor's sampler and
the Python API all call :func:`configured_task` (or :func:`task_from_resolved` for a run folder's
``resolved_config.json``), so what is trained is what is evaluated: the same task object with the
same profile, tokenizer and model shape. A setting that cannot be honoured now (a profile that
is no longer installed, a profile on a task that has no use for one) is refused with one line
naming it, never replaced by a silent default.
"""

from __future__ import annotations

import copy

from trainkit import config
from trainkit.errors import UserError
from trainkit.tasks import BUILTIN, Task, get_task
from trainkit.tasks.defaults import builtin_defaults


def configured_task(cfg: config.TrainConfig, *, source: str) -> Task:
    """The task of ``cfg``, its ``model``/``data`` sections checked against the task's schemas (in
    place) and its data profile set. Raises :class:`UserError` with one line."""
    task = get_task(cfg.task)
    config.resolve_sections(cfg, model_schema=task.model_config, data_schema=task.data_config, source=source)
    task.profile = None
    if cfg.profile is not None:
        if not getattr(task, "uses_profile", True):
            raise UserError(f"{source}: profile {cfg.profile!r}: task {cfg.task!r} has no use for a data profile "
                            "(remove the key, or set it to null)")
        from trainkit.profiles import get_profile

        try:
            task.profile = get_profile(cfg.profile)
        except UserError as e:
            raise UserError(f"{source}: profile {cfg.profile!r} cannot be used: {e}") from None
    return task


def task_from_resolved(resolved: dict, *, source: str) -> tuple[config.TrainConfig, Task]:
    """The typed config and the configured task of a run folder's ``resolved_config.json`` (the
    mapping, ``_meta`` included or not): what the run trained."""
    cfg = config.build(config.TrainConfig, config.without_meta(resolved), source)
    return cfg, configured_task(cfg, source=source)


def task_defaults(name: object) -> dict:
    """The task's own defaults (its ``defaults`` mapping): a built-in's from the torch-free table, any
    other task's by building it (the user asked to run it). ``{}`` when ``name`` is not a name."""
    if not isinstance(name, str) or name in BUILTIN:
        return builtin_defaults(name)
    found = getattr(get_task(name), "defaults", None) or {}
    if not isinstance(found, dict):
        raise UserError(f"task {name!r}: its defaults must be a mapping of config keys, not {type(found).__name__}")
    return copy.deepcopy(found)
