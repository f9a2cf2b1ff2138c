"""The apiserver the CRD tests talk to: the lab's hub, always a real kube-apiserver.

By default this is the session's `federation` fixture (the real lab, CRDs installed by `lab up`).
For quick iteration on the schema alone, BALANCING_TEST_KUBECONFIG may point at an already running
real kube-apiserver instead; the tests then install the CRDs there themselves (tests/helpers/hub_api.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.helpers.hub_api import Api, hub_api, install_crds


@pytest.fixture(scope="package")
def api(request: pytest.FixtureRequest) -> Api:
    return hub_api(request)


@pytest.fixture(scope="package")
def hub(api: Api) -> Api:
    """The hub with the committed CRDs applied (a no-op when `lab up` already installed them)."""
    return install_crds(api)


@pytest.fixture(scope="package")
def namespace(hub: Api) -> Iterator[str]:
    """A namespace on the hub for the namespaced federation kinds, removed afterwards."""
    name = f"bft-crds-{uuid.uuid4().hex[:6]}"
    hub.kubectl("create", "namespace", name)
    yield name
    hub.kubectl("delete", "balancing-federation", "--all", "-n", name, "--wait=false", check=False)
    hub.kubectl("delete", "namespace", name, "--wait=false", check=False)
