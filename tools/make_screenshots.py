"""Regenerate ``screenshots/*.svg`` (``make screenshots``): the deterministic demo ROOT of
:mod:`tui.demo` (trainkit's file formats, fixed times), driven through Pilot.

    python tools/make_screenshots.py [--out screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui.app import Options, TrainmonApp  # noqa: E402
from tui.demo import NOW, build_demo  # noqa: E402

SHOTS = [  # (file, size, keys, wait for screen)
    ("workspace", (120, 36), [], "WorkspaceScreen"),
    ("workspace-80x24", (80, 24), [], "WorkspaceScreen"),
    ("run-detail", (120, 36), ["enter"], "DetailScreen"),
    ("inspector", (120, 36), ["enter", "i", "down", "down", "down"], "InspectorScreen"),
    ("compare", (120, 36), ["space", "space", "c"], "CompareScreen"),
    ("samples", (120, 36), ["enter", "S"], "SamplesScreen"),
    ("confirm-stop", (120, 36), ["down", "x"], "ConfirmScreen"),
]


async def shoot(root: Path, out: Path, name: str, size, keys, screen: str) -> None:
    app = TrainmonApp(Options(str(root), clock=lambda: NOW, watch=False))
    async with app.run_test(size=size) as pilot:
        while not app.model.loaded:
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        for k in keys:
            await pilot.press(k)
            await pilot.pause(0.2)
        for _ in range(100):
            if type(app.screen).__name__ == screen:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        app.save_screenshot(filename=f"{name}.svg", path=str(out))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="screenshots")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = build_demo(Path(tmp) / "experiments")
        for name, size, keys, screen in SHOTS:
            asyncio.run(shoot(root, out, name, size, keys, screen))
            print(f"wrote {out / (name + '.svg')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
