"""Numbers and durations as people read them, and the ETA rule; shared by the terminal displays,
``trainkit status`` and trainmon. Pure functions, no I/O."""

from __future__ import annotations

import math
import re
from decimal import ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Context, Decimal


def fmt_duration(seconds: float | None) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on; ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    seconds = int(_half_up(max(0.0, seconds), 0))  # halves up, as every number
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


_SPEC = re.compile(r"\.([0-9]{1,2})([gef])")


def fmt_num(v: float | None, spec: str = ".4g") -> str:
    """``format(v, spec)`` with the one rounding rule (halves up, from the shortest repr): ``.Ng``
    is :func:`fmt_sig`, ``.Nf`` and ``.Ne`` round the same way; ``-`` when unknown."""
    if v is None:
        return "-"
    m = _SPEC.fullmatch(spec)
    if m is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v == 0:
        return format(v, spec)
    n, kind = int(m[1]), m[2]
    if kind == "g":
        return fmt_sig(v, max(n, 1))
    if kind == "f":
        return format(_half_up(v, n), "f")
    d = _half_up(v, n - _exponent(v))
    exp = d.adjusted()
    return f"{format(d.scaleb(-exp).quantize(Decimal(1).scaleb(-n)), 'f')}e{exp:+03d}"


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


# ---------------------------------------------------------------------------------------------
# one way to print a number (every surface: CLI, trainmon, the serve page's data, reasons)


_WIDE = Context(prec=450)  # every digit of a float written with up to 99 decimals (1e308 has 309)


def _exponent(value: float) -> int:
    """The decimal exponent of ``value``'s shortest repr (exact, unlike ``floor(log10(x))``)."""
    return Decimal(repr(float(value))).adjusted()


def _g(d: Decimal, digits: int) -> str:
    """A decimal already rounded to ``digits`` significant digits, written as ``format(x, ".Ng")``
    writes a float, but from the decimal digits (a subnormal float's binary expansion never shows)."""
    exp = d.adjusted()
    fixed = -4 <= exp < digits
    text = format(d if fixed else d.scaleb(-exp), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if fixed else f"{text}e{exp:+03d}"


def _half_up(value: float, decimals: int) -> Decimal:
    """``value`` rounded to ``decimals`` places, halves away from zero, from its shortest repr
    (0.125 -> 0.13 and 2.5 -> 3 everywhere, whatever the binary value's last bits)."""
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP, context=_WIDE)


def percent_value(pct: float, decimals: int = 1) -> float:
    """The percentage as it is shown with ``decimals`` places: halves up, but never rounded onto
    100 unless it is 100 (99.95 -> 99.9, 199/200 -> 99.5) nor onto 0 unless it is 0 (0.04 -> 0.1)."""
    if not math.isfinite(pct):
        return pct
    pct = min(100.0, max(0.0, pct))
    shown = float(_half_up(pct, decimals))
    step = 10.0 ** -decimals
    if shown >= 100.0 and pct < 100.0:
        return float(Decimal(repr(pct)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR))
    if shown <= 0.0 < pct:
        return step
    return shown


def fmt_percent(pct: float | None, decimals: int = 1, *, space: bool = True) -> str:
    """``42 %``, ``99.9 %``, ``100 %`` (a whole number without decimals); ``-`` when unknown. Never
    shows 100 for less than 100 nor 0 for more than 0 (:func:`percent_value`)."""
    if pct is None or not math.isfinite(pct):
        return "-"
    v = percent_value(pct, decimals)
    text = f"{v:.0f}" if v == int(v) else f"{v:.{decimals}f}".rstrip("0").rstrip(".")
    return f"{text} %" if space else f"{text}%"


def fmt_progress(completed: int, total: int | None, early_stopped: bool = False, *, decimals: int = 1,
                 space: bool = True) -> str:
    """A run's progress as :func:`fmt_percent` shows it, from the exact ratio (``progress_percentage``
    is already rounded to 2 decimals; rounding it again could move a half): an early-stopped run is
    complete (100 %), ``completed`` of ``total`` epochs otherwise, 0 % without a total."""
    if early_stopped:
        return fmt_percent(100.0, decimals, space=space)
    pct = min(completed, total) / total * 100 if total else 0.0
    return fmt_percent(pct, decimals, space=space)


def fmt_sig(v: float | None, digits: int = 4) -> str:
    """``v`` to ``digits`` significant digits (halves up): 3.344e-05 stays 3.344e-05, never 0.0000;
    ``-`` when unknown; ``nan``/``inf`` as such."""
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v == 0:
        return "0"
    return _g(_half_up(v, digits - 1 - _exponent(v)), digits)


def fmt_against(value: float, limit: float, digits: int = 4) -> str:
    """``value`` with enough significant digits that it never reads as ``limit`` unless it is
    (0.10003 against a limit of 0.1 -> ``0.10003``, not ``0.1``): for reasons such as
    ``nrmse 0.10003 > max 0.1``."""
    if not (isinstance(value, (int, float)) and math.isfinite(value)) or value == limit:
        return fmt_sig(value, digits)
    limit_text = fmt_sig(limit, 17)
    for d in range(digits, 18):
        text = fmt_sig(value, d)
        if float(text) != float(limit_text) and (float(text) > limit) == (value > limit):
            return text
    return repr(float(value))


OVERFLOW = "—"  # a number that cannot be written within 1 % in the width it has


def fmt_fit(v: float | None, width: int, digits: int = 4) -> str:
    """``v`` in at most ``width`` characters, never cut: :func:`fmt_sig` with ``digits`` when it
    fits; else the most readable text that fits, by fewer significant digits (3 at least where
    the width allows), a shorter exponent (``1.23e-5``), no leading zero (``.0123``) or digits times
    a power of ten (``123e-7``). Every text parses back (``float``) to within 1 % of ``v``;
    :data:`OVERFLOW` when no such text fits (from 6 characters on: magnitudes beyond 1e±10 with a
    sign, or beyond 1e±100); ``-`` when unknown; ``nan``/``inf``/``-inf`` as such."""
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v == 0:
        text = str(v) if isinstance(v, int) and not isinstance(v, bool) else fmt_sig(v)
        return text if len(text) <= width else OVERFLOW
    text = fmt_sig(v, digits)
    if len(text) <= width and (abs(v) < 1e307 or _close(text, v)):  # near the largest float: no overflow
        return text
    exp = _exponent(v)
    if exp >= digits:  # a whole number wider than its digits: 12346 before 1.235e+04
        whole = format(_half_up(v, 0), "f")
        if len(whole) <= width:
            return whole
    best = None
    for d in range(max(digits, 1), 0, -1):
        rounded = _half_up(v, d - 1 - exp)
        if not math.isfinite(float(rounded)):  # rounded past the largest float: round down instead
            rounded = Decimal(repr(float(v))).quantize(Decimal(1).scaleb(exp - d + 1), rounding=ROUND_DOWN,
                                                       context=_WIDE)
        for rank, text in enumerate(_forms(rounded, d)):
            key = (d < 3, rank >= 2, -d, rank)  # readable forms first, then the most digits
            if len(text) <= width and (best is None or key < best[0]) and _close(text, v):
                best = (key, text)
    return best[1] if best is not None else OVERFLOW


def _forms(d: Decimal, digits: int) -> list[str]:
    """Texts of a decimal rounded to ``digits`` significant digits, most readable first: as
    :func:`fmt_sig` writes it, with a short exponent, without a leading zero, digits times 10^n."""
    text = _g(d, digits)
    exp = d.adjusted()
    mantissa = format(d.scaleb(-exp), "f")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    sign, digit_tuple, power = d.normalize().as_tuple()
    return [text, f"{mantissa}e{exp}", text.replace("0.", ".", 1) if "0." in text[:3] else text,
            f"{'-' if sign else ''}{''.join(map(str, digit_tuple))}e{power}"]


def _close(text: str, v: float) -> bool:
    try:
        back = float(text)
    except ValueError:
        return False
    return abs(back - v) <= 0.01 * abs(v)
