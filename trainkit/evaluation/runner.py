"""The evaluation runner: resume a plan's folder, evaluate the remaining items on worker threads
with retries and timeouts (:mod:`trainkit.evaluation.items`), and hand each finished item to the one
writer (:mod:`trainkit.evaluation.writer`).

Data flow: ``prepare`` (plan check, repair, what is left) -> ``Runner`` (N worker threads call the
model) -> one ``ProgressiveWriter`` (the only owner of the files: for each finished item it writes
the conversation file, then appends the item's line to ``responses.jsonl``; the line is the commit
record and only listed items' files are read), fed by the worker itself (one worker) or by a writer
thread (N workers). A kill at any moment leaves complete lines, at most a torn last line, whole
files for listed items and at most one unlisted file (redone here: its item has no line). No torch
here.
"""

from __future__ import annotations

import collections
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from trainkit.errors import UserError, first_line
from trainkit.evaluation.items import ModelFn, RetryPolicy, run_item
from trainkit.evaluation.plan import (
    EVAL_FORMAT_VERSION,
    Plan,
    PlanItem,
    key_of,
    read_precheck_header,
    write_precheck,
)
from trainkit.evaluation.scoring import last_records
from trainkit.evaluation.writer import Counts, conversation_bytes, rebuilt_conversation
from trainkit.runfolder import EvalPaths
from trainkit.runfolder.files import (
    FileFormatError,
    JsonlWriter,
    ReadProblem,
    atomic_write,
    cleanup_temp_files,
    read_regular,
)

# ---------------------------------------------------------------------------------------------
# the runner


class Runner:
    """Evaluates ``items`` on ``workers`` daemon threads; each finished result goes to ``sink``.

    ``stop()`` (first Ctrl-C): no new item starts, the ones in flight finish and are written.
    A KeyboardInterrupt in ``run`` (second Ctrl-C) returns at once; items in flight are abandoned
    (not written, so they run again on resume)."""

    def __init__(self, fn: ModelFn, items: list[PlanItem], metric: str, sink: Any, *, workers: int = 1,
                 policy: RetryPolicy | None = None) -> None:
        self.fn, self.metric, self.sink = fn, metric, sink
        self.workers = max(1, min(workers, len(items) or 1))
        self.policy = policy or RetryPolicy()
        self.stop_event = threading.Event()
        self._todo = collections.deque(items)
        self.worker_failure: BaseException | None = None
        self.abandoned = False

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def remaining(self) -> int:
        return len(self._todo)

    def _work(self) -> None:
        try:
            while not self.stop_event.is_set():
                try:
                    item = self._todo.popleft()
                except IndexError:
                    return
                r = run_item(self.fn, item, self.metric, self.policy, self.stop_event)
                if r is None:
                    return
                self.sink.submit(r)
        except BaseException as e:  # a bug outside the model call: stop the run, report it
            self.worker_failure = e
            self.stop_event.set()

    def run(self, *, tick: Callable[[], None] | None = None, tick_s: float = 0.25) -> None:
        threads = [threading.Thread(target=self._work, name=f"eval-worker-{i}", daemon=True)
                   for i in range(self.workers)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(tick_s)
                    if tick is not None:
                        tick()
        except KeyboardInterrupt:
            self.stop_event.set()
            self.abandoned = True

# ---------------------------------------------------------------------------------------------
# resume


@dataclass
class ResumeState:
    """What an evaluation folder holds for ``plan`` and what is left to run."""

    todo: list[PlanItem]
    counts: Counts  # the finished items that stand (those re-run by --retry-errors excluded)
    new: bool = False
    retrying: int = 0
    rebuilt: list[str] = field(default_factory=list)
    rebuild_failed: list[str] = field(default_factory=list)
    listed: set[str] = field(default_factory=set)  # files of items to run that have a line (replaced atomically)
    truncated_bytes: int = 0
    dropped_lines: int = 0


def _refuse(paths: EvalPaths, why: str) -> UserError:
    return UserError(f"cannot resume {paths.root}: {why} (use --fresh to start over, the old folder is "
                       "moved aside; or --name for another evaluation)")


def repair_responses(path: Path) -> tuple[list[dict], int, int]:
    """Read ``responses.jsonl`` for appending: a torn last line (a kill during its write) is
    truncated away; lines that are not item records (corruption) are dropped by an atomic rewrite.
    Returns (records, bytes truncated, lines dropped)."""
    try:
        data = read_regular(path, within=path.parent)
    except FileNotFoundError:
        return [], 0, 0
    except ReadProblem as e:
        raise UserError(f"{path}: {e}; move it aside (--fresh) to evaluate again") from None
    end = data.rfind(b"\n") + 1
    torn = len(data) - end
    records, keep, dropped = [], [], 0
    for line in data[:end].split(b"\n")[:-1]:
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            rec = None
        if isinstance(rec, dict) and key_of(rec.get("question_id"), rec.get("sample_number")) is not None:
            records.append(rec)
            keep.append(line)
        else:
            dropped += 1
    if dropped:
        body = b"".join(x + b"\n" for x in keep)
        atomic_write(path, lambda f: f.write(body))
    elif torn:
        os.truncate(path, end)
    return records, torn, dropped


def prepare(paths: EvalPaths, plan: Plan, *, retry_errors: bool = False, durable: bool = False) -> ResumeState:
    """Check (or write) ``precheck.jsonl``, repair what a crash left, and find the items to run.
    The caller holds the evaluation's lock."""
    paths.root.mkdir(parents=True, exist_ok=True)
    new = False
    if paths.precheck.exists():
        try:
            header = read_precheck_header(paths.precheck)
        except (FileFormatError, OSError) as e:
            raise _refuse(paths, f"precheck.jsonl is unusable ({e})") from None
        reasons = plan.differences(header)
        if reasons:
            raise _refuse(paths, "the plan differs from the one in precheck.jsonl: " + "; ".join(reasons))
    else:
        if paths.responses.exists() and paths.responses.stat().st_size > 0:
            raise _refuse(paths, "responses.jsonl exists without precheck.jsonl")
        write_precheck(paths, plan, durable=durable)
        new = True

    records, truncated, dropped = repair_responses(paths.responses)
    by_key = {it.key: it for it in plan.items}
    last = last_records(records, by_key)
    todo, counts, retrying = [], Counts(), 0
    for it in plan.items:
        rec = last.get(it.key)
        if rec is None:
            todo.append(it)
        elif retry_errors and rec.get("status") != "ok":
            todo.append(it)
            retrying += 1
        else:
            counts.add(rec.get("status"))
    state = ResumeState(todo, counts, new=new, retrying=retrying, truncated_bytes=truncated, dropped_lines=dropped,
                        listed={it.file for it in todo if it.key in last})

    paths.conversations.mkdir(exist_ok=True)
    cleanup_temp_files(paths.conversations)
    rerun = {it.key for it in todo}
    sizes = {e.name: e.stat().st_size for e in os.scandir(paths.conversations) if e.is_file()}
    for key, rec in last.items():
        item = by_key[key]
        if key in rerun or sizes.get(item.file, 0) > 0:
            continue
        data = conversation_bytes(rebuilt_conversation(rec, item, plan.metric, plan.model))
        try:
            atomic_write(paths.conversations / item.file, lambda f, data=data: f.write(data), durable=durable)
        except OSError as e:
            state.rebuild_failed.append(f"{item.file} ({first_line(e)})")
            continue
        state.rebuilt.append(item.file)
    return state


# ---------------------------------------------------------------------------------------------
# sessions


class SessionLog:
    """``sessions.jsonl``: a ``start`` line when a session begins running items and an ``end`` line
    when it stops (absent after a kill). The summary's ``duration_s`` is computed from it."""

    def __init__(self, path: Path, *, durable: bool = False) -> None:
        self.path = path
        self.durable = durable

    def event(self, event: str, **info: Any) -> None:
        with JsonlWriter(self.path, durable=self.durable) as w:
            w.write({"version": EVAL_FORMAT_VERSION, "event": event, "t": time.time(), **info})

    def start(self, **info: Any) -> None:
        self.event("start", pid=os.getpid(), host=socket.gethostname(), **info)
