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

from trainkit.runfolder import EPOCH_FILES, FORMAT_VERSION, RunPaths, progress_record
from trainkit.runfolder.files import dumps, write_json


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
    ``val_loss`` = the score; ``state`` None writes no ``training_status.json``."""
    paths = RunPaths(Path(root) / name)
    paths.root.mkdir(parents=True, exist_ok=True)
    scores = scores or []
    now = time.time()
    write_json(paths.resolved_config, {"task": "burgers", "epochs": total, "early_stopping": early_stopping,
                                       "_meta": {"version": FORMAT_VERSION}}, durable=durable)
    for i, v in enumerate(scores):
        d = paths.epoch_dir(i)
        d.mkdir(parents=True, exist_ok=True)
        (d / EPOCH_FILES[0]).write_bytes(b"synthetic")
        write_json(d / EPOCH_FILES[1], {"version": FORMAT_VERSION, "epoch": i}, durable=durable)
        write_json(d / EPOCH_FILES[2], {"version": FORMAT_VERSION, "epoch": i, "val_loss": v}, durable=durable)
    completed = len(scores)
    if progress:
        at = None
        if early_stopping is not None and state == "early_stopped":
            at = completed - 1
        write_json(paths.progress, progress_record(completed, total, early_stopped_at=at,
                                                   finished=completed >= total), durable=durable)
    if state is not None:
        write_json(paths.status, {
            "version": FORMAT_VERSION, "state": state, "pid": os.getpid() if pid is None else pid,
            "host": socket.gethostname(), "started_at": now - heartbeat_age_s, "heartbeat_at": now - heartbeat_age_s,
            "heartbeat_interval_s": heartbeat_interval_s, "current_epoch": max(completed - 1, 0),
            "total_epochs": total, "step": completed * 10, "steps_per_epoch": 10, "loss": 0.5, "lr": 1e-3,
            "throughput": 100.0, "eta_s": 10.0, "world_size": 1, "device": "cpu", "error": None,
            "stop_reason": None, "control": None}, durable=durable)
    with open(paths.metrics, "wb") as f:
        for i, v in enumerate(scores):
            f.write(dumps({"kind": "epoch", "epoch": i, "train_loss": v, "val_loss": v, "t": now}) + b"\n")
    return paths
