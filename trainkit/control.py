"""Control requests from trainmon (or a person): ``control.json`` in the run folder.

    {"request": "stop" | "pause" | "resume" | "checkpoint", "id": "...", "requested_at": 1700000000.0}

The loop polls between steps (cheaply: a stat at most every ``interval_s``). Once acted on, the
request is consumed: the file is removed and the acknowledgement goes into
``training_status.json`` under ``control`` and into ``train.log``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from trainkit.files import FileFormatError, read_json_object, write_json

REQUESTS = ("stop", "pause", "resume", "checkpoint")
log = logging.getLogger("trainkit")


def request(run_dir: Path, what: str, *, request_id: str | None = None) -> dict:
    """Write a control request (atomically) for the run in ``run_dir``."""
    if what not in REQUESTS:
        raise ValueError(f"unknown control request {what!r}; one of {', '.join(REQUESTS)}")
    body = {"version": 1, "request": what, "id": request_id or f"{time.time():.6f}", "requested_at": time.time()}
    write_json(Path(run_dir) / "control.json", body)
    return body


class ControlPoller:
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
        try:
            body = read_json_object(self.path)
        except FileNotFoundError:
            return None
        except (FileFormatError, OSError) as e:
            log.warning("ignoring unreadable control request: %s", e)
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
