"""The kernel ABI of the socket load balancer: ctypes mirrors of bpf/lib/types.h, constants, map names.

The ctypes classes are the single description of each layout; datapath.lb.codec derives its packers
from them and is the only module that packs or unpacks map keys and values.
tests/datapath/test_abi.py checks every mirror against the compiled object's BTF (size and member
offsets) and every constant against the C headers. Addresses and ports are kept in network byte
order, as in the kernel: the `Be32`/`Be16` marker types pack from and to raw bytes.
"""

from __future__ import annotations

import ctypes
from enum import IntEnum

LAYOUT_VERSION = 2
POLICY_NAME_LEN = 256
CGROUP_LEVELS = 32  # bits of bf_lb4_fe.skip_levels
LEVEL_UNKNOWN = 255  # the level recorded for a skipped cgroup that no longer exists
ECONNREFUSED = 111


class Be32(ctypes.c_uint32):
    """A __be32 field: packed as 4 raw bytes in network order."""


class Be16(ctypes.c_uint16):
    """A __be16 field: packed as 2 raw bytes in network order."""


class Tier(IntEnum):
    LOCAL_REDIRECT = 0
    BALANCING = 1
    SERVICE = 2

    @property
    def label(self) -> str:
        return TIER_LABELS[self]


TIER_LABELS = {Tier.LOCAL_REDIRECT: "localRedirect", Tier.BALANCING: "balancing", Tier.SERVICE: "service"}
TIER_NONE = 255


class Hook(IntEnum):
    CONNECT4 = 1
    SENDMSG4 = 2


class Result(IntEnum):
    REDIRECTED = 1
    NO_BACKEND = 2
    DECLINED_QOS = 3
    REJECTED = 4
    DECLINED_SELF = 5


class FrontendFlag(IntEnum):
    REJECT_WHEN_EMPTY = 1


class Stat(IntEnum):
    REDIRECTED = 0
    NO_BACKEND = 1
    DECLINED_QOS = 2
    AFFINITY_HIT = 3
    SET_RETRY = 4
    EVENTS_DROPPED = 5
    REVERSE_HIT = 6
    REJECTED = 7


STATS = 8
IPPROTO_TCP = 6
IPPROTO_UDP = 17
PROTOCOLS = {"TCP": IPPROTO_TCP, "UDP": IPPROTO_UDP}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}


class FrontendKey(ctypes.Structure):
    _fields_ = [("address", Be32), ("port", Be16), ("protocol", ctypes.c_uint8), ("tier", ctypes.c_uint8)]


class Frontend(ctypes.Structure):
    _fields_ = [
        ("frontend_id", ctypes.c_uint32),
        ("set_id", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        ("policy_id", ctypes.c_uint32),
        ("affinity_timeout_s", ctypes.c_uint32),
        ("qos_limit", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("skip_levels", ctypes.c_uint32),
    ]


class SlotKey(ctypes.Structure):
    _fields_ = [("set_id", ctypes.c_uint32), ("index", ctypes.c_uint32)]


class Backend(ctypes.Structure):
    _fields_ = [("address", Be32), ("port", Be16), ("pad", ctypes.c_uint16)]


class MemberKey(ctypes.Structure):
    _fields_ = [("frontend_id", ctypes.c_uint32), ("address", Be32), ("port", Be16), ("pad", ctypes.c_uint16)]


class AffinityKey(ctypes.Structure):
    _fields_ = [("netns_cookie", ctypes.c_uint64), ("frontend_id", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class Affinity(ctypes.Structure):
    _fields_ = [("last_used_ns", ctypes.c_uint64), ("backend", Backend)]


class SpinLock(ctypes.Structure):
    _fields_ = [("val", ctypes.c_uint32)]


class Qos(ctypes.Structure):
    _fields_ = [("lock", SpinLock), ("count", ctypes.c_uint32), ("window_start_ns", ctypes.c_uint64)]


class ReverseKey(ctypes.Structure):
    _fields_ = [("socket_cookie", ctypes.c_uint64), ("address", Be32), ("port", Be16), ("pad", ctypes.c_uint16)]


class Reverse(ctypes.Structure):
    _fields_ = [("address", Be32), ("port", Be16), ("pad", ctypes.c_uint16)]


class Sock(ctypes.Structure):
    _fields_ = [
        ("backend_address", Be32),
        ("backend_port", Be16),
        ("pad", ctypes.c_uint16),
        ("frontend_address", Be32),
        ("frontend_port", Be16),
        ("pad2", ctypes.c_uint16),
    ]


class SkipKey(ctypes.Structure):
    _fields_ = [("frontend_id", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("cgroup_id", ctypes.c_uint64)]


class Policy(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * POLICY_NAME_LEN)]


class Meta(ctypes.Structure):
    _fields_ = [
        ("layout", ctypes.c_uint32),
        ("next_frontend_id", ctypes.c_uint32),
        ("next_set_id", ctypes.c_uint32),
        ("next_policy_id", ctypes.c_uint32),
    ]


class Event(ctypes.Structure):
    _fields_ = [
        ("timestamp_ns", ctypes.c_uint64),
        ("netns_cookie", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("socket_cookie", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("policy_id", ctypes.c_uint32),
        ("orig_address", Be32),
        ("new_address", Be32),
        ("orig_port", Be16),
        ("new_port", Be16),
        ("protocol", ctypes.c_uint8),
        ("hook", ctypes.c_uint8),
        ("tier", ctypes.c_uint8),
        ("result", ctypes.c_uint8),
        ("declined_empty", ctypes.c_uint8),
        ("declined_qos", ctypes.c_uint8),
        ("affinity_hit", ctypes.c_uint8),
        ("declined_self", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 4),
    ]


# C struct name in bpf/lib/types.h -> mirror; the BTF check walks this table.
MIRRORS: dict[str, type[ctypes.Structure]] = {
    "bf_lb4_fe_key": FrontendKey,
    "bf_lb4_fe": Frontend,
    "bf_lb4_slot_key": SlotKey,
    "bf_lb4_backend": Backend,
    "bf_lb4_member_key": MemberKey,
    "bf_lb4_aff_key": AffinityKey,
    "bf_lb4_aff": Affinity,
    "bf_lb4_qos": Qos,
    "bf_lb4_rev_key": ReverseKey,
    "bf_lb4_rev": Reverse,
    "bf_lb4_sock": Sock,
    "bf_lb4_skip_key": SkipKey,
    "bf_lb4_policy": Policy,
    "bf_lb4_meta": Meta,
    "bf_lb4_event": Event,
}

# Map names (at most 15 characters), with the key and value layout each one must have.
MAP_FRONTENDS = "bf_lb4_fe_v2"
MAP_BACKENDS = "bf_lb4_be_v1"
MAP_MEMBERS = "bf_lb4_mem_v1"
MAP_AFFINITY = "bf_lb4_aff_v1"
MAP_QOS = "bf_lb4_qos_v1"
MAP_REVERSE = "bf_lb4_rev_v1"
MAP_SOCKETS = "bf_lb4_sk_v1"
MAP_EVENTS = "bf_lb4_evt_v1"
MAP_POLICIES = "bf_lb4_pol_v2"
MAP_NODES = "bf_lb4_node_v1"
MAP_SKIPS = "bf_lb4_skip_v1"
MAP_META = "bf_lb4_meta_v1"
MAP_STATS = "bf_lb4_stat_v1"
MAP_PREFIX = "bf_lb4_"

# name -> (key size, value size); 0 for a ring buffer, which has neither.
MAP_LAYOUTS: dict[str, tuple[int, int]] = {
    MAP_FRONTENDS: (ctypes.sizeof(FrontendKey), ctypes.sizeof(Frontend)),
    MAP_BACKENDS: (ctypes.sizeof(SlotKey), ctypes.sizeof(Backend)),
    MAP_MEMBERS: (ctypes.sizeof(MemberKey), 1),
    MAP_AFFINITY: (ctypes.sizeof(AffinityKey), ctypes.sizeof(Affinity)),
    MAP_QOS: (4, ctypes.sizeof(Qos)),
    MAP_REVERSE: (ctypes.sizeof(ReverseKey), ctypes.sizeof(Reverse)),
    MAP_SOCKETS: (4, ctypes.sizeof(Sock)),
    MAP_EVENTS: (0, 0),
    MAP_POLICIES: (4, ctypes.sizeof(Policy)),
    MAP_NODES: (4, 1),
    MAP_SKIPS: (ctypes.sizeof(SkipKey), 1),
    MAP_META: (4, ctypes.sizeof(Meta)),
    MAP_STATS: (4, 8),
}

# Programs in bpf/bf_sock.c: (function name, attach type name used for link pins).
PROGRAMS: tuple[tuple[str, str], ...] = (
    ("bf_sock4_connect", "connect4"),
    ("bf_sock4_sendmsg", "sendmsg4"),
    ("bf_sock4_recvmsg", "recvmsg4"),
    ("bf_sock4_getpeername", "getpeername4"),
)
