"""Mesh planning: peer sets, proxy IP allocation, pod CIDR overlap checks (pure functions on crds objects)."""

from __future__ import annotations

import base64
import ipaddress
import random

import pytest

from crds import InvalidObjectError, NodeTunnelEndpoint, parse_object
from hub.mesh import (
    InvalidEndpoint,
    PodCIDROverlapError,
    ProxyPoolExhausted,
    allocate_proxy_ips,
    check_pod_cidrs,
    find_pod_cidr_overlaps,
    plan_mesh,
    plan_peers,
)

POOL = ipaddress.IPv4Network("100.96.0.0/16")


def key(seed: str) -> str:
    return base64.b64encode(seed.encode().ljust(32, b"k")[:32]).decode()


def endpoint(cluster: int, node: int, *cidrs: str, proxy: str | None = None) -> NodeTunnelEndpoint:
    return NodeTunnelEndpoint.for_node(
        f"member-{cluster}",
        f"member-{cluster}-node-{node}",
        key(f"c{cluster}n{node}"),
        f"172.30.{cluster}.{10 + node}:51820",
        cidrs or (f"10.{100 + cluster}.{node}.0/24",),
        proxy,
    )


def lab_endpoints() -> list[NodeTunnelEndpoint]:
    return [endpoint(cluster, node) for cluster in (1, 2) for node in (1, 2)]


def with_status(
    endpoints: list[NodeTunnelEndpoint], addresses: dict[tuple[str, str], ipaddress.IPv4Address]
) -> list[NodeTunnelEndpoint]:
    """What the hub reads back after writing the allocation into each object's status."""
    return [
        NodeTunnelEndpoint.for_node(
            e.spec.cluster, e.spec.node, e.spec.public_key, e.spec.endpoint, e.spec.pod_cidrs,
            str(addresses[(e.spec.cluster, e.spec.node)]),
        )
        for e in endpoints
    ]


# --- peer sets ------------------------------------------------------------------------------------------


def test_full_mesh_every_node_peers_with_every_other_node_and_never_itself() -> None:
    plan = plan_mesh(POOL, lab_endpoints())
    assert len(plan.peers) == 4
    for node, peers in plan.peers.items():
        names = {(peer.cluster, peer.node) for peer in peers}
        assert node not in names
        assert len(names) == 3


def test_a_peer_in_another_cluster_carries_its_pod_cidrs_and_proxy_ip() -> None:
    plan = plan_mesh(POOL, lab_endpoints())
    peers = {peer.node: peer for peer in plan.peers[("member-1", "member-1-node-1")]}
    remote = peers["member-2-node-1"]
    proxy = plan.proxy.addresses[("member-2", "member-2-node-1")]
    assert remote.allowed_ips == ["10.102.1.0/24", f"{proxy}/32"]
    assert remote.endpoint == "172.30.2.11:51820"
    assert remote.public_key == key("c2n1")
    assert remote.persistent_keepalive_seconds == 25


# What member-1-node-1 is told about each other node: (description, planned with same_cluster_pod_cidrs,
# proxy IPs held by member-1-node-2 and member-2-node-1, peer, allowedIPs, acceptedIPs; None: no peer).
PEER_TABLE = [
    ("another cluster: pod CIDRs and proxy IP routed", False, True, "member-2-node-1",
     ["10.102.1.0/24", "100.96.0.3/32"], None),
    ("same cluster: proxy IP routed, pod CIDRs only accepted", False, True, "member-1-node-2",
     ["100.96.0.2/32"], ["10.101.2.0/24"]),
    ("same cluster, same_cluster_pod_cidrs: both routed", True, True, "member-1-node-2",
     ["10.101.2.0/24", "100.96.0.2/32"], None),
    ("another cluster without proxy IP: pod CIDRs routed", False, False, "member-2-node-1",
     ["10.102.1.0/24"], None),
    ("same cluster without proxy IP: a peer for its pods' sources only", False, False, "member-1-node-2",
     [], ["10.101.2.0/24"]),
    ("same cluster without proxy IP, same_cluster_pod_cidrs: pod CIDRs routed", True, False, "member-1-node-2",
     ["10.101.2.0/24"], None),
]


@pytest.mark.parametrize(
    ("same_cluster_pod_cidrs", "with_proxy", "peer_node", "allowed", "accepted"),
    [row[1:] for row in PEER_TABLE],
    ids=[row[0] for row in PEER_TABLE],
)
def test_what_a_node_routes_and_accepts_for_each_peer(
    same_cluster_pod_cidrs: bool, with_proxy: bool, peer_node: str, allowed: list[str], accepted: list[str] | None
) -> None:
    endpoints = [endpoint(1, 1), endpoint(1, 2), endpoint(2, 1)]
    proxies = {("member-1", "member-1-node-1"): ipaddress.IPv4Address("100.96.0.1")}
    if with_proxy:
        proxies[("member-1", "member-1-node-2")] = ipaddress.IPv4Address("100.96.0.2")
        proxies[("member-2", "member-2-node-1")] = ipaddress.IPv4Address("100.96.0.3")
    plan = plan_peers(endpoints, proxies, same_cluster_pod_cidrs=same_cluster_pod_cidrs)
    peer = {peer.node: peer for peer in plan[("member-1", "member-1-node-1")]}[peer_node]
    assert (peer.allowed_ips, peer.accepted_ips) == (allowed, accepted)


def test_a_same_cluster_node_with_neither_pod_cidrs_nor_proxy_ip_is_no_peer() -> None:
    bare = NodeTunnelEndpoint.for_node("member-1", "member-1-host", key("host"), "172.30.1.99:51820")
    peers = plan_peers([endpoint(1, 1), bare], {("member-1", "member-1-node-1"): ipaddress.IPv4Address("100.96.0.1")})
    assert peers[("member-1", "member-1-node-1")] == []


def test_peer_sets_are_deterministic_whatever_the_input_order() -> None:
    endpoints = lab_endpoints()
    shuffled = endpoints[:]
    random.Random(4).shuffle(shuffled)
    assert plan_mesh(POOL, endpoints).peers == plan_mesh(POOL, shuffled).peers


def test_planned_peers_are_valid_status_and_survive_a_round_trip() -> None:
    """The hub writes the plan into NodeTunnelEndpoint status; it must read back as written."""
    objects = lab_endpoints()
    plan = plan_mesh(POOL, objects)
    for obj in objects:
        node = (obj.spec.cluster, obj.spec.node)
        status = {"proxyIPv4": str(plan.proxy.addresses[node]), "peers": [p.to_api() for p in plan.peers[node]]}
        stored = parse_object({**obj.to_api(), "apiVersion": obj.api_version, "status": status})
        assert isinstance(stored, NodeTunnelEndpoint) and stored.status is not None
        assert stored.status.peers == plan.peers[node]
        assert all(peer.persistent_keepalive_seconds == 25 for peer in stored.status.peers)
    # read back after a restart: same addresses
    assert allocate_proxy_ips(POOL, with_status(objects, plan.proxy.addresses)).addresses == plan.proxy.addresses


# --- proxy IPs ------------------------------------------------------------------------------------------


def test_new_nodes_get_the_lowest_free_addresses_skipping_the_network_address() -> None:
    allocation = allocate_proxy_ips(POOL, lab_endpoints())
    assert sorted(map(str, allocation.addresses.values())) == [f"100.96.0.{i}" for i in (1, 2, 3, 4)]
    assert len(allocation.newly_allocated) == 4
    assert allocation.exhausted is None


def test_allocations_survive_a_restart_because_they_are_read_back_from_status() -> None:
    first = allocate_proxy_ips(POOL, lab_endpoints())
    stored = with_status(lab_endpoints(), first.addresses)
    # a "restarted" hub sees the objects in another order, plus a new node
    restarted = [*reversed(stored), endpoint(3, 1)]
    second = allocate_proxy_ips(POOL, restarted)
    for node, address in first.addresses.items():
        assert second.addresses[node] == address
    assert second.newly_allocated == [("member-3", "member-3-node-1")]
    assert str(second.addresses[("member-3", "member-3-node-1")]) == "100.96.0.5"


def test_an_address_is_never_handed_out_twice() -> None:
    # two objects claim the same address (a hand edit): the first in order keeps it, the other moves
    endpoints = [endpoint(1, 1, proxy="100.96.0.7"), endpoint(2, 1, proxy="100.96.0.7"), endpoint(2, 2)]
    allocation = allocate_proxy_ips(POOL, endpoints)
    values = list(allocation.addresses.values())
    assert len(values) == len(set(values)) == 3
    assert str(allocation.addresses[("member-1", "member-1-node-1")]) == "100.96.0.7"
    assert set(allocation.newly_allocated) == {("member-2", "member-2-node-1"), ("member-2", "member-2-node-2")}


def test_a_held_address_is_skipped_when_allocating_new_ones() -> None:
    endpoints = [endpoint(1, 1, proxy="100.96.0.1"), endpoint(1, 2, proxy="100.96.0.3"), endpoint(2, 1), endpoint(2, 2)]
    allocation = allocate_proxy_ips(POOL, endpoints)
    assert str(allocation.addresses[("member-2", "member-2-node-1")]) == "100.96.0.2"
    assert str(allocation.addresses[("member-2", "member-2-node-2")]) == "100.96.0.4"


def test_an_address_outside_a_changed_pool_is_renumbered() -> None:
    allocation = allocate_proxy_ips("100.97.0.0/24", [endpoint(1, 1, proxy="100.96.0.9")])
    assert str(allocation.addresses[("member-1", "member-1-node-1")]) == "100.97.0.1"
    assert allocation.newly_allocated == [("member-1", "member-1-node-1")]


def test_an_exhausted_pool_is_reported_with_the_nodes_left_out() -> None:
    allocation = allocate_proxy_ips("100.96.0.0/30", lab_endpoints())  # two usable addresses
    assert len(allocation.addresses) == 2
    assert allocation.unallocated == [("member-2", "member-2-node-1"), ("member-2", "member-2-node-2")]
    error = allocation.exhausted
    assert isinstance(error, ProxyPoolExhausted)
    message = str(error)
    assert "100.96.0.0/30" in message and "all 2 addresses" in message
    assert "member-2/member-2-node-1" in message and "member-2/member-2-node-2" in message
    assert "widen the pool" in message


def test_a_slash_32_pool_has_exactly_one_address() -> None:
    allocation = allocate_proxy_ips("100.96.0.9/32", lab_endpoints()[:2])
    assert list(map(str, allocation.addresses.values())) == ["100.96.0.9"]
    assert len(allocation.unallocated) == 1


def test_a_node_without_proxy_ip_still_gets_and_is_a_peer_for_its_pod_cidrs() -> None:
    plan = plan_mesh("100.96.0.1/32", [endpoint(1, 1), endpoint(2, 1)])
    assert plan.proxy.unallocated == [("member-2", "member-2-node-1")]
    peer = plan.peers[("member-1", "member-1-node-1")][0]
    assert peer.allowed_ips == ["10.102.1.0/24"]


# --- pod CIDRs ------------------------------------------------------------------------------------------


def test_overlapping_pod_cidrs_between_clusters_are_rejected_naming_both() -> None:
    endpoints = [endpoint(1, 1, "10.101.0.0/16"), endpoint(2, 1, "10.101.7.0/24")]
    with pytest.raises(PodCIDROverlapError) as raised:
        plan_mesh(POOL, endpoints)
    message = str(raised.value)
    assert "10.101.0.0/16 of member-1/member-1-node-1" in message
    assert "10.101.7.0/24 of member-2/member-2-node-1" in message
    assert "different clusters" in message


def test_every_overlap_is_reported_not_only_the_first() -> None:
    endpoints = [endpoint(1, 1, "10.0.0.0/8"), endpoint(2, 1, "10.1.0.0/16"), endpoint(3, 1, "10.2.0.0/16")]
    overlaps = find_pod_cidr_overlaps(endpoints)
    assert {(o.first[0], o.second[0]) for o in overlaps} == {("member-1", "member-2"), ("member-1", "member-3")}


def test_disjoint_pod_cidrs_and_nodes_of_one_cluster_pass() -> None:
    check_pod_cidrs(lab_endpoints())
    # nodes of one cluster may share a range (the cluster network's business, not the mesh's)
    check_pod_cidrs([endpoint(1, 1, "10.101.0.0/16"), endpoint(1, 2, "10.101.2.0/24")])


def test_a_malformed_pod_cidr_never_reaches_the_planner() -> None:
    """The API refuses it (the planner works on validated objects only)."""
    with pytest.raises(InvalidObjectError, match=r"spec\.podCIDRs\[0\]"):
        parse_object({**endpoint(2, 1).to_api(), "apiVersion": "balancing.elf.io/v1beta1",
                      "spec": {**endpoint(2, 1).to_api()["spec"], "podCIDRs": ["10.102.1.5/24"]}})


def test_a_pod_cidr_inside_the_proxy_pool_is_rejected() -> None:
    with pytest.raises(InvalidEndpoint, match=r"member-1/member-1-node-1: pod CIDR 100.96.4.0/24 overlaps"):
        plan_mesh(POOL, [endpoint(1, 1, "100.96.4.0/24")])


def test_five_hundred_nodes_plan_quickly_and_consistently() -> None:
    endpoints = [endpoint(c, n, f"10.{c}.{n}.0/24") for c in range(1, 11) for n in range(1, 51)]
    plan = plan_mesh(POOL, endpoints)
    assert len(plan.proxy.addresses) == 500
    assert len(set(plan.proxy.addresses.values())) == 500
    assert all(len(peers) == 499 for peers in plan.peers.values())
