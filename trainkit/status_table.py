"""The plain-text table of runs that ``trainkit status`` and ``trainmon --once`` print: readable
without colour (each state has a symbol and its name), every number through the one formatter."""

from __future__ import annotations

from pathlib import Path

from trainkit.formatting import fmt_num, fmt_percent, fmt_progress, fmt_sig, format_age
from trainkit.runfolder import symbol_of
from trainkit.status import RunStatus, summarize


def render(runs: list[RunStatus], root: Path | str) -> str:
    """A plain table (readable without colour: each state has a symbol and its name)."""
    if not runs:
        return f"no runs under {root}"
    header = ("RUN", "STATE", "EPOCH", "%", "BEST", "LOSS", "HEARTBEAT", "REASON")
    marked = any(r.alert for r in runs)
    rows = []
    for r in runs:
        total = r.total_epochs if r.total_epochs is not None else "?"
        best = f"{r.best_metric} {fmt_sig(r.best_value)}" if r.best_value is not None and r.best_metric else "-"
        rows.append((r.name, f"{symbol_of(r.state)} {r.state}", f"{r.completed_epochs}/{total}",
                     progress_text(r), best, fmt_sig(r.last_loss),
                     "-" if r.heartbeat_age_s is None else format_age(r.heartbeat_age_s) + " ago",
                     r.reason + (f"  ⚠ {r.alert}" if r.alert else "")))
    if marked:  # a column of alert marks before the names
        rows = [(f"⚠ {row[0]}" if r.alert else f"  {row[0]}", *row[1:]) for r, row in zip(runs, rows, strict=True)]
        header = (f"  {header[0]}", *header[1:])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in [header, *rows]]
    s = summarize(runs)
    counts = ", ".join(f"{n} {state}" for state, n in s["counts"].items() if n)
    lines.append("")
    lines.append(f"{s['runs']} run{'s' if s['runs'] != 1 else ''}: {counts}")
    done, total = s["epochs_done"], s["epochs_total"]
    overall = fmt_percent(done / total * 100 if total else 0.0)  # the exact ratio, rounded once
    lines.append(f"overall {overall} ({fmt_num(done, '.0f')}/{fmt_num(total, '.0f')} epochs; "
                 "early-stopped runs count as complete)")
    warned = [(r.name, w) for r in runs for w in r.warnings]
    if warned:
        lines.append("")
        lines.append(f"{len(warned)} warning(s):")
        lines.extend(f"  {name}: {w}" for name, w in warned)
    return "\n".join(lines)


def progress_text(r: RunStatus) -> str:
    """A run's progress: from its epochs; a foreign run's from its steps when its tool records a
    target in steps, ``-`` when it records none."""
    if r.source == "trainkit" or r.early_stopped or r.finished:
        return fmt_progress(r.completed_epochs, r.total_epochs, r.early_stopped or (r.finished and not r.total_epochs))
    if r.total_steps and r.step is not None:
        return fmt_percent(min(r.step, r.total_steps) / r.total_steps * 100)
    return fmt_progress(r.completed_epochs, r.total_epochs) if r.total_epochs else "-"
