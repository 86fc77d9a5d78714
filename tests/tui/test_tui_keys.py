"""No key acts by accident (issue 24, part 1), tested as the user met it: keys typed in a burst
after ``/`` through a real terminal (tmux ``send-keys -l``, many times, on a loaded machine, at
80x24 and 120x36); keys typed while a screen opens or closes; Enter on a confirmation; an action
key under ``--readonly``; the help page and the command palette generated from the bindings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from rich.console import Console
from textual import events
from tui_helpers import CpuBurners, Tmux, age_tree, in_tmux, ready, until

from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp

SIZES = [(80, 24), (120, 36)]
TRAINMON = Path(sys.executable).with_name("trainmon")


def demo_root(tmp_path: Path) -> Path:
    """Runs whose names hold the letters of the bursts (s: sort, a: archive, x: stop, p: pause)."""
    root = tmp_path / "experiments"
    for name, state in (("2026-01-01-stale-lr", "failed"), ("2026-01-02-sparse", "stopped"),
                        ("2026-01-03-xpa-baseline", "failed"), ("2026-01-04-alpha", "failed")):
        synthetic_run(root, name, total=3, scores=[1.0, 0.5], state=state)
        age_tree(root / name)
    return root


def folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


# --------------------------------------------------------------------------------------------- bursts


@in_tmux
@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x36"])
def test_keys_typed_in_a_burst_after_slash_land_in_the_filter_under_load(tmp_path, size):
    """`tmux send-keys -l '/stale'` then Enter, 12 times with different words and two CPU burners
    beside trainmon: every key lands in the filter box. Before, s re-sorted, a opened "Archive 1
    run?" and Enter archived the run under the cursor."""
    root = demo_root(tmp_path)
    before = folders(root)
    burners = CpuBurners(2)
    term = Tmux(f"{TRAINMON} {root}", size)
    try:
        term.wait(lambda s: "stale-lr" in s and "sort: name" in s, "the workspace")
        for i, word in enumerate(["stale", "sa", "xpa", "spa", "stale", "as", "alpha", "sparse", "xs", "pa",
                                  "stale", "asx"]):
            term.keys(f"/{word}", literal=True)
            term.keys("Enter")
            screen = term.wait(lambda s, w=word: f"filter: {w} (" in s and "▔ filter" not in s,
                               f"burst {i}: the filter {word!r} kept and its box closed")
            assert "sort: name" in screen, f"burst {i}: a key re-sorted the table:\n{screen}"
            assert " run?" not in screen and "Cancel" not in screen, f"burst {i}: a modal opened:\n{screen}"
            term.keys("Escape")
            term.wait(lambda s: "filter:" not in s and "sort: name" in s, f"burst {i}: the filter cleared")
        assert folders(root) == before  # nothing was archived, stopped or paused
        assert not (root.parent / "experiments-archive").exists()
    finally:
        term.close()
        burners.stop()


async def burst(pilot, *keys: str) -> None:
    """Keys arriving at once, as a terminal delivers a burst: every one is queued before the first
    is handled (Pilot's press waits for each key to be handled)."""
    chars = {"slash": "/", "enter": "\r", "escape": "\x1b", "space": " "}
    for k in keys:
        pilot.app.post_message(events.Key(k, chars.get(k, k if len(k) == 1 else None)))
    for _ in range(5):  # each key goes through the widget, the screen and the app: a few idle waits
        await pilot.pause()


@pytest.mark.asyncio
async def test_a_burst_after_slash_and_G_lands_in_the_input_pilot(tmp_path):
    root = demo_root(tmp_path)
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        ws = app.screen
        await burst(pilot, "slash", *"sa", "enter")
        assert ws.filter_text == "sa" and ws.sort == "name" and type(app.screen).__name__ == "WorkspaceScreen"
        await burst(pilot, "escape", "G", *"task", "enter")
        assert ws.group == "task" and ws.sort == "name" and not ws.filter_text
        await burst(pilot, "slash", "slash", "a", "enter")  # a / inside the filter is a character
        assert ws.filter_text == "/a"
    assert not (root.parent / "experiments-archive").exists()


@pytest.mark.asyncio
async def test_a_key_typed_while_a_screen_opens_or_closes_goes_to_no_action(tmp_path):
    """Escape then x in one burst on the run detail (x: the chart's axis there): the x reaches the
    workspace, where x means stop, only after the detail closed: it goes to no action. Enter then
    x in one burst on the workspace: no stop either."""
    root = tmp_path / "experiments"
    synthetic_run(root, "2026-01-01-live", total=5, scores=[1.0], state="running", pid=os.getpid())
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("enter")
        detail = await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen" and app.screen, what="detail")
        await until(pilot, lambda: detail.history is not None, what="the history")
        await burst(pilot, "escape", "x")
        assert type(app.screen).__name__ == "WorkspaceScreen"
        assert not any(type(s).__name__ == "ConfirmScreen" for s in app.screen_stack)
        await burst(pilot, "enter", "x")
        assert type(app.screen).__name__ == "DetailScreen" and app.screen.xtime is False  # x went nowhere
        await pilot.press("x")  # typed on the detail: its own meaning
        assert app.screen.xtime is True
        await pilot.press("escape", "x")  # one by one: x on the workspace is stop, through its modal
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="the stop modal")
        await pilot.press("n")
    assert not (root / "2026-01-01-live" / "control.json").exists()


# --------------------------------------------------------------------------------------------- confirmations


@pytest.mark.asyncio
@pytest.mark.parametrize("key, verb", [("a", "archive"), ("x", "stop")])
async def test_enter_alone_never_confirms_y_does(tmp_path, key, verb):
    root = tmp_path / "experiments"
    state = "finished" if verb == "archive" else "running"
    synthetic_run(root, "2026-01-01-one", total=3, scores=[1.0, 0.5, 0.4], state=state, pid=os.getpid())
    age_tree(root / "2026-01-01-one")
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        for cancel in ("enter", "n", "escape"):
            await pilot.press(key)
            modal = await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen" and app.screen,
                                what="the modal")
            assert modal.focused.id == "no" and "Cancel" in str(modal.focused.label)
            await pilot.press(cancel)
            await until(pilot, lambda: type(app.screen).__name__ == "WorkspaceScreen", what="the modal to close")
            assert (root / "2026-01-01-one").is_dir() and not (root / "2026-01-01-one" / "control.json").exists()
        await pilot.press(key)
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="the modal")
        await pilot.press("y")
        done = (lambda: (root.parent / "experiments-archive" / "2026-01-01-one").is_dir()) if verb == "archive" \
            else (lambda: (root / "2026-01-01-one" / "control.json").exists())
        await until(pilot, done, timeout=10, what=f"the {verb}")


@pytest.mark.asyncio
async def test_readonly_action_keys_say_that_they_are_off(tmp_path):
    root = demo_root(tmp_path)
    app = TrainmonApp(Options(str(root), readonly=True))
    notes: list[str] = []
    app.notify = lambda message, **kw: notes.append(str(message))  # the one-line notice, as shown
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        for key, verb in (("a", "archive"), ("P", "promote"), ("x", "stop"), ("p", "pause"), ("r", "relaunch"),
                          ("R", "restore")):
            await pilot.press(key)
            await until(pilot, lambda v=verb: f"read-only: {v} is off" in notes, what=f"the {verb} notice")
            assert type(app.screen).__name__ == "WorkspaceScreen"
        footer = " ".join(str(k.render()) for k in app.screen.query("FooterKey"))
        assert "Promote" not in footer and "Stop" not in footer and "Relaunch" not in footer and "Help" in footer


# --------------------------------------------------------------------------------------------- help, palette


def test_help_and_palette_come_from_the_bindings():
    """Every binding with a name on every screen is on the help page (it drifted: Compare's d,
    Tab, Ctrl+Home/End were missing)."""
    from textual.binding import Binding

    from tui.keys import bindings_of, key_text, sections
    from tui.screens.compare import CompareScreen
    from tui.screens.detail import DetailScreen
    from tui.screens.help import help_table
    from tui.screens.inspector import InspectorScreen
    from tui.screens.workspace import WorkspaceScreen

    console = Console(width=140, record=True, color_system=None, file=open(os.devnull, "w"))
    console.print(help_table(False, TrainmonApp))
    text = console.export_text()
    for screen in (WorkspaceScreen, DetailScreen, InspectorScreen, CompareScreen):
        for b in bindings_of(screen):
            b = b if isinstance(b, Binding) else Binding(*b)
            assert key_text(b.key) in text and (b.tooltip or b.description) in text, (screen.__name__, b.key)
    for words in ("the config keys that differ", "Tab / Shift+Tab", "Ctrl+Home", "Ctrl+End", "the first row"):
        assert words in text, words
    assert [name for name, _ in sections(TrainmonApp)][:2] == ["Runs workspace", "Run detail"]


@pytest.mark.asyncio
async def test_the_palette_lists_the_screens_actions_and_runs_them(tmp_path):
    root = demo_root(tmp_path)
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        from tui.app import ActionsProvider
        from tui.keys import keys_of
        from tui.screens.workspace import WorkspaceScreen

        provider = ActionsProvider(app.screen)
        listed = {action for _, _, action in provider._commands()}
        wanted = {k.action for k in keys_of(WorkspaceScreen) if not k.action.startswith("app.")}
        assert wanted <= listed, wanted - listed
        await pilot.press("ctrl+p")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette", what="the palette")
        await pilot.press(*"sort", "enter")
        await until(pilot, lambda: type(app.screen).__name__ == "WorkspaceScreen" and app.screen.sort == "state",
                    what="sort run from the palette")
