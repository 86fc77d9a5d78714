"""`trainkit serve`: a real server subprocess on a free port, queried with a real HTTP client over
real run folders (one from a real `trainkit train`, the rest synthetic); the page in headless
chromium; and the pure parts (memo, index, choice of the active run, metric pages) in-process."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from helpers import default_sigint, read_json, read_until, records, trainkit, wait_for, write_config

from trainkit import status as S
from trainkit.serve.api import Api
from trainkit.serve.cache import Memo
from trainkit.serve.runs import Entry, RunIndex, choose_active, metrics_page
from trainkit.testing import synthetic_run

LIVE, DONE, BAD, PENDING, BIG, LINKED = ("2026-01-01-live", "2026-01-01-done", "2026-01-01-bad", "2026-01-01-pending",
                                         "2026-01-01-big", "2026-01-01-linked")
SECRET = "SECRET-OUTSIDE-ROOT"
STATUS_KEYS = {"running", "current_epoch", "total_epochs", "loss", "name", "state", "progress_percentage", "eta_s",
               "heartbeat_age_s"}


# ------------------------------------------------------------------ helpers

def set_status(run: Path, **fields) -> dict:
    path = run / "training_status.json"
    status = {**read_json(path), **fields}
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(status))
    os.replace(tmp, path)
    return status


def start_server(root: Path | list[Path], log_dir: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """`trainkit serve ROOT [ROOT...] --port 0`; the port comes from its one `serving ... on URL` line."""
    roots = [str(r) for r in (root if isinstance(root, list) else [root])]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    stderr = open(log_dir / f"serve-{time.monotonic_ns()}.err", "wb")  # noqa: SIM115 (the process holds it)
    proc = subprocess.Popen([sys.executable, "-m", "trainkit", "serve", *roots, "--port", "0", *args],
                            preexec_fn=default_sigint,
                            stdout=subprocess.PIPE, stderr=stderr, env=env)
    proc.stderr_path = Path(stderr.name)
    stderr.close()
    line = read_until(proc.stdout, lambda b: b.endswith(b"\n"), timeout=30, what="the serving line")
    assert line.startswith(f"serving {', '.join(roots)} on http://127.0.0.1:".encode()), line
    return proc, int(line.decode().rstrip("/\n").rsplit(":", 1)[1])


def stop_server(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=15)
    finally:
        proc.stdout.close()


def request(port: int, method: str, target: str) -> tuple[int, dict, bytes]:
    """The request target goes out verbatim (http.client neither normalizes nor re-encodes it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, target)
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def get(port: int, target: str):
    status, headers, body = request(port, "GET", target)
    assert status == 200, (target, status, body)
    assert headers["content-type"] == "application/json" and headers["cache-control"] == "no-store"
    return orjson.loads(body)


def without_age(runs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "heartbeat_age_s"} for r in runs]


# ------------------------------------------------------------------ a root of synthetic runs, one server

@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("serve")
    root = tmp / "experiments"
    live = synthetic_run(root, LIVE, total=10, scores=[1.0, 0.8, 0.6], pid=os.getpid(), heartbeat_interval_s=600)
    set_status(live.root, current_epoch=2, loss=1.2345, eta_s=42.0, heartbeat_at=time.time())
    done = synthetic_run(root, DONE, total=5, scores=[1.0, 0.9, 0.8, 0.7, 0.6], state="finished")
    done.reports.mkdir()
    (done.reports / "default.json").write_bytes(orjson.dumps(
        {"version": 1, "name": "default", "metric": "nrmse", "nrmse": 0.05, "gates_passed": True, "completed": True,
         "planned": 50, "done": 50, "ok": 50, "error": 0, "written_at": 1.0}))
    bad = synthetic_run(root, BAD, total=4, scores=[1.0], state="running")
    bad.status.write_text("[1, 2]")
    (root / PENDING).mkdir()
    (root / PENDING / "config.yaml").write_text("task: burgers\nepochs: 7\n")
    big = synthetic_run(root, BIG, total=2, scores=[1.0, 0.5], state="finished")
    with open(big.metrics, "ab") as f:  # ~3 MB, for a client that leaves mid-response
        f.write(b"".join(orjson.dumps({"kind": "step", "epoch": 1, "step": i, "loss": 0.5, "pad": "x" * 200}) + b"\n"
                         for i in range(12_000)))
    # outside ROOT: a run that traversal would reach, a symlink to it, a run whose metrics link out
    outside = synthetic_run(tmp, "outside-run", total=3, scores=[1.0], state="finished")
    set_status(outside.root, host=SECRET)
    outside.metrics.write_text(orjson.dumps({"kind": "step", "secret": SECRET}).decode() + "\n")
    (root / "escape").symlink_to(outside.root, target_is_directory=True)
    linked = synthetic_run(root, LINKED, total=3, scores=[1.0], state="finished")
    linked.metrics.unlink()
    linked.metrics.symlink_to(outside.metrics)
    return root


@pytest.fixture(scope="module")
def server(root):
    proc, port = start_server(root, root.parent)
    yield port
    assert stop_server(proc) == 0
    assert b"Traceback" not in proc.stderr_path.read_bytes()


def test_the_seed_training_status_has_the_four_keys(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server}/training/status", timeout=15) as res:
        assert res.status == 200 and res.headers["Content-Type"] == "application/json"
        body = orjson.loads(res.read())
    for key in ("running", "current_epoch", "total_epochs", "loss"):
        assert key in body
    assert body["running"] is True and body["current_epoch"] == 2 and body["total_epochs"] == 10
    assert body["loss"] == 1.2345


def test_training_status_equals_the_files(server, root):
    got = get(server, "/training/status")  # the only active run is the most recently active
    assert set(got) == STATUS_KEYS
    status = read_json(root / LIVE / "training_status.json")
    progress = read_json(root / LIVE / "progress.json")
    assert got["name"] == LIVE and got["state"] == "running"
    for key in ("current_epoch", "loss", "eta_s"):
        assert got[key] == status[key], key
    for key in ("total_epochs", "progress_percentage"):
        assert got[key] == progress[key], key
    assert 0 <= got["heartbeat_age_s"] < 600
    done = get(server, f"/training/status?run={DONE}")
    assert done["running"] is False and done["state"] == "finished" and done["progress_percentage"] == 100
    assert done["current_epoch"] == read_json(root / DONE / "training_status.json")["current_epoch"]


def test_runs_is_what_status_json_prints(server, root):
    cli = subprocess.run([sys.executable, "-m", "trainkit", "status", str(root), "--json"], capture_output=True,
                         check=True, timeout=60)
    expected, got = orjson.loads(cli.stdout), get(server, "/runs")
    for r in expected:  # the server shows paths relative to ROOT, never absolute ones
        r["path"] = os.path.relpath(r["path"], root)
    assert without_age(got) == without_age(expected)
    assert [r["name"] for r in got] == sorted([LIVE, DONE, BAD, PENDING, BIG, LINKED])  # no symlinked run
    for a, b in zip(got, expected, strict=True):
        assert (a["heartbeat_age_s"] is None) == (b["heartbeat_age_s"] is None)


def test_one_run_detail_equals_the_files(server, root):
    got = get(server, f"/runs/{DONE}")
    assert got["training_status"] == read_json(root / DONE / "training_status.json")
    assert got["progress"] == read_json(root / DONE / "progress.json")
    assert got["latest_epoch"] == read_json(root / DONE / "epochs" / "epoch_0004" / "validation_scores.json")
    assert got["run"]["name"] == DONE and got["run"]["state"] == "finished"
    report = got["report_summaries"]["default"]
    assert report["value"] == 0.05 and report["metric"] == "nrmse" and report["gates_passed"] is True


def test_a_malformed_run_gives_warnings_not_a_500(server):
    bad = next(r for r in get(server, "/runs") if r["name"] == BAD)
    assert any("expected a JSON object" in w for w in bad["warnings"])
    assert get(server, f"/runs/{BAD}")["training_status"] is None
    line = get(server, f"/training/status?run={BAD}")
    assert line["current_epoch"] is None and line["loss"] is None and line["running"] is False
    pending = get(server, f"/training/status?run={PENDING}")
    assert pending["state"] == "pending" and pending["total_epochs"] == 7


def test_metrics_are_read_by_offset(server, root):
    path = root / LIVE / "metrics.jsonl"
    first = get(server, f"/runs/{LIVE}/metrics?after=0")
    assert first["records"] == records(root / LIVE, "epoch") and first["next"] == path.stat().st_size
    assert get(server, f"/runs/{LIVE}/metrics?after={first['next']}")["records"] == []
    torn = b'{"kind":"step","ep'
    with open(path, "ab") as f:  # one new line and a torn one
        f.write(b'{"kind":"step","epoch":3,"step":30,"loss":0.5}\n' + torn)
    page = get(server, f"/runs/{LIVE}/metrics?after={first['next']}")
    assert [r["step"] for r in page["records"]] == [30] and page["next"] == path.stat().st_size - len(torn)
    with open(path, "ab") as f:
        f.write(b'och":3,"step":31,"loss":0.4}\n')
    assert [r["step"] for r in get(server, f"/runs/{LIVE}/metrics?after={page['next']}")["records"]] == [31]
    reset = get(server, f"/runs/{LIVE}/metrics?after={10**12}")  # beyond the end: the file was trimmed
    assert reset["reset"] is True and len(reset["records"]) == len(first["records"]) + 2
    for bad in ("-1", "abc", "1.5", "", "%EF%BC%91", "0&after=1"):
        status, headers, body = request(server, "GET", f"/runs/{LIVE}/metrics?after={bad}")
        assert status == 400 and headers["content-type"] == "application/json", bad
        assert "after" in orjson.loads(body)["error"]


@pytest.mark.parametrize("target", [
    "/runs/..", "/runs/../escape", "/runs/..%2fescape", "/runs/%2e%2e", "/runs/%2E%2E/outside-run",
    "/runs/%2e%2e%2foutside-run", "/runs/..%2f..%2fexperiments%2f2026-01-01-done", "/runs/%252e%252e%252foutside-run",
    "/runs/%252fetc%252fpasswd", "/runs/%2Fetc%2Fpasswd", "/runs//etc/passwd", "/runs/%2f", "/runs/escape",
    "/runs/escape/metrics?after=0", "/runs/escape%00", "/runs/%00", f"/runs/{DONE}%00", "/runs/.", "/runs/%2e",
    "/training/status?run=escape", "/training/status?run=..%2Foutside-run", "/training/status?run=%2e%2e",
    "/training/status?run=/etc", "/training/status?run=%00", "/runs/nope", "/training/status?run=nope",
    "/runs/..\\escape", "/../outside-run/training_status.json", "/nope",
])
def test_traversal_and_unknown_names_get_404(server, target):
    status, headers, body = request(server, "GET", target)
    assert status == 404, (target, body)
    assert headers["content-type"] == "application/json" and "error" in orjson.loads(body)
    assert SECRET.encode() not in body


def test_a_symlinked_file_inside_a_run_is_not_read(server):
    page = get(server, f"/runs/{LINKED}/metrics?after=0")
    assert page["records"] == [] and SECRET not in orjson.dumps(page).decode()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO"])
def test_other_methods_get_405(server, method):
    for target in ("/", "/runs", f"/runs/{DONE}"):
        status, headers, body = request(server, method, target)
        assert status == 405 and headers["allow"] == "GET, HEAD" and headers["cache-control"] == "no-store"
        assert "read-only" in orjson.loads(body)["error"]


def test_headers_page_and_head(server):
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-store" and b'name="viewport"' in body
    assert b"<script src" not in body and b"<link" not in body  # self-contained: no CDN
    for target in ("/", "/runs", "/training/status", f"/runs/{DONE}"):
        got, head, body = request(server, "HEAD", target)
        assert got == 200 and body == b"" and int(head["content-length"]) > 0 and head["cache-control"] == "no-store"


def test_a_client_leaving_mid_response_does_not_disturb_the_server(server):
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", server), timeout=15)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET /runs/{BIG}/metrics?after=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        s.close()
    page = get(server, f"/runs/{BIG}/metrics?after=0")
    assert len(page["records"]) == 12_002 and page["more"] is False
    assert get(server, "/training/status")["name"] == LIVE


# ------------------------------------------------------------------ lifecycle of the process

def test_sigterm_and_ctrl_c_stop_it_with_exit_0(tmp_path):
    (tmp_path / "experiments").mkdir()
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc, port = start_server(tmp_path / "experiments", tmp_path)
        assert get(port, "/training/status") == {k: False if k == "running" else None for k in STATUS_KEYS}
        assert get(port, "/runs") == []
        assert stop_server(proc, sig) == 0
        assert b"Traceback" not in proc.stderr_path.read_bytes()


def test_bad_input_exits_2_and_another_host_warns(tmp_path):
    res = trainkit("serve", tmp_path / "missing", cwd=tmp_path, env=dict(os.environ))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no such folder" in res.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        res = trainkit("serve", tmp_path, "--port", busy.getsockname()[1], cwd=tmp_path, env=dict(os.environ))
    assert res.returncode == 2 and "cannot listen on" in res.stderr and res.stderr.count("\n") == 1
    proc = subprocess.Popen([sys.executable, "-m", "trainkit", "serve", str(tmp_path), "--host", "0.0.0.0",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        read_until(proc.stdout, lambda b: b.endswith(b"\n"), timeout=30, what="the serving line")
        assert b"anyone who can reach this address can read the runs" in read_until(
            proc.stderr, lambda b: b.endswith(b"\n"), timeout=30, what="the warning")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        proc.stdout.close()
        proc.stderr.close()


def test_serve_imports_no_torch():
    code = "import sys, trainkit.serve, trainkit.commands.serve; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ------------------------------------------------------------------ the pure parts, in-process

def test_memo_computes_once_per_burst_and_serves_the_old_value_while_recomputing():
    now = [0.0]
    memo, calls, gate = Memo(1.0, clock=lambda: now[0]), [], threading.Event()

    def compute():
        calls.append(1)
        gate.wait(5)
        return len(calls)

    threads = [threading.Thread(target=lambda: results.append(memo.get("k", compute))) for _ in range(20)]
    results: list[int] = []
    for t in threads:
        t.start()
    wait_for(lambda: calls, timeout=5, what="the first computation")
    gate.set()
    for t in threads:
        t.join(5)
    assert results == [1] * 20 and len(calls) == 1
    now[0] = 2.0  # expired: one thread recomputes, the others get the old value meanwhile
    gate.clear()
    slow = threading.Thread(target=lambda: results.append(memo.get("k", compute)))
    slow.start()
    wait_for(lambda: len(calls) == 2, timeout=5, what="the recomputation")
    assert memo.get("k", compute) == 1
    gate.set()
    slow.join(5)
    assert results[-1] == 2 and memo.get("k", compute) == 2 and len(calls) == 2


CRASHED_NEAR_END = "2026-01-05-crashed"


@pytest.fixture
def numbers_root(tmp_path) -> Path:
    """A run that crashed at 199 of 200 epochs (its status still holds an ETA and a tiny loss) and a
    running run whose loss is a half at the 4th digit (binary 0.12345 is a hair below it)."""
    root = tmp_path / "experiments"
    crashed = synthetic_run(root, CRASHED_NEAR_END, total=200, scores=[1.0] * 199, state="running",
                            heartbeat_age_s=100_000)  # a stale heartbeat: crashed
    set_status(crashed.root, loss=3.344e-05, eta_s=12.0)
    live = synthetic_run(root, "2026-01-05-live", total=7, scores=[1.0, 0.9, 0.8], pid=os.getpid(),
                         heartbeat_interval_s=600)
    set_status(live.root, loss=0.12345, eta_s=60.5, heartbeat_at=time.time())
    return root


def test_numbers_are_sent_as_the_one_formatter_prints_them(numbers_root):
    from trainkit.formatting import fmt_progress, fmt_sig

    api = Api(numbers_root)
    line = orjson.loads(api.handle("GET", f"/training/status?run={CRASHED_NEAR_END}&text=1").body)
    assert line["state"] == "crashed" and line["running"] is False
    assert line["eta_s"] is None and line["text"]["eta"] == "--:--"  # not live: no ETA
    assert line["text"]["progress"] == "99.5 %" and line["text"]["loss"] == "3.344e-05"
    plain = orjson.loads(api.handle("GET", f"/training/status?run={CRASHED_NEAR_END}").body)
    assert set(plain) == STATUS_KEYS  # without text=1: the documented keys only
    assert without_age([plain]) == without_age([{k: v for k, v in line.items() if k != "text"}])
    live = orjson.loads(api.handle("GET", "/training/status?text=1").body)
    assert live["state"] == "running" and live["eta_s"] == 60.5
    assert live["text"] == {"progress": "42.9 %", "loss": "0.1235", "best": "-", "eta": "01:01",  # halves up
                            "heartbeat_age": live["text"]["heartbeat_age"]}
    runs, with_text = (orjson.loads(api.handle("GET", t).body) for t in ("/runs", "/runs?text=1"))
    assert without_age([{k: v for k, v in r.items() if k != "text"} for r in with_text]) == without_age(runs)
    for r in with_text:
        assert r["text"]["progress"] == fmt_progress(r["completed_epochs"], r["total_epochs"], r["early_stopped"])
        assert r["text"]["loss"] == fmt_sig(r["last_loss"])
    assert [r["text"]["progress"] for r in with_text] == ["99.5 %", "42.9 %"]  # 199/200 never reads 100 %


def entry(name: str, state: str, activity: float, started: float | None = None) -> Entry:
    rs = S.RunStatus(name, name, state, "", 0, 10, 0.0, False, None, False)
    return Entry(rs, (), 0.0, activity, started)


def test_the_most_recently_active_run():
    assert choose_active([]) is None
    finished_last = entry("a", "finished", 100.0)
    assert choose_active([finished_last, entry("b", "crashed", 50.0)]).status.name == "a"
    # an active run wins over a run that finished a moment ago; of two active runs, the newest start
    runs = [finished_last, entry("b", "running", 99.0, started=10.0), entry("c", "paused", 98.0, started=20.0)]
    assert choose_active(runs).status.name == "c"


def test_the_index_reuses_unchanged_runs_and_equals_scan(tmp_path):
    for i, state in enumerate(["finished", "stopped", "failed", "running", None]):
        synthetic_run(tmp_path, f"r{i}", total=5, scores=[1.0] * (5 if state == "finished" else 2), state=state,
                      pid=os.getpid() if state == "running" else None)
    index = RunIndex(str(tmp_path))
    index.refresh()
    assert index.computed == 5
    snap = index.refresh()
    assert (index.reused, index.computed) == (4, 6)  # only the running one again
    assert without_age(orjson.loads(snap.body)) == without_age(orjson.loads(orjson.dumps(S.scan(tmp_path))))
    set_status(tmp_path / "r1", state="failed", error="boom")
    snap = index.refresh()
    assert index.computed == 8 and next(r for r in snap.runs if r.name == "r1").reason == "boom"
    assert snap.active == "r3"


def test_metric_pages_are_capped_and_chain(tmp_path):
    run = synthetic_run(tmp_path, "r", total=3, scores=[1.0])
    with open(run.metrics, "ab") as f:
        f.write(b"".join(orjson.dumps({"kind": "step", "step": i}) + b"\n" for i in range(200)))
    lines = [orjson.loads(x) for x in run.metrics.read_bytes().splitlines()]
    got, after, pages = [], 0, 0
    while True:
        page = metrics_page(str(run.root), after, max_bytes=1000)
        got += page["records"]
        after, pages = page["next"], pages + 1
        if not page["more"]:
            break
    assert got == lines and pages > 3 and after == run.metrics.stat().st_size
    api = Api(tmp_path, max_bytes=1000)
    assert orjson.loads(api.handle("GET", "/runs/r/metrics?after=0").body)["more"] is True
    assert api.handle("GET", "/runs/r/metrics?after=0&after=5").status == 400


def test_an_unexpected_exception_is_a_500_with_one_line(tmp_path, monkeypatch):
    logged: list[str] = []
    api = Api(tmp_path, log=logged.append)
    monkeypatch.setattr(api.index, "refresh", lambda: 1 / 0)
    res = api.handle("GET", "/runs")
    assert res.status == 500
    assert orjson.loads(res.body) == {"error": "internal error: ZeroDivisionError (the server's log has the details)"}
    assert len(logged) == 1 and "\n" not in logged[0] and "division by zero" in logged[0]
    assert api.handle("GET", "/").status == 200  # and it goes on


# ------------------------------------------------------------------ a real training run

@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir) -> Path:
    tmp = tmp_path_factory.mktemp("trained")
    env = {**os.environ, "TRAINKIT_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1"}
    run_dir = tmp / "experiments" / "2026-01-03-tiny"
    res = trainkit("train", write_config(tmp / "tiny.yaml"), "--run-dir", run_dir, cwd=tmp, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return run_dir


@pytest.mark.slow
def test_a_real_run_served_equals_its_files(trained, tmp_path):
    root, name = trained.parent, trained.name
    proc, port = start_server(root, tmp_path)
    try:
        cli = subprocess.run([sys.executable, "-m", "trainkit", "status", str(root), "--json"], capture_output=True,
                             check=True, timeout=60)
        expected = [{**r, "path": os.path.relpath(r["path"], root)} for r in orjson.loads(cli.stdout)]
        assert without_age(get(port, "/runs")) == without_age(expected)  # paths relative to ROOT
        status = read_json(trained / "training_status.json")
        line = get(port, "/training/status")
        assert line["name"] == name and line["state"] == "finished" and line["running"] is False
        assert (line["current_epoch"], line["total_epochs"], line["loss"], line["progress_percentage"]) == (
            status["current_epoch"], 3, status["loss"], 100.0)
        detail = get(port, f"/runs/{name}")
        assert detail["training_status"] == status and detail["progress"] == read_json(trained / "progress.json")
        last = records(trained, "epoch")[-1]
        assert detail["latest_epoch"]["epoch"] == last["epoch"] == 2
        assert detail["latest_epoch"]["val_loss"] == last["val_loss"]
        page = get(port, f"/runs/{name}/metrics?after=0")
        assert page["records"] == [orjson.loads(x) for x in (trained / "metrics.jsonl").read_bytes().splitlines()]
        assert page["next"] == (trained / "metrics.jsonl").stat().st_size and page["more"] is False
    finally:
        assert stop_server(proc) == 0


# ------------------------------------------------------------------ the page in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dump_dom(port: int, profile: Path) -> str:
    """The DOM after 5 s of the page's virtual time (three polls), printed by headless chromium."""
    res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.slow  # a browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium: apt-get install -y chromium")
def test_the_page_in_headless_chromium(tmp_path):
    root = tmp_path / "experiments"
    run = synthetic_run(root, "2026-01-04-training", total=10, scores=[1.0, 0.9], pid=os.getpid(),
                        heartbeat_interval_s=600)
    synthetic_run(root, "2026-01-04-older", total=4, scores=[1.0] * 4, state="finished")
    crashed = synthetic_run(root, CRASHED_NEAR_END, total=200, scores=[1.0] * 199, heartbeat_age_s=100_000)
    set_status(crashed.root, loss=3.344e-05)
    set_status(run.root, current_epoch=2, loss=4.94, heartbeat_at=time.time())
    proc, port = start_server(root, tmp_path)
    try:
        dom = dump_dom(port, tmp_path / "profile")
        assert "Epoch 3/10 – loss 4.94" in dom  # current_epoch 2 is the third epoch
        assert 'data-running="true"' in dom and "2026-01-04-older" in dom and 'style="width: 20%;"' in dom
        # numbers as the server's formatter wrote them: 199/200 is 99.5 %, a tiny loss keeps its digits
        row = dom.split(CRASHED_NEAR_END, 1)[1].split("</tr>", 1)[0]
        assert "99.5 %" in row and "3.344e-05" in row and "100 %" not in row and "0.0000" not in row
        assert int(dom.split('data-polls="', 1)[1].split('"', 1)[0]) >= 2  # it polls
        set_status(run.root, current_epoch=3, loss=3.21, heartbeat_at=time.time())
        wait_for(lambda: get(port, "/training/status?text=1")["current_epoch"] == 3, timeout=10, what="the new status")
        dom = dump_dom(port, tmp_path / "profile")
        assert "Epoch 4/10 – loss 3.21" in dom and "Epoch 3/10" not in dom
    finally:
        assert stop_server(proc) == 0
