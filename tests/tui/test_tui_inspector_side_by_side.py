"""The same item in two evaluations side by side (issue 26, section 3): ``c`` in the inspector lists
the other evaluations under the root that hold the item (of the same run and of another run; one
without it is not offered), Enter opens both conversations in two panes, ``n``/``p`` move through
the items the two share. Real evaluation folders in the contract's format, the app through Pilot."""

from __future__ import annotations

import pytest
from test_tui_inspector_search import a_run, make_eval, open_inspector, record
from tui_helpers import until

from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp
from tui.model.eval_pairs import others_holding, shared_items
from tui.model.evals import EvalItems, _item
from tui.screens.inspector import InspectorScreen
from tui.screens.side_by_side import ChooseEvalScreen, SideBySideScreen

SIZE = (120, 36)


def text_of(app, renderable) -> str:
    return "".join(seg.text for seg in app.console.render(renderable))


def two_runs(tmp_path):
    """Run a: evaluations ``q`` (items 0-9, 'old' answers) and ``q-ckpt2`` (items 0-5, 'mid');
    run b: ``q`` (items 2-11, 'new' answers, item 4 wrong) and ``other`` (items 20-24 only)."""
    root, run_a = a_run(tmp_path)
    run_b = synthetic_run(root, "2026-01-02-b", total=1, scores=[0.5], state="finished").root
    make_eval(run_a, [record(i, answer=f"old {i}") for i in range(10)])
    make_eval(run_a, [record(i, answer=f"mid {i}") for i in range(6)], name="q-ckpt2")
    make_eval(run_b, [record(i, answer=f"new {i}", correct=i != 4) for i in range(2, 12)])
    make_eval(run_b, [record(i) for i in range(20, 25)], name="other")
    return root, run_a, run_b


def test_the_evaluations_that_hold_an_item_and_the_items_they_share(tmp_path):
    root, run_a, run_b = two_runs(tmp_path)
    mine = EvalItems(str(run_a / "evals" / "q"))
    mine.update()
    item = mine.items[4]
    found = others_holding(item, str(mine.paths.root), [str(run_b), str(run_a)],
                           [(str(i), 0) for i in range(10)])
    assert [(o.run, o.name, o.shared, o.item.result_text()) for o in found] == \
        [("2026-01-01-a", "q-ckpt2", 6, "correct"), ("2026-01-02-b", "q", 8, "wrong")]  # its own run first
    assert shared_items(mine.items, found[1].items) == [(str(i), 0) for i in range(2, 10)]
    assert others_holding(_item({"question_id": 99, "sample_number": 0, "status": "ok"}), str(mine.paths.root),
                          [str(run_b)], []) == []
    assert others_holding(item, str(mine.paths.root), [str(run_b)], [], cancelled=lambda: True) == []


@pytest.mark.asyncio
async def test_c_opens_the_item_beside_itself_in_another_evaluation(tmp_path):
    root, run_a, run_b = two_runs(tmp_path)
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        insp = await open_inspector(app, pilot)  # run a (the first row), evaluation q
        assert insp.items.paths.name == "q" and insp.items.paths.root.parent.parent == run_a
        await pilot.press("g", "4", "enter", "c")
        chooser = await until(pilot, lambda: isinstance(app.screen, ChooseEvalScreen) and app.screen.others
                              is not None and app.screen, what="the other evaluations")
        rows = [[getattr(c, "plain", str(c)) for c in chooser.query_one("#others").get_row_at(i)]
                for i in range(chooser.query_one("#others").row_count)]
        assert rows == [["2026-01-01-a", "q-ckpt2", "correct", "6"], ["2026-01-02-b", "q", "wrong", "8"]]
        assert "2 evaluation(s) hold it" in str(chooser.query_one("#choose-head").render())
        await pilot.press("down", "enter")
        pair = await until(pilot, lambda: isinstance(app.screen, SideBySideScreen) and app.screen, what="the panes")
        left, right = (text_of(app, r) for r in pair.rendered)
        assert "question 4  sample 0  correct" in left and "old 4" in left and "new 4" not in left
        assert "question 4  sample 0  wrong" in right and "new 4" in right and "old 4" not in right
        assert "shared item 3 of 8" in str(pair.query_one("#pair-head").render())
        assert "2026-01-01-a / q" in str(pair.query_one("#pane-a .pane-title").render())
        assert "2026-01-02-b / q" in str(pair.query_one("#pane-b .pane-title").render())
        await pilot.press("n", "n")
        left, right = (text_of(app, r) for r in pair.rendered)
        assert "old 6" in left and "new 6" in right and "shared item 5 of 8" in str(pair.query_one("#pair-head")
                                                                                     .render())
        await pilot.press("p", "p", "p", "p", "p", "p")  # stops at the first shared item (2)
        assert "old 2" in text_of(app, pair.rendered[0]) and "shared item 1 of 8" in str(
            pair.query_one("#pair-head").render())
        await pilot.press("escape")
        assert app.screen is insp and insp.current().question_id == 4
        await pilot.press("g", *"8", "enter", "c")  # item 8: only run b's q holds it
        chooser = await until(pilot, lambda: isinstance(app.screen, ChooseEvalScreen) and app.screen.others
                              is not None and app.screen, what="the other evaluations")
        assert [o.label for o in chooser.others] == ["2026-01-02-b / q"]
        await pilot.press("escape")
        assert isinstance(app.screen, InspectorScreen)


@pytest.mark.asyncio
async def test_an_item_no_other_evaluation_holds_says_so(tmp_path):
    root, run = a_run(tmp_path)
    make_eval(run, [record(i) for i in range(3)])
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        await open_inspector(app, pilot)
        await pilot.press("c")
        chooser = await until(pilot, lambda: isinstance(app.screen, ChooseEvalScreen) and app.screen.others
                              is not None and app.screen, what="the search for others")
        assert chooser.others == [] and "no other evaluation holds it" in str(
            chooser.query_one("#choose-head").render())
        await pilot.press("enter")  # nothing to open
        assert app.screen is chooser
        await pilot.press("escape")
        assert isinstance(app.screen, InspectorScreen)


def test_the_help_lists_the_keys_of_the_two_panes():
    from tui.keys import sections

    pane = dict(sections(TrainmonApp))["Side by side (c in the inspector)"]
    assert [(k.keys, k.action) for k in pane] == [("esc", "back"), ("n", "next"), ("p", "previous")]
    inspector = {k.keys: k.action for k in dict(sections(TrainmonApp))["Conversation inspector"]}
    assert {inspector[k] for k in ("/", "s", "f", "c", "g")} == {"search", "sort", "score_range", "side_by_side",
                                                                 "goto"}
