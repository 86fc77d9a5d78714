"""What one row of the runs workspace shows: a small, Textual-free view of one run."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from trainkit.formatting import fmt_num, fmt_percent, fmt_progress, format_age
from trainkit.runfolder import COMPLETE, LIVE, label_of, symbol_of

SPARK_POINTS = 16  # the LOSS TREND column is 16 cells wide



@dataclass
class RunView:
    """One run as the workspace shows it. ``heartbeat_at`` is kept (not an age) so that the age is
    computed from the model's clock when shown."""

    name: str
    path: str
    state: str = "pending"
    reason: str = ""
    completed: int = 0
    total: int | None = None
    percentage: float = 0.0
    fraction: float = 0.0  # 0..1 for the bar: complete epochs plus the current epoch's steps
    losses: deque = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))
    last_loss: float | None = None
    best_metric: str | None = None
    best_value: float | None = None
    throughput: float | None = None
    eta_s: float | None = None
    heartbeat_at: float | None = None
    step: int | None = None
    lr: float | None = None
    early_stopped: bool = False
    warnings: list[str] = field(default_factory=list)
    alert: str | None = None  # the training monitor's latest alert (training_status.json)
    bad_lines: int = 0
    metrics_problem: str | None = None  # why metrics.jsonl cannot be read (not a regular file, a huge line)
    config: dict[str, Any] = field(default_factory=dict)
    changed_at: float = 0.0  # when the model last saw this run change (sort "recent")
    archived: bool = False
    evaluation: str | None = None  # a running evaluation of a trained run: "mixed 26/40"
    source: str = "trainkit"  # or the tool that wrote a foreign run: hf | lightning | tensorboard (read-only)
    total_steps: int | None = None  # a foreign run's target in steps, when its tool records one

    @property
    def symbol(self) -> str:
        return symbol_of(self.state)

    @property
    def label(self) -> str:
        return label_of(self.state)  # a word that reads without colour (the symbol alone is ambiguous for ✓)

    @property
    def live(self) -> bool:
        return self.state in LIVE

    @property
    def complete(self) -> bool:
        return self.state in COMPLETE

    @property
    def warned(self) -> bool:
        return bool(self.warnings) or self.bad_lines > 0 or bool(self.alert) or self.metrics_problem is not None

    def problems(self) -> list[str]:
        """What the warning mark stands for, one line each (the row's tooltip)."""
        out = [f"alert: {self.alert}"] if self.alert else []
        out += self.warnings
        if self.metrics_problem:
            out.append(self.metrics_problem)
        if self.bad_lines:
            out.append(f"{self.bad_lines} unreadable line(s) skipped in the metrics log")
        return out

    def heartbeat_age(self, now: float) -> float | None:
        return None if self.heartbeat_at is None else max(0.0, now - self.heartbeat_at)

    def age_text(self, now: float) -> str:
        """The heartbeat age of a live run (others: ``-``, so that an idle screen never changes)."""
        if not self.live:
            return "-"
        return format_age(self.heartbeat_age(now))

    @property
    def in_steps(self) -> bool:
        """A foreign run whose tool counts its target in steps (HF max_steps): progress in steps."""
        return self.source != "trainkit" and bool(self.total_steps) and self.step is not None

    def _steps_text(self) -> str | None:
        """A foreign run's progress in steps: ``40/100 steps`` (its target in steps), ``step 49`` (its
        tool records no target); None: in epochs."""
        if self.in_steps:
            return f"{self.step}/{self.total_steps} steps"
        if self.source != "trainkit" and not self.total and self.step is not None:
            return f"step {self.step}"
        return None

    def epochs_text(self) -> str:
        return self._steps_text() or f"{self.completed}/{self.total if self.total is not None else '?'}"

    def progress_words(self) -> str:
        """``3/10 epochs`` or, for a foreign run, ``40/100 steps`` or ``step 49``."""
        return self._steps_text() or f"{self.epochs_text()} epochs"

    def percent_text(self) -> str:
        """The progress as every surface prints it (the exact ratio: 199/200 is 99.5%, never 100%);
        a foreign run's from its steps, ``-`` when its tool records no target."""
        if self.in_steps and not self.complete:
            return fmt_percent(min(self.step, self.total_steps) / self.total_steps * 100, space=False)
        if self.source != "trainkit" and not self.total and not self.complete:
            return "-"
        whole = self.early_stopped or (self.source != "trainkit" and self.complete)  # its tool said: done
        return fmt_progress(self.completed, self.total, whole, space=False)

    def short_reason(self) -> str:
        """Why the run is in its state, in a few words (the row's ETA / WHY cell): ``pid gone``,
        ``no heartbeat 5 min``, the error of a failed run, the items of a running evaluation."""
        r = self.reason or ""
        if r.startswith("cannot read"):
            return r.split(" (")[0]
        if self.state == "evaluating":
            return self.evaluation or r
        if self.state == "crashed":
            if " is gone" in r:
                return "pid gone"
            if r.startswith("no heartbeat for "):
                return "no heartbeat " + r[len("no heartbeat for "):].split(" (")[0]
            if "has no heartbeat_at" in r:
                return "no heartbeat"
            if r.startswith("outputs but no "):
                return "no status file"
            if r.startswith("locked by"):
                return r
            return r.split(":")[0]
        if self.state == "failed":
            first = r.splitlines()[0] if r else ""
            return first.removeprefix("training failed").removeprefix(": ") or "no error recorded"
        if self.state == "queued":
            return r.replace("Slurm job ", "job ", 1).split(":")[0]
        if self.state in ("stopped", "paused", "suspended"):
            return r.split(":")[0] if r else ""
        return ""

    def throughput_text(self) -> str:
        return "-" if self.throughput is None else f"{fmt_num(self.throughput, '.0f')}/s"
