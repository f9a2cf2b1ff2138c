"""One node's socket load balancer: the loader and the writer behind one small API.

    lb = SocketLB(bpffs_dir, cgroup)
    lb.apply(state)      # first call loads and attaches if needed, then reconciles
    lb.apply(new_state)  # later calls only diff and write
    lb.close()           # the datapath keeps running: links and maps are pinned

A restarted process builds a new SocketLB over the same pins: it adopts them and rewrites nothing
that is already right.
"""

from __future__ import annotations

from pathlib import Path

from datapath.lb import abi, loader
from datapath.lb.build import ensure_object
from datapath.lb.maps import LbMaps
from datapath.lb.state import Capacity, DesiredState, FrontendSpec
from datapath.lb.writer import ApplyReport, MapWriter


def capacity(bpffs_dir: Path) -> Capacity:
    """The capacity of the pinned maps, or of a fresh build when nothing is pinned yet."""
    if not LbMaps.present(bpffs_dir):
        return Capacity()
    with LbMaps(bpffs_dir) as maps:
        return Capacity(maps.frontends.max_entries, maps.backends.max_entries, maps.policies.max_entries)


class SocketLB:
    def __init__(self, bpffs_dir: Path, cgroup: Path, object_path: Path | None = None) -> None:
        self.bpffs_dir = bpffs_dir
        self.cgroup = cgroup
        self.object_path = object_path
        self.writer: MapWriter | None = None
        self._maps: LbMaps | None = None
        self.load_report: loader.LoadReport | None = None

    def apply(self, state: DesiredState) -> ApplyReport:
        if self.writer is not None:
            return self.writer.apply(state)
        reports: list[ApplyReport] = []

        def fill(maps: LbMaps, upgrading: bool) -> None:
            # During a layout upgrade the running programs still read the old maps: what looks
            # unreferenced from the new maps is theirs, so it is collected at the next apply.
            self.writer = MapWriter(maps, collect_adopted_garbage=not upgrading)
            reports.append(self.writer.apply(state))

        object_path = self.object_path or ensure_object()
        self.load_report, self._maps = loader.load(self.bpffs_dir, self.cgroup, object_path, fill)
        return reports[0]

    def _require_writer(self) -> MapWriter:
        if self.writer is None:
            raise RuntimeError("apply() a full state before incremental updates")
        return self.writer

    def upsert(self, tier: abi.Tier, spec: FrontendSpec) -> ApplyReport:
        return self._require_writer().upsert(tier, spec)

    def remove(self, tier: abi.Tier, ip: str, port: int, protocol: str) -> ApplyReport:
        return self._require_writer().remove(tier, ip, port, protocol)

    def close(self) -> None:
        if self._maps is not None:
            self._maps.close()
            self._maps = None
        self.writer = None

    def __enter__(self) -> SocketLB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detach(bpffs_dir: Path, cgroup: Path) -> list[str]:
    return loader.detach(bpffs_dir, cgroup)
