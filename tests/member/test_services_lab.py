"""Kubernetes Services on member-1, implemented only by our node agent (no kube-proxy in the lab),
reached by real clients in pods and in node host processes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.member.conftest import NODES, Member, wait_for

pytestmark = pytest.mark.lab

NODE_1, NODE_2 = NODES


def service(name: str, namespace: str, ports: list[dict[str, Any]], selector: dict[str, str] | None = None,
            **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ports": ports, **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": body}


def cluster_ip(member: Member, namespace: str, name: str) -> str:
    return str(member.get("service", name, namespace)["spec"]["clusterIP"])


def answers(member: Member, target: str, ip: str, port: int, count: int = 30, kind: str = "tcp") -> dict[str, int]:
    result = member.client(target, kind, ip, str(port), "--count", str(count))
    return dict(result["answers"]) if not result["failures"] else {"errors": result["errors"]}


def reaches(member: Member, target: str, ip: str, port: int, expected: set[str], kind: str = "tcp") -> dict[str, int]:
    """Wait until every connect reaches one of `expected` and, over 30 connects, each of them."""
    seen: list[dict[str, int]] = []

    def check() -> dict[str, int] | None:
        seen[:] = [answers(member, target, ip, port, kind=kind)]
        return seen[0] if set(seen[0]) == expected else None

    try:
        return wait_for(check, f"{target} -> {ip}:{port}/{kind} reaching exactly {sorted(expected)}")
    except AssertionError as error:
        raise AssertionError(f"{error}; the last 30 connects answered {seen}") from None


@pytest.fixture
def web(member: Member, namespace: str) -> str:
    """Two echo pods, one per node, and a client pod on node 1."""
    member.echo_pods(namespace, [("web-1", NODE_1, {"app": "web"}), ("web-2", NODE_2, {"app": "web"}),
                                 ("client", NODE_1, {"app": "client"})])
    return namespace


def test_cluster_ip_tcp_and_udp_from_a_pod_and_from_a_node(member: Member, web: str) -> None:
    member.apply(service("web", web, [{"name": "http", "port": 80, "targetPort": 8080},
                                      {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 8080}],
                         {"app": "web"}))
    ip = cluster_ip(member, web, "web")
    reaches(member, f"member-1/{web}/client", ip, 80, {"web-1", "web-2"})
    reaches(member, NODE_2, ip, 80, {"web-1", "web-2"})
    udp = member.client(f"member-1/{web}/client", "udp", ip, "53", "--count", "20")
    assert udp["failures"] == 0 and set(udp["answers"]) <= {"web-1", "web-2"}
    assert set(udp["sources"]) == {f"{ip}:53"}, "replies come from the ClusterIP, as with kube-proxy"


def test_nodeport_on_every_node_address(member: Member, web: str) -> None:
    member.apply(service("np", web, [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30480}],
                         {"app": "web"}, type="NodePort"))
    for node in NODES:
        reaches(member, f"member-1/{web}/client", member.node_ip(node), 30480, {"web-1", "web-2"})
    reaches(member, NODE_2, "127.0.0.1", 30480, {"web-1", "web-2"})


def test_load_balancer_ingress_ip_and_external_ip(member: Member, web: str) -> None:
    member.apply(service("lb", web, [{"name": "http", "port": 8081, "targetPort": 8080}], {"app": "web"},
                         type="LoadBalancer", externalIPs=["192.0.2.77"]))
    member.kubectl("patch", "service", "lb", "-n", web, "--subresource=status", "--type=merge", "-p",
                   json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.76"}]}}}))
    for ip in ("192.0.2.76", "192.0.2.77"):
        reaches(member, f"member-1/{web}/client", ip, 8081, {"web-1", "web-2"})


def test_a_service_without_endpoints_refuses_at_once(member: Member, web: str) -> None:
    member.apply(service("empty", web, [{"name": "http", "port": 80, "targetPort": 8080},
                                        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 8080}],
                         {"app": "nothing"}))
    ip = cluster_ip(member, web, "empty")

    def refused() -> dict[str, Any] | None:
        tcp = member.client(f"member-1/{web}/client", "tcp", ip, "80", "--count", "5")
        return tcp if tcp["errors"] == {"ECONNREFUSED": 5} else None

    tcp = wait_for(refused, "connects to a Service without endpoints refused")
    assert tcp["slowest"] < 0.5, "refused at once, never a hang until the timeout"
    udp = member.client(f"member-1/{web}/client", "udp", ip, "53", "--count", "3")
    assert udp["errors"] == {"ECONNREFUSED": 3}
    member.echo_pods(web, [("late", NODE_2, {"app": "nothing"})])
    reaches(member, f"member-1/{web}/client", ip, 80, {"late"})


def test_named_target_port_resolves_per_pod(member: Member, namespace: str) -> None:
    member.echo_pods(namespace, [("a", NODE_1, {"app": "named"})], port=8080)
    member.echo_pods(namespace, [("b", NODE_2, {"app": "named"})], port=9090)
    member.echo_pods(namespace, [("client", NODE_1, {"app": "client"})])
    member.apply(service("named", namespace, [{"name": "http", "port": 80, "targetPort": "echo-tcp"}],
                         {"app": "named"}))
    reaches(member, f"member-1/{namespace}/client", cluster_ip(member, namespace, "named"), 80, {"a", "b"})


def test_terminating_endpoints_serve_only_when_none_is_ready(member: Member, web: str) -> None:
    member.apply(service("manual", web, [{"name": "http", "port": 80, "targetPort": 8080}]))
    ips = {name: member.pod_ip(web, name) for name in ("web-1", "web-2")}

    def endpoint_slice(conditions: dict[str, dict[str, bool]]) -> dict[str, Any]:
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "manual-1", "namespace": web, "labels": {"kubernetes.io/service-name": "manual"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ips[name]], "conditions": condition, "nodeName": NODE_1}
                              for name, condition in conditions.items()]}

    ip = cluster_ip(member, web, "manual")
    terminating = {"ready": False, "serving": True, "terminating": True}
    member.apply(endpoint_slice({"web-1": {"ready": True}, "web-2": terminating}))
    reaches(member, f"member-1/{web}/client", ip, 80, {"web-1"})
    member.apply(endpoint_slice({"web-1": {"ready": False, "serving": False, "terminating": True},
                                 "web-2": terminating}))
    reaches(member, f"member-1/{web}/client", ip, 80, {"web-2"})


def test_session_affinity_sticks_and_never_returns_to_a_removed_backend(member: Member, web: str) -> None:
    member.apply(service("sticky", web, [{"name": "http", "port": 80, "targetPort": 8080}], {"app": "web"},
                         sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}}))
    ip = cluster_ip(member, web, "sticky")
    def sticky() -> str | None:
        found = answers(member, f"member-1/{web}/client", ip, 80, count=20)
        return next(iter(found)) if len(found) == 1 and "errors" not in found else None

    chosen = wait_for(sticky, "one sticky backend")
    member.kubectl("delete", "pod", chosen, "-n", web, "--wait=true")
    other = ({"web-1", "web-2"} - {chosen}).pop()
    reaches(member, f"member-1/{web}/client", ip, 80, {other})


def test_internal_traffic_policy_local(member: Member, web: str) -> None:
    member.apply(service("local", web, [{"name": "http", "port": 80, "targetPort": 8080}], {"app": "web"},
                         internalTrafficPolicy="Local"))
    ip = cluster_ip(member, web, "local")
    reaches(member, f"member-1/{web}/client", ip, 80, {"web-1"})
    reaches(member, NODE_2, ip, 80, {"web-2"})


def test_traffic_distribution_prefer_close_keeps_traffic_in_the_zone(member: Member, web: str) -> None:
    for node, zone in zip(NODES, ("zone-a", "zone-b"), strict=True):
        member.kubectl("label", "node", node, f"topology.kubernetes.io/zone={zone}", "--overwrite")
    try:
        member.apply(service("close", web, [{"name": "http", "port": 80, "targetPort": 8080}], {"app": "web"},
                             trafficDistribution="PreferClose"))
        ip = cluster_ip(member, web, "close")
        reaches(member, f"member-1/{web}/client", ip, 80, {"web-1"})
        reaches(member, NODE_2, ip, 80, {"web-2"})
    finally:
        for node in NODES:
            member.kubectl("label", "node", node, "topology.kubernetes.io/zone-", check=False)


def test_headless_external_name_and_other_proxies_are_left_alone(member: Member, web: str) -> None:
    member.apply(
        service("headless", web, [{"port": 80}], {"app": "web"}, clusterIP="None"),
        service("ext", web, [{"port": 80}], type="ExternalName", externalName="example.invalid"),
        {**service("other", web, [{"port": 80}], {"app": "web"}),
         "metadata": {"name": "other", "namespace": web,
                      "labels": {"service.kubernetes.io/service-proxy-name": "someone-else"}}},
    )
    other_ip = cluster_ip(member, web, "other")
    result = member.client(f"member-1/{web}/client", "tcp", other_ip, "80", "--count", "1")
    assert result["failures"] == 1 and "ECONNREFUSED" not in result["errors"], "not ours to answer or refuse"
