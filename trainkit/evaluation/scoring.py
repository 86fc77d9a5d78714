"""Scoring: one item, and the summary of an evaluation folder recomputed from its files alone.

``trainkit eval`` writes ``test_summary.json`` with :func:`score_dir`, and ``trainkit score`` prints
the same function's result, so the two always agree, on a finished or a partial evaluation.
Pure logic apart from reading the folder's files; no torch.

Metrics (computed over the ``ok`` items, the last record of each (question, sample) winning):

* ``accuracy``: the fraction whose response equals the expected answer, both as text with
  surrounding whitespace ignored (a non-string value is compared as its canonical JSON text).
* ``nrmse``: ``sqrt(sum_i ||pred_i - true_i||^2) / sqrt(sum_i ||true_i||^2)``: the norm of all
  errors over the norm of all true values, pooled over the items (the definition of the
  training's validation ``nrmse``; not a mean of per-item values). A line's own ``score`` is its
  item's ``||pred - true|| / ||true||``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from trainkit.evaluation.plan import EVAL_FORMAT_VERSION, key_of, read_precheck
from trainkit.runfolder import EvalPaths
from trainkit.runfolder.files import JsonlTail, KiB, ReadProblem, open_regular


class Unscorable(ValueError):
    """A response that cannot be scored against its expected answer (garbage)."""


def normalize(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _flat(value: Any, what: str) -> list[float]:
    out: list[float] = []

    def walk(v: Any) -> None:
        if isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            raise Unscorable(f"{what} holds {type(v).__name__}, expected numbers")

    walk(value)
    return out


def sq_terms(response: Any, expected: Any) -> tuple[float, float]:
    """(sum of squared errors, sum of squared true values) of one item."""
    if not isinstance(response, (list, tuple)):
        raise Unscorable(f"response is {type(response).__name__}, expected a list of numbers")
    pred, true = _flat(response, "response"), _flat(expected, "expected answer")
    if len(pred) != len(true):
        raise Unscorable(f"response has {len(pred)} values, expected {len(true)}")
    if not all(math.isfinite(p) for p in pred):
        raise Unscorable("response holds NaN or infinite values")
    return sum((p - t) ** 2 for p, t in zip(pred, true, strict=True)), sum(t * t for t in true)


def score_key(metric: str) -> str:
    """The per-item score field of a record: ``correct`` (accuracy) or ``score`` (nrmse)."""
    return "correct" if metric == "accuracy" else "score"


def last_records(records: list[dict], wanted) -> dict[tuple[str, int], dict]:
    """The last record of each (question id, sample) key in ``wanted`` (file order: a later record
    of an item, e.g. from ``--retry-errors``, replaces an earlier one)."""
    last: dict[tuple[str, int], dict] = {}
    for r in records:
        key = key_of(r.get("question_id"), r.get("sample_number"))
        if key in wanted:
            last[key] = r
    return last


def item_fields(metric: str, response: Any, expected: Any) -> dict:
    """The per-item score fields of a response line: ``{"correct": bool}`` (accuracy) or
    ``{"score": item NRMSE}`` (nrmse). Raises :class:`Unscorable`."""
    if metric == "accuracy":
        return {"correct": normalize(response) == normalize(expected)}
    if metric == "nrmse":
        err, ref = sq_terms(response, expected)
        return {"score": math.sqrt(err / ref) if ref > 0 else (0.0 if err == 0 else math.inf)}
    raise ValueError(f"unknown metric {metric!r}")


def metric_value(metric: str, ok_records: list[dict]) -> tuple[float | None, dict]:
    """The metric over ``ok_records`` and extra counts (``correct`` for accuracy)."""
    if metric == "accuracy":
        correct = sum(normalize(r.get("response")) == normalize(r.get("expected")) for r in ok_records)
        return (correct / len(ok_records) if ok_records else None), {"correct": correct}
    err = ref = 0.0
    for r in ok_records:
        e, t = sq_terms(r.get("response"), r.get("expected"))
        err += e
        ref += t
    if not ok_records or ref <= 0:
        return None, {}
    return math.sqrt(err / ref), {}


def session_duration(sessions: list[dict], times: list[float]) -> float:
    """Seconds the evaluation ran, summed over its sessions: a session with an ``end`` line counts
    start to end; one killed without it counts from its start to its last finished item."""
    starts = [(float(s["t"]), i) for i, s in enumerate(sessions) if s.get("event") == "start"
              and isinstance(s.get("t"), (int, float))]
    total = 0.0
    times = sorted(times)
    for n, (t0, idx) in enumerate(starts):
        t_next = starts[n + 1][0] if n + 1 < len(starts) else math.inf
        end = next((float(s["t"]) for s in sessions[idx + 1:] if s.get("event") == "end"
                    and isinstance(s.get("t"), (int, float)) and s["t"] <= t_next), None)
        if end is None:
            inside = [t for t in times if t0 <= t <= t_next]
            end = inside[-1] if inside else t0
        total += max(0.0, end - t0)
    return total


def summarize(header: dict, planned: list[tuple[str, int]], records: list[dict], sessions: list[dict]) -> dict:
    """The summary of an evaluation from its plan header, planned keys, response records (in file
    order) and session events. Records of keys outside the plan are ignored; the last record of a
    key wins; an ``ok`` record whose response cannot be scored counts as an error."""
    last = last_records(records, set(planned))
    metric = header["metric"]
    ok_records, n_error = [], 0
    for r in last.values():
        if r.get("status") == "ok":
            try:
                item_fields(metric, r.get("response"), r.get("expected"))
            except Unscorable:
                n_error += 1
                continue
            ok_records.append(r)
        else:
            n_error += 1
    value, extra = metric_value(metric, ok_records)
    latencies = [r["latency_s"] for r in last.values() if isinstance(r.get("latency_s"), (int, float))]
    times = [r["t"] for r in records if isinstance(r.get("t"), (int, float))]
    planned_n = len(planned)
    done = len(last)
    return {
        "version": EVAL_FORMAT_VERSION,
        "name": header.get("name"),
        "task": header.get("task"),
        "model": header.get("model"),
        "metric": metric,
        "planned": planned_n,
        "done": done,
        "ok": len(ok_records),
        "error": n_error,
        "completed": planned_n > 0 and done == planned_n,
        metric: value,
        **extra,
        "duration_s": round(session_duration(sessions, times), 3),
        "sessions": sum(1 for s in sessions if s.get("event") == "start"),
        "mean_latency_s": round(sum(latencies) / len(latencies), 6) if latencies else None,
        "questions": header.get("questions"),
        "samples": header.get("samples"),
        "plan_hash": header.get("plan_hash"),
    }


@dataclass
class EvalFiles:
    """What an evaluation folder holds, read tolerantly: a torn last line is left out."""

    header: dict
    planned: list[tuple[str, int]]
    records: list[dict]
    sessions: list[dict]
    torn_tail_bytes: int = 0
    notes: list[str] = field(default_factory=list)


def _torn_tail(path: Path, offset: int) -> int:
    """Bytes after the last complete line read (0 when what follows holds new complete lines).
    Reads at most 64 KiB of it, from regular files only."""
    try:
        fd = open_regular(path)
    except (FileNotFoundError, ReadProblem):
        return 0
    try:
        rest = os.fstat(fd).st_size - offset
        if rest <= 0:
            return 0
        return 0 if b"\n" in os.pread(fd, min(rest, 64 * KiB), offset) else rest
    finally:
        os.close(fd)


def read_eval_dir(root: str | Path) -> EvalFiles:
    """Raises FileNotFoundError (no ``precheck.jsonl``) or FileFormatError (unusable plan)."""
    paths = EvalPaths(Path(root))
    header, planned = read_precheck(paths.precheck)
    tail = JsonlTail(paths.responses)
    records = tail.read()
    session_tail = JsonlTail(paths.sessions)
    sessions = session_tail.read()
    files = EvalFiles(header, planned, records, sessions, torn_tail_bytes=_torn_tail(paths.responses, tail.offset))
    for t in (tail, session_tail):
        if t.problem:
            files.notes.append(f"{t.path.name}: {t.problem}")
    if tail.bad_lines:
        files.notes.append(f"responses.jsonl: skipped {tail.bad_lines} line(s) that are not JSON objects")
    if files.torn_tail_bytes:
        files.notes.append(f"responses.jsonl: ignored a torn last line ({files.torn_tail_bytes} bytes, "
                           "left by a crash; the next `trainkit eval` truncates it and re-runs that item)")
    return files


def score_dir(root: str | Path) -> dict:
    """The summary of the evaluation in ``root``, from its files alone."""
    f = read_eval_dir(root)
    return summarize(f.header, f.planned, f.records, f.sessions)

