"""Runs handed to Slurm: the batch script, its submission, and Slurm's view of the recorded jobs.

Plain ``sbatch``/``squeue`` through ``subprocess`` (no submitit): the job is a shell script running
``python -m trainkit train RUN_DIR``, so nothing is pickled, the script is printable (``--dry-run``)
and readable on the cluster, and requeue is Slurm's own. Everything here is pure apart from
:func:`submit` and :func:`query` (one ``squeue`` call for all the jobs of a scan).

Requeue-safe jobs: the script runs the trainer as a child and traps the signals. Slurm's warning
signal 90 s before the time limit (``--signal=B:USR1@90``, sent to the batch shell) is forwarded as
SIGTERM (the trainer's graceful stop: it saves a checkpoint), waited for, and the job requeues
itself (``scontrol requeue``); the requeued job runs ``trainkit train RUN_DIR`` again, which resumes
the same run folder from that checkpoint. SIGTERM (``scancel``, an outside ``scontrol requeue``, a
preemption with PreemptMode=REQUEUE: Slurm signals every process of the job) is forwarded the same
way and waited for, without requeueing (Slurm requeues or ends the job itself).

The job's output goes to the run's ``console.log`` (``--output``, appended): the trainer caps and
rotates it (:mod:`trainkit.console`), and the script's own lines are appended to the current file
(so that none lands in the part the trainer rotated away); ``train.log`` stays the run's own log.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from trainkit.runfolder import LAUNCH_FILE, RunPaths, readers
from trainkit.runfolder.readers import Field, Schema

DEFAULT_SIGNAL = "B:USR1@90"  # to the batch shell, 90 s before the time limit
QUERY_TIMEOUT_S = 30.0

# squeue's job states, by what they mean for a run
QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD"})
RUNNING_STATES = frozenset({"RUNNING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "RESIZING", "STOPPED"})
ENDED_STATES = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                          "BOOT_FAIL", "DEADLINE", "PREEMPTED", "SPECIAL_EXIT", "REVOKED"})

# the ``slurm`` record of a launch.json entry
JOB_RECORD = Schema(f"{LAUNCH_FILE} slurm", {
    "job_id": Field("int", lambda v: v > 0, "a Slurm job id"),
    "node": Field("str", max_len=255),
    "submitted_at": readers.TIME,
}, extra="drop")


class SlurmError(RuntimeError):
    """sbatch/squeue missing or refusing; the message is one line."""


@dataclass
class Options:
    """What ``trainkit launch --slurm`` passes to every job."""

    partition: str | None = None
    time: str | None = None
    gpus: str | None = None
    sbatch_args: list[str] = field(default_factory=list)
    signal: str = DEFAULT_SIGNAL


@dataclass(frozen=True)
class JobView:
    """One job as squeue shows it: its state (upper case, as Slurm spells it), node list, reason."""

    job_id: int
    state: str
    node: str | None = None
    reason: str | None = None

    @property
    def queued(self) -> bool:
        return self.state in QUEUED_STATES

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def active(self) -> bool:
        """Not ended: pending, running, completing... (a run is never submitted again meanwhile)."""
        return self.state not in ENDED_STATES


# --------------------------------------------------------------------------------------------
# the job script


def _escape_pattern(path: str) -> str:
    return path.replace("%", "%%")  # sbatch expands %j, %x... in --output


def _directive(option: str) -> str:
    return "#SBATCH " + shlex.quote(option)  # sbatch reads quoted directives; a plain one stays as it is


def _control_free(text: str, what: str) -> str:
    """``text`` unchanged, or :class:`SlurmError` when it holds a newline or another control
    character: a batch script is lines, and a newline in a run's name would start a new one (a
    directive, a command)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise SlurmError(f"{what} {text!r} holds a newline or another control character; it cannot go into a "
                         "batch script (rename it)")
    return text


def job_name(run_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", run_name)[:100] or "trainkit-run"


def train_command(python: str, run_dir: Path, torchrun: str | None = None) -> list[str]:
    """``python -m trainkit train RUN --run-dir RUN``: the run folder named twice, so that a pending
    run whose folder does not look like a run folder (no date in its name, a root not called
    experiments/) trains in place rather than in a new folder. With ``torchrun`` (its options, e.g.
    ``--standalone --nproc_per_node 2``), the same under ``python -m torch.distributed.run``."""
    train = ["-m", "trainkit", "train", str(run_dir), "--run-dir", str(run_dir)]
    if torchrun:
        return [python, "-m", "torch.distributed.run", *shlex.split(torchrun), *train]
    return [python, *train]


def recorded_torchrun(run_dir: Path) -> str | None:
    """The torchrun options a run was last trained with (``resolved_config.json`` ``_meta.launch``),
    so that a relaunch starts it the same way; None for a single process, or a multi-node job (its
    rendezvous cannot be rebuilt here: give ``--torchrun`` for those)."""
    from trainkit.runfolder import readers

    meta = (readers.load(RunPaths(Path(run_dir)).resolved_config, readers.RESOLVED_CONFIG, []) or {}).get("_meta")
    launch = meta.get("launch") if isinstance(meta, dict) else None
    tr = launch.get("torchrun") if isinstance(launch, dict) else None
    if not isinstance(tr, dict):
        return None
    nproc, nnodes = tr.get("nproc_per_node"), tr.get("nnodes")
    if not (readers.is_int(nproc) and 1 < nproc <= 1024) or nnodes not in (1, None):
        return None
    return f"--standalone --nproc_per_node {nproc}"


def job_script(run_dir: Path, *, python: str, cwd: Path, options: Options, torchrun: str | None = None) -> str:
    """The batch script of one run (pure). Every path is quoted; a path with a newline or another
    control character is refused (:class:`SlurmError`)."""
    paths = RunPaths(Path(run_dir).resolve())
    _control_free(str(paths.root), "the run folder")
    _control_free(str(cwd), "the working folder")
    _control_free(python, "the Python interpreter")
    lines = ["#!/bin/bash",
             _directive(f"--job-name={job_name(paths.name)}"),
             _directive(f"--output={_escape_pattern(str(paths.console))}"),
             "#SBATCH --open-mode=append",
             _directive(f"--chdir={cwd}"),
             "#SBATCH --requeue",
             _directive(f"--signal={options.signal}")]
    for opt, value in (("--partition", options.partition), ("--time", options.time), ("--gpus", options.gpus)):
        if value:
            lines.append(_directive(f"{opt}={value}"))
    lines += [_directive(a) for a in options.sbatch_args]
    train = " ".join(shlex.quote(a) for a in train_command(python, paths.root, torchrun))
    lines += [
        f"# trainkit: run {shlex.quote(paths.name)} (requeue-safe: a requeued job resumes the same run folder)",
        "export PYTHONUNBUFFERED=1",
        f"say() {{ echo \"$*\" >>{shlex.quote(str(paths.console))}; }}  # into the current console.log",
        'say "trainkit: Slurm job $SLURM_JOB_ID on $(hostname), restart ${SLURM_RESTART_COUNT:-0}"',
        "stop_child() {  # graceful stop = checkpoint; wait until the trainer has saved and exited",
        '  kill -TERM "$child" 2>/dev/null',
        '  while kill -0 "$child" 2>/dev/null; do wait "$child"; done',
        "}",
        "on_usr1() {  # the time limit is near: checkpoint, then requeue this job",
        '  say "trainkit: got USR1 (time limit near): checkpoint, then requeue job $SLURM_JOB_ID"',
        "  stop_child",
        '  scontrol requeue "$SLURM_JOB_ID"',
        "  exit 0",
        "}",
        "on_term() {  # scancel, a requeue from outside, a preemption: checkpoint and end (Slurm requeues)",
        '  say "trainkit: got TERM: stopping with a checkpoint"',
        "  stop_child",
        "  exit 143",
        "}",
        "trap on_usr1 USR1",
        "trap on_term TERM",
        f"{train} &",
        "child=$!",
        'wait "$child"',
        "rc=$?",
        'while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done',
        'exit "$rc"',
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# submission and queries (the only subprocess calls)


def available(command: str = "sbatch") -> bool:
    return shutil.which(command) is not None


def parse_sbatch(out: str) -> int:
    """The job id printed by ``sbatch --parsable`` (``123`` or ``123;cluster``)."""
    first = out.strip().splitlines()[-1] if out.strip() else ""
    head = first.split(";", 1)[0]
    if not head.isdigit():
        raise SlurmError(f"sbatch printed no job id: {out.strip()[:200]!r}")
    return int(head)


def submit(script: str, *, timeout: float = 60.0) -> int:
    """Submit ``script`` with ``sbatch --parsable``; the job id. Raises :class:`SlurmError`."""
    if not available("sbatch"):
        raise SlurmError("sbatch not found: is this a Slurm login node (or is Slurm on PATH)?")
    try:
        res = subprocess.run(["sbatch", "--parsable"], input=script, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"sbatch did not answer within {timeout:.0f} s") from None
    if res.returncode != 0:
        why = (res.stderr.strip() or res.stdout.strip() or f"exit code {res.returncode}").splitlines()[-1]
        raise SlurmError(f"sbatch refused the job: {why}")
    return parse_sbatch(res.stdout)


SQUEUE_FORMAT = "%i|%T|%N|%r"


def parse_squeue(text: str) -> dict[int, JobView]:
    """``squeue -h -o '%i|%T|%N|%r'`` lines -> {job id: view}; lines that do not parse are skipped."""
    out: dict[int, JobView] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        job, state, node, reason = parts
        out[int(job)] = JobView(int(job), state.strip().upper(), node.strip() or None,
                                None if reason.strip() in ("", "None", "(null)") else reason.strip())
    return out


def query(job_ids: Iterable[int], warnings: list[str]) -> dict[int, JobView] | None:
    """Slurm's view of ``job_ids`` in one squeue call: {job id: view} for the jobs squeue still
    knows (ended and purged jobs are absent). None (with a warning) when squeue is missing or fails."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    if not available("squeue"):
        warnings.append("squeue not found: runs handed to Slurm are judged by their files alone")
        return None
    # every job in the queue (one call, whoever submitted it), filtered here: squeue -j with an id
    # it has already purged fails for all of them
    try:
        res = subprocess.run(["squeue", "-h", "-o", SQUEUE_FORMAT], capture_output=True, text=True,
                             timeout=QUERY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        warnings.append(f"squeue did not answer within {QUERY_TIMEOUT_S:.0f} s: runs handed to Slurm are judged "
                        "by their files alone")
        return None
    if res.returncode != 0:
        why = (res.stderr.strip() or f"exit code {res.returncode}").splitlines()[-1]
        warnings.append(f"squeue failed ({why}): runs handed to Slurm are judged by their files alone")
        return None
    wanted = set(ids)
    return {j: v for j, v in parse_squeue(res.stdout).items() if j in wanted}


# --------------------------------------------------------------------------------------------
# launch.json


def latest_job(launches: list[dict], warnings: list[str] | None = None) -> dict | None:
    """The checked ``slurm`` record of the last launch, when that launch was a Slurm job."""
    if not launches:
        return None
    rec = launches[-1].get("slurm")
    if rec is None:
        return None
    checked = readers.check(rec, JOB_RECORD, [] if warnings is None else warnings)
    return checked if checked is not None and checked.get("job_id") is not None else None


def recorded_job(run_dir: str | Path, warnings: list[str]) -> dict | None:
    """The Slurm record of a run's last launch (from its ``launch.json``), or None."""
    path = RunPaths(Path(run_dir)).launch
    return latest_job(readers.load_launch(path, warnings).launches, warnings)
