"""Build the socket load balancer's BPF object, once per kernel and source version.

The object is compiled with clang (`-target bpf`, CO-RE) against a `vmlinux.h` generated from the
running kernel's BTF, into `$BALANCING_CACHE/bpf/<kernel release>-<source hash>/bf_sock.o`. It is
rebuilt only when missing or when a source file under `bpf/` changed. `balancing datapath build`
calls `ensure_object()`; so do the loader and the tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from datapath.errors import DatapathError
from datapath.paths import bpf_source_dir, cache_root

OBJECT_NAME = "bf_sock.o"
PROGRAM_SOURCE = "bf_sock.c"
# Built beside the programs, never loaded: every mirrored struct in its BTF (see the source).
ALIGNCHECKER_NAME = "bf_alignchecker.o"
ALIGNCHECKER_SOURCE = "bf_alignchecker.c"
KERNEL_BTF = Path("/sys/kernel/btf/vmlinux")
CLANG_FLAGS: tuple[str, ...] = ("-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", "-Wall", "-Werror")


class BuildError(DatapathError):
    """The BPF object could not be built (missing tool, compile error)."""


def source_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in (".c", ".h"))


def source_hash(directory: Path, defines: Sequence[str] = ()) -> str:
    digest = hashlib.sha256()
    for path in source_files(directory):
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update("\0".join([*CLANG_FLAGS, *defines]).encode())
    return digest.hexdigest()[:16]


def object_dir(defines: Sequence[str] = ()) -> Path:
    return cache_root() / "bpf" / f"{platform.release()}-{source_hash(bpf_source_dir(), defines)}"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"{name} not found on PATH: install it (Debian: clang, bpftool) to build the datapath")
    return path


def _run(argv: Sequence[str]) -> bytes:
    result = subprocess.run(list(argv), capture_output=True)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.decode().strip()}")
    return result.stdout


def ensure_object(defines: Sequence[str] = ()) -> Path:
    """The path of an up-to-date compiled object; build it first when missing or stale.

    `defines` are extra `-DNAME=VALUE` flags (capacities, test variants); each set of defines gets
    its own cache directory.
    """
    target_dir = object_dir(defines)
    target = target_dir / OBJECT_NAME
    if target.exists():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with open(target_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent builders wait for the first one
        if target.exists():
            return target
        _build(target_dir, target, defines)
    return target


def _build(target_dir: Path, target: Path, defines: Sequence[str]) -> None:
    if not KERNEL_BTF.exists():
        raise BuildError(f"{KERNEL_BTF} is missing: the kernel must be built with CONFIG_DEBUG_INFO_BTF")
    vmlinux_h = target_dir / "vmlinux.h"
    if not vmlinux_h.exists():
        header = _run([_tool("bpftool"), "btf", "dump", "file", str(KERNEL_BTF), "format", "c"])
        partial = vmlinux_h.with_suffix(".h.tmp")
        partial.write_bytes(header)
        partial.rename(vmlinux_h)
    # The align checker first: `target` existing is what marks the directory complete.
    for source, output in ((ALIGNCHECKER_SOURCE, target_dir / ALIGNCHECKER_NAME), (PROGRAM_SOURCE, target)):
        partial = output.with_suffix(".o.tmp")
        _run(
            [
                _tool("clang"),
                *CLANG_FLAGS,
                *(f"-D{define}" for define in defines),
                f"-I{target_dir}",
                "-c",
                str(bpf_source_dir() / source),
                "-o",
                str(partial),
            ]
        )
        partial.rename(output)


def alignchecker_object(defines: Sequence[str] = ()) -> Path:
    """The never-loaded object whose BTF holds every struct userspace mirrors."""
    return ensure_object(defines).with_name(ALIGNCHECKER_NAME)
