"""``trainkit eval``: decide what to evaluate (questions, model, metric), check or resume its folder,
run what is left, then write ``test_summary.json`` and ``reports/NAME.json``.

Torch is imported only to build the run's own model (``checkpoints/best.pt``) or a built-in task's
default questions; ``--model`` with ``--questions`` needs neither.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainkit.config import default_cache_dir, read_resolved
from trainkit.errors import EXIT_INTERRUPTED, UserError, first_line
from trainkit.evaluation import report
from trainkit.evaluation.display import EvalProgress
from trainkit.evaluation.items import ModelFn, RetryPolicy
from trainkit.evaluation.plan import METRICS, Plan, check_name, check_questions, load_questions
from trainkit.evaluation.runner import Runner, SessionLog, prepare
from trainkit.evaluation.scoring import score_dir
from trainkit.evaluation.writer import Counts, ProgressiveWriter, make_sink
from trainkit.formatting import fmt_sig
from trainkit.interrupts import Interrupts
from trainkit.registry import import_string
from trainkit.runfolder import RESOLVED_CONFIG_FILE, EvalPaths, RunPaths, move_aside, readers
from trainkit.runfolder.files import ReadProblem, sha256_regular, write_json
from trainkit.runfolder.lock import LockHeld, RunLock, holder_text, lock_is_stale, read_lock


@dataclass
class EvalRequest:
    run_dir: str
    name: str | None = None
    questions: str | None = None
    samples: int = 1
    model: str | None = None
    workers: int = 1
    fresh: bool = False
    retry_errors: bool = False
    durable: bool = False
    retries: int = 2
    backoff_s: float = 0.5
    timeout_s: float | None = None
    device: str | None = None
    cache_dir: Path | None = None
    report: bool = True  # write reports/NAME.json (``trainkit run`` writes it itself, with its gates)

    def __post_init__(self) -> None:
        """The checks of the eval options, for the CLI and the Python API alike."""
        for opt, value, least in (("--samples", self.samples, 1), ("--workers", self.workers, 1),
                                  ("--retries", self.retries, 0)):
            if not isinstance(value, int) or value < least:
                raise UserError(f"{opt} must be >= {least} (got {value!r})")
        if self.backoff_s < 0:
            raise UserError("--backoff must be >= 0")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise UserError("--timeout must be > 0")


def default_name(questions: str | None) -> str:
    """``default`` for the task's own questions, else the questions file's name without suffix."""
    if not questions:
        return "default"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(questions).stem).strip("-._")
    return slug[:100] or "default"


def import_callable(spec: str) -> ModelFn:
    """``module:function`` (the folder trainkit runs from is importable) -> the callable."""
    fn = import_string(spec, what=f"--model {spec!r}")
    if not callable(fn):
        raise UserError(f"--model {spec!r}: {spec.partition(':')[2]!r} is not callable")
    return fn


def file_sha256(path: Path) -> str:
    """The checkpoint's sha256 (a regular file inside the run only; else one line)."""
    try:
        return sha256_regular(path, within=path.parent)
    except ReadProblem as e:
        raise UserError(f"{path}: {e}") from None


@dataclass
class Target:
    """What an evaluation request resolved to, before anything is written."""

    plan: Plan
    run_dir: Path
    config: dict | None
    task: Any
    model_fn: ModelFn | None  # None: a checkpoint of the run (built only when an item must run)
    gates: dict
    checkpoint: Path | None = None  # which checkpoint of the run (default: best.pt)


def resolve(req: EvalRequest) -> Target:
    run_dir = Path(req.run_dir)
    name = check_name(req.name or default_name(req.questions))
    own = (req.model or "").startswith(CHECKPOINT_SPEC)  # a checkpoint file of the run itself
    standalone = bool(req.model and req.questions and not own)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a folder")
    try:
        config = read_resolved(RunPaths(run_dir)) if run_dir.is_dir() else None
    except UserError:
        if not standalone:
            raise
        config = None  # --model and --questions need nothing from the folder
    if not standalone:
        if not run_dir.is_dir():
            raise UserError(f"{run_dir}: no such run folder")
        if config is None:
            raise UserError(f"{run_dir}: not a run folder (no {RESOLVED_CONFIG_FILE}); give both --model and "
                            "--questions to evaluate a model without a run")
    task_name = config.get("task") if config else None
    # fail fast, before any file is written
    model_fn = import_callable(req.model) if req.model and not own else None
    gates = report.gates_from_config(config, str(RunPaths(run_dir).resolved_config)) if config else {}

    task = None
    if standalone:
        metric = "accuracy"
    else:
        from trainkit.tasks.configured import task_from_resolved  # imports torch

        _, task = task_from_resolved(config, source=str(RunPaths(run_dir).resolved_config))
        metric = getattr(task, "metric", "accuracy")
        if metric not in METRICS:
            raise UserError(f"task {task_name!r}: metric {metric!r} is not one of {', '.join(METRICS)}")
    if req.questions:
        questions, source = load_questions(req.questions), str(req.questions)
    else:
        make = getattr(task, "default_questions", None)
        rows = make(dict(config.get("data") or {})) if make else None
        if rows is None:
            raise UserError(f"task {task_name!r} has no default question set; give --questions FILE")
        questions, source = check_questions(list(rows), f"default questions of task {task_name!r}"), \
            f"default:{task_name}"
    ckpt = None
    if req.model and not own:
        spec = req.model
    else:
        ckpt = own_checkpoint(run_dir, req.model[len(CHECKPOINT_SPEC):] if own else None)
        spec = f"{CHECKPOINT_SPEC}{ckpt.relative_to(run_dir)} sha256:{file_sha256(ckpt)[:16]}"
    plan = Plan(name, questions, source, spec, req.samples, metric, task_name)
    return Target(plan, run_dir, config, task, model_fn, gates, ckpt)


CHECKPOINT_SPEC = "checkpoint:"


def own_checkpoint(run_dir: Path, rel: str | None) -> Path:
    """The checkpoint file of the run to evaluate: ``best.pt`` by default, or ``--model
    checkpoint:PATH`` (a path inside the run folder, e.g. ``checkpoints/current.pt``)."""
    if rel is None:
        best = RunPaths(run_dir).best_ckpt
        if not best.is_file():
            raise UserError(f"{best}: no trained model yet (train first, or give --model module:function)")
        return best
    rel = rel.strip()
    path = (run_dir / rel)
    inside = os.path.realpath(run_dir)
    if not rel or os.path.isabs(rel) or os.path.commonpath([inside, os.path.realpath(path)]) != inside:
        raise UserError(f"--model {CHECKPOINT_SPEC}{rel}: give a checkpoint file inside the run folder "
                        "(e.g. checkpoint:checkpoints/current.pt)")
    if not path.is_file():
        raise UserError(f"--model {CHECKPOINT_SPEC}{rel}: {path}: no such checkpoint file")
    return path


def _checkpoint_model(t: Target, req: EvalRequest) -> ModelFn:
    from trainkit.evaluation.model import checkpoint_predictor  # imports torch

    cache = req.cache_dir
    if cache is None:
        cache = default_cache_dir()
    return checkpoint_predictor(t.run_dir, t.config or {}, t.task, device=req.device, cache_dir=cache,
                                path=t.checkpoint)


@dataclass
class EvalResult:
    """What ``trainkit eval`` did: its exit code, the evaluation's summary and its report."""

    exit_code: int  # as the CLI's: 0 finished, 1 failed, 130 interrupted
    eval_dir: Path | None
    summary: dict | None  # test_summary.json
    report: dict | None  # reports/NAME.json (None with report=False)


def evaluate_job(run_dir: str | Path, *, display: EvalProgress | None = None, **options: Any) -> EvalResult:
    """Evaluate exactly as ``trainkit eval RUN_DIR`` does; ``options`` are :class:`EvalRequest`'s
    (``name``, ``questions``, ``samples``, ``model``, ``workers``, ``fresh``, ...). Bad input raises
    :class:`~trainkit.errors.UserError`."""
    req = EvalRequest(str(run_dir), **options)
    code = evaluate(req, display)
    name = req.name or default_name(req.questions)
    paths = RunPaths(Path(run_dir))
    ev = paths.eval_paths(name)
    return EvalResult(code, ev.root if ev.root.is_dir() else None, readers.load(ev.summary, readers.SUMMARY, []),
                      readers.load(paths.report(name), readers.REPORT, []) if req.report else None)


def evaluate(req: EvalRequest, display: EvalProgress | None = None) -> int:
    """Exit code: 0 finished (error items included), 130 interrupted, 1 the run itself failed.

    The evaluation's lock is taken before anything of the run is read, and held to the end: an
    archive (which takes the run's lock, then looks for evaluations in progress) never moves the
    folder under it, and the folder of a run that was moved meanwhile is never created again."""
    display = display or EvalProgress()
    try:
        lock, made = claim(req)
        try:
            try:
                t = resolve(req)
            except BaseException:  # bad input: what claim created goes again (nothing is written)
                lock.release()
                for folder in made:
                    try:
                        folder.rmdir()
                    except OSError:
                        pass
                raise
            return _evaluate_locked(t, req, EvalPaths.of(t.run_dir, t.plan.name), display)
        finally:
            lock.release()
    except KeyboardInterrupt:
        display.close()
        display.note("eval: interrupted; what finished is on disk (run the same command again to resume)")
        return EXIT_INTERRUPTED


SHARES_THE_RUN = ("train", "launch")  # run-lock holders an evaluation may work beside (best.pt is read once)


def claim(req: EvalRequest) -> tuple[RunLock, list[Path]]:
    """Take the evaluation's lock (``evals/.NAME.lock``), then check the run's: a trainer may hold
    it (evaluating while it trains), a move or any other holder may not. An existing run folder is
    never created again (a run folder that vanished is one line); a new folder is made only for a
    model evaluated without a run (``--model`` and ``--questions``). Returns the lock and the
    folders it created (innermost first)."""
    run_dir = Path(req.run_dir)
    name = check_name(req.name or default_name(req.questions))
    standalone = bool(req.model and req.questions and not req.model.startswith(CHECKPOINT_SPEC))
    made: list[Path] = []
    if not run_dir.exists():
        if not standalone:
            raise UserError(f"{run_dir}: no such run folder")
        missing = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
        run_dir.mkdir(parents=True, exist_ok=True)
        made = missing
    elif not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a folder")
    elif not standalone and not RunPaths(run_dir).resolved_config.exists():
        raise UserError(f"{run_dir}: not a run folder (no {RESOLVED_CONFIG_FILE}); give both --model and "
                        "--questions to evaluate a model without a run")
    _refuse_a_mover(run_dir)  # before writing anything into a folder that is being moved
    paths = EvalPaths.of(run_dir, name)
    try:
        try:
            paths.root.parent.mkdir()
            made.insert(0, paths.root.parent)
        except FileExistsError:
            pass
        lock = RunLock(paths.lock, purpose="eval").acquire()
    except FileNotFoundError:
        raise UserError(f"{run_dir}: the run folder is gone (moved or deleted) while the evaluation started") from None
    except LockHeld as e:
        if not run_dir.is_dir():
            raise UserError(f"{run_dir}: the run folder is gone (moved or deleted) while the evaluation started") \
                from None
        raise UserError(f"{paths.root}: {e}") from None
    except OSError as e:
        raise UserError(f"{paths.root.parent}: cannot create ({e.strerror or e})") from None
    try:
        _refuse_a_mover(run_dir)
    except BaseException:
        lock.release()
        raise
    return lock, made


def _refuse_a_mover(run_dir: Path) -> None:
    info = read_lock(RunPaths(run_dir).lock)
    if info is not None and not lock_is_stale(info) and info.get("purpose", "train") not in SHARES_THE_RUN:
        raise UserError(f"{run_dir}: run is locked by {holder_text(info)}; evaluate it when that is done")


def _evaluate_locked(t: Target, req: EvalRequest, paths: EvalPaths, display: EvalProgress) -> int:
    plan = t.plan
    if req.fresh:
        moved = move_aside(t.run_dir, [paths.root, RunPaths(t.run_dir).report(plan.name)])
        if moved is not None:
            display.note(f"--fresh: the earlier evaluation moved to {moved}")
    state = prepare(paths, plan, retry_errors=req.retry_errors, durable=req.durable)
    if state.truncated_bytes:
        display.note(f"responses.jsonl: truncated a torn last line ({state.truncated_bytes} bytes) left by a crash")
    if state.dropped_lines:
        display.note(f"responses.jsonl: dropped {state.dropped_lines} line(s) that were not item records")
    if state.rebuilt:
        display.note(f"conversations/: rebuilt {len(state.rebuilt)} missing or empty file(s) from their lines "
                     f"({', '.join(state.rebuilt[:3])}{', ...' if len(state.rebuilt) > 3 else ''})")
    if state.rebuild_failed:
        display.note(f"conversations/: could not rebuild {', '.join(state.rebuild_failed[:3])}")
    if not state.new and state.todo:
        display.say(f"eval {plan.name}: resuming, {state.counts.done}/{plan.planned} done"
                    + (f", re-running {state.retrying} error item(s)" if state.retrying else ""))

    if not state.todo:
        summary = score_dir(paths.root)
        if _read_summary(paths) == summary:
            if not req.report:
                display.say(f"eval {plan.name}: already complete ({_counts_text(summary)}); nothing to do")
                return 0
            return _regate(t, display, summary)
        return _finish(t, paths, display, interrupted=False, failure=None, write_report=req.report)

    interrupts = Interrupts()
    with interrupts:
        fn = t.model_fn or _checkpoint_model(t, req)
        if interrupts.requested.is_set():
            return _finish(t, paths, display, interrupted=True, failure=None, write_report=req.report)
        counts = Counts(state.counts.done, state.counts.ok, state.counts.error)
        writer = ProgressiveWriter(paths, plan.metric, plan.model, durable=req.durable, notify=display.note,
                                   listed=state.listed)
        runner: Runner | None = None

        def writer_failed(e: BaseException) -> None:
            if runner is not None:
                runner.stop()

        workers = max(1, min(req.workers, len(state.todo)))
        sink = make_sink(writer, workers, counts, on_failure=writer_failed)
        runner = Runner(fn, state.todo, plan.metric, sink, workers=workers,
                        policy=RetryPolicy(req.retries, req.backoff_s, req.timeout_s))

        def on_stop(sig: str) -> None:
            runner.stop()
            display.note(f"{sig} received: finishing the items in flight (Ctrl-C again to stop at once)")

        interrupts.on_stop = on_stop
        sessions = SessionLog(paths.sessions, durable=req.durable)
        sessions.start(workers=runner.workers, to_run=len(state.todo), retry_errors=req.retry_errors)
        start_done = counts.done
        display.start(name=plan.name, planned=plan.planned, done=counts.done, ok=counts.ok, error=counts.error)
        try:
            runner.run(tick=lambda: display.update(done=counts.done, ok=counts.ok, error=counts.error))
        finally:
            sink.close()
            display.update(done=counts.done, ok=counts.ok, error=counts.error, force=True)
            display.close()
        failure = sink.failure or runner.worker_failure
        interrupted = interrupts.requested.is_set() or runner.abandoned
        reason = "failed" if failure else ("interrupted" if interrupted else "completed")
        try:
            sessions.event("end", reason=reason, ran=counts.done - start_done)
        except OSError as e:
            failure = failure or e
        if writer.conversation_failures:
            display.note(f"{writer.conversation_failures} conversation file(s) could not be written "
                         "(their lines are in responses.jsonl; a resume rebuilds them)")
        return _finish(t, paths, display, interrupted=interrupted, failure=failure, write_report=req.report)


def _read_summary(paths: EvalPaths) -> dict | None:
    return readers.load(paths.summary, readers.SUMMARY, [])


def _counts_text(s: dict) -> str:
    metric = s.get("metric")
    value = s.get(metric)
    shown = fmt_sig(value) if isinstance(value, (int, float)) else "-"
    return f"{s['done']}/{s['planned']} done, ok {s['ok']}, error {s['error']}, {metric} {shown}"


def _regate(t: Target, display: EvalProgress, summary: dict) -> int:
    """A complete evaluation whose summary is on disk: rebuild its report from the summary and the
    gates (and ``min_ok_fraction``) of the run's config now, and rewrite it only when it differs
    (gates "may change at any time"; an older report gains the model's identity)."""
    path = RunPaths(t.run_dir).report(t.plan.name)
    old = readers.load(path, readers.REPORT, [])
    new = report.report_for_run(t.run_dir, t.plan.name, summary, t.gates, config=t.config, known=old)
    if report.same_report(old, new):
        display.say(f"eval {t.plan.name}: already complete ({_counts_text(summary)}); nothing to do")
        return 0
    if old is None:
        why = "no report yet"
    elif (old.get("gates"), old.get("min_ok_fraction")) != (new["gates"], new["min_ok_fraction"]):
        why = "the gates changed since the report: re-gated"
    else:
        why = "report rewritten (it lacked or differed in what it measured)"
    try:
        report.write_report(t.run_dir, t.plan.name, summary, t.gates, report=new)
    except OSError as e:
        display.note(f"eval {t.plan.name}: cannot write the report ({first_line(e)})")
        return 1
    display.say(f"eval {t.plan.name}: already complete ({_counts_text(summary)}); {why}")
    display.say(f"report {path}: {report.one_line(new)}")
    return 0


def _finish(t: Target, paths: EvalPaths, display: EvalProgress, *, interrupted: bool,
            failure: BaseException | None, write_report: bool) -> int:
    summary = score_dir(paths.root)
    try:
        write_json(paths.summary, summary)
        rep = report.write_report(t.run_dir, t.plan.name, summary, t.gates, config=t.config) \
            if write_report else None
    except OSError as e:
        display.note(f"eval {t.plan.name}: cannot write the summary or the report ({first_line(e)}); "
                     "`trainkit score` recomputes it from the files")
        return 1
    state = "complete" if summary["completed"] else "incomplete"
    display.say(f"eval {t.plan.name}: {state}: {_counts_text(summary)} ({summary['duration_s']:.1f}s) -> "
                f"{paths.summary}")
    if rep is not None:
        display.say(f"report {RunPaths(t.run_dir).report(t.plan.name)}: {report.one_line(rep)}")
    if failure is not None:
        display.note(f"eval {t.plan.name}: stopped: {failure.__class__.__name__}: {failure}")
        return 1
    if interrupted and not summary["completed"]:
        display.note(f"eval {t.plan.name}: interrupted; run the same command again to resume")
        return EXIT_INTERRUPTED
    return 0
