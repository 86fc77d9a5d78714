"""How `trainkit experiments` scales: `list` against `trainkit status` on the same tree, and an archive.

Lays out N synthetic experiments (default 1,000) in the engine's exact on-disk format, 10 files
each (resolved_config.json, progress.json, training_status.json, metrics.jsonl and 2 complete epoch
folders of 3 files; see trainkit.testing.synthetic_run), states mixed (finished, stopped, failed,
early_stopped, some running under this process's pid), every file last changed 40 days ago, then:
  - `trainkit experiments list ROOT --json` end to end in a fresh process, best of 3;
  - `trainkit status ROOT --json` end to end on the same tree, best of 3 (the anchor), the two
    taking turns so that a busy moment of the machine hits both alike;
  - an archive of 500 of them (by name, through the API) on the same filesystem: one rename each,
    plus the manifest (sha256 of every file) and metadata.json written into each.
The page cache is warm (the folders were just written). Goals: list < 1.5x status; archive of 500 < 5 s.

    python benchmarks/lifecycle_scale.py [--experiments 1000] [--archive 500]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from trainkit import lifecycle as L
from trainkit.testing import synthetic_run

STATES = ["finished", "stopped", "failed", "early_stopped", "finished", "stopped", "finished", "failed", "finished",
          "running"]
ES = {"metric": "val_loss", "mode": "min", "patience": 1, "min_delta": 0.0}


def build(root: Path, n: int) -> None:
    old = time.time() - 40 * 86400
    for i in range(n):
        state = STATES[i % len(STATES)]
        if state == "early_stopped":
            paths = synthetic_run(root, f"2026-01-01-exp{i:05d}", total=10, scores=[1.0, 1.0], early_stopping=ES,
                                  state=state)
        else:
            paths = synthetic_run(root, f"2026-01-01-exp{i:05d}", total=2 if state == "finished" else 4,
                                  scores=[1.0, 0.5], state=state, pid=os.getpid() if state == "running" else None)
        for dirpath, _, filenames in os.walk(paths.root):
            for f in filenames:
                os.utime(os.path.join(dirpath, f), (old, old))


def files_per_experiment(root: Path) -> int:
    first = next(p for p in sorted(root.iterdir()))
    return sum(len(f) for _, _, f in os.walk(first))


def refresh_heartbeats(root: Path) -> None:
    """Building takes a while: a fresh heartbeat for the running ones so none reads as crashed."""
    for p in root.iterdir():
        path = p / "training_status.json"
        status = orjson.loads(path.read_bytes())
        if status.get("state") == "running":
            status["heartbeat_at"] = time.time()
            st = path.stat()
            path.write_bytes(orjson.dumps(status))
            os.utime(path, (st.st_atime, st.st_mtime))


def best_of_3(cmds: list[list[str]]) -> list[tuple[float, list[float], bytes]]:
    """Each command end to end, best of 3; the commands take turns (list, status, list, ...) so
    that a busy moment of the machine hits both alike."""
    for cmd in cmds:
        subprocess.run(cmd, capture_output=True, check=True)  # warm-up (imports from disk)
    times: list[list[float]] = [[] for _ in cmds]
    outs: list[bytes] = [b""] * len(cmds)
    for _ in range(3):
        for i, cmd in enumerate(cmds):
            t0 = time.perf_counter()
            outs[i] = subprocess.run(cmd, capture_output=True, check=True).stdout
            times[i].append(time.perf_counter() - t0)
    return [(min(t), t, out) for t, out in zip(times, outs, strict=True)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiments", type=int, default=1000)
    p.add_argument("--archive", type=int, default=500)
    args = p.parse_args()
    n = args.experiments
    with tempfile.TemporaryDirectory(dir=".") as d:
        root = Path(d) / "experiments"
        t0 = time.perf_counter()
        build(root, n)
        per = files_per_experiment(root)
        print(f"built {n:,} experiments x {per} files in {time.perf_counter() - t0:.1f} s")

        refresh_heartbeats(root)
        (list_s, list_t, out), (status_s, status_t, status_out) = best_of_3([
            [sys.executable, "-m", "trainkit", "experiments", "list", str(root), "--json"],
            [sys.executable, "-m", "trainkit", "status", str(root), "--json"]])
        rows = orjson.loads(out)
        assert len(rows) == n and len(orjson.loads(status_out)) == n
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1

        names = [r["name"] for r in rows if r["status"] != "active"][:args.archive]
        t0 = time.perf_counter()
        plan = L.plan_archive(root, names)
        result = L.archive(plan)
        archive_s = time.perf_counter() - t0
        assert len(result.moved) == len(names), result.not_moved[:3]
        assert all(o.detail == "rename" for o in result.moved)
        left = len(list(root.iterdir()))

    print(f"classes: {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}")
    ratio = list_s / status_s
    print(f"`trainkit experiments list --json`: {list_s:.3f} s best of 3 ({', '.join(f'{t:.3f}' for t in list_t)}) "
          f"for {n:,} experiments ({n / list_s:,.0f}/s)")
    print(f"`trainkit status --json` (anchor):  {status_s:.3f} s best of 3 ({', '.join(f'{t:.3f}' for t in status_t)}) "
          f"on the same tree")
    print(f"list / status ratio: {ratio:.2f}x (goal < 1.5x: {'met' if ratio < 1.5 else 'NOT met'})")
    print(f"archive of {len(names)} (same filesystem, API, plan included): {archive_s:.3f} s "
          f"({len(names) / archive_s:,.0f}/s; {left:,} left under ROOT); ratio to the 5 s goal: {archive_s / 5.0:.2f} "
          f"(goal < 5 s: {'met' if archive_s < 5.0 else 'NOT met'})")


if __name__ == "__main__":
    main()
