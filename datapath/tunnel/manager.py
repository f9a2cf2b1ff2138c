"""The tunnel manager of one node: level-triggered reconciliation of keys, interface, peers and routes.

`apply` reads the actual state back from the kernel (`wg show dump`, netlink), diffs it against the
desired state, and changes only the difference:

- peers are added, updated and removed one by one with `wg set` (never `wg setconf`), so peers that did
  not change keep their sessions and their traffic; an update sends only the attributes that differ;
- additions and updates go before removals in the same `wg set`, so an allowed IP moving from an old
  peer to a new one (a key rotation) is never unrouted;
- routes and the proxy address are diffed the same way. Only a peer's allowed IPs are routed; its
  accepted IPs (a same-cluster peer's pod CIDRs, which the cluster network routes) are only in
  WireGuard's allowed-ips, so the peer may send from them: they get no route, no route-conflict check
  and no fence.

Everything is validated before the first change, so a bad state leaves the running config untouched.
A manager that restarts finds the interface and its peers as they were and changes nothing.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datapath.tunnel import netlink
from datapath.tunnel.device import TunnelDevice
from datapath.tunnel.errors import InvalidTunnelState, TunnelError
from datapath.tunnel.keys import KeyStore
from datapath.tunnel.node import TunnelNode
from datapath.tunnel.spec import DEFAULT_INTERFACE, IPNetwork, TunnelState, parse_state
from datapath.tunnel.wg import DumpDevice, WgControl, peer_set_args

APPLIED_FILE = "applied.json"
LOCK_FILE = "lock"
PEERS_PER_WG_SET = 200  # keeps each `wg set` argv well below ARG_MAX


@dataclass
class ApplyReport:
    interface_created: bool = False
    key_set: bool = False
    listen_port_set: bool = False
    address_changes: int = 0
    peers_added: list[str] = field(default_factory=list)
    peers_updated: list[str] = field(default_factory=list)
    peers_removed: list[str] = field(default_factory=list)
    routes_set: int = 0
    routes_fenced: int = 0
    routes_deleted: int = 0

    @property
    def changed(self) -> bool:
        return any(
            (
                self.interface_created,
                self.key_set,
                self.listen_port_set,
                self.address_changes,
                self.peers_added,
                self.peers_updated,
                self.peers_removed,
                self.routes_set,
                self.routes_fenced,
                self.routes_deleted,
            )
        )

    def summary(self) -> str:
        if not self.changed:
            return "no change"
        parts = []
        if self.interface_created:
            parts.append("interface created")
        if self.key_set:
            parts.append("private key set")
        if self.listen_port_set:
            parts.append("listen port set")
        if self.address_changes:
            parts.append("proxy address set")
        parts.append(f"peers +{len(self.peers_added)} ~{len(self.peers_updated)} -{len(self.peers_removed)}")
        parts.append(f"routes set {self.routes_set}, fenced {self.routes_fenced}, deleted {self.routes_deleted}")
        return "; ".join(parts)


@dataclass
class PeerStatus:
    public_key: str
    label: str
    endpoint: str | None
    allowed_ips: list[str]  # routed to the peer through the interface
    accepted_ips: list[str]  # in WireGuard's allowed-ips for the peer, but not routed to it
    latest_handshake: int  # unix seconds, 0 is never
    handshake_age_seconds: float | None
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int


@dataclass
class TunnelStatus:
    node: str
    interface: str
    up: bool
    implementation: str | None = None
    pid: int | None = None
    public_key: str | None = None
    listen_port: int | None = None
    proxy_ipv4: str | None = None
    tunnel_routes: list[str] = field(default_factory=list)
    fenced_routes: list[str] = field(default_factory=list)
    peers: list[PeerStatus] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class TunnelManager:
    def __init__(self, node: TunnelNode, interface: str | None = None) -> None:
        self.node = node
        self.keys = KeyStore(node.tunnel_dir)
        self._interface = interface

    @property
    def interface(self) -> str:
        if self._interface:
            return self._interface
        runtime = TunnelDevice(self.node, DEFAULT_INTERFACE).runtime()
        return runtime.interface if runtime else DEFAULT_INTERFACE

    def device(self, interface: str | None = None) -> TunnelDevice:
        return TunnelDevice(self.node, interface or self.interface)

    # -- desired state -----------------------------------------------------------------------------

    def parse(self, data: object, source: str = "<state>") -> TunnelState:
        return parse_state(
            data, source=source, own_pod_cidrs=self.node.pod_cidrs, own_public_key=self.keys.public_key()
        )

    def load(self, path: Path) -> TunnelState:
        """Read and validate a state file (YAML or JSON)."""
        try:
            text = path.read_text()
        except OSError as error:
            raise TunnelError(f"cannot read state file {path}: {error.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise InvalidTunnelState(str(path), [f"not YAML or JSON: {error}".replace("\n", " ")]) from None
        return self.parse(data, source=str(path))

    # -- verbs -------------------------------------------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One tunnel manager at a time per node: apply, rotate-key, down and pubkey hold this lock."""
        self.node.tunnel_dir.mkdir(parents=True, exist_ok=True)
        self.node.tunnel_dir.chmod(0o700)
        with open(self.node.tunnel_dir / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def pubkey(self) -> str:
        with self._exclusive():
            return self.keys.ensure()

    def apply(self, state: TunnelState) -> ApplyReport:
        with self._exclusive():
            return self._apply(state)

    def _apply(self, state: TunnelState) -> ApplyReport:
        result = ApplyReport()
        self.node.check_netns()
        running = TunnelDevice(self.node, state.interface).runtime()
        if running is not None and running.interface != state.interface:
            raise TunnelError(
                f"node {self.node.name} runs its tunnel on {running.interface}, the state asks for "
                f"{state.interface}; run `balancing datapath tunnel down` first to switch interfaces"
            )
        with netlink.netlink(self.node.netns) as nl:
            ours, foreign = netlink.dump_routes(nl)  # routes change only below, and only ours
        self._check_route_conflicts(state, foreign)
        self.keys.ensure()
        device = self.device(state.interface)
        runtime, result.interface_created = device.ensure()
        control = device.control(runtime)
        actual = control.dump()

        own = self._set_identity(control, actual, state, result)
        with netlink.netlink(self.node.netns) as nl:
            index = netlink.link_index(nl, state.interface)
            if index is None:
                raise TunnelError(f"node {self.node.name}: interface {state.interface} vanished during apply")
            netlink.set_link_up(nl, index)
            added, removed = netlink.sync_proxy_address(nl, index, state.proxy_ipv4)
            result.address_changes = added + removed
            self._sync_peers(control, actual, state, result)
            self._sync_routes(nl, index, state, ours, result)
        self._record_applied(state, own)
        return result

    def rotate_key(self) -> tuple[str | None, str]:
        """A fresh keypair, set on the running interface at once; peers must then switch to the new key.

        The rotating node's packets queue (they are not dropped) until a peer that has switched shakes
        hands; each peer's switch sends a keepalive at once, which starts that handshake.
        """
        with self._exclusive():
            device = self.device()
            runtime = device.current()
            old, new = self.keys.rotate()
            if runtime is not None:
                device.control(runtime).set(["private-key", str(self.keys.private_key_path)])
            return old, new

    def down(self) -> bool:
        self.node.check_netns()
        with self._exclusive():
            removed = self.device().down()
            Path(self.node.tunnel_dir / APPLIED_FILE).unlink(missing_ok=True)
            return removed

    def status(self) -> TunnelStatus:
        device = self.device()
        runtime = device.current()
        status = TunnelStatus(node=self.node.name, interface=device.interface, up=runtime is not None)
        if runtime is None:
            status.public_key = self.keys.public_key()
            return status
        status.implementation = runtime.implementation
        status.pid = runtime.pid
        dump = device.control(runtime).dump()
        status.public_key = dump.public_key
        status.listen_port = dump.listen_port
        with netlink.netlink(self.node.netns) as nl:
            index = netlink.link_index(nl, device.interface)
            if index is not None:
                addresses = netlink.ipv4_addresses(nl, index)
                status.proxy_ipv4 = str(min(addresses).ip) if addresses else None
            ours = netlink.dump_routes(nl)[0]
        for route in sorted(ours.values(), key=lambda r: str(r.destination)):
            kind = status.fenced_routes if route.kind == netlink.RTN_UNREACHABLE else status.tunnel_routes
            kind.append(str(route.destination))
        routed = {net for net, route in ours.items() if route.kind == netlink.RTN_UNICAST and route.oif == index}
        labels = self._applied_labels()
        now = time.time()
        for peer in sorted(dump.peers.values(), key=lambda p: labels.get(p.public_key, p.public_key)):
            status.peers.append(
                PeerStatus(
                    public_key=peer.public_key,
                    label=labels.get(peer.public_key, ""),
                    endpoint=peer.endpoint,
                    allowed_ips=[str(net) for net in peer.allowed_ips if net in routed],
                    accepted_ips=[str(net) for net in peer.allowed_ips if net not in routed],
                    latest_handshake=peer.latest_handshake,
                    handshake_age_seconds=round(now - peer.latest_handshake, 1) if peer.latest_handshake else None,
                    rx_bytes=peer.rx_bytes,
                    tx_bytes=peer.tx_bytes,
                    persistent_keepalive=peer.persistent_keepalive,
                )
            )
        return status

    # -- steps of apply ----------------------------------------------------------------------------

    def _check_route_conflicts(self, state: TunnelState, foreign: dict[IPNetwork, netlink.Route]) -> None:
        """A peer network that someone else already routes (same prefix, main table) is refused up front.

        Only the networks the tunnel routes (allowed IPs): an accepted network is routed by someone else.
        """
        problems = []
        for position, peer in enumerate(state.peers):
            for net in peer.allowed_ips:
                if net in foreign:
                    problems.append(
                        f"peers[{position}] ({peer.description}): allowedIPs {net} is already routed on node "
                        f"{self.node.name} by a route the tunnel manager does not own; remove that route or "
                        "this network"
                    )
        if problems:
            raise InvalidTunnelState(f"for node {self.node.name}", problems)

    def _set_identity(self, control: WgControl, actual: DumpDevice, state: TunnelState, result: ApplyReport) -> str:
        own = self.keys.ensure()
        words: list[str] = []
        if actual.public_key != own:
            words += ["private-key", str(self.keys.private_key_path)]
            result.key_set = True
        if actual.listen_port != state.listen_port:
            words += ["listen-port", str(state.listen_port)]
            result.listen_port_set = True
        control.set(words)
        return own

    def _sync_peers(self, control: WgControl, actual: DumpDevice, state: TunnelState, result: ApplyReport) -> None:
        changes: list[list[str]] = []
        for peer in state.peers:
            current = actual.peers.get(peer.public_key)
            words = peer_set_args(peer, current)
            if words:
                changes.append(words)
                (result.peers_added if current is None else result.peers_updated).append(peer.description)
        for key in actual.peers:
            if key not in state.peer_index:
                changes.append(["peer", key, "remove"])
                result.peers_removed.append(key)
        for start in range(0, len(changes), PEERS_PER_WG_SET):
            control.set([word for change in changes[start : start + PEERS_PER_WG_SET] for word in change])

    def _sync_routes(
        self, nl: Any, index: int, state: TunnelState, ours: dict[IPNetwork, netlink.Route], result: ApplyReport
    ) -> None:
        wanted = state.routed_networks()
        prefsrc = str(state.proxy_ipv4) if state.proxy_ipv4 else None
        for net in wanted:
            route = netlink.Route(net, netlink.RTN_UNICAST, index, prefsrc if net.version == 4 else None)
            if ours.get(net) != route:
                netlink.route_to_tunnel(nl, net, index, state.proxy_ipv4)
                result.routes_set += 1
        wanted_set = set(wanted)
        accepted = [net for peer in state.peers for net in peer.accepted_ips]
        for net, route in ours.items():
            if net in wanted_set:
                continue
            if _covered(net, wanted) or _covered(net, accepted):
                # a fence inside a network that a peer claims again, or a network now only accepted from a
                # peer: the cluster network routes it, and a fence would cut it off
                netlink.delete_route(nl, route)
                result.routes_deleted += 1
            elif route.kind != netlink.RTN_UNREACHABLE:
                netlink.route_unreachable(nl, net)
                result.routes_fenced += 1

    def _record_applied(self, state: TunnelState, own_public_key: str) -> None:
        record = {
            "interface": state.interface,
            "publicKey": own_public_key,
            "listenPort": state.listen_port,
            "proxyIPv4": str(state.proxy_ipv4) if state.proxy_ipv4 else None,
            "peers": [
                {"label": peer.description, "publicKey": peer.public_key, "endpoint": str(peer.endpoint)}
                for peer in state.peers
            ],
        }
        path = self.node.tunnel_dir / APPLIED_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record, indent=2) + "\n")
        temporary.replace(path)

    def _applied_labels(self) -> dict[str, str]:
        try:
            record = json.loads((self.node.tunnel_dir / APPLIED_FILE).read_text())
            return {peer["publicKey"]: peer["label"] for peer in record.get("peers", [])}
        except (OSError, ValueError, KeyError, TypeError):
            return {}


def _covered(net: IPNetwork, wanted: list[IPNetwork]) -> bool:
    return any(net.version == other.version and net.subnet_of(other) for other in wanted)  # type: ignore[arg-type]
