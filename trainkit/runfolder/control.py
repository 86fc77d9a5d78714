"""Control requests from trainmon (or a person): ``control.json`` in the run folder, and the
protocol a training loop follows between two steps.

    {"request": "stop" | "pause" | "resume" | "checkpoint", "id": "...", "requested_at": 1700000000.0}

The loop asks :meth:`Controls.check` between steps (cheaply: a stat at most every ``interval_s``)
and gets "go on" (None) or the reason to stop. A request is consumed once acted on: the file is
removed and the acknowledgement goes to the loop's ``acknowledge`` callback (trainkit's engine puts
it into ``training_status.json`` under ``control``). A pause checkpoints first, reports the state
``paused`` and waits (the heartbeat goes on) until ``resume`` (state ``running``) or ``stop``.
Signals (Ctrl-C, SIGTERM) are checked first. Torch-free: trainkit's engine and the callbacks for
other trainers share it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from trainkit.interrupts import Interrupts
from trainkit.runfolder import PAUSED, RUNNING, RunPaths, readers
from trainkit.runfolder.files import write_json

REQUESTS = ("stop", "pause", "resume", "checkpoint")
log = logging.getLogger("trainkit")


def request(run_dir: Path, what: str, *, request_id: str | None = None) -> dict:
    """Write a control request (atomically) for the run in ``run_dir``."""
    if what not in REQUESTS:
        raise ValueError(f"unknown control request {what!r}; one of {', '.join(REQUESTS)}")
    body = {"version": 1, "request": what, "id": request_id or f"{time.time():.6f}", "requested_at": time.time()}
    write_json(RunPaths(Path(run_dir)).control, body)
    return body


class ControlPoller:
    """Reads ``control.json`` at most every ``interval_s`` (unless forced)."""

    def __init__(self, path: Path, *, interval_s: float = 0.5) -> None:
        self.path = path
        self.interval_s = interval_s
        self._next = 0.0

    def poll(self, *, force: bool = False) -> dict | None:
        """The pending request, or None. Invalid requests are logged and consumed."""
        now = time.monotonic()
        if not force and now < self._next:
            return None
        self._next = now + self.interval_s
        if not os.path.lexists(self.path):  # the common case: one stat
            return None
        problems: list[str] = []
        body = readers.load(self.path, readers.CONTROL, problems)
        if body is None:
            if problems:
                log.warning("ignoring unreadable control request: %s", "; ".join(problems))
                self.consume()
            return None
        if body.get("request") not in REQUESTS:
            log.warning("ignoring control request %r (expected one of %s)", body.get("request"), ", ".join(REQUESTS))
            self.consume()
            return None
        return body

    def consume(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def acknowledgement(req: dict) -> dict:
    return {"request": req["request"], "id": req.get("id"), "done_at": time.time()}


class Controls:
    """Between two steps: "go on" (None) or why to stop.

    ``checkpoint()`` saves (on a ``checkpoint`` request and before a pause); ``report(state, ack)``
    tells the loop's owner what happened: ``state`` is ``paused`` or ``running`` when the run
    changes state, None for an acknowledgement alone. ``enabled`` False (a DDP rank other than 0)
    decides nothing: rank 0 decides for every rank, signals included.
    """

    def __init__(self, path: Path, interrupts: Interrupts, *, checkpoint: Callable[[], None],
                 report: Callable[[str | None, dict], None], enabled: bool = True, interval_s: float = 0.5,
                 wait_s: float = 0.2, step: Callable[[], int] = lambda: 0) -> None:
        self.poller = ControlPoller(path, interval_s=interval_s)
        self.interrupts = interrupts
        self.checkpoint = checkpoint
        self.report = report
        self.enabled = enabled
        self.wait_s = wait_s
        self.step = step
        self.paused_s = 0.0  # seconds spent paused, in all (an epoch's duration leaves them out)

    def check(self) -> str | None:
        if not self.enabled:
            return None
        if self.interrupts.requested.is_set():
            return f"{self.interrupts.signal_name} received"
        req = self.poller.poll()
        if req is None:
            return None
        self.poller.consume()
        what, ack = req["request"], acknowledgement(req)
        if what == "stop":
            self.report(None, ack)
            return "stop requested through control.json"
        if what == "checkpoint":
            self.checkpoint()
            log.info("checkpoint written on request (global step %d)", self.step())
        elif what == "pause":
            return self._pause(ack)
        self.report(None, ack)  # a checkpoint done, or a resume that found the run running
        return None

    def _pause(self, ack: dict) -> str | None:
        t0 = time.monotonic()
        try:
            return self._paused(ack)
        finally:
            self.paused_s += time.monotonic() - t0

    def _paused(self, ack: dict) -> str | None:
        self.checkpoint()
        log.info("paused on request at global step %d (checkpoint written); waiting for resume", self.step())
        self.report(PAUSED, ack)
        while True:
            if self.interrupts.requested.is_set():
                return f"{self.interrupts.signal_name} received while paused"
            req = self.poller.poll(force=True)
            if req is not None:
                self.poller.consume()
                ack = acknowledgement(req)
                if req["request"] == "stop":
                    self.report(None, ack)
                    return "stop requested through control.json while paused"
                if req["request"] == "resume":
                    log.info("resumed on request")
                    self.report(RUNNING, ack)
                    return None
            time.sleep(self.wait_s)
