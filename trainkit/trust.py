"""What a launcher may execute in a shared experiments folder (sshd's StrictModes rule).

One experiments folder shared by many people (and machines) is the scale-out story; then anyone
who can write into ROOT could put a run there for someone else's launcher to execute: a pending
run's ``config.py``, a config whose ``task:`` names their module, a recorded relaunch command.
``trainkit launch`` (and trainmon's relaunch) therefore start a run only when its folder and the
files that decide what runs are the invoking user's and nobody else can write them: the folder
itself, its config file (``config.yaml``/``.yml``/``.json``/``.toml``/``.py``) and
``resolved_config.json``. A symlinked one is refused too (its target could be swapped).

Group-writable is allowed for the user's private group only (a group named after the user, with no
other member: the usual umask 002 setup); any other group, or others, writing refuses the run.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from trainkit.runfolder import CONFIG_FILES, RESOLVED_CONFIG_FILE

DECIDING_FILES = (*CONFIG_FILES, RESOLVED_CONFIG_FILE)


def _problem(path: Path, what: str, *, uid: int, folder: bool) -> str | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"{what} cannot be checked ({e.strerror or e})"
    if stat.S_ISLNK(st.st_mode):
        return f"{what} is a symbolic link"
    if folder != stat.S_ISDIR(st.st_mode):
        return f"{what} is not a {'folder' if folder else 'regular file'}"
    if st.st_uid != uid:
        return f"{what} is owned by uid {st.st_uid}, not by you (uid {uid})"
    if st.st_mode & stat.S_IWOTH:
        return f"{what} is writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    if st.st_mode & stat.S_IWGRP and not private_group(st.st_gid, uid):
        return f"{what} is writable by its group gid {st.st_gid} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def private_group(gid: int, uid: int) -> bool:
    """Whether ``gid`` is ``uid``'s private group: named after the user, no other member."""
    try:
        user, group = pwd.getpwuid(uid), grp.getgrgid(gid)
    except KeyError:
        return False
    return group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name}


def untrusted(run_dir: str | os.PathLike, *, uid: int | None = None) -> str | None:
    """Why the run at ``run_dir`` must not be executed by this user, or None when it may: the
    folder and each of its deciding files that exist are the user's own, writable by nobody else
    (a folder that does not exist holds nothing to distrust: ``trainkit train`` refuses it itself)."""
    uid = os.geteuid() if uid is None else uid
    folder = Path(run_dir)
    why = _problem(folder, "the run folder", uid=uid, folder=True)
    for name in DECIDING_FILES:
        if why is not None:
            break
        why = _problem(folder / name, name, uid=uid, folder=False)
    return why


HINT = ("trainkit launch starts only runs whose folder and config are yours and writable by nobody else, "
        "like sshd's StrictModes; chmod go-w or chown them if they are yours")
