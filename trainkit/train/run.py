"""``trainkit train``: prepare the run, claim its folder, train.

Reads top to bottom: :func:`~trainkit.train.session.prepare` decides (config, task, resume or
fresh, already complete?), :func:`~trainkit.train.session.claim` takes the lock and makes the folder
agree, :class:`~trainkit.train.engine.Trainer` runs the loop.
"""

from __future__ import annotations

import logging

from trainkit.train import session
from trainkit.train.device import resolve_device
from trainkit.train.display import ProgressDisplay, setup_logging, teardown_logging
from trainkit.train.engine import Trainer
from trainkit.train.session import TrainRequest

log = logging.getLogger("trainkit")

__all__ = ["TrainRequest", "train"]


def train(req: TrainRequest, display: ProgressDisplay | None = None) -> int:
    """Train or resume; the exit code (0 done or stopped, 1 failed, 130 a second Ctrl-C)."""
    display = display or ProgressDisplay()
    prep = session.prepare(req)
    device = resolve_device(prep.config.device)
    if prep.complete is not None:
        display.console.print(prep.complete, markup=False)
        if session.finish_complete_run(prep):
            display.console.print("repaired training_status.json / progress.json to say the run is complete",
                                  markup=False)
        return 0
    with session.claim(prep):
        handlers = setup_logging(display, prep.paths.log, file_enabled=prep.writes)
        try:
            log.info("run folder: %s (%s)", prep.paths.root, "resuming" if prep.resume else "new run")
            if prep.moved_aside is not None:
                log.info("--fresh: earlier outputs moved to %s", prep.moved_aside)
            if prep.trimmed:
                log.info("%s: dropped %d record(s) written after the checkpoint", prep.paths.metrics.name,
                         prep.trimmed)
            for name, old, new in prep.changes:
                log.info("config change on resume: %s: %r -> %r", name, old, new)
            return Trainer(prep, device, display=display).run().exit_code
        finally:
            teardown_logging(handlers)
