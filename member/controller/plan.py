"""What the member controller wants the cluster to hold, computed from what it sees: pure.

- **Policy EndpointSlices.** For every enabled, non-conflicting policy whose backend selects pods,
  the selected pods as EndpointSlices in the controller's namespace, labelled with the policy's
  kind and name (at most 1,000 endpoints each, deterministic names). The node agents resolve
  redirect modes from them; this way only the controller watches every pod in the cluster.
- **Policy status.** `Accepted`, `Conflict` and `Ready` conditions, `backendCount` and `nodeCount`.
  Ready is honest: every node the policy targets must report (in its BalancingNode) the policy
  programmed at the policy's current generation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crds import POLICY_NAME_LABEL, BalancingPolicy, LabelSelector, LocalRedirectPolicy, PortInfo
from member.policies import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POLICY_KIND_LABEL,
    RESOLVED_LABEL,
    Binding,
    Policy,
    conflict_message,
)

Obj = Mapping[str, Any]
MAX_ENDPOINTS_PER_SLICE = 1000


def _selector(policy: Policy) -> LabelSelector | None:
    if isinstance(policy, LocalRedirectPolicy):
        return policy.spec.backend.endpoint_selector
    endpoint = policy.spec.backend.service_endpoint
    return endpoint.endpoint_selector if endpoint is not None else None


def _declares_host_ports(pod: Obj, wanted: Iterable[PortInfo]) -> bool:
    declared = {
        (int(port["hostPort"]), port.get("protocol") or "TCP")
        for container in (pod.get("spec") or {}).get("containers") or []
        for port in container.get("ports") or []
        if port.get("hostPort")
    }
    return all((port.number, port.protocol) in declared for port in wanted)


def pod_endpoint(pod: Obj) -> dict[str, Any] | None:
    """An EndpointSlice endpoint for a pod with an IPv4 address, or None (not scheduled or no IP yet)."""
    metadata, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    ip = status.get("podIP")
    if not ip or "." not in ip or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    terminating = metadata.get("deletionTimestamp") is not None
    return {
        "addresses": [ip],
        "conditions": {"ready": ready and not terminating, "serving": ready, "terminating": terminating},
        "nodeName": spec.get("nodeName"),
        "targetRef": {"kind": "Pod", "namespace": metadata.get("namespace"), "name": metadata.get("name"),
                      "uid": metadata.get("uid")},
    }


def selected_endpoints(policy: Policy, pods: Iterable[Obj]) -> list[dict[str, Any]]:
    """The endpoints of the pods a policy's backend selects (hostPort mode: only pods declaring the ports)."""
    selector = _selector(policy)
    if selector is None:
        return []
    host_ports: list[PortInfo] | None = None
    if isinstance(policy, BalancingPolicy):
        backend = policy.spec.backend.service_endpoint
        if backend is not None and backend.redirect_mode == "hostPort":
            host_ports = backend.to_ports
    endpoints = []
    for pod in pods:
        if not selector.matches((pod.get("metadata") or {}).get("labels") or {}):
            continue
        if host_ports is not None and not _declares_host_ports(pod, host_ports):
            continue
        endpoint = pod_endpoint(pod)
        if endpoint is not None:
            endpoints.append(endpoint)
    return sorted(endpoints, key=lambda e: (e["addresses"][0], e["targetRef"]["uid"] or ""))


def remote_endpoints(slices: Iterable[Obj]) -> dict[str, list[dict[str, Any]]]:
    """Other clusters' endpoints of each policy ("Kind/name"), from the slices the clusterset link imported."""
    found: dict[str, list[dict[str, Any]]] = {}
    for endpoint_slice in slices:
        labels = (endpoint_slice.get("metadata") or {}).get("labels") or {}
        if labels.get(RESOLVED_LABEL) != "true" or POLICY_NAME_LABEL not in labels or POLICY_KIND_LABEL not in labels:
            continue
        ref = f"{labels[POLICY_KIND_LABEL]}/{labels[POLICY_NAME_LABEL]}"
        found.setdefault(ref, []).extend(
            {**endpoint, "conditions": {"ready": (endpoint.get("conditions") or {}).get("ready") is not False}}
            for endpoint in endpoint_slice.get("endpoints") or [] if endpoint.get("addresses"))
    return found


def slice_name(policy: Policy, index: int) -> str:
    prefix = "lrp" if isinstance(policy, LocalRedirectPolicy) else "bp"
    name = policy.metadata.name or ""
    digest = hashlib.sha256(f"{policy.kind}/{name}".encode()).hexdigest()[:8]
    return f"{prefix}-{name[:200]}-{digest}-{index}"


def policy_slices(policy: Policy, endpoints: list[dict[str, Any]], namespace: str) -> dict[str, dict[str, Any]]:
    """The EndpointSlices that carry a policy's selected pods (at least one, possibly empty)."""
    ports = [{"name": p.name or "", "port": p.number, "protocol": p.protocol} for p in policy.spec.backend.to_ports]
    chunks = [endpoints[i : i + MAX_ENDPOINTS_PER_SLICE] for i in range(0, len(endpoints), MAX_ENDPOINTS_PER_SLICE)]
    slices = {}
    for index, chunk in enumerate(chunks or [[]]):
        name = slice_name(policy, index)
        slices[name] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY, POLICY_KIND_LABEL: policy.kind,
                           POLICY_NAME_LABEL: policy.metadata.name},
            },
            "addressType": "IPv4",
            "endpoints": chunk,
            "ports": ports,
        }
    return slices


def desired_slices(bindings: Mapping[str, Binding], pods: Iterable[Obj], namespace: str) -> dict[str, dict[str, Any]]:
    """Every policy EndpointSlice the cluster should hold, by name."""
    pods = list(pods)
    wanted: dict[str, dict[str, Any]] = {}
    for binding in bindings.values():
        if binding.in_conflict or _selector(binding.policy) is None:
            continue
        wanted.update(policy_slices(binding.policy, selected_endpoints(binding.policy, pods), namespace))
    return wanted


def slice_content(endpoint_slice: Obj) -> tuple[Any, ...]:
    """What makes two slices equal for our purpose (ignores server-set metadata)."""
    labels = (endpoint_slice.get("metadata") or {}).get("labels") or {}
    return (
        tuple(sorted(labels.items())),
        endpoint_slice.get("addressType"),
        repr(endpoint_slice.get("endpoints") or []),
        repr(endpoint_slice.get("ports") or []),
    )


# --- status ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeReport:
    """One node's view of one policy, from its BalancingNode status."""

    state: str
    generation: int | None
    backends: int


@dataclass
class PolicyStatusPlan:
    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": kind, "status": "True" if ok else "False", "reason": reason,
                                 "message": message[:32000]}
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def target_nodes(policy: Policy, nodes: Mapping[str, Obj]) -> list[str]:
    config = policy.spec.config
    selector = config.node_label_selector if config is not None else None
    return sorted(
        name for name, node in nodes.items()
        if selector is None or selector.matches(((node.get("metadata") or {}).get("labels")) or {})
    )


def backend_count(policy: Policy, endpoints: list[dict[str, Any]]) -> int:
    if isinstance(policy, BalancingPolicy) and policy.spec.backend.address_endpoint is not None:
        return len(policy.spec.backend.address_endpoint.addresses)
    return sum(1 for endpoint in endpoints if endpoint["conditions"]["ready"])


def policy_status(
    binding: Binding | None,
    policy: Policy,
    bindings: Mapping[str, Binding],
    endpoints: list[dict[str, Any]],
    nodes: Mapping[str, Obj],
    reports: Mapping[str, NodeReport],
    service_exists: bool,
) -> PolicyStatusPlan:
    """The status a policy should have; `reports` maps node name -> that node's report of this policy."""
    generation = policy.metadata.generation
    conditions: list[dict[str, Any]] = []
    events: list[tuple[str, str, str]] = []
    targets = target_nodes(policy, nodes)
    count = backend_count(policy, endpoints)
    # A BalancingPolicy resolves to the same backends on every node: a node that reports none yet has
    # not seen them. (A LocalRedirectPolicy legitimately has none on nodes without a local backend.)
    needs_backends = isinstance(policy, BalancingPolicy) and count > 0
    programmed = [n for n in targets if reports.get(n) and reports[n].state == "Programmed"
                  and (reports[n].generation or 0) >= (generation or 0)
                  and (reports[n].backends > 0 or not needs_backends)]
    if binding is None:  # disabled
        conditions += [_condition("Accepted", True, "Accepted", "the policy is valid", generation),
                       _condition("Conflict", False, "NoConflict", "the policy is disabled and binds nothing",
                                  generation),
                       _condition("Ready", False, "Disabled", "spec.enabled is false", generation)]
    elif binding.in_conflict:
        message = conflict_message(binding, bindings)
        conditions += [_condition("Accepted", False, "Conflict", message, generation),
                       _condition("Conflict", True, "FrontendInUse", message, generation),
                       _condition("Ready", False, "Conflict", message, generation)]
        events.append(("Warning", "Conflict", message))
    else:
        conditions += [_condition("Accepted", True, "Accepted", "the policy is valid and binds its frontend",
                                  generation),
                       _condition("Conflict", False, "NoConflict", "no other policy binds this frontend", generation)]
        if policy.spec.frontend.service_matcher is not None and not service_exists:
            matcher = policy.spec.frontend.service_matcher
            message = f"Service {matcher.namespace}/{matcher.service_name} does not exist"
            conditions.append(_condition("Ready", False, "ServiceNotFound", message, generation))
            events.append(("Warning", "ServiceNotFound", message))
        elif not targets:
            message = "config.nodeLabelSelector selects no node"
            conditions.append(_condition("Ready", False, "NoNodes", message, generation))
            events.append(("Warning", "NoNodes", message))
        elif count == 0:
            message = "the backend selects no ready pod in any member cluster" if _selector(policy) is not None else \
                "the backend has no address"
            conditions.append(_condition("Ready", False, "NoBackends", message, generation))
            events.append(("Warning", "NoBackends", message))
        elif len(programmed) < len(targets):
            waiting = [n for n in targets if n not in programmed]
            message = (f"programmed on {len(programmed)} of {len(targets)} nodes; waiting for "
                       f"{', '.join(waiting[:5])}{' ...' if len(waiting) > 5 else ''}")
            conditions.append(_condition("Ready", False, "Programming", message, generation))
        else:
            conditions.append(_condition("Ready", True, "Programmed",
                                         f"programmed on {len(programmed)} nodes with {count} backends", generation))
    status = {"observedGeneration": generation, "backendCount": count, "nodeCount": len(programmed),
              "conditions": conditions}
    return PolicyStatusPlan(status={k: v for k, v in status.items() if v is not None}, events=events)
