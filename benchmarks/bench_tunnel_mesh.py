"""Time to plan a 500-node mesh and to apply one node's 500-peer share of it, on real wireguard-go.

Planning is hub.mesh.plan_mesh over 500 NodeTunnelEndpoint-shaped inputs (10 clusters x 50 nodes):
pod CIDR checks, proxy IP allocation, 500 peer sets of 499 peers. Applying is the real tunnel manager on
one node namespace: validate, create the interface, add 499 peers with `wg set`, 998 routes with
pyroute2, then the follow-ups a running node sees: a no-op re-apply (a manager restart), one peer
changed, and one peer replaced.

    python -m benchmarks.bench_tunnel_mesh [--clusters 10] [--nodes 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from crds import NodeTunnelEndpoint
from datapath.tunnel import TunnelManager, TunnelNode
from hub.mesh import plan_mesh
from lab import host
from member.tunnels import tunnel_state

POOL = "100.96.0.0/16"
T = TypeVar("T")


def timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = action()
    return result, (time.perf_counter() - started) * 1000


def endpoints(clusters: int, nodes: int) -> list[NodeTunnelEndpoint]:
    return [
        NodeTunnelEndpoint.for_node(
            f"member-{c}",
            f"member-{c}-node-{n}",
            base64.b64encode(os.urandom(32)).decode(),
            f"172.30.{c}.{10 + n}:51820",
            (f"10.{100 + c}.{n}.0/24",),
        )
        for c in range(1, clusters + 1)
        for n in range(1, nodes + 1)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=50, help="nodes per cluster")
    parser.add_argument("--repeat", type=int, default=5, help="planning runs (the median is printed)")
    args = parser.parse_args()

    inputs = endpoints(args.clusters, args.nodes)
    plans = [timed(lambda: plan_mesh(POOL, inputs)) for _ in range(args.repeat)]
    plan = plans[-1][0]
    plan_ms = statistics.median(ms for _plan, ms in plans)
    total_peers = sum(len(peers) for peers in plan.peers.values())
    print(f"plan {len(inputs)} nodes ({total_peers} peer entries): {plan_ms:.1f} ms (median of {args.repeat})")

    key = ("member-1", "member-1-node-1")
    netns = f"bfbM{uuid.uuid4().hex[:5]}"
    base = Path(tempfile.mkdtemp(prefix="bf-bench-mesh-"))
    host.netns_add(netns)
    node = TunnelNode(name="member-1-node-1", netns=netns, state_dir=base, pod_cidrs=())
    manager = TunnelManager(node)
    try:
        host.run(["ip", "link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name", "eth1", "netns", netns])
        host.run(["ip", "-n", netns, "addr", "add", "172.30.1.11/16", "dev", "eth0"])
        host.run(["ip", "-n", netns, "link", "set", "eth0", "up"])
        manager.pubkey()
        data = tunnel_state(str(plan.proxy.addresses[key]), plan.peers[key])
        state, parse_ms = timed(lambda: manager.parse(data))
        result, first_ms = timed(lambda: manager.apply(state))
        assert len(result.peers_added) == len(data["peers"]), result.summary()
        result, noop_ms = timed(lambda: manager.apply(manager.parse(data)))
        assert not result.changed, result.summary()

        data["peers"][7]["endpoint"] = "172.30.9.99:51820"
        result, one_ms = timed(lambda: manager.apply(manager.parse(data)))
        assert result.peers_updated == [data["peers"][7]["node"]], result.summary()

        data["peers"][8]["publicKey"] = base64.b64encode(os.urandom(32)).decode()
        result, replace_ms = timed(lambda: manager.apply(manager.parse(data)))
        assert len(result.peers_added) == 1 and len(result.peers_removed) == 1, result.summary()

        listed = subprocess.run(
            ["ip", "-n", netns, "route", "show", "proto", "98"], capture_output=True, text=True, check=True
        ).stdout
        routes = len(listed.splitlines())
        status = manager.status()
        print(f"node {node.name}: {len(status.peers)} peers, {routes} routes, {status.implementation}")
        print(f"  validate state           {parse_ms:8.1f} ms")
        print(f"  first apply              {first_ms:8.1f} ms  (interface + {len(state.peers)} peers + routes)")
        print(f"  re-apply, no change      {noop_ms:8.1f} ms  (a manager restart)")
        print(f"  one peer's endpoint      {one_ms:8.1f} ms")
        print(f"  one peer replaced        {replace_ms:8.1f} ms  (remove + add, route kept)")
        print(f"plan + first apply: {plan_ms + parse_ms + first_ms:.0f} ms")
    finally:
        manager.down()
        host.netns_delete(netns)
        subprocess.run(["rm", "-rf", str(base)], check=False)


if __name__ == "__main__":
    main()
