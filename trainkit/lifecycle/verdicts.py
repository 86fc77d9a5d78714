"""The reports of a run, judged, and THE RUN'S REPORT: what list, compare, promote, serve and
trainmon say about an evaluation.

* **The run's report** (one rule, :func:`~trainkit.lifecycle.classification.pick_report`):
  ``reports/default.json`` (the task's own held-out questions, what ``trainkit run`` writes) when
  it exists, else the most recently written report; ``promote --report NAME`` picks another.
* **Stale**: a report of the run's own checkpoint (model spec ``checkpoint:PATH sha256:...``) is
  stale when that file is no longer the model it measured: gone, another size, or another mtime
  and another sha256 (the hash is computed only when the size matches and the mtime does not:
  a copy that kept the bytes is not stale). A report written before reports carried the model's
  identity is checked by the file's mtime against ``written_at`` (then the hash prefix of its
  spec). A stale report is never success and never promoted.
* **A model that is not the run's file** (``trainkit eval --model module:function``): the report is
  about that model; it has no ``best.pt`` identity and is never stale. It counts like any report.
* **Gates changed since**: the gates and ``min_ok_fraction`` of ``resolved_config.json`` apply
  instead of the report's own when they differ and the config was written after the report
  (the latest word wins: ``trainkit run --set eval.gates...`` on a complete training writes a
  report with the gates it was given, newer than the config); the reason says so.

:func:`judge` is pure; the rest reads files (bounded readers, never executing anything).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from trainkit.errors import UserError
from trainkit.evaluation import report as R
from trainkit.lifecycle.classification import (
    GATES_FAILED,
    INCOMPLETE,
    NO_GATES,
    PASSED,
    STALE_REPORT,
    ReportFact,
    pick_report,
)
from trainkit.runfolder import REPORTS_DIR, RESOLVED_CONFIG_FILE, readers


@dataclass(frozen=True)
class Judgement:
    verdict: str  # PASSED | GATES_FAILED | NO_GATES | INCOMPLETE | STALE_REPORT
    gates_passed: bool | None  # what the gates in force say (None: no gate), stale or not
    detail: str  # the reasons, for a person
    gates: dict  # the gates in force
    min_ok_fraction: float
    regated: bool  # judged by the config's current gates, not the report's own
    results: tuple = ()  # the gate results in force (check_gate's dicts)
    regate_note: str = ""  # "judged by the current gates of resolved_config.json (...)" when regated


@dataclass(frozen=True)
class CurrentGates:
    """``eval.gates`` and ``eval.min_ok_fraction`` of the run's ``resolved_config.json`` now."""

    gates: dict
    min_ok_fraction: float
    written_at: float  # the config file's mtime


def current_gates(folder: str | os.PathLike, warnings: list[str] | None = None) -> CurrentGates | None:
    """The gates of ``resolved_config.json`` (None: no config, or gates it cannot read, with a warning)."""
    path = os.path.join(os.fspath(folder), RESOLVED_CONFIG_FILE)
    w: list[str] = []
    config = readers.load(path, readers.RESOLVED_CONFIG, w)
    if config is None:
        if warnings is not None:
            warnings.extend(w)
        return None
    try:
        gates = R.gates_from_config(config, RESOLVED_CONFIG_FILE)
        fraction = R.min_ok_fraction_from_config(config, RESOLVED_CONFIG_FILE)
        written = os.stat(path).st_mtime
    except (UserError, OSError) as e:
        if warnings is not None:
            warnings.append(f"{RESOLVED_CONFIG_FILE}: its eval section cannot be read ({e}); reports are judged "
                            "by their own gates")
        return None
    return CurrentGates(gates, fraction, written)


def judge(report: dict, *, stale: str | None = None, now_gates: CurrentGates | None = None) -> Judgement:
    """The verdict of a report (pure): stale first; an incomplete evaluation is no verdict; else its
    figures against its own gates and ``min_ok_fraction`` (a report without them: 1.0), or against
    ``now_gates`` when they differ and were written after the report."""
    gates = report.get("gates") if isinstance(report.get("gates"), dict) else None
    fraction = report.get("min_ok_fraction")
    if not readers.is_num(fraction):
        fraction = R.DEFAULT_MIN_OK_FRACTION
    written = report.get("written_at")
    regated = False
    if gates is not None and now_gates is not None \
            and (gates, fraction) != (now_gates.gates, now_gates.min_ok_fraction) \
            and (not readers.is_num(written) or now_gates.written_at > written):
        gates, fraction, regated = now_gates.gates, now_gates.min_ok_fraction, True
    if gates is None:  # a hand-made report without its gates: its own word
        passed = report.get("gates_passed") if isinstance(report.get("gates_passed"), bool) else None
        results: list[dict] = []
    else:
        results, passed = R.gate(report, gates, fraction)
    reasons = "; ".join(str(r.get("reason")) for r in results if not r.get("passed")) if passed is False else ""
    ok, planned, measured = R.measured(report)
    notes = []
    regate_note = ""
    if regated:
        regate_note = (f"judged by the current gates of {RESOLVED_CONFIG_FILE} ({_gates_text(gates, fraction)}), not "
                       f"the report's own ({_gates_text(report.get('gates') or {}, report.get('min_ok_fraction'))})")
        notes.append(regate_note)
    if stale:
        verdict = STALE_REPORT
        notes.insert(0, stale)
    elif report.get("completed") is False:
        verdict = INCOMPLETE
        notes.insert(0, f"{report.get('done', '?')} of {report.get('planned', '?')} items done")
    elif passed is None:
        verdict = NO_GATES
        if measured is not None and measured < 1:
            notes.insert(0, f"measured over {ok} of {planned} items")
    else:
        verdict = PASSED if passed else GATES_FAILED
        if reasons:
            notes.insert(0, reasons)
    return Judgement(verdict, passed, "; ".join(notes), gates or {}, fraction, regated, tuple(results), regate_note)


def verdict_line(j: Judgement) -> str:
    """The judgement in one line, for a person: ``gates passed (nrmse 0.05 <= max 0.1)``,
    ``gates FAILED (...)``, ``evaluated, no gates``, ``evaluation incomplete (...)``, ``STALE: ...``."""
    reasons = "; ".join(str(r.get("reason")) for r in j.results)
    regated = f" [{j.regate_note}]" if j.regated else ""
    if j.verdict == STALE_REPORT:
        return f"STALE: {j.detail}"
    if j.verdict == INCOMPLETE:
        return f"evaluation incomplete ({j.detail})"
    if j.verdict == NO_GATES:
        measured = j.detail.removesuffix(j.regate_note).rstrip("; ")
        return "evaluated, no gates" + (f" ({measured})" if measured else "") + regated
    head = "gates passed" if j.verdict == PASSED else "gates FAILED"
    return head + (f" ({reasons})" if reasons else "") + regated


def _gates_text(gates: dict, fraction: object) -> str:
    parts = [f"{m} {'>=' if k == 'min' else '<='} {R.limit_text(v)}" for m, limits in sorted(gates.items())
             for k, v in sorted((limits or {}).items()) if readers.is_num(v)]
    if readers.is_num(fraction) and fraction != R.DEFAULT_MIN_OK_FRACTION:
        parts.append(f"min_ok_fraction {R.limit_text(fraction)}")
    return ", ".join(parts) or "no gates"


# --------------------------------------------------------------------------------------------
# the model a report measured


_HASHES: dict[tuple, str] = {}  # (path, dev, ino, size, mtime_ns) -> sha256: trainmon and serve ask often


def _sha256(path: str, st: os.stat_result) -> str | None:
    key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        try:
            _HASHES[key] = R.sha256_of(Path(path))
        except OSError:
            return None
        if len(_HASHES) > 256:
            _HASHES.pop(next(iter(_HASHES)))
    return _HASHES[key]


def staleness(folder: str | os.PathLike, report: dict) -> str | None:
    """Why ``report`` no longer describes the run's model (None: it does, or it is not about a file
    of the run)."""
    ckpt = R.checkpoint_of(report.get("model"))
    if ckpt is None:
        return None
    rel, prefix = ckpt
    path = os.path.join(os.fspath(folder), rel)
    rerun = "re-run `trainkit eval` to measure it"
    try:
        st = os.stat(path)
    except OSError:
        return f"{rel} is gone since the evaluation"
    changed = f"{rel} changed since the evaluation ({rerun})"
    if "model_size" in report:  # a report that carries the model's identity
        size, mtime, digest = report.get("model_size"), report.get("model_mtime_ns"), report.get("model_sha256")
        if not (readers.is_int(size) and isinstance(digest, str)):
            return f"{rel} was replaced before the report was written ({rerun})"
        if size != st.st_size:
            return changed
        if mtime == st.st_mtime_ns:
            return None
        return None if _sha256(path, st) == digest else changed
    written = report.get("written_at")  # an older report: the file's time, then the spec's hash prefix
    if readers.is_num(written) and st.st_mtime <= written:
        return None
    if prefix is None:
        return changed
    current = _sha256(path, st)
    return None if current is not None and current.startswith(prefix) else changed


# --------------------------------------------------------------------------------------------
# reading


def report_value(report: dict, metric: str) -> float | None:
    """``metrics[metric]``, else the value under the metric's own name, else ``final_<metric>``."""
    metrics = report.get("metrics") if isinstance(report.get("metrics"), dict) else {}
    for v in (metrics.get(metric), report.get(metric), report.get(f"final_{metric}")):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


@dataclass
class RunReport:
    """One report of a run: the file's checked object, its judgement and its fact."""

    name: str
    path: Path
    report: dict
    judgement: Judgement
    fact: ReportFact


def report_names(folder: str | os.PathLike) -> list[str]:
    """The ``reports/*.json`` of a run (hidden files aside), by name."""
    try:
        with os.scandir(os.path.join(os.fspath(folder), REPORTS_DIR)) as it:
            return sorted(e.name[:-5] for e in it
                          if e.name.endswith(".json") and not e.name.startswith(".") and e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []


def read_run_reports(folder: str | os.PathLike, warnings: list[str] | None = None, *,
                     now_gates: CurrentGates | None | bool = True) -> list[RunReport]:
    """Every report of the run, read (bounded, inside the run folder), judged (stale by the run's
    model, re-gated by the config's current gates; ``now_gates=False``: by their own) and made a
    :class:`ReportFact`. An unreadable report warns and is left out."""
    folder = os.fspath(folder)
    warnings = [] if warnings is None else warnings
    names = report_names(folder)
    if not names:
        return []
    if now_gates is True:
        now_gates = current_gates(folder, warnings)
    out = []
    for n in names:
        path = Path(folder) / REPORTS_DIR / f"{n}.json"
        obj = readers.load(path, readers.REPORT, warnings, within=folder)
        if obj is None:
            continue
        j = judge(obj, stale=staleness(folder, obj), now_gates=now_gates or None)
        metric = obj.get("metric") if isinstance(obj.get("metric"), str) else None
        written = obj.get("written_at")
        if not readers.is_num(written):
            try:
                written = path.stat().st_mtime
            except OSError:
                written = None
        ok, planned, _ = R.measured(obj)
        fact = ReportFact(n, j.gates_passed, obj.get("completed") if isinstance(obj.get("completed"), bool) else None,
                          metric, report_value(obj, metric) if metric else None, written, j.verdict, j.detail,
                          ok, planned)
        out.append(RunReport(n, path, obj, j, fact))
    return out


def the_report(reports: list[RunReport]) -> RunReport | None:
    """The run's report among ``reports`` (the rule of :func:`pick_report`)."""
    chosen = pick_report(r.fact for r in reports)
    return next((r for r in reports if r.fact is chosen), None)
