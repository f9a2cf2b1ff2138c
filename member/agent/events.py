"""Resolution events: the kernel's event ring, named with the client's pod, as JSON log lines.

The agent is the ring's one reader while it runs (a BPF ring buffer has a single read position).
Each event becomes a log line with the client's namespace, pod and container (from its cgroup id,
laid out as kubelet lays cgroups out), the original and new destination, the tier, the policy and
the result; and it is counted in `balancing_agent_resolutions_total`.

Log lines are limited to RESOLUTION_LOG_RATE a second: a node making tens of thousands of connects a
second would otherwise spend a core of the agent writing them (docs/benchmarks.md). Every event is
still counted; what was not logged is summed up in one line, once the second it fell in is over.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datapath.lb import EventStream, MapReader, ResolutionEvent
from member.agent.cache import ClusterCache
from member.agent.metrics import AgentMetrics
from member.agent.pods import PodCgroups

log = logging.getLogger("balancing.agent.events")
COUNTER_REFRESH_SECONDS = 5.0
RESOLUTION_LOG_RATE = 100  # resolution log lines a second, at most


@dataclass
class LogBudget:
    """At most `per_second` log lines in each one-second window; counts the lines it refused."""

    per_second: int
    _window_end: float = 0.0
    _logged: int = 0
    _refused: int = 0

    def allow(self, now: float) -> bool:
        if now >= self._window_end:
            self._window_end, self._logged = now + 1.0, 0
        if self._logged < self.per_second:
            self._logged += 1
            return True
        self._refused += 1
        return False

    def refused(self, now: float) -> int:
        """The lines refused since the last call, once the window they fell in is over (0 until then)."""
        if now < self._window_end or not self._refused:
            return 0
        count, self._refused = self._refused, 0
        return count


def client_identity(event: ResolutionEvent, cache: ClusterCache, cgroups: PodCgroups) -> dict[str, str]:
    """{namespace, pod, container} of the process that connected, or {"client": "host"} for a node process."""
    found = cgroups.identify(event.cgroup_id)
    if found is None:
        return {"client": "host"}
    pod = cache.pod_by_uid(found.pod_uid)
    if pod is None:
        return {"client": "pod", "podUID": found.pod_uid}
    metadata = pod.get("metadata") or {}
    identity = {"client": "pod", "namespace": str(metadata.get("namespace")), "pod": str(metadata.get("name"))}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if str(status.get("containerID") or "").endswith(f"://{found.container_id}"):
            identity["container"] = str(status.get("name"))
    return identity


def event_fields(event: ResolutionEvent, identity: dict[str, str]) -> dict[str, Any]:
    return {
        **identity,
        "hook": event.hook,
        "protocol": event.protocol,
        "original": event.original,
        "new": event.new,
        "tier": event.tier,
        "policy": event.policy,
        "result": event.result,
        "fellThrough": event.fell_through,
        "affinity": event.affinity,
        "pid": event.pid,
        "cgroupId": event.cgroup_id,
    }


class EventReader(threading.Thread):
    def __init__(self, bpffs: Path, cache: ClusterCache, cgroups: PodCgroups, metrics: AgentMetrics) -> None:
        super().__init__(name="events", daemon=True)
        self.bpffs, self.cache, self.cgroups, self.metrics = bpffs, cache, cgroups, metrics

    def run(self) -> None:
        while True:
            try:
                self._follow()
            except Exception as error:  # the ring or the maps were replaced (upgrade): reopen
                log.warning("event ring: %s; reopening", error)
                time.sleep(1.0)

    def _follow(self) -> None:
        next_counters = 0.0
        budget = LogBudget(RESOLUTION_LOG_RATE)
        with EventStream(self.bpffs) as stream, MapReader(self.bpffs) as reader:
            while True:
                counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
                for event in stream.poll(1.0):
                    counts[(event.tier, event.result, event.policy or "-")] += 1
                    if budget.allow(time.monotonic()):
                        fields = event_fields(event, client_identity(event, self.cache, self.cgroups))
                        log.info("resolution", extra={"fields": fields})
                for labels, count in counts.items():  # one increment per label set and batch, not per event
                    self.metrics.resolutions.labels(*labels).inc(count)
                refused = budget.refused(time.monotonic())
                if refused:
                    log.info("resolutions not logged", extra={"fields": {
                        "count": refused, "limit": f"{RESOLUTION_LOG_RATE}/s",
                        "see": "balancing_agent_resolutions_total"}})
                if time.monotonic() >= next_counters:
                    self.metrics.events_dropped.set(reader.counters().get("events_dropped", 0))
                    next_counters = time.monotonic() + COUNTER_REFRESH_SECONDS
