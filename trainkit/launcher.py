"""The launcher: start pending runs, relaunch failed and crashed ones as resumes, nothing else.

Never launched: ``finished``, ``early_stopped`` (complete), ``running``, ``paused`` (live) and
``stopped`` (a user's stop is respected). Each launch is recorded in the run's ``launch.json``; a
run that crashed ``max_crashes`` times in a row without progress is marked ``failed`` with the
reason instead of being relaunched forever. A per-run lock (taken with O_EXCL, handed to the child)
makes two launchers, or a launcher and a user, never start the same run twice.

With Slurm (:class:`SlurmLauncher`), each run to start becomes one requeue-safe job (see
:mod:`trainkit.slurm`) recorded as ``slurm: {job_id, node, submitted_at}`` in ``launch.json``; a
run whose last job Slurm still holds (pending, running, completing) is never submitted again.
"""

from __future__ import annotations

import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trainkit import slurm
from trainkit.runfolder import CRASHED, FAILED, FORMAT_VERSION, LAUNCH_LOCK, LIVE, PENDING, RunPaths, readers
from trainkit.runfolder.files import ReadProblem, open_append, write_json
from trainkit.runfolder.lock import HANDOFF_ENV, LockHeld, RunLock, holding, process_start_time, read_lock
from trainkit.status import RunStatus, run_status, scan
from trainkit.trust import HINT, untrusted

DEFAULT_MAX_CRASHES = 3


@dataclass
class Action:
    name: str
    path: str
    action: str  # launch | relaunch | give_up
    reason: str
    pid: int | None = None
    job_id: int | None = None  # the Slurm job, once submitted
    seen_job: int | None = None  # the last Slurm job recorded when this was planned

    def to_json(self) -> dict:
        out = {"name": self.name, "action": self.action, "reason": self.reason}
        if self.pid is not None:
            out["pid"] = self.pid
        if self.job_id is not None:
            out["job_id"] = self.job_id
        return out


def read_history(run_dir: Path, warnings: list[str] | None = None) -> dict:
    """``launch.json`` (type-checked: see :func:`trainkit.runfolder.readers.load_launch`) as the dict the
    launcher rewrites."""
    h = readers.load_launch(RunPaths(Path(run_dir)).launch, [] if warnings is None else warnings)
    return {"version": FORMAT_VERSION, "launches": h.launches, "given_up": h.given_up}


def _started_at(run_dir: Path) -> float | None:
    status = readers.load(RunPaths(Path(run_dir)).status, readers.STATUS, []) or {}
    return status.get("started_at")


def crashes_in_a_row(history: dict, completed_now: int) -> int:
    """The crash seen now plus the relaunches before it that made no progress."""
    n = 1
    for entry in reversed(history["launches"]):
        if entry.get("action") != "relaunch" or entry.get("completed_before") != completed_now:
            break
        n += 1
    return n


def decide(run: RunStatus, history: dict, *, max_crashes: int, started_at: float | None) -> Action | None:
    """The action for one run (pure): None for runs that are left alone, and for runs whose last
    Slurm job is still in Slurm's hands (pending, running or completing)."""
    if run.slurm_state is not None and run.slurm_state.upper() not in slurm.ENDED_STATES:
        return None
    if run.state == PENDING:
        return Action(run.name, run.path, "launch", "pending: never started", seen_job=run.slurm_job)
    if run.state not in (FAILED, CRASHED):
        return None
    given_up = history["given_up"]
    if given_up is not None and (started_at is None or started_at <= (given_up.get("t") or 0)):
        return None  # still the run we gave up on; a person restarting it by hand clears this
    n = crashes_in_a_row(history, run.completed_epochs)
    if n >= max_crashes:
        return Action(run.name, run.path, "give_up",
                      f"{run.state} {n} times in a row without progress (last: {run.reason}); not relaunched")
    return Action(run.name, run.path, "relaunch", f"{run.state}: {run.reason}", seen_job=run.slurm_job)


def plan(root: Path, *, max_crashes: int = DEFAULT_MAX_CRASHES, stale_s: float | None = None,
         runs: list[RunStatus] | None = None) -> list[Action]:
    out = []
    for run in scan(root, stale_s=stale_s, foreign=False) if runs is None else runs:
        if run.source != "trainkit":  # a run another tool wrote is shown, never launched
            continue
        action = decide(run, read_history(Path(run.path)), max_crashes=max_crashes,
                        started_at=_started_at(Path(run.path)))
        if action is not None:
            out.append(action)
    return out


RECORDED_FLAG = "--run-recorded-commands"


def relaunch_command(run_dir: Path, python: str, torchrun: str | None = None, *,
                     recorded: bool = False) -> tuple[list[str], str | None] | str:
    """How to start the run again: ``trainkit train`` for trainkit's own runs (under torchrun with
    ``torchrun``'s options, else the ones the run recorded); for a run of another trainer
    (``resolved_config.json`` ``_meta.trainer``, written by the callbacks of
    :mod:`trainkit.integrations`) the command it recorded (``_meta.relaunch: {argv, cwd}``, written
    when the callback is given ``relaunch=True``), only with ``recorded`` (the user asked for it:
    the command comes from the run folder, not from the user). Returns (argv, cwd), or why it
    cannot be started: a run whose folder or deciding files are not the user's own, or are
    writable by others, is never started (:mod:`trainkit.trust`)."""
    paths = RunPaths(Path(run_dir))
    why = untrusted(paths.root)
    if why is not None:
        return f"{why}; {HINT}"
    cfg = readers.load(paths.resolved_config, readers.RESOLVED_CONFIG, []) or {}
    meta = cfg.get("_meta") if isinstance(cfg.get("_meta"), dict) else {}
    trainer = meta.get("trainer")
    if not isinstance(trainer, str) or trainer == "trainkit":
        return slurm.train_command(python, paths.root, torchrun or slurm.recorded_torchrun(paths.root)), None
    how = meta.get("relaunch")
    argv = how.get("argv") if isinstance(how, dict) else None
    cwd = how.get("cwd") if isinstance(how, dict) else None
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        return (f"trained by {readers.clean_text(trainer, 50)}, and its run folder records no relaunch command "
                "(pass relaunch=True to the callback)")
    if cwd is not None and not (isinstance(cwd, str) and os.path.isdir(cwd)):
        return f"its recorded relaunch folder {readers.clean_text(str(cwd), 200)!r} does not exist here"
    if not recorded:
        shown = readers.clean_text(shlex.join(argv), 200)
        return (f"trained by {readers.clean_text(trainer, 50)}: its recorded command ({shown}) comes from the run "
                f"folder; it runs only when asked ({RECORDED_FLAG})")
    return list(argv), cwd


def output_of(paths: RunPaths) -> Path:
    """Where a launched child's stdout and stderr go: ``console.log`` for trainkit's own trainer
    (which caps and rotates it, and recognises it as its terminal: nothing is written twice;
    ``train.log`` stays the run's own log); ``train.log`` for the recorded command of another
    trainer, whose callback writes ``console.log`` itself (its logging and warnings)."""
    cfg = readers.load(paths.resolved_config, readers.RESOLVED_CONFIG, []) or {}
    meta = cfg.get("_meta") if isinstance(cfg.get("_meta"), dict) else {}
    trainer = meta.get("trainer")
    return paths.console if not isinstance(trainer, str) or trainer == "trainkit" else paths.log


def give_up(action: Action) -> None:
    """Mark the run ``failed`` with the reason (status file and launch.json)."""
    paths = RunPaths(Path(action.path))
    now = time.time()
    status = readers.load(paths.status, readers.STATUS, []) or {"version": FORMAT_VERSION}
    status.update({"state": FAILED, "error": action.reason, "heartbeat_at": status.get("heartbeat_at")})
    write_json(paths.status, status)
    history = read_history(paths.root)
    history["given_up"] = {"t": now, "reason": action.reason, "host": socket.gethostname()}
    write_json(paths.launch, history)


COUNT_WAIT_S = 60.0  # how long a launcher waits for another one to finish counting and starting


def hand_over(lock: RunLock, pid: int) -> None:
    """Name the child in the run lock the launcher handed it (same token): until the child takes
    the lock over, the lock's life is the child's, not the launcher's (which may exit first)."""
    info = read_lock(lock.path)
    if info is None or info.get("handoff_token") != lock.handoff_token or info.get("pid") != os.getpid():
        return  # the child took it over already
    try:
        write_json(lock.path, {**info, "pid": pid, "pid_started_at": process_start_time(pid)})
    except OSError:
        pass  # the lock stands as the launcher's; the child takes it over by its token


@dataclass
class Launched:
    action: Action
    process: subprocess.Popen
    lock: RunLock


def threads_env(environ: Mapping[str, str], parallel: int, cpus: int | None) -> dict[str, str]:
    """The environment of one of ``parallel`` runs started side by side on this host: each gets an
    equal share of the ``cpus`` cores as its torch threads (``OMP_NUM_THREADS``), unless the user set
    it; one run alone keeps torch's own choice (pure). Several runs with torch's thread per core each
    make their threads wait on each other: some steps ran 20x slower (3 runs on 2 cores)."""
    if parallel <= 1 or environ.get("OMP_NUM_THREADS"):
        return dict(environ)
    return {**environ, "OMP_NUM_THREADS": str(max(1, (cpus or 1) // parallel))}


def _distributed(argv: list[str]) -> bool:
    return any(a in ("torch.distributed.run", "torchrun") or a.endswith("/torchrun") for a in argv)


@dataclass
class Launcher:
    """Starts runs detached (own session, stdin closed, output appended to ``console.log``, see
    :func:`output_of`)."""

    root: Path
    max_parallel: int = 1
    max_crashes: int = DEFAULT_MAX_CRASHES
    stale_s: float | None = None
    python: str = sys.executable
    report: Callable[[str], None] = print
    torchrun: str | None = None  # torchrun's options for every run; else each run's recorded ones
    recorded: bool = False  # run the relaunch commands other trainers recorded in their run folders
    children: list[Launched] = field(default_factory=list)

    def live_elsewhere(self) -> int:
        """Runs under ROOT that are running or paused and not started by this launcher."""
        ours = {Path(c.action.path).resolve() for c in self.children if c.process.poll() is None}
        return sum(1 for r in scan(self.root, stale_s=self.stale_s)
                   if r.state in LIVE and Path(r.path).resolve() not in ours)

    def alive(self) -> list[Launched]:
        return [c for c in self.children if c.process.poll() is None]

    def start(self, action: Action) -> Action | None:
        """Lock the run, re-check its state under the lock, hand the lock to a detached child."""
        paths = RunPaths(Path(action.path))
        token = secrets.token_hex(8)
        lock = RunLock(paths.lock, purpose="launch", handoff_token=token)
        try:
            lock.acquire()
        except LockHeld as e:
            self.report(f"skip {action.name}: {e}")
            return None
        try:
            now = run_status(paths.root, stale_s=self.stale_s)
            again = decide(now, read_history(paths.root), max_crashes=self.max_crashes,
                           started_at=_started_at(paths.root))
            if again is None or again.action != action.action:
                self.report(f"skip {action.name}: it is {now.state} now")
                lock.release()
                return None
            command = relaunch_command(paths.root, self.python, self.torchrun, recorded=self.recorded)
            if isinstance(command, str):
                self.report(f"skip {action.name}: {command}")
                lock.release()
                return None
            argv, cwd = command
            out_path = output_of(paths)
            try:  # the child appends to it; our copy closes below (a FIFO or a link is never opened)
                log = open_append(out_path)
            except ReadProblem as e:
                self.report(f"skip {action.name}: {out_path.name}: {e}")
                lock.release()
                return None
            try:
                # each run's share of the cores, unless torchrun gives its processes their threads itself
                env = os.environ if _distributed(argv) else threads_env(os.environ, self.max_parallel, os.cpu_count())
                proc = subprocess.Popen(
                    argv, cwd=cwd, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                    env={**env, HANDOFF_ENV: token, "PYTHONUNBUFFERED": "1"})
            finally:
                os.close(log)
        except BaseException:
            lock.release()
            raise
        lock.held = False  # the child owns it now (or it goes stale with it if it dies first)
        hand_over(lock, proc.pid)
        history = read_history(paths.root)
        history["launches"].append({"t": time.time(), "action": action.action, "pid": proc.pid,
                                    "state_before": now.state, "completed_before": now.completed_epochs,
                                    "reason": action.reason, "launcher_pid": os.getpid(),
                                    "host": socket.gethostname()})
        history["given_up"] = None
        write_json(paths.launch, history)
        action.pid = proc.pid
        self.children.append(Launched(action, proc, lock))
        return action

    def reap(self) -> list[Launched]:
        """Children that exited since the last call; a lock still in our hands is removed."""
        done = [c for c in self.children if c.process.poll() is not None]
        for c in done:
            self.children.remove(c)
            info = read_lock(c.lock.path)
            if info is not None and info.get("handoff_token") == c.lock.handoff_token \
                    and info.get("pid") in (os.getpid(), c.process.pid):
                os.unlink(c.lock.path)  # the child died before taking the lock over
        return done

    def counting(self):
        """ROOT's launch lock: two launchers never count the running runs at the same moment (each
        sees what the other started: a handed-over run lock names the child)."""
        return holding(self.root / LAUNCH_LOCK, "launch", wait_s=COUNT_WAIT_S)

    def run(self, actions: list[Action], *, wait: bool, poll_s: float = 1.0) -> list[Action]:
        """Start what fits under ``max_parallel``, counted and started under ROOT's launch lock;
        with ``wait``, start the rest as others finish."""
        started: list[Action] = []
        queue = [a for a in actions if a.action in ("launch", "relaunch")]
        for a in actions:
            if a.action == "give_up":
                give_up(a)
                self.report(f"gave up on {a.name}: {a.reason} (marked failed; run 'trainkit train "
                            f"{a.path}' to retry by hand)")
        while True:
            if queue:
                with self.counting():
                    free = self.max_parallel - len(self.alive()) - self.live_elsewhere()
                    while queue and free > 0:
                        a = queue.pop(0)
                        if self.start(a) is not None:
                            started.append(a)
                            free -= 1
                            self.report(f"{a.action} {a.name} (pid {a.pid}): {a.reason}")
            if not wait:
                break
            for c in self.reap():
                self.report(f"{c.action.name} exited with code {c.process.returncode}")
            if not queue and not self.alive():
                break
            time.sleep(poll_s)
        if queue:
            self.report(f"{len(queue)} run(s) queued (max parallel {self.max_parallel}): "
                        + ", ".join(a.name for a in queue) + "; run 'trainkit launch' again later or use --wait")
        return started


def record_nodes(runs: list[RunStatus]) -> int:
    """Fill in the node of the last Slurm job in ``launch.json`` where squeue now shows it and the
    record has none yet (the node is known only once the job runs). The number of runs updated."""
    n = 0
    for run in runs:
        if run.slurm_job is None or not run.slurm_node:
            continue
        paths = RunPaths(Path(run.path))
        history = read_history(paths.root)
        last = history["launches"][-1] if history["launches"] else {}
        rec = last.get("slurm")
        if isinstance(rec, dict) and rec.get("job_id") == run.slurm_job and not rec.get("node"):
            rec["node"] = run.slurm_node
            write_json(paths.launch, history)
            n += 1
    return n


@dataclass
class SlurmLauncher:
    """Hands runs to Slurm: one requeue-safe job per run; Slurm schedules them (no max-parallel)."""

    root: Path
    options: slurm.Options
    max_crashes: int = DEFAULT_MAX_CRASHES
    stale_s: float | None = None
    python: str = sys.executable
    cwd: Path = field(default_factory=Path.cwd)
    report: Callable[[str], None] = print
    torchrun: str | None = None  # torchrun's options for every run; else each run's recorded ones

    def script(self, action: Action) -> str:
        return slurm.job_script(Path(action.path), python=self.python, cwd=self.cwd.resolve(), options=self.options,
                                torchrun=self.torchrun or slurm.recorded_torchrun(Path(action.path)))

    def submit(self, action: Action) -> Action | None:
        """Lock the run, re-check it under the lock (its state, and that no other launcher has
        submitted a job since the plan), submit, record the job; the lock is released at once
        (the job's trainer takes its own when it starts)."""
        paths = RunPaths(Path(action.path))
        lock = RunLock(paths.lock, purpose="launch")
        try:
            lock.acquire()
        except LockHeld as e:
            self.report(f"skip {action.name}: {e}")
            return None
        try:
            now = run_status(paths.root, stale_s=self.stale_s)
            history = read_history(paths.root)
            job = slurm.latest_job(history["launches"])
            if (job or {}).get("job_id") != action.seen_job:
                self.report(f"skip {action.name}: launched meanwhile by another launcher")
                return None
            again = decide(now, history, max_crashes=self.max_crashes, started_at=_started_at(paths.root))
            if again is None or again.action != action.action:
                self.report(f"skip {action.name}: it is {now.state} now")
                return None
            why = untrusted(paths.root)
            if why is not None:
                self.report(f"skip {action.name}: {why}; {HINT}")
                return None
            try:
                script = self.script(action)
            except slurm.SlurmError as e:
                self.report(f"skip {action.name}: {e}")
                return None
            submitted_at = time.time()
            action.job_id = slurm.submit(script)
            history["launches"].append({"t": submitted_at, "action": action.action, "state_before": now.state,
                                        "completed_before": now.completed_epochs, "reason": action.reason,
                                        "launcher_pid": os.getpid(), "host": socket.gethostname(),
                                        "slurm": {"job_id": action.job_id, "node": None,
                                                  "submitted_at": submitted_at}})
            history["given_up"] = None
            write_json(paths.launch, history)
            return action
        finally:
            lock.release()

    def run(self, actions: list[Action]) -> list[Action]:
        """Give up where due, submit every other action (Slurm queues them)."""
        started = []
        for a in actions:
            if a.action == "give_up":
                give_up(a)
                self.report(f"gave up on {a.name}: {a.reason} (marked failed; run 'trainkit train "
                            f"{a.path}' to retry by hand)")
            elif self.submit(a) is not None:
                started.append(a)
                self.report(f"{a.action} {a.name} (Slurm job {a.job_id}): {a.reason}")
        return started
