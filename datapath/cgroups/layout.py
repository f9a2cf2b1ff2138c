"""Which pod and container a cgroup belongs to, from the kubelet's cgroup layout (pure parsing).

The kubelet puts every pod under a `kubepods` hierarchy, in one of two spellings:

    cgroupfs driver:  kubepods/[burstable/|besteffort/]pod<uid>/<container id>
    systemd driver:   kubepods.slice/[kubepods-<qos>.slice/]kubepods[-<qos>]-pod<uid with _>.slice/
                      <runtime>-<container id>.scope      (cri-containerd-, crio-, docker-)

Guaranteed pods sit directly under `kubepods`. The hierarchy may be nested below the cgroup root
(kind nodes use `kubelet.slice/kubelet-kubepods.slice/...`), so the first `kubepods` component
found anchors the parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QOS_CLASSES = ("guaranteed", "burstable", "besteffort")
SYSTEMD_SCOPE_PREFIXES = ("cri-containerd-", "crio-", "docker-")
# Scopes in a pod's slice that are not containers (CRI-O's monitor); they map to the pod.
SYSTEMD_NON_CONTAINER_PREFIXES = ("crio-conmon-",)

_UID = r"[0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12}"
_CGROUPFS_POD = re.compile(rf"^pod({_UID})$")
_SYSTEMD_POD = re.compile(rf"^kubepods(?:-(burstable|besteffort))?-pod({_UID})\.slice$")  # after the slice prefix
_CONTAINER_ID = re.compile(r"^[0-9a-fA-F]{12,128}$")


@dataclass(frozen=True)
class CgroupOwner:
    """The pod (and container, for a container's cgroup) that a cgroup belongs to."""

    pod_uid: str  # the Pod's metadata.uid, with dashes
    qos: str  # one of QOS_CLASSES
    container_id: str | None = None  # the runtime's id (status.containerStatuses[].containerID after '://')

    @property
    def is_pod(self) -> bool:
        return self.container_id is None


def _canonical_uid(text: str) -> str:
    return text.replace("_", "-").lower()


def is_kubepods_name(name: str) -> bool:
    """True for the directory that holds every pod: `kubepods`, `kubepods.slice`, `*-kubepods.slice`."""
    return name in ("kubepods", "kubepods.slice") or name.endswith("-kubepods.slice")


def _kubepods_start(parts: list[str]) -> int | None:
    return next((index for index, part in enumerate(parts) if is_kubepods_name(part)), None)


def _container_id(name: str, systemd: bool) -> str | None:
    if not systemd:
        return name if _CONTAINER_ID.match(name) else None
    for prefix in SYSTEMD_SCOPE_PREFIXES:
        if name.startswith(prefix) and name.endswith(".scope"):
            candidate = name[len(prefix) : -len(".scope")]
            return candidate if _CONTAINER_ID.match(candidate) else None
    return None


def _pod_and_rest_cgroupfs(rest: list[str]) -> tuple[str, str, list[str]] | None:
    qos = "guaranteed"
    if rest and rest[0] in ("burstable", "besteffort"):
        qos, rest = rest[0], rest[1:]
    pod = _CGROUPFS_POD.match(rest[0]) if rest else None
    return (_canonical_uid(pod.group(1)), qos, rest[1:]) if pod else None


def _pod_and_rest_systemd(prefix: str, rest: list[str]) -> tuple[str, str, list[str]] | None:
    """systemd names a child slice after its parent: `kubelet-kubepods.slice` holds `kubelet-kubepods-...`."""
    qos = "guaranteed"
    if rest and rest[0] in (f"{prefix}kubepods-burstable.slice", f"{prefix}kubepods-besteffort.slice"):
        qos, rest = rest[0][len(prefix) + len("kubepods-") : -len(".slice")], rest[1:]
    pod = _SYSTEMD_POD.match(rest[0][len(prefix) :]) if rest and rest[0].startswith(prefix) else None
    if pod is None or (pod.group(1) or "guaranteed") != qos:
        return None
    return _canonical_uid(pod.group(2)), qos, rest[1:]


def parse_cgroup_path(path: str) -> CgroupOwner | None:
    """The owner of a cgroup given its path (absolute or relative to any cgroup root); None when the
    path is not a pod's or a container's cgroup (the node's own, a QoS parent, kubepods itself)."""
    parts = [part for part in path.split("/") if part]
    start = _kubepods_start(parts)
    if start is None:
        return None
    systemd = parts[start].endswith(".slice")
    if systemd:
        found = _pod_and_rest_systemd(parts[start][: -len("kubepods.slice")], parts[start + 1 :])
    else:
        found = _pod_and_rest_cgroupfs(parts[start + 1 :])
    if found is None:
        return None
    uid, qos, below = found
    if not below:
        return CgroupOwner(pod_uid=uid, qos=qos)
    if len(below) > 1:
        return None  # a cgroup a container made inside its own: not the kubelet's
    if systemd and below[0].startswith(SYSTEMD_NON_CONTAINER_PREFIXES):
        return CgroupOwner(pod_uid=uid, qos=qos)
    container = _container_id(below[0], systemd)
    return CgroupOwner(pod_uid=uid, qos=qos, container_id=container) if container else None


def cgroupfs_pod_path(pod_uid: str, qos: str) -> str:
    """Where the kubelet's cgroupfs driver puts a pod, relative to the kubelet's cgroup root."""
    if qos not in QOS_CLASSES:
        raise ValueError(f"qos {qos!r}: expected one of {', '.join(QOS_CLASSES)}")
    parent = "kubepods" if qos == "guaranteed" else f"kubepods/{qos}"
    return f"{parent}/pod{pod_uid}"
