"""The pydantic models: they parse every seed example and refuse every invalid case, naming the field."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

import crds
from crds import (
    BalancingPolicy,
    InvalidObjectError,
    LabelSelector,
    LocalRedirectPolicy,
    MemberCluster,
    NodeTunnelEndpoint,
    PortInfo,
    PortPairingError,
    pair_ports,
    pair_service_ports,
    parse_object,
    parse_yaml,
)
from tests.crds import issue11_cases
from tests.crds.cases import ALL_CASES, InvalidCase
from tests.crds.issue11_cases import VALID_CASES, ValidCase
from tests.crds.seed_examples import EXAMPLES_DIR, extract_dir

REPO = Path(__file__).resolve().parents[2]
SEEDS_DIR = Path(os.environ.get("BALANCING_SEEDS_DIR", "/work/shared/seeds"))
SEED_FILES = sorted(EXAMPLES_DIR.glob("*.yaml"))
ALL_EXAMPLES = sorted((REPO / "examples").rglob("*.yaml"))


def test_there_are_six_seed_examples() -> None:
    assert [path.name for path in SEED_FILES] == [
        "000-balancingpolicy-test-addr.yaml",
        "000-balancingpolicy-test-service-hostport.yaml",
        "000-balancingpolicy-test-service-nodeproxy.yaml",
        "000-balancingpolicy-test-service-podendpoint.yaml",
        "003-localredirectpolicy-test-addr.yaml",
        "003-localredirectpolicy-test-service.yaml",
    ]


@pytest.mark.skipif(not SEEDS_DIR.is_dir(), reason=f"seed documents not present at {SEEDS_DIR}")
def test_seed_examples_are_verbatim_copies_of_the_seed_documents() -> None:
    extracted = {example.filename: example.text for example in extract_dir(SEEDS_DIR)}
    committed = {path.name: path.read_text() for path in SEED_FILES}
    assert extracted == committed
    # The only edit is dropping the stray heredoc terminator that follows some examples.
    assert not any(line.strip() == "EOF" for text in committed.values() for line in text.splitlines())


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=lambda path: str(path.relative_to(REPO)))
def test_every_example_parses(path: Path) -> None:
    objects = parse_yaml(path.read_text())
    assert objects
    for obj in objects:
        again = parse_object(obj.to_api())  # the wire form round-trips
        assert again == obj


def test_seed_podendpoint_policy_reads_as_the_seed_says() -> None:
    (policy,) = parse_yaml((EXAMPLES_DIR / "000-balancingpolicy-test-service-podendpoint.yaml").read_text())
    assert isinstance(policy, BalancingPolicy)
    matcher = policy.spec.frontend.service_matcher
    assert matcher is not None and (matcher.namespace, matcher.service_name) == (
        "default",
        "http-server-balancing-pod-v4",
    )
    endpoint = policy.spec.backend.service_endpoint
    assert endpoint is not None and endpoint.redirect_mode == "podEndpoint"
    assert endpoint.endpoint_selector.match_labels == {"app": "http-redirect"}
    pairs = policy.spec.port_pairs()
    assert [(front.name, front.number, back.number) for front, back in pairs] == [("p1", 8080, 80), ("p2", 80, 80)]


def test_local_redirect_policy_is_enabled_by_default_and_keeps_its_service_id() -> None:
    (policy,) = parse_yaml((EXAMPLES_DIR / "003-localredirectpolicy-test-addr.yaml").read_text())
    assert isinstance(policy, LocalRedirectPolicy)
    assert policy.spec.enabled is True
    assert policy.service_id == 10091
    assert policy.spec.frontend.address_matcher is not None
    assert policy.spec.frontend.address_matcher.ip == "169.254.0.90"


def test_service_id_annotation_must_be_a_number() -> None:
    document = yaml.safe_load((EXAMPLES_DIR / "003-localredirectpolicy-test-addr.yaml").read_text())
    document["metadata"]["annotations"][crds.SERVICE_ID_ANNOTATION] = "ten"
    with pytest.raises(InvalidObjectError, match=r"metadata.annotations\[balancing.elf.io/serviceId\]"):
        parse_object(document)


INVALID_CASES = ALL_CASES + issue11_cases.POLICY_CASES + issue11_cases.STATUS_CASES


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda case: case.id)
def test_models_refuse_invalid_objects_naming_the_field(case: InvalidCase) -> None:
    with pytest.raises(InvalidObjectError) as refused:
        parse_yaml(case.yaml)
    expected = case.expected_python_field
    if expected is not None:
        assert expected in str(refused.value)
    assert "\n" not in str(refused.value)


def _contains(whole: object, part: object) -> bool:
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(key in whole and _contains(whole[key], part[key]) for key in part)
    return whole == part


@pytest.mark.parametrize("case", VALID_CASES, ids=lambda case: case.id)
def test_models_accept_what_the_apiserver_accepts(case: ValidCase) -> None:
    (parsed,) = parse_yaml(case.yaml)
    spec = parsed.to_api()["spec"]
    assert _contains(spec, case.expected), spec
    assert parse_object(parsed.to_api()) == parsed


def test_snake_case_is_for_python_code_only() -> None:
    matcher = {"namespace": "default", "service_name": "web"}
    with pytest.raises(ValidationError, match="serviceName"):
        crds.policies.ServiceMatcher.model_validate(matcher)
    with pytest.raises(ValidationError, match="serviceName"):
        crds.policies.ServiceMatcher.model_validate_json('{"namespace": "default", "service_name": "web"}')
    assert crds.policies.ServiceMatcher(namespace="default", service_name="web").service_name == "web"


@pytest.mark.parametrize(
    ("description", "document"),
    [
        ("not a mapping", ["apiVersion", "kind"]),
        ("a string", "kind: BalancingPolicy"),
        ("unhashable kind", {"apiVersion": crds.API_VERSION, "kind": ["BalancingPolicy"]}),
        ("metadata a list", {"apiVersion": crds.API_VERSION, "kind": "BalancingPolicy", "metadata": [1]}),
        ("spec a string", {"apiVersion": crds.API_VERSION, "kind": "BalancingPolicy", "spec": "x"}),
        ("kind with a newline", {"apiVersion": crds.API_VERSION, "kind": "Balancing\nPolicy"}),
    ],
)
def test_parse_object_raises_only_invalid_object_error(description: str, document: object) -> None:
    with pytest.raises(InvalidObjectError) as refused:
        parse_object(document)
    assert "\n" not in str(refused.value), description


def test_unknown_kind_and_version_are_named() -> None:
    with pytest.raises(InvalidObjectError, match="kind: must be one of"):
        parse_object({"apiVersion": crds.API_VERSION, "kind": "Gateway", "metadata": {"name": "x"}})
    with pytest.raises(InvalidObjectError, match=r"apiVersion: must be balancing\.elf\.io/v1beta1"):
        parse_object({"apiVersion": "balancing.elf.io/v1", "kind": "BalancingPolicy"})


@pytest.mark.parametrize(
    ("frontend", "backend", "expected"),
    [
        ([("80", "TCP", None)], [("8080", "TCP", None)], [("80", "8080")]),
        ([("80", "TCP", "a")], [("8080", "TCP", None)], [("80", "8080")]),
        (
            [("80", "TCP", "a"), ("53", "UDP", "b")],
            [("5353", "UDP", "b"), ("8080", "TCP", "a")],
            [("80", "8080"), ("53", "5353")],
        ),
    ],
)
def test_ports_pair_by_name_or_by_position(
    frontend: list[tuple[str, str, str | None]],
    backend: list[tuple[str, str, str | None]],
    expected: list[tuple[str, str]],
) -> None:
    def ports(spec: list[tuple[str, str, str | None]]) -> list[PortInfo]:
        return [PortInfo.model_validate({"port": p, "protocol": proto, "name": name}) for p, proto, name in spec]

    pairs = pair_ports(ports(frontend), ports(backend))
    assert [(front.port, back.port) for front, back in pairs] == expected


def test_ports_that_cannot_pair_are_refused() -> None:
    tcp = PortInfo.model_validate({"port": "53", "protocol": "TCP", "name": "dns"})
    udp = PortInfo.model_validate({"port": "53", "protocol": "UDP", "name": "dns"})
    with pytest.raises(PortPairingError, match="same protocol"):
        pair_ports([tcp], [udp])
    with pytest.raises(PortPairingError, match="as many ports"):
        pair_ports([tcp], [])


PortSpecs = list[tuple[str, str, str | None]]


def _ports(spec: PortSpecs) -> list[PortInfo]:
    return [PortInfo.model_validate({"port": p, "protocol": proto, "name": name}) for p, proto, name in spec]


# (description, Service ports, backend ports, expected (service port, backend port) pairs or error)
SERVICE_PAIRING_CASES: list[tuple[str, PortSpecs, PortSpecs, object]] = [
    ("one port each pairs whatever the names", [("80", "TCP", "http")], [("8080", "TCP", "web")], [("80", "8080")]),
    ("one unnamed Service port", [("80", "TCP", None)], [("8080", "TCP", None)], [("80", "8080")]),
    (
        "several ports pair by name, extra backend ports unused",
        [("53", "UDP", "dns"), ("53", "TCP", "dns-tcp")],
        [("5353", "TCP", "dns-tcp"), ("9253", "TCP", "metrics"), ("5353", "UDP", "dns")],
        [("53", "5353"), ("53", "5353")],
    ),
    (
        "a Service port without a backend port of its name",
        [("53", "UDP", "dns"), ("9153", "TCP", "metrics")],
        [("53", "UDP", "dns"), ("53", "TCP", "dns-tcp")],
        "Service port metrics (9153/TCP) has no backend port",
    ),
    (
        "a single unnamed backend port for a two-port Service",
        [("80", "TCP", "http"), ("443", "TCP", "https")],
        [("8080", "TCP", None)],
        "Service port http (80/TCP) has no backend port",
    ),
    ("protocols differ (one port each)", [("53", "UDP", None)], [("53", "TCP", None)], "the protocols differ"),
    (
        "protocols differ (by name)",
        [("53", "UDP", "dns"), ("80", "TCP", "web")],
        [("53", "TCP", "dns"), ("80", "TCP", "web")],
        "the protocols differ",
    ),
]


@pytest.mark.parametrize(
    ("description", "service", "backend", "expected"), SERVICE_PAIRING_CASES, ids=[c[0] for c in SERVICE_PAIRING_CASES]
)
def test_service_ports_pair_with_backend_ports(
    description: str,
    service: PortSpecs,
    backend: PortSpecs,
    expected: object,
) -> None:
    if isinstance(expected, str):
        with pytest.raises(PortPairingError, match=re.escape(expected)):
            pair_service_ports(_ports(service), _ports(backend))
        return
    pairs = pair_service_ports(_ports(service), _ports(backend))
    assert [(front.port, back.port) for front, back in pairs] == expected
    assert all(front.protocol == back.protocol for front, back in pairs)


def test_policy_port_pairs_use_the_service_ports_only_when_toports_is_omitted() -> None:
    (listed,) = parse_yaml((EXAMPLES_DIR / "000-balancingpolicy-test-service-hostport.yaml").read_text())
    assert isinstance(listed, BalancingPolicy)
    service = _ports([("80", "TCP", "p2"), ("443", "TCP", "https")])
    assert [(f.port, b.port) for f, b in listed.spec.port_pairs(service)] == [("80", "20080")]
    document = listed.to_api()
    del document["spec"]["frontend"]["serviceMatcher"]["toPorts"]
    implicit = parse_object(document)
    assert isinstance(implicit, BalancingPolicy)
    with pytest.raises(PortPairingError, match="pass the Service's ports"):
        implicit.spec.port_pairs()
    with pytest.raises(PortPairingError, match="https"):
        implicit.spec.port_pairs(service)  # the backend names only p2
    assert [(f.port, b.port) for f, b in implicit.spec.port_pairs(service[:1])] == [("80", "20080")]


def test_label_selector_semantics() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selector.matches({"app": "web", "tier": "a"})
    assert not selector.matches({"app": "web", "tier": "c"})
    assert not selector.matches({"app": "web", "tier": "a", "canary": "1"})
    assert not selector.matches({"tier": "a"})


def test_member_cluster_liveness_follows_the_heartbeat_timeout() -> None:
    beat = datetime(2026, 1, 1, tzinfo=UTC)
    cluster = MemberCluster.model_validate(
        {
            "kind": "MemberCluster",
            "metadata": {"name": "member-1"},
            "spec": {"heartbeatPeriodSeconds": 5, "heartbeatTimeoutSeconds": 20},
            "status": {"lastHeartbeatTime": "2026-01-01T00:00:00Z"},
        }
    )
    assert cluster.is_alive(beat + timedelta(seconds=19))
    assert not cluster.is_alive(beat + timedelta(seconds=20))
    assert cluster.to_api()["status"]["lastHeartbeatTime"] == "2026-01-01T00:00:00Z"


def _node_tunnel_endpoint(public_key: str) -> dict[str, object]:
    return {
        "apiVersion": crds.API_VERSION,
        "kind": "NodeTunnelEndpoint",
        "metadata": {"name": "member-1.member-1-node-1"},
        "spec": {
            "cluster": "member-1",
            "node": "member-1-node-1",
            "publicKey": public_key,
            "endpoint": "172.30.1.11:51820",
        },
    }


def test_real_wireguard_public_keys_are_accepted() -> None:
    for _ in range(5):
        private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
        public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True, check=True).stdout
        parsed = parse_object(_node_tunnel_endpoint(public.strip()))
        assert isinstance(parsed, NodeTunnelEndpoint)


@pytest.mark.parametrize(
    "key",
    [
        base64.b64encode(bytes(31)).decode(),  # 31 bytes
        base64.b64encode(b"\x01" * 33).decode(),  # 33 bytes
        "A" * 43 + "=",  # the all-zero key
        base64.b64encode(b"\x07" * 32).decode().replace("=", ""),  # unpadded
    ],
)
def test_malformed_public_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidObjectError, match=r"spec\.publicKey: must be a WireGuard public key"):
        parse_object(_node_tunnel_endpoint(key))


def test_object_names_compose_from_spec() -> None:
    assert crds.NodeTunnelEndpoint.object_name("member-1", "member-1-node-1") == "member-1.member-1-node-1"
    assert crds.ExportedService.object_name("member-1", "default", "web") == "member-1.default.web"
    assert crds.FederatedService.object_name("default", "web") == "default.web"
    assert crds.TCPLoadBalancer.object_name("member-2", "shop", "cart") == "member-2.shop.cart"
