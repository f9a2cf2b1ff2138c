"""A clusterset on the lab, installed as a user would: the hub chart on the hub, `balancing hub
add-member` for each member, the member chart with the values it prints. No kube-proxy anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.testing import Federation
from tests.member.conftest import CHARTS, NAMESPACE, Member, helm, wait_for

MEMBERS = ("member-1", "member-2")
HUB_RELEASE = "balancing-hub"
MEMBER_RELEASE = "balancing-member"
HEARTBEAT_PERIOD, HEARTBEAT_TIMEOUT = 2, 8  # short, so that liveness tests finish quickly
CATALOGUE = "balancing-federation"


@dataclass
class ClusterSet:
    lab: Federation
    hub: Member
    members: dict[str, Member]

    def hub_get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.hub.get(kind, name, namespace)

    def member_cluster(self, name: str) -> dict[str, Any]:
        return self.hub.get("membercluster", name, name)

    def ready(self, name: str) -> bool:
        conditions = (self.member_cluster(name).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def add_member(lab: Federation, name: str, directory: Path) -> Path:
    result = subprocess.run([sys.executable, "-m", "balancing", "hub", "add-member", name, "--kubeconfig",
                             str(lab.kubeconfig("hub"))], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    values = directory / f"{name}.yaml"
    values.write_text(result.stdout)
    return values


@pytest.fixture(scope="package")
def clusterset(federation: Federation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSet]:
    hub = Member(federation, "hub")
    installed = helm(hub, "upgrade", "--install", HUB_RELEASE, str(CHARTS / "hub"), "-n", NAMESPACE,
                     "--create-namespace", "--set", "members[0].name=member-1", "--set", "members[1].name=member-2",
                     "--wait", "--timeout", "180s")
    assert installed.returncode == 0, installed.stderr
    directory = tmp_path_factory.mktemp("clusterset")
    members = {name: Member(federation, name) for name in MEMBERS}
    for name, member in members.items():
        values = add_member(federation, name, directory)
        installed = helm(member, "upgrade", "--install", MEMBER_RELEASE, str(CHARTS / "member"), "-n", NAMESPACE,
                         "--create-namespace", "-f", str(values),
                         "--set", f"hub.heartbeatPeriodSeconds={HEARTBEAT_PERIOD}",
                         "--set", f"hub.heartbeatTimeoutSeconds={HEARTBEAT_TIMEOUT}", "--wait", "--timeout", "180s")
        assert installed.returncode == 0, installed.stderr
    clusters = ClusterSet(federation, hub, members)
    for name in MEMBERS:
        wait_for(lambda name=name: clusters.ready(name), f"MemberCluster {name} Ready", timeout=90)  # type: ignore[misc]
    yield clusters
    for member in members.values():
        helm(member, "uninstall", MEMBER_RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s")
    helm(hub, "uninstall", HUB_RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s")


@pytest.fixture
def shared_namespace(clusterset: ClusterSet) -> Iterator[str]:
    """One namespace name present in every member (MCS namespace sameness)."""
    name = f"fed-{uuid.uuid4().hex[:6]}"
    for member in clusterset.members.values():
        member.kubectl("create", "namespace", name)
    yield name
    for member in clusterset.members.values():
        member.kubectl("delete", "namespace", name, "--wait=false", check=False)


def service_import(member: Member, namespace: str, name: str) -> dict[str, Any] | None:
    found = member.kubectl("get", "serviceimports.multicluster.x-k8s.io", name, "-n", namespace, "-o", "json",
                           check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None
