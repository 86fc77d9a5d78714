"""Steps/s of the engine with the training monitor's defaults on vs off, side by side on the same
task, and the built-in arith-chat task's training time and accuracy.

1. On vs off: the same config trained in one process, alternating rounds (on, off, on, off, ...),
   best of N (timeit's rule; the machine is noisy) and the median of paired ratios. "On" is the
   monitor's defaults (inference samples when the task has prompts, as arith-chat does; alerts;
   layer health); "off" switches every part off. Goal: on / off >= 0.97.
2. arith-chat: `trainkit run examples/arith_chat.yaml` end to end (train, then eval on the held-out
   questions): the training's wall time and the exact-match accuracy of the report.

    python benchmarks/monitor_overhead.py [--rounds 5] [--config examples/arith_chat.yaml] [--skip-example]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import torch

from trainkit.config import load_file
from trainkit.train import session
from trainkit.train.display import ProgressDisplay
from trainkit.train.engine import Trainer

OFF = {"samples_every_steps": 0, "alerts": False, "stop_on_nonfinite": False, "layers_every_steps": 0}


def one_run(settings: dict, work: Path, cache: Path) -> tuple[float, int, int]:
    """(seconds of the training loop, steps, samples written) of one run in this process."""
    run = Path(tempfile.mkdtemp(dir=work))
    cfg = run / "config.json"
    cfg.write_bytes(orjson.dumps(settings))
    log = logging.getLogger("trainkit")
    log.handlers.clear()
    log.addHandler(logging.NullHandler())
    log.propagate = False
    with session.claim(session.TrainRequest(str(cfg), run_dir=str(run), cache_dir=cache)) as prep:
        trainer = Trainer(prep, torch.device("cpu"), display=ProgressDisplay(interactive=False, plain_every_s=1e9))
        t0 = time.perf_counter()
        outcome = trainer.run()
        elapsed = time.perf_counter() - t0
    assert outcome.state in ("finished", "early_stopped"), outcome
    samples = run / "samples.jsonl"
    return elapsed, trainer.state.global_step, samples.read_bytes().count(b"\n") if samples.exists() else 0


def example_run(config: Path, work: Path) -> tuple[float, float | None, float]:
    """`trainkit run CONFIG`: (training seconds, accuracy, whole pipeline seconds)."""
    run = work / "example"
    env = {**os.environ, "TRAINKIT_CACHE_DIR": str(work / "cache")}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "trainkit", "run", str(config), "--run-dir", str(run)], env=env,
                       capture_output=True, text=True)
    total = time.perf_counter() - t0
    if r.returncode not in (0, 3):
        raise SystemExit(f"trainkit run failed ({r.returncode}):\n{r.stderr[-2000:]}")
    status = orjson.loads((run / "training_status.json").read_bytes())
    report = orjson.loads((run / "reports" / "default.json").read_bytes())
    return status["heartbeat_at"] - status["started_at"], report.get("accuracy"), total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--config", type=Path, default=Path("examples/arith_chat.yaml"))
    p.add_argument("--epochs", type=int, default=1, help="epochs of each on/off round")
    p.add_argument("--skip-example", action="store_true", help="skip the full arith-chat run")
    args = p.parse_args()
    base = load_file(args.config)
    base = {**base, "epochs": args.epochs, "eval": {}}
    with tempfile.TemporaryDirectory(dir=".") as d:
        work = Path(d)
        cache = work / "cache"
        one_run({**base, "monitor": OFF}, work, cache)  # warm-up: data cached, kernels warm
        on, off, written = [], [], 0
        for _ in range(args.rounds):
            t, steps, n = one_run({**base, "monitor": base.get("monitor") or {}}, work, cache)
            on.append(steps / t)
            written = n
            t, steps_off, _ = one_run({**base, "monitor": OFF}, work, cache)
            assert steps_off == steps
            off.append(steps / t)
        example = None if args.skip_example else example_run(args.config, work)
    print(f"task {base['task']} ({args.config}), {steps} steps per round ({args.epochs} epoch(s)), "
          f"{torch.get_num_threads()} threads; {args.rounds} alternating rounds")
    print(f"monitor defaults on: {max(on):8.1f} steps/s best  (rounds: {', '.join(f'{v:.0f}' for v in on)}; "
          f"{written} samples written per run)")
    print(f"monitor off:         {max(off):8.1f} steps/s best  (rounds: {', '.join(f'{v:.0f}' for v in off)})")
    paired = statistics.median(a / b for a, b in zip(on, off, strict=True))
    ratio = max(on) / max(off)
    print(f"ratio on / off, median of paired rounds: {paired:.3f}")
    verdict = "met" if ratio >= 0.97 else "NOT met"
    print(f"ratio on / off, best of {args.rounds}: {ratio:.3f}  (goal >= 0.97: {verdict})")
    if example is not None:
        train_s, accuracy, total = example
        acc = "-" if accuracy is None else f"{accuracy:.1%}"
        print(f"arith-chat `trainkit run {args.config}`: training {train_s:.1f} s (goal < 180 s: "
              f"{'met' if train_s < 180 else 'NOT met'}), held-out exact-match accuracy {acc} (goal >= 80 %: "
              f"{'met' if accuracy is not None and accuracy >= 0.8 else 'NOT met'}); whole pipeline {total:.1f} s")


if __name__ == "__main__":
    main()
