"""The map writer against real pinned maps: diff-only writes, adoption, garbage, id allocation."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from datapath.errors import StateError
from datapath.lb import abi
from datapath.lb.facade import SocketLB
from datapath.lb.maps import LbMaps
from datapath.lb.reader import MapReader
from datapath.lb.state import Capacity, FrontendSpec
from datapath.lb.writer import MapWriter
from tests.datapath.conftest import close_and_detach, frontend, state
from tests.helpers.resources import KernelResources

SLOT = struct.Struct("=II")


@pytest.fixture
def pins(kernel: KernelResources, bpf_object: Path) -> Iterator[tuple[SocketLB, Path]]:
    cgroup, bpffs = kernel.cgroup(), kernel.bpffs_dir()
    lb = SocketLB(bpffs, cgroup, bpf_object)
    kernel.registry.add("socket LB", lambda: close_and_detach(lb, bpffs, cgroup))
    yield lb, bpffs


def services(count: int, backends: int = 3, changed: int | None = None) -> list[dict[str, object]]:
    return [
        frontend(
            f"10.96.{i // 256}.{i % 256}",
            80,
            [f"10.1.{i % 256}.{b + (5 if i == changed else 0)}" for b in range(backends)],
        )
        for i in range(count)
    ]


def identities(bpffs: Path) -> dict[str, tuple[int, int]]:
    with MapReader(bpffs) as reader:
        return {e["frontend"]: (e["frontendId"], e["setId"]) for e in reader.dump()["tiers"]["service"]}


def test_reapplying_the_same_state_writes_nothing(pins: tuple[SocketLB, Path]) -> None:
    lb, bpffs = pins
    first = lb.apply(state(service=services(50)))
    assert (first.added, first.elements_written) == (50, 1 + 150 + 150 + 50)  # meta, slots, members, frontends
    before = identities(bpffs)

    again = lb.apply(state(service=services(50)))

    assert (again.unchanged, again.elements_written) == (50, 0)
    assert identities(bpffs) == before


def test_one_changed_backend_swaps_only_that_frontends_set(pins: tuple[SocketLB, Path]) -> None:
    lb, bpffs = pins
    lb.apply(state(service=services(50)))
    before = identities(bpffs)

    report = lb.apply(state(service=services(50, changed=7)))

    assert (report.swapped, report.unchanged) == (1, 49)
    after = identities(bpffs)
    changed = [name for name in before if before[name] != after[name]]
    assert changed == ["10.96.0.7:80/TCP"]
    assert after[changed[0]][0] == before[changed[0]][0], "same frontend id: affinity survives"
    # meta + 3 slots + 3 new members + 1 frontend + 3 old members
    assert report.elements_written == 1 + 3 + 3 + 1 + 3

    with LbMaps(bpffs) as maps:
        old_set = before[changed[0]][1]
        assert maps.backends.lookup(SLOT.pack(old_set, 0)) is not None, "old set kept until the next apply"
        lb.apply(state(service=services(50, changed=7)))
        assert maps.backends.lookup(SLOT.pack(old_set, 0)) is None, "then deleted"


def test_removed_frontends_leave_no_entries_behind(pins: tuple[SocketLB, Path]) -> None:
    lb, bpffs = pins
    lb.apply(state(service=services(5), localRedirect=[frontend("10.96.0.1", 80, ["10.1.1.1"], qosLimit=3)]))
    lb.apply(state())
    lb.apply(state())

    with LbMaps(bpffs) as maps:
        for opened in (maps.frontends, maps.backends, maps.members, maps.qos):
            assert opened.items() == [], opened.name


def test_a_new_writer_adopts_the_maps_and_never_reuses_ids(pins: tuple[SocketLB, Path]) -> None:
    lb, bpffs = pins
    lb.apply(state(service=services(3)))
    top = max(frontend_id for frontend_id, _set in identities(bpffs).values())
    lb.apply(state(service=services(2)))  # drop the newest frontend
    lb.close()

    with LbMaps(bpffs) as maps:
        writer = MapWriter(maps)
        adopted = writer.apply(state(service=services(2)))
        assert (adopted.garbage_sets_deleted, adopted.elements_written) == (1, 3)  # the retired set's slots
        report = writer.apply(state(service=[*services(2), frontend("10.96.9.9", 80, ["10.2.2.2"])]))
    assert report.added == 1
    assert identities(bpffs)["10.96.9.9:80/TCP"][0] > top


def test_a_torn_set_found_at_adoption_is_rewritten(pins: tuple[SocketLB, Path]) -> None:
    lb, bpffs = pins
    lb.apply(state(service=services(2)))
    lb.close()
    torn_set = identities(bpffs)["10.96.0.1:80/TCP"][1]
    with LbMaps(bpffs) as maps:
        maps.backends.delete(SLOT.pack(torn_set, 2))  # as if a writer died half-way
        report = MapWriter(maps).apply(state(service=services(2)))
    assert (report.swapped, report.unchanged) == (1, 1)
    assert identities(bpffs)["10.96.0.1:80/TCP"][1] != torn_set
    with MapReader(bpffs) as reader:
        assert "<missing>" not in str(reader.dump())


def test_incremental_upsert_and_remove_touch_one_frontend(pins: tuple[SocketLB, Path]) -> None:
    lb, bpffs = pins
    lb.apply(state(service=services(20)))
    before = identities(bpffs)

    spec = FrontendSpec.model_validate(frontend("10.96.0.3", 80, ["10.1.3.0", "10.1.3.9"]))
    assert lb.upsert(abi.Tier.SERVICE, spec).swapped == 1
    assert lb.remove(abi.Tier.SERVICE, "10.96.0.4", 80, "TCP").removed == 1

    after = identities(bpffs)
    assert set(before) - set(after) == {"10.96.0.4:80/TCP"}
    assert [name for name in after if after[name] != before[name]] == ["10.96.0.3:80/TCP"]
    with MapReader(bpffs) as reader:
        (entry,) = reader.explain("10.96.0.3", 80, "TCP").entries
    assert entry.backends == ["10.1.3.0:8080", "10.1.3.9:8080"]


def test_policy_names_outlive_their_last_frontend_by_one_apply(pins: tuple[SocketLB, Path]) -> None:
    lb, bpffs = pins
    lb.apply(state(service=[frontend("10.96.0.1", 80, ["10.1.1.1"], policy="team/a")]))
    lb.apply(state(service=[frontend("10.96.0.1", 80, ["10.1.1.1"], policy="team/b")]))
    with LbMaps(bpffs) as maps:
        assert len(maps.policies.items()) == 2, "team/a still decodes events emitted just before"
    lb.apply(state(service=[frontend("10.96.0.1", 80, ["10.1.1.1"], policy="team/b")]))
    with LbMaps(bpffs) as maps:
        names = [value.split(b"\0")[0] for _key, value in maps.policies.items()]
    assert names == [b"team/b"]


def test_upsert_refuses_what_the_maps_cannot_hold_and_writes_nothing(pins: tuple[SocketLB, Path]) -> None:
    lb, bpffs = pins
    lb.apply(state(service=services(2)))
    assert lb.writer is not None
    lb.writer.view.capacity = Capacity(frontends=3, slots=20, policies=4)  # as if the maps were that small
    too_many = FrontendSpec.model_validate(frontend("10.96.0.1", 80, [f"10.3.0.{i}" for i in range(1, 9)]))
    before = identities(bpffs)

    with pytest.raises(StateError, match=r"tiers.service\[0\] 10.96.0.1:80/TCP: 11 backends in all would be more"):
        lb.upsert(abi.Tier.SERVICE, too_many)
    lb.upsert(abi.Tier.SERVICE, FrontendSpec.model_validate(frontend("10.96.0.5", 80, ["10.3.0.1"])))
    with pytest.raises(StateError, match="the frontend map is full"):
        lb.upsert(abi.Tier.SERVICE, FrontendSpec.model_validate(frontend("10.96.0.6", 80, ["10.3.0.1"])))
    assert {k: v for k, v in identities(bpffs).items() if k in before} == before


def test_reread_undoes_a_change_made_behind_the_writers_back(pins: tuple[SocketLB, Path]) -> None:
    lb, bpffs = pins
    desired = state(service=services(3))
    lb.apply(desired)
    with LbMaps(bpffs) as maps:
        (key, _value), *_rest = maps.frontends.items()
        maps.frontends.delete(key)  # someone else's write

    assert lb.apply(desired).elements_written == 0, "the writer trusts its view between applies"
    repaired = lb.apply(desired, reread=True)

    assert (repaired.added, repaired.unchanged) == (1, 2)
    assert len(identities(bpffs)) == 3
