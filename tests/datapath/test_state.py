"""Desired-state parsing and validation (pure: no kernel). Table-driven, Katran style."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from datapath.errors import StateError
from datapath.lb import abi
from datapath.lb.state import TIER_FIELDS, Capacity, DesiredState, load_state, parse_state


def doc(*service: dict[str, Any], **tiers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"tiers": {"service": list(service), **tiers}}


def fe(ip: str = "10.96.0.1", port: Any = 80, protocol: Any = "TCP", **extra: Any) -> dict[str, Any]:
    return {"ip": ip, "port": port, "protocol": protocol, **extra}


REJECTED: list[tuple[str, dict[str, Any] | None, str]] = [
    ("protocol", doc(fe(protocol="tcp")), "tiers.service[0] 10.96.0.1:80/tcp: protocol: unknown protocol 'tcp'"),
    ("port 0", doc(fe(port=0)), "tiers.service[0] 10.96.0.1:0/TCP: port: must be 1-65535"),
    ("port too big", doc(fe(port=70000)), "tiers.service[0] 10.96.0.1:70000/TCP: port: must be 1-65535"),
    ("port text", doc(fe(port="http")), "tiers.service[0] 10.96.0.1:http/TCP: port: Input should be a valid integer"),
    ("ip", doc(fe(ip="10.96.0")), "tiers.service[0] 10.96.0:80/TCP: ip: '10.96.0' is not an IPv4 address"),
    ("ipv6", doc(fe(ip="fd00::1")), "ip: 'fd00::1' is not an IPv4 address"),
    (
        "backend ip",
        doc(fe(backends=[{"ip": "10.0.0.1", "port": 1}, {"ip": "x", "port": 1}])),
        "tiers.service[0] 10.96.0.1:80/TCP: backends[1].ip: 'x' is not an IPv4 address",
    ),
    (
        "duplicate backend",
        doc(fe(backends=[{"ip": "10.0.0.1", "port": 1}, {"ip": "10.0.0.1", "port": 1}])),
        "tiers.service[0] 10.96.0.1:80/TCP: backends[1] 10.0.0.1:1: listed twice",
    ),
    (
        "duplicate frontend",
        doc(fe(), fe(protocol="UDP"), fe()),
        "tiers.service[2] 10.96.0.1:80/TCP: duplicate frontend, already defined at tiers.service[0]",
    ),
    ("affinity", doc(fe(affinityTimeoutSeconds=86401)), "affinityTimeoutSeconds: Input should be less than or equal"),
    ("qos", doc(fe(qosLimit=-1)), "tiers.service[0] 10.96.0.1:80/TCP: qosLimit: Input should be greater than"),
    ("policy", doc(fe(policy="p" * 256)), "policy: 256 bytes of UTF-8, more than the 255 a name can hold"),
    ("policy bytes", doc(fe(policy="é" * 200)), "policy: 400 bytes of UTF-8, more than the 255 a name can hold"),
    ("policy NUL", doc(fe(policy="a\x00b")), r"policy: 'a\x00b': control characters are not allowed in a name"),
    ("policy newline", doc(fe(policy="a\nb")), r"policy: 'a\nb': control characters are not allowed in a name"),
    ("port true", doc(fe(port=True)), "tiers.service[0] 10.96.0.1:True/TCP: port: Input should be a valid integer"),
    ("qos true", doc(fe(qosLimit=True)), "qosLimit: Input should be a valid integer"),
    ("affinity true", doc(fe(affinityTimeoutSeconds=True)), "affinityTimeoutSeconds: Input should be a valid integer"),
    ("port float", doc(fe(port=80.0)), "port: Input should be a valid integer"),
    ("reject text", doc(fe(rejectWhenEmpty="yes")), "rejectWhenEmpty: Input should be a valid boolean"),
    (
        "skip duplicate",
        doc(fe(skipCgroups=[7, 7])),
        "tiers.service[0] 10.96.0.1:80/TCP: skipCgroups[1] 7: listed twice",
    ),
    ("skip zero", doc(fe(skipCgroups=[0])), "skipCgroups[0]: Input should be greater than or equal to 1"),
    ("node address", {"tiers": {}, "nodeAddresses": ["10.0.0"]}, "nodeAddresses[0]: '10.0.0' is not an IPv4 address"),
    ("node duplicate", {"tiers": {}, "nodeAddresses": ["10.0.0.1", "10.0.0.1"]}, "nodeAddresses[1] 10.0.0.1: listed"),
    ("node wildcard", {"tiers": {}, "nodeAddresses": ["0.0.0.0"]}, "nodeAddresses: 0.0.0.0 is the NodePort wildcard"),
    ("empty", None, "the document is empty; write `tiers: {}` to remove every frontend"),
    ("no tiers", {}, "tiers: missing; write `tiers: {}` to remove every frontend"),
    ("unknown tier", {"tiers": {"nodePort": []}}, "tiers.nodePort: Extra inputs are not permitted"),
    ("not a mapping", {"tiers": []}, "tiers: Input should be a valid dictionary"),
]


@pytest.mark.parametrize(("description", "document", "expected"), REJECTED, ids=[r[0] for r in REJECTED])
def test_invalid_entries_are_rejected_by_name(description: str, document: dict[str, Any] | None, expected: str) -> None:
    with pytest.raises(StateError) as raised:
        parse_state(document)
    assert expected in str(raised.value)
    assert raised.value.user_facing


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(StateError) as raised:
        parse_state(doc(fe(port=0), fe(ip="1.2.3.4", protocol="SCTP"), localRedirect=[fe(), fe()]))
    message = str(raised.value)
    assert "tiers.service[0]" in message and "tiers.service[1]" in message
    # Duplicates are checked once the entries themselves are valid.
    with pytest.raises(StateError, match=r"tiers.localRedirect\[1\]"):
        parse_state(doc(localRedirect=[fe(), fe()]))


def test_capacity_limits_count_every_tier() -> None:
    small = Capacity(frontends=2, slots=8, policies=3)
    backends = [{"ip": f"10.0.0.{i}", "port": 80} for i in range(1, 4)]
    with pytest.raises(StateError, match="3 frontends, more than the frontend map holds"):
        parse_state(doc(fe(), localRedirect=[fe()], balancing=[fe()]), small)
    with pytest.raises(StateError, match=r"5 backends in all, more than the backend map holds \(4"):
        parse_state(doc(fe(backends=backends), localRedirect=[fe(backends=backends[:2])]), small)
    parse_state(doc(fe(backends=backends[:2]), localRedirect=[fe(backends=backends[:2])]), small)


def test_defaults_and_aliases() -> None:
    state = parse_state(doc(fe(backends=[["10.0.0.1", 8080]])))
    (spec,) = state.tiers.service
    assert (spec.policy, spec.affinity_timeout_seconds, spec.qos_limit) == ("", 0, 0)
    assert spec.backends[0].ip == "10.0.0.1" and spec.backends[0].port == 8080
    assert parse_state({"tiers": {}}) == parse_state({"tiers": {"service": []}}) == DesiredState()


def test_files_are_yaml_or_json_and_named_in_errors(tmp_path: Path) -> None:
    yaml_file = tmp_path / "state.yaml"
    yaml_file.write_text("tiers:\n  service:\n    - {ip: 10.96.0.1, port: 53, protocol: UDP}\n")
    assert load_state(yaml_file).tiers.service[0].protocol == "UDP"
    json_file = tmp_path / "state.json"
    json_file.write_text('{"tiers": {"service": [{"ip": "10.96.0.1", "port": 0, "protocol": "UDP"}]}}')
    with pytest.raises(StateError, match=rf"^{json_file}: invalid desired state: tiers.service\[0\]"):
        load_state(json_file)
    with pytest.raises(StateError, match="cannot read desired state"):
        load_state(tmp_path / "missing.yaml")


UNREADABLE: list[tuple[str, bytes, str]] = [
    ("not UTF-8", b"tiers: {}\n# \xff\xfe\n", "not UTF-8: byte 12 is 0xff"),
    ("empty", b"", "the document is empty"),
    ("whitespace", b"  \n\n", "the document is empty"),
    ("document marker", b"---\n", "the document is empty"),
    ("null", b"null\n", "the document is empty"),
    ("tilde", b"~\n", "the document is empty"),
    ("deep", b"[" * 10000 + b"]" * 10000, "nested too deeply to read"),
    ("yaml error", b"tiers: [unclosed\n  - x: 1\n", "not valid YAML: expected ',' or ']', but got"),
    ("yaml tab", b"tiers:\n\t- x\n", "not valid YAML: found character '\\t' that cannot start any token at line 2"),
    ("newline in value", b'tiers:\n  service:\n    - {ip: "10.0.0.1\\n", port: 1, protocol: TCP}\n', r"'10.0.0.1\n'"),
    ("port on", b"tiers:\n  service:\n    - {ip: 10.0.0.1, port: on, protocol: TCP}\n", "port: Input should be"),
]


@pytest.mark.parametrize(("description", "content", "expected"), UNREADABLE, ids=[r[0] for r in UNREADABLE])
def test_unreadable_files_are_refused_in_one_line(
    tmp_path: Path, description: str, content: bytes, expected: str
) -> None:
    path = tmp_path / "state.yaml"
    path.write_bytes(content)
    with pytest.raises(StateError) as raised:
        load_state(path)
    message = str(raised.value)
    assert expected in message, message
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_a_deep_json_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(StateError, match="nested too deeply to read"):
        load_state(path)


def test_each_tier_has_its_field_and_its_document_name_from_abi() -> None:
    assert [TIER_FIELDS[tier] for tier in abi.Tier] == ["local_redirect", "balancing", "service"]
    assert [tier.label for tier in abi.Tier] == ["localRedirect", "balancing", "service"]
