"""The loss chart beside the runs table (a wide workspace): a :class:`~tui.widgets.chart.Chart`
that fills the panel's height; ``plot`` repaints only when the curves or the title changed."""

from __future__ import annotations

from textual.widget import Widget

from tui.widgets.chart import Chart, Series


class BesideChart(Widget):
    """The highlighted run's loss and the marked runs' overlaid (series set by the screen)."""

    DEFAULT_CSS = """
    BesideChart { width: 40%; height: 1fr; border: round $primary-darken-2; padding: 0 1; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None,
                 disabled: bool = False) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self.series: list[Series] = []
        self.title = ""

    def plot(self, series: list[Series], *, title: str) -> bool:
        """Show ``series``; False (nothing repainted) when they are what is shown."""
        if series == self.series and title == self.title:
            return False
        self.series, self.title = series, title
        self.refresh()
        return True

    def render(self) -> Chart:
        return Chart(self.series, height=max(5, self.content_size.height), title=self.title)
