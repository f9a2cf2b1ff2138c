"""The pinned maps of one node, opened by name and checked against the Python mirrors."""

from __future__ import annotations

from pathlib import Path

from datapath.errors import DatapathError, KernelError
from datapath.lb import abi
from datapath.lb.bpfsys import BPF_MAP_TYPE_RINGBUF, Map
from datapath.lb.codec import Meta, decode_meta, decode_percpu_sum, encode_meta, u32
from datapath.lb.state import Capacity


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
    def nodes(self) -> Map:
        return self._maps[abi.MAP_NODES]

    @property
    def skips(self) -> Map:
        return self._maps[abi.MAP_SKIPS]

    @property
    def meta(self) -> Map:
        return self._maps[abi.MAP_META]

    @property
    def stats(self) -> Map:
        return self._maps[abi.MAP_STATS]

    def capacity(self) -> Capacity:
        """What these maps can hold: their real sizes, whatever the build's defaults."""
        return Capacity(
            frontends=self.frontends.max_entries,
            slots=self.backends.max_entries,
            policies=self.policies.max_entries,
            nodes=self.nodes.max_entries,
            skips=self.skips.max_entries,
        )

    def read_meta(self) -> Meta:
        return decode_meta(self.meta.lookup(u32(0)))

    def write_meta(self, next_frontend: int, next_set: int, next_policy: int) -> None:
        self.meta.update(u32(0), encode_meta(next_frontend, next_set, next_policy))

    def read_stats(self) -> dict[str, int]:
        """Counters summed over CPUs, by name."""
        totals: dict[str, int] = {}
        cpus = self.stats.value_size // 8
        for stat in abi.Stat:
            raw = self.stats.lookup(u32(stat.value)) or bytes(self.stats.value_size)
            totals[stat.name.lower()] = decode_percpu_sum(raw, cpus)
        return totals
