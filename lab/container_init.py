"""A lab container's first process: enter the container's cgroup, network and a private mount and
UTS namespace, make its mounts, then exec the container's command. Or, with `--join PID`, run a
command inside a running container (exec probes, `balancing lab exec`).

Standard library only, and run as a script (`python3 -S -E lab/container_init.py SPEC`), so it starts
fast and single-threaded (setns into a mount namespace refuses a multi-threaded caller).

The spec is a JSON file the kubelet wrote:
    cgroup      the container's cgroup2 directory (joined first, so every descendant is in it)
    netns       a network namespace file, or null to stay in the caller's (the node's, for hostNetwork)
    hostname    the UTS hostname
    mounts      [{kind: bind|tmpfs|sysfs, source, target, read_only, file}], made in order
    argv, env, cwd
    start_error a file to write a one-line reason to when the container cannot start

Nothing is created on the machine's filesystem: a mount point that does not exist is made inside a
private tmpfs; when its parent belongs to the machine, that parent is first shadowed by a tmpfs that
carries bind mounts of all its entries (so the container still sees them).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155  # x86_64; glibc has no wrapper
START_ERROR_EXIT = 128  # what container runtimes report for a container that never started

_libc = ctypes.CDLL(None, use_errno=True)
_PRIVATE_ROOTS = ("/run", "/sys")  # mounted fresh below: creating entries there touches nothing shared
_SHADOW_DIR = "/run/.lab-shadow"


class StartError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise StartError(f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encoded = [None if value is None else value.encode() for value in (source, target, fstype, data)]
    _check(_libc.mount(encoded[0], encoded[1], encoded[2], ctypes.c_ulong(flags), encoded[3]),
           f"mount {source or fstype} on {target}")


def _setns(path: str, kind: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _check(_libc.setns(fd, kind), f"setns {path}")
    finally:
        os.close(fd)


def _join_cgroup(cgroup: str) -> None:
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as procs:
        procs.write(str(os.getpid()))


def _is_private(path: str) -> bool:
    return any(path == root or path.startswith(root + "/") for root in _PRIVATE_ROOTS)


_shadows = 0


def _shadow(directory: str) -> None:
    """Replace `directory` (the machine's) by a tmpfs holding bind mounts of each of its entries."""
    global _shadows
    _shadows += 1
    staging = f"{_SHADOW_DIR}/{_shadows}"
    os.makedirs(staging)
    _mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    for entry in os.scandir(directory):
        placeholder = os.path.join(staging, entry.name)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), placeholder)
            continue
        if entry.is_dir():
            os.mkdir(placeholder)
        else:
            open(placeholder, "w").close()
        _mount(entry.path, placeholder, None, MS_BIND | MS_REC)
    if directory == "/":  # a mount over / changes no one's root: make the staging tmpfs the namespace's root
        os.mkdir(f"{staging}/.old-root")
        _check(_libc.syscall(SYS_PIVOT_ROOT, staging.encode(), f"{staging}/.old-root".encode()), "pivot_root")
        os.chdir("/")
        return  # the old root stays until every mount is made: their sources are open in it
    _mount(staging, directory, None, MS_MOVE)
    os.rmdir(staging)


def _ensure_mountpoint(target: str, file: bool) -> None:
    if os.path.lexists(target):
        return
    missing = [target]
    while not os.path.lexists(os.path.dirname(missing[-1])):
        missing.append(os.path.dirname(missing[-1]))
    existing = os.path.realpath(os.path.dirname(missing[-1]))  # /var/run is /run
    if not _is_private(existing):
        _shadow(existing)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    if file:
        open(target, "w").close()
    else:
        os.mkdir(target)


def _make_mount(mount: dict[str, Any]) -> None:
    target = mount["target"]
    kind = mount["kind"]
    if kind == "sysfs":
        _mount("sysfs", target, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        return
    if kind == "tmpfs":
        _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
        return
    source = f"/proc/self/fd/{mount['source_fd']}"
    _ensure_mountpoint(target, file=not os.path.isdir(source))
    _mount(source, target, None, MS_BIND | MS_REC)
    if mount.get("read_only"):
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def start(spec: dict[str, Any]) -> None:
    _join_cgroup(spec["cgroup"])
    if spec.get("netns"):
        _setns(spec["netns"], CLONE_NEWNET)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates back to the machine
    hostname = spec["hostname"].encode()
    _check(_libc.sethostname(hostname, len(hostname)), "sethostname")
    for mount in spec["mounts"]:  # opened first: a fresh /sys would hide a source below /sys
        if mount["kind"] == "bind":
            try:
                mount["source_fd"] = os.open(mount["source"], os.O_PATH | os.O_CLOEXEC)
            except OSError as error:
                raise StartError(f"mount source {mount['source']} (for {mount['target']}): {error.strerror}") from None
    for mount in spec["mounts"]:
        _make_mount(mount)
    if os.path.isdir("/.old-root"):
        _check(_libc.umount2(b"/.old-root", MNT_DETACH), "umount the old root")
        os.rmdir("/.old-root")
    if os.path.isdir(_SHADOW_DIR) and not os.listdir(_SHADOW_DIR):
        os.rmdir(_SHADOW_DIR)
    _exec(spec)


def join(pid: int, spec: dict[str, Any]) -> None:
    """Enter a running container (its cgroup, network, UTS and mount namespaces) and exec."""
    _join_cgroup(spec["cgroup"])
    for kind, flag in (("net", CLONE_NEWNET), ("uts", CLONE_NEWUTS), ("mnt", CLONE_NEWNS)):
        _setns(f"/proc/{pid}/ns/{kind}", flag)
    _exec(spec)


def _exec(spec: dict[str, Any]) -> None:
    try:
        os.chdir(spec.get("cwd") or "/")
    except OSError as error:
        raise StartError(f"working directory {spec.get('cwd')}: {error.strerror}") from None
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except OSError as error:
        raise StartError(f"exec {argv[0]!r}: {error.strerror}") from None


def main() -> None:
    arguments = sys.argv[1:]
    if arguments[:1] == ["--exec-notify"]:  # a pipe the kubelet reads to its end: closed by our exec
        os.set_inheritable(int(arguments[1]), False)
        arguments = arguments[2:]
    pid = None
    if arguments[:1] == ["--join"]:
        pid, arguments = int(arguments[1]), arguments[2:]
    with open(arguments[0]) as handle:
        spec = json.load(handle)
    if pid is not None and len(arguments) > 1:
        spec["argv"] = arguments[1:]
    # opened now: the container's own /run hides the lab directory once its mounts are made
    reason = open(spec["start_error"], "w") if pid is None and spec.get("start_error") else None  # noqa: SIM115
    try:
        if pid is None:
            start(spec)
        else:
            join(pid, spec)
    except (StartError, OSError) as error:
        print(f"container start failed: {error}", file=sys.stderr, flush=True)
        if reason is not None:
            reason.write(str(error))
            reason.close()
        sys.exit(START_ERROR_EXIT)


if __name__ == "__main__":
    main()
