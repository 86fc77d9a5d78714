"""A chart panel: shows a :class:`~tui.widgets.chart.Chart` of some series; a click on the plot
reports the x under the pointer (the screens put their value cursor there)."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.message import Message
from textual.widgets import Static

from tui.widgets.chart import Chart, Series, x_at


class ChartView(Static):
    """One metric's chart (one or several series); ``plot`` replaces what it shows."""

    DEFAULT_CSS = """
    ChartView { height: 12; border: round $primary-darken-2; padding: 0 1; }
    """

    @dataclass
    class Clicked(Message):
        """The plot was clicked at ``x`` (in the chart's own x units: step, seconds, epochs...)."""

        chart: ChartView
        x: float

        @property
        def control(self) -> ChartView:
            return self.chart

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None,
                 disabled: bool = False) -> None:
        super().__init__("", name=name, id=id, classes=classes, disabled=disabled)
        self.series: list[Series] = []
        self.title = ""
        self.cursor: float | None = None
        self.metric: str | None = None  #: what the screen drew here (a metric's name), for its click handler
        self.logy = False
        self.last: int | None = None

    def plot(self, series: list[Series], *, title: str, logy: bool = False, last: int | None = None,
             cursor: float | None = None) -> None:
        self.series, self.title, self.cursor, self.logy, self.last = series, title, cursor, logy, last
        self.update(Chart(series, height=10, logy=logy, title=title, last=last, cursor=cursor))

    def on_click(self, event: events.Click) -> None:
        at = event.get_content_offset(self)
        if at is None:
            return
        x = x_at(self.series, self.content_size.width, at.x, logy=self.logy, last=self.last)
        if x is not None:
            event.stop()
            self.post_message(self.Clicked(self, x))
