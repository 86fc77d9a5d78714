"""Argument helpers shared by the commands: help text, ROOT, and the arguments two commands share
(``trainkit run`` takes train's and part of eval's, declared here once)."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from trainkit.errors import UserError


def fmt(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def add_root_arguments(p: argparse.ArgumentParser) -> None:
    """ROOT and --stale-after, for the commands that read a folder of runs."""
    p.add_argument("root", nargs="?", default="experiments", metavar="ROOT",
                   help="folder holding run folders (default: ./experiments)")
    p.add_argument("--stale-after", type=float, metavar="S",
                   help="heartbeat age after which a running run is crashed (default: 3 x its interval, >= 60)")


def existing_folder(path: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder" if not folder.exists() else f"{folder}: not a folder")
    return folder


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """CONFIG and the options of ``trainkit train`` (also taken by ``trainkit run``)."""
    p.add_argument("config", metavar="CONFIG", help="config file (.yaml/.yml/.json/.toml/.py) or a run folder")
    p.add_argument("--run-dir", metavar="DIR", help="run folder (default: the config's run folder, "
                   "else experiments/<date>-<config name>)")
    p.add_argument("--epochs", type=int, metavar="N", help="total number of epochs (a target, not 'N more')")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. lr=3e-4 or model.width=128 (repeatable)")
    p.add_argument("--fresh", action="store_true", help="start over: move the old outputs aside first")
    p.add_argument("--cache-dir", metavar="DIR", help="where generated task data is cached "
                   "(default: $TRAINKIT_CACHE_DIR or ~/.cache/trainkit)")


def add_eval_size_arguments(p: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """--samples and --workers (``trainkit eval``; ``trainkit run`` passes them on)."""
    p.add_argument("--samples", type=int, default=1 if defaults else None, metavar="K",
                   help="samples per question (default 1)")
    p.add_argument("--workers", type=int, default=1 if defaults else None, metavar="N",
                   help="items evaluated concurrently (threads; default 1)")
