"""Fixtures for the socket load balancer tests: a client netns in a test cgroup, a backend netns
with identity servers, a bpffs pin directory, and the datapath attached to that cgroup only.

    client netns (process in the test cgroup)      backend netns
      lo: VIPs, each with a "trap" server            lo: 10.77.1.1-9, identity servers :8080
      veth 10.77.0.1/24  <--------------------->     veth 10.77.0.2/24

A connect() to a VIP that is NOT rewritten reaches the trap, which answers with the VIP itself.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from datapath.lb import DesiredState, SocketLB, detach, ensure_object, parse_state
from lab import host
from tests.helpers.resources import KernelResources

PROBE = Path(__file__).with_name("probe.py")
REPO = Path(__file__).resolve().parents[2]
VIP = "10.96.0.10"
VIP2 = "10.96.0.11"
BACKEND_PORT = 8080
BACKENDS = [f"10.77.1.{i}" for i in range(1, 10)]


def endpoint(ip: str, port: int = BACKEND_PORT) -> dict[str, Any]:
    return {"ip": ip, "port": port}


def frontend(ip: str, port: int, backends: Sequence[str], protocol: str = "TCP", **options: Any) -> dict[str, Any]:
    return {
        "ip": ip,
        "port": port,
        "protocol": protocol,
        "backends": [endpoint(b) if ":" not in b else endpoint(*_split(b)) for b in backends],
        **options,
    }


def _split(value: str) -> tuple[str, int]:
    ip, port = value.rsplit(":", 1)
    return ip, int(port)


def state(node_addresses: Sequence[str] = (), **tiers: list[dict[str, Any]]) -> DesiredState:
    """state(service=[frontend(...)], localRedirect=[...], balancing=[...], node_addresses=[...])"""
    return parse_state({"tiers": tiers, "nodeAddresses": list(node_addresses)})


@pytest.fixture(scope="session")
def bpf_object() -> Path:
    return ensure_object()


@dataclass
class Topology:
    kernel: KernelResources
    client_ns: str
    backend_ns: str
    cgroup: Path
    bpffs: Path
    lb: SocketLB
    started: list[int] = field(default_factory=list)

    def _probe(self, args: Sequence[str], cgroup: Path | None, timeout: float) -> dict[str, Any]:
        result = self.kernel.run_in(
            [sys.executable, str(PROBE), *args], netns=self.client_ns, cgroup=cgroup, timeout=timeout
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def client(self, *args: str, timeout: float = 60) -> dict[str, Any]:
        """Run the probe client in the client netns, inside the test cgroup."""
        return self._probe(args, self.cgroup, timeout)

    def client_in(self, cgroup: Path, *args: str, timeout: float = 60) -> dict[str, Any]:
        """Run the probe client in the client netns, inside `cgroup` (a descendant of the test cgroup)."""
        return self._probe(args, cgroup, timeout)

    def child_cgroup(self, *names: str) -> Path:
        """A cgroup below the test cgroup (a pod's, say); removed with the test cgroup."""
        path = self.cgroup.joinpath(*names)
        path.mkdir(parents=True)
        return path

    def outside(self, *args: str, timeout: float = 60) -> dict[str, Any]:
        """Run the probe client in the client netns, outside the test cgroup."""
        return self._probe(args, None, timeout)

    def client_argv(self, *args: str) -> list[str]:
        return [sys.executable, str(PROBE), *args]

    def serve(self, netns: str, endpoints: Sequence[str]) -> int:
        ready = Path(f"/tmp/{self.kernel.unique('ready')}")
        self.kernel.registry.add(f"ready file {ready}", lambda: ready.unlink(missing_ok=True))
        pid = self.kernel.spawn([sys.executable, str(PROBE), "serve", "--ready", str(ready), *endpoints], netns=netns)
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert time.monotonic() < deadline, f"probe server in {netns} did not start"
            time.sleep(0.02)
        return pid

    def watch(self, state_file: Path, interval: float = 0.1) -> subprocess.Popen[str]:
        """`balancing datapath apply --watch` on this topology, as its own process (killed at cleanup)."""
        owner = subprocess.Popen(
            [sys.executable, "-m", "balancing", "datapath", "apply", "--watch", "--interval", str(interval),
             "--bpffs", str(self.bpffs), "--cgroup", str(self.cgroup), str(state_file)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

        def stop() -> None:
            if owner.poll() is None:
                owner.kill()
            owner.wait(timeout=10)

        self.kernel.registry.add(f"datapath owner {owner.pid}", stop)
        return owner

    def add_vip(self, ip: str, ports: Sequence[int] = (80,)) -> None:
        """Put a trap server on ip:ports in the client netns (what an unrewritten connect reaches)."""
        host.run(["ip", "-n", self.client_ns, "addr", "add", f"{ip}/32", "dev", "lo"])
        self.serve(self.client_ns, [f"{ip}:{port}" for port in ports])


@pytest.fixture
def topology(kernel: KernelResources, bpf_object: Path) -> Iterator[Topology]:
    client_ns, backend_ns = kernel.netns(), kernel.netns()
    kernel.veth_to(backend_ns, "10.77.0.2/24", "10.77.0.1/24", peer_netns=client_ns)
    for ip in BACKENDS:
        host.run(["ip", "-n", backend_ns, "addr", "add", f"{ip}/32", "dev", "lo"])
    host.run(["ip", "-n", client_ns, "route", "add", "10.77.1.0/24", "via", "10.77.0.2"])
    cgroup, bpffs = kernel.cgroup(), kernel.bpffs_dir()
    lb = SocketLB(bpffs, cgroup, bpf_object)
    kernel.registry.add("socket LB", lambda: close_and_detach(lb, bpffs, cgroup))
    topo = Topology(kernel, client_ns, backend_ns, cgroup, bpffs, lb)
    topo.serve(backend_ns, [f"{ip}:{BACKEND_PORT}" for ip in BACKENDS])
    topo.add_vip(VIP)
    yield topo


def next_line(stream: IO[str] | None, timeout: float = 30) -> str:
    """The next line a process prints, failing the test when none comes in time."""
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"nothing printed within {timeout} s"
    return stream.readline()


def close_and_detach(lb: SocketLB, bpffs: Path, cgroup: Path) -> None:
    lb.close()
    detach(bpffs, cgroup)
