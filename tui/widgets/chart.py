"""A line chart as a pure renderable: braille dots, several series overlaid, log-Y, a legend.

``Chart(series, width, height)`` renders with Rich; :func:`plot` gives its lines as
:class:`rich.text.Text` for tests without an app.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from trainkit.formatting import fmt_num
from tui.model.downsample import thin

# braille dot bits: (column, row) -> bit, 2 columns x 4 rows per cell
_DOTS = {(0, 0): 0x01, (0, 1): 0x02, (0, 2): 0x04, (1, 0): 0x08, (1, 1): 0x10, (1, 2): 0x20, (0, 3): 0x40,
         (1, 3): 0x80}
PALETTE = ("#5fafff", "#ffaf00", "#5fd75f", "#ff5f87", "#af87ff", "#00d7d7", "#d7d75f", "#ff8700")


def color_of(i: int) -> str:
    """A stable colour per index (run or series)."""
    return PALETTE[i % len(PALETTE)]


@dataclass
class Series:
    label: str
    points: list[tuple[float, float]]
    color: str = PALETTE[0]
    faint: bool = False  # drawn dim, behind the others (the raw curve under its smoothed one)
    style: str = "solid"  # solid, dashed or dotted: told apart without colour too


STYLES = ("solid", "dashed", "dotted")
GLYPHS = {"solid": "━━", "dashed": "╍╍", "dotted": "┈┈"}  # how a legend draws each style
_SHOWN = {"solid": lambda k: True, "dashed": lambda k: k % 6 < 4, "dotted": lambda k: k % 3 == 0}


def style_of(i: int) -> str:
    """A line style per index, beside its colour (``color_of``)."""
    return STYLES[i % len(STYLES)]


def legend_lines(series: list[Series], width: int, logy: bool = False) -> list[Text]:
    """The legend, wrapped to ``width``: each series' style and colour and its whole label (a
    label wider than the chart is folded, never cut)."""
    items = []
    for s in series:
        if s.faint:
            continue
        item = Text(GLYPHS.get(s.style, "━━") + " ", style=s.color)
        item.append(s.label)
        items.append(item)
    if logy:
        items.append(Text("(log y)", style="dim"))
    lines: list[Text] = []
    line = Text()
    for item in items:
        if line.cell_len and line.cell_len + 2 + item.cell_len > width:
            lines.append(line)
            line = Text()
        if line.cell_len:
            line.append("  ")
        line.append_text(item)
        while line.cell_len > width:
            lines.append(line[:width])
            line = line[width:]
    if line.cell_len or not lines:
        lines.append(line)
    return lines


def _finite(points, logy):
    return [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y) and (not logy or y > 0)]


LABEL_W = 9  # the y labels' width, left of the plot's frame line


def _prepared(series: list[Series], cols: int, logy: bool, last: int | None) -> list[tuple[Series, list]]:
    """Each series' points as drawn: finite (and positive on log-Y), the newest ``last`` kept, thinned
    to 4 points a dot column (every low and high drawn)."""
    data = []
    for s in series:
        pts = _finite(s.points, logy)
        if last:
            pts = pts[-last:]
        data.append((s, thin(pts, cols * 8)))
    return data


def x_at(series: list[Series], width: int, column: int, *, logy: bool = False, last: int | None = None
         ) -> float | None:
    """The x under ``column`` (0 = the chart's left edge) of a chart drawn ``width`` wide: the inverse
    of the dots' placement in :func:`plot`. None left of the plot, right of it, or without data."""
    cols = max(width, 20) - LABEL_W - 1
    c = column - LABEL_W - 1
    xs = [x for _, pts in _prepared(series, cols, logy, last) for x, _ in pts]
    if not xs or not 0 <= c < cols:
        return None
    xlo, xhi = min(xs), max(xs)
    if xhi == xlo:
        return xlo
    return xlo + min(c * 2 + 0.5, cols * 2 - 1) / (cols * 2 - 1) * (xhi - xlo)


def plot(series: list[Series], width: int, height: int, *, logy: bool = False, title: str = "",
         last: int | None = None, cursor: float | None = None) -> list[Text]:
    """The chart's lines: a title line, ``height`` - 3 plot rows with the y range at the left, the
    x range, the legend. ``last`` keeps the newest points only (zoom); ``cursor``: the x of a
    vertical cursor line (drawn when it is within the x range)."""
    width, height = max(width, 20), max(height, 5)
    cols = width - LABEL_W - 1
    label_w = LABEL_W
    data = _prepared(series, cols, logy, last)
    head = Text(title[:width], style="bold")
    legend = legend_lines([s for s, _ in data], width, logy)
    rows_n = max(2, height - 2 - len(legend))
    all_pts = [p for _, pts in data for p in pts]
    if not all_pts:
        return [head] + [Text("")] * (rows_n // 2) + [Text("no data yet".center(width), style="dim")] + \
            [Text("")] * (rows_n - rows_n // 2)
    f = (lambda y: math.log10(y)) if logy else (lambda y: y)
    ys = [f(y) for _, y in all_pts]
    xs = [x for x, _ in all_pts]
    ylo, yhi, xlo, xhi = min(ys), max(ys), min(xs), max(xs)
    if yhi == ylo:  # a constant series: a band around its value, on its own scale (lr 1e-3 stays 1e-3)
        pad = abs(ylo) * 0.1 or 0.5
        ylo, yhi = ylo - pad, yhi + pad
    if xhi == xlo:
        xhi = xlo + 1
    dots_w, dots_h = cols * 2, rows_n * 4
    cells: dict[tuple[int, int], int] = {}
    owner: dict[tuple[int, int], str] = {}

    def put(dx: int, dy: int, color: str) -> None:
        dx, dy = min(max(dx, 0), dots_w - 1), min(max(dy, 0), dots_h - 1)
        key = (dx // 2, dy // 4)
        cells[key] = cells.get(key, 0) | _DOTS[(dx % 2, dy % 4)]
        owner[key] = color

    for s, pts in sorted(data, key=lambda d: not d[0].faint):  # the faint ones first: the others over them
        color = f"dim {s.color}" if s.faint else s.color
        shown = _SHOWN.get(s.style, _SHOWN["solid"])
        k = 0
        prev = None
        for x, y in pts:
            dx = round((x - xlo) / (xhi - xlo) * (dots_w - 1))
            dy = round((yhi - f(y)) / (yhi - ylo) * (dots_h - 1))
            if prev is not None:
                px, py = prev
                n = max(abs(dx - px), abs(dy - py), 1)
                for j in range(1, n):
                    k += 1
                    if shown(k):
                        put(px + (dx - px) * j // n, py + (dy - py) * j // n, color)
            k += 1
            if shown(k) or prev is None:
                put(dx, dy, color)
            prev = (dx, dy)

    def ylabel(v: float) -> str:
        return fmt_num(10 ** v if logy else v, ".3g")[:label_w].rjust(label_w)

    cursor_c = None
    if cursor is not None and xlo <= cursor <= xhi:
        cursor_c = round((cursor - xlo) / (xhi - xlo) * (dots_w - 1)) // 2
    lines = [head]
    for r in range(rows_n):
        line = Text(ylabel(yhi) if r == 0 else ylabel(ylo) if r == rows_n - 1 else " " * label_w, style="dim")
        line.append("│", style="dim")
        for c in range(cols):
            bits = cells.get((c, r))
            if c == cursor_c:
                line.append(chr(0x2800 + bits) if bits else "│", style=f"reverse {owner[(c, r)]}" if bits else "bold")
            elif bits:
                line.append(chr(0x2800 + bits), style=owner[(c, r)])
            else:
                line.append(" ")
        lines.append(line)
    lo_s, hi_s = fmt_num(xlo, ".6g"), fmt_num(xhi, ".6g")
    lines.append(Text(" " * (label_w + 1) + lo_s + hi_s.rjust(max(1, cols - len(lo_s))), style="dim"))
    lines.extend(legend)
    return lines


class Chart:
    """Rich renderable: the chart fills the width it is given, ``height`` rows."""

    def __init__(self, series: list[Series], *, height: int = 10, logy: bool = False, title: str = "",
                 last: int | None = None, cursor: float | None = None) -> None:
        self.series, self.height, self.logy, self.title, self.last = series, height, logy, title, last
        self.cursor = cursor

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = plot(self.series, options.max_width, self.height, logy=self.logy, title=self.title, last=self.last,
                     cursor=self.cursor)
        yield from lines
