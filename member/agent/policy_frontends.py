"""BalancingPolicy and LocalRedirectPolicy semantics for one node: the frontends a policy binds and
the backends they resolve to (seeds 000 and 003; docs/api.md).

Pure. The backend pods a policy selects arrive as the policy's EndpointSlices, which the member
controller keeps (docs/member.md); hostPort and nodeProxy backends are found from the pod's node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from crds import BalancingPolicy, LocalRedirectPolicy, PortInfo, PortPairingError
from datapath.lb import BackendSpec, FrontendSpec, Tier
from member.agent.services import Obj, affinity_timeout, node_internal_ip
from member.policies import (
    RESOLVED_LABEL,
    Binding,
    Policy,
    ServiceFrontend,
    node_proxy_ipv4,
    policy_ref,
    service_frontend,
)


@dataclass(frozen=True)
class PolicyContext:
    """What a policy's translation needs to know beyond the policy itself."""

    node: str
    node_labels: Mapping[str, str]
    nodes: Mapping[str, Obj]  # every node of the cluster, by name
    services: Mapping[str, Obj]  # Services by "namespace/name"
    policy_slices: Mapping[str, list[Obj]]  # the policy's EndpointSlices, by policy_ref
    pod_cgroup: Callable[[str], int | None]  # pod UID -> its cgroup id on this node, if it runs here
    default_qos_limit: int = 0  # the chart's feature.redirectQosLimit (env REDIRECT_QOS_LIMIT)


@dataclass
class PolicyFrontends:
    """One policy's share of this node's datapath, or why it has none here."""

    frontends: list[tuple[Tier, FrontendSpec]] = field(default_factory=list)
    backends: int = 0  # distinct backends across its frontends
    skipped: str = ""  # reason it programs nothing here (NotSelected, Conflict, ServiceNotFound, ...)
    problems: list[str] = field(default_factory=list)


def _selects_node(policy: Policy, labels: Mapping[str, str]) -> bool:
    config = policy.spec.config
    selector = config.node_label_selector if config is not None else None
    return selector is None or selector.matches(dict(labels))


def _service(policy: Policy, context: PolicyContext) -> Obj | None:
    matcher = policy.spec.frontend.service_matcher
    if matcher is None:
        return None
    return context.services.get(f"{matcher.namespace}/{matcher.service_name}")


def _frontend_ips(policy: Policy, service: ServiceFrontend | None) -> list[str]:
    frontend = policy.spec.frontend
    if frontend.address_matcher is not None:
        return [frontend.address_matcher.ip]
    return list(service.cluster_ips) if service is not None else []


def _port_pairs(policy: Policy, service: ServiceFrontend | None) -> list[tuple[int, str, int]]:
    """(frontend port, protocol, backend port) for each port the policy takes over."""
    service_ports = None
    if service is not None:
        service_ports = [
            PortInfo(port=str(number), protocol=protocol, name=name or None)  # type: ignore[arg-type]
            for name, number, protocol in service.ports
            if protocol in ("TCP", "UDP")
        ]
    pairs = policy.spec.port_pairs(service_ports)
    return [(front.number, front.protocol, back.number) for front, back in pairs]


@dataclass(frozen=True)
class SelectedPod:
    """One endpoint of a policy's slices. `resolved`: another cluster's, its address already final
    for the policy's redirect mode (the member controller resolved it when it imported it)."""

    address: str
    node: str
    uid: str
    ready: bool
    serving: bool
    terminating: bool
    resolved: bool = False


def _usable(pods: list[SelectedPod]) -> list[SelectedPod]:
    """Ready endpoints, else serving-and-terminating ones."""
    return [pod for pod in pods if pod.ready] or [pod for pod in pods if pod.serving and pod.terminating]


def _selected_pods(slices: Iterable[Obj]) -> list[SelectedPod]:
    """Every endpoint in a policy's slices, each address once."""
    pods: dict[str, SelectedPod] = {}
    for endpoint_slice in slices:
        resolved = ((endpoint_slice.get("metadata") or {}).get("labels") or {}).get(RESOLVED_LABEL) == "true"
        for endpoint in endpoint_slice.get("endpoints") or []:
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            conditions = endpoint.get("conditions") or {}
            ready = conditions.get("ready") is not False
            pods[addresses[0]] = SelectedPod(
                address=addresses[0],
                node=str(endpoint.get("nodeName") or ""),
                uid=str((endpoint.get("targetRef") or {}).get("uid") or ""),
                ready=ready,
                serving=conditions.get("serving", ready) is not False,
                terminating=bool(conditions.get("terminating")),
                resolved=resolved,
            )
    return sorted(pods.values(), key=lambda pod: pod.address)


def policy_frontends(binding: Binding, context: PolicyContext) -> PolicyFrontends:
    """The frontends one enabled policy binds on this node, with their backends."""
    policy = binding.policy
    result = PolicyFrontends()
    if binding.in_conflict:
        result.skipped = "Conflict"
        return result
    if not _selects_node(policy, context.node_labels):
        result.skipped = "NodeNotSelected"
        return result
    service_object = _service(policy, context)
    service = None
    if policy.spec.frontend.service_matcher is not None:
        if service_object is None:
            result.skipped = "ServiceNotFound"
            return result
        service = service_frontend(service_object)
    timeout = affinity_timeout(service_object) if service_object is not None else 0
    try:
        port_pairs = _port_pairs(policy, service)
    except PortPairingError as error:
        result.skipped = "Failed"
        result.problems.append(str(error))
        return result
    pods = _selected_pods(context.policy_slices.get(policy_ref(policy), []))
    skip: tuple[int, ...] = ()
    qos = 0
    tier = Tier.BALANCING
    if isinstance(policy, LocalRedirectPolicy):
        tier = Tier.LOCAL_REDIRECT
        pods = [pod for pod in pods if pod.node == context.node and not pod.resolved]  # node-local backends only
        cgroups = {context.pod_cgroup(pod.uid) for pod in pods if pod.uid}
        skip = tuple(sorted(cgroup for cgroup in cgroups if cgroup))  # a backend never redirects to itself
        limit = policy.spec.config.redirect_qos_limit if policy.spec.config is not None else None
        qos = context.default_qos_limit if limit is None else limit
    addresses = _backend_addresses(policy, pods, context, result)
    seen: set[BackendSpec] = set()
    for ip in _frontend_ips(policy, service):
        for front_port, protocol, back_port in port_pairs:
            backends = tuple(BackendSpec(address, back_port) for address in addresses)
            seen.update(backends)
            result.frontends.append(
                (
                    tier,
                    FrontendSpec(
                        ip=ip,
                        port=front_port,
                        protocol=protocol,
                        backends=backends,
                        policy=policy_ref(policy),
                        affinity_timeout_seconds=timeout,
                        qos_limit=qos,
                        skip_cgroups=skip,
                    ),
                )
            )
    result.backends = len(seen)
    return result


def _backend_addresses(
    policy: Policy, pods: list[SelectedPod], context: PolicyContext, result: PolicyFrontends
) -> list[str]:
    """Backend IPv4 addresses of the policy in its redirect mode, each listed once."""
    if isinstance(policy, BalancingPolicy) and policy.spec.backend.address_endpoint is not None:
        return list(policy.spec.backend.address_endpoint.addresses)
    mode = "podEndpoint"
    if isinstance(policy, BalancingPolicy) and policy.spec.backend.service_endpoint is not None:
        mode = policy.spec.backend.service_endpoint.redirect_mode
    addresses: list[str] = []
    for pod in _usable(pods):
        if mode == "podEndpoint" or pod.resolved:
            address: str | None = pod.address
        elif mode == "hostPort":
            address = node_internal_ip(context.nodes.get(pod.node))
        else:
            address, problem = node_proxy_ipv4(context.nodes.get(pod.node))
            if problem and problem not in result.problems:
                result.problems.append(problem)
        if address is not None and address not in addresses:
            addresses.append(address)
    return sorted(addresses)

