"""Evaluation reports (``reports/NAME.json``) and the gates of the config's ``eval.gates``.

A gate is a threshold on an evaluation metric, ``{nrmse: {max: 0.10}}`` or ``{accuracy: {min: 0.8}}``.
``gates_passed`` is

* ``null`` when no gate is configured: the run is "evaluated, no gates" (neither passed nor failed);
* ``true`` when the evaluation completed, at least ``eval.min_ok_fraction`` (default 1: all) of the
  planned items were answered without error, and every gate holds;
* ``false`` otherwise. A gate on a metric the evaluation did not measure (or measured over no
  ``ok`` item) fails; a value measured over fewer items than ``min_ok_fraction`` of the plan fails
  whatever it is ("accuracy 1 over 40 of 60 items (66.7 %) < min_ok_fraction 1").

A report also names what it measured: the model (``model``, the spec; for the run's own checkpoint
``model_file``, its full ``model_sha256``, ``model_size`` and ``model_mtime_ns``, so a reader can tell
cheaply whether ``best.pt`` is still that model), the run's data ``profile`` and how much was
measured (``planned``, ``ok``, ``error``, ``measured_fraction`` = ok / planned).

Gate logic is pure (:func:`gate`, also used to judge a report against gates changed since); the
run's config is read from ``resolved_config.json`` (never executed). No torch.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from trainkit.config import EvalConfig, GatesConfig, build, read_resolved
from trainkit.errors import UserError
from trainkit.evaluation.plan import EVAL_FORMAT_VERSION
from trainkit.formatting import fmt_against, fmt_percent, fmt_sig
from trainkit.runfolder import EVALS_DIR, RESOLVED_CONFIG_FILE, RunPaths
from trainkit.runfolder.files import sha256_regular, write_json

DEFAULT_MIN_OK_FRACTION = 1.0
CHECKPOINT_PREFIX = "checkpoint:"
# The keys of a report that say which model it measured (None for a model that is not a file of the run).
MODEL_KEYS = ("model_file", "model_sha256", "model_size", "model_mtime_ns")


def gates_from_config(config: dict | None, source: str = RESOLVED_CONFIG_FILE) -> dict[str, dict]:
    """``{metric: {"min"|"max": threshold}}`` from a resolved config mapping (its ``eval.gates``)."""
    section = (config or {}).get("eval")
    raw = section.get("gates") if isinstance(section, dict) else None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: eval.gates: expected a mapping, got {type(raw).__name__}")
    gates = build(GatesConfig, raw, source, prefix="eval.gates.")
    out = {}
    for metric, gate in dataclasses.asdict(gates).items():
        limits = {k: v for k, v in (gate or {}).items() if v is not None}
        if limits:
            out[metric] = limits
    return out


def min_ok_fraction_from_config(config: dict | None, source: str = RESOLVED_CONFIG_FILE) -> float:
    """``eval.min_ok_fraction`` of a resolved config mapping (1.0 when absent: a config written
    before the setting existed)."""
    section = (config or {}).get("eval")
    raw = section.get("min_ok_fraction") if isinstance(section, dict) else None
    if raw is None:
        return DEFAULT_MIN_OK_FRACTION
    return float(build(EvalConfig, {"min_ok_fraction": raw}, source, prefix="eval.").min_ok_fraction)


def limit_text(x: float) -> str:
    """A threshold as the user wrote it (shortest text that reads back as the same number)."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def measured(figures: dict) -> tuple[int | None, int | None, float | None]:
    """``(ok, planned, ok / planned)`` of a summary or a report (None where unknown)."""
    ok, planned = figures.get("ok"), figures.get("planned")
    if not (isinstance(ok, int) and not isinstance(ok, bool) and isinstance(planned, int)
            and not isinstance(planned, bool)) or planned <= 0:
        return (ok if isinstance(ok, int) else None), (planned if isinstance(planned, int) else None), None
    return ok, planned, ok / planned


def _measured_text(ok: int, planned: int, fraction: float) -> str:
    return f"over {ok} of {planned} items ({fmt_percent(100.0 * fraction)})"


def check_gate(metric: str, limits: dict, summary: dict, min_ok_fraction: float = DEFAULT_MIN_OK_FRACTION) -> dict:
    """One gate against a summary (or a report: the same figures): ``{metric, min, max, value,
    passed, reason}``. The value never reads as its limit (``nrmse 0.10003 > max 0.1``)."""
    value = summary.get(metric) if summary.get("metric") == metric else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        value = None
    lo, hi = limits.get("min"), limits.get("max")
    out = {"metric": metric, "min": lo, "max": hi, "value": value}
    if value is None:
        why = "no ok item to measure it" if summary.get("metric") == metric else "not measured by this evaluation"
        return {**out, "passed": False, "reason": f"{metric}: {why}"}
    ok, planned, fraction = measured(summary)
    short = fraction is not None and fraction < min_ok_fraction
    over = f" {_measured_text(ok, planned, fraction)}" if short else ""
    if lo is not None and value < lo:
        return {**out, "passed": False, "reason": f"{metric} {fmt_against(value, lo)}{over} < min {limit_text(lo)}"}
    if hi is not None and value > hi:
        return {**out, "passed": False, "reason": f"{metric} {fmt_against(value, hi)}{over} > max {limit_text(hi)}"}
    if short:
        return {**out, "passed": False,
                "reason": f"{metric} {fmt_sig(value)}{over} < min_ok_fraction {limit_text(min_ok_fraction)}"}
    shown = fmt_against(value, lo if lo is not None else hi) if (lo is not None or hi is not None) else fmt_sig(value)
    bounds = " and ".join(b for b in (f">= min {limit_text(lo)}" if lo is not None else "",
                                      f"<= max {limit_text(hi)}" if hi is not None else "") if b)
    return {**out, "passed": True, "reason": f"{metric} {shown} {bounds}"}


def gate(figures: dict, gates: dict[str, dict],
         min_ok_fraction: float = DEFAULT_MIN_OK_FRACTION) -> tuple[list[dict], bool | None]:
    """The gate results and ``gates_passed`` of a summary (or of a report's own figures): None with
    no gate; else True only when the evaluation completed and every gate holds over at least
    ``min_ok_fraction`` of the planned items. Pure."""
    results = [check_gate(m, limits, figures, min_ok_fraction) for m, limits in gates.items()]
    if not gates:
        return results, None
    return results, bool(figures.get("completed")) and all(r["passed"] for r in results)


def checkpoint_of(spec: object) -> tuple[str, str | None] | None:
    """``(relative path, sha256 prefix)`` of a ``checkpoint:PATH sha256:HEX`` model spec, else None
    (a ``module:function`` model, or no spec)."""
    if not isinstance(spec, str) or not spec.startswith(CHECKPOINT_PREFIX):
        return None
    path, _, rest = spec[len(CHECKPOINT_PREFIX):].partition(" ")
    prefix = rest[len("sha256:"):] if rest.startswith("sha256:") else None
    return path, prefix or None


def sha256_of(path: Path) -> str:
    """The model file's sha256 (a regular file only: a FIFO or a device is refused, never read)."""
    return sha256_regular(path, within=Path(path).parent)


def model_identity(run_dir: Path, spec: object, known: dict | None = None) -> dict:
    """The ``model_*`` keys of a report on the model ``spec``. For the run's own checkpoint: its
    path, full sha256, size and mtime_ns, taken only when the file still is the model evaluated
    (its hash starts with the spec's prefix; otherwise all None: the model was replaced before the
    report was written). ``known``: an earlier report whose hash is reused while size and mtime
    are unchanged. A ``module:function`` model: all None (it is not a file of the run)."""
    none = dict.fromkeys(MODEL_KEYS)
    ckpt = checkpoint_of(spec)
    if ckpt is None:
        return none
    rel, prefix = ckpt
    path = Path(run_dir) / rel
    for _ in range(3):  # a file replaced while it is hashed is hashed again
        try:
            before = os.stat(path)
        except OSError:
            return {**none, "model_file": rel}
        if known and known.get("model_size") == before.st_size and known.get("model_mtime_ns") == before.st_mtime_ns \
                and isinstance(known.get("model_sha256"), str) and checkpoint_of(known.get("model")) == ckpt:
            digest = known["model_sha256"]
        else:
            try:
                digest = sha256_of(path)
                after = os.stat(path)
            except OSError:
                return {**none, "model_file": rel}
            if (after.st_size, after.st_mtime_ns, after.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
                continue
        if prefix is not None and not digest.startswith(prefix):
            return {**none, "model_file": rel}
        return {"model_file": rel, "model_sha256": digest, "model_size": before.st_size,
                "model_mtime_ns": before.st_mtime_ns}
    return {**none, "model_file": rel}


def build_report(name: str, summary: dict, gates: dict[str, dict], *,
                 min_ok_fraction: float = DEFAULT_MIN_OK_FRACTION, model: dict | None = None,
                 profile: str | None = None, written_at: float | None = None) -> dict:
    metric = summary.get("metric")
    value = summary.get(metric) if metric else None
    results, passed = gate(summary, gates, min_ok_fraction)
    completed = bool(summary.get("completed"))
    _, _, fraction = measured(summary)
    report = {
        "version": EVAL_FORMAT_VERSION,
        "name": name,
        "task": summary.get("task"),
        "profile": profile,
        "model": summary.get("model"),
        **dict.fromkeys(MODEL_KEYS),
        **(model or {}),
        "metric": metric,
        "metrics": {metric: value} if metric else {},
    }
    if metric:
        report[metric] = value
    if metric == "nrmse":
        report["final_nrmse"] = value
    report.update({
        "gates": gates,
        "min_ok_fraction": min_ok_fraction,
        "gate_results": results,
        "gates_passed": passed,
        "completed": completed,
        "planned": summary.get("planned"),
        "done": summary.get("done"),
        "ok": summary.get("ok"),
        "error": summary.get("error"),
        "measured_fraction": fraction,
        "eval_dir": f"{EVALS_DIR}/{name}",
        "plan_hash": summary.get("plan_hash"),
        "written_at": time.time() if written_at is None else written_at,
    })
    return report


def report_for_run(run_dir: Path, name: str, summary: dict, gates: dict[str, dict], *, config: dict | None = None,
                   known: dict | None = None) -> dict:
    """The report of the evaluation ``summary`` of the run ``run_dir``: ``min_ok_fraction`` and the
    profile from ``config`` (default: the run's ``resolved_config.json``), the model's identity from
    the file the summary's spec names."""
    run_dir = Path(run_dir)
    if config is None:
        try:
            config = read_resolved(RunPaths(run_dir))
        except UserError:
            config = None
    source = str(RunPaths(run_dir).resolved_config)
    profile = (config or {}).get("profile")
    return build_report(name, summary, gates, min_ok_fraction=min_ok_fraction_from_config(config, source),
                        model=model_identity(run_dir, summary.get("model"), known),
                        profile=profile if isinstance(profile, str) else None)


def write_report(run_dir: Path, name: str, summary: dict, gates: dict[str, dict], *, config: dict | None = None,
                 report: dict | None = None) -> dict:
    """Write ``reports/NAME.json`` (``report`` when already built, else :func:`report_for_run`)."""
    report = report if report is not None else report_for_run(run_dir, name, summary, gates, config=config)
    path = RunPaths(Path(run_dir)).report(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, report)
    return report


def same_report(a: dict | None, b: dict | None) -> bool:
    """The same report but for when it was written."""
    if a is None or b is None:
        return a is b
    return {k: v for k, v in a.items() if k != "written_at"} == {k: v for k, v in b.items() if k != "written_at"}


def one_line(report: dict) -> str:
    """One line for the terminal."""
    metric = report.get("metric")
    value = report.get(metric) if metric else None
    head = f"{metric} {fmt_sig(value)}" if isinstance(value, (int, float)) else f"{metric} -"
    ok, planned, fraction = measured(report)
    if fraction is not None and fraction < 1:
        head += f" {_measured_text(ok, planned, fraction)}"
    results = report.get("gate_results") or []
    if not report.get("completed"):
        verdict = f"gates not passed: evaluation incomplete ({report.get('done')}/{report.get('planned')})"
        if not results:
            verdict = f"evaluation incomplete ({report.get('done')}/{report.get('planned')}); no gates configured"
    elif not results:
        verdict = "evaluated, no gates configured"
    else:
        verdict = ("gates passed: " if report["gates_passed"] else "gates FAILED: ") + "; ".join(
            r["reason"] for r in results)
    return f"{head}; {verdict}"
