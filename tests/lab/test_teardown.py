"""`lab down` leaves nothing behind: no namespace, cgroup, pin, link, mount, token, state or process,
even when the lab's kubelet crashed in the middle of a `helm install`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab import host, runtime
from lab.addressing import UNDERLAY_BRIDGE
from lab.runtime import ContainerRecord
from lab.state import BPFFS_ROOT, CGROUP_ROOT, LAB_DIR, NETNS_PREFIX
from lab.testing import Federation
from lab.toolchain import tool_path

CHART = Path(__file__).with_name("charts") / "workload-probe"


def _processes_mentioning(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _mounts_mentioning(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                found += [f"{proc.name}: {line}" for line in (proc / "mountinfo").read_text().splitlines()
                          if marker in line]
            except OSError:
                continue
    return found


def _crash_mid_install(federation: Federation) -> list[ContainerRecord]:
    """Start installing the test chart, and kill the kubelet once some of its containers run."""
    env = {**os.environ, "KUBECONFIG": str(federation.kubeconfig("member-1"))}
    subprocess.run([str(tool_path("helm")), "install", "crash", str(CHART), "-n", "crash", "--create-namespace"],
                   env=env, check=True, capture_output=True, timeout=120)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = [c for r in runtime.all_runtimes() if r.namespace == "crash" for c in r.containers.values()
                   if c.alive()]
        if len(running) >= 2:
            break
        time.sleep(0.1)
    (kubelet,) = [d for d in federation.state.daemons if d.role == "kubelet"]
    os.kill(kubelet.pid, signal.SIGKILL)
    assert running, "no container of the chart started"
    return running


@pytest.mark.lab_teardown
def test_lab_down_removes_every_namespace_cgroup_pin_link_and_process(federation: Federation) -> None:
    state = federation.state
    recorded = [p for c in state.clusters.values() for p in c.processes] + state.daemons
    recorded += [pod.process for pod in state.pods.values() if pod.process]
    assert recorded and all(p.alive() for p in recorded)
    (Path(next(iter(state.nodes.values())).bpffs) / "marker").mkdir(exist_ok=True)  # a pin-like leftover
    containers = _crash_mid_install(federation)
    assert _mounts_mentioning(str(LAB_DIR)), "containers mount their token and volumes from the lab directory"

    federation.down()

    leftover_netns = [p.name for p in host.NETNS_DIR.glob(f"{NETNS_PREFIX}*")] if host.NETNS_DIR.exists() else []
    assert leftover_netns == [], "network namespaces"
    assert not CGROUP_ROOT.exists(), "cgroups"
    assert not BPFFS_ROOT.exists(), "bpffs pins"
    assert not host.link_exists(UNDERLAY_BRIDGE), "underlay bridge"
    assert not LAB_DIR.exists(), "state directory"
    assert [p.role for p in recorded if p.alive()] == [], "processes"
    assert [c.name for c in containers if c.alive()] == [], "container processes"
    assert _mounts_mentioning(str(LAB_DIR)) == [], "mounts of lab volumes and tokens in container namespaces"
    assert _mounts_mentioning("balancing-lab") == [], "mounts of node cgroups and bpffs"
    assert _processes_mentioning(str(LAB_DIR)) == [], "processes still referring to the lab directory"
    # down is idempotent
    federation.down()
