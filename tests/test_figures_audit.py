"""Figures audit: the numbers trainkit prints and writes, recomputed here from the raw files.

Each test is a real short run (real `trainkit` subprocesses, real torch training) in a situation
where a figure went wrong before: a metric changed on resume, a misspelt metric, early stopping
replayed after its settings changed, a raised or lowered target, a schedule resumed with other
settings, the first heartbeat of a resume, evaluation agreeing with validation for each profile.
The expected values are computed independently (own replay, own argmin, the model re-run), never
by calling the code under test for the answer.
"""

from __future__ import annotations

import math
import os
import signal
import textwrap
import time
from pathlib import Path

import orjson
import pytest
import torch
import yaml
from helpers import (
    TESTS_DIR,
    count_lines,
    read_json,
    read_jsonl,
    records,
    start_trainkit,
    trainkit,
    wait_for,
    write_config,
    write_jsonl,
)

pytestmark = pytest.mark.slow


def epoch_scores(run: Path) -> list[dict]:
    """Every epoch's numbers, from the epoch folders (validation_scores.json), in order."""
    out = []
    while (run / f"epochs/epoch_{len(out):04d}/validation_scores.json").is_file():
        out.append(read_json(run / f"epochs/epoch_{len(out):04d}/validation_scores.json"))
    return out


def status_of(root: Path, name: str, env: dict, *extra: str) -> dict:
    r = trainkit("status", root, "--json", *extra, cwd=root, env=env)
    assert r.returncode == 0, r.stderr
    return {x["name"]: x for x in orjson.loads(r.stdout)}[name]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def rerun_model(run: Path, weights: dict) -> dict:
    """The validation numbers of ``weights`` on the run's validation data (the model rebuilt from
    resolved_config.json)."""
    from trainkit.tasks.configured import task_from_resolved

    cfg, task = task_from_resolved(read_json(run / "resolved_config.json"), source="test")
    data = task.build_data(dict(cfg.data), Path(os.environ["TRAINKIT_CACHE_DIR"]))
    model = task.build_model(dict(cfg.model), data)
    model.load_state_dict(weights)
    model.eval()
    return task.validate(model, data.val, cfg.batch_size)


def stop_after(proc, predicate, what: str, sig=signal.SIGTERM) -> str:
    try:
        wait_for(predicate, timeout=180, interval=0.005, what=what)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out


# --------------------------------------------------------------------------------------------
# B. the best and early stopping


def test_a_metric_changed_on_resume_rederives_the_best_and_best_pt_follows(tmp_path, env, monkeypatch):
    monkeypatch.setenv("TRAINKIT_CACHE_DIR", env["TRAINKIT_CACHE_DIR"])
    cfg = write_config(tmp_path / "cfg.yaml", early_stopping={"metric": "val_loss", "patience": 50})
    run = tmp_path / "run"
    first = trainkit("train", cfg, "--run-dir", run, "--epochs", 2, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    held = torch.load(run / "checkpoints/best.pt", weights_only=True)["epoch"]  # best by val_loss
    again = trainkit("train", run, "--epochs", 5, "--set", "early_stopping.metric=nrmse", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr

    nrmse = [s["nrmse"] for s in epoch_scores(run)]
    assert len(nrmse) == 5
    # the models whose weights exist: best.pt's at the resume, the checkpoint's (epoch 1), and every later epoch
    available = sorted({held, 1, 2, 3, 4})
    want = min(available, key=lambda e: (nrmse[e], e))
    meta = read_json(run / "checkpoints/current.meta.json")
    assert (meta["best_metric"], meta["best_mode"], meta["best_epoch"]) == ("nrmse", "min", want)
    assert meta["best_loss"] == nrmse[want]
    best = torch.load(run / "checkpoints/best.pt", weights_only=True)
    assert (best["epoch"], best["metric"], best["mode"], best["value"]) == (want, "nrmse", "min", nrmse[want])
    # the weights in best.pt really score that: the model re-run on the validation data
    assert math.isclose(rerun_model(run, best["model"])["nrmse"], nrmse[want], rel_tol=1e-5)
    assert f"best nrmse {nrmse[want]:.4g} at epoch {want}" in again.stderr


def test_a_misspelt_early_stopping_metric_is_refused_before_anything_is_written(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml", epochs=2)
    run = tmp_path / "run"
    r = trainkit("train", cfg, "--run-dir", run, "--set", "early_stopping.metric=nrmes", "--set",
                 "early_stopping.patience=2", cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "early_stopping.metric 'nrmes'" in r.stderr
    assert "did you mean 'nrmse'" in r.stderr
    assert not run.exists()  # nothing written, not even the folder

    assert trainkit("train", cfg, "--run-dir", run, "--epochs", 1, cwd=tmp_path, env=env).returncode == 0
    before = snapshot(run)
    r = trainkit("train", run, "--epochs", 2, "--set", "early_stopping.metric=val_los", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "did you mean 'val_loss'" in r.stderr, r.stderr
    assert snapshot(run) == before

    # a user task that does not name its validation numbers: checked against a first validation
    user = write_config(tmp_path / "user.yaml", task="eval_tasks:plain_task", model={}, data={}, epochs=1)
    e = {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)}
    r = trainkit("train", user, "--run-dir", tmp_path / "user", "--set", "early_stopping.metric=val_acc",
                 cwd=tmp_path, env=e)
    assert r.returncode == 2 and "early_stopping.metric 'val_acc' is not a number of the epoch record" in r.stderr
    assert not (tmp_path / "user/metrics.jsonl").exists()  # refused before a step was taken
    assert read_json(tmp_path / "user/training_status.json")["state"] == "failed"


def replay_by_hand(values_per_epoch: list[dict], segments: list[tuple[int, dict]]) -> int | None:
    """The documented rule, written out again: at each change of metric or mode the counters are
    recounted over the epochs before it (never stopping there); a changed patience keeps them."""
    best = bad = metric = mode = None
    patience = None
    for epoch, values in enumerate(values_per_epoch):
        for start, s in segments:
            if start == epoch:
                if (s["metric"], s["mode"]) != (metric, mode):
                    metric, mode, best, bad = s["metric"], s["mode"], None, 0
                    for past in values_per_epoch[:epoch]:
                        v = past[metric]
                        if best is None or (v < best if mode == "min" else v > best):
                            best, bad = v, 0
                        else:
                            bad += 1
                patience = s["patience"]
        v = values[metric]
        if best is None or (v < best if mode == "min" else v > best):
            best, bad = v, 0
        else:
            bad += 1
            if bad >= patience:
                return epoch
    return None


def test_status_and_trainmon_replay_early_stopping_with_the_settings_of_each_epoch(tmp_path, env):
    from tui.model.history import History

    root = tmp_path / "exp"
    run = root / "esm"
    cfg = write_config(tmp_path / "cfg.yaml", epochs=4, early_stopping={"metric": "val_loss", "patience": 50})
    assert trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env).returncode == 0
    r = trainkit("train", run, "--epochs", 9, "--set", "early_stopping.metric=nrmse", "--set",
                 "early_stopping.mode=max", "--set", "early_stopping.patience=2", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    values = epoch_scores(run)
    want = replay_by_hand(values, [(0, {"metric": "val_loss", "mode": "min", "patience": 50}),
                                   (4, {"metric": "nrmse", "mode": "max", "patience": 2})])
    assert want is not None and want >= 4  # it stopped under the new settings, not before they applied
    engine = read_json(run / "progress.json")
    assert (engine["early_stopped_at_epoch"], engine["completed_epochs"]) == (want, want + 1)

    (run / "progress.json").unlink()  # the slow path: replayed from the epoch folders and _meta.history
    st = status_of(root, "esm", env)
    assert (st["state"], st["early_stopped_at_epoch"], st["completed_epochs"]) == ("early_stopped", want, want + 1)
    assert status_of(root, "esm", env, "--repair")["early_stopped_at_epoch"] == want
    repaired = read_json(run / "progress.json")
    assert (repaired["early_stopped_at_epoch"], repaired["completed_epochs"]) == (want, want + 1)

    rows = History.load(str(run)).epoch_rows()  # trainmon's epochs table
    assert [r.stopped for r in rows] == [e == want for e in range(want + 1)]
    assert [r.patience for r in rows] == [50] * 4 + [2] * (want + 1 - 4)


# --------------------------------------------------------------------------------------------
# C. progress and schedule when a run is resumed


LONG = {"data": {"n_train": 4096, "n_val": 64, "nx": 32}, "heartbeat_s": 0.2, "log_every_steps": 1}


def test_a_raised_target_reads_running_then_crashed_and_is_relaunched(tmp_path, env):
    root = tmp_path / "exp"
    run = root / "raise"
    cfg = write_config(tmp_path / "cfg.yaml", task="monitor_tasks:sampling_task", model={}, data={},
                       heartbeat_s=0.2, log_every_steps=1)
    task_env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)}
    assert trainkit("train", cfg, "--run-dir", run, "--epochs", 2, cwd=tmp_path, env=task_env).returncode == 0
    assert status_of(root, "raise", env)["state"] == "finished"

    # resumed to 4 epochs, its 3rd step in this process (in epoch 2) holds until the process is
    # killed: the live figures are read while it stands there, whatever the machine's speed
    hold = tmp_path / "held"
    proc = start_trainkit("train", run, "--epochs", 4, cwd=tmp_path,
                          env={**task_env, "MONITOR_HOLD_FILE": str(hold), "MONITOR_HOLD_AT": "2"})
    try:
        wait_for(hold.exists, timeout=180, what="epoch 2 under way")
        live = status_of(root, "raise", env)
        assert (live["state"], live["completed_epochs"], live["total_epochs"], live["progress_percentage"]) == \
            ("running", 2, 4, 50.0)
        progress = read_json(run / "progress.json")
        assert (progress["total_epochs"], progress["finished"]) == (4, False)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    dead = status_of(root, "raise", env)
    assert (dead["state"], dead["completed_epochs"], dead["total_epochs"], dead["progress_percentage"]) == \
        ("crashed", 2, 4, 50.0)
    plan = trainkit("launch", root, "--dry-run", cwd=tmp_path, env=env)
    assert plan.returncode == 0 and "raise" in plan.stdout, plan.stdout + plan.stderr


def test_a_lowered_target_touches_no_file(tmp_path, env):
    root = tmp_path / "exp"
    run = root / "lower"
    cfg = write_config(tmp_path / "cfg.yaml", epochs=4, **LONG)
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    out = stop_after(proc, lambda: count_lines(run / "metrics.jsonl", b'"kind":"epoch"') >= 2, "2 epochs")
    assert proc.returncode == 0, out
    st = status_of(root, "lower", env)
    assert (st["state"], st["completed_epochs"], st["total_epochs"]) == ("stopped", 2, 4)
    before = snapshot(run)
    r = trainkit("train", run, "--epochs", 1, cwd=tmp_path, env=env)
    assert r.returncode == 0 and "no file touched" in r.stdout, r.stdout + r.stderr
    assert snapshot(run) == before
    st = status_of(root, "lower", env)
    assert (st["state"], st["completed_epochs"], st["total_epochs"]) == ("stopped", 2, 4)


def lrs(run: Path) -> list[float]:
    return [r["lr"] for r in records(run, "step")]


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_a_schedule_resumed_with_more_epochs_goes_on_from_where_it_stands(tmp_path, env, name):
    sched = {"name": name, "warmup_steps": 5, "min_lr": 1e-5}
    cfg = write_config(tmp_path / "cfg.yaml", lr_schedule=sched, log_every_steps=1)
    run = tmp_path / "run"
    assert trainkit("train", cfg, "--run-dir", run, "--epochs", 3, cwd=tmp_path, env=env).returncode == 0
    before = lrs(run)
    r = trainkit("train", run, "--epochs", 5, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    after = lrs(run)[len(before):]
    assert "learning-rate schedule changed on resume" in r.stderr
    assert after[0] == before[-1]  # no jump: it starts at the rate of the last step taken
    assert all(b <= a for a, b in zip(after, after[1:], strict=False))  # and only decays
    assert 1e-5 <= after[-1] < before[-1]  # towards min_lr at the new last step


def test_a_batch_size_changed_on_resume_keeps_the_lr_decaying_and_the_total_right(tmp_path, env):
    sched = {"name": "cosine", "warmup_steps": 5, "min_lr": 1e-5}
    cfg = write_config(tmp_path / "cfg.yaml", epochs=3, lr_schedule=sched, **LONG)
    run = tmp_path / "run"
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    stop_after(proc, lambda: count_lines(run / "metrics.jsonl") >= 300, "300 steps")
    before = lrs(run)
    meta = read_json(run / "checkpoints/current.meta.json")
    r = trainkit("train", run, "--set", "batch_size=32", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    after = lrs(run)[len(before):]
    assert after[0] == before[-1] and after[len(after) // 2] > 1e-5 * 10  # not pinned to min_lr
    assert all(b <= a for a, b in zip(after, after[1:], strict=False))
    # the steps left, counted by hand: the rest of the stopped epoch and one more, at 32 per step
    left = math.ceil((4096 - meta["samples_in_epoch"]) / 32) + (3 - meta["epochs_done"] - 1) * math.ceil(4096 / 32)
    assert len(after) == left and records(run, "step")[-1]["step"] == meta["global_step"] + left - 1


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_a_resume_with_nothing_changed_is_bit_identical_for_every_schedule(tmp_path, env, name):
    cfg = write_config(tmp_path / "cfg.yaml", epochs=3, lr_schedule={"name": name, "warmup_steps": 20,
                                                                     "min_lr": 1e-5}, **LONG)
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert trainkit("train", cfg, "--run-dir", ref, cwd=tmp_path, env=env).returncode == 0
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    stop_after(proc, lambda: count_lines(run / "metrics.jsonl") >= 150, "150 steps")
    r = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    assert r.returncode == 0 and "schedule changed" not in r.stderr, r.stderr
    key = lambda recs: [(x["step"], x["loss"], x["lr"]) for x in recs]  # noqa: E731
    assert key(records(run, "step")) == key(records(ref, "step"))


def test_the_first_heartbeat_of_a_resume_shows_where_the_run_stands(tmp_path, env):
    cfg = write_config(tmp_path / "cfg.yaml", epochs=3, **LONG)
    run = tmp_path / "run"
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    stop_after(proc, lambda: count_lines(run / "metrics.jsonl") >= 300, "300 steps")
    meta = read_json(run / "checkpoints/current.meta.json")
    last_loss = records(run, "step")[-1]["loss"]
    proc = start_trainkit("train", run, cwd=tmp_path, env=env)
    seen = []
    try:
        def observe() -> bool:
            try:
                st = read_json(run / "training_status.json")
            except (FileNotFoundError, orjson.JSONDecodeError):
                return False
            if st.get("pid") == proc.pid:
                seen.append(st)
            return bool(seen) and seen[-1]["step"] > meta["global_step"] + 20
        wait_for(observe, timeout=180, interval=0.002, what="the resumed run's status")
    finally:
        proc.kill()
        proc.wait(timeout=60)
    first = seen[0]
    assert (first["state"], first["current_epoch"], first["step"]) == \
        ("running", meta["epochs_done"], meta["global_step"])
    assert first["loss"] == last_loss
    assert all(s["step"] >= meta["global_step"] and s["current_epoch"] >= meta["epochs_done"] for s in seen)


def test_an_epoch_duration_leaves_out_the_time_paused(tmp_path, env):
    from trainkit.runfolder.control import request

    cfg = write_config(tmp_path / "cfg.yaml", epochs=3, **LONG)
    run = tmp_path / "run"
    proc = start_trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    try:
        wait_for(lambda: count_lines(run / "metrics.jsonl") > 20, timeout=180, what="training")
        request(run, "pause", request_id="p")
        wait_for(lambda: read_json(run / "training_status.json")["state"] == "paused", timeout=60, what="paused")
        time.sleep(3.0)  # the length of the pause is the point: 3 s that the epoch's duration must leave out
        request(run, "resume", request_id="r")
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    steps = records(run, "step")
    gaps = [(b["t"] - a["t"], b) for a, b in zip(steps, steps[1:], strict=False)]
    gap, after = max(gaps, key=lambda g: g[0])  # the pause sits between these two steps
    epoch = records(run, "epoch")[after["epoch"]]
    own = [x["t"] for x in steps if x["epoch"] == after["epoch"]]
    wall = epoch["t"] - own[0]
    assert gap >= 3.0 and epoch["duration_s"] < wall - 2.5, (epoch["duration_s"], wall, gap)


# --------------------------------------------------------------------------------------------
# A. what is trained is what is evaluated


ARITH = {"task": "arith-chat", "epochs": 3, "seed": 1, "batch_size": 32, "lr": 3.0e-3,
         "lr_schedule": {"name": "cosine", "warmup_steps": 30, "min_lr": 1.0e-4},
         "early_stopping": {"metric": "val_accuracy", "mode": "max", "patience": 50},
         "model": {"width": 48, "depth": 2, "heads": 4, "block_size": 64},
         "data": {"n_train": 3000, "n_val": 48, "digits": 1, "operations": "+-"},
         "monitor": {"samples_every_steps": 0, "layers_every_steps": 0}}

BRACKET = """
    from trainkit.profiles.plain_sft import PlainSFTProfile

    class BracketProfile(PlainSFTProfile):
        name = "bracket"

        def transform_example(self, example, index, system_prompt=None):
            out = super().transform_example(example, index, system_prompt)
            return {**out, "messages": [{**m, "content": f"[{m['content']}]"} if m["role"] == "assistant" else m
                                        for m in out["messages"]]}

        def pattern_ok(self, text):
            return text.startswith("[") and text.endswith("]")

        def strip_pattern(self, text):
            return text.strip().removeprefix("[").removesuffix("]")
    """


def installed_profile(root: Path) -> Path:
    """A tiny package 'installed' in ``root`` that registers the profile ``bracket`` by entry point."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "bracket_profile.py").write_text(textwrap.dedent(BRACKET))
    info = root / "bracket_profile-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bracket_profile\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[trainkit.profiles]\nbracket = bracket_profile:BracketProfile\n")
    return root


def validation_questions(run: Path, path: Path, extra_path: Path | None = None) -> Path:
    import sys

    if extra_path is not None:
        sys.path.insert(0, str(extra_path))
    try:
        from trainkit.tasks.configured import task_from_resolved

        cfg, task = task_from_resolved(read_json(run / "resolved_config.json"), source="test")
        return write_jsonl(path, task.validation_questions(dict(cfg.data)))
    finally:
        if extra_path is not None:
            sys.path.remove(str(extra_path))
            sys.modules.pop("bracket_profile", None)


@pytest.mark.parametrize("profile", ["plain_sft", "emoji_think", "bracket"])
def test_the_best_checkpoint_evaluated_on_the_validation_questions_scores_its_val_accuracy(tmp_path, env, profile):
    e = dict(env)
    site = None
    if profile == "bracket":
        site = installed_profile(tmp_path / "site")
        e["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**ARITH, "profile": profile}))
    run = tmp_path / "run"
    r = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=e)
    assert r.returncode == 0, r.stderr
    scores = epoch_scores(run)
    best = torch.load(run / "checkpoints/best.pt", weights_only=True)
    val_accuracy = scores[best["epoch"]]["val_accuracy"]
    assert val_accuracy == max(s["val_accuracy"] for s in scores[:best["epoch"] + 1])
    questions = validation_questions(run, tmp_path / "val.jsonl", site)
    assert len(read_jsonl(questions)) == 48
    r = trainkit("eval", run, "--questions", questions, "--name", "val", cwd=tmp_path, env=e)
    assert r.returncode == 0, r.stderr
    summary = read_json(run / "evals/val/test_summary.json")
    assert abs(summary["accuracy"] - val_accuracy) <= 1 / 48 + 1e-9, (summary["accuracy"], val_accuracy)
    responses = read_jsonl(run / "evals/val/responses.jsonl")
    if profile != "plain_sft":  # the run's profile shaped every reply, and scoring compared the answer inside it
        assert all(x["response"] == x["response"].strip() for x in responses)
    report = read_json(run / "reports/val.json")
    assert report.get("profile") == profile

    if profile == "bracket":  # the profile uninstalled since: a one-line refusal, nothing written under evals/
        r = trainkit("eval", run, "--name", "again", cwd=tmp_path, env=env)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "'bracket'" in r.stderr, r.stderr
        assert not (run / "evals/again").exists()


def test_burgers_best_checkpoint_on_the_validation_questions_scores_its_nrmse(tmp_path, env, monkeypatch):
    monkeypatch.setenv("TRAINKIT_CACHE_DIR", env["TRAINKIT_CACHE_DIR"])
    cfg = write_config(tmp_path / "cfg.yaml", epochs=2, early_stopping={"metric": "nrmse", "patience": 50})
    run = tmp_path / "run"
    assert trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env).returncode == 0
    best = torch.load(run / "checkpoints/best.pt", weights_only=True)
    from trainkit.tasks.configured import task_from_resolved

    c, task = task_from_resolved(read_json(run / "resolved_config.json"), source="test")
    questions = write_jsonl(tmp_path / "val.jsonl",
                            task.validation_questions(dict(c.data), Path(env["TRAINKIT_CACHE_DIR"])))
    r = trainkit("eval", run, "--questions", questions, "--name", "val", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    got = read_json(run / "evals/val/test_summary.json")["nrmse"]
    assert math.isclose(got, epoch_scores(run)[best["epoch"]]["nrmse"], rel_tol=1e-5)


def test_another_checkpoint_of_the_run_is_evaluated_through_the_same_configured_task(tmp_path, env):
    """``--model checkpoint:PATH``: the run's latest weights (current.pt) through the run's own task and
    profile; the plan names the file and its hash; a path out of the run folder is refused."""
    cfg = write_config(tmp_path / "cfg.yaml", epochs=2, early_stopping={"metric": "nrmse", "patience": 50})
    run = tmp_path / "run"
    assert trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env).returncode == 0
    r = trainkit("eval", run, "--name", "last", "--model", "checkpoint:checkpoints/current.pt", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    summary = read_json(run / "evals/last/test_summary.json")
    assert summary["model"].startswith("checkpoint:checkpoints/current.pt sha256:") and summary["completed"]
    best = trainkit("eval", run, "--name", "best", cwd=tmp_path, env=env)
    assert best.returncode == 0, best.stderr
    assert read_json(run / "evals/best/test_summary.json")["model"].startswith("checkpoint:checkpoints/best.pt ")
    for bad in ("../cfg.yaml", "/etc/passwd", "checkpoints/nothing.pt"):
        r = trainkit("eval", run, "--name", "x", "--model", f"checkpoint:{bad}", cwd=tmp_path, env=env)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert not (run / "evals/x").exists()
