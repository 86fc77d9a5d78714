"""trainmon's inspector search over 10,000 conversations, measured on the real app.

The evaluation folder is written the way ``trainkit eval`` writes it: its plan (``precheck.jsonl``),
then each item through the shipped progressive writer (``ProgressiveWriter``: the conversation
file, then its flushed line of ``responses.jsonl``) from trainkit's own runner with an instant
model; 10,000 arithmetic questions, one in 100 of them (from item 50 on) holding the word
``giraffe`` in its prompt only (so that only the conversation files can find them), one in 10
answered wrong. The run folder around it is a ``synthetic_run``.

The real ``TrainmonApp`` is driven headless through Pilot at 120x36 (the workspace, Enter on the
run, ``i`` on its evaluation). Each figure is the time until the app has done it and is idle again
(its message queue drained: the rows are in the table):
  - anchor 1, listing: from ``i`` to the inspector listing all 10,000 items;
  - anchor 2, the plain ``e`` filter over the same items (errors only, then ``e`` again: all), each;
  - the search ``/giraffe`` Enter, cold (every conversation file read for the first time: the
    files are in the OS page cache, as they are just after an evaluation wrote them): the time to
    the first hit in the list and to the last hit (every item searched, 100 hits listed);
  - the same search warm (a second query, ``/giraffe 50``, then ``/giraffe`` again: the item texts
    come from the inspector's cache).
Printed: each figure (best and median of ``--rounds`` app sessions), and the ratio of the search's
last hit to each anchor, measured side by side in the same sessions. The search runs in a thread
worker: the anchors are main-thread work that blocks the screen while it runs; the search does not
(the keys act while it reads, see tests/tui/test_tui_inspector_search.py).

    python benchmarks/inspector_search.py [--items 10000] [--rounds 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from trainkit.evaluation.plan import EvalPaths, Plan, write_precheck
from trainkit.evaluation.runner import Runner
from trainkit.evaluation.writer import ProgressiveWriter, make_sink
from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp

WORD = "giraffe"


def build(root: Path, n: int) -> Path:
    """ROOT with one finished run holding the evaluation ``search`` of ``n`` items; its folder."""
    run = synthetic_run(root, "2026-01-01-evaluated", total=1, scores=[0.5], state="finished").root
    questions = [{"id": i, "question": f"What is {i} + {i % 97}?" + (f" Ask the {WORD}." if i % 100 == 50 else ""),
                  "answer": str(i + i % 97)} for i in range(n)]
    plan = Plan("search", questions, "generated", "instant", 1, "accuracy")
    paths = EvalPaths(run / "evals" / "search")
    paths.conversations.mkdir(parents=True)
    write_precheck(paths, plan)
    answers = {q["id"]: q["answer"] if q["id"] % 10 else "wrong" for q in questions}
    sink = make_sink(ProgressiveWriter(paths, plan.metric, plan.model), workers=1)
    Runner(lambda item: answers[item["id"]], plan.items, plan.metric, sink).run()
    sink.close()
    return paths.root


async def settle(pilot, done, timeout: float = 120.0) -> float:
    """Seconds until ``done()`` holds with the app idle (its queue drained), polled every 5 ms."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if done():
            await pilot.pause()
            if done():
                return time.perf_counter() - t0
        await pilot.pause(0.005)
    raise TimeoutError("the app did not get there")


async def first_and_last(pilot, insp, query: str) -> tuple[float, float]:
    """``/query`` Enter: seconds to the first hit listed, and to every item searched (idle)."""
    insp.debounce_s = 60.0  # typed at once: the search starts at Enter, not when the typing pauses
    before = insp.generation
    await pilot.press("slash")
    insp.query_one("#ask").value = query
    await pilot.pause()

    async def first_hit() -> float:  # on the app's own loop: it sees the list between two messages
        while not (insp.generation > before and insp.hits is not None and insp.shown):
            await asyncio.sleep(0.001)
        return time.perf_counter()

    seen = asyncio.create_task(first_hit())
    t0 = time.perf_counter()
    await pilot.press("enter")  # (returns once the app has handled the key and what it posted at once)
    await settle(pilot, lambda: insp.hits is not None and insp.searched == insp.search_total)
    last = time.perf_counter() - t0
    return await asyncio.wait_for(seen, 1) - t0, last


async def session(root: Path, n: int, hits: int) -> dict[str, float]:
    app = TrainmonApp(Options(str(root), watch=False))
    out: dict[str, float] = {}
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, lambda: app.model.loaded and app.screen.query("#runs"))
        await pilot.press("enter")
        await settle(pilot, lambda: getattr(app.screen, "evals", None))
        t0 = time.perf_counter()
        await pilot.press("i")
        await settle(pilot, lambda: type(app.screen).__name__ == "InspectorScreen" and len(app.screen.shown) == n)
        out["list"] = time.perf_counter() - t0
        insp = app.screen
        t0 = time.perf_counter()
        await pilot.press("e")
        await settle(pilot, lambda: insp.which == "errors")
        await pilot.press("e")
        await settle(pilot, lambda: insp.which == "all" and len(insp.shown) == n)
        out["e"] = (time.perf_counter() - t0) / 2
        out["cold first"], out["cold last"] = await first_and_last(pilot, insp, WORD)
        if len(insp.shown) != hits:
            raise AssertionError(f"{len(insp.shown)} hits, {hits} expected")
        await first_and_last(pilot, insp, f"{WORD} 50")
        out["warm first"], out["warm last"] = await first_and_last(pilot, insp, WORD)
        if len(insp.shown) != hits:
            raise AssertionError(f"{len(insp.shown)} hits, {hits} expected")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keep", metavar="DIR", help="build the evaluation in DIR and keep it")
    args = p.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="inspector-search-"))
    root = base / "experiments"
    try:
        if not root.exists():
            t0 = time.perf_counter()
            folder = build(root, args.items)
            print(f"built {folder} ({args.items:,} items) in {time.perf_counter() - t0:.1f} s")
        hits = sum(1 for i in range(args.items) if i % 100 == 50)
        rounds = [asyncio.run(session(root, args.items, hits)) for _ in range(args.rounds)]
        print(f"inspector search over {args.items:,} conversations ({hits} hits), {args.rounds} app sessions:")
        names = {"list": "anchor: list every item (i)", "e": "anchor: the e filter (each way)",
                 "cold first": "search, cold: first hit", "cold last": "search, cold: last hit",
                 "warm first": "search, warm: first hit", "warm last": "search, warm: last hit"}
        for key, label in names.items():
            values = [r[key] for r in rounds]
            best, median = min(values) * 1000, statistics.median(values) * 1000
            print(f"  {label:34s} best {best:8.1f} ms   median {median:8.1f} ms")
        for what in ("cold last", "warm last"):
            for anchor in ("list", "e"):
                ratio = statistics.median(r[what] / r[anchor] for r in rounds)
                print(f"  ratio {what} / {names[anchor].split(': ')[1]}: {ratio:.2f} (median of the sessions' ratios)")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
