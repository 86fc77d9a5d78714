"""The training loop: setup, resume, then epochs of steps with logging, checkpoints and stops.

Reads top to bottom (nanoGPT's shape): :meth:`Trainer.setup` builds data, model and optimizer
and restores a checkpoint; :meth:`Trainer.run` loops over epochs and steps; at every step
boundary it honours signals and control requests; at every epoch end it validates, writes the
epoch artifacts, checkpoints and updates ``progress.json``. Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from trainkit import checkpoint
from trainkit.checkpoint import TrainState
from trainkit.config import TrainConfig, to_dict
from trainkit.control import ControlPoller
from trainkit.device import describe as describe_device
from trainkit.display import ProgressDisplay, fmt_duration, fmt_num
from trainkit.early_stopping import EarlyStopping
from trainkit.files import (
    JsonlWriter,
    atomic_write,
    cleanup_temp_files,
    dumps,
    iter_jsonl,
    read_json_object_or_none,
    write_json,
)
from trainkit.interrupts import EXIT_INTERRUPTED, Interrupts
from trainkit.live import Heartbeat, LiveStatus
from trainkit.runfolder import (
    EARLY_STOPPED,
    FAILED,
    FINISHED,
    FORMAT_VERSION,
    PAUSED,
    RUNNING,
    STOPPED,
    RunPaths,
    progress_record,
)
from trainkit.tasks import Task

log = logging.getLogger("trainkit")


# --------------------------------------------------------------------------------------------
# pure helpers


def get_lr(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Learning rate as a pure function of the global step (0-based)."""
    sched = cfg.lr_schedule
    if step < sched.warmup_steps:
        return cfg.lr * (step + 1) / sched.warmup_steps
    if sched.name == "constant":
        return cfg.lr
    span = max(1, total_steps - sched.warmup_steps)
    frac = min(1.0, (step - sched.warmup_steps) / span)
    if sched.name == "cosine":
        coeff = 0.5 * (1.0 + math.cos(math.pi * frac))
    else:  # linear
        coeff = 1.0 - frac
    return sched.min_lr + coeff * (cfg.lr - sched.min_lr)


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of ``epoch``: a function of (seed, epoch) only, so resume needs no state."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=g)


def dist_rank() -> tuple[int, int]:
    """(rank, world_size) from the torchrun environment; (0, 1) otherwise."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def optimizer_summary(opt: torch.optim.Optimizer) -> dict:
    """``optimizer_buffer.json``: hyperparameters and the size of the optimizer's buffers."""
    plain = (int, float, str, bool, tuple, type(None))
    groups = [{k: v for k, v in g.items() if k != "params" and isinstance(v, plain)} for g in opt.param_groups]
    buffers: dict[str, float] = {}
    steps = None
    for st in opt.state.values():
        for k, v in st.items():
            if k == "step":
                steps = int(v)
            elif torch.is_tensor(v) and v.is_floating_point():
                buffers[k] = buffers.get(k, 0.0) + float(v.float().pow(2).sum())
    return {"version": FORMAT_VERSION, "optimizer": type(opt).__name__, "param_groups": groups,
            "state_step": steps, "buffer_norms": {k: math.sqrt(v) for k, v in buffers.items()}}


# --------------------------------------------------------------------------------------------
# the trainer


@dataclass
class Outcome:
    state: str
    exit_code: int


class Trainer:
    def __init__(self, cfg: TrainConfig, paths: RunPaths, task: Task, device: torch.device, *,
                 display: ProgressDisplay, resume: checkpoint.Loaded | None = None,
                 cache_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.paths = paths
        self.task = task
        self.device = device
        self.display = display
        self.resume_from = resume
        self.cache_dir = cache_dir
        self.rank, self.world_size = dist_rank()
        self.writes = self.rank == 0
        self.config_dict = to_dict(cfg)
        self.live = LiveStatus(paths.status, heartbeat_s=cfg.heartbeat_s, enabled=self.writes)
        self.interrupts = Interrupts(lambda name: log.warning(
            "%s received: stopping after this step (Ctrl-C again to exit at once)", name))
        self.control = ControlPoller(paths.control)
        self.monitor = cfg.early_stopping.metric if cfg.early_stopping else "val_loss"
        self.monitor_mode = cfg.early_stopping.mode if cfg.early_stopping else "min"

    # ---------------------------------------------------------------- setup
    def setup(self) -> None:
        cfg = self.cfg
        if self.writes:
            for d in (self.paths.root, self.paths.checkpoints, self.paths.epochs):
                d.mkdir(parents=True, exist_ok=True)
                cleanup_temp_files(d)
        self.live.update(total_epochs=cfg.epochs, world_size=self.world_size, device=str(self.device))
        self.live.write(state=RUNNING)
        self.heartbeat = Heartbeat(self.live, self.paths.system if self.writes else None,
                                   heartbeat_s=cfg.heartbeat_s, system_every_s=cfg.system_every_s,
                                   gpu_indices=[self.device.index or 0] if self.device.type == "cuda" else None)
        if self.writes:
            self.heartbeat.start()

        if cfg.deterministic and self.device.type == "cuda":
            # CUDA has non-deterministic kernels; the CPU ones are deterministic already (and the
            # switch costs seconds of torch._dynamo imports at start).
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)

        t0 = time.monotonic()
        log.info("preparing data for task %s", cfg.task)
        data = self.task.build_data(dict(cfg.data), self.cache_dir)
        self.train_data = tuple(t.to(self.device) for t in data.train)
        self.val_data = tuple(t.to(self.device) for t in data.val)
        self.n_train = self.train_data[0].shape[0]
        self.steps_per_epoch = math.ceil(self.n_train / cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        log.info("data: %s training / %s validation samples, %d steps per epoch (%.1fs)", f"{self.n_train:,}",
                 f"{self.val_data[0].shape[0]:,}", self.steps_per_epoch, time.monotonic() - t0)

        self.model = self.task.build_model(dict(cfg.model), data).to(self.device)
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info("device: %s; model on %s (%s parameters)", describe_device(self.device),
                 next(self.model.parameters()).device, f"{n_params:,}")
        self.optimizer = make_optimizer(cfg, self.model.parameters())
        self.state = TrainState()
        self.epoch_losses: list[torch.Tensor] = []

        if self.resume_from is not None:
            self._restore(self.resume_from)
            self.resume_from = None
        self.early = self._early_stopping()

        if self.writes:
            self._drop_records_after_checkpoint()
            self.metrics = JsonlWriter(self.paths.metrics)
        self.live.batch_size = cfg.batch_size
        self.live.total_steps = self.total_steps
        self.live.update(current_epoch=self.state.epoch, step=self.state.global_step,
                         steps_per_epoch=self.steps_per_epoch)
        self.live.start_rates(self.state.global_step)

    def _restore(self, ck: checkpoint.Loaded) -> None:
        self.model.load_state_dict(ck.model)
        self.optimizer.load_state_dict(ck.optimizer)
        self.state = ck.state
        self.epoch_losses = [torch.tensor(v, dtype=torch.float32, device=self.device)
                             for v in ck.state.epoch_losses]
        checkpoint.restore_rng(ck.rng)
        log.info("resumed from checkpoint: epoch %d, %d samples into it, global step %d",
                 self.state.epoch, self.state.samples_in_epoch, self.state.global_step)

    def _early_stopping(self) -> EarlyStopping | None:
        es_cfg = self.cfg.early_stopping
        if es_cfg is None:
            return None
        es = EarlyStopping(es_cfg.metric, es_cfg.mode, es_cfg.patience, es_cfg.min_delta)
        saved = self.state.early_stopping
        if saved and saved.get("metric") == es.metric and saved.get("mode") == es.mode:
            es.best, es.best_epoch, es.bad_epochs = saved["best"], saved["best_epoch"], saved["bad_epochs"]
        elif saved:
            log.info("early stopping now monitors %s (%s): its history starts over", es.metric, es.mode)
        return es

    def _drop_records_after_checkpoint(self) -> None:
        """Make metrics.jsonl agree with the checkpoint: records written after it (before a crash)
        are dropped, and epoch folders past it are removed, so each step and epoch appears once."""
        st = self.state
        path = self.paths.metrics
        if path.exists():
            raw = path.read_bytes()
            keep = []
            dropped = 0
            for rec in iter_jsonl(path):
                kind = rec.get("kind")
                if (kind == "step" and rec.get("step", 0) >= st.global_step) or \
                        (kind == "epoch" and rec.get("epoch", 0) >= st.epoch):
                    dropped += 1
                else:
                    keep.append(rec)
            new = b"".join(dumps(r) + b"\n" for r in keep)
            if new != raw:
                atomic_write(path, lambda f: f.write(new))
                log.info("metrics.jsonl: dropped %d record(s) written after the checkpoint", dropped)
        for d in sorted(self.paths.epochs.glob("epoch_*")):
            try:
                n = int(d.name.split("_", 1)[1])
            except ValueError:
                continue
            if n >= st.epoch:
                for f in d.iterdir():
                    f.unlink()
                d.rmdir()

    # ---------------------------------------------------------------- the loop
    def run(self) -> Outcome:
        try:
            with self.interrupts:
                self.setup()
                return self._loop()
        except KeyboardInterrupt:
            return self._interrupted()
        except Exception as e:
            if self.interrupts.hard:  # e.g. torch.save turns the KeyboardInterrupt into a RuntimeError
                return self._interrupted()
            log.exception("training failed: %s", e)
            self._final_status(FAILED, error=f"{e.__class__.__name__}: {e}".splitlines()[0][:500])
            return Outcome(FAILED, 1)
        finally:
            self._cleanup()

    def _interrupted(self) -> Outcome:
        log.warning("interrupted: exiting at once; the last checkpoint stands")
        self.live.update(stop_reason="interrupted by a second Ctrl-C")
        self._final_status(STOPPED)
        return Outcome(STOPPED, EXIT_INTERRUPTED)

    def _loop(self) -> Outcome:
        cfg, st = self.cfg, self.state
        self.display.start(total_epochs=cfg.epochs)
        next_display = 0.0
        while st.epoch < cfg.epochs:
            perm = epoch_permutation(cfg.seed, st.epoch, self.n_train).to(self.device)
            epoch_t0 = time.monotonic()
            self.model.train()
            while st.samples_in_epoch < self.n_train:
                idx = perm[st.samples_in_epoch:st.samples_in_epoch + cfg.batch_size]
                batch = tuple(t[idx] for t in self.train_data)
                lr = get_lr(st.global_step, cfg, self.total_steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr

                loss = self.task.loss(self.model, batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()

                step = st.global_step
                self.epoch_losses.append(loss.detach())
                st.samples_in_epoch += idx.shape[0]
                st.global_step += 1
                if step % cfg.log_every_steps == 0:
                    value = loss.item()
                    if self.writes:
                        self.metrics.write({"kind": "step", "epoch": st.epoch, "step": step, "loss": value,
                                            "lr": lr, "t": time.time()})
                    self.live.update(loss=value, lr=lr)
                self.live.update(step=st.global_step)
                now = time.monotonic()
                if now >= next_display:
                    next_display = now + 0.25
                    self._show()
                if cfg.checkpoint.every_steps and st.global_step % cfg.checkpoint.every_steps == 0:
                    self.save_checkpoint()
                stop = self._between_steps()
                if stop is not None:
                    return stop
            self._end_epoch(time.monotonic() - epoch_t0)
            self._show()
            if self.early is not None and self.early.should_stop:
                return self._finish(EARLY_STOPPED)
        return self._finish(FINISHED)

    def _show(self) -> None:
        self.live.refresh_rates()
        f = self.live.fields
        self.display.update(epoch=self.state.epoch, step_in_epoch=len(self.epoch_losses),
                            steps_per_epoch=self.steps_per_epoch, loss=f["loss"], throughput=f["throughput"],
                            eta_s=f["eta_s"])

    def _between_steps(self) -> Outcome | None:
        """Signals and control requests, honoured between two steps. Returns an outcome to stop."""
        if self.interrupts.requested.is_set():
            return self._stop(f"{self.interrupts.signal_name} received")
        req = self.control.poll() if self.writes else None
        if req is None:
            return None
        what = req["request"]
        self.control.consume()
        ack = {"request": what, "id": req.get("id"), "done_at": time.time()}
        if what == "stop":
            self.live.update(control=ack)
            return self._stop("stop requested through control.json")
        if what == "checkpoint":
            self.save_checkpoint()
            log.info("checkpoint written on request (global step %d)", self.state.global_step)
        elif what == "pause":
            self.save_checkpoint()
            log.info("paused on request at global step %d (checkpoint written); waiting for resume",
                     self.state.global_step)
            self.live.write(state=PAUSED, control=ack)
            while True:
                if self.interrupts.requested.is_set():
                    return self._stop(f"{self.interrupts.signal_name} received while paused")
                nxt = self.control.poll(force=True)
                if nxt is not None:
                    self.control.consume()
                    ack = {"request": nxt["request"], "id": nxt.get("id"), "done_at": time.time()}
                    if nxt["request"] == "stop":
                        self.live.update(control=ack)
                        return self._stop("stop requested through control.json while paused")
                    if nxt["request"] == "resume":
                        log.info("resumed on request")
                        self.live.start_rates(self.state.global_step)
                        self.live.write(state=RUNNING, control=ack)
                        return None
                time.sleep(0.2)
        self.live.update(control=ack)
        return None

    def _end_epoch(self, duration_s: float) -> None:
        cfg, st = self.cfg, self.state
        epoch = st.epoch
        losses = torch.stack(self.epoch_losses).float().cpu() if self.epoch_losses else torch.zeros(0)
        self.model.eval()
        scores = self.task.validate(self.model, self.val_data, cfg.batch_size)
        self.model.train()
        record = {"kind": "epoch", "epoch": epoch, "train_loss": float(losses.double().mean()) if len(losses) else None,
                  **{k: float(v) for k, v in scores.items()},
                  "lr": self.optimizer.param_groups[0]["lr"], "global_step": st.global_step,
                  "duration_s": duration_s, "t": time.time()}

        improved = self._is_better(record.get(self.monitor))
        if improved:
            st.best_value, st.best_epoch = float(record[self.monitor]), epoch
        stop_now = False
        if self.early is not None:
            stop_now = self.early.update(epoch, record)
            st.early_stopping = self.early.state_dict()
            if stop_now:
                st.early_stopped_at_epoch = epoch

        if self.writes:
            edir = self.paths.epoch_dir(epoch)
            edir.mkdir(parents=True, exist_ok=True)
            atomic_write(edir / "training_losses.pt", lambda f: torch.save(losses, f))
            write_json(edir / "optimizer_buffer.json", {**optimizer_summary(self.optimizer), "epoch": epoch})
            write_json(edir / "validation_scores.json", {"version": FORMAT_VERSION, "epoch": epoch,
                                                         **{k: record[k] for k in scores}})
            self.metrics.write(record)
            if improved:
                checkpoint.save_best(self.paths.best_ckpt, model=self.model, epoch=epoch, metric=self.monitor,
                                     value=st.best_value, config=self.config_dict)

        st.epoch += 1
        st.samples_in_epoch = 0
        self.epoch_losses = []
        self.save_checkpoint()
        if self.writes:
            write_json(self.paths.progress, progress_record(st.epoch, cfg.epochs,
                                                            early_stopped_at=st.early_stopped_at_epoch,
                                                            finished=st.epoch >= cfg.epochs))
        self.live.write(current_epoch=min(st.epoch, cfg.epochs - 1), step=st.global_step)
        shown = "  ".join(f"{k} {fmt_num(record[k])}" for k in ("train_loss", *scores) if record.get(k) is not None)
        note = f"  (best {self.monitor} so far)" if improved else ""
        if stop_now:
            note += f"  early stopping: no improvement in {self.early.patience} epoch(s)"
        log.info("epoch %d [%d/%d]  %s  %.1fs  ETA %s%s", epoch, epoch + 1, cfg.epochs, shown, duration_s,
                 fmt_duration(self.live.fields["eta_s"]), note)

    def _is_better(self, value: object) -> bool:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        best = self.state.best_value
        if best is None:
            return True
        return value < best if self.monitor_mode == "min" else value > best

    def save_checkpoint(self) -> None:
        if not self.writes:
            return
        st = self.state
        st.epoch_losses = [float(v) for v in self.epoch_losses]
        checkpoint.save(self.paths.current_ckpt, model=self.model, optimizer=self.optimizer, state=st,
                        config=self.config_dict)
        write_json(self.paths.current_meta, {
            "version": FORMAT_VERSION, "last_epoch": st.last_epoch, "epochs_done": st.epoch,
            "samples_in_epoch": st.samples_in_epoch, "global_step": st.global_step,
            "best_loss": st.best_value, "best_metric": self.monitor, "best_epoch": st.best_epoch,
            "early_stopped_at_epoch": st.early_stopped_at_epoch, "saved_at": time.time()})

    def _stop(self, why: str) -> Outcome:
        self.live.update(stop_reason=why)
        self.save_checkpoint()
        log.info("stopped (%s) at epoch %d, global step %d; the checkpoint is saved: run the same "
                 "command again to resume", why, self.state.epoch, self.state.global_step)
        return self._finish(STOPPED)

    def _finish(self, state: str) -> Outcome:
        st = self.state
        if state in (FINISHED, EARLY_STOPPED):
            best = f"best {self.monitor} {fmt_num(st.best_value)} at epoch {st.best_epoch}"
            if state == EARLY_STOPPED:
                log.info("early stopped after epoch %d (%d of %d epochs ran); %s", st.early_stopped_at_epoch,
                         st.epoch, self.cfg.epochs, best)
            else:
                log.info("finished %d epochs; %s", st.epoch, best)
        self._final_status(state)
        return Outcome(state, 0)

    def _final_status(self, state: str, error: str | None = None) -> None:
        if hasattr(self, "steps_per_epoch"):
            self._show()
        self.display.close()
        try:
            self.live.write(state=state, error=error, eta_s=0.0 if state in (FINISHED, EARLY_STOPPED) else None)
        except Exception as e:  # the disk may be why we are failing
            log.warning("could not write the final status: %s", e)

    def _cleanup(self) -> None:
        self.display.close()
        hb = getattr(self, "heartbeat", None)
        if hb is not None:
            hb.stop()
        metrics = getattr(self, "metrics", None)
        if metrics is not None:
            metrics.close()


def finalize_complete_run(paths: RunPaths, ck: checkpoint.Loaded, total_epochs: int) -> bool:
    """A checkpoint that is complete, but status/progress files that don't say so (a crash between
    the last checkpoint and the final status): rewrite them. Returns True if anything was repaired."""
    st = ck.state
    early = st.early_stopped_at_epoch
    want_state = EARLY_STOPPED if early is not None else FINISHED
    status = read_json_object_or_none(paths.status) or {}
    progress = read_json_object_or_none(paths.progress) or {}
    repaired = False
    if progress.get("finished") is not True or progress.get("completed_epochs") != st.epoch:
        write_json(paths.progress, progress_record(st.epoch, max(total_epochs, st.epoch) if early is None else
                                                   total_epochs, early_stopped_at=early, finished=True))
        repaired = True
    if status.get("state") != want_state:
        status.update({"version": FORMAT_VERSION, "state": want_state, "current_epoch": max(st.epoch - 1, 0),
                       "step": st.global_step, "heartbeat_at": time.time(), "eta_s": 0.0})
        write_json(paths.status, status)
        repaired = True
    return repaired
