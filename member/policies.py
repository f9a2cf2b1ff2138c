"""Which policy binds which frontend: the conflict rule the agent and the controller both apply.

Two enabled policies (BalancingPolicy or LocalRedirectPolicy, in any mix) may not bind the same
frontend. A frontend is claimed through keys:
- a `serviceMatcher` claims (namespace, service, port, protocol) for each port it takes over, and,
  once the Service exists, its ClusterIP with those ports;
- an `addressMatcher` claims (ip, port, protocol) for each port.
A policy that shares any key with an older policy is in conflict and binds nothing at all (no
partial binding: the user sees one clear Conflict condition naming the winner). Older means
earlier `creationTimestamp`, then kind, then name, so every process decides the same way.
Disabled policies claim nothing. Deleting the winner promotes the next policy at the next sync.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from crds import NODE_PROXY_IPV4_ANNOTATION, BalancingPolicy, LocalRedirectPolicy

Policy = BalancingPolicy | LocalRedirectPolicy

# Labels of the EndpointSlices that carry a policy's selected pods (the controller writes them).
POLICY_KIND_LABEL = "balancing.elf.io/policy-kind"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "member-controller.balancing.elf.io"
# On policy EndpointSlices of other clusters: their addresses are final for the policy's redirect mode.
RESOLVED_LABEL = "balancing.elf.io/resolved"
# On a hub policy's local copy.
ORIGIN_LABEL = "balancing.elf.io/origin"
FrontendClaim = tuple[str, ...]  # ("svc", ns, name, port, proto) or ("ip", ip, port, proto)
ServicePortsLookup = Callable[[str, str], "ServiceFrontend | None"]


@dataclass(frozen=True)
class ServiceFrontend:
    """What a policy's serviceMatcher binds on a live Service: its IPv4 ClusterIPs and ports."""

    cluster_ips: tuple[str, ...]
    ports: tuple[tuple[str, int, str], ...]  # (name, port, protocol), name "" when unnamed


def policy_ref(policy: Policy) -> str:
    """`BalancingPolicy/name`: how a policy is named in conditions, events and datapath state."""
    return f"{policy.kind}/{policy.metadata.name}"


def age_key(policy: Policy) -> tuple[str, str, str]:
    created = str((policy.metadata.model_extra or {}).get("creationTimestamp") or "")
    return (created or "~", policy.kind, policy.metadata.name or "")


def frontend_ports(policy: Policy, service: ServiceFrontend | None) -> list[tuple[str, int, str]]:
    """(name, port, protocol) of every frontend port the policy takes over.

    A serviceMatcher without toPorts takes over every port of the Service (none while it is missing)."""
    frontend = policy.spec.frontend
    matcher = frontend.service_matcher or frontend.address_matcher
    assert matcher is not None
    if matcher.to_ports is None:
        return list(service.ports) if service is not None else []
    return [(port.name or "", port.number, port.protocol) for port in matcher.to_ports]


def frontend_claims(policy: Policy, services: ServicePortsLookup) -> set[FrontendClaim]:
    frontend = policy.spec.frontend
    claims: set[FrontendClaim] = set()
    if frontend.address_matcher is not None:
        for _name, port, protocol in frontend_ports(policy, None):
            claims.add(("ip", frontend.address_matcher.ip, str(port), protocol))
        return claims
    matcher = frontend.service_matcher
    assert matcher is not None
    service = services(matcher.namespace, matcher.service_name)
    for _name, port, protocol in frontend_ports(policy, service):
        claims.add(("svc", matcher.namespace, matcher.service_name, str(port), protocol))
        for ip in service.cluster_ips if service is not None else ():
            claims.add(("ip", ip, str(port), protocol))
    return claims


@dataclass(frozen=True)
class Binding:
    """The outcome for one policy: it binds its frontends, or it lost to `winner`."""

    policy: Policy
    claims: frozenset[FrontendClaim]
    winner: str | None = None  # policy_ref of the older policy it conflicts with

    @property
    def in_conflict(self) -> bool:
        return self.winner is not None


def describe_claim(claim: FrontendClaim) -> str:
    if claim[0] == "svc":
        return f"Service {claim[1]}/{claim[2]} port {claim[3]}/{claim[4]}"
    return f"{claim[1]}:{claim[2]}/{claim[3]}"


def resolve_bindings(policies: Iterable[Policy], services: ServicePortsLookup) -> dict[str, Binding]:
    """Every enabled policy's binding, keyed by policy_ref; the oldest claimant of a frontend wins."""
    owners: dict[FrontendClaim, str] = {}
    bindings: dict[str, Binding] = {}
    for policy in sorted((p for p in policies if p.spec.enabled), key=age_key):
        claims = frozenset(frontend_claims(policy, services))
        taken = sorted(owners[claim] for claim in claims if claim in owners)
        ref = policy_ref(policy)
        if taken:
            bindings[ref] = Binding(policy, claims, winner=taken[0])
            continue
        owners.update(dict.fromkeys(claims, ref))
        bindings[ref] = Binding(policy, claims)
    return bindings


def conflict_message(binding: Binding, bindings: Mapping[str, Binding]) -> str:
    assert binding.winner is not None
    shared = sorted(binding.claims & bindings[binding.winner].claims)
    where = ", ".join(describe_claim(claim) for claim in shared[:4]) + (" ..." if len(shared) > 4 else "")
    return (
        f"{binding.winner} already binds {where}; this policy binds nothing until that one is deleted "
        f"or disabled (the oldest policy wins a frontend)"
    )


def service_frontend(service: Mapping[str, Any]) -> ServiceFrontend:
    """The ClusterIPs (IPv4) and ports a policy can bind on a Service object (API JSON)."""
    spec = service.get("spec") or {}
    ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None" and "." in ip]
    ports = tuple(
        (str(port.get("name") or ""), int(port["port"]), str(port.get("protocol") or "TCP"))
        for port in spec.get("ports") or []
        if port.get("port")
    )
    return ServiceFrontend(tuple(ips), ports)


def node_proxy_ipv4(node: Mapping[str, Any] | None) -> tuple[str | None, str]:
    """A node's `balancing.elf.io/nodeProxyIpv4`, or (None, problem) when it is absent or malformed."""
    annotations = ((node or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(NODE_PROXY_IPV4_ANNOTATION)
    if value is None:
        return None, ""
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        name = ((node or {}).get("metadata") or {}).get("name")
        return None, f"node {name}: annotation {NODE_PROXY_IPV4_ANNOTATION} {value!r} is not an IPv4 address"
    return value, ""
