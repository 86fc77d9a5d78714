"""The one number formatter (trainkit.formatting): a table per rule - percentages near 0 and 100,
halves, tiny and huge numbers, values near a limit - and agreement with Python's own format
wherever no half is involved."""

from __future__ import annotations

import math
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainkit.formatting import (
    OVERFLOW,
    fmt_against,
    fmt_fit,
    fmt_num,
    fmt_percent,
    fmt_progress,
    fmt_sig,
    percent_value,
)


@pytest.mark.parametrize("pct, decimals, shown", [
    (0, 1, "0 %"),
    (1e-9, 1, "0.1 %"),  # more than zero never reads 0
    (0.04, 1, "0.1 %"),
    (0.05, 1, "0.1 %"),
    (0.049, 0, "1 %"),
    (0.15, 1, "0.2 %"),  # a half goes up (the binary 0.15 is a hair below)
    (12.25, 1, "12.3 %"),
    (12.35, 1, "12.4 %"),
    (50.0, 1, "50 %"),
    (66.666, 1, "66.7 %"),
    (66.666, 2, "66.67 %"),
    (199 / 200 * 100, 1, "99.5 %"),
    (199 / 200 * 100, 0, "99 %"),  # never rounded onto 100
    (99.95, 1, "99.9 %"),
    (99.99, 1, "99.9 %"),
    (99.9999999, 2, "99.99 %"),
    (19_999 / 20_000 * 100, 1, "99.9 %"),
    (100, 1, "100 %"),
    (100.0, 0, "100 %"),
    (150, 1, "100 %"),  # clamped
    (-3, 1, "0 %"),
    (None, 1, "-"),
    (math.nan, 1, "-"),
])
def test_fmt_percent(pct, decimals, shown):
    assert fmt_percent(pct, decimals) == shown
    if shown != "-":
        assert fmt_percent(pct, decimals, space=False) == shown.replace(" %", "%")


@pytest.mark.parametrize("completed, total, early, shown", [
    (0, 200, False, "0 %"),
    (1, 20_000, False, "0.1 %"),  # 0.005 % reads as more than nothing
    (199, 200, False, "99.5 %"),
    (1999, 2000, False, "99.9 %"),  # 99.95: not 100
    (200, 200, False, "100 %"),
    (3, 7, True, "100 %"),  # early-stopped: complete
    (9, 7, False, "100 %"),
    (5, None, False, "0 %"),
    (1, 3, False, "33.3 %"),
])
def test_fmt_progress(completed, total, early, shown):
    assert fmt_progress(completed, total, early) == shown


def test_percent_value_agrees_with_its_text():
    for pct in [0.001, 0.04, 0.05, 12.345, 99.94, 99.95, 99.999, 100]:
        for d in (0, 1, 2):
            assert fmt_percent(pct, d) == fmt_percent(percent_value(pct, d), d)
            v = percent_value(pct, d)
            assert (v == 100) == (pct >= 100) and (v == 0) == (pct <= 0)


@pytest.mark.parametrize("v, digits, shown", [
    (3.344e-05, 4, "3.344e-05"),  # the serve page printed 0.0000
    (0.000123456, 4, "0.0001235"),
    (1e-5, 4, "1e-05"),
    (5e-324, 4, "5e-324"),  # the smallest subnormal: its decimal digits, not the binary expansion
    (2.2250738585072014e-308, 4, "2.225e-308"),
    (1.7976931348623157e308, 4, "1.798e+308"),
    (1e300, 4, "1e+300"),
    (1234567.0, 4, "1.235e+06"),
    (12345.5, 4, "1.235e+04"),
    (123.456, 4, "123.5"),
    (100.0, 4, "100"),
    (1.0, 4, "1"),
    (0.1 + 0.2, 4, "0.3"),
    # halves: up (away from zero), whatever the binary value's last bits
    (0.125, 2, "0.13"),
    (2.5, 1, "3"),
    (-2.5, 1, "-3"),
    (0.5, 1, "0.5"),
    (1.0005, 4, "1.001"),  # binary 1.000499999...
    (2.675, 3, "2.68"),  # binary 2.67499999...
    (-0.00012345, 4, "-0.0001235"),
    (9.9995, 4, "10"),  # a carry that adds a digit
    (99995, 4, "1e+05"),
    (0, 4, "0"),
    (-0.0, 4, "0"),
    (None, 4, "-"),
    (math.nan, 4, "nan"),
    (math.inf, 4, "inf"),
    (-math.inf, 4, "-inf"),
])
def test_fmt_sig(v, digits, shown):
    assert fmt_sig(v, digits) == shown


@pytest.mark.parametrize("v, spec, shown", [
    (2.5, ".0f", "3"),
    (0.5, ".0f", "1"),
    (-0.5, ".0f", "-1"),
    (1.005, ".2f", "1.01"),  # format() says 1.00 (binary 1.00499999...)
    (0.125, ".2f", "0.13"),
    (3.344e-05, ".4f", "0.0000"),  # .Nf is asked for on purpose: fixed places
    (9.995, ".2e", "1.00e+01"),
    (1.25e-7, ".1e", "1.3e-07"),
    (0.0, ".2e", "0.00e+00"),
    (3.344e-05, ".4g", "3.344e-05"),
    (0.125, ".2g", "0.13"),
    (None, ".4g", "-"),
    (7, "d", "7"),  # any other spec: format()
])
def test_fmt_num(v, spec, shown):
    assert fmt_num(v, spec) == shown


@pytest.mark.parametrize("value, limit, shown", [
    (0.10003, 0.1, "0.10003"),  # never reads as its limit
    (0.099999, 0.1, "0.099999"),
    (0.1, 0.1, "0.1"),
    (0.99, 0.995, "0.99"),
    (0.9949999, 0.995, "0.9949999"),
    (0.12345, 0.1, "0.1235"),  # far from the limit: 4 digits
    (1 + 2 ** -52, 1.0, "1.0000000000000002"),
    (5e-324, 0.0, "5e-324"),
    (-0.0000001, 0.0, "-1e-07"),
])
def test_fmt_against(value, limit, shown):
    assert fmt_against(value, limit) == shown


def _is_tie(v: float, digits: int) -> bool:
    """Whether ``v``'s shortest repr has exactly a half after its ``digits`` significant digits."""
    mantissa = repr(abs(v)).split("e")[0].replace(".", "").lstrip("0")
    return len(mantissa) == digits + 1 and mantissa[-1] == "5"


def test_agrees_with_python_format_wherever_no_half_is_involved():
    """Thousands of values from 1e-300 to 1e300: only halves (and subnormals) may differ."""
    rng = random.Random(30)
    checked = 0
    for _ in range(20_000):
        v = rng.choice([-1, 1]) * 10 ** rng.uniform(-300, 300) * rng.random()
        if v == 0 or abs(v) < 1e-307:
            continue
        for d in (1, 2, 3, 4, 6):
            if _is_tie(v, d):
                continue
            assert fmt_sig(v, d) == format(v, f".{d}g"), (v, d)
            assert fmt_num(v, f".{d}g") == format(v, f".{d}g"), (v, d)
            checked += 1
    assert checked > 90_000


def test_halves_go_up_where_python_goes_to_even_or_down():
    """The ties that motivated one rule: Python's format rounds these halves down."""
    assert [format(v, ".1f") for v in (0.25, 0.35)] == ["0.2", "0.3"]
    assert [fmt_num(v, ".1f") for v in (0.25, 0.35)] == ["0.3", "0.4"]
    assert fmt_num(2.675, ".2f") == "2.68" and format(2.675, ".2f") == "2.67"


@pytest.mark.parametrize("seconds, shown", [(None, "--:--"), (0.4, "00:00"), (0.5, "00:01"), (60.5, "01:01"),
                                            (3599.5, "1:00:00"), (-2, "00:00")])
def test_fmt_duration_rounds_halves_up(seconds, shown):
    from trainkit.formatting import fmt_duration

    assert fmt_duration(seconds) == shown


# ------------------------------------------------------------------ the surfaces print its text


def test_status_cli_and_trainmon_once_print_the_formatters_text(tmp_path):
    """`trainkit status` and `trainmon --once`: a run crashed at 199/200 reads 99.5 % (never 100 %),
    its loss 3.344e-05 (never 0.0000), and the overall line is the exact ratio rounded once."""
    import os
    import subprocess
    import sys

    import orjson

    from trainkit.runfolder.files import write_json
    from trainkit.testing import synthetic_run

    root = tmp_path / "experiments"
    run = synthetic_run(root, "2026-01-01-crashed", total=200, scores=[1.0] * 199, heartbeat_age_s=100_000)
    write_json(run.status, {**orjson.loads(run.status.read_bytes()), "loss": 3.344e-05})
    synthetic_run(root, "2026-01-01-third", total=3, scores=[0.12345], state="stopped")
    env = {**os.environ, "COLUMNS": "200"}
    for cmd in ([sys.executable, "-m", "trainkit", "status", str(root)],
                [sys.executable, "-m", "tui.cli", "--once", str(root)]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, check=True).stdout
        crashed = next(line for line in out.splitlines() if "2026-01-01-crashed" in line)
        assert "crashed" in crashed and " 99.5 % " in crashed and " 3.344e-05 " in crashed, out
        third = next(line for line in out.splitlines() if "2026-01-01-third" in line)
        assert " 33.3 % " in third, out
        assert f"overall {fmt_percent(200 / 203 * 100)} (200/203 epochs" in out and "98.5 %" in out, out


# ---------------------------------------------------------------------------------------------
# fmt_fit: a number in a column's width, never cut (a cut 1.234e-05 read 1.234e-0, a different number)


@pytest.mark.parametrize("v, width, shown", [
    (1.234e-05, 9, "1.234e-05"),  # fmt_sig's text when it fits
    (1.234e-05, 8, "1.234e-5"),  # was cut to 1.234e-0 in an 8-wide LOSS column
    (9.479e+27, 8, "9.479e27"),  # was cut to 9.479e+2
    (1.234e-05, 6, "123e-7"),
    (0.1865, 8, "0.1865"),
    (0.012345, 6, "0.0123"),
    (-0.0123, 6, "-.0123"),
    (12345.6, 7, "12346"),  # a whole number before an exponent
    (1234567, 6, "1.23e6"),
    (2.5e-9, 6, "2.5e-9"),
    (0.5, 3, "0.5"),
    (0, 6, "0"),
    (7, 6, "7"),
    (-1.7976931348623157e308, 10, "-1.797e308"),  # rounded down: half up would overflow to -inf
    (-1.5e300, 6, "—"),  # nothing within 1 % fits
    (math.inf, 6, "inf"),
    (-math.inf, 6, "-inf"),
    (math.nan, 6, "nan"),
    (None, 6, "-"),
])
def test_fmt_fit(v, width, shown):
    assert fmt_fit(v, width) == shown


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10 ** 30, 10 ** 30), st.integers(6, 24))
def test_fmt_fit_parses_back_within_one_percent(v, width):
    """For any float and any width from 6: the text fits, and it parses back to within 1 % of the
    value, or says inf/nan/— (nothing that close fits)."""
    text = fmt_fit(v, width)
    assert len(text) <= width
    if text == OVERFLOW:  # only where even 3 digits times a power of ten (123e-7) are too wide
        e = Decimal(repr(float(v))).adjusted()
        assert len(f"{'-' if v < 0 else ''}100e{e - 2}") > width and not 1e-2 <= abs(v) < 1e5, (v, width)
        return
    if isinstance(v, float) and not math.isfinite(v):
        assert text == ("nan" if math.isnan(v) else "inf" if v > 0 else "-inf")
        return
    back = float(text)
    assert abs(back - v) <= 0.01 * abs(v), (v, width, text)


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9), st.integers(10, 24))
def test_fmt_fit_is_fmt_sig_wherever_fmt_sig_fits(v, width):
    text = fmt_sig(v)
    if len(text) <= width:
        assert fmt_fit(v, width) == text
