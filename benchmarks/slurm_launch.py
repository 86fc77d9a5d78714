"""How fast `trainkit launch --slurm` hands 100 runs to Slurm, and what it costs the launcher.

Starts the one-node cluster of the tests (tests/slurm_cluster.py) in a temp folder, lays out N
pending runs (a config.yaml each), and times:
  - `trainkit launch ROOT --slurm` end to end in a fresh process (interpreter start included): the
    wall time to submit all N jobs (one sbatch each; the jobs are submitted held, --hold, so the
    benchmark measures the submission, not the training);
  - the launcher in-process on a second root of N runs: its own CPU time (without the sbatch
    processes) and the CPU time of the sbatch children;
  - the launch right after, when every job is pending: one squeue call, nothing submitted.
Every job is cancelled before the cluster stops. Needs root and slurm-wlm (`make test-slurm`).
Goals: N = 100 submitted in < 10 s end to end; the launcher's own CPU < 1 s.

    python benchmarks/slurm_launch.py [--runs 100]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from slurm_cluster import Cluster, missing  # noqa: E402

from trainkit import slurm  # noqa: E402
from trainkit.launcher import SlurmLauncher, plan  # noqa: E402

CONFIG = "task: burgers\nepochs: 1\n"


def build(root: Path, n: int) -> None:
    for i in range(n):
        (root / f"run-{i:03d}").mkdir(parents=True)
        (root / f"run-{i:03d}" / "config.yaml").write_text(CONFIG)


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=100)
    args = p.parse_args()
    why = missing()
    if why:
        sys.exit(f"slurm_launch: {why}")
    n = args.runs
    with tempfile.TemporaryDirectory(prefix="trainkit-slurm-bench-") as d:
        cluster = Cluster(Path(d) / "cluster").start()
        os.environ["SLURM_CONF"] = str(cluster.conf)
        try:
            cli_root, lib_root = Path(d) / "cli", Path(d) / "lib"
            build(cli_root, n)
            build(lib_root, n)

            cmd = [sys.executable, "-m", "trainkit", "launch", str(cli_root), "--slurm", "--json",
                   "--sbatch-arg=--hold"]
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, check=True, env=os.environ)
            e2e_s = time.perf_counter() - t0
            submitted = orjson.loads(out.stdout)
            assert len(submitted) == n, out.stderr

            cpu0, child0, t0 = time.process_time(), children_cpu(), time.perf_counter()
            launcher = SlurmLauncher(lib_root, slurm.Options(sbatch_args=["--hold"]), report=lambda line: None)
            started = launcher.run(plan(lib_root))
            lib_s = time.perf_counter() - t0
            own_cpu, sbatch_cpu = time.process_time() - cpu0, children_cpu() - child0
            assert len(started) == n

            t0 = time.perf_counter()
            again = subprocess.run(cmd, capture_output=True, check=True, env=os.environ)
            again_s = time.perf_counter() - t0
            assert orjson.loads(again.stdout) == []
            in_queue = len(cluster.jobs())
            version = slurm_version()
        finally:
            cluster.stop()  # scancel every job, wait, stop the daemons

    print(f"one-node cluster ({version}), {n} pending runs, jobs submitted held; "
          f"{in_queue} jobs in the queue at the end")
    print(f"`trainkit launch --slurm` end to end: {e2e_s:.3f} s for {n} jobs ({e2e_s / n * 1000:.1f} ms per job); "
          f"ratio to the 10 s goal: {e2e_s / 10.0:.2f} (goal < 10 s: {'met' if e2e_s < 10 else 'NOT met'})")
    print(f"launcher in-process: {lib_s:.3f} s wall; its own CPU {own_cpu:.3f} s "
          f"({own_cpu / n * 1000:.1f} ms per run), sbatch processes {sbatch_cpu:.3f} s; "
          f"ratio to the 1 s goal: {own_cpu / 1.0:.2f} (goal < 1 s: {'met' if own_cpu < 1 else 'NOT met'})")
    print(f"launch again with all {n} jobs pending (one squeue call, nothing submitted): {again_s:.3f} s")


def slurm_version() -> str:
    try:
        return subprocess.run(["sbatch", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    main()
