"""Builders of API JSON for the agent's table tests: Services, EndpointSlices, Nodes, policies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Obj = dict[str, Any]


def service(
    name: str = "web",
    namespace: str = "default",
    *,
    cluster_ip: str = "10.96.0.10",
    ports: Sequence[Obj] = ({"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},),
    created: str = "2026-01-01T00:00:00Z",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> Obj:
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created, "labels": labels or {},
                     "uid": f"uid-svc-{namespace}-{name}"},
        "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": list(ports), "type": "ClusterIP",
                 **spec},
    }


def endpoint(ip: str, node: str = "node-1", *, ready: bool | None = True, serving: bool | None = None,
             terminating: bool | None = None, zones: Sequence[str] = (), nodes: Sequence[str] = (),
             uid: str = "") -> Obj:
    conditions = {k: v for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating))
                  if v is not None}
    entry: Obj = {"addresses": [ip], "conditions": conditions, "nodeName": node}
    hints: Obj = {}
    if zones:
        hints["forZones"] = [{"name": zone} for zone in zones]
    if nodes:
        hints["forNodes"] = [{"name": name} for name in nodes]
    if hints:
        entry["hints"] = hints
    if uid:
        entry["targetRef"] = {"kind": "Pod", "uid": uid, "name": f"pod-{ip}", "namespace": "default"}
    return entry


def endpoint_slice(service_name: str, endpoints: Sequence[Obj], *, name: str = "", namespace: str = "default",
                   ports: Sequence[Obj] = ({"name": "http", "port": 8080, "protocol": "TCP"},),
                   address_type: str = "IPv4", labels: dict[str, str] | None = None) -> Obj:
    return {
        "metadata": {"name": name or f"{service_name}-abc", "namespace": namespace,
                     "labels": labels if labels is not None else {"kubernetes.io/service-name": service_name},
                     "uid": f"uid-slice-{name or service_name}"},
        "addressType": address_type,
        "endpoints": list(endpoints),
        "ports": list(ports),
    }


def node(name: str, ip: str, *, zone: str = "", labels: dict[str, str] | None = None,
         annotations: dict[str, str] | None = None) -> Obj:
    all_labels = {"kubernetes.io/hostname": name, **(labels or {})}
    if zone:
        all_labels["topology.kubernetes.io/zone"] = zone
    return {
        "metadata": {"name": name, "labels": all_labels, "annotations": annotations or {}, "uid": f"uid-{name}"},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]},
    }


def policy(kind: str, name: str, spec: Obj, *, created: str = "2026-01-01T00:00:00Z", generation: int = 1,
           annotations: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "balancing.elf.io/v1beta1",
        "kind": kind,
        "metadata": {"name": name, "creationTimestamp": created, "generation": generation,
                     "uid": f"uid-{kind}-{name}", **({"annotations": annotations} if annotations else {})},
        "spec": spec,
    }


def ports(*entries: tuple[str, str, str]) -> list[Obj]:
    """toPorts from (port, protocol, name) triples."""
    return [{"port": port, "protocol": protocol, "name": name} for port, protocol, name in entries]


def policy_slice(kind: str, policy_name: str, endpoints: Sequence[Obj], *, name: str = "") -> Obj:
    return endpoint_slice(
        "", endpoints, name=name or f"{kind.lower()}-{policy_name}", namespace="balancing-system", ports=(),
        labels={"balancing.elf.io/policy-kind": kind, "balancing.elf.io/policy-name": policy_name,
                "endpointslice.kubernetes.io/managed-by": "member-controller.balancing.elf.io"},
    )
