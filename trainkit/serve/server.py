"""The HTTP side: one event-loop thread that accepts, reads and writes every connection without
blocking (``selectors``), and a few worker threads that turn complete requests into responses
through :class:`~trainkit.serve.api.Api` (parsed by the standard library's ``BaseHTTPRequestHandler``).

A thread per connection (``ThreadingHTTPServer``) ran out of file descriptors at ~1,100 idle
connections, and then every request timed out. Here a connection costs a socket and a small
buffer, and:

* at most ``max_connections`` are open (default: what the descriptor limit allows, which is raised to
  its hard limit at start); at the limit the connection that has waited longest without a request
  in progress is closed to make room, so clients that hold connections open cannot lock others out;
* a connection must send a complete request (head, and body if any) within ``timeout`` seconds of
  starting to wait for it, and must read its response within ``timeout`` seconds: silent, idle
  keep-alive and slow clients are closed;
* a request head is at most 64 KiB (else 431) and a body at most 1 MiB (else 413): a GET with a body
  is read and discarded, never parsed as the next request;
* the ``Host`` header must name localhost, the address the server listens on, an IP address, or a
  name given with ``allow_hosts`` (else 403): a page on another site cannot reach the runs by DNS
  rebinding.

Every response carries a JSON content type (the page: HTML), ``Cache-Control: no-store`` and a
``Content-Length``; errors found by ``http.server`` itself (a malformed request line) are JSON too.
:func:`serve_until_stopped` runs until Ctrl-C, SIGTERM or SIGHUP and then closes every socket.
"""

from __future__ import annotations

import collections
import errno
import io
import ipaddress
import queue
import re
import resource
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

import orjson

from trainkit.errors import first_line
from trainkit.serve.api import ALLOWED, JSON, Api, Response, error

MAX_HEAD = 64 * 1024
MAX_BODY = 1 << 20
RESERVED_FDS = 64  # descriptors kept for files, pipes and the listening socket
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:", re.IGNORECASE | re.MULTILINE)


class Handler(BaseHTTPRequestHandler):
    """Parses one buffered request (``rfile``) and writes its response into ``wfile`` (a buffer the
    event loop sends). Never touches the socket."""

    protocol_version = "HTTP/1.1"  # keep-alive: a polling page or client reuses its connection
    server_version = "trainkit-serve"
    sys_version = ""
    server: Server

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # any method but GET and HEAD (POST, PUT, DELETE, FOO...): 405
            return self._respond
        raise AttributeError(name)

    def do_GET(self) -> None:
        self._respond()

    def do_HEAD(self) -> None:
        self._respond()

    def _respond(self) -> None:
        host = self.headers.get("Host")
        if host is not None and not self.server.host_allowed(host):
            self.close_connection = True
            self.send(error(403, f"Host {host[:100]!r} is not this server's; start it with --allow-host NAME to "
                                 "serve that name"))
            return
        self.send(self.server.api.handle(self.command, self.path))

    def send(self, r: Response) -> None:
        self.send_response(r.status)
        self.send_header("Content-Type", r.content_type)
        self.send_header("Content-Length", str(len(r.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in r.headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(r.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (400, 414, 431, 501...), as JSON."""
        self.close_connection = True
        body = orjson.dumps({"error": message or self.responses.get(code, ("error",))[0]})
        self.send_response(code, message)
        self.send_header("Content-Type", JSON)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        if code == 405:
            self.send_header("Allow", ALLOWED)
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.access_log:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")


class Conn:
    """One client connection as the event loop sees it."""

    __slots__ = ("sock", "addr", "buf", "out", "since", "busy", "closing")

    def __init__(self, sock: socket.socket, addr: Any, now: float) -> None:
        self.sock, self.addr = sock, addr
        self.buf = bytearray()  # what arrived and is not answered yet
        self.out = memoryview(b"")  # what is left to send
        self.since = now  # when it started waiting (for a request, or for the client to read a response)
        self.busy = False  # a worker is answering it
        self.closing = False  # close once ``out`` is sent


def raise_fd_limit() -> int:
    """Raise this process's descriptor limit to its hard limit; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 1 << 20:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class Server:
    def __init__(self, address: tuple[str, int], api: Api, *, access_log: bool = False,
                 allow_hosts: Iterable[str] = (), max_connections: int | None = None, timeout: float = 15.0,
                 workers: int = 8) -> None:
        self.api = api
        self.access_log = access_log
        self.timeout = timeout
        limit = raise_fd_limit()
        self.max_connections = max_connections or max(16, min(limit - RESERVED_FDS, 100_000))
        self.address_family = family(address[0])
        self.socket = socket.socket(self.address_family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(4096)  # the kernel caps it at net.core.somaxconn
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self.allowed = self._allowed_names(address[0], allow_hosts)
        self._conns: collections.OrderedDict[int, Conn] = collections.OrderedDict()  # oldest wait first
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.socket, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._jobs: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._work, name=f"trainkit-serve-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._workers:
            t.start()

    # ------------------------------------------------------------------ hosts
    @staticmethod
    def _allowed_names(bind: str, extra: Iterable[str]) -> frozenset[str]:
        names = set(LOCAL_NAMES) | {h.lower().rstrip(".") for h in extra}
        if bind and bind not in ("0.0.0.0", "::"):
            names.add(bind.lower().rstrip("."))
        return frozenset(names)

    def host_allowed(self, host: str) -> bool:
        """``Host`` names localhost, the bind address, an IP address, or an allowed name (the port
        is not compared: a DNS rebinding attack changes the name, never the address)."""
        name = host.strip().lower()
        if name.startswith("["):
            name = name[1:name.find("]")] if "]" in name else name[1:]
        elif name.count(":") == 1:
            name = name.rpartition(":")[0]
        name = name.rstrip(".")
        if name in self.allowed:
            return True
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False

    # ------------------------------------------------------------------ workers
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            conn, request = job
            try:
                out, close = self.answer(request, conn.addr)
            except Exception as e:  # the handler's own bug: one line, the connection goes
                sys.stderr.write(f"trainkit serve: a request from {conn.addr[0]} failed: {first_line(e)}\n")
                out, close = b"", True
            self._done.put((conn, out, close))
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass

    def answer(self, request: bytes, addr: Any) -> tuple[bytes, bool]:
        """The response to one complete request (head and body), and whether to close after it."""
        h = Handler.__new__(Handler)
        h.server, h.client_address, h.request = self, addr, None
        h.rfile, h.wfile = io.BytesIO(request), io.BytesIO()
        h.close_connection = True
        h.handle_one_request()
        return h.wfile.getvalue(), h.close_connection

    # ------------------------------------------------------------------ the event loop
    def serve_forever(self, poll_interval: float = 0.5) -> None:
        try:
            while not self._stop.is_set():
                wait = poll_interval
                if self._conns:
                    oldest = next(iter(self._conns.values()))
                    wait = max(0.0, min(wait, oldest.since + self.timeout - time.monotonic()))
                for key, mask in self._sel.select(wait):
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        self._wake()
                    elif mask & selectors.EVENT_WRITE:
                        self._write(key.data)
                    else:
                        self._read(key.data)
                self._expire(time.monotonic())
        finally:
            self._stop.set()

    def shutdown(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def server_close(self) -> None:
        self._stop.set()
        for _ in self._workers:
            self._jobs.put(None)
        for conn in list(self._conns.values()):
            self._close(conn)
        for s in (self.socket, self._wake_r, self._wake_w):
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        self._sel.close()

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def _accept(self) -> None:
        for _ in range(64):  # a burst at a time; the selector reports the rest
            if len(self._conns) >= self.max_connections and not self._evict():
                return  # every connection is being answered: the new ones wait in the backlog
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM) and self._evict():
                    continue  # out of descriptors: the longest-waiting connection made room
                return
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            conn = Conn(sock, addr, time.monotonic())
            self._conns[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _evict(self) -> bool:
        """Close the connection that has waited longest without a request being answered."""
        for conn in self._conns.values():
            if not conn.busy:
                self._close(conn)
                return True
        return False

    def _expire(self, now: float) -> None:
        while self._conns:
            conn = next(iter(self._conns.values()))
            if now - conn.since < self.timeout:
                return
            self._close(conn)  # silent, idle, slow to send its request or to read its response

    def _waiting(self, conn: Conn) -> None:
        """``conn`` starts a new wait (for a request, or for its response to be read)."""
        conn.since = time.monotonic()
        self._conns.move_to_end(conn.sock.fileno())

    def _read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        conn.buf += data
        self._dispatch(conn)

    def _dispatch(self, conn: Conn) -> None:
        """Hand the first complete request in ``conn.buf`` to a worker (its body, if any, is cut
        off and dropped), or answer a request that is too large."""
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.buf) > MAX_HEAD:
                self._refuse(conn, 431, "Request Header Fields Too Large")
            return
        head = bytes(conn.buf[:end + 4])
        if _CHUNKED.search(head):
            self._refuse(conn, 411, "Length Required")  # a body this read-only server does not read
            return
        m = _LENGTH.search(head)
        length = 0
        if m:
            value = m.group(1).strip()
            if not value.isdigit():
                self._refuse(conn, 400, "Bad Request")
                return
            length = int(value)
            if length > MAX_BODY:
                self._refuse(conn, 413, "Content Too Large")
                return
        if len(conn.buf) < len(head) + length:
            return  # the body is still arriving; it will be read and discarded
        del conn.buf[:len(head) + length]
        conn.busy = True
        self._sel.unregister(conn.sock)
        self._waiting(conn)  # its answer is timed from now, not from when it went idle
        self._jobs.put((conn, head))

    def _refuse(self, conn: Conn, status: int, reason: str) -> None:
        body = orjson.dumps({"error": reason})
        out = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {JSON}\r\nContent-Length: {len(body)}\r\n"
               f"Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode() + body
        conn.buf.clear()
        conn.busy = True
        self._sel.unregister(conn.sock)
        self._send(conn, out, close=True)

    def _wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError, OSError):
            pass
        while True:
            try:
                conn, out, close = self._done.get_nowait()
            except queue.Empty:
                return
            if conn.sock.fileno() < 0:
                continue  # closed meanwhile (expired, evicted, shut down)
            self._send(conn, out, close=close)

    def _send(self, conn: Conn, out: bytes, *, close: bool) -> None:
        conn.out, conn.closing, conn.busy = memoryview(out), close, False
        self._waiting(conn)
        self._sel.register(conn.sock, selectors.EVENT_WRITE, conn)
        self._write(conn)

    def _write(self, conn: Conn) -> None:
        try:
            while conn.out:
                sent = conn.sock.send(conn.out)
                conn.out = conn.out[sent:]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the client left mid-response: nothing to tell anyone
            self._close(conn)
            return
        if conn.closing:
            self._close(conn)
            return
        self._sel.modify(conn.sock, selectors.EVENT_READ, conn)
        self._waiting(conn)
        if conn.buf:  # a pipelined request arrived with the previous one
            self._dispatch(conn)

    def _close(self, conn: Conn) -> None:
        fd = conn.sock.fileno()
        if fd < 0:
            return
        self._conns.pop(fd, None)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()


def family(host: str) -> socket.AddressFamily:
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror:
        return socket.AF_INET  # the bind reports the real problem


def url(server: Server) -> str:
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve_until_stopped(server: Server, ready: Callable[[], None] = lambda: None) -> None:
    """Serve until Ctrl-C, SIGTERM or SIGHUP (each ends it quietly), then close every socket.
    ``ready`` runs once the signals are handled (print the URL there: a client that reads it and
    sends SIGTERM at once gets the clean stop)."""
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGHUP):
            if not (s == signal.SIGHUP and signal.getsignal(s) == signal.SIG_IGN):  # nohup: it stays ignored
                previous[s] = signal.signal(s, stop)
    try:
        ready()
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for s, h in previous.items():
            signal.signal(s, h)
