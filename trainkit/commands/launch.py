"""``trainkit launch [ROOT]``: start pending runs and relaunch failed or crashed ones (as resumes)."""

from __future__ import annotations

import argparse
import sys

import orjson

from trainkit.commands._args import add_root_arguments, existing_folder, fmt
from trainkit.errors import UserError

EPILOG = fmt("""
examples:
  trainkit launch --dry-run                 # what would start, and why; changes nothing
  trainkit launch --dry-run --json          # [{"name", "action": "launch"|"relaunch", "reason"}]
  trainkit launch runs/ --max-parallel 2    # start up to 2 at once (running runs count)
  trainkit launch --wait                    # stay to start queued runs as others finish

Launched: pending runs; relaunched (resumed through 'trainkit train RUN'): failed and crashed runs.
Never: finished, early_stopped, running, paused or stopped runs (a user's stop is respected).
Runs are detached (they survive the launcher and the SSH session) and append their output to
train.log. A run that crashed --max-crashes times in a row without progress is marked failed.
""")


def register(sub) -> None:
    p = sub.add_parser("launch", help="start pending runs, relaunch failed and crashed ones",
                       description="Start pending runs and relaunch failed or crashed ones (as resumes).",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    add_root_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("--json", action="store_true", help="print the plan (or what was started) as JSON")
    p.add_argument("--max-parallel", type=int, default=1, metavar="N",
                   help="at most N runs at once under ROOT, running ones included (default: 1)")
    p.add_argument("--wait", action="store_true", help="keep running to start queued runs as others finish")
    p.add_argument("--max-crashes", type=int, default=3, metavar="N",
                   help="mark a run failed after N crashes in a row without progress (default: 3)")
    p.set_defaults(func=cmd_launch)


def cmd_launch(args: argparse.Namespace) -> int:
    from trainkit.launcher import Launcher, plan

    root = existing_folder(args.root)
    if args.max_parallel < 1:
        raise UserError("--max-parallel must be >= 1")
    if args.max_crashes < 1:
        raise UserError("--max-crashes must be >= 1")
    if args.dry_run and args.wait:
        raise UserError("--dry-run changes nothing; it does not combine with --wait")
    actions = plan(root, max_crashes=args.max_crashes, stale_s=args.stale_after)
    if args.dry_run:
        if args.json:
            out = [a.to_json() for a in actions if a.action in ("launch", "relaunch")]
            sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
        elif not actions:
            print(f"nothing to launch under {root}")
        else:
            for a in actions:
                verb = "would give up on" if a.action == "give_up" else f"would {a.action}"
                print(f"{verb} {a.name}: {a.reason}")
        return 0
    report = (lambda line: print(line, file=sys.stderr)) if args.json else print
    launcher = Launcher(root, max_parallel=args.max_parallel, max_crashes=args.max_crashes,
                        stale_s=args.stale_after, report=report)
    if not actions:
        report(f"nothing to launch under {root}")
    try:
        started = launcher.run(actions, wait=args.wait)
    except KeyboardInterrupt:
        report("launcher interrupted; the runs it started go on (they are detached)")
        return 130
    if args.json:
        sys.stdout.buffer.write(orjson.dumps([a.to_json() for a in started], option=orjson.OPT_INDENT_2) + b"\n")
    return 0
