"""The MCS merge of one Service's exports: table rows of exports in, merged Service and conflicts out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from crds import ExportedService
from hub.merge import merge
from tests.hub.objects import T0, export


@dataclass(frozen=True)
class Row:
    description: str
    exports: tuple[ExportedService, ...]
    ports: tuple[tuple[int, str, str | None], ...]  # the merged union, in order
    conflicts: dict[str, str] = field(default_factory=dict)  # cluster -> comma-joined reasons
    winner: str = "m1"


LATER = T0 + timedelta(minutes=5)
HTTP = (80, "TCP", "http")
DNS = (53, "UDP", "dns")

ROWS = [
    Row("one export is the merged Service", (export("m1", ports=[HTTP]),), (HTTP,)),
    Row("identical exports merge without conflict",
        (export("m1", ports=[HTTP]), export("m2", ports=[HTTP], exported_at=LATER)), (HTTP,)),
    Row("ports are a union in order of age",
        (export("m2", ports=[DNS], exported_at=LATER), export("m1", ports=[HTTP])), (HTTP, DNS)),
    Row("the oldest export's session affinity wins; both exports are told",
        (export("m1"), export("m2", affinity="ClientIP", exported_at=LATER)), ((80, "TCP", None),),
        {"m1": "SessionAffinityConflict", "m2": "SessionAffinityConflict"}),
    Row("a type conflict is raised on every export",
        (export("m1"), export("m2", type="Headless", exported_at=LATER), export("m3", exported_at=LATER)),
        ((80, "TCP", None),), {"m1": "TypeConflict", "m2": "TypeConflict"}),
    Row("a different timeout under ClientIP is a SessionAffinityConfigConflict",
        (export("m1", affinity="ClientIP", timeout=100), export("m2", affinity="ClientIP", timeout=200,
                                                                exported_at=LATER)),
        ((80, "TCP", None),), {"m1": "SessionAffinityConfigConflict", "m2": "SessionAffinityConfigConflict"}),
    Row("internal traffic policy and locality are properties too",
        (export("m1"), export("m2", traffic="Local", locality="local", exported_at=LATER)), ((80, "TCP", None),),
        dict.fromkeys(("m1", "m2"), "InternalTrafficPolicyConflict,AffinityConflict")),
    Row("the same port under another name: the older name stays",
        (export("m1", ports=[HTTP]), export("m2", ports=[(80, "TCP", "web")], exported_at=LATER)), (HTTP,),
        {"m1": "PortConflict", "m2": "PortConflict"}),
    Row("a name taken by another port: the newer port is left out",
        (export("m1", ports=[HTTP]), export("m2", ports=[(8080, "TCP", "http")], exported_at=LATER)), (HTTP,),
        {"m1": "PortConflict", "m2": "PortConflict"}),
    Row("two unnamed ports cannot share a Service",
        (export("m1"), export("m2", ports=[(443, "TCP", None)], exported_at=LATER)), ((80, "TCP", None),),
        {"m1": "PortConflict", "m2": "PortConflict"}),
    Row("exportedAt decides age, not the order given",
        (export("m2", affinity="ClientIP", exported_at=T0 - timedelta(days=1)), export("m1")), ((80, "TCP", None),),
        {"m1": "SessionAffinityConflict", "m2": "SessionAffinityConflict"}, winner="m2"),
    Row("equal ages: the cluster name decides",
        (export("m2", affinity="ClientIP"), export("m1")), ((80, "TCP", None),),
        {"m1": "SessionAffinityConflict", "m2": "SessionAffinityConflict"}),
    Row("several conflicts on one export are comma-joined in a fixed order",
        (export("m1", ports=[HTTP]), export("m2", type="Headless", affinity="ClientIP",
                                            ports=[(80, "TCP", "web")], exported_at=LATER)), (HTTP,),
        {"m1": "TypeConflict,SessionAffinityConflict,PortConflict",
         "m2": "TypeConflict,SessionAffinityConflict,PortConflict"}),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.description)
def test_merge(row: Row) -> None:
    merged = merge(row.exports)
    assert merged.winner.spec.cluster == row.winner
    assert [(p.port, p.protocol, p.name) for p in merged.ports] == list(row.ports)
    clusters = {e.spec.cluster for e in row.exports}
    assert {c: merged.reasons(c) for c in clusters if merged.reasons(c)} == row.conflicts


def test_a_conflict_message_names_the_field_and_the_winner() -> None:
    merged = merge([export("m1"), export("m2", affinity="ClientIP", exported_at=LATER)])
    assert merged.message("m2") == "sessionAffinity ClientIP differs from None: the oldest export (m1) wins"
    assert "in m2's export: this export wins (oldest)" in merged.message("m1")


def test_a_conflict_never_changes_what_the_oldest_decided() -> None:
    """Adding a conflicting export moves no traffic: the merged properties stay the oldest's."""
    alone = merge([export("m1", ports=[HTTP])])
    both = merge([export("m1", ports=[HTTP]), export("m2", type="Headless", ports=[(80, "TCP", "x")],
                                                     exported_at=LATER)])
    assert both.winner.spec.type == alone.winner.spec.type == "ClusterSetIP"
    assert both.ports == alone.ports


def test_merge_refuses_nothing_to_merge() -> None:
    with pytest.raises(ValueError, match="at least one export"):
        merge([])
