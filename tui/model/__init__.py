"""The Textual-free model of trainmon: run views, the filter language, histories, evaluations."""

from tui.model.runs import RunChange, RunsModel
from tui.model.views import RunView

__all__ = ["RunChange", "RunView", "RunsModel"]
