"""The pure write plan, table-tested Katran style without root: each row is a description, the
state the kernel holds, the desired state, and the writes the plan must make (decoded)."""

from __future__ import annotations

from typing import Any

import pytest

from datapath.errors import StateError
from datapath.lb import abi
from datapath.lb.codec import MEMBER_KEY, backend_label, decode_member_key, decode_skip_key, decode_slot_keys, ref_label
from datapath.lb.plan import KernelFrontend, KernelView, WritePlan, commit, plan_apply, plan_remove, plan_upsert
from datapath.lb.state import Capacity, DesiredState, FrontendSpec, parse_state

VIP = "10.96.0.1"
B1, B2, B3 = ("10.1.0.1", 80), ("10.1.0.2", 80), ("10.1.0.3", 80)
LEVELS = {4242: 3, 4343: 5}  # cgroup id -> level; any other id is a cgroup that is gone


def level_of(cgroup_id: int) -> int:
    return LEVELS.get(cgroup_id, abi.LEVEL_UNKNOWN)


def fe(ip: str = VIP, *backends: tuple[str, int], **options: Any) -> dict[str, Any]:
    return {
        "ip": ip,
        "port": 80,
        "protocol": "TCP",
        "backends": [{"ip": b[0], "port": b[1]} for b in backends],
    } | options


def doc(*service: dict[str, Any], **extra: Any) -> dict[str, Any]:
    tiers = {"service": list(service)} | extra.pop("tiers", {})
    return {"tiers": tiers} | extra


def applied(*documents: dict[str, Any], capacity: Capacity | None = None) -> KernelView:
    """The view of a kernel that had each document applied in turn, starting empty."""
    view = KernelView(capacity=capacity or Capacity())
    for document in documents:
        commit(view, plan_apply(view, parse_state(document), level_of))
    return view


def members(runs: list[bytes]) -> list[str]:
    joined, size = b"".join(runs), MEMBER_KEY.size
    keys = [decode_member_key(joined[i : i + size]) for i in range(0, len(joined), size)]
    return sorted(f"{frontend_id}:{backend_label(backend)}" for frontend_id, backend in keys)


def writes(plan: WritePlan) -> dict[str, Any]:
    """Every write of a plan, decoded; categories without writes are left out."""
    slots: dict[int, list[str]] = {}
    for keys, values in zip(plan.slot_keys, plan.slot_values, strict=True):
        slots[decode_slot_keys(keys)[0]] = [backend_label(values[i : i + 8]) for i in range(0, len(values), 8)]
    decoded = {
        "garbage": plan.garbage_sets,
        "allocators": plan.allocators,
        "policies-": plan.policies_retired,
        "policies+": plan.policies_added,
        "nodes-": plan.nodes_removed,
        "nodes+": plan.nodes_added,
        "slots": slots,
        "members+": members(plan.members_added),
        "skips+": sorted((*decode_skip_key(key), level) for key, level in plan.skips_added),
        "frontends": {
            f"{abi.Tier(w.ref[0]).label} {ref_label(w.ref)}": f"{w.change.value} id {w.new.frontend_id} set "
            f"{w.new.set_id} policy {w.new.policy_id} flags {w.new.flags} levels {w.new.skip_levels:#x}"
            for w in plan.writes
        },
        "removed": sorted(f"{abi.Tier(ref[0]).label} {ref_label(ref)}" for ref in plan.removed),
        "members-": members(plan.members_removed),
        "skips-": sorted(decode_skip_key(key) for key in plan.skips_removed),
        "qos-": plan.qos_removed,
    }
    return {name: value for name, value in decoded.items() if value}


ROWS: list[tuple[str, list[dict[str, Any]], dict[str, Any], dict[str, Any], int]] = [
    (
        "a first frontend: ids reserved, name, set, members, then the frontend",
        [],
        doc(fe(VIP, B1, B2, policy="web")),
        {
            "allocators": (2, 2, 2),
            "policies+": {1: "web"},
            "slots": {1: ["10.1.0.1:80", "10.1.0.2:80"]},
            "members+": ["1:10.1.0.1:80", "1:10.1.0.2:80"],
            "frontends": {f"service {VIP}:80/TCP": "added id 1 set 1 policy 1 flags 0 levels 0x0"},
        },
        7,
    ),
    ("the same state again writes nothing", [doc(fe(VIP, B1, policy="web"))], doc(fe(VIP, B1, policy="web")), {}, 0),
    (
        "one backend replaced: a new set, the new member before, the old member after",
        [doc(fe(VIP, B1, B2))],
        doc(fe(VIP, B1, B3)),
        {
            "allocators": (2, 3, 1),
            "slots": {2: ["10.1.0.1:80", "10.1.0.3:80"]},
            "members+": ["1:10.1.0.3:80"],
            "frontends": {f"service {VIP}:80/TCP": "swapped id 1 set 2 policy 0 flags 0 levels 0x0"},
            "members-": ["1:10.1.0.2:80"],
        },
        6,
    ),
    (
        "the old set goes at the next plan",
        [doc(fe(VIP, B1, B2)), doc(fe(VIP, B1, B3))],
        doc(fe(VIP, B1, B3)),
        {"garbage": {1: 2}},
        2,
    ),
    (
        "an option changed: the same set, one frontend update",
        [doc(fe(VIP, B1))],
        doc(fe(VIP, B1, qosLimit=5, rejectWhenEmpty=True)),
        {"frontends": {f"service {VIP}:80/TCP": "retuned id 1 set 1 policy 0 flags 1 levels 0x0"}},
        1,
    ),
    (
        "a removed frontend takes its members and QoS window with it",
        [doc(fe(VIP, B1, qosLimit=5), fe("10.96.0.2", B2))],
        doc(fe("10.96.0.2", B2)),
        {"removed": [f"service {VIP}:80/TCP"], "members-": ["1:10.1.0.1:80"], "qos-": [1]},
        3,
    ),
    (
        "a renamed policy: the new name is written, the old one kept for one apply",
        [doc(fe(VIP, B1, policy="a"))],
        doc(fe(VIP, B1, policy="b")),
        {
            "allocators": (2, 2, 3),
            "policies+": {2: "b"},
            "frontends": {f"service {VIP}:80/TCP": "retuned id 1 set 1 policy 2 flags 0 levels 0x0"},
        },
        3,
    ),
    (
        "and retired at the next full apply",
        [doc(fe(VIP, B1, policy="a")), doc(fe(VIP, B1, policy="b"))],
        doc(fe(VIP, B1, policy="b")),
        {"policies-": [1]},
        1,
    ),
    (
        "node addresses are diffed like everything else",
        [doc(nodeAddresses=["172.30.0.1", "172.30.0.2"])],
        doc(nodeAddresses=["172.30.0.2", "172.30.0.3"]),
        {"nodes-": ["172.30.0.1"], "nodes+": ["172.30.0.3"]},
        2,
    ),
    (
        "skipped cgroups: one entry each with its level, and a bit per level in the frontend",
        [doc(fe(VIP, B1))],
        doc(fe(VIP, B1, skipCgroups=[4242, 4343, 99])),
        {
            "skips+": [(1, 99, abi.LEVEL_UNKNOWN), (1, 4242, 3), (1, 4343, 5)],
            "frontends": {f"service {VIP}:80/TCP": "retuned id 1 set 1 policy 0 flags 0 levels 0x28"},
        },
        4,
    ),
    (
        "a skipped cgroup dropped: the frontend switches first, the entry goes after",
        [doc(fe(VIP, B1, skipCgroups=[4242, 4343]))],
        doc(fe(VIP, B1, skipCgroups=[4343])),
        {
            "frontends": {f"service {VIP}:80/TCP": "retuned id 1 set 1 policy 0 flags 0 levels 0x20"},
            "skips-": [(1, 4242)],
        },
        2,
    ),
    (
        "a NodePort frontend is one entry, whatever the number of node addresses",
        [doc(nodeAddresses=[f"172.30.0.{i}" for i in range(1, 200)])],
        doc(fe("0.0.0.0", B1), nodeAddresses=[f"172.30.0.{i}" for i in range(1, 200)]),
        {
            "allocators": (2, 2, 1),
            "slots": {1: ["10.1.0.1:80"]},
            "members+": ["1:10.1.0.1:80"],
            "frontends": {"service 0.0.0.0:80/TCP": "added id 1 set 1 policy 0 flags 0 levels 0x0"},
        },
        4,
    ),
    (
        "the same frontend in two tiers is two entries",
        [doc(fe(VIP, B1))],
        doc(fe(VIP, B1), tiers={"localRedirect": [fe(VIP)]}),
        {
            "allocators": (3, 2, 1),
            "frontends": {f"localRedirect {VIP}:80/TCP": "added id 2 set 0 policy 0 flags 0 levels 0x0"},
        },
        2,
    ),
]


@pytest.mark.parametrize(
    ("description", "history", "desired", "expected", "elements"), ROWS, ids=[row[0] for row in ROWS]
)
def test_plan(
    description: str, history: list[dict[str, Any]], desired: dict[str, Any], expected: dict[str, Any], elements: int
) -> None:
    view = applied(*history)

    plan = plan_apply(view, parse_state(desired), level_of)

    assert writes(plan) == expected
    assert plan.elements == elements


def test_counts_are_derived_from_the_writes() -> None:
    view = applied(doc(fe(VIP, B1), fe("10.96.0.2", B1), fe("10.96.0.3", B1)))
    plan = plan_apply(view, parse_state(doc(fe(VIP, B2), fe("10.96.0.2", B1, qosLimit=1), fe("10.96.0.4"))), level_of)
    assert (plan.added, plan.swapped, plan.retuned, len(plan.removed), plan.unchanged) == (1, 1, 1, 1, 0)


def test_an_unchanged_frontend_costs_nothing_handed_in_again_rebuilt_or_moved() -> None:
    document = doc(fe(VIP, B1, policy="web"), fe("10.96.0.2", B2))
    state = parse_state(document)
    view = applied()
    commit(view, plan_apply(view, state))

    assert plan_apply(view, state).empty, "the same objects"
    assert plan_apply(view, parse_state(document)).empty, "equal objects, compared position by position"
    moved = parse_state(doc(fe("10.96.0.2", B2), fe(VIP, B1, policy="web")))
    assert plan_apply(view, moved).empty, "the same frontends in another order"
    commit(view, plan_upsert(view, abi.Tier.SERVICE, state.tiers.service[0]))
    assert plan_apply(view, parse_state(document)).empty, "entry by entry, after an upsert"


def test_a_duplicate_frontend_is_refused_on_every_path() -> None:
    view = applied(doc(fe(VIP, B1), fe("10.96.0.2", B2)))
    same_length = DesiredState.model_validate(doc(fe(VIP, B1), fe(VIP, B2)))
    longer = DesiredState.model_validate(doc(fe(VIP, B1), fe("10.96.0.2", B2), fe(VIP, B3)))

    for state in (same_length, longer):
        with pytest.raises(StateError, match=rf"tiers.service\[\d\] {VIP}:80/TCP: duplicate frontend"):
            plan_apply(view, state)


def test_a_torn_set_found_in_the_kernel_is_rewritten_under_a_new_set() -> None:
    view = KernelView(capacity=Capacity())
    view.frontends[(2, VIP, 80, "TCP")] = KernelFrontend(1, 1, 0, 0, 0, b"\xff" * 8, slots=2)
    view.next_frontend_id, view.next_set_id = 2, 2
    view.index()

    plan = plan_apply(view, parse_state(doc(fe(VIP, B1))))

    assert writes(plan)["frontends"] == {f"service {VIP}:80/TCP": "swapped id 1 set 2 policy 0 flags 0 levels 0x0"}


def test_names_nothing_references_are_retired_by_a_fresh_writers_first_apply() -> None:
    """A restarted agent is a new process: names left by earlier processes must still go."""
    view = KernelView(capacity=Capacity(), policy_names={1: "old", 2: "web"}, next_policy_id=3)
    view.frontends[(2, VIP, 80, "TCP")] = KernelFrontend(1, 0, 2, 0, 0, b"")
    view.index()

    plan = plan_apply(view, parse_state(doc(fe(VIP, policy="web"))))

    assert plan.policies_retired == [1]


def test_what_the_maps_cannot_hold_is_refused_before_any_write() -> None:
    small = Capacity(frontends=2, slots=8, policies=4)
    view = applied(doc(fe(VIP, B1, policy="a"), fe("10.96.0.2", policy="b")), capacity=small)
    before = (dict(view.frontends), dict(view.policy_names), view.next_frontend_id, view.next_policy_id)

    with pytest.raises(StateError, match=r"3 frontends would be more than the frontend map holds \(2\)"):
        plan_apply(view, DesiredState.model_validate(doc(fe(VIP), fe("10.96.0.2"), fe("10.96.0.3"))))
    with pytest.raises(StateError, match="the frontend map is full; nothing was written"):
        plan_upsert(view, abi.Tier.SERVICE, FrontendSpec.model_validate(fe("10.96.0.3")))
    with pytest.raises(StateError, match="5 policy names would be more than the policy map holds"):
        for name in "cde":
            commit(view, plan_upsert(view, abi.Tier.SERVICE, FrontendSpec.model_validate(fe(VIP, policy=name))))

    assert (view.frontends.keys(), view.next_frontend_id) == (before[0].keys(), before[2])


def test_incremental_upsert_and_remove_touch_one_frontend() -> None:
    view = applied(doc(fe(VIP, B1), fe("10.96.0.2", B2)))

    upsert = plan_upsert(view, abi.Tier.SERVICE, FrontendSpec.model_validate(fe(VIP, B1, B3)), level_of)
    remove = plan_remove(view, abi.Tier.SERVICE, "10.96.0.2", 80, "TCP")

    assert list(writes(upsert)["frontends"]) == [f"service {VIP}:80/TCP"] and upsert.unchanged == 0
    assert writes(remove) == {"removed": ["service 10.96.0.2:80/TCP"], "members-": ["2:10.1.0.2:80"]}


def test_garbage_is_held_once_while_a_layout_upgrade_is_under_way() -> None:
    view = applied(doc(fe(VIP, B1)), doc(fe(VIP, B2)))
    view.hold_garbage = True

    held = plan_apply(view, parse_state(doc(fe(VIP, B2))))
    commit(view, held)
    collected = plan_apply(view, parse_state(doc(fe(VIP, B2))))

    assert (held.garbage_sets, collected.garbage_sets) == ({}, {1: 1})


def test_names_that_cannot_all_fit_at_once_switch_first_and_are_written_after() -> None:
    """Upserts filled a 8-name map; a full apply naming 3 new names makes room by retiring the old
    ones as soon as the frontends no longer use them, then writes the new ones."""
    view = applied(doc(*(fe(f"10.96.0.{i}", policy=f"old{i}") for i in range(1, 5))), capacity=Capacity(policies=8))
    for i in range(5, 9):
        commit(
            view, plan_upsert(view, abi.Tier.SERVICE, FrontendSpec.model_validate(fe(f"10.96.0.{i}", policy=f"up{i}")))
        )
    assert len(view.policy_names) == 8

    plan = plan_apply(view, parse_state(doc(*(fe(f"10.96.0.{i}", policy=f"new{i}") for i in range(1, 4)))))

    assert plan.names_late and len(plan.policies_retired_late) == 8 and len(plan.policies_added) == 3
    commit(view, plan)
    assert sorted(view.policy_names.values()) == ["new1", "new2", "new3"]
