"""``make demo``: start a few real runs in the background with trainkit itself, then open trainmon
on them.

Three runs go to ROOT (default ``experiments/``), each a ``trainkit`` subprocess of its own session
(they go on after trainmon quits, and after this script ends):
  - ``<date>-demo-early-stop``: burgers with ``early_stopping.min_delta`` so large that no epoch
    counts as an improvement: it stops early after ``patience`` epochs;
  - ``<date>-demo-longer``: burgers for 40 epochs (a couple of minutes on a CPU);
  - ``<date>-demo-arith-chat``: ``trainkit run`` of ``examples/arith_chat.yaml`` (its training
    settings and its gate, accuracy >= 0.8; inference samples and layer health more often, which
    changes nothing of what it learns): a tiny transformer learns two-digit sums to 97.5-100 %
    held-out accuracy, then an evaluation writes one conversation per question and the report.
Each run gets an equal share of the CPU cores as its torch threads (``OMP_NUM_THREADS``, unless it
is set already): three runs with torch's default of one thread per core on 2 cores made some steps
20x slower (threads waiting on each other). A run folder that already exists is resumed or left as
it is (``trainkit`` decides). Each run's
console output goes to ``ROOT/.demo/<name>.out``. Then trainmon opens on ROOT (on a terminal;
otherwise ``trainmon --once`` prints the table), and when it quits the next commands to try are
printed. Ctrl-C ends this script cleanly (exit 130); the runs go on: ``trainkit stop --all``
stops them.

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

from trainkit.launcher import threads_env

BIN = Path(sys.executable).parent
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BURGERS = {"task": "burgers", "seed": 0, "batch_size": 32, "lr": 2.0e-3, "log_every_steps": 5,
           "checkpoint": {"every_steps": 0}, "model": {"width": 64, "depth": 2},
           "data": {"n_train": 512, "n_val": 128, "nx": 32, "viscosity": 0.01, "t_final": 0.3}}
# what the monitor shows more often in the demo; it answers in eval mode with the RNG forked, so the
# run learns exactly what examples/arith_chat.yaml learns
ARITH_SHOW = {"log_every_steps": 10, "monitor": {"samples_every_steps": 100, "layers_every_steps": 50}}


def arith_chat_config() -> dict:
    """examples/arith_chat.yaml (settings and gate) with the monitor's figures more often."""
    cfg = yaml.safe_load((EXAMPLES / "arith_chat.yaml").read_text(encoding="utf-8"))
    return {**cfg, "log_every_steps": ARITH_SHOW["log_every_steps"],
            "monitor": {**cfg.get("monitor", {}), **ARITH_SHOW["monitor"]}}


def runs() -> dict[str, tuple[str, dict]]:
    return {
        "demo-early-stop": ("train", {**BURGERS, "epochs": 60,
                                      "early_stopping": {"metric": "val_loss", "mode": "min", "patience": 3,
                                                         "min_delta": 100.0}}),
        "demo-longer": ("train", {**BURGERS, "epochs": 40, "data": {**BURGERS["data"], "n_train": 2048}}),
        "demo-arith-chat": ("run", arith_chat_config()),
    }


def start(root: Path) -> list[tuple[str, subprocess.Popen]]:
    side = root / ".demo"
    side.mkdir(parents=True, exist_ok=True)
    day = time.strftime("%Y-%m-%d")
    started = []
    planned = runs()
    env = threads_env(os.environ, len(planned), os.cpu_count())  # each run's share of the cores
    for name, (command, cfg) in planned.items():
        config = side / f"{name}.yaml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        run = root / f"{day}-{name}"
        out = open(side / f"{name}.out", "ab")  # noqa: SIM115 (the child owns it)
        proc = subprocess.Popen([str(BIN / "trainkit"), command, str(config), "--run-dir", str(run)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
        out.close()
        started.append((run.name, proc))
        print(f"started {run} (pid {proc.pid}; trainkit {command}; output in {side / (name + '.out')})", flush=True)
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


def next_steps(root: Path) -> str:
    """What to try next, and that the runs go on (printed when trainmon quits, or on Ctrl-C)."""
    r = "" if root == Path("experiments") else f" {root}"
    rr = "" if root == Path("experiments") else f" --root {root}"
    return (f"The demo runs go on in the background (the arith-chat one trains for a minute or two, then\n"
            f"evaluates). Next, after `. .venv/bin/activate` (or call .venv/bin/trainkit and .venv/bin/trainmon):\n"
            f"  trainkit status{r}                  # every run's state and progress\n"
            f"  trainmon{r}                         # the monitor again (q quits)\n"
            f"  trainkit experiments list{r}        # classified: the arith-chat run passes its gate\n"
            f"Stop the runs with: trainkit stop --all{rr}")


# leave the alternate screen, show the cursor, mouse reporting and bracketed paste off
TERMINAL_RESET = "\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1003l\x1b[?1006l\x1b[?1015l\x1b[?2004l"


def monitor(root: Path) -> int:
    """trainmon on ROOT, on this terminal. On Ctrl-C (a SIGINT to this process) trainmon gets a
    moment to end by itself (a terminal's Ctrl-C reaches it too), then is ended; a trainmon that
    did not end normally leaves the terminal as it found it (modes and screen restored here)."""
    import termios

    fd = sys.stdout.fileno()
    saved = termios.tcgetattr(fd)
    child = subprocess.Popen([str(BIN / "trainmon"), str(root)])
    try:
        return child.wait()
    except KeyboardInterrupt:
        _end(child)
        raise
    finally:
        if child.poll() is None:
            _end(child)
        if child.returncode != 0:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            sys.stdout.write(TERMINAL_RESET)
            sys.stdout.flush()


def _end(child: subprocess.Popen) -> None:
    for stop, grace in ((None, 5.0), (child.terminate, 5.0), (child.kill, None)):
        if stop is not None:
            stop()
        try:
            child.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:  # another Ctrl-C: no more waiting
            child.kill()
            child.wait()
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="experiments", help="where the runs go (default experiments/)")
    p.add_argument("--no-monitor", action="store_true", help="start the runs only; do not open trainmon")
    args = p.parse_args(argv)
    root = Path(args.root)
    started: list[tuple[str, subprocess.Popen]] = []
    try:
        started = start(root)
        code = 0
        if not args.no_monitor and sys.stdout.isatty():
            code = monitor(root)
        elif not args.no_monitor:
            wait_for_folders(root, [name for name, _ in started], started)
            for _, proc in started:
                if proc.poll() not in (None, 0):
                    print(f"pid {proc.pid} exited with {proc.returncode}", file=sys.stderr)
            code = subprocess.call([str(BIN / "trainmon"), str(root), "--once"])
    except KeyboardInterrupt:
        print("\ninterrupted." + (" " + next_steps(root) if started else ""), flush=True)
        return 130
    print("\n" + next_steps(root), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
