"""Hugging Face ``Trainer``: one import and one argument, and the run writes trainkit's run folder.

    import trainkit.integrations.hf  # noqa: F401  (adds "trainkit" to the Trainer's reporters)

    args = TrainingArguments(..., report_to="trainkit")

or, with options, the callback itself: ``Trainer(..., callbacks=[TrainkitCallback(run_dir, ...)])``.

The run shows up in ``trainkit status`` and trainmon, and answers their stop / pause / resume /
checkpoint requests between two optimizer steps:

* stop: ``control.should_training_stop`` (and ``should_save``, so that a resume continues there);
  the state is ``stopped``;
* checkpoint: ``control.should_save`` (the Trainer's own ``checkpoint-N`` folder, in the same step);
* pause: ``should_save`` for the step, then the run waits (heartbeat on, state ``paused``) until
  ``resume`` or ``stop``. The checkpoint of that step is written by the Trainer right after the
  wait (a callback cannot make it save earlier): a process killed while paused resumes from the
  checkpoint before it.

What is recorded: a step record per logged step (``loss`` is the Trainer's logged loss, the mean
since the previous log; ``logged``: every other number of that log under its own name); every
evaluation at its step (``kind: eval``; ``eval_X`` -> ``val_X``), during training and after it
(``evaluate()``, ``predict()``: ``split`` says which); any other log (the final summary, your
``trainer.log({...})``) as a ``kind: log`` record at its step; an epoch record at each epoch's end
with the scores of the epoch's last evaluation; the best by ``metric_for_best_model`` (else
``val_loss``) with its step and the Trainer's best checkpoint.

Early stopping: a training that ends before ``max_steps`` although trainkit did not ask for it
(``EarlyStoppingCallback``, or any callback that sets ``should_training_stop``) is
``early_stopped``: complete, 100 %, at the epoch in progress. Decided at the end, so the order of
the callbacks does not matter.

Failures: an exception in ``trainer.train()`` marks the run ``failed`` with the error and releases
its lock (the callback wraps the ``train`` of the Trainer it is attached to when the Trainer is
built); a notebook cell run again is a new attempt on the same run. Only the main process
(``state.is_world_process_zero``) writes. Importing this module imports ``transformers``;
:mod:`trainkit` never does unless you import it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

from transformers import Trainer, TrainerCallback
from transformers.integrations import integration_utils

from trainkit.integrations.common import (
    HEARTBEAT_S,
    SYSTEM_EVERY_S,
    ForeignRun,
    default_run_dir,
    epoch_of,
    generate_sampler,
    jsonable,
    monitor_config,
    number,
    numbers,
    prompts_of,
    resolve_profile,
)
from trainkit.monitor import layer_health, layer_snapshot
from trainkit.runfolder import EARLY_STOPPED, FINISHED, STOPPED

TRAINER = "hf"
REPORTER = "trainkit"  # report_to="trainkit"
_SPEED_KEYS = ("runtime", "samples_per_second", "steps_per_second")
_STEP_KEYS = ("loss", "learning_rate", "grad_norm", "epoch")


def eval_scores(metrics: dict) -> tuple[str | None, dict]:
    """(split, scores) of an evaluation's metrics: the split is their prefix (``eval``, ``test``);
    ``eval_X`` -> ``val_X``, another prefix keeps its names; the speed figures are dropped."""
    split = next((k.split("_", 1)[0] for k in metrics if "_" in k), None)
    out = {}
    for k, v in numbers(metrics).items():
        head, _, name = k.partition("_")
        if name in _SPEED_KEYS or k == "epoch":
            continue
        out[f"val_{name}" if head == "eval" and name else k] = v
    return split, out


def best_rule(args: Any) -> tuple[str | None, str]:
    """(metric, mode) of the best, as the Trainer chooses its best model: ``metric_for_best_model``
    (``eval_`` added as the Trainer does, then named as trainkit names it) and
    ``greater_is_better``; (None, "min") when unset (the engine's ``val_loss`` then applies)."""
    name = getattr(args, "metric_for_best_model", None)
    if not name:
        return None, "min"
    name = name[5:] if name.startswith("eval_") else name
    return f"val_{name}", "max" if getattr(args, "greater_is_better", False) else "min"


class TrainkitCallback(TrainerCallback):
    """Writes the run folder of a ``transformers.Trainer`` run (see the module docstring).

    ``run_dir``: the run folder (default ``experiments/<date>-<run_name, else the output_dir's
    name>``; a resume continues the latest folder of that name); ``fresh``: a training from step 0
    in a folder that holds another run moves it aside (``superseded/``) instead of refusing;
    ``profile``: a data profile (instance or name) for the samples' logits processors and pattern
    check; ``tokenizer`` and ``sample_prompts`` (strings or ``{"prompt", "expected"}``): the
    monitor's inference samples through ``model.generate``; ``monitor``: a
    :class:`~trainkit.config.MonitorConfig` or a mapping of its fields; ``relaunch``: record this
    process's command line so that ``trainkit launch`` may start it again after a crash (the script
    must resume by itself, e.g. ``trainer.train(resume_from_checkpoint=True)`` when a checkpoint
    exists)."""

    def __init__(self, run_dir: str | os.PathLike | None = None, *, fresh: bool = False, profile: Any = None,
                 tokenizer: Any = None, sample_prompts: list | None = None, monitor: Any = None,
                 relaunch: bool = False, heartbeat_s: float = HEARTBEAT_S, system_every_s: float = SYSTEM_EVERY_S,
                 control_every_s: float = 0.5) -> None:
        self.run_dir = run_dir
        self._given_dir = run_dir is not None
        self.fresh = fresh
        self.profile = resolve_profile(profile)
        self.tokenizer = tokenizer
        self.prompts = prompts_of(sample_prompts, self.profile)
        self.mcfg = monitor_config(monitor)
        self.relaunch = relaunch
        self.heartbeat_s = heartbeat_s
        self.system_every_s = system_every_s
        self.control_every_s = control_every_s
        self.runlog: ForeignRun | None = None
        self._model: Any = None
        self._control: Any = None
        self._pending_epoch: int | None = None
        self._snapshot: dict | None = None
        self._lr: float | None = None
        self._early: list[tuple[str | None, dict, float | None]] = []  # evaluations before train()

    # ---------------------------------------------------------------- failures
    @contextlib.contextmanager
    def guard(self) -> Iterator[TrainkitCallback]:
        """Around ``trainer.train()``: an exception marks the run ``failed`` (with the error).
        (A Trainer built with this callback is guarded already.)"""
        try:
            yield self
        except BaseException as e:
            self._raised(e)
            raise

    def run(self, trainer: Any, **train_kwargs: Any) -> Any:
        """``trainer.train(**train_kwargs)`` under :meth:`guard`."""
        with self.guard():
            return trainer.train(**train_kwargs)

    def _raised(self, e: BaseException) -> None:
        log = self.runlog
        if log is not None and log.began and not log.ended:
            if isinstance(e, KeyboardInterrupt):
                log.end(STOPPED)
            else:
                log.fail(e)

    def on_init_end(self, args, state, control, **kwargs):
        """The Trainer this callback is attached to gets its ``train`` guarded: an exception in
        it is recorded (``failed``) and the run's lock released, then it propagates as before."""
        trainer = _building_trainer()
        if trainer is not None and not getattr(trainer.train, "_trainkit_guarded", False):
            plain = trainer.train
            callbacks = trainer.callback_handler.callbacks

            @functools.wraps(plain)
            def train(*a: Any, **kw: Any) -> Any:
                try:
                    return plain(*a, **kw)
                except BaseException as e:
                    for cb in callbacks:
                        if isinstance(cb, TrainkitCallback):
                            cb._raised(e)
                    raise

            train._trainkit_guarded = True  # type: ignore[attr-defined]
            trainer.train = train
        return control

    # ---------------------------------------------------------------- the start
    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        self._model = model
        self._pending_epoch = None
        resuming = state.global_step > 0
        if not self._given_dir:
            self.run_dir = default_run_dir(args.run_name or args.output_dir, resuming=resuming)
        sampler = None
        if self.tokenizer is not None and self.prompts and model is not None and hasattr(model, "generate"):
            sampler = generate_sampler(lambda: self._model, self.tokenizer, self.profile, self.mcfg.max_new_tokens)
        ga = max(1, int(args.gradient_accumulation_steps))
        batches = _length(train_dataloader)
        if batches:  # the Trainer's own count of optimizer steps per epoch
            steps_per_epoch = max(1, batches // ga + int(batches % ga > 0))
            total_epochs = max(1, math.ceil(state.num_train_epochs or args.num_train_epochs or 1))
        else:  # no length (a streaming IterableDataset): one pass of max_steps, as the Trainer's epoch says
            steps_per_epoch, total_epochs = max(1, int(state.max_steps or 1)), 1
        batch = (state.train_batch_size or args.per_device_train_batch_size) * ga * max(1, args.world_size)
        settings = {"trainer_args": jsonable(args.to_dict()), "model_config": _model_config(model),
                    "model_class": type(model).__name__ if model is not None else None,
                    "profile": getattr(self.profile, "name", None), "max_steps": state.max_steps,
                    "steps_per_epoch": steps_per_epoch, "batch_size": batch}
        self.runlog = ForeignRun(self.run_dir, trainer=TRAINER, owner=state, writes=bool(state.is_world_process_zero),
                                 monitor=self.mcfg, sampler=sampler, prompts=self.prompts, profile=self.profile,
                                 heartbeat_s=self.heartbeat_s, system_every_s=self.system_every_s,
                                 control_every_s=self.control_every_s, checkpoint=self._save_soon,
                                 relaunch=self.relaunch, fresh=self.fresh)
        device = str(next(model.parameters()).device) if model is not None else None
        self.runlog.begin(settings, total_epochs=total_epochs, steps_per_epoch=steps_per_epoch,
                          total_steps=state.max_steps, batch_size=batch, global_step=state.global_step,
                          epochs_done=int(math.floor((state.epoch or 0) + 1e-6)), world_size=max(1, args.world_size),
                          device=device, best=best_rule(args))
        if self.runlog.duplicate:
            self.runlog = None
            return control
        self.runlog.live.update(epoch_float=state.epoch)
        for split, scores, epoch_float in self._early:  # evaluate() before train()
            self.runlog.evaluated(state.global_step, epoch_float, scores, split=split)
        self._early = []
        return control

    # ---------------------------------------------------------------- per step
    def on_step_begin(self, args, state, control, **kwargs):
        self._flush_epoch(state)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.runlog is not None and self.runlog.layers_due(state.global_step):
            self._snapshot = layer_snapshot(model or self._model)

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self._snapshot is not None and self.runlog is not None:
            self.runlog.write_layers(state.global_step, state.epoch, layer_health(model or self._model, self._snapshot))
            self._snapshot = None

    def on_step_end(self, args, state, control, **kwargs):
        log = self.runlog
        if log is None or log.ended:
            return control
        log.step_done(state.global_step, state.epoch)
        if log.failure is not None:
            control.should_training_stop = True
            return control
        self._control = control
        why = log.check_controls()
        self._control = None
        if why is not None:
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no" and log.writer.gone is None
        return control

    def _save_soon(self) -> None:
        """A checkpoint request (or a pause): the Trainer saves at the end of this step."""
        if self._control is not None:
            self._control.should_save = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Every number the Trainer logs, at its step: a training log is the step record; an
        evaluation's log is recorded by :meth:`on_evaluate`; any other goes into a log record."""
        log = self.runlog
        if log is None or log.ended or not logs:
            return control
        if "loss" in logs:
            self._lr = _finite(logs.get("learning_rate"))
            why = log.log_step(state.global_step, state.epoch, loss=number(logs["loss"]), lr=self._lr,
                               grad_norm=number(logs.get("grad_norm")), logged=numbers(logs, skip=_STEP_KEYS))
            if why is not None:
                control.should_training_stop = True
            return control
        if any(k.endswith("_runtime") and not k.startswith("train_") for k in logs):
            return control  # an evaluation's log (evaluate(metric_key_prefix=...)): on_evaluate records it
        log.log_values(state.global_step, state.epoch, numbers(logs, skip=("epoch",)))
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self._evaluated(state, metrics)
        return control

    def on_predict(self, args, state, control, metrics=None, **kwargs):
        self._evaluated(state, metrics)
        return control

    def _evaluated(self, state, metrics: dict | None) -> None:
        if not metrics:
            return
        split, scores = eval_scores(metrics)
        if self.runlog is None:  # before train(): recorded when the run begins
            self._early.append((split, scores, state.epoch))
            return
        self.runlog.evaluated(state.global_step, state.epoch, scores, split=split,
                              during_training=not self.runlog.ended)

    def on_save(self, args, state, control, **kwargs):
        """A checkpoint was written after the step's evaluation: the epoch's record can go (a
        crash now must not lose it), and the best names the Trainer's best checkpoint."""
        self._flush_epoch(state)
        if self.runlog is not None and not self.runlog.ended and state.best_model_checkpoint:
            self.runlog.write_best(checkpoint=state.best_model_checkpoint)
        return control

    # ---------------------------------------------------------------- per epoch
    def on_epoch_end(self, args, state, control, **kwargs):
        """A whole epoch ended (the Trainer also calls this after a partial one, at a stop): its
        record and progress wait for the evaluation that follows, until the next step or the end."""
        if self.runlog is None or state.epoch is None:
            return control
        if abs(state.epoch - round(state.epoch)) < 1e-4 and round(state.epoch) >= 1:
            self._pending_epoch = int(round(state.epoch)) - 1
        return control

    def _flush_epoch(self, state, *, early_stopped: bool = False) -> None:
        if self._pending_epoch is None or self.runlog is None or self.runlog.ended:
            return
        epoch, self._pending_epoch = self._pending_epoch, None
        self.runlog.epoch_end(epoch, global_step=state.global_step, lr=self._lr, early_stopped=early_stopped)

    # ---------------------------------------------------------------- the end
    def on_train_end(self, args, state, control, **kwargs):
        log = self.runlog
        if log is None or log.ended:
            return control
        log.step_done(state.global_step, state.epoch)
        if state.best_model_checkpoint:
            log.best_checkpoint = state.best_model_checkpoint
        if log.failure is not None:
            self._flush_epoch(state)
            log.fail(log.failure)
        elif log.stop_reason is not None:
            self._flush_epoch(state)
            log.end(STOPPED)
        elif state.max_steps and state.global_step < state.max_steps:  # it stopped itself: early stopping
            at = epoch_of(state.epoch)
            self._flush_epoch(state, early_stopped=self._pending_epoch == at)
            log.end(EARLY_STOPPED, early_stopped_at=at)
        else:
            self._flush_epoch(state)
            log.end(FINISHED)
        return control


def _building_trainer() -> Any:
    """The ``Trainer`` whose ``__init__`` is calling ``on_init_end`` (found on the call stack)."""
    frame = sys._getframe(1)
    for _ in range(8):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, Trainer):
            return owner
        frame = frame.f_back
    return None


def _length(loader: Any) -> int | None:
    try:
        n = len(loader) if loader is not None else None
    except TypeError:  # an IterableDataset without __len__
        return None
    return n if isinstance(n, int) and n > 0 else None


def _finite(v: Any) -> float | None:
    x = number(v)
    return x if x is not None and math.isfinite(x) else None


def _model_config(model: Any) -> dict | None:
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    try:
        return jsonable(cfg.to_dict())
    except Exception:
        return None


integration_utils.INTEGRATION_TO_CALLBACK.setdefault(REPORTER, TrainkitCallback)
