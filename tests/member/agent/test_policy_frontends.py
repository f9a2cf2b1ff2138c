"""Policy semantics for one node, table-driven: every redirect mode, node selection, local redirect with
QoS and no self-redirect, and the reasons a policy programs nothing on a node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from crds import BalancingPolicy, LocalRedirectPolicy, parse_object
from datapath.lb import Tier
from member.agent.policy_frontends import PolicyContext, policy_frontends
from member.policies import resolve_bindings, service_frontend
from tests.member.agent.objects import endpoint, node, policy, policy_slice, ports, service

Obj = dict[str, Any]
NODE = "node-1"
NODES = {
    "node-1": node("node-1", "172.30.1.11", labels={"role": "edge"},
                   annotations={"balancing.elf.io/nodeProxyIpv4": "100.96.0.1"}),
    "node-2": node("node-2", "172.30.1.12", annotations={"balancing.elf.io/nodeProxyIpv4": "not-an-ip"}),
    "node-3": node("node-3", "172.30.1.13"),
}
WEB = service("web", ports=[{"name": "p1", "port": 8080}, {"name": "p2", "port": 80}],
              sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}})
SERVICES = {"default/web": WEB}
POD_CGROUPS = {"uid-a": 7001, "uid-b": 7002}
SELECTED = [endpoint("10.1.1.5", "node-1", uid="uid-a"), endpoint("10.1.1.6", "node-1", uid="uid-b", ready=False),
            endpoint("10.1.2.5", "node-2", uid="uid-c"), endpoint("10.1.3.5", "node-3", uid="uid-d")]


def svc_frontend(to_ports: list[Obj] | None = None, *, omit: bool = False) -> Obj:
    matcher: Obj = {"namespace": "default", "serviceName": "web"}
    if not omit:
        matcher["toPorts"] = to_ports or ports(("8080", "TCP", "p1"), ("80", "TCP", "p2"))
    return {"serviceMatcher": matcher}


def bp(mode: str, **extra: Any) -> Obj:
    return {"frontend": svc_frontend(), "backend": {"serviceEndpoint": {
        "endpointSelector": {"matchLabels": {"app": "x"}}, "redirectMode": mode,
        "toPorts": ports(("80", "TCP", "p1"), ("20080", "TCP", "p2"))}}, **extra}


def lrp(**extra: Any) -> Obj:
    return {"frontend": svc_frontend(), "backend": {"endpointSelector": {"matchLabels": {"app": "x"}},
                                                   "toPorts": ports(("80", "TCP", "p1"), ("80", "TCP", "p2"))},
            **extra}


@dataclass(frozen=True)
class Row:
    description: str
    kind: str
    spec: Obj
    expected: dict[str, list[str]]  # "ip:port/PROTO" -> backends
    skipped: str = ""
    services: dict[str, Obj] = field(default_factory=lambda: SERVICES)
    problems: int = 0
    skip_cgroups: tuple[int, ...] = ()
    qos: int = 0
    affinity: int = 30


ROWS = [
    Row("podEndpoint: ready pod IPs, ports paired by name", "BalancingPolicy", bp("podEndpoint"),
        {"10.96.0.10:8080/TCP": ["10.1.1.5:80", "10.1.2.5:80", "10.1.3.5:80"],
         "10.96.0.10:80/TCP": ["10.1.1.5:20080", "10.1.2.5:20080", "10.1.3.5:20080"]}),
    Row("hostPort: the pod's node IP and the backend port", "BalancingPolicy", bp("hostPort"),
        {"10.96.0.10:8080/TCP": ["172.30.1.11:80", "172.30.1.12:80", "172.30.1.13:80"],
         "10.96.0.10:80/TCP": ["172.30.1.11:20080", "172.30.1.12:20080", "172.30.1.13:20080"]}),
    Row("nodeProxy: the node's proxy IPv4; nodes without one (or a malformed one) are left out",
        "BalancingPolicy", bp("nodeProxy"),
        {"10.96.0.10:8080/TCP": ["100.96.0.1:80"], "10.96.0.10:80/TCP": ["100.96.0.1:20080"]}, problems=1),
    Row("addressEndpoint: fixed addresses", "BalancingPolicy",
        {"frontend": {"addressMatcher": {"ip": "169.254.169.254", "toPorts": ports(("8080", "TCP", "p1"))}},
         "backend": {"addressEndpoint": {"addresses": ["1.1.1.1", "1.1.1.2"], "toPorts": ports(("80", "TCP", "p1"))}}},
        {"169.254.169.254:8080/TCP": ["1.1.1.1:80", "1.1.1.2:80"]}, affinity=0),
    Row("nodeLabelSelector that does not match this node", "BalancingPolicy",
        bp("podEndpoint", config={"nodeLabelSelector": {"matchLabels": {"role": "core"}}}), {},
        skipped="NodeNotSelected"),
    Row("nodeLabelSelector that matches", "BalancingPolicy",
        bp("podEndpoint", config={"nodeLabelSelector": {"matchLabels": {"role": "edge"}}}),
        {"10.96.0.10:8080/TCP": ["10.1.1.5:80", "10.1.2.5:80", "10.1.3.5:80"],
         "10.96.0.10:80/TCP": ["10.1.1.5:20080", "10.1.2.5:20080", "10.1.3.5:20080"]}),
    Row("serviceMatcher without toPorts takes every port of the Service, paired by name", "BalancingPolicy",
        {**bp("podEndpoint"), "frontend": svc_frontend(omit=True)},
        {"10.96.0.10:8080/TCP": ["10.1.1.5:80", "10.1.2.5:80", "10.1.3.5:80"],
         "10.96.0.10:80/TCP": ["10.1.1.5:20080", "10.1.2.5:20080", "10.1.3.5:20080"]}),
    Row("serviceMatcher without toPorts and a Service port no backend port names: nothing, and why", "BalancingPolicy",
        {"frontend": svc_frontend(omit=True), "backend": {"serviceEndpoint": {
            "endpointSelector": {"matchLabels": {"app": "x"}},
            "toPorts": ports(("80", "TCP", "p1"), ("81", "TCP", "x"))}}},
        {}, skipped="Failed", problems=1),
    Row("serviceMatcher on a missing Service", "BalancingPolicy", bp("podEndpoint"), {}, skipped="ServiceNotFound",
        services={}),
    Row("local redirect: ready pods on this node only; its backends never redirect to themselves",
        "LocalRedirectPolicy", lrp(),
        {"10.96.0.10:8080/TCP": ["10.1.1.5:80"], "10.96.0.10:80/TCP": ["10.1.1.5:80"]},
        skip_cgroups=(7001, 7002), qos=5),
    Row("local redirect: the policy's own QoS limit wins over the chart's", "LocalRedirectPolicy",
        lrp(config={"redirectQosLimit": 100}),
        {"10.96.0.10:8080/TCP": ["10.1.1.5:80"], "10.96.0.10:80/TCP": ["10.1.1.5:80"]},
        skip_cgroups=(7001, 7002), qos=100),
]


def context(services: dict[str, Obj]) -> PolicyContext:
    return PolicyContext(
        node=NODE, node_labels=NODES[NODE]["metadata"]["labels"], nodes=NODES, services=services,
        policy_slices={"BalancingPolicy/p": [policy_slice("BalancingPolicy", "p", SELECTED)],
                       "LocalRedirectPolicy/p": [policy_slice("LocalRedirectPolicy", "p", SELECTED)]},
        pod_cgroup=POD_CGROUPS.get, default_qos_limit=5,
    )


@pytest.mark.parametrize("row", ROWS, ids=[row.description for row in ROWS])
def test_policy_frontends(row: Row) -> None:
    parsed = parse_object(policy(row.kind, "p", row.spec))
    assert isinstance(parsed, BalancingPolicy | LocalRedirectPolicy)

    def lookup(namespace: str, name: str) -> Any:
        found = row.services.get(f"{namespace}/{name}")
        return service_frontend(found) if found else None

    binding = resolve_bindings([parsed], lookup)[f"{row.kind}/p"]
    result = policy_frontends(binding, context(row.services))
    got = {f"{spec.ip}:{spec.port}/{spec.protocol}": sorted(f"{b.ip}:{b.port}" for b in spec.backends)
           for _tier, spec in result.frontends}
    assert got == row.expected
    assert result.skipped == row.skipped
    assert len(result.problems) == row.problems
    tier = Tier.LOCAL_REDIRECT if row.kind == "LocalRedirectPolicy" else Tier.BALANCING
    for frontend_tier, spec in result.frontends:
        assert frontend_tier == tier
        assert spec.policy == f"{row.kind}/p"
        assert tuple(spec.skip_cgroups) == row.skip_cgroups
        assert spec.qos_limit == row.qos
        assert spec.affinity_timeout_seconds == row.affinity
        assert not spec.reject_when_empty, "a policy with no backend falls through to normal resolution"


def test_local_redirect_without_a_ready_local_pod_declines() -> None:
    parsed = parse_object(policy("LocalRedirectPolicy", "p", lrp()))
    assert isinstance(parsed, LocalRedirectPolicy)
    ctx = context(SERVICES)
    ctx = PolicyContext(**{**ctx.__dict__, "node": "node-4"})
    binding = resolve_bindings([parsed], lambda ns, n: service_frontend(WEB))["LocalRedirectPolicy/p"]
    result = policy_frontends(binding, ctx)
    assert [spec.backends for _tier, spec in result.frontends] == [(), ()]
