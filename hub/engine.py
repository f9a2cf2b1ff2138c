"""The hub's reconcile: pure and incremental, from what the hub sees to the writes it must make.

Inputs are the objects in the hub, held in indexes keyed by `index_keys` (the operator keeps them as
kopf indexes; `MemoryIndex` keeps them in memory for tests, benchmarks and `balancing status`).
`Reconciler.touched(obj)` notes what changed; `Reconciler.plan(now)` recomputes only what that
change can affect and returns the writes that make the hub's outputs match, and nothing that is
already so:

- MemberCluster status: `clusterID`, `Ready` (heartbeat fresh), `Valid` (registration, pod CIDR
  overlaps; hub.members);
- ExportedService status: `Valid`, `Conflict`, `Ready`; the catalogue's FederatedService per
  Service, with a clusterset IP from the pool (hub.merge);
- the catalogue's FederatedEndpointSlice copies of every live member's slices of valid exports and
  of policies, with the propagation stamps;
- NodeTunnelEndpoint status: proxy IPv4, peers, `Ready`, `Valid` (hub.mesh);
- Events for every refusal, conflict, expiry and exhausted pool, each once.

The hub trusts the namespace, not the spec: an object in namespace `member-1` speaks for member-1
only, and one whose `spec.cluster` says otherwise is refused (`ClusterMismatch`). Expired members
keep their place in the mesh and their exports' properties (fail-static); only their endpoints
leave the catalogue until they heartbeat again.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from crds import (
    API_VERSION,
    CHANGED_AT_ANNOTATION,
    POLICY_NAME_LABEL,
    SERVICE_NAME_LABEL,
    SERVICE_NAMESPACE_LABEL,
    SOURCE_CLUSTER_LABEL,
    SYNCED_AT_ANNOTATION,
    ExportedService,
    FederatedEndpointSlice,
    FederatedService,
    KubeObject,
    MemberCluster,
    NodeTunnelEndpoint,
    format_stamp,
    parse_stamp,
)
from hub import members as member_rules
from hub.conditions import Verdict, render, same_conditions
from hub.merge import merge
from hub.mesh import NodeKey, allocate_proxy_ips, key_of, plan_peers, pool_overlaps
from hub.objects import Ref, ref
from hub.pools import AddressPool
from hub.settings import HubSettings

Key = tuple[str, ...]
ServiceKey = tuple[str, str]  # (namespace, name) of the exported Service
Index = Mapping[Key, Collection[KubeObject]]
K = TypeVar("K", bound=KubeObject)

MANAGED_BY = {"app.kubernetes.io/managed-by": "balancing-hub"}

# Condition reasons (MemberCluster's are in hub.members; conflict reasons in hub.merge).
CLUSTER_MISMATCH = "ClusterMismatch"
MEMBER_NOT_REGISTERED = "MemberNotRegistered"
EXPORTED = "Exported"
NO_CONFLICTS = "NoConflicts"
NO_LIVE_CLUSTERS = "NoLiveClusters"
IP_POOL_EXHAUSTED = "IPPoolExhausted"
PLANNED = "Planned"
PROXY_POOL_EXHAUSTED = "ProxyPoolExhausted"
POD_CIDR_IN_PROXY_POOL = "PodCIDRInProxyPool"
ACCEPTED = Verdict.of("Valid", True, "Valid", "accepted")


# --- the indexes -----------------------------------------------------------------------------------------


def index_keys(obj: KubeObject, catalogue: str) -> list[Key]:
    """Where an object is filed: the lookups the reconcile makes, one key each (tagged by the first item)."""
    namespace, name = obj.metadata.namespace or "", obj.metadata.name or ""
    in_catalogue = namespace == catalogue
    if isinstance(obj, MemberCluster) and not in_catalogue:
        return [("member", namespace)]
    if isinstance(obj, ExportedService) and not in_catalogue:
        service = (obj.spec.namespace, obj.spec.service_name)
        return [("service-exports", *service), ("cluster-exports", namespace), ("export", namespace, *service)]
    if isinstance(obj, FederatedEndpointSlice):
        if in_catalogue:
            return [("copy", name)]
        keys: list[Key] = [("slice", namespace, name), ("cluster-slices", namespace)]
        if obj.spec.service is not None:
            keys.append(("export-slices", namespace, obj.spec.service.namespace, obj.spec.service.name))
        return keys
    if isinstance(obj, NodeTunnelEndpoint) and not in_catalogue:
        return [("tunnels",)]
    if isinstance(obj, FederatedService) and in_catalogue:
        return [("service", name)]
    return []


class View:
    """Lookups over one or more indexes (the operator has one kopf index per kind)."""

    def __init__(self, indexes: Sequence[Index]) -> None:
        self.indexes = indexes

    def get(self, key: Key, kind: type[K]) -> list[K]:
        for index in self.indexes:
            found = index.get(key)
            if found:
                return [obj for obj in found if isinstance(obj, kind)]
        return []

    def one(self, key: Key, kind: type[K]) -> K | None:
        found = self.get(key, kind)
        return found[0] if found else None

    def keys(self, tag: str) -> Iterator[Key]:
        for index in self.indexes:
            for key in list(index):
                if key[0] == tag:
                    yield key


class MemoryIndex(dict[Key, list[KubeObject]]):
    """The index a kopf operator keeps, in memory: put and remove objects, look them up by key."""

    def __init__(self, catalogue: str) -> None:
        super().__init__()
        self.catalogue = catalogue
        self._filed: dict[Ref, tuple[KubeObject, list[Key]]] = {}

    def put(self, obj: KubeObject) -> None:
        self.remove(obj)
        keys = index_keys(obj, self.catalogue)
        self._filed[ref(obj)] = (obj, keys)
        for key in keys:
            self.setdefault(key, []).append(obj)

    def remove(self, obj: KubeObject) -> None:
        filed = self._filed.pop(ref(obj), None)
        if filed is None:
            return
        old, keys = filed
        for key in keys:
            bucket = self[key]
            bucket.remove(old)
            if not bucket:
                del self[key]

    def objects(self) -> list[KubeObject]:
        return [obj for obj, _keys in self._filed.values()]


# --- the writes --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusWrite:
    """A merge patch of an object's status subresource."""

    ref: Ref
    status: dict[str, Any]
    origin: Key  # what to reconcile again if the write fails


@dataclass(frozen=True)
class ObjectWrite:
    """Create or replace an object the hub owns (`body`), or delete it (`body` None); then, if given,
    write its status."""

    ref: Ref
    body: dict[str, Any] | None
    resource_version: str | None  # of the object replaced; None to create
    origin: Key
    status: dict[str, Any] | None = None
    changed_at: datetime | None = None  # the source's change time, for the propagation latency


@dataclass(frozen=True)
class EventWrite:
    ref: Ref
    uid: str | None
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Plan:
    statuses: list[StatusWrite] = field(default_factory=list)
    objects: list[ObjectWrite] = field(default_factory=list)
    events: list[EventWrite] = field(default_factory=list)
    wake_at: datetime | None = None  # the next time a verdict changes on its own (a heartbeat expiring)
    services_merged: int = 0

    def __len__(self) -> int:
        return len(self.statuses) + len(self.objects) + len(self.events)


@dataclass(frozen=True)
class MemberState:
    registered: bool  # its MemberCluster exists, named like its namespace
    refused: bool  # pod CIDR overlap with an older member
    alive: bool

    @property
    def usable(self) -> bool:
        """In the mesh and the merge (alive or not: fail-static)."""
        return self.registered and not self.refused

    @property
    def serving(self) -> bool:
        """Its endpoints are in the catalogue."""
        return self.usable and self.alive


# --- the reconciler ----------------------------------------------------------------------------------------


def _digest(document: Any) -> str:
    return hashlib.sha1(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


class Reconciler:
    def __init__(self, settings: HubSettings, view: View) -> None:
        self.settings = settings
        self.view = view
        self.catalogue = settings.catalogue_namespace
        self._clusterset = AddressPool(settings.clusterset_ip_pool)
        self._ips: dict[str, ipaddress.IPv4Address] = {}  # FederatedService name -> its clusterset IP
        self._states: dict[str, MemberState] = {}
        self._expiry: dict[str, datetime] = {}
        self._overlaps: dict[str, list[member_rules.Overlap]] = {}
        self._claims: dict[Ref, tuple[Any, ...]] = {}  # pod CIDRs (and age) behind the overlap verdicts
        self._started = False
        self._topology = True
        self._mesh = True
        self._dirty_members: set[str] = set()
        self._dirty_services: set[ServiceKey] = set()
        self._dirty_copies: set[str] = set()
        self._pending_events: list[EventWrite] = []
        self._sent: dict[Ref, tuple[str | None, str]] = {}  # written and not yet seen back: (rv seen, digest)
        self._emitted: dict[Ref, dict[str, str]] = {}  # object -> {reason: message last emitted}

    # -- what changed ----------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    def member_states(self) -> Mapping[str, MemberState]:
        return self._states

    def touched(self, obj: KubeObject, deleted: bool = False) -> None:
        """An object was added, changed or deleted (its last known state)."""
        namespace = obj.metadata.namespace or ""
        if deleted:
            self._emitted.pop(ref(obj), None)  # a new object of the same name hears everything again
        if isinstance(obj, MemberCluster) and namespace != self.catalogue:
            self._dirty_members.add(namespace)
            claim = None if deleted else (obj.metadata.name, tuple(obj.spec.pod_cidrs or ()),
                                          (obj.metadata.model_extra or {}).get("creationTimestamp"))
            self._note_claim(ref(obj), claim)
        elif isinstance(obj, ExportedService) and namespace != self.catalogue:
            service = (obj.spec.namespace, obj.spec.service_name)
            self._dirty_services.add(service)
            self._dirty_copies.update(s.metadata.name or "" for s in
                                      self.view.get(("export-slices", namespace, *service), FederatedEndpointSlice))
        elif isinstance(obj, FederatedEndpointSlice):
            self._dirty_copies.add(obj.metadata.name or "")
            if namespace != self.catalogue and obj.spec.cluster != namespace and not deleted:
                self._pending_events.append(self._mismatch_event(obj, "FederatedEndpointSlice"))
        elif isinstance(obj, NodeTunnelEndpoint) and namespace != self.catalogue:
            self._mesh = True
            self._note_claim(ref(obj), None if deleted else (obj.spec.cluster, tuple(obj.spec.pod_cidrs)))
        elif isinstance(obj, FederatedService) and namespace == self.catalogue:
            self._dirty_services.add((obj.spec.namespace, obj.spec.service_name))

    def _note_claim(self, which: Ref, claim: tuple[Any, ...] | None) -> None:
        if self._claims.get(which) != claim:
            self._topology = True
            if claim is None:
                self._claims.pop(which, None)
            else:
                self._claims[which] = claim

    def resync(self) -> None:
        """Reconcile everything again at the next plan (the periodic safety net)."""
        self._dirty_members.update(key[1] for key in self.view.keys("member"))
        self._dirty_services.update((key[1], key[2]) for key in self.view.keys("service-exports"))
        for key in self.view.keys("service"):
            service = self.view.one(key, FederatedService)
            if service is not None:
                self._dirty_services.add((service.spec.namespace, service.spec.service_name))
        self._dirty_copies.update(key[2] for key in self.view.keys("slice"))
        self._dirty_copies.update(key[1] for key in self.view.keys("copy"))
        self._topology = self._mesh = True

    def retry(self, write: StatusWrite | ObjectWrite) -> None:
        """A write failed: forget it was sent and reconcile its origin again."""
        self._sent.pop(write.ref, None)
        origin = write.origin
        if origin[0] == "member":
            self._dirty_members.add(origin[1])
        elif origin[0] == "service":
            self._dirty_services.add((origin[1], origin[2]))
        elif origin[0] == "copy":
            self._dirty_copies.add(origin[1])
        else:
            self._mesh = True

    # -- one reconcile -----------------------------------------------------------------------------------

    def plan(self, now: datetime) -> Plan:
        plan = Plan()
        if not self._started:
            self._start()
        plan.events.extend(self._pending_events)
        self._pending_events.clear()
        if self._topology:
            self._topology = False
            registered = {
                cluster: member
                for key in self.view.keys("member")
                if (member := self._registration(cluster := key[1])) is not None
            }
            overlaps = member_rules.refuse_overlaps(registered, self.view.get(("tunnels",), NodeTunnelEndpoint))
            if overlaps != self._overlaps:
                self._dirty_members.update(set(overlaps) | set(self._overlaps))
                self._overlaps = overlaps
        expiring = {cluster for cluster, moment in self._expiry.items() if moment <= now}
        members, self._dirty_members = self._dirty_members | expiring, set()
        for cluster in sorted(members):
            self._judge_member(cluster, now, plan)
        services, self._dirty_services = self._dirty_services, set()
        for service in sorted(services):
            self._merge_service(service, now, plan)
            plan.services_merged += 1
        copies, self._dirty_copies = self._dirty_copies, set()
        for name in sorted(copies):
            self._sync_copy(name, now, plan)
        if self._mesh:
            self._mesh = False
            self._plan_mesh(now, plan)
        plan.wake_at = min(self._expiry.values(), default=None)
        return plan

    def _start(self) -> None:
        """The first plan: read back every clusterset IP held (never hand one out twice), then sync all."""
        self._started = True
        for key in sorted(self.view.keys("service")):
            service = self.view.one(key, FederatedService)
            if service is not None and service.spec.ips:
                claimed = self._clusterset.claim(service.spec.ips[0])
                if claimed is not None:
                    self._ips[key[1]] = claimed
        self.resync()

    # -- members ------------------------------------------------------------------------------------------

    def _registration(self, cluster: str) -> MemberCluster | None:
        return next((m for m in self.view.get(("member", cluster), MemberCluster) if m.metadata.name == cluster), None)

    def _judge_member(self, cluster: str, now: datetime, plan: Plan) -> None:
        registration: MemberCluster | None = None
        for member in self.view.get(("member", cluster), MemberCluster):
            problem = member_rules.registration_problem(cluster, member)
            if problem is None:
                registration = member
                continue
            verdicts = [Verdict.of("Ready", False, CLUSTER_MISMATCH, problem),
                        Verdict.of("Valid", False, CLUSTER_MISMATCH, problem)]
            self._status(plan, member, {"conditions": verdicts}, now, ("member", cluster))
            self._warn(plan, member, CLUSTER_MISMATCH, problem)
        if registration is None:
            state = MemberState(False, False, False)
            self._expiry.pop(cluster, None)
        else:
            live = member_rules.liveness(registration, now)
            overlaps = self._overlaps.get(cluster, [])
            refusal = next((o for o in overlaps if o.refused), None)
            state = MemberState(True, refusal is not None, live.alive)
            if live.changes_at is not None:
                self._expiry[cluster] = live.changes_at
            else:
                self._expiry.pop(cluster, None)
            if refusal is not None:
                valid = Verdict.of("Valid", False, member_rules.POD_CIDR_OVERLAP, refusal.message)
            else:
                notes = "; ".join(o.message for o in overlaps)
                valid = Verdict.of("Valid", True, member_rules.VALID,
                                   f"registered as {cluster}" + (f"; {notes}" if notes else ""))
            ready = Verdict.of("Ready", live.alive, live.reason, live.message)
            self._status(plan, registration, {"clusterID": cluster, "conditions": [ready, valid]}, now,
                         ("member", cluster))
            for overlap in overlaps:
                self._warn(plan, registration, member_rules.POD_CIDR_OVERLAP, overlap.message)
            before = self._states.get(cluster)
            if before is not None and before.alive != live.alive:
                kind = "Normal" if live.alive else "Warning"
                self._event(plan, registration, kind, live.reason, live.message)
        before = self._states.get(cluster)
        if state == before or (before is None and not state.registered):
            return
        if state.registered:
            self._states[cluster] = state
        else:
            self._states.pop(cluster, None)
        if before is None or before.usable != state.usable:
            self._mesh = True
        for export in self.view.get(("cluster-exports", cluster), ExportedService):
            self._dirty_services.add((export.spec.namespace, export.spec.service_name))
        self._dirty_copies.update(s.metadata.name or "" for s in
                                  self.view.get(("cluster-slices", cluster), FederatedEndpointSlice))

    # -- services -----------------------------------------------------------------------------------------

    def _merge_service(self, service: ServiceKey, now: datetime, plan: Plan) -> None:
        name = FederatedService.object_name(*service)
        origin: Key = ("service", *service)
        merged_in: list[ExportedService] = []
        for export in self.view.get(("service-exports", *service), ExportedService):
            namespace = export.metadata.namespace or ""
            state = self._states.get(namespace)
            if export.spec.cluster != namespace:
                problem = (f"spec.cluster is {export.spec.cluster!r} but the export is in {namespace!r}'s namespace: "
                           "the hub trusts the namespace, so nothing of it is merged")
                self._export_status(plan, export, now, origin, Verdict.of("Valid", False, CLUSTER_MISMATCH, problem),
                                    Verdict.of("Ready", False, CLUSTER_MISMATCH, problem))
                self._warn(plan, export, CLUSTER_MISMATCH, problem)
            elif state is None or not state.usable:
                reason, message = (
                    (MEMBER_NOT_REGISTERED, f"no MemberCluster {namespace!r} is registered in this namespace")
                    if state is None else
                    (member_rules.POD_CIDR_OVERLAP, f"member {namespace} is refused for a pod CIDR overlap")
                )
                self._export_status(plan, export, now, origin, ACCEPTED,
                                    Verdict.of("Ready", False, reason, message))
            else:
                merged_in.append(export)
        existing = self.view.one(("service", name), FederatedService)
        if not merged_in:
            self._release(name)
            if existing is not None:
                plan.objects.append(ObjectWrite(ref(existing), None, existing.metadata.resource_version, origin))
            return
        result = merge(merged_in)
        winner = result.winner.spec
        live = sorted(e.spec.cluster for e in merged_in if self._states[e.spec.cluster].alive)
        address = self._address(name) if winner.type == "ClusterSetIP" else None
        if winner.type != "ClusterSetIP":
            self._release(name)  # a Headless Service has no clusterset IP
        spec = winner.to_api()
        for local in ("cluster", "exportedAt"):
            spec.pop(local, None)
        spec["ports"] = [port.to_api() for port in result.ports]
        if address is not None:
            spec["ips"] = [str(address)]
        if not live:
            ready = Verdict.of("Ready", False, NO_LIVE_CLUSTERS,
                               f"no exporting cluster is alive ({', '.join(result.clusters)} exported it)")
        elif winner.type == "ClusterSetIP" and address is None:
            ready = Verdict.of("Ready", False, IP_POOL_EXHAUSTED,
                               f"the clusterset IP pool {self.settings.clusterset_ip_pool} is exhausted "
                               f"({self._clusterset.capacity} addresses): widen it (hub chart clusterSetIpPool)")
        else:
            ready = Verdict.of("Ready", True, "Ready", f"exported by {len(live)} live cluster(s): {', '.join(live)}")
        labels = {SERVICE_NAMESPACE_LABEL: service[0], SERVICE_NAME_LABEL: service[1], **MANAGED_BY}
        body = {
            "apiVersion": API_VERSION,
            "kind": "FederatedService",
            "metadata": {"name": name, "namespace": self.catalogue, "labels": labels},
            "spec": spec,
        }
        current_status = existing.status if existing is not None else None
        conditions = render([ready], current_status.conditions if current_status else None, None, now)
        status = {"clusters": [{"cluster": cluster} for cluster in live], "conditions": conditions}
        status_same = current_status is not None and same_conditions(current_status.conditions, conditions) and [
            c.cluster for c in current_status.clusters or []
        ] == live
        target = Ref("FederatedService", self.catalogue, name)
        if existing is None or existing.spec.to_api() != spec or not _has_labels(existing, labels):
            seen = existing.metadata.resource_version if existing is not None else None
            if self._should_send(target, seen, {**body, "status": _essence(status)}):
                plan.objects.append(ObjectWrite(target, body, seen, origin, status=status))
        elif status_same:
            self._sent.pop(target, None)
        elif self._should_send(target, existing.metadata.resource_version, _essence(status)):
            plan.statuses.append(StatusWrite(target, status, origin))
        if ready.reason == IP_POOL_EXHAUSTED:
            self._warn(plan, existing or target, IP_POOL_EXHAUSTED, ready.message)
        for export in merged_in:
            cluster = export.spec.cluster
            reasons = result.reasons(cluster)
            conflict = (Verdict.of("Conflict", True, reasons, result.message(cluster)) if reasons
                        else Verdict.of("Conflict", False, NO_CONFLICTS, "it agrees with the merged Service"))
            alive = self._states[cluster].alive
            exported = (Verdict.of("Ready", True, EXPORTED, f"merged into {self.catalogue}/{name}") if alive else
                        Verdict.of("Ready", False, member_rules.HEARTBEAT_EXPIRED,
                                   f"member {cluster} is not heartbeating: its endpoints left the catalogue"))
            self._export_status(plan, export, now, origin, ACCEPTED,
                                conflict, exported)
            if reasons:
                self._warn(plan, export, "Conflict", f"{reasons}: {result.message(cluster)}")

    def _address(self, name: str) -> ipaddress.IPv4Address | None:
        address = self._ips.get(name)
        if address is None:
            address = self._clusterset.allocate()
            if address is not None:
                self._ips[name] = address
        return address

    def _release(self, name: str) -> None:
        self._clusterset.release(self._ips.pop(name, None))

    def _export_status(self, plan: Plan, export: ExportedService, now: datetime, origin: Key,
                       *verdicts: Verdict) -> None:
        generation = export.metadata.generation
        self._status(plan, export, {"observedGeneration": generation, "conditions": list(verdicts)}, now, origin)

    # -- endpoint slice copies ----------------------------------------------------------------------------

    def _sync_copy(self, name: str, now: datetime, plan: Plan) -> None:
        cluster = name.split(".", 1)[0]
        source = self.view.one(("slice", cluster, name), FederatedEndpointSlice)
        existing = self.view.one(("copy", name), FederatedEndpointSlice)
        origin: Key = ("copy", name)
        target = Ref("FederatedEndpointSlice", self.catalogue, name)
        if source is None or not self._copied(source):
            if existing is not None:
                plan.objects.append(ObjectWrite(target, None, existing.metadata.resource_version, origin))
            return
        labels = {SOURCE_CLUSTER_LABEL: cluster, **MANAGED_BY}
        if source.spec.service is not None:
            labels[SERVICE_NAMESPACE_LABEL] = source.spec.service.namespace
            labels[SERVICE_NAME_LABEL] = source.spec.service.name
        elif source.spec.policy is not None:
            labels[POLICY_NAME_LABEL] = source.spec.policy.name
        changed = (source.metadata.annotations or {}).get(CHANGED_AT_ANNOTATION)
        if existing is not None and existing.spec == source.spec and _has_labels(existing, labels) and (
            (existing.metadata.annotations or {}).get(CHANGED_AT_ANNOTATION) == changed
        ):
            self._sent.pop(target, None)
            return
        annotations = {SYNCED_AT_ANNOTATION: format_stamp(now)}
        if changed is not None:
            annotations[CHANGED_AT_ANNOTATION] = changed
        spec = source.spec.to_api()
        body = {
            "apiVersion": API_VERSION,
            "kind": "FederatedEndpointSlice",
            "metadata": {"name": name, "namespace": self.catalogue, "labels": labels, "annotations": annotations},
            "spec": spec,
        }
        seen = existing.metadata.resource_version if existing is not None else None
        if self._should_send(target, seen, (labels, changed, spec)):
            plan.objects.append(ObjectWrite(target, body, seen, origin, changed_at=parse_stamp(changed)))

    def _copied(self, source: FederatedEndpointSlice) -> bool:
        """Whether a member's slice belongs in the catalogue: its member serves, its export is valid."""
        cluster = source.metadata.namespace or ""
        state = self._states.get(cluster)
        if source.spec.cluster != cluster or state is None or not state.serving:
            return False
        if source.spec.service is None:
            return True  # a policy's endpoints
        service = source.spec.service
        exports = self.view.get(("export", cluster, service.namespace, service.name), ExportedService)
        return any(export.spec.cluster == cluster for export in exports)

    # -- the mesh -----------------------------------------------------------------------------------------

    def _left_out(self, tunnel: NodeTunnelEndpoint) -> tuple[str, str, bool] | None:
        """Why a node stays out of the mesh: (reason, message, whether its spec is invalid), or None."""
        namespace = tunnel.metadata.namespace or ""
        state = self._states.get(namespace)
        if tunnel.spec.cluster != namespace:
            return (CLUSTER_MISMATCH, f"spec.cluster is {tunnel.spec.cluster!r} but the endpoint is in {namespace!r}'s"
                    " namespace: the hub trusts the namespace, so the node is left out of the mesh", True)
        if state is None:
            return (MEMBER_NOT_REGISTERED,
                    f"no MemberCluster {namespace!r} is registered: the node is left out of the mesh", False)
        if state.refused:
            refusal = next(o for o in self._overlaps.get(namespace, []) if o.refused)
            return (member_rules.POD_CIDR_OVERLAP, refusal.message, True)
        return None

    def _plan_mesh(self, now: datetime, plan: Plan) -> None:
        pool = self.settings.proxy_ip_pool
        origin: Key = ("mesh",)
        candidates: list[NodeTunnelEndpoint] = []
        for tunnel in self.view.get(("tunnels",), NodeTunnelEndpoint):
            if (why := self._left_out(tunnel)) is None:
                candidates.append(tunnel)
                continue
            reason, message, invalid = why
            valid = Verdict.of("Valid", False, reason, message) if invalid else ACCEPTED
            self._tunnel_status(plan, tunnel, now, None, [], Verdict.of("Ready", False, reason, message), valid, origin)
            if reason == CLUSTER_MISMATCH:
                self._warn(plan, tunnel, reason, message)
        in_pool = pool_overlaps(pool, candidates)
        usable = [tunnel for tunnel in candidates if key_of(tunnel) not in in_pool]
        for tunnel in candidates:
            if (problem := in_pool.get(key_of(tunnel))) is not None:
                ready, valid = (Verdict.of(kind, False, POD_CIDR_IN_PROXY_POOL, problem) for kind in ("Ready", "Valid"))
                self._tunnel_status(plan, tunnel, now, None, [], ready, valid, origin)
                self._warn(plan, tunnel, POD_CIDR_IN_PROXY_POOL, problem)
        allocation = allocate_proxy_ips(pool, usable)
        peers = plan_peers(usable, allocation.addresses, keepalive_seconds=self.settings.keepalive_seconds)
        exhausted = allocation.exhausted
        for tunnel in usable:
            key: NodeKey = key_of(tunnel)
            address = allocation.addresses.get(key)
            mine = peers[key]
            if address is None and exhausted is not None:
                ready = Verdict.of("Ready", False, PROXY_POOL_EXHAUSTED, str(exhausted))
                self._warn(plan, tunnel, PROXY_POOL_EXHAUSTED, str(exhausted))
            else:
                ready = Verdict.of("Ready", True, PLANNED, f"proxy IPv4 {address}, {len(mine)} peer(s)")
            self._tunnel_status(plan, tunnel, now, address, mine, ready, ACCEPTED, origin)

    def _tunnel_status(self, plan: Plan, tunnel: NodeTunnelEndpoint, now: datetime,
                       address: ipaddress.IPv4Address | None, peers: Sequence[Any], ready: Verdict, valid: Verdict,
                       origin: Key) -> None:
        current = tunnel.status
        held = current.proxy_ipv4 if current else None
        wanted = str(address) if address is not None else None
        generation = tunnel.metadata.generation
        conditions = render([ready, valid], current.conditions if current else None, generation, now)
        if (current is not None and held == wanted and (current.peers or []) == list(peers)
                and current.observed_generation == generation and same_conditions(current.conditions, conditions)):
            self._sent.pop(ref(tunnel), None)
            return
        status = {"proxyIPv4": wanted, "peers": [peer.to_api() for peer in peers], "observedGeneration": generation,
                  "conditions": conditions}
        if self._should_send(ref(tunnel), tunnel.metadata.resource_version, _essence(status)):
            plan.statuses.append(StatusWrite(ref(tunnel), status, origin))

    # -- writes and Events --------------------------------------------------------------------------------

    def _status(self, plan: Plan, obj: KubeObject, wanted: dict[str, Any], now: datetime, origin: Key) -> None:
        """A status patch, if `wanted` (with Verdicts for conditions) differs from what `obj` has."""
        current = getattr(obj, "status", None)
        current_conditions = getattr(current, "conditions", None)
        generation = obj.metadata.generation if "observedGeneration" in wanted else None
        conditions = render(wanted["conditions"], current_conditions, generation, now)
        status = {**wanted, "conditions": conditions}
        current_api = current.to_api() if current is not None else {}
        rest_same = all(current_api.get(k) == v for k, v in status.items() if k != "conditions")
        if rest_same and same_conditions(current_conditions, conditions):
            self._sent.pop(ref(obj), None)
            return
        if self._should_send(ref(obj), obj.metadata.resource_version, _essence(status)):
            plan.statuses.append(StatusWrite(ref(obj), status, origin))

    def _should_send(self, target: Ref, seen: str | None, desired: Any) -> bool:
        """False when the same write was already sent for the object as last seen (not seen back yet)."""
        entry = (seen, _digest(desired))
        if self._sent.get(target) == entry:
            return False
        self._sent[target] = entry
        return True

    def _event(self, plan: Plan, obj: KubeObject | Ref, type: str, reason: str, message: str) -> None:
        """An Event about `obj`, once per (object, reason, message)."""
        target = obj if isinstance(obj, Ref) else ref(obj)
        uid = None if isinstance(obj, Ref) else obj.metadata.uid
        emitted = self._emitted.setdefault(target, {})
        if emitted.get(reason) == message:
            return
        emitted[reason] = message
        plan.events.append(EventWrite(target, uid, type, reason, message))

    def _warn(self, plan: Plan, obj: KubeObject | Ref, reason: str, message: str) -> None:
        self._event(plan, obj, "Warning", reason, message)

    def _mismatch_event(self, obj: FederatedEndpointSlice, kind: str) -> EventWrite:
        namespace = obj.metadata.namespace
        message = (f"spec.cluster is {obj.spec.cluster!r} but the {kind} is in {namespace!r}'s namespace: the hub"
                   " trusts the namespace, so it is not copied to the catalogue")
        return EventWrite(ref(obj), obj.metadata.uid, "Warning", CLUSTER_MISMATCH, message)


def _has_labels(obj: KubeObject, labels: Mapping[str, str]) -> bool:
    have = obj.metadata.labels or {}
    return all(have.get(key) == value for key, value in labels.items())


def _essence(status: Mapping[str, Any]) -> dict[str, Any]:
    """A status without its transition times: what decides whether it must be written again."""
    conditions = [(c["type"], c["status"], c["reason"], c["message"]) for c in status.get("conditions") or []]
    return {**status, "conditions": conditions}
