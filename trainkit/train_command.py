"""``trainkit train``: resolve the request, decide resume or fresh, lock the run, run the engine."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from trainkit import checkpoint, session
from trainkit.config import ConfigError, to_dict
from trainkit.device import resolve_device
from trainkit.display import ProgressDisplay, setup_logging, teardown_logging
from trainkit.engine import Trainer, dist_rank, finalize_complete_run
from trainkit.lock import HANDOFF_ENV, LockHeld, RunLock
from trainkit.tasks import get_task

log = logging.getLogger("trainkit")

def train(target: str, *, run_dir: str | None, epochs: int | None, sets: list[str], fresh: bool,
          cache_dir: Path | None, display: ProgressDisplay | None = None) -> int:
    req = session.resolve_request(target, run_dir=run_dir, epochs=epochs, sets=sets)
    cfg, paths = req.config, req.paths
    device = resolve_device(cfg.device)
    task = get_task(cfg.task)
    new_config = to_dict(cfg)
    display = display or ProgressDisplay()
    rank, _ = dist_rank()

    previous = None if fresh else session.read_previous_config(paths)
    changes = [] if fresh else session.check_resume(paths, new_config, previous)
    ck = None
    if not fresh and paths.current_ckpt.exists():
        try:
            ck = checkpoint.load(paths.current_ckpt)
        except checkpoint.CheckpointError as e:
            raise ConfigError(f"cannot resume: {e} (use --fresh to start over)") from None
        done = ck.state.epoch
        if ck.state.early_stopped_at_epoch is not None or done >= cfg.epochs:
            _already_complete(paths, ck, cfg.epochs, display)
            return 0

    if rank != 0:  # only rank 0 owns the run folder's files
        return _train_locked(req, ck, task, device, display, cache_dir, previous, changes, fresh=False)
    paths.root.mkdir(parents=True, exist_ok=True)
    try:
        lock = RunLock(paths.lock).acquire(accept_token=os.environ.pop(HANDOFF_ENV, None))
    except LockHeld as e:
        raise ConfigError(f"{paths.root}: {e}") from None
    try:
        return _train_locked(req, ck, task, device, display, cache_dir, previous, changes, fresh=fresh)
    finally:
        lock.release()


def _already_complete(paths, ck: checkpoint.Loaded, total: int, display: ProgressDisplay) -> None:
    st = ck.state
    if st.early_stopped_at_epoch is not None:
        msg = (f"Run early-stopped at epoch {st.early_stopped_at_epoch} (last={st.epoch - 1}); nothing to do "
               "(use --fresh to start over)")
    else:
        msg = f"Requested epochs already completed (last={st.epoch - 1})"
    display.console.print(msg, markup=False)
    if finalize_complete_run(paths, ck, total):
        display.console.print("repaired training_status.json / progress.json to say the run is complete",
                              markup=False)


def _train_locked(req: session.Request, ck, task, device, display: ProgressDisplay, cache_dir: Path | None,
                  previous: dict | None, changes: list, *, fresh: bool) -> int:
    paths = req.paths
    writes = dist_rank()[0] == 0
    moved = session.move_outputs_aside(paths) if (fresh and writes) else None
    if writes:
        session.snapshot_config(req)
        session.write_resolved(req, previous, changes, at_epoch=ck.state.epoch if ck else 0)
    handlers = setup_logging(display, paths.log, file_enabled=writes)
    try:
        log.info("run folder: %s (%s)", paths.root, "resuming" if ck else "new run")
        if moved is not None:
            log.info("--fresh: earlier outputs moved to %s", moved)
        for field, old, new in changes:
            log.info("config change on resume: %s: %r -> %r", field, old, new)
        trainer = Trainer(req.config, paths, task, device, display=display, resume=ck, cache_dir=cache_dir)
        outcome = trainer.run()
        return outcome.exit_code
    finally:
        teardown_logging(handlers)
