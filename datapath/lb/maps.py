"""The pinned maps of one node, opened by name and checked against the Python mirrors."""

from __future__ import annotations

from pathlib import Path

from datapath.errors import DatapathError, KernelError
from datapath.lb import abi
from datapath.lb.bpfsys import BPF_MAP_TYPE_RINGBUF, Map


class LbMaps:
    """Every bf_lb4_* map pinned under a node's bpffs directory."""

    def __init__(self, bpffs_dir: Path) -> None:
        self.bpffs_dir = bpffs_dir
        self._maps: dict[str, Map] = {}
        try:
            for name, (key_size, value_size) in abi.MAP_LAYOUTS.items():
                path = bpffs_dir / name
                if not path.exists():
                    raise DatapathError(
                        f"{path} is missing: nothing is loaded under {bpffs_dir} (run `balancing datapath apply` first)"
                    )
                opened = Map.open_pinned(path)
                self._maps[name] = opened
                checked = opened.map_type != BPF_MAP_TYPE_RINGBUF and name != abi.MAP_STATS
                if checked and (opened.key_size, opened.value_size) != (key_size, value_size):
                    raise DatapathError(
                        f"{path}: key/value sizes {opened.key_size}/{opened.value_size} do not match this "
                        f"version's {key_size}/{value_size}; the pin is from another layout"
                    )
        except (DatapathError, KernelError):
            self.close()
            raise

    @staticmethod
    def present(bpffs_dir: Path) -> bool:
        return all((bpffs_dir / name).exists() for name in abi.MAP_LAYOUTS)

    def close(self) -> None:
        for opened in self._maps.values():
            opened.close()
        self._maps.clear()

    def __enter__(self) -> LbMaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def frontends(self) -> Map:
        return self._maps[abi.MAP_FRONTENDS]

    @property
    def backends(self) -> Map:
        return self._maps[abi.MAP_BACKENDS]

    @property
    def members(self) -> Map:
        return self._maps[abi.MAP_MEMBERS]

    @property
    def affinity(self) -> Map:
        return self._maps[abi.MAP_AFFINITY]

    @property
    def qos(self) -> Map:
        return self._maps[abi.MAP_QOS]

    @property
    def reverse(self) -> Map:
        return self._maps[abi.MAP_REVERSE]

    @property
    def events(self) -> Map:
        return self._maps[abi.MAP_EVENTS]

    @property
    def policies(self) -> Map:
        return self._maps[abi.MAP_POLICIES]

    @property
    def meta(self) -> Map:
        return self._maps[abi.MAP_META]

    @property
    def stats(self) -> Map:
        return self._maps[abi.MAP_STATS]

    def read_meta(self) -> tuple[int, int, int, int]:
        raw = self.meta.lookup(abi.U32.pack(0))
        layout, next_frontend, next_set, next_policy = abi.META.unpack(raw or bytes(abi.META.size))
        return layout, next_frontend, next_set, next_policy

    def write_meta(self, next_frontend: int, next_set: int, next_policy: int) -> None:
        self.meta.update(abi.U32.pack(0), abi.META.pack(abi.LAYOUT_VERSION, next_frontend, next_set, next_policy))

    def read_stats(self) -> dict[str, int]:
        """Counters summed over CPUs, by name."""
        totals: dict[str, int] = {}
        width = self.stats.value_size // 8
        for stat in abi.Stat:
            raw = self.stats.lookup(abi.U32.pack(stat.value)) or bytes(self.stats.value_size)
            totals[stat.name.lower()] = sum(abi.U64.unpack_from(raw, cpu * 8)[0] for cpu in range(width))
        return totals
