"""`trainkit status` over the runs other tools wrote, side by side with status over trainkit's own
runs, and how fast an append to a live TensorBoard event file reaches trainmon's screen (issue 28).

Built once into a temp folder (``--keep DIR``: there, and reused when present):
  - ``trainkit/``: N trainkit run folders (``status_scan.py``'s layout: 20 epoch folders, a status,
    progress.json, resolved_config.json; a tenth running under this process's pid);
  - ``foreign/``: N Hugging Face ``Trainer`` output folders and N TensorBoard folders. The HF folders
    are real ``trainer_state.json`` layouts generated from one real ``Trainer`` run's
    (tests/foreign_scripts.py hf): two ``checkpoint-*`` folders each, a ``config.json``, and a
    ``log_history`` extended in the run's own pattern to 200..2,000 steps (a third of them short of
    ``max_steps``). Each TensorBoard folder holds a real ``SummaryWriter`` event file of S scalars
    (``train/loss`` every step, ``val/loss`` every 100; written once, hard-linked into every folder).
  Every file is dated an hour back (no run reads as running by its last write).

Timed: ``trainkit status ROOT --json`` end to end, a fresh process each time, the trainkit root (A)
against the foreign root (B) in paired rounds in both orders (AB, BA, ...): best of each and the
median of the paired ratios B/A, with a warm event cache (each event file's summary already in
$TRAINKIT_CACHE_DIR) and with a cold one (an empty cache each round: every event file parsed).
Goal: B within 2x of A. Then trainmon: the real ``trainmon ROOT`` on a pseudo-terminal of 120x36
over a root holding a live ``SummaryWriter`` in another process (tests/foreign_scripts.py live); K
appends of one step each, at random gaps; the time from the writer's flush to the row's ``step N``
showing in the terminal's output: p50, p95, max. Goal: 250 ms p95.

    python benchmarks/foreign_scan.py [--runs 1000] [--scalars 10000] [--rounds 4] [--cold-rounds 2]
                                      [--appends 60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "tests")]
BIN = Path(sys.executable).parent
COLS, ROWS = 120, 36


# ------------------------------------------------------------------ building

def script(*args: str, env: dict, cwd: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "tests" / "foreign_scripts.py"), *args], cwd=cwd, env=env,
                   check=True, capture_output=True)


def hf_template(base: Path, env: dict) -> dict:
    """The trainer_state.json of a real 100-step Trainer run (logging every 5, evaluating every 10)."""
    out = base / "hf-template"
    if not out.exists():
        script("hf", str(out), "--steps", "100", env=env, cwd=base)
    return orjson.loads((out / "checkpoint-100" / "trainer_state.json").read_bytes())


def hf_state(template: dict, step: int, max_steps: int) -> dict:
    """A trainer state at ``step`` of ``max_steps``, its log_history in the template's own pattern."""
    history = template["log_history"]
    train = next(h for h in history if "loss" in h)
    ev = next(h for h in history if "eval_loss" in h)
    every, eval_every = template["logging_steps"], template["eval_steps"]
    per_epoch = max_steps / template["num_train_epochs"]
    log = []
    for s in range(every, step + 1, every):
        log.append({**train, "step": s, "epoch": round(s / per_epoch, 4), "loss": 2.0 / (1 + s / 50)})
        if s % eval_every == 0:
            log.append({**ev, "step": s, "epoch": round(s / per_epoch, 4), "eval_loss": 2.2 / (1 + s / 60)})
    best = min(h["eval_loss"] for h in log if "eval_loss" in h)
    control = {"TrainerControl": {"args": {**template["stateful_callbacks"]["TrainerControl"]["args"],
                                           "should_training_stop": step >= max_steps}, "attributes": {}}}
    return {**template, "stateful_callbacks": control, "global_step": step, "max_steps": max_steps,
            "epoch": round(step / per_epoch, 4), "log_history": log, "best_metric": best,
            "best_model_checkpoint": f"out/checkpoint-{step}"}


def build_hf(root: Path, n: int, template: dict) -> None:
    config = orjson.dumps({"model_type": "tiny-regressor", "architectures": ["Tiny"]})
    for i in range(n):
        max_steps = 200 + (i * 37) % 1800
        step = max_steps if i % 3 else max_steps // 2  # a third stopped short of their target
        run = root / f"hf-{i:05d}"
        for s in (step - template["save_steps"], step):
            (run / f"checkpoint-{s}").mkdir(parents=True)
            (run / f"checkpoint-{s}" / "trainer_state.json").write_bytes(
                orjson.dumps(hf_state(template, s, max_steps), option=orjson.OPT_INDENT_2))
            (run / f"checkpoint-{s}" / "config.json").write_bytes(config)
        (run / "config.json").write_bytes(config)


def build_tensorboard(root: Path, base: Path, n: int, scalars: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    one = base / "tb-template"
    if not one.exists():
        w = SummaryWriter(str(one))
        for step in range(scalars - scalars // 100):
            w.add_scalar("train/loss", 1.0 / (step + 1), step)
            if step % 100 == 0:
                w.add_scalar("val/loss", 2.0 / (step + 1) + 1e-4 * step, step)
        w.close()
    [event] = list(one.iterdir())
    for i in range(n):
        (root / f"tb-{i:05d}").mkdir(parents=True)
        target = root / f"tb-{i:05d}" / event.name
        try:
            os.link(event, target)
        except OSError:
            shutil.copyfile(event, target)


def date_back(root: Path, seconds: float = 3600) -> None:
    t = time.time() - seconds
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (t, t), follow_symlinks=False)


def build(base: Path, n: int, scalars: int) -> tuple[Path, Path]:
    from status_scan import build as build_trainkit

    env = dict(os.environ, TRAINKIT_CACHE_DIR=str(base / "data-cache"), HF_HUB_OFFLINE="1")
    own, foreign = base / "trainkit", base / "foreign"
    if not (base / "built").exists():
        for p in (own, foreign):
            shutil.rmtree(p, ignore_errors=True)
        t0 = time.perf_counter()
        build_trainkit(own, n, 20)
        build_hf(foreign, n, hf_template(base, env))
        build_tensorboard(foreign, base, n, scalars)
        date_back(foreign)
        (base / "built").write_text(f"{n} {scalars}\n")
        print(f"built {n:,} trainkit runs, {n:,} HF output folders and {n:,} TensorBoard folders "
              f"({scalars:,} scalars each) in {time.perf_counter() - t0:.0f} s")
    refresh_heartbeats(own)
    return own, foreign


def refresh_heartbeats(root: Path) -> None:
    for status in root.glob("*/training_status.json"):
        s = orjson.loads(status.read_bytes())
        if s.get("state") == "running":
            s["heartbeat_at"], s["pid"] = time.time(), os.getpid()
            status.write_bytes(orjson.dumps(s))


# ------------------------------------------------------------------ status, paired rounds

def status_s(root: Path, cache: Path) -> tuple[float, int]:
    env = dict(os.environ, TRAINKIT_CACHE_DIR=str(cache))
    t0 = time.perf_counter()
    out = subprocess.run([str(BIN / "trainkit"), "status", str(root), "--json"], env=env, check=True,
                         capture_output=True).stdout
    return time.perf_counter() - t0, len(orjson.loads(out))


def paired(own: Path, foreign: Path, rounds: int, cache_for) -> tuple[list[float], list[float], list[float]]:
    a, b, ratios = [], [], []
    for r in range(rounds):
        refresh_heartbeats(own)
        order = ("A", "B") if r % 2 == 0 else ("B", "A")
        got = {}
        for which in order:
            got[which] = status_s(own, cache_for("A")) if which == "A" else status_s(foreign, cache_for("B"))
        a.append(got["A"][0])
        b.append(got["B"][0])
        ratios.append(got["B"][0] / got["A"][0])
    return a, b, ratios


# ------------------------------------------------------------------ trainmon, append to screen

class Terminal:
    """``trainmon ROOT`` on a pseudo-terminal; a thread keeps what it writes, with the time."""

    def __init__(self, root: Path, env: dict) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = dict(env, TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(ROWS))
        self.master, self.chunks, self.lock = master, [], threading.Lock()
        self.proc = subprocess.Popen([str(BIN / "trainmon"), str(root)], stdin=slave, stdout=slave, stderr=slave,
                                     env=env, start_new_session=True, close_fds=True)
        os.close(slave)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.chunks.append((time.time(), data))

    def mark(self) -> int:
        with self.lock:
            return len(self.chunks)

    def seen(self, index: int, needle: bytes) -> float | None:
        """When ``needle`` first shows in what was written since ``index`` (the chunk that completed it)."""
        with self.lock:
            chunks = self.chunks[index:]
        text = b""
        for t, c in chunks:
            text += c
            if needle in text:
                return t
        return None

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def append_latency(base: Path, appends: int) -> tuple[list[float], int]:
    root = base / "live-root"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    env = dict(os.environ, TRAINKIT_CACHE_DIR=str(base / "live-cache"))
    writer = subprocess.Popen([sys.executable, str(REPO / "tests" / "foreign_scripts.py"), "live",
                               str(root / "runs" / "live")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    assert writer.stdout.readline().strip() == "ready"

    def write(n: int) -> tuple[int, float]:
        writer.stdin.write(f"{n}\n")
        writer.stdin.flush()
        _, step, flushed = writer.stdout.readline().split()
        return int(step), float(flushed)

    step, _ = write(5000)  # steps 0..4999: from here on every step number is unique on the screen
    term = Terminal(root, env)
    lats, misses = [], 0
    try:
        deadline = time.time() + 60
        while term.seen(0, f"step {step}".encode()) is None:  # the first paint, the watcher up
            if time.time() > deadline or term.proc.poll() is not None:
                raise SystemExit("trainmon did not show the live run within 60 s")
            time.sleep(0.05)
        time.sleep(1.0)
        rng = random.Random(0)
        for _ in range(appends):
            time.sleep(rng.uniform(0.1, 0.3))
            idx = term.mark()
            step, flushed = write(1)
            needle = f"step {step}".encode()
            t_seen = None
            while time.time() - flushed < 3.0:
                t_seen = term.seen(idx, needle)
                if t_seen is not None:
                    break
                time.sleep(0.001)
            if t_seen is None:
                misses += 1
            else:
                lats.append(t_seen - flushed)
    finally:
        term.close()
        writer.stdin.close()
        writer.wait(timeout=60)
    return lats, misses


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1000, help="trainkit runs, HF folders and TensorBoard folders, each")
    p.add_argument("--scalars", type=int, default=10_000, help="scalars per event file")
    p.add_argument("--rounds", type=int, default=4, help="paired rounds with a warm event cache")
    p.add_argument("--cold-rounds", type=int, default=2, help="paired rounds with an empty event cache")
    p.add_argument("--appends", type=int, default=60, help="appends to the live event file")
    p.add_argument("--keep", metavar="DIR", help="build into DIR (kept, and reused when already built there)")
    args = p.parse_args()
    tmp = None
    if args.keep:
        base = Path(args.keep).resolve()
        base.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(dir=".")
        base = Path(tmp.name).resolve()
    try:
        own, foreign = build(base, args.runs, args.scalars)
        print(load_line())
        warm = base / "warm-cache"
        _, n_own = status_s(own, base / "own-cache")  # warm the page cache and the imports
        _, n_foreign = status_s(foreign, warm)  # and the event summaries
        assert (n_own, n_foreign) == (args.runs, 2 * args.runs), (n_own, n_foreign)

        a, b, ratios = paired(own, foreign, args.rounds, lambda which: base / "own-cache" if which == "A" else warm)
        print(f"trainkit status --json, {args.runs:,} trainkit runs (A): best {min(a):.3f} s, median "
              f"{statistics.median(a):.3f} s")
        print(f"trainkit status --json, {args.runs:,} HF + {args.runs:,} TensorBoard folders, warm cache (B): best "
              f"{min(b):.3f} s, median {statistics.median(b):.3f} s")
        warm_ratio = statistics.median(ratios)
        print(f"  warm B/A: {min(b) / min(a):.2f}x best to best, {warm_ratio:.2f}x median of {len(ratios)} paired "
              f"rounds ({', '.join(f'{r:.2f}' for r in ratios)}); goal <= 2x: "
              f"{'met' if warm_ratio <= 2 else 'NOT met'}")
        if args.cold_rounds:
            count = [0]

            def cold(which: str) -> Path:
                if which == "A":
                    return base / "own-cache"
                count[0] += 1
                fresh = base / f"cold-cache-{count[0]}"
                shutil.rmtree(fresh, ignore_errors=True)
                return fresh
            a, b, ratios = paired(own, foreign, args.cold_rounds, cold)
            cold_ratio = statistics.median(ratios)
            print(f"trainkit status --json, the foreign folders with an empty event cache (every event file parsed): "
                  f"best {min(b):.3f} s, median {statistics.median(b):.3f} s; A best {min(a):.3f} s")
            print(f"  cold B/A: {min(b) / min(a):.2f}x best to best, {cold_ratio:.2f}x median of {len(ratios)} "
                  f"paired rounds; goal <= 2x: {'met' if cold_ratio <= 2 else 'NOT met'}")
        print(load_line())
        lats, misses = append_latency(base, args.appends)
        p95 = pct(lats, 0.95)
        print(f"append to a live event file -> trainmon's screen (120x36 pty), {len(lats)} appends: p50 "
              f"{pct(lats, 0.5) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {max(lats) * 1000:.0f} ms, "
              f"{misses} not seen within 3 s; ratio to the 250 ms goal: {p95 / 0.25:.2f} "
              f"({'met' if p95 <= 0.25 and not misses else 'NOT met'})")
        print(load_line())
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
