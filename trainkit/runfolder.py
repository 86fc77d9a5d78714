"""Names of the files in a run folder (the contract of DESIGN.md), in one place."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = 1

# Run states written to training_status.json; `crashed` and `pending` are only ever derived by readers.
RUNNING, PAUSED, FINISHED, EARLY_STOPPED, STOPPED, FAILED = (
    "running", "paused", "finished", "early_stopped", "stopped", "failed")

EPOCH_FILES = ("training_losses.pt", "optimizer_buffer.json", "validation_scores.json")


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def resolved_config(self) -> Path:
        return self.root / "resolved_config.json"

    @property
    def status(self) -> Path:
        return self.root / "training_status.json"

    @property
    def progress(self) -> Path:
        return self.root / "progress.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def system(self) -> Path:
        return self.root / "system.jsonl"

    @property
    def epochs(self) -> Path:
        return self.root / "epochs"

    def epoch_dir(self, epoch: int) -> Path:
        return self.epochs / f"epoch_{epoch:04d}"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def current_ckpt(self) -> Path:
        return self.checkpoints / "current.pt"

    @property
    def current_meta(self) -> Path:
        return self.checkpoints / "current.meta.json"

    @property
    def best_ckpt(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def control(self) -> Path:
        return self.root / "control.json"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def lock(self) -> Path:
        return self.root / ".trainkit.lock"

    @property
    def superseded(self) -> Path:
        """Where ``--fresh`` moves earlier outputs (one timestamped folder per fresh start)."""
        return self.root / "superseded"

    def config_file(self) -> Path | None:
        """The run's own config (``config.yaml``, ``.yml``, ``.json``, ``.toml`` or ``.py``)."""
        for suffix in (".yaml", ".yml", ".json", ".toml", ".py"):
            p = self.root / f"config{suffix}"
            if p.is_file():
                return p
        return None

    # Outputs of training; `--fresh` moves exactly these aside. Inputs (config, notes.md,
    # metadata.json) stay where they are.
    def outputs(self) -> list[Path]:
        return [self.resolved_config, self.status, self.progress, self.metrics, self.system,
                self.epochs, self.checkpoints, self.control, self.log, self.root / "evals",
                self.root / "reports"]


def progress_percentage(completed: int, total: int | None, early_stopped: bool) -> float:
    """completed / total x 100 (2 decimals); an early-stopped run is complete: 100."""
    if early_stopped:
        return 100.0
    if not total:
        return 0.0
    return round(min(completed, total) / total * 100, 2)


def progress_record(completed: int, total: int | None, *, early_stopped_at: int | None, finished: bool) -> dict:
    """The content of ``progress.json``. Early-stopped and finished runs are 100 %."""
    early = early_stopped_at is not None
    pct = 100.0 if finished else progress_percentage(completed, total, early)
    return {
        "version": FORMAT_VERSION,
        "completed_epochs": completed,
        "total_epochs": total,
        "progress_percentage": pct,
        "early_stopped": early,
        "early_stopped_at_epoch": early_stopped_at,
        "finished": bool(finished or early),
        "updated_at": time.time(),
    }
