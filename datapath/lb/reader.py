"""The reader: what the kernel maps say, decoded. `explain`, `dump`, `state` and the event stream.

Everything here reads the pinned maps only, so it works from any process, after any restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datapath.errors import DatapathError
from datapath.lb import abi
from datapath.lb.cgroups import cgroup_ancestors
from datapath.lb.codec import (
    FrontendRef,
    FrontendValue,
    backend_label,
    decode_address,
    decode_backend,
    decode_event,
    decode_frontend,
    decode_frontend_key,
    decode_policy_name,
    decode_qos,
    decode_sets,
    decode_skip_key,
    encode_address,
    encode_frontend_key,
    endpoint_label,
    slot_key,
    u32,
)
from datapath.lb.libbpf import RingBuffer
from datapath.lb.maps import LbMaps
from datapath.lb.state import NODE_PORT_ANY, TIER_FIELDS, DesiredState


@dataclass
class TierEntry:
    """One tier's entry for a frontend, as the kernel holds it."""

    tier: str
    frontend_id: int
    set_id: int
    policy: str
    backends: list[str]
    affinity_timeout_seconds: int
    qos_limit: int
    qos_used: int = 0  # redirects admitted in the current QoS window
    node_port: bool = False  # the entry is the tier's NodePort (0.0.0.0) frontend
    reject_when_empty: bool = False
    skip_cgroups: list[int] = field(default_factory=list)
    verdict: str = ""  # what this tier does for the next connect()


@dataclass
class Explanation:
    frontend: str
    entries: list[TierEntry]
    resolved_by: str | None  # tier that would resolve the next connect(), None if none
    rejected: bool = False  # no tier resolves and the last one rejects: ECONNREFUSED
    client_cgroup: int | None = None  # the client the verdicts are for (None: a client no tier skips)

    def lines(self) -> list[str]:
        if not self.entries:
            return [f"{self.frontend}: not a frontend; connect() goes to it unchanged"]
        if self.resolved_by:
            head = f"{self.frontend}: resolved by tier {self.resolved_by}"
        elif self.rejected:
            head = f"{self.frontend}: no tier resolves; connect() fails at once with ECONNREFUSED"
        else:
            head = f"{self.frontend}: no tier resolves; connect() goes to it unchanged"
        if self.client_cgroup is not None:
            head += f" (for a client in cgroup {self.client_cgroup})"
        out = [head]
        for entry in self.entries:
            options = []
            if entry.node_port:
                options.append(f"NodePort {NODE_PORT_ANY}")
            if entry.affinity_timeout_seconds:
                options.append(f"affinity ClientIP {entry.affinity_timeout_seconds}s")
            if entry.qos_limit:
                options.append(f"qos {entry.qos_used}/{entry.qos_limit} per second")
            if entry.reject_when_empty:
                options.append("rejects when it declines last")
            if entry.skip_cgroups:
                options.append(f"skips cgroups {', '.join(map(str, entry.skip_cgroups))}")
            out.append(
                f"  {entry.tier}: {entry.verdict}; policy {entry.policy or '-'}; "
                f"{len(entry.backends)} backends {', '.join(entry.backends) or '-'}"
                + (f"; {'; '.join(options)}" if options else "")
            )
        return out


class MapReader:
    """Read-only view of a node's pinned maps."""

    def __init__(self, bpffs_dir: Path) -> None:
        self.maps = LbMaps(bpffs_dir)
        self._policies: dict[int, str] = {}

    def close(self) -> None:
        self.maps.close()

    def __enter__(self) -> MapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def policy_name(self, policy_id: int) -> str:
        if policy_id == 0:
            return ""
        if policy_id not in self._policies:
            raw = self.maps.policies.lookup(u32(policy_id))
            if raw is None:
                return f"policy#{policy_id}"
            self._policies[policy_id] = decode_policy_name(raw)
        return self._policies[policy_id]

    def _set(self, set_id: int, count: int) -> list[bytes | None]:
        return [self.maps.backends.lookup(slot_key(set_id, index)) for index in range(count)]

    def _skips(self, frontend_id: int) -> dict[int, int]:
        """Skipped cgroup id -> level, for one frontend (by lookup: only its levels can hold them)."""
        skipped: dict[int, int] = {}
        for key, value in self.maps.skips.items():
            owner, cgroup_id = decode_skip_key(key)
            if owner == frontend_id:
                skipped[cgroup_id] = value[0]
        return skipped

    def _qos_used(self, frontend_id: int, limit: int) -> int:
        if not limit:
            return 0
        raw = self.maps.qos.lookup(u32(frontend_id))
        if raw is None:
            return 0
        count, started = decode_qos(raw)
        return count if time.monotonic_ns() - started < 1_000_000_000 else 0

    def is_node_address(self, ip: str) -> bool:
        """Whether a NodePort frontend may match `ip`, as the program decides it."""
        return ip.startswith("127.") or self.maps.nodes.lookup(encode_address(ip)) is not None

    def counters(self) -> dict[str, int]:
        """The kernel's counters (summed over CPUs), by name."""
        return self.maps.read_stats()

    def explain(self, ip: str, port: int, protocol: str, client_cgroup: int | None = None) -> Explanation:
        """Which tier, policy and backends the next connect() to ip:port/protocol would get, decided
        as the connect4 program decides it. With `client_cgroup`, for a client in that cgroup (tiers
        that skip it, or one of its ancestors, decline)."""
        protocol = protocol.upper()
        if protocol not in abi.PROTOCOLS:
            raise DatapathError(f"unknown protocol {protocol!r}: expected TCP or UDP")
        try:
            encode_address(ip)
        except OSError:
            raise DatapathError(f"{ip!r} is not an IPv4 address") from None
        client_chain = set(cgroup_ancestors(client_cgroup)) if client_cgroup is not None else set()
        entries: list[TierEntry] = []
        resolved_by: str | None = None
        reject = False
        for tier in abi.Tier:
            node_port = False
            raw = self.maps.frontends.lookup(encode_frontend_key((int(tier), ip, port, protocol)))
            if raw is None and ip != NODE_PORT_ANY and self.is_node_address(ip):
                raw = self.maps.frontends.lookup(encode_frontend_key((int(tier), NODE_PORT_ANY, port, protocol)))
                node_port = raw is not None
            if raw is None:
                continue
            value = decode_frontend(raw)
            skipped = self._skips(value.frontend_id) if value.skip_levels else {}
            entry = TierEntry(
                tier=tier.label,
                frontend_id=value.frontend_id,
                set_id=value.set_id,
                policy=self.policy_name(value.policy_id),
                backends=[
                    backend_label(slot) if slot else "<missing>" for slot in self._set(value.set_id, value.set_size)
                ],
                affinity_timeout_seconds=value.affinity_timeout_s,
                qos_limit=value.qos_limit,
                qos_used=self._qos_used(value.frontend_id, value.qos_limit),
                node_port=node_port,
                reject_when_empty=bool(value.flags & abi.FrontendFlag.REJECT_WHEN_EMPTY),
                skip_cgroups=sorted(skipped),
            )
            if resolved_by is not None:
                entry.verdict = f"not consulted ({resolved_by} resolves first)"
            elif client_chain & set(skipped):
                entry.verdict = "declines: skips this client (one of its own backends)"
            elif value.set_size == 0:
                entry.verdict = "declines: no backend"
            elif value.qos_limit and entry.qos_used >= value.qos_limit:
                entry.verdict = "declines: over its QoS limit this second"
            else:
                entry.verdict = "resolves"
                resolved_by = tier.label
            if resolved_by is None or resolved_by == tier.label:
                reject = entry.reject_when_empty
            entries.append(entry)
        return Explanation(
            f"{ip}:{port}/{protocol}",
            entries,
            resolved_by,
            bool(entries) and resolved_by is None and reject,
            client_cgroup,
        )

    def _frontends(self) -> list[tuple[FrontendRef, FrontendValue]]:
        return [(decode_frontend_key(key), decode_frontend(value)) for key, value in self.maps.frontends.items()]

    def _all_sets(self) -> dict[int, dict[int, bytes]]:
        keys, values, count = self.maps.backends.read_all()
        return decode_sets(keys, values, count, self.maps.backends.value_size)

    def _all_skips(self) -> dict[int, list[int]]:
        skips: dict[int, list[int]] = {}
        for key, _value in self.maps.skips.items():
            frontend_id, cgroup_id = decode_skip_key(key)
            skips.setdefault(frontend_id, []).append(cgroup_id)
        return {frontend_id: sorted(cgroups) for frontend_id, cgroups in skips.items()}

    def node_addresses(self) -> list[str]:
        return sorted((decode_address(key) for key, _value in self.maps.nodes.items()), key=encode_address)

    def dump(self) -> dict[str, Any]:
        """Everything: frontends by tier, sets, node addresses, counters, allocators, table sizes."""
        tiers: dict[str, list[dict[str, Any]]] = {tier.label: [] for tier in abi.Tier}
        sets = self._all_sets()
        skips = self._all_skips()
        referenced: set[int] = set()
        for (tier, ip, port, protocol), value in self._frontends():
            referenced.add(value.set_id)
            slots = sets.get(value.set_id, {})
            tiers[abi.Tier(tier).label].append(
                {
                    "frontend": f"{ip}:{port}/{protocol}",
                    "frontendId": value.frontend_id,
                    "setId": value.set_id,
                    "policy": self.policy_name(value.policy_id),
                    "affinityTimeoutSeconds": value.affinity_timeout_s,
                    "qosLimit": value.qos_limit,
                    "rejectWhenEmpty": bool(value.flags & abi.FrontendFlag.REJECT_WHEN_EMPTY),
                    "skipCgroups": skips.get(value.frontend_id, []),
                    "backends": [backend_label(slots[i]) if i in slots else "<missing>" for i in range(value.set_size)],
                }
            )
        for entries in tiers.values():
            entries.sort(key=lambda entry: entry["frontend"])
        meta = self.maps.read_meta()
        return {
            "bpffs": str(self.maps.bpffs_dir),
            "layout": meta.layout,
            "nodeAddresses": self.node_addresses(),
            "tiers": tiers,
            "unreferencedSets": sorted(set(sets) - referenced),
            "counters": self.maps.read_stats(),
            "allocators": {
                "nextFrontendId": meta.next_frontend_id,
                "nextSetId": meta.next_set_id,
                "nextPolicyId": meta.next_policy_id,
            },
            "entries": {
                "affinity": sum(1 for _ in self.maps.affinity.iter_keys()),
                "reverse": sum(1 for _ in self.maps.reverse.iter_keys()),
                "members": sum(1 for _ in self.maps.members.iter_keys()),
                "policies": sum(1 for _ in self.maps.policies.iter_keys()),
                "skips": sum(1 for _ in self.maps.skips.iter_keys()),
            },
        }

    def state(self) -> DesiredState:
        """What the kernel resolves, as a desired state in canonical order: applying a state and
        reading it back gives `state.canonical()`."""
        sets = self._all_sets()
        skips = self._all_skips()
        tiers: dict[str, list[dict[str, Any]]] = {name: [] for name in TIER_FIELDS.values()}
        for (tier, ip, port, protocol), value in self._frontends():
            slots = sets.get(value.set_id, {})
            tiers[TIER_FIELDS[abi.Tier(tier)]].append(
                {
                    "ip": ip,
                    "port": port,
                    "protocol": protocol,
                    "backends": [decode_backend(slots[i]) for i in range(value.set_size) if i in slots],
                    "policy": self.policy_name(value.policy_id),
                    "affinity_timeout_seconds": value.affinity_timeout_s,
                    "qos_limit": value.qos_limit,
                    "reject_when_empty": bool(value.flags & abi.FrontendFlag.REJECT_WHEN_EMPTY),
                    "skip_cgroups": skips.get(value.frontend_id, []),
                }
            )
        state = DesiredState.model_validate({"tiers": tiers, "node_addresses": self.node_addresses()})
        return state.canonical()


@dataclass
class ResolutionEvent:
    """One decoded resolution: who connected where, and what decided it."""

    timestamp: float  # Unix time
    pid: int
    cgroup_id: int
    netns_cookie: int
    socket_cookie: int
    protocol: str
    hook: str
    original: str
    new: str
    tier: str
    policy: str
    result: str
    fell_through: list[str] = field(default_factory=list)  # e.g. ["localRedirect: qos"]
    affinity: bool = False

    def line(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.timestamp)) + f".{int(self.timestamp * 1000) % 1000:03d}"
        extra = f" fell through {', '.join(self.fell_through)};" if self.fell_through else ""
        return (
            f"{when} pid {self.pid} cgroup {self.cgroup_id} netns {self.netns_cookie} {self.hook} "
            f"{self.protocol} {self.original} -> {self.new}: {self.result} by {self.tier}"
            f" policy {self.policy or '-'};{extra}{' affinity;' if self.affinity else ''}".rstrip(";")
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


RESULT_LABELS = {
    abi.Result.REDIRECTED: "redirected",
    abi.Result.NO_BACKEND: "no-backend",
    abi.Result.DECLINED_QOS: "declined-qos",
    abi.Result.REJECTED: "rejected",
    abi.Result.DECLINED_SELF: "declined-self",
}


# Decoding runs once per connect on a busy node: plain dicts keyed by the raw numbers, no enum calls.
_HOOK_NAMES = {hook.value: hook.name.lower() for hook in abi.Hook}
_TIER_NAMES = {tier.value: tier.label for tier in abi.Tier}
_RESULT_NAMES = {result.value: label for result, label in RESULT_LABELS.items()}
_TIER_BITS = tuple((1 << tier.value, tier.label) for tier in abi.Tier)
_RESULTS_WITH_OWN_REASON = (abi.Result.REDIRECTED.value, abi.Result.REJECTED.value)


def resolution_event(raw: bytes, policy_name: Callable[[int], str]) -> ResolutionEvent:
    fields = decode_event(raw)
    fell_through = []
    if fields.declined_self | fields.declined_qos | fields.declined_empty:
        for bit, label in _TIER_BITS:
            if fields.declined_self & bit:
                fell_through.append(f"{label}: self")
            elif fields.declined_qos & bit:
                fell_through.append(f"{label}: qos")
            elif fields.declined_empty & bit:
                fell_through.append(f"{label}: no backend")
        # The last declining tier's reason is the result itself, unless the result is a redirect or a reject.
        if fields.result not in _RESULTS_WITH_OWN_REASON:
            fell_through = fell_through[:-1]
    offset_s = (time.monotonic_ns() - fields.timestamp_ns) / 1e9
    return ResolutionEvent(
        timestamp=time.time() - offset_s,
        pid=fields.pid,
        cgroup_id=fields.cgroup_id,
        netns_cookie=fields.netns_cookie,
        socket_cookie=fields.socket_cookie,
        protocol=abi.PROTOCOL_NAMES.get(fields.protocol, str(fields.protocol)),
        hook=_HOOK_NAMES.get(fields.hook) or str(fields.hook),
        original=endpoint_label(fields.orig_address, fields.orig_port),
        new=endpoint_label(fields.new_address, fields.new_port),
        tier=_TIER_NAMES.get(fields.tier, "-"),
        policy=policy_name(fields.policy_id),
        result=_RESULT_NAMES.get(fields.result) or str(fields.result),
        fell_through=fell_through,
        affinity=bool(fields.affinity_hit),
    )


class EventStream:
    """Decoded events from the node's ring buffer. One consumer at a time: the ring buffer keeps a
    single read position, so two readers would split the events between them."""

    def __init__(self, bpffs_dir: Path, skip_backlog: bool = False) -> None:
        self.reader = MapReader(bpffs_dir)
        self._pending: list[ResolutionEvent] = []
        self._skipping = skip_backlog
        self._ring = RingBuffer(self.reader.maps.events.fd, self._on_record)
        if skip_backlog:
            self._ring.consume()
            self._skipping = False

    def _on_record(self, raw: bytes) -> None:
        if not self._skipping:
            self._pending.append(resolution_event(raw, self.reader.policy_name))

    def poll(self, timeout: float) -> list[ResolutionEvent]:
        """Events that arrived within `timeout` seconds (returns as soon as there are some)."""
        if not self._pending:
            self._ring.poll(int(timeout * 1000))
        self._ring.consume()
        events, self._pending = self._pending, []
        return events

    def follow(self, timeout: float | None = None, count: int | None = None) -> Iterator[ResolutionEvent]:
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = 0
        while deadline is None or time.monotonic() < deadline:
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            for event in self.poll(wait):
                yield event
                seen += 1
                if count is not None and seen >= count:
                    return

    def close(self) -> None:
        self._ring.close()
        self.reader.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
