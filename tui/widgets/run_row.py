"""One row of the runs table, Textual-free: which columns fit a width (the name first), the names
as shown (a prefix shared by every row shortened when the names do not fit), each cell's text
(numbers by :func:`~trainkit.formatting.fmt_fit`, never cut) and the state's style with and
without colour."""

from __future__ import annotations

import os
from dataclasses import dataclass

from rich.text import Text

from trainkit.formatting import fmt_duration, fmt_fit
from trainkit.runfolder import CRASHED, FAILED, style_of
from tui.model.views import RunView
from tui.widgets.glyphs import bar, sparkline

PAD = 2  # every column's cell padding (one each side)
SCROLLBAR = 2  # kept free for the vertical scrollbar, so that the columns never jump
NAME_WHOLE = 24  # names up to this long show whole wherever the width allows (120 columns on)
NAME_MAX = 40
ELLIPSIS = "…"
SEPARATORS = "-_."


@dataclass(frozen=True)
class Col:
    key: str
    label: str
    width: int
    priority: int  # lower drops first when the width is short; 90 and over are always shown
    grow: int = 0  # the most it widens to when there is room left


COLUMNS = (
    Col("name", "RUN", 0, 100),  # its width is chosen: the name gets width first
    Col("state", "STATE", 12, 99),
    Col("progress", "PROGRESS", 14, 97, grow=24),
    Col("spark", "LOSS TREND", 16, 60),
    Col("loss", "LOSS", 8, 90),
    Col("best", "BEST", 15, 50),
    Col("why", "ETA / WHY", 12, 94, grow=32),
    Col("thr", "THRPT", 7, 30),
    Col("hb", "BEAT", 6, 40),
    Col("warn", "⚠", 1, 85),  # left out at 80 columns: the ETA / WHY cell starts with ⚠ then
)
ESSENTIAL = 90


def choose_columns(width: int, longest: int) -> tuple[list[Col], dict[str, int]]:
    """The columns that fit ``width`` in screen order, and each one's width. The name column gets
    ``longest`` (plus the mark) up to :data:`NAME_WHOLE` before any optional column is added,
    the optional columns come by priority, and what is left widens the name (up to ``longest``)
    and then the ETA / WHY cell (a failed run's error) and the progress bar."""
    avail = width - SCROLLBAR
    want_name = 1 + min(longest, NAME_MAX)  # 1: the mark (• marked)
    chosen = [c for c in COLUMNS if c.priority >= ESSENTIAL]
    used = sum(c.width + PAD for c in chosen if c.key != "name") + PAD
    first = min(want_name, 1 + NAME_WHOLE)
    for c in sorted((c for c in COLUMNS if c.priority < ESSENTIAL), key=lambda c: -c.priority):
        if avail - used - (c.width + PAD) >= first:
            chosen.append(c)
            used += c.width + PAD
    widths = {c.key: c.width for c in chosen}
    left = avail - used
    widths["name"] = max(8, min(left, want_name))
    left -= widths["name"]
    for c in sorted(chosen, key=lambda c: c.key != "why"):
        if c.grow and left > 0:
            extra = min(left, c.grow - c.width)
            widths[c.key] += extra
            left -= extra
    return [c for c in COLUMNS if c in chosen], widths


def shared_prefix(names: list[str]) -> int:
    """The length of the prefix every name shares, cut after its last separator (``2026-11-`` of
    ``2026-11-20-a`` and ``2026-11-21-b``), so that no word is cut in two; 0 when none."""
    if len(names) < 2:
        return 0
    common = os.path.commonprefix(names)
    cut = max(common.rfind(s) for s in SEPARATORS) + 1
    return cut if all(len(n) > cut for n in names) else 0


def shown_name(name: str, width: int, prefix: int) -> str:
    """``name`` in ``width`` characters: without the ``prefix`` every row shares when one is given
    (``…21-wide-lr3e-3``: every row alike, so that they line up), else whole when it fits; cut at
    the end with ``…`` only when that is still too long."""
    if prefix:
        name = ELLIPSIS + name[prefix:]
    if len(name) <= width:
        return name
    return name[:max(width - 1, 0)] + ELLIPSIS


MONO_STYLES = {FAILED: "bold reverse", CRASHED: "bold reverse", "stopped": "bold", "running": "bold",
               "evaluating": "bold", "pending": "dim", "queued": "dim", "paused": "italic", "suspended": "italic"}


def state_style(state: str, mono: bool) -> str:
    """The state's style; without colour (``NO_COLOR``) only attributes: bold, reverse, dim, italic
    (a colour turned grey read dark grey on near-black)."""
    return MONO_STYLES.get(state, "") if mono else style_of(state)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + ELLIPSIS


class Cell:
    """One cell's text, made into Rich text only when its row is drawn: a table of 10,000 runs
    builds 100,000 cells, of which a screen shows a few hundred (``Text`` objects for all of them
    took most of the first paint). ``tail`` follows ``text`` unstyled."""

    __slots__ = ("text", "style", "justify", "tail")

    def __init__(self, text: str, style: str = "", justify: str | None = None, tail: str = "") -> None:
        self.text, self.style, self.justify, self.tail = text, style, justify, tail

    def body(self) -> str:
        """The styled part of the cell's text."""
        return self.text

    @property
    def plain(self) -> str:
        return self.body() + self.tail

    def __str__(self) -> str:
        return self.plain

    def _key(self) -> tuple:
        return self.text, self.style, self.justify, self.tail

    def __eq__(self, other: object) -> bool:
        """Same text, style and place: a row whose cells all equal the shown ones is not repainted."""
        return type(other) is type(self) and self._key() == other._key()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  (mutable: never a dict key)

    def __rich__(self) -> Text:
        t = Text(self.body(), style=self.style, justify=self.justify)
        if self.tail:
            t.append(self.tail)
        return t


class SparkCell(Cell):
    """A sparkline drawn when its row is drawn, from the values it was given."""

    __slots__ = ("values", "width")

    def __init__(self, values: tuple[float, ...], width: int, style: str) -> None:
        super().__init__("", style)
        self.values, self.width = values, width

    def body(self) -> str:
        return sparkline(self.values, self.width)

    def _key(self) -> tuple:
        return self.values, self.width, self.style


@dataclass
class Layout:
    """What every row of one drawing shares: the columns, their widths, the shared name prefix."""

    cols: list[Col]
    widths: dict[str, int]
    prefix: int = 0
    mono: bool = False


def best_text(view: RunView, width: int) -> str:
    """``val_loss 0.2306``: the number whole (by fmt_fit), the metric's name shortened first."""
    if view.best_value is None:
        return "-"
    name = view.best_metric or "best"
    number = fmt_fit(view.best_value, min(8, width))
    room = width - len(number) - 1
    return number if room < 3 else f"{clip(name, room)} {number}"


def cells(view: RunView, layout: Layout, now: float, marked: bool) -> list[Cell]:
    """The cells of one run's row (readable without colour)."""
    out = []
    dim = "dim" if view.archived else ""
    for c in layout.cols:
        k, w = c.key, layout.widths[c.key]
        if k == "name":
            mark = "•" if marked else " "
            out.append(Cell(mark + shown_name(view.name, w - 1, layout.prefix), dim or ("bold" if marked else "")))
        elif k == "state":
            out.append(Cell(f"{view.symbol} {view.label}", dim or state_style(view.state, layout.mono)))
        elif k == "progress":
            label = f" {view.epochs_text()} {view.percent_text()}"
            width = max(2, w - len(label))
            style = "dim" if view.archived or layout.mono else "green" if view.live else \
                "cyan" if view.complete else "dim"
            out.append(Cell(bar(view.fraction, width), style, tail=label))
        elif k == "spark":
            out.append(SparkCell(tuple(view.losses), w, dim or "#5fafff"))
        elif k == "loss":
            out.append(Cell(fmt_fit(view.last_loss, w), dim, justify="right"))
        elif k == "best":
            out.append(Cell(best_text(view, w), dim))
        elif k == "why":
            text = why_text(view)
            if view.warned and "warn" not in layout.widths:
                text = f"⚠ {text}"
            out.append(Cell(clip(text, w), dim or ("bold" if view.state in (FAILED, CRASHED) else ""),
                            justify="right" if view.state == "running" else None))
        elif k == "thr":
            out.append(Cell(clip(view.throughput_text(), w), dim, justify="right"))
        elif k == "hb":
            out.append(Cell(view.age_text(now), dim, justify="right"))
        elif k == "warn":
            out.append(Cell("⚠" if view.warned else " ", "bold yellow" if not layout.mono else "bold"))
    return out


def why_text(view: RunView) -> str:
    """The ETA of a running run, else why the run is where it is, in a few words: ``pid gone``,
    ``RuntimeError: CUDA error…``, ``26/40`` of a running evaluation, ``archived``."""
    if view.state == "running":
        return fmt_duration(view.eta_s)
    short = view.short_reason()
    if view.archived:
        return f"archived · {short}" if short else "archived"
    return short or "-"
