"""A new build replaces the running programs in their pinned links (BPF_LINK_UPDATE), and a map
layout change (a new map name) is filled before the switch: no connect fails on the way."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from datapath.lb import MapReader, abi
from datapath.lb.build import ensure_object
from datapath.lb.facade import SocketLB
from datapath.lb.loader import attached_links
from tests.datapath.conftest import BACKENDS, REPO, VIP, Topology, frontend, state

NEW_LAYOUT = "bf_lb4_fe_v3"


def test_a_layout_change_swaps_maps_and_programs_under_load_without_a_failed_connect(
    topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    desired = state(service=[frontend(VIP, 80, BACKENDS[:3], policy="default/web")])
    topology.lb.apply(desired)
    links_before = {link.hook: link for link in attached_links(topology.bpffs)}
    new_build = ensure_object([f"BF_LB4_FE_MAP={NEW_LAYOUT}"])

    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(topology.client, "tcp", VIP, "80", "--rate", "100", "--duration", "2.5")
        time.sleep(0.7)
        # The next version of this code knows the frontend map by its new name.
        layouts = {
            (NEW_LAYOUT if name == abi.MAP_FRONTENDS else name): sizes for name, sizes in abi.MAP_LAYOUTS.items()
        }
        monkeypatch.setattr(abi, "MAP_LAYOUTS", layouts)
        monkeypatch.setattr(abi, "MAP_FRONTENDS", NEW_LAYOUT)
        upgraded = SocketLB(topology.bpffs, topology.cgroup, new_build)
        topology.kernel.registry.add("upgraded socket LB", upgraded.close)
        first = upgraded.apply(desired)
        result = load.result(timeout=60)

    assert upgraded.load_report is not None
    # The programs that read the frontend map are swapped; the reverse-translation ones are unchanged.
    assert upgraded.load_report.updated == ["connect4", "sendmsg4"]
    assert upgraded.load_report.kept == ["recvmsg4", "getpeername4"]
    assert upgraded.load_report.stale_pins_removed == ["bf_lb4_fe_v2"]
    assert first.added == 1 and first.garbage_sets_deleted == 0, "the old programs' sets are kept"
    assert result["failures"] == 0, result["errors"]
    assert f"{VIP}:80" not in result["answers"] and result["attempts"] >= 200
    links_after = {link.hook: link for link in attached_links(topology.bpffs)}
    assert {hook: link.link_id for hook, link in links_after.items()} == {
        hook: link.link_id for hook, link in links_before.items()
    }, "the same links, new programs"
    assert links_after["connect4"].prog_id != links_before["connect4"].prog_id
    assert not (topology.bpffs / "bf_lb4_fe_v2").exists() and (topology.bpffs / NEW_LAYOUT).exists()

    second = upgraded.apply(desired)
    assert (second.unchanged, second.garbage_sets_deleted) == (1, 1), "old sets go once the switch is done"
    assert topology.client("tcp", VIP, "80", "--count", "5")["failures"] == 0


def test_reapplying_the_same_build_keeps_the_running_programs(topology: Topology) -> None:
    topology.lb.apply(state())
    before = attached_links(topology.bpffs)
    again = SocketLB(topology.bpffs, topology.cgroup, ensure_object())
    topology.kernel.registry.add("second socket LB", again.close)
    again.apply(state())
    assert again.load_report is not None and again.load_report.updated == []
    assert attached_links(topology.bpffs) == before


# The last commit of layout 1 (bf_lb4_fe_v1, bf_lb4_pol_v1; no node or skip maps).
LAYOUT_1_COMMIT = "5faca265e73dbac350e82d31070fb638f83ff990"


def released_tree(commit: str, into: Path) -> Path:
    """`git archive` of an earlier commit of this repository (skips when the clone lacks it)."""
    if subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=REPO, capture_output=True).returncode:
        pytest.skip(f"commit {commit[:12]} is not in this clone's history")
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as bundle:
        bundle.extractall(into, filter="data")
    return into


def test_an_upgrade_from_layout_1_keeps_every_connect_working(topology: Topology, tmp_path: Path) -> None:
    """The real upgrade: layout 1's programs and maps, loaded by that release's own code, are
    replaced by this layout's under load; the new maps are filled before the links switch."""
    old = released_tree(LAYOUT_1_COMMIT, tmp_path / "release")
    state_file = tmp_path / "node.yaml"
    state_file.write_text(yaml.safe_dump({"tiers": {"service": [frontend(VIP, 80, BACKENDS[:3], policy="web")]}}))
    loaded = subprocess.run(
        [sys.executable, "-m", "balancing", "datapath", "apply", "--bpffs", str(topology.bpffs),
         "--cgroup", str(topology.cgroup), str(state_file)],
        cwd=old, env={**os.environ, "PYTHONPATH": str(old)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert (topology.bpffs / "bf_lb4_fe_v1").exists() and not (topology.bpffs / "bf_lb4_node_v1").exists()

    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(topology.client, "tcp", VIP, "80", "--rate", "100", "--duration", "2.5")
        time.sleep(0.7)
        upgraded = SocketLB(topology.bpffs, topology.cgroup)
        topology.kernel.registry.add("upgraded socket LB", upgraded.close)
        first = upgraded.apply(state(service=[frontend(VIP, 80, BACKENDS[:3], policy="web")]))
        result = load.result(timeout=60)

    assert result["failures"] == 0, result["errors"]
    assert f"{VIP}:80" not in result["answers"] and result["attempts"] >= 200
    assert upgraded.load_report is not None and "connect4" in upgraded.load_report.updated
    assert sorted(upgraded.load_report.stale_pins_removed) == ["bf_lb4_fe_v1", "bf_lb4_pol_v1"]
    assert first.added == 1 and first.garbage_sets_deleted == 0, "the old programs' sets are kept once"
    with MapReader(topology.bpffs) as reader:
        assert reader.dump()["layout"] == 2
        explained = reader.explain(VIP, 80, "TCP")
    assert explained.resolved_by == "service" and explained.entries[0].policy == "web"
    second = upgraded.apply(state(service=[frontend(VIP, 80, BACKENDS[:3], policy="web")]))
    assert (second.unchanged, second.garbage_sets_deleted) == (1, 1)
