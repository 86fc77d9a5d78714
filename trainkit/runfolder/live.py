"""Live files of a running run: ``training_status.json`` (heartbeat) and ``system.jsonl`` (samples).

One background thread rewrites the status at least every ``heartbeat_s`` seconds, so a slow step
or a long validation never looks like a dead run, and appends a system sample every
``system_every_s`` seconds. The training loop only assigns fields (no I/O per step).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from trainkit.formatting import eta_seconds
from trainkit.runfolder import FORMAT_VERSION, LIVE
from trainkit.runfolder.files import JsonlWriter, write_json

log = logging.getLogger("trainkit")


class LiveStatus:
    """The content of ``training_status.json``; ``write()`` is atomic and thread-safe."""

    def __init__(self, path: Path, *, heartbeat_s: float, enabled: bool = True, clock=time.time) -> None:
        self.path = path
        self.enabled = enabled
        self.clock = clock
        self._lock = threading.Lock()
        self._rate_lock = threading.Lock()
        now = clock()
        self.fields: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "state": "running",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": now,
            "heartbeat_at": now,
            "heartbeat_interval_s": heartbeat_s,
            "current_epoch": 0,
            "total_epochs": 0,
            "step": 0,
            "steps_per_epoch": 0,
            "loss": None,
            "lr": None,
            "throughput": None,
            "eta_s": None,
            "world_size": 1,
            "device": None,
            "error": None,
            "stop_reason": None,
            "control": None,
            "alerts": [],
        }
        # rate bookkeeping (read by the heartbeat thread)
        self._rate_t0 = time.monotonic()
        self._rate_step0 = 0
        self._last_t = self._rate_t0
        self._last_step = 0
        self.batch_size = 1
        self.total_steps = 0

    def update(self, **kw: Any) -> None:
        self.fields.update(kw)

    def start_rates(self, step: int) -> None:
        self._rate_t0 = self._last_t = time.monotonic()
        self._rate_step0 = self._last_step = step

    def restart_interval(self) -> None:
        """The next rate is measured from now: time spent between the steps (validation, an epoch's
        files and checkpoint, an evaluation) is not a slower step. The ETA keeps counting it."""
        with self._rate_lock:
            self._last_t, self._last_step = time.monotonic(), self.fields["step"]

    def refresh_rates(self) -> None:
        """Throughput (samples/s, smoothed) and ETA from the step counter; called from the loop's
        display tick and from the heartbeat. A run that ended keeps the figures of its final status."""
        if self.fields["state"] not in LIVE:
            return
        with self._rate_lock:
            now = time.monotonic()
            step = self.fields["step"]
            if step > self._last_step and now - self._last_t >= 0.2:
                rate = (step - self._last_step) * self.batch_size / (now - self._last_t)
                prev = self.fields["throughput"]
                self.fields["throughput"] = rate if prev is None else 0.7 * prev + 0.3 * rate
                self._last_t, self._last_step = now, step
            if self.total_steps:
                eta = eta_seconds(step - self._rate_step0, self.total_steps - step, now - self._rate_t0)
                if eta is not None:
                    self.fields["eta_s"] = eta

    def write(self, **kw: Any) -> None:
        """Rewrite the file (atomically). Rates are refreshed only while the run is live, and
        before ``kw`` applies, so a final ``eta_s=0`` is what the file says."""
        if not self.enabled:
            return
        with self._lock:
            if self.fields["state"] in LIVE:
                self.refresh_rates()
            self.fields.update(kw)
            self.fields["heartbeat_at"] = self.clock()
            write_json(self.path, self.fields)


def system_sample(process: psutil.Process, gpu: Any | None, scope: dict | None = None) -> dict:
    """One ``system.jsonl`` record. ``scope`` says whose process it is under DDP (``{"rank": 0,
    "world_size": N}``: the CPU and memory are that rank's, not the job's)."""
    with process.oneshot():
        rec = {
            "t": time.time(),
            "cpu_percent": process.cpu_percent(None),
            "rss_bytes": process.memory_info().rss,
            "host_cpu_percent": psutil.cpu_percent(None),
            "host_mem_percent": psutil.virtual_memory().percent,
        }
    if gpu is not None:
        rec["gpus"] = gpu.sample()
    if scope:
        rec.update(scope)
    return rec


class NvmlGpus:
    """GPU utilisation and memory through NVML (``nvidia-ml-py``), for CUDA runs only."""

    def __init__(self, indices: list[int]) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handles = [(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in indices]

    @classmethod
    def open(cls, indices: list[int]) -> NvmlGpus | None:
        try:
            return cls(indices)
        except Exception as e:  # no NVML library or no permission: run without GPU samples
            log.info("GPU sampling unavailable (%s); system.jsonl will hold CPU and memory only", e)
            return None

    def sample(self) -> list[dict]:
        out = []
        for i, h in self._handles:
            util = self._nvml.nvmlDeviceGetUtilizationRates(h)
            mem = self._nvml.nvmlDeviceGetMemoryInfo(h)
            out.append({"index": i, "util_percent": util.gpu, "mem_used_bytes": mem.used,
                        "mem_total_bytes": mem.total})
        return out


class Heartbeat(threading.Thread):
    """Rewrites the status every ``heartbeat_s`` and appends ``system.jsonl`` every ``system_every_s``."""

    def __init__(self, status: LiveStatus, system_path: Path | None, *, heartbeat_s: float,
                 system_every_s: float, gpu_indices: list[int] | None = None,
                 on_beat: Callable[[], None] | None = None, scope: dict | None = None) -> None:
        super().__init__(name="trainkit-heartbeat", daemon=True)
        self.scope = scope
        self.status = status
        self.heartbeat_s = heartbeat_s
        self.system_every_s = system_every_s
        self._stop_event = threading.Event()
        self._system = JsonlWriter(system_path) if system_path is not None else None
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # first call primes the counters
        psutil.cpu_percent(None)
        self._gpu = NvmlGpus.open(gpu_indices) if gpu_indices else None
        self._on_beat = on_beat  # e.g. the monitor's stall check

    def run(self) -> None:
        next_system = time.monotonic() + min(self.system_every_s, 1.0)
        while not self._stop_event.wait(min(self.heartbeat_s, max(0.05, next_system - time.monotonic()))):
            try:
                if self._on_beat is not None:
                    self._on_beat()
                self.status.write()
                if self._system is not None and time.monotonic() >= next_system:
                    self._system.write(system_sample(self._process, self._gpu, self.scope))
                    next_system = time.monotonic() + self.system_every_s
            except Exception as e:  # a full disk must not kill training from this thread
                log.warning("heartbeat write failed: %s", e)

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=10)
        if self._system is not None:
            self._system.close()
