"""Is a folder on a network filesystem? (inotify sees nothing written by another host there.)"""

from __future__ import annotations

import os

MOUNTINFO = "/proc/self/mountinfo"
NETWORK_TYPES = {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "sshfs", "fuse.sshfs", "ceph",
                 "fuse.ceph", "glusterfs", "fuse.glusterfs", "lustre", "9p", "afs", "gpfs", "beegfs",
                 "fuse.rclone", "fuse.s3fs", "davfs", "fuse.davfs2", "virtiofs"}


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of each line of ``/proc/self/mountinfo``."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        parts, rparts = left.split(), right.split()
        if not sep or len(parts) < 5 or not rparts:
            continue
        out.append((_unescape(parts[4]), rparts[0]))
    return out


def is_network_type(fstype: str) -> bool:
    return fstype in NETWORK_TYPES or fstype.startswith("fuse.") and fstype not in ("fuse.portal", "fuse.gvfsd-fuse") \
        or fstype == "fuse"


def filesystem_of(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """The type of the filesystem holding ``path`` (the longest mount point that contains it)."""
    real = os.path.realpath(path)
    best, kind = -1, None
    for point, fstype in mounts:
        inside = real == point or real.startswith(point.rstrip("/") + "/") or point == "/"
        if inside and len(point) > best:
            best, kind = len(point), fstype
    return kind


def network_filesystem(path: str, mountinfo: str = MOUNTINFO) -> str | None:
    """The network filesystem type holding ``path`` (``nfs4``, ``fuse.sshfs``...), None when local
    or unknown."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            mounts = parse_mountinfo(f.read())
    except OSError:
        return None
    kind = filesystem_of(path, mounts)
    return kind if kind is not None and is_network_type(kind) else None
