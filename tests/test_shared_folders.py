"""Nothing runs that the user did not write (one experiments folder shared by many people): launch and
relaunch execute only runs that are the user's own (sshd's StrictModes), --dry-run shows the exact
command, recorded commands of other trainers run only when asked, import strings never resolve
from a run folder, and a run's name never changes a Slurm job script. Real files owned by other
users (chown: this needs root; those cases skip otherwise), real launches."""

from __future__ import annotations

import grp
import os
import shlex
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import arith_questions, eval_env, trainkit, wait_for, write_config, write_jsonl

from trainkit import slurm
from trainkit.slurm import Options
from trainkit.testing import dead_pid, synthetic_run

ROOT_USER = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT_USER, reason="giving a file to another user needs root")
NOBODY = 65534


def pending(root: Path, name: str, **config) -> Path:
    run = root / name
    write_config(run / "config.yaml", **config)
    return run


def shared_group() -> int:
    """A group that is not this user's private group (e.g. users, staff)."""
    for g in grp.getgrall():
        if g.gr_gid != os.getegid() and g.gr_name not in ("root",):
            return g.gr_gid
    pytest.skip("no second group on this machine")


def dry_run(root: Path, tmp_path: Path, env: dict, *args: str) -> dict[str, dict]:
    r = trainkit("launch", root, "--dry-run", "--json", *args, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    return {a["name"]: a for a in orjson.loads(r.stdout)}


# --------------------------------------------------------------------------------------------
# StrictModes


def test_launch_starts_only_runs_that_are_yours_and_writable_by_nobody_else(tmp_path, env):
    root = tmp_path / "experiments"
    mine = pending(root, "2026-01-01-mine")
    other_writable = pending(root, "2026-01-01-o+w")
    (other_writable / "config.yaml").chmod(0o646)
    world_folder = pending(root, "2026-01-01-folder-o+w")
    world_folder.chmod(0o777)
    linked = pending(root, "2026-01-01-linked")
    (linked / "config.yaml").rename(tmp_path / "elsewhere.yaml")
    (linked / "config.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    plan = dry_run(root, tmp_path, env)
    assert "argv" in plan["2026-01-01-mine"] and "skip" not in plan["2026-01-01-mine"]
    assert "config.yaml is writable by others" in plan["2026-01-01-o+w"]["skip"]
    assert "the run folder is writable by others" in plan["2026-01-01-folder-o+w"]["skip"]
    assert "config.yaml is a symbolic link" in plan["2026-01-01-linked"]["skip"]
    text = trainkit("launch", root, "--dry-run", cwd=tmp_path, env=env).stdout
    assert "would skip 2026-01-01-o+w (launch: pending: never started): config.yaml is writable by others" in text
    assert "StrictModes" in text
    assert mine.exists()


@needs_root
def test_a_run_another_user_can_change_is_never_executed(tmp_path, env):
    """A pending run whose config.py belongs to someone else (or whose folder their group can
    write): `trainkit launch` skips it with one line and the code never runs."""
    root = tmp_path / "experiments"
    pwned = tmp_path / "pwned"
    theirs = root / "2026-01-01-theirs"
    theirs.mkdir(parents=True)
    (theirs / "config.py").write_text(f"open({str(pwned)!r}, 'w').write('ran')\nconfig = {{'task': 'burgers'}}\n")
    os.chown(theirs / "config.py", NOBODY, NOBODY)
    group = pending(root, "2026-01-01-group")
    os.chown(group, os.geteuid(), shared_group())
    group.chmod(0o775)
    foreign_resolved = synthetic_run(root, "2026-01-01-crashed", scores=[1.0], state="running", pid=dead_pid()).root
    os.chown(foreign_resolved / "resolved_config.json", NOBODY, NOBODY)
    r = trainkit("launch", root, "--max-parallel", "5", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert f"skip 2026-01-01-theirs: config.py is owned by uid {NOBODY}, not by you" in r.stdout, r.stdout
    assert "skip 2026-01-01-group: the run folder is writable by its group" in r.stdout
    assert f"skip 2026-01-01-crashed: resolved_config.json is owned by uid {NOBODY}" in r.stdout
    assert not pwned.exists() and "(pid" not in r.stdout  # nothing was started


# --------------------------------------------------------------------------------------------
# --dry-run shows what runs


@pytest.mark.slow
def test_dry_run_prints_the_exact_argv_and_cwd_that_launch_runs(tmp_path, env):
    root = tmp_path / "experiments"
    run = pending(root, "2026-01-01-a", epochs=500)
    plan = dry_run(root, tmp_path, env)["2026-01-01-a"]
    assert plan["argv"] == [sys.executable, "-m", "trainkit", "train", str(run), "--run-dir", str(run)]
    assert plan["cwd"] == str(tmp_path)
    text = trainkit("launch", root, "--dry-run", cwd=tmp_path, env=env).stdout
    assert f"  argv: {shlex.join(plan['argv'])}\n  cwd:  {tmp_path}" in text
    r = trainkit("launch", root, "--json", cwd=tmp_path, env=env)
    pid = orjson.loads(r.stdout)[0]["pid"]
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        assert [a.decode() for a in argv] == plan["argv"]  # what ran is what the dry run showed
        assert os.readlink(f"/proc/{pid}/cwd") == plan["cwd"]
    finally:
        os.kill(pid, 9)


# --------------------------------------------------------------------------------------------
# recorded commands of other trainers


def foreign_crashed_run(root: Path, pwned: Path) -> Path:
    run = synthetic_run(root, "2026-01-01-hf", scores=[1.0], state="running", pid=dead_pid()).root
    cfg = orjson.loads((run / "resolved_config.json").read_bytes())
    cfg["_meta"] = {"version": 1, "trainer": "hf", "relaunch": {
        "argv": [sys.executable, "-c", f"open({str(pwned)!r}, 'w').write('ran')"], "cwd": str(root.parent)}}
    (run / "resolved_config.json").write_bytes(orjson.dumps(cfg))
    return run


def test_a_recorded_relaunch_command_runs_only_when_asked(tmp_path, env):
    root = tmp_path / "experiments"
    pwned = tmp_path / "ran"
    foreign_crashed_run(root, pwned)
    plan = dry_run(root, tmp_path, env)["2026-01-01-hf"]
    assert "--run-recorded-commands" in plan["skip"] and "open(" in plan["skip"]  # shown, not run
    r = trainkit("launch", root, cwd=tmp_path, env=env)
    assert r.returncode == 0 and "skip 2026-01-01-hf: trained by hf: its recorded command" in r.stdout, r.stdout
    assert not pwned.exists()
    asked = dry_run(root, tmp_path, env, "--run-recorded-commands")["2026-01-01-hf"]
    assert asked["argv"][:2] == [sys.executable, "-c"] and asked["cwd"] == str(tmp_path)
    r = trainkit("launch", root, "--run-recorded-commands", cwd=tmp_path, env=env)
    assert r.returncode == 0 and "relaunch 2026-01-01-hf (pid" in r.stdout, r.stdout + r.stderr
    wait_for(pwned.exists, timeout=30, what="the recorded command to run")


# --------------------------------------------------------------------------------------------
# import strings


def evil_run(root: Path, marker: Path) -> None:
    run = pending(root, "2026-01-01-evilrun")
    (run / "payload.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n"
                                    "def make():\n    raise SystemExit('payload ran')\n"
                                    "def answer(item):\n    return 'x'\n")


@pytest.mark.parametrize("layout", ["namespace", "package"])
def test_an_import_string_never_resolves_a_module_from_a_run_folder(tmp_path, env, layout):
    root = tmp_path / "experiments"
    marker = tmp_path / "imported"
    evil_run(root, marker)
    if layout == "package":  # __init__.py files make it look like a package: still refused, never executed
        (root / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
        (root / "2026-01-01-evilrun" / "__init__.py").write_text("")
    cfg = write_config(tmp_path / "victim.yaml", task="experiments.2026-01-01-evilrun.payload:make")
    r = trainkit("train", cfg, "--run-dir", tmp_path / "victim", cwd=tmp_path, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "never imports code from there" in r.stderr and "Traceback" not in r.stderr
    q = write_jsonl(tmp_path / "q.jsonl", arith_questions(2))
    e = trainkit("eval", tmp_path / "solo", "--model", "experiments.2026-01-01-evilrun.payload:answer",
                 "--questions", q, cwd=tmp_path, env=eval_env(env))
    assert e.returncode == 2 and "never imports code from there" in e.stderr, e.stderr
    assert not marker.exists()  # nothing from the run folder was executed


# --------------------------------------------------------------------------------------------
# Slurm job scripts


def test_a_run_name_with_a_newline_is_refused_in_a_job_script(tmp_path, env):
    root = tmp_path / "experiments"
    pending(root, "2026-01-01-x\n#SBATCH --wrap=id\ntouch pwned")
    r = trainkit("launch", root, "--slurm", "--dry-run", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "# would skip" in r.stdout and "newline" in r.stdout and "#!/bin/bash" not in r.stdout
    with pytest.raises(slurm.SlurmError, match="newline"):
        slurm.job_script(root / "a\nb", python="py", cwd=tmp_path, options=Options())


def test_a_run_name_with_shell_characters_is_quoted_in_the_job_script(tmp_path):
    name = "2026-01-01-a;b $(touch pwned) `touch pwned2` 'q\" %x"
    run = tmp_path / "experiments" / name
    run.mkdir(parents=True)
    text = slurm.job_script(run, python="/bin/echo", cwd=tmp_path, options=Options(partition="gpu"))
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --requeue" in directives and "#SBATCH --partition=gpu" in directives
    assert len(directives) == 7  # job-name, output, open-mode, chdir, requeue, signal, partition: nothing more
    first_cmd = next(i for i, line in enumerate(text.splitlines()) if line and not line.startswith("#"))
    assert all(not line.startswith("#SBATCH") for line in text.splitlines()[first_cmd:])
    script = tmp_path / "job.sh"
    script.write_text(text.replace('scontrol requeue "$SLURM_JOB_ID"', "true"))
    out = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"-m trainkit train {run} --run-dir {run}" in out.stdout  # one argument each, as written
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
