"""``trainkit`` command line. Every command has ``--help`` with examples; bad input exits 2 with
one line on stderr."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

from trainkit import __version__
from trainkit.config import ConfigError

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input found after parsing; one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's usage block is noise here)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fmt(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def add_root_arguments(p: argparse.ArgumentParser) -> None:
    """ROOT and --stale-after, shared by the commands that read a folder of runs."""
    p.add_argument("root", nargs="?", default="experiments", metavar="ROOT",
                   help="folder holding run folders (default: ./experiments)")
    p.add_argument("--stale-after", type=float, metavar="S",
                   help="heartbeat age after which a running run is crashed (default: 3 x its interval, >= 60)")


def existing_folder(path: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder" if not folder.exists() else f"{folder}: not a folder")
    return folder


def _commands():
    """Each command module adds its own subparser (``register(sub)``) and handler."""
    import trainkit.commands.eval as eval_command
    import trainkit.commands.run as run_command
    import trainkit.commands.score as score_command
    from trainkit.commands import launch, status, train

    return [train.register, status.register, launch.register, eval_command.register, score_command.register,
            run_command.register]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="trainkit", description="Local-first PyTorch training: true resume, early stopping, "
                "live run files.", formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Run 'trainkit COMMAND --help' for a command's options and examples.")
    p.add_argument("--version", action="version", version=f"trainkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    for register in _commands():
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except (ConfigError, UsageError) as e:
        print(f"trainkit {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `trainkit status | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
