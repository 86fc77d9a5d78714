"""The cost of trainkit's Hugging Face callback: the tiny Qwen2 ``Trainer`` run (built from a config,
no download, sized so that a step takes about 25 ms on one CPU thread) without it, with it (samples
off, the rest of the monitor on: alerts, layer health at its default interval, the heartbeat and
system samples, control checks, every evaluation and log recorded), and with
``report_to="tensorboard"`` (the anchor: what W&B-style reporting costs), in one process. Every
variant logs every step.

The machine is shared and noisy, and whichever run goes first in a pair is slower, so each
variant is paired with a plain run in both orders (ABBA: plain, X, X, plain); the figure is the
median over the pairs of X's steps/s over plain's (timeit's best of N is printed beside it). The
time spent inside the callback's hooks is measured too (a figure the load of other processes
hardly moves).

    python benchmarks/integration_overhead.py [--rounds 6] [--steps 200]

Goal: the callback costs <= 2 % of a 25 ms step (median of the ABBA pairs) and less than the
TensorBoard reporter.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from trainkit.integrations.hf import TrainkitCallback  # noqa: E402

GOAL = 0.02
STEP_MS = 25.0  # the step the goal is stated for


def tiny_model(hidden: int) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=100, hidden_size=hidden, intermediate_size=2 * hidden,
                                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                        max_position_embeddings=64))


def data(n: int, length: int = 32) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"input_ids": (ids := torch.randint(1, 100, (length,), generator=g)), "labels": ids.clone()}
            for _ in range(n)]


FIXED_HOOKS = ("on_train_begin", "on_train_end")


def timed(callback: TrainkitCallback, spent: list[float]) -> TrainkitCallback:
    """Every hook of ``callback`` adds its duration to ``spent`` (the time inside the callback, a
    figure that the load of other processes on the machine hardly moves): ``spent[0]`` the start
    and the end (once per run), ``spent[1]`` the hooks of every step."""
    def wrap(name, fn):
        slot = 0 if name in FIXED_HOOKS else 1

        def hook(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[slot] += time.perf_counter() - t0
        return hook

    for name in dir(callback):
        if name.startswith("on_"):
            setattr(callback, name, wrap(name, getattr(callback, name)))
    return callback


def one_run(variant: str, steps: int, work: Path, n: str, hidden: int, spent: list[float] | None = None) -> float:
    """Steps per second of ``trainer.train()`` for one variant."""
    out = work / f"{variant}-{n}"
    callbacks = []
    if variant == "callback":
        cb = TrainkitCallback(work / "runs" / f"run-{n}", monitor={"samples_every_steps": 0})
        callbacks.append(timed(cb, spent) if spent is not None else cb)
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-3,
                             logging_steps=1, save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
                             report_to="tensorboard" if variant == "tensorboard" else "none")
    trainer = Trainer(model=tiny_model(hidden), args=args, train_dataset=data(8 * steps), callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # no console output in any variant
    t0 = time.perf_counter()
    trainer.train()
    return steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6, help="ABBA rounds: each pairs plain with every variant twice")
    ap.add_argument("--steps", type=int, default=200, help="optimizer steps per run")
    ap.add_argument("--hidden", type=int, default=256, help="the model's width (256: about 25 ms a step, 1 thread)")
    a = ap.parse_args(argv)
    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    variants = ("callback", "tensorboard")
    best = dict.fromkeys(("plain", *variants), 0.0)
    ratios: dict[str, list[float]] = {v: [] for v in variants}
    inside: list[list[float]] = []  # seconds inside the callback's hooks per run: [start + end, steps]
    with tempfile.TemporaryDirectory(prefix="integration-overhead-") as tmp:
        work = Path(tmp)
        one_run("plain", 4, work, "warm", a.hidden)  # warm-up: imports, first allocations
        for r in range(a.rounds):
            for v in variants:
                rates = {}
                for i, name in enumerate(("plain", v, v, "plain")):  # ABBA: each goes first once
                    gc.collect()
                    spent = [0.0, 0.0]
                    rate = one_run(name, a.steps, work, f"{r}-{v}-{i}", a.hidden, spent)
                    best[name] = max(best[name], rate)
                    rates.setdefault(name, []).append(rate)
                    if name == "callback":
                        inside.append(spent)
                ratios[v] += [x / p for x, p in zip(rates[v], rates["plain"], strict=True)]  # adjacent pairs
    plain = best["plain"]
    step_ms = 1e3 / plain
    print(f"tiny Qwen2 HF Trainer (hidden {a.hidden}), {a.steps} steps per run, {a.rounds} ABBA rounds "
          f"({2 * a.rounds} pairs per variant), 1 thread; a plain step takes {step_ms:.1f} ms (best)")
    print(f"  {'plain':<12} {plain:8.2f} steps/s best")
    cost = {}
    for v in variants:
        med = statistics.median(ratios[v])
        cost[v] = 1 - med
        print(f"  {v:<12} {best[v]:8.2f} steps/s best; median of pairs {v}/plain {med:.4f}: cost {cost[v]:+7.2%} "
              f"(best of N: {1 - best[v] / plain:+7.2%})")
    fixed, per_run = min(s[0] for s in inside), statistics.median(s[1] for s in inside)
    per_step_ms = per_run / a.steps * 1e3
    print(f"  inside the callback: start + end {fixed * 1e3:.1f} ms once per run; {per_step_ms:.3f} ms per step "
          f"= {per_step_ms / STEP_MS:.2%} of a {STEP_MS:.0f} ms step ({per_step_ms / step_ms:.2%} of this one)")
    if cost["tensorboard"] > 0:
        print(f"  ratio of the costs callback/tensorboard: {cost['callback'] / cost['tensorboard']:.2f}")
    met = cost["callback"] <= GOAL and cost["callback"] < cost["tensorboard"]
    print(f"goal (callback <= {GOAL:.0%} of a ~{STEP_MS:.0f} ms step, median of ABBA pairs, and below the TensorBoard "
          f"reporter): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
