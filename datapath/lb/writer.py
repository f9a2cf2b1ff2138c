"""The map writer: reconcile the kernel maps to a desired state by diff and batch operations.

The writer reads what the kernel holds when it starts (so a restarted agent adopts the pins and
never wipes them), keeps that view up to date as it writes, and writes only what differs.

A frontend whose backends change gets a NEW backend set under a fresh set id; then its frontend
entry is replaced in one element update, so a concurrent connect() sees the old set or the new
one, never a mix and never an empty set. The old set is deleted at the start of the next
reconcile (the BPF side re-reads the frontend should a set vanish under it anyway). Membership
entries (frontend id, backend) are added before a switch and removed after it; the BPF program
honours an affinity entry only for a member, so a removed backend is never chosen again.
"""

from __future__ import annotations

import socket
import struct
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

from datapath.errors import StateError
from datapath.lb import abi
from datapath.lb.maps import LbMaps
from datapath.lb.state import TIER_NAMES, Capacity, DesiredState, FrontendSpec, entry_path, parse_state

BACKEND_SIZE = abi.BACKEND.size
_PORT = struct.Struct("!H")
_SET_SLOT = struct.Struct("=II")
_U32_FROM = abi.U32.unpack_from


def slot_keys(set_id: int, count: int) -> bytes:
    """The keys (set_id, 0) .. (set_id, count-1), packed in one go."""
    keys = array("I", [set_id]) * (2 * count)
    keys[1::2] = array("I", range(count))
    return keys.tobytes()


@dataclass
class KernelFrontend:
    """One frontend entry as the kernel holds it, with its backend set flattened to bytes."""

    frontend_id: int
    set_id: int
    policy_id: int
    affinity_timeout_s: int
    qos_limit: int
    backends: bytes  # the set's backend values in index order, BACKEND_SIZE bytes each
    slots: int = -1  # slot entries of the set in the kernel (-1: exactly the backends)
    members: frozenset[bytes] | None = None  # membership entries found, when not exactly the backends

    def slot_count(self) -> int:
        return len(self.backends) // BACKEND_SIZE if self.slots < 0 else self.slots

    def member_set(self) -> set[bytes]:
        return set(split_backends(self.backends)) if self.members is None else set(self.members)

    @property
    def consistent(self) -> bool:
        return self.slots < 0 and self.members is None

    def value(self) -> bytes:
        return abi.FRONTEND.pack(
            self.frontend_id,
            self.set_id,
            len(self.backends) // BACKEND_SIZE,
            self.policy_id,
            self.affinity_timeout_s,
            self.qos_limit,
        )


@dataclass
class ApplyReport:
    """What one reconcile did. `elements_written` counts every map update and delete issued."""

    added: int = 0
    swapped: int = 0  # backend set replaced
    retuned: int = 0  # options or policy changed, same backends
    removed: int = 0
    unchanged: int = 0
    elements_written: int = 0
    garbage_sets_deleted: int = 0
    seconds: float = 0.0
    changed_keys: list[bytes] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.added} added, {self.swapped} backend sets swapped, {self.retuned} options changed, "
            f"{self.removed} removed, {self.unchanged} unchanged; {self.elements_written} map elements "
            f"written in {self.seconds * 1000:.1f} ms"
        )


def frontend_key(tier: abi.Tier | int, ip: str, port: int, protocol: str) -> bytes:
    return abi.FRONTEND_KEY.pack(socket.inet_aton(ip), _PORT.pack(port), abi.PROTOCOLS[protocol], int(tier))


def backend_bytes(spec: FrontendSpec) -> bytes:
    inet_aton = socket.inet_aton
    port = _PORT.pack
    return b"".join([inet_aton(b.ip) + port(b.port) + b"\0\0" for b in spec.backends])


def split_backends(blob: bytes) -> list[bytes]:
    return [blob[i : i + BACKEND_SIZE] for i in range(0, len(blob), BACKEND_SIZE)]


class MapWriter:
    """Diff-and-batch writer over one node's pinned maps."""

    def __init__(self, maps: LbMaps, collect_adopted_garbage: bool = True) -> None:
        self.maps = maps
        self._hold_garbage = not collect_adopted_garbage
        self.capacity = Capacity(
            frontends=maps.frontends.max_entries,
            slots=maps.backends.max_entries,
            policies=maps.policies.max_entries,
        )
        self.frontends: dict[bytes, KernelFrontend] = {}
        self.garbage_sets: dict[int, int] = {}  # set id -> slots, no longer referenced
        self.policy_ids: dict[str, int] = {}
        self.policy_names: dict[int, str] = {}
        self.next_frontend_id = 1
        self.next_set_id = 1
        self.next_policy_id = 1
        self._stray_members: dict[int, set[bytes]] = {}
        self._unused_policies: set[int] = set()
        self.backends_in_use = 0  # slots the current sets occupy, for the capacity checks of upsert()
        self.adopt()

    # -- reading the kernel --------------------------------------------------------------------

    def adopt(self) -> None:
        """(Re)read the kernel's state: frontends, sets, membership, policy names, id allocators."""
        maps = self.maps
        sets: dict[int, dict[int, bytes]] = {}
        keys, values, count = maps.backends.read_all()
        ids = memoryview(keys).cast("I").tolist()
        width = maps.backends.value_size
        for i in range(count):
            slots = sets.get(ids[2 * i])
            if slots is None:
                slots = sets[ids[2 * i]] = {}
            slots[ids[2 * i + 1]] = values[i * width : i * width + BACKEND_SIZE]
        members: dict[int, set[bytes]] = {}
        keys, _values, count = maps.members.read_all()
        member_size = maps.members.key_size
        for i in range(count):
            key = keys[i * member_size : (i + 1) * member_size]
            found = members.get(_U32_FROM(key, 0)[0])
            if found is None:
                found = members[_U32_FROM(key, 0)[0]] = set()
            found.add(key[4:])
        self.frontends = {}
        max_frontend = max_set = 0
        for key, value in maps.frontends.items():
            frontend_id, set_id, count, policy_id, affinity, qos = abi.FRONTEND.unpack(value)
            slots = sets.get(set_id, {})
            if len(slots) == count and all(i in slots for i in range(count)):
                blob, slot_count = b"".join(slots[i] for i in range(count)), -1
            else:  # a torn set (crash mid-write): never equal to anything, so it gets replaced
                blob, slot_count = b"\xff" * BACKEND_SIZE, max(slots, default=-1) + 1
            found = members.get(frontend_id, set())
            exact = slot_count < 0 and found == set(split_backends(blob))
            self.frontends[key] = KernelFrontend(
                frontend_id, set_id, policy_id, affinity, qos, blob, slot_count, None if exact else frozenset(found)
            )
            max_frontend, max_set = max(max_frontend, frontend_id), max(max_set, set_id)
        self.backends_in_use = sum(frontend.slot_count() for frontend in self.frontends.values())
        referenced = {frontend.set_id for frontend in self.frontends.values()}
        self.garbage_sets = {
            set_id: max(slots) + 1 for set_id, slots in sets.items() if set_id not in referenced and slots
        }
        known_ids = {frontend.frontend_id for frontend in self.frontends.values()}
        self._stray_members = {fid: found for fid, found in members.items() if fid not in known_ids}
        self.policy_names = {}
        for key, value in maps.policies.items():
            self.policy_names[abi.U32.unpack(key)[0]] = value.split(b"\0", 1)[0].decode(errors="replace")
        self.policy_ids = {name: policy_id for policy_id, name in self.policy_names.items()}
        self._unused_policies = set()
        _layout, next_frontend, next_set, next_policy = maps.read_meta()
        # The allocators never go backwards, even if the meta element was lost: ids are never reused.
        self.next_frontend_id = max(next_frontend, max_frontend + 1, 1)
        self.next_set_id = max(next_set, max_set + 1, max(sets, default=0) + 1, 1)
        self.next_policy_id = max(next_policy, max(self.policy_names, default=0) + 1, 1)

    # -- reconciling ---------------------------------------------------------------------------

    def apply(self, state: DesiredState) -> ApplyReport:
        """Make the maps hold exactly `state` (validated already); return what was done."""
        desired = {frontend_key(tier, spec.ip, spec.port, spec.protocol): spec for tier, _i, spec in state.entries()}
        removed = [key for key in self.frontends if key not in desired]
        report = self._reconcile(desired, removed)
        report.elements_written += self._collect_policies({spec.policy for spec in desired.values() if spec.policy})
        return report

    def upsert(self, tier: abi.Tier, spec: FrontendSpec) -> ApplyReport:
        """Add or change one frontend of one tier, leaving every other entry alone."""
        key = frontend_key(tier, spec.ip, spec.port, spec.protocol)
        parse_state({"tiers": {TIER_NAMES[tier]: [spec.model_dump(by_alias=True)]}}, self.capacity)
        old = self.frontends.get(key)
        backends = self.backends_in_use - (old.slot_count() if old else 0) + len(spec.backends)
        if backends > self.capacity.backends:
            raise StateError(
                f"{entry_path(tier, 0)} {spec.label}: {backends} backends in all would be more than the backend "
                f"map holds ({self.capacity.backends}); nothing was written"
            )
        if old is None and len(self.frontends) >= self.capacity.frontends:
            raise StateError(f"{entry_path(tier, 0)} {spec.label}: the frontend map is full; nothing was written")
        return self._reconcile({key: spec}, [])

    def remove(self, tier: abi.Tier, ip: str, port: int, protocol: str) -> ApplyReport:
        key = frontend_key(tier, ip, port, protocol)
        return self._reconcile({}, [key] if key in self.frontends else [])

    def collect_garbage(self) -> int:
        """Delete backend sets and membership entries nothing references any more."""
        keys = bytearray()
        for set_id, slots in self.garbage_sets.items():
            for index in range(slots):
                keys += _SET_SLOT.pack(set_id, index)
        written = self.maps.backends.delete_batch(keys) if keys else 0
        self.garbage_sets = {}
        stray = bytearray()
        for frontend_id, found in self._stray_members.items():
            for member in found:
                stray += abi.U32.pack(frontend_id) + member
        if stray:
            written += self.maps.members.delete_batch(stray)
        self._stray_members = {}
        return written

    def _policy_id(self, name: str, new_policies: dict[str, int]) -> int:
        if not name:
            return 0
        known = self.policy_ids.get(name) or new_policies.get(name)
        if known:
            return known
        new_policies[name] = self.next_policy_id
        self.next_policy_id += 1
        return new_policies[name]

    def _reconcile(self, desired: dict[bytes, FrontendSpec], removed: Iterable[bytes]) -> ApplyReport:
        started = time.perf_counter()
        report = ApplyReport()
        if self._hold_garbage:  # first reconcile of a layout upgrade: keep what the old programs use
            self._hold_garbage = False
        else:
            report.garbage_sets_deleted = len(self.garbage_sets)
            report.elements_written += self.collect_garbage()

        new_policies: dict[str, int] = {}
        allocated = (self.next_frontend_id, self.next_set_id, self.next_policy_id)
        planned: list[tuple[bytes, KernelFrontend, KernelFrontend | None]] = []  # key, new, old
        for key, spec in desired.items():
            blob = backend_bytes(spec)
            policy_id = self._policy_id(spec.policy, new_policies)
            old = self.frontends.get(key)
            if old is None:
                new = KernelFrontend(
                    self.next_frontend_id, 0, policy_id, spec.affinity_timeout_seconds, spec.qos_limit, blob
                )
                self.next_frontend_id += 1
                report.added += 1
            elif old.backends != blob or not old.consistent:
                new = KernelFrontend(old.frontend_id, 0, policy_id, spec.affinity_timeout_seconds, spec.qos_limit, blob)
                report.swapped += 1
            elif (old.policy_id, old.affinity_timeout_s, old.qos_limit) != (
                policy_id,
                spec.affinity_timeout_seconds,
                spec.qos_limit,
            ):
                new = KernelFrontend(
                    old.frontend_id, old.set_id, policy_id, spec.affinity_timeout_seconds, spec.qos_limit, blob
                )
                report.retuned += 1
            else:
                report.unchanged += 1
                continue
            if new.set_id == 0 and blob:
                new.set_id = self.next_set_id
                self.next_set_id += 1
            planned.append((key, new, old))
        removed = list(removed)
        if not planned and not removed and not new_policies:
            report.seconds = time.perf_counter() - started
            return report

        # Reserve the ids in the kernel before any entry uses them: a crash never leads to reuse.
        if (self.next_frontend_id, self.next_set_id, self.next_policy_id) != allocated:
            self.maps.write_meta(self.next_frontend_id, self.next_set_id, self.next_policy_id)
            report.elements_written += 1

        policy_keys = b"".join(abi.U32.pack(policy_id) for policy_id in new_policies.values())
        policy_names = b"".join(name.encode().ljust(abi.POLICY_NAME_LEN, b"\0") for name in new_policies)
        slot_key_parts: list[bytes] = []
        slot_value_parts: list[bytes] = []
        member_keys: list[bytes] = []
        frontend_keys: list[bytes] = []
        frontend_values: list[bytes] = []
        members_removed = bytearray()
        for key, new, old in planned:
            count = len(new.backends) // BACKEND_SIZE
            if old is None or new.set_id != old.set_id:
                slot_key_parts.append(slot_keys(new.set_id, count))
                slot_value_parts.append(new.backends)
            id_bytes = abi.U32.pack(new.frontend_id)
            if old is None:
                member_keys.extend(
                    [id_bytes + new.backends[i : i + BACKEND_SIZE] for i in range(0, len(new.backends), BACKEND_SIZE)]
                )
            else:
                new_members = set(split_backends(new.backends))
                old_members = old.member_set()
                member_keys.extend(id_bytes + member for member in new_members - old_members)
                for member in old_members - new_members:
                    members_removed += id_bytes + member
            frontend_keys.append(key)
            frontend_values.append(new.value())

        # Order matters: names, sets and members first; then each frontend switches in one update.
        report.elements_written += self.maps.policies.update_batch(policy_keys, policy_names)
        report.elements_written += self.maps.backends.update_batch(b"".join(slot_key_parts), b"".join(slot_value_parts))
        report.elements_written += self.maps.members.update_batch(b"".join(member_keys), b"\1" * len(member_keys))
        report.elements_written += self.maps.frontends.update_batch(b"".join(frontend_keys), b"".join(frontend_values))

        removed_keys, qos_keys = bytearray(), bytearray()
        for key in removed:
            old = self.frontends[key]
            removed_keys += key
            qos_keys += abi.U32.pack(old.frontend_id)
            id_bytes = abi.U32.pack(old.frontend_id)
            for member in old.member_set():
                members_removed += id_bytes + member
        report.elements_written += self.maps.frontends.delete_batch(removed_keys)
        report.elements_written += self.maps.members.delete_batch(members_removed)
        report.elements_written += self.maps.qos.delete_batch(qos_keys)
        report.removed = len(removed)

        # Now update our view; sets no longer referenced are deleted at the next reconcile.
        for key, new, old in planned:
            self.backends_in_use += new.slot_count() - (old.slot_count() if old is not None else 0)
            if old is not None and old.set_id and old.set_id != new.set_id:
                self.garbage_sets[old.set_id] = old.slot_count()
            self.frontends[key] = new
            report.changed_keys.append(key)
        for key in removed:
            old = self.frontends.pop(key)
            self.backends_in_use -= old.slot_count()
            if old.set_id:
                self.garbage_sets[old.set_id] = old.slot_count()
        self.policy_ids.update(new_policies)
        self.policy_names.update({policy_id: name for name, policy_id in new_policies.items()})
        report.seconds = time.perf_counter() - started
        return report

    def _collect_policies(self, referenced: set[str]) -> int:
        """Delete policy names that were unused at the previous full apply and still are.

        A name outlives its last frontend by one apply, so that events emitted just before the
        change still decode."""
        unused = {policy_id for policy_id, name in self.policy_names.items() if name not in referenced}
        retire = unused & self._unused_policies
        self._unused_policies = unused - retire
        if not retire:
            return 0
        deleted = self.maps.policies.delete_batch(b"".join(abi.U32.pack(policy_id) for policy_id in retire))
        for policy_id in retire:
            self.policy_ids.pop(self.policy_names.pop(policy_id), None)
        return deleted
