"""Small real topologies for the tunnel tests: nodes as network namespaces on an underlay bridge.

Each node namespace has an underlay address on a bridge (itself in a namespace of its own), one "pod"
namespace behind a veth, IP forwarding on, a private state directory, and a node index file in the
same format the lab writes, so the `--node NODE` path of the CLI is exercised exactly as in the lab.
Everything is registered with the test's cleanup registry.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datapath.tunnel.keys import KeyStore
from lab import host
from tests.helpers.resources import KernelResources

UNDERLAY = ipaddress.IPv4Network("172.31.0.0/24")
PROXY_POOL = ipaddress.IPv4Network("100.96.0.0/24")
LISTEN_PORT = 51820


@dataclass
class TestNode:
    name: str
    cluster: str
    netns: str
    state_dir: Path
    underlay_ip: ipaddress.IPv4Address
    pod_cidr: ipaddress.IPv4Network
    pod_netns: str
    pod_ip: ipaddress.IPv4Address
    proxy_ip: ipaddress.IPv4Address
    cgroup: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.underlay_ip}:{LISTEN_PORT}"

    def run(self, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return _nsrun(self.netns, argv, timeout)

    def pod_run(self, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return _nsrun(self.pod_netns, argv, timeout)


def _nsrun(netns: str, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return host.run_in(argv, netns=netns, timeout=timeout)


@dataclass
class Topology:
    kernel: KernelResources
    base: Path
    index_dir: Path
    underlay_netns: str
    bridge: str = "br0"
    nodes: dict[str, TestNode] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "BALANCING_NODE_INDEX_DIR": str(self.index_dir)}

    def add_node(self, name: str, cluster: int, index: int) -> TestNode:
        number = len(self.nodes) + 1
        node_netns = self.kernel.netns()
        pod_netns = self.kernel.netns()
        underlay_ip = UNDERLAY.network_address + 10 + number
        pod_cidr = ipaddress.IPv4Network(f"10.{100 + cluster}.{index}.0/24")
        node = TestNode(
            name=name,
            cluster=f"member-{cluster}",
            netns=node_netns,
            state_dir=self.base / name,
            underlay_ip=underlay_ip,
            pod_cidr=pod_cidr,
            pod_netns=pod_netns,
            pod_ip=pod_cidr.network_address + 2,
            proxy_ip=PROXY_POOL.network_address + number,
        )
        node.state_dir.mkdir(mode=0o700, parents=True)
        # underlay: a veth from the node to the bridge namespace
        outer = self.kernel.unique("u")[:15]
        host.run(["ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", node_netns])
        host.run(["ip", "link", "set", outer, "netns", self.underlay_netns])
        host.run(["ip", "-n", self.underlay_netns, "link", "set", outer, "master", self.bridge, "up"])
        host.run(["ip", "-n", node_netns, "addr", "add", f"{underlay_ip}/{UNDERLAY.prefixlen}", "dev", "eth0"])
        host.run(["ip", "-n", node_netns, "link", "set", "eth0", "up"])
        # pod: a veth from the node, the node side holds .1 of the pod CIDR
        pod_veth = ["pod0", "type", "veth", "peer", "name", "eth0", "netns", pod_netns]
        host.run(["ip", "-n", node_netns, "link", "add", *pod_veth])
        host.run(["ip", "-n", node_netns, "addr", "add", f"{pod_cidr.network_address + 1}/24", "dev", "pod0"])
        host.run(["ip", "-n", node_netns, "link", "set", "pod0", "up"])
        host.run(["ip", "-n", pod_netns, "addr", "add", f"{node.pod_ip}/24", "dev", "eth0"])
        host.run(["ip", "-n", pod_netns, "link", "set", "eth0", "up"])
        host.run(["ip", "-n", pod_netns, "route", "add", "default", "via", str(pod_cidr.network_address + 1)])
        host.ns_run(node_netns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        (self.index_dir / f"{name}.json").write_text(
            json.dumps(
                {
                    "name": name,
                    "cluster": node.cluster,
                    "netns": node_netns,
                    "state_dir": str(node.state_dir),
                    "underlay_ip": str(underlay_ip),
                    "pod_cidr": str(pod_cidr),
                }
            )
        )
        self.kernel.registry.add(f"tunnel down {name}", lambda: self.cli("down", name, check=False))
        self.nodes[name] = node
        return node

    def cli(
        self, verb: str, node: str, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "balancing", "datapath", "tunnel", verb, "--node", node, *args],
            capture_output=True,
            text=True,
            env=self.env,
            input=input,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"tunnel {verb} {node} failed ({result.returncode}): {result.stderr}")
        return result

    def pubkey(self, node: str) -> str:
        """The node's public key, read through the Python API (the CLI verb has its own test)."""
        return KeyStore(self.nodes[node].state_dir / "tunnel").ensure()

    def peer_entry(self, name: str, public_key: str | None = None) -> dict[str, object]:
        node = self.nodes[name]
        return {
            "cluster": node.cluster,
            "node": name,
            "publicKey": public_key or self.pubkey(name),
            "endpoint": node.endpoint,
            "allowedIPs": [str(node.pod_cidr), f"{node.proxy_ip}/32"],
        }

    def state_for(self, name: str, peers: Sequence[str], **overrides: object) -> dict[str, object]:
        node = self.nodes[name]
        state: dict[str, object] = {
            "listenPort": LISTEN_PORT,
            "proxyIPv4": str(node.proxy_ip),
            "podCIDRs": [str(node.pod_cidr)],
            "peers": [self.peer_entry(peer) for peer in peers],
        }
        state.update(overrides)
        return state

    def apply(self, name: str, state: dict[str, object], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        path = self.base / f"{name}.state.json"
        path.write_text(json.dumps(state, indent=2))
        return self.cli("apply", name, str(path), check=check)

    def mesh(self, names: Sequence[str]) -> None:
        """Apply a full mesh between `names`."""
        for name in names:
            self.apply(name, self.state_for(name, [other for other in names if other != name]))

    def status(self, name: str) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(self.cli("status", name, "--json").stdout)
        return loaded


def make_topology(kernel: KernelResources, base: Path) -> Topology:
    underlay = kernel.netns()
    host.run(["ip", "-n", underlay, "link", "add", "br0", "type", "bridge"])
    host.run(["ip", "-n", underlay, "link", "set", "br0", "up"])
    index_dir = base / "index"
    index_dir.mkdir()
    return Topology(kernel=kernel, base=base, index_dir=index_dir, underlay_netns=underlay)


def wait_for(predicate: object, timeout: float = 10.0, interval: float = 0.05) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
