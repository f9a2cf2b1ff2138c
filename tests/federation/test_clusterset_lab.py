"""Services across clusters with the standard MCS API, end to end on the lab: a ServiceExport in one
member, a ServiceImport in the other, real clients reaching the exporting cluster's pods through the
kernel socket LB and the WireGuard mesh."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.federation.conftest import (
    M1_NODES,
    M2_NODES,
    ClusterSet,
    export_condition,
    import_ip,
    service_export,
    service_import,
)
from tests.member.conftest import Member, wait_for
from tests.member.test_services_lab import reaches, service

pytestmark = pytest.mark.lab

def test_an_exported_service_is_reached_from_another_cluster(clusterset: ClusterSet, exported: str) -> None:
    m1, m2 = clusterset.members["member-1"], clusterset.members["member-2"]
    ip = import_ip(m1, exported, "web")
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"web-1", "web-2"})
    udp = m1.client(f"member-1/{exported}/client", "udp", ip, "53", "--count", "10")
    assert udp["failures"] == 0 and set(udp["sources"]) == {f"{ip}:53"}, udp
    reaches(m1, M1_NODES[1], ip, 80, {"web-1", "web-2"})  # a host process on another node
    wait_for(lambda: export_condition(m2, exported, "web", "Ready").get("status") == "True",
             "the ServiceExport Ready in member-2")
    assert export_condition(m2, exported, "web", "Valid")["status"] == "True"
    imported = service_import(m1, exported, "web")
    assert imported is not None
    assert [c["cluster"] for c in imported["status"]["clusters"]] == ["member-2"]
    assert {(p["port"], p["protocol"]) for p in imported["spec"]["ports"]} == {(80, "TCP"), (53, "UDP")}
    slices = json.loads(m1.kubectl("get", "endpointslices", "-n", exported, "-l",
                                   "multicluster.kubernetes.io/service-name=web", "-o", "json").stdout)["items"]
    assert {s["metadata"]["labels"]["multicluster.kubernetes.io/source-cluster"] for s in slices} == {"member-2"}


def test_unexport_and_service_deletion_remove_the_import(clusterset: ClusterSet, exported: str) -> None:
    m1, m2 = clusterset.members["member-1"], clusterset.members["member-2"]
    import_ip(m1, exported, "web")
    m2.kubectl("delete", "serviceexports.multicluster.x-k8s.io", "web", "-n", exported)
    wait_for(lambda: service_import(m1, exported, "web") is None, "the import gone once unexported", timeout=60)
    m2.apply(service_export("web", exported))
    ip = import_ip(m1, exported, "web")
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"web-1", "web-2"})
    m2.kubectl("delete", "service", "web", "-n", exported)
    wait_for(lambda: export_condition(m2, exported, "web", "Valid").get("reason") == "NoService",
             "the export invalid without its Service")
    wait_for(lambda: service_import(m1, exported, "web") is None, "the import gone with the Service", timeout=60)


def test_ports_are_a_union_and_a_type_conflict_is_raised_without_moving_traffic(clusterset: ClusterSet,
                                                                              exported: str) -> None:
    m1, m2 = clusterset.members["member-1"], clusterset.members["member-2"]
    ip = import_ip(m1, exported, "web")
    # member-2's export must be the older one: creation times have one-second resolution, and a tie goes
    # to the lower cluster name (MCS), member-1, whose ClientIP affinity would then win.
    created = m2.get("serviceexports.multicluster.x-k8s.io", "web", exported)["metadata"]["creationTimestamp"]
    wait_for(lambda: datetime.now(UTC) >= datetime.fromisoformat(created) + timedelta(seconds=1),
             "a creation time later than member-2's export")
    m1.echo_pods(exported, [("local-web", M1_NODES[1], {"app": "web"})])
    m1.apply(service("web", exported, [{"name": "http", "port": 80, "targetPort": 8080},
                                       {"name": "alt", "port": 8081, "targetPort": 8080}], {"app": "web"},
                     sessionAffinity="ClientIP"),
             service_export("web", exported))

    def union() -> set[tuple[int, str]] | None:
        found = service_import(m1, exported, "web") or {}
        ports = {(p["port"], p["protocol"]) for p in (found.get("spec") or {}).get("ports") or []}
        return ports if ports == {(80, "TCP"), (53, "UDP"), (8081, "TCP")} else None

    wait_for(union, "the import's ports the union of both exports")
    conflict = wait_for(lambda: (c := export_condition(m1, exported, "web", "Conflict")).get("status") == "True"
                        and c, "the newer export in conflict (session affinity)")
    assert "sessionAffinity" in conflict["message"] or "session" in conflict["message"].lower()
    assert export_condition(m2, exported, "web", "Conflict").get("status") == "True", "raised on every export"
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"web-1", "web-2", "local-web"})


def test_locality_local_fails_over_to_the_other_cluster_and_back(clusterset: ClusterSet, exported: str) -> None:
    m1, m2 = clusterset.members["member-1"], clusterset.members["member-2"]
    m1.echo_pods(exported, [("near", M1_NODES[1], {"app": "web"})])
    m1.apply(service("web", exported, [{"name": "http", "port": 80, "targetPort": 8080}], {"app": "web"}),
             service_export("web", exported, affinity="local"))
    m2.apply(service_export("web", exported, affinity="local"))
    ip = import_ip(m1, exported, "web")
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"near"})
    m1.kubectl("delete", "pod", "near", "-n", exported, "--wait=true")
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"web-1", "web-2"})
    m1.echo_pods(exported, [("near", M1_NODES[1], {"app": "web"})])
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"near"})


def test_an_external_name_export_is_refused_by_name(clusterset: ClusterSet, shared_namespace: str) -> None:
    m2 = clusterset.members["member-2"]
    m2.apply(service("ext", shared_namespace, [{"port": 80}], type="ExternalName", externalName="x.example"),
             service_export("ext", shared_namespace), service_export("nothing", shared_namespace))
    valid = wait_for(lambda: (c := export_condition(m2, shared_namespace, "ext", "Valid")).get("status") == "False"
                     and c, "the ExternalName export refused")
    assert valid["reason"] == "ServiceTypeNotSupported" and "ExternalName" in valid["message"]
    missing = wait_for(lambda: (c := export_condition(m2, shared_namespace, "nothing", "Valid")).get("status")
                       == "False" and c, "the export without a Service refused")
    assert missing["reason"] == "NoService"
    events = json.loads(m2.kubectl("get", "events", "-n", shared_namespace, "-o", "json").stdout)["items"]
    assert {"ServiceTypeNotSupported", "NoService"} <= {e["reason"] for e in events}


def test_a_member_that_claims_another_clusters_name_is_refused(clusterset: ClusterSet) -> None:
    hub = clusterset.hub
    spoof: dict[str, Any] = {"apiVersion": "balancing.elf.io/v1beta1", "kind": "ExportedService",
             "metadata": {"name": "member-2.default.spoof", "namespace": "member-1"},
             "spec": {"cluster": "member-2", "namespace": "default", "serviceName": "spoof",
                      "ports": [{"port": 80}]}}
    token_kubeconfig = member_kubeconfig(clusterset, "member-1")
    # A compromised member writes with its own credentials; its controller, which would delete what it
    # did not export itself, is stopped so that the forged object stays for the hub to judge.
    scale_controller(clusterset.members["member-1"], 0)
    created = hub.lab.kubectl("hub", "--kubeconfig", str(token_kubeconfig), "apply", "-f", "-",
                              input=json.dumps(spoof), check=False)
    assert created.returncode == 0, created.stderr  # its own namespace: allowed to write
    denied = hub.lab.kubectl("hub", "--kubeconfig", str(token_kubeconfig), "apply", "-f", "-",
                             input=json.dumps({**spoof, "metadata": {**spoof["metadata"], "namespace": "member-2"}}),
                             check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()

    def refused() -> dict[str, Any] | None:
        status = hub.get("exportedservice", "member-2.default.spoof", "member-1").get("status") or {}
        valid: dict[str, Any] = next((c for c in status.get("conditions") or [] if c["type"] == "Valid"), {})
        return valid if valid.get("status") == "False" else None

    try:
        assert wait_for(refused, "the spoofed export refused")["reason"] == "ClusterMismatch"
        assert all(service_import(m, "default", "spoof") is None for m in clusterset.members.values())
    finally:
        hub.kubectl("delete", "exportedservice", "member-2.default.spoof", "-n", "member-1", check=False)
        scale_controller(clusterset.members["member-1"], 1)


def member_kubeconfig(clusterset: ClusterSet, name: str) -> Any:
    """A kubeconfig with the member's own hub credentials (from the Secret the member chart made)."""
    member = clusterset.members[name]
    secret = member.get("secret", "balancing-hub-credentials", "balancing-system")
    path = clusterset.lab.kubeconfig("hub").parent / f"{name}-credentials.kubeconfig"
    path.write_text(base64.b64decode(secret["data"]["kubeconfig"]).decode())
    return path



def scale_controller(member: Member, replicas: int) -> None:
    member.kubectl("scale", "deployment/balancing-member-controller", "-n", "balancing-system",
                   f"--replicas={replicas}")
    if replicas:
        member.kubectl("rollout", "status", "deployment/balancing-member-controller", "-n", "balancing-system",
                       "--timeout=120s")
    else:  # scaled down is not stopped: wait until the last controller process is gone
        wait_for(lambda: not json.loads(member.kubectl(
            "get", "pods", "-l", "app.kubernetes.io/component=controller", "-n", "balancing-system", "-o", "json",
        ).stdout)["items"], "no member controller pod left", timeout=120)


def test_a_silent_member_expires_and_returns(clusterset: ClusterSet, exported: str) -> None:
    m1, m2 = clusterset.members["member-1"], clusterset.members["member-2"]
    ip = import_ip(m1, exported, "web")
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"web-1", "web-2"})
    scale_controller(m2, 0)
    try:
        def expired() -> dict[str, Any] | None:
            status = clusterset.member_cluster("member-2").get("status") or {}
            ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
            return ready if ready.get("status") == "False" else None

        assert wait_for(expired, "member-2 not Ready after its heartbeat timeout", timeout=60)["reason"] == \
            "HeartbeatExpired"

        def gone() -> dict[str, Any] | None:
            result = m1.client(f"member-1/{exported}/client", "tcp", ip, "80", "--count", "3")
            return result if result["errors"] == {"ECONNREFUSED": 3} else None

        wait_for(gone, "member-2's endpoints expired in member-1: connects refused at once", timeout=60)
    finally:
        scale_controller(m2, 1)
    wait_for(lambda: clusterset.ready("member-2"), "member-2 Ready again", timeout=60)
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"web-1", "web-2"})


def test_a_hub_policy_applies_in_every_member_and_gathers_pods_from_all(clusterset: ClusterSet,
                                                                        shared_namespace: str) -> None:
    m1, m2 = clusterset.members["member-1"], clusterset.members["member-2"]
    m1.echo_pods(shared_namespace, [("g-1", M1_NODES[1], {"app": "global"}), ("client", M1_NODES[0], {"app": "c"})])
    m2.echo_pods(shared_namespace, [("g-2", M2_NODES[0], {"app": "global"}), ("client", M2_NODES[1], {"app": "c"})])
    name = f"{shared_namespace}-global"
    clusterset.hub.apply({
        "apiVersion": "balancing.elf.io/v1beta1", "kind": "BalancingPolicy", "metadata": {"name": name},
        "spec": {"frontend": {"addressMatcher": {"ip": "169.254.60.1", "toPorts": [{"port": "80", "protocol": "TCP"}]}},
                 "backend": {"serviceEndpoint": {"endpointSelector": {"matchLabels": {"app": "global"}},
                                                 "toPorts": [{"port": "8080", "protocol": "TCP"}]}}}})
    try:
        for cluster, member in (("member-1", m1), ("member-2", m2)):
            def ready(member: Member = member) -> bool:
                found = member.kubectl("get", "bp", f"hub.{name}", "-o", "json", check=False)
                if found.returncode != 0:
                    return False
                conditions = (json.loads(found.stdout).get("status") or {}).get("conditions") or []
                return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

            wait_for(ready, f"the hub policy Ready in {cluster}", timeout=90)
            reaches(member, f"{cluster}/{shared_namespace}/client", "169.254.60.1", 80, {"g-1", "g-2"})
    finally:
        clusterset.hub.kubectl("delete", "bp", name, "--wait=true")
    wait_for(lambda: m1.kubectl("get", "bp", f"hub.{name}", check=False).returncode != 0,
             "the copy removed with the hub's policy")


def test_the_mesh_gives_every_node_a_proxy_ip_and_peers(clusterset: ClusterSet) -> None:
    for cluster, member in clusterset.members.items():
        nodes = json.loads(member.kubectl("get", "bnode", "-o", "json").stdout)["items"]
        for node in nodes:
            tunnel = (node.get("spec") or {}).get("tunnel") or {}
            assert tunnel.get("proxyIPv4"), f"{cluster}/{node['metadata']['name']}: no proxy IPv4"
            assert len(tunnel.get("peers") or []) == 3, f"{node['metadata']['name']}: a full mesh of 4 nodes"
            annotations = json.loads(member.kubectl("get", "node", node["metadata"]["name"], "-o", "json").stdout)[
                "metadata"].get("annotations") or {}
            assert annotations.get("balancing.elf.io/nodeProxyIpv4") == tunnel["proxyIPv4"]
