"""The Helm charts install on real apiservers with real helm, and their RBAC means what it says.

The hub chart's tests run against the lab's hub, or BALANCING_TEST_KUBECONFIG's apiserver; each
installs a release of its own (release-prefixed cluster objects, its own catalogue and members), so
it never collides with a hub already installed there.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab.testing import Federation
from lab.toolchain import tool_path
from tests.helpers.hub_api import Api, hub_api, install_crds, install_hub_chart, uninstall_hub_chart

CHARTS = Path(__file__).resolve().parents[2] / "charts"
CRD_FILES = sorted((CHARTS.parent / "crds").glob("*.yaml"))


def helm(federation: Federation | None, cluster: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if federation and cluster:
        env["KUBECONFIG"] = str(federation.kubeconfig(cluster))
    return subprocess.run([str(tool_path("helm")), *args], capture_output=True, text=True, env=env, timeout=120)


def can_i(run: object, who: str, verb: str, resource: str, namespace: str | None) -> bool:
    """`kubectl auth can-i` as `who`; `run` runs kubectl (an Api's kubectl, or a lab cluster's)."""
    assert callable(run)
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    resource, _, subresource = resource.partition("/")
    extra = [f"--subresource={subresource}"] if subresource else []
    result = run("auth", "can-i", verb, resource, *extra, *scope, f"--as={who}", check=False)
    return bool(result.stdout.strip() == "yes")


@pytest.mark.parametrize(
    ("chart", "values", "crds"),
    [
        ("hub", ["members[0].name=member-1"], [p.name for p in CRD_FILES if p.name.startswith("balancing.elf.io_")]),
        ("member", ["clusterName=m1"], [p.name for p in CRD_FILES]),
    ],
)
def test_charts_lint_clean_and_render_their_crds(chart: str, values: list[str], crds: list[str]) -> None:
    """The hub installs our group's CRDs; the member chart also the MCS ones members serve."""
    sets = [arg for value in values for arg in ("--set", value)]
    lint = helm(None, None, "lint", str(CHARTS / chart), *sets)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = helm(None, None, "template", "x", str(CHARTS / chart), "--include-crds", *sets)
    assert rendered.returncode == 0, rendered.stderr
    names = sorted(f"{doc['spec']['group']}_{doc['spec']['names']['plural']}.yaml"
                   for doc in yaml.safe_load_all(rendered.stdout) if doc and doc["kind"] == "CustomResourceDefinition")
    assert names == sorted(crds)


def test_hub_chart_runs_the_operator_with_the_values_given() -> None:
    rendered = helm(None, None, "template", "bf", str(CHARTS / "hub"), "-n", "hub-system",
                    "--set", "clusterSetIpPool=10.250.0.0/16", "--set", "catalogueNamespace=cat")
    assert rendered.returncode == 0, rendered.stderr
    documents = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered.stdout) if d}
    deployment = documents[("Deployment", "bf-operator")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    chart = yaml.safe_load((CHARTS / "hub" / "Chart.yaml").read_text())
    assert container["image"] == f"ghcr.io/balancing-federation/balancing:{chart['appVersion']}"
    assert container["command"] == ["balancing", "hub", "run"]
    env = {entry["name"]: entry["value"] for entry in container["env"]}
    assert env["BALANCING_CLUSTERSET_IP_POOL"] == "10.250.0.0/16" and env["BALANCING_CATALOGUE_NAMESPACE"] == "cat"
    assert env["BALANCING_PROXY_IP_POOL"] == "100.96.0.0/16"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert documents[("Namespace", "cat")]["metadata"]["labels"]["balancing.elf.io/catalogue"] == "true"


@pytest.mark.parametrize(
    ("chart", "values", "field"),
    [
        ("hub", ["members[0].name=Member_1"], "/members/0/name"),
        ("hub", ["proxyIpPool=100.96.0.0"], "/proxyIpPool"),
        ("hub", ["clusterSetIpPool=10.255.0.0/33"], "/clusterSetIpPool"),
        ("hub", ["catalogueNamespace=Catalogue"], "/catalogueNamespace"),
        ("hub", ["image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        ("member", [], "/clusterName"),
        ("member", ["clusterName=m1", "feature.redirectQosLimit=-1"], "/feature/redirectQosLimit"),
    ],
)
def test_invalid_values_are_refused_naming_the_field(chart: str, values: list[str], field: str) -> None:
    sets = [arg for value in values for arg in ("--set", value)]
    result = helm(None, None, "template", "x", str(CHARTS / chart), *sets)
    assert result.returncode != 0
    assert field in result.stderr


@pytest.fixture(scope="module")
def hub_cluster(request: pytest.FixtureRequest) -> Api:
    return install_crds(hub_api(request))


@pytest.fixture
def hub_release(hub_cluster: Api) -> Iterator[str]:
    """A release of the hub chart with two members; its names all start with the release name."""
    release = f"bft-{uuid.uuid4().hex[:5]}"
    members = [f"{release}-m1", f"{release}-m2"]
    install_hub_chart(hub_cluster, release, members)
    yield release
    uninstall_hub_chart(hub_cluster, release, members)


@pytest.mark.lab
def test_hub_chart_scopes_each_member_to_its_own_namespace(hub_cluster: Api, hub_release: str) -> None:
    run = hub_cluster.kubectl
    member, other, catalogue = f"{hub_release}-m1", f"{hub_release}-m2", f"{hub_release}-cat"
    me = f"system:serviceaccount:{member}:member"
    assert can_i(run, me, "create", "exportedservices.balancing.elf.io", member)
    assert can_i(run, me, "patch", "nodetunnelendpoints.balancing.elf.io", member)
    assert can_i(run, me, "patch", "memberclusters.balancing.elf.io/status", member)  # heartbeats
    assert not can_i(run, me, "patch", "exportedservices.balancing.elf.io/status", member)  # the hub's verdicts
    assert not can_i(run, me, "patch", "nodetunnelendpoints.balancing.elf.io/status", member)
    assert not can_i(run, me, "create", "exportedservices.balancing.elf.io", other)
    assert not can_i(run, me, "get", "nodetunnelendpoints.balancing.elf.io", other)
    assert can_i(run, me, "list", "federatedservices.balancing.elf.io", catalogue)
    assert can_i(run, me, "watch", "federatedendpointslices.balancing.elf.io", catalogue)
    assert not can_i(run, me, "create", "federatedendpointslices.balancing.elf.io", catalogue)
    assert can_i(run, me, "list", "balancingpolicies.balancing.elf.io", None)
    assert not can_i(run, me, "create", "balancingpolicies.balancing.elf.io", None)
    assert not can_i(run, me, "list", "secrets", member)
    operator = f"system:serviceaccount:{hub_release}-sys:{hub_release}-hub"
    assert can_i(run, operator, "patch", "nodetunnelendpoints.balancing.elf.io/status", other)
    assert can_i(run, operator, "create", "federatedendpointslices.balancing.elf.io", catalogue)
    assert can_i(run, operator, "patch", "federatedservices.balancing.elf.io/status", catalogue)
    assert not can_i(run, operator, "create", "federatedendpointslices.balancing.elf.io", other)
    assert not can_i(run, operator, "delete", "exportedservices.balancing.elf.io", other)
    assert not can_i(run, operator, "list", "secrets", other)


@pytest.mark.lab
def test_member_chart_gives_the_agent_read_only_access(federation: Federation) -> None:
    installed = helm(federation, "member-1", "install", "bft-member", str(CHARTS / "member"), "-n", "balancing-system",
                     "--create-namespace", "--set", "clusterName=member-1", "--wait", "--timeout", "60s")
    assert installed.returncode == 0, installed.stderr
    try:
        agent = "system:serviceaccount:balancing-system:balancing-agent"
        controller = "system:serviceaccount:balancing-system:balancing-member-controller"
        def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            result: subprocess.CompletedProcess[str] = federation.kubectl("member-1", *args, check=check)
            return result

        assert can_i(run, agent, "list", "endpointslices.discovery.k8s.io", None)
        assert can_i(run, agent, "watch", "localredirectpolicies.balancing.elf.io", None)
        assert not can_i(run, agent, "patch", "nodes", None)
        assert not can_i(run, agent, "get", "secrets", "default")
        assert can_i(run, controller, "patch", "nodes", None)
        assert can_i(run, controller, "patch", "balancingpolicies.balancing.elf.io/status", None)
        assert not can_i(run, controller, "delete", "pods", "default")
    finally:
        helm(federation, "member-1", "uninstall", "bft-member", "-n", "balancing-system", "--wait")
        federation.kubectl("member-1", "delete", "namespace", "balancing-system", "--wait=false", check=False)
