"""Numbers and durations as people read them, and the ETA rule; shared by the terminal displays,
``trainkit status`` and trainmon. Pure functions, no I/O."""

from __future__ import annotations


def fmt_duration(seconds: float | None) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on; ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def fmt_num(v: float | None, spec: str = ".4g") -> str:
    return "-" if v is None else format(v, spec)


def format_age(seconds: float | None) -> str:
    """``42 s``, ``5 min``, ``3 h``, ``2 d``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def eta_seconds(done: float, remaining: float, elapsed_s: float) -> float | None:
    """Seconds left for ``remaining`` units at the rate of ``done`` units in ``elapsed_s``
    (None until something was done)."""
    if done <= 0 or elapsed_s <= 0:
        return None
    return max(0.0, remaining * elapsed_s / done)
