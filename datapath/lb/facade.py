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
        return maps.capacity()


class SocketLB:
    """The socket load balancer of one node: `bpffs_dir` holds its pins, `cgroup` is where its
    programs attach (never the cgroup2 root unless `allow_cgroup_root`: that would rewrite every
    process on the machine)."""

    def __init__(
        self, bpffs_dir: Path, cgroup: Path, object_path: Path | None = None, allow_cgroup_root: bool = False
    ) -> None:
        self.bpffs_dir = bpffs_dir
        self.cgroup = cgroup
        self.object_path = object_path
        self.allow_cgroup_root = allow_cgroup_root
        self.writer: MapWriter | None = None
        self._maps: LbMaps | None = None
        self.load_report: loader.LoadReport | None = None

    def apply(self, state: DesiredState, reread: bool = False) -> ApplyReport:
        """Make the kernel resolve exactly `state`: a full, level-triggered sync that writes only the
        difference. The first call loads and attaches if needed. `reread` reads the maps back from the
        kernel first, to undo changes made behind this writer's back (the first call always does)."""
        if self.writer is not None:
            if reread:
                self.writer.reread()
            return self.writer.apply(state)
        reports: list[ApplyReport] = []

        def fill(maps: LbMaps, upgrading: bool) -> None:
            # During a layout upgrade the running programs still read the old maps: what looks
            # unreferenced from the new maps is theirs, so it is collected at the next apply.
            self.writer = MapWriter(maps, collect_adopted_garbage=not upgrading)
            reports.append(self.writer.apply(state))

        object_path = self.object_path or ensure_object()
        self.load_report, self._maps = loader.load(
            self.bpffs_dir, self.cgroup, object_path, fill, allow_cgroup_root=self.allow_cgroup_root
        )
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
