"""What a member publishes in its namespace on the hub (docs/federation.md): pure.

- one `ExportedService` per valid MCS `ServiceExport`, and one `FederatedEndpointSlice` per local
  EndpointSlice of that Service (stamped with the change's time, so propagation can be measured);
- its `MemberCluster` registration;
- one `NodeTunnelEndpoint` per node whose agent has published a WireGuard public key;
- the local `ServiceExport` conditions, from local checks and the hub's verdict on the export.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crds import (
    API_VERSION,
    CHANGED_AT_ANNOTATION,
    POLICY_NAME_LABEL,
    SERVICE_NAME_LABEL,
    SERVICE_NAMESPACE_LABEL,
    SOURCE_CLUSTER_LABEL,
    ExportedService,
    NodeTunnelEndpoint,
)
from crds.federation import MAX_ENDPOINTS
from crds.mcs import AFFINITY_ANNOTATION
from member.agent.services import DEFAULT_AFFINITY_TIMEOUT_S, PROXIED_PROTOCOLS, node_internal_ip, node_zone
from member.policies import node_proxy_ipv4

Obj = Mapping[str, Any]
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
WIREGUARD_PORT = 51820
MAX_CLUSTER_POD_CIDRS = 8
AFFINITIES = ("none", "local", "remote")


@dataclass
class ExportCheck:
    """Whether one MCS ServiceExport can be exported, and why not."""

    valid: bool
    reason: str
    message: str


def check_export(export: Obj, service: Obj | None) -> ExportCheck:
    metadata = export.get("metadata") or {}
    where = f"{metadata.get('namespace')}/{metadata.get('name')}"
    if service is None:
        return ExportCheck(False, "NoService", f"no Service {where} to export")
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return ExportCheck(False, "ServiceTypeNotSupported",
                           f"Service {where} is of type ExternalName: it has no endpoints to export")
    if not any((p.get("protocol") or "TCP") in PROXIED_PROTOCOLS for p in spec.get("ports") or []):
        return ExportCheck(False, "NoProxiedPorts", f"Service {where} has no TCP or UDP port")
    affinity = ((metadata.get("annotations") or {}).get(AFFINITY_ANNOTATION) or "none").strip()
    if affinity not in AFFINITIES:
        return ExportCheck(False, "InvalidAffinity",
                           f"annotation {AFFINITY_ANNOTATION} must be one of {', '.join(AFFINITIES)}, not {affinity!r}")
    return ExportCheck(True, "Exported", f"Service {where} is exported")


def exported_service(cluster: str, export: Obj, service: Obj) -> dict[str, Any]:
    """The ExportedService body for a valid export (spec only; the hub writes its status)."""
    metadata, spec = export.get("metadata") or {}, service.get("spec") or {}
    namespace, name = str(metadata["namespace"]), str(metadata["name"])
    ports = [
        {k: v for k, v in {"name": p.get("name") or None, "port": int(p["port"]),
                           "protocol": p.get("protocol") or "TCP",
                           "targetPort": str(p["targetPort"]) if p.get("targetPort") is not None else None}.items()
         if v is not None}
        for p in spec.get("ports") or [] if (p.get("protocol") or "TCP") in PROXIED_PROTOCOLS
    ]
    body: dict[str, Any] = {
        "cluster": cluster,
        "namespace": namespace,
        "serviceName": name,
        "type": "Headless" if spec.get("clusterIP") == "None" else "ClusterSetIP",
        "ports": ports,
        "sessionAffinity": spec.get("sessionAffinity") or "None",
        "internalTrafficPolicy": spec.get("internalTrafficPolicy") or "Cluster",
        "affinity": ((metadata.get("annotations") or {}).get(AFFINITY_ANNOTATION) or "none").strip(),
    }
    if body["sessionAffinity"] == "ClientIP":
        timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        body["sessionAffinityTimeoutSeconds"] = int(timeout or DEFAULT_AFFINITY_TIMEOUT_S)
    if metadata.get("creationTimestamp"):
        body["exportedAt"] = metadata["creationTimestamp"]
    return {
        "apiVersion": API_VERSION,
        "kind": "ExportedService",
        "metadata": {"name": ExportedService.object_name(cluster, namespace, name),
                     "labels": {SOURCE_CLUSTER_LABEL: cluster, SERVICE_NAMESPACE_LABEL: namespace,
                                SERVICE_NAME_LABEL: name}},
        "spec": body,
    }


def _slice_name(cluster: str, local_slice: Obj) -> str:
    metadata = local_slice.get("metadata") or {}
    base = f"{cluster}.{metadata.get('namespace')}.{metadata.get('name')}"
    if len(base) <= 253:
        return base
    return f"{base[:240]}-{hashlib.sha256(base.encode()).hexdigest()[:12]}"


def federated_endpoint_slice(cluster: str, service: Obj, local_slice: Obj, nodes: Mapping[str, Obj],
                             changed_at: str) -> dict[str, Any] | None:
    """The hub copy of one local EndpointSlice of an exported Service (IPv4 only), or None."""
    if local_slice.get("addressType") != "IPv4":
        return None
    service_meta = service.get("metadata") or {}
    endpoints = []
    for endpoint in local_slice.get("endpoints") or []:
        addresses = endpoint.get("addresses") or []
        if not addresses:
            continue
        conditions = endpoint.get("conditions") or {}
        node_name = endpoint.get("nodeName")
        node = nodes.get(node_name) if node_name else None
        entry: dict[str, Any] = {"addresses": addresses[:1], "ready": conditions.get("ready") is not False}
        if node_name:
            entry["nodeName"] = node_name
        if (node_ip := node_internal_ip(node)) is not None:
            entry["nodeIP"] = node_ip
        if (proxy := node_proxy_ipv4(node)[0]) is not None:
            entry["nodeProxyIPv4"] = proxy
        if zone := node_zone(node):
            entry["zone"] = zone
        target = endpoint.get("targetRef") or {}
        if target.get("kind") == "Pod" and target.get("name") and target.get("namespace"):
            entry["targetRef"] = {"namespace": target["namespace"], "name": target["name"]}
        endpoints.append(entry)
    ports = [{k: v for k, v in {"name": p.get("name") or None, "port": int(p["port"]),
                                "protocol": p.get("protocol") or "TCP"}.items() if v is not None}
             for p in local_slice.get("ports") or []
             if p.get("port") and (p.get("protocol") or "TCP") in PROXIED_PROTOCOLS]
    namespace, name = str(service_meta["namespace"]), str(service_meta["name"])
    return {
        "apiVersion": API_VERSION,
        "kind": "FederatedEndpointSlice",
        "metadata": {"name": _slice_name(cluster, local_slice),
                     "labels": {SOURCE_CLUSTER_LABEL: cluster, SERVICE_NAMESPACE_LABEL: namespace,
                                SERVICE_NAME_LABEL: name},
                     "annotations": {CHANGED_AT_ANNOTATION: changed_at}},
        "spec": {"cluster": cluster, "service": {"namespace": namespace, "name": name}, "addressType": "IPv4",
                 "ports": ports, "endpoints": endpoints},
    }


def change_time(local_slice: Obj, fallback: str) -> str:
    """When the change a slice carries happened: kube-controller-manager's trigger time, else `fallback`."""
    value = ((local_slice.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_TIME_ANNOTATION)
    if not value:
        return fallback
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return fallback
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ExportPlan:
    """The member's desired objects in its hub namespace, and its exports' local conditions."""

    exported: dict[str, dict[str, Any]] = field(default_factory=dict)  # ExportedService by name
    slices: dict[str, dict[str, Any]] = field(default_factory=dict)  # FederatedEndpointSlice by name
    tunnels: dict[str, dict[str, Any]] = field(default_factory=dict)  # NodeTunnelEndpoint by name
    checks: dict[str, ExportCheck] = field(default_factory=dict)  # "ns/name" of each ServiceExport


def policy_endpoint_slice(cluster: str, hub_name: str, endpoints: Iterable[Obj], nodes: Mapping[str, Obj],
                          now: str) -> dict[str, Any]:
    """This cluster's pods that a hub BalancingPolicy selects, with what every redirect mode needs."""
    entries = []
    for endpoint in endpoints:
        node = nodes.get(str(endpoint.get("nodeName") or ""))
        entry: dict[str, Any] = {"addresses": list(endpoint["addresses"])[:1],
                                 "ready": bool((endpoint.get("conditions") or {}).get("ready"))}
        if endpoint.get("nodeName"):
            entry["nodeName"] = endpoint["nodeName"]
        if (node_ip := node_internal_ip(node)) is not None:
            entry["nodeIP"] = node_ip
        if (proxy := node_proxy_ipv4(node)[0]) is not None:
            entry["nodeProxyIPv4"] = proxy
        entries.append(entry)
    name = f"{cluster}.policy.{hub_name}"
    if len(name) > 253:
        name = f"{name[:240]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return {
        "apiVersion": API_VERSION,
        "kind": "FederatedEndpointSlice",
        "metadata": {"name": name, "labels": {SOURCE_CLUSTER_LABEL: cluster, POLICY_NAME_LABEL: hub_name},
                     "annotations": {CHANGED_AT_ANNOTATION: now}},
        "spec": {"cluster": cluster, "policy": {"kind": "BalancingPolicy", "name": hub_name}, "addressType": "IPv4",
                 "endpoints": entries[:MAX_ENDPOINTS]},
    }


def plan_exports(cluster: str, exports: Iterable[Obj], services: Mapping[str, Obj],
                 slices_by_service: Mapping[str, Iterable[Obj]], nodes: Mapping[str, Obj],
                 balancing_nodes: Mapping[str, Obj], now: str,
                 hub_policy_endpoints: Mapping[str, Iterable[Obj]] | None = None) -> ExportPlan:
    """`hub_policy_endpoints`: for each hub BalancingPolicy (by its name on the hub) with pod backends,
    the endpoints it selects in this cluster."""
    plan = ExportPlan()
    for hub_name, endpoints in (hub_policy_endpoints or {}).items():
        body = policy_endpoint_slice(cluster, hub_name, endpoints, nodes, now)
        plan.slices[body["metadata"]["name"]] = body
    for export in exports:
        metadata = export.get("metadata") or {}
        key = f"{metadata.get('namespace')}/{metadata.get('name')}"
        service = services.get(key)
        check = plan.checks[key] = check_export(export, service)
        if not check.valid or service is None:
            continue
        body = exported_service(cluster, export, service)
        plan.exported[body["metadata"]["name"]] = body
        for local_slice in slices_by_service.get(key, ()):
            copy = federated_endpoint_slice(cluster, service, local_slice, nodes, change_time(local_slice, now))
            if copy is not None:
                plan.slices[copy["metadata"]["name"]] = copy
    for name, node in nodes.items():
        tunnel = node_tunnel_endpoint(cluster, name, node, balancing_nodes.get(name))
        if tunnel is not None:
            plan.tunnels[tunnel["metadata"]["name"]] = tunnel
    return plan


def node_tunnel_endpoint(cluster: str, name: str, node: Obj, balancing_node: Obj | None) -> dict[str, Any] | None:
    """A node's tunnel endpoint, once its agent has reported the node's WireGuard public key."""
    key = ((balancing_node or {}).get("status") or {}).get("wireguardPublicKey")
    address = node_internal_ip(node)
    if not key or address is None:
        return None
    cidrs = [c for c in (node.get("spec") or {}).get("podCIDRs") or [] if "." in c]
    return {
        "apiVersion": API_VERSION,
        "kind": "NodeTunnelEndpoint",
        "metadata": {"name": NodeTunnelEndpoint.object_name(cluster, name), "labels": {SOURCE_CLUSTER_LABEL: cluster}},
        "spec": {"cluster": cluster, "node": name, "publicKey": key, "endpoint": f"{address}:{WIREGUARD_PORT}",
                 "podCIDRs": cidrs},
    }


def cluster_pod_cidrs(nodes: Iterable[Obj]) -> list[str] | None:
    """The cluster's pod CIDRs, collapsed from its nodes'; None when they do not fit the registration."""
    networks = [ipaddress.IPv4Network(c) for node in nodes for c in (node.get("spec") or {}).get("podCIDRs") or []
                if "." in c]
    collapsed = [str(n) for n in ipaddress.collapse_addresses(networks)]
    return collapsed if 0 < len(collapsed) <= MAX_CLUSTER_POD_CIDRS else None


def member_cluster(cluster: str, nodes: Iterable[Obj], heartbeat_period: int, heartbeat_timeout: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"heartbeatPeriodSeconds": heartbeat_period, "heartbeatTimeoutSeconds": heartbeat_timeout}
    if (cidrs := cluster_pod_cidrs(nodes)) is not None:
        spec["podCIDRs"] = cidrs
    return {"apiVersion": API_VERSION, "kind": "MemberCluster", "metadata": {"name": cluster}, "spec": spec}


