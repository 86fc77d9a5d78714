"""Pure text renderables of the runs table: a sparkline and a progress bar (tested without an app)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from trainkit.formatting import fmt_percent

BARS = "▁▂▃▄▅▆▇█"
EIGHTHS = " ▏▎▍▌▋▊▉"


def sparkline(values: Sequence[float], width: int) -> str:
    """The last ``width`` finite values as block characters, scaled between their min and max
    (a flat series draws a flat line; no value: blanks)."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)][-width:] if width > 0 else []
    if not vals:
        return " " * max(width, 0)
    lo, hi = min(vals), max(vals)
    span = hi - lo
    top = len(BARS) - 1
    chars = [BARS[0 if span == 0 else min(top, int((v - lo) / span * top + 0.5))] for v in vals]
    return "".join(chars).rjust(width)


def bar(fraction: float, width: int) -> str:
    """A progress bar of ``width`` cells with eighth-cell resolution; the empty part is ``·``.
    Like the percentage beside it, it is full only when complete and empty only at zero."""
    if width <= 0:
        return ""
    f = min(1.0, max(0.0, fraction if math.isfinite(fraction) else 0.0))
    eighths = min(width * 8 - (f < 1.0), max(int(f * width * 8 + 0.5), int(f > 0.0)))
    full, part = divmod(eighths, 8)
    text = "█" * full
    if full < width:
        text += EIGHTHS[part] if part else ""
    return text + "·" * (width - len(text))


def pct_text(p: float) -> str:
    """A percentage as every trainmon surface shows it (:func:`~trainkit.formatting.fmt_percent`)."""
    return fmt_percent(p, space=False)
