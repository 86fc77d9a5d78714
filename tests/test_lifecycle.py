"""The experiment lifecycle (trainkit.lifecycle, `trainkit experiments`).

Layers: the pure classification as a table; names; then real run folders made once per module by
`trainkit run` (train -> eval -> report; one passing its gate, one failing it), copied per test and
given hand-made notes, reports, statuses and modification times where a rule needs them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from helpers import read_json, trainkit, write_config

from trainkit import lifecycle as L
from trainkit.errors import UserError
from trainkit.lifecycle import moves
from trainkit.lifecycle.classification import Facts, Options, ReportFact, Verdict

REAL_COPY = moves.copy_file
DAY = 86400.0
NOW = 1_800_000_000.0


# --------------------------------------------------------------------------------------------
# helpers


def snapshot(root: Path, *, skip: tuple[str, ...] = (), dirs: bool = False) -> dict:
    """Every entry below ``root``: files by (sha256, mode, mtime_ns), links as links (their target),
    folders by mode (and mtime with ``dirs``). ``skip``: top-level names left out."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel in skip:
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns if dirs else None)
            else:
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(st.st_mode),
                            st.st_mtime_ns)
    if dirs:
        st = os.lstat(root)
        out["."] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def age(folder: Path, days: float) -> None:
    """Set the modification time of everything in ``folder`` (links themselves, not their targets)."""
    t = time.time() - days * DAY
    for dirpath, dirnames, filenames in os.walk(folder, topdown=False):
        for name in dirnames + filenames:
            os.utime(Path(dirpath) / name, (t, t), follow_symlinks=False)
    os.utime(folder, (t, t))


def live_status(folder: Path, pid: int | None = None) -> None:
    """What `trainkit.status` calls running: state running, this host, a live pid, a fresh heartbeat."""
    now = time.time()
    (folder / "training_status.json").write_bytes(orjson.dumps({
        "version": 1, "state": "running", "pid": pid or os.getpid(), "host": socket.gethostname(),
        "started_at": now - 10, "heartbeat_at": now, "heartbeat_interval_s": 5.0, "current_epoch": 1, "step": 7}))


def edit_report(folder: Path, **changes) -> None:
    path = folder / "reports" / "default.json"
    report = read_json(path)
    report.update(changes)
    if "nrmse" in changes:
        report["metrics"] = {"nrmse": changes["nrmse"]}
        report["final_nrmse"] = changes["nrmse"]
    path.write_bytes(orjson.dumps(report))


@pytest.fixture(scope="module")
def lc_env(cache_dir) -> dict:
    e = dict(os.environ)
    e["TRAINKIT_CACHE_DIR"] = str(cache_dir)
    e.pop("RANK", None)
    e.pop("WORLD_SIZE", None)
    return e


@pytest.fixture(scope="module")
def runs(tmp_path_factory, lc_env) -> dict[str, Path]:
    """Two real experiments from `trainkit run`: ``pass`` (gate nrmse <= 5) and ``fail`` (nrmse <= 1e-9)."""
    store = tmp_path_factory.mktemp("lifecycle-runs")
    out = {}
    for key, gate in (("pass", 5.0), ("fail", 1e-9)):
        cfg = write_config(store / f"{key}.yaml", eval={"gates": {"nrmse": {"max": gate}}})
        run_dir = store / f"2026-01-01-{key}"
        r = trainkit("run", cfg, "--run-dir", run_dir, cwd=store, env=lc_env)
        assert r.returncode in (0, 3), r.stdout + r.stderr
        assert read_json(run_dir / "reports" / "default.json")["gates_passed"] is (key == "pass")
        out[key] = run_dir
    return out


def make(root: Path, source: Path, name: str, *, days: float | None = 40) -> Path:
    """A copy of a real run as ROOT/name, everything in it last changed ``days`` ago."""
    dst = root / name
    shutil.copytree(source, dst, symlinks=True)
    if days is not None:
        age(dst, days)
    return dst


def cli(*args, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return trainkit("experiments", *args, cwd=cwd, env=env, timeout=120)


# --------------------------------------------------------------------------------------------
# the classification, pure

PASS = ReportFact("default", True, True, "nrmse", 0.05)
INCOMPLETE = ReportFact("default", False, False, "nrmse", None)
PASS_LATER = ReportFact("later", True, True, "nrmse", 0.05, written_at=NOW - 50 * DAY)
FAIL = ReportFact("strict", False, True, "nrmse", 0.05, written_at=NOW - 60 * DAY)
FAIL_LATEST = ReportFact("latest", False, True, "nrmse", 0.05, written_at=NOW - 45 * DAY)
NO_GATES = ReportFact("default", None, True, "nrmse", 0.05)
STALE_PASS = ReportFact("default", True, True, "nrmse", 0.05, verdict="stale",
                        detail="checkpoints/best.pt changed since the evaluation")
OLD, MID, RECENT = NOW - 40 * DAY, NOW - 10 * DAY, NOW - 2 * DAY
PROMO = {"target": "/x/configs/train_a.yaml", "production_config": "configs/train_a.yaml", "metric": "nrmse",
         "value": 0.05}


@pytest.mark.parametrize("facts, status, reason", [
    # each rule alone
    (Facts("a", state="running", state_reason="epoch 1, step 7", last_change=OLD), "active", "running: epoch 1"),
    (Facts("a", state="paused", state_reason="paused on request", last_change=OLD), "active", "paused"),
    (Facts("a", lock_holder="pid 7 on h (train)", last_change=OLD), "active", "locked by pid 7"),
    (Facts("a", in_archive=True, last_change=OLD), "archived", "in the archive"),
    (Facts("a", archived_at=NOW - 3600, last_change=OLD), "archived", "metadata.json says archived"),
    (Facts("a", promotion=PROMO, last_change=OLD), "promoted", "promoted to configs/train_a.yaml (nrmse 0.05)"),
    (Facts("a", last_change=RECENT, last_changed="train.log"), "active", "changed 2 d ago (train.log)"),
    (Facts("a", notes=Verdict(4, False, "✗ diverged"), last_change=OLD), "failed", "notes.md line 4: ✗ diverged"),
    (Facts("a", notes=Verdict(2, True, "✓ works"), last_change=OLD), "success", "notes.md line 2: ✓ works"),
    (Facts("a", reports=(FAIL,), last_change=OLD), "failed", "report reports/strict.json: gates failed"),
    (Facts("a", reports=(PASS,), last_change=OLD), "success", "report reports/default.json: gates passed"),
    (Facts("a", state="crashed", past_retry_cap="crashed 3 times", last_change=OLD), "failed",
     "run crashed: crashed 3 times"),
    (Facts("a", last_change=OLD), "stale", "nothing changed for 40 d"),
    (Facts("a", last_change=MID), "active", "no verdict yet"),
    # precedence, pairwise down the list
    (Facts("a", state="running", in_archive=True, last_change=OLD), "active", "running"),
    (Facts("a", in_archive=True, promotion=PROMO, last_change=OLD), "archived", "archived"),
    (Facts("a", promotion=PROMO, last_change=RECENT), "promoted", "promoted"),
    (Facts("a", reports=(PASS,), last_change=RECENT, last_changed="reports/default.json"), "active",
     "then success: report reports/default.json: gates passed"),
    (Facts("a", notes=Verdict(9, True, "✓ fine by eye"), reports=(FAIL,), last_change=OLD), "success", "notes.md"),
    (Facts("a", notes=Verdict(9, False, "✗ leaks"), reports=(PASS,), last_change=OLD), "failed", "notes.md line 9"),
    # the run's report: default.json when there is one, else the most recently written
    (Facts("a", reports=(PASS, FAIL), last_change=OLD), "success", "default.json: gates passed"),
    (Facts("a", reports=(FAIL, PASS_LATER), last_change=OLD), "success", "later.json: gates passed"),
    (Facts("a", reports=(PASS_LATER, FAIL_LATEST), last_change=OLD), "failed", "latest.json: gates failed"),
    # no gates: evaluated (neither success nor failure); a stale report: never success
    (Facts("a", reports=(NO_GATES,), last_change=OLD), "evaluated", "default.json: evaluated, no gates (nrmse 0.05)"),
    (Facts("a", reports=(STALE_PASS,), last_change=OLD), "evaluated",
     "report reports/default.json: stale (nrmse 0.05); checkpoints/best.pt changed since the evaluation"),
    (Facts("a", reports=(STALE_PASS,), last_change=RECENT, last_changed="checkpoints/best.pt"), "active",
     "then evaluated: report reports/default.json: stale"),
    (Facts("a", reports=(PASS,), state="crashed", past_retry_cap="x", last_change=OLD), "success", "gates passed"),
    (Facts("a", state="failed", past_retry_cap="gave up", last_change=OLD), "failed", "run failed: gave up"),
    # no verdict from: an incomplete report, a failed run the launcher will still retry
    (Facts("a", reports=(INCOMPLETE,), last_change=OLD), "stale", "nothing changed"),
    (Facts("a", state="crashed", past_retry_cap=None, last_change=OLD), "stale", "nothing changed"),
    (Facts("a", state="crashed", past_retry_cap=None, last_change=MID), "active", "no verdict yet"),
])
def test_classify_rules_and_precedence(facts, status, reason):
    c = L.classify(facts, NOW)
    assert c.status == status
    assert reason in c.reason


NAMED = Options(named=True)


@pytest.mark.parametrize("facts, status, reason", [
    # named explicitly (archive NAME, trainmon's a): archived whenever it is not live
    (Facts("a", state="finished", last_change=NOW - 60, last_changed="train.log"), "stale",
     "no verdict yet; changed 60 s ago (train.log); named explicitly and not live"),
    (Facts("a", reports=(PASS,), last_change=RECENT, last_changed="reports/default.json"), "success",
     "report reports/default.json: gates passed (nrmse 0.05); changed 2 d ago (reports/default.json); named"),
    (Facts("a", notes=Verdict(3, False, "✗ nan"), last_change=RECENT), "failed", "notes.md line 3: ✗ nan"),
    (Facts("a", state="stopped", last_change=MID), "stale", "no verdict yet; last change 10 d ago (stale after 30 d); "
     "named explicitly and not live"),
    (Facts("a", last_change=OLD), "stale", "nothing changed for 40 d"),  # settled already: the same class
    # still active: a live run, a held lock; archived and promoted stay what they are
    (Facts("a", state="running", state_reason="epoch 1", last_change=RECENT), "active", "running: epoch 1"),
    (Facts("a", state="paused", state_reason="paused on request", last_change=OLD), "active", "paused"),
    (Facts("a", lock_holder="pid 7 on h (eval)", last_change=RECENT), "active", "locked by pid 7"),
    (Facts("a", in_archive=True, last_change=RECENT), "archived", "in the archive"),
    (Facts("a", promotion=PROMO, last_change=RECENT), "promoted", "promoted"),
])
def test_a_named_experiment_is_classified_as_it_settles_unless_live(facts, status, reason):
    c = L.classify(facts, NOW, NAMED)
    assert (c.status, reason in c.reason) == (status, True), c.reason
    bulk = L.classify(facts, NOW)  # the bulk selection's rule is unchanged: recent or undecided is active
    if facts.state not in ("running", "paused") and not facts.lock_holder and not facts.in_archive \
            and not facts.promotion and facts.last_change != OLD:
        assert bulk.status == "active"


def test_classify_day_limits_are_options():
    f = Facts("a", reports=(PASS,), last_change=NOW - 2 * DAY)
    assert L.classify(f, NOW).status == "active"
    assert L.classify(f, NOW, Options(active_days=1)).status == "success"
    g = Facts("a", last_change=NOW - 6 * DAY)
    assert L.classify(g, NOW, Options(active_days=1, stale_days=5)).status == "stale"
    assert L.classify(g, NOW, Options(active_days=1)).status == "active"


@pytest.mark.parametrize("text, expected", [
    ("# x\n✓ good\n", (2, True)),
    ("✓ first try\n\n- ✗ diverged at epoch 3\n", (3, False)),  # the last verdict wins; bullets allowed
    ("  * ✔ fine\n", (1, True)),
    ("<!-- ✓ an example in a comment -->\nno verdict\n", None),
    ("<!-- a comment\n     ✓ still in it\n-->\n", None),
    ("the result: ✓\n", None),  # the mark must start the line
])
def test_notes_verdict(text, expected):
    v = L.notes_verdict(text)
    assert (None if v is None else (v.line, v.success)) == expected


# --------------------------------------------------------------------------------------------
# names


def test_experiment_names(tmp_path, monkeypatch):
    root = tmp_path / "experiments"
    (root / "2026-01-01-x").mkdir(parents=True)
    (tmp_path / "other" / "2026-01-01-x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    ok = ["2026-01-01-x", "experiments/2026-01-01-x", "experiments/2026-01-01-x/", str(root / "2026-01-01-x"),
          "./experiments/2026-01-01-x/"]
    for ref in ok:
        assert L.experiment_name(root, ref) == "2026-01-01-x", ref
    bad = {"../2026-01-01-x": "'..'", "experiments/../experiments/2026-01-01-x": "'..'", ".hidden": "dot",
           "other/2026-01-01-x": "not a folder directly inside", "experiments/2026-01-01-x/epochs": "not a folder",
           "": "empty", "/": "not a folder directly inside", "a\\b": "separator"}
    for ref, why in bad.items():
        with pytest.raises(UserError, match=why):
            L.experiment_name(root, ref)


def test_cli_refuses_names_outside_root_with_one_line(tmp_path, lc_env):
    (tmp_path / "experiments" / "2026-01-01-x").mkdir(parents=True)
    (tmp_path / "elsewhere" / "y").mkdir(parents=True)
    for args in (["archive", "elsewhere/y"], ["promote", "../y"], ["restore", ".x"], ["compare", "2026-01-01-x", "z"]):
        r = cli(*args, cwd=tmp_path, env=lc_env)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("trainkit experiments: error: "), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "experiments"]


# --------------------------------------------------------------------------------------------
# classification of real folders, list, new, compare


def test_list_classifies_real_runs(tmp_path, runs, lc_env):
    root = tmp_path / "experiments"
    make(root, runs["pass"], "2026-01-01-pass")
    make(root, runs["fail"], "2026-01-01-fail")
    make(root, runs["pass"], "2026-01-01-recent", days=None)
    noted = make(root, runs["pass"], "2026-01-01-noted", days=None)
    (noted / "notes.md").write_text("# noted\n\n## Results\n✗ diverged\n")
    age(noted, 40)
    stale = make(root, runs["pass"], "2026-01-01-stale", days=None)
    shutil.rmtree(stale / "reports")
    age(stale, 40)
    capped = make(root, runs["pass"], "2026-01-01-capped", days=None)
    shutil.rmtree(capped / "reports")
    status = read_json(capped / "training_status.json")
    status.update(state="failed", error="boom", started_at=time.time() - 50 * DAY)
    (capped / "training_status.json").write_bytes(orjson.dumps(status))
    (capped / "launch.json").write_bytes(orjson.dumps(
        {"version": 1, "launches": [], "given_up": {"t": time.time() - 45 * DAY, "reason": "failed 3 times in a row"}}))
    age(capped, 40)
    live = make(root, runs["pass"], "2026-01-01-live")
    live_status(live)
    age(live, 40)  # liveness is the heartbeat in the file, not its mtime

    r = cli("list", "--json", cwd=tmp_path, env=lc_env)
    assert r.returncode == 0, r.stderr
    got = {e["name"]: e for e in orjson.loads(r.stdout)}
    expect = {
        "2026-01-01-pass": ("success", "report reports/default.json: gates passed (nrmse"),
        "2026-01-01-fail": ("failed", "report reports/default.json: gates failed (nrmse"),
        "2026-01-01-recent": ("active", "then success: report reports/default.json: gates passed"),
        "2026-01-01-noted": ("failed", "notes.md line 4: ✗ diverged"),
        "2026-01-01-stale": ("stale", "nothing changed for 40 d (stale after 30 d)"),
        "2026-01-01-capped": ("failed", "run failed: the launcher gave up: failed 3 times in a row"),
        "2026-01-01-live": ("active", "running: epoch 1, step 7"),
    }
    assert {n: e["status"] for n, e in got.items()} == {n: status for n, (status, _) in expect.items()}
    for name, (_, reason) in expect.items():
        assert reason in got[name]["reason"], (name, got[name]["reason"])
    p = got["2026-01-01-pass"]
    assert p["state"] == "finished" and p["progress_percentage"] == 100.0 and p["report_metric"] == "nrmse"
    assert p["best_metric"] == "val_loss" and p["files"] > 10 and p["last_change"] < time.time() - 39 * DAY

    assert [e.name for e in L.list_experiments(root, status="failed")] == [
        "2026-01-01-capped", "2026-01-01-fail", "2026-01-01-noted"]
    assert [e.status for e in L.list_experiments(root, options=Options(stale_days=50))
            if e.name == "2026-01-01-stale"] == ["active"]
    table = cli("list", "--status", "stale", cwd=tmp_path, env=lc_env).stdout
    assert "2026-01-01-stale" in table and "~ stale" in table and "2026-01-01-pass" not in table


def test_new_and_compare(tmp_path, runs, lc_env, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths to experiments are relative to the current folder
    root = tmp_path / "experiments"
    make(root, runs["pass"], "2026-01-01-pass")
    make(root, runs["fail"], "2026-01-01-fail")
    r = cli("new", "idea", "--from", "experiments/2026-01-01-pass/config.yaml", cwd=tmp_path, env=lc_env)
    assert r.returncode == 0, r.stderr
    (made,) = [p for p in root.iterdir() if p.name.endswith("-idea")]
    assert made.name[:11] == time.strftime("%Y-%m-%d-")
    assert (made / "config.yaml").read_bytes() == (runs["pass"] / "config.yaml").read_bytes()
    notes = (made / "notes.md").read_text()
    assert all(h in notes for h in ("## Hypothesis", "## Config changes", "## Results"))
    assert L.notes_verdict(notes) is None
    meta = read_json(made / "metadata.json")
    assert meta["version"] == 1 and meta["name"] == made.name and meta["created_at"] > time.time() - 60
    again = cli("new", "idea", cwd=tmp_path, env=lc_env)
    assert again.returncode == 2 and "already exists" in again.stderr
    bare = L.new_experiment("starter", root=root)
    assert bare.config.read_text().startswith("# A trainkit config") and not list(root.glob(".*"))

    c = L.compare(["2026-01-01-pass", "experiments/2026-01-01-fail/", made.name], root=root)
    assert "eval.gates.nrmse.max" in c.differing and "lr" not in c.differing
    assert c.experiments[2].config_source == "config.yaml + defaults"  # not trained: file + schema defaults
    assert c.experiments[0].reports["default"]["gates_passed"] is True
    assert c.experiments[1].reports["default"]["gates_passed"] is False
    assert c.experiments[0].best_epoch is not None
    out = cli("compare", "2026-01-01-pass", "2026-01-01-fail", "--diff-only", cwd=tmp_path, env=lc_env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("*") and "eval.gates.nrmse.max" in line for line in lines)
    assert not any(line.split()[1:2] == ["lr"] for line in lines if line.startswith("*"))
    assert "(passed)" in out.stdout and "(failed)" in out.stdout and "best epoch" in out.stdout


# --------------------------------------------------------------------------------------------
# archive and restore


def test_dry_run_and_list_only_change_nothing(tmp_path, runs, lc_env):
    root = tmp_path / "experiments"
    make(root, runs["pass"], "2026-01-01-pass")
    make(root, runs["fail"], "2026-01-01-fail")
    make(root, runs["pass"], "2026-01-01-recent", days=None)
    before = snapshot(tmp_path, dirs=True)
    r = cli("archive", "--status", "all", "--dry-run", cwd=tmp_path, env=lc_env)
    assert r.returncode == 0, r.stderr
    assert "would move experiments/2026-01-01-fail -> experiments-archive/2026-01-01-fail (" in r.stdout
    assert " files, " in r.stdout and "2026-01-01-recent: active" in r.stdout and "nothing was changed" in r.stdout
    listed = cli("archive", "--status", "success", "--list-only", cwd=tmp_path, env=lc_env)
    assert listed.stdout.split() == ["2026-01-01-pass"]
    assert cli("archive", "experiments", "2026-01-01-fail", "--dry-run", cwd=tmp_path, env=lc_env).returncode == 0
    assert snapshot(tmp_path, dirs=True) == before
    assert not (tmp_path / "experiments-archive").exists()


def _decorate(folder: Path) -> None:
    """Links (inside and pointing out), odd modes, an empty folder: what a move must keep as is."""
    (folder / "latest.pt").symlink_to("checkpoints/best.pt")
    (folder / "outside").symlink_to("/etc/hostname")
    (folder / "dangling").symlink_to("no/such/file")
    (folder / "private.txt").write_text("secret")
    os.chmod(folder / "private.txt", 0o600)
    (folder / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(folder / "run.sh", 0o755)
    (folder / "empty").mkdir()


def test_archive_then_restore_gives_the_identical_tree(tmp_path, runs, lc_env):
    root = tmp_path / "experiments"
    exp = make(root, runs["pass"], "2026-01-01-pass", days=None)
    _decorate(exp)
    age(exp, 40)
    original = snapshot(exp)
    r = cli("archive", "experiments/2026-01-01-pass/", cwd=tmp_path, env=lc_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "archived 2026-01-01-pass -> experiments-archive/2026-01-01-pass (rename" in r.stdout
    archived = tmp_path / "experiments-archive" / "2026-01-01-pass"
    assert not exp.exists() and snapshot(archived, skip=("metadata.json",)) == original
    meta = read_json(archived / "metadata.json")
    assert meta["version"] == 1 and meta["archived_at"] > time.time() - 60
    rec = meta["archive"]
    assert rec["status"] == "success" and "gates passed" in rec["reason"]
    assert rec["original_path"] == str(exp) and rec["method"] == "rename"
    files = {e["path"]: e for e in rec["manifest"]}
    assert files["outside"] == {"path": "outside", "type": "link", "target": "/etc/hostname"}
    best = files["checkpoints/best.pt"]
    assert best["sha256"] == hashlib.sha256((archived / "checkpoints/best.pt").read_bytes()).hexdigest()
    assert best["size"] == (archived / "checkpoints/best.pt").stat().st_size
    assert rec["files"] == sum(1 for e in rec["manifest"] if e["type"] != "dir")
    assert [e.status for e in L.list_experiments(root, archived=True)] == ["archived"]

    r = cli("restore", "2026-01-01-pass", cwd=tmp_path, env=lc_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not archived.exists() and snapshot(exp, skip=("metadata.json",)) == original
    meta = read_json(exp / "metadata.json")
    assert meta["archived_at"] is None and meta["restored_at"] > time.time() - 60
    assert meta["history"][0]["status"] == "success" and "manifest" not in meta["history"][0]
    assert not list(tmp_path.glob("*/.*"))  # no lock, journal or temp file left anywhere


def _exdev(src, dst):
    raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))


def _failing_copy(after: int):
    calls = [0]

    def copy(src, dst):
        calls[0] += 1
        if calls[0] > after:
            with open(dst, "wb") as f:  # halfway through a file, then the crash
                f.write(Path(src).read_bytes()[:10])
            raise RuntimeError("interrupted mid-copy")
        return REAL_COPY(src, dst)

    return copy


def test_cross_filesystem_archive_interrupted_mid_copy_completes_on_rerun(tmp_path, runs, monkeypatch):
    root = tmp_path / "experiments"
    exp = make(root, runs["pass"], "2026-01-01-pass", days=None)
    _decorate(exp)
    age(exp, 40)
    original = snapshot(exp)
    archive_dir = tmp_path / "experiments-archive"
    monkeypatch.setattr(moves, "rename_tree", _exdev)  # as if the archive were on another filesystem
    monkeypatch.setattr(moves, "copy_file", _failing_copy(after=5))
    with pytest.raises(RuntimeError, match="interrupted mid-copy"):
        L.archive(L.plan_archive(root, ["2026-01-01-pass"]))
    assert snapshot(exp) == original  # the source is whole
    assert (archive_dir / ".2026-01-01-pass.move.json").exists() and (archive_dir / ".2026-01-01-pass.partial").is_dir()
    assert not (archive_dir / "2026-01-01-pass").exists()

    monkeypatch.setattr(moves, "copy_file", REAL_COPY)
    events = []
    plan = L.plan_archive(root, ["2026-01-01-pass"])
    assert plan.pending == ["2026-01-01-pass"] and plan.selected == []
    result = L.archive(plan, progress=events.append)
    assert [o.moved for o in result.finished] == [True], result.finished
    dst = archive_dir / "2026-01-01-pass"
    assert not exp.exists() and snapshot(dst, skip=("metadata.json",)) == original
    assert sorted(p.name for p in archive_dir.iterdir()) == ["2026-01-01-pass"]
    assert sorted(p.name for p in root.iterdir()) == []
    assert read_json(dst / "metadata.json")["archive"]["method"] == "copy"
    assert {e.phase for e in events} >= {"copy", "verify", "delete"}
    assert events[0].files_total > 5 and any(e.files_done == e.files_total for e in events if e.phase == "copy")

    # and back, across filesystems too
    result = L.restore(L.plan_restore(root, ["2026-01-01-pass"]))
    assert [o.detail for o in result.moved] == ["copy"]
    assert snapshot(exp, skip=("metadata.json",)) == original and not dst.exists()


def test_cross_filesystem_move_interrupted_while_deleting_the_source(tmp_path, runs, monkeypatch):
    root = tmp_path / "experiments"
    exp = make(root, runs["fail"], "2026-01-01-fail")
    original = snapshot(exp)
    monkeypatch.setattr(moves, "rename_tree", _exdev)
    real_remove = moves.remove_tree

    def remove_half(path):
        victim = next(p for p in Path(path).rglob("*") if p.is_file())
        victim.unlink()  # part of the source is gone, then the crash
        raise KeyboardInterrupt

    monkeypatch.setattr(moves, "remove_tree", remove_half)
    with pytest.raises(KeyboardInterrupt):
        L.archive(L.plan_archive(root, [], status="failed"))
    dst = tmp_path / "experiments-archive" / "2026-01-01-fail"
    assert snapshot(dst, skip=("metadata.json",)) == original  # the complete copy
    aside = [p.name for p in root.iterdir() if p.name.startswith(".2026-01-01-fail.moved-away.")]
    assert not exp.exists() and len(aside) == 1  # ROOT shows no half experiment
    assert L.list_experiments(root) == []
    monkeypatch.setattr(moves, "remove_tree", real_remove)
    result = L.archive(L.plan_archive(root, [], status="failed"))
    assert [o.moved for o in result.finished] == [True]
    assert sorted(os.listdir(root)) == [] and sorted(os.listdir(dst.parent)) == ["2026-01-01-fail"]
    assert read_json(dst / "metadata.json")["archived_at"] is not None


def test_cross_filesystem_move_rolls_back_when_the_source_changed(tmp_path, runs, monkeypatch):
    root = tmp_path / "experiments"
    exp = make(root, runs["pass"], "2026-01-01-pass")
    monkeypatch.setattr(moves, "rename_tree", _exdev)
    monkeypatch.setattr(moves, "copy_file", _failing_copy(after=3))
    with pytest.raises(RuntimeError):
        L.archive(L.plan_archive(root, ["2026-01-01-pass"]))
    with open(exp / "train.log", "a") as f:
        f.write("a late line\n")
    changed = snapshot(exp)
    monkeypatch.setattr(moves, "copy_file", REAL_COPY)
    result = L.archive(L.plan_archive(root, ["2026-01-01-pass"]))
    assert [o.moved for o in result.finished] == [False] and "rolled back" in result.finished[0].detail
    assert "train.log changed" in result.finished[0].detail
    assert snapshot(exp) == changed
    assert sorted(os.listdir(tmp_path / "experiments-archive")) == []


def test_a_named_experiment_is_archived_unless_live_and_bulk_keeps_the_7_day_rule(tmp_path, runs, lc_env):
    """A just-finished run named explicitly is archived (its class and reason printed); a live one
    never is; --status never selects an experiment changed in the last 7 days."""
    root = tmp_path / "experiments"
    make(root, runs["pass"], "2026-01-01-recent", days=None)
    make(root, runs["pass"], "2026-01-01-recent2", days=None)
    live = make(root, runs["pass"], "2026-01-01-live")
    live_status(live)
    everything = cli("archive", "--status", "all", cwd=tmp_path, env=lc_env)
    assert everything.returncode == 0 and "0 archived" in everything.stdout
    assert "2026-01-01-recent: active: changed" in everything.stdout
    assert "active experiments are never archived" in everything.stdout
    r = cli("archive", "2026-01-01-recent", "2026-01-01-live", cwd=tmp_path, env=lc_env)
    assert r.returncode == 1, r.stdout + r.stderr  # the live one did not move
    assert "2026-01-01-live: active: running" in r.stdout and "active experiments are never archived" in r.stdout
    assert "2026-01-01-recent  success" in r.stdout and "report reports/default.json: gates passed" in r.stdout
    assert "; changed " in r.stdout and "named explicitly and not live" in r.stdout
    assert sorted(os.listdir(root)) == ["2026-01-01-live", "2026-01-01-recent2"]
    meta = read_json(root.parent / "experiments-archive" / "2026-01-01-recent" / "metadata.json")
    assert meta["archive"]["status"] == "success" and "named explicitly" in meta["archive"]["reason"]
    none = cli("archive", cwd=tmp_path, env=lc_env)
    assert none.returncode == 2 and "nothing chosen" in none.stderr and "--status" in none.stderr


def test_a_run_that_starts_between_selection_and_move_is_not_moved(tmp_path, runs):
    root = tmp_path / "experiments"
    for name in ("2026-01-01-a", "2026-01-01-b", "2026-01-01-c"):
        make(root, runs["pass"], name)
    plan = L.plan_archive(root, [], status="success")
    assert [c.name for c in plan.selected] == ["2026-01-01-a", "2026-01-01-b", "2026-01-01-c"]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        def start_runs(c):
            if c.name == "2026-01-01-a":  # training starts: a live status
                live_status(c.src)
            if c.name == "2026-01-01-b":  # a trainer holds the run's lock
                (c.src / ".trainkit.lock").write_bytes(orjson.dumps(
                    {"pid": sleeper.pid, "host": socket.gethostname(), "purpose": "train"}))

        result = L.archive(plan, before_move=start_runs)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [o.name for o in result.moved] == ["2026-01-01-c"]
    why = {o.name: o.detail for o in result.not_moved}
    assert why["2026-01-01-a"].startswith("a live run is never moved (checked just before the move: active: running")
    assert why["2026-01-01-b"].startswith(f"live: run is locked by pid {sleeper.pid}")
    assert (root / "2026-01-01-a").is_dir() and (root / "2026-01-01-b" / ".trainkit.lock").exists()


def test_an_existing_destination_is_never_overwritten(tmp_path, runs):
    root = tmp_path / "experiments"
    make(root, runs["pass"], "2026-01-01-pass")
    squatter = tmp_path / "experiments-archive" / "2026-01-01-pass"
    squatter.mkdir(parents=True)
    (squatter / "keep.txt").write_text("mine")
    plan = L.plan_archive(root, ["2026-01-01-pass"])
    assert plan.selected == [] and "already exists" in plan.skipped[0].why_not
    with pytest.raises(moves.MoveError, match="already exists"):
        moves.move(root / "2026-01-01-pass", squatter, record={}, on_done=lambda *a: None)
    assert (squatter / "keep.txt").read_text() == "mine" and (root / "2026-01-01-pass" / "config.yaml").exists()


# --------------------------------------------------------------------------------------------
# promote and the leaderboard


def test_promote_refusals_write_nothing(tmp_path, runs, lc_env):
    root = tmp_path / "experiments"
    make(root, runs["pass"], "2026-01-01-burgers")
    make(root, runs["fail"], "2026-01-02-burgers")
    before = snapshot(tmp_path, dirs=True)
    over = cli("promote", "2026-01-01-burgers", "--nrmse-threshold", "1e-9", "--auto-promote", "--update-leaderboard",
               cwd=tmp_path, env=lc_env)
    assert over.returncode == 1 and "is over the threshold 1e-09" in over.stderr, over.stdout + over.stderr
    gates = cli("promote", "2026-01-02-burgers", "--auto-promote", cwd=tmp_path, env=lc_env)
    assert gates.returncode == 1 and "gates not passed" in gates.stderr
    dry = cli("promote", "2026-01-01-burgers", "--dry-run", "--update-leaderboard", cwd=tmp_path, env=lc_env)
    assert dry.returncode == 0 and "configs/train_burgers.yaml" in dry.stdout and "nothing was written" in dry.stdout
    unasked = cli("promote", "2026-01-01-burgers", cwd=tmp_path, env=lc_env)  # stdin is not a terminal
    assert unasked.returncode == 2 and "--auto-promote" in unasked.stderr
    assert snapshot(tmp_path, dirs=True) == before


def test_promotions_in_a_row(tmp_path, runs, lc_env):
    root = tmp_path / "experiments"
    first = make(root, runs["pass"], "2026-01-01-burgers")
    second = make(root, runs["pass"], "2026-01-02-burgers")
    v1 = read_json(first / "reports" / "default.json")["nrmse"]
    edit_report(second, nrmse=v1 - 0.01)  # a better model, by 0.01
    (second / "config.yaml").write_text((second / "config.yaml").read_text() + "# tuned\n")
    age(second, 40)

    r = cli("promote", "2026-01-01-burgers", "--auto-promote", "--update-leaderboard", "--nrmse-threshold", "5",
            cwd=tmp_path, env=lc_env)
    assert r.returncode == 0, r.stdout + r.stderr
    target = tmp_path / "configs" / "train_burgers.yaml"
    assert target.read_bytes() == (first / "config.yaml").read_bytes()
    rows = (tmp_path / "reports" / "leaderboard.csv").read_text().splitlines()
    assert rows[0] == "date,experiment,config,metric,value,previous_experiment,previous_value,improvement,mode"
    assert rows[1].split(",")[1:5] == ["2026-01-01-burgers", "configs/train_burgers.yaml", "nrmse", repr(v1)]
    rec = read_json(first / "metadata.json")["promotions"][0]
    assert rec["target"] == str(target) and rec["value"] == v1 and rec["previous"] is None
    assert L.inspect(first)[0].status == "promoted"

    request = L.PromoteRequest("2026-01-02-burgers", root=root, min_improvement=0.02, force=True,
                               update_leaderboard=True)
    before = snapshot(tmp_path, dirs=True)
    refused = L.promote(request)
    assert not refused.promoted and "improvement 0.01 < the minimum 0.02" in refused.reason
    no_force = L.promote(L.PromoteRequest("2026-01-02-burgers", root=root, update_leaderboard=True))
    assert not no_force.promoted and "pass --force" in no_force.reason and "promoted from 2026-01-01" in no_force.reason
    assert snapshot(tmp_path, dirs=True) == before

    r = cli("promote", "experiments/2026-01-02-burgers/", "--auto-promote", "--update-leaderboard", "--force",
            "--min-improvement", "0.005", cwd=tmp_path, env=lc_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert target.read_bytes() == (second / "config.yaml").read_bytes()
    (backup,) = list(target.parent.glob("train_burgers.yaml.*.bak"))
    assert backup.read_bytes() == (first / "config.yaml").read_bytes()
    rows = (tmp_path / "reports" / "leaderboard.csv").read_text().splitlines()
    assert len(rows) == 3 and rows.count(rows[0]) == 1
    assert rows[2].split(",")[1] == "2026-01-02-burgers"
    assert rows[2].split(",")[5:7] == ["2026-01-01-burgers", repr(v1)]
    meta2 = read_json(second / "metadata.json")
    assert meta2["promotions"][0]["previous"]["experiment"] == "2026-01-01-burgers"
    assert meta2["promotions"][0]["backup"] == str(backup)
    assert read_json(first / "metadata.json")["promotions"][0]["replaced_by"] == "2026-01-02-burgers"
    assert [L.inspect(p)[0].status for p in (first, second)] == ["success", "promoted"]

    board = L.leaderboard(root=root)
    assert [(r.rank, r.experiment, r.current) for r in board.rows] == [
        (1, "2026-01-02-burgers", True), (2, "2026-01-01-burgers", False)]
    shown = cli("leaderboard", cwd=tmp_path, env=lc_env).stdout.splitlines()
    assert shown[1].split()[:5] == ["nrmse", "min", "1", f"{v1 - 0.01:.6g}", "2026-01-02-burgers"]


# --------------------------------------------------------------------------------------------
# the surface


def test_every_command_has_help_with_examples(capsys):
    from trainkit.cli import main

    for cmd in ("new", "list", "compare", "archive", "restore", "promote", "leaderboard"):
        with pytest.raises(SystemExit) as e:
            main(["experiments", cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out and f"trainkit experiments {cmd}" in out, cmd


def test_lifecycle_never_imports_torch():
    code = ("import sys, trainkit.lifecycle, trainkit.commands.experiments; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_unfinished_runs_archive_despite_the_movers_own_lock(tmp_path):
    """While it moves a run the archive holds the run's lock, which `trainkit status` reads as a
    starting run; the check just before the move must not mistake that lock for a trainer."""
    from trainkit.testing import synthetic_run

    root = tmp_path / "experiments"
    for state in ("stopped", "failed"):
        synthetic_run(root, f"2026-01-01-{state}", total=5, scores=[1.0, 0.5], state=state)
        age(root / f"2026-01-01-{state}", 40)
    result = L.archive(L.plan_archive(root, [], status="stale"))
    assert sorted(o.name for o in result.moved) == ["2026-01-01-failed", "2026-01-01-stopped"], result.not_moved
    with pytest.raises(UserError, match="inside ROOT"):
        L.plan_archive(root, ["x"], archive_dir=root / "archive")
    with pytest.raises(UserError, match="inside ROOT"):
        L.check_promotion(L.PromoteRequest("x", root=root, production_dir=root))
