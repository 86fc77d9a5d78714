"""`python -m trainkit ...` without paying for `import torch` each time: a test helper.

Most of a short training command's CPU time is spent importing torch (1.2 s on these cores) and
torch._dynamo (1 s more: a torch optimizer imports it when it is made), and the suite runs hundreds
of them. A zygote is a Python process that has imported torch and waits on a Unix socket; for each
command it forks, and the child becomes the command: it takes the caller's stdin, stdout and stderr
(passed over the socket), folder, environment, sys.path (with the caller's PYTHONPATH) and argv,
then runs the module as `python -m` does (runpy, as __main__) and exits as the interpreter would
(SystemExit's code, 1 after a traceback, SIGINT after an uncaught KeyboardInterrupt, threads joined
and atexit functions run; no module teardown: see :func:`_exit`). The command is a real process of
its own with its own pid, signals and files; only the start is shared. The zygote reaps each child
at once (a pidfd) and sends its exit status to the caller: a dead command is never left a zombie
that would read as alive.

What a fork cannot change falls back to a real interpreter (:func:`usable` says which): settings
read when an interpreter starts (PYTHON*, locale, thread counts, LD_*) that differ from the zygote's,
and a machine without pidfd_open. Tests of the interpreter start itself (console scripts, `python -m`
against the installed entry point) start processes of their own.

One zygote per pytest process (each xdist worker), started on first use and stopped at exit (and
by the kernel when its parent dies: PR_SET_PDEATHSIG). ``TRAINKIT_TEST_ZYGOTE=0`` turns it off.
"""

from __future__ import annotations

import atexit
import io
import json
import locale
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

# settings an interpreter or a library reads when it starts or loads, which a forked child cannot
# take on afterwards (torch's own TORCH_*/PYTORCH_*/CUDA_* settings are read when used, after the
# fork; lightning and transformers set some of them on import in the test process)
_STARTUP_PREFIXES = ("PYTHON", "LC_", "LANG", "LD_", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "MALLOC_",
                     "TORCHDYNAMO_", "TORCH_COMPILE")  # torch._dynamo's config is read on its import
_CHILD_SETS = ("PYTHONPATH", "PYTHONUNBUFFERED")  # taken on by the child itself
_INT = struct.Struct("!i")


def _startup_settings(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith(_STARTUP_PREFIXES) and k not in _CHILD_SETS}


# ------------------------------------------------------------------------------------------ server

def _serve(path: str, parent: int, ready_fd: int) -> tuple[dict, list[int]] | None:
    """Accept commands until the parent is gone; in a forked child, return its request and fds."""
    import gc

    import torch  # noqa: F401  (what the zygote is for)
    import torch._dynamo  # noqa: F401  (a torch optimizer's first use imports it: another second)

    gc.freeze()  # what is there now is never collected: a child's collections leave its pages shared
    if len(os.listdir("/proc/self/task")) != 1:  # a fork copies one thread: refuse to be used
        os.write(ready_fd, b"threads\n")
        return None
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    os.write(ready_fd, b"ready\n")
    os.close(ready_fd)
    while True:
        for key, _ in sel.select(timeout=1.0):
            if key.fileobj is listener:
                conn, _ = listener.accept()
                try:
                    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
                    request = json.loads(msg)
                except (OSError, ValueError):
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:  # the command: none of the zygote's sockets and pidfds
                    for k in list(sel.get_map().values()):
                        if k.fileobj is not listener:
                            os.close(k.fileobj)
                            k.data[1].close()
                    sel.close()
                    listener.close()
                    conn.close()
                    return request, fds
                for fd in fds:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                sel.register(pidfd, selectors.EVENT_READ, (pid, conn))
                try:
                    conn.sendall(_INT.pack(pid))
                except OSError:
                    pass
            else:
                pid, conn = key.data
                _, status = os.waitpid(pid, 0)
                sel.unregister(key.fileobj)
                os.close(key.fileobj)
                try:
                    conn.sendall(_INT.pack(os.waitstatus_to_exitcode(status)))
                except OSError:
                    pass
                conn.close()
        if os.getppid() != parent:
            return None


def _become(request: dict, fds: list[int]) -> None:
    """In the forked child: take on the caller's stdio, folder, environment, sys.path and argv."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    own = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]  # the zygote's, on sys.path
    own += [os.path.abspath(p) for p in own]
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    base = [p for p in sys.path[1:] if p not in own]
    extra = [os.path.abspath(p) for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.getcwd(), *extra, *base]
    _stdio(bool(request["env"].get("PYTHONUNBUFFERED")))
    sys.argv = ["-m", *request["args"]]


def _stdio(unbuffered: bool) -> None:
    """sys.stdin/stdout/stderr on fds 0-2 as an interpreter makes them for pipes: stdout block-
    buffered (unbuffered with PYTHONUNBUFFERED), stderr line-buffered, the zygote's encodings."""
    def wrap(fd: int, mode: str, like, **kw):
        raw = io.FileIO(fd, mode, closefd=False)
        buffered = raw if unbuffered and mode == "wb" else (io.BufferedReader(raw) if mode == "rb"
                                                             else io.BufferedWriter(raw))
        return io.TextIOWrapper(buffered, encoding=like.encoding, errors=like.errors, **kw)

    sys.stdin = sys.__stdin__ = wrap(0, "rb", sys.__stdin__)
    sys.stdout = sys.__stdout__ = wrap(1, "wb", sys.__stdout__, write_through=unbuffered)
    sys.stderr = sys.__stderr__ = wrap(2, "wb", sys.__stderr__, line_buffering=True,
                                       write_through=unbuffered)


def _main() -> None:
    path, parent, ready_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    try:  # die with the pytest process that started this one
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    job = _serve(path, parent, ready_fd)
    if job is None:
        return
    request, fds = job
    _become(request, fds)
    _exit(*_run(request["module"]))


def _run(module: str) -> tuple[int, bool]:
    """Run ``module`` as `python -m` does; its exit code as the interpreter would make it, and
    whether a KeyboardInterrupt ended it."""
    import runpy

    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0, False
        print(e.code, file=sys.stderr)
        return 1, False
    except BaseException as e:  # noqa: BLE001  (as the interpreter: the traceback, then 1)
        sys.excepthook(type(e), e, e.__traceback__)
        return 1, isinstance(e, KeyboardInterrupt)
    return 0, False


def _exit(code: int, interrupted: bool) -> None:
    """The interpreter's exit without its module teardown: wait for the threads that are not
    daemons, run the atexit functions, flush stdout and stderr, then leave. (Tearing down the
    modules a fork shares would touch every page of them: a second per command; multiprocessing's
    forked children leave the same way.) An uncaught KeyboardInterrupt ends by SIGINT, as Python
    does."""
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


# ------------------------------------------------------------------------------------------ client

class _Zygote:
    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="trainkit-zygote-")
        self.path = os.path.join(self.folder, "socket")
        ready_r, ready_w = os.pipe()
        self.proc = subprocess.Popen([sys.executable, __file__, self.path, str(os.getpid()), str(ready_w)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=(ready_w,),
                                     env=dict(os.environ))
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            self.ok = ready.readline() == b"ready\n"  # EOF or "threads": not usable
        self.env = _startup_settings(os.environ)
        atexit.register(self.close)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        try:
            os.rmdir(self.folder)
        except OSError:
            pass


_zygote: _Zygote | None = None
_lock = threading.Lock()


def _get() -> _Zygote | None:
    global _zygote
    if os.environ.get("TRAINKIT_TEST_ZYGOTE", "1") == "0" or not hasattr(os, "pidfd_open"):
        return None
    with _lock:
        if _zygote is None or _zygote.proc.poll() is not None:
            _zygote = _Zygote()
    return _zygote if _zygote.ok else None


def usable(env: dict) -> bool:
    """Whether a command with ``env`` can start from the zygote (its startup settings are the
    zygote's); False also where no zygote can run here."""
    return not differences(env)


def differences(env: dict) -> list[str]:
    """The startup settings of ``env`` that keep a command from the zygote (for messages)."""
    z = _get()
    if z is None:
        return ["no zygote here"]
    mine = _startup_settings(env)
    return sorted(k for k in set(mine) | set(z.env) if mine.get(k) != z.env.get(k))


class Process:
    """A command forked from the zygote, as ``subprocess.Popen(..., stdout=PIPE, text=True)`` gives
    it (stderr to its own pipe, or with ``merge`` into stdout as ``stderr=STDOUT``): ``pid``,
    ``stdout`` (text, universal newlines), ``poll``, ``wait``, ``communicate``, ``send_signal``,
    ``terminate``, ``kill``, ``returncode`` (minus the signal that ended it)."""

    def __init__(self, module: str, args: list[str], *, cwd, env: dict, merge: bool) -> None:
        z = _get()
        if z is None:
            raise RuntimeError("no zygote here: check usable() first")
        self.args = [sys.executable, "-m", module, *args]
        self.returncode: int | None = None
        out_r, out_w = os.pipe()
        err_r, err_w = (None, out_w) if merge else os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._conn.connect(z.path)
            request = {"module": module, "args": list(args), "cwd": os.fspath(cwd), "env": dict(env)}
            socket.send_fds(self._conn, [json.dumps(request).encode()], [null, out_w, err_w])
        finally:
            for fd in {null, out_w, err_w}:
                os.close(fd)
        self.pid = _recv_int(self._conn, time.monotonic() + 60)
        self._code = b""
        self.stdout = io.TextIOWrapper(open(out_r, "rb"), encoding=locale.getpreferredencoding(False))
        self.stderr = None if err_r is None else io.TextIOWrapper(open(err_r, "rb"),
                                                                   encoding=locale.getpreferredencoding(False))
        self._chunks: dict[int, list[bytes]] = {}  # what communicate read, by fd
        self._text: dict[int, str] = {}  # and the whole of it, once at the end

    # the exit status, which the zygote sends when it has reaped the command
    def _status(self, deadline: float | None) -> bool:
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            self._conn.settimeout(None if left is None else max(0.0, left))  # 0: what is there now
            try:
                part = self._conn.recv(_INT.size - len(self._code))
            except (TimeoutError, BlockingIOError):
                return False
            if not part:
                raise RuntimeError("the zygote went away")
            self._code += part
            if len(self._code) == _INT.size:
                self.returncode = _INT.unpack(self._code)[0]
                self._conn.close()
        return True

    def poll(self) -> int | None:
        self._status(time.monotonic())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._status(None if timeout is None else time.monotonic() + timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # never a pid the zygote has reaped (it may be another process's now)
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, input=None, timeout: float | None = None) -> tuple[str | None, str | None]:  # noqa: A002
        """Read the pipes to their end, then wait; as Popen's (a timeout keeps what was read for
        the next call)."""
        if input is not None:
            raise ValueError("no stdin: the command reads /dev/null")
        deadline = None if timeout is None else time.monotonic() + timeout
        streams = [f for f in (self.stdout, self.stderr) if f is not None and not f.closed]
        for f in streams:
            self._chunks.setdefault(f.fileno(), [])
        with selectors.DefaultSelector() as sel:
            for f in streams:
                sel.register(f.fileno(), selectors.EVENT_READ, f)
            while sel.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                for key, _ in sel.select(timeout=left):
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        self._chunks[key.fd].append(data)
                    else:
                        sel.unregister(key.fd)
                        self._text[id(key.data)] = _translate(b"".join(self._chunks[key.fd]))
                        key.data.close()
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self._text.get(id(self.stdout)), self._text.get(id(self.stderr))

    def read_so_far(self) -> bytes:
        """What :meth:`communicate` read of stdout before a timeout."""
        return b"".join(next(iter(self._chunks.values()), []))

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc) -> None:
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        self.wait()


def run(module: str, args: list[str], *, cwd, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, ...)``
    with the child forked from the zygote; the same result, the same TimeoutExpired (the command
    killed first)."""
    proc = Process(module, args, cwd=cwd, env=env, merge=False)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        proc.kill()
        proc.wait()
        e.stdout = proc.read_so_far()
        raise
    finally:
        for f in (proc.stdout, proc.stderr):
            f.close()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _recv_int(conn: socket.socket, deadline: float) -> int:
    data = b""
    while len(data) < _INT.size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired("zygote", 0)
        conn.settimeout(left)
        try:
            part = conn.recv(_INT.size - len(data))
        except TimeoutError:
            continue
        if not part:
            raise RuntimeError("the zygote went away")
        data += part
    return _INT.unpack(data)[0]


def _translate(data: bytes) -> str:
    """As subprocess's text mode: the locale's encoding, universal newlines."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


if __name__ == "__main__":
    _main()
