"""The Textual-free model: incremental reads, torn lines, truncation, replacement, malformed JSON,
state changes, polling, the time box; the filter language, glyphs, charts, mounts."""

from __future__ import annotations

import os
import time

import orjson
import pytest

from trainkit.runfolder import RunPaths
from trainkit.runfolder.files import write_json
from trainkit.testing import synthetic_run
from tui.model.evals import EvalItems, list_evals
from tui.model.history import History
from tui.model.mounts import filesystem_of, is_network_type, parse_mountinfo
from tui.model.query import FilterError, arrange, matches, parse_filter
from tui.model.runs import METRICS, ROW, RunsModel
from tui.model.tail import tail_records
from tui.model.views import SPARK_POINTS, RunView
from tui.widgets.chart import Series, plot
from tui.widgets.glyphs import bar, sparkline


def step(i: int, loss: float) -> bytes:
    return orjson.dumps({"kind": "step", "epoch": 0, "step": i, "loss": loss, "t": 1.0}) + b"\n"


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "experiments"
    synthetic_run(r, "2026-01-01-a", total=4, scores=[1.0, 0.8], state="running")
    synthetic_run(r, "2026-01-01-b", total=2, scores=[1.0, 0.5], state="finished")
    return r


def model_of(root) -> RunsModel:
    m = RunsModel(root)
    m.refresh(None, budget_s=None)
    return m


def key(root, name):
    return os.path.abspath(root / name)


def test_load_reads_states_and_progress(root):
    m = model_of(root)
    a, b = m.runs[key(root, "2026-01-01-a")], m.runs[key(root, "2026-01-01-b")]
    assert (a.state, a.completed, a.total, a.percentage) == ("running", 2, 4, 50.0)
    assert (b.state, b.percentage, b.fraction) == ("finished", 100.0, 1.0)
    s = m.summary()
    assert s["counts"]["running"] == 1 and s["counts"]["finished"] == 1


def test_incremental_append_and_torn_line(root):
    m = model_of(root)
    k = key(root, "2026-01-01-a")
    path = RunPaths(root / "2026-01-01-a").metrics
    with open(path, "ab") as f:
        f.write(step(0, 0.9) + step(1, 0.7) + step(2, 0.5)[:10])  # a torn last line waits
    out = m.refresh({str(path)})
    assert [c.what for c in out if c.name == k] == [frozenset({METRICS})]
    assert list(m.runs[k].losses) == [0.9, 0.7]
    with open(path, "ab") as f:
        f.write(step(2, 0.5)[10:])
    m.refresh({str(path)})
    assert list(m.runs[k].losses) == [0.9, 0.7, 0.5] and m.runs[k].last_loss == 0.5


def test_truncation_and_replacement_reread(root):
    m = model_of(root)
    k = key(root, "2026-01-01-a")
    path = RunPaths(root / "2026-01-01-a").metrics
    path.write_bytes(step(0, 3.0) + step(1, 2.0))
    m.refresh({str(path)})
    path.write_bytes(step(0, 9.0))  # truncated (shorter)
    m.refresh({str(path)})
    assert list(m.runs[k].losses) == [9.0]
    tmp = path.with_name("new.jsonl")
    tmp.write_bytes(step(0, 5.0) + step(1, 4.0) + step(2, 3.0))
    os.replace(tmp, path)  # replaced (new inode)
    m.refresh({str(path)})
    assert list(m.runs[k].losses) == [5.0, 4.0, 3.0]


def test_start_reads_only_the_tail(tmp_path):
    r = tmp_path / "experiments"
    paths = synthetic_run(r, "2026-01-01-big", total=2, scores=[], state="finished")
    with open(paths.metrics, "wb") as f:
        f.write(b"not json\n" + b"".join(step(i, float(i)) for i in range(20_000)))
    recs, end, bad, problem = tail_records(str(paths.metrics), 60, lambda rec: rec.get("kind") == "step")
    assert [r["step"] for r in recs] == list(range(19_940, 20_000)) and end == paths.metrics.stat().st_size
    m = model_of(r)
    v = m.runs[key(r, "2026-01-01-big")]
    assert len(v.losses) == SPARK_POINTS and v.losses[-1] == 19_999.0


def test_malformed_status_keeps_last_value_and_marks(root):
    m = model_of(root)
    k = key(root, "2026-01-01-a")
    status = RunPaths(root / "2026-01-01-a").status
    status.write_text("{ not json")
    m.refresh({str(status)})
    v = m.runs[k]
    assert v.state == "running" and v.warned and any("training_status.json" in w for w in v.warnings)
    synthetic_run(root, "2026-01-01-a", total=4, scores=[1.0, 0.8], state="running")
    m.refresh({str(status)})
    assert not m.runs[k].warnings


def test_state_change_and_bad_metric_lines(root):
    m = model_of(root)
    k = key(root, "2026-01-01-a")
    synthetic_run(root, "2026-01-01-a", total=4, scores=[1.0, 0.8, 0.7, 0.6], state="finished")
    out = m.refresh({str(RunPaths(root / "2026-01-01-a").status)})
    assert any(ROW in c.what for c in out)
    assert (m.runs[k].state, m.runs[k].percentage) == ("finished", 100.0)
    with open(RunPaths(root / "2026-01-01-a").metrics, "ab") as f:
        f.write(b"{garbage\n")
    m.refresh({str(RunPaths(root / "2026-01-01-a").metrics)})
    assert m.runs[k].bad_lines >= 1 and m.runs[k].warned


def test_runs_appear_and_vanish(root):
    m = model_of(root)
    synthetic_run(root, "2026-01-02-new", total=2, scores=[], state=None, progress=False)
    out = m.refresh({str(root / "2026-01-02-new")})
    assert [c.kind for c in out] == ["added"]
    os.rename(root / "2026-01-02-new", root.parent / "elsewhere")
    out = m.refresh({str(root / "2026-01-02-new")})
    assert [c.kind for c in out] == ["removed"] and len(m.runs) == 2


def test_polling_path_sees_changes_without_events(root):
    m = model_of(root)
    assert m.refresh(None) == []
    k = key(root, "2026-01-01-a")
    time.sleep(0.01)
    with open(RunPaths(root / "2026-01-01-a").metrics, "ab") as f:
        f.write(step(5, 0.25))
    out = m.refresh(None)
    assert [c.name for c in out] == [k] and m.runs[k].losses[-1] == 0.25
    synthetic_run(root, "2026-01-03-c", total=2, scores=[], state="finished")
    os.utime(root, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert any(c.kind == "added" for c in m.refresh(None))


def test_time_box_leaves_the_rest_pending(tmp_path):
    r = tmp_path / "experiments"
    for i in range(30):
        synthetic_run(r, f"2026-01-01-r{i:02d}", total=2, scores=[1.0], state="finished")
    m = RunsModel(r)
    first = m.refresh(None, budget_s=0.0)
    assert len(first) == 1 and m.pending == 29 and not m.loaded
    while m.pending:
        m.refresh(set(), budget_s=0.0)
    assert len(m.runs) == 30 and m.loaded


def test_stale_heartbeat_becomes_crashed(tmp_path):
    r = tmp_path / "experiments"
    synthetic_run(r, "2026-01-01-a", total=4, scores=[1.0], state="running", pid=os.getpid())
    now = [time.time()]
    m = RunsModel(r, clock=lambda: now[0])
    m.refresh(None, budget_s=None)
    k = key(r, "2026-01-01-a")
    assert m.runs[k].state == "running"
    assert m.check_liveness() == []
    now[0] += 3600
    out = m.check_liveness()
    assert out and m.runs[k].state == "crashed"


@pytest.mark.parametrize("text, expect", [
    ("", ["lr-small-w256", "lr-big-w64"]),
    ("big", ["lr-big-w64"]),
    ("lr>=1e-3", ["lr-big-w64"]),
    ("lr<1e-3 model.width=256", ["lr-small-w256"]),
    ("state=running", ["lr-small-w256"]),
    ("state!=running model.width>100", []),
    ("optimizer~adam", ["lr-small-w256", "lr-big-w64"]),
    ("missing.key=3", []),
])
def test_filter_language(text, expect):
    a = RunView("lr-small-w256", "/x/a", state="running", config={"lr": 1e-4, "model.width": 256, "optimizer": "adamw"})
    b = RunView("lr-big-w64", "/x/b", state="finished", config={"lr": 3e-3, "model.width": 64, "optimizer": "adam"})
    terms = parse_filter(text)
    assert [v.name for v in (a, b) if matches(terms, v)] == expect


@pytest.mark.parametrize("bad", ["lr>=", "state=sleeping", ">=3"])
def test_filter_errors(bad):
    with pytest.raises(FilterError):
        parse_filter(bad)


def test_arrange_sorts_and_groups():
    vs = [RunView(n, f"/{n}", state=s, fraction=f, last_loss=loss, config={"w": w})
          for n, s, f, loss, w in [("b", "finished", 1.0, 0.2, 64), ("a", "running", 0.5, 0.1, 256),
                                ("c", "crashed", 0.2, None, 64)]]
    assert [v.name for v in arrange(vs, terms=[], sort="name", group=None)] == ["a", "b", "c"]
    assert [v.name for v in arrange(vs, terms=[], sort="state", group=None)] == ["a", "c", "b"]
    assert [v.name for v in arrange(vs, terms=[], sort="loss", group=None)] == ["a", "b", "c"]
    assert [v.name for v in arrange(vs, terms=[], sort="progress", group="w")] == ["b", "c", "a"]


def test_history_epochs_best_and_early_stopping_counter(tmp_path):
    r = tmp_path / "experiments"
    es = {"metric": "val_loss", "mode": "min", "patience": 2, "min_delta": 0.0}
    paths = synthetic_run(r, "2026-01-01-es", total=10, scores=[1.0, 0.5, 0.6, 0.7], early_stopping=es,
                          state="early_stopped")
    with open(paths.metrics, "ab") as f:
        f.write(step(0, 1.0) + step(1, 0.5))
    h = History.load(str(paths.root))
    rows = h.epoch_rows()
    assert [r.best for r in rows] == [False, True, False, False]
    assert [r.bad_epochs for r in rows] == [0, 0, 1, 2] and rows[-1].stopped
    assert h.metric_names()[:1] == ["loss"] and "epoch:val_loss" in h.metric_names()
    assert h.series("loss") == [(0.0, 1.0), (1.0, 0.5)]


def test_eval_items_incremental_and_filters(tmp_path):
    d = tmp_path / "run" / "evals" / "q"
    (d / "conversations").mkdir(parents=True)
    lines = [{"question_id": i, "sample_number": 0, "status": "error" if i == 2 else "ok", "correct": i != 3,
              "latency_s": 0.1, "attempts": 1, "error": "boom" if i == 2 else None} for i in range(4)]
    (d / "responses.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines[:3]))
    items = EvalItems(str(d))
    assert items.update() and len(items.items) == 3
    with open(d / "responses.jsonl", "ab") as f:
        f.write(orjson.dumps(lines[3]) + b"\n")
    items.update()
    assert [i.question_id for i in items.filtered("errors")] == [2]
    assert [i.question_id for i in items.filtered("wrong")] == [3]
    rec, why = items.conversation(items.items[0])
    assert rec is None and "q0_s0.json" in why
    write_json(d / "test_summary.json", {"planned": 4, "done": 4, "ok": 3, "error": 1, "completed": True,
                                         "metric": "accuracy", "accuracy": 0.66})
    [info] = list_evals(str(tmp_path / "run"))
    assert "4/4 done" in info.text() and "accuracy 0.66" in info.text()


def test_glyphs_and_chart():
    assert sparkline([1, 2, 3, 4], 6) == "  ▁▃▆█"
    assert sparkline([], 3) == "   " and sparkline([2, 2], 2) == "▁▁"
    assert bar(0.5, 4) == "██··" and bar(1.0, 3) == "███" and bar(0.0, 2) == "··"
    lines = plot([Series("loss", [(0, 1.0), (1, 0.5), (2, 0.25)])], 40, 8, logy=True, title="loss")
    assert lines[0].plain == "loss" and "(log y)" in lines[-1].plain and len(lines) == 8
    assert any(ch != " " and 0x2800 <= ord(ch) <= 0x28FF for line in lines for ch in line.plain)
    assert "no data yet" in "".join(line.plain for line in plot([], 30, 6))


def test_mountinfo_detects_network_filesystems():
    text = ("22 1 0:21 / / rw - ext4 /dev/sda1 rw\n"
            "40 22 0:40 / /mnt/nfs rw - nfs4 server:/export rw\n"
            "41 22 0:41 / /mnt/my\\040share rw - fuse.sshfs me@host:/ rw\n")
    mounts = parse_mountinfo(text)
    assert filesystem_of("/mnt/nfs/exp", mounts) == "nfs4" and filesystem_of("/home/x", mounts) == "ext4"
    assert filesystem_of("/mnt/my share/x", mounts) == "fuse.sshfs"
    assert is_network_type("nfs4") and is_network_type("fuse.sshfs") and is_network_type("cifs")
    assert not is_network_type("ext4") and not is_network_type("tmpfs")


def test_eval_items_say_what_was_replaced_and_the_newer_record_wins(tmp_path):
    from tui.model.evals import latest

    d = tmp_path / "run" / "evals" / "q"
    d.mkdir(parents=True)
    line = {"question_id": 0, "sample_number": 0, "status": "error", "error": "boom", "latency_s": 1.5,
            "attempts": 3, "t": 100.0}
    (d / "responses.jsonl").write_bytes(orjson.dumps(line) + b"\n" + orjson.dumps({**line, "question_id": 1}) + b"\n")
    items = EvalItems(str(d))
    items.update()
    assert [i.question_id for i in items.appended] == [0, 1] and not items.replaced
    retried = {**line, "status": "ok", "correct": True, "error": None, "latency_s": 0.2, "attempts": 1, "t": 200.0}
    with open(d / "responses.jsonl", "ab") as f:  # --retry-errors: item 0 again, and a new item 2 twice
        for rec in (retried, {**retried, "question_id": 2}, {**retried, "question_id": 2, "correct": False}):
            f.write(orjson.dumps(rec) + b"\n")
    assert items.update()
    assert items.replaced == {("0", 0)} and [(i.question_id, i.correct) for i in items.appended] == [(2, False)]
    assert [(i.question_id, i.status) for i in items.items] == [(0, "ok"), (1, "error"), (2, "ok")]
    old = items.items[1]
    newer_file = {**line, "question_id": 1, "status": "ok", "correct": True, "error": None, "t": 300.0}
    assert latest(old, newer_file)[0].status == "ok" and latest(old, newer_file)[1] == "file"
    assert latest(old, {**line, "t": 50.0}) == (old, "line") and latest(old, {**line})[1] == "same"
    assert latest(old, None) == (old, "same")


def test_an_evaluation_without_a_summary_or_behind_its_lines_reads_interrupted(tmp_path):
    import os

    from trainkit.runfolder import EvalPaths
    from tui.model.evals import activity

    run = tmp_path / "run"
    ep = EvalPaths(run / "evals" / "q")
    ep.root.mkdir(parents=True)
    header = {"kind": "plan", "version": 1, "name": "q", "task": "t", "metric": "accuracy", "model": "m",
              "samples": 1, "questions": 4, "questions_source": "s", "questions_hash": "h", "plan_hash": "p",
              "planned": 4, "created_at": 1.0}
    ep.precheck.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [header] + [
        {"kind": "item", "question_id": i, "sample_number": 0, "file": f"q{i}_s0.json", "question": "1+1",
         "answer": "2"} for i in range(4)]))
    lines = [{"question_id": i, "sample_number": 0, "status": "error" if i == 1 else "ok", "response": "2",
              "expected": "2", "correct": True, "t": 1.0} for i in range(3)]
    ep.responses.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    [info] = list_evals(str(run))
    assert info.state == "interrupted" and info.text().startswith(
        "interrupted (no summary), incomplete: 3/4 done, ok 2, error 1 · accuracy 1")
    write_json(ep.summary, {"planned": 4, "done": 4, "ok": 4, "error": 0, "completed": True, "metric": "accuracy",
                            "accuracy": 1.0})
    os.utime(ep.responses, ns=(1, 1))
    assert activity(ep, {"done": 4}) == ("done", "") and list_evals(str(run))[0].text().startswith("4/4 done")
    os.utime(ep.summary, ns=(1, 1))  # a later session wrote lines and was killed before its summary
    os.utime(ep.responses, ns=(2, 2))
    [info] = list_evals(str(run))
    assert info.state == "interrupted" and "3/4 done, ok 2, error 1" in info.text()
    write_json(ep.lock, {"pid": os.getpid() + 10_000_000, "host": "another-host", "purpose": "eval"})
    assert activity(ep, None)[0] == "elsewhere" and "on another-host" in list_evals(str(run))[0].text()


def test_bars_and_percentages_never_round_onto_full_or_empty():
    from tui.widgets.glyphs import pct_text

    assert bar(0.9995, 8) == "███████▉" and bar(1.0, 8) == "████████"
    assert bar(1e-6, 8) == "▏·······" and bar(0.0, 8) == "········"
    assert pct_text(99.95) == "99.9%" and pct_text(100.0) == "100%" and pct_text(0.01) == "0.1%"


def test_history_start_time_and_ddp_system_info(tmp_path):
    from tui.model.history import History

    run = tmp_path / "run"
    run.mkdir()
    write_json(run / "training_status.json", {"version": 1, "state": "finished", "started_at": 1000.0})
    (run / "metrics.jsonl").write_bytes(orjson.dumps({"kind": "step", "epoch": 0, "step": 1, "loss": 1.0,
                                                      "t": 1002.0}) + b"\n")
    (run / "system.jsonl").write_bytes(orjson.dumps({"t": 1001.0, "cpu_percent": 5.0, "rank": 0, "world_size": 4})
                                       + b"\n")
    h = History.load(str(run))
    assert h.start_time() == 1000.0 and h.system_info() == {"world_size": 4, "rank": 0}
    assert h.system_names() == ["cpu_percent"]  # rank and world_size are not charted
    write_json(run / "training_status.json", {"version": 1, "state": "running", "started_at": 1500.0})  # a resume
    assert History.load(str(run)).start_time() == 1001.0


def test_the_watch_filter_passes_evaluation_folders_and_plans(tmp_path):
    from watchfiles import Change

    from tui.watcher import ContractFilter

    f = ContractFilter(str(tmp_path))
    run = tmp_path / "2026-01-01-r"
    assert f(Change.added, str(run / "evals" / "new"))  # its first files come before its watch
    assert f(Change.added, str(run / "evals" / "new" / "precheck.jsonl"))
    assert f(Change.added, str(run / "evals" / ".new.lock"))  # an evaluation starts or ends: the row says so
    assert not f(Change.added, str(run / "evals" / ".tmp-abc.json"))
    assert not f(Change.added, str(run / "evals" / "new" / "conversations" / "q1_s0.json"))
