"""How fast `trainkit status` reads a root of many runs: fast path, slow path, end to end.

Lays out N synthetic run folders in the engine's exact format (20 complete epoch folders each, a
status file, progress.json, resolved_config.json; a tenth of them running under this process's
pid, the rest finished, stopped, failed or early-stopped), then times:
  - the fast path: every run has a valid progress.json;
  - the slow path: progress.json removed, so progress is recomputed from the 20 epoch folders
    (early stopping replayed where configured);
  - `trainkit status ROOT --json` end to end in a fresh process (interpreter start included).
The page cache is warm (the folders were just written). Goal: 10,000 runs end to end < 2 s.

With ``--baseline DIR`` (another checkout of this repository, e.g. ``git worktree add /tmp/cd43
cd43ba3``), the fast path is also timed side by side on the same folders: each round runs one fresh
process per checkout (PYTHONPATH at it; one untimed scan, then the timed one), the order reversed
every other round (ABBA), and it prints the best of N of each, the median of the paired rounds and
their ratio. Goal: this checkout's fast path <= 0.45 s for 10,000 runs (the floor, reading two
small JSON files per run, is about 0.39 s).

    python benchmarks/status_scan.py [--runs 10000] [--epochs 20] [--baseline DIR] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from trainkit import status as S
from trainkit.testing import synthetic_run

STATES = ["finished", "stopped", "failed", "early_stopped", "finished", "stopped", "finished", "failed", "finished",
          "running"]
ES = {"metric": "val_loss", "mode": "min", "patience": 3, "min_delta": 0.0}


def build(root: Path, n: int, epochs: int) -> None:
    for i in range(n):
        state = STATES[i % len(STATES)]
        if state == "early_stopped":
            # the best, then `patience` (3) epochs worse than it: early stopping's replay stops there
            # at any --epochs (a plateau at 0.9 was an improvement below 6 epochs, and the slow
            # path rightly disagreed with the synthetic progress.json)
            falling = [1.0 - 0.05 * k for k in range(epochs - 3)]
            scores = falling + [falling[-1] + 0.1] * 3
            synthetic_run(root, f"run-{i:05d}", total=epochs * 5, scores=scores, early_stopping=ES, state=state)
        else:
            synthetic_run(root, f"run-{i:05d}", total=epochs if state == "finished" else epochs * 2,
                          scores=[1.0 / (k + 1) for k in range(epochs)], state=state,
                          pid=os.getpid() if state == "running" else None)


def refresh_heartbeats(root: Path, runs: list) -> None:
    """Building takes a while: give the running runs a fresh heartbeat so none reads as crashed."""
    for r in runs:
        if r.state in ("running", "crashed"):
            path = Path(r.path) / "training_status.json"
            status = orjson.loads(path.read_bytes())
            status["heartbeat_at"] = time.time()
            path.write_bytes(orjson.dumps(status))


#: one timed fast-path scan in a fresh process of the checkout on PYTHONPATH (after an untimed one)
CHILD = """
import sys, time
from trainkit import status as S
S.scan(sys.argv[1])
t0 = time.perf_counter()
runs = S.scan(sys.argv[1])
print(time.perf_counter() - t0, len(runs))
"""


def scan_in(checkout: Path, root: Path, n: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    out = subprocess.run([sys.executable, "-c", CHILD, str(root.resolve())], capture_output=True, check=True, env=env,
                         cwd=checkout).stdout.split()
    assert int(out[1]) == n, (checkout, out)
    return float(out[0])


def side_by_side(root: Path, n: int, baseline: Path, rounds: int) -> None:
    here = Path(__file__).resolve().parent.parent
    times: dict[str, list[float]] = {"this": [], "baseline": []}
    trees = {"this": here, "baseline": baseline}
    for r in range(rounds):
        refresh_heartbeats(root, S.scan(root))  # the running runs stay live through the rounds
        for k in (["this", "baseline"] if r % 2 == 0 else ["baseline", "this"]):
            times[k].append(scan_in(trees[k], root, n))
    this, base = times["this"], times["baseline"]
    paired = statistics.median(a / b for a, b in zip(this, base, strict=True))
    print(f"fast path side by side, {rounds} rounds ABBA, a fresh process each (load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}):")
    print(f"  this checkout:        best {min(this):.3f} s  (rounds: {', '.join(f'{t:.3f}' for t in this)})")
    print(f"  baseline {baseline}: best {min(base):.3f} s  (rounds: {', '.join(f'{t:.3f}' for t in base)})")
    verdict = "met" if min(this) <= 0.45 * n / 10_000 else "NOT met"
    print(f"  time ratio this / baseline: best of {rounds} {min(this) / min(base):.3f}, median of paired rounds "
          f"{paired:.3f}; this checkout's best {min(this):.3f} s (goal <= 0.45 s per 10,000 runs: {verdict})")


def timed_scan(root: Path) -> tuple[float, list]:
    t0 = time.perf_counter()
    runs = S.scan(root)
    return time.perf_counter() - t0, runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--baseline", type=Path, help="another checkout, timed side by side on the fast path")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the side-by-side fast path (default 5)")
    args = p.parse_args()
    if args.epochs < 4:
        p.error("--epochs must be at least 4 (an early-stopped run needs its best epoch and 3 worse ones)")
    with tempfile.TemporaryDirectory(dir=".") as d:
        root = Path(d) / "experiments"
        t0 = time.perf_counter()
        build(root, args.runs, args.epochs)
        print(f"built {args.runs:,} run folders x {args.epochs} epoch folders in {time.perf_counter() - t0:.1f} s")

        refresh_heartbeats(root, S.scan(root))
        fast_s, runs = timed_scan(root)
        assert all(r.progress_source == "progress.json" for r in runs)
        counts = S.summarize(runs)["counts"]

        cmd = [sys.executable, "-m", "trainkit", "status", str(root), "--json"]
        subprocess.run(cmd, capture_output=True, check=True)  # warm-up (imports from disk)
        e2e = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, check=True)
            e2e.append(time.perf_counter() - t0)
        e2e_s = min(e2e)
        assert len(orjson.loads(out.stdout)) == args.runs

        for r in runs:
            os.replace(Path(r.path) / "progress.json", Path(r.path) / "progress.json.bak")
        slow_s, slow_runs = timed_scan(root)
        assert all(r.progress_source == "recomputed" for r in slow_runs)
        same = [(a.state, a.completed_epochs, a.progress_percentage, a.early_stopped) for a in runs] == \
            [(b.state, b.completed_epochs, b.progress_percentage, b.early_stopped) for b in slow_runs]
        for r in runs:
            os.replace(Path(r.path) / "progress.json.bak", Path(r.path) / "progress.json")
        if args.baseline is not None:
            side_by_side(root, args.runs, args.baseline.resolve(), args.rounds)

    n = args.runs
    print(f"states: {', '.join(f'{v} {k}' for k, v in counts.items() if v)}")
    print(f"fast path (valid progress.json):      {n / fast_s:10,.0f} runs/s  ({fast_s:.3f} s for {n:,})")
    print(f"slow path ({args.epochs} epoch folders, no progress.json): {n / slow_s:10,.0f} runs/s  "
          f"({slow_s:.3f} s for {n:,}; same answers as the fast path: {same})")
    print(f"slow / fast time ratio: {slow_s / fast_s:.1f}x")
    verdict = "met" if (e2e_s < 2.0 and n >= 10_000) else ("NOT met" if n >= 10_000 else "n/a below 10,000 runs")
    print(f"`trainkit status --json` end to end: {e2e_s:.3f} s best of 3 ({', '.join(f'{t:.3f}' for t in e2e)}) "
          f"for {n:,} runs ({n / e2e_s:,.0f} runs/s); "
          f"ratio to the 2 s goal: {e2e_s / 2.0:.2f} (goal < 2 s: {verdict})")


if __name__ == "__main__":
    main()
