"""The run folder written on behalf of another trainer: what the Hugging Face and Lightning callbacks
share, so that a run trained by them reads like one of trainkit's own engine.

:class:`RunLog` follows the engine's order of writes: at the start the folder, the lock,
``resolved_config.json`` (with ``_meta.trainer`` naming the trainer), the records newer than the
checkpoint cut on a resume, ``progress.json``, ``training_status.json`` and the heartbeat thread
(``system.jsonl``); per logged step a record in ``metrics.jsonl`` and the monitor's alerts; between
two steps the control requests (:class:`~trainkit.runfolder.control.Controls`); at each epoch end its record
and ``progress.json``; at the end the final state. The callbacks translate their trainer's hooks
into these calls, and the requests back into their trainer's flags.

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
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trainkit.config import MonitorConfig, build
from trainkit.interrupts import Interrupts
from trainkit.monitor import Monitor, trim_after
from trainkit.runfolder import (
    DEFAULT_ROOT,
    EARLY_STOPPED,
    FAILED,
    FINISHED,
    FORMAT_VERSION,
    RUNNING,
    STOPPED,
    RunPaths,
    move_aside,
    progress_record,
    slugify,
)
from trainkit.runfolder.control import Controls
from trainkit.runfolder.files import JsonlWriter, cleanup_temp_files, truncate_tail, write_json
from trainkit.runfolder.live import Heartbeat, LiveStatus
from trainkit.runfolder.lock import HANDOFF_ENV, RunLock

log = logging.getLogger("trainkit")

#: settings of the run folder, the same defaults as trainkit's engine
HEARTBEAT_S = 5.0
SYSTEM_EVERY_S = 10.0


def default_run_dir(output_dir: str | os.PathLike | None, *, today: dt.date | None = None) -> Path:
    """``experiments/<date>-<name of the trainer's output folder>``."""
    name = Path(os.fspath(output_dir)).resolve().name if output_dir else "run"
    return DEFAULT_ROOT / f"{(today or dt.date.today()).isoformat()}-{slugify(name)}"


def monitor_config(monitor: MonitorConfig | dict | None) -> MonitorConfig:
    """The monitor's settings: a :class:`MonitorConfig`, a mapping of its fields (checked), or None
    (the defaults)."""
    if isinstance(monitor, MonitorConfig):
        return monitor
    return build(MonitorConfig, dict(monitor or {}), "monitor=", "monitor.")


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (what is not JSON becomes its ``str``)."""
    return json.loads(json.dumps(obj, default=str))


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


class RunLog:
    """One run folder written for a foreign trainer. ``writes`` False (not the main process):
    signals are checked, nothing is written."""

    def __init__(self, run_dir: str | os.PathLike, *, trainer: str, writes: bool = True,
                 monitor: MonitorConfig | dict | None = None, sampler: Callable[[list[str]], list[str]] | None = None,
                 prompts: list[dict] | None = None, profile: Any = None, heartbeat_s: float = HEARTBEAT_S,
                 system_every_s: float = SYSTEM_EVERY_S, control_every_s: float = 0.5,
                 checkpoint: Callable[[], None] = lambda: None, relaunch: bool = False) -> None:
        self.paths = RunPaths(Path(run_dir))
        self.trainer = trainer
        self.writes = writes
        self.mcfg = monitor_config(monitor)
        self.heartbeat_s = heartbeat_s
        self.system_every_s = system_every_s
        self.relaunch = relaunch
        self.live = LiveStatus(self.paths.status, heartbeat_s=heartbeat_s, enabled=writes)
        self.interrupts = Interrupts(lambda name: log.warning("%s received: stopping after this step", name))
        self.controls = Controls(self.paths.control, self.interrupts, checkpoint=checkpoint, report=self._report,
                                 enabled=writes, interval_s=control_every_s, step=lambda: self.global_step)
        self.monitor = Monitor(self.mcfg, self.paths, writes=writes, sampler=sampler, prompts=prompts,
                               profile=profile, report_alerts=lambda latest: self.live.update(alerts=latest))
        self.metrics: JsonlWriter | None = None
        self.heartbeat: Heartbeat | None = None
        self.lock: RunLock | None = None
        self.total_epochs = 1
        self.steps_per_epoch = 0
        self.global_step = 0  # optimizer steps done
        self.completed_epochs = 0
        self.stop_reason: str | None = None  # set when trainkit asked the trainer to stop
        self.failure: str | None = None  # set when the monitor failed the run (non-finite loss)
        self.ended = False
        self._epoch_losses: list[float] = []
        self._epoch_t0 = time.monotonic()
        self._eval: dict = {}
        self.trimmed = 0  # records newer than the checkpoint cut on a resume
        self.moved_aside: Path | None = None  # where a new training put an earlier one's files

    # ---------------------------------------------------------------- the start
    def begin(self, config: dict, *, total_epochs: int, steps_per_epoch: int, total_steps: int,
              batch_size: int, global_step: int, world_size: int = 1, device: str | None = None) -> None:
        """Claim and prepare the folder, then start the live status (the engine's order)."""
        self.total_epochs = max(1, int(total_epochs))
        self.steps_per_epoch = int(steps_per_epoch)
        self.global_step = int(global_step)
        self.completed_epochs = min(self.global_step // self.steps_per_epoch, self.total_epochs) \
            if self.steps_per_epoch else 0
        if self.writes:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            cleanup_temp_files(self.paths.root)
            self.lock = RunLock(self.paths.lock).acquire(accept_token=os.environ.pop(HANDOFF_ENV, None))
            try:
                if self.global_step == 0:  # a new training: an earlier one's files go aside, never deleted
                    self.moved_aside = move_aside(self.paths.root, self.fresh_outputs())
                self._write_resolved(config)
                self.trimmed = self._trim(self.global_step)
                write_json(self.paths.progress, progress_record(self.completed_epochs, self.total_epochs,
                                                                early_stopped_at=None, finished=False))
            except BaseException:
                self.lock.release()
                raise
        self.live.update(total_epochs=self.total_epochs, steps_per_epoch=self.steps_per_epoch,
                         current_epoch=min(self.completed_epochs, self.total_epochs - 1), step=self.global_step,
                         world_size=world_size, device=device, trainer=self.trainer, epoch_float=None)
        self.live.batch_size = batch_size
        self.live.total_steps = total_steps
        self.live.start_rates(self.global_step)
        self.live.write(state=RUNNING)
        self.heartbeat = Heartbeat(self.live, self.paths.system if self.writes else None,
                                   heartbeat_s=self.heartbeat_s, system_every_s=self.system_every_s,
                                   on_beat=self.monitor.check_stall)
        if self.writes:
            self.heartbeat.start()
            self.metrics = JsonlWriter(self.paths.metrics)
            self.monitor.open()
        self.interrupts.__enter__()
        self._epoch_t0 = time.monotonic()

    def fresh_outputs(self) -> list[Path]:
        """What a training that starts from step 0 moves aside (``superseded/<time>/``)."""
        p = self.paths
        return [p.resolved_config, p.status, p.progress, p.metrics, p.system, p.samples, p.alerts, p.layers]

    def _write_resolved(self, config: dict) -> None:
        meta: dict = {"version": FORMAT_VERSION, "trainer": self.trainer, "source": sys.argv[0] if sys.argv else None,
                      "written_at": time.time()}
        if self.relaunch:
            meta["relaunch"] = relaunch_record()
        body = {**jsonable(config), "epochs": self.total_epochs, "heartbeat_s": self.heartbeat_s,
                "monitor": asdict(self.mcfg), "_meta": meta}
        write_json(self.paths.resolved_config, body)

    def _trim(self, global_step: int) -> int:
        """A resume: cut the records of steps at or after the checkpoint's (0-based step ``g`` is
        the ``g+1``-th optimizer step) and of epochs that ended after it."""
        def after(rec: dict) -> bool:
            kind = rec.get("kind")
            if kind == "step":
                n = rec.get("step")
                return isinstance(n, int) and n >= global_step
            if kind == "epoch":
                n = rec.get("global_step")
                return isinstance(n, int) and n > global_step
            return False

        return truncate_tail(self.paths.metrics, after) + trim_after(self.paths, global_step)

    # ---------------------------------------------------------------- per step
    def step_done(self, global_step: int, epoch_float: float | None) -> None:
        """An optimizer step finished (cheap: no I/O)."""
        self.global_step = global_step
        self.monitor.mark_progress(global_step)
        self.live.update(step=global_step, epoch_float=epoch_float,
                         current_epoch=min(epoch_of(epoch_float), self.total_epochs - 1))

    def log_step(self, global_step: int, epoch_float: float | None, *, loss: float | None, lr: float | None,
                 grad_norm: float | None, extra: dict | None = None) -> str | None:
        """The step record of optimizer step ``global_step`` (steps done; the record says
        ``global_step - 1``), the monitor's alerts and samples; returns the reason to fail the run
        (a non-finite loss), else None."""
        step, epoch = global_step - 1, epoch_of(epoch_float)
        record = {"kind": "step", "epoch": epoch, "step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                  "epoch_float": epoch_float, "t": time.time(), **(extra or {})}
        if self.monitor.samples_due(step):
            record.update(self.monitor.sample(step, epoch))
        alert = self.monitor.on_step(step, loss=loss, grad_norm=grad_norm, throughput=self.live.fields["throughput"])
        if self.metrics is not None:
            self.metrics.write(record)
        if loss is not None and math.isfinite(loss):
            self._epoch_losses.append(loss)
        self.live.update(loss=loss if loss is not None and math.isfinite(loss) else None, lr=lr)
        if alert is not None:
            self.failure = alert.message
            return alert.message
        return None

    def layers_due(self, global_step: int) -> bool:
        """Whether the optimizer step about to run (``global_step`` steps done so far) is a
        layer-health step."""
        return self.writes and self.monitor.layers_due(global_step)

    def write_layers(self, step: int, epoch_float: float | None, layers: list[dict]) -> None:
        self.monitor.write_layers(step, epoch_of(epoch_float), layers)

    def check_controls(self) -> str | None:
        """Between two steps: None (go on) or why to stop (a stop request, a signal)."""
        why = self.controls.check()
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

    # ---------------------------------------------------------------- per epoch
    def evaluated(self, metrics: dict) -> None:
        """Validation scores of the epoch in progress (the latest evaluation wins)."""
        self._eval.update({k: float(v) for k, v in metrics.items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool)})

    def epoch_end(self, epoch: int, *, global_step: int, lr: float | None, early_stopped: bool = False) -> None:
        """Epoch ``epoch`` (0-based) is complete: its record, then ``progress.json``."""
        self.global_step = global_step
        losses = self._epoch_losses
        record = {"kind": "epoch", "epoch": epoch, "train_loss": sum(losses) / len(losses) if losses else None,
                  **self._eval, "lr": lr, "global_step": global_step,
                  "duration_s": time.monotonic() - self._epoch_t0, "t": time.time()}
        if self.metrics is not None:
            self.metrics.write(record)
        self._epoch_losses, self._eval, self._epoch_t0 = [], {}, time.monotonic()
        self.completed_epochs = min(epoch + 1, self.total_epochs)
        self.write_progress(early_stopped_at=epoch if early_stopped else None)
        last = early_stopped or self.completed_epochs >= self.total_epochs
        self.live.write(current_epoch=epoch if last else self.completed_epochs, step=global_step)

    def write_progress(self, *, early_stopped_at: int | None = None, finished: bool = False) -> None:
        if not self.writes:
            return
        completed = self.completed_epochs
        if early_stopped_at is not None:
            completed = early_stopped_at + 1
        elif finished:
            completed = self.total_epochs  # a run that ends by max_steps mid-epoch is done all the same
        write_json(self.paths.progress, progress_record(completed, self.total_epochs,
                                                        early_stopped_at=early_stopped_at, finished=finished))

    # ---------------------------------------------------------------- the end
    def end(self, state: str, *, error: str | None = None, early_stopped_at: int | None = None) -> None:
        """The final state (once): ``progress.json`` for a complete run, ``training_status.json``,
        then the threads and files are closed and the lock released."""
        if self.ended:
            return
        self.ended = True
        try:
            if state == EARLY_STOPPED:
                self.write_progress(early_stopped_at=early_stopped_at)
            elif state == FINISHED:
                self.write_progress(finished=True)
            final: dict = {"state": state, "error": error}
            if state in (FINISHED, EARLY_STOPPED):
                last = early_stopped_at if early_stopped_at is not None else self.total_epochs - 1
                final.update(current_epoch=last, eta_s=0.0)
            else:
                final.update(eta_s=None)
            if state == STOPPED and self.stop_reason:
                final["stop_reason"] = self.stop_reason
            self.live.write(**final)
        except Exception as e:  # the disk may be why we are failing
            log.warning("could not write the final status: %s", e)
        finally:
            self.close()

    def fail(self, error: BaseException | str) -> None:
        """The run failed with ``error`` (an exception of the trainer, or the monitor's reason)."""
        from trainkit.errors import first_line

        self.end(FAILED, error=error if isinstance(error, str) else first_line(error))

    def close(self) -> None:
        try:
            self.interrupts.__exit__(None, None, None)
        except Exception:
            pass
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.metrics is not None:
            self.metrics.close()
        self.monitor.close()
        if self.lock is not None and self.lock.held:
            self.lock.release()
