"""A clusterset on the lab, installed as a user would: the hub chart on the hub, `balancing hub
add-member` for each member, the member chart with the values it prints. No kube-proxy anywhere."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lab.demo import HUB_RELEASE, MEMBERS, add_member, install_hub, install_member
from lab.demo import RELEASE as MEMBER_RELEASE
from lab.testing import Federation
from tests.member.conftest import NAMESPACE, Member, helm, wait_for
from tests.member.test_services_lab import service

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


@pytest.fixture(scope="package")
def clusterset(federation: Federation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSet]:
    hub = Member(federation, "hub")
    install_hub(federation)
    directory = tmp_path_factory.mktemp("clusterset")
    members = {name: Member(federation, name) for name in MEMBERS}
    for name in MEMBERS:
        install_member(federation, name, add_member(federation, name, directory),
                       "--set", f"hub.heartbeatPeriodSeconds={HEARTBEAT_PERIOD}",
                       "--set", f"hub.heartbeatTimeoutSeconds={HEARTBEAT_TIMEOUT}")
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


M1_NODES = ("member-1-node-1", "member-1-node-2")
M2_NODES = ("member-2-node-1", "member-2-node-2")


def service_export(name: str, namespace: str, affinity: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if affinity:
        metadata["annotations"] = {"balancing.elf.io/affinity": affinity}
    return {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport", "metadata": metadata}


def export_condition(member: Member, namespace: str, name: str, wanted: str) -> dict[str, Any]:
    found = member.kubectl("get", "serviceexports.multicluster.x-k8s.io", name, "-n", namespace, "-o", "json",
                           check=False)
    if found.returncode != 0:
        return {}
    conditions = (json.loads(found.stdout).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == wanted), {})


def import_ip(member: Member, namespace: str, name: str) -> str:
    def ready() -> str | None:
        found = service_import(member, namespace, name)
        ips = ((found or {}).get("spec") or {}).get("ips") or []
        return str(ips[0]) if ips else None

    return wait_for(ready, f"ServiceImport {namespace}/{name} in {member.cluster} with a clusterset IP", timeout=60)


@pytest.fixture
def exported(clusterset: ClusterSet, shared_namespace: str) -> str:
    """web-1 and web-2 in member-2 behind Service web (TCP 80, UDP 53), exported; a client in member-1."""
    m1, m2 = clusterset.members["member-1"], clusterset.members["member-2"]
    m2.echo_pods(shared_namespace, [("web-1", M2_NODES[0], {"app": "web"}), ("web-2", M2_NODES[1], {"app": "web"})])
    m2.apply(service("web", shared_namespace, [{"name": "http", "port": 80, "targetPort": 8080},
                                               {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 8080}],
                     {"app": "web"}),
             service_export("web", shared_namespace))
    m1.echo_pods(shared_namespace, [("client", M1_NODES[0], {"app": "client"})])
    return shared_namespace
