"""The member's federation semantics without a cluster: what it exports to the hub, what it imports,
and how its agents resolve an import with each locality (table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from crds import BalancingPolicy, FederatedEndpointSlice, FederatedService, NodeTunnelEndpoint, parse_object
from member.agent.services import import_frontends
from member.controller.exports import check_export, cluster_pod_cidrs, plan_exports
from member.controller.imports import plan_imports
from member.controller.plan import NodeReport, policy_status, remote_endpoints
from member.policies import resolve_bindings
from tests.member.agent.objects import endpoint, endpoint_slice, node, service

CLUSTER = "member-1"
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def export(name: str, namespace: str = "default", affinity: str | None = None) -> dict[str, Any]:
    annotations = {"balancing.elf.io/affinity": affinity} if affinity else {}
    return {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations,
                         "creationTimestamp": "2026-01-01T00:00:00Z"}}


@pytest.mark.parametrize(("description", "svc", "valid", "reason"), [
    ("a ClusterIP Service", service(), True, "Exported"),
    ("no Service", None, False, "NoService"),
    ("ExternalName", service(type="ExternalName", externalName="x.example"), False, "ServiceTypeNotSupported"),
    ("only SCTP", service(ports=[{"port": 9, "protocol": "SCTP"}]), False, "NoProxiedPorts"),
])
def test_check_export(description: str, svc: dict[str, Any] | None, valid: bool, reason: str) -> None:
    check = check_export(export("web"), svc)
    assert (check.valid, check.reason) == (valid, reason), description


def test_an_invalid_affinity_annotation_is_named() -> None:
    check = check_export(export("web", affinity="nearby"), service())
    assert not check.valid and "balancing.elf.io/affinity" in check.message


def test_plan_exports_publishes_valid_exports_their_slices_and_node_tunnels() -> None:
    nodes = {"n1": node("n1", "172.30.1.11", zone="a", annotations={"balancing.elf.io/nodeProxyIpv4": "100.96.0.1"}),
             "n2": node("n2", "172.30.1.12")}
    nodes["n1"]["spec"] = {"podCIDRs": ["10.101.1.0/24"]}
    slices = {"default/web": [endpoint_slice("web", [endpoint("10.101.1.5", "n1"), endpoint("10.101.2.5", "n2",
                                                                                            ready=False)])]}
    balancing_nodes = {"n1": {"status": {"wireguardPublicKey": KEY}}}
    plan = plan_exports(CLUSTER, [export("web", affinity="local"), export("gone")], {"default/web": service()},
                        slices, nodes, balancing_nodes, "2026-01-01T00:00:01.000000Z")
    assert set(plan.exported) == {"member-1.default.web"}
    exported = parse_object(plan.exported["member-1.default.web"])
    assert exported.spec.affinity == "local" and exported.spec.ports[0].port == 80  # type: ignore[attr-defined]
    (fes,) = plan.slices.values()
    parsed = parse_object({**fes, "metadata": {**fes["metadata"], "namespace": CLUSTER}})
    assert isinstance(parsed, FederatedEndpointSlice) and parsed.spec.cluster == CLUSTER
    first, second = parsed.spec.endpoints
    assert (str(first.node_ip), str(first.node_proxy_ipv4), first.zone, first.ready) == (
        "172.30.1.11", "100.96.0.1", "a", True)
    assert second.ready is False
    assert not plan.checks["default/gone"].valid
    (tunnel,) = plan.tunnels.values()
    assert tunnel["spec"] == {"cluster": CLUSTER, "node": "n1", "publicKey": KEY, "endpoint": "172.30.1.11:51820",
                              "podCIDRs": ["10.101.1.0/24"]}, "n2 has reported no key yet"


def test_cluster_pod_cidrs_collapse_or_stay_unset() -> None:
    nodes = [{"spec": {"podCIDRs": [f"10.101.{i}.0/24"]}} for i in range(2)]
    assert cluster_pod_cidrs(nodes) == ["10.101.0.0/23"]
    many = [{"spec": {"podCIDRs": [f"10.{i}.0.0/24"]}} for i in range(20)]
    assert cluster_pod_cidrs(many) is None, "too many to register: the per-node tunnel endpoints carry them"


def federated(namespace: str, name: str, clusters: list[str], ips: list[str] | None = None) -> FederatedService:
    parsed = parse_object({
        "apiVersion": "balancing.elf.io/v1beta1", "kind": "FederatedService",
        "metadata": {"name": f"{namespace}.{name}", "namespace": "balancing-federation"},
        "spec": {"namespace": namespace, "serviceName": name, "ports": [{"name": "http", "port": 80}],
                 "ips": ips or ["10.250.0.1"], "affinity": "local"},
        "status": {"clusters": [{"cluster": c} for c in clusters]}})
    assert isinstance(parsed, FederatedService)
    return parsed


def fes(cluster: str, name: str, addresses: list[str], changed: str = "2026-01-01T00:00:00.500000Z",
        policy: str | None = None) -> FederatedEndpointSlice:
    source: dict[str, Any] = ({"policy": {"kind": "BalancingPolicy", "name": policy}} if policy
                              else {"service": {"namespace": "default", "name": name}})
    parsed = parse_object({
        "apiVersion": "balancing.elf.io/v1beta1", "kind": "FederatedEndpointSlice",
        "metadata": {"name": f"{cluster}.default.{name}-1", "namespace": "balancing-federation",
                     "annotations": {"balancing.elf.io/changed-at": changed}},
        "spec": {"cluster": cluster, **source, "ports": [{"name": "http", "port": 8080}],
                 "endpoints": [{"addresses": [a], "nodeIP": "172.30.2.11", "nodeProxyIPv4": "100.96.0.9"}
                               for a in addresses]}})
    assert isinstance(parsed, FederatedEndpointSlice)
    return parsed


def test_plan_imports_makes_imports_slices_policies_and_tunnels() -> None:
    hub_policy = {"apiVersion": "balancing.elf.io/v1beta1", "kind": "BalancingPolicy",
                  "metadata": {"name": "global"},
                  "spec": {"enabled": True,
                           "frontend": {"addressMatcher": {"ip": "169.254.9.9", "toPorts": [
                               {"port": "80", "protocol": "TCP"}]}},
                           "backend": {"serviceEndpoint": {"endpointSelector": {"matchLabels": {"app": "g"}},
                                                           "redirectMode": "nodeProxy",
                                                           "toPorts": [{"port": "9000", "protocol": "TCP"}]}}}}
    tunnel = parse_object({
        "apiVersion": "balancing.elf.io/v1beta1", "kind": "NodeTunnelEndpoint",
        "metadata": {"name": "member-1.n1", "namespace": CLUSTER},
        "spec": {"cluster": CLUSTER, "node": "n1", "publicKey": KEY, "endpoint": "172.30.1.11:51820"},
        "status": {"proxyIPv4": "100.96.0.1", "peers": [{"cluster": "member-2", "node": "m", "publicKey": KEY,
                                                         "endpoint": "172.30.2.11:51820",
                                                         "allowedIPs": ["10.102.1.0/24"]}]}})
    assert isinstance(tunnel, NodeTunnelEndpoint)
    plan = plan_imports(
        CLUSTER, ["default", "kube-system"], "balancing-system",
        [federated("default", "web", ["member-1", "member-2"]), federated("elsewhere", "x", ["member-2"])],
        [fes("member-2", "web", ["10.102.1.5"]), fes("member-1", "web", ["10.101.1.5"]),
         fes("member-2", "g", ["10.102.1.7", "10.102.1.8"], policy="global")],
        [hub_policy], [tunnel])
    assert set(plan.imports) == {"default/web"}, "namespace sameness: no import where the namespace is missing"
    assert plan.imports["default/web"]["spec"]["ips"] == ["10.250.0.1"]
    assert plan.import_clusters["default/web"] == ["member-1", "member-2"]
    (imported,) = [s for s in plan.slices.values()
                   if "multicluster.kubernetes.io/service-name" in s["metadata"]["labels"]]
    assert imported["metadata"]["labels"]["multicluster.kubernetes.io/source-cluster"] == "member-2"
    assert imported["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"] == \
        "2026-01-01T00:00:00.500000Z", "the source's change time travels with the endpoints"
    assert "nodeName" not in imported["endpoints"][0], "another cluster's node is never this cluster's"
    (policy_slice,) = [s for s in plan.slices.values() if s["metadata"]["labels"].get("balancing.elf.io/resolved")]
    assert policy_slice["metadata"]["labels"]["balancing.elf.io/policy-name"] == "hub.global"
    assert [e["addresses"] for e in policy_slice["endpoints"]] == [["100.96.0.9"]], "nodeProxy, resolved, once"
    assert set(plan.policies) == {"BalancingPolicy/hub.global"}
    assert plan.node_proxies == {"n1": "100.96.0.1"}
    assert plan.tunnels["n1"]["peers"][0]["node"] == "m"


IMPORT = {"metadata": {"name": "web", "namespace": "default", "annotations": {}},
          "spec": {"type": "ClusterSetIP", "ips": ["10.250.0.1"], "ports": [{"name": "http", "port": 80}]},
          "status": {"clusters": [{"cluster": "member-1"}, {"cluster": "member-2"}]}}
LOCAL = [endpoint_slice("web", [endpoint("10.101.1.5", "n1")], ports=[{"name": "http", "port": 8080}])]
REMOTE = [endpoint_slice("", [endpoint("10.102.1.5", "")], ports=[{"name": "http", "port": 8080}], labels={})]


@pytest.mark.parametrize(("locality", "local", "expected"), [
    ("none", LOCAL, {"10.101.1.5", "10.102.1.5"}),
    ("local", LOCAL, {"10.101.1.5"}),
    ("local", [], {"10.102.1.5"}),
    ("remote", LOCAL, {"10.102.1.5"}),
])
def test_import_locality(locality: str, local: list[dict[str, Any]], expected: set[str]) -> None:
    service_import = {**IMPORT, "metadata": {**IMPORT["metadata"], "annotations": {  # type: ignore[dict-item]
        "balancing.elf.io/affinity": locality}}}
    result = import_frontends(service_import, local, REMOTE, "member-1", "n1", "")
    ((_tier, spec),) = result.frontends
    assert (spec.ip, spec.port, spec.reject_when_empty) == ("10.250.0.1", 80, True)
    assert {b.ip for b in spec.backends} == expected


def test_an_import_uses_local_endpoints_only_when_this_cluster_exports_it() -> None:
    elsewhere = {**IMPORT, "status": {"clusters": [{"cluster": "member-2"}]}}
    ((_tier, spec),) = import_frontends(elsewhere, LOCAL, REMOTE, "member-1", "n1", "").frontends
    assert {b.ip for b in spec.backends} == {"10.102.1.5"}


def test_a_hub_policy_with_backends_only_in_other_clusters_is_ready() -> None:
    """member-1 selects no local pod; the link imported member-2's pods as resolved slices."""
    policy = parse_object({
        "apiVersion": "balancing.elf.io/v1beta1", "kind": "BalancingPolicy",
        "metadata": {"name": "hub.web", "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"frontend": {"addressMatcher": {"ip": "169.254.100.10", "toPorts": [{"port": "80"}]}},
                 "backend": {"serviceEndpoint": {"endpointSelector": {"matchLabels": {"app": "web"}},
                                                 "toPorts": [{"port": "8080"}]}}}})
    assert isinstance(policy, BalancingPolicy)
    remote_slice = {"metadata": {"name": "r", "labels": {
        "balancing.elf.io/policy-kind": "BalancingPolicy", "balancing.elf.io/policy-name": "hub.web",
        "balancing.elf.io/resolved": "true", "multicluster.kubernetes.io/source-cluster": "member-2"}},
        "endpoints": [{"addresses": ["10.102.1.3"], "conditions": {"ready": True}},
                      {"addresses": ["10.102.2.4"], "conditions": {"ready": False}}]}
    local_slice = {**remote_slice, "metadata": {"name": "l", "labels": {
        "balancing.elf.io/policy-kind": "BalancingPolicy", "balancing.elf.io/policy-name": "hub.web"}}}
    remote = remote_endpoints([remote_slice, local_slice])
    assert [e["addresses"] for e in remote["BalancingPolicy/hub.web"]] == [["10.102.1.3"], ["10.102.2.4"]]
    bindings = resolve_bindings([policy], lambda _namespace, _name: None)
    nodes = {"member-1-node-1": node("member-1-node-1", "172.30.1.11")}
    report = {"member-1-node-1": NodeReport("Programmed", 1, 1)}
    status = policy_status(bindings["BalancingPolicy/hub.web"], policy, bindings, remote["BalancingPolicy/hub.web"],
                           nodes, report, True).status
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], status["backendCount"]) == ("True", "Programmed", 1)
    alone = policy_status(bindings["BalancingPolicy/hub.web"], policy, bindings, [], nodes, report, True).status
    assert next(c for c in alone["conditions"] if c["type"] == "Ready")["reason"] == "NoBackends"
