"""Progressive evaluation writing vs keeping everything in memory and writing at the end.

10,000 items with an instant model (a dict lookup), in one process, through the same runner
(trainkit.evaluation.runner.Runner, one worker thread). Only the sink differs:

* progressive (what `trainkit eval` ships): the worker writes each finished item's conversation
  file once under its final name, then appends + flushes its line to responses.jsonl (the line
  marks the item done; readers open only listed items' files) the moment the item finishes (no
  fsync; --durable is not measured);
* in memory (the seed's old way, the anchor): results are kept in a list; at the end
  responses.jsonl is written in one go and each conversation file with open().write().

Both produce the same bytes per item (same records). A third variant, in memory but writing the
conversation files with progressive's own system calls (os.open on a folder descriptor), isolates
the cost of being progressive (one write per line, interleaved with the files) from the file API.
Rounds alternate (ABC, CBA, ...: each pair in both orders); this machine's disk is noisy (kernel
time per file creation varies several-fold between rounds), so it prints the best of N of each
(timeit's rule, as the goal's verdict), the median of paired rounds and the CPU time per item.
Goal: progressive costs under 15 % against the in-memory way, on this disk and on tmpfs (/dev/shm):
both are measured by default.
Then the resume: a questions file of 10,001 items of which 10,000 are done; the time from
loading the questions to the first model call of the remaining item (plan, hash, precheck check,
reading responses.jsonl, checking 10,000 conversation files). Goal: under 1 s.

    python benchmarks/eval_writing.py [--items 10000] [--rounds 11] [--dir DIR ...]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from trainkit.evaluation.plan import EvalPaths, Plan, load_questions, write_precheck
from trainkit.evaluation.runner import Runner, prepare
from trainkit.evaluation.writer import (
    ProgressiveWriter,
    conversation_bytes,
    conversation_record,
    line_record,
    make_sink,
)
from trainkit.runfolder.files import dumps


def make_questions(n: int) -> list[dict]:
    return [{"id": i, "question": f"What is {i} + {i % 97}?", "answer": str(i + i % 97), "level": i % 5}
            for i in range(n)]


def instant_model(questions: list[dict]):
    answers = {q["id"]: q["answer"] for q in questions}
    return lambda item: answers[item["id"]]


class InMemorySink:
    """The old way: everything in memory, written once at the end. ``lowlevel``: the conversation
    files are written with the same system calls as the progressive writer (os.open on a folder
    descriptor, one os.write), minus its temp file + rename, so that only progressiveness differs."""

    def __init__(self, paths: EvalPaths, metric: str, model: str, *, lowlevel: bool = False) -> None:
        self.paths, self.metric, self.model, self.lowlevel = paths, metric, model, lowlevel
        self.results: list = []
        self.failure = None

    def submit(self, r) -> None:
        self.results.append(r)

    def close(self) -> None:
        self.paths.conversations.mkdir(parents=True, exist_ok=True)
        with open(self.paths.responses, "wb") as f:
            f.write(b"".join(dumps(line_record(r, self.metric)) + b"\n" for r in self.results))
        if not self.lowlevel:
            for r in self.results:
                with open(self.paths.conversations / r.item.file, "wb") as f:
                    f.write(conversation_bytes(conversation_record(r, self.metric, self.model)))
            return
        dir_fd = os.open(self.paths.conversations, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for r in self.results:
                fd = os.open(r.item.file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=dir_fd)
                os.write(fd, conversation_bytes(conversation_record(r, self.metric, self.model)))
                os.close(fd)
        finally:
            os.close(dir_fd)


_rounds = itertools.count()


def fresh_folder(base: Path, tag: str) -> EvalPaths:
    """A new folder per run; everything earlier is flushed to disk first (os.sync) so that its
    writeback does not land in the timed run. Earlier folders are kept until the end: deleting
    10,000 files (with the discard mount option) keeps the disk busy well after the unlinks."""
    os.sync()
    paths = EvalPaths(base / f"{tag}-{next(_rounds)}")
    paths.root.mkdir(parents=True)
    return paths


def timed(run) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of ``run()``."""
    c0, t0 = time.process_time(), time.perf_counter()
    run()
    return time.perf_counter() - t0, time.process_time() - c0


def run_memory(base: Path, plan: Plan, fn, lowlevel: bool = False) -> tuple[float, float]:
    paths = fresh_folder(base, "memory")

    def go() -> None:
        sink = InMemorySink(paths, plan.metric, plan.model, lowlevel=lowlevel)
        Runner(fn, plan.items, plan.metric, sink).run()
        sink.close()

    return timed(go)


def run_progressive(base: Path, plan: Plan, fn) -> tuple[float, float]:
    paths = fresh_folder(base, "progressive")
    write_precheck(paths, plan)  # written before the first item runs, outside the timed part

    def go() -> None:
        sink = make_sink(ProgressiveWriter(paths, plan.metric, plan.model), workers=1)
        Runner(fn, plan.items, plan.metric, sink).run()
        sink.close()

    return timed(go)


def bench_resume(base: Path, n: int) -> tuple[float, int]:
    """Seconds from loading the questions to the first model call, with ``n`` items done."""
    questions = make_questions(n + 1)
    qfile = base / "questions.jsonl"
    qfile.write_bytes(b"".join(orjson.dumps(q) + b"\n" for q in questions))
    fn = instant_model(questions)
    paths = fresh_folder(base, "resume")
    plan = Plan("resume", load_questions(qfile), str(qfile), "bench:instant", 1, "accuracy")
    prepare(paths, plan)
    sink = make_sink(ProgressiveWriter(paths, plan.metric, plan.model), workers=1)
    Runner(fn, plan.items[:n], plan.metric, sink).run()
    sink.close()
    os.sync()

    first_call: list[float] = []

    def watched(item):
        first_call.append(time.perf_counter())
        return fn(item)

    t0 = time.perf_counter()
    plan = Plan("resume", load_questions(qfile), str(qfile), "bench:instant", 1, "accuracy")
    state = prepare(paths, plan)
    sink = make_sink(ProgressiveWriter(paths, plan.metric, plan.model), workers=1)
    Runner(watched, state.todo, plan.metric, sink).run()
    sink.close()
    return first_call[0] - t0, len(state.todo)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--dir", action="append", help="where the files are written; repeat for several "
                   "(default: here, on disk, then /dev/shm, a tmpfs)")
    args = p.parse_args()
    n = args.items
    questions = make_questions(n)
    fn = instant_model(questions)
    plan = Plan("bench", questions, "generated", "bench:instant", 1, "accuracy")
    variants = {"seed": lambda b: run_memory(b, plan, fn), "same": lambda b: run_memory(b, plan, fn, lowlevel=True),
                "prog": lambda b: run_progressive(b, plan, fn)}
    print(f"items: {n:,} (instant model, 1 worker), {args.rounds} rounds in alternating order (ABC, CBA, ...)")
    for i, where in enumerate(args.dir or [".", *(["/dev/shm"] if os.path.isdir("/dev/shm") else [])]):
        with tempfile.TemporaryDirectory(dir=where) as d:
            base = Path(d)
            small = Plan("warm", questions[:500], "generated", "bench:instant", 1, "accuracy")
            run_memory(base, small, fn)
            run_progressive(base, small, fn)
            results: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
            for r in range(args.rounds):
                order = list(variants) if r % 2 == 0 else list(reversed(variants))  # no variant always goes first
                for k in order:
                    results[k].append(variants[k](base))
            resume = bench_resume(base, n) if i == 0 else None
        report(where, n, args.rounds, results, resume)


def report(where: str, n: int, rounds: int, results: dict, resume: tuple[float, int] | None) -> None:
    print(f"files in {where} (load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}):")
    labels = {"seed": "in memory, written at the end with open().write() (the seed's way)",
              "same": "in memory, written at the end with progressive's system calls",
              "prog": "progressive: conversation file, then its flushed line, per item"}
    for k, label in labels.items():
        wall = [w for w, _ in results[k]]
        cpu = min(c for _, c in results[k]) / n * 1e6
        print(f"  {label:<68} {n / min(wall):7,.0f} items/s best ({min(wall) / n * 1e6:5.1f} us/item, CPU "
              f"{cpu:5.1f}), median {n / statistics.median(wall):7,.0f}")
    prog = results["prog"]
    for k, name in (("seed", "the seed's way (the anchor)"), ("same", "the same-system-calls way")):
        best = min(w for w, _ in prog) / min(w for w, _ in results[k]) - 1
        pairs = statistics.median(p[0] / a[0] - 1 for p, a in zip(prog, results[k], strict=True))
        print(f"  overhead of progressive vs {name:<28} best of {rounds}: {best * 100:+6.1f} %  (median of "
              f"paired rounds {pairs * 100:+6.1f} %; goal < 15 %: {'met' if best < 0.15 else 'NOT met'})")
    if resume is not None:
        resume_s, left = resume
        print(f"  resume over {n:,} done items: first new item starts after {resume_s * 1000:.0f} ms "
              f"({left} item left; goal < 1 s: {'met' if resume_s < 1 else 'NOT met'})")

if __name__ == "__main__":
    main()
