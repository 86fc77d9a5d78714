"""Ctrl-C, SIGTERM and SIGHUP for long commands: the first asks for a graceful stop, a second Ctrl-C
stops at once.

The first signal sets ``requested`` (and calls ``on_stop`` with the signal's name): the command
finishes what is in flight, saves, and exits. A second SIGINT raises KeyboardInterrupt where the
main thread is and sets ``hard``, so whatever fails next (some libraries turn the interrupt into
their own error) is known to be its doing. Handlers are installed only from the main thread.

SIGHUP (an SSH connection that drops without tmux, ``tmux kill-pane``, a closed terminal window) is
a graceful stop like SIGTERM: the work is saved where it stands instead of the process dying on the
spot. A process started with SIGHUP ignored (``nohup``) keeps it ignored: it was asked to outlive
its terminal.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_signals() -> list[signal.Signals]:
    """The signals a long command turns into a graceful stop: SIGINT, SIGTERM, and SIGHUP unless
    this process was started with it ignored (``nohup``)."""
    return [s for s in STOP_SIGNALS if not (s == signal.SIGHUP and signal.getsignal(s) == signal.SIG_IGN)]


class Interrupts:
    def __init__(self, on_stop: Callable[[str], None] | None = None) -> None:
        self.on_stop = on_stop
        self.requested = threading.Event()
        self.signal_name = ""
        self.hard = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested.is_set() and signum == signal.SIGINT:
            self.hard = True
            raise KeyboardInterrupt
        if self.requested.is_set():  # a SIGTERM or a hang-up after the first request: already stopping
            return
        self.signal_name = signal.Signals(signum).name
        self.requested.set()
        if self.on_stop is not None:
            self.on_stop(self.signal_name)

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for s in stop_signals():
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()
