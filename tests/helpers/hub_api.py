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


CHARTS = Path(__file__).resolve().parents[2] / "charts"


def helm(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    from lab.toolchain import tool_path

    return subprocess.run([str(tool_path("helm")), "--kubeconfig", api.kubeconfig, *args], capture_output=True,
                          text=True, timeout=180)


def install_hub_chart(api: Api, release: str, members: list[str]) -> None:
    """A release of charts/hub whose names all start with `release`: namespace RELEASE-sys, catalogue
    RELEASE-cat, operator ServiceAccount RELEASE-hub (so it coexists with any other hub there)."""
    sets = [f"catalogueNamespace={release}-cat", f"operator.serviceAccountName={release}-hub",
            *(f"members[{index}].name={name}" for index, name in enumerate(members))]
    installed = helm(api, "install", release, str(CHARTS / "hub"), "-n", f"{release}-sys", "--create-namespace",
                     *(arg for value in sets for arg in ("--set", value)))
    assert installed.returncode == 0, installed.stderr


def uninstall_hub_chart(api: Api, release: str, namespaces: list[str]) -> None:
    helm(api, "uninstall", release, "-n", f"{release}-sys")
    for namespace in [f"{release}-sys", f"{release}-cat", *namespaces]:
        api.kubectl("delete", "balancing-federation", "--all", "-n", namespace, "--wait=false", check=False)
        api.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def token_kubeconfig(api: Api, token: str, path: Path, namespace: str | None = None) -> Path:
    """A kubeconfig for the same apiserver that authenticates with `token` (a ServiceAccount's)."""
    import yaml

    view = yaml.safe_load(api.kubectl("config", "view", "--raw", "--minify", "--flatten").stdout)
    cluster = view["clusters"][0]["cluster"]
    context: dict[str, str] = {"cluster": "hub", "user": "token", **({"namespace": namespace} if namespace else {})}
    config = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "hub", "cluster": cluster}],
              "users": [{"name": "token", "user": {"token": token}}],
              "contexts": [{"name": "hub", "context": context}], "current-context": "hub"}
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
