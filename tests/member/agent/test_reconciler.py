"""The reconciler's incremental path always ends where a full sync would: checked against a recording
datapath (pure logic; the kernel half is proven by the lab tests in tests/member/test_agent_lab.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from datapath.lb import ApplyReport, DesiredState, FrontendSpec, Tier
from member.agent.cache import ClusterCache
from member.agent.reconciler import Reconciler
from member.agent.translate import AgentOptions
from tests.member.agent.objects import endpoint, endpoint_slice, node, policy, policy_slice, ports, service

NODE = "node-1"


class RecordingDatapath:
    """Holds frontends as the kernel would; counts calls."""

    def __init__(self) -> None:
        self.frontends: dict[tuple[Tier, str, int, str], FrontendSpec] = {}
        self.addresses: tuple[str, ...] = ()
        self.applies = self.upserts = self.removes = 0

    def apply(self, state: DesiredState) -> ApplyReport:
        self.applies += 1
        self.frontends = {(tier, s.ip, s.port, s.protocol): s for tier, _i, s in state.entries()}
        self.addresses = state.node_addresses
        return ApplyReport()

    def upsert(self, tier: Tier, spec: FrontendSpec) -> ApplyReport:
        self.upserts += 1
        self.frontends[(tier, spec.ip, spec.port, spec.protocol)] = spec
        return ApplyReport(elements_written=1)

    def remove(self, tier: Tier, ip: str, port: int, protocol: str) -> ApplyReport:
        self.removes += 1
        self.frontends.pop((tier, ip, port, protocol), None)
        return ApplyReport(elements_written=1)


def make(events: list[tuple[str, str, dict[str, Any]]] = ()) -> tuple[Reconciler, RecordingDatapath, ClusterCache]:  # type: ignore[assignment]
    cache = ClusterCache(NODE)
    for kind, event, obj in events:
        cache.apply(kind, event, obj)
    datapath = RecordingDatapath()
    return Reconciler(datapath, cache, AgentOptions(), lambda uid: None), datapath, cache


BASE = [
    ("Node", "ADDED", node(NODE, "172.30.1.11")),
    ("Service", "ADDED", service("web", cluster_ip="10.96.0.10")),
    ("EndpointSlice", "ADDED", endpoint_slice("web", [endpoint("10.1.0.1"), endpoint("10.1.0.2")])),
]


def test_first_sync_is_full_and_a_repeat_changes_nothing() -> None:
    reconciler, datapath, _cache = make(BASE)
    reconciler.sync(set())
    assert datapath.applies == 1 and list(datapath.frontends) == [(Tier.SERVICE, "10.96.0.10", 80, "TCP")]
    result = reconciler.sync({"service:default/web"})
    assert (result.upserts, result.removals, datapath.applies) == (0, 0, 1)


def test_an_endpoint_change_upserts_one_frontend() -> None:
    reconciler, datapath, cache = make(BASE)
    reconciler.full_sync()
    dirty = cache.apply("EndpointSlice", "MODIFIED", endpoint_slice("web", [endpoint("10.1.0.1")]))
    result = reconciler.sync(dirty)
    assert (result.full, result.upserts, result.removals) == (False, 1, 0)
    assert [b.ip for b in datapath.frontends[(Tier.SERVICE, "10.96.0.10", 80, "TCP")].backends] == ["10.1.0.1"]


def test_a_deleted_service_is_removed() -> None:
    reconciler, datapath, cache = make(BASE)
    reconciler.full_sync()
    result = reconciler.sync(cache.apply("Service", "DELETED", service("web")))
    assert result.removals == 1 and datapath.frontends == {}


def test_the_older_service_keeps_a_shared_external_ip() -> None:
    older = service("a", cluster_ip="10.96.0.1", externalIPs=["192.0.2.1"], created="2026-01-01T00:00:00Z")
    newer = service("b", cluster_ip="10.96.0.2", externalIPs=["192.0.2.1"], created="2026-02-01T00:00:00Z")
    reconciler, datapath, cache = make([("Service", "ADDED", newer)])
    reconciler.full_sync()
    assert datapath.frontends[(Tier.SERVICE, "192.0.2.1", 80, "TCP")].policy == "default/b"
    result = reconciler.sync(cache.apply("Service", "ADDED", older))
    assert datapath.frontends[(Tier.SERVICE, "192.0.2.1", 80, "TCP")].policy == "default/a"
    assert not result.full
    reconciler.sync(cache.apply("Service", "DELETED", older))
    assert datapath.frontends[(Tier.SERVICE, "192.0.2.1", 80, "TCP")].policy == "default/b"


def test_a_source_that_cannot_be_programmed_keeps_its_previous_frontends() -> None:
    reconciler, datapath, cache = make(BASE)
    reconciler.full_sync()
    too_many = [endpoint(f"10.2.{i // 256}.{i % 256}") for i in range(16385)]
    result = reconciler.sync(cache.apply("EndpointSlice", "MODIFIED", endpoint_slice("web", too_many)))
    assert "16385 endpoints" in result.problems["service:default/web"]
    assert len(datapath.frontends[(Tier.SERVICE, "10.96.0.10", 80, "TCP")].backends) == 2
    reconciler.sync(cache.apply("EndpointSlice", "MODIFIED", endpoint_slice("web", [endpoint("10.1.0.9")])))
    assert reconciler.problems == {}


def test_node_address_changes_take_the_full_path() -> None:
    reconciler, datapath, cache = make(BASE)
    reconciler.full_sync()
    result = reconciler.sync(cache.apply("Node", "ADDED", node("node-2", "172.30.1.12")))
    assert result.full and datapath.addresses == ("172.30.1.11", "172.30.1.12")
    heartbeat = node("node-2", "172.30.1.12")
    heartbeat["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert cache.apply("Node", "MODIFIED", heartbeat) == set(), "a heartbeat changes nothing the datapath uses"


# --- property: any event sequence, applied incrementally, equals a fresh full translation -----------------

SERVICES = ["a", "b", "c"]
IPS = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
VIP_POLICY = policy("BalancingPolicy", "vip", {
    "frontend": {"addressMatcher": {"ip": "192.0.2.1", "toPorts": ports(("80", "TCP", "p"))}},
    "backend": {"serviceEndpoint": {"endpointSelector": {"matchLabels": {"app": "x"}},
                                    "toPorts": ports(("8080", "TCP", "p"))}},
})

event_strategy = st.one_of(
    st.tuples(st.just("Service"), st.sampled_from(["ADDED", "DELETED"]), st.sampled_from(SERVICES),
              st.sampled_from(["192.0.2.1", "192.0.2.2", ""])),
    st.tuples(st.just("EndpointSlice"), st.sampled_from(["ADDED", "DELETED"]), st.sampled_from(SERVICES),
              st.lists(st.sampled_from(IPS), unique=True, max_size=3)),
    st.tuples(st.just("BalancingPolicy"), st.sampled_from(["ADDED", "DELETED"]), st.just("vip"), st.just(None)),
    st.tuples(st.just("PolicySlice"), st.just("ADDED"), st.just("vip"), st.lists(st.sampled_from(IPS), unique=True)),
)


def _event(kind: str, event: str, name: str, payload: Any) -> tuple[str, str, dict[str, Any]]:
    if kind == "Service":
        created = f"2026-01-0{SERVICES.index(name) + 1}T00:00:00Z"
        external = [payload] if payload else []
        return kind, event, service(name, cluster_ip=f"10.96.0.{SERVICES.index(name) + 1}", created=created,
                                    externalIPs=external)
    if kind == "EndpointSlice":
        return kind, event, endpoint_slice(name, [endpoint(ip) for ip in payload])
    if kind == "PolicySlice":
        return "EndpointSlice", event, policy_slice("BalancingPolicy", name, [endpoint(ip) for ip in payload])
    return kind, event, VIP_POLICY


@settings(max_examples=150, deadline=None)
@given(st.lists(event_strategy, max_size=25))
def test_incremental_syncs_equal_a_full_translation(events: list[tuple[str, str, str, Any]]) -> None:
    reconciler, datapath, cache = make([("Node", "ADDED", node(NODE, "172.30.1.11"))])
    reconciler.full_sync()
    for step in events:
        reconciler.sync(cache.apply(*_event(*step)))
    fresh, fresh_datapath, _ = make()
    fresh.cache = cache
    fresh.full_sync()
    assert datapath.frontends == fresh_datapath.frontends
