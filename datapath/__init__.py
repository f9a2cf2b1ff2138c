"""Node-level datapath: BPF loader and map writer, WireGuard tunnels, routes, events.

This package talks to the kernel and to nothing else: it imports no Kubernetes client.
Callers outside `datapath` import only from `datapath`, `datapath.lb` and `datapath.tunnel`
(an import-linter contract in pyproject.toml checks it).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

from datapath.errors import DatapathError, KernelError, StateError
from datapath.paths import DEFAULT_NODE_INDEX_DIR, bpf_source_dir, cache_root, node_index_dir
from datapath.process import process_start_time, stop_process

__all__ = [
    "DEFAULT_NODE_INDEX_DIR",
    "DatapathError",
    "KernelError",
    "StateError",
    "bpf_source_dir",
    "cache_root",
    "lazy_exports",
    "node_index_dir",
    "process_start_time",
    "stop_process",
]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` for `package` that imports each public name from its module on first
    use, so that importing the package (say, for its CLI) pulls in neither libbpf nor pydantic."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
