"""Synthetic run folders in the exact on-disk format the engine writes, without training.

For tests, benchmarks and screenshots that need many runs in given states fast. Real runs come
from ``trainkit train``; these only lay out the files (``training_losses.pt`` holds a few bytes,
not a tensor: readers of run status only check that it exists).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from trainkit.runfolder import FORMAT_VERSION, RunPaths
from trainkit.runfolder.writer import ENGINE, RunWriter, resolved_meta


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped) on this host."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def synthetic_run(root: Path, name: str, *, total: int = 10, scores: list[float] | None = None,
                  early_stopping: dict | None = None, state: str | None = "running", progress: bool = True,
                  pid: int | None = None, heartbeat_age_s: float = 1.0, heartbeat_interval_s: float = 5.0,
                  durable: bool = False) -> RunPaths:
    """A run folder with ``len(scores)`` complete epochs whose ``validation_scores.json`` holds
    ``val_loss`` = the score; ``state`` None writes no ``training_status.json``. Written through
    :class:`~trainkit.runfolder.writer.RunWriter`, the writer of every training session."""
    now = time.time()
    writer = RunWriter(Path(root) / name, heartbeat_s=heartbeat_interval_s, durable=durable,
                       clock=lambda: now - heartbeat_age_s)
    paths = writer.paths
    paths.root.mkdir(parents=True, exist_ok=True)
    scores = scores or []
    writer.write_resolved({"task": "burgers", "epochs": total, "early_stopping": early_stopping},
                          resolved_meta(None, trainer=ENGINE, source="synthetic", now=now))
    if scores:
        writer.subfolders(paths.epochs)
    for i, v in enumerate(scores):
        writer.epoch_files(i, write_losses=lambda f: f.write(b"synthetic"), optimizer={"version": FORMAT_VERSION},
                           values={"val_loss": v})
    completed = len(scores)
    if progress:
        at = None
        if early_stopping is not None and state == "early_stopped":
            at = completed - 1
        writer.write_progress(completed, total, early_stopped_at=at, finished=completed >= total)
    if state is not None:
        writer.live.write(state=state, pid=os.getpid() if pid is None else pid, host=socket.gethostname(),
                          current_epoch=max(completed - 1, 0), total_epochs=total, step=completed * 10,
                          steps_per_epoch=10, loss=0.5, lr=1e-3, throughput=100.0, eta_s=10.0, device="cpu")
    open(paths.metrics, "wb").close()  # the records of this layout only (the file keeps its inode)
    for i, v in enumerate(scores):
        writer.append({"kind": "epoch", "epoch": i, "train_loss": v, "val_loss": v, "t": now})
    writer.close()
    return paths
