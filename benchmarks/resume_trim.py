"""Resume preparation time against the size of metrics.jsonl: 1 MB, 100 MB and 1 GB.

A real run (trained for one epoch) gets a metrics.jsonl of the given size whose last 200 records
are newer than its checkpoint, as a kill -9 leaves them. Measured: preparing the resume as
`trainkit train RUN` does it (session.claim: the lock, then prepare, then those records cut off the
end in place; the log is flushed to disk first, as a log written before a crash is). Goal: the
1 GB preparation within 2x of the 1 MB one (the cut reads backwards from
the end; the cost follows the cut, not the file). The earlier way (read every record, keep the old
ones, rewrite the whole file) is shown beside it for 1 MB and 100 MB.

    python benchmarks/resume_trim.py [--sizes-mb 1 100 1000] [--rounds 3]
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

from trainkit.runfolder import RunPaths
from trainkit.runfolder.files import atomic_write, dumps, iter_jsonl
from trainkit.train import session

TAIL = 200  # records past the checkpoint


def make_log(path: Path, size: int, global_step: int) -> None:
    """``size`` bytes of records the checkpoint holds, then TAIL records it does not."""
    old = dumps({"kind": "step", "epoch": 0, "step": 0, "loss": 0.5, "lr": 1e-3, "t": 1.7e9, "pad": "x" * 40}) + b"\n"
    block = old * max(1, (1 << 20) // len(old))
    with open(path, "wb") as f:
        written = 0
        while written < size:
            f.write(block)
            written += len(block)
        for i in range(TAIL):
            f.write(dumps({"kind": "step", "epoch": 1, "step": global_step + i, "loss": 0.4, "lr": 1e-3,
                           "t": 1.7e9}) + b"\n")


def prepare_resume(run: Path) -> float:
    t0 = time.perf_counter()
    with session.claim(session.TrainRequest(str(run))) as prep:
        pass
    elapsed = time.perf_counter() - t0
    assert prep.trimmed == TAIL, prep.trimmed
    return elapsed


def old_way(path: Path, global_step: int) -> float:
    """What resume did before: read every record, keep the old ones, rewrite the file atomically."""
    t0 = time.perf_counter()
    keep = [r for r in iter_jsonl(path) if not (r.get("kind") == "step" and r.get("step", 0) >= global_step)]
    body = b"".join(dumps(r) + b"\n" for r in keep)
    atomic_write(path, lambda f: f.write(body))
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes-mb", type=int, nargs="+", default=[1, 100, 1000])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--old-way-up-to-mb", type=int, default=100)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as d:
        work = Path(d)
        cfg = work / "cfg.json"
        cfg.write_bytes(orjson.dumps({"task": "burgers", "epochs": 2, "batch_size": 32,
                                      "model": {"width": 32, "depth": 2}, "data": {"n_train": 256, "n_val": 64}}))
        run = work / "run"
        env = {**os.environ, "TRAINKIT_CACHE_DIR": str(work / "cache")}
        subprocess.run([sys.executable, "-m", "trainkit", "train", str(cfg), "--run-dir", str(run), "--epochs", "1"],
                       check=True, capture_output=True, env=env)
        global_step = orjson.loads(RunPaths(run).current_meta.read_bytes())["global_step"]
        metrics = RunPaths(run).metrics
        results = {}
        for mb in args.sizes_mb:
            times, old = [], None
            for _ in range(args.rounds):
                make_log(metrics, mb << 20, global_step)
                os.sync()  # the log was written long before the resume: nothing of it waits to be flushed
                times.append(prepare_resume(run))
            if mb <= args.old_way_up_to_mb:
                make_log(metrics, mb << 20, global_step)
                old = old_way(metrics, global_step)
            results[mb] = (min(times), old)
            shown = f"   (the earlier full rewrite: {old:8.3f} s)" if old is not None else ""
            print(f"metrics.jsonl {mb:>5} MB: resume preparation {min(times) * 1000:8.1f} ms best of {args.rounds}"
                  f"  ({', '.join(f'{t * 1000:.1f}' for t in times)}){shown}")
        metrics.unlink()
    small, large = min(results), max(results)
    ratio = results[large][0] / results[small][0]
    verdict = "met" if ratio < 2 else "NOT met"
    print(f"ratio {large} MB / {small} MB: {ratio:.2f}  (goal < 2: {verdict})")


if __name__ == "__main__":
    main()
