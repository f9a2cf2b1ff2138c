"""BalancingPolicy and LocalRedirectPolicy on member-1, end to end: every redirect mode, node-local DNS
with dnsmasq, QoS, conflicts, and the status a user reads with kubectl."""

from __future__ import annotations

from typing import Any

import pytest

from lab import podspec
from tests.member.conftest import NODES, Member, wait_for
from tests.member.test_services_lab import cluster_ip, reaches, service

pytestmark = pytest.mark.lab

NODE_1, NODE_2 = NODES
API = "balancing.elf.io/v1beta1"


def to_ports(*entries: tuple[str, str, str]) -> list[dict[str, str]]:
    return [{"port": port, "protocol": protocol, "name": name} for port, protocol, name in entries]


def policy(kind: str, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": API, "kind": kind, "metadata": metadata, "spec": spec}


def condition(member: Member, kind: str, name: str, wanted: str) -> dict[str, Any]:
    conditions = (member.get(kind, name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == wanted), {})


def wait_condition(member: Member, kind: str, name: str, wanted: str, status: str, reason: str | None = None,
                   timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = condition(member, kind, name, wanted)
        return found if found.get("status") == status and (reason is None or found.get("reason") == reason) else None

    return wait_for(check, f"{kind}/{name} {wanted}={status}" + (f" ({reason})" if reason else ""), timeout=timeout)


def events(member: Member, kind: str, name: str) -> list[dict[str, Any]]:
    import json

    found = json.loads(member.kubectl("get", "events", "-A", "--field-selector",
                                      f"involvedObject.kind={kind},involvedObject.name={name}", "-o", "json").stdout)
    return list(found["items"])


@pytest.fixture
def pods(member: Member, namespace: str) -> str:
    member.echo_pods(namespace, [("front-1", NODE_1, {"app": "front"}), ("r-1", NODE_1, {"app": "redirect"}),
                                 ("r-2", NODE_2, {"app": "redirect"}), ("client", NODE_1, {"app": "client"})])
    return namespace


@pytest.fixture
def cleanup_policies(member: Member) -> Any:
    yield
    member.kubectl("delete", "bp,lrp", "-l", "bft=1", "--wait=true", check=False)


def labelled(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"]["labels"] = {"bft": "1"}
    return obj


def test_pod_endpoint_policy_takes_over_a_service_and_reports_ready(member: Member, pods: str,
                                                                    cleanup_policies: None) -> None:
    member.apply(service("front", pods, [{"name": "p1", "port": 8080, "targetPort": 8080},
                                         {"name": "p2", "port": 80, "targetPort": 8080}], {"app": "front"}))
    ip = cluster_ip(member, pods, "front")
    reaches(member, f"member-1/{pods}/client", ip, 80, {"front-1"})
    member.apply(labelled(policy("BalancingPolicy", f"{pods}-pod", {
        "frontend": {"serviceMatcher": {"namespace": pods, "serviceName": "front",
                                        "toPorts": to_ports(("8080", "TCP", "p1"), ("80", "TCP", "p2"))}},
        "backend": {"serviceEndpoint": {"endpointSelector": {"matchLabels": {"app": "redirect"}},
                                        "redirectMode": "podEndpoint",
                                        "toPorts": to_ports(("8080", "TCP", "p1"), ("8080", "TCP", "p2"))}}})))
    reaches(member, f"member-1/{pods}/client", ip, 80, {"r-1", "r-2"})
    reaches(member, NODE_2, ip, 8080, {"r-1", "r-2"})
    ready = wait_condition(member, "bp", f"{pods}-pod", "Ready", "True")
    assert "2 nodes" in ready["message"]
    status = member.get("bp", f"{pods}-pod")["status"]
    assert (status["backendCount"], status["nodeCount"]) == (2, 2)
    table = member.kubectl("get", "bp", f"{pods}-pod", "-o", "wide").stdout
    assert "True" in table and " 2 " in table, table
    member.kubectl("delete", "pod", "r-2", "-n", pods, "--wait=true")
    reaches(member, f"member-1/{pods}/client", ip, 80, {"r-1"})


def test_host_port_and_address_endpoint_modes(member: Member, namespace: str, cleanup_policies: None) -> None:
    member.echo_pods(namespace, [("h-1", NODE_1, {"app": "hp"}), ("h-2", NODE_2, {"app": "hp"})], host_port=20080)
    member.echo_pods(namespace, [("a-1", NODE_2, {"app": "addr"}), ("client", NODE_1, {"app": "client"})])
    member.apply(
        labelled(policy("BalancingPolicy", f"{namespace}-hostport", {
            "frontend": {"addressMatcher": {"ip": "169.254.50.1", "toPorts": to_ports(("80", "TCP", "p"))}},
            "backend": {"serviceEndpoint": {"endpointSelector": {"matchLabels": {"app": "hp"}},
                                            "redirectMode": "hostPort", "toPorts": to_ports(("20080", "TCP", "p"))}}})),
        labelled(policy("BalancingPolicy", f"{namespace}-addr", {
            "frontend": {"addressMatcher": {"ip": "169.254.50.2", "toPorts": to_ports(("80", "TCP", "p"))}},
            "backend": {"addressEndpoint": {"addresses": [member.pod_ip(namespace, "a-1")],
                                            "toPorts": to_ports(("8080", "TCP", "p"))}}})),
    )
    result = reaches(member, f"member-1/{namespace}/client", "169.254.50.1", 80, {"h-1", "h-2"})
    assert sum(result.values()) == 30
    peers = member.client(f"member-1/{namespace}/client", "tcp", "169.254.50.1", "80", "--count", "10")["peers"]
    assert set(peers) == {"169.254.50.1:80"}, "getpeername() shows the VIP"
    reaches(member, f"member-1/{namespace}/client", "169.254.50.2", 80, {"a-1"})


def test_node_proxy_mode_uses_the_node_annotation(member: Member, namespace: str, cleanup_policies: None) -> None:
    member.echo_pods(namespace, [("n-1", NODE_1, {"app": "np"}), ("n-2", NODE_2, {"app": "np"})], host_port=20081)
    member.echo_pods(namespace, [("client", NODE_1, {"app": "client"})])
    member.kubectl("annotate", "node", NODE_1, f"balancing.elf.io/nodeProxyIpv4={member.node_ip(NODE_1)}",
                   "--overwrite")
    member.kubectl("annotate", "node", NODE_2, "balancing.elf.io/nodeProxyIpv4=not-an-address", "--overwrite")
    try:
        member.apply(labelled(policy("BalancingPolicy", f"{namespace}-proxy", {
            "frontend": {"addressMatcher": {"ip": "169.254.50.3", "toPorts": to_ports(("80", "TCP", "p"))}},
            "backend": {"serviceEndpoint": {"endpointSelector": {"matchLabels": {"app": "np"}},
                                            "redirectMode": "nodeProxy",
                                            "toPorts": to_ports(("20081", "TCP", "p"))}}})))
        reaches(member, f"member-1/{namespace}/client", "169.254.50.3", 80, {"n-1"})
        wait_for(lambda: [e for e in events(member, "Node", NODE_2) if e["reason"] == "InvalidAnnotation"],
                 "a Warning Event on the node with the malformed annotation")
        member.kubectl("annotate", "node", NODE_2, f"balancing.elf.io/nodeProxyIpv4={member.node_ip(NODE_2)}",
                       "--overwrite")
        reaches(member, f"member-1/{namespace}/client", "169.254.50.3", 80, {"n-1", "n-2"})
    finally:
        for node in NODES:
            member.kubectl("annotate", "node", node, "balancing.elf.io/nodeProxyIpv4-", check=False)


def test_conflicting_policies_older_wins_and_deleting_it_promotes_the_next(member: Member, pods: str,
                                                                          cleanup_policies: None) -> None:
    def vip_policy(name: str, selector: str) -> dict[str, Any]:
        return labelled(policy("BalancingPolicy", name, {
            "frontend": {"addressMatcher": {"ip": "169.254.50.4", "toPorts": to_ports(("80", "TCP", "p"))}},
            "backend": {"serviceEndpoint": {"endpointSelector": {"matchLabels": {"app": selector}},
                                            "toPorts": to_ports(("8080", "TCP", "p"))}}}))

    older, newer = f"{pods}-older", f"{pods}-newer"
    member.apply(vip_policy(older, "front"))
    wait_condition(member, "bp", older, "Ready", "True")
    member.apply(vip_policy(newer, "redirect"))
    conflict = wait_condition(member, "bp", newer, "Conflict", "True")
    assert f"BalancingPolicy/{older}" in conflict["message"]
    assert wait_condition(member, "bp", newer, "Ready", "False", "Conflict")
    wait_for(lambda: [e for e in events(member, "BalancingPolicy", newer)
                      if e["type"] == "Warning" and e["reason"] == "Conflict" and older in e["message"]],
             "a Warning Event naming the winner")
    reaches(member, f"member-1/{pods}/client", "169.254.50.4", 80, {"front-1"})
    member.kubectl("delete", "bp", older, "--wait=true")
    wait_condition(member, "bp", newer, "Ready", "True")
    reaches(member, f"member-1/{pods}/client", "169.254.50.4", 80, {"r-1", "r-2"})


def test_editing_a_frontend_is_refused(member: Member, pods: str, cleanup_policies: None) -> None:
    name = f"{pods}-immutable"
    member.apply(labelled(policy("BalancingPolicy", name, {
        "frontend": {"addressMatcher": {"ip": "169.254.50.5", "toPorts": to_ports(("80", "TCP", "p"))}},
        "backend": {"addressEndpoint": {"addresses": ["10.1.1.1"], "toPorts": to_ports(("80", "TCP", "p"))}}})))
    result = member.kubectl("patch", "bp", name, "--type=merge", "-p",
                            '{"spec":{"frontend":{"addressMatcher":{"ip":"169.254.50.6"}}}}', check=False)
    assert result.returncode != 0 and "frontend is immutable" in result.stderr


def test_node_label_selector_limits_the_nodes(member: Member, pods: str, cleanup_policies: None) -> None:
    name = f"{pods}-edge"
    member.apply(labelled(policy("BalancingPolicy", name, {
        "config": {"nodeLabelSelector": {"matchLabels": {"kubernetes.io/hostname": NODE_1}}},
        "frontend": {"addressMatcher": {"ip": "169.254.50.7", "toPorts": to_ports(("80", "TCP", "p"))}},
        "backend": {"serviceEndpoint": {"endpointSelector": {"matchLabels": {"app": "redirect"}},
                                        "toPorts": to_ports(("8080", "TCP", "p"))}}})))
    reaches(member, f"member-1/{pods}/client", "169.254.50.7", 80, {"r-1", "r-2"})
    status = wait_condition(member, "bp", name, "Ready", "True")
    assert "1 nodes" in status["message"]
    off = member.client(NODE_2, "tcp", "169.254.50.7", "80", "--count", "1")
    assert off["failures"] == 1, "node 2 is not selected: the VIP is not translated there"


def test_a_policy_vip_equal_to_a_cluster_ip_wins(member: Member, pods: str, cleanup_policies: None) -> None:
    member.apply(service("plain", pods, [{"name": "http", "port": 80, "targetPort": 8080}], {"app": "front"}))
    ip = cluster_ip(member, pods, "plain")
    reaches(member, f"member-1/{pods}/client", ip, 80, {"front-1"})
    member.apply(labelled(policy("BalancingPolicy", f"{pods}-over", {
        "frontend": {"addressMatcher": {"ip": ip, "toPorts": to_ports(("80", "TCP", "p"))}},
        "backend": {"serviceEndpoint": {"endpointSelector": {"matchLabels": {"app": "redirect"}},
                                        "toPorts": to_ports(("8080", "TCP", "p"))}}})))
    reaches(member, f"member-1/{pods}/client", ip, 80, {"r-1", "r-2"})


def test_a_policy_that_selects_nothing_says_so(member: Member, pods: str, cleanup_policies: None) -> None:
    name = f"{pods}-nothing"
    member.apply(labelled(policy("BalancingPolicy", name, {
        "frontend": {"addressMatcher": {"ip": "169.254.50.8", "toPorts": to_ports(("80", "TCP", "p"))}},
        "backend": {"serviceEndpoint": {"endpointSelector": {"matchLabels": {"app": "no-such-pod"}},
                                        "toPorts": to_ports(("8080", "TCP", "p"))}}})))
    ready = wait_condition(member, "bp", name, "Ready", "False", "NoBackends")
    assert "selects no ready pod" in ready["message"]
    wait_for(lambda: [e for e in events(member, "BalancingPolicy", name) if e["reason"] == "NoBackends"],
             "a NoBackends Event")


def test_a_malformed_service_id_annotation_is_reported_on_the_policy(member: Member, pods: str,
                                                                     cleanup_policies: None) -> None:
    name = f"{pods}-badid"
    member.apply(labelled(policy("LocalRedirectPolicy", name, {
        "frontend": {"addressMatcher": {"ip": "169.254.50.9", "toPorts": to_ports(("80", "TCP", "p"))}},
        "backend": {"endpointSelector": {"matchLabels": {"app": "redirect"}},
                    "toPorts": to_ports(("8080", "TCP", "p"))}},
        annotations={"balancing.elf.io/serviceId": "ten"})))
    accepted = wait_condition(member, "lrp", name, "Accepted", "False", "Invalid")
    assert "balancing.elf.io/serviceId" in accepted["message"]
    wait_for(lambda: [e for e in events(member, "LocalRedirectPolicy", name) if e["reason"] == "Invalid"],
             "an Invalid Event")


# --- node-local DNS -----------------------------------------------------------------------------------


def dnsmasq_pod(namespace: str, name: str, node: str, labels: dict[str, str], *arguments: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "automountServiceAccountToken": False, "enableServiceLinks": False,
                 "containers": [{
                     "name": "dnsmasq", "image": podspec.project_image(),
                     "command": ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--user=root",
                                 "--pid-file=", "--port=53", "--log-facility=-", *arguments],
                     "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                               {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
                     "readinessProbe": {"tcpSocket": {"port": 53}, "periodSeconds": 1},
                 }]},
    }


def test_node_local_dns_redirects_falls_back_and_never_loops(member: Member, namespace: str,
                                                             cleanup_policies: None) -> None:
    member.apply(service("kube-dns", namespace, [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                                                 {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}],
                         {"app": "coredns"}))
    dns_ip = cluster_ip(member, namespace, "kube-dns")
    member.apply(
        dnsmasq_pod(namespace, "coredns-1", NODE_2, {"app": "coredns"},
                    "--address=/whoami.test/10.8.8.2", "--address=/cluster.test/10.8.0.1"),
        dnsmasq_pod(namespace, "node-local-1", NODE_1, {"app": "node-local-dns"},
                    "--address=/whoami.test/10.7.7.1", f"--server={dns_ip}"),
    )
    member.echo_pods(namespace, [("client", NODE_1, {"app": "client"})])
    for name in ("coredns-1", "node-local-1"):
        member.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "-n", namespace, "--timeout=60s")
    client = f"member-1/{namespace}/client"

    def ask(target: str, name: str, count: int = 5) -> dict[str, Any]:
        return member.client(target, "dns", dns_ip, "53", name, "--count", str(count))

    wait_for(lambda: ask(client, "whoami.test")["answers"] == {"10.8.8.2": 5}, "kube-dns answering")
    member.apply(labelled(policy("LocalRedirectPolicy", f"{namespace}-nodelocal", {
        "frontend": {"serviceMatcher": {"namespace": namespace, "serviceName": "kube-dns",
                                        "toPorts": to_ports(("53", "UDP", "dns"))}},
        "backend": {"endpointSelector": {"matchLabels": {"app": "node-local-dns"}},
                    "toPorts": to_ports(("53", "UDP", "dns"))}})))
    wait_for(lambda: ask(client, "whoami.test")["answers"] == {"10.7.7.1": 5}, "node-local DNS answering on node 1")
    forwarded = ask(client, "cluster.test")
    assert forwarded["answers"] == {"10.8.0.1": 5}, f"node-local forwards to kube-dns, not to itself: {forwarded}"
    assert set(forwarded["sources"]) == {f"{dns_ip}:53"}
    assert ask(NODE_2, "whoami.test")["answers"] == {"10.8.8.2": 5}, "no local backend on node 2: normal resolution"
    member.kubectl("delete", "pod", "node-local-1", "-n", namespace, "--wait=true")
    wait_for(lambda: ask(client, "whoami.test")["answers"] == {"10.8.8.2": 5}, "fallback to kube-dns")


def test_local_redirect_qos_limit(member: Member, namespace: str, cleanup_policies: None) -> None:
    member.apply(dnsmasq_pod(namespace, "local", NODE_1, {"app": "qos-local"}, "--address=/whoami.test/10.7.7.9"),
                 dnsmasq_pod(namespace, "far", NODE_2, {"app": "qos-far"}, "--address=/whoami.test/10.8.8.9"))
    member.apply(service("qos", namespace, [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}],
                         {"app": "qos-far"}))
    member.echo_pods(namespace, [("client", NODE_1, {"app": "client"})])
    member.kubectl("wait", "--for=condition=Ready", "pod/local", "pod/far", "-n", namespace, "--timeout=60s")
    member.apply(labelled(policy("LocalRedirectPolicy", f"{namespace}-qos", {
        "config": {"redirectQosLimit": 3},
        "frontend": {"serviceMatcher": {"namespace": namespace, "serviceName": "qos"}},
        "backend": {"endpointSelector": {"matchLabels": {"app": "qos-local"}},
                    "toPorts": to_ports(("53", "UDP", "dns"))}})))
    ip = cluster_ip(member, namespace, "qos")

    def burst() -> dict[str, int] | None:
        answers: dict[str, int] = member.client(f"member-1/{namespace}/client", "dns", ip, "53", "whoami.test",
                                                "--count", "8")["answers"]
        return answers if answers == {"10.7.7.9": 3, "10.8.8.9": 5} else None

    wait_for(burst, "3 redirects per second, the rest to the Service", interval=1.1)
