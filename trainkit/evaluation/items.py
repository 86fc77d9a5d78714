"""One evaluation item: call the model (with a timeout), retry with exponential backoff, score.

A failure of the model (it raises, times out or returns garbage) is that item's failure only: after
the retries it becomes an ``error`` result and the evaluation goes on. No torch here.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from trainkit.errors import first_line
from trainkit.evaluation.plan import PlanItem
from trainkit.evaluation.scoring import Unscorable, item_fields

ModelFn = Callable[[dict], Any]


class Garbage(ValueError):
    """The model returned something that is not an answer."""


class ItemTimeout(TimeoutError):
    pass


@dataclass
class RetryPolicy:
    """``retries`` more attempts after a failed one, waiting ``backoff_s * 2**(n-1)`` before the
    n-th retry; ``timeout_s`` (None: no limit) bounds each call."""

    retries: int = 2
    backoff_s: float = 0.5
    timeout_s: float | None = None

    def delay(self, failed_attempt: int) -> float:
        return self.backoff_s * 2 ** (failed_attempt - 1)


@dataclass
class ItemResult:
    item: PlanItem
    status: str  # "ok" | "error"
    response: Any = None
    raw: Any = None
    messages: list | None = None
    fields: dict = field(default_factory=dict)
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    traceback: str | None = None
    attempts: int = 1
    latency_s: float = 0.0
    t: float = 0.0


def call_model(fn: ModelFn, item: dict, timeout_s: float | None) -> Any:
    """``fn(item)``; with a timeout the call runs in a daemon thread that is abandoned when late."""
    if not timeout_s:
        return fn(item)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(item)
        except BaseException as e:  # handed to the caller below
            box["error"] = e

    t = threading.Thread(target=target, daemon=True, name="eval-call")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise ItemTimeout(f"timed out after {timeout_s:g}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _valid_messages(messages: Any) -> bool:
    return isinstance(messages, list) and all(isinstance(m, dict) and "role" in m for m in messages)


def extract_answer(raw: Any) -> tuple[Any, list | None]:
    """(answer, messages) from what the model returned: a plain value is the answer; a dict may
    carry ``answer`` and ``messages`` (without ``answer``, the last assistant message is it)."""
    messages = None
    if isinstance(raw, dict):
        messages = raw.get("messages")
        if messages is not None and not _valid_messages(messages):
            raise Garbage("'messages' must be a list of objects with a 'role'")
        if "answer" in raw:
            answer = raw["answer"]
        else:
            said = [m.get("content") for m in messages or () if m.get("role") == "assistant"]
            if not said:
                raise Garbage("returned a dict without 'answer' (and no assistant message)")
            answer = said[-1]
    else:
        answer = raw
    if answer is None or not isinstance(answer, (str, int, float, list, dict)):
        raise Garbage(f"returned {type(answer).__name__}; expected str or dict")
    try:
        orjson.dumps(answer)
    except TypeError as e:
        raise Garbage(f"the answer is not JSON-serializable ({e})") from None
    return answer, messages


def describe_error(e: BaseException) -> str:
    if isinstance(e, ItemTimeout):
        return str(e)
    if isinstance(e, (Garbage, Unscorable)):
        return f"garbage: {e}"
    return first_line(e)


def run_item(fn: ModelFn, item: PlanItem, metric: str, policy: RetryPolicy,
             stop: threading.Event) -> ItemResult | None:
    """Evaluate one item with retries. None when a stop request came during a backoff (the item
    is then not finished and runs again on resume)."""
    errors: list[str] = []
    attempt = 0
    while True:
        attempt += 1
        raw = None
        t0 = time.perf_counter()
        try:
            raw = call_model(fn, item.model_input(), policy.timeout_s)
            latency = time.perf_counter() - t0
            answer, messages = extract_answer(raw)
            fields = item_fields(metric, answer, item.expected)
        except Exception as e:  # the model raised, timed out or returned garbage: that item fails
            latency = time.perf_counter() - t0
            errors.append(describe_error(e))
            if attempt <= policy.retries:
                if stop.wait(policy.delay(attempt)):
                    return None
                continue
            return ItemResult(item, "error", raw=raw, fields={}, error=errors[-1], errors=errors,
                              traceback=traceback.format_exc(limit=20), attempts=attempt, latency_s=latency,
                              t=time.time())
        return ItemResult(item, "ok", response=answer, raw=raw, messages=messages, fields=fields, errors=errors,
                          attempts=attempt, latency_s=latency, t=time.time())

