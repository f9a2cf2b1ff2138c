"""The MCS merge of one Service's exports (KEP-1645), pure.

- **Oldest wins.** Exports are ordered by age (`spec.exportedAt`, else the object's creation time,
  then cluster name). The properties of the merged service (type, session affinity and its timeout,
  internal traffic policy, locality affinity) are the oldest export's.
- **Ports are a union**, by (port, protocol), in order of age. A port whose name differs from the
  one already merged, or whose name is taken by another port, or that would leave the union with
  an unnamed port among several, is a conflict: the older port stays, the newer one is left out.
- **Conflicts are raised on every export** of the Service (MCS recommends all constituents): the
  exports that disagree learn what field and who won; the oldest learns who disagrees. A conflict
  never changes what the older exports decided, so it never moves traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from crds import ExportedService, ServicePort
from hub.objects import created_at

# MCS conflict reasons (KEP-1645), and ours for the properties MCS does not name.
TYPE_CONFLICT = "TypeConflict"
SESSION_AFFINITY_CONFLICT = "SessionAffinityConflict"
SESSION_AFFINITY_CONFIG_CONFLICT = "SessionAffinityConfigConflict"
PORT_CONFLICT = "PortConflict"
INTERNAL_TRAFFIC_POLICY_CONFLICT = "InternalTrafficPolicyConflict"
AFFINITY_CONFLICT = "AffinityConflict"
REASON_ORDER = (
    TYPE_CONFLICT,
    SESSION_AFFINITY_CONFLICT,
    SESSION_AFFINITY_CONFIG_CONFLICT,
    INTERNAL_TRAFFIC_POLICY_CONFLICT,
    AFFINITY_CONFLICT,
    PORT_CONFLICT,
)

# (field on the wire, reason, attribute): the properties that come from the oldest export.
_PROPERTIES = (
    ("type", TYPE_CONFLICT, "type"),
    ("sessionAffinity", SESSION_AFFINITY_CONFLICT, "session_affinity"),
    ("sessionAffinityTimeoutSeconds", SESSION_AFFINITY_CONFIG_CONFLICT, "session_affinity_timeout_seconds"),
    ("internalTrafficPolicy", INTERNAL_TRAFFIC_POLICY_CONFLICT, "internal_traffic_policy"),
    ("affinity", AFFINITY_CONFLICT, "affinity"),
)


def export_time(export: ExportedService) -> datetime:
    """When the export was made: its member's ServiceExport creation, else this object's."""
    return export.spec.exported_at if export.spec.exported_at is not None else created_at(export)


def by_age(exports: Iterable[ExportedService]) -> list[ExportedService]:
    return sorted(exports, key=lambda export: (export_time(export), export.spec.cluster))


@dataclass(frozen=True)
class Conflict:
    reason: str
    message: str


@dataclass
class Merged:
    """The merged Service and the conflicts, per exporting cluster."""

    winner: ExportedService
    ports: list[ServicePort]
    clusters: list[str]  # by age
    conflicts: dict[str, list[Conflict]] = field(default_factory=dict)

    @cached_property
    def by_name(self) -> list[str]:
        return sorted(self.clusters)

    def reasons(self, cluster: str) -> str:
        found = {conflict.reason for conflict in self.conflicts.get(cluster, [])}
        return ",".join(reason for reason in REASON_ORDER if reason in found)

    def message(self, cluster: str) -> str:
        return "; ".join(conflict.message for conflict in self.conflicts.get(cluster, []))


def _describe_port(port: ServicePort) -> str:
    named = f" ({port.name})" if port.name else ""
    return f"{port.port}/{port.protocol}{named}"


def _value(export: ExportedService, attribute: str) -> object:
    return getattr(export.spec, attribute)


def merge(exports: Sequence[ExportedService]) -> Merged:
    """Merge the exports of one Service (at least one, all of the same namespace/name)."""
    if not exports:
        raise ValueError("merge needs at least one export")
    ordered = by_age(exports)
    winner = ordered[0]
    result = Merged(winner=winner, ports=[], clusters=[export.spec.cluster for export in ordered])
    won = f"the oldest export ({winner.spec.cluster}) wins"

    def conflict(export: ExportedService, reason: str, what: str) -> None:
        result.conflicts.setdefault(export.spec.cluster, []).append(Conflict(reason, f"{what}: {won}"))
        result.conflicts.setdefault(winner.spec.cluster, []).append(
            Conflict(reason, f"{what} in {export.spec.cluster}'s export: this export wins (oldest)")
        )

    for export in ordered[1:]:
        for wire, reason, attribute in _PROPERTIES:
            mine, theirs = _value(export, attribute), _value(winner, attribute)
            both_client_ip = export.spec.session_affinity == winner.spec.session_affinity == "ClientIP"
            if reason == SESSION_AFFINITY_CONFIG_CONFLICT and not both_client_ip:
                continue  # a timeout only means something when both use ClientIP affinity
            if mine != theirs:
                conflict(export, reason, f"{wire} {_shown(mine)} differs from {_shown(theirs)}")

    by_key: dict[tuple[int, str], ServicePort] = {}
    names: dict[str, ServicePort] = {}
    for export in ordered:
        for port in export.spec.ports:
            merged = by_key.get((port.port, port.protocol))
            if merged is not None:
                if merged.name != port.name:
                    conflict(export, PORT_CONFLICT, f"port {_describe_port(port)} is named "
                             f"{_shown(merged.name)} in the merged Service")
                continue
            holder = names.get(port.name) if port.name else None
            if holder is not None:
                conflict(export, PORT_CONFLICT, f"port name {port.name} of {_describe_port(port)} is taken by "
                         f"{_describe_port(holder)}")
                continue
            if result.ports and (port.name is None or any(p.name is None for p in result.ports)):
                conflict(export, PORT_CONFLICT, f"port {_describe_port(port)} cannot join the merged ports: "
                         "several ports need names")
                continue
            by_key[(port.port, port.protocol)] = port
            if port.name:
                names[port.name] = port
            result.ports.append(port)
    return result


def _shown(value: object) -> str:
    return "unset" if value is None else str(value)
