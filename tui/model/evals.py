"""A run's evaluations (summary, report gates, and, while one runs or after it was interrupted,
the counts from its files) and one evaluation's items from ``responses.jsonl``; a conversation
file is opened only when it is shown."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from trainkit.errors import first_line
from trainkit.evaluation.plan import conversation_name, read_precheck_header
from trainkit.evaluation.scoring import score_dir
from trainkit.formatting import fmt_sig
from trainkit.lifecycle.verdicts import read_run_reports, the_report, verdict_line
from trainkit.runfolder import EVALS_DIR, EvalPaths, RunPaths, readers
from trainkit.runfolder.files import FileFormatError, JsonlTail
from trainkit.runfolder.lock import live_lock, read_lock

ALL, ERRORS, WRONG = "all", "errors", "wrong"
# What an evaluation is doing, judged from its lock and its files.
DONE, RUNNING, ELSEWHERE, INTERRUPTED = "done", "running", "elsewhere", "interrupted"


def _sig(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


_COUNTS: dict[str, tuple[tuple, dict | None, str | None]] = {}  # eval folder -> (file sigs, counts, why)


def file_counts(ep: EvalPaths) -> tuple[dict | None, str | None]:
    """planned, done, ok, error and the metric over the ok items, from ``precheck.jsonl`` and
    ``responses.jsonl`` (``trainkit score``'s computation: the last line of an item wins), recomputed
    only when those files changed; (None, why) when the plan is missing or unusable."""
    key = (_sig(ep.precheck), _sig(ep.responses))
    held = _COUNTS.get(str(ep.root))
    if held is not None and held[0] == key:
        return held[1], held[2]
    try:
        counts, why = score_dir(ep.root), None
    except FileNotFoundError:
        counts, why = None, "no precheck.jsonl yet"
    except (FileFormatError, OSError) as e:
        counts, why = None, first_line(e)
    _COUNTS[str(ep.root)] = (key, counts, why)
    return counts, why


def activity(ep: EvalPaths, summary: dict | None) -> tuple[str, str]:
    """(state, detail): ``running`` (a live process on this host holds the eval lock), ``elsewhere``
    (another host's process holds it: not checkable from here), ``interrupted`` (nobody holds it
    and no summary covers the last lines written) or ``done``."""
    warnings: list[str] = []
    info = read_lock(ep.lock, warnings)
    if info is not None:
        pid, host = info.get("pid"), info.get("host")
        if host is not None and host != socket.gethostname():
            return ELSEWHERE, f"locked by pid {pid} on {host}"
        if live_lock(ep.lock, warnings) is not None:
            return RUNNING, f"pid {pid}"
    if summary is None:
        return INTERRUPTED, "no summary"
    s, r = _sig(ep.summary), _sig(ep.responses)
    if s is not None and r is not None and r[0] > s[0]:
        return INTERRUPTED, "lines written after the summary"
    return DONE, ""


@dataclass
class EvalInfo:
    name: str
    path: str
    summary: dict | None
    report: dict | None
    warnings: list[str] = field(default_factory=list)
    state: str = DONE  # DONE, RUNNING, ELSEWHERE or INTERRUPTED (:func:`activity`)
    detail: str = ""
    counts: dict | None = None  # from the files, when the summary is missing or behind them
    counts_why: str | None = None
    verdict: str | None = None  # the report judged (stale, current gates): trainkit.lifecycle.verdicts
    the_run_report: bool = False  # the report the run is judged by (pick_report)

    @property
    def metric(self) -> str | None:
        for src in (self.summary, self.counts, self.report):
            if src and isinstance(src.get("metric"), str):
                return src["metric"]
        return None

    def text(self) -> str:
        """One line: what it is doing, done/planned, ok/error, the metric, the gates."""
        parts = []
        if self.state == DONE:
            s = self.summary or {}
            parts.append(_counts_text(s) + ("" if s.get("completed") else " (incomplete)"))
        else:
            head = {RUNNING: f"running ({self.detail})", ELSEWHERE: f"{self.detail}, not checkable from here",
                    INTERRUPTED: f"interrupted ({self.detail})"}[self.state]
            if self.counts is None:
                parts.append(f"{head}: {self.counts_why or 'nothing counted'}")
            else:
                planned, done = self.counts.get("planned"), self.counts.get("done")
                incomplete = "" if self.state != INTERRUPTED or done == planned else ", incomplete"
                parts.append(f"{head}{incomplete}: {_counts_text(self.counts)}")
        s = self.summary if self.state == DONE else self.counts
        m = self.metric
        if s and m and isinstance(s.get(m), (int, float)) and not isinstance(s.get(m), bool):
            parts.append(f"{m} {fmt_sig(s[m])}")
        if self.report and self.verdict:
            parts.append(self.verdict + (" · the run's report" if self.the_run_report else ""))
        return " · ".join(parts)


def _counts_text(s: dict) -> str:
    return f"{s.get('done', '?')}/{s.get('planned', '?')} done, ok {s.get('ok', '?')}, error {s.get('error', '?')}"


def running_evaluation(run_dir: str) -> str | None:
    """``mixed 26/40``: the evaluation of the run that a live process on this host runs now (its
    lock, ``evals/.<name>.lock``), with the items done and planned; None when none runs."""
    try:  # a plain path (a row is read for every run at start: no pathlib here)
        with os.scandir(f"{run_dir}/{EVALS_DIR}") as it:
            locks = sorted(e.name for e in it if e.name.startswith(".") and e.name.endswith(".lock"))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    for lock in locks:
        name = lock[1:-len(".lock")]
        ep = EvalPaths.of(Path(run_dir), name)
        if live_lock(ep.lock, []) is None:
            continue
        counts, _ = file_counts(ep)
        if counts is None:
            return f"{name} starting"
        return f"{name} {counts.get('done', 0)}/{counts.get('planned', '?')}"
    return None


def list_evals(run_dir: str) -> list[EvalInfo]:
    paths = RunPaths(Path(run_dir))
    try:
        names = sorted(e.name for e in os.scandir(paths.evals) if e.is_dir() and not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    judged = {r.name: r for r in read_run_reports(run_dir)}
    chosen = the_report(list(judged.values()))
    for name in names:
        ep = paths.eval_paths(name)
        warnings: list[str] = []
        summary = readers.load(ep.summary, readers.SUMMARY, warnings)
        rr = judged.get(name)
        report = rr.report if rr else readers.load(paths.report(name), readers.REPORT, warnings)
        info = EvalInfo(name, str(ep.root), summary, report, warnings, verdict=verdict_line(rr.judgement) if rr
                        else None, the_run_report=rr is not None and rr is chosen)
        info.state, info.detail = activity(ep, summary)
        if info.state != DONE:
            info.counts, info.counts_why = file_counts(ep)
        out.append(info)
    return out


@dataclass
class Item:
    """One finished item (a line of ``responses.jsonl``)."""

    question_id: object
    sample: int
    status: str
    correct: bool | None
    score: float | None
    latency_s: float | None
    attempts: int | None
    error: str | None
    response: object
    expected: object
    t: float | None = None  # when it finished (the line's ``t``)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def wrong(self) -> bool:
        """Answered but not right (accuracy: not correct; a score task has no "wrong")."""
        return self.ok and self.correct is False

    @property
    def file(self) -> str:
        return conversation_name(self.question_id, self.sample)

    def result_text(self) -> str:
        if not self.ok:
            return "error"
        if self.correct is not None:
            return "correct" if self.correct else "wrong"
        return fmt_sig(self.score)


def _item(rec: dict) -> Item | None:
    qid, sample = rec.get("question_id"), rec.get("sample_number")
    if qid is None or not isinstance(sample, int):
        return None

    def num(v):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

    correct = rec.get("correct")
    attempts = rec.get("attempts")
    return Item(qid, sample, str(rec.get("status")), correct if isinstance(correct, bool) else None,
                num(rec.get("score")), num(rec.get("latency_s")), attempts if isinstance(attempts, int) else None,
                rec.get("error") if isinstance(rec.get("error"), str) else None, rec.get("response"),
                rec.get("expected"), num(rec.get("t")))


def item_key(item: Item) -> tuple[str, int]:
    return str(item.question_id), item.sample


def shown_in(item: Item, which: str) -> bool:
    """Whether ``item`` is listed under the filter ``which`` (all, errors, wrong)."""
    return not item.ok if which == ERRORS else item.wrong if which == WRONG else True


def latest(item: Item, rec: dict | None) -> tuple[Item, str]:
    """The newer of an item's line and its conversation file, by their ``t`` (the file is written
    just before the line, so for a moment it is ahead of it; a failed rewrite leaves it behind):
    (the item to show, ``same`` / ``file`` (the file is newer) / ``line`` (the file is older))."""
    ft = rec.get("t") if rec else None
    if not isinstance(ft, (int, float)) or isinstance(ft, bool) or item.t is None or ft == item.t:
        return item, "same"
    if ft > item.t:
        newer = _item(rec)
        return (newer, "file") if newer is not None else (item, "same")
    return item, "line"


class EvalItems:
    """The items of one evaluation, read incrementally (a later line of the same item replaces the
    earlier one, as ``--retry-errors`` writes it). After :meth:`update`, :attr:`reset`,
    :attr:`replaced` (keys of items replaced in place) and :attr:`appended` (new items) say what
    changed."""

    def __init__(self, eval_dir: str) -> None:
        self.paths = EvalPaths(Path(eval_dir))
        self.tail = JsonlTail(self.paths.responses)
        self.items: list[Item] = []
        self._index: dict[tuple, int] = {}
        self.reset = False
        self.replaced: set[tuple[str, int]] = set()
        self.appended: list[Item] = []
        self._plan_sig: tuple | None = None
        self._planned: int | None = None
        self.metric: str | None = None  # the plan's (after :meth:`progress`)

    def update(self) -> bool:
        recs = self.tail.read()
        self.reset, self.replaced = self.tail.reset, set()
        if self.reset:
            self.items, self._index = [], {}
        first_new = len(self.items)
        for rec in recs:
            it = _item(rec)
            if it is None:
                continue
            key = item_key(it)
            index = self._index.get(key)
            if index is None:
                self._index[key] = len(self.items)
                self.items.append(it)
            else:
                self.items[index] = it
                if index < first_new:
                    self.replaced.add(key)
        self.appended = self.items[first_new:]
        return bool(recs) or self.reset

    def index_of(self, key: tuple[str, int]) -> int | None:
        return self._index.get(key)

    @property
    def bad_lines(self) -> int:
        return self.tail.bad_lines

    def filtered(self, which: str) -> list[Item]:
        return [i for i in self.items if shown_in(i, which)]

    def progress(self) -> tuple[str, int | None]:
        """(what the evaluation is doing: :func:`activity`'s state, the items its plan holds: the
        header of ``precheck.jsonl``, None while it is missing or unusable), the header re-read only
        when the file changed."""
        summary = readers.load(self.paths.summary, readers.SUMMARY, [])
        state, _ = activity(self.paths, summary)
        sig = _sig(self.paths.precheck)
        if sig != self._plan_sig:
            self._plan_sig = sig
            try:
                header = read_precheck_header(self.paths.precheck)
                self._planned, self.metric = header["planned"], header["metric"]
            except (FileNotFoundError, FileFormatError, OSError):
                self._planned = None
        return state, self._planned

    def conversation(self, item: Item) -> tuple[dict | None, str | None]:
        """The conversation file of ``item`` (None with why, when missing or unreadable)."""
        warnings: list[str] = []
        rec = readers.load(self.paths.conversations / item.file, readers.ANY, warnings)
        if rec is None:
            return None, "; ".join(warnings) or f"{item.file} not written (yet)"
        return rec, None
