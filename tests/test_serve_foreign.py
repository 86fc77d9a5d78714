"""`trainkit serve` lists the runs other tools wrote (real Lightning and SummaryWriter folders) with
their source, answers /runs/NAME for a name that holds a `/` (percent-encoded as one segment), and
still refuses every way out of ROOT; a real server subprocess and a real HTTP client."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from helpers import trainkit
from test_foreign import age, run_script
from test_serve import SECRET, get, request, start_server, stop_server, without_age

from trainkit.testing import synthetic_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory, cache_dir) -> Path:
    tmp = tmp_path_factory.mktemp("serve-foreign")
    root = tmp / "experiments"
    env = dict(os.environ, TRAINKIT_CACHE_DIR=str(cache_dir))
    synthetic_run(root, "2026-01-01-done", total=3, scores=[1.0, 0.8, 0.6], state="finished")
    run_script("lightning", root / "pl", "--epochs", "2", env=env, cwd=tmp)
    run_script("writer", root / "runs" / "try1", "--steps", "30", env=env, cwd=tmp)
    outside = tmp / "outside"  # a TensorBoard run outside ROOT, and links to it from inside
    run_script("writer", outside / "lightning_logs" / "version_0", "--steps", "5", env=env, cwd=tmp)
    (outside / "lightning_logs" / "version_0" / "hparams.yaml").write_text(f"secret: {SECRET}\n")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "runs" / "linked").symlink_to(outside / "lightning_logs" / "version_0", target_is_directory=True)
    age(root / "pl", 7200)
    age(root / "runs", 7200)  # written two hours ago: judged alike by the server and by status a moment later
    return root


@pytest.fixture(scope="module")
def server(root):
    proc, port = start_server(root, root.parent)
    yield port
    assert stop_server(proc) == 0
    assert b"Traceback" not in proc.stderr_path.read_bytes()


def test_runs_lists_foreign_runs_with_their_source_as_status_json_does(server, root, env):
    runs = get(server, "/runs")
    assert [(r["name"], r["source"]) for r in runs] == [
        ("2026-01-01-done", "trainkit"), ("pl/lightning_logs/version_0", "lightning"),
        ("pl/lightning_logs/version_1", "lightning"), ("runs/try1", "tensorboard")]
    status = orjson.loads(trainkit("status", root, "--json", cwd=root.parent, env=env).stdout)
    for r in status:
        r["path"] = r["name"]  # the server shows paths relative to ROOT
    assert without_age(runs) == without_age(status)


def test_a_foreign_run_by_its_percent_encoded_name(server, root):
    one = get(server, "/runs/pl%2Flightning_logs%2Fversion_0")
    assert (one["source"], one["run"]["name"], one["run"]["state"]) == ("lightning", "pl/lightning_logs/version_0",
                                                                       "finished")
    rows = (root / "pl/lightning_logs/version_0/metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    val = [float(r.split(",")[header.index("val_loss")]) for r in rows[1:] if r.split(",")[header.index("val_loss")]]
    assert one["scalars"]["val_loss"]["n"] == len(val) and one["scalars"]["val_loss"]["last_value"] == val[-1]
    tb = get(server, "/runs/runs%2Ftry1")
    assert tb["source"] == "tensorboard" and tb["scalars"]["train/loss"]["n"] == 30
    assert tb["scalars"]["train/loss"]["last_step"] == 29
    assert tb["scalars"]["train/loss"]["last_value"] == pytest.approx(1 / 30, rel=1e-6)
    status, _, body = request(server, "GET", "/runs/runs%2Ftry1/metrics?after=0")
    assert status == 404 and b"another tool" in body


@pytest.mark.parametrize("target", [
    "/runs/pl", "/runs/pl%2Flightning_logs", "/runs/pl%2Flightning_logs%2F", "/runs/pl%2F%2Flightning_logs%2Fversion_0",
    "/runs/pl%2Flightning_logs%2F..%2Fversion_0", "/runs/pl%2F..%2Fruns%2Ftry1", "/runs/.%2Fruns%2Ftry1",
    "/runs/%2Fruns%2Ftry1", "/runs/escape%2Flightning_logs%2Fversion_0", "/runs/runs%2Flinked",
    "/runs/..%2Foutside%2Flightning_logs%2Fversion_0", "/runs/runs%252Ftry1", "/runs/runs%5Ctry1",
    "/runs/runs%2Ftry1%00", "/runs/runs/try1", "/runs/escape%2Flightning_logs%2Fversion_0/metrics?after=0",
])
def test_no_foreign_name_leads_out_of_a_run_or_out_of_root(server, target):
    status, headers, body = request(server, "GET", target)
    assert status == 404, (target, body)
    assert headers["content-type"] == "application/json" and "error" in orjson.loads(body)
    assert SECRET.encode() not in body
