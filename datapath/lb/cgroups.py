"""Cgroup v2 ids: where a cgroup sits in the hierarchy, found from its id alone.

A cgroup v2 id is the inode number of its directory, and the kernel opens a cgroup by id through
open_by_handle_at(2) with a kernfs file handle. Its path then gives its level (the root is level 0),
which is what bpf_get_current_ancestor_cgroup_id() takes. A cgroup's level never changes.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
import os
import struct
from functools import cache
from pathlib import Path

from datapath.errors import KernelError

FILEID_KERNFS = 0xFE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.open_by_handle_at.restype = ctypes.c_int
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]


def cgroup2_mount_in(mountinfo: str) -> tuple[Path, int]:
    """From /proc/self/mountinfo text: the cgroup2 mount point, and the level of the cgroup mounted
    there. A pod may see only a subtree bind-mounted at /sys/fs/cgroup (the lab's node agents do),
    and levels count from the real root. Of several mounts on one mount point, the last one listed
    is the one a path lookup reaches."""
    roots: dict[str, str] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        separator = fields.index("-")
        if fields[separator + 1] == "cgroup2":
            roots[fields[4].replace("\\040", " ")] = fields[3].replace("\\040", " ")
    if not roots:
        raise KernelError("no cgroup2 filesystem is mounted")
    mount_point = next(iter(roots))
    return Path(mount_point), len(Path(roots[mount_point]).parts) - 1


@cache
def _cgroup2_mountinfo() -> tuple[Path, int]:
    with open("/proc/self/mountinfo") as mounts:
        return cgroup2_mount_in(mounts.read())


def cgroup2_mount() -> Path:
    return _cgroup2_mountinfo()[0]


def cgroup_path(cgroup_id: int) -> Path | None:
    """The directory of the cgroup with this id, or None when there is no such cgroup (any more)."""
    mount = cgroup2_mount()
    handle = struct.pack("=Ii", 8, FILEID_KERNFS) + struct.pack("=Q", cgroup_id)
    mount_fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = _libc.open_by_handle_at(mount_fd, handle, os.O_RDONLY | os.O_DIRECTORY)
        if fd < 0:
            code = ctypes.get_errno()
            if code in (errno_codes.ESTALE, errno_codes.ENOENT):
                return None
            raise KernelError(f"open cgroup id {cgroup_id}: {os.strerror(code)}", code)
        try:
            return Path(os.readlink(f"/proc/self/fd/{fd}"))
        finally:
            os.close(fd)
    finally:
        os.close(mount_fd)


def cgroup_level(cgroup_id: int, unknown: int) -> int:
    """The cgroup's depth below the cgroup2 root (the root is 0); `unknown` when it is gone."""
    path = cgroup_path(cgroup_id)
    if path is None:
        return unknown
    mount, mount_level = _cgroup2_mountinfo()
    return mount_level + (len(path.relative_to(mount).parts) if path != mount else 0)


def cgroup_ancestors(cgroup_id: int) -> list[int]:
    """The ids of the cgroup and of every cgroup above it, nearest first (empty when it is gone)."""
    path = cgroup_path(cgroup_id)
    if path is None:
        return []
    mount = cgroup2_mount()
    chain = [path, *path.parents]
    return [os.stat(directory).st_ino for directory in chain if directory == mount or mount in directory.parents]
