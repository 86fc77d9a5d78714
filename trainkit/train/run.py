"""``trainkit train``: prepare the run, claim its folder, train.

Reads top to bottom: :func:`~trainkit.train.session.claim` takes the run's lock, then decides
(config, task, resume or fresh, already complete?) and makes the folder agree,
:class:`~trainkit.train.engine.Trainer` runs the loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from trainkit.console import capture
from trainkit.errors import EXIT_OK
from trainkit.runfolder import EARLY_STOPPED, FINISHED, readers
from trainkit.train import session
from trainkit.train.display import ProgressDisplay, setup_logging, teardown_logging
from trainkit.train.engine import Trainer
from trainkit.train.session import TrainRequest

log = logging.getLogger("trainkit")

__all__ = ["RunResult", "TrainRequest", "run_job", "train"]


@dataclass
class RunResult:
    """What a training session ended with."""

    state: str  # finished, early_stopped, stopped or failed
    run_dir: Path
    best_metric: str | None  # the metric best.pt was chosen by, and its best value
    best_value: float | None
    exit_code: int  # as the CLI's: 0 done or stopped, 1 failed, 130 a second Ctrl-C


def run_job(config: str | Path | dict, *, run_dir: str | Path | None = None, epochs: int | None = None,
            overrides: dict | list[str] | None = None, fresh: bool = False, cache_dir: str | Path | None = None,
            display: ProgressDisplay | None = None, console: bool = False) -> RunResult:
    """Train (or resume) exactly as ``trainkit train`` does: ``config`` is a config file, a run
    folder, or the config as a mapping; ``overrides`` are ``--set`` values (``{"lr": 3e-4,
    "model.width": 128}`` or ``["lr=3e-4"]``). Bad input raises :class:`~trainkit.errors.UserError`.
    ``console``: copy what this process prints into the run's ``console.log`` from the moment the
    folder is claimed until the process exits (the command does; see :mod:`trainkit.console`)."""
    if isinstance(overrides, dict):
        overrides = [f"{k}={_cli_text(v)}" for k, v in overrides.items()]
    req = TrainRequest(config if isinstance(config, dict) else str(config),
                       run_dir=str(run_dir) if run_dir is not None else None, epochs=epochs,
                       sets=list(overrides or []), fresh=fresh, cache_dir=Path(cache_dir) if cache_dir else None)
    return train(req, display, console=console)


def _cli_text(value) -> str:
    import orjson

    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _result(prep: session.Prepared, state: str, exit_code: int) -> RunResult:
    meta = readers.load(prep.paths.current_meta, readers.CURRENT_META, []) or {}
    return RunResult(state, prep.paths.root, meta.get("best_metric"), meta.get("best_loss"), exit_code)


def train(req: TrainRequest, display: ProgressDisplay | None = None, *, console: bool = False) -> RunResult:
    """Train or resume (the ``trainkit train`` command's body)."""
    display = display or ProgressDisplay()
    with session.claim(req) as prep:
        if prep.complete is not None:
            display.console.print(prep.complete, markup=False)
            if session.finish_complete_run(prep):
                display.console.print("repaired training_status.json / progress.json to say the run is complete",
                                      markup=False)
            early = prep.resume.state.early_stopped_at_epoch is not None
            return _result(prep, EARLY_STOPPED if early else FINISHED, EXIT_OK)
        if console and prep.writes:  # the writing rank (rank 0 under DDP); after --fresh moved the old one aside
            capture(prep.paths.console)  # (a complete run is left untouched: not a file written)
        handlers = setup_logging(display, prep.paths.log, file_enabled=prep.writes)
        if not prep.writes:  # DDP: rank 0 tells the story; the others speak up only for problems
            for h in handlers:
                h.setLevel(logging.WARNING)
        try:
            log.info("run folder: %s (%s)", prep.paths.root, "resuming" if prep.resume else "new run")
            if prep.moved_aside is not None:
                log.info("--fresh: earlier outputs moved to %s", prep.moved_aside)
            world = session.dist_rank()[1]
            if prep.resume and prep.previous_world_size not in (None, world):
                log.info("resuming with %d process(es); the checkpoint was written by %d: the data order is the "
                         "same, each global batch is split anew", world, prep.previous_world_size)
            if prep.trimmed:
                log.info("%s: dropped %d record(s) written after the checkpoint", prep.paths.metrics.name,
                         prep.trimmed)
            for name, old, new in prep.changes:
                log.info("config change on resume: %s: %r -> %r", name, old, new)
            outcome = Trainer(prep, prep.device, display=display).run()
            return _result(prep, outcome.state, outcome.exit_code)
        finally:
            teardown_logging(handlers)
