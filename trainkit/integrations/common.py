"""What the Hugging Face and Lightning callbacks share: :class:`ForeignRun`, one training session of
another trainer, written through :class:`trainkit.runfolder.writer.RunWriter` (the writer of trainkit's own
engine), so that such a run reads exactly like one of the engine's.

The session follows the engine's order: the lock first (:meth:`ForeignRun.begin`), then what the
folder holds is read and decided (a resume cuts what was written after the checkpoint; a new
training in a folder that holds another run is refused with one line unless asked to move it
aside, ``fresh=True``), ``resolved_config.json`` (``_meta.trainer`` names the trainer),
``progress.json``, the live status and its heartbeat; per optimizer step the monitor and the
control requests, per logged step a record; every evaluation at its step; each epoch's record and
``progress.json`` at its end; the best so far in ``checkpoints/current.meta.json`` (the BEST
column); at the end the final state. Python ``logging`` (the root's and the trainer's own loggers)
and warnings are copied into ``console.log`` (capped and rotated as the engine's; the process's
stdout is the user's, never taken over) from the start to the end. The callbacks translate their
trainer's hooks into these calls and the requests back into their trainer's flags.

One process, one writer per folder: a session of this process that never ended on the same folder
(a ``train()`` that raised where no hook saw it, in a notebook) is closed as ``failed`` before a new
one begins there, so the lock is never held against its own process; a second callback attached
to the same training writes nothing.

Epochs and steps are 0-based in the files: the step record of the trainer's ``global_step`` ``g``
(steps done) says ``step: g - 1``. No import of torch, transformers or lightning here (the sampler
of :func:`generate_sampler` imports torch when it runs).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trainkit.config import MonitorConfig, build
from trainkit.console import LogCapture
from trainkit.early_stopping import is_better
from trainkit.errors import first_line
from trainkit.interrupts import Interrupts
from trainkit.monitor import Monitor
from trainkit.runfolder import (
    COMPLETE,
    DEFAULT_ROOT,
    EARLY_STOPPED,
    FAILED,
    FINISHED,
    RUN_NAME,
    RUNNING,
    STOPPED,
    slugify,
)
from trainkit.runfolder.control import Controls
from trainkit.runfolder.writer import EVAL, HEARTBEAT_S, STEP, SYSTEM_EVERY_S, RunWriter, resolved_meta

log = logging.getLogger("trainkit")

# the loggers of each trainer that do not hand their records to the root logger (console.log takes
# the root's and these: see trainkit.console.LogCapture)
CONSOLE_LOGGERS = {"hf": ("transformers", "trainkit"),
                   "lightning": ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "trainkit")}

__all__ = ["HEARTBEAT_S", "SYSTEM_EVERY_S", "ForeignRun", "RunRefused", "default_run_dir", "epoch_of",
           "generate_sampler", "jsonable", "monitor_config", "numbers", "prompts_of", "resolve_profile"]


class RunRefused(RuntimeError):
    """The callback cannot write this run (a folder holding another run, a lock held by another
    process, a folder that vanished); the message is one line and says what to do."""


# --------------------------------------------------------------------------------------------
# plain helpers


def default_run_dir(name: str | os.PathLike | None, *, resuming: bool = False, versioned: bool = False,
                    version: int | None = None, root: Path = DEFAULT_ROOT, today: dt.date | None = None) -> Path:
    """The run folder of a run named ``name`` (the trainer's run name, or the last part of its
    output folder): ``experiments/<date>-<name>``. A resume continues the latest existing folder of
    that name (whatever its date). ``versioned`` (Lightning's ``version_N`` convention): every new
    training gets its own ``<date>-<name>-version_N``, ``N`` the trainer's logger's version when it
    has one, else the next free number."""
    slug = slugify(Path(os.fspath(name)).name if name else "run")
    pattern = f"{slug}-version_" if versioned else slug
    existing = sorted((p for p in root.glob(f"*-{pattern}*") if p.is_dir() and _named(p.name, slug, versioned)),
                      key=lambda p: (_version_of(p.name), p.name))
    if resuming and existing:
        return existing[-1]
    date = (today or dt.date.today()).isoformat()
    if not versioned:
        return root / f"{date}-{slug}"
    if version is None:
        version = max((_version_of(p.name) for p in existing), default=-1) + 1
    return root / f"{date}-{slug}-version_{version}"


def _named(folder: str, slug: str, versioned: bool) -> bool:
    if RUN_NAME.fullmatch(folder) is None:
        return False
    rest = folder[11:]
    if not versioned:
        return rest == slug
    head, _, n = rest.rpartition("-version_")
    return head == slug and n.isdigit()


def _version_of(folder: str) -> int:
    n = folder.rpartition("-version_")[2]
    return int(n) if n.isdigit() else -1


def monitor_config(monitor: MonitorConfig | dict | None) -> MonitorConfig:
    """The monitor's settings: a :class:`MonitorConfig`, a mapping of its fields (checked), or None
    (the defaults)."""
    if isinstance(monitor, MonitorConfig):
        return monitor
    return build(MonitorConfig, dict(monitor or {}), "monitor=", "monitor.")


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (what is not JSON becomes its ``str``)."""
    return json.loads(json.dumps(obj, default=str))


def number(v: Any) -> float | None:
    """A finite or non-finite float from a number or a 0-d tensor; None for anything else."""
    if isinstance(v, bool):
        return None
    if not isinstance(v, (int, float)):
        try:
            v = float(v)
        except (TypeError, ValueError, RuntimeError):
            return None
    return float(v)


def numbers(values: dict, *, skip: tuple[str, ...] = ()) -> dict[str, float]:
    """The scalars of ``values`` (numbers and one-element tensors) as floats, under their own
    names (a non-finite one is written as null, as every record writes it)."""
    out: dict[str, float] = {}
    for k, v in values.items():
        if k in skip or not isinstance(k, str):
            continue
        if getattr(v, "numel", None) is not None and v.numel() != 1:
            continue
        x = number(v)
        if x is not None:
            out[k] = x
    return out


def prompts_of(sample_prompts: list | None, profile: Any) -> list[dict] | None:
    """The monitor's prompts: the user's (strings or ``{"prompt", "expected"}``), else the profile's."""
    if sample_prompts is None:
        return profile.sample_prompts() if profile is not None else None
    out = []
    for p in sample_prompts:
        if isinstance(p, str):
            out.append({"prompt": p, "expected": None})
        elif isinstance(p, dict) and isinstance(p.get("prompt"), str):
            out.append({"prompt": p["prompt"], "expected": p.get("expected")})
        else:
            raise ValueError(f"sample_prompts: expected strings or {{'prompt', 'expected'}} mappings, got {p!r}")
    return out or None


def resolve_profile(profile: Any) -> Any:
    """A profile instance, or one by name (``get_profile``), or None."""
    if profile is None or not isinstance(profile, str):
        return profile
    from trainkit.profiles import get_profile

    return get_profile(profile)


def generate_sampler(model_of: Callable[[], Any], tokenizer: Any, profile: Any,
                     max_new_tokens: int) -> Callable[[list[str]], list[str]]:
    """``sampler(texts) -> outputs`` through ``model.generate`` (greedy, the profile's logits
    processors), one prompt at a time, in eval mode with the RNG forked: training is unchanged.
    A tokenizer with a chat template gets the prompt as a user turn."""
    from trainkit.profiles.base import encode

    def sample(texts: list[str]) -> list[str]:
        import torch

        model = model_of()
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        eos = getattr(tokenizer, "eos_token_id", None)
        outputs = []
        try:
            devices = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                for text in texts:
                    if getattr(tokenizer, "chat_template", None):
                        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                            add_generation_prompt=True, tokenize=True)
                        ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
                    else:
                        ids = encode(tokenizer, text)
                    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
                    kw: dict = {"attention_mask": torch.ones_like(input_ids), "max_new_tokens": max_new_tokens,
                                "do_sample": False, "pad_token_id": eos}
                    procs = profile.build_logits_processors(tokenizer) if profile is not None else []
                    if procs:
                        from transformers import LogitsProcessorList

                        kw["logits_processor"] = LogitsProcessorList(procs)
                    out = model.generate(input_ids, **kw)
                    new = [int(t) for t in out[0, len(ids):]]
                    if eos is not None and eos in new:
                        new = new[:new.index(eos)]
                    outputs.append(tokenizer.decode(new))
        finally:
            model.train(was_training)
        return outputs

    return sample


def epoch_of(epoch_float: float | None) -> int:
    """The 0-based epoch a step belongs to, from a trainer's fractional epoch (1.0 = the end of
    epoch 0)."""
    if not epoch_float or epoch_float <= 0:
        return 0
    return max(0, math.ceil(epoch_float - 1e-9) - 1)


def relaunch_record() -> dict:
    """How this process was started, for ``trainkit launch`` to start it again."""
    return {"argv": [sys.executable, *sys.argv], "cwd": os.getcwd()}


# --------------------------------------------------------------------------------------------
# one session of another trainer

_OPEN: dict[str, ForeignRun] = {}  # this process's sessions that have not ended, by run folder
_OPEN_LOCK = threading.Lock()


class ForeignRun:
    """One training session of another trainer in ``run_dir`` (see the module docstring).
    ``writes`` False (not the main process): signals are checked, nothing is written. ``owner``:
    the trainer's object of this training (a second callback of the same training is a duplicate
    and writes nothing)."""

    def __init__(self, run_dir: str | os.PathLike, *, trainer: str, owner: Any = None, writes: bool = True,
                 monitor: MonitorConfig | dict | None = None, sampler: Callable[[list[str]], list[str]] | None = None,
                 prompts: list[dict] | None = None, profile: Any = None, heartbeat_s: float = HEARTBEAT_S,
                 system_every_s: float = SYSTEM_EVERY_S, control_every_s: float = 0.5,
                 checkpoint: Callable[[], None] = lambda: None, relaunch: bool = False, fresh: bool = False) -> None:
        self.writer = RunWriter(run_dir, writes=writes, heartbeat_s=heartbeat_s)
        self.paths = self.writer.paths
        self.trainer = trainer
        self.owner = owner
        self.writes = writes
        self.mcfg = monitor_config(monitor)
        self.heartbeat_s = heartbeat_s
        self.system_every_s = system_every_s
        self.relaunch = relaunch
        self.fresh = fresh
        self.live = self.writer.live
        self.interrupts = Interrupts(lambda name: log.warning("%s received: stopping after this step", name))
        self.controls = Controls(self.paths.control, self.interrupts, checkpoint=checkpoint, report=self._report,
                                 enabled=writes, interval_s=control_every_s, step=lambda: self.global_step)
        self.monitor = Monitor(self.mcfg, self.paths, writes=writes, sampler=sampler, prompts=prompts,
                               profile=profile, report_alerts=lambda latest: self.live.update(alerts=latest))
        self.total_epochs = 1
        self.steps_per_epoch = 0
        self.global_step = 0  # optimizer steps done
        self.completed_epochs = 0
        self.stop_reason: str | None = None  # set when trainkit asked the trainer to stop
        self.failure: str | None = None  # set when the monitor failed the run (non-finite loss)
        self.began = False
        self.ended = False
        self.duplicate = False  # a second callback of the same training: writes nothing
        self._epoch_losses: list[float] = []
        self._epoch_t0 = time.monotonic()
        self._paused0 = 0.0
        self._eval: dict = {}
        self.best_metric: str | None = None
        self.best_mode = "min"
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.best_step: int | None = None
        self.best_checkpoint: str | None = None
        self.trimmed = 0  # records newer than the checkpoint cut on a resume
        self.moved_aside: Path | None = None  # where fresh=True put an earlier training's files
        # the trainer's logging and warnings into console.log (its stdout is the user's process's own)
        self.console = LogCapture(self.paths.console, loggers=CONSOLE_LOGGERS.get(trainer, ("trainkit",)))

    # ---------------------------------------------------------------- the start
    def begin(self, settings: dict, *, total_epochs: int, steps_per_epoch: int, total_steps: int, batch_size: int,
              global_step: int, epochs_done: int, world_size: int = 1, device: str | None = None,
              best: tuple[str | None, str] = (None, "min")) -> None:
        """Claim the folder (its lock first), decide (resume, or a new training), prepare it, and
        start the live status (the engine's order). Raises :class:`RunRefused` with one line."""
        self.total_epochs = max(1, int(total_epochs))
        self.steps_per_epoch = int(steps_per_epoch)
        self.global_step = int(global_step)
        self.completed_epochs = min(int(epochs_done), self.total_epochs)
        self.best_metric, self.best_mode = best
        if self.writes:
            if not self._take_slot():
                return
            try:
                self._claim_and_prepare(settings, epochs_done=int(epochs_done))
            except BaseException:
                self._leave_slot()
                self.writer.close()
                raise
        self.live.update(total_epochs=self.total_epochs, steps_per_epoch=self.steps_per_epoch,
                         current_epoch=min(self.completed_epochs, self.total_epochs - 1), step=self.global_step,
                         world_size=world_size, device=device, trainer=self.trainer, epoch_float=None)
        self.live.batch_size = batch_size
        self.live.total_steps = total_steps
        self.live.start_rates(self.global_step)
        self.writer.go_live(system_every_s=self.system_every_s, on_beat=self.monitor.check_stall)
        if self.writes:
            self.monitor.open()
            self.console.attach()
        self.interrupts.__enter__()
        self._epoch_t0, self._paused0 = time.monotonic(), self.controls.paused_s
        self.began = True

    def _take_slot(self) -> bool:
        """This process's one session per folder: a duplicate of the same training writes nothing;
        an earlier session that never ended (its train() raised unseen) is closed as failed."""
        key = str(self.paths.root.resolve())
        with _OPEN_LOCK:
            other = _OPEN.get(key)
            if other is not None and other is not self and self.owner is not None and other.owner is self.owner:
                log.warning("trainkit: a second callback writes the same run folder %s for the same training; "
                            "it does nothing", self.paths.root)
                self.duplicate = True
                self.writes = False
                self.writer.writes = self.live.enabled = self.controls.enabled = False
                self.monitor.writes = False
                return False
            _OPEN[key] = self
        if other is not None and other is not self and not other.ended:
            other.fail("the training ended without finishing (an exception in train() or fit() that no hook saw); "
                       "a new training of this process took the run over")
        return True

    def _leave_slot(self) -> None:
        with _OPEN_LOCK:
            key = str(self.paths.root.resolve())
            if _OPEN.get(key) is self:
                del _OPEN[key]

    def _claim_and_prepare(self, settings: dict, *, epochs_done: int) -> None:
        try:
            self.writer.claim(new=True)
        except Exception as e:  # LockHeld, FolderGone: one line
            raise RunRefused(f"trainkit: {self.paths.root}: {first_line(e, limit=300)}") from None
        previous = self.writer.read_resolved()
        if self.global_step == 0:
            self._new_training(previous)
        else:  # a resume: what was written after its checkpoint goes
            self.trimmed = self.writer.trim(global_step=self.global_step, epochs_done=epochs_done)
            self._read_back(epochs_done)
        meta = previous.get("_meta") if isinstance(previous.get("_meta"), dict) else None
        self.writer.write_resolved(
            {**jsonable(settings), "epochs": self.total_epochs, "heartbeat_s": self.heartbeat_s,
             "monitor": asdict(self.mcfg)},
            resolved_meta(meta, trainer=self.trainer, source=sys.argv[0] if sys.argv else None,
                          relaunch=relaunch_record() if self.relaunch else None))
        self.writer.write_progress(self.completed_epochs, self.total_epochs)

    def _new_training(self, previous: dict) -> None:
        """A training from step 0 in this folder: an earlier run there is moved aside when asked
        (``fresh``); a run this process left unfinished (a notebook's cell run again) is a new
        attempt on it (its records cut); any other run is refused."""
        p = self.paths
        if not any(f.exists() for f in (p.resolved_config, p.status, p.progress, p.metrics)):
            return  # nothing trained here yet (a folder with only its config, notes, metadata)
        if self.fresh:
            self.moved_aside = self.writer.move_aside()
            return
        status = self.writer.read_status()
        mine = status.get("pid") == os.getpid() and status.get("host") == self.live.fields["host"] \
            and status.get("state") not in COMPLETE
        if mine:
            self.trimmed = self.writer.trim(global_step=0, epochs_done=0)
            return
        meta = previous.get("_meta") if isinstance(previous.get("_meta"), dict) else {}
        what = ", ".join(str(x) for x in (status.get("state"), meta.get("trainer")) if isinstance(x, str))
        self.writer.release()
        raise RunRefused(f"trainkit: {self.paths.root} holds another run{f' ({what})' if what else ''}: resume it "
                         "from its checkpoint, give the callback another run_dir, or pass fresh=True to move it "
                         "aside (never deleted)")

    def _read_back(self, epochs_done: int) -> None:
        """A resume: the losses of the epoch in progress recorded before the checkpoint (its mean
        covers them too), and the best so far, from what the folder kept."""
        for rec in self.writer.records():
            kind = rec.get("kind")
            if kind == STEP and rec.get("epoch") == epochs_done and isinstance(rec.get("loss"), (int, float)) \
                    and math.isfinite(rec["loss"]):
                self._epoch_losses.append(float(rec["loss"]))
            elif kind == EVAL:
                self._observe(rec, epoch=rec.get("epoch"), step=rec.get("step"), write=False)

    # ---------------------------------------------------------------- per step
    def step_done(self, global_step: int, epoch_float: float | None, epoch: int | None = None) -> None:
        """An optimizer step finished (cheap: no I/O)."""
        self.global_step = global_step
        self.monitor.mark_progress(global_step)
        current = epoch_of(epoch_float) if epoch is None else epoch
        self.live.update(step=global_step, epoch_float=epoch_float, current_epoch=min(current, self.total_epochs - 1))

    def log_step(self, global_step: int, epoch_float: float | None, *, loss: float | None, lr: float | None,
                 grad_norm: float | None, logged: dict | None = None, epoch: int | None = None) -> str | None:
        """The step record of optimizer step ``global_step`` (steps done; the record says
        ``global_step - 1``): trainkit's loss, lr and gradient norm, and ``logged`` (what the
        user's code logged at this step, under its own names), the monitor's alerts and samples;
        returns the reason to fail the run (a non-finite loss), else None."""
        step, epoch = global_step - 1, epoch_of(epoch_float) if epoch is None else epoch
        extra: dict = {"epoch_float": epoch_float}
        if logged:
            extra["logged"] = logged
        if self.writes and self.monitor.samples_due(step):
            extra.update(self.monitor.sample(step, epoch))
        alert = self.monitor.on_step(step, loss=loss, grad_norm=grad_norm, throughput=self.live.fields["throughput"])
        self.writer.step(step, epoch, loss=loss, lr=lr, grad_norm=grad_norm, **extra)
        if loss is not None and math.isfinite(loss):
            self._epoch_losses.append(loss)
        self.live.update(loss=loss if loss is not None and math.isfinite(loss) else None, lr=lr)
        if alert is not None:
            self.failure = alert.message
            return alert.message
        return None

    def log_values(self, global_step: int, epoch_float: float | None, values: dict) -> None:
        """Numbers the user's code logged at a step that belong to no step record."""
        if values:
            self.writer.logged(max(global_step - 1, 0), epoch_of(epoch_float), values, epoch_float=epoch_float)

    def layers_due(self, global_step: int) -> bool:
        """Whether the optimizer step about to run (``global_step`` steps done so far) is a
        layer-health step."""
        return self.writes and self.monitor.layers_due(global_step)

    def write_layers(self, step: int, epoch_float: float | None, layers: list[dict]) -> None:
        self.monitor.write_layers(step, epoch_of(epoch_float), layers)

    def check_controls(self) -> str | None:
        """Between two steps: None (go on) or why to stop (a stop request, a signal, a folder that
        vanished)."""
        why = self.writer.gone or self.controls.check()
        if why is not None:
            self.stop_reason = why
            self.live.update(stop_reason=why)
        return why

    def _report(self, state: str | None, ack: dict) -> None:
        if state is None:
            self.live.update(control=ack)
            return
        if state == RUNNING:
            self.live.start_rates(self.global_step)
        self.live.write(state=state, control=ack)

    # ---------------------------------------------------------------- evaluations and the best
    def evaluated(self, global_step: int, epoch_float: float | None, scores: dict, *, split: str | None = None,
                  epoch: int | None = None, during_training: bool = True) -> None:
        """An evaluation after ``global_step`` steps: its record at that step; during training its
        scores also go into the epoch's record (the epoch's last evaluation) and the best."""
        epoch = epoch_of(epoch_float) if epoch is None else epoch
        step = max(global_step - 1, 0)
        extra = {"split": split} if split else {}
        if not during_training:
            self.append_later(lambda w: w.evaluation(step, epoch, scores, epoch_float=epoch_float, **extra))
            return
        rec = self.writer.evaluation(step, epoch, scores, epoch_float=epoch_float, **extra)
        self._eval.update({k: v for k, v in scores.items() if isinstance(v, (int, float))})
        self._observe(rec, epoch=epoch, step=step, write=True)
        self.live.restart_interval()  # the evaluation's time is not a slower training step

    def _observe(self, rec: dict, *, epoch: Any, step: Any, write: bool) -> None:
        metric = self.best_metric
        if metric is None and "val_loss" in rec:  # nobody named one: the engine's default
            metric = self.best_metric = "val_loss"
        value = rec.get(metric) if metric else None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return
        if not is_better(value, self.best_value, self.best_mode):
            return
        self.best_value, self.best_epoch = float(value), epoch if isinstance(epoch, int) else None
        self.best_step = step if isinstance(step, int) else None
        if write:
            self.write_best()

    def write_best(self, checkpoint: str | None = None) -> None:
        """``checkpoints/current.meta.json``: the best so far, as trainkit's engine records it
        (``best_metric``, ``best_loss`` its value, ``best_mode``, ``best_epoch``), with its step and
        the trainer's own checkpoint of the best model when it names one."""
        if checkpoint is not None:
            self.best_checkpoint = checkpoint
        if self.best_value is None or not self.writes:
            return
        self.writer.checkpoint_meta({
            "trainer": self.trainer, "last_epoch": self.completed_epochs - 1 if self.completed_epochs else None,
            "epochs_done": self.completed_epochs, "global_step": self.global_step,
            "best_loss": self.best_value, "best_metric": self.best_metric, "best_mode": self.best_mode,
            "best_epoch": self.best_epoch, "best_step": self.best_step, "best_checkpoint": self.best_checkpoint})

    def append_later(self, write: Callable[[RunWriter], Any]) -> None:
        """A record after the training ended (``evaluate()``/``predict()``/``validate()``/``test()``
        after ``train()``/``fit()``): the run's lock is taken for the append, then let go."""
        if not self.writes or self.duplicate:
            return
        if not self.ended:
            write(self.writer)
            return
        writer = RunWriter(self.paths.root)
        try:
            writer.claim(new=False)
        except Exception as e:
            log.warning("trainkit: could not record the evaluation in %s: %s", self.paths.root, first_line(e))
            return
        try:
            write(writer)
        finally:
            writer.close()

    # ---------------------------------------------------------------- per epoch
    def epoch_end(self, epoch: int, *, global_step: int, lr: float | None, early_stopped: bool = False,
                  logged: dict | None = None) -> None:
        """Epoch ``epoch`` (0-based) is complete: its record (the mean of its recorded step losses,
        the scores of its last evaluation, ``logged``: the user's values for the epoch), then
        ``progress.json``."""
        self.global_step = global_step
        losses = self._epoch_losses
        extra = {"logged": logged} if logged else {}
        self.writer.epoch(epoch, train_loss=sum(losses) / len(losses) if losses else None, scores=self._eval, lr=lr,
                          global_step=global_step,
                          duration_s=time.monotonic() - self._epoch_t0 - (self.controls.paused_s - self._paused0),
                          **extra)
        self._epoch_losses, self._eval = [], {}
        self._epoch_t0, self._paused0 = time.monotonic(), self.controls.paused_s
        self.completed_epochs = min(epoch + 1, self.total_epochs)
        self.write_progress(early_stopped_at=epoch if early_stopped else None)
        last = early_stopped or self.completed_epochs >= self.total_epochs
        self.live.write(current_epoch=epoch if last else self.completed_epochs, step=global_step)
        if self.best_value is not None:
            self.write_best()

    def write_progress(self, *, early_stopped_at: int | None = None, finished: bool = False) -> None:
        completed = self.completed_epochs
        if early_stopped_at is not None:
            completed = early_stopped_at + 1
        elif finished:
            completed = self.total_epochs  # a run that ends by max_steps mid-epoch is done all the same
        self.writer.write_progress(completed, self.total_epochs, early_stopped_at=early_stopped_at, finished=finished)

    # ---------------------------------------------------------------- the end
    def end(self, state: str, *, error: str | None = None, early_stopped_at: int | None = None) -> None:
        """The final state (once): ``progress.json`` for a complete run, ``training_status.json``,
        then the threads and files are closed and the lock released."""
        if self.ended or not self.began:
            self.ended = True
            return
        self.ended = True
        try:
            if self.writer.gone is None:
                if state == EARLY_STOPPED:
                    self.write_progress(early_stopped_at=early_stopped_at)
                elif state == FINISHED:
                    self.write_progress(finished=True)
            last = early_stopped_at if early_stopped_at is not None else self.total_epochs - 1
            extra = {"stop_reason": self.stop_reason} if state == STOPPED and self.stop_reason else {}
            self.writer.final(state, error=error, last_epoch=last, **extra)
        except Exception as e:  # the disk may be why we are failing
            log.warning("could not write the final status: %s", e)
        finally:
            self.close()

    def fail(self, error: BaseException | str) -> None:
        """The run failed with ``error`` (an exception of the trainer, or the monitor's reason)."""
        self.end(FAILED, error=error if isinstance(error, str) else first_line(error))

    def close(self) -> None:
        try:
            self.interrupts.__exit__(None, None, None)
        except Exception:
            pass
        self.writer.close()
        self.monitor.close()
        self._leave_slot()
        if self.writer.gone is not None:
            log.error("trainkit: %s", self.writer.gone)
        self.console.detach()
