"""Model callables for the evaluation tests (``--model eval_models:NAME``; tests/ is on PYTHONPATH).

Questions look like ``{"id": 3, "question": "3+4", "answer": "7"}``; :func:`arith` answers them
correctly. Behaviour is steered by environment variables so that the same model spec (and so the
same plan) can behave differently between a run and its resume:

* ``EVAL_GATE_DIR``: items whose id is >= ``EVAL_GATE_FROM`` (default 0) wait until the file
  ``EVAL_GATE_DIR/<id>`` exists (the test releases items one by one: no sleeps, no timing);
* ``EVAL_FAIL_IDS``: comma-separated ids on which :func:`flaky` raises;
* ``EVAL_BARRIER``: :func:`concurrent` makes the first N calls meet at a barrier (proves N run at once).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def solve(question: str) -> str:
    a, b = question.split("+")
    return str(int(a) + int(b))


def arith(item: dict) -> str:
    return solve(item["question"])


def _gate(item: dict) -> None:
    gate = os.environ.get("EVAL_GATE_DIR")
    if gate and int(item["id"]) >= int(os.environ.get("EVAL_GATE_FROM", "0")):
        path = Path(gate) / str(item["id"])
        deadline = time.monotonic() + 120  # a test that never opens the gate fails, it does not hang
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {path} never opened")
            time.sleep(0.005)


def gated(item: dict) -> str:
    _gate(item)
    return solve(item["question"])


def flaky(item: dict) -> str:
    fail = {s for s in os.environ.get("EVAL_FAIL_IDS", "").split(",") if s}
    if str(item["id"]) in fail:
        raise ValueError(f"boom on item {item['id']}")
    return solve(item["question"])


def chat(item: dict) -> dict:
    """A chat-style answer: messages with roles; the answer is the last assistant message."""
    answer = solve(item["question"])
    return {"messages": [{"role": "system", "content": "You add numbers."},
                         {"role": "user", "content": item["question"]},
                         {"role": "assistant", "content": f"  {answer}\n"}]}


def mixed(item: dict):
    """id % 5: 0 correct, 1 None (garbage), 2 raises, 3 hangs (a timeout), 4 wrong answer."""
    kind = int(item["id"]) % 5
    if kind == 1:
        return None
    if kind == 2:
        raise RuntimeError("model exploded")
    if kind == 3:
        time.sleep(30)
    if kind == 4:
        return "not a number"
    return solve(item["question"])


_barrier: threading.Barrier | None = None
_lock = threading.Lock()
_calls = 0


def concurrent(item: dict) -> dict:
    """The first EVAL_BARRIER calls wait for each other (fails unless they run at once); every
    answer is large, so interleaved writes would be visible as broken lines."""
    global _barrier, _calls
    n = int(os.environ.get("EVAL_BARRIER", "1"))
    with _lock:
        if _barrier is None:
            _barrier = threading.Barrier(n)
        _calls += 1
        first = _calls <= n
    if first:
        _barrier.wait(timeout=20)
    answer = solve(item["question"])
    return {"answer": answer, "messages": [{"role": "user", "content": item["question"]},
                                           {"role": "assistant", "content": answer, "padding": "x" * 20000}]}


def big_gated(item: dict) -> dict:
    """:func:`gated` with a large answer: a 200 kB conversation file, which a reader racing the
    writer would see torn."""
    _gate(item)
    answer = solve(item["question"])
    return {"answer": answer, "messages": [{"role": "user", "content": item["question"]},
                                           {"role": "assistant", "content": answer, "padding": "x" * 200_000}]}
