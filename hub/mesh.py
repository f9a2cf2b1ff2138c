"""Planning the WireGuard mesh between nodes: pure functions the hub operator calls.

Input is the set of NodeTunnelEndpoint objects (anything with the same `spec`/`status` fields, see
`TunnelEndpointLike`); output is what the hub writes back into their status: a proxy IPv4 per node and a
peer set per node. Nothing here talks to the API or the kernel.

- `find_pod_cidr_overlaps` / `check_pod_cidrs`: pod CIDRs of different clusters must not overlap, or one
  destination would have two tunnels.
- `allocate_proxy_ips`: node proxy addresses from a pool. The allocation is read back from the objects'
  status on every call, so it survives hub restarts with no state of its own; an address already held is
  kept, is never handed to a second node, and an exhausted pool is reported with the nodes left out.
- `plan_peers`: every node's peer set for a full mesh. A peer in another cluster carries its pod CIDRs
  and its proxy IP; a peer in the same cluster only its proxy IP (pod-to-pod inside a cluster is the
  cluster network's job), unless `same_cluster_pod_cidrs` is set.
- `plan_mesh`: all three in one call.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

DEFAULT_KEEPALIVE_SECONDS = 25
NodeKey = tuple[str, str]  # (cluster, node)


# --- the input: structurally a crds NodeTunnelEndpoint -------------------------------------------------


class TunnelEndpointSpecLike(Protocol):
    @property
    def cluster(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def public_key(self) -> str: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def pod_cidrs(self) -> Sequence[str]: ...


class TunnelEndpointStatusLike(Protocol):
    @property
    def proxy_ipv4(self) -> str | None: ...


class TunnelEndpointLike(Protocol):
    @property
    def spec(self) -> TunnelEndpointSpecLike: ...
    @property
    def status(self) -> TunnelEndpointStatusLike | None: ...


@dataclass(frozen=True)
class TunnelEndpointSpec:
    """Same fields as crds' NodeTunnelEndpointSpec; for callers and tests without API objects."""

    cluster: str
    node: str
    public_key: str
    endpoint: str
    pod_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class TunnelEndpointStatus:
    proxy_ipv4: str | None = None


@dataclass(frozen=True)
class TunnelEndpoint:
    spec: TunnelEndpointSpec
    status: TunnelEndpointStatus | None = None


def key_of(endpoint: TunnelEndpointLike) -> NodeKey:
    return (endpoint.spec.cluster, endpoint.spec.node)


def describe(key: NodeKey) -> str:
    return f"{key[0]}/{key[1]}"


# --- the output: structurally a crds TunnelPeer --------------------------------------------------------


@dataclass(frozen=True)
class PlannedPeer:
    """One peer of a node, with the field names of crds' TunnelPeer (`TunnelPeer(**asdict(peer))`)."""

    cluster: str
    node: str
    public_key: str
    endpoint: str
    allowed_ips: tuple[str, ...]
    persistent_keepalive_seconds: int = DEFAULT_KEEPALIVE_SECONDS


# --- errors --------------------------------------------------------------------------------------------


class MeshError(ValueError):
    user_facing = True


@dataclass(frozen=True)
class PodCIDROverlap:
    first: NodeKey
    first_cidr: str
    second: NodeKey
    second_cidr: str

    def __str__(self) -> str:
        return (
            f"pod CIDR {self.first_cidr} of {describe(self.first)} overlaps pod CIDR {self.second_cidr} "
            f"of {describe(self.second)}: pod CIDRs of different clusters must be disjoint"
        )


class PodCIDROverlapError(MeshError):
    def __init__(self, overlaps: Sequence[PodCIDROverlap]) -> None:
        self.overlaps = list(overlaps)
        super().__init__("; ".join(str(overlap) for overlap in overlaps))


class InvalidEndpoint(MeshError):
    def __init__(self, key: NodeKey, problem: str) -> None:
        self.key = key
        super().__init__(f"NodeTunnelEndpoint {describe(key)}: {problem}")


class ProxyPoolExhausted(MeshError):
    def __init__(self, pool: ipaddress.IPv4Network, capacity: int, unallocated: Sequence[NodeKey]) -> None:
        self.pool = pool
        self.capacity = capacity
        self.unallocated = list(unallocated)
        names = ", ".join(describe(key) for key in unallocated[:10])
        more = f" and {len(unallocated) - 10} more" if len(unallocated) > 10 else ""
        super().__init__(
            f"proxy IPv4 pool {pool} is exhausted: all {capacity} addresses are allocated, so "
            f"{len(unallocated)} node(s) got none ({names}{more}); widen the pool"
        )


# --- pod CIDRs -----------------------------------------------------------------------------------------


def _pod_networks(endpoint: TunnelEndpointLike) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for cidr in endpoint.spec.pod_cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=True))
        except ValueError as error:
            raise InvalidEndpoint(key_of(endpoint), f"podCIDRs entry {cidr!r}: {error}") from None
    return networks


def find_pod_cidr_overlaps(endpoints: Iterable[TunnelEndpointLike]) -> list[PodCIDROverlap]:
    """Every pair of overlapping pod CIDRs that belong to different clusters (O(n log n) sweep)."""
    intervals = []
    for endpoint in endpoints:
        for net in _pod_networks(endpoint):
            first, last = int(net.network_address), int(net.broadcast_address)
            intervals.append((net.version, first, last, key_of(endpoint), str(net)))
    intervals.sort()
    overlaps: list[PodCIDROverlap] = []
    open_intervals: list[tuple[int, int, int, NodeKey, str]] = []  # those that may still overlap what follows
    for interval in intervals:
        version, first, _last, key, cidr = interval
        open_intervals = [item for item in open_intervals if item[0] == version and item[2] >= first]
        for other in open_intervals:
            if other[3][0] != key[0]:
                overlaps.append(PodCIDROverlap(other[3], other[4], key, cidr))
        open_intervals.append(interval)
    return overlaps


def check_pod_cidrs(endpoints: Iterable[TunnelEndpointLike]) -> None:
    overlaps = find_pod_cidr_overlaps(endpoints)
    if overlaps:
        raise PodCIDROverlapError(overlaps)


# --- proxy IPs -----------------------------------------------------------------------------------------


@dataclass
class ProxyAllocation:
    pool: ipaddress.IPv4Network
    addresses: dict[NodeKey, ipaddress.IPv4Address] = field(default_factory=dict)
    newly_allocated: list[NodeKey] = field(default_factory=list)  # got an address they did not have
    unallocated: list[NodeKey] = field(default_factory=list)  # the pool ran out before them

    @property
    def capacity(self) -> int:
        return pool_capacity(self.pool)

    @property
    def exhausted(self) -> ProxyPoolExhausted | None:
        return ProxyPoolExhausted(self.pool, self.capacity, self.unallocated) if self.unallocated else None


def _usable_range(pool: ipaddress.IPv4Network) -> tuple[int, int]:
    """First and last usable address as integers: network and broadcast excluded below /31."""
    first, last = int(pool.network_address), int(pool.broadcast_address)
    if pool.prefixlen < 31:
        first, last = first + 1, last - 1
    return first, last


def pool_capacity(pool: ipaddress.IPv4Network) -> int:
    first, last = _usable_range(pool)
    return last - first + 1


def allocate_proxy_ips(pool: ipaddress.IPv4Network | str, endpoints: Iterable[TunnelEndpointLike]) -> ProxyAllocation:
    """Give every endpoint a proxy IPv4 from `pool`, keeping the ones already in their status.

    An address held by one node is never given to another. When two objects claim the same address
    (which only a hand edit can cause), the first in (cluster, node) order keeps it and the other is
    renumbered. Addresses outside the pool (the pool was changed) are renumbered too. New addresses are
    the lowest free ones. When the pool runs out, the remaining nodes are listed in `unallocated`.
    """
    network = ipaddress.IPv4Network(pool) if isinstance(pool, str) else pool
    first, last = _usable_range(network)
    ordered = sorted(endpoints, key=key_of)
    allocation = ProxyAllocation(network)
    taken: list[int] = []  # sorted
    needing: list[NodeKey] = []
    for endpoint in ordered:
        key = key_of(endpoint)
        held = endpoint.status.proxy_ipv4 if endpoint.status else None
        address = _parse_held(held)
        if address is not None and first <= int(address) <= last:
            position = bisect.bisect_left(taken, int(address))
            if position == len(taken) or taken[position] != int(address):
                taken.insert(position, int(address))
                allocation.addresses[key] = address
                continue
        needing.append(key)

    candidate = first
    cursor = 0  # index into taken of the first value >= candidate
    for key in needing:
        while cursor < len(taken) and taken[cursor] < candidate:
            cursor += 1
        while cursor < len(taken) and taken[cursor] == candidate:
            candidate += 1
            cursor += 1
        if candidate > last:
            allocation.unallocated.append(key)
            continue
        allocation.addresses[key] = ipaddress.IPv4Address(candidate)
        allocation.newly_allocated.append(key)
        candidate += 1
    return allocation


def _parse_held(text: str | None) -> ipaddress.IPv4Address | None:
    if not text:
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


# --- peers ---------------------------------------------------------------------------------------------


def plan_peers(
    endpoints: Iterable[TunnelEndpointLike],
    proxy_ips: Mapping[NodeKey, ipaddress.IPv4Address],
    *,
    keepalive_seconds: int = DEFAULT_KEEPALIVE_SECONDS,
    same_cluster_pod_cidrs: bool = False,
) -> dict[NodeKey, list[PlannedPeer]]:
    """Every node's peer set for a full mesh, peers sorted by (cluster, node)."""
    ordered = sorted(endpoints, key=key_of)
    # Each node as others see it: across clusters (pod CIDRs + proxy IP) and inside its cluster.
    across: dict[NodeKey, PlannedPeer] = {}
    inside: dict[NodeKey, PlannedPeer | None] = {}
    for endpoint in ordered:
        key = key_of(endpoint)
        proxy = proxy_ips.get(key)
        proxy_cidrs = (f"{proxy}/32",) if proxy is not None else ()
        pod_cidrs = tuple(str(net) for net in _pod_networks(endpoint))
        spec = endpoint.spec
        across[key] = PlannedPeer(
            spec.cluster, spec.node, spec.public_key, spec.endpoint, pod_cidrs + proxy_cidrs, keepalive_seconds
        )
        inside_ips = pod_cidrs + proxy_cidrs if same_cluster_pod_cidrs else proxy_cidrs
        inside[key] = (
            PlannedPeer(spec.cluster, spec.node, spec.public_key, spec.endpoint, inside_ips, keepalive_seconds)
            if inside_ips
            else None
        )
    plan: dict[NodeKey, list[PlannedPeer]] = {}
    for key in across:
        peers: list[PlannedPeer] = []
        for other, peer in across.items():
            if other == key:
                continue
            if other[0] != key[0]:
                peers.append(peer)
            elif (same := inside[other]) is not None:
                peers.append(same)
        plan[key] = peers
    return plan


@dataclass
class MeshPlan:
    proxy: ProxyAllocation
    peers: dict[NodeKey, list[PlannedPeer]]


def plan_mesh(
    pool: ipaddress.IPv4Network | str,
    endpoints: Iterable[TunnelEndpointLike],
    *,
    keepalive_seconds: int = DEFAULT_KEEPALIVE_SECONDS,
    same_cluster_pod_cidrs: bool = False,
) -> MeshPlan:
    """Check pod CIDRs (raises PodCIDROverlapError), allocate proxy IPs, and plan every peer set.

    A node left without a proxy IP (exhausted pool, see `plan.proxy.exhausted`) still gets peers and
    is still a peer for its pod CIDRs; it just has no proxy address yet.
    """
    endpoints = list(endpoints)
    check_pod_cidrs(endpoints)
    network = ipaddress.IPv4Network(pool) if isinstance(pool, str) else pool
    for endpoint in endpoints:
        for net in _pod_networks(endpoint):
            if net.version == 4 and net.overlaps(network):
                raise InvalidEndpoint(key_of(endpoint), f"pod CIDR {net} overlaps the proxy IPv4 pool {network}")
    allocation = allocate_proxy_ips(network, endpoints)
    peers = plan_peers(
        endpoints,
        allocation.addresses,
        keepalive_seconds=keepalive_seconds,
        same_cluster_pod_cidrs=same_cluster_pod_cidrs,
    )
    return MeshPlan(allocation, peers)
