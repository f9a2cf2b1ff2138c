"""The reader: what the kernel maps say, decoded. `explain`, `dump` and the event stream.

Everything here reads the pinned maps only, so it works from any process, after any restart.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datapath.errors import DatapathError
from datapath.lb import abi
from datapath.lb.libbpf import RingBuffer
from datapath.lb.maps import LbMaps
from datapath.lb.writer import BACKEND_SIZE, frontend_key

_SET_SLOT = struct.Struct("=II")
_PORT = struct.Struct("!H")


def _address(raw: bytes) -> str:
    return socket.inet_ntoa(raw[:4])


def _endpoint(address: bytes, port: bytes) -> str:
    return f"{socket.inet_ntoa(address)}:{_PORT.unpack(port)[0]}"


def _backend(raw: bytes) -> str:
    return _endpoint(raw[:4], raw[4:6])


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
    verdict: str = ""  # what this tier does for the next connect()


@dataclass
class Explanation:
    frontend: str
    entries: list[TierEntry]
    resolved_by: str | None  # tier that would resolve the next connect(), None if none

    def lines(self) -> list[str]:
        if not self.entries:
            return [f"{self.frontend}: not a frontend; connect() goes to it unchanged"]
        head = (
            f"{self.frontend}: resolved by tier {self.resolved_by}"
            if self.resolved_by
            else (f"{self.frontend}: no tier has a backend; connect() goes to it unchanged")
        )
        out = [head]
        for entry in self.entries:
            options = []
            if entry.affinity_timeout_seconds:
                options.append(f"affinity ClientIP {entry.affinity_timeout_seconds}s")
            if entry.qos_limit:
                options.append(f"qos {entry.qos_used}/{entry.qos_limit} per second")
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
            raw = self.maps.policies.lookup(abi.U32.pack(policy_id))
            if raw is None:
                return f"policy#{policy_id}"
            self._policies[policy_id] = raw.split(b"\0", 1)[0].decode(errors="replace")
        return self._policies[policy_id]

    def _set(self, set_id: int, count: int) -> list[str]:
        backends: list[str] = []
        for index in range(count):
            raw = self.maps.backends.lookup(_SET_SLOT.pack(set_id, index))
            backends.append(_backend(raw) if raw else "<missing>")
        return backends

    def _qos_used(self, frontend_id: int, limit: int) -> int:
        if not limit:
            return 0
        raw = self.maps.qos.lookup(abi.U32.pack(frontend_id))
        if raw is None:
            return 0
        _lock, count, started = abi.QOS.unpack(raw)
        return count if time.monotonic_ns() - started < 1_000_000_000 else 0

    def explain(self, ip: str, port: int, protocol: str) -> Explanation:
        """Which tier, policy and backends the next connect() to ip:port/protocol would get."""
        protocol = protocol.upper()
        if protocol not in abi.PROTOCOLS:
            raise DatapathError(f"unknown protocol {protocol!r}: expected TCP or UDP")
        try:
            socket.inet_aton(ip)
        except OSError:
            raise DatapathError(f"{ip!r} is not an IPv4 address") from None
        entries: list[TierEntry] = []
        resolved_by: str | None = None
        for tier in abi.Tier:
            raw = self.maps.frontends.lookup(frontend_key(tier, ip, port, protocol))
            if raw is None:
                continue
            frontend_id, set_id, count, policy_id, affinity, qos = abi.FRONTEND.unpack(raw)
            entry = TierEntry(
                tier=tier.label,
                frontend_id=frontend_id,
                set_id=set_id,
                policy=self.policy_name(policy_id),
                backends=self._set(set_id, count),
                affinity_timeout_seconds=affinity,
                qos_limit=qos,
                qos_used=self._qos_used(frontend_id, qos),
            )
            if resolved_by is not None:
                entry.verdict = f"not consulted ({resolved_by} resolves first)"
            elif count == 0:
                entry.verdict = "declines: no backend"
            elif qos and entry.qos_used >= qos:
                entry.verdict = "declines: over its QoS limit this second"
            else:
                entry.verdict = "resolves"
                resolved_by = tier.label
            entries.append(entry)
        return Explanation(f"{ip}:{port}/{protocol}", entries, resolved_by)

    def counters(self) -> dict[str, int]:
        """The kernel's counters (summed over CPUs), by name."""
        return self.maps.read_stats()

    def dump(self) -> dict[str, Any]:
        """Everything: frontends by tier, sets, counters, allocators, table sizes."""
        tiers: dict[str, list[dict[str, Any]]] = {tier.label: [] for tier in abi.Tier}
        sets: dict[int, dict[int, bytes]] = {}
        for key, value in self.maps.backends.items():
            set_id, index = _SET_SLOT.unpack(key)
            sets.setdefault(set_id, {})[index] = value[:BACKEND_SIZE]
        referenced: set[int] = set()
        for key, value in self.maps.frontends.items():
            address, port, protocol, tier = abi.FRONTEND_KEY.unpack(key)
            frontend_id, set_id, count, policy_id, affinity, qos = abi.FRONTEND.unpack(value)
            referenced.add(set_id)
            slots = sets.get(set_id, {})
            tiers[abi.Tier(tier).label].append(
                {
                    "frontend": f"{_endpoint(address, port)}/{abi.PROTOCOL_NAMES.get(protocol, protocol)}",
                    "frontendId": frontend_id,
                    "setId": set_id,
                    "policy": self.policy_name(policy_id),
                    "affinityTimeoutSeconds": affinity,
                    "qosLimit": qos,
                    "backends": [_backend(slots[i]) if i in slots else "<missing>" for i in range(count)],
                }
            )
        for entries in tiers.values():
            entries.sort(key=lambda entry: entry["frontend"])
        layout, next_frontend, next_set, next_policy = self.maps.read_meta()
        return {
            "bpffs": str(self.maps.bpffs_dir),
            "layout": layout,
            "tiers": tiers,
            "unreferencedSets": sorted(set(sets) - referenced),
            "counters": self.maps.read_stats(),
            "allocators": {"nextFrontendId": next_frontend, "nextSetId": next_set, "nextPolicyId": next_policy},
            "entries": {
                "affinity": sum(1 for _ in self.maps.affinity.iter_keys()),
                "reverse": sum(1 for _ in self.maps.reverse.iter_keys()),
                "members": sum(1 for _ in self.maps.members.iter_keys()),
                "policies": sum(1 for _ in self.maps.policies.iter_keys()),
            },
        }


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
}


def decode_event(raw: bytes, policy_name: Any) -> ResolutionEvent:
    (
        timestamp_ns,
        netns_cookie,
        cgroup_id,
        socket_cookie,
        pid,
        policy_id,
        orig_address,
        new_address,
        orig_port,
        new_port,
        protocol,
        hook,
        tier,
        result,
        declined_empty,
        declined_qos,
        affinity_hit,
        _pad,
    ) = abi.EVENT.unpack(raw[: abi.EVENT.size])
    fell_through = []
    for candidate in abi.Tier:
        if declined_qos & (1 << candidate):
            fell_through.append(f"{candidate.label}: qos")
        elif declined_empty & (1 << candidate):
            fell_through.append(f"{candidate.label}: no backend")
    offset_s = (time.monotonic_ns() - timestamp_ns) / 1e9
    return ResolutionEvent(
        timestamp=time.time() - offset_s,
        pid=pid,
        cgroup_id=cgroup_id,
        netns_cookie=netns_cookie,
        socket_cookie=socket_cookie,
        protocol=abi.PROTOCOL_NAMES.get(protocol, str(protocol)),
        hook={abi.Hook.CONNECT4: "connect4", abi.Hook.SENDMSG4: "sendmsg4"}.get(hook, str(hook)),
        original=_endpoint(orig_address, orig_port),
        new=_endpoint(new_address, new_port),
        tier=abi.Tier(tier).label if tier in abi.Tier._value2member_map_ else "-",
        policy=policy_name(policy_id),
        result=RESULT_LABELS.get(result, str(result)),
        fell_through=fell_through if result == abi.Result.REDIRECTED else fell_through[:-1],
        affinity=bool(affinity_hit),
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
            self._pending.append(decode_event(raw, self.reader.policy_name))

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
