"""The workspace header: overall progress over all runs, counts per state, ROOT and watch mode, and
the host's CPU, memory and GPUs at the right."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from trainkit.formatting import fmt_num
from trainkit.runfolder import STATES, label_of, style_of, symbol_of
from tui.model.system import HostFigures, host_lines
from tui.widgets.glyphs import bar, pct_text


def summary_text(summary: dict, *, root: str, mode: str, readonly: bool, shown: int, filt: str, sort: str,
                 group: str | None, pending: int = 0, archived: bool = False) -> Text:
    """Three lines that never wrap (a long line ends with …, so the third one never goes): ROOT ·
    watch mode · flags; the overall bar, % and the counts per state; sort · group · filter."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("trainmon ", style="bold")
    t.append(root)
    t.append(f"  ·  {mode}", style="dim")
    if readonly:
        t.append("  ·  READ-ONLY", style="bold yellow")
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


def host_text(words: str) -> Text:
    """A line of :func:`~tui.model.system.host_lines`: the labels dim, the figures plain."""
    t = Text()
    for j, word in enumerate(words.split(" ")):
        if j:
            t.append(" ")
        t.append(word, style="dim" if word[:1].isalpha() else "")
    return t


def with_right(left: Text, right: Text, width: int, gap: int = 3) -> Text:
    """``left`` with ``right`` at the right edge of ``width`` cells: ``left`` is cut (…) to make
    room while it keeps 20 cells; below that ``right`` goes (``left`` matters more)."""
    if not right.cell_len or width < right.cell_len + gap + 20:
        return left
    room = width - right.cell_len - gap
    if left.cell_len > room:
        left = left[:room - 1] + Text("…")
    out = left.copy()
    out.append(" " * (width - left.cell_len - right.cell_len))
    out.append_text(right)
    return out


class SummaryBar(Widget):
    """Shows :func:`summary_text` (:meth:`show`) and the host's figures (:attr:`host`, set by the
    screen) right-aligned on its first and third lines; repaints only when either changed."""

    DEFAULT_CSS = """
    SummaryBar { height: 3; padding: 0 1; background: $boost; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    host: reactive[HostFigures | None] = reactive(None)
    """The host's CPU, memory and GPUs (steadied: equal figures repaint nothing); None: not shown."""

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None,
                 disabled: bool = False) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._text = Text()
        self._key: tuple[str, str] | None = None

    def show(self, text: Text) -> None:
        key = (text.plain, str(text.spans))
        if key != self._key:
            self._key, self._text = key, text
            self.refresh()

    def render(self) -> Text:
        lines = self._text.split("\n", allow_blank=True)
        if self.host is not None:
            width = self.content_size.width
            for i, words in zip((0, 2), host_lines(self.host), strict=True):
                if i < len(lines):
                    lines[i] = with_right(lines[i], host_text(words), width)
        out = Text("\n").join(lines)
        out.no_wrap, out.overflow = True, "ellipsis"
        return out
