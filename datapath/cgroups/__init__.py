"""Cgroup id -> (pod UID, container id), from the kubelet's cgroup layout on a node.

The node agent reads cgroup ids from the kernel (events, socket cookies) and needs to know which
pod and container a connection came from; `resolve_cgroup_id` and `CgroupIndex` answer that by
reading cgroupfs under a root directory (a node's `/sys/fs/cgroup`). `find_pod_cgroup` finds a
pod's own cgroup from its UID (for rules such as "never redirect a backend to itself").
"""

from datapath.cgroups.layout import (
    QOS_CLASSES,
    CgroupOwner,
    cgroupfs_pod_path,
    is_kubepods_name,
    parse_cgroup_path,
)
from datapath.cgroups.lookup import CgroupIndex, cgroup_id, find_pod_cgroup, pod_cgroups, resolve_cgroup_id

__all__ = [
    "QOS_CLASSES",
    "CgroupIndex",
    "CgroupOwner",
    "cgroup_id",
    "cgroupfs_pod_path",
    "find_pod_cgroup",
    "is_kubepods_name",
    "parse_cgroup_path",
    "pod_cgroups",
    "resolve_cgroup_id",
]
