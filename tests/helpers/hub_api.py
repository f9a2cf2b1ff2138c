"""kubectl against the hub's real apiserver, for the tests that need one (tests/crds, tests/hub).

By default the hub is the lab's (the session's `federation` fixture, CRDs installed by `lab up`).
BALANCING_TEST_KUBECONFIG may point at an already running real kube-apiserver instead, for quick
iteration without the lab; the tests then install the CRDs there themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from crds.generate import CRD_DIR

KubectlRunner = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class Api:
    """kubectl against one real apiserver (the hub), and the kubeconfig that reaches it."""

    run: KubectlRunner
    clusters: tuple[str, ...]
    kubeconfig: str

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(*args, input=input, check=check)

    def kubectl_on(self, cluster: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(*args, cluster=cluster, input=None, check=True)


def kubectl_binary() -> str:
    cached = Path(os.environ.get("BALANCING_CACHE", Path.home() / ".cache" / "balancing")) / "bin" / "kubectl"
    if cached.exists():
        return str(cached)
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("no kubectl: run the README's install step")
    return found


def _direct_api(kubeconfig: str) -> Api:
    binary = kubectl_binary()

    def run(
        *args: str, cluster: str = "hub", input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [binary, "--kubeconfig", kubeconfig, *args], input=input, capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    return Api(run=run, clusters=("hub",), kubeconfig=kubeconfig)


def hub_api(request: pytest.FixtureRequest) -> Api:
    """The hub: BALANCING_TEST_KUBECONFIG's apiserver, else the lab's (through the `federation` fixture)."""
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
    return Api(run=run, clusters=clusters, kubeconfig=str(federation.kubeconfig("hub")))


def install_crds(api: Api) -> Api:
    """The committed CRDs applied and established (a no-op when `lab up` already installed them)."""
    files = [arg for path in sorted(CRD_DIR.glob("*.yaml")) for arg in ("-f", str(path))]
    api.kubectl("apply", "--server-side", "--force-conflicts", *files)
    api.kubectl("wait", "--for=condition=Established", "--timeout=60s", *files)
    return api
