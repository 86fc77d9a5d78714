"""Pure logic of the evaluation pieces, in tables: scoring, the summary, plan hashing, questions,
gates, answers, repair of a crashed responses.jsonl, the progress text. No subprocess, no torch."""

from __future__ import annotations

import math
import os
import threading
import time

import orjson
import pytest
from helpers import arith_questions, read_jsonl

from trainkit.errors import UserError
from trainkit.evaluation import report
from trainkit.evaluation.display import EvalProgress, rate_eta
from trainkit.evaluation.items import Garbage, RetryPolicy, extract_answer, run_item
from trainkit.evaluation.plan import Plan, check_questions, conversation_name, key_of, read_precheck, safe_id
from trainkit.evaluation.runner import Runner, prepare, repair_responses
from trainkit.evaluation.scoring import Unscorable, item_fields, metric_value, score_dir, session_duration, summarize
from trainkit.evaluation.writer import Counts, InlineWriter, ProgressiveWriter, WriterThread, make_sink
from trainkit.runfolder import EvalPaths

# --------------------------------------------------------------------------------------------- scoring

ITEM_SCORES = [
    ("accuracy", "7", "7", {"correct": True}),
    ("accuracy", " 7\n", "7", {"correct": True}),
    ("accuracy", "7", 7, {"correct": True}),  # a number answer compares as its JSON text
    ("accuracy", "07", "7", {"correct": False}),
    ("accuracy", "seven", "7", {"correct": False}),
    ("accuracy", [1, 2], [1, 2], {"correct": True}),
    ("nrmse", [1.0, 2.0], [1.0, 2.0], {"score": 0.0}),
    ("nrmse", [0.0, 0.0], [3.0, 4.0], {"score": 1.0}),
    ("nrmse", [3.0, 0.0], [3.0, 4.0], {"score": 0.8}),
    ("nrmse", [[1.0], [2.0]], [[1.0], [2.0]], {"score": 0.0}),
]


@pytest.mark.parametrize("metric,response,expected,fields", ITEM_SCORES)
def test_item_fields(metric, response, expected, fields):
    assert item_fields(metric, response, expected) == pytest.approx(fields)


@pytest.mark.parametrize("response,fragment", [
    ("abc", "expected a list of numbers"),
    ([1.0], "has 1 values, expected 2"),
    ([1.0, "x"], "holds str"),
    ([1.0, math.nan], "NaN"),
    (None, "NoneType"),
])
def test_unscorable_nrmse_responses(response, fragment):
    with pytest.raises(Unscorable, match=fragment):
        item_fields("nrmse", response, [1.0, 2.0])


def test_nrmse_is_pooled_over_items_not_a_mean_of_item_values():
    recs = [{"response": [0.0, 0.0], "expected": [3.0, 4.0]},   # err 25, ref 25
            {"response": [1.0, 1.0], "expected": [1.0, 1.0]}]   # err 0, ref 2
    value, _ = metric_value("nrmse", recs)
    assert value == pytest.approx(math.sqrt(25 / 27))  # the mean of item values would be 0.5


def _rec(qid, s, status="ok", response="1", expected="1", t=None, **kw):
    return {"question_id": qid, "sample_number": s, "status": status, "response": response,
            "expected": expected, "latency_s": 0.5, "t": t, **kw}


HEADER = {"kind": "plan", "version": 1, "name": "n", "task": None, "model": "m:f", "metric": "accuracy",
          "plan_hash": "h", "planned": 3, "questions": 3, "samples": 1}
PLANNED = [("0", 0), ("1", 0), ("2", 0)]

SUMMARIES = [
    # (records, expected subset)
    ([], {"done": 0, "ok": 0, "error": 0, "completed": False, "accuracy": None}),
    ([_rec(0, 0), _rec(1, 0, response="2")], {"done": 2, "ok": 2, "error": 0, "accuracy": 0.5, "correct": 1}),
    ([_rec(0, 0, "error", None), _rec(0, 0)], {"done": 1, "ok": 1, "error": 0}),  # the last record wins
    ([_rec(0, 0), _rec(1, 0, "error", None), _rec(2, 0)],
     {"done": 3, "ok": 2, "error": 1, "completed": True, "accuracy": 1.0}),
    ([_rec(0, 0), _rec(9, 0), _rec("x", 0), _rec(0, 1)], {"done": 1, "ok": 1}),  # keys outside the plan
    ([_rec("0", 0)], {"done": 1}),  # ids are keyed as text
]


@pytest.mark.parametrize("records,want", SUMMARIES)
def test_summarize(records, want):
    s = summarize(HEADER, PLANNED, records, [])
    assert {k: s[k] for k in want} == want
    assert s["planned"] == 3 and s["version"] == 1 and s["done"] == s["ok"] + s["error"]


def test_an_ok_record_that_cannot_be_scored_counts_as_an_error():
    header = {**HEADER, "metric": "nrmse"}
    s = summarize(header, PLANNED, [_rec(0, 0, response=[1.0], expected=[1.0]),
                                    _rec(1, 0, response="junk", expected=[1.0])], [])
    assert (s["ok"], s["error"], s["nrmse"]) == (1, 1, 0.0)


DURATIONS = [
    ([], [], 0.0),
    ([{"event": "start", "t": 10}, {"event": "end", "t": 15}], [12, 14], 5.0),
    ([{"event": "start", "t": 10}], [12, 14], 4.0),  # killed: up to its last finished item
    ([{"event": "start", "t": 10}, {"event": "start", "t": 100}, {"event": "end", "t": 103}], [11, 13, 101], 6.0),
    ([{"event": "start", "t": 10}], [], 0.0),
]


@pytest.mark.parametrize("sessions,times,want", DURATIONS)
def test_session_duration(sessions, times, want):
    assert session_duration(sessions, times) == pytest.approx(want)


# --------------------------------------------------------------------------------------------- plan


def plan(questions=None, **kw) -> Plan:
    args = {"name": "t", "questions": questions or arith_questions(4), "questions_source": "q.jsonl",
            "model": "m:f", "samples": 1, "metric": "accuracy"} | kw
    return Plan(**args)


def test_same_plan_same_hash_and_sample_major_order():
    a, b = plan(samples=2), plan(samples=2)
    assert a.plan_hash == b.plan_hash and a.differences(b.header()) == []
    assert [(it.question_id, it.sample_number) for it in a.items][:5] == [(0, 0), (1, 0), (2, 0), (3, 0), (0, 1)]
    assert a.items[0].model_input() == {"id": 0, "question": "0+0", "sample_number": 0}


CHANGES = [
    (dict(questions=arith_questions(5)), "questions differ (4 from q.jsonl"),
    (dict(questions=[{**q, "answer": "x"} if q["id"] == 1 else q for q in arith_questions(4)]), "questions differ"),
    (dict(questions=list(reversed(arith_questions(4)))), "questions differ"),
    (dict(questions=arith_questions(4, level=1)), "questions differ"),
    (dict(model="m:g"), "model differs ('m:f' vs 'm:g')"),
    (dict(samples=3), "samples differ (1 vs 3)"),
    (dict(metric="nrmse"), "metric differs ('accuracy' vs 'nrmse')"),
]


@pytest.mark.parametrize("change,reason", CHANGES)
def test_plan_differences_name_the_reason(change, reason):
    old, new = plan(), plan(**change)
    assert old.plan_hash != new.plan_hash
    diffs = new.differences(old.header())
    assert len(diffs) == 1 and reason in diffs[0], diffs


def test_extras_reach_the_model_and_the_answer_never_does():
    p = plan(questions=[{"id": "a b/c", "question": "1+1", "answer": "2", "level": 3}])
    item = p.items[0]
    assert item.model_input() == {"id": "a b/c", "question": "1+1", "sample_number": 0, "level": 3}
    assert item.file.startswith("qa_b_c~") and item.file.endswith("_s0.json")


@pytest.mark.parametrize("qid,name", [
    (7, "q7_s0.json"), ("abc-1.2", "qabc-1.2_s0.json"), ("x/y", f"qx_y~{safe_id('x/y')[-8:]}_s0.json"),
    (".hidden", f"qhidden~{safe_id('.hidden')[-8:]}_s0.json"),
])
def test_conversation_names_are_file_safe(qid, name):
    assert conversation_name(qid, 0) == name
    assert safe_id("x/y") != safe_id("x_y")


@pytest.mark.parametrize("rows,fragment", [
    ([], "no questions"),
    ([[1]], "line 1: expected a JSON object"),
    ([{"id": 1, "question": "q"}], "missing 'answer'"),
    ([{"id": None, "question": "q", "answer": 1}], "'id' must be"),
    ([{"id": True, "question": "q", "answer": 1}], "'id' must be"),
    ([{"id": 1, "question": "q", "answer": 1, "sample_number": 0}], "'sample_number' is reserved"),
    ([{"id": 1, "question": "q", "answer": 1}, {"id": "1", "question": "q", "answer": 1}], "duplicate id '1'"),
])
def test_bad_questions(rows, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(")):
        check_questions(rows, "qs.jsonl")


@pytest.mark.parametrize("qid,s,key", [(1, 0, ("1", 0)), ("a", 2, ("a", 2)), (True, 0, None), (1, "0", None),
                                       (None, 0, None), (1.5, 0, None)])
def test_key_of(qid, s, key):
    assert key_of(qid, s) == key


# --------------------------------------------------------------------------------------------- gates

GATES = [
    ({"nrmse": {"max": 0.1}}, {"metric": "nrmse", "nrmse": 0.05, "completed": True}, True, "nrmse 0.05 <= max 0.1"),
    ({"nrmse": {"max": 0.1}}, {"metric": "nrmse", "nrmse": 0.5, "completed": True}, False, "nrmse 0.5 > max 0.1"),
    ({"accuracy": {"min": 0.8}}, {"metric": "accuracy", "accuracy": 0.8, "completed": True}, True, ">= min 0.8"),
    ({"accuracy": {"min": 0.8}}, {"metric": "accuracy", "accuracy": 0.75, "completed": True}, False, "< min 0.8"),
    ({"accuracy": {"min": 0.5, "max": 0.9}}, {"metric": "accuracy", "accuracy": 0.95, "completed": True}, False,
     "> max 0.9"),
    ({"accuracy": {"min": 0.8}}, {"metric": "nrmse", "nrmse": 0.1, "completed": True}, False, "not measured"),
    ({"nrmse": {"max": 0.1}}, {"metric": "nrmse", "nrmse": None, "completed": True}, False, "no ok item"),
    # no gate: evaluated, neither passed nor failed (null), complete or not
    ({}, {"metric": "nrmse", "nrmse": 0.9, "completed": True}, None, "evaluated, no gates configured"),
    ({}, {"metric": "nrmse", "nrmse": 0.01, "completed": False, "done": 3, "planned": 9}, None,
     "evaluation incomplete (3/9)"),
    ({}, {"metric": "accuracy", "accuracy": None, "completed": True, "planned": 60, "ok": 0, "error": 60}, None,
     "no gates configured"),
    ({"nrmse": {"max": 0.1}}, {"metric": "nrmse", "nrmse": 0.01, "completed": False}, False, "incomplete"),
    # never rounded onto the limit
    ({"nrmse": {"max": 0.1}}, {"metric": "nrmse", "nrmse": 0.10003, "completed": True}, False,
     "nrmse 0.10003 > max 0.1"),
    ({"accuracy": {"min": 0.995}}, {"metric": "accuracy", "accuracy": 0.99499, "completed": True}, False,
     "accuracy 0.99499 < min 0.995"),
    # a gate never passes on a fraction of the questions (min_ok_fraction defaults to 1)
    ({"accuracy": {"min": 0.8}}, {"metric": "accuracy", "accuracy": 1.0, "completed": True, "planned": 60, "ok": 40,
                                  "error": 20}, False,
     "accuracy 1 over 40 of 60 items (66.7 %) < min_ok_fraction 1"),
    ({"accuracy": {"min": 0.8}}, {"metric": "accuracy", "accuracy": 0.5, "completed": True, "planned": 60, "ok": 40,
                                  "error": 20}, False, "accuracy 0.5 over 40 of 60 items (66.7 %) < min 0.8"),
    ({"accuracy": {"min": 0.8}}, {"metric": "accuracy", "accuracy": 1.0, "completed": True, "planned": 60, "ok": 60,
                                  "error": 0}, True, "accuracy 1 >= min 0.8"),
]


@pytest.mark.parametrize("gates,summary,passed,fragment", GATES)
def test_gates(gates, summary, passed, fragment):
    rep = report.build_report("default", summary, gates)
    assert rep["gates_passed"] is passed and rep["gates"] == gates and rep["version"] == 1
    assert fragment in report.one_line(rep)
    assert ("final_nrmse" in rep) == (summary["metric"] == "nrmse")


def test_min_ok_fraction_lets_a_gate_pass_on_part_of_the_items_when_the_config_says_so():
    summary = {"metric": "accuracy", "accuracy": 1.0, "completed": True, "planned": 60, "ok": 40, "error": 20}
    strict = report.build_report("default", summary, {"accuracy": {"min": 0.8}})
    assert strict["gates_passed"] is False and strict["measured_fraction"] == 40 / 60
    assert strict["min_ok_fraction"] == 1.0 and strict["planned"] == 60 and strict["ok"] == 40
    loose = report.build_report("default", summary, {"accuracy": {"min": 0.8}}, min_ok_fraction=0.6)
    assert loose["gates_passed"] is True
    cfg = {"eval": {"min_ok_fraction": 0.6}}
    assert report.min_ok_fraction_from_config(cfg) == 0.6 and report.min_ok_fraction_from_config({}) == 1.0
    with pytest.raises(UserError, match="min_ok_fraction: 1.5 must be between 0 and 1"):
        report.min_ok_fraction_from_config({"eval": {"min_ok_fraction": 1.5}})


@pytest.mark.parametrize("config,want", [
    (None, {}),
    ({"task": "burgers"}, {}),
    ({"eval": {"gates": {"nrmse": {"max": 0.1, "min": None}, "accuracy": None}}}, {"nrmse": {"max": 0.1}}),
    ({"eval": {"gates": {"accuracy": {"min": 0.8}}}}, {"accuracy": {"min": 0.8}}),
    ({"eval": {"gates": {"nrmse": {}}}}, {}),
])
def test_gates_from_config(config, want):
    assert report.gates_from_config(config) == want


@pytest.mark.parametrize("config,fragment", [
    ({"eval": {"gates": {"nrmze": {"max": 1}}}}, "did you mean eval.gates.'nrmse'"),
    ({"eval": {"gates": {"nrmse": {"max": "low"}}}}, "eval.gates.nrmse.max: expected a number"),
    ({"eval": {"gates": [1]}}, "eval.gates: expected a mapping"),
])
def test_bad_gates_in_a_resolved_config(config, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(")):
        report.gates_from_config(config)


# --------------------------------------------------------------------------------------------- answers

ANSWERS = [
    ("7", "7", None),
    (7, 7, None),
    ([0.1, 0.2], [0.1, 0.2], None),
    ({"answer": "7", "messages": [{"role": "user", "content": "3+4"}]}, "7", 1),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "a", 2),
]


@pytest.mark.parametrize("raw,answer,n_messages", ANSWERS)
def test_extract_answer(raw, answer, n_messages):
    got, messages = extract_answer(raw)
    assert got == answer and (messages is None if n_messages is None else len(messages) == n_messages)


@pytest.mark.parametrize("raw,fragment", [
    (None, "returned NoneType"),
    (object(), "returned object"),
    ({"text": "7"}, "without 'answer'"),
    ({"messages": "hi"}, "'messages' must be a list"),
    ({"answer": {1, 2}}, "returned set"),
])
def test_garbage_answers(raw, fragment):
    with pytest.raises(Garbage, match=fragment):
        extract_answer(raw)


def test_retries_with_exponential_backoff_then_an_error_record():
    calls = []

    def fails_twice(item):
        calls.append(item["id"])
        if len(calls) <= 2:
            raise KeyError("nope")
        return "0"

    item = plan().items[0]
    assert RetryPolicy(backoff_s=0.5).delay(1) == 0.5 and RetryPolicy(backoff_s=0.5).delay(3) == 2.0
    ok = run_item(fails_twice, item, "accuracy", RetryPolicy(retries=2, backoff_s=0), threading.Event())
    assert (ok.status, ok.attempts, ok.errors, ok.fields) == ("ok", 3, ["KeyError: 'nope'"] * 2, {"correct": True})
    calls.clear()
    err = run_item(fails_twice, item, "accuracy", RetryPolicy(retries=1, backoff_s=0), threading.Event())
    assert (err.status, err.attempts, err.error) == ("error", 2, "KeyError: 'nope'")
    stop = threading.Event()
    stop.set()
    calls.clear()
    assert run_item(fails_twice, item, "accuracy", RetryPolicy(retries=2, backoff_s=1), stop) is None


# --------------------------------------------------------------------------------------------- files


@pytest.mark.parametrize("content,tail,kept,dropped", [
    (b"", b"", 0, 0),
    (b'{"question_id":1,"sample_number":0}\n', b"", 1, 0),
    (b'{"question_id":1,"sample_number":0}\n', b'{"question_id":2,"sam', 1, 0),
    (b'{"question_id":1,"sample_number":0}\ngarbage\n{"question_id":2,"sample_number":0}\n', b"", 2, 1),
    (b'{"question_id":1,"sample_number":0}\n[1]\n{"x":1}\n', b'{"question_id":2,', 1, 2),
])
def test_repair_responses(tmp_path, content, tail, kept, dropped):
    path = tmp_path / "responses.jsonl"
    path.write_bytes(content + tail)
    records, cut, gone = repair_responses(path)
    assert (len(records), cut, gone) == (kept, len(tail), dropped)
    assert len(read_jsonl(path)) == kept  # what is left parses, line by line


@pytest.mark.parametrize("sink_cls,left", [(InlineWriter, 49), (WriterThread, 48)])
def test_a_write_failure_stops_the_run_and_is_reported(tmp_path, sink_cls, left):
    p = plan(questions=arith_questions(50))
    paths = EvalPaths(tmp_path / "e")
    prepare(paths, p)
    writer = ProgressiveWriter(paths, p.metric, p.model)
    os.close(writer._lines_fd)  # responses.jsonl can no longer be written: a real EBADF on the next write
    runner: list[Runner] = []
    failed = threading.Event()

    def on_failure(e: BaseException) -> None:
        runner[0].stop()
        failed.set()

    def model(item: dict) -> str:  # the first item returns at once; the next waits until the failure is seen
        if item["id"] > 0:
            failed.wait(10)
        return "0"

    sink = sink_cls(writer, on_failure=on_failure)
    runner.append(Runner(model, p.items, p.metric, sink))
    runner[0].run()
    sink.close()
    assert isinstance(sink.failure, OSError) and sink.counts.done == 0
    assert runner[0].remaining == left  # it stopped instead of running every item into the void


@pytest.mark.parametrize("workers", [1, 4])
def test_finished_items_never_pile_up_unwritten_even_with_a_model_that_holds_the_gil(tmp_path, workers):
    p = plan(questions=arith_questions(200))
    paths = EvalPaths(tmp_path / "e")
    prepare(paths, p)

    def spin(item: dict) -> str:  # pure-Python CPU work: the GIL is never released inside the model
        t = time.perf_counter()
        while time.perf_counter() - t < 0.0002:
            pass
        return "0"

    sink = make_sink(ProgressiveWriter(paths, p.metric, p.model), workers)
    Runner(spin, p.items, p.metric, sink, workers=workers).run()
    on_disk_when_the_last_finished = sink.counts.done
    sink.close()
    # one worker writes its own items; N workers wait once N items are queued for the writer
    assert on_disk_when_the_last_finished >= 200 - (0 if workers == 1 else workers + 1)
    assert sink.counts.done == 200 and len(read_jsonl(paths.responses)) == 200


def test_prepare_and_score_dir_agree_with_a_direct_run(tmp_path):
    p = plan(questions=arith_questions(7), samples=2)
    paths = EvalPaths(tmp_path / "e")
    state = prepare(paths, p)
    assert state.new and len(state.todo) == 14
    header, keys = read_precheck(paths.precheck)
    assert header["plan_hash"] == p.plan_hash and keys == [it.key for it in p.items]
    sink = make_sink(ProgressiveWriter(paths, p.metric, p.model), 3, Counts())
    Runner(lambda item: item["question"].split("+")[0] if item["id"] % 2 else "wrong", state.todo[:10], p.metric,
           sink, workers=3).run()
    sink.close()
    s = score_dir(paths.root)
    assert (s["done"], s["completed"], sink.counts.done) == (10, False, 10)
    again = prepare(paths, p)
    assert [it.key for it in again.todo] == [it.key for it in p.items[10:]] and again.counts.done == 10
    by_key = {(str(x["question_id"]), x["sample_number"]): x for x in read_jsonl(paths.responses)}
    for it in p.items[:10]:  # lines come in the order items finished; each matches its conversation file
        conv = orjson.loads((paths.conversations / it.file).read_bytes())
        assert conv["response"] == by_key[it.key]["response"] and conv["status"] == by_key[it.key]["status"]


# --------------------------------------------------------------------------------------------- display


@pytest.mark.parametrize("done,start,planned,elapsed,rate,eta", [
    (0, 0, 10, 5.0, None, None),
    (5, 0, 10, 5.0, 1.0, 5.0),
    (10, 4, 10, 3.0, 2.0, 0.0),
    (6, 6, 10, 0.0, None, None),
])
def test_rate_eta(done, start, planned, elapsed, rate, eta):
    assert rate_eta(done, start, planned, elapsed) == (rate, eta)


def test_plain_progress_lines(capsys):
    now = [100.0]
    d = EvalProgress(interactive=False, plain_every_s=10, clock=lambda: now[0])
    d.start(name="x", planned=10, done=2, ok=2, error=0)
    now[0] = 104.0
    d.update(done=6, ok=5, error=1)  # before plain_every_s: nothing
    now[0] = 111.0
    d.update(done=8, ok=7, error=1)
    out = capsys.readouterr().out.splitlines()
    assert out == ["eval 2/10  ok 2  error 0  - items/s  ETA --:--",
                   "eval 8/10  ok 7  error 1  0.5 items/s  ETA 00:04"]
