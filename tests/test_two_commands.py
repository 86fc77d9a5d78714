"""Two commands at once never split or double anything: an archive while an evaluation starts, two
launchers with --max-parallel, two promotions to one target. Real processes started at the same
moment, real files; each race is run several times."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from helpers import arith_questions, eval_env, read_json, trainkit, wait_for, write_jsonl

from trainkit import lifecycle as L
from trainkit.runfolder.lock import process_start_time
from trainkit.testing import synthetic_run

HOST = socket.gethostname()


def age(folder: Path, days: float = 40) -> None:
    t = time.time() - days * 86400
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (t, t), follow_symlinks=False)
    os.utime(folder, (t, t))


@pytest.fixture
def holder():
    """A live process that a test names as a lock's holder (with its real start time)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    wait_for(lambda: process_start_time(proc.pid) is not None, what="the holder to start")

    def lock(path: Path, purpose: str) -> Path:
        path.write_bytes(orjson.dumps({"pid": proc.pid, "host": HOST, "purpose": purpose, "created_at": time.time(),
                                       "pid_started_at": process_start_time(proc.pid)}))
        return path

    lock.pid = proc.pid
    yield lock
    proc.kill()
    proc.wait()


def finished_experiment(root: Path, name: str) -> Path:
    run = synthetic_run(root, name, total=2, scores=[1.0, 0.5], state="finished").root
    age(run)
    return run


# --------------------------------------------------------------------------------------------
# archive and eval


def _writer(fifo: Path) -> int | None:
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: nobody reads it yet
        return None


def test_an_archive_while_an_evaluation_starts_never_splits_the_experiment(tmp_path, env):
    """The evaluation has started (it is reading its questions) when the archive runs: the archive
    refuses, the evaluation finishes in place; nothing is recreated in ROOT, nothing is split."""
    root = tmp_path / "experiments"
    run = finished_experiment(root, "2026-01-01-e")
    fifo = tmp_path / "questions.jsonl"
    os.mkfifo(fifo)
    log = tmp_path / "eval.log"
    args = ["eval", run, "--model", "eval_models:arith", "--questions", fifo, "--name", "qs"]
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "trainkit", *map(str, args)], cwd=tmp_path,
                                env=eval_env(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        fd = wait_for(lambda: _writer(fifo), what="the evaluation to open its questions")
        archived = trainkit("experiments", "archive", "2026-01-01-e", cwd=tmp_path, env=env)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as w:
            w.write(b"".join(orjson.dumps(q) + b"\n" for q in arith_questions(6)))
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, log.read_text()
    assert archived.returncode == 1 and "0 archived" in archived.stdout, archived.stdout + archived.stderr
    assert not (tmp_path / "experiments-archive" / "2026-01-01-e").exists()
    assert read_json(run / "evals" / "qs" / "test_summary.json")["done"] == 6
    assert (run / "resolved_config.json").exists() and (run / "epochs").is_dir()  # whole, in one place


def test_an_archive_refuses_a_run_whose_evaluation_holds_its_lock(tmp_path, holder):
    root = tmp_path / "experiments"
    for name in ("2026-01-01-a", "2026-01-01-b"):
        finished_experiment(root, name)
    plan = L.plan_archive(root, ["2026-01-01-a", "2026-01-01-b"])
    assert len(plan.selected) == 2

    def evaluation_starts(c):
        if c.name == "2026-01-01-a":  # an evaluation took its lock between the plan and the move
            (c.src / "evals").mkdir(exist_ok=True)
            holder(c.src / "evals" / ".qs.lock", "eval")

    result = L.archive(plan, before_move=evaluation_starts)
    assert [o.name for o in result.moved] == ["2026-01-01-b"]
    [refused] = result.not_moved
    assert refused.detail.startswith(f"live: evaluation qs in progress (pid {holder.pid}"), refused.detail
    assert (root / "2026-01-01-a" / "resolved_config.json").exists()


def test_an_evaluation_never_starts_in_a_run_that_is_being_moved(tmp_path, env, holder):
    root = tmp_path / "experiments"
    run = finished_experiment(root, "2026-01-01-m")
    holder(run / ".trainkit.lock", "experiments move")
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(3))
    r = trainkit("eval", run, "--model", "eval_models:arith", "--questions", q, cwd=tmp_path, env=eval_env(env))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"locked by pid {holder.pid}" in r.stderr and "experiments move" in r.stderr
    assert not (run / "evals").exists()  # nothing written into the folder being moved


def test_an_evaluation_beside_a_trainer_is_allowed(tmp_path, env, holder):
    root = tmp_path / "experiments"
    run = finished_experiment(root, "2026-01-01-t")
    holder(run / ".trainkit.lock", "train")
    q = write_jsonl(tmp_path / "qs.jsonl", arith_questions(3))
    r = trainkit("eval", run, "--model", "eval_models:arith", "--questions", q, cwd=tmp_path, env=eval_env(env))
    assert r.returncode == 0, r.stderr
    assert not (run / "evals" / ".qs.lock").exists()  # released at the end


def test_an_evaluation_of_a_missing_run_creates_nothing(tmp_path, env):
    r = trainkit("eval", tmp_path / "experiments" / "2026-01-01-gone", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "no such run folder" in r.stderr
    assert not (tmp_path / "experiments").exists()
    bad = trainkit("eval", tmp_path / "new", "--model", "no_such_module:f", "--questions", tmp_path / "q.jsonl",
                   cwd=tmp_path, env=env)
    assert bad.returncode == 2 and not (tmp_path / "new").exists()  # bad input writes nothing


# --------------------------------------------------------------------------------------------
# two launchers


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(4))
def test_launchers_started_at_once_never_start_more_than_max_parallel(tmp_path, env, attempt):
    """Three `trainkit launch --max-parallel 1` at the same moment over three pending runs: one run
    starts (they count and start under ROOT's launch lock; a handed-over lock names the child)."""
    from helpers import write_config

    root = tmp_path / "experiments"
    for i in range(3):
        write_config(root / f"2026-01-01-p{i}" / "config.yaml", epochs=500)
    cmd = [sys.executable, "-m", "trainkit", "launch", str(root), "--max-parallel", "1", "--json"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    started = [a for out, _ in outs for a in orjson.loads(out)]
    try:
        assert all(p.returncode == 0 for p in procs), [e.decode() for _, e in outs]
        assert len(started) == 1, started
        again = trainkit("launch", root, "--max-parallel", "1", "--json", cwd=tmp_path, env=env)
        assert orjson.loads(again.stdout) == [], again.stderr  # the first one still counts
    finally:
        for a in started:
            try:
                os.kill(a["pid"], 9)
            except ProcessLookupError:
                pass


# --------------------------------------------------------------------------------------------
# two promotions to one target


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, cache_dir):
    """A real experiment: trained, evaluated, its report passing the gate nrmse <= 5."""
    from helpers import write_config

    env = {**os.environ, "TRAINKIT_CACHE_DIR": str(cache_dir)}
    store = tmp_path_factory.mktemp("promote-runs")
    cfg = write_config(store / "burgers.yaml", epochs=2, eval={"gates": {"nrmse": {"max": 5.0}}})
    r = trainkit("run", cfg, "--run-dir", store / "run", cwd=store, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return store / "run"


def experiment_copy(root: Path, source: Path, name: str, *, nrmse: float | None = None) -> Path:
    import shutil

    dst = root / name
    shutil.copytree(source, dst, symlinks=True)
    if nrmse is not None:
        path = dst / "reports" / "default.json"
        report = read_json(path)
        report.update(nrmse=nrmse, final_nrmse=nrmse, metrics={"nrmse": nrmse})
        path.write_bytes(orjson.dumps(report))
    age(dst)
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(6))  # which one gets the lock first varies: each order is seen
def test_two_auto_promotions_to_one_target_keep_the_better(tmp_path, env, evaluated, holder, attempt):
    """Both check, then both wait for the lock (held by another promotion); whichever gets it first,
    the better experiment holds the target at the end and nobody is refused as "changed since the
    check": the comparison is made under the target's lock."""
    from helpers import read_until

    root = tmp_path / "experiments"
    base = read_json(evaluated / "reports" / "default.json")["nrmse"]
    experiment_copy(root, evaluated, "2026-01-01-burgers", nrmse=base / 2)  # the better one
    experiment_copy(root, evaluated, "2026-01-02-burgers")
    lock = holder(root / ".trainkit-lifecycle.lock", "experiments promote")  # another promotion runs
    procs = {}
    try:
        for name in ("2026-01-02-burgers", "2026-01-01-burgers"):
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "trainkit", "experiments", "promote", name, "--auto-promote", "--force"],
                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            read_until(procs[name].stdout, lambda seen: b"yet\n" in seen, what=f"{name}'s check")
        lock.unlink()  # the other promotion is done: both go for the lock now
        results = {name: p.communicate(timeout=60) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    errors = {name: err.decode() for name, (_, err) in results.items()}
    assert not any("changed since the check" in e for e in errors.values()), errors
    assert procs["2026-01-01-burgers"].returncode == 0, errors  # the better one is never refused
    side = read_json(tmp_path / "configs" / ".train_burgers.yaml.promotion.json")
    assert side["experiment"] == "2026-01-01-burgers" and side["value"] == base / 2
    if procs["2026-01-02-burgers"].returncode != 0:  # it came second: refused by the comparison itself
        assert "improvement" in errors["2026-01-02-burgers"], errors


def test_promote_never_follows_a_symlink_out_of_the_experiment(tmp_path, env, evaluated):
    root = tmp_path / "experiments"
    exp = experiment_copy(root, evaluated, "2026-01-01-burgers")
    secret = tmp_path / "secret.yaml"
    secret.write_text("api_key: hunter2\n")
    (exp / "config.yaml").unlink()
    (exp / "config.yaml").symlink_to(secret)
    r = trainkit("experiments", "promote", "2026-01-01-burgers", "--auto-promote", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "symbolic link out of the experiment" in r.stderr, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1
    assert not (tmp_path / "configs").exists() or not any((tmp_path / "configs").iterdir())
