"""Preparing a run folder for a training session: which folder, what config, which task, resume or
start over, and the repairs a crash may have made necessary.

:func:`claim` is a session's start, in the one safe order: the run's lock first (through
:class:`~trainkit.runfolder.writer.RunWriter`, the one writer of the folder), then :func:`prepare` reads and
decides (nothing is written), then the folder is made to agree with the decision (old outputs moved
aside on ``--fresh``, the config copied in, ``resolved_config.json`` written, records newer than the
checkpoint cut off, ``progress.json`` with this session's target). The engine trains.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from trainkit import config
from trainkit.errors import UserError
from trainkit.runfolder import (
    EARLY_STOPPED,
    FINISHED,
    RunPaths,
    choose_run_dir,
    readers,
)
from trainkit.runfolder.writer import ENGINE, LockHeld, RunWriter, resolved_meta
from trainkit.tasks import Task
from trainkit.tasks.configured import configured_task, task_defaults
from trainkit.train import checkpoint
from trainkit.train.device import resolve_device

log = logging.getLogger("trainkit")


def dist_rank() -> tuple[int, int]:
    """(rank, world_size) from the torchrun environment; (0, 1) otherwise."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class TrainRequest:
    """What the user asked for (the CLI's arguments, or the Python API's)."""

    target: str | dict  # a config file, a run folder to resume, or the config itself (a mapping)
    run_dir: str | None = None
    epochs: int | None = None
    sets: list[str] = field(default_factory=list)
    fresh: bool = False
    cache_dir: Path | None = None


@dataclass
class Prepared:
    """A request resolved against the disk: what will be trained, where, from which checkpoint."""

    config: config.TrainConfig
    paths: RunPaths
    task: Task
    source: str  # where the config came from (a file, or the run's resolved_config.json)
    config_file: Path | None  # the config file given, to copy into a new run folder
    request: TrainRequest
    previous: dict | None = None  # the run's resolved_config.json before this session
    changes: list[tuple[str, object, object]] = field(default_factory=list)  # allowed changes on resume
    resume: checkpoint.Loaded | None = None
    complete: str | None = None  # set when the run is already complete: what to tell the user
    writes: bool = True  # rank 0 owns the files
    previous_world_size: int | None = None  # the processes of the session the checkpoint comes from
    writer: RunWriter | None = None  # the one writer of the folder (holding its lock, rank 0)
    device: object = None  # the torch device the ``device`` setting resolved to
    moved_aside: Path | None = None  # where --fresh put the old outputs (set by claim)
    trimmed: int = 0  # records newer than the checkpoint cut off metrics.jsonl (set by claim)
    resumed_loss: float | None = None  # the last step record's loss before this session (set by claim)
    check_metric: bool = False  # the monitored metric can only be checked against a first validation
    lowered_target: bool = False  # --epochs below the epochs done: nothing to do, no file touched

    @property
    def cache_dir(self) -> Path:
        return self.request.cache_dir or config.default_cache_dir()


def prepare(req: TrainRequest, writer: RunWriter | None = None) -> Prepared:
    """Resolve the config (defaults < file < CLI) and the task once, and decide resume or fresh.
    Reads only (:func:`claim` calls it holding the run's lock). Raises :class:`UserError` with one
    line on bad input or a refused resume."""
    cfg, paths, source, config_file = _resolve_config(req)
    previous = None if req.fresh else config.read_resolved(paths)
    if previous is not None:  # before the task checks model/data against its own schema
        _check_locked_names(paths, cfg, previous)
    task = configured_task(cfg, source=source)
    if cfg.monitor.prompts is not None:
        load_prompts(cfg.monitor.prompts)  # a bad prompts file is bad input: say so before training
    rank, world = dist_rank()
    if cfg.batch_size % world:
        raise UserError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes of torchrun "
                        "(batch_size is the global batch, split evenly across them)")
    prep = Prepared(cfg, paths, task, source, config_file, req, writes=rank == 0,
                    writer=writer, device=resolve_device(cfg.device))
    if req.fresh:
        return prep
    prep.previous = previous
    if prep.previous is not None:
        prep.changes = _check_resume(paths, config.to_dict(cfg), prep.previous)
    if paths.current_ckpt.exists():
        prep.previous_world_size = (readers.load(paths.status, readers.STATUS, []) or {}).get("world_size")
        try:
            prep.resume = checkpoint.load(paths.current_ckpt)
        except checkpoint.CheckpointError as e:
            raise UserError(f"cannot resume: {e} (use --fresh to start over)") from None
        st = prep.resume.state
        recorded = (prep.previous or {}).get("epochs")
        if st.early_stopped_at_epoch is not None:
            prep.complete = (f"Run early-stopped at epoch {st.early_stopped_at_epoch} (last={st.epoch - 1}); "
                             "nothing to do (use --fresh to start over)")
        elif st.epoch >= cfg.epochs:
            prep.complete = f"Requested epochs already completed (last={st.epoch - 1})"
            if isinstance(recorded, int) and st.epoch < recorded:  # a lowered target: nothing is written
                prep.lowered_target = True
                prep.complete += (f": {st.epoch} epoch(s) done, the run's target stays {recorded} "
                                  f"(run it without --epochs to go on); no file touched")
    if cfg.early_stopping is not None and prep.complete is None:
        prep.check_metric = not _check_metric_early(prep)
    return prep


# every epoch record holds these besides the task's validation numbers
ENGINE_EPOCH_KEYS = ("train_loss", "lr", "global_step", "duration_s")


def check_metric_name(cfg: config.TrainConfig, known: set[str], where: str) -> None:
    """Refuse an ``early_stopping.metric`` that is not a key of the epoch record (a typo would
    monitor nothing: no best, no stop), naming the nearest key."""
    metric = cfg.early_stopping.metric if cfg.early_stopping else None
    if metric is None or metric in known:
        return
    import difflib

    near = difflib.get_close_matches(metric, sorted(known), n=1, cutoff=0.5)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise UserError(f"early_stopping.metric {metric!r} is not a number of the epoch record{hint}; the epoch "
                    f"record has {', '.join(sorted(known))} ({where})")


def _check_metric_early(prep: Prepared) -> bool:
    """Check the monitored name before anything is written: against the first epoch record on
    disk, else the task's declared validation metrics. False when neither is known yet (the engine
    then checks it against a validation of the untrained model)."""
    first = epoch_records(prep.paths, 1)[0] if not prep.request.fresh else None
    if first:
        check_metric_name(prep.config, set(first) - {"version", "epoch"}, f"{prep.paths.epoch_dir(0)}")
        return True
    declared = getattr(prep.task, "validation_metrics", None)
    names = declared() if callable(declared) else None
    if names is None:
        return False
    check_metric_name(prep.config, set(names) | set(ENGINE_EPOCH_KEYS), f"task {prep.config.task!r}")
    return True


def epoch_records(paths: RunPaths, n: int, metrics: set[str] = frozenset()) -> list[dict | None]:
    """The numbers of epochs ``0..n-1`` as recorded (see :func:`trainkit.status.epoch_records`)."""
    from trainkit.status import epoch_records as records

    return records(str(paths.root), n, set(metrics), [])


def _resolve_config(req: TrainRequest) -> tuple[config.TrainConfig, RunPaths, str, Path | None]:
    """TARGET is a config file, or a run folder (resumed from its ``resolved_config.json``, which
    is read, never executed; a folder with only a config file uses that file)."""
    if isinstance(req.target, dict):
        source = "<config mapping>"
        cfg = config.resolve(dict(req.target), source=source, epochs=req.epochs, sets=req.sets,
                             task_defaults=task_defaults)
        return cfg, RunPaths(choose_run_dir(Path(f"{cfg.task.replace(':', '-')}.yaml"), req.run_dir)), source, None
    path = Path(req.target)
    if path.is_dir():
        paths = RunPaths(Path(req.run_dir) if req.run_dir else path)
        resolved = config.read_resolved(RunPaths(path))
        if resolved is not None:
            source = str(RunPaths(path).resolved_config)
            cfg = config.resolve(config.without_meta(resolved), source=source, epochs=req.epochs, sets=req.sets,
                                 task_defaults=task_defaults)
            return cfg, paths, source, None
        config_file = RunPaths(path).config_file()
        if config_file is None:
            raise UserError(f"{path}: not a run folder (no resolved_config.json and no config.yaml/.yml/"
                            ".json/.toml/.py)")
        path = config_file
    elif not path.exists():
        raise UserError(f"{path}: no such config file or run folder")
    cfg = config.resolve(config.load_file(path), source=str(path), epochs=req.epochs, sets=req.sets,
                         task_defaults=task_defaults)
    return cfg, RunPaths(choose_run_dir(path, req.run_dir)), str(path), path


def _check_locked_names(paths: RunPaths, cfg: config.TrainConfig, previous: dict) -> None:
    """Refuse a resume that changes ``task`` or ``profile`` with the locked-field message, before
    the new task judges the run's ``model``/``data`` by its own schema (which would blame a key)."""
    new = {"task": cfg.task, "profile": cfg.profile}
    diffs = config.locked_differences({k: previous.get(k) for k in new}, new)
    if diffs:
        raise UserError(f"cannot resume {paths.root}: locked field changed: {'; '.join(diffs)} "
                        "(use --fresh to start over, or another --run-dir)")


def _check_resume(paths: RunPaths, new: dict, previous: dict) -> list[tuple[str, object, object]]:
    """Refuse a resume whose locked fields (task, model, data) differ; return the other changes."""
    diffs = config.locked_differences(previous, new)
    if diffs:
        raise UserError(f"cannot resume {paths.root}: locked field changed: {'; '.join(diffs)} "
                        "(use --fresh to start over, or another --run-dir)")
    return config.changed_fields(previous, new)


# --------------------------------------------------------------------------------------------
# claiming the folder


@contextlib.contextmanager
def claim(req: TrainRequest) -> Iterator[Prepared]:
    """A training session's start, in the one safe order: the run's lock (rank 0; a launcher hands
    its lock over through ``TRAINKIT_LOCK_TOKEN``) before anything in the folder is read, then
    :func:`prepare`, then, unless the run is already complete, the folder made to agree:
    ``--fresh`` moves the old outputs aside, a new run gets a copy of its config,
    ``resolved_config.json`` is (re)written, records written after the checkpoint (before a crash)
    are cut off so every step and epoch appears once, and ``progress.json`` takes this session's
    target. A new run's folder is created only once its config was accepted; an existing run's
    folder is never created again (one that vanishes meanwhile is a one-line refusal). The lock is
    held until the session ends."""
    rank, _ = dist_rank()
    root, existing = _run_root(req)
    if rank == 0 and not existing and not root.is_dir():
        prepare(req)  # a new run: bad input is refused before its folder exists
    writer = RunWriter(root, writes=rank == 0)
    try:
        writer.claim(new=not existing)
    except LockHeld as e:
        raise UserError(f"{root}: {e}" if str(root) not in str(e) else str(e)) from None
    try:
        prep = prepare(req, writer)
        if prep.complete is None:
            _agree(prep)
        yield prep
    finally:
        writer.close()


def _run_root(req: TrainRequest) -> tuple[Path, bool]:
    """The folder a request trains in, and whether it must exist already (a run folder given to
    resume), from the request and its config file alone: nothing of the run folder is read."""
    if not isinstance(req.target, dict) and Path(req.target).is_dir():
        return (Path(req.run_dir), False) if req.run_dir else (Path(req.target), True)
    return _resolve_config(req)[1].root, False


def _agree(prep: Prepared) -> None:
    """Make the claimed folder agree with ``prep`` (see :func:`claim`)."""
    writer, st = prep.writer, prep.resume.state if prep.resume else checkpoint.TrainState()
    if prep.request.fresh:
        prep.moved_aside = writer.move_aside()
    if prep.config_file is not None:
        writer.snapshot_config(prep.config_file)
    previous = (prep.previous or {}).get("_meta")
    meta = resolved_meta(previous if isinstance(previous, dict) else None, trainer=ENGINE, source=prep.source,
                         launch=launch_record(), overrides=prep.request.sets, epochs_arg=prep.request.epochs,
                         changes=prep.changes, at_epoch=st.epoch,
                         task_defaults=task_defaults(prep.config.task) if prep.previous is None else None)
    writer.write_resolved(config.to_dict(prep.config), meta)
    prep.trimmed = writer.trim(global_step=st.global_step, epochs_done=st.epoch)
    prep.resumed_loss = last_logged_loss(prep.paths) if prep.resume else None
    # the target is this session's from its first moment (a raised --epochs is not "finished")
    writer.write_progress(st.epoch, prep.config.epochs, early_stopped_at=st.early_stopped_at_epoch,
                          finished=st.epoch >= prep.config.epochs)


def launch_record() -> dict:
    """How this session was started, so that ``trainkit launch`` relaunches it the same way: the
    working folder and, under torchrun, the processes per node and the nodes."""
    rank, world = dist_rank()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    torchrun = {"nproc_per_node": local, "nnodes": max(1, world // max(local, 1))} if world > 1 else None
    return {"cwd": os.getcwd(), "torchrun": torchrun}


def last_logged_loss(paths: RunPaths, window: int = 64 * 1024) -> float | None:
    """The loss of the last step record of ``metrics.jsonl`` (read from its end), or None."""
    import orjson

    from trainkit.runfolder.files import ReadProblem, open_regular

    try:
        fd = open_regular(paths.metrics)
    except (FileNotFoundError, ReadProblem):
        return None
    try:
        size = os.fstat(fd).st_size
        lines = os.pread(fd, min(size, window), max(0, size - window)).split(b"\n")
    except OSError:
        return None
    finally:
        os.close(fd)
    for line in reversed(lines[1:] if size > window else lines):
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("kind") == "step" and isinstance(rec.get("loss"), (int, float)):
            return float(rec["loss"])
    return None


def finish_complete_run(prep: Prepared) -> bool:
    """A checkpoint that is complete, but status/progress files that don't say so (a crash between
    the last checkpoint and the final status): rewrite them. Returns True if anything was repaired.
    A lowered ``--epochs`` is not a completion: nothing is written then."""
    if not prep.writes or prep.resume is None or prep.lowered_target:
        return False
    paths, st, total = prep.paths, prep.resume.state, prep.config.epochs
    early = st.early_stopped_at_epoch
    want_state = EARLY_STOPPED if early is not None else FINISHED
    status = readers.load(paths.status, readers.ANY, []) or {}
    progress = readers.load(paths.progress, readers.ANY, []) or {}
    repaired = False
    if progress.get("finished") is not True or progress.get("completed_epochs") != st.epoch:
        prep.writer.write_progress(st.epoch, max(total, st.epoch) if early is None else total,
                                   early_stopped_at=early, finished=True)
        repaired = True
    if status.get("state") != want_state:
        prep.writer.patch_status({**status, "state": want_state, "current_epoch": max(st.epoch - 1, 0),
                                  "step": st.global_step, "heartbeat_at": time.time(), "eta_s": 0.0})
        repaired = True
    return repaired



def load_prompts(path: str) -> list[dict]:
    """``monitor.prompts``: a JSONL file of ``{"prompt": str, "expected": str | null}`` (at most
    1,000 lines). Raises :class:`UserError` naming the file and the line."""
    from trainkit.runfolder.files import MAX_LINE_BYTES, JsonlTail

    tail = JsonlTail(path, max_line=MAX_LINE_BYTES)
    rows = tail.read()
    if not Path(path).is_file() or tail.problem:
        raise UserError(f"monitor.prompts {path}: {tail.problem or 'no such file'}")
    if tail.bad_lines:
        raise UserError(f"monitor.prompts {path}: {tail.bad_lines} line(s) are not JSON objects")
    out = []
    for n, row in enumerate(rows[:1000], 1):
        prompt, expected = row.get("prompt"), row.get("expected")
        if not isinstance(prompt, str) or not (expected is None or isinstance(expected, str)):
            raise UserError(f"monitor.prompts {path}: line {n}: expected {{\"prompt\": str, \"expected\": str}}")
        out.append({"prompt": prompt, "expected": expected})
    if not out:
        raise UserError(f"monitor.prompts {path}: no prompts")
    return out
