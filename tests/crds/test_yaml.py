"""crds.parse_yaml reads YAML as `kubectl apply -f` does (go-yaml v2 through sigs.k8s.io/yaml).

A pinned table says what kubectl v1.35 makes of troublesome scalars, and a hypothesis test compares
our reading with the real kubectl binary's (`kubectl label --local -o json`, which needs no server).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crds import InvalidObjectError, parse_yaml
from crds._yaml import KubectlYamlError, load_documents
from tests.crds.fuzz import FUZZ_EXAMPLES
from tests.helpers.hub_api import kubectl_binary

# (YAML text of a value, what kubectl sends). Pinned from kubectl v1.35.2.
KUBECTL_SCALARS: list[tuple[str, Any]] = [
    ("n", False), ("y", True), ("on", True), ("Off", False), ("yes", True), ("NO", False), ("true", True),
    ("~", None), ("null", None), ("NULL", None), ("", None),
    ("080", 80), ("0755", 493), ("010", 8), ("08", 8), ("08.5", 8.5), ("00", 0),
    ("0x1F", 31), ("0X1F", 31), ("0o17", 15), ("0O17", 15), ("0b101", 5), ("-0b101", -5), ("0x_1F", 31),
    ("1_000", 1000), ("1__0", 10), ("_1", "_1"), ("+12", 12), ("-0", 0),
    ("1e3", 1000), ("1.0", 1), ("5.0", 5), (".5", 0.5), ("+.5", 0.5), ("1.", 1), ("0.0", 0),
    ("1e20", 1e20), ("1e21", 1e21), ("100000000000000010.", 100000000000000020), ("0.000001", 1e-06), ("1e-7", 1e-07),
    ("9223372036854775807", 9223372036854775807), ("9223372036854775808", 9223372036854775808.0),
    ("18446744073709551615", 18446744073709551615.0), ("99999999999999999999999", 1e23),
    ("12:30", "12:30"), ("2001-01-01", "2001-01-01"), ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
    ('"080"', "080"), ("'n'", "n"), ("!!str 080", "080"), ("!!float 5", 5), ("!!binary aGk=", "hi"),
    ("!foo bar", "bar"),
]
# Map keys: JSON keys are strings, so kubectl spells booleans and numbers out.
KUBECTL_KEYS: list[tuple[str, str]] = [("y", "true"), ("n", "false"), ("7", "7"), ("1.5", "1.5"), ("1__0", "10")]


def _value(text: str) -> Any:
    (document,) = load_documents(f"v: {text}\n")
    return document["v"]


@pytest.mark.parametrize(("text", "expected"), KUBECTL_SCALARS, ids=[text or "empty" for text, _ in KUBECTL_SCALARS])
def test_scalars_read_as_kubectl_reads_them(text: str, expected: Any) -> None:
    value = _value(text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(("key", "expected"), KUBECTL_KEYS)
def test_map_keys_read_as_kubectl_reads_them(key: str, expected: str) -> None:
    assert load_documents(f"{key}: x\n") == [{expected: "x"}]


def test_documents_merge_keys_and_duplicates_as_kubectl() -> None:
    text = "---\n---\nnull\n---\n# a comment\n---\nbase: &b {x: 1, w: 2}\nm: {w: 3, <<: *b, x: 4}\ndup: 1\ndup: 2\n"
    assert load_documents(text) == [{"base": {"x": 1, "w": 2}, "m": {"w": 2, "x": 4}, "dup": 2}]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("v: .inf\n", "JSON has no NaN or infinity"),
        ("v: .nan\n", "JSON has no NaN or infinity"),
        ("~: x\n", "unsupported map key"),
        ("v: [1\n", "malformed YAML: line 2"),
        ("a:\n\tb: 1\n", "malformed YAML"),
        ("v: !!int abc\n", "cannot decode"),
        ("v: " + "[" * 5000 + "]" * 5000 + "\n", "malformed YAML"),
    ],
)
def test_yaml_kubectl_refuses_is_refused_in_one_line(text: str, problem: str) -> None:
    with pytest.raises(KubectlYamlError, match=problem) as refused:
        load_documents(text)
    assert "\n" not in str(refused.value)
    with pytest.raises(InvalidObjectError, match="YAML is invalid"):
        parse_yaml(text)


def test_a_list_document_expands_into_its_items() -> None:
    policy = Path(__file__).resolve().parents[2] / "examples/seeds/003-localredirectpolicy-test-addr.yaml"
    item = json.dumps(load_documents(policy.read_text())[0])
    objects = parse_yaml(f"apiVersion: v1\nkind: List\nitems: [{item}, {item}]\n")
    assert [obj.metadata.name for obj in objects] == ["test-addr", "test-addr"]


def _kubectl_reads(values: list[str]) -> list[Any]:
    documents = "".join(
        f"---\napiVersion: x.example/v1\nkind: Probe\nmetadata:\n  name: p{index}\ndata:\n  v: {text}\n"
        for index, text in enumerate(values)
    )
    result = subprocess.run(
        [kubectl_binary(), "label", "--local", "-f", "-", "probe=1", "-o", "json"],
        input=documents,
        capture_output=True,
        text=True,
        env={"KUBECONFIG": "/dev/null", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    decoder, text, position, items = json.JSONDecoder(), result.stdout, 0, []
    while text[position:].strip():  # one JSON object per document, printed one after the other
        item, position = decoder.raw_decode(text, position + len(text[position:]) - len(text[position:].lstrip()))
        items.append(item)
    return [item["data"]["v"] for item in items]


SCALAR_ALPHABET = "0123456789_.+-eExXoObB"
scalars = st.one_of(
    st.text(SCALAR_ALPHABET, min_size=1, max_size=8),
    st.from_regex(r"[-+]?[0-9_]{1,20}(\.[0-9]{0,3})?([eE][-+]?[0-9]{1,2})?", fullmatch=True),
    st.from_regex(r"[-+]?0[xXoObB][0-9a-fA-F_]{1,6}", fullmatch=True),
    st.sampled_from(["y", "Y", "n", "N", "yes", "No", "on", "OFF", "true", "False", "~", "null", "Null", "nil"]),
)


def _readable(text: str) -> bool:
    """Scalars that are one plain value to both parsers (not a sequence entry, comment or error)."""
    if text.startswith(("-", "#")) and not text[1:2].isalnum() and text[1:2] not in ("", "."):
        return False
    try:
        value = _value(text)
    except (KubectlYamlError, ValueError):
        return False
    return not isinstance(value, list | dict)


@settings(max_examples=max(5, FUZZ_EXAMPLES // 60), deadline=None, database=None, derandomize=FUZZ_EXAMPLES <= 300)
@given(values=st.lists(scalars.filter(_readable), min_size=20, max_size=60))
def test_scalars_read_as_the_real_kubectl_reads_them(values: list[str]) -> None:
    ours = [_value(text) for text in values]
    theirs = _kubectl_reads(values)
    for text, mine, kubectl in zip(values, ours, theirs, strict=True):
        # kubectl prints a float64 in its shortest digits, which JSON reads back as an integer.
        same = mine == kubectl or (isinstance(mine, float) and isinstance(kubectl, int) and float(kubectl) == mine)
        assert same and isinstance(mine, str) == isinstance(kubectl, str), f"{text!r}: {mine!r} {kubectl!r}"
