"""`balancing status`: the federation as the hub sees it, from the hub's objects (pure).

- **Members**: readiness, last heartbeat, exports (and how many conflict), imports (Services other
  live members export that this one can import), nodes, and the propagation lag of its endpoint
  changes: from the member's stamp (`balancing.elf.io/changed-at`) to the hub's copy
  (`balancing.elf.io/synced-at`), median and worst over its copies in the catalogue.
- **Mesh**: each node's proxy IPv4 and how many peers the hub planned for it.
- **Services**: each FederatedService's clusterset IP and live clusters.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from crds import (
    SOURCE_CLUSTER_LABEL,
    ExportedService,
    FederatedEndpointSlice,
    FederatedService,
    KubeObject,
    MemberCluster,
    NodeTunnelEndpoint,
    find_condition,
    parse_stamp,
)
from hub.engine import CatalogueCopy


@dataclass
class MemberRow:
    name: str
    ready: str  # the Ready condition's status and reason, e.g. "True" or "False (HeartbeatExpired)"
    valid: str  # the Valid condition's, e.g. "False (PodCIDROverlap)"
    heartbeat_age: float | None  # seconds since the last heartbeat
    exports: int = 0
    conflicts: int = 0
    imports: int = 0
    nodes: int = 0
    lag_median: float | None = None  # seconds, change in the member -> copy in the catalogue
    lag_max: float | None = None


@dataclass
class NodeRow:
    cluster: str
    node: str
    proxy_ip: str | None
    peers: int
    ready: str


@dataclass
class ServiceRow:
    name: str
    type: str
    ip: str | None
    clusters: list[str]
    ready: str


@dataclass
class Report:
    catalogue: str
    members: list[MemberRow] = field(default_factory=list)
    nodes: list[NodeRow] = field(default_factory=list)
    services: list[ServiceRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ready(obj: MemberCluster | NodeTunnelEndpoint | FederatedService, kind: str = "Ready") -> str:
    condition = find_condition(obj.status.conditions if obj.status else None, kind)
    if condition is None:
        return "Unknown"
    return condition.status if condition.status == "True" else f"{condition.status} ({condition.reason})"


def build(objects: Iterable[KubeObject | CatalogueCopy], catalogue: str, now: datetime) -> Report:
    """The report, from the hub's objects (as listed from the apiserver, or as a hub index holds them)."""
    copies: list[CatalogueCopy] = []
    report = Report(catalogue)
    members: dict[str, MemberRow] = {}
    exports: list[ExportedService] = []
    tunnels: list[NodeTunnelEndpoint] = []
    services: list[FederatedService] = []
    lags: dict[str, list[float]] = {}
    for obj in objects:
        if isinstance(obj, CatalogueCopy):
            copies.append(obj)
            continue
        namespace = obj.metadata.namespace or ""
        if isinstance(obj, MemberCluster) and obj.metadata.name == namespace:
            beat = obj.status.last_heartbeat_time if obj.status else None
            age = (now - beat).total_seconds() if beat is not None else None
            members[namespace] = MemberRow(namespace, _ready(obj), _ready(obj, "Valid"), age)
        elif isinstance(obj, ExportedService) and namespace != catalogue:
            exports.append(obj)
        elif isinstance(obj, NodeTunnelEndpoint):
            tunnels.append(obj)
        elif isinstance(obj, FederatedService) and namespace == catalogue:
            services.append(obj)
        elif isinstance(obj, FederatedEndpointSlice) and namespace == catalogue:
            copies.append(CatalogueCopy.of(obj))
    for copy in copies:
        changed, synced = parse_stamp(copy.changed_at), parse_stamp(copy.synced_at)
        source = dict(copy.labels).get(SOURCE_CLUSTER_LABEL, copy.name.split(".", 1)[0])
        if changed is not None and synced is not None:
            lags.setdefault(source, []).append(max(0.0, (synced - changed).total_seconds()))
    for export in exports:
        row = members.get(export.metadata.namespace or "")
        if row is None:
            continue
        row.exports += 1
        conflict = find_condition(export.status.conditions if export.status else None, "Conflict")
        row.conflicts += conflict is not None and conflict.status == "True"
    for tunnel in tunnels:
        if (row := members.get(tunnel.metadata.namespace or "")) is not None:
            row.nodes += 1
        status = tunnel.status
        report.nodes.append(NodeRow(tunnel.spec.cluster, tunnel.spec.node, status.proxy_ipv4 if status else None,
                                    len(status.peers or []) if status else 0, _ready(tunnel)))
    for service in services:
        live = [entry.cluster for entry in (service.status.clusters or [])] if service.status else []
        address = service.spec.ips[0] if service.spec.ips else None
        report.services.append(ServiceRow(service.metadata.name or "", service.spec.type, address, live,
                                          _ready(service)))
        for name, row in members.items():
            row.imports += any(cluster != name for cluster in live)
    for name, row in members.items():
        if lags.get(name):
            row.lag_median, row.lag_max = statistics.median(lags[name]), max(lags[name])
    report.members = sorted(members.values(), key=lambda row: row.name)
    report.nodes.sort(key=lambda row: (row.cluster, row.node))
    report.services.sort(key=lambda row: row.name)
    return report


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s" if value < 120 else f"{value / 60:.0f}m"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in [header, *rows]]
    return "\n".join(lines)


def render(report: Report) -> str:
    members = _table(
        ["MEMBER", "READY", "VALID", "HEARTBEAT", "EXPORTS", "CONFLICTS", "IMPORTS", "NODES", "LAG-P50", "LAG-MAX"],
        [[m.name, m.ready, m.valid, f"{_seconds(m.heartbeat_age)} ago" if m.heartbeat_age is not None else "never",
          str(m.exports), str(m.conflicts), str(m.imports), str(m.nodes), _seconds(m.lag_median), _seconds(m.lag_max)]
         for m in report.members],
    )
    nodes = _table(["CLUSTER", "NODE", "PROXY-IP", "PEERS", "READY"],
                   [[n.cluster, n.node, n.proxy_ip or "-", str(n.peers), n.ready] for n in report.nodes])
    services = _table(["SERVICE", "TYPE", "CLUSTERSET-IP", "CLUSTERS", "READY"],
                      [[s.name, s.type, s.ip or "-", ",".join(s.clusters) or "-", s.ready] for s in report.services])
    return (f"Members (hub catalogue: {report.catalogue})\n{members}\n\nMesh (peers planned by the hub)\n{nodes}\n\n"
            f"Services\n{services}\n")
