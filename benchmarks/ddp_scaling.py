"""Steps/s of one process vs two DDP processes (torchrun, gloo on the CPU) on the same global batch.

The same config trained by `trainkit train` and by `torchrun --standalone --nproc_per_node 2 -m
trainkit train`, alternating rounds; steps/s from the epochs' own durations in metrics.jsonl (the
training loop only: start-up, data and the process group are left out). Each DDP process gets
`torch` threads = cores / 2, so both settings use the whole machine. On 2 cores expect little gain
(the figure is for larger machines); the ratio is printed, with no goal.

    python benchmarks/ddp_scaling.py [--rounds 3] [--epochs 2] [--n-train 8192] [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson


def steps_per_s(run: Path) -> float:
    recs = [orjson.loads(line) for line in (run / "metrics.jsonl").read_bytes().splitlines()]
    epochs = [r for r in recs if r.get("kind") == "epoch"]
    steps = epochs[-1]["global_step"]
    return steps / sum(r["duration_s"] for r in epochs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n-train", type=int, default=8192)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    cores = os.cpu_count() or 2
    settings = {"task": "burgers", "epochs": args.epochs, "batch_size": args.batch, "log_every_steps": 10,
                "data": {"n_train": args.n_train, "n_val": 256}, "model": {"width": 256, "depth": 3}}
    one, two = [], []
    with tempfile.TemporaryDirectory(dir=".") as d:
        work = Path(d)
        cfg = work / "cfg.json"
        cfg.write_bytes(orjson.dumps(settings))
        env = {**os.environ, "TRAINKIT_CACHE_DIR": str(work / "cache")}
        for i in range(args.rounds):
            run1, run2 = work / f"one{i}", work / f"two{i}"
            subprocess.run([sys.executable, "-m", "trainkit", "train", str(cfg), "--run-dir", str(run1)],
                           check=True, capture_output=True, env={**env, "OMP_NUM_THREADS": str(cores)})
            one.append(steps_per_s(run1))
            subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "trainkit", "train", str(cfg), "--run-dir", str(run2)], check=True,
                           capture_output=True, env={**env, "OMP_NUM_THREADS": str(max(1, cores // 2))})
            two.append(steps_per_s(run2))
    print(f"burgers, global batch {args.batch}, {args.n_train} samples, {args.epochs} epochs; {cores} cores; "
          f"{args.rounds} alternating rounds")
    print(f"1 process:            {max(one):8.1f} steps/s best  (rounds: {', '.join(f'{v:.0f}' for v in one)})")
    print(f"2 processes (DDP):    {max(two):8.1f} steps/s best  (rounds: {', '.join(f'{v:.0f}' for v in two)})")
    print(f"ratio 2 / 1 processes: {max(two) / max(one):.2f}  (on {cores} cores little gain is expected; "
          "the shards halve the work per process, the all-reduce adds to each step)")


if __name__ == "__main__":
    main()
