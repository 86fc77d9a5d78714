"""``trainkit train`` arguments (the training itself lives in :mod:`trainkit.train_command`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from trainkit.cli import UsageError, fmt
from trainkit.config import describe

TRAIN_EPILOG = fmt("""
examples:
  trainkit train examples/burgers.yaml                 # into experiments/<date>-burgers/
  trainkit train examples/burgers.yaml --epochs 40     # resume it up to 40 epochs in total
  trainkit train experiments/2026-11-22-baseline       # resume a run from its own files
  trainkit train cfg.yaml --set lr=3e-4 --set early_stopping.patience=3
  trainkit train cfg.yaml --run-dir runs/try2 --fresh  # start over; old outputs go to superseded/

Re-running on the same run folder resumes it bit-exactly; --epochs N is the total, never "N more".
Ctrl-C (or SIGTERM) finishes the current step, checkpoints and exits 0; a second Ctrl-C exits at
once (the last checkpoint stands). Exit codes: 0 done/stopped, 1 training failed, 2 bad input.

config keys (type, default):
""") + "\n" + "\n".join(describe())



def register(sub) -> None:
    t = sub.add_parser("train", help="train or resume a run", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train (or resume) a run.", epilog=TRAIN_EPILOG)
    t.add_argument("config", metavar="CONFIG", help="config file (.yaml/.yml/.json/.toml/.py) or a run folder")
    t.add_argument("--run-dir", metavar="DIR", help="run folder (default: the config's run folder, "
                   "else experiments/<date>-<config name>)")
    t.add_argument("--epochs", type=int, metavar="N", help="total number of epochs (a target, not 'N more')")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. lr=3e-4 or model.width=128 (repeatable)")
    t.add_argument("--fresh", action="store_true", help="start over: move the old outputs aside first")
    t.add_argument("--cache-dir", metavar="DIR", help="where generated task data is cached "
                   "(default: $TRAINKIT_CACHE_DIR or ~/.cache/trainkit)")
    t.set_defaults(func=cmd_train)


def default_cache_dir() -> Path:
    env = os.environ.get("TRAINKIT_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trainkit"


def cmd_train(args: argparse.Namespace) -> int:
    from trainkit.train_command import train  # torch is imported only when training

    if args.epochs is not None and args.epochs < 1:
        raise UsageError("--epochs must be >= 1")
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    return train(args.config, run_dir=args.run_dir, epochs=args.epochs, sets=args.set, fresh=args.fresh,
                 cache_dir=cache)
