"""The inspector finds the conversation you are looking for (issue 26, section 3, part): `g` jumps
to an item by its id, out of a filter that hides it; an id that is not there says so. A real
evaluation folder (its responses and conversation files), the real app through Pilot."""

from __future__ import annotations

import orjson
import pytest
from tui_helpers import ready, until

from trainkit.runfolder.files import write_json
from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp
from tui.screens.inspector import InspectorScreen, find_item

SIZE = (120, 36)


def write_eval(run, n: int = 30) -> None:
    folder = run / "evals" / "q"
    (folder / "conversations").mkdir(parents=True)
    with open(folder / "responses.jsonl", "wb") as f:
        for i in range(n):
            status = "error" if i == 7 else "ok"
            rec = {"question_id": i, "sample_number": 0, "status": status, "correct": i != 12, "latency_s": 0.01,
                   "attempts": 1, "error": "boom" if i == 7 else None, "response": f"answer {i}",
                   "expected": f"answer {i}" if i != 12 else "something else", "t": 1000.0 + i}
            f.write(orjson.dumps(rec) + b"\n")
            write_json(folder / "conversations" / f"q{i}_s0.json",
                       {**rec, "messages": [{"role": "user", "content": f"question {i}"},
                                            {"role": "assistant", "content": f"answer {i}"}]})


@pytest.mark.asyncio
async def test_g_jumps_to_an_item_by_its_id(tmp_path):
    root = tmp_path / "experiments"
    run = synthetic_run(root, "2026-01-01-a", total=1, scores=[0.5], state="finished").root
    write_eval(run)
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: getattr(app.screen, "evals", None), what="the evaluations")
        await pilot.press("i")
        insp = await until(pilot, lambda: isinstance(app.screen, InspectorScreen) and app.screen, what="inspector")
        await pilot.press("e")  # errors only: item 7
        assert [it.question_id for it in insp.shown] == [7]
        await pilot.press("g", "1", "2", "enter")  # item 12 is not an error: the filter goes, the cursor to it
        assert insp.which == "all" and insp.current().question_id == 12
        assert "something else" in "".join(seg.text for seg in app.console.render(insp.rendered))
        await pilot.press("g", *"25/0", "enter")
        assert insp.current().question_id == 25
        await pilot.press("g", *"999", "enter")
        assert insp.current().question_id == 25  # nowhere to go: it stays, and says so
        assert any("no item '999'" in str(n.message) for n in app._notifications)
        await pilot.press("g", "escape")
        assert not insp.query_one("#ask").display and isinstance(app.screen, InspectorScreen)


def test_an_item_is_named_by_its_id_or_id_and_sample():
    from tui.model.evals import _item

    items = [_item({"question_id": q, "sample_number": s, "status": "ok"}) for q, s in
             (("a", 0), ("a", 1), (3, 0))]
    assert find_item(items, "a") is items[0] and find_item(items, " a/1 ") is items[1]
    assert find_item(items, "3") is items[2] and find_item(items, "3/1") is None and find_item(items, "b") is None
