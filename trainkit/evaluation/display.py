"""Terminal progress for ``trainkit eval``: a rich bar on a TTY, plain lines otherwise.

Shows done/planned, ok and error counts, items/s of this session and the ETA. The clock is
injectable so the rate and ETA are testable without waiting. A terminal that went away (EIO), a
pipe whose reader left (EPIPE) or a full disk never fails the evaluation: the consoles write through
:class:`~trainkit.terminal.TerminalStream` and the display falls silent.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from trainkit.formatting import eta_seconds, fmt_duration, fmt_num
from trainkit.terminal import TerminalStream


def rate_eta(done_now: int, done_at_start: int, planned: int, elapsed_s: float) -> tuple[float | None, float | None]:
    """Items/s of this session and the seconds left at that rate (None until measurable)."""
    ran = done_now - done_at_start
    if ran <= 0 or elapsed_s <= 0:
        return None, None
    return ran / elapsed_s, eta_seconds(ran, max(planned - done_now, 0), elapsed_s)


def status_text(done: int, planned: int, ok: int, error: int, rate: float | None, eta_s: float | None) -> str:
    return (f"{done}/{planned}  ok {ok}  error {error}  {fmt_num(rate, '.1f')} items/s  "
            f"ETA {fmt_duration(eta_s)}")


class EvalProgress:
    """``interactive`` (a TTY): a live bar; else a plain line every ``plain_every_s`` seconds and
    at the end. Notes (warnings) print above the bar, or on stderr in plain mode."""

    def __init__(self, *, interactive: bool | None = None, console: Console | None = None,
                 plain_every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.console = console or Console(file=TerminalStream(sys.stdout), highlight=False)
        self.err = self.console if self.interactive else Console(file=TerminalStream(sys.stderr), highlight=False)
        self.plain_every_s = plain_every_s
        self.clock = clock
        self._progress: Progress | None = None
        self._task = None
        self.planned = 0
        self._start_done = 0
        self._t0 = 0.0
        self._next_plain = 0.0

    def note(self, message: str) -> None:
        self.err.print(message, markup=False, soft_wrap=True)

    def say(self, message: str) -> None:
        self.console.print(message, markup=False, soft_wrap=True)

    def start(self, *, name: str, planned: int, done: int, ok: int, error: int) -> None:
        self.planned, self._start_done = planned, done
        self._t0 = self.clock()
        self._next_plain = self._t0 + self.plain_every_s
        if self.interactive:
            self._progress = Progress(TextColumn(f"[bold]eval {name}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), console=self.console,
                                      refresh_per_second=4)
            self._progress.start()
            self._task = self._progress.add_task("eval", total=planned, completed=done, info="")
        self.update(done=done, ok=ok, error=error, force=not self.interactive)

    def text(self, *, done: int, ok: int, error: int) -> str:
        rate, eta = rate_eta(done, self._start_done, self.planned, self.clock() - self._t0)
        return status_text(done, self.planned, ok, error, rate, eta)

    def update(self, *, done: int, ok: int, error: int, force: bool = False) -> None:
        if self._progress is not None:
            rate, eta = rate_eta(done, self._start_done, self.planned, self.clock() - self._t0)
            self._progress.update(self._task, completed=done,
                                  info=f"ok {ok}  error {error}  {fmt_num(rate, '.1f')} items/s  "
                                       f"ETA {fmt_duration(eta)}")
        elif force or self.clock() >= self._next_plain:
            self._next_plain = self.clock() + self.plain_every_s
            self.say("eval " + self.text(done=done, ok=ok, error=error))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
