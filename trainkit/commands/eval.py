"""``trainkit eval`` arguments (the evaluation itself lives in :mod:`trainkit.evaluation.run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainkit.commands._args import add_eval_size_arguments, fmt

EVAL_EPILOG = fmt("""
examples:
  trainkit eval experiments/2026-11-22-burgers           # the run's best model on its task's own questions
  trainkit eval experiments/2026-11-22-burgers --workers 4 --samples 3
  trainkit eval RUN --retry-errors                       # re-run the items whose last record is an error
  trainkit eval out/smoke --model mymodels:answer --questions qs.jsonl   # any callable, any folder
  trainkit eval RUN --name last --model checkpoint:checkpoints/current.pt # the latest weights, not the best
  trainkit eval RUN --fresh                              # start over; the old folder goes to superseded/

Writes RUN_DIR/evals/NAME/ (NAME: --name, else the questions file's name, else "default"):
precheck.jsonl (the plan, written before the first item runs), responses.jsonl (one line per
finished item, appended the moment it finishes), conversations/q{X}_s{Y}.json (one transcript per
finished item), sessions.jsonl and test_summary.json; then RUN_DIR/reports/NAME.json with the gates
of the run's config (eval.gates).

Running the same command again resumes: finished items are skipped, the rest run; a resume whose
questions, model, samples or metric differ from precheck.jsonl is refused with the reason.
--model module:function names a callable fn(item) -> str | dict; item holds id, question,
sample_number and the question's extra keys (never the answer); a dict may carry "answer" and
"messages". With --model and --questions, RUN_DIR may be any folder and the score is exact match.

Exit codes: 0 finished (items that failed after their retries included), 1 the evaluation itself
failed (e.g. responses.jsonl cannot be written), 2 bad input, 130 interrupted (Ctrl-C or SIGTERM
lets the items in flight finish; a second Ctrl-C stops at once).
""")


def register(sub) -> None:
    e = sub.add_parser("eval", help="evaluate a run's model (resumable, progressive)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Evaluate a model item by item, writing each result as it finishes.",
                       epilog=EVAL_EPILOG)
    e.add_argument("run_dir", metavar="RUN_DIR", help="run folder (any folder with --model and --questions)")
    e.add_argument("--name", metavar="NAME", help="evaluation name: evals/NAME/ and reports/NAME.json")
    e.add_argument("--questions", metavar="FILE", help='JSONL, one {"id", "question", "answer", ...} per line '
                   "(default: the task's own held-out set)")
    e.add_argument("--model", metavar="SPEC", help="module:function answering one item, or checkpoint:PATH for "
                   "another checkpoint of the run (e.g. checkpoint:checkpoints/current.pt) (default: the run's "
                   "checkpoints/best.pt through the task's predictor)")
    add_eval_size_arguments(e)
    e.add_argument("--fresh", action="store_true", help="start over: move the old evaluation aside first")
    e.add_argument("--retry-errors", action="store_true", help="also re-run items whose last record is an error")
    e.add_argument("--no-report", dest="report", action="store_false",
                   help="write the evaluation folder only, not reports/NAME.json (trainkit run writes it itself)")
    e.add_argument("--durable", action="store_true", help="fsync every line and file (power-loss safety; slower)")
    e.add_argument("--retries", type=int, default=2, metavar="N", help="retries of a failing item (default 2)")
    e.add_argument("--backoff", type=float, default=0.5, metavar="SECONDS",
                   help="wait before the first retry, doubled for each next one (default 0.5)")
    e.add_argument("--timeout", type=float, metavar="SECONDS", help="limit of one model call (default: none)")
    e.add_argument("--device", metavar="DEVICE", help="device for the run's model (default: the run's setting)")
    e.add_argument("--cache-dir", metavar="DIR", help="task data cache (default: $TRAINKIT_CACHE_DIR or "
                   "~/.cache/trainkit)")
    e.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from trainkit.evaluation.run import evaluate_job

    return evaluate_job(
        args.run_dir, name=args.name, questions=args.questions, samples=args.samples, model=args.model,
        workers=args.workers, fresh=args.fresh, retry_errors=args.retry_errors, durable=args.durable,
        retries=args.retries, backoff_s=args.backoff, timeout_s=args.timeout, device=args.device,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None, report=args.report).exit_code
