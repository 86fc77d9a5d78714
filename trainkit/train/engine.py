"""The training loop: setup, resume, then epochs of steps with logging, checkpoints and stops.

Reads top to bottom (nanoGPT's shape): :meth:`Trainer.setup` builds data, model and optimizer
and restores the checkpoint; :meth:`Trainer.run` loops over epochs and steps; between two steps it
asks :class:`~trainkit.runfolder.control.Controls` whether to go on; at every epoch end it measures the epoch
(validation, best value, early stopping), then writes the epoch's files, checkpoints and updates
``progress.json``. The session (:mod:`trainkit.train.session`) has claimed and prepared the folder;
every write into it goes through the session's :class:`~trainkit.runfolder.writer.RunWriter`
(checkpoints and best.pt through :mod:`trainkit.train.checkpoint`). Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass

import torch

from trainkit.config import TrainConfig, build, to_dict, without_meta
from trainkit.early_stopping import EarlyStopping, best_rule, carried_over, is_better, normalized
from trainkit.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UserError, first_line
from trainkit.formatting import fmt_duration, fmt_num
from trainkit.interrupts import Interrupts
from trainkit.monitor import Alert, Monitor, grad_norm_of, layer_health, layer_snapshot
from trainkit.runfolder import (
    CRASHED,
    EARLY_STOPPED,
    FAILED,
    FINISHED,
    FORMAT_VERSION,
    RUNNING,
    STOPPED,
)
from trainkit.runfolder.control import Controls
from trainkit.runfolder.files import cleanup_temp_files
from trainkit.runfolder.writer import RunWriter, epoch_record
from trainkit.train import checkpoint
from trainkit.train.checkpoint import TrainState
from trainkit.train.ddp import Dist
from trainkit.train.device import device_label
from trainkit.train.display import ProgressDisplay
from trainkit.train.schedule import anchor_on_resume, get_lr, remaining_steps
from trainkit.train.session import ENGINE_EPOCH_KEYS, Prepared, check_metric_name, epoch_records, load_prompts

log = logging.getLogger("trainkit")


# --------------------------------------------------------------------------------------------
# pure helpers


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of ``epoch``: a function of (seed, epoch) only, so resume needs no state."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=g)


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


@dataclass
class EpochResult:
    """What an epoch measured: its record (as in ``metrics.jsonl``), the validation scores, the
    per-step losses, whether it is the best so far and whether early stopping triggered."""

    record: dict
    scores: dict
    losses: torch.Tensor
    improved: bool
    stop: bool


class _Records:
    """The epoch records of the epochs before ``n``, read once, when first needed."""

    def __init__(self, paths, n: int, metrics: set[str]) -> None:
        self.paths, self.n, self.metrics, self._records = paths, n, metrics, None

    def __call__(self) -> list[dict | None]:
        if self._records is None:
            self._records = epoch_records(self.paths, self.n, self.metrics)
        return self._records


class Trainer:
    def __init__(self, prep: Prepared, device: torch.device, *, display: ProgressDisplay) -> None:
        cfg = prep.config
        self.cfg = cfg
        self.paths = prep.paths
        self.task = prep.task
        self.dist = Dist.from_env()
        self.device = self.dist.device(device)
        self.display = display
        self.resume_from = prep.resume
        self.resumed_loss = prep.resumed_loss  # the last logged loss before this session (shown at once)
        self.check_metric = prep.check_metric  # the monitored name is checked against a first validation
        self.cache_dir = prep.cache_dir
        self.rank, self.world_size = self.dist.rank, self.dist.world
        self.writes = prep.writes
        self.config_dict = to_dict(cfg)
        self.best_metric, self.best_mode = best_rule(self.config_dict)  # what best.pt keeps
        self.writer = prep.writer or RunWriter(self.paths.root, writes=self.writes)
        self.live = self.writer.live
        self.interrupts = Interrupts(lambda name: log.warning(
            "%s received: stopping after this step (Ctrl-C again to exit at once)", name))
        self.controls = Controls(self.paths.control, self.interrupts, checkpoint=self.save_checkpoint,
                                 report=self._control_report, enabled=self.writes,
                                 step=lambda: self.state.global_step)
        # built by setup()
        self.state = TrainState()
        self.early: EarlyStopping | None = None
        self.epoch_losses: list[torch.Tensor] = []
        self.train_data: tuple[torch.Tensor, ...] = ()
        self.val_data: tuple[torch.Tensor, ...] = ()
        self.n_train = 0
        self.steps_per_epoch = 0
        self.total_steps = 0
        self.model: torch.nn.Module | None = None  # validated, sampled, checkpointed
        self.train_model: torch.nn.Module | None = None  # what the steps call: the model, or DDP around it
        self.params: list[torch.nn.Parameter] = []  # the model's, listed once (walking the modules each step costs)
        self.optimizer: torch.optim.Optimizer | None = None
        self.monitor: Monitor | None = None
        self._ended_together = False

    # ---------------------------------------------------------------- setup
    def setup(self) -> None:
        cfg = self.cfg
        self.writer.subfolders(self.paths.checkpoints, self.paths.epochs)
        self.live.update(total_epochs=cfg.epochs, world_size=self.world_size, device=str(self.device))
        if self.resume_from is not None:  # the first heartbeat already shows where the run stands
            rs = self.resume_from.state
            loss = rs.epoch_losses[-1] if rs.epoch_losses else self.resumed_loss
            self.live.update(current_epoch=min(rs.epoch, cfg.epochs - 1), step=rs.global_step,
                             loss=loss if loss is not None and math.isfinite(loss) else None)
        self.writer.go_live(heartbeat_s=cfg.heartbeat_s, system_every_s=cfg.system_every_s,
                            gpu_indices=[self.device.index or 0] if self.device.type == "cuda" else None,
                            on_beat=self._on_beat,
                            scope={"rank": self.rank, "world_size": self.world_size} if self.world_size > 1 else None)

        if cfg.deterministic and self.device.type == "cuda":
            # CUDA has non-deterministic kernels; the CPU ones are deterministic already (and the
            # switch costs seconds of torch._dynamo imports at start).
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.dist.start(self.device)

        t0 = time.monotonic()
        log.info("preparing data for task %s", cfg.task)
        data = self.task.build_data(dict(cfg.data), self.cache_dir)
        self.train_data = tuple(t.to(self.device) for t in data.train)
        self.val_data = tuple(t.to(self.device) for t in data.val)
        self.n_train = self.train_data[0].shape[0]
        self.steps_per_epoch = math.ceil(self.n_train / cfg.batch_size)
        last = self.n_train % cfg.batch_size
        if self.dist.active and 0 < last < self.world_size:
            raise ValueError(f"the last batch of an epoch holds {last} sample(s), fewer than the {self.world_size} "
                             "processes: change batch_size or the training set's size")
        log.info("data: %s training / %s validation samples, %d steps per epoch (%.1fs)", f"{self.n_train:,}",
                 f"{self.val_data[0].shape[0]:,}", self.steps_per_epoch, time.monotonic() - t0)

        self.model = self.task.build_model(dict(cfg.model), data).to(self.device)
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info("device: %s; model on %s (%s parameters)", device_label(self.device),
                 next(self.model.parameters()).device, f"{n_params:,}")
        self.train_model = self.dist.wrap(self.model, self.device)
        self.params = list(self.model.parameters())
        self.optimizer = make_optimizer(cfg, self.params)
        resumed = self.resume_from
        if resumed is not None:
            self._restore(resumed)
            self.resume_from = None
        st = self.state
        self.total_steps = st.global_step + remaining_steps(self.n_train, cfg.batch_size, st.epoch,
                                                            st.samples_in_epoch, cfg.epochs)
        records = _Records(self.paths, st.epoch, {self.best_metric})
        if resumed is not None:
            self._continue_schedule(resumed.config)
            if best_rule(resumed.config) != (self.best_metric, self.best_mode) and st.epoch > 0:
                self._rederive_best(records())
        self.early = self._early_stopping(records)
        if self.check_metric:
            self._check_monitored_metric()
        self.monitor = self._monitor()

        if self.writes:
            self.monitor.open()
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

    def _early_stopping(self, records: _Records) -> EarlyStopping | None:
        """Early stopping as it goes on from the checkpoint: the saved counters (a changed patience
        or min_delta applies from now on), or rebuilt over the epochs so far when the metric or
        the mode changed (:func:`trainkit.early_stopping.carried_over`, as every replay does)."""
        settings = normalized(to_dict(self.cfg.early_stopping) if self.cfg.early_stopping else None)
        saved = self.state.early_stopping
        before = EarlyStopping.from_state(saved) if saved else None
        if settings is None:
            return None
        if self.state.epoch == 0 or (before is not None and (before.metric, before.mode) ==
                                     (settings["metric"], settings["mode"])):
            return carried_over(before, settings, [])
        es = carried_over(before, settings, records())
        log.info("early stopping now monitors %s (%s): counted again over the %d epoch(s) so far: best %s at "
                 "epoch %s, %d epoch(s) without an improvement since", es.metric, es.mode, self.state.epoch,
                 fmt_num(es.best), es.best_epoch, es.bad_epochs)
        return es

    def _continue_schedule(self, old_config: dict) -> None:
        """Re-anchor the learning-rate schedule when this session changed what it depends on
        (epochs, batch size, lr, the schedule's settings): the rate goes on from the last step's."""
        st = self.state
        try:
            old = build(TrainConfig, without_meta(old_config), "the checkpoint's config")
        except UserError as e:
            log.warning("the checkpoint's config cannot be read (%s): the schedule is taken as unchanged", e)
            return
        old_end = int(st.lr_anchor["end"]) if st.lr_anchor else \
            math.ceil(self.n_train / old.batch_size) * old.epochs
        anchor = anchor_on_resume(step=st.global_step, old_cfg=old, old_end=old_end, old_anchor=st.lr_anchor,
                                  new_cfg=self.cfg, new_end=self.total_steps)
        if anchor is not st.lr_anchor:
            log.info("learning-rate schedule changed on resume: it goes on from %s at step %d (%s, to min_lr %s at "
                     "step %d) instead of jumping", fmt_num(anchor["lr"]), anchor["step"], self.cfg.lr_schedule.name,
                     fmt_num(self.cfg.lr_schedule.min_lr), anchor["end"])
        st.lr_anchor = anchor

    def _rederive_best(self, records: list[dict | None]) -> None:
        """The rule best.pt is chosen by changed on resume (another early-stopping metric or mode):
        the best is measured again under the new rule. Only the models whose weights exist can be
        best.pt: the one best.pt holds and, at an epoch boundary, the checkpoint's (the last epoch's).
        The best of those becomes best.pt; a better epoch whose weights are gone is named in the log."""
        st, metric, mode = self.state, self.best_metric, self.best_mode
        value = lambda e: (records[e] or {}).get(metric) if 0 <= e < len(records) else None  # noqa: E731
        held = None
        if self.paths.best_ckpt.is_file():
            try:
                held = checkpoint.load_best(self.paths.best_ckpt).epoch
            except checkpoint.CheckpointError as e:
                log.warning("%s", e)
        candidates = [e for e in (held, st.epoch - 1 if st.samples_in_epoch == 0 else None) if isinstance(e, int)]
        best_value, best_epoch = None, None
        for e in candidates:
            if is_better(value(e), best_value, mode):
                best_value, best_epoch = float(value(e)), e
        overall_value, overall_epoch = None, None
        for e in range(len(records)):
            if is_better(value(e), overall_value, mode):
                overall_value, overall_epoch = float(value(e)), e
        st.best_value, st.best_epoch = best_value, best_epoch
        if self.writes:
            if best_epoch is None:
                moved = self.writer.move_aside([self.paths.best_ckpt])
                if moved is not None:
                    log.info("best.pt was the best by another rule; moved to %s until an epoch is best by %s (%s)",
                             moved, metric, mode)
            elif best_epoch != held:
                checkpoint.save_best(self.paths.best_ckpt, model=self.model, epoch=best_epoch, metric=metric,
                                     mode=mode, value=best_value, config=self.config_dict)
            elif self.paths.best_ckpt.is_file():  # the same weights, now labelled with the rule they are best by
                checkpoint.relabel_best(self.paths.best_ckpt, metric=metric, mode=mode, value=best_value,
                                        config=self.config_dict)
        log.info("best.pt is now chosen by %s (%s): epoch %s, %s %s", metric, mode, best_epoch, metric,
                 fmt_num(best_value))
        if overall_epoch is not None and overall_epoch != best_epoch:
            log.warning("by %s (%s) the best epoch so far is %d (%s), but its weights were not kept; best.pt holds "
                        "epoch %s, the best model there are weights of", metric, mode, overall_epoch,
                        fmt_num(overall_value), best_epoch)

    def _check_monitored_metric(self) -> None:
        """A new run whose task does not name its validation metrics: validate the untrained model
        once (the RNG forked, so training is unchanged) and check the monitored name against it."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                keys = self.task.validate(self.model, self.val_data, self.cfg.batch_size)
        finally:
            self.model.train()
        check_metric_name(self.cfg, set(keys) | set(ENGINE_EPOCH_KEYS), "the first validation")

    def _monitor(self) -> Monitor:
        """Inference samples when the task can generate and someone has prompts (the config's
        file, else the profile's, else the task's); alerts and layer health always (as configured)."""
        mcfg, task = self.cfg.monitor, self.task
        prompts = load_prompts(mcfg.prompts) if mcfg.prompts else None
        if prompts is None and task.profile is not None:
            prompts = task.profile.sample_prompts()
        if prompts is None:
            prompts = task.sample_prompts()
        sampler = self._sample if prompts and getattr(task, "generate", None) else None
        return Monitor(mcfg, self.paths, writes=self.writes, sampler=sampler, prompts=prompts, profile=task.profile,
                       report_alerts=lambda latest: self.live.update(alerts=latest))

    def _sample(self, texts: list[str]) -> list[str]:
        """The model's answers to ``texts``, in eval mode and with the RNG forked: the training
        that follows is exactly what it would have been without the samples."""
        was_training = self.model.training
        self.model.eval()
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                return self.task.generate(self.model, texts, device=self.device,
                                          max_new_tokens=self.cfg.monitor.max_new_tokens)
        finally:
            self.model.train(was_training)

    def _on_beat(self) -> None:
        if self.monitor is not None:
            self.monitor.check_stall()

    # ---------------------------------------------------------------- the loop
    def run(self) -> Outcome:
        try:
            with self.interrupts:
                self.setup()
                outcome = self._loop()
                self._ended_together = True  # every rank left the loop at the same step
                return outcome
        except KeyboardInterrupt:
            return self._interrupted()
        except UserError as e:  # a setting found wrong once the model exists: one line, nothing trained
            log.error("%s", e)
            self._final_status(FAILED, error=str(e))
            return Outcome(FAILED, EXIT_USAGE)
        except Exception as e:
            if self.interrupts.hard:  # e.g. torch.save turns the KeyboardInterrupt into a RuntimeError
                return self._interrupted()
            if self.writer.check_folder() is not None:  # e.g. an epoch's files could not be written: one line
                log.error("%s", self.writer.gone)
                return Outcome(FAILED, EXIT_FAILED)
            if self.dist.peer_lost(e):  # another rank died: the job is down, as torchrun takes it down
                log.error("a process of the job is gone (%s): the job is down; the run reads crashed and "
                          "`trainkit launch` relaunches it", first_line(e, limit=200))
                return Outcome(CRASHED, EXIT_FAILED)
            log.exception("training failed: %s", e)
            self._final_status(FAILED, error=first_line(e))
            return Outcome(FAILED, EXIT_FAILED)
        finally:
            self._cleanup()

    def _interrupted(self) -> Outcome:
        log.warning("interrupted: exiting at once; the last checkpoint stands")
        # A second Ctrl-C can land between a checkpoint's temp file and its rename (or before the
        # write's own cleanup ran): no half-written file stays beside the checkpoint that stands.
        cleanup_temp_files(self.writer.paths.checkpoints)
        self.live.update(stop_reason="interrupted by a second Ctrl-C")
        self._final_status(STOPPED)
        return Outcome(STOPPED, EXIT_INTERRUPTED)

    def _loop(self) -> Outcome:
        cfg, st = self.cfg, self.state
        self.display.start(total_epochs=cfg.epochs)
        next_display = 0.0
        while st.epoch < cfg.epochs:
            perm = epoch_permutation(cfg.seed, st.epoch, self.n_train).to(self.device)
            epoch_t0, paused0 = time.monotonic(), self.controls.paused_s
            self.live.restart_interval()  # the last epoch's end is not part of this epoch's rate
            self.model.train()
            while st.samples_in_epoch < self.n_train:
                idx = perm[st.samples_in_epoch:st.samples_in_epoch + cfg.batch_size]
                shard = self.dist.shard(idx)  # the whole batch in one process; rank r's part under DDP
                batch = tuple(t[shard] for t in self.train_data)
                lr = get_lr(st.global_step, cfg, self.total_steps, st.lr_anchor)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self.dist.reseed(cfg.seed, st.global_step)

                loss = self.task.loss(self.train_model, batch)
                self.optimizer.zero_grad(set_to_none=True)
                self.dist.weighted(loss, len(shard), len(idx)).backward()
                loss = self.dist.global_loss(loss, len(shard), len(idx))
                step = st.global_step
                recorded = step % cfg.log_every_steps == 0 or self.monitor.wants_record(step)
                # a recorded step's norm, taken while the gradients are fresh in the cache (after the
                # optimizer's step it took half again as long)
                if cfg.grad_clip > 0:
                    norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
                else:
                    norm = grad_norm_of(self.params) if recorded else None
                before = layer_snapshot(self.model) if self.writes and self.monitor.layers_due(step) else None
                self.optimizer.step()

                self.epoch_losses.append(loss.detach())
                st.samples_in_epoch += idx.shape[0]
                st.global_step += 1
                self.monitor.mark_progress(st.global_step)
                if recorded:
                    alert = self._log_step(step, loss, lr, norm)
                    if alert is not None:
                        return self._fail(alert.message)
                if before is not None:
                    self.monitor.write_layers(step, st.epoch, layer_health(self.model, before))
                self.live.update(step=st.global_step)
                now = time.monotonic()
                if now >= next_display:
                    next_display = now + 0.25
                    self._show()
                if cfg.checkpoint.every_steps and st.global_step % cfg.checkpoint.every_steps == 0:
                    self.save_checkpoint()
                why = self.dist.decide(self.writer.gone or self.controls.check())
                if why is not None:
                    return self._stop(why)
            result = self._measure_epoch(time.monotonic() - epoch_t0 - (self.controls.paused_s - paused0))
            self._end_epoch(result)
            if result.stop:
                return self._finish(EARLY_STOPPED)
        return self._finish(FINISHED)

    def _log_step(self, step: int, loss: torch.Tensor, lr: float, norm: torch.Tensor | float) -> Alert | None:
        """The step record (loss, lr, global gradient norm, the samples' rates on a sample step)
        and the monitor's alerts; returns the alert that must stop the run (a non-finite loss)."""
        st = self.state
        value = loss.item()
        gn = float(norm)  # (a tensor on an accelerator: read here, once per record)
        rates = self.monitor.sample(step, st.epoch) if self.writes and self.monitor.samples_due(step) else {}
        stop = self.monitor.on_step(step, loss=value, grad_norm=gn, throughput=self.live.fields["throughput"])
        self.writer.step(step, st.epoch, loss=value, lr=lr, grad_norm=gn, **rates)
        self.live.update(loss=value if math.isfinite(value) else None, lr=lr)
        return stop

    def _fail(self, why: str) -> Outcome:
        """Stop without checkpointing (the weights are not to be trusted): the last checkpoint stands."""
        log.error("training failed: %s; the last checkpoint stands", why)
        self._final_status(FAILED, error=why)
        return Outcome(FAILED, EXIT_FAILED)

    def _show(self) -> None:
        """The terminal display; after an epoch's end it shows that epoch complete (not the next
        one at step 0, nor an epoch past the last)."""
        self.live.refresh_rates()
        f, st = self.live.fields, self.state
        epoch, step = st.epoch, len(self.epoch_losses)
        if step == 0 and st.epoch > 0:
            epoch, step = st.epoch - 1, self.steps_per_epoch
        self.display.update(epoch=epoch, step_in_epoch=step, steps_per_epoch=self.steps_per_epoch, loss=f["loss"],
                            throughput=f["throughput"], eta_s=f["eta_s"])

    def _control_report(self, state: str | None, ack: dict) -> None:
        """What :class:`~trainkit.runfolder.control.Controls` did, into ``training_status.json``."""
        if state is None:
            self.live.update(control=ack)
            return
        if state == RUNNING:
            self.live.start_rates(self.state.global_step)
        self.live.write(state=state, control=ack)

    # ---------------------------------------------------------------- epoch end
    def _measure_epoch(self, duration_s: float) -> EpochResult:
        """Validate, then decide: best so far? early stop? Touches no file."""
        st = self.state
        losses = torch.stack(self.epoch_losses).float().cpu() if self.epoch_losses else torch.zeros(0)
        self.model.eval()
        scores = {k: float(v) for k, v in self.task.validate(self.model, self.val_data, self.cfg.batch_size).items()}
        self.model.train()
        record = epoch_record(st.epoch, train_loss=float(losses.double().mean()) if len(losses) else None,
                              scores=scores, lr=self.optimizer.param_groups[0]["lr"], global_step=st.global_step,
                              duration_s=duration_s)
        improved = is_better(record.get(self.best_metric), st.best_value, self.best_mode)
        if improved:
            st.best_value, st.best_epoch = float(record[self.best_metric]), st.epoch
        stop = False
        st.early_stopping = None
        if self.early is not None:
            stop = self.early.update(st.epoch, record)
            st.early_stopping = self.early.state_dict()
            if stop:
                st.early_stopped_at_epoch = st.epoch
        return EpochResult(record, scores, losses, improved, stop)

    def _end_epoch(self, result: EpochResult) -> None:
        """Write the epoch's files, move the counters on, checkpoint, update the progress."""
        cfg, st = self.cfg, self.state
        epoch, record = st.epoch, result.record
        if self.writes:
            self._write_epoch_files(result)
            self.writer.append(record)
            if result.improved:
                checkpoint.save_best(self.paths.best_ckpt, model=self.model, epoch=epoch, metric=self.best_metric,
                                     mode=self.best_mode, value=st.best_value, config=self.config_dict)
        st.epoch += 1
        st.samples_in_epoch = 0
        self.epoch_losses = []
        self.save_checkpoint()
        self.writer.write_progress(st.epoch, cfg.epochs, early_stopped_at=st.early_stopped_at_epoch,
                                   finished=st.epoch >= cfg.epochs)
        last = result.stop or st.epoch >= cfg.epochs
        self.live.write(current_epoch=epoch if last else st.epoch, step=st.global_step)
        self._show()
        shown = "  ".join(f"{k} {fmt_num(record[k])}" for k in ("train_loss", *result.scores)
                          if record.get(k) is not None)
        note = f"  (best {self.best_metric} so far)" if result.improved else ""
        if result.stop:
            note += f"  early stopping: no improvement in {self.early.patience} epoch(s)"
        log.info("epoch %d [%d/%d]  %s  %.1fs  ETA %s%s", epoch, epoch + 1, cfg.epochs, shown, record["duration_s"],
                 fmt_duration(self.live.fields["eta_s"]), note)

    def _write_epoch_files(self, result: EpochResult) -> None:
        """``epochs/epoch_NNNN/``: the per-step losses, the optimizer's summary, and the scores:
        the validation scores plus every other number of the epoch record, so that early stopping
        on any key of the record (e.g. ``train_loss``) can be replayed from the folders alone."""
        values = {k: v for k, v in result.record.items() if k not in ("kind", "epoch", "t")}
        self.writer.epoch_files(self.state.epoch, write_losses=lambda f: torch.save(result.losses, f),
                                optimizer=optimizer_summary(self.optimizer), values=values)

    # ---------------------------------------------------------------- checkpoints and the end
    def save_checkpoint(self) -> None:
        if not self.writes:
            return
        st = self.state
        st.epoch_losses = [float(v) for v in self.epoch_losses]
        checkpoint.save(self.paths.current_ckpt, model=self.model, optimizer=self.optimizer, state=st,
                        config=self.config_dict)
        self.writer.checkpoint_meta({
            "last_epoch": st.last_epoch, "epochs_done": st.epoch, "samples_in_epoch": st.samples_in_epoch,
            "global_step": st.global_step, "best_loss": st.best_value, "best_metric": self.best_metric,
            "best_mode": self.best_mode, "best_epoch": st.best_epoch,
            "early_stopped_at_epoch": st.early_stopped_at_epoch})

    def _stop(self, why: str) -> Outcome:
        if self.writer.gone is not None:  # nothing can be saved where the run folder was
            log.error("%s", self.writer.gone)
            self.display.close()
            return Outcome(FAILED, EXIT_FAILED)
        self.live.update(stop_reason=why)
        self.save_checkpoint()
        log.info("stopped (%s) at epoch %d, global step %d; the checkpoint is saved: run the same "
                 "command again to resume", why, self.state.epoch, self.state.global_step)
        return self._finish(STOPPED)

    def _finish(self, state: str) -> Outcome:
        st = self.state
        if state in (FINISHED, EARLY_STOPPED):
            best = f"best {self.best_metric} {fmt_num(st.best_value)} at epoch {st.best_epoch}"
            if state == EARLY_STOPPED:
                log.info("early stopped after epoch %d (%d of %d epochs ran); %s", st.early_stopped_at_epoch,
                         st.epoch, self.cfg.epochs, best)
            else:
                log.info("finished %d epochs; %s", st.epoch, best)
        self._final_status(state)
        return Outcome(state, 0)

    def _final_status(self, state: str, error: str | None = None) -> None:
        # before anything is drawn: a terminal that is gone or blocked never costs the final state
        self.writer.final(state, error=error, last_epoch=max(self.state.epoch - 1, 0))
        if self.model is not None:
            self._show()
        self.display.close()

    def _cleanup(self) -> None:
        self.display.close()
        self.writer.close()
        if self.monitor is not None:
            self.monitor.close()
        self.dist.stop(together=self._ended_together)
