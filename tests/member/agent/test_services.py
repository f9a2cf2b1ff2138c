"""Service semantics for one node, table-driven (no cluster): each row is a description, the Service and
its EndpointSlices, the node and zone, and the frontends expected (ip:port/proto -> backends)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from member.agent.services import node_addresses, service_frontends
from tests.member.agent.objects import endpoint, endpoint_slice, node, service

Obj = dict[str, Any]
NODE = "node-1"


@dataclass(frozen=True)
class Row:
    description: str
    service: Obj
    slices: list[Obj]
    expected: dict[str, list[str]]  # "ip:port/PROTO" -> sorted backends "ip:port"
    zone: str = ""
    skipped: list[str] = field(default_factory=list)
    affinity: int = 0


def ep_slice(*endpoints: Obj, **kwargs: Any) -> Obj:
    return endpoint_slice("web", endpoints, **kwargs)


ROWS = [
    Row("ClusterIP to ready endpoints", service(), [ep_slice(endpoint("10.1.0.1"), endpoint("10.1.0.2"))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080", "10.1.0.2:8080"]}),
    Row("not-ready endpoints are left out", service(),
        [ep_slice(endpoint("10.1.0.1"), endpoint("10.1.0.2", ready=False))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080"]}),
    Row("ready unset means ready", service(), [ep_slice(endpoint("10.1.0.1", ready=None))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080"]}),
    Row("serving-terminating endpoints only when none is ready", service(),
        [ep_slice(endpoint("10.1.0.1", ready=False, serving=True, terminating=True),
                  endpoint("10.1.0.2", ready=False, serving=False, terminating=True))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080"]}),
    Row("terminating endpoints are ignored while one is ready", service(),
        [ep_slice(endpoint("10.1.0.1", ready=False, serving=True, terminating=True), endpoint("10.1.0.3"))],
        {"10.96.0.10:80/TCP": ["10.1.0.3:8080"]}),
    Row("no endpoints: the frontend exists and rejects", service(), [], {"10.96.0.10:80/TCP": []}),
    Row("named targetPort resolves per slice", service(ports=[{"name": "http", "port": 80, "targetPort": "web"}]),
        [ep_slice(endpoint("10.1.0.1"), name="a", ports=[{"name": "http", "port": 8080, "protocol": "TCP"}]),
         ep_slice(endpoint("10.1.0.2"), name="b", ports=[{"name": "http", "port": 9090, "protocol": "TCP"}])],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080", "10.1.0.2:9090"]}),
    Row("TCP and UDP on the same port stay apart",
        service(ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                       {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]),
        [ep_slice(endpoint("10.1.0.1"), ports=[{"name": "dns", "port": 5353, "protocol": "UDP"},
                                               {"name": "dns-tcp", "port": 5354, "protocol": "TCP"}])],
        {"10.96.0.10:53/UDP": ["10.1.0.1:5353"], "10.96.0.10:53/TCP": ["10.1.0.1:5354"]}),
    Row("SCTP is skipped", service(ports=[{"name": "s", "port": 9, "protocol": "SCTP"}]), [], {}, skipped=["s/SCTP"]),
    Row("an endpoint in two slices counts once", service(),
        [ep_slice(endpoint("10.1.0.1"), name="a"), ep_slice(endpoint("10.1.0.1"), name="b")],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080"]}),
    Row("IPv6 slices are ignored", service(),
        [ep_slice(endpoint("fd00::1"), address_type="IPv6"), ep_slice(endpoint("10.1.0.1"), name="v4")],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080"]}),
    Row("endpoints without nodeName are usable", service(), [ep_slice(endpoint("10.1.0.1", node=""))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080"]}),
    Row("NodePort: any node address", service(type="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 30080}]),
        [ep_slice(endpoint("10.1.0.1"))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080"], "0.0.0.0:30080/TCP": ["10.1.0.1:8080"]}),
    Row("LoadBalancer: ingress IPs and NodePort, but not ipMode Proxy",
        {**service(type="LoadBalancer", ports=[{"name": "http", "port": 80, "nodePort": 30080}]),
         "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}, {"ip": "192.0.2.11", "ipMode": "Proxy"}]}}},
        [ep_slice(endpoint("10.1.0.1"))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080"], "0.0.0.0:30080/TCP": ["10.1.0.1:8080"],
         "192.0.2.10:80/TCP": ["10.1.0.1:8080"]}),
    Row("externalIPs", service(externalIPs=["192.0.2.20"]), [ep_slice(endpoint("10.1.0.1"))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080"], "192.0.2.20:80/TCP": ["10.1.0.1:8080"]}),
    Row("internalTrafficPolicy Local: this node's endpoints for the ClusterIP only",
        service(internalTrafficPolicy="Local", externalIPs=["192.0.2.20"]),
        [ep_slice(endpoint("10.1.0.1", node=NODE), endpoint("10.1.0.2", node="node-2"))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080"], "192.0.2.20:80/TCP": ["10.1.0.1:8080", "10.1.0.2:8080"]}),
    Row("internalTrafficPolicy Local without a local endpoint rejects",
        service(internalTrafficPolicy="Local"), [ep_slice(endpoint("10.1.0.2", node="node-2"))],
        {"10.96.0.10:80/TCP": []}),
    Row("externalTrafficPolicy Local: in-cluster clients still reach every endpoint (kube-proxy short-circuit)",
        service(type="NodePort", externalTrafficPolicy="Local",
                ports=[{"name": "http", "port": 80, "nodePort": 30080}]),
        [ep_slice(endpoint("10.1.0.2", node="node-2"))],
        {"10.96.0.10:80/TCP": ["10.1.0.2:8080"], "0.0.0.0:30080/TCP": ["10.1.0.2:8080"]}),
    Row("zone hints: same zone first", service(trafficDistribution="PreferClose"),
        [ep_slice(endpoint("10.1.0.1", zones=["a"]), endpoint("10.1.0.2", zones=["b"]))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080"]}, zone="a"),
    Row("zone hints ignored when one endpoint has none", service(),
        [ep_slice(endpoint("10.1.0.1", zones=["a"]), endpoint("10.1.0.2"))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080", "10.1.0.2:8080"]}, zone="a"),
    Row("zone hints ignored when none is for this zone", service(),
        [ep_slice(endpoint("10.1.0.1", zones=["b"]), endpoint("10.1.0.2", zones=["b"]))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080", "10.1.0.2:8080"]}, zone="a"),
    Row("node hints: same node first", service(),
        [ep_slice(endpoint("10.1.0.1", nodes=[NODE], zones=["a"]),
                  endpoint("10.1.0.2", nodes=["node-2"], zones=["a"]))],
        {"10.96.0.10:80/TCP": ["10.1.0.1:8080"]}, zone="a"),
    Row("session affinity ClientIP with its timeout",
        service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
        [ep_slice(endpoint("10.1.0.1"))], {"10.96.0.10:80/TCP": ["10.1.0.1:8080"]}, affinity=60),
    Row("session affinity ClientIP defaults to 10800 s", service(sessionAffinity="ClientIP"),
        [ep_slice(endpoint("10.1.0.1"))], {"10.96.0.10:80/TCP": ["10.1.0.1:8080"]}, affinity=10800),
    Row("headless Services are left alone", service(cluster_ip="None"), [ep_slice(endpoint("10.1.0.1"))], {}),
    Row("ExternalName Services are left alone", service(type="ExternalName", externalName="example.com"), [], {}),
    Row("Services of another proxy are left alone",
        service(labels={"service.kubernetes.io/service-proxy-name": "other"}), [ep_slice(endpoint("10.1.0.1"))], {}),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.description for row in ROWS])
def test_service_frontends(row: Row) -> None:
    result = service_frontends(row.service, row.slices, NODE, row.zone)
    got = {f"{spec.ip}:{spec.port}/{spec.protocol}": sorted(f"{b.ip}:{b.port}" for b in spec.backends)
           for _tier, spec in result.frontends}
    assert got == {key: sorted(value) for key, value in row.expected.items()}
    assert result.skipped_ports == row.skipped
    for _tier, spec in result.frontends:
        assert spec.reject_when_empty, "a Service without usable endpoints refuses the connect, as kube-proxy does"
        assert spec.affinity_timeout_seconds == row.affinity
        assert spec.policy == "default/web"


def test_more_endpoints_than_a_frontend_holds_is_a_problem_not_a_truncation() -> None:
    many = [endpoint(f"10.{i // 65536 + 1}.{i // 256 % 256}.{i % 256}") for i in range(16385)]
    result = service_frontends(service(), [ep_slice(*many)], NODE, "")
    assert result.frontends == []
    assert "16385 endpoints" in result.problem and "previous state is kept" in result.problem


def test_node_addresses_are_every_internal_and_external_ipv4() -> None:
    nodes = [node("a", "172.30.1.11"), node("b", "172.30.1.12")]
    nodes[1]["status"]["addresses"].append({"type": "ExternalIP", "address": "192.0.2.5"})
    nodes[1]["status"]["addresses"].append({"type": "InternalIP", "address": "fd00::5"})
    assert node_addresses(nodes) == ["172.30.1.11", "172.30.1.12", "192.0.2.5"]
