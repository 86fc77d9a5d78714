"""Output to a terminal (or pipe, or file) that may go away while the work goes on.

A run started with ``&`` and ``disown``, under ``setsid`` or ``nohup`` without a redirect keeps
writing to a terminal that closes when the SSH session ends: every later write fails with EIO. A
pipe whose reader left fails with EPIPE; a redirected stdout on a full disk with ENOSPC. None of
that may fail the work: :class:`TerminalStream` wraps a stream so that the first write or flush
that fails points the stream's file descriptor at ``/dev/null`` (every later write, Python's own
flush at exit included, then succeeds silently) and sets ``gone``: a display turns itself off.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


def silence(stream: Any) -> None:
    """Point ``stream``'s file descriptor at ``/dev/null`` and drop what it still buffers there."""
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        return
    try:
        stream.flush()  # what was buffered when the write failed goes to /dev/null
    except (OSError, ValueError):
        pass


class TerminalStream:
    """A text stream that never raises on write or flush (see the module's docstring). Everything
    else (``isatty``, ``fileno``, ``encoding``...) is the wrapped stream's; once ``gone`` it is no
    longer a terminal, so a live display stops redrawing."""

    def __init__(self, stream: TextIO | None = None, *, on_gone=None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self.gone = False
        self.on_gone = on_gone

    def _lost(self) -> None:
        if not self.gone:
            self.gone = True
            silence(self._stream)
            if self.on_gone is not None:
                self.on_gone()

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):  # EIO, EPIPE, ENOSPC, a closed file: the output is lost, not the work
                self._lost()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._lost()

    def isatty(self) -> bool:
        if self.gone:
            return False
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def say(message: str, stream: TextIO | None = None) -> None:
    """``print(message, file=stream, flush=True)`` that never raises (default: stderr)."""
    out = TerminalStream(stream if stream is not None else sys.stderr)
    out.write(message + "\n")
    out.flush()
