"""The member controller's loop: watch, plan (member.controller.plan), write only what differs.

    python -m member.controller     (settings from the environment, see ControllerSettings)

It is the single writer of policy status and of the policy EndpointSlices. It runs as one replica
(the chart's Deployment uses the Recreate strategy); a second replica would only repeat the same
idempotent writes.
"""

from __future__ import annotations

import datetime
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from crds import DEFAULT_CATALOGUE_NAMESPACE, BalancingPolicy, InvalidObjectError, LocalRedirectPolicy, parse_object
from member import kube
from member.agent.services import PROXIED_PROTOCOLS
from member.controller.clusterset import LOCAL_KINDS, ClusterSetLink, HubSettings, hub_kinds
from member.controller.plan import (
    NodeReport,
    desired_slices,
    policy_status,
    remote_endpoints,
    selected_endpoints,
    slice_content,
)
from member.observability import LATENCY_BUCKETS, Health, serve
from member.policies import RESOLVED_LABEL, Policy, node_proxy_ipv4, resolve_bindings, service_frontend

log = logging.getLogger("balancing.controller")
COMPONENT = "balancing-member-controller"
DEFAULT_BATCH_WINDOW = 0.05
DEFAULT_RESYNC_PERIOD = 60.0


@dataclass(frozen=True)
class ControllerSettings:
    namespace: str = "balancing-system"
    batch_window: float = DEFAULT_BATCH_WINDOW
    resync_period: float = DEFAULT_RESYNC_PERIOD
    metrics_address: str = "0.0.0.0:9965"
    kubeconfig: str | None = None
    hub: HubSettings | None = None  # set when the member has joined a hub

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> ControllerSettings:
        """POD_NAMESPACE, BALANCING_* and KUBECONFIG; the hub link when BALANCING_HUB_KUBECONFIG names a
        kubeconfig (the chart mounts the member's hub credentials there) and CLUSTER_NAME is set."""
        hub = None
        if env.get("BALANCING_HUB_KUBECONFIG") and env.get("CLUSTER_NAME"):
            hub = HubSettings(
                cluster=env["CLUSTER_NAME"], kubeconfig=env["BALANCING_HUB_KUBECONFIG"],
                catalogue=env.get("BALANCING_CATALOGUE_NAMESPACE") or DEFAULT_CATALOGUE_NAMESPACE,
                heartbeat_period=int(env.get("BALANCING_HEARTBEAT_PERIOD") or 10),
                heartbeat_timeout=int(env.get("BALANCING_HEARTBEAT_TIMEOUT") or 40),
            )
        return cls(
            namespace=env.get("POD_NAMESPACE") or env.get("BALANCING_NAMESPACE") or "balancing-system",
            batch_window=float(env.get("BALANCING_BATCH_WINDOW") or DEFAULT_BATCH_WINDOW),
            resync_period=float(env.get("BALANCING_RESYNC_PERIOD") or DEFAULT_RESYNC_PERIOD),
            metrics_address=env.get("BALANCING_METRICS_ADDRESS", "0.0.0.0:9965"),
            kubeconfig=env.get("KUBECONFIG") or None,
            hub=hub,
        )


def _key(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('namespace')}/{metadata.get('name')}" if metadata.get("namespace") else str(metadata["name"])


def _without_times(status: Mapping[str, Any] | None) -> Any:
    if not status:
        return None
    conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []]
    return {**status, "conditions": conditions}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controller:
    def __init__(self, settings: ControllerSettings) -> None:
        self.settings = settings
        self.api = kube.Api(kube.api_client(settings.kubeconfig))
        self.kinds = kube.controller_kinds(settings.namespace) + (LOCAL_KINDS if settings.hub else ())
        hub_kind_names = [kind.kind for kind in hub_kinds(settings.hub)] if settings.hub else []
        self.objects: dict[str, dict[str, Mapping[str, Any]]] = {
            name: {} for name in [kind.kind for kind in self.kinds] + hub_kind_names}
        self.events: queue.Queue[kube.WatchEvent] = queue.Queue()
        self.emitted: dict[tuple[str, str], str] = {}  # (object uid, reason) -> message last emitted
        self.registry = CollectorRegistry()
        self.link = (ClusterSetLink(settings.hub, self.api, self.objects, self._event, settings.namespace,
                                    self.registry) if settings.hub else None)
        self.health = Health(stale_after=max(60.0, 3 * settings.resync_period))
        self.stopping = threading.Event()
        self.reconciles = Counter("balancing_controller_reconciles", "Reconciles", registry=self.registry)
        self.reconcile_seconds = Histogram("balancing_controller_reconcile_duration_seconds", "Reconcile time",
                                           buckets=LATENCY_BUCKETS, registry=self.registry)
        self.writes = Counter("balancing_controller_writes", "API writes", ["what"], registry=self.registry)
        self.policies_ready = Gauge("balancing_controller_policies", "Policies by Ready reason", ["kind", "reason"],
                                    registry=self.registry)

    def _apply(self, event: kube.WatchEvent) -> None:
        if self.link is not None and event.kind.startswith("hub/"):
            self.link.saw(event)
        if event.type == "SYNCED":
            return
        table = self.objects[event.kind]
        if event.type == "DELETED":
            table.pop(_key(event.obj), None)
        else:
            table[_key(event.obj)] = event.obj

    def run(self) -> None:
        if self.settings.metrics_address:
            serve(self.settings.metrics_address, self.registry, self.health)
        kube.start_informers(self.api, self.kinds, self.events)
        if self.link is not None:
            self.link.start(self.events)  # the hub may be unreachable: its watches retry on their own
        synced: set[str] = set()
        local = {kind.kind for kind in self.kinds}
        while not local <= synced and not self.stopping.is_set():
            try:
                event = self.events.get(timeout=1.0)
            except queue.Empty:
                self.health.beat()
                continue
            if event.type == "SYNCED":
                synced.add(event.kind)
            self._apply(event)
        next_resync = 0.0  # the first reconcile runs at once
        while not self.stopping.is_set():
            self.health.beat()
            heartbeat = self.link.due() if self.link is not None else 1.0
            changed = self._gather(timeout=min(1.0, heartbeat, max(0.0, next_resync - time.monotonic())))
            if not changed and time.monotonic() < next_resync:
                if self.link is not None and self.link.due() == 0.0:
                    self.link.heartbeat()
                continue
            try:
                self.reconcile()
                self.health.ready = True
            except Exception:
                log.exception("reconcile failed; retrying")
                time.sleep(1.0)
            next_resync = time.monotonic() + self.settings.resync_period

    def _gather(self, timeout: float) -> bool:
        """Apply the next event and whatever follows within the batch window; False when none came."""
        try:
            self._apply(self.events.get(timeout=timeout))
        except queue.Empty:
            return False
        deadline = time.monotonic() + self.settings.batch_window
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self._apply(self.events.get(timeout=remaining))
            except queue.Empty:
                break
        return True

    # -- one reconcile ------------------------------------------------------------------------------

    def reconcile(self) -> None:
        started = time.perf_counter()
        policies: dict[str, Policy] = {}
        raw_policies: dict[str, Mapping[str, Any]] = {}
        for kind in ("BalancingPolicy", "LocalRedirectPolicy"):
            for obj in self.objects[kind].values():
                ref = f"{kind}/{obj['metadata']['name']}"
                raw_policies[ref] = obj
                try:
                    parsed = parse_object(obj)
                except InvalidObjectError as error:
                    self._invalid(obj, str(error))
                    continue
                assert isinstance(parsed, BalancingPolicy | LocalRedirectPolicy)
                policies[ref] = parsed
        services = self.objects["Service"]

        def lookup(namespace: str, name: str) -> Any:
            found = services.get(f"{namespace}/{name}")
            return service_frontend(found) if found is not None else None

        bindings = resolve_bindings(policies.values(), lookup)
        pods = list(self.objects["Pod"].values())
        self._write_slices(desired_slices(bindings, pods, self.settings.namespace))
        reports = self._node_reports()
        remote = remote_endpoints(self.objects["EndpointSlice"].values())
        self.policies_ready.clear()
        for ref, policy in policies.items():
            binding = bindings.get(ref)
            endpoints = [*selected_endpoints(policy, pods), *remote.get(ref, [])] \
                if binding is not None and not binding.in_conflict else []
            matcher = policy.spec.frontend.service_matcher
            exists = matcher is None or f"{matcher.namespace}/{matcher.service_name}" in services
            plan = policy_status(binding, policy, bindings, endpoints, self.objects["Node"],
                                 {node: found[ref] for node, found in reports.items() if ref in found}, exists)
            self._write_status(raw_policies[ref], plan.status)
            for event_type, reason, message in plan.events:
                self._event(raw_policies[ref], event_type, reason, message)
            ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
            self.policies_ready.labels(policy.kind, ready["reason"]).inc()
        for name, node_status in self.objects["BalancingNode"].items():
            for problem in (node_status.get("status") or {}).get("problems") or []:
                source = str(problem.get("source", ""))
                service = services.get(source.removeprefix("service:")) if source.startswith("service:") else None
                if service is not None:
                    self._event(service, "Warning", "NotProgrammed", f"{problem.get('message')} (node {name})")
        for node in self.objects["Node"].values():
            _address, problem = node_proxy_ipv4(node)
            if problem:
                self._event(node, "Warning", "InvalidAnnotation", f"{problem}; nodeProxy policies leave this node out")
        for service in services.values():
            for port in (service.get("spec") or {}).get("ports") or []:
                if (port.get("protocol") or "TCP") not in PROXIED_PROTOCOLS:
                    self._event(service, "Warning", "ProtocolNotProxied",
                                f"port {port.get('name') or port.get('port')}/{port.get('protocol')} is not proxied: "
                                f"the socket load balancer handles TCP and UDP only")
        if self.link is not None:
            self.link.reconcile()
        self.reconciles.inc()
        self.reconcile_seconds.observe(time.perf_counter() - started)

    def _node_reports(self) -> dict[str, dict[str, NodeReport]]:
        reports: dict[str, dict[str, NodeReport]] = {}
        for name, node in self.objects["BalancingNode"].items():
            for entry in (node.get("status") or {}).get("policies") or []:
                reports.setdefault(name, {})[f"{entry.get('kind')}/{entry.get('name')}"] = NodeReport(
                    state=str(entry.get("state")), generation=entry.get("generation"),
                    backends=int(entry.get("backends") or 0))
        return reports

    def _write_slices(self, desired: dict[str, dict[str, Any]]) -> None:
        existing = {obj["metadata"]["name"]: obj for obj in self.objects["EndpointSlice"].values()
                    if ((obj.get("metadata") or {}).get("labels") or {}).get(RESOLVED_LABEL) != "true"}  # the link's
        for name, body in desired.items():
            current = existing.get(name)
            if current is not None and slice_content(current) == slice_content(body):
                continue
            kube.put_object(self.api, body, current)
            self.writes.labels("endpointslice").inc()
        for name in existing.keys() - desired.keys():
            kube.delete_object(self.api, "EndpointSlice", self.settings.namespace, name)
            self.writes.labels("endpointslice-delete").inc()

    def _write_status(self, obj: Mapping[str, Any], status: dict[str, Any]) -> None:
        current = obj.get("status") or {}
        old_conditions = {c.get("type"): c for c in current.get("conditions") or []}
        now = _now()
        for condition in status["conditions"]:
            old = old_conditions.get(condition["type"])
            same = old is not None and old.get("status") == condition["status"]
            condition["lastTransitionTime"] = old["lastTransitionTime"] if same and old else now
        if _without_times(current) == _without_times(status):
            return
        try:
            kube.patch_status(self.api, str(obj["kind"]), None, obj["metadata"]["name"], status)
        except kube.ApiException as error:
            if error.status != 404:  # deleted meanwhile
                raise
        self.writes.labels("status").inc()

    def _event(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        """Emit an Event once per (object, reason, message): a resync does not repeat it."""
        key = (str((obj.get("metadata") or {}).get("uid")), reason)
        if self.emitted.get(key) == message:
            return
        self.emitted[key] = message
        try:
            kube.emit_event(self.api, obj, event_type, reason, message, COMPONENT)
            self.writes.labels("event").inc()
        except kube.ApiException as error:
            log.warning("event %s on %s failed: %s", reason, _key(obj), error.reason)

    def _invalid(self, obj: Mapping[str, Any], why: str) -> None:
        """A stored policy our models refuse (say a malformed annotation): say so on it, touch nothing else."""
        ref = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        generation = (obj.get("metadata") or {}).get("generation")
        condition = {"status": "False", "reason": "Invalid", "message": why[:32000], "observedGeneration": generation}
        status = {"observedGeneration": generation, "conditions": [
            {"type": "Accepted", **condition}, {"type": "Ready", **condition}]}
        self._write_status(obj, status)
        self._event(obj, "Warning", "Invalid", why)
        log.warning("policy refused", extra={"fields": {"policy": ref, "why": why}})

    def stop(self, *_args: object) -> None:
        self.stopping.set()


def main(settings: ControllerSettings) -> int:
    controller = Controller(settings)
    signal.signal(signal.SIGTERM, controller.stop)
    signal.signal(signal.SIGINT, controller.stop)
    log.info("controller starting", extra={"fields": {"namespace": settings.namespace}})
    controller.run()
    return 0

