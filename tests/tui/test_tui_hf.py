"""trainmon shows a run written by the Hugging Face callback like any other: its row has the
progress and a loss sparkline (a real `Trainer` run of examples/hf_tiny_qwen.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tui_helpers import ready, row_text, until

from tui.app import Options, TrainmonApp

pytest.importorskip("transformers")
pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hf_tiny_qwen.py"


async def test_an_hf_run_shows_its_progress_and_sparkline(tmp_path):
    root = tmp_path / "experiments"
    run = root / "2026-12-01-hf-tiny"
    r = subprocess.run([sys.executable, str(EXAMPLE), str(run)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        row = await until(pilot, lambda: row_text(app, os.path.abspath(run)), what="the HF run's row")
        assert "finished" in row and "100%" in row, row  # state and progress
        assert any(ch in row for ch in "▁▂▃▄▅▆▇█"), row  # a sparkline of the logged losses
