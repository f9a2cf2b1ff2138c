"""Member verdicts and address pools: liveness, registration, pod CIDR refusals, allocation (pure tables)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from crds import MemberCluster, NodeTunnelEndpoint
from hub.members import liveness, refuse_overlaps, registration_problem
from hub.pools import AddressPool
from tests.hub.objects import T0, member, tunnel

# --- liveness -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("description", "heartbeat_age", "timeout", "alive", "reason"),
    [
        ("fresh heartbeat", 5, 40, True, "Heartbeating"),
        ("one second before the timeout", 39, 40, True, "Heartbeating"),
        ("exactly the timeout: expired", 40, 40, False, "HeartbeatExpired"),
        ("long silent", 3600, 40, False, "HeartbeatExpired"),
        ("never heartbeated", None, 40, False, "NoHeartbeat"),
    ],
)
def test_liveness(description: str, heartbeat_age: int | None, timeout: int, alive: bool, reason: str) -> None:
    now = T0 + timedelta(hours=1)
    beat = None if heartbeat_age is None else now - timedelta(seconds=heartbeat_age)
    verdict = liveness(member("m1", heartbeat=beat, timeout=timeout), now)
    assert (verdict.alive, verdict.reason) == (alive, reason), description
    if alive and beat is not None:
        assert verdict.changes_at == beat + timedelta(seconds=timeout)


def test_liveness_messages_do_not_change_while_the_verdict_holds() -> None:
    """An unchanged verdict must read the same, or the hub would rewrite status at every heartbeat."""
    first = liveness(member("m1", heartbeat=T0), T0 + timedelta(seconds=1))
    later = liveness(member("m1", heartbeat=T0 + timedelta(seconds=30)), T0 + timedelta(seconds=35))
    assert first.message == later.message


def test_a_member_registers_under_its_own_namespace_only() -> None:
    assert registration_problem("member-1", member("member-1")) is None
    problem = registration_problem("member-1", member("member-2", namespace="member-1"))
    assert problem is not None and "'member-2' is in namespace 'member-1'" in problem


# --- pod CIDR overlaps ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverlapRow:
    description: str
    members: tuple[MemberCluster, ...]
    tunnels: tuple[NodeTunnelEndpoint, ...] = ()
    refused: dict[str, str] = field(default_factory=dict)  # refused cluster -> the cluster it overlaps


OVERLAP_ROWS = [
    OverlapRow("disjoint members", (member("member-1", "10.101.0.0/16"), member("member-2", "10.102.0.0/16"))),
    OverlapRow("the newer member is refused",
               (member("member-2", "10.101.7.0/24", created=T0 + timedelta(1)), member("member-1", "10.101.0.0/16")),
               refused={"member-2": "member-1"}),
    OverlapRow("registration time, not the name, decides",
               (member("member-1", "10.101.0.0/16", created=T0 + timedelta(1)), member("member-2", "10.101.0.0/16")),
               refused={"member-1": "member-2"}),
    OverlapRow("a node's pod CIDR counts for its member",
               (member("member-1"), member("member-2", created=T0 + timedelta(1))),
               (tunnel("member-1", 1, "10.50.0.0/24"), tunnel("member-2", 1, "10.50.0.0/25")),
               refused={"member-2": "member-1"}),
    OverlapRow("nodes of one member may share ranges",
               (member("member-1", "10.101.0.0/16"),), (tunnel("member-1", 1, "10.101.1.0/24"),)),
    OverlapRow("a refused member does not refuse a third one",
               (member("member-1", "10.101.0.0/16"), member("member-2", "10.0.0.0/8", created=T0 + timedelta(1)),
                member("member-3", "10.103.0.0/16", created=T0 + timedelta(2))),
               refused={"member-2": "member-1"}),
    OverlapRow("an endpoint claiming another cluster is not that cluster's claim",
               (member("member-1", "10.101.0.0/16"), member("member-2", created=T0 + timedelta(1))),
               (tunnel("member-1", 1, "10.101.0.0/24", namespace="member-2"),)),
]


@pytest.mark.parametrize("row", OVERLAP_ROWS, ids=lambda row: row.description)
def test_refuse_overlaps(row: OverlapRow) -> None:
    verdicts = refuse_overlaps({m.metadata.name or "": m for m in row.members}, row.tunnels)
    refused = {c: o.other for c, found in verdicts.items() for o in found if o.refused}
    assert refused == row.refused
    for cluster, other in row.refused.items():  # both are told, naming both
        (told,) = [o for o in verdicts[other] if not o.refused]
        assert told.other == cluster
        assert cluster in told.message and other in told.message


# --- address pools --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("description", "network", "held", "allocations", "expected"),
    [
        ("a fresh pool hands out the lowest addresses, skipping the network address", "10.255.0.0/24", [], 3,
         ["10.255.0.1", "10.255.0.2", "10.255.0.3"]),
        ("held addresses are skipped", "10.255.0.0/24", ["10.255.0.1", "10.255.0.3"], 2,
         ["10.255.0.2", "10.255.0.4"]),
        ("an address outside the pool is not claimed", "10.255.0.0/30", ["10.9.9.9"], 3,
         ["10.255.0.1", "10.255.0.2", None]),
        ("a /32 has exactly one address", "10.255.0.7/32", [], 2, ["10.255.0.7", None]),
        ("a /31 has two (no network or broadcast address)", "10.255.0.0/31", [], 3, ["10.255.0.0", "10.255.0.1", None]),
    ],
)
def test_address_pool(description: str, network: str, held: list[str], allocations: int,
                      expected: list[str | None]) -> None:
    pool = AddressPool(network)
    for address in held:
        pool.claim(address)
    got = [pool.allocate() for _ in range(allocations)]
    assert [str(a) if a else None for a in got] == expected, description


def test_an_address_is_claimed_once_and_a_released_one_is_not_handed_out_at_once() -> None:
    pool = AddressPool("10.255.0.0/29")  # six addresses
    assert pool.claim("10.255.0.2") == ipaddress.IPv4Address("10.255.0.2")
    assert pool.claim("10.255.0.2") is None  # a second claimant does not get it
    first = pool.allocate()
    assert str(first) == "10.255.0.1"
    pool.release(first)
    assert str(pool.allocate()) == "10.255.0.3"  # the cursor moved on: no immediate reuse
    assert pool.free == 6 - 2
