"""Cgroup ids on a cgroup2 filesystem: a cgroup's id is its directory's inode number (the value
bpf_get_current_cgroup_id() returns), so one walk of the kubepods tree maps ids to pods."""

from __future__ import annotations

import os
from pathlib import Path

from datapath.cgroups.layout import CgroupOwner, is_kubepods_name, parse_cgroup_path


def cgroup_id(path: Path) -> int:
    """The cgroup id of a cgroup2 directory."""
    return os.stat(path).st_ino


def _kubepods_roots(root: Path) -> list[Path]:
    """The kubepods directories under `root` (top level, or one or two levels down as on kind)."""
    found: list[Path] = []
    frontier = [root]
    for _depth in range(3):
        next_frontier: list[Path] = []
        for directory in frontier:
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if is_kubepods_name(entry.name):
                    found.append(Path(entry.path))
                else:
                    next_frontier.append(Path(entry.path))
        if found:
            return found
        frontier = next_frontier
    return found


def _walk(directory: Path, relative: str, depth: int) -> list[tuple[Path, str]]:
    found = [(directory, relative)]
    if depth == 0:
        return found
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            found.extend(_walk(Path(entry.path), f"{relative}/{entry.name}", depth - 1))
    return found


def pod_cgroups(root: Path) -> dict[int, tuple[Path, CgroupOwner]]:
    """Every pod and container cgroup under `root`, by cgroup id: one walk of the kubepods tree."""
    owners: dict[int, tuple[Path, CgroupOwner]] = {}
    for kubepods in _kubepods_roots(root):
        # kubepods / qos / pod / container: three levels below kubepods at most
        for directory, relative in _walk(kubepods, kubepods.name, 3):
            owner = parse_cgroup_path(relative)
            if owner is None:
                continue
            try:
                owners[cgroup_id(directory)] = (directory, owner)
            except OSError:
                continue  # removed while we walked
    return owners


def resolve_cgroup_id(root: Path, cgroup_id: int) -> CgroupOwner | None:
    """The pod and container of a cgroup id, or None when it is no pod's (the node's own processes)."""
    found = pod_cgroups(root).get(cgroup_id)
    return found[1] if found else None


def find_pod_cgroup(root: Path, pod_uid: str) -> Path | None:
    """The pod-level cgroup directory of a pod, whatever its QoS class and the driver's spelling."""
    wanted = pod_uid.lower()
    for directory, owner in pod_cgroups(root).values():
        if owner.is_pod and owner.pod_uid == wanted:
            return directory
    return None


class CgroupIndex:
    """Cgroup id -> owner, for an agent that resolves many ids: re-walks only on a miss."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._owners: dict[int, tuple[Path, CgroupOwner]] = {}

    def refresh(self) -> None:
        self._owners = pod_cgroups(self.root)

    def pod_cgroup_id(self, pod_uid: str) -> int | None:
        """The pod-level cgroup id of a pod on this node (None when it has none here); re-walks on a miss."""
        wanted = pod_uid.lower()
        for attempt in range(2):
            for found_id, (directory, owner) in self._owners.items():
                if owner.is_pod and owner.pod_uid == wanted and directory.exists():
                    return found_id
            if attempt == 0:
                self.refresh()
        return None

    def resolve(self, cgroup_id: int) -> CgroupOwner | None:
        found = self._owners.get(cgroup_id)
        if found is None or not found[0].exists():
            self.refresh()
            found = self._owners.get(cgroup_id)
        return found[1] if found else None
