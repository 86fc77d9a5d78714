"""``trainkit`` command line. Every command has ``--help`` with examples; bad input exits 2 with
one line on stderr."""

from __future__ import annotations

import argparse
import os
import sys

from trainkit import __version__
from trainkit.errors import EXIT_USAGE, UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's usage block is noise here)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _commands():
    """Each command module adds its own subparser (``register(sub)``) and handler."""
    from trainkit.commands import control, eval, experiments, launch, run, score, serve, status, train

    return [train.register, status.register, launch.register, control.register, eval.register, score.register,
            run.register, experiments.register, serve.register]


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
        code = args.func(args)
        sys.stdout.flush()  # here, not at exit: a reader that left is seen below
        return code
    except UserError as e:
        print(f"trainkit {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `trainkit status | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
