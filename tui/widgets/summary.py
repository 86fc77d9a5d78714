"""The workspace header: overall progress over all runs, counts per state, ROOT and watch mode."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from trainkit.formatting import fmt_num
from trainkit.runfolder import STATES, label_of, style_of, symbol_of
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


class SummaryBar(Static):
    """Shows :func:`summary_text`; repaints only when the text changed."""

    DEFAULT_CSS = """
    SummaryBar { height: 3; padding: 0 1; background: $boost; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def show(self, text: Text) -> None:
        if text.plain != getattr(self, "_plain", None) or str(text.spans) != getattr(self, "_spans", None):
            self._plain, self._spans = text.plain, str(text.spans)
            self.update(text)
