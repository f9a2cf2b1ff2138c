"""The member installed by Helm on the lab's member-1, and small tools to drive it with real clients.

The member chart (node agent DaemonSet, member controller Deployment) is installed once for the
package; no kube-proxy runs anywhere in the lab, so the agent is the only Service implementation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lab.federation import echo_pod
from lab.testing import Federation
from lab.toolchain import tool_path

CLUSTER = "member-1"
NODES = ("member-1-node-1", "member-1-node-2")
NAMESPACE = "balancing-system"
RELEASE = "balancing-member"
CHARTS = Path(__file__).resolve().parents[2] / "charts"
CLIENT = Path(__file__).with_name("client.py")
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


@dataclass
class Member:
    """member-1 with the member chart installed."""

    lab: Federation
    cluster: str = CLUSTER

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.kubectl(self.cluster, *args, input=input, check=check)

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        scope = ["-n", namespace] if namespace else []
        return json.loads(self.kubectl("get", kind, name, *scope, "-o", "json").stdout)  # type: ignore[no-any-return]

    def client(self, target: str, *args: str, timeout: float = 60) -> dict[str, Any]:
        """Run tests/member/client.py in a pod (CLUSTER/NS/NAME) or on a node (NODE) and return its JSON."""
        result = self.lab.exec(target, [sys.executable, str(CLIENT), *args], timeout=timeout)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def echo_pods(self, namespace: str, pods: Sequence[tuple[str, str, dict[str, str]]], port: int = 8080,
                  host_port: int | None = None) -> None:
        """Echo-server pods (name, node, labels), all created at once, then waited for Ready."""
        self.apply(*(echo_pod(namespace, name, node, labels, port, host_port) for name, node, labels in pods))
        for name, _node, _labels in pods:
            self.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "-n", namespace, "--timeout=60s")

    def pod_ip(self, namespace: str, name: str) -> str:
        return str(self.get("pod", name, namespace)["status"]["podIP"])

    def node_ip(self, node: str) -> str:
        return str(self.lab.node(node).underlay_ip)

    def node_status(self, node: str) -> dict[str, Any]:
        return self.get("balancingnode", node).get("status") or {}

    def agent_pods(self) -> dict[str, str]:
        pods = json.loads(self.kubectl("get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=agent",
                                       "-o", "json").stdout)["items"]
        return {pod["spec"]["nodeName"]: pod["metadata"]["name"] for pod in pods}

    def logs(self, namespace: str, pod: str) -> str:
        result = subprocess.run([sys.executable, "-m", "balancing", "lab", "logs", f"{self.cluster}/{namespace}/{pod}"],
                                capture_output=True, text=True, timeout=60)
        return result.stdout


def helm(member: Member, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(member.lab.kubeconfig(member.cluster))}
    return subprocess.run([str(tool_path("helm")), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="package")
def member(federation: Federation) -> Iterator[Member]:
    installed = Member(federation)
    result = helm(installed, "upgrade", "--install", RELEASE, str(CHARTS / "member"), "-n", NAMESPACE,
                  "--set", f"clusterName={CLUSTER}", "--wait", "--timeout", "180s")
    assert result.returncode == 0, result.stderr
    for node in NODES:
        wait_for(lambda node=node: any(c.get("type") == "Ready" and c.get("status") == "True"  # type: ignore[misc]
                                       for c in installed.node_status(node).get("conditions") or []),
                 f"BalancingNode {node} Ready", timeout=60)
    yield installed
    helm(installed, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s")


@pytest.fixture
def namespace(member: Member) -> Iterator[str]:
    name = f"bft-{uuid.uuid4().hex[:6]}"
    member.kubectl("create", "namespace", name)
    yield name
    member.kubectl("delete", "namespace", name, "--wait=false", check=False)
