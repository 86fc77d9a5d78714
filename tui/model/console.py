"""A run's console (``console.log``) or its own log (``train.log``) as the log panel shows it: no Textual here.

:class:`ConsoleTail` follows a file like ``tail -f``: the last lines first, then what was appended,
read from the saved byte offset in bounded chunks (a truncated, replaced or rotated file starts again
from its end). Each line is shown as the terminal showed it last: what follows its last carriage
return (a progress bar redrawn in place keeps only its latest state), colour codes kept (the panel
renders them), every other control sequence dropped. The line still being written (no newline yet:
a live progress bar) is :attr:`ConsoleTail.partial`, shown as the newest line.

:class:`Search` finds a text in the lines shown (case-insensitive, colour codes ignored): the
matches' spans for highlighting and the next or previous matching line from a position.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from trainkit.runfolder.files import ReadProblem, open_regular

LINES = 5000  # lines kept (the panel's scroll-back)
MAX_BYTES = 256 * 1024  # read at most this much per read: a burst of output never freezes the screen
ESC = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
SGR = re.compile(r"\x1b\[[0-9;]*m")


def last_state(line: str) -> str:
    """What the terminal shows of ``line`` last: its last non-empty carriage-return segment."""
    if "\r" not in line:
        return line
    return next((part for part in reversed(line.split("\r")) if part), "")


def cleaned(line: str) -> str:
    """``line`` in its last state with its colours (SGR codes) and nothing else: other escape
    sequences (cursor moves, line erasing) and control characters dropped."""
    line = last_state(line)
    if "\x1b" not in line:
        return _controls(line)
    line = ESC.sub(lambda m: m.group(0) if SGR.fullmatch(m.group(0)) else "", line)
    return "\x1b".join(_controls(part) for part in line.split("\x1b"))  # the colour codes' ESC stays


def _controls(text: str) -> str:
    return "".join(c for c in text if c >= " " or c == "\t")


def plain(line: str) -> str:
    """The visible text of a cleaned line (colour codes removed)."""
    return _controls(ESC.sub("", line)) if "\x1b" in line else line


class ConsoleTail:
    """``path`` followed (see the module's docstring). :meth:`read` returns (new complete lines,
    reset: they replace what was shown); :attr:`partial` is the line in progress, cleaned."""

    def __init__(self, path: str, lines: int = LINES, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.lines, self.max_bytes = lines, max_bytes
        self.offset: int | None = None  # None: not read yet (the next read starts from the end)
        self.inode: int | None = None
        self.partial = ""
        self.problem: str | None = None

    def restart(self) -> None:
        """Read the end again at the next :meth:`read` (the panel was hidden, or shows another file)."""
        self.offset, self.partial = None, ""

    def read(self) -> tuple[list[str], bool]:
        self.problem = None
        try:
            fd = open_regular(self.path)
        except FileNotFoundError:
            reset = self.offset is not None
            self.offset, self.inode, self.partial = None, None, ""
            return [], reset
        except ReadProblem as e:
            self.problem = f"{os.path.basename(self.path)}: {e}"
            return [], False
        try:
            st = os.fstat(fd)
            reset = self.offset is None or st.st_ino != self.inode or st.st_size < self.offset \
                or st.st_size - self.offset > self.max_bytes  # a burst bigger than a read: its end is shown
            start = max(0, st.st_size - self.max_bytes) if reset else self.offset
            data = os.pread(fd, min(st.st_size - start, self.max_bytes), start)
        finally:
            os.close(fd)
        self.inode = st.st_ino
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) == self.max_bytes:  # a line longer than a whole read: shown in parts
            end = len(data)
        self.offset = start + end
        text = data[:end].decode("utf-8", errors="replace").split("\n")[:-1] if end else []
        if reset and start > 0 and text:
            text = text[1:]  # a cut first line
        tail = data[end:]
        self.partial = cleaned(tail.decode("utf-8", errors="replace")) if tail else ""
        out = [cleaned(line) for line in text]
        return (out[-self.lines:] if reset else out), reset


@dataclass
class Search:
    """A text searched in lines (case-insensitive, in their visible text)."""

    query: str = ""
    matches: list[int] = field(default_factory=list)  # the indexes of the matching lines, in order

    def spans(self, line: str) -> list[tuple[int, int]]:
        """Where the query occurs in ``line``'s visible text (start, end), non-overlapping."""
        if not self.query:
            return []
        hay, needle = plain(line).lower(), self.query.lower()
        out, i = [], hay.find(needle)
        while i >= 0:
            out.append((i, i + len(needle)))
            i = hay.find(needle, i + len(needle))
        return out

    def run(self, lines: list[str], start: int = 0) -> list[int]:
        """The matching lines of ``lines``; with ``start``, only ``lines[start:]`` are searched
        again (the lines before it are the ones searched before)."""
        needle = self.query.lower()
        found = [i for i in range(start, len(lines)) if needle and needle in plain(lines[i]).lower()]
        self.matches = [i for i in self.matches if i < start] + found if start else found
        return self.matches

    def next(self, current: int | None, direction: int = 1) -> int | None:
        """The matching line after (``direction`` 1) or before (-1) line ``current``, wrapping
        around; None when nothing matches."""
        if not self.matches:
            return None
        if current is None:
            return self.matches[-1] if direction < 0 else self.matches[0]
        if direction > 0:
            return next((i for i in self.matches if i > current), self.matches[0])
        return next((i for i in reversed(self.matches) if i < current), self.matches[-1])
