"""API objects -> this node's `datapath.lb.DesiredState`: all of the agent's semantics, pure.

Each *source* (one Service, or all policies together) yields frontends; `merge` turns the outputs
into one frontend per (tier, ip, port, protocol). Two Services that claim the same external IP and
port (a user error kube-proxy resolves by rule order) are decided by age: the older Service keeps
it, and the other is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from datapath.lb import DesiredState, FrontendSpec, Tier, Tiers
from member.agent.cache import NODES, POLICIES, ClusterCache
from member.agent.policy_frontends import PolicyContext, PolicyFrontends, policy_frontends
from member.agent.services import import_frontends, node_addresses, service_frontends
from member.policies import ServiceFrontend, resolve_bindings, service_frontend

FrontendKey = tuple[Tier, str, int, str]


@dataclass(frozen=True)
class AgentOptions:
    """Settings that change what the agent programs (read once at start; see member.agent.settings)."""

    default_qos_limit: int = 0
    cluster: str = ""  # this cluster's name in the clusterset (for its own share of an import)


@dataclass
class SourceOutput:
    """What one source contributes: frontends with an age for tie-breaks, and what to report."""

    frontends: dict[FrontendKey, FrontendSpec] = field(default_factory=dict)
    age: str = ""  # creationTimestamp of the owning object; older wins a shared frontend
    problem: str = ""  # set: this source could not be translated; keep its previous frontends
    skipped_ports: list[str] = field(default_factory=list)
    policies: dict[str, PolicyFrontends] = field(default_factory=dict)  # for the policies source


def frontend_key(tier: Tier, spec: FrontendSpec) -> FrontendKey:
    return (tier, spec.ip, spec.port, spec.protocol)


def _created(obj: Mapping[str, object] | None) -> str:
    metadata = (obj or {}).get("metadata") or {}
    assert isinstance(metadata, Mapping)
    return str(metadata.get("creationTimestamp") or "~")


def translate_source(source: str, cache: ClusterCache, options: AgentOptions,
                     pod_cgroup: Callable[[str], int | None]) -> SourceOutput:
    if source == POLICIES:
        return _translate_policies(cache, options, pod_cgroup)
    if source == NODES:
        return SourceOutput()  # node addresses live outside the tiers: see node_address_list()
    if source.startswith("import:"):
        return _translate_import(source.removeprefix("import:"), cache, options)
    key = source.removeprefix("service:")
    service = cache.services.get(key)
    if service is None:
        return SourceOutput()
    result = service_frontends(service, cache.slices_of(key), cache.node_name, cache.zone)
    output = SourceOutput(age=_created(service), problem=result.problem, skipped_ports=result.skipped_ports)
    for tier, spec in result.frontends:
        output.frontends[frontend_key(tier, spec)] = spec
    return output


def _translate_import(key: str, cache: ClusterCache, options: AgentOptions) -> SourceOutput:
    service_import = cache.imports.get(key)
    if service_import is None:
        return SourceOutput()
    result = import_frontends(service_import, cache.slices_of(key), cache.import_slices.get(key, {}).values(),
                              options.cluster, cache.node_name, cache.zone)
    output = SourceOutput(age=_created(service_import), problem=result.problem, skipped_ports=result.skipped_ports)
    for tier, spec in result.frontends:
        output.frontends[frontend_key(tier, spec)] = spec
    return output


def _service_lookup(cache: ClusterCache) -> Callable[[str, str], ServiceFrontend | None]:
    def lookup(namespace: str, name: str) -> ServiceFrontend | None:
        service = cache.services.get(f"{namespace}/{name}")
        return service_frontend(service) if service is not None else None

    return lookup


def _translate_policies(cache: ClusterCache, options: AgentOptions,
                        pod_cgroup: Callable[[str], int | None]) -> SourceOutput:
    context = PolicyContext(
        node=cache.node_name,
        node_labels=cache.node_labels(),
        nodes=cache.nodes,
        services=cache.services,
        policy_slices={ref: list(slices.values()) for ref, slices in cache.policy_slices.items()},
        pod_cgroup=pod_cgroup,
        default_qos_limit=options.default_qos_limit,
    )
    output = SourceOutput(age="")
    for ref, binding in resolve_bindings(cache.policies.values(), _service_lookup(cache)).items():
        result = policy_frontends(binding, context)
        output.policies[ref] = result
        for tier, spec in result.frontends:
            output.frontends[frontend_key(tier, spec)] = spec
    for ref, policy in cache.policies.items():
        if not policy.spec.enabled:
            output.policies[ref] = PolicyFrontends(skipped="Disabled")
    return output


def merge(outputs: Iterable[tuple[str, SourceOutput]]) -> tuple[dict[FrontendKey, tuple[str, FrontendSpec]], list[str]]:
    """One owner per frontend (the oldest source); return the owners and what lost."""
    owners: dict[FrontendKey, tuple[str, str, FrontendSpec]] = {}
    lost: list[str] = []
    for source, output in outputs:
        for key, spec in output.frontends.items():
            held = owners.get(key)
            if held is None or (output.age, source) < (held[1], held[0]):
                if held is not None:
                    lost.append(f"{held[0]} lost {describe_key(key)} to {source}")
                owners[key] = (source, output.age, spec)
            else:
                lost.append(f"{source} lost {describe_key(key)} to {held[0]}")
    return {key: (source, spec) for key, (source, _age, spec) in owners.items()}, lost


def describe_key(key: FrontendKey) -> str:
    tier, ip, port, protocol = key
    return f"{tier.label} {ip}:{port}/{protocol}"


def desired_state(frontends: Iterable[tuple[FrontendKey, FrontendSpec]], addresses: Iterable[str]) -> DesiredState:
    by_tier: dict[Tier, list[FrontendSpec]] = {tier: [] for tier in Tier}
    for key, spec in sorted(frontends, key=lambda item: (item[0][0], item[0][1], item[0][2], item[0][3])):
        by_tier[key[0]].append(spec)
    return DesiredState(
        tiers=Tiers(
            local_redirect=tuple(by_tier[Tier.LOCAL_REDIRECT]),
            balancing=tuple(by_tier[Tier.BALANCING]),
            service=tuple(by_tier[Tier.SERVICE]),
        ),
        node_addresses=tuple(addresses),
    )


def node_address_list(cache: ClusterCache) -> list[str]:
    return node_addresses(cache.nodes.values())


def translate_all(cache: ClusterCache, options: AgentOptions,
                  pod_cgroup: Callable[[str], int | None]) -> dict[str, SourceOutput]:
    return {source: translate_source(source, cache, options, pod_cgroup) for source in sorted(cache.all_sources())}

