"""The raw bpf(2) system call through ctypes: pinned objects, map elements, batch operations, info.

libbpf loads and attaches (datapath.lb.libbpf); everything that reads or writes map contents goes
through here, because the batch commands move 100k elements in one call.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datapath.errors import KernelError

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_BPF = 321  # x86_64

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_MAP_LOOKUP_BATCH = 24
BPF_MAP_UPDATE_BATCH = 26
BPF_MAP_DELETE_BATCH = 27
BPF_LINK_UPDATE = 29
BPF_LINK_DETACH = 34

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_RINGBUF = 27


class _Attr(ctypes.Union):
    _fields_ = [("raw", ctypes.c_uint8 * 128)]


class _ElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _BatchAttr(ctypes.Structure):
    _fields_ = [
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _ObjAttr(ctypes.Structure):
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32), ("file_flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _IdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class _LinkUpdateAttr(ctypes.Structure):
    _fields_ = [
        ("link_fd", ctypes.c_uint32),
        ("new_prog_fd", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("old_prog_fd", ctypes.c_uint32),
    ]


class MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
        ("rest", ctypes.c_uint8 * 64),
    ]


class ProgInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
        ("rest", ctypes.c_uint8 * 160),
    ]


class LinkInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("cgroup_id", ctypes.c_uint64),  # union member `cgroup` for cgroup links
        ("attach_type", ctypes.c_uint32),
        ("rest", ctypes.c_uint8 * 60),
    ]


def _call(command: int, attr: ctypes.Structure, what: str) -> int:
    result = _libc.syscall(SYS_BPF, command, ctypes.byref(attr), ctypes.sizeof(attr))
    if result < 0:
        code = ctypes.get_errno()
        raise KernelError(f"{what}: {os.strerror(code)}", code)
    return int(result)


def _address(buffer: bytearray | ctypes.Array[ctypes.c_char] | None) -> int:
    if buffer is None:
        return 0
    if isinstance(buffer, bytearray):
        if not buffer:
            return 0
        return ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    return ctypes.addressof(buffer)


def obj_get(path: Path, read_only: bool = False) -> int:
    raw = os.fsencode(path)
    name = ctypes.create_string_buffer(raw)
    attr = _ObjAttr(pathname=ctypes.addressof(name), file_flags=0x8 if read_only else 0)  # BPF_F_RDONLY
    return _call(BPF_OBJ_GET, attr, f"open pinned object {path}")


def obj_pin(fd: int, path: Path) -> None:
    name = ctypes.create_string_buffer(os.fsencode(path))
    _call(BPF_OBJ_PIN, _ObjAttr(pathname=ctypes.addressof(name), bpf_fd=fd), f"pin {path}")


def _info(fd: int, info: ctypes.Structure, what: str) -> None:
    attr = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    _call(BPF_OBJ_GET_INFO_BY_FD, attr, what)


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    _info(fd, info, "map info")
    return info


def prog_info(fd: int) -> ProgInfo:
    info = ProgInfo()
    _info(fd, info, "program info")
    return info


def prog_identity(fd: int) -> tuple[bytes, tuple[int, ...]]:
    """What a program is: its tag (instructions, map references blanked) and the maps it uses.

    The tag alone is not enough: the same code built against other maps has the same tag."""
    map_ids = (ctypes.c_uint32 * 64)()
    info = ProgInfo(nr_map_ids=len(map_ids), map_ids=ctypes.addressof(map_ids))
    _info(fd, info, "program info")
    return bytes(info.tag), tuple(sorted(map_ids[: min(info.nr_map_ids, len(map_ids))]))


def link_info(fd: int) -> LinkInfo:
    info = LinkInfo()
    _info(fd, info, "link info")
    return info


def prog_fd_by_id(prog_id: int) -> int:
    return _call(BPF_PROG_GET_FD_BY_ID, _IdAttr(id=prog_id), f"open program id {prog_id}")


def link_update(link_fd: int, new_prog_fd: int) -> None:
    _call(BPF_LINK_UPDATE, _LinkUpdateAttr(link_fd=link_fd, new_prog_fd=new_prog_fd), "update link")


def link_detach(link_fd: int) -> None:
    _call(BPF_LINK_DETACH, _LinkUpdateAttr(link_fd=link_fd), "detach link")


def possible_cpus() -> int:
    """Number of possible CPUs: the width of a per-CPU map value."""
    total = 0
    for part in Path("/sys/devices/system/cpu/possible").read_text().strip().split(","):
        first, _, last = part.partition("-")
        total += int(last or first) - int(first) + 1
    return total


@dataclass
class Map:
    """An open BPF map: its fd and the sizes the kernel reports."""

    name: str
    fd: int
    key_size: int
    value_size: int
    max_entries: int
    map_type: int

    @classmethod
    def from_fd(cls, name: str, fd: int) -> Map:
        info = map_info(fd)
        value_size = info.value_size
        if info.type == BPF_MAP_TYPE_PERCPU_ARRAY:
            value_size = ((value_size + 7) // 8 * 8) * possible_cpus()
        return cls(name, fd, info.key_size, value_size, info.max_entries, info.type)

    @classmethod
    def open_pinned(cls, path: Path) -> Map:
        return cls.from_fd(path.name, obj_get(path))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- single elements -----------------------------------------------------------------------

    def lookup(self, key: bytes) -> bytes | None:
        key_buffer = ctypes.create_string_buffer(key, self.key_size)
        value = ctypes.create_string_buffer(self.value_size)
        attr = _ElemAttr(map_fd=self.fd, key=ctypes.addressof(key_buffer), value=ctypes.addressof(value))
        try:
            _call(BPF_MAP_LOOKUP_ELEM, attr, f"lookup in {self.name}")
        except KernelError as error:
            if error.errno == errno_codes.ENOENT:
                return None
            raise
        return value.raw

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        key_buffer = ctypes.create_string_buffer(key, self.key_size)
        value_buffer = ctypes.create_string_buffer(value, self.value_size)
        attr = _ElemAttr(
            map_fd=self.fd, key=ctypes.addressof(key_buffer), value=ctypes.addressof(value_buffer), flags=flags
        )
        _call(BPF_MAP_UPDATE_ELEM, attr, f"update in {self.name}")

    def delete(self, key: bytes) -> bool:
        key_buffer = ctypes.create_string_buffer(key, self.key_size)
        try:
            _call(BPF_MAP_DELETE_ELEM, _ElemAttr(map_fd=self.fd, key=ctypes.addressof(key_buffer)), "delete")
        except KernelError as error:
            if error.errno == errno_codes.ENOENT:
                return False
            raise KernelError(f"delete in {self.name}: {os.strerror(error.errno)}", error.errno) from None
        return True

    def iter_keys(self) -> Iterator[bytes]:
        """Every key, by GET_NEXT_KEY (for maps without batch support)."""
        key = ctypes.create_string_buffer(self.key_size)
        next_key = ctypes.create_string_buffer(self.key_size)
        attr = _ElemAttr(map_fd=self.fd, key=0, value=ctypes.addressof(next_key))
        while True:
            try:
                _call(BPF_MAP_GET_NEXT_KEY, attr, f"iterate {self.name}")
            except KernelError as error:
                if error.errno == errno_codes.ENOENT:
                    return
                raise
            yield next_key.raw
            ctypes.memmove(key, next_key, self.key_size)
            attr.key = ctypes.addressof(key)

    # -- batches -------------------------------------------------------------------------------

    def update_batch(self, keys: bytes | bytearray, values: bytes | bytearray, flags: int = BPF_ANY) -> int:
        """Write len(keys)/key_size elements in as few calls as the kernel allows; return the count."""
        count = len(keys) // self.key_size
        if count == 0:
            return 0
        if len(keys) != count * self.key_size or len(values) != count * self.value_size:
            raise KernelError(f"update batch in {self.name}: key/value buffers do not match the map's sizes")
        key_buffer = bytearray(keys)
        value_buffer = bytearray(values)
        done = 0
        while done < count:
            attr = _BatchAttr(
                keys=_address(key_buffer) + done * self.key_size,
                values=_address(value_buffer) + done * self.value_size,
                count=count - done,
                map_fd=self.fd,
                elem_flags=flags,
            )
            try:
                _call(BPF_MAP_UPDATE_BATCH, attr, f"update batch in {self.name}")
            except KernelError as error:
                raise KernelError(
                    f"update batch in {self.name} stopped after {done + attr.count} of {count}: "
                    f"{os.strerror(error.errno)}",
                    error.errno,
                ) from None
            done += attr.count
        return count

    def delete_batch(self, keys: bytes | bytearray) -> int:
        """Delete every key; keys that are already gone are skipped (one by one after ENOENT)."""
        count = len(keys) // self.key_size
        if count == 0:
            return 0
        key_buffer = bytearray(keys)
        done = 0
        deleted = 0
        while done < count:
            attr = _BatchAttr(keys=_address(key_buffer) + done * self.key_size, count=count - done, map_fd=self.fd)
            try:
                _call(BPF_MAP_DELETE_BATCH, attr, f"delete batch in {self.name}")
                done += attr.count
                deleted += attr.count
            except KernelError as error:
                if error.errno != errno_codes.ENOENT:
                    raise
                done += attr.count
                deleted += attr.count
                if done < count:  # the key at `done` is missing: skip it
                    done += 1
        return deleted

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every (key, value), read with LOOKUP_BATCH; a snapshot, not atomic across the map."""
        keys, values, count = self.read_all()
        k, v = self.key_size, self.value_size
        return [(keys[i * k : (i + 1) * k], values[i * v : (i + 1) * v]) for i in range(count)]

    def read_all(self) -> tuple[bytes, bytes, int]:
        """Every key and value, concatenated (key_size and value_size bytes each), and the count."""
        chunk = max(1, min(self.max_entries, 65536))
        keys = ctypes.create_string_buffer(chunk * self.key_size)
        values = ctypes.create_string_buffer(chunk * self.value_size)
        in_token = ctypes.create_string_buffer(max(8, self.key_size))
        out_token = ctypes.create_string_buffer(max(8, self.key_size))
        key_parts: list[bytes] = []
        value_parts: list[bytes] = []
        total = 0
        first = True
        while True:
            attr = _BatchAttr(
                in_batch=0 if first else ctypes.addressof(in_token),
                out_batch=ctypes.addressof(out_token),
                keys=ctypes.addressof(keys),
                values=ctypes.addressof(values),
                count=chunk,
                map_fd=self.fd,
            )
            finished = False
            try:
                _call(BPF_MAP_LOOKUP_BATCH, attr, f"read {self.name}")
            except KernelError as error:
                if error.errno != errno_codes.ENOENT:
                    raise
                finished = True
            key_parts.append(ctypes.string_at(keys, attr.count * self.key_size))
            value_parts.append(ctypes.string_at(values, attr.count * self.value_size))
            total += attr.count
            if finished:
                return b"".join(key_parts), b"".join(value_parts), total
            ctypes.memmove(in_token, out_token, len(out_token))
            first = False
