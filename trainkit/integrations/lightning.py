"""Lightning: a logger (or a callback), and the run writes trainkit's run folder.

    from trainkit.integrations.lightning import TrainkitLogger

    trainer = lightning.Trainer(max_epochs=10, logger=TrainkitLogger())   # or logger=[TrainkitLogger(), ...]
    trainer.fit(module, train_loader, val_loader)

``TrainkitLogger`` brings its :class:`TrainkitCallback` into the Trainer when the fit starts;
``callbacks=[TrainkitCallback()]`` does the same without a logger (use one or the other, or both:
the logger then uses the callback it finds).

The run shows up in ``trainkit status`` and trainmon, and answers their requests between two
optimizer steps: stop -> ``trainer.should_stop`` (after a checkpoint); checkpoint ->
``trainer.save_checkpoint`` (the trainer's own checkpointing, a ``.ckpt`` that ``fit(ckpt_path=...)``
resumes); pause -> a checkpoint, then the run waits (heartbeat on, state ``paused``) until ``resume``
or ``stop``.

What is recorded: a step record every ``log_every_n_steps`` optimizer steps, whose ``loss`` is the
step's loss as your ``training_step`` returned it (with ``accumulate_grad_batches=N``: the mean of
the N micro-batches' losses, not Lightning's loss / N) and whose ``logged`` holds every value your
module logged for that step (``self.log``), under its own names; every validation at its step
(``kind: eval``, mid-epoch ones with ``val_check_interval < 1`` included; ``validate()`` and
``test()`` after ``fit()`` too, ``split`` says which); an epoch record at each epoch's end with
trainkit's own ``train_loss`` (the mean of the epoch's recorded step losses), the scores of the
epoch's last validation, and ``logged``: your values for the epoch (``*_epoch``, ``on_epoch=True``);
the best by ``ModelCheckpoint(monitor=...)`` (else ``EarlyStopping``'s monitor, else ``val_loss``).

A training that ends before ``max_epochs``/``max_steps`` although trainkit did not ask for it
(Lightning's ``EarlyStopping``, or any callback setting ``trainer.should_stop``) is
``early_stopped``, at the epoch it stopped in: decided at the end, so the order of the callbacks
does not matter. An exception reaches ``on_exception``: ``failed`` with the error (Ctrl-C:
``stopped``). Global rank 0 writes. Checkpoints on request are written by rank 0 alone: use them in
single-process runs.

The default run folder is per run, Lightning's ``version_N`` convention:
``experiments/<date>-<default_root_dir name>-version_N`` (N: the trainer's logger's version, else
the next free one); a resume (``fit(ckpt_path=...)``) continues the latest one.

Importing this module imports ``lightning``; :mod:`trainkit` never does unless you import it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from trainkit.integrations.common import (
    HEARTBEAT_S,
    SYSTEM_EVERY_S,
    ForeignRun,
    default_run_dir,
    generate_sampler,
    jsonable,
    monitor_config,
    number,
    numbers,
    prompts_of,
    resolve_profile,
)
from trainkit.monitor import grad_norm, layer_health, layer_snapshot
from trainkit.runfolder import EARLY_STOPPED, FINISHED, STOPPED

TRAINER = "lightning"
CKPT_PREFIX = "trainkit-step="


class TrainkitCallback(Callback):
    """Writes the run folder of a Lightning run (see the module docstring).

    ``run_dir``: the run folder (default ``experiments/<date>-<default_root_dir name>-version_N``);
    ``fresh``: a training from step 0 in a folder that holds another run moves it aside
    (``superseded/``) instead of refusing; ``profile``, ``tokenizer``, ``sample_prompts``: the
    monitor's inference samples through the module's ``generate`` (or its ``model.generate``), or
    ``sampler(texts) -> outputs`` of your own; ``monitor``: a :class:`~trainkit.config.MonitorConfig`
    or a mapping of its fields; ``log_every_steps``: step records every N optimizer steps (default:
    the trainer's ``log_every_n_steps``); ``relaunch``: record this process's command line for
    ``trainkit launch``."""

    def __init__(self, run_dir: str | os.PathLike | None = None, *, fresh: bool = False, profile: Any = None,
                 tokenizer: Any = None, sample_prompts: list | None = None,
                 sampler: Callable[[list[str]], list[str]] | None = None, monitor: Any = None, relaunch: bool = False,
                 log_every_steps: int | None = None, heartbeat_s: float = HEARTBEAT_S,
                 system_every_s: float = SYSTEM_EVERY_S, control_every_s: float = 0.5) -> None:
        self.run_dir = run_dir
        self._given_dir = run_dir is not None
        self.fresh = fresh
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
        self.hparams: dict | None = None  # what the logger was given (log_hyperparams)
        self.runlog: ForeignRun | None = None
        self._trainer: Any = None
        self._every = 1
        self._last_step = -1
        self._grad_norm: float | None = None
        self._snapshot: dict | None = None
        self._pending_epoch: int | None = None
        self._epoch_logged: dict = {}
        self._seen_metrics: dict = {}
        self._window: list[Any] = []  # the micro-batch losses of the optimizer step in progress
        self._step_epoch = 0  # the epoch of the last optimizer step
        self._batches_done = 0  # of the epoch in progress
        self.checkpoints: list[Path] = []  # written on request

    # ---------------------------------------------------------------- the start
    def on_train_start(self, trainer, pl_module):
        self._trainer = trainer
        self._pending_epoch, self._epoch_logged, self._window = None, {}, []
        resuming = trainer.global_step > 0
        if not self._given_dir:
            version = _logger_version(trainer)
            self.run_dir = default_run_dir(trainer.default_root_dir, resuming=resuming, versioned=True,
                                           version=None if resuming else version)
        sampler = self.sampler
        if sampler is None and self.tokenizer is not None and self.prompts:
            target = pl_module if hasattr(pl_module, "generate") else getattr(pl_module, "model", None)
            if target is not None and hasattr(target, "generate"):
                sampler = generate_sampler(lambda: target, self.tokenizer, self.profile, self.mcfg.max_new_tokens)
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
        hparams = self.hparams if self.hparams is not None else dict(getattr(pl_module, "hparams", {}) or {})
        settings = {"hparams": jsonable(hparams), "module_class": type(pl_module).__name__,
                    "trainer_settings": {"max_epochs": trainer.max_epochs, "max_steps": trainer.max_steps,
                                         "accumulate_grad_batches": accumulate,
                                         "precision": str(trainer.precision),
                                         "gradient_clip_val": trainer.gradient_clip_val,
                                         "val_check_interval": trainer.val_check_interval,
                                         "log_every_n_steps": trainer.log_every_n_steps,
                                         "default_root_dir": str(trainer.default_root_dir)},
                    "profile": getattr(self.profile, "name", None), "steps_per_epoch": steps_per_epoch,
                    "batch_size": batch_size}
        self.runlog = ForeignRun(self.run_dir, trainer=TRAINER, owner=trainer, writes=bool(trainer.is_global_zero),
                                 monitor=self.mcfg, sampler=sampler, prompts=self.prompts, profile=self.profile,
                                 heartbeat_s=self.heartbeat_s, system_every_s=self.system_every_s,
                                 control_every_s=self.control_every_s, checkpoint=self._checkpoint,
                                 relaunch=self.relaunch, fresh=self.fresh)
        self.runlog.begin(settings, total_epochs=max_epochs, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                          batch_size=batch_size * accumulate * trainer.world_size, global_step=trainer.global_step,
                          epochs_done=trainer.current_epoch, world_size=trainer.world_size,
                          device=str(pl_module.device), best=best_rule(trainer))
        if self.runlog.duplicate:
            self.runlog = None

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
        if log is None or log.ended:
            return
        loss = _loss_tensor(outputs)
        if loss is not None:  # Lightning hands the loss divided by N under accumulate_grad_batches=N
            self._window.append(loss * trainer.accumulate_grad_batches if pl_module.automatic_optimization else loss)
        if trainer.global_step == self._last_step:  # accumulating: no optimizer step yet
            return
        self._last_step = g = trainer.global_step
        self._batches_done = batch_idx + 1
        self._step_epoch = trainer.current_epoch
        window, self._window = self._window, []
        epoch_float = trainer.current_epoch + (batch_idx + 1) / max(1, trainer.num_training_batches) \
            if isinstance(trainer.num_training_batches, int) else float(trainer.current_epoch)
        log.step_done(g, epoch_float, epoch=trainer.current_epoch)
        if self._snapshot is not None:
            log.write_layers(g - 1, epoch_float, layer_health(pl_module, self._snapshot))
            self._snapshot = None
        if (g - 1) % self._every == 0 or log.monitor.wants_record(g - 1):
            step_loss = number(sum(window) / len(window)) if window else None
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
            if log.log_step(g, epoch_float, loss=step_loss, lr=lr, grad_norm=self._grad_norm,
                            logged=_loop_values(trainer, on_step=True), epoch=trainer.current_epoch) is not None:
                trainer.should_stop = True
                return
        if log.check_controls() is not None:
            if log.writer.gone is None:
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

    # ---------------------------------------------------------------- validation, test
    def on_validation_end(self, trainer, pl_module):
        """A validation (at an epoch's end, or mid-epoch): its record at its step; during fit its
        scores are the epoch's latest and count for the best."""
        if trainer.sanity_checking:
            return
        if self.runlog is None:
            return
        scores = _loop_values(trainer, on_step=False, which="callback")
        fitting = trainer.state.fn == "fit" and not self.runlog.ended
        self.runlog.evaluated(trainer.global_step, None, scores, split="val" if fitting else "validate",
                              epoch=trainer.current_epoch if fitting else max(self.runlog.completed_epochs - 1, 0),
                              during_training=fitting)

    def on_test_end(self, trainer, pl_module):
        if self.runlog is not None:
            self.runlog.evaluated(trainer.global_step, None, _loop_values(trainer, on_step=False, which="callback"),
                                  split="test",
                                  epoch=max(self.runlog.completed_epochs - 1, 0), during_training=False)

    # ---------------------------------------------------------------- per epoch
    def on_train_epoch_end(self, trainer, pl_module):
        """Its record and progress wait for what decides after it (early stopping), until the next
        step or the end. An epoch cut short (a stop) has no record."""
        batches = trainer.num_training_batches
        if self.runlog is not None and (not isinstance(batches, int) or self._batches_done >= batches):
            self._pending_epoch = trainer.current_epoch
            self._epoch_logged = _loop_values(trainer, on_step=False)
            self._seen_metrics = dict(trainer.callback_metrics)
        self._batches_done = 0

    def _flush_epoch(self, trainer, *, early_stopped: bool = False) -> None:
        if self._pending_epoch is None or self.runlog is None or self.runlog.ended:
            return
        epoch, self._pending_epoch = self._pending_epoch, None
        logged = {**self._epoch_logged, **_logged_after(trainer.callback_metrics, self._seen_metrics)}
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        self.runlog.epoch_end(epoch, global_step=trainer.global_step, lr=lr, early_stopped=early_stopped,
                              logged=logged)

    # ---------------------------------------------------------------- the end
    def on_train_end(self, trainer, pl_module):
        log = self.runlog
        if log is None or log.ended:
            return
        planned_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        planned_steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        ended_early = trainer.should_stop and (planned_epochs is None or trainer.current_epoch < planned_epochs) \
            and (planned_steps is None or trainer.global_step < planned_steps)
        ckpt = _best_checkpoint(trainer)
        if ckpt:
            log.best_checkpoint = ckpt
        if log.failure is not None:
            self._flush_epoch(trainer)
            log.fail(log.failure)
        elif log.stop_reason is not None:
            self._flush_epoch(trainer)
            log.end(STOPPED)
        elif ended_early:  # it stopped itself: early stopping, in the epoch of its last step
            at = self._pending_epoch if self._pending_epoch is not None else self._step_epoch
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


class TrainkitLogger(Logger):
    """A Lightning logger that writes trainkit's run folder: ``Trainer(logger=TrainkitLogger())``.

    It takes the :class:`TrainkitCallback`'s arguments and brings that callback into the Trainer
    when the fit starts (a ``TrainkitCallback`` already among ``callbacks`` is used instead); the
    callback records every value your module logs, at its step, from the training loop itself.
    ``log_dir`` names the run folder once the fit started. It makes no folder of its own:
    ``ModelCheckpoint`` writes where it does without a logger (``default_root_dir/checkpoints``),
    and ``trainer.log_dir`` is ``default_root_dir``."""

    def __init__(self, run_dir: str | os.PathLike | None = None, **callback_kwargs: Any) -> None:
        super().__init__()
        self.callback = TrainkitCallback(run_dir, **callback_kwargs)
        self._root: str | None = None  # the trainer's default_root_dir, once the fit started

    @property
    def name(self) -> str:
        return ""  # no folder of its own (a folder named "trainkit" would shadow the package in its folder)

    @property
    def version(self) -> str:
        return ""

    @property
    def log_dir(self) -> str | None:
        return os.fspath(self.callback.run_dir) if self.callback.run_dir is not None else None

    @property
    def save_dir(self) -> str | None:
        return self._root

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.callback.hparams = dict(params) if isinstance(params, dict) else jsonable(vars(params))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Nothing to do here: the callback has recorded these values at their step already."""

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Called by Lightning as the fit starts (with the module): the callback joins the Trainer."""
        trainer = getattr(model, "_trainer", None)
        if trainer is None:
            return
        self._root = os.fspath(trainer.default_root_dir)
        found = next((cb for cb in trainer.callbacks if isinstance(cb, TrainkitCallback)), None)
        if found is None:
            trainer.callbacks.append(self.callback)
        else:
            self.callback = found


def best_rule(trainer: Any) -> tuple[str | None, str]:
    """(metric, mode) the trainer keeps its best by: the first ``ModelCheckpoint`` with a
    ``monitor``, else the first ``EarlyStopping``; (None, "min") otherwise (``val_loss``)."""
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor:
            return cb.monitor, cb.mode
    for cb in trainer.callbacks:
        if isinstance(cb, EarlyStopping) and cb.monitor:
            return cb.monitor, cb.mode
    return None, "min"


def _best_checkpoint(trainer: Any) -> str | None:
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor and cb.best_model_path:
            return str(cb.best_model_path)
    return None


def _loop_values(trainer: Any, *, on_step: bool, which: str = "log") -> dict:
    """The values the module logged (``self.log``) in the loop that runs now: this step's
    (``on_step``), or the epoch's / the validation's aggregates, under their own names
    (``which``: ``log``, Lightning's names for loggers; ``callback``, the names monitors see)."""
    results = getattr(trainer, "_results", None)
    try:
        values = results.metrics(on_step)[which] if results is not None else {}
    except Exception:  # a Lightning without this loop API: the callback metrics as they stand
        values = trainer.callback_metrics
    return numbers(values)


def _logged_after(now: dict, before: dict) -> dict:
    """Values logged after the epoch's end reached the callbacks (in the module's own
    ``on_train_epoch_end``): those that changed since, without Lightning's plain-name aliases of
    ``_epoch``/``_step`` values."""
    changed = {k: v for k, v in now.items() if before.get(k) is not v
               and f"{k}_epoch" not in now and f"{k}_step" not in now and not k.endswith("_step")}
    return numbers(changed)


def _logger_version(trainer: Any) -> int | None:
    for lg in getattr(trainer, "loggers", []) or []:
        if isinstance(lg, TrainkitLogger):
            continue
        v = getattr(lg, "version", None)
        if isinstance(v, int):
            return v
        if isinstance(v, str) and v.startswith("version_") and v[8:].isdigit():
            return int(v[8:])
    return None


def _loss_tensor(outputs: Any) -> Any:
    value = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if value is None or isinstance(value, bool):
        return None
    return value.detach() if hasattr(value, "detach") else value
