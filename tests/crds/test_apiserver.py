"""The CRDs on a real kube-apiserver, through the real kubectl: seeds apply verbatim, columns are
useful, invalid objects are refused with the field named, frontend/backend are immutable, and the
federation kinds accept valid objects and refuse invalid ones."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crds import ALL_KINDS, parse_object, parse_yaml
from tests.crds import issue11_cases
from tests.crds.cases import FEDERATION_CASES, POLICY_CASES, STATUS_CASES, InvalidCase
from tests.crds.issue11_cases import VALID_CASES, ValidCase
from tests.crds.seed_examples import EXAMPLES_DIR
from tests.helpers.hub_api import Api

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
SEED_FILES = sorted(EXAMPLES_DIR.glob("*.yaml"))
FEDERATION_EXAMPLES = REPO / "examples" / "federation"
NAMESPACED_KINDS = {kind.kind_name for kind in ALL_KINDS if kind.scope == "Namespaced"}
# The one line the apiserver adds on its own when schema errors stop it from running the CEL rules.
APISERVER_NOTE = "some validation rules were not checked because the object was invalid"


def table(output: str) -> list[dict[str, str]]:
    """kubectl's table output as rows of {HEADER: cell}; cells are cut at the header's column starts."""
    lines = [line for line in output.splitlines() if line.strip()]
    header = lines[0]
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    names = header.split()
    rows = []
    for line in lines[1:]:
        cells = [line[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def error_items(stderr: str) -> list[str]:
    """The individual problems in a kubectl error: one per `* ` line, or the single message."""
    text = stderr.strip()
    if "is invalid:" in text:
        rest = text.split("is invalid:", 1)[1].strip()
        items = [line[2:].strip() for line in rest.splitlines() if line.startswith("* ")]
        return items or [rest]
    return [text]


def assert_refused_naming(result_stderr: str, returncode: int, field: str) -> None:
    assert returncode != 0, "the apiserver accepted an invalid object"
    assert field in result_stderr, f"error does not name {field!r}:\n{result_stderr}"
    for item in error_items(result_stderr):
        if APISERVER_NOTE in item:
            continue
        named = item.split(": ", 1)[0]
        assert named not in ("", "<nil>"), f"an error line names no field: {item!r}"
        assert "spec" in item or "status" in item or "metadata.name" in item, item


def patch_status(
    api: Api, resource: str, name: str, namespace: str, body: dict[str, Any], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """What the hub does: a merge patch of the status subresource."""
    args = ("patch", resource, name, "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(body))
    return api.kubectl(*args, check=check)


def _identity(document: str) -> tuple[str, str]:
    parsed = yaml.safe_load(document)
    return parsed["kind"], parsed["metadata"]["name"]


@pytest.fixture(scope="module")
def seeds(hub: Api) -> Iterator[Api]:
    """The seed examples applied verbatim (each file as is, with `kubectl apply -f FILE`)."""
    for path in SEED_FILES:
        hub.kubectl("apply", "-f", str(path))
    yield hub
    for path in SEED_FILES:
        hub.kubectl("delete", "--ignore-not-found", "-f", str(path))


def test_every_crd_is_established_on_every_cluster(api: Api, hub: Api) -> None:
    names = [kind.crd_name() for kind in ALL_KINDS]
    for cluster in api.clusters:
        result = api.kubectl_on(
            cluster,
            "get",
            "crd",
            *names,
            "-o",
            'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Established")].status} {end}',
        )
        established = dict(pair.split("=") for pair in result.stdout.split())
        assert established == dict.fromkeys(names, "True"), cluster


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda path: path.name)
def test_seed_example_applies_verbatim(seeds: Api, path: Path) -> None:
    dry_run = seeds.kubectl("apply", "--dry-run=server", "-f", str(path))
    assert "(server dry run)" in dry_run.stdout
    kind, name = _identity(path.read_text())
    stored = json.loads(seeds.kubectl("get", kind, name, "-o", "json").stdout)
    # What the apiserver stored (with its defaults) reads back as exactly what the file says.
    assert (
        parse_object(stored).model_dump()["spec"] == parse_object(yaml.safe_load(path.read_text())).model_dump()["spec"]
    )
    assert stored["spec"]["enabled"] is True  # LocalRedirectPolicy seeds omit it: the default applies


@pytest.mark.parametrize("resource", ["balancingpolicies", "bp", "balancingpolicy.balancing.elf.io"])
def test_get_balancing_policies_shows_useful_columns(seeds: Api, resource: str) -> None:
    output = seeds.kubectl("get", resource).stdout
    assert output.splitlines()[0].split() == ["NAME", "ENABLED", "SERVICE", "VIP", "MODE", "ADDRESSES", "READY", "AGE"]
    rows = {row["NAME"]: row for row in table(output)}
    assert rows["test-service-hostport"]["SERVICE"] == "http-server-balancing-hostport-v4"
    assert rows["test-service-hostport"]["MODE"] == "hostPort"
    assert rows["test-service-nodeproxy"]["MODE"] == "nodeProxy"
    assert rows["test-addr"]["VIP"] == "169.254.169.254"
    assert rows["test-addr"]["ADDRESSES"] == '["1.1.1.1","1.1.1.2"]'
    assert rows["test-addr"]["ENABLED"] == "true"


@pytest.mark.parametrize("resource", ["localredirectpolicies", "lrp"])
def test_get_local_redirect_policies_shows_useful_columns(seeds: Api, resource: str) -> None:
    output = seeds.kubectl("get", resource).stdout
    assert output.splitlines()[0].split() == ["NAME", "ENABLED", "SERVICE", "VIP", "READY", "AGE"]
    rows = {row["NAME"]: row for row in table(output)}
    assert rows["test-service"]["SERVICE"] == "http-server-v4"
    assert rows["test-addr"]["VIP"] == "169.254.0.90"
    assert rows["test-addr"]["ENABLED"] == "true"


def test_category_lists_both_policy_kinds(seeds: Api) -> None:
    output = seeds.kubectl("get", "balancing", "-o", "name").stdout.split()
    assert "balancingpolicy.balancing.elf.io/test-addr" in output
    assert "localredirectpolicy.balancing.elf.io/test-addr" in output


def test_status_subresource_feeds_the_ready_columns(seeds: Api) -> None:
    status = {
        "status": {
            "observedGeneration": 1,
            "backendCount": 3,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Programmed",
                    "message": "programmed on 4 nodes",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    }
    name = "test-service-podendpoint"
    seeds.kubectl("patch", "bp", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))
    rows = {row["NAME"]: row for row in table(seeds.kubectl("get", "bp", "-o", "wide").stdout)}
    assert (rows[name]["READY"], rows[name]["BACKENDS"], rows[name]["REASON"]) == ("True", "3", "Programmed")
    assert rows[name]["SVC-NAMESPACE"] == "default"
    # A spec change through the status subresource is ignored: the spec stays as applied.
    seeds.kubectl("patch", "bp", name, "--subresource=status", "--type=merge", "-p", '{"spec":{"enabled":false}}')
    assert seeds.kubectl("get", "bp", name, "-o", "jsonpath={.spec.enabled}").stdout == "true"


@pytest.mark.parametrize(
    "case", POLICY_CASES + issue11_cases.POLICY_CASES + FEDERATION_CASES, ids=lambda case: case.id
)
def test_invalid_object_is_refused_naming_the_field(hub: Api, namespace: str, case: InvalidCase) -> None:
    kind, name = _identity(case.yaml)
    scope = ["-n", namespace] if kind in NAMESPACED_KINDS else []
    result = hub.kubectl("apply", *scope, "-f", "-", input=case.yaml, check=False)
    assert_refused_naming(result.stderr, result.returncode, case.field)
    # ... and nothing was created.
    leftover = hub.kubectl("get", kind, name, *scope, "--ignore-not-found", "-o", "name")
    assert leftover.stdout.strip() == ""


@pytest.mark.parametrize("case", VALID_CASES, ids=lambda case: case.id)
def test_valid_object_is_stored_as_the_models_read_it(hub: Api, case: ValidCase) -> None:
    """kubectl reads the YAML, the apiserver prunes and defaults it; the models read the same text alike."""
    result = hub.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=case.yaml)
    stored = json.loads(result.stdout)
    (parsed,) = parse_yaml(case.yaml)
    assert parse_object(stored).to_api()["spec"] == parsed.to_api()["spec"] == stored["spec"]


IMMUTABLE_POLICY = """
apiVersion: balancing.elf.io/v1beta1
kind: BalancingPolicy
metadata:
  name: bft-immutable
spec:
  enabled: true
  frontend:
    serviceMatcher:
      namespace: default
      serviceName: web
      toPorts: [{port: "80", protocol: TCP, name: http}]
  backend:
    serviceEndpoint:
      endpointSelector: {matchLabels: {app: web}}
      redirectMode: podEndpoint
      toPorts: [{port: "8080", protocol: TCP, name: http}]
"""
IMMUTABLE_LRP = """
apiVersion: balancing.elf.io/v1beta1
kind: LocalRedirectPolicy
metadata:
  name: bft-immutable
spec:
  frontend:
    addressMatcher:
      ip: 169.254.20.10
      toPorts: [{port: "53", protocol: UDP}]
  backend:
    endpointSelector: {matchLabels: {k8s-app: node-local-dns}}
    toPorts: [{port: "53", protocol: UDP}]
"""


@pytest.fixture
def immutable_policies(hub: Api) -> Iterator[Api]:
    hub.kubectl("apply", "-f", "-", input=IMMUTABLE_POLICY)
    hub.kubectl("apply", "-f", "-", input=IMMUTABLE_LRP)
    yield hub
    hub.kubectl("delete", "bp,lrp", "bft-immutable", "--ignore-not-found")


@pytest.mark.parametrize(
    ("description", "edited", "field"),
    [
        ("frontend port", IMMUTABLE_POLICY.replace('port: "80"', 'port: "81"'), "spec.frontend"),
        ("frontend service", IMMUTABLE_POLICY.replace("serviceName: web", "serviceName: api"), "spec.frontend"),
        ("backend mode", IMMUTABLE_POLICY.replace("podEndpoint", "nodeProxy"), "spec.backend"),
        ("backend selector", IMMUTABLE_POLICY.replace("{app: web}", "{app: api}"), "spec.backend"),
        ("LRP frontend VIP", IMMUTABLE_LRP.replace("169.254.20.10", "169.254.20.11"), "spec.frontend"),
        ("LRP backend port", '"5353"'.join(IMMUTABLE_LRP.rsplit('"53"', 1)), "spec.backend"),
    ],
)
def test_frontend_and_backend_are_immutable(immutable_policies: Api, description: str, edited: str, field: str) -> None:
    result = immutable_policies.kubectl("apply", "-f", "-", input=edited, check=False)
    assert_refused_naming(result.stderr, result.returncode, field)
    assert "immutable" in result.stderr, description


def test_switching_the_frontend_variant_is_refused(immutable_policies: Api) -> None:
    patch = {
        "spec": {
            "frontend": {
                "serviceMatcher": None,
                "addressMatcher": {"ip": "169.254.9.9", "toPorts": [{"port": "80", "name": "http"}]},
            }
        }
    }
    result = immutable_policies.kubectl(
        "patch", "bp", "bft-immutable", "--type=merge", "-p", json.dumps(patch), check=False
    )
    assert_refused_naming(result.stderr, result.returncode, "spec.frontend")


def test_enabled_and_config_stay_mutable(immutable_policies: Api) -> None:
    edited = IMMUTABLE_POLICY.replace("enabled: true", "enabled: false\n  config: {enableOutCluster: true}")
    immutable_policies.kubectl("apply", "-f", "-", input=edited)
    rows = {row["NAME"]: row for row in table(immutable_policies.kubectl("get", "bp", "bft-immutable").stdout)}
    assert rows["bft-immutable"]["ENABLED"] == "false"


@pytest.fixture(scope="module")
def federation_objects(hub: Api, namespace: str) -> Api:
    hub.kubectl("apply", "-n", namespace, "-f", str(FEDERATION_EXAMPLES))
    return hub


@pytest.mark.parametrize(
    ("short_name", "name"),
    [
        ("mcl", "member-1"),
        ("expsvc", "member-1.default.web"),
        ("fsvc", "default.web"),
        ("fes", "member-1.default.web-1"),
        ("tcplb", "member-1.default.web"),
        ("nte", "member-1.member-1-node-1"),
    ],
)
def test_federation_examples_are_accepted(federation_objects: Api, namespace: str, short_name: str, name: str) -> None:
    rows = table(federation_objects.kubectl("get", short_name, "-n", namespace).stdout)
    assert name in [row["NAME"] for row in rows]


def test_federated_service_columns(federation_objects: Api, namespace: str) -> None:
    (row,) = table(federation_objects.kubectl("get", "fsvc", "default.web", "-n", namespace).stdout)
    assert (row["SVC-NAMESPACE"], row["SERVICE"], row["TYPE"], row["IP"]) == (
        "default",
        "web",
        "ClusterSetIP",
        "10.255.0.10",
    )


def test_hub_written_tunnel_status_shows_in_columns(federation_objects: Api, namespace: str) -> None:
    status = {
        "status": {
            "proxyIPv4": "100.96.0.1",
            "peers": [
                {
                    "cluster": "member-2",
                    "node": "member-2-node-1",
                    "publicKey": "JC9gxsskkahT1tJQKFsAOfjGr/LlNxovZlCyV2h5ug4=",
                    "endpoint": "172.30.2.11:51820",
                    "allowedIPs": ["10.102.1.0/24", "100.96.0.2/32"],
                    "persistentKeepaliveSeconds": 25,
                }
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "PeersCurrent",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    }
    name = "member-1.member-1-node-1"
    federation_objects.kubectl(
        "patch", "nte", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )
    (row,) = table(federation_objects.kubectl("get", "nte", name, "-n", namespace).stdout)
    assert (row["PROXY-IP"], row["READY"], row["ENDPOINT"]) == ("100.96.0.1", "True", "172.30.1.11:51820")
    stored = json.loads(federation_objects.kubectl("get", "nte", name, "-n", namespace, "-o", "json").stdout)
    parsed = parse_object(stored)
    assert parsed.model_dump(by_alias=True)["status"]["peers"][0]["allowedIPs"] == ["10.102.1.0/24", "100.96.0.2/32"]


def test_member_cluster_heartbeat_shows_in_columns(federation_objects: Api, namespace: str) -> None:
    status = {
        "status": {
            "lastHeartbeatTime": "2026-01-01T00:00:00Z",
            "nodeCount": 2,
            "exportedServices": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "HeartbeatFresh",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    }
    federation_objects.kubectl(
        "patch", "mcl", "member-1", "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )
    (row,) = table(federation_objects.kubectl("get", "mcl", "member-1", "-n", namespace).stdout)
    assert (row["READY"], row["NODES"], row["EXPORTS"]) == ("True", "2", "1")
    assert row["HEARTBEAT"].endswith(("d", "y"))  # an age, rendered from the timestamp


@pytest.mark.parametrize("case", STATUS_CASES + issue11_cases.STATUS_CASES, ids=lambda case: case.id)
def test_invalid_hub_written_status_is_refused(hub: Api, namespace: str, case: InvalidCase) -> None:
    document = yaml.safe_load(case.yaml)
    status = document.pop("status")
    hub.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))
    before = hub.kubectl(
        "get", document["kind"], document["metadata"]["name"], "-n", namespace, "-o", "jsonpath={.status}"
    ).stdout
    result = hub.kubectl(
        "patch",
        document["kind"],
        document["metadata"]["name"],
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
        check=False,
    )
    assert_refused_naming(result.stderr, result.returncode, case.field)
    after = hub.kubectl(
        "get", document["kind"], document["metadata"]["name"], "-n", namespace, "-o", "jsonpath={.status}"
    ).stdout
    assert after == before


MCS_EXAMPLES = REPO / "examples" / "mcs"


def test_mcs_kinds_are_served_in_both_versions_with_one_schema(hub: Api, namespace: str) -> None:
    """An import written as v1beta1 reads back as v1alpha1 unchanged (no conversion), and our
    ExportedService and MCS's ServiceExport live side by side on one apiserver."""
    for name in ("serviceexport.yaml", "serviceimport.yaml"):
        text = (MCS_EXAMPLES / name).read_text().replace("namespace: default", f"namespace: {namespace}")
        hub.kubectl("apply", "-f", "-", input=text)
    specs = []
    for version in ("v1alpha1", "v1beta1"):
        stored = json.loads(hub.kubectl("get", f"serviceimports.{version}.multicluster.x-k8s.io", "web",
                                        "-n", namespace, "-o", "json").stdout)
        assert stored["apiVersion"] == f"multicluster.x-k8s.io/{version}"
        specs.append(stored["spec"])
        assert parse_object(stored).to_api()["spec"] == stored["spec"]
    assert specs[0] == specs[1]
    assert specs[0]["ips"] == ["10.255.0.10"]
    rows = table(hub.kubectl("get", "serviceexports.multicluster.x-k8s.io", "-n", namespace).stdout)
    assert [row["NAME"] for row in rows] == ["web"]
    rows = table(hub.kubectl("get", "svcim", "-n", namespace).stdout)
    assert (rows[0]["TYPE"], rows[0]["IP"]) == ("ClusterSetIP", "10.255.0.10")


def test_cluster_property_is_cluster_scoped(hub: Api) -> None:
    hub.kubectl("apply", "-f", str(MCS_EXAMPLES / "clusterproperty.yaml"))
    try:
        rows = table(hub.kubectl("get", "clusterproperties.about.k8s.io").stdout)
        assert {row["NAME"]: row["VALUE"] for row in rows}["cluster.clusterset.k8s.io"] == "member-1"
    finally:
        hub.kubectl("delete", "-f", str(MCS_EXAMPLES / "clusterproperty.yaml"))
