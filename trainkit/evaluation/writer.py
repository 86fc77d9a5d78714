"""The progressive writer of an evaluation: the records of one finished item and the only code
that puts them on disk.

For each finished item: its conversation file is written once under its final name, then its line
is appended to ``responses.jsonl`` (one ``os.write`` on ``O_APPEND``). The line is the commit
record: a conversation file counts only once its item has a line, and readers (trainmon's
inspector, the resume's repair) read the conversation files of listed items only, which are whole
(written and closed before the line). A kill at any moment leaves complete lines, at most a torn
last line, and at most one unlisted file (the item in flight, redone and rewritten on resume). The
file of an item that already has a line (re-run by ``--retry-errors``) is replaced atomically (temp
file + rename), since a reader may be reading the old one. No torch here.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import orjson

from trainkit.errors import first_line
from trainkit.evaluation.items import ItemResult
from trainkit.evaluation.plan import EVAL_FORMAT_VERSION, PlanItem
from trainkit.evaluation.scoring import score_key
from trainkit.runfolder import CONVERSATIONS_DIR, EvalPaths
from trainkit.runfolder.files import dumps


def line_record(r: ItemResult, metric: str) -> dict:
    """One line of ``responses.jsonl``."""
    it = r.item
    rec = {"question_id": it.question_id, "sample_number": it.sample_number, "status": r.status,
           "response": r.response, "expected": it.expected}
    key = score_key(metric)
    rec[key] = r.fields.get(key)
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
    key = score_key(metric)
    rec[key] = r.fields.get(key)
    rec.update(error=r.error, errors=r.errors, traceback=r.traceback, attempts=r.attempts,
               latency_s=round(r.latency_s, 6), t=r.t)
    return rec


def rebuilt_conversation(line: dict, item: PlanItem, metric: str, model: str) -> dict:
    """A conversation file rebuilt from its line (the file was lost or left empty by a crash)."""
    status = line.get("status")
    key = score_key(metric)
    return {"version": EVAL_FORMAT_VERSION, "question_id": item.question_id, "sample_number": item.sample_number,
            "status": status, "model": model,
            "messages": _messages(item.question, None, status, line.get("response")), "raw_output": None,
            "response": line.get("response"), "expected": item.expected, key: line.get(key),
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
_IN_PLACE = _CREATE | os.O_NOFOLLOW  # a link planted under an unlisted name is not followed


@dataclass
class Encoded:
    """A finished item as the bytes the writer puts on disk."""

    file: str
    conversation: bytes
    line: bytes
    status: str


class ProgressiveWriter:
    """Writes each finished item the moment it arrives: its conversation file (under its final
    name; for a file in ``listed``, the names of items that already have a line, temp file +
    rename) and then its line in ``responses.jsonl`` (one ``os.write`` on ``O_APPEND``).
    ``durable`` adds fsync of each line, each file and the folder (power-loss safety). A failure
    to write a conversation file is reported through ``notify`` (a partly written file is removed)
    and the run goes on. :meth:`encode` touches no file, so it runs in the worker that finished
    the item."""

    def __init__(self, paths: EvalPaths, metric: str, model: str, *, durable: bool = False,
                 notify: Callable[[str], None] | None = None, listed: Collection[str] = ()) -> None:
        self.metric, self.model, self.durable = metric, model, durable
        self.notify = notify or (lambda msg: None)
        self.listed = frozenset(listed)
        paths.conversations.mkdir(parents=True, exist_ok=True)
        self._dir_fd = os.open(paths.conversations, os.O_RDONLY | os.O_DIRECTORY)
        # responses.jsonl: O_APPEND, one os.write per line (the line arrives encoded; see JsonlWriter)
        self._lines_fd = os.open(paths.responses, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
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
            self.notify(f"could not write {CONVERSATIONS_DIR}/{e.file} ({first_line(err)}); "
                        "its line is written, a resume rebuilds the file")
        _write_all(self._lines_fd, e.line)
        if self.durable:
            os.fsync(self._lines_fd)

    def write_conversation(self, name: str, data: bytes) -> None:
        """``name`` unlisted: no reader opens it before its line exists, so it is written in
        place (truncating what a kill left of it). Listed: replaced atomically."""
        if name in self.listed:
            self._replace(name, data)
            return
        dir_fd = self._dir_fd
        fd = os.open(name, _IN_PLACE, 0o666, dir_fd=dir_fd)
        try:
            self._fill(fd, data)
        except BaseException:
            _unlink_quietly(name, dir_fd)  # no half file stays for the line that follows
            raise
        if self.durable:
            os.fsync(dir_fd)

    def _fill(self, fd: int, data: bytes) -> None:
        """``data`` into the opened file ``fd`` (synced when durable), which is closed; the caller
        removes what a failure leaves."""
        try:
            _write_all(fd, data)
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _replace(self, name: str, data: bytes) -> None:
        tmp = "." + name + self._suffix
        dir_fd = self._dir_fd
        fd = os.open(tmp, _CREATE, 0o666, dir_fd=dir_fd)
        try:
            self._fill(fd, data)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            _unlink_quietly(tmp, dir_fd)
            raise
        if self.durable:
            os.fsync(dir_fd)

    def close(self) -> None:
        if self._dir_fd >= 0:
            for fd in (self._lines_fd, self._dir_fd):
                try:
                    os.close(fd)
                except OSError:  # already gone (the failure that stopped the run)
                    pass
            self._dir_fd = -1


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


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

