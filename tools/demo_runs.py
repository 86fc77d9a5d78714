"""``make demo``: start a few real runs in the background with trainkit itself, then open trainmon
on them.

Three runs go to ROOT (default ``experiments/``), each a ``trainkit`` subprocess of its own:
  - ``<date>-demo-early-stop``: burgers with ``early_stopping.min_delta`` so large that no epoch
    counts as an improvement: it stops early after ``patience`` epochs;
  - ``<date>-demo-longer``: burgers for 40 epochs (a couple of minutes on a CPU);
  - ``<date>-demo-arith-chat``: ``trainkit run`` of the built-in arith-chat task (train, then an
    evaluation that writes one conversation per question; inference samples and layer health on).
A run folder that already exists is resumed or left as it is (``trainkit`` decides). Each run's
console output goes to ``ROOT/.demo/<name>.out``. Then trainmon opens on ROOT (on a terminal;
otherwise ``trainmon --once`` prints the table). The runs go on after trainmon quits;
``trainkit status ROOT`` shows them, ``x`` in trainmon stops one.

    python tools/demo_runs.py [--root experiments] [--no-monitor]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent
BURGERS = {"task": "burgers", "seed": 0, "batch_size": 32, "lr": 2.0e-3, "log_every_steps": 5,
           "checkpoint": {"every_steps": 0}, "model": {"width": 64, "depth": 2},
           "data": {"n_train": 512, "n_val": 128, "nx": 32, "viscosity": 0.01, "t_final": 0.3}}
RUNS = {
    "demo-early-stop": ("train", {**BURGERS, "epochs": 60,
                                  "early_stopping": {"metric": "val_loss", "mode": "min", "patience": 3,
                                                     "min_delta": 100.0}}),
    "demo-longer": ("train", {**BURGERS, "epochs": 40, "data": {**BURGERS["data"], "n_train": 2048}}),
    "demo-arith-chat": ("run", {"task": "arith-chat", "seed": 0, "epochs": 2, "batch_size": 64, "lr": 3.0e-3,
                                "log_every_steps": 5, "checkpoint": {"every_steps": 0},
                                "model": {"width": 64, "depth": 2, "heads": 4},
                                "data": {"n_train": 2000, "n_val": 200},
                                "monitor": {"samples_every_steps": 20, "layers_every_steps": 10}}),
}


def start(root: Path) -> list[tuple[str, subprocess.Popen]]:
    side = root / ".demo"
    side.mkdir(parents=True, exist_ok=True)
    day = time.strftime("%Y-%m-%d")
    started = []
    for name, (command, cfg) in RUNS.items():
        config = side / f"{name}.yaml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        run = root / f"{day}-{name}"
        out = open(side / f"{name}.out", "ab")  # noqa: SIM115 (the child owns it)
        proc = subprocess.Popen([str(BIN / "trainkit"), command, str(config), "--run-dir", str(run)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        out.close()
        started.append((run.name, proc))
        print(f"started {run} (pid {proc.pid}; trainkit {command}; output in {side / (name + '.out')})")
    return started


def wait_for_folders(root: Path, names: list[str], started: list, timeout: float = 120.0) -> None:
    """Until every run has written its first status (a table with the runs, not an empty one)."""
    from trainkit.status import find_runs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {os.path.basename(p) for p in find_runs(str(root))}
        if set(names) <= found or all(proc.poll() is not None for _, proc in started):
            return
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="experiments", help="where the runs go (default experiments/)")
    p.add_argument("--no-monitor", action="store_true", help="start the runs only; do not open trainmon")
    args = p.parse_args(argv)
    root = Path(args.root)
    started = start(root)
    if args.no_monitor:
        return 0
    if not sys.stdout.isatty():
        wait_for_folders(root, [name for name, _ in started], started)
        for _, proc in started:
            if proc.poll() not in (None, 0):
                print(f"pid {proc.pid} exited with {proc.returncode}", file=sys.stderr)
        return subprocess.call([str(BIN / "trainmon"), str(root), "--once"])
    os.execv(str(BIN / "trainmon"), [str(BIN / "trainmon"), str(root)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
