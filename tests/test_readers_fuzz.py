"""Every reader survives any file: the contract's files of a real run folder (made by `trainkit
train` and `trainkit eval`) replaced by damaged, wrong-typed, huge, deep or special versions.

For each case the commands that read them (`status` as a table and as JSON, `status --repair`,
`launch --dry-run`, `score`) must exit 0 (or 2, one line, for an evaluation folder that cannot be
scored), say what is wrong, finish within seconds, and leave the other run's row unchanged. The
in-process cases run under an alarm, so a hang fails the test instead of freezing it; the cases that
need another uid or could exhaust memory run as subprocesses.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import eval_env, trainkit, write_config, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainkit import cli
from trainkit import status as S
from trainkit.config import EarlyStoppingConfig
from trainkit.launcher import plan
from trainkit.runfolder import readers

pytestmark = pytest.mark.slow

VICTIM, OTHER = "2026-11-30-victim", "2026-11-30-other"
FILES = ["training_status.json", "progress.json", "resolved_config.json", "checkpoints/current.meta.json",
         "epochs/epoch_0000/validation_scores.json", "epochs/epoch_0001/validation_scores.json", "launch.json",
         ".trainkit.lock", "config.yaml", "metrics.jsonl", "control.json", "evals/qs/precheck.jsonl",
         "evals/qs/responses.jsonl", "evals/qs/sessions.jsonl", "evals/qs/test_summary.json", "reports/qs.json"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, cache_dir) -> Path:
    """ROOT with two real runs: the victim (trained, evaluated, launched once, locked by a dead
    pid) and another run whose row must never change."""
    root = tmp_path_factory.mktemp("fuzz") / "experiments"
    env = {**os.environ, "TRAINKIT_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1"}
    for name in (VICTIM, OTHER):
        run = root / name
        cfg = write_config(run / "config.yaml", epochs=2, early_stopping={"metric": "val_loss", "patience": 3})
        r = trainkit("train", cfg, "--run-dir", run, cwd=root.parent, env=env)
        assert r.returncode == 0, r.stderr
    run = root / VICTIM
    q = write_jsonl(root.parent / "qs.jsonl", [{"id": i, "question": f"{i}+1", "answer": str(i + 1)} for i in range(5)])
    r = trainkit("eval", run, "--model", "eval_models:arith", "--questions", q, cwd=root.parent, env=eval_env(env))
    assert r.returncode == 0, r.stderr
    (run / "launch.json").write_bytes(orjson.dumps({"version": 1, "launches": [
        {"t": 1.0, "action": "relaunch", "pid": 2, "completed_before": 1, "reason": "crashed"}], "given_up": None}))
    (run / ".trainkit.lock").write_bytes(orjson.dumps({"pid": 2**22 + 7, "host": "elsewhere", "purpose": "train"}))
    (run / "control.json").write_bytes(orjson.dumps({"version": 1, "request": "pause", "id": "x"}))
    for p in FILES:
        assert (run / p).exists(), p
    return root


@pytest.fixture
def root(pristine, tmp_path) -> Path:
    dest = tmp_path / "experiments"
    shutil.copytree(pristine, dest, symlinks=True)
    return dest


class Hang(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: int):
    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), deadline(20):
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            rc = e.code
    out.flush()
    return rc, out.buffer.getvalue().decode(), err.getvalue()


def rows(text: str) -> dict[str, dict]:
    return {r["name"]: {k: v for k, v in r.items() if k != "heartbeat_age_s"} for r in orjson.loads(text)}


def every_command_survives(root: Path, baseline_other: dict | None = None) -> dict:
    """Run the readers' commands on ROOT; return the victim's row."""
    rc, out, err = run_cli("status", root, "--json")
    assert rc == 0 and "Traceback" not in err, err
    found = rows(out)
    orjson.dumps(found)  # what was read can be written back out
    if baseline_other is not None:
        assert found[OTHER] == baseline_other
    rc, out, err = run_cli("status", root)
    assert rc == 0 and OTHER in out, err
    rc, out, err = run_cli("launch", root, "--dry-run", "--json")
    assert rc == 0, err
    orjson.loads(out)
    rc, out, err = run_cli("score", root / VICTIM / "evals" / "qs", "--json")
    assert rc in (0, 2), err
    assert rc == 0 or err.count("\n") == 1, err  # bad input: one line
    rc, out, err = run_cli("status", root, "--json", "--repair")
    assert rc == 0, err
    return found.get(VICTIM, {})


@pytest.fixture
def baseline(root) -> dict:
    rc, out, _ = run_cli("status", root, "--json")
    return rows(out)[OTHER]


def deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


CONTENTS = {
    "empty": b"",
    "random bytes": bytes(range(256)) * 4,
    "json list": b"[1, 2, 3]",
    "json string": b'"running"',
    "json number": b"7",
    "json float": b"1.5",
    "json bool": b"true",
    "json null": b"null",
    "NaN": b'{"state": NaN, "completed_epochs": Infinity}',
    "deep (100)": deep(100),
    "deep (1000)": deep(1000),
    "huge": b'{"pad": "' + b"x" * (5 << 20) + b'"}',
    "huge lines": b'{"a": "' + b"y" * (9 << 20) + b'"}\n' * 2,
    "yaml alias bomb": b'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + b"".join(
        f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n".encode() for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
}


@pytest.mark.parametrize("target", FILES)
@pytest.mark.parametrize("content", list(CONTENTS), ids=list(CONTENTS))
def test_any_content_in_any_file(root, baseline, target, content):
    path = root / VICTIM / target
    path.write_bytes(CONTENTS[content])
    victim = every_command_survives(root, baseline)
    if target in ("training_status.json", "progress.json") and content != "json null":
        assert victim["warnings"], victim  # the problem is named


@pytest.mark.parametrize("target", FILES)
@pytest.mark.parametrize("kind", ["directory", "symlink to /dev/zero", "symlink out of the folder", "fifo",
                                  "truncated"])
def test_special_files(root, baseline, tmp_path, target, kind):
    path = root / VICTIM / target
    data = path.read_bytes()
    path.unlink()
    if kind == "directory":
        path.mkdir()
    elif kind == "symlink to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink out of the folder":
        outside = tmp_path / "outside.json"
        outside.write_bytes(data)
        path.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(data[: len(data) // 2])
    victim = every_command_survives(root, baseline)
    if kind != "truncated" and target in ("training_status.json", "progress.json"):
        assert any(w.startswith(target) for w in victim["warnings"]), victim["warnings"]


def test_unreadable_as_another_user(root):
    """Each file in turn belongs to another user (uid 65534, mode 0600), and the commands run as
    root without the capabilities that let root read anyone's files (what a colleague's reader is)."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and util-linux's setpriv to read as a user without access")
    as_other = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all"]
    for target in ("training_status.json", "progress.json", "resolved_config.json", "launch.json",
                   "evals/qs/precheck.jsonl", "evals/qs/responses.jsonl"):
        victim_file = root / VICTIM / target
        os.chown(victim_file, 65534, 65534)
        victim_file.chmod(0o600)
        for argv in (["status", str(root), "--json"], ["launch", str(root), "--dry-run"],
                     ["score", str(root / VICTIM / "evals" / "qs")]):
            r = subprocess.run([*as_other, sys.executable, "-m", "trainkit", *argv], capture_output=True, text=True,
                               timeout=60)
            assert r.returncode in (0, 2) and "Traceback" not in r.stderr, r.stderr
            if argv[-1] == "--json":
                victim = rows(r.stdout)[VICTIM]
                if target in ("training_status.json", "progress.json"):  # read on every scan
                    assert any("permission denied" in w for w in victim["warnings"]), victim["warnings"]
        os.chown(victim_file, 0, 0)
        victim_file.chmod(0o644)


def test_dev_zero_never_exhausts_memory_in_a_subprocess(root):
    """The same check where a runaway read would be fatal: a separate process with 1 GiB of memory."""
    for target in ("training_status.json", "metrics.jsonl", "evals/qs/precheck.jsonl", "evals/qs/responses.jsonl",
                   "config.yaml", "launch.json"):
        p = root / VICTIM / target
        p.unlink()
        p.symlink_to("/dev/zero")
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    for argv in (["status", str(root), "--json"], ["launch", str(root), "--dry-run"],
                 ["score", str(root / VICTIM / "evals" / "qs")]):
        r = subprocess.run([sys.executable, "-m", "trainkit", *argv], capture_output=True, text=True, timeout=60,
                           preexec_fn=limit)
        assert r.returncode in (0, 2) and "Traceback" not in r.stderr and "MemoryError" not in r.stderr, r.stderr


# --- every field with every kind of value (Hypothesis) -------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**64 - 1)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=50),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                       max_size=4), max_leaves=12)

FIELD_FILES = {
    "training_status.json": readers.STATUS, "progress.json": readers.PROGRESS,
    "resolved_config.json": readers.RESOLVED_CONFIG, "checkpoints/current.meta.json": readers.CURRENT_META,
    "launch.json": readers.LAUNCH, ".trainkit.lock": readers.LOCK,
}


@pytest.mark.parametrize("target", list(FIELD_FILES))
def test_each_field_with_any_value(root, baseline, target):
    path = root / VICTIM / target
    original = orjson.loads(path.read_bytes())
    fields = sorted(set(original) | set(FIELD_FILES[target].fields))
    extra = {"resolved_config.json": ["early_stopping.patience", "early_stopping.min_delta",
                                      "early_stopping.metric", "early_stopping.mode"],
             "launch.json": ["launches.0.t", "launches.0.completed_before", "given_up.t"]}.get(target, [])

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(field=st.sampled_from(fields + extra), value=JSON)
    def check(field, value):
        obj = orjson.loads(orjson.dumps(original))
        node, *rest = field.split(".")
        if rest:  # a nested field: launches.0.t, early_stopping.patience
            container = obj.setdefault(node, [{}] if rest[0].isdigit() else {})
            if isinstance(container, list):
                container = container[0] if container else container.append({}) or container[0]
            if isinstance(container, dict):
                container[rest[-1]] = value
        else:
            obj[node] = value
        path.write_bytes(orjson.dumps(obj))
        with deadline(20):
            runs = S.scan(root)
            plan(root, runs=runs)
            orjson.dumps(runs)
        assert [r for r in runs if r.name == OTHER][0].state == baseline["state"]

    check()
    every_command_survives(root, baseline)


def test_early_stopping_defaults_match_the_config_schema():
    from dataclasses import asdict

    assert readers.EARLY_STOPPING_DEFAULTS == asdict(EarlyStoppingConfig())
