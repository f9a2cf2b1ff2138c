"""Lab nodes and pods: network namespaces on an underlay bridge, with cgroups and bpffs dirs.

A node is a network namespace with `eth0` on the underlay bridge, its own cgroup subtree
(`balancing-lab/nodes/<node>/`, laid out as the kubelet's cgroupfs driver does: `system/` for the
node's own processes, `kubepods/[burstable|besteffort/]pod<UID>/<container id>` for pods), its own
bpffs directory, a private state directory and a private disk (`node_root`).
A pod is a network namespace with a veth to its node: the pod holds `podIP/32` and routes everything
via 169.254.1.1, which the node-side veth answers for; the node routes `podIP/32` to that veth.
Nodes of one cluster route each other's pod CIDRs over the underlay.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from lab import host
from lab.addressing import (
    HOST_UNDERLAY_IP,
    POD_GATEWAY_IP,
    UNDERLAY_BRIDGE,
    UNDERLAY_NETWORK,
    NodeAddressing,
    cluster_index,
)
from lab.state import (
    BPFFS_ROOT,
    CGROUP_ROOT,
    LAB_DIR,
    NETNS_PREFIX,
    NODE_INDEX_DIR,
    NodeRecord,
)

# `system`: the node's own processes; `kubepods`: every pod; `unified`: an empty cgroup that is only
# the mount point for /sys/fs/cgroup/unified inside pods (a hybrid host's cgroup2 path).
NODE_CGROUP_CHILDREN = ("system", "kubepods", "unified")


def create_underlay() -> None:
    if not host.link_exists(UNDERLAY_BRIDGE):
        host.run(["ip", "link", "add", UNDERLAY_BRIDGE, "type", "bridge"])
    address = f"{HOST_UNDERLAY_IP}/{UNDERLAY_NETWORK.prefixlen}"
    if address not in host.run(["ip", "-br", "addr", "show", UNDERLAY_BRIDGE]):
        host.run(["ip", "addr", "add", address, "dev", UNDERLAY_BRIDGE])
    host.run(["ip", "link", "set", UNDERLAY_BRIDGE, "up"])


def delete_underlay() -> None:
    if host.link_exists(UNDERLAY_BRIDGE):
        host.run(["ip", "link", "del", UNDERLAY_BRIDGE], check=False)


def node_cgroup(node: str) -> Path:
    return CGROUP_ROOT / "nodes" / node


def node_root(node: str) -> Path:
    """The node's own disk: where a hostPath outside the shared kernel's paths points (podspec.NodePaths)."""
    return LAB_DIR / "node-root" / node


def _sysctl(netns: str, key: str, value: str) -> None:
    host.ns_run(netns, ["sysctl", "-q", "-w", f"{key}={value}"])


def create_node(cluster: str, index: int) -> NodeRecord:
    addressing = NodeAddressing(cluster, index)
    name = addressing.name
    netns = NETNS_PREFIX + name
    link = f"bfu{cluster_index(cluster)}n{index}"
    record = NodeRecord(
        name=name, cluster=cluster, netns=netns,
        cgroup=str(node_cgroup(name)), bpffs=str(BPFFS_ROOT / name),
        state_dir=str(NODE_INDEX_DIR / name), underlay_ip=str(addressing.underlay_ip),
        pod_cidr=str(addressing.pod_cidr), underlay_link=link,
    )
    host.netns_add(netns)
    if not host.link_exists(link):
        host.run(["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns])
        host.run(["ip", "link", "set", link, "master", UNDERLAY_BRIDGE, "up"])
        host.run(["ip", "-n", netns, "addr", "add", f"{addressing.underlay_ip}/{UNDERLAY_NETWORK.prefixlen}",
                  "dev", "eth0"])
        host.run(["ip", "-n", netns, "link", "set", "eth0", "up"])
    for key, value in (("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.all.rp_filter", "0"),
                       ("net.ipv4.conf.default.rp_filter", "0")):
        _sysctl(netns, key, value)
    for child in NODE_CGROUP_CHILDREN:
        host.cgroup_create(Path(record.cgroup) / child)
    (node_root(name) / "run" / "balancing").mkdir(parents=True, exist_ok=True)
    host.ensure_bpffs()
    Path(record.bpffs).mkdir(parents=True, exist_ok=True)
    state_dir = Path(record.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    (NODE_INDEX_DIR / f"{name}.json").write_text(json.dumps({
        "name": name, "cluster": cluster, "netns": netns, "cgroup": record.cgroup, "bpffs": record.bpffs,
        "state_dir": record.state_dir, "underlay_ip": record.underlay_ip, "pod_cidr": record.pod_cidr,
    }, indent=2))
    return record


def route_cluster(nodes: list[NodeRecord]) -> None:
    """Every node of a cluster routes each other node's pod CIDR via that node's underlay address, and
    so does the host (the apiservers answer pods, the kubelet probes them); the bridge takes those along."""
    for node in nodes:
        host.run(["ip", "route", "replace", node.pod_cidr, "via", node.underlay_ip, "dev", UNDERLAY_BRIDGE])
        for other in nodes:
            if other.name != node.name:
                host.run(["ip", "-n", node.netns, "route", "replace", other.pod_cidr, "via", other.underlay_ip])


def pod_netns(pod_uid: str) -> str:
    return f"{NETNS_PREFIX}pod-{pod_uid}"


def pod_veth_name(pod_uid: str) -> str:
    return "bfp" + hashlib.sha1(pod_uid.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class HostPort:
    protocol: str  # tcp or udp
    host_port: int
    container_port: int


@dataclass(frozen=True)
class PodNetwork:
    """A pod's network namespace, its veth to the node, its address and its hostPorts."""

    pod_uid: str
    ip: str
    host_ports: tuple[HostPort, ...] = ()

    @property
    def netns(self) -> str:
        return pod_netns(self.pod_uid)

    @property
    def veth(self) -> str:
        return pod_veth_name(self.pod_uid)


def create_pod_network(node: NodeRecord, network: PodNetwork) -> None:
    """Create the pod's namespace and its veth to the node, addressed and routed."""
    host.netns_add(network.netns)
    node_side = network.veth
    if host.link_exists(node_side, node.netns) and not host.link_exists("eth0", network.netns):
        host.run(["ip", "-n", node.netns, "link", "del", node_side])  # a half-torn-down earlier attempt
    if not host.link_exists(node_side, node.netns):
        host.run(["ip", "-n", node.netns, "link", "add", node_side, "type", "veth", "peer", "name", "eth0",
                  "netns", network.netns])
    host.run(["ip", "-n", network.netns, "addr", "replace", f"{network.ip}/32", "dev", "eth0"])
    host.run(["ip", "-n", network.netns, "link", "set", "eth0", "up"])
    host.run(["ip", "-n", network.netns, "route", "replace", f"{POD_GATEWAY_IP}/32", "dev", "eth0", "scope", "link"])
    host.run(["ip", "-n", network.netns, "route", "replace", "default", "via", str(POD_GATEWAY_IP), "dev", "eth0"])
    host.run(["ip", "-n", node.netns, "addr", "replace", f"{POD_GATEWAY_IP}/32", "dev", node_side])
    host.run(["ip", "-n", node.netns, "link", "set", node_side, "up"])
    host.run(["ip", "-n", node.netns, "route", "replace", f"{network.ip}/32", "dev", node_side])
    for rule in _host_port_rules(network):
        try:
            host.ns_run(node.netns, ["iptables", "-t", "nat", "-C", *rule])
        except host.LabError:  # not present yet
            host.ns_run(node.netns, ["iptables", "-t", "nat", "-A", *rule])


def _host_port_rules(network: PodNetwork) -> list[list[str]]:
    """As the CNI portmap plugin: any address of the node (its underlay IP, a tunnel's proxy IP, loopback)."""
    return [
        [chain, "-p", port.protocol, "-m", "addrtype", "--dst-type", "LOCAL", "--dport", str(port.host_port),
         "-j", "DNAT", "--to-destination", f"{network.ip}:{port.container_port}",
         "-m", "comment", "--comment", f"lab-hostport {network.pod_uid}"]
        for port in network.host_ports
        for chain in ("PREROUTING", "OUTPUT")
    ]


def delete_pod_network(node: NodeRecord | None, network: PodNetwork) -> None:
    if node and host.link_exists(network.veth, node.netns):
        # deleting one end removes the pair now; a netns deletion would leave it for a moment
        host.run(["ip", "-n", node.netns, "link", "del", network.veth], check=False)
    host.netns_delete(network.netns)
    if node:
        for rule in _host_port_rules(network):
            host.ns_run(node.netns, ["iptables", "-t", "nat", "-D", *rule], check=False)
        host.ns_run(node.netns, ["ip", "route", "del", f"{network.ip}/32"], check=False)
        release_pod_ip(node, network.ip)


# Pod addresses are files, one per address (like the host-local CNI plugin), so the kubelet and the
# `balancing lab` commands never hand out one address twice.
def _ipam_dir(node: NodeRecord) -> Path:
    return LAB_DIR / "ipam" / node.name


def allocate_pod_ip(node: NodeRecord, owner: str) -> str:
    directory = _ipam_dir(node)
    directory.mkdir(parents=True, exist_ok=True)
    for existing in directory.iterdir():
        if existing.read_text() == owner:
            return existing.name
    network = ipaddress.IPv4Network(node.pod_cidr)
    for address in list(network.hosts())[1:]:  # .1 is left for the node itself
        try:
            with open(directory / str(address), "x") as claim:
                claim.write(owner)
            return str(address)
        except FileExistsError:
            continue
    raise host.LabError(f"node {node.name}: pod CIDR {node.pod_cidr} is exhausted")


def release_pod_ip(node: NodeRecord, ip: str) -> None:
    (_ipam_dir(node) / ip).unlink(missing_ok=True)
