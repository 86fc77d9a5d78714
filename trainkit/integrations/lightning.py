"""Lightning: one callback, and the run writes trainkit's run folder.

    from trainkit.integrations.lightning import TrainkitCallback

    trainer = lightning.Trainer(max_epochs=10, callbacks=[TrainkitCallback()])
    trainer.fit(module, train_loader, val_loader)

The run shows up in ``trainkit status`` and trainmon, and answers their requests between two
optimizer steps: stop -> ``trainer.should_stop`` (after a checkpoint); checkpoint ->
``trainer.save_checkpoint`` (the trainer's own checkpointing, a ``.ckpt`` that ``fit(ckpt_path=...)``
resumes); pause -> a checkpoint, then the run waits (heartbeat on, state ``paused``) until ``resume``
or ``stop``. A training that ends before ``max_epochs``/``max_steps`` although trainkit did not ask
for it (Lightning's ``EarlyStopping``, or any callback setting ``trainer.should_stop``) is
``early_stopped``: decided at the end, so the order of the callbacks does not matter. An exception
reaches ``on_exception``: ``failed`` with the error (Ctrl-C: ``stopped``). Global rank 0 writes.
Checkpoints on request are written by rank 0 alone: use them in single-process runs.

Importing this module imports ``lightning``; :mod:`trainkit` never does unless you import it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from trainkit.integrations.runlog import (
    HEARTBEAT_S,
    SYSTEM_EVERY_S,
    RunLog,
    default_run_dir,
    generate_sampler,
    jsonable,
    monitor_config,
    prompts_of,
    resolve_profile,
)
from trainkit.monitor import grad_norm, layer_health, layer_snapshot
from trainkit.runfolder import EARLY_STOPPED, FINISHED, STOPPED

TRAINER = "lightning"
CKPT_PREFIX = "trainkit-step="


class TrainkitCallback(Callback):
    """Writes the run folder of a Lightning run (see the module docstring).

    ``run_dir``: the run folder (default ``experiments/<date>-<default_root_dir name>``);
    ``profile``, ``tokenizer``, ``sample_prompts``: the monitor's inference samples through the
    module's ``generate`` (or its ``model.generate``), or ``sampler(texts) -> outputs`` of your own;
    ``monitor``: a :class:`~trainkit.config.MonitorConfig` or a mapping of its fields;
    ``log_every_steps``: step records every N optimizer steps (default: the trainer's
    ``log_every_n_steps``); ``relaunch``: record this process's command line for ``trainkit launch``."""

    def __init__(self, run_dir: str | os.PathLike | None = None, *, profile: Any = None, tokenizer: Any = None,
                 sample_prompts: list | None = None, sampler: Callable[[list[str]], list[str]] | None = None,
                 monitor: Any = None, relaunch: bool = False, log_every_steps: int | None = None,
                 heartbeat_s: float = HEARTBEAT_S, system_every_s: float = SYSTEM_EVERY_S,
                 control_every_s: float = 0.5) -> None:
        self.run_dir = run_dir
        self.profile = resolve_profile(profile)
        self.tokenizer = tokenizer
        self.prompts = prompts_of(sample_prompts, self.profile)
        self.sampler = sampler
        self.mcfg = monitor_config(monitor)
        self.relaunch = relaunch
        self.log_every_steps = log_every_steps
        self.heartbeat_s = heartbeat_s
        self.system_every_s = system_every_s
        self.control_every_s = control_every_s
        self.runlog: RunLog | None = None
        self._trainer: Any = None
        self._module: Any = None
        self._every = 1
        self._last_step = -1
        self._grad_norm: float | None = None
        self._snapshot: dict | None = None
        self._pending_epoch: int | None = None
        self._batches_done = 0  # of the epoch in progress
        self.checkpoints: list[Path] = []  # written on request

    # ---------------------------------------------------------------- the start
    def on_train_start(self, trainer, pl_module):
        if self.runlog is not None and not self.runlog.ended:
            self.runlog.close()
        self._trainer, self._module = trainer, pl_module
        self._pending_epoch = None
        run_dir = self.run_dir if self.run_dir is not None else default_run_dir(trainer.default_root_dir)
        self.run_dir = run_dir
        sampler = self.sampler
        if sampler is None and self.tokenizer is not None and self.prompts:
            target = pl_module if hasattr(pl_module, "generate") else getattr(pl_module, "model", None)
            if target is not None and hasattr(target, "generate"):
                sampler = generate_sampler(lambda: target, self.tokenizer, self.profile, self.mcfg.max_new_tokens)
        self.runlog = RunLog(run_dir, trainer=TRAINER, writes=bool(trainer.is_global_zero), monitor=self.mcfg,
                          sampler=sampler, prompts=self.prompts, profile=self.profile, heartbeat_s=self.heartbeat_s,
                          system_every_s=self.system_every_s, control_every_s=self.control_every_s,
                          checkpoint=self._checkpoint, relaunch=self.relaunch)
        accumulate = max(1, int(trainer.accumulate_grad_batches or 1))
        batches = trainer.num_training_batches
        steps_per_epoch = math.ceil(batches / accumulate) if isinstance(batches, int) else 0
        total_steps = trainer.estimated_stepping_batches
        total_steps = int(total_steps) if isinstance(total_steps, (int, float)) and math.isfinite(total_steps) else 0
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        if max_epochs is None:
            max_epochs = math.ceil(total_steps / steps_per_epoch) if steps_per_epoch and total_steps else 1
        loader = getattr(trainer, "train_dataloader", None)
        batch_size = getattr(loader, "batch_size", None) or 1
        self._every = max(1, self.log_every_steps or trainer.log_every_n_steps or 1)
        self._last_step = trainer.global_step
        config = {"hparams": jsonable(dict(getattr(pl_module, "hparams", {}) or {})),
                  "module_class": type(pl_module).__name__,
                  "trainer_settings": {"max_epochs": trainer.max_epochs, "max_steps": trainer.max_steps,
                                       "accumulate_grad_batches": accumulate, "precision": str(trainer.precision),
                                       "gradient_clip_val": trainer.gradient_clip_val,
                                       "log_every_n_steps": trainer.log_every_n_steps,
                                       "default_root_dir": str(trainer.default_root_dir)},
                  "profile": getattr(self.profile, "name", None), "steps_per_epoch": steps_per_epoch,
                  "batch_size": batch_size}
        self.runlog.begin(config, total_epochs=max_epochs, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                       batch_size=batch_size * accumulate * trainer.world_size, global_step=trainer.global_step,
                       world_size=trainer.world_size, device=str(pl_module.device))

    # ---------------------------------------------------------------- per step
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._flush_epoch(trainer)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        step = trainer.global_step  # steps done before this one
        if self.runlog is None:
            return
        self._grad_norm = grad_norm(pl_module.parameters()) if step % self._every == 0 else None
        if self.runlog.layers_due(step):
            self._snapshot = layer_snapshot(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        log = self.runlog
        if log is None or trainer.global_step == self._last_step:  # accumulating: no optimizer step yet
            return
        self._last_step = g = trainer.global_step
        self._batches_done = batch_idx + 1
        epoch_float = trainer.current_epoch + (batch_idx + 1) / max(1, trainer.num_training_batches) \
            if isinstance(trainer.num_training_batches, int) else float(trainer.current_epoch)
        log.step_done(g, epoch_float)
        if self._snapshot is not None:
            log.write_layers(g - 1, epoch_float, layer_health(pl_module, self._snapshot))
            self._snapshot = None
        if (g - 1) % self._every == 0 or log.monitor.wants_record(g - 1):
            loss = _loss(outputs)
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
            if log.log_step(g, epoch_float, loss=loss, lr=lr, grad_norm=self._grad_norm) is not None:
                trainer.should_stop = True
                return
        if log.check_controls() is not None:
            self._checkpoint()
            trainer.should_stop = True

    def _checkpoint(self) -> None:
        """The trainer's own checkpoint of this step (``fit(ckpt_path=...)`` resumes it)."""
        trainer = self._trainer
        if trainer is None or not trainer.is_global_zero:
            return
        cb = trainer.checkpoint_callback
        folder = Path(getattr(cb, "dirpath", None) or trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{CKPT_PREFIX}{trainer.global_step}.ckpt"
        trainer.save_checkpoint(path)
        self.checkpoints.append(path)

    # ---------------------------------------------------------------- per epoch
    def on_validation_epoch_end(self, trainer, pl_module):
        if self.runlog is None or trainer.sanity_checking:
            return
        self.runlog.evaluated({k: float(v) for k, v in trainer.callback_metrics.items()
                            if hasattr(v, "numel") and v.numel() == 1})

    def on_train_epoch_end(self, trainer, pl_module):
        """Its record and progress wait for what decides after it (validation, early stopping),
        until the next step or the end. An epoch cut short (a stop) has no record."""
        batches = trainer.num_training_batches
        if self.runlog is not None and (not isinstance(batches, int) or self._batches_done >= batches):
            self._pending_epoch = trainer.current_epoch
        self._batches_done = 0

    def _flush_epoch(self, trainer, *, early_stopped: bool = False) -> None:
        if self._pending_epoch is None or self.runlog is None:
            return
        epoch, self._pending_epoch = self._pending_epoch, None
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        self.runlog.epoch_end(epoch, global_step=trainer.global_step, lr=lr, early_stopped=early_stopped)

    # ---------------------------------------------------------------- the end
    def on_train_end(self, trainer, pl_module):
        log = self.runlog
        if log is None or log.ended:
            return
        planned_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        planned_steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        ended_early = trainer.should_stop and (planned_epochs is None or trainer.current_epoch < planned_epochs) \
            and (planned_steps is None or trainer.global_step < planned_steps)
        if log.failure is not None:
            self._flush_epoch(trainer)
            log.fail(log.failure)
        elif log.stop_reason is not None:
            self._flush_epoch(trainer)
            log.end(STOPPED)
        elif ended_early:  # it stopped itself: early stopping
            at = self._pending_epoch if self._pending_epoch is not None else trainer.current_epoch
            self._flush_epoch(trainer, early_stopped=True)
            log.end(EARLY_STOPPED, early_stopped_at=at)
        else:
            self._flush_epoch(trainer)
            log.end(FINISHED)

    def on_exception(self, trainer, pl_module, exception):
        if self.runlog is None or self.runlog.ended:
            return
        if isinstance(exception, KeyboardInterrupt):
            self.runlog.end(STOPPED)
        else:
            self.runlog.fail(exception)


def _loss(outputs: Any) -> float | None:
    value = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
