"""Regenerate ``screenshots/*.svg`` (``make screenshots``) from real runs: trainkit trains a small
sweep of burgers runs in a temporary ROOT (three of one sweep, one that stops early, one killed
with SIGKILL, one still running while the pictures are taken), evaluates the best one with
``trainkit eval`` (real items, real latencies), then trainmon is driven through Pilot:

  workspace.svg, workspace-80x24.svg   the runs at 120x36 and 80x24 (names, ETA or why)
  run-detail.svg                       a run's detail at its epochs table (best epoch, early stopping)
  inspector.svg                        the conversation inspector on the real evaluation
  compare.svg                          two runs compared: the config keys that differ, then the curves
  confirm-stop.svg                     the confirmation of stopping the running run (Cancel focused)

The running run is stopped at the end (``trainkit stop --wait``); nothing is left behind.

    python tools/make_screenshots.py [--out screenshots] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui.app import Options, TrainmonApp  # noqa: E402

DATE = "2026-12-07"
BASE = {"task": "burgers", "seed": 0, "epochs": 8, "batch_size": 32, "lr": 2.0e-3, "log_every_steps": 2,
        "heartbeat_s": 1.0, "system_every_s": 1.0, "model": {"width": 64, "depth": 2},
        "data": {"n_train": 512, "n_val": 128, "nx": 32}}
FINISHED = {  # name -> what differs from BASE
    f"{DATE}-sweep-lr1e-3": {"lr": 1.0e-3},
    f"{DATE}-sweep-lr3e-3": {"lr": 3.0e-3},
    f"{DATE}-sweep-wide-256": {"model": {"width": 256, "depth": 2}},
    f"{DATE}-early-stop": {"epochs": 40, "early_stopping": {"metric": "val_loss", "mode": "min", "patience": 2,
                                                            "min_delta": 0.05}},
}
RUNNING = f"{DATE}-long-run"
KILLED = f"{DATE}-killed"
LONG = {"epochs": 400, "data": {"n_train": 4096, "n_val": 128, "nx": 32}}
EVALUATED = f"{DATE}-sweep-wide-256"
SIZE, NARROW = (120, 36), (80, 24)
BIN = Path(sys.executable).parent


def merged(over: dict) -> dict:
    out = dict(BASE)
    for k, v in over.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_config(root: Path, name: str, over: dict) -> Path:
    path = root / name / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(merged(over), sort_keys=False))
    return path


def trainkit(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(BIN / "trainkit"), *args], cwd=cwd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"trainkit {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r


def status_of(run: Path) -> dict:
    try:
        return orjson.loads((run / "training_status.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}


def wait(predicate, what: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def start(root: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "trainkit"), "train", str(root / name / "config.yaml")], cwd=root.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def make_runs(root: Path) -> subprocess.Popen:
    """The finished runs, the evaluation, the killed run; returns the running one's process."""
    for name, over in FINISHED.items():
        trainkit("train", str(write_config(root, name, over)), cwd=root.parent)
        print(f"trained {name}")
    trainkit("eval", str(root / EVALUATED), "--name", "default", cwd=root.parent, check=False)  # a gate may fail
    print(f"evaluated {EVALUATED}")
    write_config(root, KILLED, LONG)
    killed = start(root, KILLED)
    wait(lambda: (status_of(root / KILLED).get("current_epoch") or 0) >= 2, "the run to kill")
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    print(f"killed {KILLED}")
    write_config(root, RUNNING, LONG)
    running = start(root, RUNNING)
    wait(lambda: (status_of(root / RUNNING).get("current_epoch") or 0) >= 3, "the running run")
    print(f"{RUNNING} is running")
    return running


async def until(pilot, predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def ready(pilot) -> None:
    app = pilot.app
    await until(pilot, lambda: app.model.loaded and app.screen.query("#runs") and app.watching, "the workspace")


async def select(pilot, root: Path, name: str) -> None:
    pilot.app.screen.query_one("#runs").select_key(str(root / name))
    await pilot.pause()


async def workspace(pilot, root: Path) -> None:
    await select(pilot, root, RUNNING)


async def detail(pilot, root: Path) -> None:
    await select(pilot, root, f"{DATE}-early-stop")
    await pilot.press("enter")
    await until(pilot, lambda: getattr(pilot.app.screen, "history", None) is not None, "the detail")
    await pilot.press("2")  # the epochs section: the best epoch starred, the early-stopping counter
    await pilot.pause(0.3)


async def inspector(pilot, root: Path) -> None:
    await select(pilot, root, EVALUATED)
    await pilot.press("enter")
    await until(pilot, lambda: getattr(pilot.app.screen, "evals", None), "the evaluations")
    await pilot.press("i")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "InspectorScreen", "the inspector")
    await pilot.press("down", "down", "down")
    await pilot.pause(0.3)


async def compare(pilot, root: Path) -> None:
    await select(pilot, root, f"{DATE}-sweep-lr1e-3")
    await pilot.press("space", "space", "c")
    await until(pilot, lambda: getattr(pilot.app.screen, "comparison", None) is not None, "the comparison")
    await pilot.pause(0.3)  # the keys that differ first, then the curves


async def confirm_stop(pilot, root: Path) -> None:
    await select(pilot, root, RUNNING)
    await pilot.press("x")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen", "the confirmation")
    await pilot.pause(0.2)


SHOTS = [("workspace", SIZE, workspace), ("workspace-80x24", NARROW, workspace), ("run-detail", SIZE, detail),
         ("inspector", SIZE, inspector), ("compare", SIZE, compare), ("confirm-stop", SIZE, confirm_stop)]


async def shoot(root: Path, out: Path, name: str, size, steps) -> None:
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        await steps(pilot, root)
        app.save_screenshot(filename=f"{name}.svg", path=str(out))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="screenshots")
    p.add_argument("--keep", metavar="DIR", help="make the runs in DIR/experiments and keep them")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="trainmon-shots-"))
    root = base / "experiments"
    if root.exists():
        shutil.rmtree(root)
    running = None
    try:
        running = make_runs(root)
        for name, size, steps in SHOTS:
            asyncio.run(shoot(root, out, name, size, steps))
            print(f"wrote {out / (name + '.svg')}")
    finally:
        if running is not None and running.poll() is None:
            trainkit("stop", str(root / RUNNING), "--wait", cwd=base, check=False)
            try:
                running.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(running.pid, signal.SIGKILL)
                running.wait()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
