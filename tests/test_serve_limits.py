"""`trainkit serve` under hostile or careless clients: 2,000 idle sockets, silent, idle and slow clients,
a GET with a body, a foreign Host header (DNS rebinding), absolute paths, and a live run without a
config. A real server subprocess (its descriptor limit held at 1,024, as on many machines), real
sockets."""

from __future__ import annotations

import http.client
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from helpers import read_until, wait_for

from trainkit.runfolder.files import write_json
from trainkit.testing import synthetic_run

IDLE = 2000
LIVE = "2026-01-01-live"


def fd_limit_1024() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def start(root: Path, *args: str, limit_fds: bool = False) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "trainkit", "serve", str(root), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=fd_limit_1024 if limit_fds else None)
    line = read_until(proc.stdout, lambda b: b.endswith(b"\n"), timeout=30, what="the serving line")
    return proc, int(line.decode().rstrip("/\n").rsplit(":", 1)[1])


def stop(proc: subprocess.Popen) -> bytes:
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert b"Traceback" not in err, err.decode()
    return err


def get(port: int, target: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target, headers={"Host": host} if host else {})
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


def closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1 << 16) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve-limits") / "experiments"
    live = synthetic_run(root, LIVE, total=10, scores=[1.0, 0.8], pid=os.getpid(), heartbeat_interval_s=600)
    status = orjson.loads(live.status.read_bytes())
    write_json(live.status, {**status, "heartbeat_at": time.time(),
                             "error": f"could not write {live.root}/metrics.jsonl (a test)"})
    bare = root / "2026-01-01-noconfig"  # a live run of another trainer: a status file and nothing else
    bare.mkdir()
    write_json(bare / "training_status.json", {"version": 1, "state": "running", "pid": os.getpid(),
                                               "host": socket.gethostname(), "heartbeat_at": time.time(),
                                               "heartbeat_interval_s": 600, "current_epoch": 3, "total_epochs": 15})
    return root


@pytest.fixture(scope="module")
def server(root):
    proc, port = start(root, "--timeout", "1")
    yield port
    stop(proc)


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE + 200:
        pytest.skip(f"this process may hold only {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, IDLE + 200), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_status_answers_in_under_a_second_while_2000_idle_sockets_are_held(root, many_fds):
    """2,000 connections that never send anything, against a server that may open only 1,024
    descriptors: /training/status is still answered, each time in under a second."""
    proc, port = start(root, limit_fds=True)
    idle = []
    try:
        for _ in range(IDLE):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        for _ in range(5):
            t0 = time.monotonic()
            status, body = get(port, "/training/status")
            assert status == 200 and orjson.loads(body)["name"] in (LIVE, "2026-01-01-noconfig")
            assert time.monotonic() - t0 < 1.0
    finally:
        for s in idle:
            s.close()
    stop(proc)


def test_silent_idle_and_slow_clients_are_closed(server):
    silent = socket.create_connection(("127.0.0.1", server), timeout=10)
    slow = socket.create_connection(("127.0.0.1", server), timeout=10)
    slow.sendall(b"GET /runs HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the head never ends
    kept = socket.create_connection(("127.0.0.1", server), timeout=10)
    kept.sendall(b"GET /training/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert kept.recv(100).startswith(b"HTTP/1.1 200")  # then idle on its keep-alive connection
    for s in (silent, slow, kept):
        s.setblocking(False)
    try:
        wait_for(lambda: all(closed_by_server(s) for s in (silent, slow, kept)), timeout=10,
                 what="the server to close silent, slow and idle connections")
    finally:
        for s in (silent, slow, kept):
            s.close()


def test_a_get_with_a_body_is_read_and_discarded(server):
    smuggled = b"GET /runs/..%2f..%2fetc HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
        s.sendall(b"GET /training/status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
                  + smuggled + b"GET /runs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while chunk := s.recv(1 << 16):  # until the server closes the idle connection (--timeout 1)
            data += chunk
    answers = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length")))
        answers.append((int(head.split(b" ")[1]), rest[:length]))
        data = rest[length:]
    assert [a for a, _ in answers] == [200, 200]  # two answers: the body was not parsed as a request
    assert "running" in orjson.loads(answers[0][1]) and isinstance(orjson.loads(answers[1][1]), list)


def test_too_large_heads_and_bodies_are_refused(server):
    for head, want in ((b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
                       (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n\r\n", b"413")):
        with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
            s.sendall(head)
            assert s.recv(100).split(b" ")[1] == want


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1", True), ("localhost", True), ("LOCALHOST.", True), ("[::1]", True), ("10.1.2.3", True),
    ("evil.example", False), ("127.0.0.1.evil.example", False), ("localhost.evil.example", False),
])
def test_the_host_header_must_name_this_server(server, host, ok):
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends Host:
    evil.example; it gets 403, not the runs."""
    status, body = get(server, "/runs", host=f"{host}:{server}")
    assert (status == 200) is ok and (status == 403) is (not ok), (host, status, body)
    if not ok:
        assert b"--allow-host" in body and LIVE.encode() not in body


def test_allow_host_names_another_host(root):
    proc, port = start(root, "--allow-host", "gpu-box.lan")
    try:
        assert get(port, "/runs", host=f"gpu-box.lan:{port}")[0] == 200
        assert get(port, "/runs", host=f"other.lan:{port}")[0] == 403
    finally:
        stop(proc)


def test_no_response_shows_an_absolute_path(server, root):
    home = os.path.expanduser("~")
    for target in ("/runs", f"/runs/{LIVE}", f"/runs/{LIVE}/metrics?after=0", "/training/status",
                   f"/training/status?run={LIVE}", "/runs?text=1", "/nope", "/runs/nope"):
        status, body = get(server, target)
        for secret in (str(root.parent), str(root.resolve().parent), home):
            assert secret.encode() not in body, (target, secret, body[:300])
    runs = orjson.loads(get(server, "/runs")[1])
    assert {r["name"]: r["path"] for r in runs}[LIVE] == LIVE  # relative to ROOT
    detail = orjson.loads(get(server, f"/runs/{LIVE}")[1])
    assert detail["training_status"]["error"] == f"could not write {LIVE}/metrics.jsonl (a test)"


def test_a_live_run_without_a_config_shows_the_total_its_status_gives(server):
    status, body = get(server, "/training/status?run=2026-01-01-noconfig")
    line = orjson.loads(body)
    assert status == 200 and line["state"] == "running" and line["total_epochs"] == 15, line
