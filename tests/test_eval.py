"""`trainkit eval` and `trainkit score` end to end: real subprocesses, real files, real model callables
(tests/eval_models.py). Waits are on observable file states, never on sleeps."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import (
    arith_questions,
    count_lines,
    eval_env,
    read_json,
    read_jsonl,
    start_trainkit,
    trainkit,
    wait_for,
    write_jsonl,
)

from trainkit import cli


def lines_of(d: Path) -> int:
    return count_lines(d / "responses.jsonl", b"\n")


def check_files(d: Path, planned: int) -> dict[tuple[str, int], dict]:
    """Every line parses; at most one ok record per item; each item's last record matches its
    conversation file; no temp file is left. Returns the last record of each item."""
    lines = read_jsonl(d / "responses.jsonl")
    last: dict[tuple[str, int], dict] = {}
    for rec in lines:
        last[(str(rec["question_id"]), rec["sample_number"])] = rec
    oks = collections.Counter((str(r["question_id"]), r["sample_number"]) for r in lines if r["status"] == "ok")
    assert all(v == 1 for v in oks.values()), oks.most_common(3)
    assert len(read_jsonl(d / "precheck.jsonl")) == planned + 1
    for (qid, s), rec in last.items():
        conv = read_json(d / "conversations" / f"q{qid}_s{s}.json")
        assert conv["version"] == 1
        assert (conv["status"], conv["response"], conv["error"], conv["question_id"]) == \
            (rec["status"], rec["response"], rec["error"], rec["question_id"])
    assert not [p for p in (d / "conversations").iterdir() if p.name.startswith(".")]
    return last


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def start_logged(args: list, cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "trainkit", *map(str, args)], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def test_results_appear_item_by_item_while_the_model_runs(tmp_path, env):
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(6))
    gate = tmp_path / "gate"
    gate.mkdir()
    proc = start_trainkit("eval", tmp_path / "run", "--model", "eval_models:gated", "--questions", q,
                          cwd=tmp_path, env=eval_env(env, EVAL_GATE_DIR=str(gate)))
    d = tmp_path / "run" / "evals" / "qs"
    try:
        wait_for(lambda: (d / "precheck.jsonl").exists(), what="precheck.jsonl")
        assert len(read_jsonl(d / "precheck.jsonl")) == 7  # header + every planned item, before any result
        assert lines_of(d) == 0
        for i in range(5):
            (gate / str(i)).touch()
            wait_for(lambda i=i: lines_of(d) == i + 1, what=f"line {i + 1}")
            assert sorted(p.name for p in (d / "conversations").iterdir()) == sorted(f"q{k}_s0.json"
                                                                                      for k in range(i + 1))
            assert read_jsonl(d / "responses.jsonl")[-1]["question_id"] == i
            assert proc.poll() is None and not (d / "test_summary.json").exists()  # still running
        (gate / "5").touch()
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    summary = read_json(d / "test_summary.json")
    assert {k: summary[k] for k in ("planned", "done", "ok", "error", "completed", "accuracy")} == \
        {"planned": 6, "done": 6, "ok": 6, "error": 0, "completed": True, "accuracy": 1.0}
    check_files(d, 6)


def test_kill9_mid_run_then_resume_each_item_exactly_once(tmp_path, env):
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(30))
    gate = tmp_path / "gate"
    gate.mkdir()
    run, d = tmp_path / "run", tmp_path / "run" / "evals" / "qs"
    args = ["eval", run, "--model", "eval_models:gated", "--questions", q, "--samples", "2", "--workers", "3"]
    proc = start_logged(args, tmp_path, eval_env(env, EVAL_GATE_DIR=str(gate), EVAL_GATE_FROM="12"),
                        tmp_path / "first.log")
    try:
        wait_for(lambda: lines_of(d) >= 12, what="12 finished items")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lines_of(d) == 12 and not (d / "test_summary.json").exists()

    # What a crash (or a power loss without --durable) can leave behind:
    with open(d / "responses.jsonl", "ab") as f:
        f.write(b'{"question_id":12,"sample_number":0,"status":"o')  # a torn last line
    (d / "conversations" / "q3_s0.json").write_bytes(b"")          # a zero-byte conversation file
    (d / "conversations" / ".q12_s0.json.999.tmp").write_bytes(b"{")  # an unfinished temp file
    (d / "conversations" / "q13_s0.json").write_bytes(b"{}")        # a file whose line was never written

    again = trainkit(*args, cwd=tmp_path, env=eval_env(env))  # same model spec, no gate now
    assert again.returncode == 0, again.stderr
    assert "truncated a torn last line" in again.stderr and "rebuilt 1" in again.stderr
    lines = read_jsonl(d / "responses.jsonl")
    keys = [(r["question_id"], r["sample_number"]) for r in lines]
    assert len(keys) == len(set(keys)) == 60  # every item exactly once
    assert set(keys) == {(i, s) for i in range(30) for s in range(2)}
    last = check_files(d, 60)
    assert all(r["status"] == "ok" and r["correct"] for r in last.values())
    assert read_json(d / "conversations" / "q3_s0.json")["rebuilt"] is True
    summary = read_json(d / "test_summary.json")
    assert {k: summary[k] for k in ("planned", "done", "ok", "error", "completed", "accuracy", "sessions")} == \
        {"planned": 60, "done": 60, "ok": 60, "error": 0, "completed": True, "accuracy": 1.0, "sessions": 2}
    assert summary["version"] == 1 and summary["duration_s"] >= 0


def test_trainmon_opens_only_whole_conversation_files_while_they_are_written_and_after_a_kill9(tmp_path, env):
    """trainmon's inspector stays open on an evaluation that is written, killed -9 and resumed: every
    item it lists opens a whole conversation file (a file counts once its line is written), a file
    that a kill left half-written is never listed, and the resume redoes that item and writes its
    file whole: each item once, none missing."""
    from tui.model.evals import EvalItems, item_key

    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(40))
    gate = tmp_path / "gate"
    gate.mkdir()
    run, d = tmp_path / "run", tmp_path / "run" / "evals" / "qs"
    args = ["eval", run, "--model", "eval_models:big_gated", "--questions", q]
    proc = start_logged(args, tmp_path, eval_env(env, EVAL_GATE_DIR=str(gate), EVAL_GATE_FROM="30"),
                        tmp_path / "first.log")
    items = EvalItems(str(d))
    opened: set[tuple[str, int]] = set()

    def open_listed() -> int:
        items.update()
        for it in items.items:
            if item_key(it) not in opened:
                rec, why = items.conversation(it)
                assert rec is not None, why  # listed, so whole
                assert (rec["question_id"], rec["status"], len(rec["messages"][1]["padding"])) == \
                    (it.question_id, "ok", 200_000)
                opened.add(item_key(it))
        return len(opened)

    try:
        wait_for(lambda: open_listed() >= 30, what="30 items opened while the evaluation writes them")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    whole = (d / "conversations" / "q0_s0.json").read_bytes()
    (d / "conversations" / "q30_s0.json").write_bytes(whole[:len(whole) // 2])  # the kill hit item 30's write
    assert open_listed() == 30 and ("30", 0) not in opened

    again = trainkit(*args, cwd=tmp_path, env=eval_env(env))
    assert again.returncode == 0, again.stderr
    assert open_listed() == 40
    keys = [(r["question_id"], r["sample_number"]) for r in read_jsonl(d / "responses.jsonl")]
    assert sorted(keys) == [(i, 0) for i in range(40)]  # each item once, none missing
    last = check_files(d, 40)  # q30_s0.json rewritten whole, matching its line
    assert all(r["status"] == "ok" and r["correct"] for r in last.values())


def test_retry_errors_replaces_a_conversation_file_whole_under_a_reader_that_has_it_open(tmp_path, env):
    """The inspector has an error item's conversation open when --retry-errors re-runs it: what it
    reads stays the whole old file (the new one replaces it by rename, never in place), and the
    path then holds the whole new file."""
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(6))
    args = ["eval", tmp_path / "run", "--model", "eval_models:flaky", "--questions", q, "--retries", "0"]
    first = trainkit(*args, cwd=tmp_path, env=eval_env(env, EVAL_FAIL_IDS="2"))
    assert first.returncode == 0, first.stderr
    path = tmp_path / "run" / "evals" / "qs" / "conversations" / "q2_s0.json"
    with open(path, "rb", buffering=0) as reader:
        head = reader.read(10)  # the reader is in the middle of the file (unbuffered: the rest is not read yet)
        retry = trainkit(*args, "--retry-errors", cwd=tmp_path, env=eval_env(env))
        assert retry.returncode == 0, retry.stderr
        old = orjson.loads(head + reader.read())
    assert (old["status"], old["error"]) == ("error", "ValueError: boom on item 2")
    assert read_json(path)["status"] == "ok"


def test_failing_items_are_error_records_and_the_rest_completes(tmp_path, env):
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(12))
    r = trainkit("eval", tmp_path / "run", "--model", "eval_models:flaky", "--questions", q, "--retries", "1",
                 "--backoff", "0", "--durable", cwd=tmp_path, env=eval_env(env, EVAL_FAIL_IDS="2,5,11"))
    assert r.returncode == 0, r.stderr
    d = tmp_path / "run" / "evals" / "qs"
    last = check_files(d, 12)
    errors = {k[0]: v for k, v in last.items() if v["status"] == "error"}
    assert sorted(errors) == ["11", "2", "5"]
    rec = errors["5"]
    assert (rec["error"], rec["attempts"], rec["response"], rec["correct"]) == \
        ("ValueError: boom on item 5", 2, None, None)
    conv = read_json(d / "conversations" / "q5_s0.json")
    assert conv["error"] == "ValueError: boom on item 5" and len(conv["errors"]) == 2
    assert "boom on item 5" in conv["traceback"] and conv["messages"][0]["role"] == "user"
    summary = read_json(d / "test_summary.json")
    assert (summary["done"], summary["ok"], summary["error"], summary["completed"], summary["accuracy"]) == \
        (12, 9, 3, True, 1.0)
    rep = read_json(tmp_path / "run" / "reports" / "qs.json")
    assert rep["gates_passed"] is None  # no gates configured: evaluated, neither passed nor failed
    assert (rep["planned"], rep["ok"], rep["error"], rep["measured_fraction"]) == (12, 9, 3, 0.75)


def test_garbage_timeouts_and_chat_answers(tmp_path, env):
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(10, level="easy"))
    r = trainkit("eval", tmp_path / "run", "--model", "eval_models:mixed", "--questions", q, "--retries", "0",
                 "--timeout", "0.5", "--workers", "2", cwd=tmp_path, env=eval_env(env))
    assert r.returncode == 0, r.stderr
    last = check_files(tmp_path / "run" / "evals" / "qs", 10)
    by_id = {int(k[0]): v for k, v in last.items()}
    for i, rec in by_id.items():
        kind = i % 5
        if kind == 0:
            assert rec["status"] == "ok" and rec["correct"] is True
        elif kind == 4:
            assert rec["status"] == "ok" and rec["correct"] is False and rec["response"] == "not a number"
        else:
            want = {1: "garbage: returned NoneType", 2: "RuntimeError: model exploded", 3: "timed out after 0.5s"}[kind]
            assert rec["status"] == "error" and rec["error"].startswith(want), rec
    summary = read_json(tmp_path / "run" / "evals" / "qs" / "test_summary.json")
    assert (summary["ok"], summary["error"], summary["accuracy"], summary["correct"]) == (4, 6, 0.5, 2)

    r = trainkit("eval", tmp_path / "run", "--model", "eval_models:chat", "--questions", q, "--name", "chat",
                 cwd=tmp_path, env=eval_env(env))
    assert r.returncode == 0, r.stderr
    conv = read_json(tmp_path / "run" / "evals" / "chat" / "conversations" / "q3_s0.json")
    assert [m["role"] for m in conv["messages"]] == ["system", "user", "assistant"]
    assert conv["response"] == "  6\n" and conv["correct"] is True  # 3+3; surrounding whitespace ignored
    assert read_json(tmp_path / "run" / "evals" / "chat" / "test_summary.json")["accuracy"] == 1.0


def test_ctrl_c_stops_cleanly_and_score_equals_the_summary(tmp_path, env):
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(20))
    gate = tmp_path / "gate"
    gate.mkdir()
    run, d = tmp_path / "run", tmp_path / "run" / "evals" / "qs"
    args = ["eval", run, "--model", "eval_models:gated", "--questions", q]
    log = tmp_path / "eval.log"
    proc = start_logged(args, tmp_path, eval_env(env, EVAL_GATE_DIR=str(gate), EVAL_GATE_FROM="8"), log)
    try:
        wait_for(lambda: lines_of(d) == 8, what="8 finished items")
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: b"SIGINT received" in log.read_bytes(), what="the stop request to be seen")
        for i in range(20):
            (gate / str(i)).touch()  # lets the item in flight finish; no new one may start
        assert proc.wait(timeout=60) == 130, log.read_text()
    finally:
        proc.kill()
    summary = read_json(d / "test_summary.json")
    assert summary["completed"] is False and summary["planned"] == 20
    assert summary["done"] == lines_of(d) and summary["done"] in (8, 9)
    check_files(d, 20)

    scored = trainkit("score", d, "--json", cwd=tmp_path, env=env)
    assert scored.returncode == 0, scored.stderr
    assert orjson.loads(scored.stdout) == summary  # the same numbers, from the files alone
    human = trainkit("score", d, cwd=tmp_path, env=env)
    assert "incomplete" in human.stdout and f"done {summary['done']}" in human.stdout

    again = trainkit(*args, cwd=tmp_path, env=eval_env(env))
    assert again.returncode == 0, again.stderr
    final = read_json(d / "test_summary.json")
    assert (final["done"], final["completed"], final["sessions"]) == (20, True, 2)
    assert orjson.loads(trainkit("score", d, "--json", cwd=tmp_path, env=env).stdout) == final
    assert len(read_jsonl(d / "responses.jsonl")) == 20


def test_a_second_ctrl_c_stops_at_once_and_abandons_the_item_in_flight(tmp_path, env):
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(10))
    gate = tmp_path / "gate"
    gate.mkdir()
    d = tmp_path / "run" / "evals" / "qs"
    log = tmp_path / "eval.log"
    proc = start_logged(["eval", tmp_path / "run", "--model", "eval_models:gated", "--questions", q], tmp_path,
                        eval_env(env, EVAL_GATE_DIR=str(gate), EVAL_GATE_FROM="3"), log)
    try:
        wait_for(lambda: lines_of(d) == 3, what="3 finished items")
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: b"SIGINT received" in log.read_bytes(), what="the first Ctrl-C to be seen")
        proc.send_signal(signal.SIGINT)  # item 3 never finishes: only the second Ctrl-C ends the run
        assert proc.wait(timeout=60) == 130, log.read_text()
    finally:
        proc.kill()
    summary = read_json(d / "test_summary.json")
    assert (summary["done"], summary["completed"]) == (3, False) and lines_of(d) == 3
    check_files(d, 10)
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("change,reason", [
    ("answers", "questions differ"),
    ("samples", "samples differ (1 vs 2)"),
    ("model", "model differs ('eval_models:arith' vs 'eval_models:chat')"),
])
def test_resume_with_another_plan_is_refused_then_fresh_moves_it_aside(tmp_path, env, change, reason):
    rows = arith_questions(6)
    q = write_jsonl(tmp_path / "qs.jsonl", rows)
    run, d = tmp_path / "run", tmp_path / "run" / "evals" / "qs"
    base = ["eval", run, "--questions", q]
    first = trainkit(*base, "--model", "eval_models:arith", cwd=tmp_path, env=eval_env(env))
    assert first.returncode == 0, first.stderr
    before = snapshot(run)
    model, extra = "eval_models:arith", []
    if change == "answers":
        rows[2]["answer"] = "99"
        write_jsonl(q, rows)
    elif change == "samples":
        extra = ["--samples", "2"]
    else:
        model = "eval_models:chat"
    refused = trainkit(*base, "--model", model, *extra, cwd=tmp_path, env=eval_env(env))
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and reason in refused.stderr and "--fresh" in refused.stderr, \
        refused.stderr
    assert snapshot(run) == before  # nothing touched, never mixed

    fresh = trainkit(*base, "--model", model, *extra, "--fresh", cwd=tmp_path, env=eval_env(env))
    assert fresh.returncode == 0, fresh.stderr
    moved = list((run / "superseded").glob("*/evals/qs/responses.jsonl"))
    assert len(moved) == 1 and moved[0].read_bytes() == before["evals/qs/responses.jsonl"][0]
    assert len(list((run / "superseded").glob("*/reports/qs.json"))) == 1
    assert read_json(d / "test_summary.json")["sessions"] == 1


def test_retry_errors_reruns_only_the_error_items(tmp_path, env):
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(10))
    run, d = tmp_path / "run", tmp_path / "run" / "evals" / "qs"
    args = ["eval", run, "--model", "eval_models:flaky", "--questions", q, "--retries", "0"]
    first = trainkit(*args, cwd=tmp_path, env=eval_env(env, EVAL_FAIL_IDS="1,4"))
    assert first.returncode == 0, first.stderr
    assert read_json(d / "test_summary.json")["error"] == 2
    before = snapshot(run)
    same = trainkit(*args, cwd=tmp_path, env=eval_env(env))
    assert same.returncode == 0 and "already complete" in same.stdout, same.stdout + same.stderr
    assert snapshot(run) == before  # a complete evaluation is not touched

    retry = trainkit(*args, "--retry-errors", cwd=tmp_path, env=eval_env(env))
    assert retry.returncode == 0, retry.stderr
    assert "re-running 2 error item(s)" in retry.stdout
    lines = read_jsonl(d / "responses.jsonl")
    assert len(lines) == 12 and [(r["question_id"], r["status"]) for r in lines[-2:]] == [(1, "ok"), (4, "ok")]
    last = check_files(d, 10)
    assert all(r["status"] == "ok" for r in last.values())
    summary = read_json(d / "test_summary.json")
    assert (summary["ok"], summary["error"], summary["done"], summary["sessions"]) == (10, 0, 10, 2)


def test_workers_run_concurrently_and_lines_never_interleave(tmp_path, env):
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(80))
    r = trainkit("eval", tmp_path / "run", "--model", "eval_models:concurrent", "--questions", q, "--workers", "4",
                 "--retries", "0", cwd=tmp_path, env=eval_env(env, EVAL_BARRIER="4"))
    assert r.returncode == 0, r.stderr
    d = tmp_path / "run" / "evals" / "qs"
    lines = read_jsonl(d / "responses.jsonl")  # every line parses: no interleaving
    assert sorted(x["question_id"] for x in lines) == list(range(80))
    last = check_files(d, 80)
    assert all(x["status"] == "ok" for x in last.values())  # the barrier met: 4 calls ran at once
    assert all(len(p.read_bytes()) > 20000 for p in (d / "conversations").iterdir())


def test_a_conversation_file_that_cannot_be_written_does_not_stop_the_run(tmp_path, env):
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(5))
    d = tmp_path / "run" / "evals" / "qs"
    (d / "conversations" / "q2_s0.json").mkdir(parents=True)  # in the way of the file
    args = ["eval", tmp_path / "run", "--model", "eval_models:arith", "--questions", q]
    r = trainkit(*args, cwd=tmp_path, env=eval_env(env))
    assert r.returncode == 0, r.stderr
    assert "could not write conversations/q2_s0.json" in r.stderr
    assert read_json(d / "test_summary.json")["done"] == 5 and lines_of(d) == 5
    (d / "conversations" / "q2_s0.json").rmdir()
    again = trainkit(*args, cwd=tmp_path, env=eval_env(env))  # nothing to run; the missing file is rebuilt
    assert again.returncode == 0 and "rebuilt 1" in again.stderr, again.stderr
    check_files(d, 5)


# ---------------------------------------------------------------------------------------------
# bad input: one line, exit 2, nothing written


def _questions(tmp_path: Path, text: str) -> str:
    p = tmp_path / "qs.jsonl"
    p.write_text(text)
    return str(p)


BAD = [
    (lambda t: ["eval", str(t / "nope")], "no such run folder"),
    (lambda t: (t / "empty").mkdir() or ["eval", str(t / "empty")], "not a run folder (no resolved_config.json)"),
    (lambda t: ["eval", str(t / "run"), "--model", "nocolon", "--questions", _questions(t, '{"id":1,"question":"1+1",'
                '"answer":"2"}\n')], "expected module:function"),
    (lambda t: ["eval", str(t / "run"), "--model", "no_such_module_xyz:f", "--questions",
                _questions(t, '{"id":1,"question":"1+1","answer":"2"}\n')],
     "cannot import module 'no_such_module_xyz'"),
    (lambda t: ["eval", str(t / "run"), "--model", "eval_models:nothing", "--questions",
                _questions(t, '{"id":1,"question":"1+1","answer":"2"}\n')], "has no attribute 'nothing'"),
    (lambda t: ["eval", str(t / "run"), "--model", "eval_models:arith", "--questions",
                _questions(t, '{"id":1,"question":"1+1","answer":"2"}\n{"id":2,\n')], "line 2: not valid JSON"),
    (lambda t: ["eval", str(t / "run"), "--model", "eval_models:arith", "--questions",
                _questions(t, '{"id":1,"question":"a","answer":"b"}\n{"id":1,"question":"c","answer":"d"}\n')],
     "duplicate id 1 (first on line 1)"),
    (lambda t: ["eval", str(t / "run"), "--model", "eval_models:arith", "--questions",
                _questions(t, '{"id":1,"question":"a"}\n')], "missing 'answer'"),
    (lambda t: ["eval", str(t / "run"), "--model", "eval_models:arith", "--questions", str(t / "missing.jsonl")],
     "no such questions file"),
    (lambda t: ["eval", str(t / "run"), "--samples", "0"], "--samples must be >= 1"),
    (lambda t: ["eval", str(t / "run"), "--workers", "0"], "--workers must be >= 1"),
    (lambda t: ["eval", str(t / "run"), "--model", "eval_models:arith", "--questions",
                _questions(t, '{"id":1,"question":"1+1","answer":"2"}\n'), "--name", "../x"], "--name '../x'"),
    (lambda t: ["score", str(t / "nope")], "no such folder"),
    (lambda t: (t / "e").mkdir() or ["score", str(t / "e")], "not an evaluation folder (no precheck.jsonl)"),
    (lambda t: ((t / "e").mkdir(), (t / "e" / "precheck.jsonl").write_text("garbage\n")) and
     ["score", str(t / "e")], "first line is not valid JSON"),
    (lambda t: ((t / "e").mkdir(), (t / "e" / "precheck.jsonl").write_text('{"kind":"plan","version":2}\n')) and
     ["score", str(t / "e")], "format version 2; this trainkit reads version 1"),
    (lambda t: ["run", str(t / "missing.yaml")], "no such config file or run folder"),
]


@pytest.mark.parametrize("make,fragment", BAD)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, make, fragment):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    argv = make(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "run").exists()


def test_an_unreadable_plan_is_refused_with_the_reason(tmp_path, env):
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(3))
    d = tmp_path / "run" / "evals" / "qs"
    d.mkdir(parents=True)
    (d / "precheck.jsonl").write_text('{"kind":"plan","version":7,"plan_hash":"x","planned":3,"metric":"accuracy"}\n')
    r = trainkit("eval", tmp_path / "run", "--model", "eval_models:arith", "--questions", q, cwd=tmp_path,
                 env=eval_env(env))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "format version 7" in r.stderr and "Traceback" not in r.stderr
    (d / "test_summary.json").write_text("{not json")
    os.replace(d / "precheck.jsonl", tmp_path / "old-precheck")
    r = trainkit("eval", tmp_path / "run", "--model", "eval_models:arith", "--questions", q, cwd=tmp_path,
                 env=eval_env(env))
    assert r.returncode == 0, r.stderr  # a malformed summary is simply rewritten
    assert read_json(d / "test_summary.json")["completed"] is True
