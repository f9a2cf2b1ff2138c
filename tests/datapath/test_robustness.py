"""Regression tests for the datapath defects found by fuzzing (issue 11): names retired across
processes, refusals that change nothing (counters included), and a `--watch` that survives bad files."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from datapath.lb import DesiredState, FrontendSpec, SocketLB, StateError, Tier, ensure_object, parse_state
from datapath.lb.codec import decode_policy_name
from datapath.lb.maps import LbMaps
from tests.datapath.conftest import BACKENDS, VIP, Topology, close_and_detach, frontend, next_line, state
from tests.helpers.resources import KernelResources

SMALL_POLICY_MAP = 64  # a state may name half: 32


def named(names: list[str], first: int = 0) -> DesiredState:
    return state(
        service=[frontend(f"10.96.1.{first + i}", 80, BACKENDS[:1], policy=name) for i, name in enumerate(names)]
    )


def snapshot(bpffs: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    with LbMaps(bpffs) as maps:
        opened = (maps.frontends, maps.backends, maps.members, maps.policies, maps.meta, maps.nodes, maps.skips)
        return {each.name: sorted(each.items()) for each in opened}


def policy_names(bpffs: Path) -> set[str]:
    """Every name the policy map holds, referenced or not."""
    with LbMaps(bpffs) as maps:
        return {decode_policy_name(value) for _key, value in maps.policies.items()}


@pytest.fixture
def small(kernel: KernelResources) -> Iterator[tuple[Path, Path, Path]]:
    """Pins and a cgroup for a build whose policy map holds only 64 names."""
    cgroup, bpffs = kernel.cgroup(), kernel.bpffs_dir()
    built = ensure_object([f"BF_LB4_POLICIES_MAX={SMALL_POLICY_MAP}"])
    kernel.registry.add("small socket LB", lambda: close_and_detach(SocketLB(bpffs, cgroup, built), bpffs, cgroup))
    yield cgroup, bpffs, built


def test_every_process_retires_names_that_nothing_references(small: tuple[Path, Path, Path]) -> None:
    """Each apply below is a fresh SocketLB, as a restarted agent or a separate `apply` run is."""
    cgroup, bpffs, built = small
    generations = [[f"gen{g}/svc{i}" for i in range(32)] for g in range(5)]
    for names in generations:
        with SocketLB(bpffs, cgroup, built) as lb:
            report = lb.apply(named(names))  # 32 new names beside 32 old ones: exactly the map's 64
        assert report.added + report.retuned == 32
    held = policy_names(bpffs)
    assert held == set(generations[-1]) | set(generations[-2]), "the current names and, for one apply, the last"

    with SocketLB(bpffs, cgroup, built) as lb:
        lb.apply(named(["only/one"]))
        lb.apply(named(["only/one"]))
    assert policy_names(bpffs) == {"only/one"}


def test_a_refused_apply_writes_nothing_and_advances_no_counter(small: tuple[Path, Path, Path]) -> None:
    cgroup, bpffs, built = small
    with SocketLB(bpffs, cgroup, built) as lb:
        lb.apply(named([f"a/{i}" for i in range(20)]))
        before = snapshot(bpffs)
        too_many = [f"b/{i}" for i in range(33)]
        assert lb.writer is not None
        with pytest.raises(StateError, match="33 policy names, more than the policy map holds"):
            parse_state(named(too_many).document(), lb.writer.capacity)
        # A state built in Python skips parse_state; the plan refuses what does not fit all the same.
        unchecked = DesiredState.model_validate(
            {"tiers": {"service": [frontend("10.96.2.1", 80, [], policy="é" * 200)]}}
        )
        with pytest.raises(StateError, match="policy: 400 bytes of UTF-8, more than the 255"):
            lb.apply(unchecked)
        assert snapshot(bpffs) == before, "no partial batch, and the id allocators did not move"
        assert lb.apply(named([f"a/{i}" for i in range(20)])).elements_written == 0


def test_watch_keeps_the_state_through_bad_and_truncated_files_and_applies_the_next_good_one(
    topology: Topology, tmp_path: Path
) -> None:
    state_file = tmp_path / "node.yaml"
    good = "tiers:\n  service:\n    - {ip: %s, port: 80, protocol: TCP, backends: [{ip: %s, port: 8080}]}\n"
    state_file.write_text(good % (VIP, BACKENDS[0]))
    owner = topology.watch(state_file, interval=0.05)
    assert owner.stdout is not None and owner.stderr is not None
    assert "1 added" in next_line(owner.stdout)
    before = snapshot(topology.bpffs)

    bad_files = [b"tiers: {}\n# \xff\n", b"", b"---\n", b"null\n", b"tiers: [unclosed\n", b"[" * 10000 + b"]" * 10000]
    for content in bad_files:
        state_file.write_bytes(content)
        error = next_line(owner.stderr)
        assert error.startswith("balancing: error: ") and error.endswith("(keeping the previous state)\n"), error
        assert owner.poll() is None, "the watcher survives"
    time.sleep(0.2)
    assert snapshot(topology.bpffs) == before, "a bad or truncated file removes nothing"
    assert topology.client("tcp", VIP, "80", "--count", "2")["answers"] == {f"{BACKENDS[0]}:8080": 2}

    state_file.write_text(good % (VIP, BACKENDS[1]))
    assert "1 backend sets swapped" in next_line(owner.stdout)
    assert topology.client("tcp", VIP, "80", "--count", "2")["answers"] == {f"{BACKENDS[1]}:8080": 2}
    owner.send_signal(signal.SIGTERM)
    assert owner.wait(timeout=10) == 0


def test_a_full_apply_fits_new_names_even_after_upserts_filled_the_map(small: tuple[Path, Path, Path]) -> None:
    cgroup, bpffs, built = small
    with SocketLB(bpffs, cgroup, built) as lb:
        lb.apply(named([f"a/{i}" for i in range(32)]))
        for i in range(32):  # 32 more names by upsert: the 64-name map is full
            lb.upsert(Tier.SERVICE, FrontendSpec.model_validate(frontend(f"10.96.2.{i}", 80, [], policy=f"u/{i}")))
        assert len(policy_names(bpffs)) == SMALL_POLICY_MAP

        report = lb.apply(named([f"b/{i}" for i in range(32)]))

    assert (report.retuned, report.removed, report.policies_retired) == (32, 32, 64)
    assert policy_names(bpffs) == {f"b/{i}" for i in range(32)}
