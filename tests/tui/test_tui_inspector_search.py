"""The inspector finds the conversation you are looking for (issue 26, section 3): ``/`` searches
every conversation's text in a worker (hits stream in, "N hits of M searched", Escape clears), ``s``
cycles the order, ``f`` filters by a score range, a running evaluation shows done/planned and the
list follows its new items. The pure logic (tui.model.eval_search) in tables; the screen on real
evaluation folders (precheck.jsonl, responses.jsonl, conversation files) through Pilot."""

from __future__ import annotations

import subprocess
import sys
import threading

import orjson
import pytest
from helpers import arith_questions, eval_env, write_jsonl
from tui_helpers import ready, until

from trainkit.evaluation.plan import Plan, write_precheck
from trainkit.runfolder import EvalPaths
from trainkit.runfolder.files import write_json
from trainkit.testing import synthetic_run
from tui.app import Options, TrainmonApp
from tui.model import eval_search as es
from tui.model.evals import _item
from tui.screens.inspector import InspectorScreen

SIZE = (120, 36)


# ------------------------------------------------------------------ writing evaluations (the contract's format)

def record(i: int, *, metric: str = "accuracy", prompt: str | None = None, answer: str | None = None,
           expected: str | None = None, error: str | None = None, correct: bool = True, score: float | None = None,
           latency: float = 0.01, t: float | None = None) -> dict:
    """One line of responses.jsonl (as trainkit.evaluation.writer.line_record writes it) and the
    prompt of its conversation (``_prompt``, taken out before writing the line)."""
    rec = {"question_id": i, "sample_number": 0, "status": "error" if error else "ok",
           "response": None if error else (answer if answer is not None else f"answer {i}"),
           "expected": expected if expected is not None else f"answer {i}",
           "latency_s": latency, "error": error, "attempts": 1, "t": 1000.0 + i if t is None else t}
    if metric == "accuracy":
        rec["correct"] = None if error else correct
    else:
        rec["score"] = None if error else score
    rec["_prompt"] = prompt if prompt is not None else f"question {i}"
    return rec


def write_item(folder, rec: dict, f) -> None:
    """The conversation file first, then its line, flushed (the writer's order)."""
    line = {k: v for k, v in rec.items() if k != "_prompt"}
    messages = [{"role": "user", "content": rec["_prompt"]}]
    if line["status"] == "ok":
        messages.append({"role": "assistant", "content": line["response"]})
    write_json(folder / "conversations" / f"q{line['question_id']}_s0.json",
               {"version": 1, **line, "model": "m", "messages": messages, "errors": [line["error"]] if
                line["error"] else [], "traceback": None})
    f.write(orjson.dumps(line) + b"\n")
    f.flush()


def make_eval(run, recs: list[dict], *, name: str = "q", planned: int | None = None, metric: str = "accuracy"):
    """An evaluation folder: its plan (``planned`` items, at least the records'), then the records."""
    folder = run / "evals" / name
    (folder / "conversations").mkdir(parents=True)
    n = max(planned or 0, len(recs))
    questions = [{"id": i, "question": f"question {i}", "answer": f"answer {i}"} for i in range(n)]
    write_precheck(EvalPaths(folder), Plan(name, questions, "qs.jsonl", "m", 1, metric))
    with open(folder / "responses.jsonl", "ab") as f:
        for rec in recs:
            write_item(folder, rec, f)
    return folder


def a_run(tmp_path, name: str = "2026-01-01-a"):
    root = tmp_path / "experiments"
    return root, synthetic_run(root, name, total=1, scores=[0.5], state="finished").root


async def open_inspector(app, pilot) -> InspectorScreen:
    await ready(pilot)
    await pilot.press("enter")
    await until(pilot, lambda: getattr(app.screen, "evals", None), what="the evaluations")
    await pilot.press("i")
    return await until(pilot, lambda: isinstance(app.screen, InspectorScreen) and app.screen, what="inspector")


def ids(insp: InspectorScreen) -> list:
    return [it.question_id for it in insp.shown]


def head(insp: InspectorScreen) -> str:
    return insp.head_text().plain


def searched_for(insp: InspectorScreen, text: str) -> bool:
    """The search of ``text`` (not of a part typed on the way) has searched every item."""
    return insp.hits is not None and insp.terms == es.parse_query(text) and insp.searched == insp.search_total


def pane(app, insp) -> str:
    return "".join(seg.text for seg in app.console.render(insp.rendered))


# ------------------------------------------------------------------ pure logic

@pytest.mark.parametrize("text, terms", [
    ("Zebra", ("zebra",)),
    ("  two   words ", ("two", "words")),
    ('"a phrase" and', ("a phrase", "and")),
    ('""', ()),
    ("", ()),
])
def test_a_query_is_words_or_quoted_phrases(text, terms):
    assert es.parse_query(text) == terms


@pytest.mark.parametrize("terms, text, hit", [
    (("zebra",), "the zebra ran", True),
    (("zebra", "lion"), "the zebra ran", False),
    (("zebra ran",), "the zebra ran", True),
    (("ran zebra",), "the zebra ran", False),
    ((), "anything", True),
])
def test_an_item_matches_when_it_holds_every_term(terms, text, hit):
    assert es.matches(terms, text) is hit


def test_the_search_text_is_the_prompt_answer_expected_and_error_of_the_newer_record():
    line = _item(record(3, answer="Four", expected="FIVE", correct=False, t=10.0))
    conv = {"t": 10.0, "messages": [{"role": "user", "content": "What is 2+2?"},
                                    {"role": "assistant", "content": "Four"}], "errors": []}
    text = es.item_text(line, conv)
    assert all(w in text for w in ("what is 2+2?", "four", "five")) and text == text.casefold()
    err = _item(record(4, error="ValueError: Boom", t=10.0))
    assert "valueerror: boom" in es.item_text(err, None)  # no file: the line's fields
    stale = {**conv, "t": 5.0, "messages": [{"role": "user", "content": "stale words"}]}
    assert "stale" not in es.item_text(line, stale)  # the file is older than the line: not searched
    structured = {"t": 10.0, "messages": [{"role": "user", "content": [{"type": "text", "text": "Héllo"}]}]}
    assert "héllo" in es.item_text(line, structured)


@pytest.mark.parametrize("text, inside, outside", [
    ("0.2-0.8", [0.2, 0.5, 0.8], [0.19, 0.81, None]),
    ("0.2 .. 0.8", [0.2, 0.8], [0.1]),
    ("0.2 to 0.8", [0.3], [0.9]),
    ("<0.5", [0.0, 0.49], [0.5, 1.0, None]),
    ("<=0.5", [0.5], [0.51]),
    (">0.5", [0.51, 1.0], [0.5]),
    (">= 0.5", [0.5], [0.49]),
    ("1", [1.0], [0.99]),
    ("=0", [0.0], [1.0]),
    ("-1-1", [-1.0, 0.0, 1.0], [1.5]),
    ("1e-3-2e-3", [0.0015], [0.01]),
])
def test_score_ranges(text, inside, outside):
    r = es.parse_range(text)
    assert all(r.contains(v) for v in inside) and not any(r.contains(v) for v in outside)
    assert es.parse_range(r.text().replace(" ", "").replace("to", "-")) == r  # what the head shows reads back


@pytest.mark.parametrize("text, why", [
    ("0.8-0.2", "write the low end first"),
    ("abc", "not a score range"),
    ("<", "not a score range"),
    ("1e999", "finite"),
])
def test_a_range_that_cannot_be_read_says_why(text, why):
    with pytest.raises(es.RangeError, match=why):
        es.parse_range(text)


def test_an_empty_range_is_no_range():
    assert es.parse_range("  ") is None


def test_the_orders():
    recs = [record(0, correct=True, latency=0.3), record(1, correct=False, latency=0.1),
            record(2, error="boom", latency=0.5), record(3, correct=False, latency=None),
            record(4, correct=True, latency=0.2)]
    items = [_item(r) for r in recs]

    def order(o, better=True):
        return [i.question_id for i in es.sort_items(items, o, better)]

    assert order(es.WRITTEN) == [0, 1, 2, 3, 4]
    assert order(es.WORST) == [1, 3, 0, 4, 2]  # wrong (0) before correct (1); the error has no score: last
    assert order(es.SLOWEST) == [2, 0, 4, 1, 3]  # no latency: last
    assert order(es.ERRORS_FIRST) == [2, 1, 3, 0, 4]  # errors, then wrong answers
    scored = [_item(record(i, metric="nrmse", score=s)) for i, s in enumerate((0.1, 0.9, 0.5))]
    assert [i.question_id for i in es.sort_items(scored, es.WORST, es.higher_is_better("nrmse", scored))] == [1, 2, 0]
    assert es.higher_is_better(None, scored) is False and es.higher_is_better(None, items) is True


def test_listed_combines_the_filter_the_range_the_hits_and_the_order():
    items = [_item(record(i, metric="nrmse", score=s, error="x" if s is None else None))
             for i, s in enumerate((0.1, 0.9, 0.5, None, 0.7))]
    rng = es.parse_range("0.4-1")
    assert [i.question_id for i in es.listed(items, score_range=rng)] == [1, 2, 4]
    hits = {("2", 0), ("4", 0), ("3", 0)}
    assert [i.question_id for i in es.listed(items, score_range=rng, hits=hits, order=es.WORST,
                                             higher_better=False)] == [4, 2]
    assert [i.question_id for i in es.listed(items, which="errors", hits=hits)] == [3]


def test_scan_streams_hits_in_batches_and_stops_when_cancelled():
    items = [_item(record(i)) for i in range(10)]
    texts = {i.question_id: "hit" if i.question_id % 3 == 0 else "miss" for i in items}
    ticks = iter(range(100))
    batches = list(es.scan(items, ("hit",), lambda it: texts[it.question_id], every_s=3,
                           clock=lambda: next(ticks)))
    assert [it.question_id for b, _ in batches for it in b] == [0, 3, 6, 9]
    assert [n for _, n in batches] == [1, 4, 7, 10]  # the first hit at once, then every 3 ticks, no empty end
    by_count = list(es.scan(items, ("hit",), lambda it: texts[it.question_id], every_s=1e9, every_n=4))
    assert [(len(b), n) for b, n in by_count] == [(1, 1), (1, 5), (1, 9), (1, 10)]  # hits 0 | 3 | 6 | 9
    assert list(es.scan([], ("hit",), lambda it: "")) == [([], 0)]  # nothing to search: it says so, once
    seen = []

    def text_of(it):
        seen.append(it.question_id)
        return "hit"

    got = list(es.scan(items, ("hit",), text_of, cancelled=lambda: len(seen) >= 4))
    assert [([i.question_id for i in b], n) for b, n in got] == [([0], 1)]  # the first hit, then nothing
    assert seen == [0, 1, 2, 3]


def test_the_text_cache_reads_a_file_once_per_version_within_its_budget():
    reads = []

    def load(it):
        reads.append(it.question_id)
        return {"t": it.t, "messages": [{"role": "user", "content": "x" * 10}]}, None

    cache = es.TextCache(load, max_chars=40)  # one item's text (28 characters) fits, not two
    a, b = _item(record(1, t=1.0)), _item(record(2, t=1.0))
    assert "xxxx" in cache.text(a) and cache.text(a) == cache.text(a) and reads == [1]
    cache.text(_item(record(1, t=2.0)))  # a new line of the item: read again
    assert reads == [1, 1]
    cache.text(b)
    cache.text(b)  # beyond the budget: not kept, read each time
    assert reads == [1, 1, 2, 2] and cache.chars <= 40


# ------------------------------------------------------------------ the screen

def searchable_eval(run, n: int = 400):
    """``n`` items; the word 'zebra' in the prompts of every 50th item (conversation files only),
    in the expected answer of item 7, in the error of item 13."""
    recs = []
    for i in range(n):
        recs.append(record(i, prompt=f"question {i} about a Zebra" if i % 50 == 0 else None,
                           expected="zebra crossing" if i == 7 else None, correct=i not in (7, 100),
                           error="ZebraError: stripes" if i == 13 else None, latency=0.001 * (i % 17)))
    make_eval(run, recs)
    return sorted({i for i in range(0, n, 50)} | {7, 13})


@pytest.mark.asyncio
async def test_slash_searches_every_conversation_and_escape_clears_it(tmp_path):
    root, run = a_run(tmp_path)
    expected = searchable_eval(run)
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        insp = await open_inspector(app, pilot)
        assert len(insp.shown) == 400 and "400/400 done" in head(insp)
        await pilot.press("slash", *"zebra")
        await until(pilot, lambda: searched_for(insp, "zebra") and insp.search_total == 400, what="the search")
        assert ids(insp) == expected
        assert f"search 'zebra': {len(expected)} hits of 400 searched" in head(insp)
        assert "question 0 about a Zebra" in pane(app, insp)  # the first hit is shown, the term marked
        assert any(s.style and "yellow" in str(s.style) for s in insp.rendered.renderables[2].spans)
        await pilot.press("space", *"crossing")  # typing on narrows it
        await pilot.press("enter")  # the search stays, the list has the focus
        await until(pilot, lambda: searched_for(insp, "zebra crossing"), what="the narrower search")
        assert insp.focused is insp.query_one("#items") and ids(insp) == [7]
        await pilot.press("slash", "ctrl+u", *"stripes", "enter")
        await until(pilot, lambda: searched_for(insp, "stripes"), what="the error's text")
        assert ids(insp) == [13]
        await pilot.press("w")  # the search and the wrong-answers filter together: none
        assert ids(insp) == [] and "no item matches" in pane(app, insp)
        await pilot.press("w", "escape")  # Escape clears the search: every item again, the screen stays
        assert insp.hits is None and len(insp.shown) == 400 and isinstance(app.screen, InspectorScreen)
        assert "search" not in head(insp)
        await pilot.press("slash", *"nowhere")
        await until(pilot, lambda: searched_for(insp, "nowhere"), what="a search with no hit")
        assert ids(insp) == [] and "0 hits of 400 searched" in head(insp)
        await pilot.press("escape")  # in the input: clears it too
        assert insp.hits is None and len(insp.shown) == 400 and isinstance(app.screen, InspectorScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, InspectorScreen)


@pytest.mark.asyncio
async def test_a_search_does_not_block_the_screen(tmp_path):
    """3,000 items searched (each file read) by a worker held half-way (at item 1502, by a gate in
    front of its reader): the hits found so far are listed and counted, and keys move the cursor,
    while the worker waits; let go, it ends with every hit."""
    root, run = a_run(tmp_path)
    make_eval(run, [record(i, prompt="needle" if i % 2 else None) for i in range(3000)])
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        insp = await open_inspector(app, pilot)
        insp.batch_s, insp.batch_n = 60.0, 500  # the first hit (item 1), then every 500 items (default: 50 ms)
        gate, read = threading.Event(), insp.cache.load

        def held(item):
            if item.question_id == 1502:
                gate.wait(20)
            return read(item)

        insp.cache.load = held
        try:
            await pilot.press("slash", *"needle", "enter")
            await until(pilot, lambda: insp.searched == 1502, what="the search to reach the gate")
            assert "751 hits of 1502 searched (of 3000…)" in head(insp) and len(insp.shown) == 751
            await pilot.press("down", "down", "n")  # the screen answers while the worker is held
            assert insp.query_one("#items").cursor_row == 3 and "question 7" in pane(app, insp)
        finally:
            gate.set()
        await until(pilot, lambda: insp.searched == insp.search_total, timeout=30, what="the search to end")
        assert len(insp.shown) == 1500 and all(q % 2 for q in ids(insp))
        assert "1500 hits of 3000 searched" in head(insp) and insp.current().question_id == 7


@pytest.mark.asyncio
async def test_s_cycles_the_order_and_f_filters_a_score_range(tmp_path):
    root, run = a_run(tmp_path)
    scores = [0.1, 0.9, None, 0.5, 0.7, 0.3]
    latencies = [3, 1, 6, 2, 5, 4]
    make_eval(run, [record(i, metric="nrmse", score=s, error="boom" if s is None else None, latency=latencies[i])
                    for i, s in enumerate(scores)], metric="nrmse")
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        insp = await open_inspector(app, pilot)
        assert ids(insp) == [0, 1, 2, 3, 4, 5]
        await pilot.press("s")
        assert ids(insp) == [1, 4, 3, 5, 0, 2] and "sorted: worst score first" in head(insp)  # nrmse: high is bad
        assert insp.query_one("#items").get_row_at(0)[0] == "1"  # the rows on screen follow
        await pilot.press("s")
        assert ids(insp) == [2, 4, 5, 0, 3, 1]  # slowest first
        await pilot.press("s")
        assert ids(insp)[0] == 2  # errors first
        await pilot.press("s")
        assert ids(insp) == [0, 1, 2, 3, 4, 5]  # as written again
        await pilot.press("f", *"0.2-0.8", "enter")
        assert ids(insp) == [3, 4, 5] and "score 0.2 to 0.8" in head(insp)
        await pilot.press("s")  # the range and the order together
        assert ids(insp) == [4, 3, 5]
        await pilot.press("f", "ctrl+u", *"0.8-0.2", "enter")  # unreadable: it says why, the input stays
        box = insp.query_one("#ask")
        assert box.display and "low end first" in str(box.border_subtitle) and ids(insp) == [4, 3, 5]
        await pilot.press("ctrl+u", *"<0.5", "enter")
        assert ids(insp) == [5, 0] and not box.display
        await pilot.press("e")  # errors have no score: none within the range
        assert ids(insp) == []
        await pilot.press("e", "g", "2", "enter")  # g lifts the range that hides item 2
        assert insp.range is None and insp.current().question_id == 2
        await pilot.press("f", "ctrl+u", "enter")  # empty: no range
        assert insp.range is None and len(insp.shown) == 6


@pytest.mark.asyncio
async def test_a_search_in_a_sorted_list_lists_its_hits_in_that_order(tmp_path):
    """Worst first, then a search whose hits stream in batches (every 40 items): each batch is put
    in place, and at the end the hits are the sorted hits."""
    root, run = a_run(tmp_path)
    scores = [(i * 37) % 101 / 100 for i in range(400)]
    make_eval(run, [record(i, metric="nrmse", score=s, prompt=f"question {i}" + (" owl" if i % 7 == 0 else ""))
                    for i, s in enumerate(scores)], metric="nrmse")
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        insp = await open_inspector(app, pilot)
        insp.batch_s, insp.batch_n, insp.resort_s = 60.0, 40, 0.05
        await pilot.press("s")
        await pilot.press("slash", *"owl", "enter")
        want = sorted((i for i in range(400) if i % 7 == 0), key=lambda i: -scores[i])
        await until(pilot, lambda: insp.searched == insp.search_total and ids(insp) == want, what="the sorted hits")
        rows = [insp.query_one("#items").get_row_at(r)[0] for r in range(len(want))]
        assert rows == [str(i) for i in want] and "sorted: worst score first" in head(insp)


@pytest.mark.asyncio
async def test_items_rewritten_under_a_search_enter_and_leave_it_in_place(tmp_path):
    """``--retry-errors`` writes a second line for an item (and its file anew): under an open search,
    a rewritten item that now matches takes its place among the hits, one that no longer matches
    leaves, and a new item that matches comes last."""
    root, run = a_run(tmp_path)
    folder = make_eval(run, [record(i, error="boom" if i in (2, 5) else None,
                                    prompt="an otter" if i in (5, 8) else None) for i in range(10)])
    app = TrainmonApp(Options(str(root)))
    async with app.run_test(size=SIZE) as pilot:
        insp = await open_inspector(app, pilot)  # (the watcher is up: the lines below are seen)
        await pilot.press("slash", *"otter", "enter")
        await until(pilot, lambda: searched_for(insp, "otter"), what="the search")
        assert ids(insp) == [5, 8]
        with open(folder / "responses.jsonl", "ab") as f:
            write_item(folder, record(2, prompt="now an otter", t=2000.0), f)  # retried: it matches now
            write_item(folder, record(5, t=2001.0), f)  # retried: no otter any more
            write_item(folder, record(10, prompt="a late otter"), f)
        await until(pilot, lambda: ids(insp) == [2, 8, 10] and "3 hits of 11 searched" in head(insp), timeout=10,
                    what="the rewritten items in place")
        rows = [insp.query_one("#items").get_row_at(r)[2].plain for r in range(3)]
        assert rows == ["ok", "ok", "ok"]  # item 2's row is its new line's


@pytest.mark.asyncio
async def test_a_running_evaluation_shows_done_of_planned_and_the_list_follows_it(tmp_path, env):
    """A real ``trainkit eval`` writing 20 items, released one by one through its model's gate
    files: the head counts done/planned as its lines arrive, the cursor on the last row follows
    them, a cursor elsewhere stays, an open search takes the new hits, and the end is seen."""
    root, run = a_run(tmp_path)
    questions = write_jsonl(tmp_path / "qs.jsonl", arith_questions(20))
    gates = tmp_path / "gates"
    gates.mkdir()

    def release(*ids):
        for i in ids:
            (gates / str(i)).touch()

    release(0, 1, 2)
    proc = subprocess.Popen([sys.executable, "-m", "trainkit", "eval", str(run), "--name", "live", "--model",
                             "eval_models:gated", "--questions", str(questions), "--retries", "0"], cwd=tmp_path,
                            env=eval_env(env, EVAL_GATE_DIR=str(gates)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        app = TrainmonApp(Options(str(root)))
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot)
            await until(pilot, lambda: (run / "evals" / "live" / "responses.jsonl").exists(), timeout=60,
                        what="the evaluation to start")
            insp = await open_inspector(app, pilot)
            await until(pilot, lambda: "running, 3/20 done" in head(insp), timeout=20, what="3 items")
            table = insp.query_one("#items")
            await pilot.press("end")  # on the last row: the list follows
            assert table.cursor_row == 2
            release(3, 4, 5)
            await until(pilot, lambda: "running, 6/20 done" in head(insp), timeout=20, what="items 3 to 5")
            await until(pilot, lambda: table.cursor_row == 5 and insp.current().question_id == 5
                        and "5+5" in pane(app, insp), timeout=20, what="the cursor to follow, its conversation shown")
            await pilot.press("home")  # elsewhere: it stays
            release(6)
            await until(pilot, lambda: len(insp.shown) == 7, timeout=20, what="item 6")
            assert table.cursor_row == 0
            await pilot.press("slash", *"13+6", "enter")
            await until(pilot, lambda: insp.hits is not None and insp.searched == insp.search_total, timeout=20,
                        what="search")
            assert ids(insp) == [] and "0 hits of 7 searched" in head(insp)
            release(*range(7, 14))
            await until(pilot, lambda: ids(insp) == [13], timeout=20, what="the new hit")
            await until(pilot, lambda: "1 hits of 14 searched" in head(insp), timeout=20, what="the count")
            release(*range(14, 20))
            assert proc.wait(timeout=60) == 0, proc.stderr.read().decode(errors="replace")[-2000:]
            await until(pilot, lambda: "20/20 done" in head(insp) and "running" not in head(insp)
                        and "1 hits of 20 searched" in head(insp), timeout=20, what="the end, every item searched")
    finally:
        release(*range(20))
        proc.kill()
        proc.wait()
        proc.stderr.close()
