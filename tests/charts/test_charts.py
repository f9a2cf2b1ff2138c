"""The Helm charts install on real apiservers with real helm, and their RBAC means what it says."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.testing import Federation
from lab.toolchain import tool_path

CHARTS = Path(__file__).resolve().parents[2] / "charts"


def helm(federation: Federation | None, cluster: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if federation and cluster:
        env["KUBECONFIG"] = str(federation.kubeconfig(cluster))
    return subprocess.run([str(tool_path("helm")), *args], capture_output=True, text=True, env=env, timeout=120)


def can_i(federation: Federation, cluster: str, who: str, verb: str, resource: str, namespace: str | None) -> bool:
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    resource, _, subresource = resource.partition("/")
    extra = [f"--subresource={subresource}"] if subresource else []
    result = federation.kubectl(cluster, "auth", "can-i", verb, resource, *extra, *scope, f"--as={who}", check=False)
    return result.stdout.strip() == "yes"


@pytest.mark.parametrize(("chart", "values"), [("hub", ["members[0].name=member-1"]), ("member", ["clusterName=m1"])])
def test_charts_lint_clean_and_render_every_crd(chart: str, values: list[str]) -> None:
    sets = [arg for value in values for arg in ("--set", value)]
    lint = helm(None, None, "lint", str(CHARTS / chart), *sets)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = helm(None, None, "template", "x", str(CHARTS / chart), "--include-crds", *sets)
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout.count("kind: CustomResourceDefinition") == len(list((CHARTS.parent / "crds").glob("*.yaml")))


@pytest.mark.parametrize(
    ("chart", "values", "field"),
    [
        ("hub", ["members[0].name=Member_1"], "/members/0/name"),
        ("hub", ["proxyIpPool=100.96.0.0"], "/proxyIpPool"),
        ("member", [], "/clusterName"),
        ("member", ["clusterName=m1", "feature.redirectQosLimit=-1"], "/feature/redirectQosLimit"),
    ],
)
def test_invalid_values_are_refused_naming_the_field(chart: str, values: list[str], field: str) -> None:
    sets = [arg for value in values for arg in ("--set", value)]
    result = helm(None, None, "template", "x", str(CHARTS / chart), *sets)
    assert result.returncode != 0
    assert field in result.stderr


@pytest.fixture
def hub_release(federation: Federation) -> Iterator[str]:
    release = "bft-hub"
    installed = helm(federation, "hub", "install", release, str(CHARTS / "hub"), "-n", "balancing-system",
                     "--create-namespace", "--set", "members[0].name=member-1", "--set", "members[1].name=member-2",
                     "--wait", "--timeout", "60s")
    assert installed.returncode == 0, installed.stderr
    yield release
    helm(federation, "hub", "uninstall", release, "-n", "balancing-system", "--wait")
    federation.kubectl("hub", "delete", "namespace", "balancing-system", "--wait=false", check=False)


def test_hub_chart_scopes_each_member_to_its_own_namespace(federation: Federation, hub_release: str) -> None:
    member_1 = "system:serviceaccount:member-1:member"
    assert can_i(federation, "hub", member_1, "create", "serviceexports.balancing.elf.io", "member-1")
    assert can_i(federation, "hub", member_1, "patch", "nodetunnelendpoints.balancing.elf.io", "member-1")
    assert not can_i(federation, "hub", member_1, "create", "serviceexports.balancing.elf.io", "member-2")
    assert not can_i(federation, "hub", member_1, "get", "nodetunnelendpoints.balancing.elf.io", "member-2")
    assert not can_i(federation, "hub", member_1, "list", "secrets", "member-1")
    assert not can_i(federation, "hub", member_1, "create", "balancingpolicies.balancing.elf.io", None)
    operator = "system:serviceaccount:balancing-system:balancing-hub"
    assert can_i(federation, "hub", operator, "patch", "nodetunnelendpoints.balancing.elf.io/status", "member-2")
    assert not can_i(federation, "hub", operator, "delete", "serviceexports.balancing.elf.io", "member-2")


def test_member_chart_gives_the_agent_read_only_access(federation: Federation) -> None:
    installed = helm(federation, "member-1", "install", "bft-member", str(CHARTS / "member"), "-n", "balancing-system",
                     "--create-namespace", "--set", "clusterName=member-1", "--wait", "--timeout", "60s")
    assert installed.returncode == 0, installed.stderr
    try:
        agent = "system:serviceaccount:balancing-system:balancing-agent"
        controller = "system:serviceaccount:balancing-system:balancing-member-controller"
        assert can_i(federation, "member-1", agent, "list", "endpointslices.discovery.k8s.io", None)
        assert can_i(federation, "member-1", agent, "watch", "localredirectpolicies.balancing.elf.io", None)
        assert not can_i(federation, "member-1", agent, "patch", "nodes", None)
        assert not can_i(federation, "member-1", agent, "get", "secrets", "default")
        assert can_i(federation, "member-1", controller, "patch", "nodes", None)
        assert can_i(federation, "member-1", controller, "patch", "balancingpolicies.balancing.elf.io/status", None)
        assert not can_i(federation, "member-1", controller, "delete", "pods", "default")
    finally:
        helm(federation, "member-1", "uninstall", "bft-member", "-n", "balancing-system", "--wait")
        federation.kubectl("member-1", "delete", "namespace", "balancing-system", "--wait=false", check=False)
