"""``trainkit status [ROOT...] [--json] [--repair] [--watch]``: every run's state and exact progress."""

from __future__ import annotations

import argparse
import sys
import time

import orjson

from trainkit.commands._args import existing_folder, fmt
from trainkit.errors import UserError
from trainkit.status_table import render

EPILOG = fmt("""
examples:
  trainkit status                       # the runs under ./experiments
  trainkit status runs/ --json          # machine-readable, one object per run
  trainkit status --repair              # also rewrite progress.json where it was missing or wrong
  trainkit status --watch --interval 5  # refresh until Ctrl-C
  trainkit status experiments ~/hf-out  # several ROOTs: a later ROOT's name already taken gets its folder's name

Runs other tools wrote are listed too, read-only ("source" in --json): Hugging Face Trainer output
folders (trainer_state.json), Lightning lightning_logs/version_N (metrics.csv, hparams.yaml) and
TensorBoard event files (with the extra: pip install ".[tensorboard]").

States: pending, running, paused, finished, early_stopped, stopped, failed, crashed (the status says
running but the heartbeat is stale - 3 x its interval, at least 60 s - or the pid is gone on this
host; another host's run by its heartbeat alone, with 60 s more for clock skew); queued (handed to
Slurm, its job pending: the job id is in the reason); suspended (its process is stopped by Ctrl-Z
or SIGSTOP, process state T: `fg` or `kill -CONT PID` resumes it). finished and early_stopped are
complete: 100 %. Exit code 0 whatever the states; 2 on bad input.
""")


def register(sub) -> None:
    p = sub.add_parser("status", help="state and progress of every run under ROOT",
                       description="Show every run's state and exact progress.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("roots", nargs="*", default=["experiments"], metavar="ROOT",
                   help="folders holding run folders (default: ./experiments); several are scanned together")
    p.add_argument("--stale-after", type=float, metavar="S",
                   help="heartbeat age after which a running run is crashed (default: 3 x its interval, >= 60)")
    p.add_argument("--json", action="store_true", help="print a JSON list of runs instead of a table")
    p.add_argument("--repair", action="store_true", help="write recomputed progress.json back (atomically)")
    p.add_argument("--watch", action="store_true", help="redraw the table every --interval seconds until Ctrl-C")
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between redraws (--watch)")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from trainkit.roots import scan_roots

    roots = [str(existing_folder(r)) for r in args.roots]
    root = ", ".join(roots)
    if args.interval <= 0:
        raise UserError("--interval must be > 0")
    if args.watch and args.json:
        raise UserError("--watch draws a table; it does not combine with --json")
    if args.json:
        runs = scan_roots(roots, repair=args.repair, stale_s=args.stale_after)
        # orjson serializes the RunStatus dataclasses natively (as their fields, like to_json())
        sys.stdout.buffer.write(orjson.dumps(runs, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    if not args.watch:
        print(render(scan_roots(roots, repair=args.repair, stale_s=args.stale_after), root))
        return 0
    try:
        while True:
            text = render(scan_roots(roots, repair=args.repair, stale_s=args.stale_after), root)
            sys.stdout.write("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + f"trainkit status {root}\n\n" + text + "\n")
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
