"""A short, thread-safe memo for the server: each key is computed at most once per ``ttl`` by one
thread, so a burst of requests costs one computation.

While one thread recomputes an expired value, the others are answered with the previous value at
once (stale-while-revalidate: at most ``ttl`` plus one computation old); only the very first
computation of a key makes concurrent callers wait for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class Memo:
    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self.computations = 0  # for tests and the benchmark
        self._cond = threading.Condition()
        self._values: dict[Hashable, tuple[Any, float]] = {}  # key -> (value, computed at: start)
        self._busy: set[Hashable] = set()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._cond:
            while True:
                held = self._values.get(key)
                if held is not None and self.clock() - held[1] < self.ttl:
                    return held[0]
                if key not in self._busy:
                    self._busy.add(key)
                    break
                if held is not None:  # another thread is recomputing it: the previous value will do
                    return held[0]
                self._cond.wait()
        started = self.clock()
        try:
            value = compute()
        except BaseException:
            with self._cond:
                self._busy.discard(key)
                self._cond.notify_all()  # a waiter tries in its turn
            raise
        with self._cond:
            self._values[key] = (value, started)
            self.computations += 1
            self._busy.discard(key)
            self._cond.notify_all()
        return value
