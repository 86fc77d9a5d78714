"""``trainkit run CONFIG``: train, then evaluate, then write the report (the orchestrated pipeline)."""

from __future__ import annotations

import argparse

from trainkit.cli import UsageError, fmt

RUN_EPILOG = fmt("""
examples:
  trainkit run examples/burgers.yaml                     # train -> eval -> reports/default.json
  trainkit run examples/burgers.yaml --run-dir runs/b1 --set eval.gates.nrmse.max=0.2
  trainkit run experiments/2026-11-22-burgers            # resume whichever stage was interrupted

Stages, each the ordinary command in a subprocess: `trainkit train CONFIG --run-dir DIR`, then
`trainkit eval DIR --name NAME`, then the report RUN_DIR/reports/NAME.json (metric, the gates of
eval.gates, gates_passed). Re-running resumes the interrupted stage and skips finished ones.
Exit codes: 0 all stages done (whether the gates passed is in the report and printed), the exit
code of the first stage that failed, 1 training stopped before its end, 2 bad input, 130
interrupted (Ctrl-C stops the running stage gracefully).
""")


def register(sub) -> None:
    r = sub.add_parser("run", help="train, evaluate and report (resumable pipeline)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train, then evaluate, then write the report.", epilog=RUN_EPILOG)
    r.add_argument("config", metavar="CONFIG", help="config file or run folder (as for trainkit train)")
    r.add_argument("--run-dir", metavar="DIR", help="run folder (default: as trainkit train chooses it)")
    r.add_argument("--epochs", type=int, metavar="N", help="total number of epochs (a target)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    r.add_argument("--fresh", action="store_true", help="start over: training outputs, evals and reports "
                   "are moved aside")
    r.add_argument("--cache-dir", metavar="DIR", help="task data cache")
    r.add_argument("--name", default="default", metavar="NAME", help="evaluation name (default: default)")
    r.add_argument("--samples", type=int, metavar="K", help="samples per question")
    r.add_argument("--workers", type=int, metavar="N", help="items evaluated concurrently")
    r.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from trainkit.evalplan import check_name
    from trainkit.pipeline import PipelineRequest, run_pipeline

    if args.epochs is not None and args.epochs < 1:
        raise UsageError("--epochs must be >= 1")
    for opt, v in (("--samples", args.samples), ("--workers", args.workers)):
        if v is not None and v < 1:
            raise UsageError(f"{opt} must be >= 1")
    check_name(args.name)
    return run_pipeline(PipelineRequest(config=args.config, run_dir=args.run_dir, epochs=args.epochs, sets=args.set,
                                        fresh=args.fresh, cache_dir=args.cache_dir, name=args.name,
                                        samples=args.samples, workers=args.workers))
