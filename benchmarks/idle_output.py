"""What trainmon writes to the terminal while nothing new happens, with the header's host figures
(CPU, memory, GPUs: issue 26, section 5) against the same trainmon without them (the anchor).

ROOT holds one live run kept alive by trainkit's own heartbeat thread (``RunWriter.go_live``:
``training_status.json`` rewritten every 5 s, a ``system.jsonl`` sample every 10 s, no new
metrics: a run whose step is slow) and three finished runs. Each variant is the real trainmon on a
pseudo-terminal of 120x36 (the ``Pty`` of ``benchmarks/tui_scale.py``):

  - header: ``trainmon ROOT``, as a user starts it;
  - anchor: ``tui.cli.main([ROOT])`` with the workspace's host sampling switched off (its worker
    replaced by a no-op before the app starts), everything else the same.

After the first paint and a settling wait (the first host sample lands within a second), the
bytes written to the terminal and the CPU time of the process are counted over an idle window;
the variants alternate ABBA. Printed per variant: the median B/s and CPU % over the rounds, and
how many times the window's output held the header's ``CPU`` figure (a repaint of the host
figures); then the header's cost over the anchor. The issue's goal: a live run with nothing new
costs <= 20 B/s of terminal output. The host's CPU % moves with everything else the machine runs
(on a shared machine, other jobs): the figures are steadied (5 % steps, kept until a whole step
moves), so a busy, noisy host shows as more repaints here.

    python benchmarks/idle_output.py [--idle S] [--rounds N] [--settle S]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tui_scale import Pty, first_paint, verdict  # noqa: E402  (the harness of the TUI benchmarks)

from trainkit.runfolder.writer import RunWriter  # noqa: E402
from trainkit.testing import synthetic_run  # noqa: E402

GOAL_BPS = 20.0
NOISE = ("import time\nwhile True:\n    t = time.monotonic()\n    while time.monotonic() - t < 7: pass\n"
         "    time.sleep(7)\n")
ANCHOR = ("import sys; import tui.screens.workspace as w; "
          "w.WorkspaceScreen.sample_host = lambda self, make: None; "
          "from tui.cli import main; sys.exit(main(sys.argv[1:]))")


def build(root: Path) -> RunWriter:
    """Three finished runs and one live run whose heartbeat thread runs in this process."""
    now = time.time()
    for i in range(3):
        paths = synthetic_run(root, f"2026-01-0{i + 1}-done", total=3, scores=[0.9, 0.7, 0.6], state="finished")
        with open(paths.metrics, "ab") as f:
            for s in range(300):
                f.write(orjson.dumps({"kind": "step", "step": s, "epoch": s // 100, "loss": 1.0 / (1 + s / 40),
                                      "t": now - 300 + s}) + b"\n")
    synthetic_run(root, "2026-01-09-live", total=10, scores=[0.8, 0.6], state=None)
    live = RunWriter(root / "2026-01-09-live")
    with open(live.paths.metrics, "ab") as f:
        for s in range(200):
            f.write(orjson.dumps({"kind": "step", "step": s, "epoch": s // 100, "loss": 1.0 / (1 + s / 40),
                                  "t": now - 200 + s}) + b"\n")
    live.live.update(current_epoch=2, total_epochs=10, step=200, steps_per_epoch=100, loss=0.1667, lr=1e-3,
                     device="cpu")
    live.go_live(heartbeat_s=5.0, system_every_s=10.0)
    return live


class AnchorPty(Pty):
    """The anchor: the same trainmon, started through ``python -c`` with the host sampling off."""

    def __init__(self, root: Path, marker: Path) -> None:
        import tui_scale

        real = tui_scale.subprocess.Popen

        def popen(args, **kw):
            return real([sys.executable, "-c", ANCHOR, *args[1:]], **kw)

        tui_scale.subprocess.Popen = popen
        try:
            super().__init__(root, marker)
        finally:
            tui_scale.subprocess.Popen = real


def measure(kind, root: Path, marker: Path, settle_s: float, idle_s: float) -> tuple[float, float, int, int]:
    """(bytes/s, CPU %, header repaints, their bytes) of one idle window."""
    app = kind(root, marker)
    try:
        first_paint(app, marker)
        time.sleep(settle_s)
        start = app.mark()
        cpu, t0, t1 = app.idle(idle_s)
        out = app.bytes_between(t0, t1)
        with app.lock:
            chunks = [c for t, c in app.chunks[start:] if t0 <= t < t1]
        repaints = [c for c in chunks if b"CPU" in c]
        return out / (t1 - t0), cpu / (t1 - t0) * 100, len(repaints), sum(map(len, repaints))
    finally:
        app.close()
        marker.unlink(missing_ok=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--idle", type=float, default=30.0, help="seconds of each idle window (default 30)")
    p.add_argument("--rounds", type=int, default=2, help="windows per variant, alternating ABBA (default 2)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds after the first paint before counting")
    p.add_argument("--noisy", action="store_true",
                   help="a busy loop on one core, on and off every 7 s, so that the host's CPU % moves")
    a = p.parse_args()
    variants = [("header", Pty), ("anchor", AnchorPty)]
    with tempfile.TemporaryDirectory(prefix="trainmon-idle-") as tmp:
        base = Path(tmp)
        root = base / "experiments"
        live = build(root)
        noise = subprocess.Popen([sys.executable, "-c", NOISE]) if a.noisy else None
        try:
            marker = base / "painted"
            got: dict[str, list[tuple[float, float, int, int]]] = {name: [] for name, _ in variants}
            for i in range(a.rounds):
                for name, kind in (variants if i % 2 == 0 else variants[::-1]):
                    got[name].append(measure(kind, root, marker, a.settle, a.idle))
        finally:
            live.heartbeat.stop()
            if noise is not None:
                noise.kill()
                noise.wait()
    print(f"trainmon on an idle live run (heartbeat every 5 s, system.jsonl every 10 s, no new metrics), "
          f"120x36, {a.rounds} x {a.idle:g} s per variant, ABBA{', a busy loop on and off' if a.noisy else ''}; "
          f"load average {os.getloadavg()[0]:.2f}")
    med = {}
    for name, _ in variants:
        bps = [g[0] for g in got[name]]
        cpu = [g[1] for g in got[name]]
        med[name] = statistics.median(bps)
        repaints, their = sum(g[2] for g in got[name]), sum(g[3] for g in got[name])
        print(f"{name:7s} terminal output  {med[name]:.1f} B/s median ({', '.join(f'{b:.1f}' for b in bps)})   "
              f"CPU {statistics.median(cpu):.2f} %   header repaints {repaints}"
              + (f" ({their / repaints:.0f} B each)" if repaints else "")
              + (f"   (goal <= {GOAL_BPS:g} B/s: {verdict(med[name] <= GOAL_BPS)})" if name == "header" else ""))
    print(f"header's cost   {med['header'] - med['anchor']:+.1f} B/s over the anchor "
          f"(ratio {med['header'] / med['anchor']:.2f})" if med["anchor"] else
          f"header's cost   {med['header'] - med['anchor']:+.1f} B/s over the anchor (the anchor wrote nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
