"""``trainkit run CONFIG``: train, then evaluate, then write the report (the orchestrated pipeline)."""

from __future__ import annotations

import argparse

from trainkit.commands._args import add_eval_size_arguments, add_train_arguments, fmt

RUN_EPILOG = fmt("""
examples:
  trainkit run examples/burgers.yaml                     # train -> eval -> reports/default.json
  trainkit run examples/burgers.yaml --run-dir runs/b1 --set eval.gates.nrmse.max=0.2
  trainkit run experiments/2026-11-22-burgers            # resume whichever stage was interrupted

Stages, each the ordinary command in a subprocess: `trainkit train CONFIG --run-dir DIR`, then
`trainkit eval DIR --name NAME`, then the report RUN_DIR/reports/NAME.json (metric, the gates of
eval.gates, gates_passed). Re-running resumes the interrupted stage and skips finished ones.
Exit codes (for CI scripts): 0 every stage ran and the gates passed; 3 every stage ran but the
gates failed (printed, and in reports/NAME.json); 1 training stopped before its end; the exit code
of the first stage that failed; 2 bad input; 130 interrupted (Ctrl-C stops the running stage
gracefully).
""")


def register(sub) -> None:
    r = sub.add_parser("run", help="train, evaluate and report (resumable pipeline)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train, then evaluate, then write the report.", epilog=RUN_EPILOG)
    add_train_arguments(r)
    r.add_argument("--name", default="default", metavar="NAME", help="evaluation name (default: default)")
    add_eval_size_arguments(r, defaults=False)
    r.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from trainkit.pipeline import PipelineRequest, run_pipeline

    return run_pipeline(PipelineRequest(config=args.config, run_dir=args.run_dir, epochs=args.epochs, sets=args.set,
                                        fresh=args.fresh, cache_dir=args.cache_dir, name=args.name,
                                        samples=args.samples, workers=args.workers))
