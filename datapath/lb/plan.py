"""The write plan: from what the kernel holds (a KernelView) and a desired state, the exact map
writes that reconcile the two. Pure: no maps, no syscalls. tests/datapath/test_plan.py table-tests
it without root; datapath.lb.writer reads the view from the kernel, executes plans and commits them.

The rules the plan encodes (docs/datapath.md):
- a frontend whose backends change gets a new backend set under a fresh set id; its entry switches
  in one update after the set and its new members are written, and its old members go after;
- sets no longer referenced are deleted at the start of the next plan (`hold_garbage` defers that
  once, while a layout upgrade's old programs still read them);
- ids are never reused: the allocators are written to the kernel before any entry uses them;
- a policy name outlives its last frontend by one full apply (names unused when a writer adopts the
  maps had their grace already);
- nothing is planned that the maps cannot hold: the plan refuses instead, before any write.

An unchanged frontend costs one dict lookup and one comparison: the view remembers the spec each
entry was written from, and a spec that is the same object, or equal field by field, is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from itertools import compress, count
from operator import is_not, ne
from types import MappingProxyType

from datapath.errors import StateError
from datapath.lb import abi
from datapath.lb.codec import (
    BACKEND_SIZE,
    MEMBER_KEY,
    FrontendRef,
    FrontendValue,
    encode_backends,
    member_keys,
    skip_key,
    slot_keys,
    split_backends,
)
from datapath.lb.state import Capacity, DesiredState, FrontendSpec, entry_path

NO_SKIPS: Mapping[int, int] = MappingProxyType({})
CgroupLevels = Callable[[int], int]  # cgroup id -> its level in the hierarchy, LEVEL_UNKNOWN when gone


def unknown_levels(_cgroup_id: int) -> int:
    return abi.LEVEL_UNKNOWN


@dataclass
class KernelFrontend:
    """One frontend entry as the kernel holds it, with its backend set flattened to bytes."""

    frontend_id: int
    set_id: int
    policy_id: int
    affinity_timeout_s: int
    qos_limit: int
    backends: bytes  # the set's backend values in index order, BACKEND_SIZE bytes each
    flags: int = 0
    skips: Mapping[int, int] = field(default_factory=lambda: NO_SKIPS)  # skipped cgroup id -> its level
    slots: int = -1  # slot entries of the set in the kernel (-1: exactly the backends)
    members: frozenset[bytes] | None = None  # membership entries found, when not exactly the backends
    spec: FrontendSpec | None = None  # the spec this entry was written from (None: adopted)

    @property
    def count(self) -> int:
        return len(self.backends) // BACKEND_SIZE

    def slot_count(self) -> int:
        return self.count if self.slots < 0 else self.slots

    def member_set(self) -> set[bytes]:
        return set(split_backends(self.backends)) if self.members is None else set(self.members)

    @property
    def consistent(self) -> bool:
        return self.slots < 0 and self.members is None

    @property
    def skip_levels(self) -> int:
        return _levels_mask(self.skips.values())

    def value(self) -> FrontendValue:
        return FrontendValue(
            self.frontend_id,
            self.set_id,
            self.count,
            self.policy_id,
            self.affinity_timeout_s,
            self.qos_limit,
            self.flags,
            self.skip_levels,
        )


def _levels_mask(levels: Iterable[int]) -> int:
    mask = 0
    for level in levels:
        if level < abi.CGROUP_LEVELS:
            mask |= 1 << level
    return mask


@dataclass
class KernelView:
    """What the kernel maps hold, as the writer last read or wrote them."""

    capacity: Capacity
    frontends: dict[FrontendRef, KernelFrontend] = field(default_factory=dict)
    policy_names: dict[int, str] = field(default_factory=dict)
    node_addresses: frozenset[str] = frozenset()
    garbage_sets: dict[int, int] = field(default_factory=dict)  # set id -> slots, no longer referenced
    stray_members: list[bytes] = field(default_factory=list)  # member keys of frontends that are gone
    stray_skips: list[bytes] = field(default_factory=list)  # skip keys of frontends that are gone
    next_frontend_id: int = 1
    next_set_id: int = 1
    next_policy_id: int = 1
    hold_garbage: bool = False  # keep garbage through the next plan (a layout upgrade is under way)
    # Each tier's frontends as the last full apply named them, in order: where to look for changes.
    last_tiers: dict[abi.Tier, tuple[FrontendSpec, ...]] = field(default_factory=dict)
    # Derived from the above by index(), then kept up to date by commit():
    policy_ids: dict[str, int] = field(default_factory=dict)
    policy_users: dict[int, int] = field(default_factory=dict)  # policy id -> frontends naming it
    unused_policies: set[int] = field(default_factory=set)  # in their one-apply grace
    slots_in_use: int = 0

    def index(self) -> KernelView:
        """Derive the indexes from the frontends and names. Names that no frontend uses are taken to
        have had their grace already: the next full apply retires them."""
        self.policy_ids = {name: policy_id for policy_id, name in self.policy_names.items()}
        self.policy_users = {}
        for frontend in self.frontends.values():
            if frontend.policy_id:
                self.policy_users[frontend.policy_id] = self.policy_users.get(frontend.policy_id, 0) + 1
        self.unused_policies = {policy_id for policy_id in self.policy_names if policy_id not in self.policy_users}
        self.slots_in_use = sum(frontend.slot_count() for frontend in self.frontends.values())
        return self


class Change(Enum):
    ADDED = "added"
    SWAPPED = "swapped"  # new backend set
    RETUNED = "retuned"  # options, policy or skipped cgroups changed; same backends


@dataclass
class FrontendWrite:
    ref: FrontendRef
    new: KernelFrontend
    old: KernelFrontend | None
    change: Change


@dataclass
class WritePlan:
    """Every map write of one reconcile, in the order `execute` issues them."""

    desired: int = 0  # frontends the request named (for the unchanged count)
    tiers: dict[abi.Tier, tuple[FrontendSpec, ...]] = field(default_factory=dict)  # what a full apply named
    garbage_sets: dict[int, int] = field(default_factory=dict)  # deleted first
    stray_members: list[bytes] = field(default_factory=list)
    stray_skips: list[bytes] = field(default_factory=list)
    allocators: tuple[int, int, int] | None = None  # reserved before anything uses the ids
    policies_retired: list[int] = field(default_factory=list)  # before new names: makes room
    policies_added: dict[int, str] = field(default_factory=dict)
    # When old and new names cannot all be in the map at once (upserts filled it past half), names
    # that go unused are retired after the frontends switch, without their grace, and the new names
    # are written after that: events of that instant decode as policy#ID.
    names_late: bool = False
    policies_retired_late: list[int] = field(default_factory=list)
    nodes_removed: list[str] = field(default_factory=list)
    nodes_added: list[str] = field(default_factory=list)
    slot_keys: list[bytes] = field(default_factory=list)
    slot_values: list[bytes] = field(default_factory=list)
    members_added: list[bytes] = field(default_factory=list)  # runs of concatenated member keys
    skips_added: list[tuple[bytes, int]] = field(default_factory=list)  # (key, level)
    writes: list[FrontendWrite] = field(default_factory=list)  # each frontend switches in one update
    removed: dict[FrontendRef, KernelFrontend] = field(default_factory=dict)
    members_removed: list[bytes] = field(default_factory=list)  # after the switch; runs of keys
    skips_removed: list[bytes] = field(default_factory=list)
    respecified: list[tuple[FrontendRef, FrontendSpec]] = field(default_factory=list)  # equal, new object
    unused_policies: set[int] = field(default_factory=set)  # the view's grace set after this plan

    def _count(self, change: Change) -> int:
        return sum(1 for write in self.writes if write.change is change)

    @property
    def added(self) -> int:
        return self._count(Change.ADDED)

    @property
    def swapped(self) -> int:
        return self._count(Change.SWAPPED)

    @property
    def retuned(self) -> int:
        return self._count(Change.RETUNED)

    @property
    def unchanged(self) -> int:
        return self.desired - len(self.writes)

    @property
    def qos_removed(self) -> list[int]:
        """QoS windows of removed frontends (only a frontend with a limit can have one)."""
        return [old.frontend_id for old in self.removed.values() if old.qos_limit]

    @property
    def slots_written(self) -> int:
        return sum(len(keys) for keys in self.slot_keys) // 8

    @property
    def garbage_slots(self) -> int:
        return sum(self.garbage_sets.values())

    @property
    def elements(self) -> int:
        """Every map element this plan updates or deletes."""
        return (
            self.garbage_slots
            + len(self.stray_members)
            + len(self.stray_skips)
            + (self.allocators is not None)
            + len(self.policies_retired)
            + len(self.policies_retired_late)
            + len(self.policies_added)
            + len(self.nodes_removed)
            + len(self.nodes_added)
            + self.slots_written
            + _keys(self.members_added)
            + len(self.skips_added)
            + len(self.writes)
            + len(self.removed)
            + _keys(self.members_removed)
            + len(self.skips_removed)
            + len(self.qos_removed)
        )

    @property
    def empty(self) -> bool:
        return self.elements == 0


class _Planner:
    """Builds one WritePlan against a view, allocating ids from copies of its allocators."""

    def __init__(self, view: KernelView, level_of: CgroupLevels) -> None:
        self.view = view
        self.level_of = level_of
        self.plan = WritePlan()
        self.next_frontend_id = view.next_frontend_id
        self.next_set_id = view.next_set_id
        self.next_policy_id = view.next_policy_id
        self.new_policy_ids: dict[str, int] = {}
        self.user_changes: dict[int, int] = {}
        self.slots_added = 0
        if not view.hold_garbage:
            self.plan.garbage_sets = dict(view.garbage_sets)
            self.plan.stray_members = list(view.stray_members)
            self.plan.stray_skips = list(view.stray_skips)

    def policy_id(self, name: str) -> int:
        if not name:
            return 0
        known = self.view.policy_ids.get(name) or self.new_policy_ids.get(name)
        if known:
            return known
        size = len(name.encode())
        if size >= abi.POLICY_NAME_LEN:  # parse_state refuses it; a state built in Python may not have been
            raise StateError(
                f"invalid desired state: policy: {size} bytes of UTF-8, more than the {abi.POLICY_NAME_LEN - 1} "
                "a name can hold"
            )
        self.new_policy_ids[name] = self.next_policy_id
        self.next_policy_id += 1
        return self.new_policy_ids[name]

    def _use(self, policy_id: int, delta: int) -> None:
        if policy_id:
            self.user_changes[policy_id] = self.user_changes.get(policy_id, 0) + delta

    def _new_set(self, blob: bytes) -> int:
        if not blob:
            return 0
        self.next_set_id += 1
        return self.next_set_id - 1

    def frontend(self, ref: FrontendRef, spec: FrontendSpec, old: KernelFrontend | None) -> None:
        """Plan one desired frontend against the kernel's entry for it (None: there is none)."""
        blob = encode_backends(spec.backends)
        options = (
            self.policy_id(spec.policy),
            spec.affinity_timeout_seconds,
            spec.qos_limit,
            abi.FrontendFlag.REJECT_WHEN_EMPTY if spec.reject_when_empty else 0,
            {cgroup_id: self.level_of(cgroup_id) for cgroup_id in spec.skip_cgroups}
            if spec.skip_cgroups
            else NO_SKIPS,
        )
        if old is None:
            change, frontend_id, set_id = Change.ADDED, self.next_frontend_id, self._new_set(blob)
            self.next_frontend_id += 1
        elif old.backends != blob or not old.consistent:
            change, frontend_id, set_id = Change.SWAPPED, old.frontend_id, self._new_set(blob)
        elif (old.policy_id, old.affinity_timeout_s, old.qos_limit, old.flags, old.skips) != options:
            change, frontend_id, set_id = Change.RETUNED, old.frontend_id, old.set_id
        else:
            self.plan.respecified.append((ref, spec))
            return
        policy_id, affinity, qos, flags, skips = options
        new = KernelFrontend(frontend_id, set_id, policy_id, affinity, qos, blob, flags, skips, spec=spec)
        plan = self.plan
        if set_id and (old is None or set_id != old.set_id):
            plan.slot_keys.append(slot_keys(set_id, new.count))
            plan.slot_values.append(blob)
            self.slots_added += new.count
        if old is None:
            plan.members_added.append(member_keys(frontend_id, split_backends(blob)))
        else:
            new_members, old_members = set(split_backends(blob)), old.member_set()
            if new_members != old_members:
                plan.members_added.append(member_keys(frontend_id, new_members - old_members))
                plan.members_removed.append(member_keys(frontend_id, old_members - new_members))
        old_skips = old.skips if old is not None else NO_SKIPS
        if skips or old_skips:
            plan.skips_added.extend(
                (skip_key(frontend_id, cgroup_id), level)
                for cgroup_id, level in skips.items()
                if old_skips.get(cgroup_id) != level
            )
            plan.skips_removed.extend(
                skip_key(frontend_id, cgroup_id) for cgroup_id in old_skips if cgroup_id not in skips
            )
        self._use(policy_id, 1)
        if old is not None:
            self._use(old.policy_id, -1)
        plan.writes.append(FrontendWrite(ref, new, old, change))

    def consider(self, tier: abi.Tier, index: int, spec: FrontendSpec) -> FrontendRef:
        """Plan one desired frontend unless the kernel's entry was written from an equal spec."""
        ref: FrontendRef = (int(tier), spec.ip, spec.port, spec.protocol)
        old = self.view.frontends.get(ref)
        if old is not None and old.spec is not None:
            if old.spec is spec:
                return ref
            if vars(old.spec) == vars(spec):  # see positional()
                self.plan.respecified.append((ref, spec))
                return ref
        self.frontend(ref, spec, old)
        return ref

    def by_entry(self, tier: abi.Tier, specs: tuple[FrontendSpec, ...]) -> None:
        desired: set[FrontendRef] = set()
        for index, spec in enumerate(specs):
            ref = self.consider(tier, index, spec)
            if ref in desired:
                self.duplicate(tier, index, spec)
            desired.add(ref)
        number = int(tier)
        for ref in [ref for ref in self.view.frontends if ref[0] == number and ref not in desired]:
            self.remove(ref)

    def positional(self, tier: abi.Tier, last: tuple[FrontendSpec, ...], specs: tuple[FrontendSpec, ...]) -> None:
        """Plan only the positions whose spec differs from the last full apply's: first by identity,
        then by value. A pydantic model's `__dict__` holds exactly its field values (these models are
        frozen, with no extras and no private attributes), so comparing those dicts finds every
        change; both passes run in C."""
        changed = [] if last is specs else list(compress(count(), map(is_not, last, specs)))
        if len(changed) > len(specs) // 4:  # mostly rebuilt objects: compare every position by value
            changed = list(compress(count(), map(ne, map(vars, last), map(vars, specs))))
        else:
            changed = [index for index in changed if vars(last[index]) != vars(specs[index])]
        number = int(tier)
        gone = {(number, last[index].ip, last[index].port, last[index].protocol) for index in changed}
        came: dict[FrontendRef, int] = {}
        for index in changed:
            ref = self.consider(tier, index, specs[index])
            # The unchanged positions hold every other entry of this tier: a changed position that
            # names one of them, or another changed position's, is a duplicate.
            if ref in came or (ref in self.view.frontends and ref not in gone):
                self.duplicate(tier, index, specs[index])
            came[ref] = index
        for ref in gone - came.keys():
            self.remove(ref)

    def duplicate(self, tier: abi.Tier, index: int, spec: FrontendSpec) -> None:
        raise StateError(f"invalid desired state: {entry_path(tier, index)} {spec.label}: duplicate frontend")

    def remove(self, ref: FrontendRef) -> None:
        old = self.view.frontends[ref]
        self.plan.removed[ref] = old
        self.plan.members_removed.append(member_keys(old.frontend_id, old.member_set()))
        self.plan.skips_removed.extend(skip_key(old.frontend_id, cgroup_id) for cgroup_id in old.skips)
        self._use(old.policy_id, -1)

    def finish(self, full: bool) -> WritePlan:
        """Policy names, allocators and capacity; refuse (StateError) what the maps cannot hold."""
        view, plan = self.view, self.plan
        plan.policies_added = {policy_id: name for name, policy_id in self.new_policy_ids.items()}
        users = {
            policy_id: view.policy_users.get(policy_id, 0) + delta for policy_id, delta in self.user_changes.items()
        }
        newly_unused = {policy_id for policy_id, count in users.items() if count == 0}
        revived = {policy_id for policy_id, count in users.items() if count > 0}
        if full:  # the grace ends: names unused at the previous full apply and still unused go
            plan.policies_retired = sorted(view.unused_policies - revived)
            plan.unused_policies = newly_unused - set(plan.policies_retired)
        else:
            plan.unused_policies = (view.unused_policies - revived) | newly_unused
        allocators = (self.next_frontend_id, self.next_set_id, self.next_policy_id)
        if allocators != (view.next_frontend_id, view.next_set_id, view.next_policy_id):
            plan.allocators = allocators
        self._check_capacity(full)
        return plan

    def _check_capacity(self, full: bool) -> None:
        view, plan, capacity = self.view, self.plan, self.view.capacity
        frontends = len(view.frontends) + plan.added - len(plan.removed)
        if frontends > capacity.frontends:
            raise StateError(f"{frontends} frontends would be more than the frontend map holds ({capacity.frontends})")
        held = sum(view.garbage_sets.values()) if view.hold_garbage else 0  # the old programs' sets
        slots = view.slots_in_use + held + self.slots_added
        if slots > capacity.slots:
            raise StateError(f"{slots} backend slots would be more than the backend map holds ({capacity.slots})")
        names = len(view.policy_names) - len(plan.policies_retired) + len(plan.policies_added)
        if names > capacity.policies and full:  # room only once the frontends no longer use the old names
            plan.names_late, plan.policies_retired_late = True, sorted(plan.unused_policies)
            plan.unused_policies = set()
            names -= len(plan.policies_retired_late)
        if names > capacity.policies:
            raise StateError(
                f"{names} policy names would be more than the policy map holds ({capacity.policies}); "
                "a full apply retires the unused ones"
            )


def _keys(runs: list[bytes]) -> int:
    """Member keys in runs of concatenated keys."""
    return sum(len(run) for run in runs) // MEMBER_KEY.size


def plan_apply(view: KernelView, state: DesiredState, level_of: CgroupLevels = unknown_levels) -> WritePlan:
    """The writes that make the kernel hold exactly `state`.

    A tier whose frontends come in the same number as at the last full apply is compared position by
    position at C speed (the field values of each spec); only positions that differ are planned, and
    an object handed in again costs nothing. Other tiers are diffed entry by entry."""
    planner = _Planner(view, level_of)
    for tier in abi.Tier:
        specs = state.tier(tier)
        planner.plan.tiers[tier] = specs
        planner.plan.desired += len(specs)
        last = view.last_tiers.get(tier)
        if last is not None and len(last) == len(specs):
            planner.positional(tier, last, specs)
        else:
            planner.by_entry(tier, specs)
    nodes = frozenset(state.node_addresses)
    planner.plan.nodes_removed = sorted(view.node_addresses - nodes)
    planner.plan.nodes_added = sorted(nodes - view.node_addresses)
    return planner.finish(full=True)


def plan_upsert(
    view: KernelView, tier: abi.Tier, spec: FrontendSpec, level_of: CgroupLevels = unknown_levels
) -> WritePlan:
    """The writes that add or change one frontend of one tier (validated already), and nothing else."""
    ref = (int(tier), spec.ip, spec.port, spec.protocol)
    old = view.frontends.get(ref)
    where = f"{entry_path(tier, 0)} {spec.label}"
    capacity = view.capacity
    backends = view.slots_in_use - (old.slot_count() if old else 0) + len(spec.backends)
    if backends > capacity.backends:
        raise StateError(
            f"{where}: {backends} backends in all would be more than the backend map holds "
            f"({capacity.backends}); nothing was written"
        )
    if old is None and len(view.frontends) >= capacity.frontends:
        raise StateError(f"{where}: the frontend map is full; nothing was written")
    planner = _Planner(view, level_of)
    planner.frontend(ref, spec, old)
    planner.plan.desired = 1
    try:
        return planner.finish(full=False)
    except StateError as error:
        raise StateError(f"{where}: {error}; nothing was written") from None


def plan_remove(view: KernelView, tier: abi.Tier, ip: str, port: int, protocol: str) -> WritePlan:
    """The writes that remove one frontend of one tier (none when it is not there)."""
    planner = _Planner(view, unknown_levels)
    ref = (int(tier), ip, port, protocol)
    if ref in view.frontends:
        planner.remove(ref)
    return planner.finish(full=False)


def commit(view: KernelView, plan: WritePlan) -> None:
    """Bring the view up to date with an executed plan."""
    view.garbage_sets = {} if not view.hold_garbage else view.garbage_sets
    if not view.hold_garbage:
        view.stray_members, view.stray_skips = [], []
    view.hold_garbage = False
    if plan.allocators is not None:
        view.next_frontend_id, view.next_set_id, view.next_policy_id = plan.allocators
    for policy_id in [*plan.policies_retired, *plan.policies_retired_late]:
        view.policy_ids.pop(view.policy_names.pop(policy_id), None)
    for policy_id, name in plan.policies_added.items():
        view.policy_names[policy_id] = name
        view.policy_ids[name] = policy_id
    view.unused_policies = plan.unused_policies
    view.node_addresses = (view.node_addresses - set(plan.nodes_removed)) | set(plan.nodes_added)
    for write in plan.writes:
        old = write.old
        view.slots_in_use += write.new.slot_count() - (old.slot_count() if old is not None else 0)
        if old is not None and old.set_id and old.set_id != write.new.set_id:
            view.garbage_sets[old.set_id] = old.slot_count()
        view.frontends[write.ref] = write.new
        _count_user(view, write.new.policy_id, 1)
        if old is not None:
            _count_user(view, old.policy_id, -1)
    for ref, old in plan.removed.items():
        del view.frontends[ref]
        view.slots_in_use -= old.slot_count()
        if old.set_id:
            view.garbage_sets[old.set_id] = old.slot_count()
        _count_user(view, old.policy_id, -1)
    for ref, spec in plan.respecified:
        view.frontends[ref].spec = spec
    if plan.tiers:
        view.last_tiers = dict(plan.tiers)
    else:  # one frontend changed by upsert() or remove(): its tier is diffed entry by entry next time
        for write in plan.writes:
            view.last_tiers.pop(abi.Tier(write.ref[0]), None)
        for ref in plan.removed:
            view.last_tiers.pop(abi.Tier(ref[0]), None)


def _count_user(view: KernelView, policy_id: int, delta: int) -> None:
    if policy_id:
        count = view.policy_users.get(policy_id, 0) + delta
        if count:
            view.policy_users[policy_id] = count
        else:
            view.policy_users.pop(policy_id, None)
