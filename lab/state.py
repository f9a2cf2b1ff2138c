"""The lab's state file and the roots that hold everything the lab makes.

Every resource lives under a lab-owned root (netns prefix, cgroup subtree, bpffs dir, state dir),
so `lab down` can remove everything even when the state file is stale or missing after a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datapath import process_start_time, stop_process
from lab import host

LAB_DIR = Path(os.environ.get("BALANCING_LAB_DIR", "/run/balancing-lab"))
LOCK_FILE = LAB_DIR.with_name(LAB_DIR.name + ".lock")  # outside LAB_DIR: `down` removes that
STATE_FILE = LAB_DIR / "state.json"
NODE_INDEX_DIR = LAB_DIR / "nodes"  # <node>.json: what datapath's --node NODE resolves to
CGROUP_ROOT = host.CGROUP2_ROOT / "balancing-lab"
BPFFS_ROOT = host.BPFFS_ROOT / "balancing-lab"
NETNS_PREFIX = "bfl-"


@dataclass
class ProcessRecord:
    """A process the lab started; `start_time` guards against a recycled pid."""

    pid: int
    role: str
    start_time: int

    @classmethod
    def of(cls, pid: int, role: str) -> ProcessRecord:
        return cls(pid=pid, role=role, start_time=process_start_time(pid) or 0)

    def alive(self) -> bool:
        return self.start_time != 0 and process_start_time(self.pid) == self.start_time

    def stop(self) -> None:
        if self.alive():
            stop_process(self.pid, self.start_time)


@dataclass
class ClusterRecord:
    name: str
    kubeconfig: str
    apiserver_url: str
    processes: list[ProcessRecord] = field(default_factory=list)
    crd_digest: str = ""  # digest of the CRD files last applied, so a warm `up` skips re-applying


@dataclass
class NodeRecord:
    name: str
    cluster: str
    netns: str
    cgroup: str
    bpffs: str
    state_dir: str
    underlay_ip: str
    pod_cidr: str
    underlay_link: str


@dataclass
class PodRecord:
    cluster: str
    namespace: str
    name: str
    node: str
    netns: str
    cgroup: str
    ip: str
    port: int
    host_port: int | None
    labels: dict[str, str]
    process: ProcessRecord | None = None
    uid: str = ""
    container_cgroup: str = ""  # the echo container's cgroup, below the pod's `cgroup`

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.name}"


@dataclass
class LabState:
    clusters: dict[str, ClusterRecord] = field(default_factory=dict)
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    pods: dict[str, PodRecord] = field(default_factory=dict)
    daemons: list[ProcessRecord] = field(default_factory=list)

    @classmethod
    def load(cls) -> LabState:
        if not STATE_FILE.exists():
            return cls()
        raw: dict[str, Any] = json.loads(STATE_FILE.read_text())
        return cls(
            clusters={
                name: ClusterRecord(
                    **{**c, "processes": [ProcessRecord(**p) for p in c.get("processes", [])]}
                )
                for name, c in raw.get("clusters", {}).items()
            },
            nodes={name: NodeRecord(**n) for name, n in raw.get("nodes", {}).items()},
            pods={
                key: PodRecord(**{**p, "process": ProcessRecord(**p["process"]) if p.get("process") else None})
                for key, p in raw.get("pods", {}).items()
            },
            daemons=[ProcessRecord(**d) for d in raw.get("daemons", [])],
        )

    def save(self) -> None:
        LAB_DIR.mkdir(parents=True, exist_ok=True)
        temporary = STATE_FILE.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        temporary.replace(STATE_FILE)


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Serialise lab changes (up, down, pods) between processes: tests and people share one lab."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
