"""How `trainkit serve` holds up under concurrent clients: /training/status and /runs over 1,000 runs.

Lays out N synthetic run folders (20 epoch folders each; a tenth running under this process's pid,
the rest finished, stopped, failed or early-stopped, as benchmarks/status_scan.py), starts
`trainkit serve ROOT --port 0` as a subprocess, and while a writer thread rewrites the running runs'
training_status.json every second (their heartbeats, atomically), runs C client threads (one
http.client keep-alive connection each, or a new connection per request with --new-connections)
for S seconds against /training/status, then against /runs. It prints requests/s and p50/p95/max
latency of each, and `trainkit status ROOT --json` end to end on the same tree (best of 3) for
scale. Client and server share this machine's cores. Goals: p95 < 100 ms for /training/status,
< 500 ms for /runs.

Idle sockets: then --idle N connections (default 2,000) are opened and held without ever sending a
request (one that the server closes, for an idle timeout or to make room, is opened again at once),
against a server whose descriptor limit is 1,024 (--server-fds; as on many machines), and
/training/status is loaded again. Paired rounds (--rounds, alternating which goes first) of the
same load without and with the idle sockets give the p95 of each (best of the rounds), the median of
the per-round ratios idle/without, and the goal: p95 < 1 s while the idle sockets are held.

    python benchmarks/serve_load.py [--runs 1000] [--clients 20] [--seconds 10] [--new-connections]
                                    [--idle 2000] [--rounds 3] [--server-fds 1024]
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

from trainkit.runfolder.files import write_json
from trainkit.testing import synthetic_run

STATES = ["finished", "stopped", "failed", "early_stopped", "finished", "stopped", "finished", "failed", "finished",
          "running"]
ES = {"metric": "val_loss", "mode": "min", "patience": 3, "min_delta": 0.0}
GOALS = {"/training/status": 0.100, "/runs": 0.500}
IDLE_GOAL = 1.0  # /training/status p95 while the idle sockets are held


def build(root: Path, n: int, epochs: int) -> list[Path]:
    running = []
    for i in range(n):
        state, name = STATES[i % len(STATES)], f"run-{i:05d}"
        if state == "early_stopped":
            scores = [1.0 - 0.05 * k for k in range(epochs - 3)] + [0.9] * 3
            synthetic_run(root, name, total=epochs * 5, scores=scores, early_stopping=ES, state=state)
        else:
            paths = synthetic_run(root, name, total=epochs if state == "finished" else epochs * 2,
                                  scores=[1.0 / (k + 1) for k in range(epochs)], state=state, pid=os.getpid())
            if state == "running":
                running.append(paths.status)
    return running


def heartbeats(paths: list[Path], stop: threading.Event) -> None:
    """What the running trainers do: rewrite their status (atomically) with a fresh heartbeat."""
    while not stop.wait(1.0):
        for p in paths:
            status = orjson.loads(p.read_bytes())
            status["heartbeat_at"] = time.time()
            status["step"] += 1
            write_json(p, status, durable=False)


def start_server(root: Path, fds: int | None = None) -> tuple[subprocess.Popen, int]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fds, fds))

    proc = subprocess.Popen([sys.executable, "-m", "trainkit", "serve", str(root), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=limit if fds else None)
    line = proc.stdout.readline().decode()
    if not line.startswith("serving "):
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, int(line.rstrip("/\n").rsplit(":", 1)[1])


def load(port: int, target: str, clients: int, seconds: float, new_connections: bool) -> tuple[list[float], int]:
    """C threads requesting ``target`` for ``seconds``: every latency, and the number of failures."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        while time.perf_counter() < deadline[0]:
            t0 = time.perf_counter()
            try:
                conn.request("GET", target)
                res = conn.getresponse()
                body = res.read()
                ok = res.status == 200 and body
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
            latencies[i].append(time.perf_counter() - t0)
            failures[i] += not ok
            if new_connections:
                conn.close()
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + seconds
    start.wait()
    for t in threads:
        t.join()
    return sorted(x for per in latencies for x in per), sum(failures)


class IdleSockets(threading.Thread):
    """Holds ``n`` connections that never send a request; one the server closes is opened again."""

    def __init__(self, port: int, n: int) -> None:
        super().__init__(daemon=True)
        self.port, self.n = port, n
        self.reopened = 0
        self.ready = threading.Event()
        self._stop_event = threading.Event()
        self._sel = selectors.DefaultSelector()

    def _open(self) -> None:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.setblocking(False)
        self._sel.register(s, selectors.EVENT_READ)

    def run(self) -> None:
        for _ in range(self.n):
            self._open()
        self.ready.set()
        while not self._stop_event.is_set():
            for key, _ in self._sel.select(0.2):
                self._sel.unregister(key.fileobj)
                key.fileobj.close()
                self.reopened += 1
                self._open()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        for key in list(self._sel.get_map().values()):
            key.fileobj.close()
        self._sel.close()


def idle_rounds(port: int, args) -> tuple[list[float], list[float], list[float], int]:
    """Paired rounds of the /training/status load without and with the idle sockets, alternating
    which goes first: the p95 of each round without, with, and the ratios; and the reopened count."""
    without, with_idle, ratios, reopened = [], [], [], 0
    for r in range(args.rounds):
        p95 = {}
        for held in ((False, True) if r % 2 == 0 else (True, False)):
            holder = IdleSockets(port, args.idle) if held else None
            if holder is not None:
                holder.start()
                holder.ready.wait()
            try:
                lat, failures = load(port, "/training/status", args.clients, args.seconds, args.new_connections)
            finally:
                if holder is not None:
                    holder.stop()
                    reopened += holder.reopened
            p95[held] = pct(lat, 0.95) if not failures else float("inf")
        without.append(p95[False])
        with_idle.append(p95[True])
        ratios.append(p95[True] / p95[False])
    return without, with_idle, ratios, reopened


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--new-connections", action="store_true", help="a new TCP connection per request")
    p.add_argument("--idle", type=int, default=2000, help="idle connections held for the idle-socket case")
    p.add_argument("--rounds", type=int, default=3, help="paired rounds of the idle-socket case")
    p.add_argument("--server-fds", type=int, default=1024, help="the server's descriptor limit (0: inherit)")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # this process holds the idle sockets
    want = args.idle + args.clients + 200
    if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    with tempfile.TemporaryDirectory(dir=".") as d:
        root = Path(d) / "experiments"
        t0 = time.perf_counter()
        running = build(root, args.runs, args.epochs)
        print(f"built {args.runs:,} run folders x {args.epochs} epoch folders in {time.perf_counter() - t0:.1f} s "
              f"({len(running)} running, their heartbeats rewritten every 1 s during the load)")
        stop = threading.Event()
        writer = threading.Thread(target=heartbeats, args=(running, stop), daemon=True)
        writer.start()
        proc, port = start_server(root, args.server_fds or None)
        results = {}
        try:
            for target in GOALS:  # warm-up: the first computation of each
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", target)
                size = len(conn.getresponse().read())
                conn.close()
                results[target] = (size, *load(port, target, args.clients, args.seconds, args.new_connections))
            idle = idle_rounds(port, args) if args.idle else None
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            stop.set()
            writer.join()

        cmd = [sys.executable, "-m", "trainkit", "status", str(root), "--json"]
        subprocess.run(cmd, capture_output=True, check=True)  # warm-up
        e2e = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, check=True)
            e2e.append(time.perf_counter() - t0)
        assert len(orjson.loads(out.stdout)) == args.runs

    how = "a new connection per request" if args.new_connections else "keep-alive connections"
    fds = f"descriptor limit {args.server_fds}" if args.server_fds else "descriptor limit inherited"
    print(f"{args.clients} clients ({how}) for {args.seconds:.0f} s each, server: selectors event loop + 8 "
          f"workers, cache 1 s, {fds}")
    for target, (size, lat, failures) in results.items():
        goal = GOALS[target]
        p95 = pct(lat, 0.95)
        print(f"{target:<17} {len(lat) / args.seconds:8,.0f} req/s  p50 {pct(lat, 0.50) * 1000:7.1f} ms  "
              f"p95 {p95 * 1000:7.1f} ms  max {lat[-1] * 1000:7.1f} ms  ({len(lat):,} requests, {failures} failed, "
              f"{size / 1024:,.0f} KiB each); ratio to the {goal * 1000:.0f} ms p95 goal: {p95 / goal:.2f} "
              f"({'met' if p95 < goal and not failures else 'NOT met'})")
    best = min(e2e)
    print(f"`trainkit status --json` end to end on the same {args.runs:,} runs: {best:.3f} s best of 3 "
          f"({', '.join(f'{t:.3f}' for t in e2e)}); /runs p50 is {pct(results['/runs'][1], 0.5) / best:.3f} of it")
    if idle is not None:
        without, with_idle, ratios, reopened = idle
        p95 = min(with_idle)
        print(f"/training/status while {args.idle:,} idle sockets are held ({args.rounds} paired rounds, alternating "
              f"order; {reopened:,} idle sockets closed by the server and opened again): p95 {p95 * 1000:.1f} ms "
              f"best of {args.rounds} (rounds: {', '.join(f'{x * 1000:.1f}' for x in with_idle)} ms); without them "
              f"{min(without) * 1000:.1f} ms; ratio with/without, median of the rounds: "
              f"{statistics.median(ratios):.2f}; ratio to the {IDLE_GOAL * 1000:.0f} ms goal: {p95 / IDLE_GOAL:.3f} "
              f"({'met' if max(with_idle) < IDLE_GOAL else 'NOT met'})")


if __name__ == "__main__":
    main()
