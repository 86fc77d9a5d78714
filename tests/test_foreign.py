"""Runs other tools wrote show up in `trainkit status`, read-only: real folders made by the real
libraries (a Hugging Face Trainer with report_to="tensorboard", a Lightning run with CSVLogger and
TensorBoardLogger, a bare SummaryWriter), every value checked against what the library wrote."""

from __future__ import annotations

import csv
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from helpers import TESTS_DIR, read_json, trainkit, write_config

pytestmark = pytest.mark.slow


def run_script(*args: str, env: dict, cwd: Path) -> None:
    r = subprocess.run([sys.executable, str(TESTS_DIR / "foreign_scripts.py"), *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 or "the machine went away" in r.stderr, r.stderr[-3000:]


def status(root: Path, env: dict) -> dict[str, dict]:
    r = trainkit("status", root, "--json", cwd=root, env=env)
    assert r.returncode == 0, r.stderr
    return {x["name"]: x for x in orjson.loads(r.stdout)}


def age(folder: Path, seconds: float = 3600) -> None:
    t = time.time() - seconds
    for dirpath, dirnames, filenames in os.walk(folder):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), (t, t), follow_symlinks=False)


class Boom:
    """A pickle that would leave a file behind if anything unpickled it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_hugging_face_output_folder_reads_as_its_trainer_state_says(tmp_path, env):
    root = tmp_path / "exp"
    root.mkdir()
    run_script("hf", root / "hf-run", "--steps", "60", env=env, cwd=tmp_path)
    out = root / "hf-run"
    for args in out.rglob("training_args.bin"):  # never unpickled
        args.write_bytes(pickle.dumps(Boom(str(tmp_path / "unpickled"))))
    state = read_json(out / "checkpoint-60" / "trainer_state.json")
    runs = status(root, env)
    assert list(runs) == ["hf-run"]  # its own TensorBoard logs (runs/...) are not another run
    r = runs["hf-run"]
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert (r["source"], r["state"], r["progress_percentage"]) == ("hf", "finished", 100.0)
    assert (r["step"], r["total_steps"], r["total_epochs"]) == (60, state["max_steps"], state["num_train_epochs"])
    assert r["last_loss"] == losses[-1]
    assert (r["best_metric"], r["best_value"]) == ("eval_loss", state["best_metric"])
    assert not (tmp_path / "unpickled").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(("progress.json", "training_status.json"))]


def test_an_hf_run_stopped_by_early_stopping_reads_early_stopped(tmp_path, env):
    root = tmp_path / "exp"
    root.mkdir()
    # the best is the highest eval loss: every evaluation after the first is "no improvement"
    run_script("hf", root / "es", "--steps", "200", "--patience", "2", "--greater-is-better", env=env, cwd=tmp_path)
    states = sorted(root.glob("es/checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    state = read_json(states[-1])
    assert state["global_step"] < state["max_steps"]
    r = status(root, env)["es"]
    assert (r["state"], r["early_stopped"], r["progress_percentage"], r["step"]) == \
        ("early_stopped", True, 100.0, state["global_step"])


def test_an_hf_run_that_died_mid_way_reads_running_then_crashed(tmp_path, env):
    root = tmp_path / "exp"
    root.mkdir()
    run_script("hf", root / "dead", "--steps", "100", "--crash-at", "45", env=env, cwd=tmp_path)
    r = status(root, env)["dead"]
    assert r["state"] == "running" and r["step"] == 40  # written a moment ago: it may still be working
    age(root / "dead")
    r = status(root, env)["dead"]
    assert (r["state"], r["step"], r["total_steps"], r["progress_percentage"]) == ("crashed", 40, 100, 40.0)
    assert "short of its target" in r["reason"]
    plan = trainkit("launch", root, "--dry-run", cwd=tmp_path, env=env)  # shown, never launched
    assert plan.returncode == 0 and "dead" not in plan.stdout, plan.stdout


def test_lightning_csv_and_tensorboard_loggers_each_read_as_a_run(tmp_path, env):
    root = tmp_path / "exp"
    root.mkdir()
    run_script("lightning", root / "pl", "--epochs", "3", env=env, cwd=tmp_path)
    runs = status(root, env)
    assert sorted(runs) == ["pl/lightning_logs/version_0", "pl/lightning_logs/version_1"]
    rows = list(csv.DictReader((root / "pl/lightning_logs/version_0/metrics.csv").open()))
    csv_run = runs["pl/lightning_logs/version_0"]
    steps = [int(r["step"]) for r in rows]
    step_losses = [float(r["train_loss_step"]) for r in rows if r.get("train_loss_step")]
    val = [float(r["val_loss"]) for r in rows if r.get("val_loss")]
    assert (csv_run["source"], csv_run["state"], csv_run["total_epochs"]) == ("lightning", "finished", 3)
    assert (csv_run["step"], csv_run["last_loss"]) == (max(steps), step_losses[-1])
    assert (csv_run["best_metric"], csv_run["best_value"]) == ("val_loss", min(val))
    tb_run = runs["pl/lightning_logs/version_1"]
    assert tb_run["source"] == "lightning" and abs(tb_run["last_loss"] - step_losses[-1]) < 1e-6
    assert tb_run["best_value"] == pytest.approx(min(val), rel=1e-6)
    # its epochs from the epoch-level values the TensorBoardLogger got (it read crashed 0/3 when done)
    assert (tb_run["state"], tb_run["completed_epochs"], tb_run["progress_percentage"]) == ("finished", 3, 100.0)


def test_a_bare_summary_writer_is_a_tensorboard_run_running_while_its_writer_holds_the_file(tmp_path, env):
    root = tmp_path / "exp"
    root.mkdir()
    hold = tmp_path / "hold"
    hold.write_text("")
    proc = subprocess.Popen([sys.executable, str(TESTS_DIR / "foreign_scripts.py"), "writer",
                             str(root / "runs" / "try1"), "--steps", "300", "--hold", str(hold)],
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        age(root / "runs")  # an old file: only the process that holds it open says it is running
        r = status(root, env)["runs/try1"]
        assert (r["source"], r["state"], r["step"]) == ("tensorboard", "running", 299)
        assert f"pid {proc.pid}" in r["reason"]
        assert r["last_loss"] == pytest.approx(1 / 300, rel=1e-6)
        assert (r["best_metric"], r["best_value"]) == ("val/loss", pytest.approx(min(2 / (s + 1) + 0.01 * s
                                                                                    for s in range(0, 300, 10))))
    finally:
        hold.unlink()
        proc.wait(timeout=60)
    age(root / "runs")
    r = status(root, env)["runs/try1"]
    assert r["state"] == "stopped" and "does not record a target" in r["reason"]


def test_event_summaries_are_cached_and_a_grown_file_is_read_again(tmp_path, env):
    root = tmp_path / "exp"
    root.mkdir()
    run_script("writer", root / "w", "--steps", "50", env=env, cwd=tmp_path)
    assert status(root, env)["w"]["step"] == 49
    cached = list((Path(env["TRAINKIT_CACHE_DIR"]) / "tensorboard").glob("*.json"))
    assert cached
    run_script("writer", root / "w", "--steps", "80", env=env, cwd=tmp_path)  # a second event file (a restart)
    assert status(root, env)["w"]["step"] == 79


def test_without_the_tensorboard_package_such_folders_are_listed_with_a_hint(tmp_path, env):
    root = tmp_path / "exp"
    root.mkdir()
    run_script("writer", root / "w", "--steps", "5", env=env, cwd=tmp_path)
    shadow = tmp_path / "no-tb"
    (shadow / "tensorboard").mkdir(parents=True)
    (shadow / "tensorboard" / "__init__.py").write_text("raise ImportError('tensorboard is not installed')\n")
    e = {**env, "PYTHONPATH": str(shadow), "TRAINKIT_CACHE_DIR": str(tmp_path / "fresh-cache")}
    r = trainkit("status", root, "--json", cwd=tmp_path, env=e)
    assert r.returncode == 0, r.stderr
    [run] = orjson.loads(r.stdout)
    assert run["source"] == "tensorboard" and any('pip install ".[tensorboard]"' in w for w in run["warnings"])
    table = trainkit("status", root, cwd=tmp_path, env=e)
    assert 'pip install ".[tensorboard]"' in table.stdout and "Traceback" not in table.stderr


def test_a_foreign_folder_is_never_written(tmp_path, env):
    root = tmp_path / "exp"
    root.mkdir()
    run_script("lightning", root / "pl", "--epochs", "1", env=env, cwd=tmp_path)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    assert trainkit("status", root, "--repair", cwd=tmp_path, env=env).returncode == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()} == before


def test_several_roots_are_scanned_together_and_names_stay_unique(tmp_path, env):
    first, other = tmp_path / "experiments", tmp_path / "hf-out"
    write_config(first / "base" / "config.yaml")
    assert trainkit("train", first / "base" / "config.yaml", cwd=tmp_path, env=env).returncode == 0
    shutil.copytree(first / "base", other / "base")  # the same name under the second ROOT
    run_script("writer", other / "tb", "--steps", "5", env=env, cwd=tmp_path)
    r = trainkit("status", first, other, first, "--json", cwd=tmp_path, env=env)  # a ROOT twice counts once
    assert r.returncode == 0, r.stderr
    runs = {x["name"]: x for x in orjson.loads(r.stdout)}
    assert sorted(runs) == ["base", "hf-out/base", "tb"]
    assert runs["base"]["path"] == str(first / "base") and runs["hf-out/base"]["path"] == str(other / "base")
    assert (runs["base"]["state"], runs["hf-out/base"]["state"]) == ("finished", "finished")
    assert (runs["tb"]["source"], runs["tb"]["step"]) == ("tensorboard", 4)
    table = trainkit("status", first, other, cwd=tmp_path, env=env)
    assert "hf-out/base" in table.stdout and "3 runs" in table.stdout
    bad = trainkit("status", first, tmp_path / "nope", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("nope: no such folder"), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("names, expected", [
    ([("/a/exp", "x"), ("/b/out", "x")], ["x", "out/x"]),
    ([("/a/exp", "x"), ("/b/exp", "x")], ["x", "exp/x"]),
    ([("/a/exp", "x"), ("/b/out", "x"), ("/c/out", "x")], ["x", "out/x", "/c/out/x"]),  # then the ROOT as given
    ([("/a/exp", "x"), ("/b/out", "y")], ["x", "y"]),
    ([("/a/exp", "runs/a"), ("/b/out", "runs/a"), ("/c/out", "runs/a")], ["runs/a", "out/runs/a", "/c/out/runs/a"]),
])
def test_a_later_roots_name_already_taken_gets_its_roots_name(names, expected):
    from trainkit.roots import unique_name

    taken: set[str] = set()
    assert [unique_name(n, root, taken) for root, n in names] == expected


def test_a_foreign_folder_is_archived_and_restored_and_reads_as_before(tmp_path, env):
    root = tmp_path / "exp"
    root.mkdir()
    run_script("hf", root / "dead", "--steps", "100", "--crash-at", "25", env=env, cwd=tmp_path)
    age(root / "dead")
    assert status(root, env)["dead"]["state"] == "crashed"
    files = sorted(p.relative_to(root / "dead") for p in (root / "dead").rglob("*"))
    r = trainkit("experiments", "archive", "--root", root, "dead", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert not (root / "dead").exists() and (tmp_path / "exp-archive" / "dead" / "checkpoint-20").is_dir()
    r = trainkit("experiments", "restore", "--root", root, "dead", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    # the move's record (metadata.json, just written) is trainkit's, not a sign of training: still crashed
    run = status(root, env)["dead"]
    assert (run["state"], run["step"], run["total_steps"]) == ("crashed", 20, 100), run
    assert sorted(p.relative_to(root / "dead") for p in (root / "dead").rglob("*")) == sorted(
        files + [Path("metadata.json")])


def test_an_hf_output_folder_with_the_saved_model_is_not_taken_for_a_pending_trainkit_run(tmp_path, env):
    root = tmp_path / "exp"
    root.mkdir()
    run_script("hf", root / "saved", "--steps", "20", "--save-model", env=env, cwd=tmp_path)
    assert (root / "saved" / "config.json").is_file()  # the model's config, beside trainer_state.json
    write_config(root / "mine" / "config.yaml")  # a pending trainkit run: still one
    runs = status(root, env)
    assert (runs["saved"]["source"], runs["saved"]["state"], runs["saved"]["step"]) == ("hf", "finished", 20)
    assert (runs["mine"]["source"], runs["mine"]["state"]) == ("trainkit", "pending")
    plan = trainkit("launch", root, "--dry-run", cwd=tmp_path, env=env)  # read as pending, it was launched
    assert plan.returncode == 0 and "saved" not in plan.stdout and "mine" in plan.stdout, plan.stdout

    from tui.model.runs import RunsModel

    model = RunsModel(root)
    model.refresh(None, budget_s=None)
    assert {v.name: (v.source, v.state) for v in model.runs.values()} == {"saved": ("hf", "finished"),
                                                                          "mine": ("trainkit", "pending")}

    # the summary is cached by the state files' sizes and mtimes: a state written again is read again
    assert list((Path(env["TRAINKIT_CACHE_DIR"]) / "hf").glob("*.json"))
    state_file = root / "saved" / "trainer_state.json"
    state = read_json(state_file)
    state["global_step"] = 15
    state_file.write_bytes(orjson.dumps(state))
    assert status(root, env)["saved"]["step"] == 20  # its newest checkpoint's state says more
    (root / "saved" / "checkpoint-20" / "trainer_state.json").write_bytes(orjson.dumps(state))
    for checkpoint in (root / "saved").glob("checkpoint-*"):
        if checkpoint.name != "checkpoint-20":
            shutil.rmtree(checkpoint)
    assert status(root, env)["saved"]["step"] == 15


def test_one_scan_lists_each_folder_once_and_the_next_scan_sees_what_changed(tmp_path, env, monkeypatch):
    """Within one scan a folder is listed once, whatever asks (the markers, the discovery, the
    readers, the writers' search); nothing of that listing is kept for the next scan, in the same
    process (trainmon, serve)."""
    from trainkit import status as S
    from trainkit.foreign.common import entries, one_look

    monkeypatch.setenv("TRAINKIT_CACHE_DIR", env["TRAINKIT_CACHE_DIR"])
    root = tmp_path / "exp"
    root.mkdir()
    run_script("writer", root / "w", "--steps", "20", env=env, cwd=tmp_path)
    run_script("hf", root / "hf-run", "--steps", "20", env=env, cwd=tmp_path)
    listed: list[str] = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p=".": (listed.append(os.fspath(p)), real_scandir(p))[1])
    first = {r.name: r for r in S.scan(root)}
    assert first["w"].step == 19 and first["w"].source == "tensorboard" and first["hf-run"].source == "hf"
    inside = [p for p in listed if p.startswith(str(root) + os.sep)]
    assert inside and len(inside) == len(set(inside)), sorted(inside)  # each folder once

    run_script("writer", root / "w", "--steps", "30", env=env, cwd=tmp_path)  # a second event file
    run_script("writer", root / "more", "--steps", "5", env=env, cwd=tmp_path)
    second = {r.name: r for r in S.scan(root)}
    assert second["w"].step == 29 and second["more"].step == 4
    with one_look():
        before = entries(str(root))
        (root / "late").mkdir()
        assert "late" not in entries(str(root)) and entries(str(root)) is before  # one snapshot per look
    assert entries(str(root))["late"] is True  # outside a look: listed again
