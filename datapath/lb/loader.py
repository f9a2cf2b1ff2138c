"""The loader: load the BPF object with its maps pinned per node, attach it to one cgroup, detach.

Pins under the node's bpffs directory:
- `bf_lb4_<map>_v<N>`: every map (libbpf reuses a pin of the same name and layout);
- `bf_lb4_link_<hook>`: one BPF link per hook, attaching a program to the node's cgroup.

Pinned links outlive the process that made them, so the datapath keeps working while an agent
restarts. A new program (new build) replaces the old one in its link with BPF_LINK_UPDATE, which is
atomic: there is no moment without a program. A layout change (new map names) works the same way:
the new maps are created and filled first, then the links switch, then the old pins go.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datapath.errors import DatapathError, KernelError
from datapath.lb import abi, bpfsys
from datapath.lb.libbpf import BpfObject
from datapath.lb.maps import LbMaps

LINK_PREFIX = "bf_lb4_link_"
CGROUP2_MAGIC_FS = "cgroup2"
BPF_FS = "bpf"


@dataclass
class LoadReport:
    attached: list[str] = field(default_factory=list)  # hooks newly attached
    updated: list[str] = field(default_factory=list)  # hooks whose program was swapped in place
    kept: list[str] = field(default_factory=list)  # hooks already running this very program
    stale_pins_removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{label} {', '.join(hooks)}"
            for label, hooks in (("attached", self.attached), ("updated", self.updated), ("kept", self.kept))
            if hooks
        ]
        if self.stale_pins_removed:
            parts.append(f"removed old pins {', '.join(self.stale_pins_removed)}")
        return "; ".join(parts)


def _mounts() -> list[tuple[str, str]]:
    with open("/proc/self/mounts") as mounts:
        return [(line.split()[1], line.split()[2]) for line in mounts]


def _filesystem_of(path: Path) -> str:
    """The type of the filesystem `path` lives on (longest matching mount point)."""
    resolved = str(path.resolve())
    best, kind = "", ""
    for mount_point, fs_type in _mounts():
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, fs_type
    return kind


def check_cgroup(cgroup: Path, allow_root: bool = False) -> int:
    """The cgroup id of a cgroup v2 directory that is not the root; raise DatapathError otherwise."""
    if not cgroup.is_dir() or not (cgroup / "cgroup.procs").exists():
        raise DatapathError(f"--cgroup {cgroup}: not a cgroup directory")
    if _filesystem_of(cgroup) != CGROUP2_MAGIC_FS:
        raise DatapathError(f"--cgroup {cgroup}: not on a cgroup2 filesystem")
    resolved = str(cgroup.resolve())
    if not allow_root and any(resolved == mount for mount, kind in _mounts() if kind == CGROUP2_MAGIC_FS):
        raise DatapathError(
            f"--cgroup {cgroup}: refusing the cgroup2 root, it would rewrite every process on the machine; "
            "give the node's own cgroup"
        )
    return os.stat(cgroup).st_ino  # a cgroup v2 id is its directory's inode number


def check_bpffs(bpffs_dir: Path, create: bool) -> None:
    if create:
        bpffs_dir.mkdir(parents=True, exist_ok=True)
    if not bpffs_dir.is_dir():
        raise DatapathError(f"--bpffs {bpffs_dir}: no such directory")
    if _filesystem_of(bpffs_dir) != BPF_FS:
        raise DatapathError(f"--bpffs {bpffs_dir}: not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)")


def link_pin(bpffs_dir: Path, hook: str) -> Path:
    return bpffs_dir / f"{LINK_PREFIX}{hook}"


@dataclass
class AttachedLink:
    hook: str
    link_id: int
    prog_id: int
    cgroup_id: int  # 0 once the link is defunct: detached, or its cgroup was removed

    @property
    def defunct(self) -> bool:
        return self.cgroup_id == 0


def attached_links(bpffs_dir: Path) -> list[AttachedLink]:
    links: list[AttachedLink] = []
    for _program, hook in abi.PROGRAMS:
        path = link_pin(bpffs_dir, hook)
        if not path.exists():
            continue
        fd = bpfsys.obj_get(path)
        try:
            info = bpfsys.link_info(fd)
            links.append(AttachedLink(hook, info.id, info.prog_id, info.cgroup_id))
        finally:
            os.close(fd)
    return links


def _identity_of_prog_id(prog_id: int) -> tuple[bytes, tuple[int, ...]]:
    fd = bpfsys.prog_fd_by_id(prog_id)
    try:
        return bpfsys.prog_identity(fd)
    finally:
        os.close(fd)


def _stale_pins(bpffs_dir: Path, current: set[str]) -> list[Path]:
    return sorted(
        path
        for path in bpffs_dir.iterdir()
        if path.name.startswith(abi.MAP_PREFIX) and not path.name.startswith(LINK_PREFIX) and path.name not in current
    )


def load(
    bpffs_dir: Path,
    cgroup: Path,
    object_path: Path,
    fill: Callable[[LbMaps, bool], None] | None = None,
    allow_cgroup_root: bool = False,
) -> tuple[LoadReport, LbMaps]:
    """Load `object_path` with maps pinned under `bpffs_dir`, let `fill` reconcile the maps, then
    attach every program to `cgroup` (or swap it into the existing link), then drop stale pins.

    `fill(maps, upgrading)` is told whether older-layout pins are still in use by the running
    programs, in which case nothing that only they reference may be deleted yet.
    Returns the report and the open maps; the caller closes them."""
    cgroup_id = check_cgroup(cgroup, allow_cgroup_root)
    check_bpffs(bpffs_dir, create=True)
    existing = []
    for link in attached_links(bpffs_dir):
        if link.defunct:  # detached behind our back: drop the pin, attach afresh below
            link_pin(bpffs_dir, link.hook).unlink()
            continue
        existing.append(link)
    for link in existing:
        if link.cgroup_id != cgroup_id:
            raise DatapathError(
                f"{link_pin(bpffs_dir, link.hook)} attaches to cgroup id {link.cgroup_id}, not {cgroup} "
                f"(id {cgroup_id}); detach it first"
            )
    report = LoadReport()
    maps: LbMaps | None = None
    try:
        with BpfObject(object_path, bpffs_dir) as bpf_object:
            current_maps = set(bpf_object.map_names())
            upgrading = bool(existing) and bool(_stale_pins(bpffs_dir, current_maps))
            maps = LbMaps(bpffs_dir)
            meta = maps.read_meta()
            if meta.layout == 0:  # freshly created maps
                maps.write_meta(max(meta.next_frontend_id, 1), max(meta.next_set_id, 1), max(meta.next_policy_id, 1))
            if fill is not None:
                fill(maps, upgrading)
            _attach_all(bpf_object, bpffs_dir, cgroup, existing, report)
    except BaseException:
        if maps is not None:
            maps.close()
        raise
    for path in _stale_pins(bpffs_dir, current_maps):
        path.unlink()
        report.stale_pins_removed.append(path.name)
    assert maps is not None
    return report, maps


def _attach_all(
    bpf_object: BpfObject, bpffs_dir: Path, cgroup: Path, existing: list[AttachedLink], report: LoadReport
) -> None:
    cgroup_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        by_hook = {link.hook: link for link in existing}
        for program, hook in abi.PROGRAMS:
            prog_fd = bpf_object.program_fd(program)
            link = by_hook.get(hook)
            if link is None:
                bpf_object.attach_cgroup(program, cgroup_fd, link_pin(bpffs_dir, hook))
                report.attached.append(hook)
            elif _identity_of_prog_id(link.prog_id) == bpfsys.prog_identity(prog_fd):
                report.kept.append(hook)
            else:
                link_fd = bpfsys.obj_get(link_pin(bpffs_dir, hook))
                try:
                    bpfsys.link_update(link_fd, prog_fd)
                finally:
                    os.close(link_fd)
                report.updated.append(hook)
    finally:
        os.close(cgroup_fd)


def detach(bpffs_dir: Path, cgroup: Path) -> list[str]:
    """Detach every link this datapath made on `cgroup` and remove all its pins; return what went.

    A cgroup that is already gone is fine: whatever the node's pin directory still holds goes."""
    cgroup_id = check_cgroup(cgroup) if cgroup.exists() else None
    if not bpffs_dir.exists():
        return []
    check_bpffs(bpffs_dir, create=False)
    removed: list[str] = []
    for link in attached_links(bpffs_dir):
        if cgroup_id is not None and not link.defunct and link.cgroup_id != cgroup_id:
            raise DatapathError(
                f"{link_pin(bpffs_dir, link.hook)} attaches to cgroup id {link.cgroup_id}, not {cgroup} "
                f"(id {cgroup_id}); nothing was detached"
            )
    for link in attached_links(bpffs_dir):
        path = link_pin(bpffs_dir, link.hook)
        fd = bpfsys.obj_get(path)
        try:
            bpfsys.link_detach(fd)  # detaches even if another process still holds the link open
        except KernelError:
            pass  # already detached (cgroup gone): removing the pin is all that is left
        finally:
            os.close(fd)
        path.unlink()
        removed.append(path.name)
    for path in sorted(bpffs_dir.iterdir()):
        if path.name.startswith(abi.MAP_PREFIX):
            path.unlink()
            removed.append(path.name)
    with contextlib.suppress(OSError):
        bpffs_dir.rmdir()  # only when empty: the operator may keep other pins there
    return removed
