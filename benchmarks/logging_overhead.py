"""Per-record cost of trainkit's metrics writer vs TensorBoard's SummaryWriter vs csv.writer.

100,000 step records each, written to a temp folder on the same disk. trainkit appends one JSON
line per record and flushes it (one os.write on an O_APPEND descriptor); csv.writer flushes every
row too; SummaryWriter.add_scalar queues events and flushes on its own schedule (its close() is
timed). A trainkit record carries six fields; SummaryWriter gets one scalar per record, which
favours the anchor. Goal: trainkit >= 10x faster than SummaryWriter per record.

    python benchmarks/logging_overhead.py [--records N]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from trainkit.runfolder.files import JsonlWriter


def bench_trainkit(folder: Path, n: int) -> float:
    w = JsonlWriter(folder / "metrics.jsonl")
    t0 = time.perf_counter()
    for i in range(n):
        w.write({"kind": "step", "epoch": i // 1000, "step": i, "loss": 1.0 / (i + 1), "lr": 1e-3, "t": time.time()})
    w.close()
    return time.perf_counter() - t0


def bench_csv(folder: Path, n: int) -> float:
    with open(folder / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "epoch", "step", "loss", "lr", "t"])
        t0 = time.perf_counter()
        for i in range(n):
            w.writerow(["step", i // 1000, i, 1.0 / (i + 1), 1e-3, time.time()])
            f.flush()
        return time.perf_counter() - t0


def bench_tensorboard(folder: Path, n: int) -> float:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(log_dir=str(folder / "tb"))
    t0 = time.perf_counter()
    for i in range(n):
        w.add_scalar("train/loss", 1.0 / (i + 1), i)
    w.close()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=100_000)
    args = p.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory(dir=".") as d:
        folder = Path(d)
        results = {}
        for name, fn in (("trainkit JsonlWriter", bench_trainkit), ("csv.writer + flush", bench_csv),
                         ("tensorboard SummaryWriter", bench_tensorboard)):
            fn(folder, min(n, 2000))  # warm-up (imports, page cache)
            results[name] = fn(folder, n) / n * 1e6
    tk = results["trainkit JsonlWriter"]
    print(f"records: {n:,} each")
    for name, us in results.items():
        print(f"{name:<28} {us:8.2f} us/record")
    sw = results["tensorboard SummaryWriter"]
    print(f"ratio SummaryWriter / trainkit: {sw / tk:.1f}x  (goal >= 10x: {'met' if sw / tk >= 10 else 'NOT met'})")
    print(f"ratio csv.writer / trainkit:    {results['csv.writer + flush'] / tk:.2f}x")


if __name__ == "__main__":
    main()
