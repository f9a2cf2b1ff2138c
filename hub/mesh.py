"""Planning the WireGuard mesh between nodes: pure functions over NodeTunnelEndpoint objects.

Input is the set of NodeTunnelEndpoint objects (crds); output is what the hub writes back into their
status: a proxy IPv4 per node and a peer set of crds TunnelPeers per node. Nothing here talks to
the API or the kernel.

- `find_overlaps` / `find_pod_cidr_overlaps` / `check_pod_cidrs`: pod CIDRs of different clusters
  must not overlap, or one destination would have two tunnels.
- `allocate_proxy_ips`: node proxy addresses from a pool. The allocation is read back from the
  objects' status on every call, so it survives hub restarts with no state of its own; an address
  already held is kept, is never handed to a second node, and an exhausted pool is reported with the
  nodes left out.
- `plan_peers`: every node's peer set for a full mesh. A peer in another cluster carries its pod
  CIDRs and its proxy IP as allowed (routed) IPs. A peer in the same cluster carries only its proxy IP
  as allowed IP (pod-to-pod inside a cluster is the cluster network's job) and its pod CIDRs as
  accepted IPs: a pod there that connects to this node's proxy IP is routed into the tunnel by its
  node, so its pod address must pass WireGuard's source check here, but nothing is routed back
  (the reply takes the cluster network). `same_cluster_pod_cidrs` routes them instead.
- `plan_mesh`: all three in one call.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from crds import NodeTunnelEndpoint, TunnelPeer
from hub.pools import AddressPool

DEFAULT_KEEPALIVE_SECONDS = 25
NodeKey = tuple[str, str]  # (cluster, node)


def key_of(endpoint: NodeTunnelEndpoint) -> NodeKey:
    return (endpoint.spec.cluster, endpoint.spec.node)


def describe(key: NodeKey) -> str:
    return f"{key[0]}/{key[1]}" if key[1] else key[0]


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

# Who claims a network: (cluster, node) for a node's pod CIDR, (cluster, "") for a cluster-wide one.
CidrClaim = tuple[NodeKey, str]


def _network(key: NodeKey, cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(cidr, strict=True)
    except ValueError as error:
        raise InvalidEndpoint(key, f"podCIDRs entry {cidr!r}: {error}") from None


def endpoint_claims(endpoints: Iterable[NodeTunnelEndpoint]) -> list[CidrClaim]:
    return [(key_of(endpoint), cidr) for endpoint in endpoints for cidr in endpoint.spec.pod_cidrs]


def find_overlaps(claims: Iterable[CidrClaim]) -> list[PodCIDROverlap]:
    """Every pair of overlapping networks claimed by different clusters (O(n log n) sweep)."""
    intervals = []
    for key, cidr in claims:
        net = _network(key, cidr)
        intervals.append((net.version, int(net.network_address), int(net.broadcast_address), key, str(net)))
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


def find_pod_cidr_overlaps(endpoints: Iterable[NodeTunnelEndpoint]) -> list[PodCIDROverlap]:
    return find_overlaps(endpoint_claims(endpoints))


def check_pod_cidrs(endpoints: Iterable[NodeTunnelEndpoint]) -> None:
    overlaps = find_pod_cidr_overlaps(endpoints)
    if overlaps:
        raise PodCIDROverlapError(overlaps)


def pool_overlaps(pool: ipaddress.IPv4Network, endpoints: Iterable[NodeTunnelEndpoint]) -> dict[NodeKey, str]:
    """Nodes whose pod CIDR overlaps the proxy pool, with the problem in words."""
    problems = {}
    for endpoint in endpoints:
        for cidr in endpoint.spec.pod_cidrs:
            net = _network(key_of(endpoint), cidr)
            if net.version == 4 and net.overlaps(pool):
                problems[key_of(endpoint)] = f"pod CIDR {net} overlaps the proxy IPv4 pool {pool}"
                break
    return problems


# --- proxy IPs -----------------------------------------------------------------------------------------


@dataclass
class ProxyAllocation:
    pool: ipaddress.IPv4Network
    capacity: int
    addresses: dict[NodeKey, ipaddress.IPv4Address] = field(default_factory=dict)
    newly_allocated: list[NodeKey] = field(default_factory=list)  # got an address they did not have
    unallocated: list[NodeKey] = field(default_factory=list)  # the pool ran out before them

    @property
    def exhausted(self) -> ProxyPoolExhausted | None:
        return ProxyPoolExhausted(self.pool, self.capacity, self.unallocated) if self.unallocated else None


def pool_capacity(pool: ipaddress.IPv4Network) -> int:
    return AddressPool(pool).capacity


def allocate_proxy_ips(
    pool: ipaddress.IPv4Network | str, endpoints: Iterable[NodeTunnelEndpoint]
) -> ProxyAllocation:
    """Give every endpoint a proxy IPv4 from `pool`, keeping the ones already in their status.

    An address held by one node is never given to another. When two objects claim the same address
    (which only a hand edit can cause), the first in (cluster, node) order keeps it and the other is
    renumbered. Addresses outside the pool (the pool was changed) are renumbered too. New addresses are
    the lowest free ones. When the pool runs out, the remaining nodes are listed in `unallocated`.
    """
    addresses = AddressPool(pool)
    allocation = ProxyAllocation(addresses.network, addresses.capacity)
    needing: list[NodeKey] = []
    for endpoint in sorted(endpoints, key=key_of):
        held = addresses.claim(endpoint.status.proxy_ipv4 if endpoint.status else None)
        if held is not None:
            allocation.addresses[key_of(endpoint)] = held
        else:
            needing.append(key_of(endpoint))
    for key in needing:
        address = addresses.allocate()
        if address is None:
            allocation.unallocated.append(key)
            continue
        allocation.addresses[key] = address
        allocation.newly_allocated.append(key)
    return allocation


# --- peers ---------------------------------------------------------------------------------------------


def _peer(
    endpoint: NodeTunnelEndpoint, allowed_ips: list[str], accepted_ips: list[str], keepalive_seconds: int
) -> TunnelPeer:
    # The fields come from a validated NodeTunnelEndpoint: no need to check them again, which at 500
    # nodes would cost more than the whole plan.
    spec = endpoint.spec
    return TunnelPeer.model_construct(
        cluster=spec.cluster,
        node=spec.node,
        public_key=spec.public_key,
        endpoint=spec.endpoint,
        allowed_ips=allowed_ips,
        accepted_ips=accepted_ips or None,
        persistent_keepalive_seconds=keepalive_seconds,
    )


def plan_peers(
    endpoints: Iterable[NodeTunnelEndpoint],
    proxy_ips: Mapping[NodeKey, ipaddress.IPv4Address],
    *,
    keepalive_seconds: int = DEFAULT_KEEPALIVE_SECONDS,
    same_cluster_pod_cidrs: bool = False,
) -> dict[NodeKey, list[TunnelPeer]]:
    """Every node's peer set for a full mesh, peers sorted by (cluster, node).

    Each node is one TunnelPeer object as other clusters see it and one as its own cluster sees it,
    shared by every peer list (treat them as read-only). A same-cluster node without a proxy IP is
    still a peer of its cluster for its pod CIDRs (accepted only), so its pods reach the other nodes'
    proxy IPs.
    """
    ordered = sorted(endpoints, key=key_of)
    across: dict[NodeKey, TunnelPeer] = {}
    inside: dict[NodeKey, TunnelPeer | None] = {}
    for endpoint in ordered:
        key = key_of(endpoint)
        proxy = proxy_ips.get(key)
        proxy_cidrs = [f"{proxy}/32"] if proxy is not None else []
        pod_cidrs = [str(_network(key, cidr)) for cidr in endpoint.spec.pod_cidrs]
        across[key] = _peer(endpoint, pod_cidrs + proxy_cidrs, [], keepalive_seconds)
        if same_cluster_pod_cidrs:
            routed, accepted = pod_cidrs + proxy_cidrs, []
        else:
            routed, accepted = proxy_cidrs, pod_cidrs
        inside[key] = _peer(endpoint, routed, accepted, keepalive_seconds) if routed or accepted else None
    plan: dict[NodeKey, list[TunnelPeer]] = {}
    for key in across:
        peers: list[TunnelPeer] = []
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
    peers: dict[NodeKey, list[TunnelPeer]]


def plan_mesh(
    pool: ipaddress.IPv4Network | str,
    endpoints: Iterable[NodeTunnelEndpoint],
    *,
    keepalive_seconds: int = DEFAULT_KEEPALIVE_SECONDS,
    same_cluster_pod_cidrs: bool = False,
) -> MeshPlan:
    """Check pod CIDRs (raises PodCIDROverlapError, InvalidEndpoint), allocate proxy IPs, plan peers.

    A node left without a proxy IP (exhausted pool, see `plan.proxy.exhausted`) still gets peers and
    is still a peer for its pod CIDRs; it just has no proxy address yet. The hub operator refuses
    overlapping clusters and nodes before it calls this (hub.members), so these errors are for
    callers that want the whole set or nothing.
    """
    endpoints = list(endpoints)
    check_pod_cidrs(endpoints)
    network = ipaddress.IPv4Network(pool) if isinstance(pool, str) else pool
    for key, problem in pool_overlaps(network, endpoints).items():
        raise InvalidEndpoint(key, problem)
    allocation = allocate_proxy_ips(network, endpoints)
    peers = plan_peers(
        endpoints,
        allocation.addresses,
        keepalive_seconds=keepalive_seconds,
        same_cluster_pod_cidrs=same_cluster_pod_cidrs,
    )
    return MeshPlan(allocation, peers)
