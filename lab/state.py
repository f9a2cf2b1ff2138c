"""The lab's state file and the roots that hold everything the lab makes.

Every resource lives under a lab-owned root (netns prefix, cgroup subtree, bpffs dir, state dir),
so `lab down` can remove everything even when the state file is stale or missing after a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab import host

LAB_DIR = Path(os.environ.get("BALANCING_LAB_DIR", "/run/balancing-lab"))
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


@dataclass
class ClusterRecord:
    name: str
    kubeconfig: str
    apiserver_url: str
    processes: list[ProcessRecord] = field(default_factory=list)


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


def process_start_time(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    return None
