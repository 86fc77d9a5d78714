"""Steps/s of the trainkit engine with all logging on vs a bare hand-written PyTorch loop.

Same task (the built-in burgers surrogate), same model, data, batch size, steps and per-epoch
validation, in one process. Three variants per round, side by side: the bare loop, the engine with a
step record every step (log_every_steps: 1) and the engine at the default cadence (a record every 10
steps, as a run that sets nothing does). Rounds alternate the order (bare, every, default; then
default, every, bare; ...: each pair runs in both orders, ABBA), so that neither side always runs
on a machine warmed (or disturbed) by the other. This machine is noisy (+-20 % between rounds), so
it prints the best of N of each (timeit's rule) and the median of the ratios of the paired rounds.
The engine rewrites training_status.json every second, samples system.jsonl every second, writes
the per-epoch artifacts, progress.json, best.pt and a fsync'd checkpoint every epoch. Each step
record carries the global gradient norm (one fused norm over the gradients, on recorded steps only).
Goals: engine / bare >= 0.97 with a record every step, >= 0.98 at the default cadence.

    python benchmarks/engine_overhead.py [--rounds 11] [--epochs 2] [--n-train 16384]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import torch

from trainkit.config import resolve
from trainkit.tasks import get_task
from trainkit.train import session
from trainkit.train.display import ProgressDisplay
from trainkit.train.engine import Trainer


def settings(args, epochs: int, log_every_steps: int = 1) -> dict:
    return {"task": "burgers", "epochs": epochs, "batch_size": 32, "lr": 1e-3, "log_every_steps": log_every_steps,
            "heartbeat_s": 1.0, "system_every_s": 1.0, "data": {"n_train": args.n_train, "n_val": 256}}


def config(args, epochs: int):
    return resolve(settings(args, epochs), source="benchmark")


def bare_loop(cfg, cache: Path) -> tuple[float, int]:
    """What a person writes by hand: no logging, no checkpoints, validation each epoch."""
    t0 = time.perf_counter()
    task = get_task(cfg.task)
    torch.manual_seed(cfg.seed)
    data = task.build_data(dict(cfg.data), cache)
    model = task.build_model(dict(cfg.model), data)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    x, y = data.train
    n, steps = x.shape[0], 0
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n)
        for b in range(0, n, cfg.batch_size):
            idx = perm[b:b + cfg.batch_size]
            loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        model.eval()
        task.validate(model, data.val, cfg.batch_size)
    return time.perf_counter() - t0, steps


class EpochEndTimer:
    """Measures the engine's epoch-end bookkeeping (artifacts, checkpoints, progress), validation
    excluded: a figure that the machine's noise does not swamp."""

    def __init__(self) -> None:
        self.total = 0.0
        self.validation = 0.0
        self.epochs = 0

    def install(self, trainer: Trainer) -> None:
        measure, end, validate = trainer._measure_epoch, trainer._end_epoch, trainer.task.validate

        def timed_measure(*a, **k):
            t = time.perf_counter()
            out = measure(*a, **k)
            self.total += time.perf_counter() - t
            return out

        def timed_end(*a, **k):
            t = time.perf_counter()
            end(*a, **k)
            self.total += time.perf_counter() - t
            self.epochs += 1

        def timed_validate(*a, **k):
            t = time.perf_counter()
            out = validate(*a, **k)
            self.validation += time.perf_counter() - t
            return out

        trainer._measure_epoch = timed_measure
        trainer._end_epoch = timed_end
        trainer.task.validate = timed_validate

    @property
    def ms_per_epoch(self) -> float:
        return (self.total - self.validation) / max(self.epochs, 1) * 1000


def engine(args, cache: Path, workdir: Path, timer: EpochEndTimer, log_every_steps: int = 1) -> tuple[float, int]:
    run = Path(tempfile.mkdtemp(dir=workdir))
    config_file = run / "config.json"
    config_file.write_bytes(orjson.dumps(settings(args, args.epochs, log_every_steps)))
    log = logging.getLogger("trainkit")
    handler = logging.FileHandler(run / "train.log")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    display = ProgressDisplay(interactive=False, plain_every_s=1e9)
    t0 = time.perf_counter()
    with session.claim(session.TrainRequest(str(config_file), run_dir=str(run), cache_dir=cache)) as prep:
        trainer = Trainer(prep, torch.device("cpu"), display=display)
        timer.install(trainer)
        outcome = trainer.run()
    elapsed = time.perf_counter() - t0
    log.removeHandler(handler)
    handler.close()
    assert outcome.state == "finished", outcome
    return elapsed, trainer.state.global_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n-train", type=int, default=16384)
    args = p.parse_args()
    cfg = config(args, args.epochs)
    with tempfile.TemporaryDirectory(dir=".") as d:
        work = Path(d)
        cache = work / "cache"
        bare_loop(config(args, 1), cache)  # warm-up: generate and cache the data, warm the kernels
        results: dict[str, list[float]] = {"bare": [], "every": [], "default": []}
        timer = EpochEndTimer()
        runs = {"bare": lambda: bare_loop(cfg, cache), "every": lambda: engine(args, cache, work, timer),
                "default": lambda: engine(args, cache, work, EpochEndTimer(), log_every_steps=10)}
        steps = 0
        for r in range(args.rounds):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))  # each pair in both orders (ABBA)
            for k in order:
                t, n = runs[k]()
                assert steps in (0, n), (k, n, steps)
                steps = n
                results[k].append(n / t)
    bare = results["bare"]
    b = max(bare)  # best of N: the least disturbed run of each (timeit's rule)
    print(f"steps per run: {steps} ({args.epochs} epochs x {steps // args.epochs} steps, batch {cfg.batch_size}, "
          f"{torch.get_num_threads()} threads); {args.rounds} rounds, the order reversed every other round; "
          f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    labels = {"bare": "bare PyTorch loop", "every": "engine, a record every step",
              "default": "engine, default cadence (10)"}
    for k, label in labels.items():
        print(f"{label + ':':<34}{max(results[k]):8.1f} steps/s best  "
              f"(rounds: {', '.join(f'{v:.0f}' for v in results[k])})")
    e = max(results["every"])
    print(f"engine extra time per epoch (best vs best, a record every step): "
          f"{(steps / e - steps / b) / args.epochs * 1000:.1f} ms")
    epoch_s = steps / args.epochs / b
    print(f"engine epoch-end bookkeeping, measured directly: {timer.ms_per_epoch:.1f} ms/epoch "
          f"= {timer.ms_per_epoch / 1000 / epoch_s * 100:.2f} % of a {epoch_s:.2f} s epoch")
    for k, goal in (("every", 0.97), ("default", 0.98)):
        best = max(results[k]) / b
        paired = statistics.median(x / y for x, y in zip(results[k], bare, strict=True))
        verdict = "met" if best >= goal else "NOT met"
        print(f"ratio {labels[k]} / bare: best of {args.rounds} {best:.3f}, median of paired rounds {paired:.3f} "
              f"(goal >= {goal}: {verdict})")


if __name__ == "__main__":
    main()
