"""The cost of trainkit's Hugging Face callback: the tiny Qwen2 ``Trainer`` run (built from a config,
no download) without it, with it (samples off, the rest of the monitor on: alerts, layer health at
its default interval, the heartbeat and system samples, control checks), and with
``report_to="tensorboard"`` (the anchor: what W&B-style reporting costs), in one process, in
rounds that rotate the order of the variants, best of N. Every variant logs every step.

    python benchmarks/integration_overhead.py [--rounds 6] [--steps 200]

Goal: the callback costs <= 3 % of the steps/s and less than the TensorBoard reporter.
"""

from __future__ import annotations

import argparse
import gc
import os
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

GOAL = 0.03


def tiny_model() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64))


def data(n: int, length: int = 16) -> list[dict]:
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


def one_run(variant: str, steps: int, work: Path, n: int, spent: list[float] | None = None) -> float:
    """Steps per second of ``trainer.train()`` for one variant."""
    out = work / f"{variant}-{n}"
    callbacks = []
    if variant == "callback":
        cb = TrainkitCallback(work / "runs" / f"run-{n}", monitor={"samples_every_steps": 0})
        callbacks.append(timed(cb, spent) if spent is not None else cb)
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-3,
                             logging_steps=1, save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
                             report_to="tensorboard" if variant == "tensorboard" else "none")
    trainer = Trainer(model=tiny_model(), args=args, train_dataset=data(8 * steps), callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # no console output in any variant
    t0 = time.perf_counter()
    trainer.train()
    return steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6,
                    help="rounds (the order of the variants rotates); the best of each variant counts")
    ap.add_argument("--steps", type=int, default=200, help="optimizer steps per run")
    a = ap.parse_args(argv)
    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    variants = ("plain", "callback", "tensorboard")
    best = dict.fromkeys(variants, 0.0)
    inside: list[list[float]] = []  # seconds inside the callback's hooks per run: [start + end, steps]
    with tempfile.TemporaryDirectory(prefix="integration-overhead-") as tmp:
        work = Path(tmp)
        one_run("plain", 4, work, -1)  # warm-up: imports, first allocations
        for r in range(a.rounds):
            order = variants[r % 3:] + variants[:r % 3]  # each variant takes each place in turn
            for v in order:
                gc.collect()
                spent = [0.0, 0.0]
                best[v] = max(best[v], one_run(v, a.steps, work, r, spent))
                if v == "callback":
                    inside.append(spent)
    plain = best["plain"]
    cost = {v: 1 - best[v] / plain for v in variants}
    print(f"tiny Qwen2 HF Trainer, {a.steps} steps per run, best of {a.rounds} rotating rounds, 1 thread")
    for v in variants:
        print(f"  {v:<12} {best[v]:8.2f} steps/s   cost vs plain {cost[v]:+7.2%}")
    print(f"  ratio callback/tensorboard cost: "
          f"{cost['callback'] / cost['tensorboard']:.2f}" if cost["tensorboard"] > 0 else
          "  tensorboard cost not measurable in this run")
    fixed, per_run = min(s[0] for s in inside), min(s[1] for s in inside)
    print(f"  inside the callback: start + end {fixed * 1e3:.1f} ms once per run; steps {per_run / a.steps * 1e3:.3f} "
          f"ms per step = {per_run / a.steps * plain:.2%} of a plain step")
    met = cost["callback"] <= GOAL and cost["callback"] < cost["tensorboard"]
    print(f"goal (callback <= {GOAL:.0%} and below the TensorBoard reporter): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
