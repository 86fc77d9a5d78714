"""The one writer of a training session's run folder, in the contract's package: trainkit's engine
and session, the Hugging Face and Lightning callbacks (:mod:`trainkit.integrations`), the
synthetic runs of tests (:mod:`trainkit.testing`) and trainmon's demo write through
:class:`RunWriter`, so they agree on every file, field and rule.

A session, in this order (the engine's, and every other trainer's):

1. :meth:`RunWriter.claim`: the run's lock, before anything in the folder is read that the session
   acts on. An existing folder is locked where it is, never created again (a folder moved away
   meanwhile is a one-line error); a missing one is created only for a new run.
2. The session reads the folder and decides (resume or new), then :meth:`~RunWriter.move_aside`
   (a new training over an earlier one, when asked), :meth:`~RunWriter.write_resolved` (the
   settings with one ``_meta`` schema, :func:`resolved_meta`), :meth:`~RunWriter.trim` (what was
   written after the checkpoint: one rule, :func:`after_checkpoint`) and
   :meth:`~RunWriter.write_progress` with the session's target.
3. :meth:`~RunWriter.go_live`: ``training_status.json`` says running, the heartbeat thread keeps it
   fresh and samples ``system.jsonl``; it also notices a folder that vanished (:attr:`RunWriter.gone`).
4. Records, appended to ``metrics.jsonl`` one line each: :meth:`~RunWriter.step`,
   :meth:`~RunWriter.evaluation`, :meth:`~RunWriter.logged`, :meth:`~RunWriter.epoch`; the epoch's
   folder (:meth:`~RunWriter.epoch_files`), the checkpoint's summary
   (:meth:`~RunWriter.checkpoint_meta`) and ``progress.json`` at each epoch end.
5. :meth:`~RunWriter.final`: the final state; :meth:`~RunWriter.close`: threads, files, the lock.

It takes plain values (numbers, strings, mappings) and imports no torch. Only a process that
``writes`` (DDP rank 0) touches a file; the others keep the same calls and write nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from trainkit.runfolder import (
    COMPLETE,
    CONFIG_STEM,
    EPOCH_FILES,
    FILES,
    FORMAT_VERSION,
    JSONL,
    RUNNING,
    RunPaths,
    move_aside,
    progress_record,
    readers,
)
from trainkit.runfolder.files import (
    JsonlWriter,
    atomic_write,
    cleanup_temp_files,
    iter_jsonl,
    truncate_tail,
    write_json,
)
from trainkit.runfolder.live import Heartbeat, LiveStatus
from trainkit.runfolder.lock import HANDOFF_ENV, LockHeld, RunLock

log = logging.getLogger("trainkit")

#: the kinds of the records of ``metrics.jsonl``
STEP, EPOCH, EVAL, LOG = "step", "epoch", "eval", "log"
#: the keys trainkit's records own: a score or a logged value never overwrites them
OWN_KEYS = frozenset({"kind", "epoch", "step", "global_step", "train_loss", "loss", "lr", "grad_norm", "duration_s",
                      "epoch_float", "logged", "t"})
#: ``_meta.trainer`` of a run trained by trainkit's own engine
ENGINE = "trainkit"
#: the engine's settings of the live files (the callbacks use the same)
HEARTBEAT_S = 5.0
SYSTEM_EVERY_S = 10.0


class FolderGone(LockHeld):
    """The run folder is not there (moved or deleted) when the session claims it; one line."""


# --------------------------------------------------------------------------------------------
# pure rules


def resolved_meta(previous: dict | None, *, trainer: str, source: str | None, launch: dict | None = None,
                  relaunch: dict | None = None, overrides: Iterable[str] = (), epochs_arg: int | None = None,
                  changes: Iterable[tuple[str, object, object]] = (), at_epoch: int = 0,
                  task_defaults: dict | None = None, now: float | None = None) -> dict:
    """``resolved_config.json``'s ``_meta``, one schema for every trainer: ``version``, ``trainer``
    (``trainkit``, ``hf``, ``lightning``), ``source`` (where the settings came from), ``launch``
    (``{cwd, torchrun}``: how ``trainkit launch`` starts it again), ``relaunch`` (``{argv, cwd}``:
    the command another trainer recorded, or absent), ``overrides`` (``--set``), ``epochs_arg``
    (``--epochs``), ``written_at`` and ``history`` (the changes of each resume, carried over from
    ``previous``, the ``_meta`` before this session) and, for trainkit's tasks, ``task_defaults``
    (the task's own defaults the run started from: a new run's, kept on every resume)."""
    now = time.time() if now is None else now
    history = list((previous or {}).get("history") or [])
    changes = list(changes)
    if changes:
        history.append({"t": now, "at_epoch": at_epoch,
                        "changes": [{"field": f, "old": a, "new": b} for f, a, b in changes]})
    meta: dict = {"version": FORMAT_VERSION, "trainer": trainer, "source": source,
                  "launch": launch or {"cwd": os.getcwd(), "torchrun": None}, "overrides": list(overrides),
                  "epochs_arg": epochs_arg, "written_at": now, "history": history}
    if relaunch is not None:
        meta["relaunch"] = relaunch
    started_with = previous.get("task_defaults") if previous is not None else task_defaults
    if started_with is not None:
        meta["task_defaults"] = started_with
    return meta


def after_checkpoint(global_step: int, epochs_done: int) -> Callable[[dict], bool]:
    """The one rule of what a resume cuts: a record of a step at or after ``global_step`` (0-based
    steps: the checkpoint holds steps ``0..global_step-1``; step, evaluation, log and the monitor's
    records alike) and an epoch record of an epoch at or after ``epochs_done`` (epochs complete at
    the checkpoint)."""
    def after(rec: dict) -> bool:
        if rec.get("kind") == EPOCH:
            n = rec.get("epoch")
            return isinstance(n, int) and n >= epochs_done
        n = rec.get("step")
        return isinstance(n, int) and not isinstance(n, bool) and n >= global_step

    return after


def epoch_record(epoch: int, *, train_loss: float | None, scores: dict, lr: float | None, global_step: int,
                 duration_s: float, **extra: Any) -> dict:
    """The record of the complete epoch ``epoch`` (0-based): the mean training loss, the
    validation scores (``val_loss``, ...), the learning rate, the steps done, the duration (pauses
    left out); ``extra``: more fields (``logged``: what the user's code logged for the epoch, under
    its own names). The scores never overwrite the other keys."""
    return {"kind": EPOCH, "epoch": epoch, "train_loss": train_loss,
            **{k: v for k, v in scores.items() if k not in OWN_KEYS}, "lr": lr, "global_step": global_step,
            "duration_s": duration_s, **extra, "t": time.time()}


# --------------------------------------------------------------------------------------------
# the writer


class RunWriter:
    """Everything a training session writes into its run folder (see the module docstring).

    ``writes`` False (a DDP rank other than 0): every call is accepted and nothing is written.
    ``durable`` False: JSON files are not fsynced (synthetic runs). ``clock``: the time written as
    ``heartbeat_at``, ``started_at`` and ``saved_at`` (synthetic runs of a given age)."""

    def __init__(self, root: str | os.PathLike, *, writes: bool = True, heartbeat_s: float = HEARTBEAT_S,
                 durable: bool = True, clock: Callable[[], float] = time.time) -> None:
        self.paths = RunPaths(Path(root))
        self.writes = writes
        self.durable = durable
        self.clock = clock
        self.live = LiveStatus(self.paths.status, heartbeat_s=heartbeat_s, enabled=writes, clock=clock)
        self.lock: RunLock | None = None
        self.heartbeat: Heartbeat | None = None
        self.gone: str | None = None  # why the folder is no longer this session's (moved, deleted, replaced)
        self._metrics: JsonlWriter | None = None
        self._identity: tuple[int, int] | None = None

    # ---------------------------------------------------------------- 1. claim
    def claim(self, *, new: bool = True) -> RunWriter:
        """Take the run's lock (a launcher hands its lock over through ``TRAINKIT_LOCK_TOKEN``)
        before the session reads the folder. A missing folder is created only when ``new`` (a new
        run; its parents too); an existing one is never created again: a folder that vanishes
        before its lock is taken raises :class:`FolderGone`. Raises :class:`LockHeld` (one line)
        when another live process holds the run."""
        if not self.writes:
            return self
        root = self.paths.root
        if not root.is_dir():
            if not new:
                raise FolderGone(f"{root}: no such run folder")
            root.mkdir(parents=True, exist_ok=True)
        try:
            self.lock = RunLock(self.paths.lock).acquire(accept_token=os.environ.pop(HANDOFF_ENV, None))
        except (LockHeld, FileNotFoundError):
            if not root.is_dir():
                raise FolderGone(f"{root}: the run folder vanished (moved or deleted) before it could be "
                                 "locked") from None
            raise
        st = os.stat(root)
        self._identity = (st.st_dev, st.st_ino)
        cleanup_temp_files(root)
        return self

    def release(self) -> None:
        """Let the lock go (the session is over, or it decided to write nothing)."""
        if self.lock is not None and self.lock.held:
            self.lock.release()

    def check_folder(self) -> str | None:
        """Why the claimed folder is no longer this session's (moved or deleted away, or replaced
        by another folder of the same name), else None. A stat; the heartbeat calls it every beat.
        Once gone, nothing more is written there."""
        if self.gone is not None or self._identity is None:
            return self.gone
        try:
            st = os.stat(self.paths.root)
            same = (st.st_dev, st.st_ino) == self._identity
        except FileNotFoundError:
            same = False
        if not same:
            self.gone = (f"the run folder {self.paths.root} vanished while training (moved, deleted or replaced): "
                         "stopping without writing anything more")
            self.live.enabled = False
        return self.gone

    def read_resolved(self) -> dict:
        """The run's ``resolved_config.json`` as it stands (checked; {} when missing or unusable),
        for a session that decides after its claim."""
        return readers.load(self.paths.resolved_config, readers.RESOLVED_CONFIG, []) or {}

    def read_status(self) -> dict:
        """The run's ``training_status.json`` as it stands (checked; {} when missing or unusable)."""
        return readers.load(self.paths.status, readers.STATUS, []) or {}

    def records(self) -> Iterator[dict]:
        """The records of ``metrics.jsonl`` as they stand (a resume reads back what it kept)."""
        return iter_jsonl(self.paths.metrics)

    def subfolders(self, *folders: Path) -> None:
        """Create folders inside the claimed run folder (never its parents: a vanished run folder
        is not created again), and clean the temp files a crash left in them."""
        if not self.writes:
            return
        for d in folders:
            d.mkdir(exist_ok=True)
            cleanup_temp_files(d)

    # ---------------------------------------------------------------- 2. the start
    def move_aside(self, items: list[Path] | None = None) -> Path | None:
        """Move the outputs of an earlier training (``RunPaths.outputs()``: the ``fresh`` files of
        the contract's table; or ``items``) into ``superseded/<time>/``; never deletes. Returns that
        folder (None: nothing was there)."""
        if not self.writes:
            return None
        return move_aside(self.paths.root, self.paths.outputs() if items is None else items)

    def snapshot_config(self, config_file: Path) -> None:
        """Keep a copy of the config file in the run folder (``config.<ext>``) if it has none, so
        the folder is self-contained. An existing run config is never overwritten."""
        if not self.writes or self.paths.config_file() is not None:
            return
        dest = self.paths.root / f"{CONFIG_STEM}{config_file.suffix.lower()}"
        if dest.resolve() != config_file.resolve():
            shutil.copy2(config_file, dest)

    def write_resolved(self, settings: dict, meta: dict) -> None:
        """``resolved_config.json``: the settings, and ``_meta`` (:func:`resolved_meta`)."""
        if self.writes:
            write_json(self.paths.resolved_config, {**settings, "_meta": meta}, durable=self.durable)

    def trim(self, *, global_step: int, epochs_done: int) -> int:
        """A resume from a checkpoint of ``global_step`` steps and ``epochs_done`` complete epochs:
        cut what was written after it (before a crash) by :func:`after_checkpoint`, off the end of
        every append-only file of the session (the contract's table: ``metrics.jsonl``, the
        monitor's files; in place, the cost follows the cut, not the file), and remove the epoch
        folders past it. Returns the records cut."""
        if not self.writes:
            return 0
        after, p = after_checkpoint(global_step, epochs_done), self.paths
        logs = [p.root / f.name for f in FILES if f.kind == JSONL and f.fresh and not f.where]  # the session's
        cut = sum(truncate_tail(f, after) for f in logs)
        for n, d in p.epoch_dirs():
            if n >= epochs_done:
                shutil.rmtree(d)
        return cut

    def write_progress(self, completed: int, total: int | None, *, early_stopped_at: int | None = None,
                       finished: bool = False) -> None:
        """``progress.json``."""
        if self.writes:
            write_json(self.paths.progress, progress_record(completed, total, early_stopped_at=early_stopped_at,
                                                            finished=finished), durable=self.durable)

    # ---------------------------------------------------------------- 3. live
    def go_live(self, *, heartbeat_s: float | None = None, system_every_s: float = SYSTEM_EVERY_S,
                gpu_indices: list[int] | None = None, on_beat: Callable[[], None] | None = None,
                scope: dict | None = None) -> None:
        """``training_status.json`` says running (with what :attr:`live` holds so far), the
        heartbeat thread starts (status every ``heartbeat_s``, ``system.jsonl`` every
        ``system_every_s``; each beat also checks that the folder is still there, then calls
        ``on_beat``). ``metrics.jsonl`` is opened by the first record."""
        if heartbeat_s is not None:
            self.live.fields["heartbeat_interval_s"] = heartbeat_s
        self.live.write(state=RUNNING)
        beat = on_beat

        def on_each_beat() -> None:
            if self.check_folder() is None and beat is not None:
                beat()

        self.heartbeat = Heartbeat(self.live, self.paths.system if self.writes else None,
                                   heartbeat_s=self.live.fields["heartbeat_interval_s"], system_every_s=system_every_s,
                                   gpu_indices=gpu_indices, on_beat=on_each_beat, scope=scope)
        if self.writes:
            self.heartbeat.start()

    # ---------------------------------------------------------------- 4. records
    def append(self, record: dict) -> None:
        """One record, as given, one line of ``metrics.jsonl`` (opened by the first one)."""
        if self._metrics is None:
            if not self.writes:
                return
            self._metrics = JsonlWriter(self.paths.metrics)
        self._metrics.write(record)

    def step(self, step: int, epoch: int, *, loss: float | None, lr: float | None, grad_norm: float | None,
             **extra: Any) -> dict:
        """The record of 0-based optimizer step ``step`` of epoch ``epoch``; ``extra``: more fields
        (the monitor's sample rates, the trainer's ``epoch_float``, ``logged``: what the user's
        code logged at this step, under its own names). Returns it."""
        record = {"kind": STEP, "epoch": epoch, "step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                  "t": time.time(), **extra}
        self.append(record)
        return record

    def evaluation(self, step: int, epoch: int, scores: dict, **extra: Any) -> dict:
        """An evaluation after 0-based step ``step`` (``global_step`` = ``step + 1`` steps done,
        the number TensorBoard and W&B plot it at): its scores (``val_loss``, ...)."""
        record = {"kind": EVAL, "epoch": epoch, "step": step, "global_step": step + 1,
                  **{k: v for k, v in scores.items() if k not in OWN_KEYS}, **extra, "t": time.time()}
        self.append(record)
        return record

    def logged(self, step: int, epoch: int, values: dict, **extra: Any) -> dict:
        """Numbers the user's code logged at 0-based step ``step`` that belong to no step or
        evaluation record, under their own names in ``logged``."""
        record = {"kind": LOG, "epoch": epoch, "step": step, "global_step": step + 1, "logged": values, **extra,
                  "t": time.time()}
        self.append(record)
        return record

    def epoch(self, epoch: int, **fields: Any) -> dict:
        """The record of the complete epoch ``epoch`` (:func:`epoch_record`). Returns it."""
        record = epoch_record(epoch, **fields)
        self.append(record)
        return record

    def epoch_files(self, epoch: int, *, write_losses: Callable[[BinaryIO], None], optimizer: dict,
                    values: dict) -> None:
        """``epochs/epoch_NNNN/``: the per-step losses (written by ``write_losses`` into an atomic
        temp file), the optimizer's summary, and the epoch's numbers (``validation_scores.json``:
        every number of the epoch record, so that early stopping on any of them replays)."""
        if not self.writes:
            return
        edir = self.paths.epoch_dir(epoch)
        edir.mkdir(exist_ok=True)
        losses_file, optimizer_file, scores_file = EPOCH_FILES
        atomic_write(edir / losses_file, write_losses, durable=self.durable)
        write_json(edir / optimizer_file, {**optimizer, "epoch": epoch}, durable=self.durable)
        write_json(edir / scores_file, {"version": FORMAT_VERSION, "epoch": epoch, **values}, durable=self.durable)

    def checkpoint_meta(self, fields: dict) -> None:
        """``checkpoints/current.meta.json``: the checkpoint's position and the best so far
        (``best_metric``, ``best_loss`` (its value), ``best_mode``, ``best_epoch``; the BEST of
        ``trainkit status`` and trainmon)."""
        if self.writes:
            self.paths.checkpoints.mkdir(exist_ok=True)
            write_json(self.paths.current_meta, {"version": FORMAT_VERSION, **fields, "saved_at": self.clock()},
                       durable=self.durable)

    # ---------------------------------------------------------------- 5. the end
    def final(self, state: str, *, error: str | None = None, last_epoch: int | None = None, **fields: Any) -> None:
        """The final ``training_status.json``: ``state`` and ``error``; a complete run shows its last
        epoch and nothing left to wait for (``eta_s`` 0), any other has no ETA. Never raises (the
        disk may be why the run is failing); nothing is written into a folder that vanished."""
        final: dict = {"state": state, "error": error, **fields}
        if state in COMPLETE:
            final.update(eta_s=0.0)
            if last_epoch is not None:
                final["current_epoch"] = last_epoch
        else:
            final.update(eta_s=None)
        if self.check_folder() is not None:
            return
        try:
            self.live.write(**final)
        except Exception as e:
            log.warning("could not write the final status: %s", e)

    def patch_status(self, fields: dict) -> None:
        """Rewrite ``training_status.json`` as ``fields`` (a repair of a complete run's files)."""
        if self.writes:
            write_json(self.paths.status, {"version": FORMAT_VERSION, **fields}, durable=self.durable)

    def close(self) -> None:
        """Stop the heartbeat, close the records, release the lock (idempotent)."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        self.release()
