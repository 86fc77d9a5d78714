"""Evaluation reports (``reports/NAME.json``) and the gates of the config's ``eval.gates``.

A gate is a threshold on an evaluation metric, ``{nrmse: {max: 0.10}}`` or ``{accuracy: {min: 0.8}}``.
``gates_passed`` is true when the evaluation completed and every gate holds (with no gates, a
completed evaluation passes); a gate on a metric the evaluation did not measure (or measured over
no ``ok`` item) fails. Gate logic is pure; the run's config is read from ``resolved_config.json``
(never executed). No torch.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from trainkit.config import GatesConfig, build
from trainkit.errors import UserError
from trainkit.evaluation.plan import EVAL_FORMAT_VERSION
from trainkit.files import write_json
from trainkit.runfolder import EVALS_DIR, RESOLVED_CONFIG_FILE, RunPaths


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


def check_gate(metric: str, limits: dict, summary: dict) -> dict:
    """One gate against a summary: ``{metric, min, max, value, passed, reason}``."""
    value = summary.get(metric) if summary.get("metric") == metric else None
    lo, hi = limits.get("min"), limits.get("max")
    out = {"metric": metric, "min": lo, "max": hi, "value": value}
    if value is None:
        why = "no ok item to measure it" if summary.get("metric") == metric else "not measured by this evaluation"
        return {**out, "passed": False, "reason": f"{metric}: {why}"}
    if lo is not None and value < lo:
        return {**out, "passed": False, "reason": f"{metric} {value:.4g} < min {lo:g}"}
    if hi is not None and value > hi:
        return {**out, "passed": False, "reason": f"{metric} {value:.4g} > max {hi:g}"}
    bounds = " and ".join(b for b in (f">= min {lo:g}" if lo is not None else "",
                                      f"<= max {hi:g}" if hi is not None else "") if b)
    return {**out, "passed": True, "reason": f"{metric} {value:.4g} {bounds}"}


def build_report(name: str, summary: dict, gates: dict[str, dict]) -> dict:
    metric = summary.get("metric")
    value = summary.get(metric) if metric else None
    results = [check_gate(m, limits, summary) for m, limits in gates.items()]
    completed = bool(summary.get("completed"))
    report = {
        "version": EVAL_FORMAT_VERSION,
        "name": name,
        "task": summary.get("task"),
        "model": summary.get("model"),
        "metric": metric,
        "metrics": {metric: value} if metric else {},
    }
    if metric:
        report[metric] = value
    if metric == "nrmse":
        report["final_nrmse"] = value
    report.update({
        "gates": gates,
        "gate_results": results,
        "gates_passed": completed and all(r["passed"] for r in results),
        "completed": completed,
        "planned": summary.get("planned"),
        "done": summary.get("done"),
        "ok": summary.get("ok"),
        "error": summary.get("error"),
        "eval_dir": f"{EVALS_DIR}/{name}",
        "plan_hash": summary.get("plan_hash"),
        "written_at": time.time(),
    })
    return report


def write_report(run_dir: Path, name: str, summary: dict, gates: dict[str, dict]) -> dict:
    report = build_report(name, summary, gates)
    path = RunPaths(Path(run_dir)).report(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, report)
    return report


def one_line(report: dict) -> str:
    """One line for the terminal."""
    metric = report.get("metric")
    value = report.get(metric) if metric else None
    head = f"{metric} {value:.4g}" if isinstance(value, (int, float)) else f"{metric} -"
    if not report.get("completed"):
        verdict = f"gates not passed: evaluation incomplete ({report.get('done')}/{report.get('planned')})"
    elif not report["gate_results"]:
        verdict = "no gates configured"
    else:
        verdict = ("gates passed: " if report["gates_passed"] else "gates FAILED: ") + "; ".join(
            r["reason"] for r in report["gate_results"])
    return f"{head}; {verdict}"
