"""libbpf 1.x through ctypes: open an object with a pin root, load it, attach to a cgroup, ring buffers.

Only the few entry points the loader needs are bound. libbpf's own log lines are captured (not
printed) so that a failed load can report the verifier's reason in its error message.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from datapath.errors import KernelError

LIBBPF_NAMES = ("libbpf.so.1", "libbpf.so")


def _load() -> ctypes.CDLL:
    for name in LIBBPF_NAMES:
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
    raise KernelError("libbpf.so.1 not found: install libbpf1 (Debian) to load the datapath")


_lib = _load()
_libc = ctypes.CDLL(None)
_vp = ctypes.c_void_p


def _bind(name: str, restype: object, *argtypes: object) -> Any:
    function = getattr(_lib, name)
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


class OpenOptions(ctypes.Structure):
    """The leading fields of struct bpf_object_open_opts; `sz` tells libbpf where we stop."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
    ]


_open_file = _bind("bpf_object__open_file", _vp, ctypes.c_char_p, ctypes.POINTER(OpenOptions))
_object_load = _bind("bpf_object__load", ctypes.c_int, _vp)
_object_close = _bind("bpf_object__close", None, _vp)
_find_program = _bind("bpf_object__find_program_by_name", _vp, _vp, ctypes.c_char_p)
_program_fd = _bind("bpf_program__fd", ctypes.c_int, _vp)
_next_map = _bind("bpf_object__next_map", _vp, _vp, _vp)
_map_name = _bind("bpf_map__name", ctypes.c_char_p, _vp)
_map_fd = _bind("bpf_map__fd", ctypes.c_int, _vp)
_attach_cgroup = _bind("bpf_program__attach_cgroup", _vp, _vp, ctypes.c_int)
_link_pin = _bind("bpf_link__pin", ctypes.c_int, _vp, ctypes.c_char_p)
_link_fd = _bind("bpf_link__fd", ctypes.c_int, _vp)
_link_destroy = _bind("bpf_link__destroy", ctypes.c_int, _vp)
_link_disconnect = _bind("bpf_link__disconnect", None, _vp)

_PrintFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_set_print = _bind("libbpf_set_print", _vp, _PrintFn)
_vsnprintf = _libc.vsnprintf
_vsnprintf.restype = ctypes.c_int
_vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]

_log: list[str] = []


def _capture_line(level: int, fmt: bytes, args: int) -> int:
    if level > 1:  # LIBBPF_DEBUG: too chatty to keep
        return 0
    buffer = ctypes.create_string_buffer(4096)
    _vsnprintf(buffer, len(buffer), fmt, args)
    _log.append(buffer.value.decode(errors="replace").rstrip())
    del _log[:-200]
    return 0


_capture = _PrintFn(_capture_line)  # module-level: libbpf keeps the pointer
_set_print(_capture)

RingCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_ring_new = _bind("ring_buffer__new", _vp, ctypes.c_int, RingCallback, _vp, _vp)
_ring_poll = _bind("ring_buffer__poll", ctypes.c_int, _vp, ctypes.c_int)
_ring_consume = _bind("ring_buffer__consume", ctypes.c_int, _vp)
_ring_free = _bind("ring_buffer__free", None, _vp)


def _failure(what: str) -> KernelError:
    code = ctypes.get_errno()
    reasons = [line for line in _log[-8:] if line]
    detail = f" (libbpf: {' | '.join(reasons)})" if reasons else ""
    return KernelError(f"{what}: {os.strerror(code) if code else 'failed'}{detail}", code)


class BpfObject:
    """A loaded BPF object whose maps are pinned under `pin_root` (reused when already pinned)."""

    def __init__(self, path: Path, pin_root: Path) -> None:
        self._path_bytes = os.fsencode(path)
        self._pin_root = os.fsencode(pin_root)
        options = OpenOptions(sz=ctypes.sizeof(OpenOptions), pin_root_path=self._pin_root)
        _log.clear()
        handle = _open_file(self._path_bytes, ctypes.byref(options))
        if not handle:
            raise _failure(f"open BPF object {path}")
        self._handle: int | None = int(handle)
        if int(_object_load(self._handle)) != 0:
            error = _failure(f"load BPF object {path} with maps pinned under {pin_root}")
            self.close()
            raise error

    def close(self) -> None:
        if self._handle is not None:
            _object_close(self._handle)
            self._handle = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _program(self, name: str) -> int:
        program = _find_program(self._handle, name.encode())
        if not program:
            raise KernelError(f"program {name} is not in the BPF object")
        return int(program)

    def program_fd(self, name: str) -> int:
        return int(_program_fd(self._program(name)))

    def map_names(self) -> list[str]:
        names: list[str] = []
        current = _next_map(self._handle, None)
        while current:
            raw = _map_name(current)
            names.append(raw.decode() if isinstance(raw, bytes) else "")
            current = _next_map(self._handle, current)
        return names

    def attach_cgroup(self, program: str, cgroup_fd: int, pin_path: Path) -> None:
        """Attach `program` to the cgroup with a BPF link and pin the link (it then outlives us)."""
        link = _attach_cgroup(self._program(program), cgroup_fd)
        if not link:
            raise _failure(f"attach {program} to cgroup")
        try:
            if int(_link_pin(link, os.fsencode(pin_path))) != 0:
                raise _failure(f"pin link {pin_path}")
        finally:
            _link_destroy(link)  # closes our fd; the pin keeps the link attached


class RingBuffer:
    """Consume a (pinned) BPF ring buffer; `callback` gets each record's bytes."""

    def __init__(self, map_fd: int, callback: Callable[[bytes], None]) -> None:
        def on_record(_ctx: int, data: int, size: int) -> int:
            callback(ctypes.string_at(data, size))
            return 0

        self._callback = RingCallback(on_record)  # keep a reference for libbpf
        _log.clear()
        handle = _ring_new(map_fd, self._callback, None, None)
        if not handle:
            raise _failure("open ring buffer")
        self._handle: int | None = int(handle)

    def poll(self, timeout_ms: int) -> int:
        count = int(_ring_poll(self._handle, timeout_ms))
        if count < 0 and -count != 4:  # EINTR is fine
            raise KernelError(f"poll ring buffer: {os.strerror(-count)}", -count)
        return max(count, 0)

    def consume(self) -> int:
        """Read every record available now, without waiting."""
        count = int(_ring_consume(self._handle))
        if count < 0:
            raise KernelError(f"read ring buffer: {os.strerror(-count)}", -count)
        return count

    def close(self) -> None:
        if self._handle is not None:
            _ring_free(self._handle)
            self._handle = None


@contextmanager
def opened(path: Path, pin_root: Path) -> Iterator[BpfObject]:
    bpf_object = BpfObject(path, pin_root)
    try:
        yield bpf_object
    finally:
        bpf_object.close()
