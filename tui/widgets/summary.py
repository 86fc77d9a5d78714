"""The workspace header: overall progress over all runs, counts per state, the ROOTs and watch mode,
and the host's CPU, memory and GPUs at the right."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Static

from trainkit.formatting import fmt_num
from trainkit.runfolder import STATES, label_of, style_of, symbol_of
from tui.model.system import HostFigures, host_lines
from tui.widgets.glyphs import bar, pct_text


def roots_text(roots: Sequence[str], room: int | None = None) -> str:
    """The ROOTs as the header names them, in at most ``room`` cells when it can (None: no limit):
    every one in full; else the first in full and the others by their folder's name; else each by
    its folder's name; else the first by its folder's name and how many more. One ROOT: as it is
    (the line's end gives way)."""
    if len(roots) == 1:
        return roots[0]
    names = [os.path.basename(r.rstrip("/")) or r for r in roots]
    tries = (", ".join(roots), ", ".join([roots[0], *names[1:]]), ", ".join(names))
    return next((t for t in tries if room is None or cell_len(t) <= room), f"{names[0]} +{len(roots) - 1} more")


def summary_text(summary: dict, *, root: str | Sequence[str], mode: str, readonly: bool, shown: int, filt: str,
                 sort: str, group: str | None, pending: int = 0, archived: bool = False,
                 width: int | None = None) -> Text:
    """Three lines that never wrap (a long line ends with …, so the third one never goes): the
    ROOTs · watch mode · flags; the overall bar, % and the counts per state; sort · group · filter.
    Several ROOTs are shortened (:func:`roots_text`) to leave the rest of the first line its room
    in ``width`` cells."""
    roots = [root] if isinstance(root, str) else list(root)
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("trainmon ", style="bold")
    rest = [(f"  ·  {mode}", "dim")] + ([("  ·  READ-ONLY", "bold yellow")] if readonly else [])
    t.append(roots_text(roots, None if width is None else width - cell_len("trainmon ") -
                        sum(cell_len(part) for part, _ in rest)))
    for part, style in rest:
        t.append(part, style=style)
    t.append("\n")
    done, total = summary["epochs_done"], summary["epochs_total"]
    fraction = done / total if total else 0.0  # the exact ratio, rounded once (by pct_text)
    t.append(bar(fraction, 20), style="green")
    t.append(f" {pct_text(fraction * 100)} overall ({fmt_num(done, '.0f')}/{fmt_num(total, '.0f')} epochs)  ")
    n = summary["runs"]
    t.append(f"{n} run{'s' if n != 1 else ''}: ")
    counts = [(s, summary["counts"].get(s, 0)) for s in STATES]
    first = True
    for s, c in counts:
        if not c:
            continue
        if not first:
            t.append(", ")
        first = False
        t.append(f"{symbol_of(s)} {c} {label_of(s)}", style=style_of(s))
    if first:
        t.append("none")
    t.append("\n")
    t.append(f"sort: {sort}", style="dim")
    if group:
        t.append(f"  ·  group: {group}", style="dim")
    if filt:
        t.append(f"  ·  filter: {filt} ({shown} shown)", style="dim")
    if archived:
        t.append("  ·  archived shown (A hides them)", style="dim")
    if pending:
        t.append(f"  ·  reading… ({pending} left)", style="dim")
    return t


class SummaryBar(Widget):
    """Shows :func:`summary_text` (:meth:`show`) and, over the right end of its first and third
    lines, the host's figures (:meth:`show_host`: CPU and memory, then the GPUs) in two children
    of one width; new figures of that width repaint those children alone (a few dozen bytes to
    the terminal), the summary's lines are cut to leave them room."""

    DEFAULT_CSS = """
    SummaryBar { height: 3; padding: 0 1; background: $boost; text-wrap: nowrap; text-overflow: ellipsis;
                 align: right top; }
    SummaryBar > .host { width: auto; height: 1; text-align: right; display: none; }
    SummaryBar > .gap { width: 0; height: 1; }
    """
    GAP = 3  # cells between a summary line and the figures

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None,
                 disabled: bool = False) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._text = Text()
        self._key: tuple[str, str] | None = None
        self._reserved = (0, 0)  # cells kept for the figures at the end of the first and the third line
        self.host: HostFigures | None = None
        """The host's CPU, memory and GPUs as shown (steadied by the sampler); None: not shown."""

    def compose(self) -> ComposeResult:
        yield Static(classes="host")
        yield Static(classes="gap")
        yield Static(classes="host")

    def room(self, width: int) -> int:
        """The cells the first line has in a bar ``width`` cells wide (the host's figures at its
        end take theirs)."""
        return width - self.styles.gutter.width - self._reserved[0]

    def show(self, text: Text) -> None:
        key = (text.plain, str(text.spans))
        if key != self._key:
            self._key, self._text = key, text
            self.refresh()

    def show_host(self, figures: HostFigures | None) -> None:
        if figures == self.host:
            return
        self.host = figures
        words = host_lines(figures) if figures is not None else ("", "")
        width = max(len(w) for w in words)
        reserved = tuple(width + self.GAP if w else 0 for w in words)
        relayout = reserved != self._reserved
        for box, line in zip(self.query(".host").results(Static), words, strict=True):
            box.update(Text(line), layout=relayout)
            if relayout:  # a style set again, even to its value, lays the screen out again (the table's
                box.display = bool(line)  # scrollbar repainted: 1 kB to the terminal on every new figure)
                box.styles.width = width if line else None
        if relayout:  # the figures' width changed (shown, a GPU came or went): cut again
            self._reserved = reserved
            self.refresh()

    def render(self) -> Text:
        lines = self._text.split("\n", allow_blank=True)
        width = self.content_size.width
        for i, cells in zip((0, 2), self._reserved, strict=True):
            if cells and i < len(lines) and lines[i].cell_len > width - cells:
                lines[i] = lines[i].copy()
                lines[i].truncate(max(1, width - cells), overflow="ellipsis")
        out = Text("\n").join(lines)
        out.no_wrap, out.overflow = True, "ellipsis"
        return out

    def text(self) -> str:
        """What the bar shows, as plain text (three lines; the figures after their line)."""
        lines = self._text.plain.split("\n")
        hosts = list(self.query(".host").results(Static))
        for i, box in zip((0, 2), hosts, strict=True):
            if box.display and i < len(lines):
                lines[i] += "   " + _plain(box.content)
        return "\n".join(lines)


def _plain(content) -> str:
    return content.plain if isinstance(content, Text) else str(content or "")
