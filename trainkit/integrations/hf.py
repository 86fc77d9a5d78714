"""Hugging Face ``Trainer``: one callback, and the run writes trainkit's run folder.

    from trainkit.integrations.hf import TrainkitCallback

    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[TrainkitCallback()])
    trainer.train()

The run shows up in ``trainkit status`` and trainmon, and answers their stop / pause / resume /
checkpoint requests between two optimizer steps:

* stop: ``control.should_training_stop`` (and ``should_save``, so that a resume continues there);
  the state is ``stopped``;
* checkpoint: ``control.should_save`` (the Trainer's own ``checkpoint-N`` folder, in the same step);
* pause: ``should_save`` for the step, then the run waits (heartbeat on, state ``paused``) until
  ``resume`` or ``stop``. The checkpoint of that step is written by the Trainer right after the
  wait (a callback cannot make it save earlier): a process killed while paused resumes from the
  checkpoint before it.

Early stopping: a training that ends before ``max_steps`` although trainkit did not ask for it
(``EarlyStoppingCallback``, or any callback that sets ``should_training_stop``) is
``early_stopped``: complete, 100 %, at the epoch in progress. Decided at the end, so the order of
the callbacks does not matter.

Failures: the Trainer calls no callback when it raises. ``TrainkitCallback.run(trainer, **kw)``
(or ``with callback.guard(): trainer.train()``) records ``failed`` with the error and re-raises.
Without it, the state stays ``running`` until the process exits, and the status scanner then calls
the run ``crashed`` (its pid is gone, or its heartbeat stops).

Only the main process (``state.is_world_process_zero``) writes. Importing this module imports
``transformers``; :mod:`trainkit` never does unless you import it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import Any

from transformers import TrainerCallback

from trainkit.integrations.runlog import (
    HEARTBEAT_S,
    SYSTEM_EVERY_S,
    RunLog,
    default_run_dir,
    epoch_of,
    generate_sampler,
    jsonable,
    monitor_config,
    prompts_of,
    resolve_profile,
)
from trainkit.monitor import layer_health, layer_snapshot
from trainkit.runfolder import EARLY_STOPPED, FINISHED, STOPPED

TRAINER = "hf"
_SPEED_KEYS = ("runtime", "samples_per_second", "steps_per_second")


def eval_scores(metrics: dict) -> dict:
    """``eval_loss`` -> ``val_loss``, ``eval_X`` -> ``val_X`` (the speed figures dropped)."""
    out = {}
    for k, v in metrics.items():
        name = k[5:] if k.startswith("eval_") else k
        if name in _SPEED_KEYS or name == "epoch":
            continue
        out[f"val_{name}"] = v
    return out


class TrainkitCallback(TrainerCallback):
    """Writes the run folder of a ``transformers.Trainer`` run (see the module docstring).

    ``run_dir``: the run folder (default ``experiments/<date>-<output_dir name>``); ``profile``: a
    data profile (instance or name) for the samples' logits processors and pattern check;
    ``tokenizer`` and ``sample_prompts`` (strings or ``{"prompt", "expected"}``): the monitor's
    inference samples through ``model.generate``; ``monitor``: a :class:`~trainkit.config.MonitorConfig`
    or a mapping of its fields; ``relaunch``: record this process's command line so that
    ``trainkit launch`` may start it again after a crash (the script must resume by itself, e.g.
    ``trainer.train(resume_from_checkpoint=True)`` when a checkpoint exists)."""

    def __init__(self, run_dir: str | os.PathLike | None = None, *, profile: Any = None, tokenizer: Any = None,
                 sample_prompts: list | None = None, monitor: Any = None, relaunch: bool = False,
                 heartbeat_s: float = HEARTBEAT_S, system_every_s: float = SYSTEM_EVERY_S,
                 control_every_s: float = 0.5) -> None:
        self.run_dir = run_dir
        self.profile = resolve_profile(profile)
        self.tokenizer = tokenizer
        self.prompts = prompts_of(sample_prompts, self.profile)
        self.mcfg = monitor_config(monitor)
        self.relaunch = relaunch
        self.heartbeat_s = heartbeat_s
        self.system_every_s = system_every_s
        self.control_every_s = control_every_s
        self.runlog: RunLog | None = None
        self._model: Any = None
        self._control: Any = None
        self._pending_epoch: int | None = None
        self._snapshot: dict | None = None
        self._lr: float | None = None

    # ---------------------------------------------------------------- failures
    @contextlib.contextmanager
    def guard(self) -> Iterator[TrainkitCallback]:
        """Around ``trainer.train()``: an exception marks the run ``failed`` (with the error)."""
        try:
            yield self
        except BaseException as e:
            if self.runlog is not None and not self.runlog.ended:
                if isinstance(e, KeyboardInterrupt):
                    self.runlog.end(STOPPED)
                else:
                    self.runlog.fail(e)
            raise

    def run(self, trainer: Any, **train_kwargs: Any) -> Any:
        """``trainer.train(**train_kwargs)`` under :meth:`guard`."""
        with self.guard():
            return trainer.train(**train_kwargs)

    # ---------------------------------------------------------------- the start
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.runlog is not None and not self.runlog.ended:  # an earlier train() that raised outside guard()
            self.runlog.close()
        self._model = model
        self._pending_epoch = None
        run_dir = self.run_dir if self.run_dir is not None else default_run_dir(args.output_dir)
        self.run_dir = run_dir
        sampler = None
        if self.tokenizer is not None and self.prompts and model is not None and hasattr(model, "generate"):
            sampler = generate_sampler(lambda: self._model, self.tokenizer, self.profile, self.mcfg.max_new_tokens)
        self.runlog = RunLog(run_dir, trainer=TRAINER, writes=bool(state.is_world_process_zero), monitor=self.mcfg,
                          sampler=sampler, prompts=self.prompts, profile=self.profile, heartbeat_s=self.heartbeat_s,
                          system_every_s=self.system_every_s, control_every_s=self.control_every_s,
                          checkpoint=self._save_soon, relaunch=self.relaunch)
        total_epochs = max(1, math.ceil(state.num_train_epochs or args.num_train_epochs or 1))
        steps_per_epoch = max(1, math.ceil(state.max_steps / total_epochs)) if state.max_steps else 0
        batch = (state.train_batch_size or args.per_device_train_batch_size) * args.gradient_accumulation_steps \
            * max(1, args.world_size)
        config = {"trainer_args": jsonable(args.to_dict()),
                  "model_config": _model_config(model),
                  "model_class": type(model).__name__ if model is not None else None,
                  "profile": getattr(self.profile, "name", None),
                  "max_steps": state.max_steps, "steps_per_epoch": steps_per_epoch, "batch_size": batch}
        device = str(next(model.parameters()).device) if model is not None else None
        self.runlog.begin(config, total_epochs=total_epochs, steps_per_epoch=steps_per_epoch,
                       total_steps=state.max_steps, batch_size=batch, global_step=state.global_step,
                       world_size=max(1, args.world_size), device=device)
        self.runlog.live.update(epoch_float=state.epoch)

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
        if log is None:
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
            control.should_save = args.save_strategy != "no"
        return control

    def _save_soon(self) -> None:
        """A checkpoint request (or a pause): the Trainer saves at the end of this step."""
        if self._control is not None:
            self._control.should_save = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.runlog is None or not logs or "loss" not in logs:
            return control
        self._lr = _num(logs.get("learning_rate"))
        extra = {k: v for k, v in logs.items() if k not in ("loss", "learning_rate", "grad_norm", "epoch")
                 and isinstance(v, (int, float)) and not isinstance(v, bool)}
        why = self.runlog.log_step(state.global_step, state.epoch, loss=_num(logs["loss"], keep_nan=True),
                                lr=self._lr, grad_norm=_num(logs.get("grad_norm"), keep_nan=True), extra=extra)
        if why is not None:
            control.should_training_stop = True
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.runlog is not None and metrics:
            self.runlog.evaluated(eval_scores(metrics))
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
        if self._pending_epoch is None or self.runlog is None:
            return
        epoch, self._pending_epoch = self._pending_epoch, None
        self.runlog.epoch_end(epoch, global_step=state.global_step, lr=self._lr, early_stopped=early_stopped)

    # ---------------------------------------------------------------- the end
    def on_train_end(self, args, state, control, **kwargs):
        log = self.runlog
        if log is None or log.ended:
            return control
        log.step_done(state.global_step, state.epoch)
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


def _num(v: Any, *, keep_nan: bool = False) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:
            v = float(v)  # a 0-d tensor
        except (TypeError, ValueError):
            return None
    v = float(v)
    return v if keep_nan or math.isfinite(v) else None


def _model_config(model: Any) -> dict | None:
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    try:
        return jsonable(cfg.to_dict())
    except Exception:
        return None
