"""The cgroup eBPF socket load balancer: desired state, loader, map writer, reader.

The public API; everything else in this package is internal (import-linter checks both).

    lb = SocketLB(bpffs_dir, cgroup)
    report = lb.apply(parse_state(document))     # first call loads and attaches, then reconciles
    lb.upsert(Tier.SERVICE, spec); lb.remove(Tier.SERVICE, ip, port, protocol)
    lb.close()                                   # the datapath keeps running: links and maps are pinned
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from datapath import lazy_exports

if TYPE_CHECKING:
    from datapath.errors import DatapathError, KernelError, StateError
    from datapath.lb.abi import LAYOUT_VERSION, Tier
    from datapath.lb.build import BuildError, ensure_object
    from datapath.lb.facade import SocketLB, capacity, detach
    from datapath.lb.loader import AttachedLink, LoadReport, attached_links
    from datapath.lb.reader import EventStream, Explanation, MapReader, ResolutionEvent, TierEntry
    from datapath.lb.state import (
        MAX_AFFINITY_TIMEOUT_S,
        MAX_BACKENDS_PER_FRONTEND,
        NODE_PORT_ANY,
        BackendSpec,
        Capacity,
        DesiredState,
        FrontendSpec,
        Tiers,
        load_state,
        parse_state,
    )
    from datapath.lb.writer import ApplyReport

_EXPORTS = {
    "DatapathError": "datapath.errors",
    "KernelError": "datapath.errors",
    "StateError": "datapath.errors",
    "LAYOUT_VERSION": "datapath.lb.abi",
    "Tier": "datapath.lb.abi",
    "BuildError": "datapath.lb.build",
    "ensure_object": "datapath.lb.build",
    "SocketLB": "datapath.lb.facade",
    "capacity": "datapath.lb.facade",
    "detach": "datapath.lb.facade",
    "AttachedLink": "datapath.lb.loader",
    "LoadReport": "datapath.lb.loader",
    "attached_links": "datapath.lb.loader",
    "EventStream": "datapath.lb.reader",
    "Explanation": "datapath.lb.reader",
    "MapReader": "datapath.lb.reader",
    "ResolutionEvent": "datapath.lb.reader",
    "TierEntry": "datapath.lb.reader",
    "MAX_AFFINITY_TIMEOUT_S": "datapath.lb.state",
    "MAX_BACKENDS_PER_FRONTEND": "datapath.lb.state",
    "NODE_PORT_ANY": "datapath.lb.state",
    "BackendSpec": "datapath.lb.state",
    "Capacity": "datapath.lb.state",
    "DesiredState": "datapath.lb.state",
    "FrontendSpec": "datapath.lb.state",
    "Tiers": "datapath.lb.state",
    "load_state": "datapath.lb.state",
    "parse_state": "datapath.lb.state",
    "ApplyReport": "datapath.lb.writer",
}
__all__ = [
    "LAYOUT_VERSION",
    "MAX_AFFINITY_TIMEOUT_S",
    "MAX_BACKENDS_PER_FRONTEND",
    "NODE_PORT_ANY",
    "ApplyReport",
    "AttachedLink",
    "BackendSpec",
    "BuildError",
    "Capacity",
    "DatapathError",
    "DesiredState",
    "EventStream",
    "Explanation",
    "FrontendSpec",
    "KernelError",
    "LoadReport",
    "MapReader",
    "ResolutionEvent",
    "SocketLB",
    "StateError",
    "Tier",
    "TierEntry",
    "Tiers",
    "attached_links",
    "capacity",
    "detach",
    "ensure_object",
    "load_state",
    "parse_state",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
