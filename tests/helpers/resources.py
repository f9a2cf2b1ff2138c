"""Per-test kernel resources with a cleanup registry, in the style of pyroute2's test helpers.

Every resource a test creates is registered here and removed in reverse order after the test, even
when the test failed half-way; removal tolerates resources that are already gone.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import subprocess
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from lab import host

TEST_PREFIX = "bft"  # every namespace, cgroup and pin a test makes starts with this


class CleanupRegistry:
    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], object]]] = []

    def add(self, description: str, action: Callable[[], object]) -> None:
        self._actions.append((description, action))

    def run(self) -> list[str]:
        """Run every action, newest first; return the descriptions of those that failed."""
        failures: list[str] = []
        while self._actions:
            description, action = self._actions.pop()
            try:
                action()
            except Exception as error:  # teardown must go on
                failures.append(f"{description}: {error}")
        return failures


class KernelResources:
    """Factory for namespaces, veths, cgroups and bpffs directories, all registered for cleanup."""

    _counter = itertools.count()

    def __init__(self, registry: CleanupRegistry) -> None:
        self.registry = registry
        self.tag = uuid.uuid4().hex[:5]

    def unique(self, kind: str) -> str:
        return f"{TEST_PREFIX}{kind}{self.tag}{next(self._counter)}"

    def netns(self) -> str:
        name = self.unique("ns")
        host.netns_add(name)
        self.registry.add(f"netns {name}", lambda: host.netns_delete(name))
        return name

    def cgroup(self) -> Path:
        path = host.cgroup_create(host.CGROUP2_ROOT / self.unique("cg"))
        self.registry.add(f"cgroup {path}", lambda: host.cgroup_remove(path))
        return path

    def bpffs_dir(self) -> Path:
        host.ensure_bpffs()
        path = host.BPFFS_ROOT / self.unique("pin")
        path.mkdir()
        self.registry.add(f"bpffs {path}", lambda: shutil.rmtree(path, ignore_errors=True))
        return path

    def veth_to(self, netns: str, address: str, peer_address: str, peer_netns: str | None = None) -> str:
        """A veth pair between `peer_netns` (default: host) and `netns`, both ends addressed, up."""
        outer, inner = self.unique("v")[:15], self.unique("v")[:15]
        host.run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", netns])
        if peer_netns:
            host.run(["ip", "link", "set", outer, "netns", peer_netns])
        outer_prefix = ["ip", "-n", peer_netns] if peer_netns else ["ip"]
        host.run([*outer_prefix, "addr", "add", peer_address, "dev", outer])
        host.run([*outer_prefix, "link", "set", outer, "up"])
        host.run(["ip", "-n", netns, "addr", "add", address, "dev", inner])
        host.run(["ip", "-n", netns, "link", "set", inner, "up"])

        def remove() -> None:
            if host.link_exists(outer, peer_netns):
                host.run([*outer_prefix, "link", "del", outer], check=False)

        self.registry.add(f"veth {outer}", remove)
        return outer

    def spawn(self, argv: Sequence[str], netns: str | None = None, cgroup: Path | None = None) -> int:
        proc = host.spawn(argv, netns=netns, cgroup=cgroup)
        self.registry.add(f"process {proc.pid}", lambda: _stop(proc))
        return proc.pid

    def run_in(
        self, argv: Sequence[str], netns: str | None = None, cgroup: Path | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command in a namespace and cgroup, and wait for it."""
        return host.run_in(argv, netns=netns, cgroup=cgroup, timeout=timeout)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait(timeout=10)
