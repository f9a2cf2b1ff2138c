"""The member controller's link to the hub: export, heartbeat, import (docs/federation.md).

Pure planning lives in member.controller.exports and member.controller.imports; this class watches
the hub (its namespace there, the catalogue namespace, the hub's policies), keeps the objects the two
plans call for, and writes only what differs, through member.kube.

Fail-static: nothing imported is deleted unless every hub watch has listed since the controller
started; a hub that cannot be reached only delays heartbeats, exports and imports.
"""

from __future__ import annotations

import datetime
import functools
import logging
import queue
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from crds import (
    POLICY_NAME_LABEL,
    FederatedEndpointSlice,
    FederatedService,
    InvalidObjectError,
    NodeTunnelEndpoint,
    parse_object,
)
from crds.federation import parse_stamp
from crds.mcs import CLUSTER_ID_PROPERTY, CLUSTERSET_ID_PROPERTY, MCS_SERVICE_NAME_LABEL
from member import kube
from member.controller.exports import ExportPlan, member_cluster, plan_exports
from member.controller.imports import (
    HUB_POLICY_PREFIX,
    TRIGGER_TIME_ANNOTATION,
    ImportPlan,
    node_annotation_patch,
    plan_imports,
)
from member.observability import LATENCY_BUCKETS
from member.policies import MANAGED_BY, MANAGED_BY_LABEL, ORIGIN_LABEL, POLICY_KIND_LABEL, RESOLVED_LABEL

log = logging.getLogger("balancing.controller.clusterset")
Obj = Mapping[str, Any]
MEMBER_VERSION = "0.1.0"
CLUSTERSET_NAME = "balancing"


@dataclass(frozen=True)
class HubSettings:
    cluster: str
    kubeconfig: str
    catalogue: str = "balancing-federation"
    heartbeat_period: int = 10
    heartbeat_timeout: int = 40


def hub_kinds(settings: HubSettings) -> tuple[kube.WatchedKind, ...]:
    own, catalogue = settings.cluster, settings.catalogue
    return (
        kube.WatchedKind("hub/MemberCluster", kube.path_of("MemberCluster", own)),
        kube.WatchedKind("hub/ExportedService", kube.path_of("ExportedService", own)),
        kube.WatchedKind("hub/own/FederatedEndpointSlice", kube.path_of("FederatedEndpointSlice", own)),
        kube.WatchedKind("hub/NodeTunnelEndpoint", kube.path_of("NodeTunnelEndpoint", own)),
        kube.WatchedKind("hub/FederatedService", kube.path_of("FederatedService", catalogue)),
        kube.WatchedKind("hub/catalogue/FederatedEndpointSlice", kube.path_of("FederatedEndpointSlice", catalogue)),
        kube.WatchedKind("hub/BalancingPolicy", kube.path_of("BalancingPolicy")),
        kube.WatchedKind("hub/LocalRedirectPolicy", kube.path_of("LocalRedirectPolicy")),
    )


LOCAL_KINDS = (
    kube.WatchedKind("ServiceExport", kube.path_of("ServiceExport")),
    kube.WatchedKind("ServiceImport", kube.path_of("ServiceImport")),
    kube.WatchedKind("AllEndpointSlices", kube.path_of("EndpointSlice")),
    kube.WatchedKind("Namespace", "/api/v1/namespaces"),
    kube.WatchedKind("ClusterProperty", kube.path_of("ClusterProperty")),
)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _key(obj: Obj) -> str:
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('namespace')}/{metadata.get('name')}" if metadata.get("namespace") else str(metadata["name"])


def _parse_all(objects: Mapping[str, Obj], kind: type[Any]) -> list[Any]:
    parsed = []
    for obj in objects.values():
        try:
            model = parse_object(obj)
        except InvalidObjectError as error:
            log.warning("hub object refused", extra={"fields": {"object": _key(obj), "why": str(error)}})
            continue
        if isinstance(model, kind):
            parsed.append(model)
    return parsed


class LinkMetrics:
    """The hub link's Prometheus metrics (prefix `balancing_controller_`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.hub_synced = Gauge("balancing_controller_hub_synced", "1 when every hub watch has listed",
                                registry=registry)
        self.heartbeat = Gauge("balancing_controller_last_heartbeat_timestamp_seconds",
                               "Unix time of the last heartbeat the hub accepted", registry=registry)
        self.hub_write_failures = Counter("balancing_controller_hub_write_failures",
                                          "Writes to the hub that failed (retried at the next sync)", registry=registry)
        self.exported = Gauge("balancing_controller_exported_objects", "Objects published on the hub", ["kind"],
                              registry=registry)
        self.imported = Gauge("balancing_controller_imported_objects", "Objects imported into this cluster",
                              ["kind"], registry=registry)
        self.import_lag = Histogram(
            "balancing_controller_import_propagation_seconds",
            "From a change in its source cluster (its endpoints' change stamp) to this cluster's import of it",
            buckets=LATENCY_BUCKETS, registry=registry)


class ClusterSetLink:
    def __init__(self, settings: HubSettings, local: kube.Api, objects: Mapping[str, dict[str, Obj]],
                 emit: Callable[[Obj, str, str, str], None], policy_namespace: str,
                 registry: CollectorRegistry) -> None:
        self.settings = settings
        self.metrics = LinkMetrics(registry)
        self.policy_namespace = policy_namespace
        self.local = local
        self.hub = kube.Api(kube.api_client(settings.kubeconfig))
        self.objects = objects  # the controller's cache of every watched kind, local and hub
        self.emit = emit
        self.synced: set[str] = set()
        self.next_heartbeat = 0.0

    def start(self, events: queue.Queue[kube.WatchEvent]) -> None:
        kube.start_informers(self.hub, hub_kinds(self.settings), events)

    def saw(self, event: kube.WatchEvent) -> None:
        if event.type == "SYNCED":
            self.synced.add(event.kind)

    @property
    def hub_synced(self) -> bool:
        return all(kind.kind in self.synced for kind in hub_kinds(self.settings))

    def due(self) -> float:
        """Seconds until the next heartbeat."""
        return max(0.0, self.next_heartbeat - time.monotonic())

    # -- one sync -------------------------------------------------------------------------------------

    def reconcile(self) -> None:
        self.heartbeat()
        self._export()
        self.metrics.hub_synced.set(1 if self.hub_synced else 0)
        if self.hub_synced:
            self._import()

    def heartbeat(self) -> None:
        """Register (or update the registration) and, when due, heartbeat."""
        settings = self.settings
        nodes = self.objects["Node"].values()
        desired = member_cluster(settings.cluster, nodes, settings.heartbeat_period, settings.heartbeat_timeout)
        current = self.objects["hub/MemberCluster"].get(f"{settings.cluster}/{settings.cluster}")
        if current is None or current.get("spec") != desired["spec"]:
            body = {**desired, "metadata": {**desired["metadata"], "namespace": settings.cluster}}
            self._hub_write(lambda: kube.put_object(self.hub, body, current), f"MemberCluster {settings.cluster}")
        if time.monotonic() >= self.next_heartbeat:
            status = {"lastHeartbeatTime": _now()[:19] + "Z", "memberVersion": MEMBER_VERSION,
                      "nodeCount": len(self.objects["Node"]),
                      "exportedServices": len(self.objects["hub/ExportedService"])}
            if self._hub_write(lambda: kube.patch_status(self.hub, "MemberCluster", settings.cluster,
                                                         settings.cluster, status), "heartbeat"):
                self.next_heartbeat = time.monotonic() + settings.heartbeat_period
                self.metrics.heartbeat.set(time.time())
            else:
                self.next_heartbeat = time.monotonic() + 1.0

    def _hub_write(self, write: Callable[[], Any], what: str) -> bool:
        try:
            write()
            return True
        except Exception as error:  # the hub may be down: fail static, retry at the next sync
            self.metrics.hub_write_failures.inc()
            log.warning("hub write failed", extra={"fields": {"what": what, "error": str(error)[:300]}})
            return False

    def _export(self) -> None:
        settings = self.settings
        services = self.objects["Service"]
        slices: dict[str, list[Obj]] = {}
        for endpoint_slice in self.objects["AllEndpointSlices"].values():
            service = ((endpoint_slice.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name")
            if service:
                slices.setdefault(f"{endpoint_slice['metadata']['namespace']}/{service}", []).append(endpoint_slice)
        plan = plan_exports(settings.cluster, self.objects["ServiceExport"].values(), services, slices,
                            self.objects["Node"], self.objects["BalancingNode"], _now(), self._hub_policy_endpoints())
        self._write_export_status(plan)
        if not self.hub_synced:
            return  # we cannot tell what the hub holds: write nothing there yet
        for kind, desired in (("ExportedService", plan.exported), ("hub/own/FederatedEndpointSlice", plan.slices),
                              ("NodeTunnelEndpoint", plan.tunnels)):
            self.metrics.exported.labels(kind.removeprefix("hub/own/")).set(len(desired))
            cache = self.objects["hub/own/FederatedEndpointSlice" if kind.endswith("EndpointSlice") else f"hub/{kind}"]
            existing = {obj["metadata"]["name"]: obj for obj in cache.values()}
            for name, body in desired.items():
                current = existing.get(name)
                if current is not None and same_spec(current, body):
                    continue
                body["metadata"]["namespace"] = settings.cluster
                self._hub_write(functools.partial(kube.put_object, self.hub, body, current), f"{body['kind']} {name}")
            for name in existing.keys() - desired.keys():
                object_kind = str(existing[name].get("kind"))
                self._hub_write(functools.partial(kube.delete_object, self.hub, object_kind, settings.cluster, name),
                                f"delete {object_kind} {name}")

    def _hub_policy_endpoints(self) -> dict[str, list[Obj]]:
        """The local pods each hub BalancingPolicy selects, from the policy slices this controller keeps for
        its local copy (`hub.<name>`); other clusters' slices (resolved) are not ours to export."""
        found: dict[str, list[Obj]] = {}
        for endpoint_slice in self.objects["EndpointSlice"].values():
            labels = (endpoint_slice.get("metadata") or {}).get("labels") or {}
            name = labels.get(POLICY_NAME_LABEL, "")
            if (labels.get(POLICY_KIND_LABEL) != "BalancingPolicy" or not name.startswith(HUB_POLICY_PREFIX)
                    or labels.get(RESOLVED_LABEL) == "true"):
                continue
            found.setdefault(name.removeprefix(HUB_POLICY_PREFIX), []).extend(endpoint_slice.get("endpoints") or [])
        return found

    def _write_export_status(self, plan: ExportPlan) -> None:
        hub_exports = {obj["metadata"]["name"]: obj for obj in self.objects["hub/ExportedService"].values()}
        for key, export in self.objects["ServiceExport"].items():
            check = plan.checks.get(key)
            if check is None:
                continue
            namespace, name = key.split("/", 1)
            conditions = [{"type": "Valid", "status": "True" if check.valid else "False", "reason": check.reason,
                           "message": check.message}]
            hub_record = hub_exports.get(f"{self.settings.cluster}.{namespace}.{name}")
            hub_status = (hub_record or {}).get("status") or {}
            hub_conditions = {c.get("type"): c for c in hub_status.get("conditions") or []}
            if check.valid and "Valid" in hub_conditions and hub_conditions["Valid"].get("status") == "False":
                conditions[0] = {k: hub_conditions["Valid"][k] for k in ("type", "status", "reason", "message")}
            for wanted in ("Conflict", "Ready"):
                found = hub_conditions.get(wanted)
                if found is not None and check.valid:
                    conditions.append({k: found.get(k, "") for k in ("type", "status", "reason", "message")})
                elif wanted == "Ready":
                    conditions.append({"type": "Ready", "status": "False",
                                       "reason": check.reason if not check.valid else "Pending",
                                       "message": check.message if not check.valid else "waiting for the hub"})
            self._write_conditions(export, conditions)
            if not check.valid:
                self.emit(export, "Warning", check.reason, check.message)

    def _write_conditions(self, obj: Obj, conditions: list[dict[str, Any]]) -> None:
        current = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
        now = _now()[:19] + "Z"
        changed = False
        for condition in conditions:
            old = current.get(condition["type"])
            same = old is not None and all(old.get(k) == condition.get(k) for k in ("status", "reason", "message"))
            changed |= not same
            keep = old is not None and old.get("status") == condition["status"]
            condition["lastTransitionTime"] = old["lastTransitionTime"] if keep and old else now
        if not changed:
            return
        metadata = obj["metadata"]
        try:
            kube.patch_status(self.local, "ServiceExport", metadata["namespace"], metadata["name"],
                              {"conditions": conditions})
        except kube.ApiException as error:
            if error.status != 404:
                raise

    def _import(self) -> None:
        settings = self.settings
        plan = plan_imports(
            settings.cluster,
            (obj["metadata"]["name"] for obj in self.objects["Namespace"].values()),
            self.policy_namespace,
            _parse_all(self.objects["hub/FederatedService"], FederatedService),
            _parse_all(self.objects["hub/catalogue/FederatedEndpointSlice"], FederatedEndpointSlice),
            list(self.objects["hub/BalancingPolicy"].values()) + list(self.objects["hub/LocalRedirectPolicy"].values()),
            _parse_all(self.objects["hub/NodeTunnelEndpoint"], NodeTunnelEndpoint),
        )
        self._write_imports(plan)
        self._write_policies(plan)
        self._write_nodes(plan)
        self._write_cluster_properties()

    def _write_imports(self, plan: ImportPlan) -> None:
        existing = {key: obj for key, obj in self.objects["ServiceImport"].items()
                    if ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY}
        for key, body in plan.imports.items():
            current = self.objects["ServiceImport"].get(key)
            annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
            if current is None or not same_spec(current, body) or any(
                    annotations.get(k) != v for k, v in body["metadata"]["annotations"].items()):
                written = kube.put_object(self.local, body, current)
                current = written
            clusters = [{"cluster": c} for c in plan.import_clusters.get(key, [])]
            if (current.get("status") or {}).get("clusters") != clusters:
                kube.patch_status(self.local, "ServiceImport", body["metadata"]["namespace"],
                                  body["metadata"]["name"], {"clusters": clusters})
        for key in existing.keys() - plan.imports.keys():
            namespace, name = key.split("/", 1)
            kube.delete_object(self.local, "ServiceImport", namespace, name)
        ours = {key: obj for key, obj in self.objects["AllEndpointSlices"].items()
                if ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
                and (MCS_SERVICE_NAME_LABEL in (obj["metadata"].get("labels") or {})
                     or (obj["metadata"].get("labels") or {}).get(RESOLVED_LABEL) == "true")}
        self.metrics.imported.labels("ServiceImport").set(len(plan.imports))
        self.metrics.imported.labels("EndpointSlice").set(len(plan.slices))
        for key, body in plan.slices.items():
            current = ours.get(key)
            if current is not None and _slice_content(current) == _slice_content(body):
                continue
            kube.put_object(self.local, body, current)
            changed = parse_stamp(body["metadata"]["annotations"].get(TRIGGER_TIME_ANNOTATION))
            if changed is not None:
                self.metrics.import_lag.observe(max(0.0, time.time() - changed.timestamp()))
        for key in ours.keys() - plan.slices.keys():
            namespace, name = key.split("/", 1)
            kube.delete_object(self.local, "EndpointSlice", namespace, name)

    def _write_policies(self, plan: ImportPlan) -> None:
        for kind in ("BalancingPolicy", "LocalRedirectPolicy"):
            existing = {f"{kind}/{name}": obj for name, obj in self.objects[kind].items()
                        if ((obj.get("metadata") or {}).get("labels") or {}).get(ORIGIN_LABEL) == "hub"}
            for key, body in plan.policies.items():
                if not key.startswith(f"{kind}/"):
                    continue
                current = self.objects[kind].get(body["metadata"]["name"])
                if current is not None and same_spec(current, body):
                    continue
                if current is not None and current.get("spec", {}).get("frontend") != body["spec"].get("frontend"):
                    kube.delete_object(self.local, kind, None, body["metadata"]["name"])  # frontend is immutable
                    current = None
                kube.put_object(self.local, body, current)
            for key in existing.keys() - plan.policies.keys():
                kube.delete_object(self.local, kind, None, key.split("/", 1)[1])

    def _write_nodes(self, plan: ImportPlan) -> None:
        for name, node in self.objects["Node"].items():
            proxy = plan.node_proxies.get(name)
            if proxy is not None and (patch := node_annotation_patch(node, proxy)) is not None:
                kube.merge_patch(self.local, "Node", None, name, patch)
        for name, tunnel in plan.tunnels.items():
            current = self.objects["BalancingNode"].get(name)
            if current is not None and same_spec(current, {**current, "spec": {"tunnel": tunnel}}):
                continue
            if current is None:
                kube.put_object(self.local, {"apiVersion": "balancing.elf.io/v1beta1", "kind": "BalancingNode",
                                             "metadata": {"name": name}, "spec": {"tunnel": tunnel}}, None)
            else:
                kube.merge_patch(self.local, "BalancingNode", None, name, {"spec": {"tunnel": tunnel}})

    def _write_cluster_properties(self) -> None:
        record = self.objects["hub/MemberCluster"].get(f"{self.settings.cluster}/{self.settings.cluster}") or {}
        cluster_id = (record.get("status") or {}).get("clusterID") or self.settings.cluster
        for name, value in ((CLUSTER_ID_PROPERTY, cluster_id), (CLUSTERSET_ID_PROPERTY, CLUSTERSET_NAME)):
            current = self.objects["ClusterProperty"].get(name)
            if current is not None and (current.get("spec") or {}).get("value") == value:
                continue
            kube.put_object(self.local, {"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
                                         "metadata": {"name": name}, "spec": {"value": value}}, current)


def same_spec(current: Obj, desired: Obj) -> bool:
    """Whether an object already has the desired spec, defaults applied to both (the apiserver adds
    them to what it stores) and labels included."""
    labels = ((desired.get("metadata") or {}).get("labels") or {}).items()
    if any(((current.get("metadata") or {}).get("labels") or {}).get(k) != v for k, v in labels):
        return False
    try:
        return parse_object(current).to_api().get("spec") == parse_object(desired).to_api().get("spec")
    except InvalidObjectError:
        return current.get("spec") == desired.get("spec")


def _slice_content(obj: Obj) -> Any:
    """An EndpointSlice as the agents read it, whatever the apiserver normalised."""
    metadata = obj.get("metadata") or {}
    endpoints = sorted((tuple(e.get("addresses") or []), (e.get("conditions") or {}).get("ready") is not False,
                        e.get("zone") or "") for e in obj.get("endpoints") or [])
    ports = sorted((p.get("name") or "", p.get("port"), p.get("protocol") or "TCP") for p in obj.get("ports") or [])
    trigger = (metadata.get("annotations") or {}).get("endpoints.kubernetes.io/last-change-trigger-time")
    return sorted((metadata.get("labels") or {}).items()), endpoints, ports, trigger
