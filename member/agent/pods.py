"""Which pod a cgroup belongs to on this node, and a pod's own cgroup id (kubelet's cgroup layout).

A thin cache over `datapath.cgroups`: event enrichment asks for many ids, most of them repeats, and
node processes (outside any pod) would otherwise re-walk the cgroup tree on every event.
"""

from __future__ import annotations

import time
from pathlib import Path

from datapath.cgroups import CgroupIndex, CgroupOwner

MISS_TTL_SECONDS = 5.0


class PodCgroups:
    def __init__(self, root: Path) -> None:
        self.index = CgroupIndex(root)
        self._misses: dict[int, float] = {}

    def identify(self, cgroup_id: int) -> CgroupOwner | None:
        """The pod (and container) of a cgroup id; None for the node's own processes."""
        now = time.monotonic()
        if self._misses.get(cgroup_id, 0.0) > now:
            return None
        owner = self.index.resolve(cgroup_id)
        if owner is None:
            if len(self._misses) > 4096:
                self._misses = {k: v for k, v in self._misses.items() if v > now}
            self._misses[cgroup_id] = now + MISS_TTL_SECONDS
        return owner

    def pod_cgroup_id(self, pod_uid: str) -> int | None:
        """The pod-level cgroup id of a pod running on this node, or None when it has none here."""
        return self.index.pod_cgroup_id(pod_uid)
