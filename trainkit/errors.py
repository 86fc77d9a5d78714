"""The one user-error type and the exit codes every command uses.

A :class:`UserError` is bad input found by trainkit (a config key, a file, an argument): the CLI
prints its message as one line and exits :data:`EXIT_USAGE`. Anything else is a bug or a failure of
the work itself and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the work itself failed (training raised, an evaluation could not be written)
EXIT_USAGE = 2  # bad input: one line on stderr
EXIT_GATES = 3  # `trainkit run`: every stage ran, but the evaluation's gates did not pass
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


class UserError(ValueError):
    """Bad input; the message is one line meant for the user."""


def first_line(e: BaseException, *, lines: int = 1, limit: int = 500) -> str:
    """``Class: message`` on one line: the first ``lines`` lines of the message (torch puts the
    detail on the second), joined and cut at ``limit`` characters."""
    text = " ".join(s.strip() for s in str(e).strip().splitlines()[:lines] if s.strip()) or "no detail"
    text = f"{e.__class__.__name__}: {text}"
    return text if len(text) <= limit else text[:limit - 3] + "..."
