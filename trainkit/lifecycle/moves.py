"""Moving an experiment folder so that nothing is ever lost.

* Same filesystem: one atomic rename that never replaces an existing destination
  (``renameat2(RENAME_NOREPLACE)`` where the kernel has it).
* Across filesystems (the rename fails with ``EXDEV``): a journal ``DEST_PARENT/.NAME.move.json``
  holding the manifest is written first; the files are copied into ``DEST_PARENT/.NAME.partial/``
  (data, mode and times; links as links, never followed), every file is verified against the
  manifest (size and sha256), the copy is renamed to its final name, the source is renamed aside to
  ``.NAME.moved-away.<token>`` (the token is the journal's: an older leftover never collides) and
  emptied, the move is recorded (``on_done``), the emptied folder removed, and the journal last.

Every phase leaves a state that :func:`resume` (run by the next archive or restore, whichever way
it goes) carries to the end or rolls back, from any kill point:

* copying or verifying (no final copy yet): the copy goes on, or is rolled back when the source
  changed meanwhile (the copy so far is removed; the source stays);
* the final copy in place, the source still there: the source is moved aside, or the copy is
  removed when the source changed meanwhile;
* the source moved aside (its folder exists, emptied or not): never rolled back from here on (a
  new folder of the same name is someone else's and is left alone): emptied, recorded, journal gone;
* recorded (``recorded`` says so) and the set-aside folder gone: only the journal is left to remove.

A copy that fails (a full archive filesystem, an unreadable file) is rolled back at once: the
partial copy and the journal are removed, the source stays, and :class:`MoveError` says why.

A manifest lists every entry of the folder, sorted: ``{"path", "type": "file", "size", "sha256",
"mode", "mtime_ns"}``, ``{"path", "type": "link", "target"}``, ``{"path", "type": "dir", "mode",
"mtime_ns"}``. ``metadata.json`` (rewritten by the lifecycle after the move) is copied but not in the
manifest; ``.trainkit.lock`` (it belongs to its holder) is neither.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainkit.runfolder import FORMAT_VERSION, LOCK_FILE, METADATA_FILE, readers
from trainkit.runfolder.files import open_regular, write_json

JOURNAL_SUFFIX = ".move.json"
UNLISTED = (METADATA_FILE, LOCK_FILE)  # top-level names left out of the manifest
NOT_COPIED = (LOCK_FILE,)
CHUNK = 1 << 20
JOURNAL = readers.Schema("move journal", {}, limit=readers.LIMITS["metadata"], extra="keep")  # holds a manifest


class MoveError(RuntimeError):
    """A move that could not be done; nothing was lost (the message says where everything is)."""


@dataclass
class MoveProgress:
    """Reported through the ``progress`` callback of long moves (after each file)."""

    name: str
    phase: str  # copy | verify | delete | done
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


Progress = Callable[[MoveProgress], None]


@dataclass
class Moved:
    src: Path
    dst: Path
    method: str  # rename | copy
    manifest: list[dict] = field(default_factory=list)
    rolled_back: str | None = None  # why a cross-filesystem move was undone (the source is intact)
    note: str | None = None  # something found on the way that was left alone

    @property
    def files(self) -> int:
        return sum(1 for e in self.manifest if e["type"] != "dir")

    @property
    def bytes(self) -> int:
        return sum(e.get("size", 0) for e in self.manifest if e["type"] == "file")


# --------------------------------------------------------------------------------------------
# primitives (module-level so that tests can replace them)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
except (AttributeError, OSError):  # not Linux, or a libc without it
    _renameat2 = None


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, failing with FileExistsError if ``dst`` exists (EXDEV across filesystems)."""
    global _renameat2
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
        # the filesystem does not support the flag: check, then rename (under ROOT's lock)
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "destination exists", str(dst))
    os.rename(src, dst)


def rename_tree(src: Path, dst: Path) -> None:
    """The whole-folder move (tests make it raise EXDEV to take the cross-filesystem path)."""
    rename_noreplace(src, dst)


def _chunks(fd: int):
    while chunk := os.read(fd, CHUNK):
        yield chunk


def copy_file(src: Path, dst: Path) -> str:
    """Copy data, mode and times of a regular file (never a FIFO or device, never through a link);
    fsync; return the sha256 of the bytes written."""
    h = hashlib.sha256()
    fd = open_regular(src, within=src.parent)
    try:
        st = os.fstat(fd)
        with open(dst, "wb") as fo:
            for chunk in _chunks(fd):
                h.update(chunk)
                fo.write(chunk)
            fo.flush()
            os.fsync(fo.fileno())
    finally:
        os.close(fd)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """The sha256 of a regular file (read in chunks; a FIFO or device is refused, never waited on)."""
    h = hashlib.sha256()
    fd = open_regular(path, within=Path(path).parent)
    try:
        for chunk in _chunks(fd):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def remove_tree(path: Path) -> None:
    """Delete a folder (links removed, never followed)."""
    shutil.rmtree(path)


def empty_tree(path: Path) -> None:
    """Delete what a folder holds, keeping the folder itself (links removed, never followed)."""
    with os.scandir(path) as it:
        entries = list(it)
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            remove_tree(Path(e.path))
        else:
            os.unlink(e.path)


def set_aside(src: Path, trash: Path) -> None:
    """Rename the source aside (same folder, so atomic): from here on the move only goes forward."""
    os.rename(src, trash)


# --------------------------------------------------------------------------------------------
# manifests


def scan(folder: Path, *, hashes: bool) -> list[dict]:
    """The manifest of ``folder`` (sorted by path); ``hashes=False`` leaves out the sha256 (cheap)."""
    out: list[dict] = []
    stack = [(os.fspath(folder), "")]
    while stack:
        d, rel = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if not rel and e.name in UNLISTED:
                    continue
                path = f"{rel}{e.name}"
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    out.append({"path": path, "type": "dir", "mode": stat.S_IMODE(st.st_mode),
                                "mtime_ns": st.st_mtime_ns})
                    stack.append((e.path, path + "/"))
                elif stat.S_ISLNK(st.st_mode):
                    out.append({"path": path, "type": "link", "target": os.readlink(e.path)})
                elif stat.S_ISREG(st.st_mode):
                    entry = {"path": path, "type": "file", "size": st.st_size, "mode": stat.S_IMODE(st.st_mode),
                             "mtime_ns": st.st_mtime_ns}
                    if hashes:
                        entry["sha256"] = sha256_file(Path(e.path))
                    out.append(entry)
                else:
                    out.append({"path": path, "type": "special"})
    out.sort(key=lambda e: e["path"].split("/"))
    return out


def differences(folder: Path, manifest: list[dict]) -> str | None:
    """How ``folder`` differs from ``manifest`` by a stat-level look (paths, types, sizes, mtimes,
    link targets), or None when it matches."""
    try:
        now = {e["path"]: e for e in scan(folder, hashes=False)}
    except FileNotFoundError:
        return f"{folder} is gone"
    want = {e["path"]: e for e in manifest}
    for path in sorted(now.keys() - want.keys())[:1]:
        return f"{path} appeared"
    for path in sorted(want.keys() - now.keys())[:1]:
        return f"{path} disappeared"
    for path, w in want.items():
        n = now[path]
        keys = ("type", "size", "mtime_ns") if w["type"] == "file" else ("type", "target") if w["type"] == "link" \
            else ("type",)
        if any(n.get(k) != w.get(k) for k in keys):
            return f"{path} changed"
    return None


def verify(folder: Path, manifest: list[dict]) -> None:
    """Every entry of ``manifest`` is in ``folder`` with the same size and sha256 (files) or target
    (links); raises :class:`MoveError` naming the first mismatch."""
    for e in manifest:
        p = folder / e["path"]
        if e["type"] == "dir":
            if not p.is_dir() or p.is_symlink():
                raise MoveError(f"verification failed: {e['path']}/ is missing in {folder}")
        elif e["type"] == "link":
            if not p.is_symlink() or os.readlink(p) != e["target"]:
                raise MoveError(f"verification failed: link {e['path']} differs in {folder}")
        elif e["type"] == "file":
            if p.is_symlink() or not p.is_file() or p.stat().st_size != e["size"] or sha256_file(p) != e["sha256"]:
                raise MoveError(f"verification failed: {e['path']} differs in {folder}")


# --------------------------------------------------------------------------------------------
# the move


def journal_path(dst: Path) -> Path:
    return dst.parent / f".{dst.name}{JOURNAL_SUFFIX}"


def staging_path(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.partial"


TRASH_INFIX = ".moved-away"


def trash_path(src: Path, token: str = "") -> Path:
    return src.parent / (f".{src.name}{TRASH_INFIX}" + (f".{token}" if token else ""))


Done = Callable[[Path, "Moved", dict], None]  # (final folder, what was moved, the caller's record)


def _why(e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the destination's filesystem"
    if e.errno == errno.EFBIG:
        return "a file is larger than the destination allows"
    return e.strerror or str(e)


def move(src: Path, dst: Path, *, record: dict, on_done: Done, progress: Progress | None = None) -> Moved:
    """Move the folder ``src`` to ``dst`` (which must not exist), then call ``on_done`` (which
    records the move, e.g. in ``metadata.json``). Same filesystem: a rename; else the journaled copy."""
    if os.path.lexists(dst):
        raise MoveError(f"{dst} already exists; nothing was moved (an existing destination is never overwritten)")
    if journal_path(dst).exists():
        raise MoveError(f"an interrupted move to {dst} is pending ({journal_path(dst)}); run the command again")
    try:
        rename_tree(src, dst)
    except FileExistsError:
        raise MoveError(f"{dst} already exists; nothing was moved") from None
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    else:  # moved: the manifest is a record now; a file it cannot read does not undo the move
        try:
            manifest = scan(dst, hashes=True)
        except OSError as e:
            manifest = [{"path": "", "type": "error", "error": str(e)}]
        moved = Moved(src, dst, "rename", manifest)
        on_done(dst, moved, record)
        return moved
    manifest = scan(src, hashes=True)
    special = [e["path"] for e in manifest if e["type"] == "special"]
    if special:
        raise MoveError(f"{src} holds {special[0]} (not a file, folder or link); it can only be moved "
                        "within one filesystem; nothing was moved")
    token = secrets.token_hex(4)
    journal = {"version": FORMAT_VERSION, "kind": "trainkit-move", "src": str(src), "dst": str(dst),
               "staging": str(staging_path(dst)), "trash": str(trash_path(src, token)), "started_at": time.time(),
               "pid": os.getpid(), "record": record, "manifest": manifest}
    try:
        write_json(journal_path(dst), journal)
    except OSError as e:
        raise MoveError(f"cannot write the move's journal in {dst.parent} ({_why(e)}); nothing was moved") from None
    return resume(journal_path(dst), on_done=on_done, progress=progress)


def pending(dest_parent: Path) -> list[Path]:
    """The journals of interrupted moves into ``dest_parent``."""
    try:
        return sorted(Path(e.path) for e in os.scandir(dest_parent)
                      if e.name.startswith(".") and e.name.endswith(JOURNAL_SUFFIX) and e.is_file())
    except FileNotFoundError:
        return []


def pending_name(journal: Path) -> str:
    """The experiment a journal moves (``.NAME.move.json``)."""
    return journal.name[1:-len(JOURNAL_SUFFIX)]


Recorded = Callable[[Path, dict], bool]  # (final folder, the caller's record): did on_done record this move?


def resume(journal_file: Path, *, on_done: Done, progress: Progress | None = None,
           recorded: Recorded | None = None) -> Moved:
    """Carry a journaled cross-filesystem move to its end, from wherever it stopped; or roll it
    back (remove the copy, keep the source) when the source changed before it was moved aside.
    ``recorded`` tells a move whose record is written (its last steps only remain) from one that
    may still be rolled back."""
    problems: list[str] = []
    j = readers.load(journal_file, JOURNAL, problems)
    if j is None or j.get("kind") != "trainkit-move":
        why = problems[0] if problems else "not a move journal"
        raise MoveError(f"{journal_file}: {why}; nothing was changed (inspect it by hand)")
    src, dst, staging, trash = (Path(j[k]) for k in ("src", "dst", "staging", "trash"))
    manifest: list[dict] = j["manifest"]
    record = j.get("record") or {}
    moved = Moved(src, dst, "copy", manifest)
    if not trash.exists() and dst.exists() and recorded is not None and recorded(dst, record):
        if src.exists():  # the move is over but for its journal: this folder is a new one, someone else's
            moved.note = f"{src} appeared again after the move; it was left alone"
        journal_file.unlink()
        return moved
    if not trash.exists():  # the source is not moved aside yet: the move may still be rolled back
        if not dst.exists():
            if not src.exists():
                raise MoveError(f"{journal_file}: neither {src} nor {dst} exists; the copy so far is in {staging}")
            why = differences(src, manifest)
            if why:
                return _roll_back(journal_file, moved, why, remove=staging)
            try:
                _copy_into(src, staging, manifest, progress, dst.name)
                if progress:
                    progress(MoveProgress(dst.name, "verify", 0, 0, 0, 0))
                verify(staging, manifest)
            except MoveError as e:
                return _roll_back(journal_file, moved, str(e), remove=staging)
            except OSError as e:  # a full destination, an unreadable file: nothing moves, the partial copy goes
                _roll_back(journal_file, moved, _why(e), remove=staging)
                raise MoveError(f"copying {src.name} into {dst.parent} failed ({_why(e)}); the partial copy was "
                                f"removed and {src} stays where it was") from None
            rename_noreplace(staging, dst)
        if src.exists():
            why = differences(src, manifest)
            if why:  # changed while being copied: the source is newer; the copy goes
                return _roll_back(journal_file, moved, why, remove=dst)
            set_aside(src, trash)
    elif src.exists():  # moved aside before: this folder is a new one, someone else's
        moved.note = f"{src} appeared again after the move set the original aside; it was left alone"
    if progress:
        progress(MoveProgress(dst.name, "delete", 0, 0, 0, 0))
    if trash.exists():
        empty_tree(trash)
    on_done(dst, moved, record)
    try:
        trash.rmdir()
    except FileNotFoundError:
        pass
    journal_file.unlink()
    return moved


def _roll_back(journal_file: Path, moved: Moved, why: str, *, remove: Path) -> Moved:
    if remove.exists():
        remove_tree(remove)
    journal_file.unlink()
    moved.rolled_back = f"{moved.src} changed during the move ({why}); it stays where it was"
    return moved


def _copy_into(src: Path, staging: Path, manifest: list[dict], progress: Progress | None, name: str) -> None:
    """Copy what ``manifest`` lists from ``src`` into ``staging``, skipping files a previous attempt
    already copied intact; then give folders their modes and times (deepest first)."""
    files = [e for e in manifest if e["type"] == "file"]
    total_bytes = sum(e["size"] for e in files)
    done_files = done_bytes = 0
    staging.mkdir(exist_ok=True)
    for e in manifest:
        s, d = src / e["path"], staging / e["path"]
        if e["type"] == "dir":
            if d.is_symlink() or (d.exists() and not d.is_dir()):
                d.unlink()
            d.mkdir(exist_ok=True)
        elif e["type"] == "link":
            if d.is_dir() and not d.is_symlink():
                remove_tree(d)
            elif os.path.lexists(d):
                d.unlink()
            os.symlink(e["target"], d)
        else:
            intact = d.is_file() and not d.is_symlink() and d.stat().st_size == e["size"] \
                and sha256_file(d) == e["sha256"]
            if not intact:
                if copy_file(s, d) != e["sha256"]:
                    raise MoveError(f"{s} changed while being copied")
            else:  # its bytes made it before the kill; its mode and times may not have
                os.chmod(d, e["mode"])
                os.utime(d, ns=(e["mtime_ns"], e["mtime_ns"]))
            done_files += 1
            done_bytes += e["size"]
            if progress:
                progress(MoveProgress(name, "copy", done_files, len(files), done_bytes, total_bytes))
    meta = src / METADATA_FILE
    if meta.is_file() and not meta.is_symlink():
        copy_file(meta, staging / METADATA_FILE)
    for e in reversed(manifest):
        if e["type"] == "dir":
            d = staging / e["path"]
            os.chmod(d, e["mode"])
            os.utime(d, ns=(e["mtime_ns"], e["mtime_ns"]))
    st = os.stat(src)
    os.chmod(staging, stat.S_IMODE(st.st_mode))
