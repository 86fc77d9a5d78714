"""Terminal progress for ``trainkit train``: a live bar on a TTY, plain lines otherwise.

Log records go through the same console so they print above the bar instead of through it. No
display or log write ever fails a run: the console and the log stream write through
:class:`~trainkit.terminal.TerminalStream`, so a terminal that went away (EIO after an SSH drop),
a pipe whose reader left (EPIPE) or a full disk turns the display off and the work goes on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from trainkit.console import original_stat
from trainkit.formatting import fmt_duration, fmt_num
from trainkit.terminal import TerminalStream

log = logging.getLogger("trainkit")


class ProgressDisplay:
    """``interactive`` (a TTY): a rich bar for the epoch plus a status line; else plain lines,
    one per epoch and one every ``plain_every_s`` seconds inside a long epoch."""

    def __init__(self, *, interactive: bool | None = None, console: Console | None = None,
                 plain_every_s: float = 10.0) -> None:
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.console = console or Console(file=TerminalStream(sys.stdout, on_gone=self._gone), highlight=False)
        self.plain_every_s = plain_every_s
        self._progress: Progress | None = None
        self._task = None
        self._next_plain = 0.0
        self.total_epochs = 0

    def log_handler(self) -> logging.Handler:
        if self.interactive:
            return RichHandler(console=self.console, show_path=False, show_time=True, markup=False,
                               log_time_format="%H:%M:%S")
        handler = logging.StreamHandler(TerminalStream(sys.stderr))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        return handler

    def start(self, *, total_epochs: int) -> None:
        self.total_epochs = total_epochs
        if self.interactive:
            self._progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  {task.fields[rate]} samples/s  ETA {task.fields[eta]}"),
                console=self.console, refresh_per_second=4, transient=False)
            self._progress.start()
            self._task = self._progress.add_task("train", total=1, epoch=0, epochs=total_epochs, loss="-",
                                                 rate="-", eta="--:--")
        self._next_plain = time.monotonic() + self.plain_every_s

    def update(self, *, epoch: int, step_in_epoch: int, steps_per_epoch: int, loss: float | None,
               throughput: float | None, eta_s: float | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step_in_epoch, total=steps_per_epoch, epoch=epoch + 1,
                                  loss=fmt_num(loss), rate=fmt_num(throughput, ".0f"), eta=fmt_duration(eta_s))
        elif time.monotonic() >= self._next_plain:
            self._next_plain = time.monotonic() + self.plain_every_s
            self.console.print(f"epoch {epoch + 1}/{self.total_epochs}  step {step_in_epoch}/{steps_per_epoch}  "
                               f"loss {fmt_num(loss)}  {fmt_num(throughput, '.0f')} samples/s  "
                               f"ETA {fmt_duration(eta_s)}", soft_wrap=True)

    def _gone(self) -> None:
        """The terminal went away: stop redrawing (the rest of the run writes its files only)."""
        self.interactive = False
        self.plain_every_s = float("inf")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def setup_logging(display: ProgressDisplay, log_path: Path | None, *,
                  file_enabled: bool = True) -> list[logging.Handler]:
    """Send the ``trainkit`` logger to the console and (for the writing rank) to ``train.log``."""
    handlers: list[logging.Handler] = [display.log_handler()]
    if log_path is not None and file_enabled and not _stderr_is(log_path):
        fh = logging.FileHandler(log_path, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handlers.append(fh)
    log.setLevel(logging.INFO)
    log.propagate = False
    for h in handlers:
        log.addHandler(h)
    return handlers


def _stderr_is(path: Path) -> bool:
    """True when stderr already goes to ``path`` (a restart redirected it to train.log; behind
    the console capture, where it went before, see :func:`trainkit.console.original_stat`): the
    file must not get every line twice."""
    try:
        a, b = original_stat(sys.stderr.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return a is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def teardown_logging(handlers: list[logging.Handler]) -> None:
    for h in handlers:
        log.removeHandler(h)
        h.close()
