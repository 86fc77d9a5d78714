"""Finding items in one evaluation, without Textual: the search text of an item (prompt, answer,
expected, error), the query's terms and their match, the sort orders of the inspector, and score
ranges (``0.2-0.8``, ``<0.5``). The scan that the inspector's search worker drives is here too, so
that it is tested without an app."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from trainkit.formatting import fmt_sig
from tui.model.evals import ALL, Item, item_key, latest, shown_in

# The orders of the inspector's list (``s`` cycles them): as written (the file's order), the worst
# score first, the slowest first, the errors first (then the wrong answers).
WRITTEN, WORST, SLOWEST, ERRORS_FIRST = "as written", "worst score first", "slowest first", "errors first"
SORTS = (WRITTEN, WORST, SLOWEST, ERRORS_FIRST)

# Search text kept per item at most: a conversation file is at most 1 MiB (the bounded reader), the
# cache of every item's text together at most this many characters (beyond it, files are read again).
CACHE_CHARS = 64 * 1024 * 1024


def _words(v) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def item_text(item: Item, rec: dict | None) -> str:
    """What a search looks in (casefolded): every message of the conversation (the prompt and the
    answer), the response, the expected answer and the error(s), from the newer of the item's line
    and its conversation file; the line's fields alone when the file is missing or older."""
    shown, which = latest(item, rec)
    parts = [_words(shown.response), _words(shown.expected), _words(shown.error)]
    if rec is not None and which != "line":
        for m in rec.get("messages") or []:
            if isinstance(m, dict):
                parts.append(_words(m.get("content")))
        errors = rec.get("errors")
        if isinstance(errors, list):
            parts.extend(_words(e) for e in errors)
        parts.append(_words(rec.get("error")))
    return "\n".join(p for p in parts if p).casefold()


_TERM = re.compile(r'"([^"]*)"|(\S+)')


def parse_query(text: str) -> tuple[str, ...]:
    """The terms of a search: words, or ``"a phrase"`` in double quotes; casefolded, empty ones
    dropped. An item matches when its text holds every term."""
    return tuple(t for a, b in _TERM.findall(text) if (t := (a or b).casefold()))


def matches(terms: tuple[str, ...], text: str) -> bool:
    return all(t in text for t in terms)


class TextCache:
    """Each item's search text, kept while its line is the same (its ``t``) and while the cache
    holds fewer than ``max_chars`` characters; ``load`` gives an item's conversation record
    (``EvalItems.conversation``: the bounded reader, for items listed in ``responses.jsonl``).
    Safe to use from two threads (a cancelled search's worker may still be on its last item)."""

    def __init__(self, load: Callable[[Item], tuple[dict | None, str | None]], max_chars: int = CACHE_CHARS) -> None:
        self.load = load
        self.max_chars = max_chars
        self.chars = 0
        self._texts: dict[tuple[str, int], tuple[float | None, str]] = {}
        self._lock = threading.Lock()

    def text(self, item: Item) -> str:
        key = item_key(item)
        held = self._texts.get(key)
        if held is not None and held[0] == item.t:
            return held[1]
        rec, _ = self.load(item)
        text = item_text(item, rec)
        with self._lock:
            held = self._texts.pop(key, None)
            if held is not None:
                self.chars -= len(held[1])
            if self.chars + len(text) <= self.max_chars:
                self._texts[key] = (item.t, text)
                self.chars += len(text)
        return text


def scan(items: list[Item], terms: tuple[str, ...], text_of: Callable[[Item], str],
         cancelled: Callable[[], bool] = lambda: False, every_s: float = 0.05, every_n: int | None = None,
         clock: Callable[[], float] = time.monotonic) -> Iterator[tuple[list[Item], int]]:
    """Search ``items`` in order: yields (the hits found since the last yield, items searched so
    far) at the first hit, then each time ``every_s`` seconds have passed or ``every_n`` more items
    were searched, and once at the end; stops early, yielding nothing more, as soon as
    ``cancelled()`` says so."""
    hits: list[Item] = []
    last, since, first = clock(), 0, True
    for n, item in enumerate(items, 1):
        if cancelled():
            return
        if matches(terms, text_of(item)):
            hits.append(item)
        since += 1
        now = clock()
        if (first and hits) or now - last >= every_s or (every_n is not None and since >= every_n):
            first = first and not hits
            yield hits, n
            hits, last, since = [], now, 0
    if (since or not items) and not cancelled():
        yield hits, len(items)


# ---------------------------------------------------------------------------------------------
# scores, sorts, ranges


def value(item: Item) -> float | None:
    """An item's score as a number: its ``score`` (nrmse), else 1 for a correct answer and 0 for a
    wrong one; None for an error item (it has no score)."""
    if not item.ok:
        return None
    if item.score is not None:
        return item.score
    if item.correct is not None:
        return 1.0 if item.correct else 0.0
    return None


def higher_is_better(metric: str | None, items: list[Item]) -> bool:
    """Accuracy: a higher score is better; nrmse (an error): lower. Without a metric (no plan
    header), judged from the items: a ``correct`` field is accuracy's."""
    if metric in ("accuracy", "nrmse"):
        return metric == "accuracy"
    return any(i.correct is not None for i in items) or not any(i.score is not None for i in items)


def sort_items(items: list[Item], order: str, higher_better: bool = True) -> list[Item]:
    """``items`` in the order ``order`` (one of :data:`SORTS`); ties keep the written order, and
    items without the sorted value (an error's score, an unknown latency) come last."""
    if order == WORST:
        def key(i: Item):
            v = value(i)
            return (1, 0.0) if v is None else (0, v if higher_better else -v)
    elif order == SLOWEST:
        def key(i: Item):
            return (1, 0.0) if i.latency_s is None else (0, -i.latency_s)
    elif order == ERRORS_FIRST:
        def key(i: Item):
            return 0 if not i.ok else 1 if i.wrong else 2
    else:
        return list(items)
    return sorted(items, key=key)


class RangeError(ValueError):
    """A score range that cannot be read (the message says what is expected)."""


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_BETWEEN = re.compile(rf"^\s*({_NUM})\s*(?:-|\.\.|to)\s*({_NUM})\s*$")
_BOUND = re.compile(rf"^\s*(<=|>=|<|>|=|==)?\s*({_NUM})\s*$")


@dataclass(frozen=True)
class ScoreRange:
    """Scores from ``lo`` to ``hi`` (None: no bound), each end included unless ``*_open``."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, v: float | None) -> bool:
        if v is None or math.isnan(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def text(self) -> str:
        if self.lo is not None and self.hi is not None:
            if self.lo == self.hi and not (self.lo_open or self.hi_open):
                return f"= {fmt_sig(self.lo)}"
            return f"{fmt_sig(self.lo)} to {fmt_sig(self.hi)}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {fmt_sig(self.lo)}"
        return f"{'<' if self.hi_open else '<='} {fmt_sig(self.hi)}"


def parse_range(text: str) -> ScoreRange | None:
    """``0.2-0.8`` (both ends included; also ``0.2..0.8``, ``0.2 to 0.8``), ``<0.5``, ``<=0.5``,
    ``>0.5``, ``>=0.5``, ``=1`` or ``1``; None for an empty text (no range). Raises
    :class:`RangeError`."""
    if not text.strip():
        return None
    m = _BETWEEN.match(text)
    if m:
        lo, hi = float(m.group(1)), float(m.group(2))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise RangeError("the ends must be finite numbers")
        if lo > hi:
            raise RangeError(f"{fmt_sig(lo)} is above {fmt_sig(hi)}: write the low end first")
        return ScoreRange(lo, hi)
    m = _BOUND.match(text)
    if not m:
        raise RangeError(f"not a score range: {text.strip()!r} (e.g. 0.2-0.8, <0.5, >=0.9)")
    op, v = m.group(1) or "=", float(m.group(2))
    if not math.isfinite(v):
        raise RangeError("the bound must be a finite number")
    if op in ("=", "=="):
        return ScoreRange(v, v)
    if op.startswith("<"):
        return ScoreRange(hi=v, hi_open=op == "<")
    return ScoreRange(lo=v, lo_open=op == ">")


def listed(items: list[Item], *, which: str = ALL, score_range: ScoreRange | None = None,
           hits: set[tuple[str, int]] | None = None, order: str = WRITTEN, higher_better: bool = True) -> list[Item]:
    """The items the inspector lists: those of the filter ``which`` (all, errors, wrong), within
    ``score_range``, among the search's ``hits`` (None: no search), in the order ``order``."""
    out = [i for i in items if shown_in(i, which) and (score_range is None or score_range.contains(value(i)))
           and (hits is None or item_key(i) in hits)]
    return sort_items(out, order, higher_better)
