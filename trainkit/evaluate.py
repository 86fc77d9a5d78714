"""The evaluation runner: resume a plan's folder, evaluate the remaining items on worker threads
with retries and timeouts, and hand each finished item to the one writer.

Data flow: ``prepare`` (plan check, repair, what is left) -> ``Runner`` (N worker threads call the
model) -> one ``ProgressiveWriter`` (the only owner of the files: for each finished item it writes
the conversation file atomically, then appends the item's line to ``responses.jsonl``; the line is
the commit record), fed by the worker itself (one worker) or by a writer thread (N workers).
A kill at any moment leaves complete lines, at most a torn last line and conversation files that
are whole or absent. No torch here.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import queue
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from trainkit.config import ConfigError
from trainkit.evalplan import (
    EVAL_FORMAT_VERSION,
    EvalPaths,
    Plan,
    PlanItem,
    key_of,
    read_precheck_header,
    write_precheck,
)
from trainkit.files import FileFormatError, JsonlWriter, atomic_write, cleanup_temp_files, dumps, fsync_dir
from trainkit.scoring import Unscorable, item_fields

ModelFn = Callable[[dict], Any]


# ---------------------------------------------------------------------------------------------
# one item: call, retry, score


class Garbage(ValueError):
    """The model returned something that is not an answer."""


class ItemTimeout(TimeoutError):
    pass


@dataclass
class RetryPolicy:
    """``retries`` more attempts after a failed one, waiting ``backoff_s * 2**(n-1)`` before the
    n-th retry; ``timeout_s`` (None: no limit) bounds each call."""

    retries: int = 2
    backoff_s: float = 0.5
    timeout_s: float | None = None

    def delay(self, failed_attempt: int) -> float:
        return self.backoff_s * 2 ** (failed_attempt - 1)


@dataclass
class ItemResult:
    item: PlanItem
    status: str  # "ok" | "error"
    response: Any = None
    raw: Any = None
    messages: list | None = None
    fields: dict = field(default_factory=dict)
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    traceback: str | None = None
    attempts: int = 1
    latency_s: float = 0.0
    t: float = 0.0


def call_model(fn: ModelFn, item: dict, timeout_s: float | None) -> Any:
    """``fn(item)``; with a timeout the call runs in a daemon thread that is abandoned when late."""
    if not timeout_s:
        return fn(item)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(item)
        except BaseException as e:  # handed to the caller below
            box["error"] = e

    t = threading.Thread(target=target, daemon=True, name="eval-call")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise ItemTimeout(f"timed out after {timeout_s:g}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _valid_messages(messages: Any) -> bool:
    return isinstance(messages, list) and all(isinstance(m, dict) and "role" in m for m in messages)


def extract_answer(raw: Any) -> tuple[Any, list | None]:
    """(answer, messages) from what the model returned: a plain value is the answer; a dict may
    carry ``answer`` and ``messages`` (without ``answer``, the last assistant message is it)."""
    messages = None
    if isinstance(raw, dict):
        messages = raw.get("messages")
        if messages is not None and not _valid_messages(messages):
            raise Garbage("'messages' must be a list of objects with a 'role'")
        if "answer" in raw:
            answer = raw["answer"]
        else:
            said = [m.get("content") for m in messages or () if m.get("role") == "assistant"]
            if not said:
                raise Garbage("returned a dict without 'answer' (and no assistant message)")
            answer = said[-1]
    else:
        answer = raw
    if answer is None or not isinstance(answer, (str, int, float, list, dict)):
        raise Garbage(f"returned {type(answer).__name__}; expected str or dict")
    try:
        orjson.dumps(answer)
    except TypeError as e:
        raise Garbage(f"the answer is not JSON-serializable ({e})") from None
    return answer, messages


def describe_error(e: BaseException) -> str:
    if isinstance(e, ItemTimeout):
        return str(e)
    if isinstance(e, (Garbage, Unscorable)):
        return f"garbage: {e}"
    text = f"{e.__class__.__name__}: {e}".strip().splitlines()
    return (text[0] if text else e.__class__.__name__)[:500]


def run_item(fn: ModelFn, item: PlanItem, metric: str, policy: RetryPolicy,
             stop: threading.Event) -> ItemResult | None:
    """Evaluate one item with retries. None when a stop request came during a backoff (the item
    is then not finished and runs again on resume)."""
    errors: list[str] = []
    attempt = 0
    while True:
        attempt += 1
        raw = None
        t0 = time.perf_counter()
        try:
            raw = call_model(fn, item.model_input(), policy.timeout_s)
            latency = time.perf_counter() - t0
            answer, messages = extract_answer(raw)
            fields = item_fields(metric, answer, item.expected)
        except Exception as e:  # the model raised, timed out or returned garbage: that item fails
            latency = time.perf_counter() - t0
            errors.append(describe_error(e))
            if attempt <= policy.retries:
                if stop.wait(policy.delay(attempt)):
                    return None
                continue
            return ItemResult(item, "error", raw=raw, fields={}, error=errors[-1], errors=errors,
                              traceback=traceback.format_exc(limit=20), attempts=attempt, latency_s=latency,
                              t=time.time())
        return ItemResult(item, "ok", response=answer, raw=raw, messages=messages, fields=fields, errors=errors,
                          attempts=attempt, latency_s=latency, t=time.time())


# ---------------------------------------------------------------------------------------------
# records


def line_record(r: ItemResult, metric: str) -> dict:
    """One line of ``responses.jsonl``."""
    it = r.item
    rec = {"question_id": it.question_id, "sample_number": it.sample_number, "status": r.status,
           "response": r.response, "expected": it.expected}
    score_key = "correct" if metric == "accuracy" else "score"
    rec[score_key] = r.fields.get(score_key)
    rec.update(latency_s=round(r.latency_s, 6), error=r.error, attempts=r.attempts, t=r.t)
    return rec


def _messages(question: Any, r_messages: list | None, status: str, response: Any) -> list:
    if r_messages:
        return r_messages
    out = [{"role": "user", "content": question}]
    if status == "ok":
        out.append({"role": "assistant", "content": response})
    return out


def conversation_record(r: ItemResult, metric: str, model: str) -> dict:
    """The full transcript of one item (``conversations/q{X}_s{Y}.json``)."""
    it = r.item
    rec = {"version": EVAL_FORMAT_VERSION, "question_id": it.question_id, "sample_number": it.sample_number,
           "status": r.status, "model": model, "messages": _messages(it.question, r.messages, r.status, r.response),
           "raw_output": r.raw, "response": r.response, "expected": it.expected}
    score_key = "correct" if metric == "accuracy" else "score"
    rec[score_key] = r.fields.get(score_key)
    rec.update(error=r.error, errors=r.errors, traceback=r.traceback, attempts=r.attempts,
               latency_s=round(r.latency_s, 6), t=r.t)
    return rec


def rebuilt_conversation(line: dict, item: PlanItem, metric: str, model: str) -> dict:
    """A conversation file rebuilt from its line (the file was lost or left empty by a crash)."""
    status = line.get("status")
    score_key = "correct" if metric == "accuracy" else "score"
    return {"version": EVAL_FORMAT_VERSION, "question_id": item.question_id, "sample_number": item.sample_number,
            "status": status, "model": model,
            "messages": _messages(item.question, None, status, line.get("response")), "raw_output": None,
            "response": line.get("response"), "expected": item.expected, score_key: line.get(score_key),
            "error": line.get("error"), "errors": [line["error"]] if line.get("error") else [], "traceback": None,
            "attempts": line.get("attempts"), "latency_s": line.get("latency_s"), "t": line.get("t"),
            "rebuilt": True}


def _jsonable(obj: Any) -> str:
    return repr(obj)[:2000]


def conversation_bytes(rec: dict) -> bytes:
    return orjson.dumps(rec, default=_jsonable,
                        option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY) + b"\n"


# ---------------------------------------------------------------------------------------------
# the writer


@dataclass
class Counts:
    """Finished items as on disk: advanced only by the writer, read by the display."""

    done: int = 0
    ok: int = 0
    error: int = 0

    def add(self, status: str) -> None:
        self.done += 1
        if status == "ok":
            self.ok += 1
        else:
            self.error += 1


def _write_all(fd: int, data: bytes) -> None:
    n = os.write(fd, data)  # a regular file takes it all at once, barring a full disk
    if n < len(data):
        view = memoryview(data)[n:]
        while view:
            view = view[os.write(fd, view):]


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


@dataclass
class Encoded:
    """A finished item as the bytes the writer puts on disk."""

    file: str
    conversation: bytes
    line: bytes
    status: str


class ProgressiveWriter:
    """Writes each finished item the moment it arrives: its conversation file (temp file + rename
    in the same folder) and then its line in ``responses.jsonl`` (one ``os.write`` on ``O_APPEND``).
    ``durable`` adds fsync of each line, each file and the folder (power-loss safety). A failure
    to write a conversation file is reported through ``notify`` and the run goes on.
    :meth:`encode` touches no file, so it runs in the worker that finished the item."""

    def __init__(self, paths: EvalPaths, metric: str, model: str, *, durable: bool = False,
                 notify: Callable[[str], None] | None = None) -> None:
        self.metric, self.model, self.durable = metric, model, durable
        self.notify = notify or (lambda msg: None)
        paths.conversations.mkdir(parents=True, exist_ok=True)
        self._dir_fd = os.open(paths.conversations, os.O_RDONLY | os.O_DIRECTORY)
        # responses.jsonl: O_APPEND, one os.write per line (the line arrives encoded; see JsonlWriter)
        self._lines_fd = os.open(paths.responses, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._suffix = f".{os.getpid()}.tmp"
        self.conversation_failures = 0

    def encode(self, r: ItemResult) -> Encoded:
        return Encoded(r.item.file, conversation_bytes(conversation_record(r, self.metric, self.model)),
                       dumps(line_record(r, self.metric)) + b"\n", r.status)

    def write(self, e: Encoded) -> None:
        try:
            self.write_conversation(e.file, e.conversation)
        except OSError as err:
            self.conversation_failures += 1
            self.notify(f"could not write conversations/{e.file} ({err.__class__.__name__}: {err}); "
                        "its line is written, a resume rebuilds the file")
        _write_all(self._lines_fd, e.line)
        if self.durable:
            os.fsync(self._lines_fd)

    def write_conversation(self, name: str, data: bytes) -> None:
        tmp = "." + name + self._suffix
        dir_fd = self._dir_fd
        fd = os.open(tmp, _CREATE, 0o644, dir_fd=dir_fd)
        try:
            try:
                _write_all(fd, data)
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=self._dir_fd)
            except OSError:
                pass
            raise
        if self.durable:
            os.fsync(self._dir_fd)

    def close(self) -> None:
        if self._dir_fd >= 0:
            for fd in (self._lines_fd, self._dir_fd):
                try:
                    os.close(fd)
                except OSError:  # already gone (the failure that stopped the run)
                    pass
            self._dir_fd = -1


class _Sink:
    """Takes finished items from the workers to a :class:`ProgressiveWriter`, the only thing that
    touches the files. A write error on ``responses.jsonl`` is fatal: it is kept in ``failure``,
    ``on_failure`` is called (the run stops), and later results are dropped (they run again on
    resume). ``counts`` advance once an item is on disk."""

    def __init__(self, writer: ProgressiveWriter, counts: Counts | None = None,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.writer = writer
        self.counts = counts or Counts()
        self.failure: BaseException | None = None
        self.on_failure = on_failure

    def _write(self, e: Encoded) -> None:
        if self.failure is not None:
            return
        try:
            self.writer.write(e)
        except Exception as err:
            self.failure = err
            if self.on_failure:
                self.on_failure(err)
            return
        self.counts.add(e.status)


class InlineWriter(_Sink):
    """One worker: the worker that finished an item writes it at once, in its own thread. No
    hand-off: a separate writer thread would add a queue and, with a model that holds the GIL,
    wait up to the interpreter's switch interval after each system call, so lines would lag behind
    the items. The lock makes ``close`` wait for a write in progress; a worker abandoned by a
    second Ctrl-C that finishes later writes nothing."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, r: ItemResult) -> None:
        e = self.writer.encode(r)
        with self._lock:
            if not self._closed:
                self._write(e)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.writer.close()


_STOP = object()


class WriterThread(_Sink):
    """N workers: a writer thread owns the files; workers ``submit`` results (encoding them to
    bytes in their own thread) and never touch a file, so lines never interleave. The writer's
    system calls release the GIL, so writing overlaps with the workers' model calls. The queue holds
    at most ``backlog`` items: with models that hold the GIL, an unbounded queue would let finished
    items pile up unwritten (a kill would lose them); a full queue makes the worker wait, which
    hands the GIL to the writer."""

    def __init__(self, *args: Any, backlog: int = 4, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._q: queue.Queue = queue.Queue(maxsize=max(1, backlog))
        self._thread = threading.Thread(target=self._run, name="eval-writer", daemon=True)
        self._thread.start()

    def submit(self, r: ItemResult) -> None:
        self._q.put(self.writer.encode(r))

    def _run(self) -> None:
        while True:
            e = self._q.get()
            if e is _STOP:
                return
            self._write(e)

    def close(self) -> None:
        """Write everything submitted so far, then close the files."""
        self._q.put(_STOP)
        self._thread.join()
        self.writer.close()


def make_sink(writer: ProgressiveWriter, workers: int, counts: Counts | None = None,
              on_failure: Callable[[BaseException], None] | None = None) -> _Sink:
    """One worker writes its own items; N workers hand them to a writer thread (at most N waiting)."""
    if workers <= 1:
        return InlineWriter(writer, counts, on_failure)
    return WriterThread(writer, counts, on_failure, backlog=workers)


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


class Interrupts:
    """SIGINT/SIGTERM: the first calls ``on_stop`` (finish what is in flight, start nothing new);
    a second SIGINT raises KeyboardInterrupt at once."""

    def __init__(self, on_stop: Callable[[str], None]) -> None:
        self.on_stop = on_stop
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        self.on_stop(self.requested)

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()


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
    truncated_bytes: int = 0
    dropped_lines: int = 0


def _refuse(paths: EvalPaths, why: str) -> ConfigError:
    return ConfigError(f"cannot resume {paths.root}: {why} (use --fresh to start over, the old folder is "
                       "moved aside; or --name for another evaluation)")


def repair_responses(path: Path) -> tuple[list[dict], int, int]:
    """Read ``responses.jsonl`` for appending: a torn last line (a kill during its write) is
    truncated away; lines that are not item records (corruption) are dropped by an atomic rewrite.
    Returns (records, bytes truncated, lines dropped)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0, 0
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
    last: dict[tuple[str, int], dict] = {}
    for rec in records:
        key = key_of(rec.get("question_id"), rec.get("sample_number"))
        if key in by_key:
            last[key] = rec
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
    state = ResumeState(todo, counts, new=new, retrying=retrying, truncated_bytes=truncated, dropped_lines=dropped)

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
            state.rebuild_failed.append(f"{item.file} ({e.__class__.__name__}: {e})")
            continue
        state.rebuilt.append(item.file)
    return state


# ---------------------------------------------------------------------------------------------
# sessions and --fresh


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


def move_aside(run_dir: Path, name: str, *, now: float | None = None) -> Path | None:
    """``--fresh``: move ``evals/NAME`` and ``reports/NAME.json`` into ``superseded/<UTC time>/``
    (never deleted). Returns that folder, or None when there was nothing to move."""
    run_dir = Path(run_dir)
    present = [(p, sub) for p, sub in ((EvalPaths.of(run_dir, name).root, "evals"),
                                       (run_dir / "reports" / f"{name}.json", "reports")) if p.exists()]
    if not present:
        return None
    stamp = dt.datetime.fromtimestamp(now or time.time(), dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    dest = run_dir / "superseded" / stamp
    n = 1
    while (dest / "evals" / name).exists() or (dest / "reports" / f"{name}.json").exists():
        n += 1
        dest = run_dir / "superseded" / f"{stamp}-{n}"
    for p, sub in present:
        (dest / sub).mkdir(parents=True, exist_ok=True)
        os.replace(p, dest / sub / p.name)
    fsync_dir(run_dir)
    return dest
