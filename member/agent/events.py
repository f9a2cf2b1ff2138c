"""Resolution events: the kernel's event ring, named with the client's pod, as JSON log lines.

The agent is the ring's one reader while it runs (a BPF ring buffer has a single read position).
Each event becomes a log line with the client's namespace, pod and container (from its cgroup id,
laid out as kubelet lays cgroups out), the original and new destination, the tier, the policy and
the result; and it is counted in `balancing_agent_resolutions_total`.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from datapath.lb import EventStream, MapReader, ResolutionEvent
from member.agent.cache import ClusterCache
from member.agent.metrics import AgentMetrics
from member.agent.pods import PodCgroups

log = logging.getLogger("balancing.agent.events")
COUNTER_REFRESH_SECONDS = 5.0


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
        with EventStream(self.bpffs) as stream, MapReader(self.bpffs) as reader:
            while True:
                for event in stream.poll(1.0):
                    self.metrics.resolutions.labels(event.tier, event.result, event.policy or "-").inc()
                    fields = event_fields(event, client_identity(event, self.cache, self.cgroups))
                    log.info("resolution", extra={"fields": fields})
                if time.monotonic() >= next_counters:
                    self.metrics.events_dropped.set(reader.counters().get("events_dropped", 0))
                    next_counters = time.monotonic() + COUNTER_REFRESH_SECONDS
