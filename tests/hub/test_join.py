"""Joining, end to end on a real apiserver: `helm install charts/hub`, `balancing hub add-member`, the
operator running with the chart's ServiceAccount, and a member using the credentials add-member
printed: it registers, heartbeats and exports in its own namespace, reads the catalogue, and can
neither write another member's namespace nor speak for another cluster. `balancing status` shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.hub_api import Api, install_hub_chart, kubectl_binary, token_kubeconfig, uninstall_hub_chart
from tests.hub.conftest import REPO, HubProcess, condition, eventually, now_stamp

pytestmark = pytest.mark.lab


def balancing(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "balancing", *args, "--kubeconfig", api.kubeconfig],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def catalogue(release: str) -> tuple[str, str]:
    """The test's hub: the apiserver may hold others (the lab's own, other tests')."""
    return ("--catalogue-namespace", f"{release}-cat")


@dataclass
class Member:
    """kubectl with a member's own credentials (the kubeconfig from add-member's Secret)."""

    name: str
    kubeconfig: Path
    binary: str

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.binary, "--kubeconfig", str(self.kubeconfig), *args], input=input,
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} as {self.name}: {result.stderr.strip()}")
        return result

    def apply(self, namespace: str, document: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document), check=check)


@dataclass
class Joined:
    hub: HubProcess
    release: str
    member: Member
    add_member_stderr: str


@pytest.fixture
def joined(hub_cluster: Api, tmp_path: Path) -> Iterator[Joined]:
    release = f"bft-join-{uuid.uuid4().hex[:5]}"
    listed, added = f"{release}-m1", f"{release}-m2"
    hub = HubProcess(hub_cluster, release, tmp_path / "operator.log")
    install_hub_chart(hub_cluster, release, [listed])
    try:
        first = balancing(hub_cluster, "hub", "add-member", added, "-o", "secret", *catalogue(release))
        assert first.returncode == 0, first.stderr
        secret = yaml.safe_load(first.stdout)
        member_config = tmp_path / "member.kubeconfig"
        member_config.write_text(secret["stringData"]["kubeconfig"])
        # the operator runs as the chart's ServiceAccount: its RBAC must be enough
        token = hub_cluster.kubectl("create", "token", f"{release}-hub", "-n", f"{release}-sys").stdout.strip()
        hub.start(str(token_kubeconfig(hub_cluster, token, tmp_path / "operator.kubeconfig")))
        yield Joined(hub, release, Member(added, member_config, kubectl_binary()), first.stderr)
    finally:
        hub.stop()
        uninstall_hub_chart(hub_cluster, release, [listed, added])


def test_add_member_creates_what_is_missing_and_nothing_twice(joined: Joined, hub_cluster: Api) -> None:
    name = joined.member.name
    assert f"created  Namespace {name}" in joined.add_member_stderr
    assert f"created  RoleBinding {joined.release}-cat/{joined.release}-member-{name}" in joined.add_member_stderr
    again = balancing(hub_cluster, "hub", "add-member", name, *catalogue(joined.release))
    assert again.returncode == 0, again.stderr
    assert "created" not in again.stderr and f"exists   ServiceAccount {name}/member" in again.stderr
    values = yaml.safe_load(again.stdout)
    assert values["clusterName"] == name and values["hub"]["catalogueNamespace"] == f"{joined.release}-cat"
    listed = balancing(hub_cluster, "hub", "add-member", f"{joined.release}-m1", *catalogue(joined.release))
    # (the chart made that one)
    assert listed.returncode == 0 and "created" not in listed.stderr


def test_a_bad_member_name_is_refused_naming_it(hub_cluster: Api) -> None:
    refused = balancing(hub_cluster, "hub", "add-member", "Member_1")
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("balancing: error: member name 'Member_1' must be a DNS label")


def test_a_member_joins_with_its_own_credentials(joined: Joined) -> None:
    hub, member = joined.hub, joined.member
    name, catalogue = member.name, f"{joined.release}-cat"
    member.apply(name, {"apiVersion": "balancing.elf.io/v1beta1", "kind": "MemberCluster", "metadata": {"name": name},
                        "spec": {"podCIDRs": ["10.102.0.0/16"]}})
    member.kubectl("patch", "memberclusters", name, "-n", name, "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": {"lastHeartbeatTime": now_stamp()}}))
    member.apply(name, {"apiVersion": "balancing.elf.io/v1beta1", "kind": "ExportedService",
                        "metadata": {"name": f"{name}.default.web"},
                        "spec": {"cluster": name, "namespace": "default", "serviceName": "web",
                                 "ports": [{"port": 80, "protocol": "TCP"}]}})
    changed = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    member.apply(name, {"apiVersion": "balancing.elf.io/v1beta1", "kind": "FederatedEndpointSlice",
                        "metadata": {"name": f"{name}.default.web-1",
                                     "annotations": {"balancing.elf.io/changed-at": changed}},
                        "spec": {"cluster": name, "service": {"namespace": "default", "name": "web"},
                                 "endpoints": [{"addresses": ["10.102.1.5"]}]}})
    registration = eventually(lambda: hub.get_object("mcl", name, name),
                              lambda obj: condition(obj, "Ready") == ("True", "Heartbeating"))
    assert registration is not None and registration["status"]["clusterID"] == name
    # the member reads the catalogue with its own credentials
    imported = eventually(lambda: member.kubectl("get", "fes", "-n", catalogue, "-o", "name").stdout.split(),
                          lambda names: len(names) == 1, what="the copy, read by the member")
    assert imported == [f"federatedendpointslice.balancing.elf.io/{name}.default.web-1"]
    service = json.loads(member.kubectl("get", "fsvc", "default.web", "-n", catalogue, "-o", "json").stdout)
    assert service["spec"]["ips"] == ["10.255.0.1"]

    # it cannot write another member's namespace, nor the catalogue, nor the hub's verdicts
    other = f"{joined.release}-m1"
    refused = member.apply(other, {"apiVersion": "balancing.elf.io/v1beta1", "kind": "ExportedService",
                                   "metadata": {"name": f"{other}.default.db"},
                                   "spec": {"cluster": other, "namespace": "default", "serviceName": "db",
                                            "ports": [{"port": 5432, "protocol": "TCP"}]}}, check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr
    refused = member.kubectl("delete", "fes", f"{name}.default.web-1", "-n", catalogue, check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr
    refused = member.kubectl("patch", "expsvc", f"{name}.default.web", "-n", name, "--subresource=status",
                             "--type=merge", "-p", '{"status": {"conditions": []}}', check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr

    # in its own namespace, it cannot speak for another cluster either
    member.apply(name, {"apiVersion": "balancing.elf.io/v1beta1", "kind": "ExportedService",
                        "metadata": {"name": f"{other}.default.db"},
                        "spec": {"cluster": other, "namespace": "default", "serviceName": "db",
                                 "ports": [{"port": 5432, "protocol": "TCP"}]}})
    eventually(lambda: hub.get_object("expsvc", name, f"{other}.default.db"),
               lambda obj: condition(obj, "Valid") == ("False", "ClusterMismatch"))
    assert hub.get_object("fsvc", catalogue, "default.db") is None

    shown = balancing(hub.api, "status", "--catalogue-namespace", catalogue, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    (row,) = [m for m in report["members"] if m["name"] == name]
    assert (row["ready"], row["valid"], row["exports"], row["imports"]) == ("True", "True", 2, 0)
    assert row["lag_median"] is not None and row["lag_median"] < 30
    text = balancing(hub.api, "status", "--catalogue-namespace", catalogue).stdout
    assert "MEMBER" in text and name in text and "default.web" in text
