"""`trainkit serve ROOT [ROOT...]`: every ROOT's runs in one list, named as `trainkit status` names
them (a later ROOT's taken name with its folder's name in front), each /runs/NAME read in its own
ROOT, and no name leading out of a ROOT; a real server subprocess and a real HTTP client over
synthetic runs and a real SummaryWriter's folder."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import orjson
import pytest
from helpers import read_json, trainkit
from test_foreign import age, run_script
from test_serve import SECRET, get, request, set_status, start_server, stop_server, without_age

from trainkit.testing import synthetic_run

BASE, SOLO, TB = "2026-01-01-base", "2026-02-01-solo", "runs/try1"


@pytest.mark.parametrize("groups, expected", [
    ([("/a/exp", ["x", "y"]), ("/b/out", ["x", "z"])], [["x", "y"], ["out/x", "z"]]),
    ([("/a/exp", ["runs/a"]), ("/b/out", ["runs/a", "b"]), ("/c/out", ["b", "runs/a"])],
     [["runs/a"], ["out/runs/a", "b"], ["out/b", "/c/out/runs/a"]]),
    ([("/a/exp", []), ("/b/out", ["x"])], [[], ["x"]]),
])
def test_the_names_of_several_roots_are_made_unique_by_the_one_rule(groups, expected):
    """What `trainkit status` and `trainkit serve` call the runs of several ROOTs (in order)."""
    from trainkit.roots import unique_names

    assert unique_names(groups) == expected


@pytest.fixture(scope="module")
def roots(tmp_path_factory, cache_dir) -> tuple[Path, Path]:
    """``experiments`` (a finished BASE, a TensorBoard run TB) and ``other`` (a live BASE of its own,
    a finished SOLO, a copy of TB; links out of it to a run outside both)."""
    tmp = tmp_path_factory.mktemp("serve-roots")
    first, other = tmp / "experiments", tmp / "other"
    synthetic_run(first, BASE, total=3, scores=[1.0, 0.8, 0.6], state="finished")
    live = synthetic_run(other, BASE, total=10, scores=[1.0, 0.7], pid=os.getpid(), heartbeat_interval_s=600)
    set_status(live.root, current_epoch=2, loss=0.4321, heartbeat_at=time.time())
    synthetic_run(other, SOLO, total=2, scores=[1.0, 0.5], state="finished")
    run_script("writer", first / TB, "--steps", "30", env=dict(os.environ, TRAINKIT_CACHE_DIR=str(cache_dir)),
               cwd=tmp)
    shutil.copytree(first / "runs", other / "runs", symlinks=True)
    age(first / "runs", 7200)
    age(other / "runs", 7200)  # written two hours ago: judged alike by the server and by status a moment later
    outside = synthetic_run(tmp, "outside-run", total=3, scores=[1.0], state="finished")
    set_status(outside.root, host=SECRET)
    (other / "escape").symlink_to(outside.root, target_is_directory=True)
    return first, other


@pytest.fixture(scope="module")
def server(roots):
    first, other = roots
    proc, port = start_server([first, other], first.parent)
    yield port
    assert stop_server(proc) == 0
    assert b"Traceback" not in proc.stderr_path.read_bytes()


@pytest.mark.slow
def test_runs_lists_every_root_named_as_status_names_them(server, roots, env):
    first, other = roots
    runs = get(server, "/runs")
    assert [(r["name"], r["path"], r["source"]) for r in runs] == [
        (BASE, BASE, "trainkit"), (TB, TB, "tensorboard"),
        (f"other/{BASE}", f"other/{BASE}", "trainkit"), (SOLO, f"other/{SOLO}", "trainkit"),
        (f"other/{TB}", f"other/{TB}", "tensorboard")]
    status = orjson.loads(trainkit("status", first, other, "--json", cwd=first.parent, env=env).stdout)
    for r in status:  # the server shows paths relative to the first ROOT, a later ROOT's under its name
        path = Path(r["path"]).resolve()
        r["path"] = str(path.relative_to(first)) if path.is_relative_to(first) else str(path.relative_to(first.parent))
    assert without_age(runs) == without_age(status)


@pytest.mark.slow
def test_each_name_is_read_in_its_own_root(server, roots):
    first, other = roots
    mine, theirs = get(server, f"/runs/{BASE}"), get(server, f"/runs/other%2F{BASE}")
    assert mine["training_status"] == read_json(first / BASE / "training_status.json")
    assert theirs["training_status"] == read_json(other / BASE / "training_status.json")
    assert (mine["run"]["name"], mine["run"]["state"], mine["run"]["total_epochs"]) == (BASE, "finished", 3)
    assert (theirs["run"]["name"], theirs["run"]["path"], theirs["run"]["state"]) == (
        f"other/{BASE}", f"other/{BASE}", "running")
    solo = get(server, f"/runs/{SOLO}")
    assert solo["progress"] == read_json(other / SOLO / "progress.json") and solo["run"]["path"] == f"other/{SOLO}"
    page = get(server, f"/runs/other%2F{BASE}/metrics?after=0")
    assert page["next"] == (other / BASE / "metrics.jsonl").stat().st_size
    tb = get(server, "/runs/other%2Fruns%2Ftry1")
    assert (tb["source"], tb["run"]["name"], tb["scalars"]["train/loss"]["n"]) == ("tensorboard", f"other/{TB}", 30)
    assert get(server, "/runs/runs%2Ftry1")["run"]["name"] == TB
    status, _, body = request(server, "GET", "/runs/other%2Fruns%2Ftry1/metrics?after=0")
    assert status == 404 and b"another tool" in body


@pytest.mark.slow
def test_training_status_names_the_active_run_of_a_later_root(server, roots):
    first, other = roots
    line = get(server, "/training/status")  # the one live run is under the second ROOT
    assert (line["name"], line["state"], line["loss"], line["total_epochs"]) == (f"other/{BASE}", "running", 0.4321, 10)
    assert get(server, f"/training/status?run=other%2F{BASE}") == {**line, "heartbeat_age_s": pytest.approx(
        line["heartbeat_age_s"], abs=5)}
    assert get(server, f"/training/status?run={BASE}")["state"] == "finished"


@pytest.mark.slow
@pytest.mark.parametrize("target", [
    "/runs/other", "/runs/experiments", f"/runs/other/{BASE}", f"/runs/other%252F{BASE}",
    f"/runs/other%2F..%2Fexperiments%2F{BASE}", f"/runs/..%2Fother%2F{SOLO}",
    f"/runs/{BASE}%2F..%2F..%2Fother%2F{SOLO}",
    f"/runs/experiments%2F{SOLO}", f"/runs/other%2F{SOLO}", "/runs/escape", "/runs/other%2Fescape",
    "/runs/escape/metrics?after=0", "/training/status?run=other%2Fescape", "/training/status?run=escape",
    "/runs/..%2Foutside-run", "/runs/other%2F..%2Foutside-run", "/runs/%2Fetc%2Fpasswd", "/runs/other%2F%2Fruns%2Ftry1",
    "/runs/other%2Fruns%2F..%2Fruns%2Ftry1", f"/runs/{BASE}%00",
])
def test_no_name_leads_out_of_a_root(server, target):
    status, headers, body = request(server, "GET", target)
    assert status == 404, (target, body)
    assert headers["content-type"] == "application/json" and "error" in orjson.loads(body)
    assert SECRET.encode() not in body


@pytest.mark.slow
def test_no_response_shows_an_absolute_path(server, roots):
    first, other = roots
    home = os.path.expanduser("~")
    for target in ("/runs", "/runs?text=1", f"/runs/{BASE}", f"/runs/other%2F{BASE}", f"/runs/{SOLO}",
                   f"/runs/{SOLO}/metrics?after=0", "/runs/other%2Fruns%2Ftry1", "/training/status",
                   f"/training/status?run={SOLO}", "/runs/nope"):
        status, _, body = request(server, "GET", target)
        for secret in (str(first.parent), str(first.resolve().parent), home):
            assert secret.encode() not in body, (target, secret, body[:300])


@pytest.mark.slow
def test_three_roots_of_one_folder_name_each_have_their_own_names(tmp_path):
    """Three ROOTs named `experiments`, each with a run `r`: three names, each read in its own ROOT,
    none an absolute path (the third name was the ROOT as given, which the server then shortened
    to the second's name: it read the second ROOT's run)."""
    roots = [tmp_path / x / "experiments" for x in ("a", "b", "c")]
    for i, root in enumerate(roots):
        synthetic_run(root, "r", total=3 + i, scores=[1.0], state="stopped")
    proc, port = start_server(roots, tmp_path)
    try:
        runs = get(port, "/runs")
        assert [(r["name"], r["path"], r["total_epochs"]) for r in runs] == [
            ("r", "r", 3), ("experiments/r", "experiments/r", 4), ("experiments (2)/r", "experiments (2)/r", 5)]
        for name, total in (("r", 3), ("experiments%2Fr", 4), ("experiments%20(2)%2Fr", 5)):
            assert get(port, f"/runs/{name}")["run"]["total_epochs"] == total, name
        status, _, body = request(port, "GET", "/runs")
        assert str(tmp_path).encode() not in body
    finally:
        assert stop_server(proc) == 0


def test_each_root_has_a_label_none_twice():
    from trainkit.roots import labels

    assert labels(["/a/exp", "/b/exp", "/c/out", "/d/exp", "/e/exp (2)"]) == {
        "/a/exp": ".", "/b/exp": "exp", "/c/out": "out", "/d/exp": "exp (2)", "/e/exp (2)": "exp (2) (2)"}
