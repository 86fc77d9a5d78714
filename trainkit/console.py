"""``console.log``: what a training process printed (stdout and stderr), kept in its run folder.

:func:`capture` points the process's file descriptors 1 and 2 at a pipe (a pseudo-terminal where
they were a terminal, so that ``isatty`` and the live progress bar stay as they were) read by a
small helper process (``python -m trainkit.console``). The helper writes every byte to where the
descriptor pointed before (the terminal still shows everything) and to ``console.log``: fd-level,
so C extensions, ``faulthandler`` and child processes are caught as well as ``print``. A helper
process rather than a thread: what was printed just before a segfault, ``os._exit`` or SIGKILL is
still in the pipe and reaches the file and the terminal, since the helper reads until the last
writer is gone; it ignores Ctrl-C, SIGTERM and SIGHUP (it ends when the pipe does), and a terminal
that went away (EIO, EPIPE) only ends the copy to the terminal, never the one to the file.

The file is bounded (:class:`RotatingFile`): past ``max_bytes`` it becomes ``console.log.1`` (one
older part kept) and a new ``console.log`` starts, so a run holds at most about twice the cap. A
line redrawn in place (a progress bar's ``\\r``) is written to the file in its latest state at
most once a second and always in its final state (:class:`Redraws`); the terminal gets every
redraw. A launcher that already sends the process's output into ``console.log`` (``trainkit
launch``, a Slurm job's ``--output``) is recognised: the helper then writes the file only, once.

Callbacks in another trainer's process cannot take its descriptors over: :class:`LogCapture`
copies Python ``logging`` records and warnings into the same bounded file instead.

``TRAINKIT_CONSOLE_MAX_BYTES`` sets the cap (bytes; default 4 MiB); 0 turns the capture off.
"""

from __future__ import annotations

import atexit
import fcntl
import io
import logging
import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
import warnings
from pathlib import Path

from trainkit.runfolder.files import ReadProblem, open_append

CAP_ENV = "TRAINKIT_CONSOLE_MAX_BYTES"
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
REDRAW_EVERY_S = 1.0  # a line redrawn in place reaches the file at most this often (its last state always)
MAX_LINE = 64 * 1024  # a longer line without a newline is written as it comes
CHUNK = 64 * 1024
READY_WAIT_S = 20.0  # how long the start of the helper may take (a cold Python on a busy node)
CLOSE_WAIT_S = 2.0  # at exit, how long the process waits for the helper to write what is left


def max_bytes_from_env(environ: dict | None = None) -> int:
    """The cap from ``TRAINKIT_CONSOLE_MAX_BYTES`` (0: no capture); a value that is not a whole
    number of bytes is the default."""
    raw = (os.environ if environ is None else environ).get(CAP_ENV, "").strip()
    try:
        return max(0, int(raw)) if raw else DEFAULT_MAX_BYTES
    except ValueError:
        return DEFAULT_MAX_BYTES


def old_part(path: Path) -> Path:
    """``console.log.1``: where the part before the last rotation is kept."""
    return path.with_name(path.name + ".1")


# ---------------------------------------------------------------------------------------------
# the bounded file


class RotatingFile:
    """Appends to ``path``; when a write would take it past ``max_bytes`` the file is renamed
    ``path.1`` (replacing the older one) and a new one started, cut after the last whole line that
    fits. Never raises: a write that fails (a full disk) drops that write only. Thread-safe."""

    def __init__(self, path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max(1024, int(max_bytes))
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._fd: int | None = None
        self.size = 0
        self._open()

    def _open(self) -> None:
        try:
            self._fd = open_append(self.path)
            self.size = os.fstat(self._fd).st_size
        except (ReadProblem, OSError) as e:
            self._fd, self.problem = None, f"{self.path.name}: {e}"

    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            if self._fd is None:
                return
            if len(data) > self.max_bytes:
                data = data[-self.max_bytes:]
            if self.size and self.size + len(data) > self.max_bytes:
                cut = data.rfind(b"\n", 0, max(0, self.max_bytes - self.size)) + 1
                self._put(data[:cut])
                data = data[cut:]
                self._rotate()
            self._put(data)

    def _put(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._fd is not None:
            try:
                n = os.write(self._fd, view)
            except InterruptedError:
                continue
            except OSError as e:
                self.problem = f"{self.path.name}: {e.strerror or e}"
                return
            self.size += n
            view = view[n:]

    def _rotate(self) -> None:
        try:
            os.replace(self.path, old_part(self.path))
        except OSError as e:
            self.problem = f"{self.path.name}: not rotated ({e.strerror or e})"
        os.close(self._fd)
        self._open()
        if self._fd is not None and self.size:  # not renamed: start it again rather than grow past the cap
            os.ftruncate(self._fd, 0)
            self.size = 0

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


# ---------------------------------------------------------------------------------------------
# lines redrawn in place


def collapse(line: bytes) -> bytes:
    """A line as the terminal shows it last: its last non-empty carriage-return segment."""
    if b"\r" not in line:
        return line
    return next((part for part in reversed(line.split(b"\r")) if part), b"")


class Redraws:
    """What of a stream goes into the file: complete lines in their final state; the line in
    progress as it grows, and when it is redrawn (``\\r``) its latest state after a ``\\r`` at most
    every ``every_s`` seconds (:meth:`due` writes one held back). A reader that keeps each line's
    last ``\\r`` segment sees what the terminal showed. Holds one line in memory at most."""

    def __init__(self, every_s: float = REDRAW_EVERY_S) -> None:
        self.every_s = every_s
        self.line = b""  # the line in progress, normalised: its latest state (+ a trailing \r)
        self.shown = b""  # that line's state as the file has it
        self.held = False  # a redraw not written yet
        self.last_redraw = float("-inf")

    def feed(self, data: bytes, now: float) -> bytes:
        out = bytearray()
        *complete, rest = data.split(b"\n")
        for part in complete:
            out += self._emit(collapse(self.line + part), now, force=True) + b"\n"
            self.line, self.shown, self.held = b"", b"", False
        if rest:
            joined = self.line + rest
            self.line = collapse(joined) + (b"\r" if joined.endswith(b"\r") else b"")
            out += self._emit(collapse(self.line), now, force=False)
            if len(self.line) > MAX_LINE:
                self.line, self.shown, self.held = b"", b"", False
        return bytes(out)

    def due(self, now: float) -> bytes:
        """A held-back redraw whose time has come."""
        if self.held and now - self.last_redraw >= self.every_s:
            return self._emit(collapse(self.line), now, force=True)
        return b""

    def flush(self, now: float) -> bytes:
        """The line in progress in its latest state (the stream ended)."""
        return self._emit(collapse(self.line), now, force=True) if self.line else b""

    def _emit(self, state: bytes, now: float, *, force: bool) -> bytes:
        if state == self.shown:
            self.held = False
            return b""
        if state.startswith(self.shown):  # the line grew: write what is new
            new, self.shown, self.held, self.last_redraw = state[len(self.shown):], state, False, now
            return new
        if not force and now - self.last_redraw < self.every_s:
            self.held = True
            return b""
        self.shown, self.held, self.last_redraw = state, False, now
        return b"\r" + state


# ---------------------------------------------------------------------------------------------
# the helper process: python -m trainkit.console FILE MAX_BYTES READY_FD READ_FD:OUT_FD:TEE:TTY ...


class _Channel:
    def __init__(self, spec: str) -> None:
        r, out, tee, tty = (int(x) for x in spec.split(":"))
        self.fd, self.out, self.tee, self.tty = r, out, bool(tee), bool(tty)
        self.redraws = Redraws()
        self.size = b""

    def to_terminal(self, data: bytes) -> None:
        """Write ``data`` where the descriptor pointed before; a terminal that went away ends this
        copy only."""
        if not self.tee:
            return
        if self.tty:
            self._same_size()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.out, view):]
            except InterruptedError:
                continue
            except OSError:  # EIO (the terminal closed), EPIPE, ENOSPC: the file goes on
                self.tee = False
                return

    def _same_size(self) -> None:
        """The pseudo-terminal keeps the real one's size (a program measures its width on it)."""
        try:
            size = fcntl.ioctl(self.out, termios.TIOCGWINSZ, b"\0" * 8)
            if size != self.size:
                fcntl.ioctl(self.fd, termios.TIOCSWINSZ, size)
                self.size = size
        except OSError:
            pass


def serve(path: str, max_bytes: int, ready: int, specs: list[str]) -> None:
    """The helper's loop: say it is ready (one byte on ``ready``), then copy each channel to its
    terminal and into the file until every channel's writers are gone."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    file = RotatingFile(path, max_bytes)
    channels = {c.fd: c for c in map(_Channel, specs)}
    poller = select.poll()
    for fd in channels:
        poller.register(fd, select.POLLIN)
    os.write(ready, b"1")
    os.close(ready)
    try:
        while channels:
            events = poller.poll(REDRAW_EVERY_S * 500)
            now = time.monotonic()
            for fd, _ in events:
                c = channels[fd]
                try:
                    data = os.read(fd, CHUNK)
                except InterruptedError:
                    continue
                except OSError:  # a pseudo-terminal whose last writer closed reads EIO: the end
                    data = b""
                if data:
                    c.to_terminal(data)
                    file.write(c.redraws.feed(data, now))
                else:
                    file.write(c.redraws.flush(now))
                    poller.unregister(fd)
                    os.close(fd)
                    del channels[fd]
            for c in channels.values():
                file.write(c.redraws.due(now))
    finally:
        file.close()


# ---------------------------------------------------------------------------------------------
# the training process's side


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _pty_like(tty: int) -> tuple[int, int]:
    """A pseudo-terminal (master, slave) with the real terminal's settings and size; output
    post-processing off, so the bytes written are the bytes the real terminal gets."""
    master, slave = os.openpty()
    try:
        attrs = termios.tcgetattr(tty)
        attrs[1] &= ~termios.OPOST
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(tty, termios.TIOCGWINSZ, b"\0" * 8))
    except (OSError, termios.error):
        pass
    return master, slave


_active: Capture | None = None  # this process's capture (one at most)


def original_stat(fd: int) -> os.stat_result | None:
    """``os.fstat(fd)`` of where ``fd`` pointed before :func:`capture` took it over (of ``fd``
    itself when it is not captured); None when it is closed."""
    saved = _active.saved.get(fd) if _active is not None and not _active.closed else None
    try:
        return os.fstat(saved[0] if saved is not None else fd)
    except OSError:
        return None


class Capture:
    """Descriptors 1 and 2 of this process, copied into ``console.log`` by the helper (see the
    module's docstring) from :func:`capture` until the process exits (:meth:`close` runs at exit)."""

    def __init__(self, path: Path, helper: subprocess.Popen, saved: dict[int, tuple[int, bool]]) -> None:
        self.path = path
        self.helper = helper
        self.saved = saved  # fd -> (a copy of where it pointed before, teed there)
        self.closed = False

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Give fds 1 and 2 back (into ``console.log`` itself where a launcher had pointed them
        there) and wait a little for the helper to write what is left. Never hangs: a process that
        still holds the pipe (a forked worker) keeps the helper alive, not this one."""
        if self.closed:
            return
        self.closed = True
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        for fd, (saved, teed) in self.saved.items():
            target = saved
            if not teed:  # it pointed into console.log: append to the current one (it may have rotated)
                try:
                    target = open_append(self.path)
                except (ReadProblem, OSError):
                    target = saved
            try:
                os.dup2(target, fd)
            except OSError:
                pass
            if target != saved:
                os.close(target)
        for saved, _ in {s for s in self.saved.values()}:
            try:
                os.close(saved)
            except OSError:
                pass
        try:
            self.helper.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass


def _start_helper(path: Path, max_bytes: int, specs: list[str], fds: list[int], env: dict) -> subprocess.Popen | None:
    """The helper, once it says it is ready (within ``READY_WAIT_S``); None when it does not: the
    descriptors must not be handed to a process that is not reading them."""
    ready_r, ready_w = os.pipe()
    try:
        helper = subprocess.Popen([sys.executable, "-m", "trainkit.console", str(path), str(max_bytes), str(ready_w),
                                   *specs], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, pass_fds=[*fds, ready_w], env=env)
    finally:
        os.close(ready_w)
    try:
        ok = bool(select.select([ready_r], [], [], READY_WAIT_S)[0]) and os.read(ready_r, 1) == b"1"
    finally:
        os.close(ready_r)
    if not ok:
        helper.kill()
        helper.wait()
        return None
    return helper


def capture(path: str | os.PathLike, max_bytes: int | None = None) -> Capture | None:
    """Copy what this process writes to fds 1 and 2 into ``path`` (bounded) as well as where they
    pointed, until the process exits. None when off (``max_bytes`` 0) or not possible (the file
    cannot be opened, the helper does not start, or this process captures already): the output
    then goes where it went before."""
    global _active
    if _active is not None and not _active.closed:
        return None
    path = Path(path)
    max_bytes = max_bytes_from_env() if max_bytes is None else max_bytes
    if max_bytes <= 0:
        return None
    try:
        os.close(open_append(path))
    except (ReadProblem, OSError):
        return None
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    groups: dict[tuple[int, int], list[int]] = {}
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        groups.setdefault((st.st_dev, st.st_ino), []).append(fd)
    if not groups:
        return None
    plan = []  # (fds, saved, read end, write end, tee, tty)
    try:
        for fds in groups.values():
            saved = os.dup(fds[0])
            tee, tty = not _same_file(saved, path), os.isatty(saved)
            read, write = _pty_like(saved) if tty else os.pipe()
            plan.append((fds, saved, read, write, tee, tty))
        package_parent = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH"))
                                                           if p)}
        specs = [f"{read}:{saved}:{int(tee)}:{int(tty)}" for _, saved, read, _, tee, tty in plan]
        helper = _start_helper(path, max_bytes, specs, [fd for p in plan for fd in (p[1], p[2])], env)
    except OSError:
        helper = None
    if helper is None:  # the output goes where it went, untouched
        for _, saved, read, write, _, _ in plan:
            for fd in (saved, read, write):
                os.close(fd)
        return None
    saved_by_fd = {}
    for fds, saved, read, write, tee, _ in plan:
        for fd in fds:
            os.dup2(write, fd)
            saved_by_fd[fd] = (saved, tee)
        os.close(write)
        os.close(read)
    if isinstance(sys.stdout, io.TextIOWrapper) and not sys.stdout.line_buffering:
        sys.stdout.reconfigure(line_buffering=True)  # a print reaches the file when printed, not at exit
    cap = _active = Capture(path, helper, saved_by_fd)
    atexit.register(cap.close)
    return cap


# ---------------------------------------------------------------------------------------------
# another trainer's process: logging and warnings


class _FileHandler(logging.Handler):
    def __init__(self, file: RotatingFile) -> None:
        super().__init__(logging.NOTSET)
        self.file = file
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._last: logging.LogRecord | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record is self._last:  # the same record through a second logger this handler is on
            return
        self._last = record
        try:
            self.file.write((self.format(record) + "\n").encode("utf-8", "replace"))
        except Exception:
            self.handleError(record)


class LogCapture:
    """Python ``logging`` (the root logger and ``loggers``, e.g. a framework's own logger that does
    not propagate) and warnings, copied into ``console.log`` with the same cap, from :meth:`attach`
    to :meth:`detach`. Warnings are still shown as before."""

    def __init__(self, path: str | os.PathLike, *, loggers: tuple[str, ...] = (), max_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.names = ("", *loggers)
        self.max_bytes = max_bytes_from_env() if max_bytes is None else max_bytes
        self.file: RotatingFile | None = None
        self.handler: _FileHandler | None = None
        self._previous = None  # warnings.showwarning before attach
        self._mine = None

    def attach(self) -> LogCapture:
        if self.max_bytes <= 0 or self.file is not None:
            return self
        self.file = RotatingFile(self.path, self.max_bytes)
        self.handler = _FileHandler(self.file)
        for name in self.names:
            logging.getLogger(name).addHandler(self.handler)
        previous, out = warnings.showwarning, self.file

        def showwarning(message, category, filename, lineno, file=None, line=None):
            out.write(warnings.formatwarning(message, category, filename, lineno, line).encode("utf-8", "replace"))
            previous(message, category, filename, lineno, file, line)

        self._previous, self._mine = previous, showwarning
        warnings.showwarning = showwarning
        return self

    def detach(self) -> None:
        if self.file is None:
            return
        for name in self.names:
            logging.getLogger(name).removeHandler(self.handler)
        if warnings.showwarning is self._mine:  # else someone replaced it since: theirs stays
            warnings.showwarning = self._previous
        self.file.close()
        self.file = self.handler = self._previous = self._mine = None


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
