"""A report belongs to the model it measured, and one rule picks the run's report: reports carry
the model's identity, the profile and how much was measured; a report whose model is no longer
``best.pt`` is stale everywhere (list, compare, promote, serve, trainmon); changed gates re-gate a
complete evaluation; a gate never passes on a fraction of the questions; no gates is "evaluated";
promote finds the holder of a production config by the config's own record; the leaderboard ranks
by the recorded mode, stars the current holder and keeps full precision.

Layers: the pure judgement; then real files (a real `trainkit run` of the tiny burgers config,
trained once per module and copied per test; real `trainkit eval` with the test models; hand-made
reports in synthetic run folders where training is not the point) through the real commands.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import time
from pathlib import Path

import orjson
import pytest
from helpers import arith_questions, eval_env, read_json, trainkit, write_config, write_jsonl

from trainkit import lifecycle as L
from trainkit.cli import main
from trainkit.evaluation import report as R
from trainkit.lifecycle import verdicts as V
from trainkit.lifecycle.classification import Options
from trainkit.runfolder.files import write_json
from trainkit.serve.runs import report_summaries
from trainkit.testing import synthetic_run
from tui.model.evals import list_evals

DAY = 86400.0
SETTLED = Options(active_days=0)  # judge the verdict, not "changed recently"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def listed(capsys, root: Path) -> dict[str, dict]:
    code, out, err = run_cli(capsys, "experiments", "list", root, "--json", "--active-days", "0")
    assert code == 0, err
    return {e["name"]: e for e in orjson.loads(out)}


def finished_run(root: Path, name: str, *, config: str = "task: burgers\nepochs: 2\n") -> Path:
    """A finished synthetic run with a config file to promote (training is not the point)."""
    paths = synthetic_run(root, name, total=2, scores=[0.5, 0.4], state="finished")
    (paths.root / "config.yaml").write_text(config)
    trained_at = time.time() - DAY  # written when training started, before any report
    os.utime(paths.resolved_config, (trained_at, trained_at))
    return paths.root


def put_report(folder: Path, name: str, metric: str, value: float, gates: dict, *, written_at: float,
               planned: int = 10, ok: int = 10) -> dict:
    summary = {"metric": metric, metric: value, "completed": True, "planned": planned, "done": planned, "ok": ok,
               "error": planned - ok, "model": "eval_models:arith", "task": "burgers"}
    rep = {**R.build_report(name, summary, gates), "written_at": written_at}
    (folder / "reports").mkdir(exist_ok=True)
    write_json(folder / "reports" / f"{name}.json", rep)
    return rep


# --------------------------------------------------------------------------------------------
# the judgement, pure


def test_judge_by_the_report_own_gates_unless_the_config_changed_them_later():
    summary = {"metric": "accuracy", "accuracy": 0.99, "completed": True, "planned": 60, "ok": 60, "error": 0}
    rep = R.build_report("default", summary, {"accuracy": {"min": 0.99}}, written_at=1000.0)
    assert V.judge(rep).verdict == "passed" and V.judge(rep).gates_passed is True
    raised = V.CurrentGates({"accuracy": {"min": 0.995}}, 1.0, written_at=2000.0)
    j = V.judge(rep, now_gates=raised)
    assert (j.verdict, j.gates_passed, j.regated) == ("failed", False, True)
    assert "accuracy 0.99 < min 0.995" in j.detail and "judged by the current gates of resolved_config.json" \
        in j.detail and "accuracy >= 0.995" in j.detail and "not the report's own (accuracy >= 0.99)" in j.detail
    # the report is the later word (`trainkit run --set eval.gates...` on a complete training)
    older = V.CurrentGates({"accuracy": {"min": 0.995}}, 1.0, written_at=500.0)
    assert V.judge(rep, now_gates=older).verdict == "passed"
    assert V.judge(rep, stale="checkpoints/best.pt changed since the evaluation").verdict == "stale"


def test_old_reports_read_sensibly():
    # before: no gates read "gates_passed: true" and a gate passed on a fraction of the items
    no_gates = {"version": 1, "name": "default", "metric": "nrmse", "nrmse": 0.9, "gates": {}, "gate_results": [],
                "gates_passed": True, "completed": True, "planned": 64, "done": 64, "ok": 64, "error": 0}
    assert V.judge(no_gates).verdict == "no gates" and V.judge(no_gates).gates_passed is None
    partial = {**no_gates, "metric": "accuracy", "accuracy": 1.0, "gates": {"accuracy": {"min": 0.8}},
               "ok": 40, "error": 24}
    j = V.judge(partial)
    assert j.verdict == "failed" and "accuracy 1 over 40 of 64 items (62.5 %) < min_ok_fraction 1" in j.detail
    hand_made = {"name": "default", "metric": "nrmse", "nrmse": 0.05, "gates_passed": True, "completed": True}
    assert V.judge(hand_made).verdict == "passed"  # no gates recorded: its own word


def test_an_old_checkpoint_report_is_stale_by_time_then_by_the_hash_prefix(tmp_path):
    ckpt = tmp_path / "checkpoints" / "best.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"model one")
    rep = {"model": f"checkpoint:checkpoints/best.pt sha256:{sha256(ckpt)[:16]}", "written_at": time.time() + 60}
    assert V.staleness(tmp_path, rep) is None  # written after the file
    rep["written_at"] = time.time() - 3600
    assert V.staleness(tmp_path, rep) is None  # the file is newer, but the same bytes (a copy)
    ckpt.write_bytes(b"model two")
    assert "checkpoints/best.pt changed since the evaluation" in V.staleness(tmp_path, rep)
    ckpt.unlink()
    assert "gone" in V.staleness(tmp_path, rep)
    assert V.staleness(tmp_path, {"model": "eval_models:arith"}) is None  # not a file of the run


# --------------------------------------------------------------------------------------------
# a real trained run: the report carries its model; training on makes it stale everywhere


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir) -> Path:
    """`trainkit run` of the tiny burgers config (1 epoch, gate nrmse <= 5), once for the module."""
    store = tmp_path_factory.mktemp("reports-run")
    env = {**os.environ, "TRAINKIT_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1"}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    cfg = write_config(store / "cfg.yaml", epochs=1, eval={"gates": {"nrmse": {"max": 5.0}}})
    r = trainkit("run", cfg, "--run-dir", store / "2026-01-01-burgers", cwd=store, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return store / "2026-01-01-burgers"


def copy_run(trained: Path, root: Path, name: str) -> Path:
    return Path(shutil.copytree(trained, root / name, symlinks=True))


def test_the_report_names_its_model_profile_and_measured_fraction(trained):
    rep = read_json(trained / "reports" / "default.json")
    best = trained / "checkpoints" / "best.pt"
    st = best.stat()
    assert rep["model"] == f"checkpoint:checkpoints/best.pt sha256:{sha256(best)[:16]}"
    assert (rep["model_file"], rep["model_sha256"], rep["model_size"], rep["model_mtime_ns"]) == \
        ("checkpoints/best.pt", sha256(best), st.st_size, st.st_mtime_ns)
    assert rep["profile"] is None and rep["min_ok_fraction"] == 1.0
    assert (rep["planned"], rep["ok"], rep["error"], rep["measured_fraction"]) == (64, 64, 0, 1.0)
    assert rep["gates_passed"] is True


def test_a_report_of_a_replaced_model_is_stale_everywhere(trained, tmp_path, env, capsys, monkeypatch):
    root = tmp_path / "experiments"
    run = copy_run(trained, root, "2026-01-01-burgers")
    kept = copy_run(trained, root, "2026-01-02-kept")
    before = sha256(run / "checkpoints" / "best.pt")
    r = trainkit("train", run, "--epochs", "4", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert sha256(run / "checkpoints" / "best.pt") != before  # training went on and replaced best.pt

    got = listed(capsys, root)
    assert got["2026-01-02-kept"]["status"] == "success"  # a copy of the same model is not stale
    assert V.staleness(kept, read_json(kept / "reports" / "default.json")) is None
    e = got["2026-01-01-burgers"]
    assert e["status"] == "evaluated" and "stale" in e["reason"], e  # never success
    assert (e["report"], e["report_verdict"]) == ("default", "stale")
    assert "report reports/default.json: stale (nrmse" in e["reason"]
    assert "checkpoints/best.pt changed since the evaluation" in e["reason"]
    code, out, _ = run_cli(capsys, "experiments", "list", root, "--active-days", "0")
    row = next(line for line in out.splitlines() if line.startswith("2026-01-01-burgers"))
    assert "◇ evaluated" in row and " stale " in row

    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "experiments", "compare", "2026-01-01-burgers", "2026-01-02-kept", "--json")
    reports = [x["reports"]["default"]["verdict"] for x in orjson.loads(out)["experiments"]]
    assert code == 0 and reports == ["stale", "passed"]
    code, out, err = run_cli(capsys, "experiments", "promote", "2026-01-01-burgers", "--dry-run")
    assert code == 1 and "report reports/default.json is stale: checkpoints/best.pt changed" in err, out + err
    assert not (tmp_path / "configs").exists()
    summary = report_summaries(str(run))["default"]
    assert (summary["verdict"], summary["the_run_report"], summary["gates_passed"]) == ("stale", True, True)
    assert "STALE: checkpoints/best.pt changed" in summary["verdict_text"]
    [info] = list_evals(str(run))
    assert "STALE: checkpoints/best.pt changed since the evaluation" in info.text()

    # evaluating the new model makes the report its own again
    r = trainkit("eval", run, "--fresh", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert listed(capsys, root)["2026-01-01-burgers"]["status"] == "success"
    assert read_json(run / "reports" / "default.json")["model_sha256"] == sha256(run / "checkpoints" / "best.pt")


def test_changed_gates_re_gate_a_complete_evaluation(trained, tmp_path, env, capsys):
    root = tmp_path / "experiments"
    run = copy_run(trained, root, "2026-01-01-burgers")
    old = read_json(run / "reports" / "default.json")
    cfg = read_json(run / "resolved_config.json")
    cfg["eval"]["gates"]["nrmse"]["max"] = 1e-9  # "may change at any time"
    (run / "resolved_config.json").write_bytes(orjson.dumps(cfg))

    e = listed(capsys, root)["2026-01-01-burgers"]  # judged by the current gates before any re-evaluation
    assert e["status"] == "failed" and "judged by the current gates of resolved_config.json" in e["reason"]

    r = trainkit("eval", run, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "already complete" in r.stdout and "the gates changed since the report: re-gated" in r.stdout
    assert "gates FAILED: nrmse" in r.stdout and "> max 1e-09" in r.stdout
    rep = read_json(run / "reports" / "default.json")
    assert (rep["gates_passed"], rep["gates"]) == (False, {"nrmse": {"max": 1e-9}})
    model_keys = ("model", "model_file", "model_sha256", "model_size", "model_mtime_ns")
    assert {k: rep[k] for k in model_keys} == {k: old[k] for k in model_keys}
    assert listed(capsys, root)["2026-01-01-burgers"]["reason"].startswith("report reports/default.json: gates failed")

    written = (run / "reports" / "default.json").read_bytes()
    again = trainkit("eval", run, cwd=tmp_path, env=env)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert (run / "reports" / "default.json").read_bytes() == written


# --------------------------------------------------------------------------------------------
# how much was measured; no gates


def eval_folder(tmp_path: Path, env: dict, name: str, *, fail: str, config: dict | None, n: int = 12) -> Path:
    folder = tmp_path / "experiments" / name
    folder.mkdir(parents=True)
    if config is not None:
        write_json(folder / "resolved_config.json", config)
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(n))
    r = trainkit("eval", folder, "--model", "eval_models:flaky", "--questions", q, "--retries", "0",
                 "--backoff", "0", "--name", "default", cwd=tmp_path, env=eval_env(env, EVAL_FAIL_IDS=fail))
    assert r.returncode == 0, r.stderr
    return folder


def test_a_gate_never_passes_on_a_fraction_of_the_questions(tmp_path, env, capsys):
    config = {"task": "burgers", "eval": {"gates": {"accuracy": {"min": 0.8}}}}
    folder = eval_folder(tmp_path, env, "2026-01-01-flaky", fail="2,5,11", config=config)
    rep = read_json(folder / "reports" / "default.json")
    assert rep["gates_passed"] is False  # 3 of 12 items failed: accuracy 1 over the other 9 is not a pass
    assert (rep["accuracy"], rep["planned"], rep["ok"], rep["error"], rep["measured_fraction"]) == \
        (1.0, 12, 9, 3, 0.75)
    assert rep["model_sha256"] is None and rep["model_file"] is None  # --model: not a file of the run
    assert rep["gate_results"][0]["reason"] == "accuracy 1 over 9 of 12 items (75 %) < min_ok_fraction 1"
    e = listed(capsys, folder.parent)["2026-01-01-flaky"]
    assert e["status"] == "failed" and "over 9 of 12 items" in e["reason"]

    # the config may allow part of the items: re-gated without re-running anything
    config["eval"]["min_ok_fraction"] = 0.7
    write_json(folder / "resolved_config.json", config)
    q = tmp_path / "qs.jsonl"
    r = trainkit("eval", folder, "--model", "eval_models:flaky", "--questions", q, "--name", "default",
                 cwd=tmp_path, env=eval_env(env))
    assert r.returncode == 0 and "re-gated" in r.stdout, r.stdout + r.stderr
    rep = read_json(folder / "reports" / "default.json")
    assert rep["gates_passed"] is True and rep["min_ok_fraction"] == 0.7
    assert listed(capsys, folder.parent)["2026-01-01-flaky"]["status"] == "success"


def test_no_gates_is_evaluated_not_success(tmp_path, env, capsys, monkeypatch):
    nothing = eval_folder(tmp_path, env, "2026-01-01-nothing", fail="0,1,2,3", config=None, n=4)
    e = listed(capsys, nothing.parent)["2026-01-01-nothing"]
    assert e["status"] == "evaluated", e  # 0 answered of 4 is not a success
    rep = read_json(nothing / "reports" / "default.json")
    assert (rep["gates_passed"], rep["ok"], rep["measured_fraction"]) == (None, 0, 0.0)
    assert e["status"] == "evaluated" and "evaluated, no gates" in e["reason"] and "over 0 of 4 items" in e["reason"]
    [info] = list_evals(str(nothing))
    assert "evaluated, no gates" in info.text() and "NOT passed" not in info.text()
    assert report_summaries(str(nothing))["default"]["verdict"] == "no gates"

    whole = eval_folder(tmp_path, env, "2026-01-02-whole", fail="", config=None, n=4)
    (whole / "config.yaml").write_text("task: burgers\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "experiments", "promote", "2026-01-02-whole", "--dry-run")
    assert code == 1 and "evaluated, no gates configured; promote needs a passed gate" in err, out + err
    code, out, err = run_cli(capsys, "experiments", "promote", "2026-01-02-whole", "--threshold", "0.9", "--dry-run")
    assert code == 0 and "no gates configured; --threshold decides" in out, out + err


# --------------------------------------------------------------------------------------------
# several reports: one rule


def test_one_rule_picks_the_run_report_everywhere(tmp_path, capsys, monkeypatch):
    root = tmp_path / "experiments"
    run = finished_run(root, "2026-01-01-multi")
    now = time.time()
    put_report(run, "a", "nrmse", 0.5, {"nrmse": {"max": 0.1}}, written_at=now - 300)  # failed, sorts first
    put_report(run, "default", "nrmse", 0.05, {"nrmse": {"max": 0.1}}, written_at=now - 200)
    put_report(run, "z", "nrmse", 0.07, {"nrmse": {"max": 0.1}}, written_at=now - 100)

    e = listed(capsys, root)["2026-01-01-multi"]
    assert (e["status"], e["report_value"]) == ("success", 0.05) and e["report"] == "default"
    assert e["reason"].startswith("report reports/default.json: gates passed (nrmse 0.05)")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "experiments", "compare", "2026-01-01-multi", "2026-01-01-multi", "--json")
    assert orjson.loads(out)["experiments"][0]["report"] == "default"
    code, out, err = run_cli(capsys, "experiments", "promote", "2026-01-01-multi", "--dry-run")
    assert code == 0 and "report reports/default.json: gates passed" in out, out + err
    assert [n for n, s in report_summaries(str(run)).items() if s["the_run_report"]] == ["default"]

    # without default.json: the most recently written, not the alphabetically first
    (run / "reports" / "default.json").unlink()
    e = listed(capsys, root)["2026-01-01-multi"]
    assert (e["status"], e["report_value"]) == ("success", 0.07) and e["report"] == "z"
    code, out, err = run_cli(capsys, "experiments", "promote", "2026-01-01-multi", "--dry-run")
    assert code == 0 and "report reports/z.json: gates passed" in out, out + err
    code, out, err = run_cli(capsys, "experiments", "promote", "2026-01-01-multi", "--report", "a", "--dry-run")
    assert code == 1 and "report reports/a.json: gates not passed: nrmse 0.5 > max 0.1" in err, out + err


# --------------------------------------------------------------------------------------------
# promotion across experiments folders; the leaderboard


def test_the_holder_is_named_by_the_production_config_itself(tmp_path, capsys, monkeypatch):
    """Two experiments folders sharing configs/ and reports/leaderboard.csv."""
    monkeypatch.chdir(tmp_path)
    now = time.time()
    a = finished_run(tmp_path / "exp-a", "2026-01-01-b", config="task: burgers\nlr: 0.001\n")
    put_report(a, "default", "nrmse", 0.6274, {"nrmse": {"max": 1.0}}, written_at=now - 100)
    worse = finished_run(tmp_path / "exp-b", "2026-01-02-b", config="task: burgers\nlr: 0.01\n")
    put_report(worse, "default", "nrmse", 0.8556, {"nrmse": {"max": 1.0}}, written_at=now - 100)
    better = finished_run(tmp_path / "exp-b", "2026-01-03-b", config="task: burgers\nlr: 0.003\n")
    put_report(better, "default", "nrmse", 0.5, {"nrmse": {"max": 1.0}}, written_at=now - 100)
    target = tmp_path / "configs" / "train_b.yaml"

    def promote(root: str, name: str) -> tuple[int, str, str]:
        return run_cli(capsys, "experiments", "promote", name, "--root", root, "--config-name", "train_b",
                       "--force", "--auto-promote", "--update-leaderboard")

    code, out, err = promote("exp-a", "2026-01-01-b")
    assert code == 0, out + err
    code, out, err = promote("exp-b", "2026-01-02-b")
    assert code == 1, out + err
    assert "vs 0.6274 of 2026-01-01-b (the current holder): improvement -0.2282 < the minimum 0" in err
    assert target.read_bytes() == (a / "config.yaml").read_bytes()

    code, out, err = promote("exp-b", "2026-01-03-b")
    assert code == 0 and "promoted from 2026-01-01-b" in out, out + err
    assert target.read_bytes() == (better / "config.yaml").read_bytes()
    assert read_json(a / "metadata.json")["promotions"][0]["replaced_by"] == "2026-01-03-b"
    side = read_json(tmp_path / "configs" / ".train_b.yaml.promotion.json")
    assert (side["experiment"], side["experiment_path"], side["value"], side["mode"]) == \
        ("2026-01-03-b", str(better), 0.5, "min")
    board = L.leaderboard(root=tmp_path / "exp-a")  # seen from either folder
    assert [(r.rank, r.experiment, r.current) for r in board.rows] == [
        (1, "2026-01-03-b", True), (2, "2026-01-01-b", False)]
    assert [L.inspect(p, options=SETTLED)[0].status for p in (a, better)] == ["success", "promoted"]


def test_leaderboard_ranks_by_the_recorded_mode_marks_the_holder_and_keeps_full_precision(tmp_path, capsys,
                                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "experiments"
    now = time.time()
    values = {"2026-01-01-x": 0.5, "2026-01-02-y": 0.9123456789012345, "2026-01-03-z": 0.95, "2026-01-04-w": 0.1}
    for name, v in values.items():
        put_report(finished_run(root, name), "default", "score", v, {}, written_at=now - 100)

    def promote(name: str, *extra: str) -> tuple[int, str, str]:
        return run_cli(capsys, "experiments", "promote", name, "--config-name", "train_s", "--mode", "max",
                       "--threshold", "0", "--force", "--auto-promote", *extra)

    assert promote("2026-01-01-x", "--update-leaderboard")[0] == 0
    assert promote("2026-01-02-y", "--update-leaderboard")[0] == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "reports" / "leaderboard.csv").read_text())))
    assert rows[1]["value"] == repr(0.9123456789012345) and rows[1]["mode"] == "max"
    assert float(rows[1]["value"]) - float(rows[1]["previous_value"]) == float(rows[1]["improvement"])
    board = L.leaderboard(root=root)
    assert [(r.rank, r.experiment, r.mode, r.current) for r in board.rows] == [
        (1, "2026-01-02-y", "max", True), (2, "2026-01-01-x", "max", False)]

    # a promotion without a leaderboard row: it holds the config now, no row of train_s does
    assert promote("2026-01-03-z")[0] == 0
    assert [r.current for r in L.leaderboard(root=root).rows] == [False, False]
    code, out, _ = run_cli(capsys, "experiments", "leaderboard")
    assert code == 0 and "*" not in out.split("\n\n")[0]

    # the holder was promoted on score max: a min promotion is not compared as if lower were better
    code, out, err = run_cli(capsys, "experiments", "promote", "2026-01-04-w", "--config-name", "train_s", "--mode",
                             "min", "--threshold", "1", "--force", "--auto-promote")
    assert code == 1 and "was promoted with score max" in err, out + err


def test_an_old_leaderboard_gains_the_mode_column(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "experiments"
    run = finished_run(root, "2026-01-01-new")
    put_report(run, "default", "nrmse", 0.25, {"nrmse": {"max": 1.0}}, written_at=time.time() - 100)
    old = ("date,experiment,config,metric,value,previous_experiment,previous_value,improvement\n"
           "2026-01-01T00:00:00Z,2025-12-01-old,configs/train_old.yaml,nrmse,0.5,,,\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "leaderboard.csv").write_text(old)
    code, out, err = run_cli(capsys, "experiments", "promote", "2026-01-01-new", "--auto-promote",
                             "--update-leaderboard")
    assert code == 0, out + err
    lines = (tmp_path / "reports" / "leaderboard.csv").read_text().splitlines()
    assert lines[0].endswith(",improvement,mode") and lines[1] == old.splitlines()[1]
    board = L.leaderboard(root=root)
    assert [(r.experiment, r.mode, r.current) for r in board.rows] == [
        ("2026-01-01-new", "min", True), ("2025-12-01-old", "min", False)]
