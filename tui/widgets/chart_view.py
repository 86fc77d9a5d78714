"""A chart panel: shows a :class:`~tui.widgets.chart.Chart` of some series."""

from __future__ import annotations

from textual.widgets import Static

from tui.widgets.chart import Chart, Series


class ChartView(Static):
    """One metric's chart (one or several series); ``plot`` replaces what it shows."""

    DEFAULT_CSS = """
    ChartView { height: 12; border: round $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None,
                 disabled: bool = False) -> None:
        super().__init__("", name=name, id=id, classes=classes, disabled=disabled)
        self.series: list[Series] = []
        self.title = ""
        self.cursor: float | None = None

    def plot(self, series: list[Series], *, title: str, logy: bool = False, last: int | None = None,
             cursor: float | None = None) -> None:
        self.series, self.title, self.cursor = series, title, cursor
        self.update(Chart(series, height=10, logy=logy, title=title, last=last, cursor=cursor))
