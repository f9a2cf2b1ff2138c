"""The map writer: read what the kernel holds, plan the difference, execute the plan.

The writer reads the kernel's state once when it starts (so a restarted agent adopts the pins and
never wipes them), keeps that view up to date as it writes, and writes only what differs. The
planning is pure and lives in datapath.lb.plan; this module does the I/O on both sides of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from datapath.lb import abi
from datapath.lb.cgroups import cgroup_level
from datapath.lb.codec import (
    BACKEND_SIZE,
    decode_address,
    decode_frontend,
    decode_frontend_key,
    decode_members,
    decode_policy_name,
    decode_sets,
    decode_skip_key,
    decode_u32,
    encode_address,
    encode_frontend,
    encode_frontend_key,
    encode_policy_name,
    member_keys,
    skip_key,
    slot_keys,
    split_backends,
    u32,
)
from datapath.lb.maps import LbMaps
from datapath.lb.plan import KernelFrontend, KernelView, WritePlan, commit, plan_apply, plan_remove, plan_upsert
from datapath.lb.state import Capacity, DesiredState, FrontendSpec, parse_state


@dataclass(frozen=True)
class ApplyReport:
    """What one reconcile did. `elements_written` counts every map update and delete issued."""

    added: int = 0
    swapped: int = 0  # backend set replaced
    retuned: int = 0  # options, policy or skipped cgroups changed, same backends
    removed: int = 0
    unchanged: int = 0
    elements_written: int = 0
    garbage_sets_deleted: int = 0
    nodes_added: int = 0
    nodes_removed: int = 0
    policies_retired: int = 0
    seconds: float = 0.0

    @classmethod
    def of(cls, plan: WritePlan, seconds: float) -> ApplyReport:
        return cls(
            added=plan.added,
            swapped=plan.swapped,
            retuned=plan.retuned,
            removed=len(plan.removed),
            unchanged=plan.unchanged,
            elements_written=plan.elements,
            garbage_sets_deleted=len(plan.garbage_sets),
            nodes_added=len(plan.nodes_added),
            nodes_removed=len(plan.nodes_removed),
            policies_retired=len(plan.policies_retired) + len(plan.policies_retired_late),
            seconds=seconds,
        )

    def summary(self) -> str:
        nodes = (
            f"; node addresses +{self.nodes_added} -{self.nodes_removed}"
            if self.nodes_added or self.nodes_removed
            else ""
        )
        return (
            f"{self.added} added, {self.swapped} backend sets swapped, {self.retuned} options changed, "
            f"{self.removed} removed, {self.unchanged} unchanged{nodes}; {self.elements_written} map elements "
            f"written in {self.seconds * 1000:.1f} ms"
        )


def read_view(maps: LbMaps, hold_garbage: bool = False) -> KernelView:
    """What the kernel holds: frontends, sets, membership, skips, names, node addresses, allocators.

    A set missing a slot, or membership or skip entries that do not match their frontend, make the
    entry inconsistent: it never equals a desired frontend, so the next plan rewrites it."""
    keys, values, count = maps.backends.read_all()
    sets = decode_sets(keys, values, count, maps.backends.value_size)
    keys, _values, count = maps.members.read_all()
    members = decode_members(keys, count)
    skips: dict[int, dict[int, int]] = {}
    for key, value in maps.skips.items():
        frontend_id, cgroup_id = decode_skip_key(key)
        skips.setdefault(frontend_id, {})[cgroup_id] = value[0]
    view = KernelView(capacity=maps.capacity(), hold_garbage=hold_garbage)
    for key, raw in maps.frontends.items():
        entry = decode_frontend(raw)
        slots = sets.get(entry.set_id, {})
        if len(slots) == entry.set_size and (not slots or max(slots) == entry.set_size - 1):  # exactly 0..n-1
            blob, slot_count = b"".join([slots[i] for i in range(entry.set_size)]), -1
        else:  # a torn set (crash mid-write): never equal to anything, so it gets replaced
            blob, slot_count = b"\xff" * BACKEND_SIZE, max(slots, default=-1) + 1
        found = members.get(entry.frontend_id, set())
        skipped = skips.get(entry.frontend_id, {})
        frontend = KernelFrontend(
            entry.frontend_id,
            entry.set_id,
            entry.policy_id,
            entry.affinity_timeout_s,
            entry.qos_limit,
            blob,
            entry.flags,
            skipped,
            slot_count,
        )
        if not (slot_count < 0 and found == set(split_backends(blob)) and frontend.skip_levels == entry.skip_levels):
            frontend.members = frozenset(found)
            frontend.slots = max(slot_count, frontend.count)  # marks it inconsistent
        view.frontends[decode_frontend_key(key)] = frontend
    known = {frontend.frontend_id for frontend in view.frontends.values()}
    referenced = {frontend.set_id for frontend in view.frontends.values()}
    view.garbage_sets = {set_id: max(slots) + 1 for set_id, slots in sets.items() if set_id not in referenced and slots}
    view.stray_members = [
        member_keys(fid, [backend]) for fid, found in members.items() if fid not in known for backend in found
    ]
    view.stray_skips = [skip_key(fid, cgroup) for fid, found in skips.items() if fid not in known for cgroup in found]
    view.policy_names = {decode_u32(key): decode_policy_name(value) for key, value in maps.policies.items()}
    view.node_addresses = frozenset(decode_address(key) for key, _value in maps.nodes.items())
    meta = maps.read_meta()
    # The allocators never go backwards, even if the meta element was lost, and never hand out an id
    # that an entry of an older layout (still read by the old programs during an upgrade) uses.
    view.next_frontend_id = max(meta.next_frontend_id, max(known | set(members) | set(skips), default=0) + 1, 1)
    view.next_set_id = max(meta.next_set_id, max(referenced | set(sets), default=0) + 1, 1)
    view.next_policy_id = max(meta.next_policy_id, max(view.policy_names, default=0) + 1, 1)
    return view.index()


def execute(maps: LbMaps, plan: WritePlan) -> None:
    """Issue a plan's writes in its order: garbage; ids; names and node addresses; sets, members
    and skips; the frontend switches; then what the switches left unreferenced."""
    maps.backends.delete_batch(b"".join(slot_keys(set_id, slots) for set_id, slots in plan.garbage_sets.items()))
    maps.members.delete_batch(b"".join(plan.stray_members))
    maps.skips.delete_batch(b"".join(plan.stray_skips))
    if plan.allocators is not None:
        maps.write_meta(*plan.allocators)
    maps.policies.delete_batch(b"".join(u32(policy_id) for policy_id in plan.policies_retired))
    if not plan.names_late:
        _write_names(maps, plan)
    maps.nodes.delete_batch(b"".join(encode_address(ip) for ip in plan.nodes_removed))
    maps.nodes.update_batch(b"".join(encode_address(ip) for ip in plan.nodes_added), b"\1" * len(plan.nodes_added))
    maps.backends.update_batch(b"".join(plan.slot_keys), b"".join(plan.slot_values))
    members = b"".join(plan.members_added)
    maps.members.update_batch(members, b"\1" * (len(members) // maps.members.key_size))
    maps.skips.update_batch(
        b"".join(key for key, _level in plan.skips_added), bytes(level for _key, level in plan.skips_added)
    )
    maps.frontends.update_batch(
        b"".join(encode_frontend_key(write.ref) for write in plan.writes),
        b"".join(encode_frontend(write.new.value()) for write in plan.writes),
    )
    maps.frontends.delete_batch(b"".join(encode_frontend_key(ref) for ref in plan.removed))
    maps.members.delete_batch(b"".join(plan.members_removed))
    maps.skips.delete_batch(b"".join(plan.skips_removed))
    maps.qos.delete_batch(b"".join(u32(frontend_id) for frontend_id in plan.qos_removed))
    if plan.names_late:
        maps.policies.delete_batch(b"".join(u32(policy_id) for policy_id in plan.policies_retired_late))
        _write_names(maps, plan)


def _write_names(maps: LbMaps, plan: WritePlan) -> None:
    maps.policies.update_batch(
        b"".join(u32(policy_id) for policy_id in plan.policies_added),
        b"".join(encode_policy_name(name) for name in plan.policies_added.values()),
    )


class MapWriter:
    """Diff-and-batch writer over one node's pinned maps."""

    def __init__(self, maps: LbMaps, collect_adopted_garbage: bool = True) -> None:
        self.maps = maps
        self.view = read_view(maps, hold_garbage=not collect_adopted_garbage)
        self._levels: dict[int, int] = {}

    @property
    def capacity(self) -> Capacity:
        return self.view.capacity

    def level_of(self, cgroup_id: int) -> int:
        """A cgroup's level never changes, and a gone cgroup never comes back: cache both."""
        if cgroup_id not in self._levels:
            self._levels[cgroup_id] = cgroup_level(cgroup_id, unknown=abi.LEVEL_UNKNOWN)
        return self._levels[cgroup_id]

    def reread(self) -> None:
        """Read the kernel's state again (after something else may have written the maps)."""
        self.view = read_view(self.maps, hold_garbage=self.view.hold_garbage)

    def apply(self, state: DesiredState) -> ApplyReport:
        """Make the maps hold exactly `state` (validated already); return what was done."""
        started = time.perf_counter()
        return self._run(plan_apply(self.view, state, self.level_of), started)

    def upsert(self, tier: abi.Tier, spec: FrontendSpec) -> ApplyReport:
        """Add or change one frontend of one tier, leaving every other entry alone."""
        started = time.perf_counter()
        parse_state({"tiers": {tier.label: [spec.document()]}}, self.capacity)
        return self._run(plan_upsert(self.view, tier, spec, self.level_of), started)

    def remove(self, tier: abi.Tier, ip: str, port: int, protocol: str) -> ApplyReport:
        started = time.perf_counter()
        return self._run(plan_remove(self.view, tier, ip, port, protocol), started)

    def _run(self, plan: WritePlan, started: float) -> ApplyReport:
        if not plan.empty:
            try:
                execute(self.maps, plan)
            except BaseException:  # a write failed half-way: what the kernel holds is what counts now
                self.reread()
                raise
        commit(self.view, plan)
        return ApplyReport.of(plan, time.perf_counter() - started)
