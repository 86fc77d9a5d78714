"""``trainkit status [ROOT] [--json] [--repair] [--watch]``: every run's state and exact progress."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

from trainkit.commands._args import add_root_arguments, existing_folder, fmt
from trainkit.errors import UserError

SYMBOLS = {"pending": "○", "queued": "◔", "running": "▶", "paused": "‖", "finished": "✓", "early_stopped": "✓",
           "stopped": "■", "failed": "✗", "crashed": "!"}

EPILOG = fmt("""
examples:
  trainkit status                       # the runs under ./experiments
  trainkit status runs/ --json          # machine-readable, one object per run
  trainkit status --repair              # also rewrite progress.json where it was missing or wrong
  trainkit status --watch --interval 5  # refresh until Ctrl-C

States: pending, running, paused, finished, early_stopped, stopped, failed, crashed (the status says
running but the heartbeat is stale - 3 x its interval, at least 60 s - or the pid is gone on this
host; another host's run by its heartbeat alone, with 60 s more for clock skew); queued (handed to
Slurm, its job pending: the job id is in the reason). finished and early_stopped are complete:
100 %. Exit code 0 whatever the states; 2 on bad input.
""")


def register(sub) -> None:
    p = sub.add_parser("status", help="state and progress of every run under ROOT",
                       description="Show every run's state and exact progress.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    add_root_arguments(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of runs instead of a table")
    p.add_argument("--repair", action="store_true", help="write recomputed progress.json back (atomically)")
    p.add_argument("--watch", action="store_true", help="redraw the table every --interval seconds until Ctrl-C")
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between redraws (--watch)")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from trainkit import status as S

    root = existing_folder(args.root)
    if args.interval <= 0:
        raise UserError("--interval must be > 0")
    if args.watch and args.json:
        raise UserError("--watch draws a table; it does not combine with --json")
    if args.json:
        runs = S.scan(root, repair=args.repair, stale_s=args.stale_after)
        # orjson serializes the RunStatus dataclasses natively (as their fields, like to_json())
        sys.stdout.buffer.write(orjson.dumps(runs, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    if not args.watch:
        print(render(S.scan(root, repair=args.repair, stale_s=args.stale_after), root))
        return 0
    try:
        while True:
            text = render(S.scan(root, repair=args.repair, stale_s=args.stale_after), root)
            sys.stdout.write("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + f"trainkit status {root}\n\n" + text + "\n")
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def render(runs, root: Path) -> str:
    """A plain table (readable without colour: each state has a symbol and its name)."""
    from trainkit.formatting import fmt_num, fmt_percent, fmt_progress, fmt_sig, format_age
    from trainkit.status import summarize

    if not runs:
        return f"no runs under {root}"
    header = ("RUN", "STATE", "EPOCH", "%", "BEST", "LOSS", "HEARTBEAT", "REASON")
    marked = any(r.alert for r in runs)
    rows = []
    for r in runs:
        total = r.total_epochs if r.total_epochs is not None else "?"
        best = f"{r.best_metric} {fmt_sig(r.best_value)}" if r.best_value is not None and r.best_metric else "-"
        rows.append((r.name, f"{SYMBOLS.get(r.state, '?')} {r.state}", f"{r.completed_epochs}/{total}",
                     fmt_progress(r.completed_epochs, r.total_epochs, r.early_stopped), best, fmt_sig(r.last_loss),
                     "-" if r.heartbeat_age_s is None else format_age(r.heartbeat_age_s) + " ago",
                     r.reason + (f"  ⚠ {r.alert}" if r.alert else "")))
    if marked:  # a column of alert marks before the names
        rows = [(f"⚠ {row[0]}" if r.alert else f"  {row[0]}", *row[1:]) for r, row in zip(runs, rows, strict=True)]
        header = (f"  {header[0]}", *header[1:])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in [header, *rows]]
    s = summarize(runs)
    counts = ", ".join(f"{n} {state}" for state, n in s["counts"].items() if n)
    lines.append("")
    lines.append(f"{s['runs']} run{'s' if s['runs'] != 1 else ''}: {counts}")
    done, total = s["epochs_done"], s["epochs_total"]
    overall = fmt_percent(done / total * 100 if total else 0.0)  # the exact ratio, rounded once
    lines.append(f"overall {overall} ({fmt_num(done, '.0f')}/{fmt_num(total, '.0f')} epochs; "
                 "early-stopped runs count as complete)")
    warned = [(r.name, w) for r in runs for w in r.warnings]
    if warned:
        lines.append("")
        lines.append(f"{len(warned)} warning(s):")
        lines.extend(f"  {name}: {w}" for name, w in warned)
    return "\n".join(lines)
