"""Readers of stored objects never crash: parse_object and parse_yaml raise InvalidObjectError, one line,
and nothing else, whatever they are given (issue 11: no pydantic, yaml or ValueError leaks)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crds import API_VERSION, KINDS_BY_NAME, InvalidObjectError, parse_object, parse_yaml
from tests.crds.fuzz import FUZZ_EXAMPLES, policy_documents

SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=FUZZ_EXAMPLES <= 300,
    suppress_health_check=[HealthCheck.too_slow],
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)


def _read(document: Any) -> None:
    try:
        parsed = parse_object(document)
    except InvalidObjectError as error:
        assert "\n" not in str(error)
        return
    assert parse_object(parsed.to_api()) == parsed  # what is accepted round-trips


@SETTINGS
@given(document=json_values)
def test_any_json_value_is_read_or_refused(document: Any) -> None:
    _read(document)


@SETTINGS
@given(kind=st.sampled_from(sorted(KINDS_BY_NAME)), spec=json_values, status=json_values)
def test_any_spec_and_status_are_read_or_refused(kind: str, spec: Any, status: Any) -> None:
    _read({"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": "x"}, "spec": spec, "status": status})


@SETTINGS
@given(document=policy_documents())
def test_mutated_policies_are_read_or_refused(document: dict[str, Any]) -> None:
    _read(document)


@SETTINGS
@given(text=st.text(alphabet=st.sampled_from([*"ab:-[]{}&*!|>'\"#%@`,? \n\t0.~", "\x00", "\ufeff", "é"])))
def test_any_text_is_read_or_refused_as_yaml(text: str) -> None:
    try:
        parse_yaml(text)
    except InvalidObjectError as error:
        assert "\n" not in str(error)


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": [value]}
    return value


@pytest.mark.parametrize("depth", [100, 10_000])
def test_deep_nesting_is_refused_not_a_crash(depth: int) -> None:
    document = {"apiVersion": API_VERSION, "kind": "BalancingPolicy", "metadata": {"name": "x"}, "spec": _nested(depth)}
    with pytest.raises(InvalidObjectError):
        parse_object(document)
    with pytest.raises(InvalidObjectError):
        parse_yaml("spec: " + "[" * depth + "]" * depth + "\n")
