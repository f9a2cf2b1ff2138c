"""The one codec: every key and value of every bf_lb4_* map is packed and unpacked here.

The packers are derived from the ctypes mirrors in `abi` (whose layouts a test checks against the
compiled object's BTF), so there is exactly one description of each layout. The writer, the reader,
the loader and the maps module import only from here; none of them packs a struct of its own.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from array import array
from collections.abc import Iterable
from typing import NamedTuple

from datapath.lb import abi

# (tier, ip, port, protocol): the identity of one frontend entry. A plain tuple, not a named one:
# the writer builds one per desired frontend on every apply, and a tuple costs a fifth as much.
FrontendRef = tuple[int, str, int, str]

_CODES: dict[type, str] = {
    ctypes.c_uint8: "B",
    ctypes.c_uint16: "H",
    ctypes.c_uint32: "I",
    ctypes.c_uint64: "Q",
    abi.Be16: "2s",
    abi.Be32: "4s",
}


def _format(mirror: type[ctypes.Structure]) -> str:
    codes: list[str] = []
    position = 0
    for name, field_type, *_bits in mirror._fields_:
        offset = getattr(mirror, name).offset
        if offset > position:
            codes.append(f"{offset - position}x")
        if field_type in _CODES:
            codes.append(_CODES[field_type])
        elif issubclass(field_type, ctypes.Array):
            codes.append(f"{ctypes.sizeof(field_type)}s")
        elif isinstance(field_type, type) and issubclass(field_type, ctypes.Structure):
            codes.append(_format(field_type))
        else:
            raise TypeError(f"{mirror.__name__}.{name}: no struct code for {field_type}")
        position = offset + ctypes.sizeof(field_type)
    if ctypes.sizeof(mirror) > position:
        codes.append(f"{ctypes.sizeof(mirror) - position}x")
    return "".join(codes)


def packer(mirror: type[ctypes.Structure]) -> struct.Struct:
    """A native-order `struct.Struct` with exactly the mirror's layout (nested structs flattened)."""
    return struct.Struct("=" + _format(mirror))


FRONTEND_KEY = packer(abi.FrontendKey)
FRONTEND = packer(abi.Frontend)
SLOT_KEY = packer(abi.SlotKey)
BACKEND = packer(abi.Backend)
MEMBER_KEY = packer(abi.MemberKey)
SKIP_KEY = packer(abi.SkipKey)
QOS = packer(abi.Qos)
META = packer(abi.Meta)
EVENT = packer(abi.Event)
U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")
BACKEND_SIZE = BACKEND.size
_PORT = struct.Struct("!H")
_unpack_u32 = U32.unpack_from


def u32(value: int) -> bytes:
    return U32.pack(value)


def decode_u32(raw: bytes) -> int:
    return int(_unpack_u32(raw)[0])


def ref_label(ref: FrontendRef) -> str:
    return f"{ref[1]}:{ref[2]}/{ref[3]}"


# -- addresses ---------------------------------------------------------------------------------


def encode_address(ip: str) -> bytes:
    return socket.inet_aton(ip)


def decode_address(raw: bytes) -> str:
    return socket.inet_ntoa(raw[:4])


def endpoint_label(address: bytes, port: bytes) -> str:
    return f"{socket.inet_ntoa(address)}:{_PORT.unpack(port)[0]}"


# -- frontends ---------------------------------------------------------------------------------


class FrontendValue(NamedTuple):
    """struct bf_lb4_fe."""

    frontend_id: int
    set_id: int
    set_size: int  # struct bf_lb4_fe.count (a NamedTuple field cannot be called count)
    policy_id: int
    affinity_timeout_s: int
    qos_limit: int
    flags: int
    skip_levels: int


def encode_frontend_key(ref: FrontendRef) -> bytes:
    tier, ip, port, protocol = ref
    return FRONTEND_KEY.pack(socket.inet_aton(ip), _PORT.pack(port), abi.PROTOCOLS[protocol], tier)


def decode_frontend_key(raw: bytes) -> FrontendRef:
    address, port, protocol, tier = FRONTEND_KEY.unpack(raw)
    return (tier, socket.inet_ntoa(address), _PORT.unpack(port)[0], abi.PROTOCOL_NAMES.get(protocol, str(protocol)))


def encode_frontend(value: FrontendValue) -> bytes:
    return FRONTEND.pack(*value)


def decode_frontend(raw: bytes) -> FrontendValue:
    return FrontendValue(*FRONTEND.unpack(raw[: FRONTEND.size]))


# -- backend sets and membership -----------------------------------------------------------------


def encode_backends(backends: Iterable[tuple[str, int]]) -> bytes:
    """Backend values in order, BACKEND_SIZE bytes each (struct bf_lb4_backend)."""
    inet_aton, port = socket.inet_aton, _PORT.pack
    return b"".join([inet_aton(ip) + port(number) + b"\0\0" for ip, number in backends])


def split_backends(blob: bytes) -> list[bytes]:
    return [blob[i : i + BACKEND_SIZE] for i in range(0, len(blob), BACKEND_SIZE)]


def decode_backend(raw: bytes) -> tuple[str, int]:
    return socket.inet_ntoa(raw[:4]), _PORT.unpack(raw[4:6])[0]


def backend_label(raw: bytes) -> str:
    return endpoint_label(raw[:4], raw[4:6])


def slot_key(set_id: int, index: int) -> bytes:
    return SLOT_KEY.pack(set_id, index)


def decode_slot_key(raw: bytes) -> tuple[int, int]:
    set_id, index = SLOT_KEY.unpack(raw)
    return set_id, index


def slot_keys(set_id: int, count: int) -> bytes:
    """The keys (set_id, 0) .. (set_id, count-1), packed in one go."""
    keys = array("I", [set_id]) * (2 * count)
    keys[1::2] = array("I", range(count))
    return keys.tobytes()


def decode_slot_keys(raw: bytes) -> list[int]:
    """Concatenated slot keys as a flat list: set id, index, set id, index, ..."""
    return memoryview(raw).cast("I").tolist()


def decode_sets(keys: bytes, values: bytes, count: int, value_size: int) -> dict[int, dict[int, bytes]]:
    """A whole backend map read back (concatenated keys and values): set id -> index -> backend."""
    words = memoryview(keys).cast("I")
    set_ids, indexes = words[0 : 2 * count : 2].tolist(), words[1 : 2 * count : 2].tolist()
    backends = [values[offset : offset + BACKEND_SIZE] for offset in range(0, count * value_size, value_size)]
    sets: dict[int, dict[int, bytes]] = {}
    for set_id, index, backend in zip(set_ids, indexes, backends, strict=True):
        slots = sets.get(set_id)
        if slots is None:
            slots = sets[set_id] = {}
        slots[index] = backend
    return sets


def decode_members(keys: bytes, count: int) -> dict[int, set[bytes]]:
    """A whole membership map read back (concatenated keys): frontend id -> its backends."""
    size = MEMBER_KEY.size
    frontend_ids = memoryview(keys).cast("I")[0 : count * size // 4 : size // 4].tolist()
    backends = [keys[offset : offset + BACKEND_SIZE] for offset in range(4, count * size, size)]
    members: dict[int, set[bytes]] = {}
    for frontend_id, backend in zip(frontend_ids, backends, strict=True):
        found = members.get(frontend_id)
        if found is None:
            found = members[frontend_id] = set()
        found.add(backend)
    return members


def member_keys(frontend_id: int, backends: Iterable[bytes]) -> bytes:
    """Membership keys (frontend id, backend) for backend values, concatenated."""
    prefix = U32.pack(frontend_id)
    return b"".join([prefix + backend for backend in backends])


def decode_member_key(raw: bytes) -> tuple[int, bytes]:
    return decode_u32(raw), raw[4 : 4 + BACKEND_SIZE]


# -- skipped client cgroups ------------------------------------------------------------------


def skip_key(frontend_id: int, cgroup_id: int) -> bytes:
    return SKIP_KEY.pack(frontend_id, 0, cgroup_id)


def decode_skip_key(raw: bytes) -> tuple[int, int]:
    frontend_id, _pad, cgroup_id = SKIP_KEY.unpack(raw)
    return frontend_id, cgroup_id


# -- policy names, allocators, counters, QoS -------------------------------------------------


def encode_policy_name(name: str) -> bytes:
    """A validated name (no NUL, at most POLICY_NAME_LEN - 1 bytes of UTF-8), NUL-padded."""
    encoded = name.encode()
    if len(encoded) >= abi.POLICY_NAME_LEN or b"\0" in encoded:
        raise ValueError(f"policy name {name!r} does not fit struct bf_lb4_policy")
    return encoded.ljust(abi.POLICY_NAME_LEN, b"\0")


def decode_policy_name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


class Meta(NamedTuple):
    """struct bf_lb4_meta: the layout and the id allocators."""

    layout: int
    next_frontend_id: int
    next_set_id: int
    next_policy_id: int


def encode_meta(next_frontend_id: int, next_set_id: int, next_policy_id: int) -> bytes:
    return META.pack(abi.LAYOUT_VERSION, next_frontend_id, next_set_id, next_policy_id)


def decode_meta(raw: bytes | None) -> Meta:
    return Meta(*META.unpack(raw or bytes(META.size)))


def decode_percpu_sum(raw: bytes, cpus: int) -> int:
    return sum(U64.unpack_from(raw, cpu * 8)[0] for cpu in range(cpus))


def decode_qos(raw: bytes) -> tuple[int, int]:
    """(redirects admitted in the window, window start in ns)."""
    _lock, count, started = QOS.unpack(raw)
    return count, started


# -- events ----------------------------------------------------------------------------------


class EventFields(NamedTuple):
    """struct bf_lb4_event, with the padding dropped."""

    timestamp_ns: int
    netns_cookie: int
    cgroup_id: int
    socket_cookie: int
    pid: int
    policy_id: int
    orig_address: bytes
    new_address: bytes
    orig_port: bytes
    new_port: bytes
    protocol: int
    hook: int
    tier: int
    result: int
    declined_empty: int
    declined_qos: int
    affinity_hit: int
    declined_self: int


def decode_event(raw: bytes) -> EventFields:
    return EventFields(*EVENT.unpack(raw[: EVENT.size])[:-1])
