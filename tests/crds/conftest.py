"""The apiserver the CRD tests talk to: the lab's hub, always a real kube-apiserver.

By default this is the session's `federation` fixture (the real lab, CRDs installed by `lab up`).
For quick iteration on the schema alone, BALANCING_TEST_KUBECONFIG may point at an already running
real kube-apiserver instead; the tests then install the CRDs there themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crds.generate import CRD_DIR

KubectlRunner = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class Api:
    """kubectl against one real apiserver (the hub)."""

    run: KubectlRunner
    clusters: tuple[str, ...]

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(*args, input=input, check=check)

    def kubectl_on(self, cluster: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(*args, cluster=cluster, input=None, check=True)


def _kubectl_binary() -> str:
    cached = Path(os.environ.get("BALANCING_CACHE", Path.home() / ".cache" / "balancing")) / "bin" / "kubectl"
    if cached.exists():
        return str(cached)
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("no kubectl: run the README's install step")
    return found


def _direct_api(kubeconfig: str) -> Api:
    binary = _kubectl_binary()

    def run(
        *args: str, cluster: str = "hub", input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [binary, "--kubeconfig", kubeconfig, *args], input=input, capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    return Api(run=run, clusters=("hub",))


@pytest.fixture(scope="package")
def api(request: pytest.FixtureRequest) -> Api:
    kubeconfig = os.environ.get("BALANCING_TEST_KUBECONFIG")
    if kubeconfig:
        return _direct_api(kubeconfig)
    federation = request.getfixturevalue("federation")

    def run(
        *args: str, cluster: str = "hub", input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result: subprocess.CompletedProcess[str] = federation.kubectl(cluster, *args, input=input, check=check)
        return result

    clusters = tuple(federation.state.clusters)
    return Api(run=run, clusters=clusters)


@pytest.fixture(scope="package")
def hub(api: Api) -> Api:
    """The hub with the committed CRDs applied (a no-op when `lab up` already installed them)."""
    files = [arg for path in sorted(CRD_DIR.glob("*.yaml")) for arg in ("-f", str(path))]
    api.kubectl("apply", "--server-side", "--force-conflicts", *files)
    api.kubectl("wait", "--for=condition=Established", "--timeout=60s", *files)
    return api


@pytest.fixture(scope="package")
def namespace(hub: Api) -> Iterator[str]:
    """A namespace on the hub for the namespaced federation kinds, removed afterwards."""
    name = f"bft-crds-{uuid.uuid4().hex[:6]}"
    hub.kubectl("create", "namespace", name)
    yield name
    hub.kubectl("delete", "balancing-federation", "--all", "-n", name, "--wait=false", check=False)
    hub.kubectl("delete", "namespace", name, "--wait=false", check=False)
