"""The loader's repairs: links detached behind its back, and teardown after the cgroup is gone."""

from __future__ import annotations

import os
from pathlib import Path

from datapath.lb import bpfsys
from datapath.lb.facade import SocketLB, detach
from datapath.lb.loader import link_pin
from lab import host
from tests.datapath.conftest import BACKENDS, VIP, Topology, frontend, state
from tests.helpers.resources import KernelResources


def test_a_link_detached_behind_our_back_is_attached_again_by_the_next_apply(topology: Topology) -> None:
    desired = state(service=[frontend(VIP, 80, BACKENDS[:1])])
    topology.lb.apply(desired)
    fd = bpfsys.obj_get(link_pin(topology.bpffs, "connect4"))
    bpfsys.link_detach(fd)
    os.close(fd)
    assert topology.client("tcp", VIP, "80", "--count", "2")["answers"] == {f"{VIP}:80": 2}, "really detached"

    again = SocketLB(topology.bpffs, topology.cgroup)
    topology.kernel.registry.add("second socket LB", again.close)
    report = again.apply(desired)

    assert again.load_report is not None and again.load_report.attached == ["connect4"]
    assert report.elements_written == 0
    assert topology.client("tcp", VIP, "80", "--count", "2")["answers"] == {f"{BACKENDS[0]}:8080": 2}


def test_detach_after_the_cgroup_is_gone_removes_the_pins(kernel: KernelResources, bpf_object: Path) -> None:
    cgroup, bpffs = kernel.cgroup(), kernel.bpffs_dir()
    lb = SocketLB(bpffs, cgroup, bpf_object)
    lb.apply(state(service=[frontend(VIP, 80, BACKENDS[:1])]))
    lb.close()
    host.cgroup_remove(cgroup)

    removed = detach(bpffs, cgroup)

    assert "bf_lb4_link_connect4" in removed and "bf_lb4_fe_v2" in removed
    assert not bpffs.exists()
