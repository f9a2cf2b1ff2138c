"""What a member takes from the hub into its own cluster (docs/federation.md): pure.

- an MCS `ServiceImport` per catalogue `FederatedService` whose namespace exists here, with the
  ClusterSetIP the hub allocated, and one EndpointSlice per other cluster's catalogue slice, labelled
  with the MCS service-name and source-cluster labels (the change's time carried as the slice's
  trigger time, so the agents measure propagation end to end);
- the hub's BalancingPolicies and LocalRedirectPolicies, as local copies named `hub.<name>`, and the
  other clusters' pods a hub BalancingPolicy selects, as policy EndpointSlices whose addresses are
  already resolved for its redirect mode;
- each node's proxy IPv4 (Node annotation) and tunnel peers (`BalancingNode.spec.tunnel`), from the
  hub's plan in the node's `NodeTunnelEndpoint` status.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crds import (
    CHANGED_AT_ANNOTATION,
    NODE_PROXY_IPV4_ANNOTATION,
    POLICY_NAME_LABEL,
    BalancingPolicy,
    FederatedEndpointSlice,
    FederatedService,
    InvalidObjectError,
    NodeTunnelEndpoint,
    parse_object,
)
from crds.mcs import AFFINITY_ANNOTATION, MCS_SERVICE_NAME_LABEL, MCS_SOURCE_CLUSTER_LABEL
from member.policies import MANAGED_BY, MANAGED_BY_LABEL, ORIGIN_LABEL, POLICY_KIND_LABEL, RESOLVED_LABEL

Obj = Mapping[str, Any]
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
HUB_POLICY_PREFIX = "hub."
MCS_API_VERSION = "multicluster.x-k8s.io/v1alpha1"


def hub_policy_name(name: str) -> str:
    return f"{HUB_POLICY_PREFIX}{name}"[:253]


def service_import(service: FederatedService) -> dict[str, Any]:
    spec = service.spec
    body: dict[str, Any] = {
        "type": spec.type,
        "ports": [{k: v for k, v in {"name": p.name, "port": p.port, "protocol": p.protocol}.items() if v is not None}
                  for p in spec.ports],
        "sessionAffinity": spec.session_affinity,
        "internalTrafficPolicy": spec.internal_traffic_policy,
    }
    if spec.ips:
        body["ips"] = list(spec.ips)
    if spec.session_affinity == "ClientIP" and spec.session_affinity_timeout_seconds:
        body["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": spec.session_affinity_timeout_seconds}}
    return {
        "apiVersion": MCS_API_VERSION,
        "kind": "ServiceImport",
        "metadata": {"name": spec.service_name, "namespace": spec.namespace,
                     "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                     "annotations": {AFFINITY_ANNOTATION: spec.affinity}},
        "spec": body,
    }


def import_clusters(service: FederatedService) -> list[str]:
    return sorted(c.cluster for c in (service.status.clusters if service.status and service.status.clusters else []))


def _short(name: str, limit: int = 253) -> str:
    if len(name) <= limit:
        return name
    return f"{name[: limit - 13]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def imported_slice(copy: FederatedEndpointSlice) -> dict[str, Any] | None:
    """The local EndpointSlice of another cluster's endpoints of an imported Service."""
    spec = copy.spec
    if spec.service is None:
        return None
    endpoints = []
    for endpoint in spec.endpoints:
        entry: dict[str, Any] = {"addresses": endpoint.addresses[:1], "conditions": {"ready": endpoint.ready}}
        if endpoint.zone:
            entry["zone"] = endpoint.zone
        endpoints.append(entry)  # no nodeName: another cluster's node is never this cluster's
    labels = {MCS_SERVICE_NAME_LABEL: spec.service.name, MCS_SOURCE_CLUSTER_LABEL: spec.cluster}
    ports = [{"name": p.name or "", "port": p.port, "protocol": p.protocol} for p in spec.ports or []]
    return _endpoint_slice(copy, spec.service.namespace, labels, ports, endpoints)


def _endpoint_slice(copy: FederatedEndpointSlice, namespace: str, labels: dict[str, str],
                    ports: list[dict[str, Any]], endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    """A local EndpointSlice made from a catalogue copy, carrying the source's change time."""
    annotations = {}
    if changed := (copy.metadata.annotations or {}).get(CHANGED_AT_ANNOTATION):
        annotations[TRIGGER_TIME_ANNOTATION] = changed
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": _short(f"imported.{copy.metadata.name}"), "namespace": namespace,
                     "labels": {**labels, MANAGED_BY_LABEL: MANAGED_BY}, "annotations": annotations},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }


def _resolved_address(endpoint: Any, mode: str) -> str | None:
    if mode == "hostPort":
        return str(endpoint.node_ip) if endpoint.node_ip else None
    if mode == "nodeProxy":
        return str(endpoint.node_proxy_ipv4) if endpoint.node_proxy_ipv4 else None
    return str(endpoint.addresses[0])


def imported_policy_slice(copy: FederatedEndpointSlice, policy: BalancingPolicy,
                          namespace: str) -> dict[str, Any] | None:
    """Another cluster's pods of a hub BalancingPolicy, as a policy EndpointSlice with final addresses."""
    backend = policy.spec.backend.service_endpoint
    if copy.spec.policy is None or backend is None:
        return None
    endpoints, seen = [], set()
    for endpoint in copy.spec.endpoints:
        address = _resolved_address(endpoint, backend.redirect_mode)
        if address is None or address in seen:
            continue
        seen.add(address)
        endpoints.append({"addresses": [address], "conditions": {"ready": endpoint.ready}})
    labels = {POLICY_KIND_LABEL: "BalancingPolicy", POLICY_NAME_LABEL: hub_policy_name(policy.metadata.name or ""),
              RESOLVED_LABEL: "true", MCS_SOURCE_CLUSTER_LABEL: copy.spec.cluster}
    ports = [{"name": p.name or "", "port": p.number, "protocol": p.protocol} for p in backend.to_ports]
    return _endpoint_slice(copy, namespace, labels, ports, endpoints)


def local_policy_copy(policy: Obj) -> dict[str, Any]:
    """A hub policy as this cluster's own (spec verbatim; status is this cluster's)."""
    metadata = policy.get("metadata") or {}
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items()
                   if not k.startswith("kubectl.kubernetes.io/")}
    return {
        "apiVersion": policy["apiVersion"],
        "kind": policy["kind"],
        "metadata": {"name": hub_policy_name(str(metadata["name"])), "labels": {ORIGIN_LABEL: "hub"},
                     "annotations": annotations},
        "spec": policy["spec"],
    }


@dataclass
class ImportPlan:
    imports: dict[str, dict[str, Any]] = field(default_factory=dict)  # ServiceImport by "ns/name"
    import_clusters: dict[str, list[str]] = field(default_factory=dict)  # its status.clusters
    slices: dict[str, dict[str, Any]] = field(default_factory=dict)  # EndpointSlice by "ns/name"
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # local copies by "Kind/name"
    node_proxies: dict[str, str] = field(default_factory=dict)  # node -> proxy IPv4
    tunnels: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> BalancingNode spec.tunnel


def plan_imports(cluster: str, namespaces: Iterable[str], policy_namespace: str,
                 services: Iterable[FederatedService], slices: Iterable[FederatedEndpointSlice],
                 hub_policies: Iterable[Obj], tunnels: Iterable[NodeTunnelEndpoint]) -> ImportPlan:
    plan = ImportPlan()
    present = set(namespaces)
    imported: set[tuple[str, str]] = set()
    for service in services:
        spec = service.spec
        if spec.namespace not in present:
            continue  # namespace sameness: an import lives in the namespace of the same name
        key = f"{spec.namespace}/{spec.service_name}"
        plan.imports[key] = service_import(service)
        plan.import_clusters[key] = import_clusters(service)
        imported.add((spec.namespace, spec.service_name))
    balancing: dict[str, BalancingPolicy] = {}
    for policy in hub_policies:
        local = local_policy_copy(policy)
        plan.policies[f"{local['kind']}/{local['metadata']['name']}"] = local
        if policy.get("kind") != "BalancingPolicy":
            continue
        try:
            parsed = parse_object(policy)
        except InvalidObjectError:
            continue  # copied as it is; our own controller reports it Invalid
        if isinstance(parsed, BalancingPolicy):
            balancing[parsed.metadata.name or ""] = parsed
    for copy in slices:
        if copy.spec.cluster == cluster:
            continue  # our own endpoints are here already
        if copy.spec.service is not None and (copy.spec.service.namespace, copy.spec.service.name) in imported:
            body = imported_slice(copy)
        elif copy.spec.policy is not None and copy.spec.policy.name in balancing:
            body = imported_policy_slice(copy, balancing[copy.spec.policy.name], policy_namespace)
        else:
            continue
        if body is not None:
            plan.slices[f"{body['metadata']['namespace']}/{body['metadata']['name']}"] = body
    for tunnel in tunnels:
        if tunnel.spec.cluster != cluster or tunnel.status is None:
            continue
        if tunnel.status.proxy_ipv4:
            plan.node_proxies[tunnel.spec.node] = str(tunnel.status.proxy_ipv4)
        plan.tunnels[tunnel.spec.node] = {
            "proxyIPv4": tunnel.status.proxy_ipv4,
            "peers": [peer.to_api() for peer in tunnel.status.peers or []],
        }
    return plan


def node_annotation_patch(node: Obj, proxy: str) -> dict[str, Any] | None:
    """The patch that gives a Node the proxy IPv4 the hub allocated, or None when it has it. A node the
    hub has no proxy IPv4 for keeps whatever an administrator set (seed 000's manual mode)."""
    current = ((node.get("metadata") or {}).get("annotations") or {}).get(NODE_PROXY_IPV4_ANNOTATION)
    if current == proxy:
        return None
    return {"metadata": {"annotations": {NODE_PROXY_IPV4_ANNOTATION: proxy}}}
