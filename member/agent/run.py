"""The node agent's loop: watch events in, batched syncs out, status and metrics on the side.

    python -m member.agent          (settings from the environment: member.agent.settings)
"""

from __future__ import annotations

import datetime
import logging
import queue
import signal
import threading
import time
from collections.abc import Iterable
from typing import Any

from datapath import DatapathError
from datapath.lb import SocketLB, Tier
from datapath.tunnel import TunnelManager
from member import kube
from member.agent.cache import NODES, TUNNEL, ClusterCache
from member.agent.events import EventReader
from member.agent.metrics import AgentMetrics
from member.agent.pods import PodCgroups
from member.agent.reconciler import Reconciler, SyncResult
from member.agent.report import node_status
from member.agent.settings import AgentSettings
from member.agent.translate import AgentOptions
from member.agent.tunnel import TunnelWorker, tunnel_node
from member.observability import Health, serve

log = logging.getLogger("balancing.agent")

TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
STATUS_HEARTBEAT_SECONDS = 60.0


def _trigger_time(obj: Any) -> float | None:
    """The wall-clock time of the change an EndpointSlice reflects, as kube-controller-manager stamps it."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_TIME_ANNOTATION)
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class StatusWriter(threading.Thread):
    """Writes the latest BalancingNode status in the background, at most once per period."""

    def __init__(self, api: kube.Api, node_name: str, period: float) -> None:
        super().__init__(name="status", daemon=True)
        self.api, self.node_name, self.period = api, node_name, period
        self._latest: dict[str, Any] | None = None
        self._written: dict[str, Any] | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._transition: tuple[str, str] = ("", "")
        self._last_write = 0.0

    def offer(self, status: dict[str, Any]) -> None:
        condition = status["conditions"][0]
        if condition["status"] == self._transition[0]:
            condition["lastTransitionTime"] = self._transition[1]
        else:
            self._transition = (condition["status"], condition["lastTransitionTime"])
        with self._lock:
            self._latest = status
        self._wake.set()

    @staticmethod
    def _content(status: dict[str, Any] | None) -> Any:
        return None if status is None else {k: v for k, v in status.items() if k != "lastSyncTime"}

    def run(self) -> None:
        while True:
            self._wake.wait(timeout=STATUS_HEARTBEAT_SECONDS)
            self._wake.clear()
            time.sleep(max(0.0, self._last_write + self.period - time.monotonic()))
            with self._lock:
                status = self._latest
            if status is None:
                continue
            stale = time.monotonic() - self._last_write >= STATUS_HEARTBEAT_SECONDS
            if self._content(status) == self._content(self._written) and not stale:
                continue
            try:
                kube.write_node_status(self.api, self.node_name, status)
                self._written, self._last_write = status, time.monotonic()
            except Exception as error:  # the datapath does not depend on this write: retry later
                log.warning("writing BalancingNode %s status failed: %s", self.node_name, error)
                self._wake.set()
                time.sleep(1.0)


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.metrics = AgentMetrics()
        self.health = Health(stale_after=max(60.0, 3 * settings.resync_period))
        self.events: queue.Queue[kube.WatchEvent] = queue.Queue()
        self.cache = ClusterCache(settings.node_name, settings.namespace)
        self.api = kube.Api(kube.api_client(settings.kubeconfig))
        self.cgroups = PodCgroups(settings.cgroup_root)
        self.stopping = threading.Event()
        self.kinds = kube.agent_kinds(settings.node_name)
        self.datapath: SocketLB | None = None
        self.tunnel: TunnelWorker | None = None
        self.public_key = ""
        self.reconciler: Reconciler | None = None

    def _wait_for_lists(self) -> None:
        """Fill the cache from every kind's first list before touching the datapath: a sync from a partial
        cache would remove frontends that are merely not listed yet."""
        synced: set[str] = set()
        while len(synced) < len(self.kinds) and not self.stopping.is_set():
            try:
                event = self.events.get(timeout=1.0)
            except queue.Empty:
                self.health.beat()
                continue
            if event.type == "SYNCED":
                synced.add(event.kind)
            else:
                self.cache.apply(event.kind, event.type, event.obj)

    def run(self) -> None:
        settings = self.settings
        if settings.metrics_address:
            serve(settings.metrics_address, self.metrics.registry, self.health)
        kube.start_informers(self.api, self.kinds, self.events)
        status_writer = StatusWriter(self.api, settings.node_name, settings.status_period)
        status_writer.start()
        self._wait_for_lists()
        if self.stopping.is_set():
            return
        self.datapath = SocketLB(settings.bpffs, settings.cgroup_root, allow_cgroup_root=settings.allow_cgroup_root)
        self.reconciler = Reconciler(
            self.datapath, self.cache,
            AgentOptions(default_qos_limit=settings.redirect_qos_limit, cluster=settings.cluster),
            self.cgroups.pod_cgroup_id,
        )
        self._record(self.reconciler.full_sync(), [], [])
        self.health.ready = True
        status_writer.offer(self._status())
        EventReader(settings.bpffs, self.cache, self.cgroups, self.metrics).start()
        self._start_tunnel()
        next_resync = time.monotonic() + settings.resync_period
        while not self.stopping.is_set():
            self.health.beat()
            try:
                first = self.events.get(timeout=max(0.0, min(1.0, next_resync - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= next_resync:
                    self._record(self.reconciler.full_sync(), [], [])
                    next_resync = time.monotonic() + settings.resync_period
                    status_writer.offer(self._status())
                continue
            batch = [first, *self._drain(settings.batch_window)]
            dirty: set[str] = set()
            for event in batch:
                if event.type != "SYNCED":
                    dirty |= self.cache.apply(event.kind, event.type, event.obj)
            if TUNNEL in dirty or NODES in dirty:
                self._tunnel_changed()
            dirty.discard(TUNNEL)
            if not dirty:
                continue
            result = self.reconciler.sync(dirty)
            triggers = [t for e in batch if e.kind == "EndpointSlice" and (t := _trigger_time(e.obj)) is not None]
            self._record(result, [e.arrived for e in batch], triggers)
            status_writer.offer(self._status())

    def _start_tunnel(self) -> None:
        """Make or load the node's WireGuard key (its public key is reported in the BalancingNode status),
        and apply the hub's plan whenever it changes. Without WireGuard tools the node stays out of the mesh."""
        settings = self.settings
        node = tunnel_node(settings.node_name, settings.state_dir, settings.cgroup_root,
                           dict(self.cache.node) if self.cache.node else None)
        worker = TunnelWorker(TunnelManager(node))
        try:
            self.public_key = worker.public_key()
        except DatapathError as error:
            log.warning("no WireGuard key: this node stays out of the mesh", extra={"fields": {"error": str(error)}})
            return
        self.tunnel = worker
        worker.start()
        self._tunnel_changed()

    def _tunnel_changed(self) -> None:
        if self.tunnel is not None:
            self.tunnel.offer(((self.cache.own or {}).get("spec") or {}).get("tunnel"))

    def _drain(self, window: float) -> Iterable[kube.WatchEvent]:
        deadline = time.monotonic() + window
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                yield self.events.get(timeout=remaining)
            except queue.Empty:
                return

    def _record(self, result: SyncResult, arrivals: list[float], triggers: list[float]) -> None:
        kind = "full" if result.full else "incremental"
        self.metrics.syncs.labels(kind).inc()
        self.metrics.sync_seconds.labels(kind).observe(result.seconds)
        self.metrics.map_writes.inc(result.elements_written)
        if result.elements_written:
            done, now = time.monotonic(), time.time()
            for arrived in arrivals:
                self.metrics.programming_latency.observe(done - arrived)
            for trigger in triggers:
                self.metrics.network_programming.observe(max(0.0, now - trigger))
        assert self.reconciler is not None
        programmed = self.reconciler.programmed
        for tier in Tier:
            self.metrics.frontends.labels(tier.label).set(sum(1 for key in programmed if key[0] == tier))
        self.metrics.backends.set(sum(len(spec.backends) for _source, spec in programmed.values()))
        self.metrics.problems.set(len(self.reconciler.problems))
        fields = {"sync": kind, "upserts": result.upserts, "removals": result.removals,
                  "mapWrites": result.elements_written, "ms": round(result.seconds * 1000, 2)}
        if result.report is not None:
            report = result.report
            fields["frontends"] = {"added": report.added, "swapped": report.swapped, "retuned": report.retuned,
                                   "removed": report.removed, "unchanged": report.unchanged}
            fields["collected"] = {"backendSets": report.garbage_sets_deleted, "policyNames": report.policies_retired}
        if result.problems:
            fields["problems"] = result.problems
        if result.lost:
            fields["lost"] = result.lost[:20]
        if result.full or result.problems or result.lost:
            log.info("datapath synced", extra={"fields": fields})
        else:
            log.debug("datapath synced", extra={"fields": fields})

    def _status(self) -> dict[str, Any]:
        assert self.reconciler is not None
        status = node_status(self.cache, self.reconciler.outputs, self.reconciler.programmed, self.reconciler.problems)
        if self.public_key:
            status["wireguardPublicKey"] = self.public_key
        if self.tunnel is not None and self.tunnel.problem:
            status["problems"] = [*status["problems"], {"source": "tunnel", "message": self.tunnel.problem[:1000]}]
        return status

    def stop(self, *_args: object) -> None:
        self.stopping.set()


def main(settings: AgentSettings) -> int:
    agent = Agent(settings)
    signal.signal(signal.SIGTERM, agent.stop)
    signal.signal(signal.SIGINT, agent.stop)
    log.info("agent starting", extra={"fields": {"node": settings.node_name, "bpffs": str(settings.bpffs),
                                                  "cgroup": str(settings.cgroup_root)}})
    agent.run()
    if agent.datapath is not None:
        agent.datapath.close()  # the links and maps stay pinned: the datapath keeps working
    log.info("agent stopped; the datapath keeps running")
    return 0
