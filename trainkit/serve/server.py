"""The HTTP side: the standard library's ``ThreadingHTTPServer`` (one thread per connection,
HTTP/1.1 keep-alive) around :class:`~trainkit.serve.api.Api`.

Every response carries a JSON content type (the page: HTML), ``Cache-Control: no-store`` and a
``Content-Length``. Errors found by ``http.server`` itself (a malformed request line) are JSON too.
A client that goes away mid-response is dropped quietly. :func:`serve_until_stopped` runs until
Ctrl-C or SIGTERM and then closes the socket.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from trainkit.errors import first_line
from trainkit.serve.api import ALLOWED, JSON, Api, Response

DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a polling page or client reuses its connection
    server_version = "trainkit-serve"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection gives its thread back after this
    disable_nagle_algorithm = True  # else a small body waits for the delayed ACK of the headers (~40 ms)
    server: Server

    def handle(self) -> None:
        try:
            super().handle()
        except DISCONNECTS:  # the client left mid-request or mid-response: nothing to tell anyone
            self.close_connection = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # any method but GET and HEAD (POST, PUT, DELETE, FOO...): 405
            return self._respond
        raise AttributeError(name)

    def do_GET(self) -> None:
        self._respond()

    def do_HEAD(self) -> None:
        self._respond()

    def _respond(self) -> None:
        self.send(self.server.api.handle(self.command, self.path))

    def send(self, r: Response) -> None:
        self.send_response(r.status)
        self.send_header("Content-Type", r.content_type)
        self.send_header("Content-Length", str(len(r.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in r.headers:
            self.send_header(k, v)
        if r.status >= 400 and self.command not in ("GET", "HEAD"):
            self.close_connection = True  # we did not read the request body
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


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a stop does not wait for idle keep-alive connections
    request_queue_size = 128  # the default (5) drops bursts of new connections

    def __init__(self, address: tuple[str, int], api: Api, *, access_log: bool = False) -> None:
        self.address_family = family(address[0])
        self.api = api
        self.access_log = access_log
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        e = sys.exc_info()[1]
        if isinstance(e, DISCONNECTS):
            return
        sys.stderr.write(f"trainkit serve: connection from {client_address[0]} failed: {first_line(e)}\n")


def family(host: str) -> socket.AddressFamily:
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror:
        return socket.AF_INET  # the bind reports the real problem


def url(server: Server) -> str:
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve_until_stopped(server: Server, ready: Callable[[], None] = lambda: None) -> None:
    """Serve until Ctrl-C or SIGTERM (both end it quietly), then close the listening socket.
    ``ready`` runs once the signals are handled (print the URL there: a client that reads it and
    sends SIGTERM at once gets the clean stop)."""
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop) if threading.current_thread() is threading.main_thread() else None
    try:
        ready()
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
