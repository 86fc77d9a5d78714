"""``trainkit stop|pause|resume|checkpoint RUN... [--all [--state S]]``: what trainmon's keys do, for
scripts and for people without a terminal UI (the work is :mod:`trainkit.run_control`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainkit.commands._args import existing_folder, fmt
from trainkit.errors import EXIT_FAILED, EXIT_OK, UserError
from trainkit.runfolder import STATES

HELP = {
    "stop": "stop live runs (each checkpoints and ends as stopped)",
    "pause": "pause running runs (each checkpoints and waits, heartbeat on)",
    "resume": "resume paused runs",
    "checkpoint": "make running runs write a checkpoint now",
}
EFFECT = {
    "stop": "The trainer finishes its step, checkpoints and ends as `stopped` (`trainkit train RUN` resumes it;\n"
            "`trainkit launch` leaves it alone). A paused run stops too.",
    "pause": "The trainer checkpoints and waits, its heartbeat going on, state `paused`, until\n"
             "`trainkit resume` (or `trainkit stop`).",
    "resume": "A paused run goes on from where it paused.",
    "checkpoint": "The trainer writes checkpoints/current.pt at its next step and goes on.",
}


def register(sub) -> None:
    for what in ("stop", "pause", "resume", "checkpoint"):
        _register_one(sub, what)


def _register_one(sub, what: str) -> None:
    epilog = fmt(f"""
        examples:
          trainkit {what} 2026-11-22-baseline                  # a run under ./experiments, by name
          trainkit {what} experiments/2026-11-22-baseline      # or by its path
          trainkit {what} --all                                # every run under ROOT it can act on
          trainkit {what} --all --root runs --wait             # ... and wait until each trainer acknowledges

        """) + "\n\n" + EFFECT[what] + "\n\n" + fmt("""
        The request is written to the run's control.json, as trainmon's key does; the trainer acts on it
        between two steps and acknowledges it under `control` in training_status.json (--wait waits for
        that). A run that is not live is refused ("not running"); relaunching a failed or crashed run
        is `trainkit launch`'s. One line per run. Exit codes: 0 every request written (with --wait:
        acknowledged), 1 a run refused it (or did not acknowledge in time), 2 bad input.
        """)
    p = sub.add_parser(what, help=HELP[what], description=HELP[what][0].upper() + HELP[what][1:] + ".",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog)
    p.add_argument("runs", nargs="*", metavar="RUN", help="a run's NAME under ROOT, or a path to its folder")
    p.add_argument("--all", action="store_true", help=f"every run under ROOT that can be {_past(what)} "
                   "(with --state: the runs in that state)")
    p.add_argument("--state", metavar="S", help="with --all: only runs in state S (e.g. running, paused)")
    p.add_argument("--root", default="experiments", metavar="ROOT", help="folder holding run folders "
                   "(default: ./experiments)")
    p.add_argument("--stale-after", type=float, metavar="S",
                   help="heartbeat age after which a running run is crashed (default: 3 x its interval, >= 60)")
    p.add_argument("--wait", action="store_true", help="wait until each trainer acknowledges its request")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="with --wait: give up after S seconds (default 60)")
    p.set_defaults(func=cmd_control, what=what)


def _past(what: str) -> str:
    from trainkit.run_control import PAST

    return PAST[what]


def targets(args: argparse.Namespace) -> list[Path]:
    """The run folders the command names: RUNs (a NAME under ROOT, or a path), or with ``--all``
    every run under ROOT the request can act on (``--state``: those in that state)."""
    from trainkit.run_control import ACTS_ON

    if args.state is not None and not args.all:
        raise UserError("--state filters --all; give --all too, or name the runs")
    if args.state is not None and args.state not in STATES:
        raise UserError(f"--state {args.state!r}: not a state; one of {', '.join(STATES)}")
    if args.all and args.runs:
        raise UserError("give RUN names or --all, not both")
    if args.timeout <= 0:
        raise UserError("--timeout must be > 0")
    if not args.runs and not args.all:
        raise UserError(f"name the runs to {args.what} (NAME under {args.root}, or a path), or give --all")
    root = Path(args.root)
    if args.all:
        from trainkit.status import find_runs, run_status

        wanted = (args.state,) if args.state else ACTS_ON[args.what]
        return [Path(p) for p in find_runs(existing_folder(args.root))
                if run_status(p, stale_s=args.stale_after).state in wanted]
    out = []
    for ref in args.runs:
        bare = "/" not in ref and ref not in (".", "..")
        folder = root / ref if bare else Path(ref)
        if not folder.is_dir():
            where = f"under {root}" if bare else "at that path"
            raise UserError(f"{ref}: no run folder {where}")
        out.append(folder)
    return out


def cmd_control(args: argparse.Namespace) -> int:
    from trainkit import run_control

    folders = targets(args)
    if not folders:
        acts_on = run_control.ACTS_ON[args.what]
        state = f"in state {args.state}" if args.state else \
            ", ".join(acts_on[:-1]) + (" or " if len(acts_on) > 1 else "") + acts_on[-1]
        print(f"nothing to {args.what}: no run under {args.root} is {state}")
        return EXIT_OK
    sent = [run_control.send(f, args.what, stale_s=args.stale_after) for f in folders]
    for s in sent:
        print(s.line(), flush=True)
    if args.wait and any(s.ok for s in sent):
        sent = run_control.wait(sent, timeout=args.timeout, stale_s=args.stale_after)
        for s in sent:
            if s.request_id is not None:
                print(s.line(), flush=True)
    return EXIT_OK if all(s.ok for s in sent) else EXIT_FAILED
