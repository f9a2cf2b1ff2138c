"""Property test: the models and a real apiserver accept and refuse the same policy documents (issue 11).

Hypothesis generates policies, valid and mutated (tests/crds/fuzz.py); each goes to the apiserver as a
server-side dry run (nothing is stored) and to crds.parse_object. They must agree, and when both accept,
what the apiserver would store (pruned and defaulted) must read back as what the models read.
BALANCING_FUZZ_EXAMPLES sets the number of documents (default 300).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings

from crds import InvalidObjectError, parse_object
from tests.crds.fuzz import FUZZ_EXAMPLES, DirectApi, Verdict, mutated, policy_documents, valid_statuses
from tests.helpers.hub_api import Api

pytestmark = pytest.mark.lab

FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=FUZZ_EXAMPLES <= 300,  # the suite's run is reproducible; a long run explores
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STATUS_BASE = {
    "apiVersion": "balancing.elf.io/v1beta1",
    "kind": "BalancingPolicy",
    "metadata": {"name": "bft-fuzz-status"},
    "spec": {
        "frontend": {"addressMatcher": {"ip": "169.254.77.1", "toPorts": [{"port": "80"}]}},
        "backend": {"addressEndpoint": {"addresses": ["10.0.0.1"], "toPorts": [{"port": "8080"}]}},
    },
}


@pytest.fixture(scope="module")
def direct(hub: Api) -> Iterator[DirectApi]:
    config = hub.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout
    api = DirectApi(config)
    yield api
    api.close()


def _python_verdict(document: Any, part: str) -> tuple[bool, str, dict[str, Any] | None]:
    try:
        parsed = parse_object(document)
    except InvalidObjectError as error:
        return False, str(error), None
    return True, "accepted", parsed.to_api().get(part)


def _agree(document: Any, server: Verdict, part: str) -> None:
    accepted, detail, read = _python_verdict(document, part)
    event(f"models {'accept' if accepted else 'refuse'}, apiserver {'accepts' if server.accepted else 'refuses'}")
    shown = json.dumps(document[part] if isinstance(document, dict) and part in document else document)
    assert accepted == server.accepted, (
        f"models {'accept' if accepted else 'refuse'} what the apiserver "
        f"{'accepts' if server.accepted else 'refuses'}:\n{part}: {shown}\nmodels: {detail}\napiserver: {server.detail}"
    )
    if accepted and server.stored is not None:
        stored_read = _python_verdict(server.stored, part)
        assert stored_read[0], f"the stored object does not parse: {stored_read[1]}"
        assert stored_read[2] == read, f"stored {part} reads differently:\n{stored_read[2]}\n{read}"


@FUZZ_SETTINGS
@given(document=policy_documents())
def test_models_and_apiserver_agree_on_policy_specs(direct: DirectApi, document: dict[str, Any]) -> None:
    _agree(document, direct.dry_run_create(document), "spec")


@pytest.fixture(scope="module")
def status_base(direct: DirectApi, hub: Api) -> Iterator[dict[str, Any]]:
    hub.kubectl("delete", "bp", "bft-fuzz-status", "--ignore-not-found")
    code, stored = direct.request("POST", "/apis/balancing.elf.io/v1beta1/balancingpolicies", STATUS_BASE)
    assert code == 201, stored
    yield stored
    hub.kubectl("delete", "bp", "bft-fuzz-status", "--ignore-not-found")


@FUZZ_SETTINGS
@given(status=mutated(valid_statuses()))
def test_models_and_apiserver_agree_on_policy_status(
    direct: DirectApi, status_base: dict[str, Any], status: Any
) -> None:
    document = {**status_base, "status": status}
    _agree(document, direct.dry_run_status(status_base, status), "status")
