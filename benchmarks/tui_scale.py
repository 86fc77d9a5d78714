"""trainmon at scale, measured the way a user sees it: the real ``trainmon ROOT`` under a
pseudo-terminal of 120x36, with the bytes it writes to that terminal counted.

Trees (written directly: ``trainkit.testing.synthetic_run`` for the small files, then each run's
metrics log written in bulk): 1,000 runs x 5,000 metric lines and 10,000 runs x 100 lines
(``--quick``: 200 x 1,000 and 1,000 x 100). Every run is finished, so an idle screen has nothing
to show.

Printed for each tree:
  - first paint: from just before the process is started to the first complete render of the
    workspace after the model's first full read; best of 3 starts (the disk is synced after the
    tree is built), as ``trainkit status`` below. The app writes ``time.time()`` to the file named
    by ``TRAINMON_PAINTED_FILE`` from ``call_after_refresh`` once the loaded rows are drawn;
  - peak RSS of the trainmon process (psutil, sampled every 20 ms while it runs);
  - ``trainkit status --json ROOT`` on the same tree, best of 3, side by side.
And on the 1,000-run tree:
  - the append-to-screen latency p50/p95 over 200 appends: a step record with a unique loss is
    appended to a run's metrics log and its training_status.json is rewritten (atomically) with
    that loss; the time until the loss's digits appear in the terminal output. The appends cycle
    over the 25 runs whose rows are on screen (a run scrolled out of view has nothing to draw);
  - CPU seconds of the process over 30 idle seconds, and the bytes written to the terminal in them;
  - the bytes written to the terminal per one-run update (median over the appends: everything
    from the append until 150 ms after the value appeared).

The run detail of one long run (``--detail``, and after the trees): a run with a ``metrics.jsonl``
of 100,000 steps (~10 MB) and one of 2 GB (~21 million steps; ``--quick``: 200 MB), generated once
into the temp folder; trainmon is started on a ROOT holding that run, Enter opens its detail, and
printed are the time from Enter to the first chart on screen, to the full history on screen (the
detail writes ``chart TIME`` and ``full TIME`` to the file named by ``TRAINMON_DETAIL_FILE``; a
checkout without that marker, a baseline, is timed to the loss chart's title in its terminal
output: it draws nothing before the whole history is read), and the process's peak RSS; best of
3 opens and the median (alternating ABBA with a baseline; the 2 GB run: one open, this checkout only:
a trainmon that reads the whole file needs minutes and several GB for it).

With ``--baseline DIR`` (another checkout of this repository, e.g. a ``git worktree`` of the
commit before a change) the same trees are measured with that checkout's trainmon too, side by
side: the first paints alternate between the two (ABBA: best and median of 3 each, and their
ratio), then each one's other figures, one after the other.

Last (and alone with ``--inspector``): the inspector's search over 10,000 conversations, time to
the first and to the last hit against listing them (``benchmarks/inspector_search.py``, run here).

With ``--paint`` only the first full paint of 100 runs x 1,000 steps (issue 26's goal: <= 0.8 s on
2 cores; W&B LEET drew the same tree in 1.03 s), which the full run measures first.

    python benchmarks/tui_scale.py [--quick] [--detail] [--paint] [--inspector] [--keep DIR] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import orjson
import psutil

from trainkit.runfolder import METRICS_FILE, STATUS_FILE
from trainkit.runfolder.files import write_json
from trainkit.testing import synthetic_run

BIN = Path(sys.executable).parent
COLS, ROWS = 120, 36
VISIBLE = 25  # rows of the runs table on a 36-line screen (header 3 + column header + footer)


def build(root: Path, runs: int, lines: int) -> float:
    t0 = time.perf_counter()
    now = time.time()
    block = b"".join(orjson.dumps({"kind": "step", "step": i, "epoch": 0, "loss": 1.0 / (1 + i / 50), "lr": 1e-3,
                                   "t": now - (lines - i)}) + b"\n" for i in range(lines))
    block += orjson.dumps({"kind": "epoch", "epoch": 0, "train_loss": 0.5, "val_loss": 0.5, "t": now}) + b"\n"
    for i in range(runs):
        paths = synthetic_run(root, f"run-{i:05d}", total=1, scores=[0.5], state="finished")
        with open(paths.metrics, "wb") as f:
            f.write(block)
    return time.perf_counter() - t0


class Pty:
    """``trainmon ROOT`` on a pseudo-terminal; a thread reads everything it writes."""

    def __init__(self, root: Path, marker: Path, checkout: str | None = None, *,
                 detail_marker: Path | None = None) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(ROWS),
                   TRAINMON_PAINTED_FILE=str(marker))
        if detail_marker is not None:
            env["TRAINMON_DETAIL_FILE"] = str(detail_marker)
        env.pop("TEXTUAL", None)
        if checkout is not None:  # that checkout's tui and trainkit come first on the path
            env["PYTHONPATH"] = os.pathsep.join(p for p in (checkout, env.get("PYTHONPATH", "")) if p)
        self.master = master
        self.chunks: list[tuple[float, bytes]] = []
        self.lock = threading.Lock()
        self.started = time.time()
        self.proc = subprocess.Popen([str(BIN / "trainmon"), str(root)], stdin=slave, stdout=slave, stderr=slave,
                                     env=env, start_new_session=True, close_fds=True)
        os.close(slave)
        self.ps = psutil.Process(self.proc.pid)
        self.peak_rss = 0
        self.alive = True
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._sample, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.chunks.append((time.monotonic(), data))

    def _sample(self) -> None:
        while self.alive:
            try:
                self.peak_rss = max(self.peak_rss, self.ps.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def mark(self) -> int:
        with self.lock:
            return len(self.chunks)

    def since(self, index: int) -> bytes:
        with self.lock:
            return b"".join(c for _, c in self.chunks[index:])

    def bytes_between(self, t0: float, t1: float) -> int:
        with self.lock:
            return sum(len(c) for t, c in self.chunks if t0 <= t < t1)

    def idle(self, seconds: float) -> tuple[float, float, float]:
        """Wait ``seconds`` touching nothing: (CPU seconds of the process in them, start, end)."""
        cpu0 = sum(self.ps.cpu_times()[:2])
        t0 = time.monotonic()
        time.sleep(seconds)
        t1 = time.monotonic()
        return sum(self.ps.cpu_times()[:2]) - cpu0, t0, t1

    def close(self) -> None:
        self.alive = False
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def first_paint(app: Pty, marker: Path, timeout: float = 120.0) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if marker.exists() and marker.stat().st_size:
            return float(marker.read_text()) - app.started
        if app.proc.poll() is not None:
            raise SystemExit(f"trainmon exited with {app.proc.returncode}: {app.since(0)[-2000:]!r}")
        time.sleep(0.005)
    raise SystemExit("no first paint within the timeout")


def status_time(root: Path) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "trainkit"), "status", "--json", str(root)], stdout=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def append(root: Path, i: int, value: float) -> None:
    run = root / f"run-{i % VISIBLE:05d}"
    with open(run / METRICS_FILE, "ab") as f:
        f.write(orjson.dumps({"kind": "step", "step": 100_000 + i, "epoch": 0, "loss": value, "lr": 1e-3,
                              "t": time.time()}) + b"\n")
    status_path = run / STATUS_FILE
    status = orjson.loads(status_path.read_bytes())
    status.update(loss=value, step=100_000 + i, heartbeat_at=time.time())
    write_json(status_path, status)


def latency(app: Pty, root: Path, n: int) -> tuple[list[float], list[int], list[int]]:
    """(latencies s, bytes per update, misses)."""
    lats, sizes, misses = [], [], []
    for i in range(n):
        value = 7000 + i  # shown as "7000".."7199" (.4g): unique on the screen
        needle = str(value).encode()
        time.sleep(0.05)
        idx = app.mark()
        t0 = time.monotonic()
        append(root, i, float(value))
        seen = None
        while time.monotonic() - t0 < 3.0:
            if needle in app.since(idx):
                seen = time.monotonic()
                break
            time.sleep(0.001)
        if seen is None:
            misses.append(i)
            continue
        lats.append(seen - t0)
        time.sleep(0.15)
        sizes.append(len(app.since(idx)))
    return lats, sizes, misses


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def run_tree(base: Path, runs: int, lines: int, *, full: bool, idle_s: float, appends: int, quick: bool,
             baseline: str | None = None, goal: float | None = None) -> None:
    root = base / f"tree-{runs}"
    build_s = build(root, runs, lines)
    print(f"\n== {runs:,} runs x {lines:,} metric lines (built in {build_s:.1f} s, "
          f"{sum(f.stat().st_size for f in root.glob('*/' + METRICS_FILE)) / 2**20:.0f} MiB of metrics)")
    os.sync()  # the new tree's writeback does not land in the timed starts
    marker = base / f"painted-{runs}"
    variants = [("", None)] + ([("baseline ", baseline)] if baseline else [])
    paints: dict[str, list[float]] = {label: [] for label, _ in variants}
    for i in range(3):  # starts measured and quit, alternating (ABBA) when there is a baseline
        for label, checkout in (variants if i % 2 == 0 else variants[::-1]):
            app = Pty(root, marker, checkout)
            try:
                paints[label].append(first_paint(app, marker))
            finally:
                app.close()
            marker.unlink(missing_ok=True)
    goal = goal if goal is not None else 1.5 if runs <= 1000 else 3.0
    for label, _ in variants:
        paint = min(paints[label])
        print(f"{label}first full paint      {paint:.2f} s best of 3 ({', '.join(f'{p:.2f}' for p in paints[label])}, "
              f"median {statistics.median(paints[label]):.2f})   (goal < {goal:g} s: {verdict(paint < goal)})")
    if baseline:
        ratio = min(paints[""]) / min(paints["baseline "])
        median = statistics.median(paints[""]) / statistics.median(paints["baseline "])
        print(f"first paint ratio (this / baseline)  best {ratio:.2f}, median {median:.2f}")
    for label, checkout in variants:
        app = Pty(root, marker, checkout)
        try:
            first_paint(app, marker)
            if full:
                other_figures(app, root, label, idle_s, appends)
            rss = app.peak_rss / 2**20
            if runs <= 1000:
                print(f"{label}peak RSS              {rss:.0f} MB   (goal < 300 MB: {verdict(rss < 300)})")
            else:
                print(f"{label}peak RSS              {rss:.0f} MB")
        finally:
            app.close()
            marker.unlink(missing_ok=True)
    print(f"trainkit status --json  {status_time(root):.2f} s (best of 3, same tree)")
    if quick:
        print("(--quick: smaller trees; the goals are for the full sizes)")


def other_figures(app: Pty, root: Path, label: str, idle_s: float, appends: int) -> None:
    time.sleep(1.0)  # let the first paint's tail and any late reads settle
    lats, sizes, misses = latency(app, root, appends)
    p50, p95 = pct(lats, 0.5), pct(lats, 0.95)
    print(f"{label}append-to-screen      p50 {p50 * 1000:.0f} ms  p95 {p95 * 1000:.0f} ms over {len(lats)} appends"
          f"{f' ({len(misses)} never shown)' if misses else ''}   (goal p95 < 250 ms: "
          f"{verdict(p95 < 0.25 and not misses)})")
    per = statistics.median(sizes) if sizes else float("nan")
    print(f"{label}bytes per one-run update  median {per:.0f} B, max {max(sizes) if sizes else 0} B"
          f"   (goal < 2 KB: {verdict(per < 2048)})")
    time.sleep(1.0)
    cpu, t0, t1 = app.idle(idle_s)
    idle_bytes = app.bytes_between(t0, t1)
    print(f"{label}idle {idle_s:g} s            CPU {cpu:.2f} s = {cpu / idle_s * 100:.2f} %   (goal < 1 %: "
          f"{verdict(cpu / idle_s < 0.01)})")
    print(f"{label}idle terminal output  {idle_bytes} B = {idle_bytes / idle_s:.1f} B/s   (goal 0 B/s: "
          f"{verdict(idle_bytes == 0)})")


def long_log(path: Path, steps: int) -> None:
    """``steps`` step records (an epoch record every 10,000), written in 8 MiB blocks."""
    t0 = time.time() - steps * 0.01
    step = b'{"kind":"step","step":%d,"epoch":%d,"loss":%r,"lr":0.001,"t":%r}\n'
    epoch = b'{"kind":"epoch","epoch":%d,"train_loss":%r,"val_loss":%r,"t":%r}\n'
    with open(path, "wb") as f:
        out, size = [], 0
        for i in range(steps):
            line = step % (i, i // 10_000, 1.0 / (1 + i / 5000) + (i % 7) * 1e-4, t0 + i * 0.01)
            if i % 10_000 == 9_999:
                line += epoch % (i // 10_000, 1.0 / (1 + i / 5000), 1.0 / (1 + i / 4000), t0 + i * 0.01)
            out.append(line)
            size += len(line)
            if size > 8 * 2**20:
                f.write(b"".join(out))
                out, size = [], 0
        f.write(b"".join(out))


def open_detail(root: Path, base: Path, checkout: str | None) -> tuple[float, float, float]:
    """(s from Enter to the first chart, to the full history, peak RSS MB) of one open."""
    marker, detail = base / "painted-detail", base / "detail-marks"
    for m in (marker, detail):
        m.unlink(missing_ok=True)
    app = Pty(root, marker, checkout, detail_marker=detail)
    try:
        first_paint(app, marker)
        idx = app.mark()
        t_enter = time.time()
        os.write(app.master, b"\r")
        chart = full = None
        deadline = time.time() + 600
        while time.time() < deadline and full is None:
            if detail.exists():
                marks = dict(line.split() for line in detail.read_text().splitlines() if line.count(" ") == 1)
                chart = float(marks["chart"]) - t_enter if "chart" in marks else None
                full = float(marks["full"]) - t_enter if "full" in marks else None
            elif checkout is not None and b"loss (x: step)" in app.since(idx):
                chart = full = time.time() - t_enter
            if app.proc.poll() is not None:
                raise SystemExit(f"trainmon exited with {app.proc.returncode}")
            time.sleep(0.005)
        if full is None:
            raise SystemExit("the detail's full history was not on screen within 600 s")
        return chart, full, app.peak_rss / 2**20
    finally:
        app.close()


def detail_figures(base: Path, steps: int, label: str, goal_s: float, goal_mb: float, baseline: str | None,
                   rounds: int = 3) -> None:
    root = base / f"detail-{steps}"
    run = root / "2026-01-01-long"
    t0 = time.perf_counter()
    synthetic_run(root, run.name, total=max(1, steps // 10_000), scores=[0.5], state="finished")
    long_log(run / METRICS_FILE, steps)
    size = (run / METRICS_FILE).stat().st_size
    print(f"\n== the detail of one run of {steps:,} steps ({size / 2**20:,.0f} MiB of metrics.jsonl, "
          f"written in {time.perf_counter() - t0:.0f} s)")
    variants = [("", None)] + ([("baseline ", baseline)] if baseline else [])
    got: dict[str, list[tuple[float, float, float]]] = {v: [] for v, _ in variants}
    for i in range(rounds):
        for name, checkout in (variants if i % 2 == 0 else variants[::-1]):
            got[name].append(open_detail(root, base, checkout))
    for name, _ in variants:
        chart = [c for c, _, _ in got[name]]
        full = [f for _, f, _ in got[name]]
        rss = max(r for _, _, r in got[name])
        print(f"{name}{label}: first chart {min(chart):.2f} s best of {rounds} (median {statistics.median(chart):.2f})"
              f"   full history {min(full):.2f} s (median {statistics.median(full):.2f})   peak RSS {rss:.0f} MB"
              f"   (goals: on screen <= {goal_s:g} s: {verdict(min(chart) <= goal_s)}, "
              f"RSS <= {goal_mb:g} MB: {verdict(rss <= goal_mb)})")
    if baseline:
        pairs = [a[1] / b[1] for a, b in zip(got[""], got["baseline "], strict=True)]
        best = min(f for _, f, _ in got[""]) / min(f for _, f, _ in got["baseline "])
        print(f"{label} full history ratio (this / baseline)  best {best:.2f}, median of pairs "
              f"{statistics.median(pairs):.2f}")
    shutil.rmtree(root, ignore_errors=True)


def inspector_search() -> int:
    """The inspector's search over 10,000 conversations, time to the first and the last hit against
    listing them (its own script, in a process of its own: the real app driven headless)."""
    print("\n== the inspector's search over 10,000 conversations", flush=True)
    return subprocess.run([sys.executable, str(Path(__file__).with_name("inspector_search.py"))]).returncode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="200 x 1,000 and 1,000 x 100; 10 s idle, 50 appends")
    p.add_argument("--keep", metavar="DIR", help="build the trees in DIR and keep them")
    p.add_argument("--baseline", metavar="DIR", help="another checkout whose trainmon is measured side by side")
    p.add_argument("--detail", action="store_true", help="only the detail of one long run (100k steps, 2 GB)")
    p.add_argument("--inspector", action="store_true",
                   help="only the inspector's search over 10,000 conversations (benchmarks/inspector_search.py)")
    p.add_argument("--paint", action="store_true",
                   help="only the first full paint of 100 runs x 1,000 steps (goal <= 0.8 s; W&B LEET: 1.03 s)")
    args = p.parse_args()
    if args.baseline and not os.path.isdir(os.path.join(args.baseline, "tui")):
        sys.stderr.write(f"tui_scale: --baseline {args.baseline}: not a checkout of this repository (no tui/)\n")
        return 2
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tui-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"trainmon under a {COLS}x{ROWS} pseudo-terminal; trees in {base}; {os.cpu_count()} CPUs")
    try:
        if args.inspector:
            return inspector_search()
        if args.paint:
            run_tree(base, 100, 1000, full=False, idle_s=0, appends=0, quick=False, baseline=args.baseline, goal=0.8)
            return 0
        if args.quick and not args.detail:
            run_tree(base, 200, 1000, full=True, idle_s=10, appends=50, quick=True, baseline=args.baseline)
            run_tree(base, 1000, 100, full=False, idle_s=0, appends=0, quick=True, baseline=args.baseline)
        elif not args.detail:
            run_tree(base, 100, 1000, full=False, idle_s=0, appends=0, quick=False, baseline=args.baseline, goal=0.8)
            run_tree(base, 1000, 5000, full=True, idle_s=30, appends=200, quick=False, baseline=args.baseline)
            shutil.rmtree(base / "tree-1000", ignore_errors=True)
            run_tree(base, 10000, 100, full=False, idle_s=0, appends=0, quick=False, baseline=args.baseline)
            shutil.rmtree(base / "tree-10000", ignore_errors=True)
        detail_figures(base, 100_000, "100k-step run", 2.0, 84, args.baseline)
        big = 2_100_000 if args.quick else 21_000_000  # the baseline read it whole: minutes and GBs, not measured
        detail_figures(base, big, f"{'200 MB' if args.quick else '2 GB'} run", 2.0, 300, None, rounds=1)
        if not args.detail:
            inspector_search()
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
