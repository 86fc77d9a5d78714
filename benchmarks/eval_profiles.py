"""Evaluation speed with the ``emoji_think`` data profile against ``plain_sft`` (the anchor), with
the accuracy of each.

Two arith-chat runs are trained the same way (the same config, seed and steps), one with each
profile; each run's ``best.pt`` is then evaluated on the task's 200 held-out questions through the
run's own profile (what ``trainkit eval RUN`` does): emoji_think's replies are longer (the thinking
emojis and the stop emoji) and its logits processor runs at every generated token. A second pair
measures the cost of the profile alone on ONE checkpoint (the emoji_think run's best.pt, evaluated
through emoji_think and through plain_sft; plain_sft's accuracy there is not meaningful: it keeps
the emojis in the answer). Rounds alternate (emoji, plain, emoji, ...); items/s is the best of N
(timeit's rule; the machine is noisy), with the median of the paired ratios. Goal: emoji_think
within 1.3x of plain_sft (ratio of items/s >= 1 / 1.3 = 0.77).

    python benchmarks/eval_profiles.py [--rounds 3] [--epochs 12]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

CONFIG = {"task": "arith-chat", "epochs": 12, "seed": 1, "batch_size": 32, "lr": 2.0e-3,
          "lr_schedule": {"name": "cosine", "warmup_steps": 50, "min_lr": 1.0e-4}, "log_every_steps": 25,
          "model": {"width": 64, "depth": 3, "heads": 4, "block_size": 96},
          "data": {"n_train": 8000, "n_val": 512, "digits": 2, "operations": "+", "system_prompt": "Be exact."},
          "monitor": {"samples_every_steps": 0, "layers_every_steps": 0}}


def trainkit(*args: str, env: dict) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "trainkit", *map(str, args)], env=env, capture_output=True, text=True)
    if r.returncode not in (0, 3):
        raise SystemExit(f"trainkit {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r


def evaluate(run: Path, env: dict, name: str) -> tuple[float, float | None, float]:
    """(items/s, accuracy, wall seconds) of one evaluation of the run's best.pt on the default questions."""
    shutil.rmtree(run / "evals" / name, ignore_errors=True)
    t0 = time.perf_counter()
    trainkit("eval", run, "--name", name, env=env)
    wall = time.perf_counter() - t0
    summary = orjson.loads((run / "evals" / name / "test_summary.json").read_bytes())
    return summary["done"] / summary["duration_s"], summary.get("accuracy"), wall


def with_profile(run: Path, profile: str, into: Path) -> Path:
    """A copy of ``run`` whose resolved config names ``profile`` (the same best.pt)."""
    shutil.copytree(run, into, ignore=shutil.ignore_patterns("evals", "reports"))
    cfg = orjson.loads((into / "resolved_config.json").read_bytes())
    cfg["profile"] = profile
    (into / "resolved_config.json").write_bytes(orjson.dumps(cfg))
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eval-profiles-"))
    env = {**os.environ, "TRAINKIT_CACHE_DIR": str(work / "cache")}
    runs = {}
    for profile in ("plain_sft", "emoji_think"):
        cfg = work / f"{profile}.yaml"
        cfg.write_text(yaml.safe_dump({**CONFIG, "epochs": args.epochs, "profile": profile}))
        t0 = time.perf_counter()
        trainkit("train", cfg, "--run-dir", work / profile, env=env)
        print(f"trained {profile:<12} {args.epochs} epochs in {time.perf_counter() - t0:.0f} s", flush=True)
        runs[profile] = work / profile
    same = {"emoji_think": runs["emoji_think"],
            "plain_sft": with_profile(runs["emoji_think"], "plain_sft", work / "same-plain")}

    for title, pair in (("each run through its own profile", runs),
                        ("one checkpoint (emoji_think's), both profiles", same)):
        rates: dict[str, list[float]] = {"emoji_think": [], "plain_sft": []}
        accuracy: dict[str, float | None] = {}
        for i in range(args.rounds):
            for profile in ("emoji_think", "plain_sft") if i % 2 == 0 else ("plain_sft", "emoji_think"):
                rate, acc, _ = evaluate(pair[profile], env, f"bench{i}")
                rates[profile].append(rate)
                accuracy[profile] = acc
        ratios = [e / p for e, p in zip(rates["emoji_think"], rates["plain_sft"], strict=True)]
        best = max(rates["emoji_think"]) / max(rates["plain_sft"])
        print(f"== {title}")
        for profile in ("plain_sft", "emoji_think"):
            acc = accuracy[profile]
            print(f"{profile:<12} {max(rates[profile]):7.1f} items/s best of {args.rounds}   accuracy "
                  f"{'-' if acc is None else f'{acc * 100:.1f} %'}")
        print(f"ratio emoji_think / plain_sft items/s: best {best:.3f}, median of paired rounds "
              f"{statistics.median(ratios):.3f}  (goal >= {1 / 1.3:.2f}, i.e. within 1.3x: "
              f"{'met' if best >= 1 / 1.3 else 'NOT met'})", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
