"""Run status: exact progress (fast path, slow path, repair) and the run state, for one run or a root.

Pure decisions (:func:`check_progress`, :func:`recompute_progress`, :func:`derive_state`) are apart
from the thin I/O that feeds them. Nothing here imports torch or executes anything from a run
folder (early stopping is read from ``resolved_config.json``, never from ``config.py``). Every
malformed file yields a result plus a warning naming the file, never an exception.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainkit import slurm
from trainkit.early_stopping import Timeline, settings_timeline, stopped_at
from trainkit.formatting import format_age
from trainkit.runfolder import (
    CHECKPOINTS_DIR,
    COMPLETE,
    CONFIG_FILES,
    CONFIG_STEM,
    CRASHED,
    CURRENT_META_FILE,
    EARLY_STOPPED,
    EPOCH_FILES,
    FAILED,
    FINISHED,
    LAUNCH_FILE,
    LIVE,
    LOCK_FILE,
    METRICS_FILE,
    PENDING,
    PROGRESS_FILE,
    QUEUED,
    RESOLVED_CONFIG_FILE,
    RUN_MARKERS,
    RUNNING,
    STATES,
    STATUS_FILE,
    STOPPED,
    SUSPENDED,
    VALIDATION_SCORES_FILE,
    RunPaths,
    epoch_dir,
    progress_percentage,
    progress_record,
    readers,
)
from trainkit.runfolder.files import iter_jsonl, path_exists, write_json
from trainkit.runfolder.lock import ProcessProbe, live_lock
from trainkit.runfolder.lock import pid_alive as pid_running
from trainkit.runfolder.readers import Schema
from trainkit.slurm import JobView

__all__ = ["COMPLETE", "CRASHED", "LIVE", "PENDING", "QUEUED", "STATES", "SUSPENDED", "Progress", "RunStatus",
           "derive_state", "find_runs", "progress", "run_status", "scan", "summarize"]

MIN_STALE_S = 60.0
CLOCK_SKEW_S = 60.0  # allowed between hosts writing one shared folder (another host's heartbeat)


# --------------------------------------------------------------------------------------------
# reading files without ever raising


def load_json(path: str | Path, warnings: list[str], schema: Schema = readers.ANY) -> dict | None:
    """The checked object of a contract file (see :mod:`trainkit.runfolder.readers`; ``schema`` says which
    kind); None when missing (silently) or unusable (with a warning naming the file). Never raises."""
    return readers.load(path, schema, warnings)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _num(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


# --------------------------------------------------------------------------------------------
# progress


@dataclass
class Progress:
    completed_epochs: int = 0
    total_epochs: int | None = None
    progress_percentage: float = 0.0
    early_stopped: bool = False
    early_stopped_at_epoch: int | None = None
    finished: bool = False
    source: str = "none"  # progress.json | recomputed | none

    def record(self) -> dict:
        rec = progress_record(self.completed_epochs, self.total_epochs, early_stopped_at=self.early_stopped_at_epoch,
                              finished=self.finished)
        rec["repaired_by"] = "trainkit status"
        return rec


def check_progress(obj: dict) -> tuple[Progress | None, str | None]:
    """Validate a ``progress.json`` object: (Progress, None) when usable, else (None, why not)."""
    completed, total = _int(obj.get("completed_epochs")), _int(obj.get("total_epochs"))
    pct = _num(obj.get("progress_percentage"))
    early, finished = obj.get("early_stopped"), obj.get("finished")
    at = obj.get("early_stopped_at_epoch")
    if completed is None or total is None or pct is None or not isinstance(early, bool):
        return None, "missing or wrongly typed fields"
    if not 0 <= completed <= total or total < 1:
        return None, f"completed_epochs {completed} outside 0..total_epochs {total}"
    if early and (_int(at) is None or at != completed - 1):
        return None, f"early_stopped_at_epoch {at!r} does not match completed_epochs {completed}"
    expected = _percentage(completed, total, early)
    if abs(pct - expected) > 0.01:
        return None, f"progress_percentage {pct} inconsistent with {completed}/{total}"
    is_finished = early or completed >= total
    if finished is not None and finished is not is_finished:
        return None, f"finished {finished} inconsistent with {completed}/{total}"
    return Progress(completed, total, expected, early, at if early else None, is_finished, PROGRESS_FILE), None


# A pure function of three small values that a scan asks for once per run (with exact decimal
# rounding): each (completed, total, early) is computed once per process.
_percentage = functools.lru_cache(maxsize=4096)(progress_percentage)


def recompute_progress(scores: list[dict | None], total: int | None, timeline: Timeline | dict | None) -> Progress:
    """The slow path over the validation scores of the consecutive complete epoch folders
    (``scores[i]`` = epoch i's ``validation_scores.json``, None if unreadable), replaying early
    stopping with the settings in force at each epoch (``timeline``, see
    :func:`trainkit.early_stopping.settings_timeline`; a plain settings mapping means one setting
    throughout)."""
    completed = len(scores)
    if not isinstance(timeline, list):
        timeline = settings_timeline(timeline, [])
    at = stopped_at([s if isinstance(s, dict) else None for s in scores], timeline)
    if at is not None:
        completed = at + 1  # epochs after the trigger would not have run
    early = at is not None
    if total is not None and total < completed:
        total = completed
    return Progress(completed, total, progress_percentage(completed, total, early), early, at,
                    early or (total is not None and completed >= total), "recomputed")


def epoch_complete(root: str, epoch: int) -> bool:
    """Whether ``epoch``'s folder holds every file of :data:`EPOCH_FILES` (each one ``faccessat``:
    the fast path asks this once per run)."""
    d = epoch_dir(root, epoch) + "/"
    for f in EPOCH_FILES:
        if not path_exists(d + f):
            return False
    return True


def complete_epochs(root: str) -> int:
    """Epoch folders holding all expected files, consecutively from 0."""
    n = 0
    while epoch_complete(root, n):
        n += 1
    return n


def config_file_settings(root: str, warnings: list[str]) -> dict:
    """A pending run's settings from its config file: YAML/JSON/TOML are read, bounded and checked
    (never a ``.py``, which would mean executing it). A missing or unusable ``epochs`` falls back
    to the default training would use (a built-in task's own, else the schema's), with a warning
    when the file said something else."""
    from trainkit.config import TrainConfig
    from trainkit.tasks.defaults import builtin_defaults

    default = TrainConfig.__dataclass_fields__["epochs"].default
    path = RunPaths(Path(root)).config_file()
    if path is None:
        for name in CONFIG_FILES:  # a config.yaml that is a folder, a FIFO, a link out...
            candidate = f"{root}/{name}"
            if os.path.lexists(candidate) and not name.endswith(".py"):
                readers.load_config_file(candidate, warnings)
                warnings.append(f"{name}: unusable; epochs taken as the default {default}")
                return {"epochs": default}
        return {"epochs": default}
    if path.suffix == ".py":
        return {}
    data = readers.load_config_file(path, warnings)
    if data is not None:
        default = builtin_defaults(data.get("task")).get("epochs", default)
    if data is None:
        warnings.append(f"{path.name}: unusable; epochs taken as the default {default}")
        return {"epochs": default}
    if data.get("epochs") is None:
        data["epochs"] = default
    return data


def run_total_and_es(root: str, warnings: list[str], status: dict | None) -> tuple[int | None, Timeline]:
    """Total epochs and the early-stopping settings in force at each epoch (the settings of
    ``resolved_config.json`` and the changes its ``_meta.history`` recorded on each resume), or
    those of the run's config file / the status for a run that never started."""
    cfg = load_json(f"{root}/{RESOLVED_CONFIG_FILE}", warnings, readers.RESOLVED_CONFIG)
    if cfg is None:
        cfg = config_file_settings(root, warnings)
        live = _int(status.get("total_epochs")) if status is not None else None
        if live is not None and live > 0:  # the trainer's own status knows its target; a default does not
            cfg = {**cfg, "epochs": live}
    total = _int(cfg.get("epochs"))
    if total is None and status is not None:
        total = _int(status.get("total_epochs"))
    meta = cfg.get("_meta")
    history = meta.get("history") if isinstance(meta, dict) else None
    return total, settings_timeline(readers.load_early_stopping(cfg, warnings), history)


def foreign_trainer(root: str) -> str | None:
    """The trainer named by ``resolved_config.json`` ``_meta.trainer`` when it is not trainkit's
    engine (``hf``, ``lightning``: the callbacks of :mod:`trainkit.integrations`), else None. Such a
    run writes no epoch folders: it is judged by ``progress.json`` and ``training_status.json``."""
    cfg = load_json(f"{root}/{RESOLVED_CONFIG_FILE}", [], readers.RESOLVED_CONFIG)  # its problems: run_total_and_es
    meta = cfg.get("_meta") if cfg else None
    trainer = meta.get("trainer") if isinstance(meta, dict) else None
    return trainer if isinstance(trainer, str) and trainer != "trainkit" else None


def progress(run_dir: str | Path, *, repair: bool = False, warnings: list[str] | None = None,
             status: dict | None = None) -> Progress:
    """Exact progress of a run: ``progress.json`` when valid and not contradicted by the epoch
    folders, else recomputed from the folders (replaying early stopping); with ``repair`` the
    recomputed value is written back atomically. (:func:`run_status` never repairs a live run.)
    A run of another trainer (:func:`foreign_trainer`) has no epoch folders: its ``progress.json``
    is taken as it is, and without a usable one its progress is 0 (never recomputed or repaired)."""
    root = os.fspath(run_dir)
    warnings = [] if warnings is None else warnings
    obj = load_json(f"{root}/{PROGRESS_FILE}", warnings, readers.PROGRESS)
    foreign: list[str | None] = []  # read at most once, and only when the epoch folders would be

    def trainer() -> str | None:
        if not foreign:
            foreign.append(foreign_trainer(root))
        return foreign[0]

    if obj is not None:
        prog, why = check_progress(obj)
        if prog is not None and prog.completed_epochs > 0 and not epoch_complete(root, prog.completed_epochs - 1) \
                and trainer() is None:
            prog, why = None, (f"says {prog.completed_epochs} epochs but epoch_{prog.completed_epochs - 1:04d} "
                               "is incomplete")
        if prog is not None:
            return with_live_total(prog, status)
        warnings.append(f"{PROGRESS_FILE}: {why}; " + ("ignored" if trainer() else "recomputed from the epoch folders"))
    if trainer() is not None:
        return Progress(0, _int(status.get("total_epochs")) if status else None, 0.0, source="none")
    total, es = run_total_and_es(root, warnings, status)
    n = complete_epochs(root)
    if obj is None and n == 0:
        return Progress(0, total, 0.0, source="none")
    scores = epoch_records(root, n, {s["metric"] for _, s in es if s}, warnings)
    prog = recompute_progress(scores, total, es)
    if repair:
        write_repair(root, prog, warnings)
    return prog


def epoch_records(root: str, n: int, metrics: set[str], warnings: list[str]) -> list[dict | None]:
    """The numbers of epochs ``0..n-1`` (their ``validation_scores.json``, which hold every number of
    the epoch record), each ``metrics`` name filled in from ``metrics.jsonl`` for folders written by
    an older trainkit; None for an epoch with nothing readable."""
    scores = [load_json(f"{epoch_dir(root, i)}/{VALIDATION_SCORES_FILE}", warnings, readers.EPOCH_SCORES)
              for i in range(n)]
    return with_monitored_values(root, scores, [(0, {"metric": m}) for m in sorted(metrics)])


def with_live_total(prog: Progress, status: dict | None) -> Progress:
    """The target is the config's, whatever ``progress.json`` says: a session that resumed with a
    raised (or lowered) ``--epochs`` wrote its total into ``training_status.json`` when it started,
    before the epoch end that rewrites ``progress.json``. An early-stopped run stays complete."""
    total = _int(status.get("total_epochs")) if status else None
    if total is None or total < 1 or total == prog.total_epochs or prog.early_stopped:
        return prog
    done = min(prog.completed_epochs, total) if prog.completed_epochs <= total else prog.completed_epochs
    return Progress(done, max(total, done), progress_percentage(done, max(total, done), False), False, None,
                    done >= total, prog.source)


def with_monitored_values(root: str, scores: list[dict | None], timeline: Timeline) -> list[dict | None]:
    """The epoch folders hold every number of the epoch record (so any monitored key replays);
    folders written by an older trainkit hold the validation scores only: then the monitored
    values come from the epoch records of ``metrics.jsonl`` (the last record of each epoch)."""
    metrics = {s["metric"] for _, s in timeline if s}
    if not metrics or all(isinstance(s, dict) and all(m in s for m in metrics) for s in scores):
        return scores
    from_log: dict[int, dict] = {}
    for rec in iter_jsonl(f"{root}/{METRICS_FILE}"):
        if rec.get("kind") == "epoch" and isinstance(rec.get("epoch"), int):
            from_log[rec["epoch"]] = rec
    return [s if isinstance(s, dict) and all(m in s for m in metrics) else {**(s or {}), **from_log.get(i, {})}
            for i, s in enumerate(scores)]


def write_repair(root: str, prog: Progress, warnings: list[str]) -> None:
    try:
        write_json(f"{root}/{PROGRESS_FILE}", prog.record())
    except OSError as e:
        warnings.append(f"{PROGRESS_FILE}: could not repair ({e.strerror or e})")
    else:
        warnings.append(f"{PROGRESS_FILE}: repaired")


# --------------------------------------------------------------------------------------------
# state


def status_problems(status: dict) -> list[str]:
    """What makes a (type-checked) ``training_status.json`` hard to judge."""
    return [] if "state" in status else [f"{STATUS_FILE}: no usable 'state' field"]


def stale_after(status: dict) -> float:
    """3 x the run's heartbeat interval, at least 60 s."""
    interval = _num(status.get("heartbeat_interval_s")) or 5.0
    return max(MIN_STALE_S, 3 * interval)


def derive_state(status: dict | None, prog: Progress, *, now: float, host: str,
                 pid_alive: Callable[[int, float | None], bool], has_outputs: bool,
                 stale_s: float | None = None,
                 pid_stopped: Callable[[int], bool] | None = None) -> tuple[str, str]:
    """(state, reason) from the status file and the progress; pure but for ``pid_alive`` (and
    ``pid_stopped``: whether a live pid is suspended by a signal, process state T)."""
    if status is None:
        if prog.early_stopped:
            return EARLY_STOPPED, f"early stopped after epoch {prog.early_stopped_at_epoch} (from the epoch files)"
        if prog.finished:
            return FINISHED, "all epochs done (from the epoch files)"
        if has_outputs or prog.completed_epochs:
            return CRASHED, f"outputs but no {STATUS_FILE}: the run died early or the file was lost"
        return PENDING, "never started"
    state = status.get("state")
    if state in LIVE:
        pid, hb = _int(status.get("pid")), _num(status.get("heartbeat_at"))
        limit = stale_s if stale_s is not None else stale_after(status)
        same_host = status.get("host") == host
        skew = 0.0 if same_host else CLOCK_SKEW_S  # another host's clock may be off by up to a minute
        if same_host and pid is not None and (pid <= 0 or not pid_alive(pid, _num(status.get("started_at")))):
            dead = f"pid {pid} is gone on {host}"
        elif same_host and pid is not None and pid_stopped is not None and pid_stopped(pid):
            return SUSPENDED, suspended_reason(pid)
        elif hb is None:
            dead = f"{STATUS_FILE} has no heartbeat_at"
        elif now - hb > limit + skew:
            dead = f"no heartbeat for {format_age(now - hb)} (limit {limit:.0f} s" + \
                (f" + {skew:.0f} s for the clock of {status.get('host') or 'an unnamed host'})" if skew else ")")
        else:
            return state, f"epoch {status.get('current_epoch')}, step {status.get('step')}" if state == RUNNING \
                else "paused on request"
        if prog.early_stopped:  # it completed; only its final status write was lost
            return EARLY_STOPPED, f"early stopped after epoch {prog.early_stopped_at_epoch} ({dead} afterwards)"
        if prog.finished:
            return FINISHED, f"all epochs done ({dead} afterwards)"
        return CRASHED, dead
    if state in COMPLETE and not prog.finished:  # resumed with a raised target, not yet (re)started
        return STOPPED, (f"{prog.completed_epochs} of {prog.total_epochs} epochs done: the target was raised "
                         "after the run completed")
    if state == FINISHED:
        return FINISHED, f"{prog.completed_epochs} epochs done"
    if state == EARLY_STOPPED:
        return EARLY_STOPPED, f"no improvement: stopped after epoch {prog.early_stopped_at_epoch}"
    if state == STOPPED:
        return STOPPED, status.get("stop_reason") or "stopped on request"
    if state == FAILED:
        return FAILED, status.get("error") or "training failed"
    return FAILED, f"unknown state {state!r} in {STATUS_FILE}"


def suspended_reason(pid: int) -> str:
    return f"pid {pid} is suspended (Ctrl-Z or SIGSTOP): `fg` in its shell or `kill -CONT {pid}` resumes it"


def with_slurm(state: str, reason: str, job_id: int | None, job: JobView | None) -> tuple[str, str]:
    """(state, reason) once Slurm's view of the run's last job is known (pure). A pending job, or one
    Slurm still holds after its trainer stopped (completing, before a requeue), makes the run
    ``queued``; a running job whose trainer has not yet written a live status (loading, or the
    status is the previous attempt's) makes it ``running`` with the reason ``starting``, as a lock
    held by a starting trainer does. Complete runs and live statuses are left as they are."""
    if job_id is None or job is None or state in COMPLETE:
        return state, reason
    if job.queued:
        why = f" ({job.reason})" if job.reason else ""
        return QUEUED, f"Slurm job {job_id} {job.state.lower()}{why}"
    if job.running and state not in LIVE:
        return RUNNING, f"starting: Slurm job {job_id} running on {job.node or 'a node'}"
    if state in LIVE:
        return state, f"{reason} (Slurm job {job_id} on {job.node or 'a node'})"
    if job.active and state == STOPPED:  # e.g. COMPLETING after `scontrol requeue`: Slurm still holds the job
        return QUEUED, (f"Slurm job {job_id} {job.state.lower()}: the trainer stopped (checkpointed), "
                        "Slurm still holds the job")
    return state, reason


# --------------------------------------------------------------------------------------------
# one run, a whole root


@dataclass
class RunStatus:
    name: str
    path: str
    state: str
    reason: str
    completed_epochs: int
    total_epochs: int | None
    progress_percentage: float
    early_stopped: bool
    early_stopped_at_epoch: int | None
    finished: bool
    best_metric: str | None = None
    best_value: float | None = None
    last_loss: float | None = None
    heartbeat_age_s: float | None = None
    pid: int | None = None
    host: str | None = None
    progress_source: str = "none"
    alert: str | None = None  # the latest alert of the training monitor (training_status.json alerts)
    slurm_job: int | None = None  # the Slurm job of the last launch (launch.json), when handed to Slurm
    slurm_state: str | None = None  # that job's state as squeue shows it (lower case); None: not in the queue
    slurm_node: str | None = None
    warnings: list[str] = field(default_factory=list)
    source: str = "trainkit"  # or the tool that wrote a foreign run: hf | lightning | tensorboard (read-only)
    step: int | None = None  # a foreign run's last step, and its target in steps when the tool records one
    total_steps: int | None = None


def run_status(run_dir: str | Path, *, now: float | None = None, repair: bool = False,
               host: str | None = None, stale_s: float | None = None,
               pid_alive: Callable[[int, float | None], bool] = pid_running,
               slurm_jobs: dict[int, JobView] | None = None) -> RunStatus:
    """One run's status. ``slurm_jobs``: Slurm's view of the recorded jobs (from :func:`scan`'s one
    squeue call); None: the files alone decide (no squeue)."""
    return read_run(run_dir, now=now, repair=repair, host=host, stale_s=stale_s, pid_alive=pid_alive,
                    slurm_jobs=slurm_jobs)[0]


def read_run(run_dir: str | Path, *, now: float | None = None, repair: bool = False,
             host: str | None = None, stale_s: float | None = None,
             pid_alive: Callable[[int, float | None], bool] = pid_running,
             slurm_jobs: dict[int, JobView] | None = None, only_runs: bool = False) -> tuple[RunStatus, dict | None]:
    """:func:`run_status` and the checked ``training_status.json`` it was judged from (None when
    missing or unusable), for readers that show more of it (trainmon) without reading it twice.
    ``only_runs``: ``run_dir`` is any folder under ROOT; one that :func:`is_run_folder` refuses
    gives (None, None)."""
    root = os.fspath(run_dir)
    now = time.time() if now is None else now
    host = host or socket.gethostname()
    warnings: list[str] = []
    status = load_json(f"{root}/{STATUS_FILE}", warnings, readers.STATUS)
    if status is None and only_runs and not is_run_folder(root):
        return None, None  # type: ignore[return-value]  (only_runs' callers ask for it)
    if status is not None:
        warnings.extend(status_problems(status))
    prog = progress(root, repair=False, warnings=warnings, status=status)
    has_outputs = status is None and (path_exists(f"{root}/{CHECKPOINTS_DIR}")
                                      or path_exists(f"{root}/{METRICS_FILE}"))
    probe = ProcessProbe() if pid_alive is pid_running else None  # each pid's /proc entry read once
    state, reason = derive_state(status, prog, now=now, host=host, pid_alive=probe.alive if probe else pid_alive,
                                 has_outputs=has_outputs, stale_s=stale_s,
                                 pid_stopped=probe.suspended if probe else None)
    # The lock is evidence of a trainer starting (a live one holds it before it writes its status):
    # read when the state is not live, and for a complete run only when a repair must know it.
    wants_lock = state not in LIVE and (state not in COMPLETE or (repair and prog.source == "recomputed"))
    lock = f"{root}/{LOCK_FILE}"  # (looked for first: a missing file costs no exception)
    holder = live_lock(lock, warnings, host=host) if wants_lock and os.access(lock, os.F_OK, follow_symlinks=False) \
        else None
    if holder is not None and state not in COMPLETE:  # a live trainer holds the run: it is starting
        if probe is not None and probe.suspended(holder["pid"]):
            state, reason = SUSPENDED, suspended_reason(holder["pid"])
        else:
            state, reason = RUNNING, f"starting: locked by pid {holder.get('pid')} ({holder.get('purpose', 'train')})"
    job_id = job = None
    if slurm_jobs is not None:
        job_id = (slurm.recorded_job(root, warnings) or {}).get("job_id")
        job = slurm_jobs.get(job_id) if job_id is not None else None
        state, reason = with_slurm(state, reason, job_id, job)
    if repair and prog.source == "recomputed" and state not in LIVE and holder is None:
        write_repair(root, prog, warnings)
    meta = load_json(f"{root}/{CHECKPOINTS_DIR}/{CURRENT_META_FILE}", warnings, readers.CURRENT_META) or {}
    hb = _num(status.get("heartbeat_at")) if status else None
    return RunStatus(
        name=os.path.basename(root.rstrip("/")), path=root, state=state, reason=reason,
        completed_epochs=prog.completed_epochs, total_epochs=prog.total_epochs,
        progress_percentage=prog.progress_percentage, early_stopped=prog.early_stopped,
        early_stopped_at_epoch=prog.early_stopped_at_epoch, finished=prog.finished,
        best_metric=meta.get("best_metric") if isinstance(meta.get("best_metric"), str) else None,
        best_value=_num(meta.get("best_loss")),
        last_loss=_num(status.get("loss")) if status else None,
        heartbeat_age_s=None if hb is None else max(0.0, now - hb),
        pid=_int(status.get("pid")) if status else None,
        host=status.get("host") if status and isinstance(status.get("host"), str) else None,
        progress_source=prog.source, alert=latest_alert(status), warnings=warnings,
        slurm_job=job_id, slurm_state=job.state.lower() if job else None,
        slurm_node=job.node if job else None), status


def latest_alert(status: dict | None) -> str | None:
    """The message of the last alert kept in the status (checked: a string, cut, printable)."""
    alerts = (status or {}).get("alerts") or []
    last = alerts[-1] if alerts else None
    message = last.get("message") if isinstance(last, dict) else None
    return readers.clean_text(message, 200) if isinstance(message, str) else None


MODEL_CONFIG = CONFIG_STEM + ".json"  # a run's config, or a Hugging Face model's (save_model)


def run_folders(root: str | Path) -> list[str]:
    """The folders directly under ``root`` that may be runs: not hidden, not symlinks, sorted by name."""
    with os.scandir(root) as it:
        out = [e.path for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    return sorted(out, key=os.path.basename)


def is_run_folder(path: str) -> bool:
    """Whether a folder holds a run marker (:data:`RUN_MARKERS`, tried in order): a marker found
    before ``config.json`` makes it a trainkit run; ``config.json`` alone beside a Hugging Face
    trainer state is that model's config (:func:`trainkit.foreign.model_config_only`)."""
    from trainkit.foreign.common import may_hold  # (within a scan: only the markers its listing shows)

    found = next((m for m in RUN_MARKERS if may_hold(path, m) and path_exists(f"{path}/{m}")), None)
    if found == MODEL_CONFIG:
        from trainkit.foreign import model_config_only  # an HF output folder's config.json is the model's

        return not model_config_only(path)
    return found is not None


def find_runs(root: str | Path) -> list[str]:
    """Folders directly under ``root`` that hold a config, resolved_config.json, progress.json or
    training_status.json, sorted by name."""
    return [p for p in run_folders(root) if is_run_folder(p)]


def scan(root: str | Path, *, now: float | None = None, repair: bool = False,
         stale_s: float | None = None, foreign: bool = True) -> list[RunStatus]:
    """Every run under ``root``, by name: trainkit's, and (``foreign``) the runs other tools wrote
    there (Hugging Face output folders, Lightning ``lightning_logs/version_N``, TensorBoard event
    folders; read-only, see :mod:`trainkit.foreign`). The folders :func:`find_runs` would list, each
    read once: a readable ``training_status.json`` is its marker, any other folder is asked
    :func:`is_run_folder` before it is judged."""
    now = time.time() if now is None else now
    host = socket.gethostname()
    from trainkit.foreign.common import one_look

    folders = run_folders(root)
    recorded, jobs, problems = slurm_view(folders)
    runs, paths = [], set()
    with one_look():  # a folder that is not a trainkit run is listed once for every question asked of it
        for p in folders:
            r = read_run(p, now=now, repair=repair, host=host, stale_s=stale_s,
                         slurm_jobs=(jobs or {}) if p in recorded else None, only_runs=True)[0]
            if r is None:
                continue
            if p in recorded and jobs is None:
                r.warnings.extend(problems)
            runs.append(r)
            paths.add(p)
        if foreign:
            from trainkit import foreign as F

            found = F.discover(os.fspath(root), folders=[p for p in folders if p not in paths])
            read = [F.read(source, path, root=os.fspath(root)) for source, path in found]
            held = F.writers([f.path for f in read if not (f.finished or f.early_stopped)])  # done: none to find
            for f in read:
                f.held_by = held.get(f.path)
                runs.append(foreign_status(f, now=now))
            runs.sort(key=lambda r: r.name)
    return runs


def foreign_status(f, *, now: float) -> RunStatus:
    """The status of a run another tool wrote (a :class:`trainkit.foreign.Foreign`), in the same
    shape as a trainkit run's; ``source`` says which tool; nothing in its folder is written."""
    from trainkit import foreign as F

    state, reason = F.judge(f, now)
    done, total, pct = F.progress(f)
    return RunStatus(
        name=f.name, path=f.path, state=state, reason=reason, completed_epochs=done, total_epochs=total,
        progress_percentage=pct, early_stopped=f.early_stopped,
        early_stopped_at_epoch=max(done - 1, 0) if f.early_stopped else None, finished=state in COMPLETE,
        best_metric=f.best_metric, best_value=f.best_value, last_loss=f.last_loss,
        heartbeat_age_s=None if f.last_write is None else max(0.0, now - f.last_write),
        progress_source=f.source, warnings=list(f.warnings), source=f.source, step=f.step,
        total_steps=f.total_steps)


def slurm_view(paths: list[str]) -> tuple[dict[str, int], dict[int, JobView] | None, list[str]]:
    """The last Slurm job recorded by each run at ``paths`` that was handed to Slurm, and Slurm's
    view of those jobs in one squeue call (none when no run was handed to Slurm); the view is None,
    with the warnings, when squeue is unavailable: those runs are judged by their files alone."""
    recorded: dict[str, int] = {}
    for p in paths:
        if path_exists(f"{p}/{LAUNCH_FILE}"):
            rec = slurm.recorded_job(p, [])
            if rec is not None:
                recorded[p] = rec["job_id"]
    if not recorded:
        return recorded, {}, []
    problems: list[str] = []
    return recorded, slurm.query(recorded.values(), problems), problems


def summarize(runs: list[RunStatus]) -> dict:
    """Counts per state and the overall progress (epoch-weighted; complete runs count in full)."""
    counts = {s: 0 for s in STATES}
    done = total = 0.0
    for r in runs:
        counts[r.state] = counts.get(r.state, 0) + 1
        t = r.total_epochs or r.completed_epochs
        if not t:
            continue
        total += t
        done += t if r.state in COMPLETE or r.early_stopped else min(r.completed_epochs, t)
    return {"runs": len(runs), "counts": counts, "epochs_done": done, "epochs_total": total,
            "overall_percentage": round(done / total * 100, 2) if total else 0.0}
