"""``trainkit run CONFIG``: train, then evaluate, then write the report.

Each stage is the ordinary command in a subprocess (``python -m trainkit train|eval``), so each is
also runnable on its own and keeps its own resume logic: re-running the pipeline resumes the stage
that was interrupted and skips the finished ones (a complete training exits at once; a complete
evaluation with the same plan says so and touches nothing). The pipeline stops at the first stage
that fails, with its exit code; when every stage ran it exits 0 if the gates passed (or none is configured) and
:data:`~trainkit.errors.EXIT_GATES` if they did not (a gating pipeline fails like a test run).
Ctrl-C, SIGTERM or SIGHUP (the terminal or SSH connection went away) is passed to the running stage
as a graceful stop; a terminal that is gone never fails the pipeline (its messages fall silent). No
torch in this process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainkit.config import apply_overrides, check_value, load_file, parse_set, read_resolved
from trainkit.errors import EXIT_GATES, EXIT_INTERRUPTED, UserError
from trainkit.evaluation import report
from trainkit.evaluation.plan import check_name
from trainkit.evaluation.run import EvalRequest
from trainkit.evaluation.scoring import score_dir
from trainkit.interrupts import stop_signals
from trainkit.runfolder import RunPaths, choose_run_dir, readers
from trainkit.terminal import say as say_line


@dataclass
class PipelineRequest:
    config: str
    run_dir: str | None = None
    epochs: int | None = None
    sets: list[str] = field(default_factory=list)
    fresh: bool = False
    cache_dir: str | None = None
    name: str = "default"
    samples: int | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        """Bad options fail now, before training starts (each check is the stage's own)."""
        if self.epochs is not None:
            check_value("epochs", self.epochs, "--epochs")
        check_name(self.name)
        EvalRequest(".", samples=self.samples or 1, workers=self.workers or 1)


def run_folder(req: PipelineRequest) -> Path:
    """The folder ``trainkit train`` would use; passed to every stage explicitly."""
    target = Path(req.config)
    if not target.exists():
        raise UserError(f"{target}: no such config file or run folder")
    if req.run_dir:
        return Path(req.run_dir)
    return target if target.is_dir() else choose_run_dir(target, None)


def train_args(req: PipelineRequest, folder: Path) -> list[str]:
    args = ["train", req.config, "--run-dir", str(folder)]
    if req.epochs is not None:
        args += ["--epochs", str(req.epochs)]
    for s in req.sets:
        args += ["--set", s]
    if req.fresh:
        args.append("--fresh")
    if req.cache_dir:
        args += ["--cache-dir", req.cache_dir]
    return args


def eval_args(req: PipelineRequest, folder: Path) -> list[str]:
    args = ["eval", str(folder), "--name", req.name, "--no-report"]  # the report is stage 3
    if req.samples is not None:
        args += ["--samples", str(req.samples)]
    if req.workers is not None:
        args += ["--workers", str(req.workers)]
    if req.cache_dir:
        args += ["--cache-dir", req.cache_dir]
    return args


class Stage:
    """One ``python -m trainkit ...`` child. A SIGINT or SIGTERM to this process is passed on as
    SIGTERM, a SIGHUP as SIGHUP (the child's graceful stop; after a terminal's Ctrl-C or hang-up the
    child already has the signal, which it handles first, so this never counts as its second Ctrl-C)."""

    def __init__(self) -> None:
        self.interrupted = False
        self._proc: subprocess.Popen | None = None

    def _forward(self, signum: int, frame: object) -> None:
        self.interrupted = True
        if self._proc is not None and self._proc.poll() is None:  # a hang-up is passed on as itself (the reason)
            self._proc.send_signal(signal.SIGHUP if signum == signal.SIGHUP else signal.SIGTERM)

    def run(self, args: list[str]) -> int:
        previous = {s: signal.signal(s, self._forward) for s in stop_signals()}
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "trainkit", *args])
            return self._proc.wait()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def requested_gates(req: PipelineRequest, folder: Path) -> dict[str, dict]:
    """The gates asked for now: CONFIG's ``eval.gates`` with the ``--set`` overrides (a complete
    training does not rewrite resolved_config.json, so an edited gate must come from here); for a
    run folder given as CONFIG, its resolved_config.json (read, never executed)."""
    target = Path(req.config)
    if target.is_dir():
        source = RunPaths(target).resolved_config
        data = read_resolved(RunPaths(target))
        if data is None:
            return report.gates_from_config(read_resolved(RunPaths(folder)))
    else:
        source, data = target, load_file(target)
    return report.gates_from_config(apply_overrides(data, parse_set(req.sets)), str(source))


def training_finished(folder: Path) -> tuple[bool, str]:
    paths = RunPaths(folder)
    progress = readers.load(paths.progress, readers.PROGRESS, []) or {}
    if progress.get("finished"):
        return True, ""
    state = (readers.load(paths.status, readers.STATUS, []) or {}).get("state") or "unknown"
    done, total = progress.get("completed_epochs", "?"), progress.get("total_epochs", "?")
    return False, f"state {state}, {done}/{total} epochs"


def run_pipeline(req: PipelineRequest, say: Callable[[str], None] | None = None) -> int:
    say = say or (lambda msg: say_line(f"trainkit run: {msg}", sys.stderr))
    try:
        return _run_stages(req, say)
    except KeyboardInterrupt:
        say("interrupted between stages; run the same command again to resume")
        return EXIT_INTERRUPTED


def _run_stages(req: PipelineRequest, say: Callable[[str], None]) -> int:
    folder = run_folder(req)
    say(f"run folder {folder}")

    say("[1/3] train")
    stage = Stage()
    rc = stage.run(train_args(req, folder))
    if stage.interrupted:
        say(f"interrupted during training (exit {rc}); run the same command again to resume")
        return EXIT_INTERRUPTED
    if rc != 0:
        log = RunPaths(folder).log
        say(f"training failed (exit {rc})" + (f"; see {log}" if log.exists() else ""))
        return rc
    finished, why = training_finished(folder)
    if not finished:
        say(f"training stopped before the end ({why}); run the same command again to resume")
        return 1

    say(f"[2/3] eval {req.name}")
    stage = Stage()
    rc = stage.run(eval_args(req, folder))
    if stage.interrupted or rc == EXIT_INTERRUPTED:
        say(f"interrupted during evaluation (exit {rc}); run the same command again to resume")
        return EXIT_INTERRUPTED if rc in (0, EXIT_INTERRUPTED) else rc
    if rc != 0:
        say(f"evaluation failed (exit {rc})")
        return rc

    say("[3/3] report")
    summary = score_dir(RunPaths(folder).eval_paths(req.name).root)
    if not summary["completed"]:
        say(f"evaluation incomplete ({summary['done']}/{summary['planned']}); run the same command again")
        return 1
    rep = report.write_report(folder, req.name, summary, requested_gates(req, folder))
    say(f"{RunPaths(folder).report(req.name)}: {report.one_line(rep)}")
    return EXIT_GATES if rep["gates_passed"] is False else 0  # None: no gates configured, nothing failed
