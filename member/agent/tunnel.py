"""The node's share of the WireGuard mesh, kept by the agent through datapath.tunnel in-process.

The private key is made on the node and never leaves it; the public key goes in the node's
BalancingNode status, from which the member controller publishes the node's tunnel endpoint. The hub's
plan for the node arrives in its BalancingNode's `spec.tunnel`; each new plan is applied in the
background (starting wireguard-go can take a moment), changing only the peers and routes that differ.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from pathlib import Path
from typing import Any

from crds import TunnelPeer
from datapath.tunnel import DatapathError, TunnelManager, TunnelNode
from member.tunnels import tunnel_state

log = logging.getLogger("balancing.agent.tunnel")


def tunnel_node(name: str, state_dir: Path, cgroup_root: Path, node: dict[str, Any] | None) -> TunnelNode:
    """This node, seen from its agent: the agent's own network namespace (host network), its state
    directory, and wireguard-go in the node's `system` cgroup when there is one, so that it outlives
    agent restarts."""
    spec = (node or {}).get("spec") or {}
    cidrs = tuple(ipaddress.ip_network(c) for c in spec.get("podCIDRs") or [] if "." in c)
    system = cgroup_root / "system"
    return TunnelNode(name=name, netns=None, state_dir=state_dir,
                      cgroup=system if (system / "cgroup.procs").exists() else None, pod_cidrs=cidrs)


class TunnelWorker(threading.Thread):
    """Applies the latest planned tunnel of the node, one at a time, off the socket-LB loop."""

    def __init__(self, manager: TunnelManager) -> None:
        super().__init__(name="tunnel", daemon=True)
        self.manager = manager
        self._latest: dict[str, Any] | None = None
        self._applied: dict[str, Any] | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self.problem = ""

    def public_key(self) -> str:
        return self.manager.pubkey()

    def offer(self, tunnel: dict[str, Any] | None) -> None:
        if tunnel is None or not tunnel.get("proxyIPv4"):
            return  # not joined (yet): nothing to apply
        with self._lock:
            self._latest = tunnel
        self._wake.set()

    def run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                tunnel = self._latest
            if tunnel is None or tunnel == self._applied:
                continue
            try:
                peers = [TunnelPeer.model_validate(peer) for peer in tunnel.get("peers") or []]
                state = self.manager.parse(tunnel_state(str(tunnel["proxyIPv4"]), peers), source="hub plan")
                report = self.manager.apply(state)
                self._applied, self.problem = tunnel, ""
                log.info("tunnel applied", extra={"fields": {"summary": report.summary()}})
            except (DatapathError, ValueError) as error:
                self.problem = str(error)
                log.warning("tunnel not applied", extra={"fields": {"error": self.problem}})
