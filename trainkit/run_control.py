"""Asking live runs to stop, pause, resume or checkpoint: the one place that decides whether a
request can act on a run and writes it (``control.json``, :func:`trainkit.runfolder.control.request`),
and that waits for the trainer's acknowledgement (``control`` in ``training_status.json``).

``trainkit stop|pause|resume|checkpoint`` and trainmon's keys both call :func:`send`; the rule of
which states a request acts on is :func:`refusal` (pure). Relaunching is ``trainkit launch``'s.
Torch-free.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainkit.runfolder import LIVE, PAUSED, RUNNING, STATUS_FILE, SUSPENDED, readers
from trainkit.runfolder.control import REQUESTS, request

#: the states each request acts on (stop: every live run; a suspended one acts when its process continues)
ACTS_ON = {"stop": LIVE, "pause": (RUNNING,), "resume": (PAUSED,), "checkpoint": (RUNNING,)}
PAST = {"stop": "stopped", "pause": "paused", "resume": "resumed", "checkpoint": "checkpointed"}


def refusal(what: str, state: str) -> str | None:
    """Why ``what`` cannot act on a run in ``state`` (one short phrase), or None when it can."""
    if what not in REQUESTS:
        raise ValueError(f"unknown control request {what!r}; one of {', '.join(REQUESTS)}")
    if state in ACTS_ON[what]:
        return None
    if state not in LIVE:
        return f"not running ({state})"
    if what == "pause":
        return f"already {state}" if state == PAUSED else f"{state}: only a running run can be paused"
    if what == "resume":
        return "already running" if state == RUNNING else f"{state}: only a paused run can be resumed"
    return f"{state}: a paused run's checkpoint was written when it paused" if state == PAUSED \
        else f"{state}: only a running run can checkpoint"


@dataclass
class Sent:
    """The outcome of one request: ``ok`` when it was written (``request_id`` set) or, after
    :func:`wait`, acknowledged; ``message`` says what happened, in a few words."""

    name: str
    path: str
    what: str
    ok: bool
    message: str
    request_id: str | None = None
    state: str | None = None  # the run's state when the request was written (or refused)

    def line(self) -> str:
        return f"{self.name}: {self.message}"


def send(run_dir: str | Path, what: str, *, state: str | None = None, stale_s: float | None = None) -> Sent:
    """Write the ``what`` request for the run in ``run_dir`` when its state lets it act (the state
    is read now unless given, e.g. by trainmon, which has just read it); else refuse, writing
    nothing."""
    run_dir = Path(run_dir)
    if state is None:
        from trainkit.status import run_status

        state = run_status(run_dir, stale_s=stale_s).state
    why = refusal(what, state)
    if why is not None:
        return Sent(run_dir.name, str(run_dir), what, False, why, state=state)
    body = request(run_dir, what)
    note = " (acted on when its process continues)" if state == SUSPENDED else ""
    return Sent(run_dir.name, str(run_dir), what, True, f"{what} requested{note}", body["id"], state)


def acknowledged(run_dir: str | Path, sent: Sent) -> str | None:
    """What the trainer did with the request, once it did (None while it has not): its
    acknowledgement in ``training_status.json``, or for a stop, the run no longer live."""
    status = readers.load(Path(run_dir) / STATUS_FILE, readers.STATUS, []) or {}
    ack = status.get("control")
    if isinstance(ack, dict) and ack.get("id") == sent.request_id:
        return f"{PAST[sent.what]} (acknowledged)"
    if sent.what == "stop" and status.get("state") not in (None, *LIVE):
        return f"{PAST['stop']} ({status.get('state')})"
    return None


def wait(sent: list[Sent], *, timeout: float, stale_s: float | None = None, interval: float = 0.2,
         clock: Callable[[], float] = time.monotonic) -> list[Sent]:
    """Wait up to ``timeout`` seconds for every written request's acknowledgement; a run that is
    no longer live, or does not answer in time, fails (its request stays in ``control.json``
    for the trainer, unless it ended)."""
    from trainkit.status import run_status

    pending = {i: s for i, s in enumerate(sent) if s.ok}
    out = list(sent)
    deadline = clock() + timeout
    while pending:
        for i, s in list(pending.items()):
            done = acknowledged(s.path, s)
            if done is not None:
                out[i] = Sent(s.name, s.path, s.what, True, done, s.request_id, s.state)
                del pending[i]
                continue
            state = run_status(s.path, stale_s=stale_s).state
            if state not in LIVE:
                out[i] = Sent(s.name, s.path, s.what, False, f"{state} before acting on the {s.what} request",
                              s.request_id, state)
                del pending[i]
        if not pending:
            break
        if clock() >= deadline:
            for i, s in pending.items():
                out[i] = Sent(s.name, s.path, s.what, False, f"no acknowledgement within {timeout:g} s (the request "
                              "stays in control.json; the trainer acts on it between two steps)", s.request_id,
                              s.state)
            break
        time.sleep(interval)
    return out
