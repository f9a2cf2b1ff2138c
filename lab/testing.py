"""A small handle on a running lab federation, for tests and benchmarks (like kopf.testing)."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab import federation, host, kubeapi
from lab.state import LabState
from lab.toolchain import tool_path


@dataclass(frozen=True)
class LabNode:
    name: str
    cluster: str
    netns: str
    cgroup: Path
    bpffs: Path
    state_dir: Path
    underlay_ip: ipaddress.IPv4Address
    pod_cidr: ipaddress.IPv4Network


@dataclass(frozen=True)
class LabPod:
    key: str
    node: str
    netns: str
    cgroup: Path  # the pod's cgroup: <node cgroup>/kubepods/besteffort/pod<uid>
    ip: ipaddress.IPv4Address
    port: int
    uid: str
    container_cgroup: Path  # the echo container's, below `cgroup`


class Federation:
    """The lab as it is now; bring it up with `Federation.up(...)`."""

    @classmethod
    def up(cls, members: int = 2, nodes_per_cluster: int = 2) -> Federation:
        federation.up(members, nodes_per_cluster)
        return cls()

    def down(self) -> None:
        federation.down()

    @property
    def state(self) -> LabState:
        return LabState.load()

    def kubeconfig(self, cluster: str) -> Path:
        return federation.kubeconfig(cluster)

    def kubectl(
        self, cluster: str, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return kubeapi.kubectl(self.state.clusters[cluster], list(args), input=input, check=check)

    def node(self, name: str) -> LabNode:
        record = self.state.nodes[name]
        return LabNode(
            name=record.name, cluster=record.cluster, netns=record.netns, cgroup=Path(record.cgroup),
            bpffs=Path(record.bpffs), state_dir=Path(record.state_dir),
            underlay_ip=ipaddress.IPv4Address(record.underlay_ip), pod_cidr=ipaddress.IPv4Network(record.pod_cidr),
        )

    def nodes(self, cluster: str) -> list[LabNode]:
        return [self.node(name) for name, record in self.state.nodes.items() if record.cluster == cluster]

    def pod(
        self, cluster: str, namespace: str, name: str, *, node: str, port: int = 8080,
        labels: dict[str, str] | None = None, host_port: int | None = None,
    ) -> LabPod:
        record = federation.add_pod(f"{cluster}/{namespace}/{name}", node, labels or {}, port, host_port)
        return LabPod(key=record.key, node=record.node, netns=record.netns, cgroup=Path(record.cgroup),
                      ip=ipaddress.IPv4Address(record.ip), port=record.port, uid=record.uid,
                      container_cgroup=Path(record.container_cgroup))

    def remove_pod(self, cluster: str, namespace: str, name: str) -> None:
        federation.remove_pod(f"{cluster}/{namespace}/{name}")

    def exec(self, target: str, argv: Sequence[str], timeout: float = 60,
             container: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command on a node (NODE) or in a pod's container (CLUSTER/NAMESPACE/NAME), capture its output."""
        command, cgroup = federation.exec_command(target, argv, container)
        return host.run_in(command, cgroup=cgroup, timeout=timeout)

    @staticmethod
    def kubectl_path() -> Path:
        return tool_path("kubectl")
