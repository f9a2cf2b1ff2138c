"""The conflict rule shared by the agent and the controller: the oldest enabled policy wins a frontend,
and a loser binds nothing; the outcome names the winner (table-driven, no cluster)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from crds import BalancingPolicy, LocalRedirectPolicy, parse_object
from member.policies import Policy, ServiceFrontend, conflict_message, resolve_bindings
from tests.member.agent.objects import policy, ports

SERVICES = {("default", "web"): ServiceFrontend(("10.96.0.10",), (("http", 80, "TCP"), ("dns", 53, "UDP")))}


def lookup(namespace: str, name: str) -> ServiceFrontend | None:
    return SERVICES.get((namespace, name))


def bp_vip(name: str, ip: str, port: str = "80", created: str = "2026-01-01T00:00:00Z", enabled: bool = True) -> Policy:
    spec: dict[str, Any] = {
        "enabled": enabled,
        "frontend": {"addressMatcher": {"ip": ip, "toPorts": ports((port, "TCP", "p"))}},
        "backend": {"addressEndpoint": {"addresses": ["10.1.0.1"], "toPorts": ports(("8080", "TCP", "p"))}},
    }
    parsed = parse_object(policy("BalancingPolicy", name, spec, created=created))
    assert isinstance(parsed, BalancingPolicy)
    return parsed


def lrp_svc(name: str, port: str = "80", created: str = "2026-01-01T00:00:00Z") -> Policy:
    spec = {
        "frontend": {"serviceMatcher": {"namespace": "default", "serviceName": "web",
                                        "toPorts": ports((port, "TCP", "p"))}},
        "backend": {"endpointSelector": {"matchLabels": {"app": "local"}}, "toPorts": ports(("8080", "TCP", "p"))},
    }
    parsed = parse_object(policy("LocalRedirectPolicy", name, spec, created=created))
    assert isinstance(parsed, LocalRedirectPolicy)
    return parsed


@dataclass(frozen=True)
class Row:
    description: str
    policies: list[Policy]
    losers: dict[str, str]  # policy ref -> the ref that beat it


ROWS = [
    Row("different VIPs coexist", [bp_vip("a", "169.254.0.1"), bp_vip("b", "169.254.0.2")], {}),
    Row("same VIP and port: the older wins",
        [bp_vip("new", "169.254.0.1", created="2026-02-01T00:00:00Z"), bp_vip("old", "169.254.0.1")],
        {"BalancingPolicy/new": "BalancingPolicy/old"}),
    Row("same VIP, other port: no conflict", [bp_vip("a", "169.254.0.1", "80"), bp_vip("b", "169.254.0.1", "81")], {}),
    Row("same age: decided by kind then name", [bp_vip("b", "169.254.0.1"), bp_vip("a", "169.254.0.1")],
        {"BalancingPolicy/b": "BalancingPolicy/a"}),
    Row("a VIP on a Service's ClusterIP conflicts with a serviceMatcher policy on that Service",
        [lrp_svc("dns-local"), bp_vip("vip", "10.96.0.10", created="2026-03-01T00:00:00Z")],
        {"BalancingPolicy/vip": "LocalRedirectPolicy/dns-local"}),
    Row("two serviceMatchers on one Service port", [lrp_svc("a"), lrp_svc("b", created="2026-05-01T00:00:00Z")],
        {"LocalRedirectPolicy/b": "LocalRedirectPolicy/a"}),
    Row("a disabled policy claims nothing",
        [bp_vip("off", "169.254.0.1", enabled=False), bp_vip("on", "169.254.0.1", created="2026-09-01T00:00:00Z")], {}),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.description for row in ROWS])
def test_bindings(row: Row) -> None:
    bindings = resolve_bindings(row.policies, lookup)
    assert {ref: b.winner for ref, b in bindings.items() if b.in_conflict} == row.losers
    for ref in row.losers:
        message = conflict_message(bindings[ref], bindings)
        assert row.losers[ref] in message and "oldest policy wins" in message


def test_deleting_the_winner_promotes_the_next() -> None:
    old, new = bp_vip("old", "169.254.0.1"), bp_vip("new", "169.254.0.1", created="2026-02-01T00:00:00Z")
    assert resolve_bindings([old, new], lookup)["BalancingPolicy/new"].in_conflict
    assert not resolve_bindings([new], lookup)["BalancingPolicy/new"].in_conflict
