"""Hub objects for the pure tests, and a harness that plays the apiserver's part for the reconciler.

The harness applies a plan's writes to its in-memory index the way the apiserver would (a status
merge patch, a create or replace, a delete), bumps resourceVersions and tells the reconciler, so a
test can check what converges and that a settled hub writes nothing more.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from crds import (
    ExportedService,
    FederatedEndpointSlice,
    KubeObject,
    MemberCluster,
    NodeTunnelEndpoint,
    parse_object,
)
from hub.engine import CatalogueCopy, EventWrite, MemoryIndex, Plan, Reconciler, View
from hub.objects import Ref, ref
from hub.settings import HubSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CATALOGUE = "balancing-federation"
Port = tuple[int, str, str | None]  # (port, protocol, name)


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def member(name: str, *pod_cidrs: str, namespace: str | None = None, heartbeat: datetime | None = T0,
           created: datetime = T0, timeout: int = 40) -> MemberCluster:
    document: dict[str, Any] = {
        "apiVersion": "balancing.elf.io/v1beta1",
        "kind": "MemberCluster",
        "metadata": {"name": name, "namespace": namespace or name, "creationTimestamp": stamp(created)},
        "spec": {"podCIDRs": list(pod_cidrs), "heartbeatPeriodSeconds": 10, "heartbeatTimeoutSeconds": timeout},
    }
    if heartbeat is not None:
        document["status"] = {"lastHeartbeatTime": stamp(heartbeat)}
    found = parse_object(document)
    assert isinstance(found, MemberCluster)
    return found


def export(
    cluster: str,
    service: str = "web",
    *,
    namespace: str | None = None,
    ports: Sequence[Port] = ((80, "TCP", None),),
    type: str = "ClusterSetIP",
    affinity: str = "None",
    timeout: int | None = None,
    traffic: str = "Cluster",
    locality: str = "none",
    exported_at: datetime = T0,
) -> ExportedService:
    spec: dict[str, Any] = {
        "cluster": cluster, "namespace": "default", "serviceName": service, "type": type,
        "ports": [{"port": port, "protocol": protocol, **({"name": name} if name else {})}
                  for port, protocol, name in ports],
        "sessionAffinity": affinity, "internalTrafficPolicy": traffic, "affinity": locality,
        "exportedAt": stamp(exported_at),
    }
    if timeout is not None:
        spec["sessionAffinityTimeoutSeconds"] = timeout
    found = parse_object({
        "apiVersion": "balancing.elf.io/v1beta1", "kind": "ExportedService",
        "metadata": {"name": ExportedService.object_name(cluster, "default", service),
                     "namespace": namespace or cluster},
        "spec": spec,
    })
    assert isinstance(found, ExportedService)
    return found


def endpoints_slice(cluster: str, service: str = "web", *addresses: str, index: int = 1, namespace: str | None = None,
                    changed_at: datetime | None = None, policy: str | None = None) -> FederatedEndpointSlice:
    source = {"policy": {"kind": "BalancingPolicy", "name": policy}} if policy else {
        "service": {"namespace": "default", "name": service}}
    annotations = {"balancing.elf.io/changed-at": changed_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")} if changed_at else {}
    found = parse_object({
        "apiVersion": "balancing.elf.io/v1beta1", "kind": "FederatedEndpointSlice",
        "metadata": {"name": f"{cluster}.default.{policy or service}-{index}", "namespace": namespace or cluster,
                     "annotations": annotations},
        "spec": {"cluster": cluster, **source, "ports": [{"port": 8080, "protocol": "TCP"}],
                 "endpoints": [{"addresses": [address]} for address in addresses or ("10.101.1.5",)]},
    })
    assert isinstance(found, FederatedEndpointSlice)
    return found


def key(seed: str) -> str:
    return base64.b64encode(seed.encode().ljust(32, b"k")[:32]).decode()


def tunnel(cluster: str, node: int, *pod_cidrs: str, namespace: str | None = None) -> NodeTunnelEndpoint:
    name = f"{cluster}-node-{node}"
    index = int(cluster.rsplit("-", 1)[-1]) if cluster[-1].isdigit() else 9
    built = NodeTunnelEndpoint.for_node(cluster, name, key(name), f"172.30.{index}.{10 + node}:51820",
                                        pod_cidrs or (f"10.{100 + index}.{node}.0/24",))
    if namespace is not None:
        built.metadata.namespace = namespace
    return built


class Harness:
    """A reconciler over an in-memory index, with the apiserver's part played by `apply`."""

    def __init__(self, settings: HubSettings | None = None) -> None:
        self.settings = settings or HubSettings()
        self.index = MemoryIndex(self.settings.catalogue_namespace)
        self.reconciler = Reconciler(self.settings, View([self.index]))
        self.events: list[EventWrite] = []
        self.written: dict[Ref, dict[str, Any] | None] = {}  # the last body written, for objects the hub owns
        self._versions = itertools.count(1)
        self.now = T0

    def restart(self) -> None:
        """A new operator process: same objects, no memory."""
        self.reconciler = Reconciler(self.settings, View([self.index]))

    def _stamp(self, obj: KubeObject) -> None:
        """What the apiserver adds: creation time and uid (kept from the stored object), a new resourceVersion."""
        extra = obj.metadata.model_extra or {}
        found = self.index.find(ref(obj))
        old = found if isinstance(found, KubeObject) else None  # a catalogue copy is kept as a digest
        extra.setdefault("creationTimestamp",
                         (old.metadata.model_extra or {}).get("creationTimestamp") if old else stamp(self.now))
        obj.metadata.uid = old.metadata.uid if old and old.metadata.uid else f"uid-{ref(obj)}"
        obj.metadata.resource_version = str(next(self._versions))
        obj.metadata.generation = obj.metadata.generation or 1

    def store(self, obj: KubeObject, *, deleted: bool = False) -> None:
        if deleted:
            self.index.remove(obj)
        else:
            self._stamp(obj)
            self.index.put(obj)
        self.reconciler.touched(obj, deleted=deleted)

    def add(self, *objects: KubeObject) -> None:
        for obj in objects:
            self.store(obj)

    def delete(self, *objects: KubeObject) -> None:
        for obj in objects:
            self.store(obj, deleted=True)

    def get(self, kind: str, namespace: str, name: str) -> Any:
        return self.index.find(Ref(kind, namespace, name))

    def of_kind(self, kind: str, namespace: str | None = None) -> list[Any]:
        return sorted((obj for obj in self.index.objects() if isinstance(obj, KubeObject)
                       and obj.kind == kind and (namespace is None or obj.metadata.namespace == namespace)),
                      key=lambda obj: obj.metadata.name or "")

    def heartbeat(self, cluster: str, at: datetime) -> None:
        current = self.get("MemberCluster", cluster, cluster)
        document = current.to_api()
        document["apiVersion"] = current.api_version
        document["status"] = {**document.get("status", {}), "lastHeartbeatTime": stamp(at)}
        self.store(parse_object(document))

    def apply(self, plan: Plan) -> None:
        for write in plan.objects:
            self.written[write.ref] = {**write.body, "status": write.status} if write.body else None
        for obj, deleted in self.index.apply(plan, self._stamp):
            self.reconciler.touched(obj, deleted=deleted)
        self.events.extend(plan.events)

    def copies(self) -> list[str]:
        """Names of the FederatedEndpointSlice copies in the catalogue."""
        return sorted(obj.name for obj in self.index.objects() if isinstance(obj, CatalogueCopy))

    def copy(self, name: str) -> FederatedEndpointSlice | None:
        """A copy in the catalogue, as the hub last wrote it (the index keeps only a digest of it)."""
        if self.index.find(Ref("FederatedEndpointSlice", CATALOGUE, name)) is None:
            return None
        found = parse_object({k: v for k, v in (self.written[Ref("FederatedEndpointSlice", CATALOGUE, name)] or {})
                              .items() if k != "status"})
        assert isinstance(found, FederatedEndpointSlice)
        return found

    def reconcile(self, advance: timedelta = timedelta(0)) -> Plan:
        self.now += advance
        plan = self.reconciler.plan(self.now)
        self.apply(plan)
        return plan

    def settle(self, advance: timedelta = timedelta(0), rounds: int = 6) -> list[Plan]:
        """Reconcile until a plan writes nothing (and fail if it never does)."""
        plans = [self.reconcile(advance)]
        while len(plans[-1]):
            assert len(plans) < rounds, f"no convergence: {plans[-1]}"
            plans.append(self.reconcile())
        return plans

    def events_about(self, name: str) -> list[EventWrite]:
        return [event for event in self.events if event.ref.name == name]


def conditions(obj: Any) -> dict[str, tuple[str, str]]:
    """{type: (status, reason)} of an object's status conditions."""
    return {c.type: (c.status, c.reason) for c in (obj.status.conditions if obj.status else None) or []}


def message(obj: Any, condition: str) -> str:
    found: str = next(c.message for c in obj.status.conditions if c.type == condition)
    return found
