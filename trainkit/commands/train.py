"""``trainkit train`` arguments (the training itself lives in :mod:`trainkit.train.run`)."""

from __future__ import annotations

import argparse

from trainkit.commands._args import add_train_arguments, fmt
from trainkit.config import schema_help
from trainkit.tasks.defaults import BUILTIN_DEFAULTS, describe

TRAIN_EPILOG = fmt("""
examples:
  trainkit train examples/burgers.yaml                 # into experiments/<date>-burgers/
  trainkit train examples/burgers.yaml --epochs 40     # resume it up to 40 epochs in total
  trainkit train experiments/2026-11-22-burgers        # resume a run from its own files
  trainkit train examples/arith_chat.yaml              # the chat task: a tiny transformer learns sums
  trainkit train examples/burgers.yaml --run-dir runs/lr --set lr=3e-4 --set early_stopping.patience=3
  trainkit train examples/burgers.yaml --run-dir runs/lr --fresh  # start over; old outputs go to superseded/

Re-running on the same run folder resumes it bit-exactly; --epochs N is the total, never "N more".
What the process prints (stdout and stderr, warnings, tracebacks) is shown as always and also kept in
RUN/console.log, rotated to console.log.1 past TRAINKIT_CONSOLE_MAX_BYTES (default 4 MiB; 0: off).
Ctrl-C (or SIGTERM) finishes the current step, checkpoints and exits 0; a second Ctrl-C exits at
once (the last checkpoint stands). Exit codes: 0 done/stopped, 1 training failed, 2 bad input.

built-in tasks and their own defaults (a config with only `task: NAME` trains with them; the
file's keys and --set override them, key by key):
""") + "\n" + "\n".join(f"  {name:<12} {describe(d)}" for name, d in BUILTIN_DEFAULTS.items()) + \
    "\n\nconfig keys (type, default):\n" + "\n".join(schema_help())


def register(sub) -> None:
    t = sub.add_parser("train", help="train or resume a run", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train (or resume) a run.", epilog=TRAIN_EPILOG)
    add_train_arguments(t)
    t.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from trainkit.train.run import run_job  # torch is imported only when training

    return run_job(args.config, run_dir=args.run_dir, epochs=args.epochs, overrides=args.set, fresh=args.fresh,
                   cache_dir=args.cache_dir, console=True).exit_code
