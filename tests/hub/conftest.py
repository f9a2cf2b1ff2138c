"""The hub operator as a real process against a real apiserver (the lab's hub by default;
BALANCING_TEST_KUBECONFIG for another one), confined to namespaces of its own.

Each test federation gets a unique prefix: its catalogue and member namespaces are PREFIX-cat,
PREFIX-m1, ... and its operator watches only PREFIX-* (BALANCING_WATCH_NAMESPACES), so it never
touches the lab's own hub objects or another test's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.helpers.hub_api import Api, hub_api, install_crds

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def eventually(read: Callable[[], T], check: Callable[[T], bool], timeout: float = 20.0, what: str = "") -> T:
    """Read until `check` holds; fail with the last value read."""
    deadline = time.monotonic() + timeout
    value = read()
    while not check(value):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f}s: {what or 'condition'}; last seen: {value!r}")
        time.sleep(0.2)
        value = read()
    return value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class HubProcess:
    """One `balancing hub run` process and the federation namespaces it owns."""

    api: Api
    prefix: str
    log: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def catalogue(self) -> str:
        return f"{self.prefix}-cat"

    def member(self, index: int) -> str:
        return f"{self.prefix}-m{index}"

    def start(self, kubeconfig: str | None = None) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "BALANCING_CATALOGUE_NAMESPACE": self.catalogue,
            "BALANCING_WATCH_NAMESPACES": f"{self.prefix}-*",
            "BALANCING_METRICS_ADDRESS": f"127.0.0.1:{self.port}",
            "BALANCING_BATCH_WINDOW": "0.05",
            **self.extra_env,
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "balancing", "hub", "run", "--kubeconfig", kubeconfig or self.api.kubeconfig],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        eventually(self.readyz, lambda ok: ok, 30, f"hub operator ready (log: {self.log})")

    def readyz(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"the hub operator exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
        return self.get("/readyz")[0] == 200

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    # -- the apiserver side --------------------------------------------------------------------------------

    def apply(self, namespace: str, document: dict[str, Any]) -> None:
        self.api.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))

    def status_patch(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.api.kubectl("patch", kind, name, "-n", namespace, "--subresource=status", "--type=merge",
                         "-p", json.dumps({"status": status}))

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        result = self.api.kubectl("get", kind, name, "-n", namespace, "-o", "json", "--ignore-not-found")
        found: dict[str, Any] | None = json.loads(result.stdout) if result.stdout.strip() else None
        return found

    def list_objects(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.api.kubectl("get", kind, "-n", namespace, "-o", "json").stdout)[
            "items"]
        return sorted(items, key=lambda item: item["metadata"]["name"])

    def events(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.api.kubectl("get", "events", "-n", namespace, "-o", "json")
                                                 .stdout)["items"]
        return items


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(obj: dict[str, Any] | None, kind: str) -> tuple[str, str] | None:
    for entry in ((obj or {}).get("status") or {}).get("conditions") or []:
        if entry["type"] == kind:
            return entry["status"], entry["reason"]
    return None


@pytest.fixture(scope="package")
def hub_cluster(request: pytest.FixtureRequest) -> Api:
    return install_crds(hub_api(request))


@pytest.fixture
def running_hub(hub_cluster: Api, tmp_path: Path) -> Iterator[HubProcess]:
    """A hub operator process over a fresh federation: a catalogue and three member namespaces."""
    hub = HubProcess(hub_cluster, f"bft-hub-{uuid.uuid4().hex[:5]}", tmp_path / "hub-operator.log")
    namespaces = [hub.catalogue, *(hub.member(i) for i in (1, 2, 3))]
    for namespace in namespaces:
        hub_cluster.kubectl("create", "namespace", namespace)
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()
        for namespace in namespaces:
            hub_cluster.kubectl("delete", "balancing-federation", "--all", "-n", namespace, "--wait=false",
                                check=False)
            hub_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
