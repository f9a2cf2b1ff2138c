"""The hub fails and the members do not notice: cross-cluster traffic keeps flowing while the hub's API
server is gone for minutes (fail-static), and everything converges without a flush when it returns or
when the hub operator is killed."""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

import pytest

from lab import runtime
from lab.demo import HUB_RELEASE
from lab.state import LabState
from lab.testing import Federation
from tests.federation.conftest import M2_NODES, ClusterSet, import_ip
from tests.member.conftest import CHARTS, NAMESPACE, Member, helm, wait_for
from tests.member.test_services_lab import reaches

pytestmark = pytest.mark.lab

# The issue asks for 5 minutes; BALANCING_TEST_HUB_DOWN_SECONDS shortens it while iterating.
HUB_DOWN_SECONDS = int(os.environ.get("BALANCING_TEST_HUB_DOWN_SECONDS", "300"))
CONNECT_RATE = 20


def connecting(member: Member, target: str, ip: str, seconds: int) -> tuple[threading.Thread, dict[str, Any]]:
    """Connects at CONNECT_RATE/s for `seconds`, in a thread; the client's JSON report lands in the dict."""
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(member.client(target, "tcp", ip, "80", "--rate", str(CONNECT_RATE), "--duration", str(seconds),
                                    timeout=seconds + 120))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def kill_hub_apiserver() -> None:
    apiserver = next(p for p in LabState.load().clusters["hub"].processes if p.role.endswith("kube-apiserver"))
    os.kill(apiserver.pid, signal.SIGKILL)


def operator_pid(hub: Member) -> tuple[str, int]:
    pods = json.loads(hub.kubectl("get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=operator",
                                  "-o", "json").stdout)["items"]
    name = pods[0]["metadata"]["name"]
    record = runtime.find_runtime(f"hub/{NAMESPACE}/{name}")
    assert record is not None, f"no runtime record for the hub operator pod {name}"
    return name, record.containers["operator"].pid


def test_members_keep_serving_while_the_hub_is_down_and_converge_when_it_returns(clusterset: ClusterSet,
                                                                                  exported: str) -> None:
    m1, m2 = clusterset.members["member-1"], clusterset.members["member-2"]
    ip = import_ip(m1, exported, "web")
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"web-1", "web-2"})
    thread, result = connecting(m1, f"member-1/{exported}/client", ip, HUB_DOWN_SECONDS)
    kill_hub_apiserver()
    try:
        # While the hub is away, member-2 gains a backend: it reaches member-1 only once the hub is back.
        m2.echo_pods(exported, [("web-3", M2_NODES[0], {"app": "web"})])
        thread.join()
    finally:
        Federation.up()
    expected = HUB_DOWN_SECONDS * CONNECT_RATE
    assert result["attempts"] >= 0.9 * expected and result["failures"] == 0, \
        f"cross-cluster connects kept working while the hub was down {HUB_DOWN_SECONDS} s: {result}"
    assert import_ip(m1, exported, "web") == ip, "the import kept its address: no flush"
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"web-1", "web-2", "web-3"})
    wait_for(lambda: clusterset.ready("member-1") and clusterset.ready("member-2"), "both members Ready again",
             timeout=60)


def test_the_hub_operator_killed_restarts_and_converges(clusterset: ClusterSet, exported: str) -> None:
    m1, m2 = clusterset.members["member-1"], clusterset.members["member-2"]
    ip = import_ip(m1, exported, "web")
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"web-1", "web-2"})
    pod, pid = operator_pid(clusterset.hub)
    before = clusterset.hub.get("pod", pod, NAMESPACE)["status"]["containerStatuses"][0]["restartCount"]
    thread, result = connecting(m1, f"member-1/{exported}/client", ip, 10)
    os.kill(pid, signal.SIGKILL)
    m2.echo_pods(exported, [("web-4", M2_NODES[1], {"app": "web"})])  # a change while the operator is dead
    thread.join()
    assert result["failures"] == 0, f"the operator's death is invisible to traffic: {result}"
    wait_for(lambda: clusterset.hub.get("pod", pod, NAMESPACE)["status"]["containerStatuses"][0]["restartCount"]
             > before, "the hub operator restarted", timeout=60)
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"web-1", "web-2", "web-4"})
    m2.kubectl("delete", "pod", "web-1", "-n", exported, "--wait=true")
    reaches(m1, f"member-1/{exported}/client", ip, 80, {"web-2", "web-4"})


def tunnel_readiness(hub: Member) -> dict[str, dict[str, Any]]:
    """Every node's NodeTunnelEndpoint Ready condition on the hub, by node name."""
    endpoints = json.loads(hub.kubectl("get", "nodetunnelendpoints", "-A", "-o", "json").stdout)["items"]
    return {e["spec"]["node"]: next((c for c in (e.get("status") or {}).get("conditions") or []
                                     if c["type"] == "Ready"), {}) for e in endpoints}


def set_proxy_pool(hub: Member, pool: str) -> None:
    upgraded = helm(hub, "upgrade", HUB_RELEASE, str(CHARTS / "hub"), "-n", NAMESPACE, "--reuse-values",
                    "--set", f"proxyIpPool={pool}", "--wait", "--timeout", "180s")
    assert upgraded.returncode == 0, upgraded.stderr


def test_an_exhausted_proxy_pool_names_the_nodes_left_out_and_disturbs_nothing_else(clusterset: ClusterSet,
                                                                                   exported: str) -> None:
    m1, hub = clusterset.members["member-1"], clusterset.hub
    ip = import_ip(m1, exported, "web")
    set_proxy_pool(hub, "100.96.0.0/30")  # two addresses for four nodes
    try:
        def left_out() -> dict[str, dict[str, Any]] | None:
            refused = {node: ready for node, ready in tunnel_readiness(hub).items()
                       if ready.get("reason") == "ProxyPoolExhausted"}
            return refused if len(refused) == 2 else None

        refused = wait_for(left_out, "two nodes left without a proxy IPv4", timeout=90)
        for node, ready in refused.items():
            assert ready["status"] == "False" and node in ready["message"] and "100.96.0.0/30" in ready["message"]
        events = json.loads(hub.kubectl("get", "events", "-A", "--field-selector", "reason=ProxyPoolExhausted",
                                        "-o", "json").stdout)["items"]
        assert {e["involvedObject"]["kind"] for e in events} == {"NodeTunnelEndpoint"}, events
        reaches(m1, f"member-1/{exported}/client", ip, 80, {"web-1", "web-2"})  # the mesh still carries pods
    finally:
        set_proxy_pool(hub, "100.96.0.0/16")
    wait_for(lambda: all(r.get("status") == "True" for r in tunnel_readiness(hub).values()),
             "every node with a proxy IPv4 again", timeout=90)
