"""The hub operator, a real process on a real apiserver: members, exports, copies, the mesh, metrics,
restarts. (The pure rules are tested in test_engine.py; here they must hold through kopf and the API.)"""

from __future__ import annotations

import base64
import signal
import time
from typing import Any

import pytest

from tests.hub.conftest import HubProcess, condition, eventually, now_stamp

pytestmark = pytest.mark.lab


def register(hub: HubProcess, index: int, pod_cidr: str, timeout: int = 40) -> str:
    cluster = hub.member(index)
    hub.apply(cluster, {
        "apiVersion": "balancing.elf.io/v1beta1", "kind": "MemberCluster", "metadata": {"name": cluster},
        "spec": {"podCIDRs": [pod_cidr], "heartbeatPeriodSeconds": 1, "heartbeatTimeoutSeconds": timeout},
    })
    heartbeat(hub, cluster)
    return cluster


def heartbeat(hub: HubProcess, cluster: str) -> None:
    hub.status_patch("memberclusters", cluster, cluster, {"lastHeartbeatTime": now_stamp()})


def export(hub: HubProcess, namespace: str, service: str = "web", **spec: Any) -> None:
    cluster = spec.pop("cluster", namespace)
    hub.apply(namespace, {
        "apiVersion": "balancing.elf.io/v1beta1", "kind": "ExportedService",
        "metadata": {"name": f"{cluster}.default.{service}"},
        "spec": {"cluster": cluster, "namespace": "default", "serviceName": service,
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec},
    })


def endpoints(hub: HubProcess, cluster: str, *addresses: str, changed_at: str | None = None,
              service: str = "web") -> None:
    hub.apply(cluster, {
        "apiVersion": "balancing.elf.io/v1beta1", "kind": "FederatedEndpointSlice",
        "metadata": {"name": f"{cluster}.default.{service}-1",
                     "annotations": {"balancing.elf.io/changed-at": changed_at} if changed_at else {}},
        "spec": {"cluster": cluster, "service": {"namespace": "default", "name": service},
                 "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                 "endpoints": [{"addresses": [address]} for address in addresses]},
    })


def copies(hub: HubProcess) -> list[str]:
    return [item["metadata"]["name"] for item in hub.list_objects("fes", hub.catalogue)]


def test_members_get_ready_with_their_cluster_id(running_hub: HubProcess) -> None:
    cluster = register(running_hub, 1, "10.101.0.0/16")
    found = eventually(lambda: running_hub.get_object("mcl", cluster, cluster),
                       lambda obj: condition(obj, "Ready") == ("True", "Heartbeating"), what="member Ready")
    assert condition(found, "Valid") == ("True", "Valid")
    assert found is not None and found["status"]["clusterID"] == cluster


def test_exports_become_one_service_with_an_address_and_slices_are_copied(running_hub: HubProcess) -> None:
    hub = running_hub
    first, second = register(hub, 1, "10.101.0.0/16"), register(hub, 2, "10.102.0.0/16")
    export(hub, first, exportedAt="2026-01-01T00:00:00Z")
    export(hub, second, sessionAffinity="ClientIP", exportedAt="2026-01-02T00:00:00Z")
    endpoints(hub, first, "10.101.1.5", changed_at="2026-01-01T00:00:00.500000Z")
    endpoints(hub, second, "10.102.1.5")
    service = eventually(lambda: hub.get_object("fsvc", hub.catalogue, "default.web"),
                         lambda obj: obj is not None and len((obj.get("status") or {}).get("clusters") or []) == 2,
                         what="FederatedService with both clusters")
    assert service is not None and service["spec"]["ips"] == ["10.255.0.1"]
    assert service["spec"]["sessionAffinity"] == "None"  # the oldest export's
    assert eventually(lambda: copies(hub), lambda names: len(names) == 2) == [f"{first}.default.web-1",
                                                                              f"{second}.default.web-1"]
    copy = hub.get_object("fes", hub.catalogue, f"{first}.default.web-1")
    assert copy is not None
    assert copy["metadata"]["annotations"]["balancing.elf.io/changed-at"] == "2026-01-01T00:00:00.500000Z"
    assert "balancing.elf.io/synced-at" in copy["metadata"]["annotations"]
    newer = eventually(lambda: hub.get_object("expsvc", second, f"{second}.default.web"),
                       lambda obj: condition(obj, "Conflict") == ("True", "SessionAffinityConflict"))
    assert newer is not None
    message = next(c["message"] for c in newer["status"]["conditions"] if c["type"] == "Conflict")
    assert f"the oldest export ({first}) wins" in message
    reasons = eventually(lambda: {e["reason"] for e in hub.events(second)}, lambda found: "Conflict" in found)
    assert "Conflict" in reasons


def test_a_silent_member_expires_and_comes_back(running_hub: HubProcess) -> None:
    hub = running_hub
    first, second = register(hub, 1, "10.101.0.0/16"), register(hub, 2, "10.102.0.0/16", timeout=3)
    export(hub, first)
    export(hub, second)
    endpoints(hub, first, "10.101.1.5")
    endpoints(hub, second, "10.102.1.5")
    eventually(lambda: copies(hub), lambda names: len(names) == 2, what="both copies")
    started = time.monotonic()
    for _ in range(3):  # member-1 keeps heartbeating, member-2 stops
        heartbeat(hub, first)
        time.sleep(1.0)
    eventually(lambda: copies(hub), lambda names: names == [f"{first}.default.web-1"], timeout=10,
               what="the silent member's copy expired")
    assert time.monotonic() - started < 3 + 5  # timeout plus propagation
    assert condition(hub.get_object("mcl", second, second), "Ready") == ("False", "HeartbeatExpired")
    heartbeat(hub, first)
    heartbeat(hub, second)
    eventually(lambda: copies(hub), lambda names: len(names) == 2, what="the copy is back")
    service = hub.get_object("fsvc", hub.catalogue, "default.web")
    assert service is not None and service["spec"]["ips"] == ["10.255.0.1"]


def test_a_member_cannot_speak_for_another_cluster(running_hub: HubProcess) -> None:
    hub = running_hub
    first, second = register(hub, 1, "10.101.0.0/16"), register(hub, 2, "10.102.0.0/16")
    export(hub, first, "db", cluster=second)  # in first's namespace, claiming to be second
    spoof = eventually(lambda: hub.get_object("expsvc", first, f"{second}.default.db"),
                       lambda obj: condition(obj, "Valid") == ("False", "ClusterMismatch"))
    assert spoof is not None
    assert hub.get_object("fsvc", hub.catalogue, "default.db") is None
    reasons = eventually(lambda: {e["reason"] for e in hub.events(first)}, lambda found: "ClusterMismatch" in found)
    assert "ClusterMismatch" in reasons


def test_nodes_get_proxy_addresses_and_peers(running_hub: HubProcess) -> None:
    hub = running_hub
    clusters = [register(hub, 1, "10.101.0.0/16"), register(hub, 2, "10.102.0.0/16")]
    for index, cluster in enumerate(clusters, start=1):
        node = f"{cluster}-node-1"
        hub.apply(cluster, {
            "apiVersion": "balancing.elf.io/v1beta1", "kind": "NodeTunnelEndpoint",
            "metadata": {"name": f"{cluster}.{node}"},
            "spec": {"cluster": cluster, "node": node, "publicKey": base64.b64encode(bytes([index]) * 32).decode(),
                     "endpoint": f"172.30.{index}.11:51820", "podCIDRs": [f"10.10{index}.1.0/24"]},
        })
    found = [eventually(lambda c=cluster: hub.get_object("nte", c, f"{c}.{c}-node-1"),  # type: ignore[misc]
                        lambda obj: condition(obj, "Ready") == ("True", "Planned")
                        and len((obj or {}).get("status", {}).get("peers") or []) == 1) for cluster in clusters]
    assert sorted(obj["status"]["proxyIPv4"] for obj in found if obj) == ["100.96.0.1", "100.96.0.2"]
    first = found[0]
    assert first is not None
    (peer,) = first["status"]["peers"]
    assert peer["cluster"] == clusters[1] and peer["persistentKeepaliveSeconds"] == 25
    assert peer["allowedIPs"][0] == "10.102.1.0/24"


def test_metrics_and_health(running_hub: HubProcess) -> None:
    cluster = register(running_hub, 1, "10.101.0.0/16")
    eventually(lambda: running_hub.get("/metrics")[1],
               lambda text: f'balancing_hub_member_ready{{member="{cluster}"}} 1.0' in text, what="readiness gauge")
    text = running_hub.get("/metrics")[1]
    assert "balancing_hub_merge_duration_seconds_bucket" in text
    assert "balancing_hub_objects_synced_total" in text
    assert running_hub.get("/healthz") == (200, "ok\n")
    assert running_hub.get("/readyz") == (200, "ok\n")


def test_a_killed_operator_restarts_without_rewriting_anything(running_hub: HubProcess) -> None:
    """kill -9, start again: the same address, and no write to an object that was already right."""
    hub = running_hub
    cluster = register(hub, 1, "10.101.0.0/16", timeout=600)
    export(hub, cluster)
    export(hub, cluster, "api")
    endpoints(hub, cluster, "10.101.1.5")
    eventually(lambda: copies(hub), lambda names: len(names) == 1)
    settled = eventually(lambda: {s["metadata"]["name"]: s for s in hub.list_objects("fsvc", hub.catalogue)},
                         lambda found: all(condition(s, "Ready") == ("True", "Ready") for s in found.values())
                         and len(found) == 2)
    time.sleep(1.0)
    versions = {name: s["metadata"]["resourceVersion"] for name, s in
                {s["metadata"]["name"]: s for s in hub.list_objects("fsvc", hub.catalogue)}.items()}
    copy_version = hub.list_objects("fes", hub.catalogue)[0]["metadata"]["resourceVersion"]
    hub.stop(signal.SIGKILL)
    hub.start()
    time.sleep(2.0)  # the restarted hub has reconciled (readyz) and had time to write anything it wanted
    after = {s["metadata"]["name"]: s for s in hub.list_objects("fsvc", hub.catalogue)}
    assert {name: s["spec"]["ips"] for name, s in after.items()} == {
        name: s["spec"]["ips"] for name, s in settled.items()}
    assert {name: s["metadata"]["resourceVersion"] for name, s in after.items()} == versions
    assert hub.list_objects("fes", hub.catalogue)[0]["metadata"]["resourceVersion"] == copy_version


def test_a_member_namespace_created_after_the_start_is_reconciled_at_once(running_hub: HubProcess) -> None:
    """Objects of a namespace that appears later arrive as a listing, not as changes: still news."""
    hub = running_hub
    late = hub.member(4)
    hub.api.kubectl("create", "namespace", late)
    try:
        started = time.monotonic()
        register(hub, 4, "10.104.0.0/16")
        export(hub, late)
        endpoints(hub, late, "10.104.1.5")
        eventually(lambda: copies(hub), lambda names: names == [f"{late}.default.web-1"], timeout=10,
                   what="the late member's copy")
        assert time.monotonic() - started < 10  # not the periodic resync (300 s)
    finally:
        hub.api.kubectl("delete", "namespace", late, "--wait=false", check=False)
