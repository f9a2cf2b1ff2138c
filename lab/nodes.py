"""Lab nodes and pods: network namespaces on an underlay bridge, with cgroups and bpffs dirs.

A node is a network namespace with `eth0` on the underlay bridge, its own cgroup subtree
(`balancing-lab/nodes/<node>/{system,pods/...}`), its own bpffs directory and a private state directory.
A pod is a network namespace with a veth to its node: the pod holds `podIP/32` and routes everything
via 169.254.1.1, which the node-side veth answers for; the node routes `podIP/32` to that veth.
Nodes of one cluster route each other's pod CIDRs over the underlay.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import sys
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
    PodRecord,
    ProcessRecord,
)


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
    host.cgroup_create(Path(record.cgroup) / "system")
    host.cgroup_create(Path(record.cgroup) / "pods")
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
    """Every node of a cluster routes each other node's pod CIDR via that node's underlay address."""
    for node in nodes:
        for other in nodes:
            if other.name != node.name:
                host.run(["ip", "-n", node.netns, "route", "replace", other.pod_cidr, "via", other.underlay_ip])


def allocate_pod_ip(node: NodeRecord, taken: set[str]) -> str:
    network = ipaddress.IPv4Network(node.pod_cidr)
    for address in list(network.hosts())[1:]:  # .1 is left for the node itself
        if str(address) not in taken:
            return str(address)
    raise host.LabError(f"node {node.name}: pod CIDR {node.pod_cidr} is exhausted")


def pod_netns(pod_key: str) -> str:
    return f"{NETNS_PREFIX}pod-{pod_key.replace('/', '.')}"


def pod_veth_name(pod_key: str) -> str:
    return "bfp" + hashlib.sha1(pod_key.encode()).hexdigest()[:10]


def create_pod_network(node: NodeRecord, pod: PodRecord) -> None:
    """Create the pod's namespace and its veth to the node, addressed and routed."""
    host.netns_add(pod.netns)
    node_side = pod_veth_name(pod.key)
    if host.link_exists(node_side, node.netns) and not host.link_exists("eth0", pod.netns):
        host.run(["ip", "-n", node.netns, "link", "del", node_side])  # a half-torn-down earlier pod
    if not host.link_exists(node_side, node.netns):
        host.run(["ip", "-n", node.netns, "link", "add", node_side, "type", "veth", "peer", "name", "eth0",
                  "netns", pod.netns])
    host.run(["ip", "-n", pod.netns, "addr", "replace", f"{pod.ip}/32", "dev", "eth0"])
    host.run(["ip", "-n", pod.netns, "link", "set", "eth0", "up"])
    host.run(["ip", "-n", pod.netns, "route", "replace", f"{POD_GATEWAY_IP}/32", "dev", "eth0", "scope", "link"])
    host.run(["ip", "-n", pod.netns, "route", "replace", "default", "via", str(POD_GATEWAY_IP), "dev", "eth0"])
    host.run(["ip", "-n", node.netns, "addr", "replace", f"{POD_GATEWAY_IP}/32", "dev", node_side])
    host.run(["ip", "-n", node.netns, "link", "set", node_side, "up"])
    host.run(["ip", "-n", node.netns, "route", "replace", f"{pod.ip}/32", "dev", node_side])
    if pod.host_port:
        _add_host_port(node, pod)


def _host_port_rules(node: NodeRecord, pod: PodRecord) -> list[list[str]]:
    rules = []
    for protocol in ("tcp", "udp"):
        for chain in ("PREROUTING", "OUTPUT"):
            rules.append([chain, "-p", protocol, "-d", node.underlay_ip, "--dport", str(pod.host_port),
                          "-j", "DNAT", "--to-destination", f"{pod.ip}:{pod.port}",
                          "-m", "comment", "--comment", f"lab-hostport {pod.key}"])
    return rules


def _add_host_port(node: NodeRecord, pod: PodRecord) -> None:
    for rule in _host_port_rules(node, pod):
        try:
            host.ns_run(node.netns, ["iptables", "-t", "nat", "-C", *rule])
        except host.LabError:  # not present yet
            host.ns_run(node.netns, ["iptables", "-t", "nat", "-A", *rule])


def start_pod_process(pod: PodRecord) -> ProcessRecord:
    cgroup = host.cgroup_create(Path(pod.cgroup))
    log = LAB_DIR / "pods" / f"{pod.cluster}.{pod.namespace}.{pod.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    process = host.spawn(
        [sys.executable, "-m", "lab.echo_server", "--name", pod.name, "--port", str(pod.port)],
        netns=pod.netns, cgroup=cgroup, log=log,
    )
    return ProcessRecord.of(process.pid, f"pod {pod.key}")


def delete_pod(node: NodeRecord | None, pod: PodRecord) -> None:
    host.cgroup_remove(Path(pod.cgroup))
    if node and host.link_exists(pod_veth_name(pod.key), node.netns):
        # deleting one end removes the pair now; a netns deletion would leave it for a moment
        host.run(["ip", "-n", node.netns, "link", "del", pod_veth_name(pod.key)], check=False)
    host.netns_delete(pod.netns)
    if node and pod.host_port:
        for rule in _host_port_rules(node, pod):
            host.ns_run(node.netns, ["iptables", "-t", "nat", "-D", *rule], check=False)
    if node:
        host.ns_run(node.netns, ["ip", "route", "del", f"{pod.ip}/32"], check=False)
