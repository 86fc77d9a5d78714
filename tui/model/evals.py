"""A run's evaluations (summary, report gates) and one evaluation's items from
``responses.jsonl``; a conversation file is opened only when it is shown."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from trainkit import readers
from trainkit.evaluation.plan import conversation_name
from trainkit.files import JsonlTail
from trainkit.lifecycle.verdicts import read_run_reports, the_report, verdict_line
from trainkit.runfolder import EvalPaths, RunPaths

ALL, ERRORS, WRONG = "all", "errors", "wrong"


@dataclass
class EvalInfo:
    name: str
    path: str
    summary: dict | None
    report: dict | None
    warnings: list[str] = field(default_factory=list)
    verdict: str | None = None  # the report judged (stale, current gates): trainkit.lifecycle.verdicts
    the_run_report: bool = False  # the report the run is judged by (pick_report)

    @property
    def metric(self) -> str | None:
        for src in (self.summary, self.report):
            if src and isinstance(src.get("metric"), str):
                return src["metric"]
        return None

    def text(self) -> str:
        """One line: done/planned, ok/error, the metric, the gates."""
        s = self.summary or {}
        parts = []
        if s:
            parts.append(f"{s.get('done', '?')}/{s.get('planned', '?')} done, ok {s.get('ok', '?')}, "
                         f"error {s.get('error', '?')}" + ("" if s.get("completed") else " (incomplete)"))
            m = self.metric
            if m and isinstance(s.get(m), (int, float)):
                parts.append(f"{m} {s[m]:.4g}")
        else:
            parts.append("running (no summary yet)")
        if self.report and self.verdict:
            parts.append(self.verdict + (" · the run's report" if self.the_run_report else ""))
        return " · ".join(parts)


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
        out.append(EvalInfo(name, str(ep.root), summary, report, warnings, verdict=verdict_line(rr.judgement) if rr
                            else None, the_run_report=rr is not None and rr is chosen))
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
        return "-" if self.score is None else f"{self.score:.4g}"


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
                rec.get("expected"))


class EvalItems:
    """The items of one evaluation, read incrementally (a later line of the same item replaces the
    earlier one, as ``--retry-errors`` writes it)."""

    def __init__(self, eval_dir: str) -> None:
        self.paths = EvalPaths(Path(eval_dir))
        self.tail = JsonlTail(self.paths.responses)
        self.items: list[Item] = []
        self._index: dict[tuple, int] = {}

    def update(self) -> bool:
        recs = self.tail.read()
        changed = bool(recs)
        if self.tail.reset:
            self.items, self._index, changed = [], {}, True
        for rec in recs:
            it = _item(rec)
            if it is None:
                continue
            key = (str(it.question_id), it.sample)
            if key in self._index:
                self.items[self._index[key]] = it
            else:
                self._index[key] = len(self.items)
                self.items.append(it)
        return changed

    @property
    def bad_lines(self) -> int:
        return self.tail.bad_lines

    def filtered(self, which: str) -> list[Item]:
        if which == ERRORS:
            return [i for i in self.items if not i.ok]
        if which == WRONG:
            return [i for i in self.items if i.wrong]
        return list(self.items)

    def conversation(self, item: Item) -> tuple[dict | None, str | None]:
        """The conversation file of ``item`` (None with why, when missing or unreadable)."""
        warnings: list[str] = []
        rec = readers.load(self.paths.conversations / item.file, readers.ANY, warnings)
        if rec is None:
            return None, "; ".join(warnings) or f"{item.file} not written (yet)"
        return rec, None
