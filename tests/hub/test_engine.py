"""The hub's reconcile, without a cluster: members, exports, copies and the mesh, converging and
writing only what changed. The harness (tests/hub/objects.py) plays the apiserver's part."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from crds import FederatedEndpointSlice, FederatedService
from hub.engine import ObjectWrite
from hub.settings import HubSettings
from tests.hub.objects import (
    CATALOGUE,
    T0,
    Harness,
    conditions,
    endpoints_slice,
    export,
    member,
    message,
    tunnel,
)

HTTP = (80, "TCP", "http")
DNS = (53, "UDP", "dns")


def two_members_exporting_web() -> Harness:
    hub = Harness()
    hub.add(member("member-1", "10.101.0.0/16"), member("member-2", "10.102.0.0/16"))
    hub.add(export("member-1", ports=[HTTP]), export("member-2", ports=[HTTP, DNS], exported_at=T0 + timedelta(1)))
    hub.add(endpoints_slice("member-1", "web", "10.101.1.5"), endpoints_slice("member-2", "web", "10.102.1.5"))
    hub.settle()
    return hub


def test_members_get_ready_valid_and_their_cluster_id() -> None:
    hub = two_members_exporting_web()
    for name in ("member-1", "member-2"):
        registration = hub.get("MemberCluster", name, name)
        assert conditions(registration) == {"Ready": ("True", "Heartbeating"), "Valid": ("True", "Valid")}
        assert registration.status.cluster_id == name


def test_exports_merge_into_one_federated_service_with_a_clusterset_ip() -> None:
    hub = two_members_exporting_web()
    service = hub.get("FederatedService", CATALOGUE, "default.web")
    assert isinstance(service, FederatedService) and service.status is not None
    assert service.spec.ips == ["10.255.0.1"]
    assert [(p.port, p.protocol, p.name) for p in service.spec.ports] == [HTTP, DNS]  # the union
    assert [c.cluster for c in service.status.clusters or []] == ["member-1", "member-2"]
    assert conditions(service) == {"Ready": ("True", "Ready")}
    for cluster in ("member-1", "member-2"):
        exported = hub.get("ExportedService", cluster, f"{cluster}.default.web")
        assert conditions(exported) == {"Valid": ("True", "Valid"), "Conflict": ("False", "NoConflicts"),
                                        "Ready": ("True", "Exported")}


def test_the_catalogue_holds_a_copy_of_every_live_members_slices() -> None:
    hub = two_members_exporting_web()
    assert hub.copies() == ["member-1.default.web-1", "member-2.default.web-1"]
    copy = hub.copy("member-2.default.web-1")
    assert isinstance(copy, FederatedEndpointSlice)
    assert copy.metadata.labels == {
        "balancing.elf.io/source-cluster": "member-2", "balancing.elf.io/service-namespace": "default",
        "balancing.elf.io/service-name": "web", "app.kubernetes.io/managed-by": "balancing-hub"}
    assert copy.spec == hub.get("FederatedEndpointSlice", "member-2", "member-2.default.web-1").spec


def test_a_settled_hub_writes_nothing_and_one_change_writes_one_object() -> None:
    hub = two_members_exporting_web()
    assert len(hub.reconcile()) == 0
    hub.add(endpoints_slice("member-2", "web", "10.102.1.5", "10.102.2.9"))
    plan = hub.reconcile()
    assert [(w.ref.kind, w.ref.name) for w in plan.objects] == [("FederatedEndpointSlice", "member-2.default.web-1")]
    assert not plan.statuses and not plan.events
    assert len(hub.reconcile()) == 0


def test_a_write_not_seen_back_yet_is_not_sent_twice() -> None:
    hub = two_members_exporting_web()
    hub.add(endpoints_slice("member-2", "web", "10.102.7.7"))
    first = hub.reconciler.plan(hub.now)
    hub.reconciler.touched(hub.get("FederatedEndpointSlice", "member-2", "member-2.default.web-1"))
    assert len(first.objects) == 1 and len(hub.reconciler.plan(hub.now)) == 0
    hub.reconciler.retry(first.objects[0])  # the write failed: it goes out again
    assert len(hub.reconciler.plan(hub.now).objects) == 1


def test_copies_carry_the_members_change_time_and_the_hubs_sync_time() -> None:
    hub = two_members_exporting_web()
    changed = T0 + timedelta(seconds=3, microseconds=250000)
    hub.add(endpoints_slice("member-1", "web", "10.101.9.9", changed_at=changed))
    (write,) = hub.reconcile().objects
    assert isinstance(write, ObjectWrite) and write.changed_at == changed
    copy = hub.copy("member-1.default.web-1")
    assert copy is not None
    assert copy.metadata.annotations == {"balancing.elf.io/changed-at": "2026-01-01T00:00:03.250000Z",
                                         "balancing.elf.io/synced-at": "2026-01-01T00:00:00.000000Z"}


def test_a_silent_member_expires_on_time_and_returns_without_a_new_address() -> None:
    hub = two_members_exporting_web()
    hub.heartbeat("member-1", T0 + timedelta(seconds=30))
    plan = hub.reconcile(timedelta(seconds=30))
    assert plan.wake_at == T0 + timedelta(seconds=40)  # member-2's heartbeat (T0) expires first
    hub.settle(timedelta(seconds=10))  # now T0+40s: member-2 is silent for its whole timeout
    silent = hub.get("MemberCluster", "member-2", "member-2")
    assert conditions(silent)["Ready"] == ("False", "HeartbeatExpired")
    assert hub.copies() == ["member-1.default.web-1"]
    service = hub.get("FederatedService", CATALOGUE, "default.web")
    assert [c.cluster for c in service.status.clusters] == ["member-1"]
    assert service.spec.ips == ["10.255.0.1"]  # the Service and its address stay (fail-static)
    assert conditions(hub.get("ExportedService", "member-2", "member-2.default.web"))["Ready"] == (
        "False", "HeartbeatExpired")
    assert [e.reason for e in hub.events_about("member-2")] == ["HeartbeatExpired"]

    hub.heartbeat("member-2", hub.now)
    hub.settle()
    assert len(hub.copies()) == 2
    assert hub.get("FederatedService", CATALOGUE, "default.web").spec.ips == ["10.255.0.1"]
    assert [e.reason for e in hub.events_about("member-2")] == ["HeartbeatExpired", "Heartbeating"]


def test_a_deaf_hub_expires_nobody_who_was_ready_and_gives_them_a_timeout_once_it_hears_again() -> None:
    hub = two_members_exporting_web()
    hub.reconciler.went_deaf()  # the hub's API server stopped answering: heartbeats cannot arrive
    hub.settle(timedelta(minutes=5))
    assert conditions(hub.get("MemberCluster", "member-2", "member-2"))["Ready"] == ("True", "Heartbeating")
    assert len(hub.copies()) == 2, "fail-static: nothing leaves the catalogue while the hub is deaf"
    heard = hub.now
    hub.reconciler.heard(heard)
    hub.heartbeat("member-1", hub.now + timedelta(seconds=5))
    plan = hub.reconcile(timedelta(seconds=5))
    assert plan.wake_at == heard + timedelta(seconds=40), "member-2 gets one timeout (40 s) from hearing again"
    hub.heartbeat("member-1", heard + timedelta(seconds=35))
    hub.settle(timedelta(seconds=35))
    assert conditions(hub.get("MemberCluster", "member-2", "member-2"))["Ready"] == ("False", "HeartbeatExpired")
    assert conditions(hub.get("MemberCluster", "member-1", "member-1"))["Ready"] == ("True", "Heartbeating")
    assert hub.copies() == ["member-1.default.web-1"]


def test_a_deaf_hub_does_not_bring_back_a_member_that_had_expired() -> None:
    hub = two_members_exporting_web()
    hub.heartbeat("member-1", T0 + timedelta(seconds=30))
    hub.settle(timedelta(seconds=40))
    assert conditions(hub.get("MemberCluster", "member-2", "member-2"))["Ready"] == ("False", "HeartbeatExpired")
    hub.reconciler.went_deaf()
    hub.settle(timedelta(seconds=1))
    hub.reconciler.heard(hub.now)
    hub.settle(timedelta(seconds=1))
    assert conditions(hub.get("MemberCluster", "member-2", "member-2"))["Ready"] == ("False", "HeartbeatExpired")
    assert hub.copies() == ["member-1.default.web-1"]


def test_a_restarted_operator_gives_ready_members_one_timeout_to_be_heard() -> None:
    hub = two_members_exporting_web()
    hub.now += timedelta(minutes=5)  # the operator was away; the members' last heartbeats look old
    hub.restart()
    hub.heartbeat("member-1", hub.now)
    hub.settle()
    assert conditions(hub.get("MemberCluster", "member-2", "member-2"))["Ready"] == ("True", "Heartbeating")
    hub.settle(timedelta(seconds=41))
    assert conditions(hub.get("MemberCluster", "member-2", "member-2"))["Ready"] == ("False", "HeartbeatExpired")


def test_the_hub_trusts_the_namespace_not_spec_cluster() -> None:
    hub = two_members_exporting_web()
    spoof = export("member-2", "db", namespace="member-1")  # member-1 claims to speak for member-2
    hub.add(spoof, endpoints_slice("member-2", "db", "10.66.6.6", namespace="member-1"))
    hub.settle()
    stored = hub.get("ExportedService", "member-1", "member-2.default.db")
    assert conditions(stored)["Valid"] == ("False", "ClusterMismatch")
    assert "the hub trusts the namespace" in message(stored, "Valid")
    assert hub.get("FederatedService", CATALOGUE, "default.db") is None
    assert hub.copy("member-2.default.db-1") is None
    assert {e.reason for e in hub.events if e.ref.namespace == "member-1"} == {"ClusterMismatch"}


def test_a_member_cluster_named_for_another_cluster_is_refused() -> None:
    hub = Harness()
    hub.add(member("member-2", namespace="member-1"))
    hub.settle()
    refused = hub.get("MemberCluster", "member-1", "member-2")
    assert conditions(refused) == {"Ready": ("False", "ClusterMismatch"), "Valid": ("False", "ClusterMismatch")}
    assert hub.reconciler.member_states() == {}


def test_a_pod_cidr_overlap_refuses_the_newer_member_and_tells_both() -> None:
    hub = two_members_exporting_web()
    hub.add(member("member-3", "10.101.128.0/17", created=T0 + timedelta(days=1)), export("member-3"),
            endpoints_slice("member-3", "web", "10.101.200.1"))
    hub.settle()
    refused = hub.get("MemberCluster", "member-3", "member-3")
    assert conditions(refused)["Valid"] == ("False", "PodCIDROverlap")
    text = message(refused, "Valid")
    assert "10.101.128.0/17 of member-3" in text.replace("10.101.0.0/16 of member-1 overlaps pod CIDR ", "")
    assert "member-1" in text and "member-3 is refused" in text
    older = hub.get("MemberCluster", "member-1", "member-1")
    assert conditions(older)["Valid"] == ("True", "Valid") and "member-3" in message(older, "Valid")
    assert {e.reason for e in hub.events_about("member-1")} == {"PodCIDROverlap"}
    assert {e.reason for e in hub.events_about("member-3")} == {"PodCIDROverlap"}
    assert conditions(hub.get("ExportedService", "member-3", "member-3.default.web"))["Ready"] == (
        "False", "PodCIDROverlap")
    assert hub.copy("member-3.default.web-1") is None
    service = hub.get("FederatedService", CATALOGUE, "default.web")
    assert [c.cluster for c in service.status.clusters] == ["member-1", "member-2"]


def test_a_conflict_is_reported_on_every_export_and_moves_nothing() -> None:
    hub = two_members_exporting_web()
    before = hub.get("FederatedService", CATALOGUE, "default.web").spec
    hub.add(member("member-3", "10.103.0.0/16"), export("member-3", type="Headless", ports=[HTTP],
                                                        exported_at=T0 + timedelta(days=2)))
    hub.settle()
    assert hub.get("FederatedService", CATALOGUE, "default.web").spec == before
    for cluster in ("member-1", "member-3"):
        exported = hub.get("ExportedService", cluster, f"{cluster}.default.web")
        assert conditions(exported)["Conflict"] == ("True", "TypeConflict")
    assert "type Headless differs from ClusterSetIP: the oldest export (member-1) wins" in message(
        hub.get("ExportedService", "member-3", "member-3.default.web"), "Conflict")
    assert [e.reason for e in hub.events_about("member-3.default.web")] == ["Conflict"]


def test_unexporting_removes_copies_and_the_last_export_removes_the_service() -> None:
    hub = two_members_exporting_web()
    hub.delete(hub.get("ExportedService", "member-2", "member-2.default.web"))
    hub.settle()
    assert hub.copies() == ["member-1.default.web-1"]
    assert [(p.port, p.name) for p in hub.get("FederatedService", CATALOGUE, "default.web").spec.ports] == [
        (80, "http")]
    hub.delete(hub.get("ExportedService", "member-1", "member-1.default.web"))
    hub.settle()
    assert hub.copies() == []
    assert hub.of_kind("FederatedService", CATALOGUE) == []


def test_clusterset_ips_survive_a_restart_and_are_never_handed_out_twice() -> None:
    hub = two_members_exporting_web()
    hub.restart()
    hub.add(export("member-1", "api"))
    hub.settle()
    assert hub.get("FederatedService", CATALOGUE, "default.web").spec.ips == ["10.255.0.1"]
    assert hub.get("FederatedService", CATALOGUE, "default.api").spec.ips == ["10.255.0.2"]
    hub.restart()
    assert len(hub.reconcile()) == 0  # a restarted hub finds everything in place


def test_an_exhausted_clusterset_pool_is_a_condition_and_an_event() -> None:
    hub = Harness(HubSettings(clusterset_ip_pool=ipaddress.IPv4Network("10.255.0.0/31")))
    hub.add(member("member-1"), *(export("member-1", name) for name in ("a", "b", "c")))
    hub.settle()
    exhausted = hub.get("FederatedService", CATALOGUE, "default.c")
    assert exhausted.spec.ips is None
    assert conditions(exhausted) == {"Ready": ("False", "IPPoolExhausted")}
    assert "10.255.0.0/31 is exhausted (2 addresses)" in message(exhausted, "Ready")
    assert [e.reason for e in hub.events_about("default.c")] == ["IPPoolExhausted"]


def test_policy_slices_are_copied_for_live_members() -> None:
    hub = two_members_exporting_web()
    hub.add(endpoints_slice("member-2", policy="test-service-hostport"))
    hub.settle()
    copy = hub.copy("member-2.default.test-service-hostport-1")
    assert copy is not None and (copy.metadata.labels or {})["balancing.elf.io/policy-name"] == "test-service-hostport"


# --- the mesh -------------------------------------------------------------------------------------------


def mesh() -> Harness:
    hub = Harness()
    hub.add(member("member-1"), member("member-2"))
    hub.add(*(tunnel(cluster, node) for cluster in ("member-1", "member-2") for node in (1, 2)))
    hub.settle()
    return hub


def test_every_node_gets_a_proxy_ip_and_its_peers() -> None:
    hub = mesh()
    endpoints = hub.of_kind("NodeTunnelEndpoint")
    assert sorted(e.status.proxy_ipv4 for e in endpoints) == [f"100.96.0.{i}" for i in (1, 2, 3, 4)]
    first = hub.get("NodeTunnelEndpoint", "member-1", "member-1.member-1-node-1")
    assert conditions(first) == {"Ready": ("True", "Planned"), "Valid": ("True", "Valid")}
    peers = {p.node: p.allowed_ips for p in first.status.peers}
    remote = hub.get("NodeTunnelEndpoint", "member-2", "member-2.member-2-node-1").status.proxy_ipv4
    assert peers["member-2-node-1"] == ["10.102.1.0/24", f"{remote}/32"]
    assert all(p.persistent_keepalive_seconds == 25 for p in first.status.peers)


def test_a_new_node_updates_every_peer_set_and_keeps_every_address() -> None:
    hub = mesh()
    before = {e.metadata.name: e.status.proxy_ipv4 for e in hub.of_kind("NodeTunnelEndpoint")}
    hub.add(tunnel("member-2", 3))
    plans = hub.settle()
    assert len(plans[0].statuses) == 5  # every node's peer set changed, and the new node's status
    after = {e.metadata.name: e.status.proxy_ipv4 for e in hub.of_kind("NodeTunnelEndpoint")}
    assert {name: after[name] for name in before} == before
    assert after["member-2.member-2-node-3"] == "100.96.0.5"


def test_an_exhausted_proxy_pool_is_a_condition_and_an_event_naming_the_nodes() -> None:
    hub = Harness(HubSettings(proxy_ip_pool=ipaddress.IPv4Network("100.96.0.0/30")))
    hub.add(member("member-1"), member("member-2"))
    hub.add(*(tunnel(cluster, node) for cluster in ("member-1", "member-2") for node in (1, 2)))
    hub.settle()
    left_out = hub.get("NodeTunnelEndpoint", "member-2", "member-2.member-2-node-2")
    assert conditions(left_out)["Ready"] == ("False", "ProxyPoolExhausted")
    assert "member-2/member-2-node-2" in message(left_out, "Ready") and "widen the pool" in message(left_out, "Ready")
    assert [e.reason for e in hub.events_about("member-2.member-2-node-2")] == ["ProxyPoolExhausted"]
    assert left_out.status.peers  # it still peers for its pod CIDRs


def test_nodes_of_a_refused_or_unregistered_member_stay_out_of_the_mesh() -> None:
    hub = mesh()
    hub.add(tunnel("member-9", 1, "10.101.1.0/24"))  # not registered
    hub.add(member("member-3", "10.101.0.0/16", created=T0 + timedelta(1)), tunnel("member-3", 1, "10.101.0.0/24"))
    hub.settle()
    assert conditions(hub.get("NodeTunnelEndpoint", "member-9", "member-9.member-9-node-1"))["Ready"] == (
        "False", "MemberNotRegistered")
    refused = hub.get("NodeTunnelEndpoint", "member-3", "member-3.member-3-node-1")
    assert conditions(refused) == {"Ready": ("False", "PodCIDROverlap"), "Valid": ("False", "PodCIDROverlap")}
    first = hub.get("NodeTunnelEndpoint", "member-1", "member-1.member-1-node-1")
    assert {p.cluster for p in first.status.peers} == {"member-1", "member-2"}


# --- incremental == from scratch ------------------------------------------------------------------------

CLUSTERS = ("member-1", "member-2", "member-3")
SERVICES = ("web", "db")


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["member", "unmember", "export", "unexport", "slice", "unslice",
                                                  "beat", "wait", "node"]),
                                st.sampled_from(CLUSTERS), st.sampled_from(SERVICES), st.integers(0, 3)),
                      min_size=1, max_size=25))
def test_incremental_reconciles_agree_with_a_reconcile_from_scratch(steps: list[tuple[str, str, str, int]]) -> None:
    """Whatever happened, in whatever order: once settled, a fresh reconciler over the same objects finds
    nothing to write. Incremental updates never leave a difference a full reconcile would fix."""
    hub = Harness()
    for index, cluster in enumerate(CLUSTERS[:2], start=1):  # a running federation to disturb
        hub.add(member(cluster, f"10.{100 + index}.0.0/16"), export(cluster, "web"), tunnel(cluster, 1),
                endpoints_slice(cluster, "web", f"10.{100 + index}.1.1"))
    hub.settle()
    for action, cluster, service, number in steps:
        index = CLUSTERS.index(cluster) + 1
        if action == "member":
            hub.add(member(cluster, f"10.{100 + index}.0.0/16", heartbeat=hub.now))
        elif action == "unmember" and (found := hub.get("MemberCluster", cluster, cluster)) is not None:
            hub.delete(found)
        elif action == "export":
            hub.add(export(cluster, service, affinity="ClientIP" if number == 3 else "None",
                           ports=[(80 + number, "TCP", None)]))
        elif action == "unexport" and (found := hub.get("ExportedService", cluster, f"{cluster}.default.{service}")):
            hub.delete(found)
        elif action == "slice":
            hub.add(endpoints_slice(cluster, service, f"10.{100 + index}.1.{number + 1}"))
        elif action == "unslice" and (found := hub.get("FederatedEndpointSlice", cluster,
                                                       f"{cluster}.default.{service}-1")):
            hub.delete(found)
        elif action == "beat" and hub.get("MemberCluster", cluster, cluster) is not None:
            hub.heartbeat(cluster, hub.now)
        elif action == "wait":
            hub.now += timedelta(seconds=15 * number)
        elif action == "node":
            hub.add(tunnel(cluster, number + 1))
        hub.settle()
    hub.restart()
    fresh = hub.reconcile()
    assert (fresh.statuses, fresh.objects) == ([], [])
