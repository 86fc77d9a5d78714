"""The run detail's log panel: Textual's ``Log`` (a real tail: scroll-back, follow) with each line's
colours rendered from its ANSI codes, the matches of a search highlighted, and the line still being
written (a live progress bar) kept as the newest line, replaced as it changes."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widgets import Log

from tui.model.console import Search, plain

MATCH = Style(bgcolor="yellow", color="black")
CURRENT = Style(bgcolor="bright_magenta", color="black", bold=True)


class ConsoleLog(Log):
    """Lines are the cleaned lines of :class:`tui.model.console.ConsoleTail` (colour codes kept)."""

    def __init__(self, *, max_lines: int | None = None, name: str | None = None, id: str | None = None,
                 classes: str | None = None, disabled: bool = False) -> None:
        super().__init__(highlight=False, max_lines=max_lines, auto_scroll=False, name=name, id=id, classes=classes,
                         disabled=disabled)
        self.search = Search()
        self.current: int | None = None  # the match the cursor is on (n / N)
        self.partial = False  # the last line is the one still being written

    @classmethod
    def _process_line(cls, line: str) -> str:
        return plain(line).expandtabs()

    def show(self, lines: list[str], partial: str, *, follow: bool) -> None:
        """Append ``lines`` and show ``partial`` as the newest line (replacing the earlier one)."""
        if self.partial and self._lines:
            self._lines.pop()
            self.partial = False
        more = lines + ([partial] if partial else [])
        before = len(self._lines)
        self.write_lines(more, scroll_end=follow)
        self.partial = bool(partial)
        if self.search.query:  # only the new lines are searched, unless old ones were dropped (max_lines)
            kept = len(self._lines) == before + len(more)
            self.search.run(self._lines, before if kept else 0)
        if not more:
            self.virtual_size = self.virtual_size.with_height(len(self._lines))
            self.refresh()

    def clear(self):
        self.partial = False
        self.current = None
        return super().clear()

    def find(self, query: str) -> int:
        """Highlight ``query``; the cursor goes to the newest match. The number of matching lines."""
        self.search.query = query
        found = self.search.run(self._lines)
        self.current = None
        self._render_line_cache.clear()
        self.refresh()
        if found:
            self.jump(-1)
        return len(found)

    def jump(self, direction: int) -> int | None:
        """The next (1) or previous (-1) match, scrolled into view."""
        self.current = self.search.next(self.current, direction)
        if self.current is not None:
            self.scroll_to(y=max(0, self.current - self.size.height // 2), animate=False, immediate=True)
        self._render_line_cache.clear()
        self.refresh()
        return self.current

    def text_of(self, y: int) -> Text:
        """Line ``y`` as drawn: its colours from its ANSI codes, the search's matches highlighted
        (the current one stronger)."""
        raw = self._lines[y]
        text = Text.from_ansi(raw, no_wrap=True) if "\x1b" in raw else Text(raw, no_wrap=True)
        for start, end in self.search.spans(raw):
            text.stylize(CURRENT if y == self.current else MATCH, start, end)
        text.expand_tabs()
        return text

    def _render_line_strip(self, y: int, rich_style: Style) -> Strip:
        if y in self._render_line_cache and self.text_selection is None:
            return self._render_line_cache[y]
        text = self.text_of(y)
        text.stylize_before(rich_style)
        selection = self.text_selection
        if selection is not None and (span := selection.get_span(y - self._clear_y)) is not None:
            start, end = span
            text.stylize(self.screen.get_component_rich_style("screen--selection"), start,
                         len(text) if end == -1 else end)
        strip = Strip(text.render(self.app.console), text.cell_len)
        if selection is None:
            self._render_line_cache[y] = strip
        return strip
