"""The lab's address and port plan: pure functions, one place.

Cluster index 0 is the hub; member-K has index K. Node I of a cluster is 1-based.

| what                        | value                                   |
| --------------------------- | --------------------------------------- |
| underlay bridge (host side) | bf-underlay, 172.30.0.1/16               |
| node underlay address       | 172.30.C.(10+I)/16                      |
| cluster pod CIDR            | 10.(100+C).0.0/16                       |
| node pod CIDR               | 10.(100+C).I.0/24                       |
| cluster service CIDR        | 10.(200+C).0.0/16                       |
| node proxy IPv4 pool        | 100.96.0.0/16 (allocated by the hub)     |
| apiserver port              | 6443+C on 172.30.0.1                    |
| etcd client / peer port     | 23790+10C / 23791+10C on 127.0.0.1      |
| controller-manager port     | 10300+C on 127.0.0.1                    |
| scheduler port              | 10400+C on 127.0.0.1                    |
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

MAX_MEMBERS = 50
MAX_NODES_PER_CLUSTER = 200

UNDERLAY_BRIDGE = "bf-underlay"
UNDERLAY_NETWORK = ipaddress.IPv4Network("172.30.0.0/16")
HOST_UNDERLAY_IP = ipaddress.IPv4Address("172.30.0.1")
NODE_PROXY_POOL = ipaddress.IPv4Network("100.96.0.0/16")
POD_GATEWAY_IP = ipaddress.IPv4Address("169.254.1.1")  # what pods use as their default gateway


def cluster_name(index: int) -> str:
    return "hub" if index == 0 else f"member-{index}"


def cluster_index(name: str) -> int:
    if name == "hub":
        return 0
    prefix = "member-"
    if name.startswith(prefix) and name[len(prefix) :].isdigit():
        index = int(name[len(prefix) :])
        if 1 <= index <= MAX_MEMBERS:
            return index
    raise ValueError(f"unknown cluster name {name!r}: expected 'hub' or 'member-N' with 1 <= N <= {MAX_MEMBERS}")


def node_name(cluster: str, index: int) -> str:
    return f"{cluster}-node-{index}"


def split_node_name(name: str) -> tuple[str, int]:
    cluster, sep, index = name.rpartition("-node-")
    if not sep or not index.isdigit():
        raise ValueError(f"unknown node name {name!r}: expected CLUSTER-node-I, for example member-1-node-2")
    cluster_index(cluster)
    return cluster, int(index)


@dataclass(frozen=True)
class NodeAddressing:
    cluster: str
    index: int

    @property
    def name(self) -> str:
        return node_name(self.cluster, self.index)

    @property
    def underlay_ip(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(f"172.30.{cluster_index(self.cluster)}.{10 + self.index}")

    @property
    def pod_cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.{100 + cluster_index(self.cluster)}.{self.index}.0/24")


@dataclass(frozen=True)
class ClusterAddressing:
    name: str

    @property
    def index(self) -> int:
        return cluster_index(self.name)

    @property
    def pod_cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.{100 + self.index}.0.0/16")

    @property
    def service_cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.{200 + self.index}.0.0/16")

    @property
    def apiserver_port(self) -> int:
        return 6443 + self.index

    @property
    def etcd_client_port(self) -> int:
        return 23790 + 10 * self.index

    @property
    def etcd_peer_port(self) -> int:
        return 23791 + 10 * self.index

    @property
    def controller_manager_port(self) -> int:
        return 10300 + self.index

    @property
    def scheduler_port(self) -> int:
        return 10400 + self.index

    def node(self, index: int) -> NodeAddressing:
        return NodeAddressing(self.name, index)
