"""The node agent as an operator meets it: it survives kill -9 and API server restarts without a failed
connect or a map write, names what it cannot program, and shows resolutions with the client's pod."""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.request
from typing import Any

import pytest

from lab import runtime
from lab.state import LabState
from lab.testing import Federation
from tests.member.conftest import CLUSTER, NAMESPACE, NODES, Member, wait_for
from tests.member.test_services_lab import cluster_ip, reaches, service

pytestmark = pytest.mark.lab

NODE_1, NODE_2 = NODES


@pytest.fixture
def web(member: Member, namespace: str) -> str:
    member.echo_pods(namespace, [("web-1", NODE_1, {"app": "web"}), ("web-2", NODE_2, {"app": "web"}),
                                 ("client", NODE_1, {"app": "client"})])
    member.apply(service("web", namespace, [{"name": "http", "port": 80, "targetPort": 8080}], {"app": "web"}))
    reaches(member, f"{CLUSTER}/{namespace}/client", cluster_ip(member, namespace, "web"), 80, {"web-1", "web-2"})
    return namespace


def in_background(member: Member, target: str, *args: str) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(member.client(target, *args, timeout=120)))
    thread.start()
    return thread, result


def agent_syncs(member: Member, node: str) -> list[dict[str, Any]]:
    """The agent's 'datapath synced' log lines, of its current container."""
    lines = member.logs(NAMESPACE, member.agent_pods()[node]).splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    return [entry for entry in entries if entry.get("msg") == "datapath synced"]


def test_kill_9_of_the_agent_under_load_fails_no_connect_and_rewrites_nothing(member: Member, web: str) -> None:
    ip = cluster_ip(member, web, "web")
    pod = member.agent_pods()[NODE_1]
    before = member.get("pod", pod, NAMESPACE)["status"]["containerStatuses"][0]["restartCount"]
    thread, result = in_background(member, f"{CLUSTER}/{web}/client", "tcp", ip, "80", "--rate", "50",
                                   "--duration", "10")
    record = runtime.find_runtime(f"{CLUSTER}/{NAMESPACE}/{pod}")
    assert record is not None
    os.kill(record.containers["agent"].pid, signal.SIGKILL)
    wait_for(lambda: member.get("pod", pod, NAMESPACE)["status"]["containerStatuses"][0]["restartCount"] > before
             and member.get("pod", pod, NAMESPACE)["status"]["containerStatuses"][0]["ready"],
             "the agent restarted and ready", timeout=60)
    thread.join()
    assert result["attempts"] >= 400 and result["failures"] == 0, result
    first = wait_for(lambda: agent_syncs(member, NODE_1)[:1], "the restarted agent's first sync")[0]
    changed = {k: v for k, v in first["frontends"].items() if k != "unchanged"}
    assert first["sync"] == "full" and set(changed.values()) == {0}, f"adoption rewrites no frontend: {first}"
    collected = first["collected"]["backendSets"] + first["collected"]["policyNames"]
    assert first["mapWrites"] == collected, f"its only writes collect what deleted objects left: {first}"


def test_an_api_server_restart_keeps_the_datapath_and_the_agent_catches_up(member: Member, web: str,
                                                                          federation: Federation) -> None:
    ip = cluster_ip(member, web, "web")
    thread, result = in_background(member, f"{CLUSTER}/{web}/client", "tcp", ip, "80", "--rate", "20",
                                   "--duration", "8")
    apiserver = next(p for p in LabState.load().clusters[CLUSTER].processes if p.role.endswith("kube-apiserver"))
    os.kill(apiserver.pid, signal.SIGKILL)
    thread.join()
    assert result["failures"] == 0, f"the datapath kept serving while the API server was down: {result}"
    Federation.up()
    member.apply(service("after", web, [{"name": "http", "port": 80, "targetPort": 8080}], {"app": "web"}))
    reaches(member, f"{CLUSTER}/{web}/client", cluster_ip(member, web, "after"), 80, {"web-1", "web-2"})


def test_a_service_over_the_map_limit_is_named_and_the_rest_keeps_working(member: Member, web: str) -> None:
    member.apply(service("huge", web, [{"name": "http", "port": 80, "targetPort": 8080}]))
    slices = [{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": f"huge-{index}", "namespace": web,
                            "labels": {"kubernetes.io/service-name": "huge"}},
               "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
               "endpoints": [{"addresses": [f"10.{200 + index // 10}.{index % 10 * 25 + i // 250}.{i % 250 + 1}"]}
                             for i in range(1000)]}
              for index in range(20)]
    member.apply(*slices)

    def reported() -> list[dict[str, Any]] | None:
        problems = member.node_status(NODE_1).get("problems") or []
        return [p for p in problems if p["source"] == f"service:{web}/huge"] or None

    problem = wait_for(reported, "the node naming the Service it could not program", timeout=60)[0]
    assert "20000 endpoints" in problem["message"]
    ready = next(c for c in member.node_status(NODE_1)["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and f"{web}/huge" in ready["message"]
    wait_for(lambda: [e for e in json.loads(member.kubectl("get", "events", "-n", web, "-o", "json").stdout)["items"]
                      if e["reason"] == "NotProgrammed" and e["involvedObject"]["name"] == "huge"],
             "a Warning Event on the Service")
    reaches(member, f"{CLUSTER}/{web}/client", cluster_ip(member, web, "web"), 80, {"web-1", "web-2"})
    member.kubectl("delete", "service", "huge", "-n", web)
    wait_for(lambda: not reported(), "the problem cleared once the Service is gone")


def test_resolutions_are_logged_with_the_client_pod_and_counted(member: Member, web: str) -> None:
    ip = cluster_ip(member, web, "web")
    member.client(f"{CLUSTER}/{web}/client", "tcp", ip, "80", "--count", "3")

    def logged() -> list[dict[str, Any]]:
        lines = member.logs(NAMESPACE, member.agent_pods()[NODE_1]).splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in entries if e.get("msg") == "resolution" and e.get("namespace") == web
                and e.get("original") == f"{ip}:80"]

    entry = wait_for(logged, "a resolution event naming the client pod")[0]
    assert (entry["pod"], entry["container"], entry["tier"], entry["policy"], entry["result"]) == (
        "client", "echo", "service", f"{web}/web", "redirected")
    assert entry["new"].split(":")[0] in {member.pod_ip(web, "web-1"), member.pod_ip(web, "web-2")}
    node_ip = member.node_ip(NODE_1)
    with urllib.request.urlopen(f"http://{node_ip}:9964/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert f'balancing_agent_resolutions_total{{policy="{web}/web",result="redirected",tier="service"}}' in metrics
    assert "balancing_agent_network_programming_duration_seconds_bucket" in metrics
    with urllib.request.urlopen(f"http://{node_ip}:9964/healthz", timeout=5) as response:
        assert response.status == 200
