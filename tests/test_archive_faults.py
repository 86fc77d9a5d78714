"""A cross-filesystem archive killed at every phase, and an archive filesystem that fills up.

The archive is a real tmpfs (a real EXDEV from ROOT, a real ENOSPC when it is small) where this
process may mount one; elsewhere the cross-filesystem path is forced (rename_tree raises EXDEV) and
the full disk is a file size limit (RLIMIT_FSIZE: EFBIG). Each kill is a real SIGKILL of a real
process at the named point; the next `trainkit experiments archive` (or restore) must finish or roll
back the move, nothing may be lost or left behind, and the experiment is never wedged afterwards."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import mount_small_filesystem, read_json, trainkit, unmount

from trainkit.testing import synthetic_run

NAME = "2026-01-01-big"

DRIVER = r'''
import errno, os, resource, signal, sys
from pathlib import Path
from trainkit import lifecycle as L
from trainkit.lifecycle import archiving, moves

point, op, root, fake_exdev, size_limit = sys.argv[1:6]
names = sys.argv[6:]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def after(owner, attr, when=lambda *a: True):
    real = getattr(owner, attr)

    def wrapped(*a, **k):
        out = real(*a, **k)
        if when(*a):
            die()
        return out

    setattr(owner, attr, wrapped)


def before(owner, attr):
    def wrapped(*a, **k):
        die()

    setattr(owner, attr, wrapped)


if fake_exdev == "1":
    def exdev(src, dst):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
    moves.rename_tree = exdev
if int(size_limit):
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(size_limit), int(size_limit)))
copies = [0]
real_copy = moves.copy_file
if point == "journal":
    after(moves, "write_json")
elif point == "copy":
    def copy(src, dst):
        copies[0] += 1
        if copies[0] == 4:  # halfway through the fourth file
            with open(dst, "wb") as f:
                f.write(Path(src).read_bytes()[:100])
            die()
        return real_copy(src, dst)
    moves.copy_file = copy
elif point == "verify":
    before(moves, "verify")
elif point == "staged":
    after(moves, "rename_noreplace", when=lambda src, dst: not Path(dst).name.startswith("."))
elif point == "aside":
    after(moves, "set_aside")
elif point == "emptying":
    def half(path):
        entries = sorted(os.listdir(path))
        for e in entries[: len(entries) // 2]:
            p = Path(path) / e
            moves.remove_tree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        die()
    moves.empty_tree = half
elif point == "recorded":
    after(archiving, "record_move")
elif point == "emptied":
    before(Path, "rmdir")
elif point == "aside-removed":
    after(Path, "rmdir")
plan = (L.plan_archive(root, names) if op == "archive" else L.plan_restore(root, names))
result = (L.archive if op == "archive" else L.restore)(plan)
print("not killed:", [(o.name, o.detail) for o in result.moved + result.not_moved + result.finished])
'''

KILL_POINTS = ["journal", "copy", "verify", "staged", "aside", "emptying", "recorded", "emptied", "aside-removed"]


def snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel in ("metadata.json", ".trainkit.lock"):  # rewritten by the move; its holder's
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(st.st_mode),
                            st.st_mtime_ns)
    return out


def experiment(root: Path) -> Path:
    """A finished run with a 600 kB checkpoint, nested folders, a link and notes, 40 days old."""
    run = synthetic_run(root, NAME, total=3, scores=[1.0, 0.6, 0.5], state="finished").root
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "checkpoints" / "best.pt").write_bytes(os.urandom(600_000))
    (run / "checkpoints" / "latest.pt").symlink_to("best.pt")
    (run / "notes.md").write_text("# big\n")
    t = time.time() - 40 * 86400
    for dirpath, dirnames, filenames in os.walk(run):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (t, t), follow_symlinks=False)
    return run


@pytest.fixture
def places(tmp_path):
    """(ROOT, its archive, whether the archive is on another filesystem for real)."""
    root, archive = tmp_path / "experiments", tmp_path / "experiments-archive"
    real = mount_small_filesystem(archive, "64m")
    yield root, archive, real
    if real:
        unmount(archive)


def drive(point: str, op: str, root: Path, env: dict, *, real: bool, size_limit: int = 0, names=(NAME,)):
    return subprocess.run([sys.executable, "-c", DRIVER, point, op, str(root), "0" if real else "1", str(size_limit),
                           *names], cwd=root.parent, env=env, capture_output=True, text=True, timeout=120)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("point", KILL_POINTS)
def test_an_archive_across_filesystems_killed_at_any_phase_is_finished_by_the_next_one(places, env, point):
    root, archive, real = places
    exp = experiment(root)
    original = snapshot(exp)
    killed = drive(point, "archive", root, env, real=real)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    copy = archive / NAME
    assert snapshot(exp) == original or snapshot(copy) == original  # a complete copy somewhere, always

    again = trainkit("experiments", "archive", NAME, cwd=root.parent, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert snapshot(copy) == original and not exp.exists()
    assert leftovers(root) == [] and leftovers(archive) == []  # no journal, no partial copy, nothing set aside
    assert read_json(copy / "metadata.json")["archived_at"] is not None

    back = trainkit("experiments", "restore", NAME, cwd=root.parent, env=env)  # never wedged afterwards
    assert back.returncode == 0 and snapshot(exp) == original, back.stdout + back.stderr
    assert trainkit("experiments", "archive", NAME, cwd=root.parent, env=env).returncode == 0
    assert snapshot(copy) == original and leftovers(root) == [] and leftovers(archive) == []


@pytest.mark.parametrize("point", ["emptying", "recorded"])
def test_a_restore_after_an_archive_was_killed_finishes_the_archive_then_restores(places, env, point):
    root, archive, real = places
    exp = experiment(root)
    original = snapshot(exp)
    assert drive(point, "archive", root, env, real=real).returncode == -9
    back = trainkit("experiments", "restore", NAME, cwd=root.parent, env=env)
    assert back.returncode == 0, back.stdout + back.stderr
    assert snapshot(exp) == original and not (archive / NAME).exists()
    assert leftovers(root) == [] and leftovers(archive) == []
    again = trainkit("experiments", "archive", NAME, cwd=root.parent, env=env)  # no "Directory not empty"
    assert again.returncode == 0, again.stdout + again.stderr
    assert snapshot(archive / NAME) == original and leftovers(root) == []


@pytest.mark.parametrize("point", ["copy", "aside"])
def test_a_restore_across_filesystems_killed_is_finished_by_the_next_restore(places, env, point):
    root, archive, real = places
    exp = experiment(root)
    original = snapshot(exp)
    assert trainkit("experiments", "archive", NAME, cwd=root.parent, env=env).returncode == 0
    assert drive(point, "restore", root, env, real=real).returncode == -9
    again = trainkit("experiments", "restore", NAME, cwd=root.parent, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert snapshot(exp) == original and leftovers(root) == [] and leftovers(archive) == []


def test_an_archive_filesystem_that_fills_up_removes_the_partial_copy_and_fails(tmp_path, env):
    root, archive = tmp_path / "experiments", tmp_path / "experiments-archive"
    exp = experiment(root)
    original = snapshot(exp)
    if mount_small_filesystem(archive, "256k"):  # smaller than the experiment: a real ENOSPC mid-copy
        try:
            r = trainkit("experiments", "archive", NAME, cwd=tmp_path, env=env)
            out = r.stdout + r.stderr
            assert r.returncode == 1 and "no space left" in out, out
            assert os.listdir(archive) == []  # the partial copy and the journal are gone: the space is free again
        finally:
            unmount(archive)
    else:  # no mount here: no file may grow past 100 kB (the checkpoint is 600 kB): EFBIG mid-copy
        r = drive("none", "archive", root, env, real=False, size_limit=100_000)
        assert r.returncode == 0 and "larger than the destination allows" in r.stdout, r.stdout + r.stderr
        assert os.listdir(archive) == []
    assert snapshot(exp) == original and leftovers(root) == []  # the experiment stays, whole
