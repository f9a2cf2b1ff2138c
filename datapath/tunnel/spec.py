"""The desired tunnel state of one node, and its validation.

This module is pure: it parses and checks, and touches nothing. `apply` validates the whole state
before it changes anything, so an invalid file leaves the running configuration as it was.

File format (YAML or JSON; documented in docs/tunnels.md):

    interface: bfwg0            # optional, default bfwg0
    listenPort: 51820           # optional, default 51820
    proxyIPv4: 100.96.0.1       # optional: this node's proxy address, bound on the interface
    podCIDRs: [10.101.1.0/24]   # optional: this node's own pod CIDRs (no peer may claim them)
    peers:
      - cluster: member-2       # optional labels, used in messages
        node: member-2-node-1
        publicKey: <44 characters of base64>
        endpoint: 172.30.2.11:51820
        allowedIPs: [10.102.1.0/24, 100.96.0.2/32]  # routed into the tunnel to this peer
        persistentKeepaliveSeconds: 25 # optional, default 25; 0 turns it off
      - cluster: member-1       # a peer in this node's own cluster
        node: member-1-node-2
        publicKey: <44 characters of base64>
        endpoint: 172.30.1.12:51820
        allowedIPs: [100.96.0.3/32]
        acceptedIPs: [10.101.2.0/24]  # optional: accepted from this peer, never routed to it

A peer's allowed and accepted IPs together are WireGuard's allowed-ips for it (the sources it may
send from); only the allowed IPs get kernel routes through the interface.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datapath.tunnel.errors import InvalidTunnelState

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_INTERFACE = "bfwg0"
DEFAULT_LISTEN_PORT = 51820
DEFAULT_KEEPALIVE = 25
KEY_BYTES = 32

_INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_STATE_FIELDS = {"interface", "listenPort", "proxyIPv4", "podCIDRs", "peers"}
_PEER_FIELDS = {
    "name",
    "cluster",
    "node",
    "publicKey",
    "endpoint",
    "allowedIPs",
    "acceptedIPs",
    "persistentKeepaliveSeconds",
}


def check_key(text: object) -> str:
    """Return `text` if it is a WireGuard key (base64 of 32 bytes); raise ValueError saying why not."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a WireGuard key: expected a string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(text) != 44 or len(raw) != KEY_BYTES:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ValueError(f"{shown!r} is not a WireGuard key: expected 44 characters of base64 encoding 32 bytes")
    return text


@dataclass(frozen=True, order=True)
class Endpoint:
    host: IPAddress
    port: int

    def __str__(self) -> str:
        if self.host.version == 6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: object) -> Endpoint:
        """`HOST:PORT` or `[IPv6]:PORT`, the host an IP address (the diff against `wg` needs literals)."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"endpoint {text!r} is not HOST:PORT")
        if text.startswith("["):
            host_text, sep, port_text = text[1:].partition("]:")
        else:
            host_text, sep, port_text = text.rpartition(":")
            if ":" in host_text:  # a bare IPv6 address, whose last group looked like a port
                sep = ""
        if not sep:
            raise ValueError(f"endpoint {text!r} has no port: expected HOST:PORT, for example 172.30.2.11:51820")
        try:
            host = ipaddress.ip_address(host_text)
        except ValueError:
            raise ValueError(f"endpoint {text!r}: host {host_text!r} is not an IP address") from None
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"endpoint {text!r}: port {port_text!r} is not a number in 1-65535")
        return cls(host, int(port_text))


@dataclass(frozen=True)
class PeerSpec:
    public_key: str
    endpoint: Endpoint
    allowed_ips: tuple[IPNetwork, ...]  # routed through the tunnel to this peer; sorted, de-duplicated
    persistent_keepalive: int = DEFAULT_KEEPALIVE  # seconds; 0 is off
    label: str = ""
    accepted_ips: tuple[IPNetwork, ...] = ()  # accepted from this peer, never routed; sorted, de-duplicated

    @property
    def description(self) -> str:
        return self.label or self.public_key[:8]

    @property
    def wireguard_ips(self) -> tuple[IPNetwork, ...]:
        """WireGuard's allowed-ips of the peer: what it may send from, routed or only accepted."""
        return tuple(sorted({*self.allowed_ips, *self.accepted_ips}, key=_network_sort_key))


@dataclass(frozen=True)
class TunnelState:
    peers: tuple[PeerSpec, ...] = ()
    listen_port: int = DEFAULT_LISTEN_PORT
    proxy_ipv4: ipaddress.IPv4Address | None = None
    pod_cidrs: tuple[IPNetwork, ...] = ()
    interface: str = DEFAULT_INTERFACE
    peer_index: dict[str, PeerSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.peer_index.update({peer.public_key: peer for peer in self.peers})

    def routed_networks(self) -> list[IPNetwork]:
        """Every network that goes into the tunnel: the union of the peers' allowed IPs (not accepted IPs)."""
        return sorted({net for peer in self.peers for net in peer.allowed_ips}, key=_network_sort_key)


def _network_sort_key(net: IPNetwork) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


def parse_network(text: object) -> IPNetwork:
    """An IP network in CIDR notation; a bare address means a single host. Host bits must be zero."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a CIDR: expected a string such as 10.102.1.0/24")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not a CIDR such as 10.102.1.0/24") from None
        raise ValueError(f"{text!r} has host bits set: did you mean {loose}?") from None


def parse_state(
    data: object,
    *,
    source: str = "<state>",
    own_pod_cidrs: Iterable[IPNetwork] = (),
    own_public_key: str | None = None,
) -> TunnelState:
    """Validate a desired state (already loaded from YAML/JSON) and return it; collect every problem."""
    problems: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise InvalidTunnelState(source, [f"expected a mapping with fields {sorted(_STATE_FIELDS)}, got {kind}"])
    for unknown in sorted(set(map(str, data)) - _STATE_FIELDS):
        problems.append(f"unknown field {unknown!r} (known: {', '.join(sorted(_STATE_FIELDS))})")

    interface = data.get("interface", DEFAULT_INTERFACE)
    if not isinstance(interface, str) or not _INTERFACE_NAME.match(interface) or interface in {".", ".."}:
        problems.append(f"interface {interface!r} is not an interface name (1-15 of A-Z a-z 0-9 _ . -)")
        interface = DEFAULT_INTERFACE

    listen_port = data.get("listenPort", DEFAULT_LISTEN_PORT)
    if not _is_int(listen_port) or not 1 <= listen_port <= 65535:
        problems.append(f"listenPort {listen_port!r} is not a port number in 1-65535")
        listen_port = DEFAULT_LISTEN_PORT

    proxy_ipv4: ipaddress.IPv4Address | None = None
    raw_proxy = data.get("proxyIPv4")
    if raw_proxy not in (None, ""):
        try:
            proxy_ipv4 = _parse_proxy_ip(raw_proxy)
        except ValueError as error:
            problems.append(f"proxyIPv4: {error}")

    pod_cidrs: list[IPNetwork] = list(own_pod_cidrs)
    for index, raw in enumerate(_as_list(data.get("podCIDRs"), "podCIDRs", problems)):
        try:
            pod_cidrs.append(parse_network(raw))
        except ValueError as error:
            problems.append(f"podCIDRs[{index}]: {error}")

    peers: list[PeerSpec] = []
    for index, raw_peer in enumerate(_as_list(data.get("peers"), "peers", problems)):
        peer = _parse_peer(index, raw_peer, problems)
        if peer is not None:
            peers.append(peer)

    problems.extend(_cross_checks(peers, pod_cidrs, proxy_ipv4, own_public_key))
    if problems:
        raise InvalidTunnelState(source, problems)
    return TunnelState(
        peers=tuple(peers),
        listen_port=int(listen_port),
        proxy_ipv4=proxy_ipv4,
        pod_cidrs=tuple(sorted(set(pod_cidrs), key=_network_sort_key)),
        interface=interface,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_list(value: object, name: str, problems: list[str]) -> Sequence[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{name} must be a list, got {type(value).__name__}")
        return []
    return value


def _parse_proxy_ip(raw: object) -> ipaddress.IPv4Address:
    text = str(raw)
    if text.endswith("/32"):
        text = text[:-3]
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"{raw!r} is not an IPv4 address") from None


def _peer_label(index: int, raw: Mapping[str, Any]) -> str:
    name = raw.get("name") or raw.get("node")
    cluster = raw.get("cluster")
    if name and cluster and not str(name).startswith(str(cluster)):
        name = f"{cluster}/{name}"
    return str(name or "")


def _parse_peer(index: int, raw: object, problems: list[str]) -> PeerSpec | None:
    if not isinstance(raw, Mapping):
        problems.append(f"peers[{index}] must be a mapping with publicKey, endpoint and allowedIPs")
        return None
    label = _peer_label(index, raw)
    where = f"peers[{index}]" + (f" ({label})" if label else "")
    before = len(problems)
    for unknown in sorted(set(map(str, raw)) - _PEER_FIELDS):
        problems.append(f"{where}: unknown field {unknown!r} (known: {', '.join(sorted(_PEER_FIELDS))})")

    public_key = ""
    if "publicKey" not in raw:
        problems.append(f"{where}: publicKey is missing")
    else:
        try:
            public_key = check_key(raw["publicKey"])
        except ValueError as error:
            problems.append(f"{where}: publicKey {error}")

    endpoint: Endpoint | None = None
    if "endpoint" not in raw:
        problems.append(f"{where}: endpoint is missing (HOST:PORT of the peer's underlay address)")
    else:
        try:
            endpoint = Endpoint.parse(raw["endpoint"])
        except ValueError as error:
            problems.append(f"{where}: {error}")

    allowed = _parse_networks(raw, "allowedIPs", where, problems)
    accepted = _parse_networks(raw, "acceptedIPs", where, problems)
    for net in accepted:
        for routed in allowed:
            if net.version == routed.version and net.overlaps(routed):
                problems.append(
                    f"{where}: acceptedIPs {net} overlaps allowedIPs {routed}: a network is either routed to the"
                    " peer (allowedIPs) or only accepted from it (acceptedIPs)"
                )

    keepalive = raw.get("persistentKeepaliveSeconds")
    if keepalive is None:
        keepalive = DEFAULT_KEEPALIVE
    if not _is_int(keepalive) or not 0 <= keepalive <= 65535:
        problems.append(f"{where}: persistentKeepaliveSeconds {keepalive!r} is not a number of seconds in 0-65535")

    if len(problems) > before or endpoint is None:
        return None
    return PeerSpec(
        public_key=public_key,
        endpoint=endpoint,
        allowed_ips=tuple(sorted(allowed, key=_network_sort_key)),
        persistent_keepalive=int(keepalive),
        label=label or f"peers[{index}]",
        accepted_ips=tuple(sorted(accepted, key=_network_sort_key)),
    )


def _parse_networks(raw: Mapping[str, Any], name: str, where: str, problems: list[str]) -> set[IPNetwork]:
    networks: set[IPNetwork] = set()
    for position, item in enumerate(_as_list(raw.get(name), f"{where}: {name}", problems)):
        try:
            networks.add(parse_network(item))
        except ValueError as error:
            problems.append(f"{where}: {name}[{position}] {error}")
    return networks


def _claims(peer: PeerSpec) -> list[tuple[IPNetwork, str]]:
    """Every network a peer claims, with the field that claims it."""
    return [(net, "allowedIPs") for net in peer.allowed_ips] + [(net, "acceptedIPs") for net in peer.accepted_ips]


def _cross_checks(
    peers: Sequence[PeerSpec],
    pod_cidrs: Sequence[IPNetwork],
    proxy_ipv4: ipaddress.IPv4Address | None,
    own_public_key: str | None,
) -> list[str]:
    """Problems between entries: duplicates, overlaps with this node, overlaps between peers, loops.

    Sorted sweeps keep this O(n log n), so a 500-peer mesh validates in milliseconds.
    """
    problems: list[str] = []

    def where(index: int) -> str:
        return f"peers[{index}] ({peers[index].description})"

    seen_keys: dict[str, int] = {}
    for index, peer in enumerate(peers):
        if peer.public_key == own_public_key:
            problems.append(f"{where(index)}: publicKey is this node's own public key")
        first = seen_keys.setdefault(peer.public_key, index)
        if first != index:
            problems.append(f"{where(index)}: publicKey is the same as {where(first)}")

    own: list[tuple[IPNetwork, str]] = [(cidr, f"this node's own pod CIDR {cidr}") for cidr in pod_cidrs]
    if proxy_ipv4 is not None:
        own.append((ipaddress.IPv4Network(proxy_ipv4), f"this node's own proxyIPv4 {proxy_ipv4}"))
    for index, peer in enumerate(peers):
        for net, name in _claims(peer):
            for own_net, what in own:
                if net.version == own_net.version and net.overlaps(own_net):
                    problems.append(f"{where(index)}: {name} {net} overlaps {what}")

    # Each claimed network, routed or accepted, as an interval (version, first, last, peer index, network,
    # field), sorted by start: WireGuard gives a source to one peer only.
    claimed = sorted(
        (net.version, int(net.network_address), int(net.broadcast_address), index, net, name)
        for index, peer in enumerate(peers)
        for net, name in _claims(peer)
    )
    widest: tuple[int, int, int, int, IPNetwork, str] | None = None  # the interval reaching furthest so far
    for interval in claimed:
        version, first, last, index, net, name = interval
        if widest is not None and widest[0] == version and first <= widest[2] and widest[3] != index:
            problems.append(f"{where(index)}: {name} {net} overlaps {widest[4]} of {where(widest[3])}")
        if widest is None or widest[0] != version or last > widest[2]:
            widest = interval

    # No endpoint may lie inside any routed (allowed) IPs: the tunnel would route into itself.
    intervals = [interval[:5] for interval in claimed if interval[5] == "allowedIPs"]
    starts = [(version, first) for version, first, _last, _index, _net in intervals]
    reach: list[tuple[int, int]] = []  # running maximum of (version, last) over the sorted intervals
    for version, _first, last, _index, _net in intervals:
        reach.append((version, max(last, reach[-1][1])) if reach and reach[-1][0] == version else (version, last))
    for index, peer in enumerate(peers):
        address = (peer.endpoint.host.version, int(peer.endpoint.host))
        position = bisect.bisect_right(starts, address) - 1
        while position >= 0 and reach[position][0] == address[0] and reach[position][1] >= address[1]:
            version, first, last, owner, net = intervals[position]
            if first <= address[1] <= last:
                problems.append(
                    f"{where(index)}: endpoint {peer.endpoint} lies inside allowedIPs {net} of {where(owner)}, "
                    "which would route the tunnel into itself"
                )
                break
            position -= 1
    return problems
