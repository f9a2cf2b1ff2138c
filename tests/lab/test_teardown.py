"""`lab down` leaves nothing behind: no namespace, cgroup, pin, link, state or process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab import host
from lab.addressing import UNDERLAY_BRIDGE
from lab.state import BPFFS_ROOT, CGROUP_ROOT, LAB_DIR, NETNS_PREFIX
from lab.testing import Federation


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


@pytest.mark.lab_teardown
def test_lab_down_removes_every_namespace_cgroup_pin_link_and_process(federation: Federation) -> None:
    state = federation.state
    recorded = [p for c in state.clusters.values() for p in c.processes] + state.daemons
    recorded += [pod.process for pod in state.pods.values() if pod.process]
    assert recorded and all(p.alive() for p in recorded)
    (Path(next(iter(state.nodes.values())).bpffs) / "marker").mkdir(exist_ok=True)  # a pin-like leftover

    federation.down()

    leftover_netns = [p.name for p in host.NETNS_DIR.glob(f"{NETNS_PREFIX}*")] if host.NETNS_DIR.exists() else []
    assert leftover_netns == [], "network namespaces"
    assert not CGROUP_ROOT.exists(), "cgroups"
    assert not BPFFS_ROOT.exists(), "bpffs pins"
    assert not host.link_exists(UNDERLAY_BRIDGE), "underlay bridge"
    assert not LAB_DIR.exists(), "state directory"
    assert [p.role for p in recorded if p.alive()] == [], "processes"
    assert _processes_mentioning(str(LAB_DIR)) == [], "processes still referring to the lab directory"
    # down is idempotent
    federation.down()
