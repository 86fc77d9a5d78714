"""Pure row renderables of the training monitor's tables in the run detail and the samples screen:
inference samples (pattern and correctness marks), alerts, layer health (tested without an app)."""

from __future__ import annotations

from rich.text import Text

from trainkit.formatting import fmt_num
from tui.model.monitor import Layer
from tui.widgets.glyphs import sparkline

SAMPLE_COLUMNS = ("step", "pattern", "correct", "prompt", "output", "expected")
ALERT_COLUMNS = ("step", "kind", "value", "threshold", "message")
LAYER_COLUMNS = ("layer", "grad norm", "weight norm", "update ratio", "grad norm trend", "step")
TREND_W = 24


def mark(value) -> Text:
    """✓ / ✗ / - (unknown) with a word-free glyph that reads without colour."""
    if value is True:
        return Text("✓", style="bold green")
    if value is False:
        return Text("✗", style="bold red")
    return Text("-", style="dim")


def one_line(value, width: int) -> str:
    s = "" if value is None else str(value)
    s = s.replace("\r", " ").replace("\n", "⏎ ")
    return s if len(s) <= width else s[:width - 1] + "…"


def sample_cells(rec: dict, width: int = 28) -> list:
    return [Text(str(rec.get("step", "-")), justify="right"), mark(rec.get("pattern_ok")), mark(rec.get("correct")),
            Text(one_line(rec.get("prompt"), width)), Text(one_line(rec.get("output"), width)),
            Text(one_line(rec.get("expected"), width), style="dim")]


def alert_cells(rec: dict) -> list:
    value, threshold = rec.get("value"), rec.get("threshold")
    return [Text(str(rec.get("step", "-")), justify="right"), Text(str(rec.get("kind", "?")), style="bold yellow"),
            Text(fmt_num(value) if isinstance(value, (int, float)) else str(value or "-"), justify="right"),
            Text(fmt_num(threshold) if isinstance(threshold, (int, float)) else str(threshold or "-"),
                 justify="right"),
            Text(one_line(rec.get("message"), 72))]


def layer_cells(layer: Layer) -> list:
    style = "bold red" if layer.unhealthy else ""
    return [Text(layer.name, style=style), Text(fmt_num(layer.grad_norm, ".3g"), justify="right", style=style),
            Text(fmt_num(layer.weight_norm, ".3g"), justify="right"),
            Text(fmt_num(layer.update_ratio, ".2e"), justify="right", style=style),
            Text(sparkline(layer.grad_norms, TREND_W), style="#5fafff"), Text(str(layer.step), justify="right")]
