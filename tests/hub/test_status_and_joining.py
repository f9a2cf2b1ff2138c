"""`balancing status` from the hub's objects, and what add-member prints (pure; helm renders for real)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from hub import status
from hub.joining import (
    Credentials,
    JoinError,
    check_member_name,
    find_chart,
    find_helm,
    render_member_objects,
    secret_manifest,
    values_file,
)
from tests.hub.objects import CATALOGUE, T0, Harness, endpoints_slice, export, member, tunnel


def federation() -> Harness:
    hub = Harness()
    hub.add(member("member-1", "10.101.0.0/16"), member("member-2", "10.102.0.0/16"),
            member("member-3", "10.101.128.0/17", created=T0 + timedelta(days=1)))
    hub.add(export("member-1"), export("member-2", affinity="ClientIP", exported_at=T0 + timedelta(1)),
            export("member-2", "api"), tunnel("member-1", 1), tunnel("member-2", 1))
    hub.add(endpoints_slice("member-1", "web", "10.101.1.5", changed_at=T0 - timedelta(milliseconds=250)))
    hub.settle()
    return hub


def test_status_reports_members_mesh_and_services() -> None:
    hub = federation()
    report = status.build(hub.index.objects(), CATALOGUE, T0 + timedelta(seconds=5))
    rows = {row.name: row for row in report.members}
    assert (rows["member-1"].ready, rows["member-1"].exports, rows["member-1"].conflicts) == ("True", 1, 1)
    assert (rows["member-2"].exports, rows["member-2"].conflicts, rows["member-2"].imports) == (2, 1, 1)
    assert rows["member-1"].imports == 2  # default.web (member-2 exports it too) and default.api
    assert rows["member-1"].heartbeat_age == 5.0
    assert rows["member-3"].valid == "False (PodCIDROverlap)"
    assert rows["member-1"].lag_median == pytest.approx(0.25) and rows["member-2"].lag_median is None
    assert [(n.node, n.proxy_ip, n.peers) for n in report.nodes] == [
        ("member-1-node-1", "100.96.0.1", 1), ("member-2-node-1", "100.96.0.2", 1)]
    assert [(s.name, s.ip, s.clusters) for s in report.services] == [
        ("default.api", "10.255.0.1", ["member-2"]), ("default.web", "10.255.0.2", ["member-1", "member-2"])]
    text = status.render(report)
    assert text.splitlines()[1].split() == ["MEMBER", "READY", "VALID", "HEARTBEAT", "EXPORTS", "CONFLICTS",
                                            "IMPORTS", "NODES", "LAG-P50", "LAG-MAX"]
    assert "250ms" in text and "member-3" in text


CREDENTIALS = Credentials(name="member-3", server="https://hub.example:6443",
                          ca_data=base64.b64encode(b"-----BEGIN CERTIFICATE-----\nx\n").decode(), token="tok",
                          expires=datetime(2027, 1, 1, tzinfo=UTC), catalogue="balancing-federation")


def test_the_values_file_is_what_charts_member_takes() -> None:
    text = values_file(CREDENTIALS)
    assert text.startswith("# charts/member values for member cluster member-3")
    assert yaml.safe_load(text) == {"clusterName": "member-3", "hub": {
        "server": "https://hub.example:6443", "caData": CREDENTIALS.ca_data, "token": "tok",
        "catalogueNamespace": "balancing-federation"}}


def test_the_secret_carries_a_kubeconfig_scoped_to_the_members_namespace() -> None:
    secret = yaml.safe_load(secret_manifest(CREDENTIALS, "balancing-system"))
    assert (secret["kind"], secret["metadata"]["namespace"]) == ("Secret", "balancing-system")
    config = yaml.safe_load(secret["stringData"]["kubeconfig"])
    assert config["clusters"][0]["cluster"] == {"server": "https://hub.example:6443",
                                                "certificate-authority-data": CREDENTIALS.ca_data}
    assert config["users"][0]["user"] == {"token": "tok"}
    assert config["contexts"][0]["context"]["namespace"] == "member-3"
    assert secret["stringData"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    assert secret["metadata"]["annotations"]["balancing.elf.io/token-expires"] == "2027-01-01T00:00:00+00:00"


@pytest.mark.parametrize("name", ["Member_1", "-m", "m" * 64, "member.1", ""])
def test_member_names_must_be_dns_labels(name: str) -> None:
    with pytest.raises(JoinError, match="must be a DNS label"):
        check_member_name(name)


def test_add_member_renders_the_charts_own_member_objects() -> None:
    """One definition: the objects come from charts/hub's "hub.member" template, for the installed release."""
    objects = render_member_objects(find_helm(), find_chart(), "balancing-hub", "cat", "member-3")
    kinds = sorted((obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]) for obj in objects)
    assert kinds == [
        ("ClusterRoleBinding", "", "balancing-hub-member-member-3"),
        ("Namespace", "", "member-3"),
        ("RoleBinding", "cat", "balancing-hub-member-member-3"),
        ("RoleBinding", "member-3", "balancing-hub-member"),
        ("ServiceAccount", "member-3", "member"),
    ]


def test_a_missing_chart_or_helm_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(JoinError, match="no hub chart at /nowhere"):
        find_chart("/nowhere")
    monkeypatch.setenv("BALANCING_CACHE", "/nowhere")
    monkeypatch.setenv("PATH", "/nowhere")
    monkeypatch.delenv("BALANCING_HELM", raising=False)
    with pytest.raises(JoinError, match="helm not found"):
        find_helm()
