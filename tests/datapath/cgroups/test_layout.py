"""Cgroup paths of both kubelet drivers map to (pod UID, QoS, container id): a table, no kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from datapath.cgroups import (
    CgroupIndex,
    CgroupOwner,
    cgroupfs_pod_path,
    find_pod_cgroup,
    parse_cgroup_path,
    pod_cgroups,
)

UID = "0f3c6c2e-8f0a-4b8e-9b1a-2d4c5e6f7a8b"
UID_ = UID.replace("-", "_")
CID = "4c1f0a9be2d3c4b5a6978877665544332211ffeeddccbbaa9988776655443322"

TABLE: list[tuple[str, str, CgroupOwner | None]] = [
    # description, path, expected owner
    ("cgroupfs burstable container", f"kubepods/burstable/pod{UID}/{CID}", CgroupOwner(UID, "burstable", CID)),
    ("cgroupfs besteffort pod", f"/kubepods/besteffort/pod{UID}", CgroupOwner(UID, "besteffort")),
    ("cgroupfs guaranteed container", f"/kubepods/pod{UID}/{CID}", CgroupOwner(UID, "guaranteed", CID)),
    ("cgroupfs below a node root", f"/balancing-lab/nodes/n1/kubepods/pod{UID}/{CID}",
     CgroupOwner(UID, "guaranteed", CID)),
    ("kind's nested kubelet root", f"/kubelet/kubepods/burstable/pod{UID}/{CID}", CgroupOwner(UID, "burstable", CID)),
    ("systemd containerd scope",
     f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope",
     CgroupOwner(UID, "burstable", CID)),
    ("systemd guaranteed crio scope", f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-{CID}.scope",
     CgroupOwner(UID, "guaranteed", CID)),
    ("systemd docker besteffort",
     f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{CID}.scope",
     CgroupOwner(UID, "besteffort", CID)),
    ("systemd pod slice", f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice",
     CgroupOwner(UID, "besteffort")),
    ("systemd crio conmon maps to the pod",
     f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{CID}.scope", CgroupOwner(UID, "guaranteed")),
    ("kind systemd nesting",
     f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
     f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope", CgroupOwner(UID, "besteffort", CID)),
    ("upper-case uid is canonicalised", f"kubepods/pod{UID.upper()}", CgroupOwner(UID, "guaranteed")),
    ("the node's own processes", "/system.slice/containerd.service", None),
    ("the kubepods root itself", "/kubepods", None),
    ("a qos parent", "/kubepods/burstable", None),
    ("a systemd qos slice", "/kubepods.slice/kubepods-burstable.slice", None),
    ("qos mismatch between slices",
     f"/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{UID_}.slice", None),
    ("not a uid", "/kubepods/podnot-a-uid", None),
    ("not a container id", f"/kubepods/pod{UID}/sandbox", None),
    ("a cgroup inside a container", f"/kubepods/pod{UID}/{CID}/child", None),
    ("a foreign scope in a pod slice", f"/kubepods.slice/kubepods-pod{UID_}.slice/session-1.scope", None),
    ("empty", "", None),
]


@pytest.mark.parametrize(("description", "path", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_parse_cgroup_path(description: str, path: str, expected: CgroupOwner | None) -> None:
    assert parse_cgroup_path(path) == expected


def test_cgroupfs_pod_path_follows_the_kubelet() -> None:
    assert cgroupfs_pod_path(UID, "guaranteed") == f"kubepods/pod{UID}"
    assert cgroupfs_pod_path(UID, "besteffort") == f"kubepods/besteffort/pod{UID}"
    with pytest.raises(ValueError, match="qos 'gold'"):
        cgroupfs_pod_path(UID, "gold")


def test_walk_maps_directory_inodes_to_owners(tmp_path: Path) -> None:
    """The walk over plain directories (a cgroup id is the directory's inode on cgroup2 as well)."""
    container = tmp_path / "kubepods" / "burstable" / f"pod{UID}" / CID
    container.mkdir(parents=True)
    (tmp_path / "system").mkdir()
    owners = pod_cgroups(tmp_path)
    expected = {CgroupOwner(UID, "burstable", CID), CgroupOwner(UID, "burstable")}
    assert {owner for _, owner in owners.values()} == expected
    assert find_pod_cgroup(tmp_path, UID.upper()) == container.parent
    index = CgroupIndex(tmp_path)
    assert index.resolve(container.stat().st_ino) == CgroupOwner(UID, "burstable", CID)
    assert index.resolve((tmp_path / "system").stat().st_ino) is None
    later = container.parent / ("a" * 64)
    later.mkdir()  # a restarted container: a miss triggers a re-walk
    assert index.resolve(later.stat().st_ino) == CgroupOwner(UID, "burstable", "a" * 64)
