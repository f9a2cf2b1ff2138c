"""Kubernetes Service semantics for one node, as kube-proxy implements them (pkg/proxy is the
reference): which frontends a Service has and which endpoints each one resolves to.

Pure: input is API JSON (Service, EndpointSlices, this node), output is datapath frontends.
Where we differ from kube-proxy, docs/datapath.md ("Service semantics") says so and why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crds.mcs import AFFINITY_ANNOTATION
from datapath.lb import MAX_BACKENDS_PER_FRONTEND, NODE_PORT_ANY, BackendSpec, FrontendSpec, Tier

Obj = Mapping[str, Any]

SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ZONE_LABEL = "topology.kubernetes.io/zone"
DEFAULT_AFFINITY_TIMEOUT_S = 10800  # Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds
PROXIED_PROTOCOLS = ("TCP", "UDP")


@dataclass(frozen=True)
class Endpoint:
    """One usable address of an EndpointSlice, with what topology and readiness rules need."""

    ip: str
    port: int
    node: str
    ready: bool
    serving: bool
    terminating: bool
    zone_hints: frozenset[str]
    node_hints: frozenset[str]


@dataclass
class ServiceFrontends:
    """A Service's frontends on this node, or why it has none."""

    frontends: list[tuple[Tier, FrontendSpec]] = field(default_factory=list)
    skipped_ports: list[str] = field(default_factory=list)  # e.g. "dns/SCTP": not proxied
    problem: str = ""  # set when the Service cannot be programmed; its old frontends stay


def service_key(service: Obj) -> str:
    metadata = service.get("metadata") or {}
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"


def is_proxied(service: Obj) -> bool:
    """Headless, ExternalName and Services owned by another proxy are left alone, as kube-proxy does."""
    labels = (service.get("metadata") or {}).get("labels") or {}
    spec = service.get("spec") or {}
    if SERVICE_PROXY_NAME_LABEL in labels or spec.get("type") == "ExternalName":
        return False
    return bool(_ipv4s(spec.get("clusterIPs") or [spec.get("clusterIP")]))


def _ipv4s(values: Iterable[Any]) -> list[str]:
    return [value for value in values if isinstance(value, str) and value.count(".") == 3]


def _condition(conditions: Obj, name: str, default: bool) -> bool:
    value = conditions.get(name)
    return default if value is None else bool(value)


def slice_endpoints(slices: Iterable[Obj], port_name: str, protocol: str) -> list[Endpoint]:
    """The endpoints of a Service port across all its IPv4 slices; a named targetPort resolves per
    slice (the EndpointSlice controller groups pods by their resolved port numbers)."""
    found: dict[tuple[str, int], Endpoint] = {}
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType") != "IPv4":
            continue
        port = next(
            (
                p.get("port")
                for p in endpoint_slice.get("ports") or []
                if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol
            ),
            None,
        )
        if not port:
            continue
        for endpoint in endpoint_slice.get("endpoints") or []:
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            conditions = endpoint.get("conditions") or {}
            ready = _condition(conditions, "ready", True)
            hints = endpoint.get("hints") or {}
            key = (addresses[0], int(port))
            if key in found and found[key].ready:
                continue  # the same endpoint in two slices (a move in progress): keep the ready copy
            found[key] = Endpoint(
                ip=addresses[0],
                port=int(port),
                node=str(endpoint.get("nodeName") or ""),
                ready=ready,
                serving=_condition(conditions, "serving", ready),
                terminating=_condition(conditions, "terminating", False),
                zone_hints=frozenset(h.get("name", "") for h in hints.get("forZones") or []),
                node_hints=frozenset(h.get("name", "") for h in hints.get("forNodes") or []),
            )
    return sorted(found.values(), key=lambda e: (e.ip, e.port))


def _topology_mode(endpoints: list[Endpoint], node: str, zone: str) -> str:
    """kube-proxy's topologyModeFromHints: same node, same zone, or no topology."""
    ready = [e for e in endpoints if e.ready]
    if not ready:
        return ""
    if all(e.node_hints for e in ready) and any(node in e.node_hints for e in ready):
        return "node"
    if all(e.zone_hints for e in ready) and zone and any(zone in e.zone_hints for e in ready):
        return "zone"
    return ""


def cluster_endpoints(endpoints: list[Endpoint], node: str, zone: str) -> list[Endpoint]:
    """Ready endpoints (narrowed by topology hints), else serving-and-terminating ones."""
    mode = _topology_mode(endpoints, node, zone)
    def in_topology(e: Endpoint) -> bool:
        return mode == "" or (mode == "node" and node in e.node_hints) or (mode == "zone" and zone in e.zone_hints)

    chosen = [e for e in endpoints if e.ready and in_topology(e)]
    return chosen or [e for e in endpoints if e.serving and e.terminating]


def local_endpoints(endpoints: list[Endpoint], node: str) -> list[Endpoint]:
    """Ready endpoints on this node, else serving-and-terminating ones on this node."""
    local = [e for e in endpoints if e.node == node]
    return [e for e in local if e.ready] or [e for e in local if e.serving and e.terminating]


def _backends(endpoints: list[Endpoint]) -> tuple[BackendSpec, ...]:
    return tuple(BackendSpec(e.ip, e.port) for e in endpoints)


def affinity_timeout(service: Obj) -> int:
    spec = service.get("spec") or {}
    if spec.get("sessionAffinity") != "ClientIP":
        return 0
    config = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
    return int(config) if config else DEFAULT_AFFINITY_TIMEOUT_S


def _proxied_ports(spec: Obj, result: ServiceFrontends) -> Iterable[tuple[Obj, str, str]]:
    """(port, its name, its protocol) of each TCP and UDP port; the others are noted as skipped."""
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        port_name = port.get("name") or ""
        if protocol in PROXIED_PROTOCOLS:
            yield port, port_name, protocol
        else:
            result.skipped_ports.append(f"{port_name or port.get('port')}/{protocol}")


def service_frontends(service: Obj, slices: Iterable[Obj], node: str, zone: str) -> ServiceFrontends:
    """Every frontend of one Service on node `node` (in zone `zone`): ClusterIPs (with
    internalTrafficPolicy), NodePorts (any node address), LoadBalancer ingress IPs and externalIPs.

    Clients of the socket LB are always inside the cluster (pods and node processes), so NodePort,
    LoadBalancer and external IPs resolve to the cluster-wide endpoints even with
    externalTrafficPolicy Local, as kube-proxy's short-circuit for in-cluster clients does."""
    result = ServiceFrontends()
    if not is_proxied(service):
        return result
    spec = service.get("spec") or {}
    name = service_key(service)
    cluster_ips = _ipv4s(spec.get("clusterIPs") or [spec.get("clusterIP")])
    service_type = spec.get("type") or "ClusterIP"
    external_ips = _ipv4s(spec.get("externalIPs") or [])
    if service_type == "LoadBalancer":
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        external_ips += _ipv4s(i.get("ip") for i in ingress if i.get("ipMode", "VIP") == "VIP")
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    timeout = affinity_timeout(service)
    slices = list(slices)
    for port, port_name, protocol in _proxied_ports(spec, result):
        endpoints = slice_endpoints(slices, port_name, protocol)
        cluster = _backends(cluster_endpoints(endpoints, node, zone))
        internal = _backends(local_endpoints(endpoints, node)) if internal_local else cluster
        if max(len(cluster), len(internal)) > MAX_BACKENDS_PER_FRONTEND:
            result.problem = (
                f"port {port_name or port['port']}/{protocol} has {max(len(cluster), len(internal))} endpoints, more "
                f"than the {MAX_BACKENDS_PER_FRONTEND} one frontend can hold; its previous state is kept"
            )
            result.frontends = []
            return result

        addresses = [(ip, int(port["port"]), internal) for ip in cluster_ips]
        if port.get("nodePort") and service_type in ("NodePort", "LoadBalancer"):
            addresses.append((NODE_PORT_ANY, int(port["nodePort"]), cluster))
        addresses += [(ip, int(port["port"]), cluster) for ip in external_ips]
        for ip, number, backends in addresses:
            spec = FrontendSpec(ip=ip, port=number, protocol=protocol, backends=backends, policy=name,
                                affinity_timeout_seconds=timeout, reject_when_empty=True)
            result.frontends.append((Tier.SERVICE, spec))
    return result


def node_zone(node: Obj | None) -> str:
    return str(((node or {}).get("metadata") or {}).get("labels", {}).get(ZONE_LABEL, ""))


def node_addresses(nodes: Iterable[Obj]) -> list[str]:
    """Every InternalIP and ExternalIP (IPv4) of the cluster's nodes: where a NodePort answers."""
    found: set[str] = set()
    for node in nodes:
        for address in (node.get("status") or {}).get("addresses") or []:
            if address.get("type") in ("InternalIP", "ExternalIP"):
                found.update(_ipv4s([address.get("address")]))
    return sorted(found)


def node_internal_ip(node: Obj | None) -> str | None:
    for address in ((node or {}).get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP" and _ipv4s([address.get("address")]):
            return str(address["address"])
    return None


def import_frontends(service_import: Obj, local_slices: Iterable[Obj], remote_slices: Iterable[Obj], cluster: str,
                     node: str, zone: str) -> ServiceFrontends:
    """An MCS ServiceImport's ClusterSetIP frontends: this cluster's endpoints (from the local Service,
    when this cluster exports it too) and every other cluster's (the imported EndpointSlices), with the
    export's locality (annotation balancing.elf.io/affinity): `none` balances over all, `local` uses this
    cluster's ready endpoints and fails over to the others when there is none, `remote` the reverse."""
    result = ServiceFrontends()
    spec = service_import.get("spec") or {}
    if spec.get("type", "ClusterSetIP") != "ClusterSetIP":
        return result
    metadata = service_import.get("metadata") or {}
    name = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
    exporters = {c.get("cluster") for c in (service_import.get("status") or {}).get("clusters") or []}
    local_slices = list(local_slices) if cluster in exporters else []
    remote_slices = list(remote_slices)
    locality = str((metadata.get("annotations") or {}).get(AFFINITY_ANNOTATION) or "none")
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    timeout = affinity_timeout(service_import)  # the same fields as a Service's
    for port, port_name, protocol in _proxied_ports(spec, result):
        local = slice_endpoints(local_slices, port_name, protocol)
        if internal_local:
            chosen = local_endpoints(local, node)
        else:
            here = cluster_endpoints(local, node, zone)
            there = cluster_endpoints(slice_endpoints(remote_slices, port_name, protocol), node, zone)
            if locality == "local":
                chosen = here or there
            elif locality == "remote":
                chosen = there or here
            else:
                chosen = here + there
        backends = tuple(dict.fromkeys(_backends(chosen)))
        if len(backends) > MAX_BACKENDS_PER_FRONTEND:
            result.problem = (f"port {port_name or port.get('port')}/{protocol} has {len(backends)} endpoints, more "
                              f"than the {MAX_BACKENDS_PER_FRONTEND} one frontend can hold; its previous state is kept")
            result.frontends = []
            return result
        for ip in _ipv4s(spec.get("ips") or []):
            result.frontends.append((Tier.SERVICE, FrontendSpec(
                ip=ip, port=int(port["port"]), protocol=protocol, backends=backends, policy=f"import {name}",
                affinity_timeout_seconds=timeout, reject_when_empty=True)))
    return result
