"""The WireGuard mesh on lab nodes, stitched by hand for the tunnel datapath's own tests.

(The product does this with the hub operator and the node agents; these tests exercise the tunnel
layer underneath them, node by node.)

Each node publishes its public key (`balancing datapath tunnel pubkey`), the hub's pure planner
(hub.mesh) allocates proxy IPs and peer sets, and each node's share is applied with
`balancing datapath tunnel apply`, through the node agent's translation (member.tunnels).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crds import NodeTunnelEndpoint
from datapath.tunnel import DEFAULT_LISTEN_PORT
from hub.mesh import MeshPlan, plan_mesh
from lab.addressing import NODE_PROXY_POOL
from lab.host import LabError
from lab.state import NODE_INDEX_DIR
from lab.testing import Federation
from member.tunnels import tunnel_state


@dataclass
class LabMesh:
    federation: Federation
    workdir: Path
    listen_port: int = DEFAULT_LISTEN_PORT
    proxy_ips: dict[str, str] = field(default_factory=dict)  # what the hub wrote into status last time
    public_keys: dict[str, str] = field(default_factory=dict)  # what each node published last time

    def cli(self, verb: str, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "balancing", "datapath", "tunnel", verb, "--node", node, *args],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "BALANCING_NODE_INDEX_DIR": str(NODE_INDEX_DIR)},  # the lab's nodes, not the host's
        )
        if check and result.returncode != 0:
            raise LabError(f"tunnel {verb} --node {node} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def public_key(self, name: str) -> str:
        if name not in self.public_keys:
            self.public_keys[name] = self.cli("pubkey", name).stdout.strip()
        return self.public_keys[name]

    def rotate_key(self, name: str) -> str:
        self.public_keys[name] = self.cli("rotate-key", name).stdout.strip()
        return self.public_keys[name]

    def endpoint(self, name: str) -> NodeTunnelEndpoint:
        node = self.federation.node(name)
        return NodeTunnelEndpoint.for_node(
            node.cluster, name, self.public_key(name), f"{node.underlay_ip}:{self.listen_port}",
            (str(node.pod_cidr),), self.proxy_ips.get(name),
        )

    def plan(self, names: Sequence[str]) -> MeshPlan:
        plan = plan_mesh(NODE_PROXY_POOL, [self.endpoint(name) for name in names])
        self.proxy_ips.update({node: str(address) for (_cluster, node), address in plan.proxy.addresses.items()})
        return plan

    def state(self, plan: MeshPlan, name: str) -> dict[str, Any]:
        cluster = self.federation.node(name).cluster
        return tunnel_state(self.proxy_ips[name], plan.peers[(cluster, name)], self.listen_port)

    def apply_state(self, name: str, state: dict[str, Any], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / f"{name}.{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(state, indent=2))
        return self.cli("apply", name, str(path), check=check)

    def apply(self, names: Sequence[str], *, to: Sequence[str] | None = None) -> None:
        """Plan a mesh of `names` and apply it on `to` (default: all of them)."""
        plan = self.plan(names)
        for name in to or names:
            self.apply_state(name, self.state(plan, name))

    def proxy_ip(self, name: str) -> str:
        return self.proxy_ips[name]

    def status(self, name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.cli("status", name, "--json").stdout)
        return loaded

    def down(self, names: Sequence[str]) -> None:
        for name in names:
            self.cli("down", name, check=False)
