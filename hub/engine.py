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

import bisect
import hashlib
import ipaddress
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    parse_object,
    parse_stamp,
)
from hub import members as member_rules
from hub.conditions import Verdict, render, same_conditions
from hub.merge import Merged, merge
from hub.mesh import NodeKey, allocate_proxy_ips, key_of, plan_peers, pool_overlaps
from hub.objects import Ref, ref
from hub.pools import AddressPool
from hub.settings import HubSettings

Key = tuple[str, ...]
ServiceKey = tuple[str, str]  # (namespace, name) of the exported Service
Index = Mapping[Key, Collection[Any]]
K = TypeVar("K")

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


@dataclass(frozen=True)
class CatalogueCopy:
    """A FederatedEndpointSlice copy in the catalogue as the hub keeps it in its index: what tells whether
    it still matches its source (labels, the change stamp, a digest of the spec) without holding every
    endpoint twice. At 1,000 members x 100 Services of 10 endpoints that is a third of the memory."""

    namespace: str
    name: str
    resource_version: str | None
    labels: tuple[tuple[str, str], ...]
    changed_at: str | None
    synced_at: str | None
    spec_digest: str
    kind: str = "FederatedEndpointSlice"

    @classmethod
    def of(cls, obj: FederatedEndpointSlice) -> CatalogueCopy:
        annotations = obj.metadata.annotations or {}
        return cls(obj.metadata.namespace or "", obj.metadata.name or "", obj.metadata.resource_version,
                   tuple(sorted((obj.metadata.labels or {}).items())), annotations.get(CHANGED_AT_ANNOTATION),
                   annotations.get(SYNCED_AT_ANNOTATION), _digest(obj.spec.to_api()))

    @property
    def ref(self) -> Ref:
        return Ref(self.kind, self.namespace, self.name)


Indexed = KubeObject | CatalogueCopy


def index_value(obj: KubeObject, catalogue: str) -> Indexed:
    """What the index holds for an object: the object, or a CatalogueCopy for a copy in the catalogue."""
    if isinstance(obj, FederatedEndpointSlice) and obj.metadata.namespace == catalogue:
        return CatalogueCopy.of(obj)
    return obj


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


def indexed_ref(value: Indexed) -> Ref:
    return value.ref if isinstance(value, CatalogueCopy) else ref(value)


class MemoryIndex(dict[Key, list[Indexed]]):
    """The index a kopf operator keeps, in memory: put and remove objects, look them up by key."""

    def __init__(self, catalogue: str) -> None:
        super().__init__()
        self.catalogue = catalogue
        self._filed: dict[Ref, tuple[Indexed, list[Key]]] = {}

    def put(self, obj: KubeObject) -> None:
        self.remove(obj)
        keys = index_keys(obj, self.catalogue)
        value = index_value(obj, self.catalogue)
        self._filed[ref(obj)] = (value, keys)
        for key in keys:
            self.setdefault(key, []).append(value)

    def remove(self, obj: Indexed) -> None:
        filed = self._filed.pop(indexed_ref(obj), None)
        if filed is None:
            return
        old, keys = filed
        for key in keys:
            bucket = self[key]
            bucket.remove(old)
            if not bucket:
                del self[key]

    def objects(self) -> list[Indexed]:
        return [obj for obj, _keys in self._filed.values()]

    def find(self, which: Ref) -> Indexed | None:
        filed = self._filed.get(which)
        return filed[0] if filed is not None else None

    def apply(self, plan: Plan, stamp: Callable[[KubeObject], None] = lambda _obj: None
              ) -> list[tuple[Indexed, bool]]:
        """Apply a plan's writes as the apiserver would (a status merge patch, a create or replace, a
        delete), `stamp`ing each stored object (resourceVersion, uid...); return (object, deleted)
        for each change, for the reconciler's `touched`. Simulations and tests play the apiserver so."""
        changed: list[tuple[Indexed, bool]] = []

        def store(obj: KubeObject) -> None:
            stamp(obj)
            self.put(obj)
            changed.append((self._filed[ref(obj)][0], False))  # what the index keeps (a copy: its digest)

        for status_write in plan.statuses:
            current = self.find(status_write.ref)
            if not isinstance(current, KubeObject):
                continue  # deleted meanwhile: the apiserver would answer 404
            document = {**current.to_api(), "apiVersion": current.api_version}
            document["status"] = merge_patch(document.get("status") or {}, status_write.status)
            updated = parse_object(document)
            updated.metadata = current.metadata.model_copy()
            store(updated)
        for write in plan.objects:
            current = self.find(write.ref)
            if write.body is None:
                if current is not None:
                    self.remove(current)
                    changed.append((current, True))
                continue
            document = dict(write.body)
            if write.status is not None:
                document["status"] = write.status
            store(parse_object(document))
        return changed


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch: null deletes, objects merge, anything else replaces."""
    merged = dict(target)
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = merge_patch(merged[name], value)
        else:
            merged[name] = value
    return merged


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


class LiveClusters:
    """The live exporting clusters of one Service, by name, with their status entries kept in step: a
    member that starts or stops heartbeating is one insertion or removal, not a rebuild of the list."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(names)
        self.entries = [{"cluster": name} for name in self.names]

    def mark(self, name: str, alive: bool) -> None:
        at = bisect.bisect_left(self.names, name)
        present = at < len(self.names) and self.names[at] == name
        if alive and not present:
            self.names.insert(at, name)
            self.entries.insert(at, {"cluster": name})
        elif not alive and present:
            del self.names[at], self.entries[at]


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
        self._deaf = False  # the hub's view may be stale: nobody Ready expires (see member_rules.liveness)
        self._heard_since = datetime.min.replace(tzinfo=UTC)
        self._topology = True
        self._mesh = True
        self._dirty_members: set[str] = set()
        self._dirty_services: set[ServiceKey] = set()
        self._dirty_copies: set[str] = set()
        self._pending_events: list[EventWrite] = []
        self._sent: dict[Ref, tuple[str | None, Any]] = {}  # written, not yet seen back: (rv seen, fingerprint)
        self._matched: dict[Ref, tuple[str | None, Any]] = {}  # status known to say what we want: (rv, wanted)
        self._merged: dict[ServiceKey, Merged] = {}  # the last merge of each Service
        self._live: dict[ServiceKey, LiveClusters] = {}  # and its live clusters
        self._liveness: set[str] = set()  # members whose liveness alone changed (not whether they count)
        self._silent: set[str] = set()  # registered members that are not alive
        self._emitted: dict[Ref, dict[str, str]] = {}  # object -> {reason: message last emitted}

    # -- what changed ----------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    def member_states(self) -> Mapping[str, MemberState]:
        return self._states

    @property
    def deaf(self) -> bool:
        return self._deaf

    def went_deaf(self) -> None:
        """The hub's API server did not answer: heartbeats may be arriving unseen."""
        self._deaf = True

    def heard(self, now: datetime) -> None:
        """A member's registration arrived from a live watch: the view is current again. Members judged
        Ready get one heartbeat timeout from now to be heard before they can expire."""
        if self._deaf:
            self._deaf = False
            self._heard_since = now
            self._dirty_members.update(key[1] for key in self.view.keys("member"))

    def _held_until(self, member: MemberCluster) -> datetime:
        if self._deaf:
            return member_rules.STILL_DEAF
        return self._heard_since + timedelta(seconds=member.spec.heartbeat_timeout_seconds)

    def touched(self, obj: Indexed, deleted: bool = False) -> None:
        """An object was added, changed or deleted (its last known state)."""
        if isinstance(obj, CatalogueCopy):
            self._dirty_copies.add(obj.name)
            return
        namespace = obj.metadata.namespace or ""
        if deleted:
            self._emitted.pop(ref(obj), None)  # a new object of the same name hears everything again
            self._matched.pop(ref(obj), None)
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
            self._start(now)
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
        liveness, self._liveness = self._liveness, set()
        for cluster in sorted(liveness):
            self._refresh_liveness(cluster, services, now, plan)
        copies, self._dirty_copies = self._dirty_copies, set()
        for name in sorted(copies):
            self._sync_copy(name, now, plan)
        if self._mesh:
            self._mesh = False
            self._plan_mesh(now, plan)
        plan.wake_at = min(self._expiry.values(), default=None)
        return plan

    def _start(self, now: datetime) -> None:
        """The first plan: read back every clusterset IP held (never hand one out twice), then sync all."""
        self._started = True
        self._heard_since = now  # a new operator may have been away: the startup grace
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
            live = member_rules.liveness(registration, now, self._held_until(registration))
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
        if state.registered and not state.alive:
            self._silent.add(cluster)
        else:
            self._silent.discard(cluster)
        self._dirty_copies.update(s.metadata.name or "" for s in
                                  self.view.get(("cluster-slices", cluster), FederatedEndpointSlice))
        if before is not None and before.usable == state.usable:
            self._liveness.add(cluster)  # the merge stands: only live lists and this member's Ready change
            return
        self._mesh = True
        for export in self.view.get(("cluster-exports", cluster), ExportedService):
            self._dirty_services.add((export.spec.namespace, export.spec.service_name))

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
            self._merged.pop(service, None)
            self._live.pop(service, None)
            if existing is not None:
                plan.objects.append(ObjectWrite(ref(existing), None, existing.metadata.resource_version, origin))
            return
        result = merge(merged_in)
        self._merged[service] = result
        self._live[service] = LiveClusters(name for name in result.by_name if name not in self._silent)
        winner = result.winner.spec
        address = self._address(name) if winner.type == "ClusterSetIP" else None
        if winner.type != "ClusterSetIP":
            self._release(name)  # a Headless Service has no clusterset IP
        spec = winner.to_api()
        for local in ("cluster", "exportedAt"):
            spec.pop(local, None)
        spec["ports"] = [port.to_api() for port in result.ports]
        if address is not None:
            spec["ips"] = [str(address)]
        labels = {SERVICE_NAMESPACE_LABEL: service[0], SERVICE_NAME_LABEL: service[1], **MANAGED_BY}
        body = {
            "apiVersion": API_VERSION,
            "kind": "FederatedService",
            "metadata": {"name": name, "namespace": self.catalogue, "labels": labels},
            "spec": spec,
        }
        if existing is None or existing.spec.to_api() != spec or not _has_labels(existing, labels):
            seen = existing.metadata.resource_version if existing is not None else None
            _live, status = self._service_status(service, result, None, now)
            if self._should_send(Ref("FederatedService", self.catalogue, name), seen,
                                 {**body, "status": _essence(status)}):
                plan.objects.append(ObjectWrite(Ref("FederatedService", self.catalogue, name), body, seen, origin,
                                                status=status))
        else:
            self._write_service_status(service, result, existing, now, plan)
        for export in merged_in:
            self._merged_export_status(export, result, now, plan)

    def _service_status(self, service: ServiceKey, result: Merged, existing: FederatedService | None,
                        now: datetime) -> tuple[list[str], dict[str, Any]]:
        """A FederatedService's status: the live exporting clusters (by name), and Ready."""
        name = FederatedService.object_name(*service)
        live = self._live[service].names
        if not live:
            ready = Verdict.of("Ready", False, NO_LIVE_CLUSTERS,
                               f"no exporting cluster is alive ({len(result.clusters)} exported it)")
        elif result.winner.spec.type == "ClusterSetIP" and name not in self._ips:
            ready = Verdict.of("Ready", False, IP_POOL_EXHAUSTED,
                               f"the clusterset IP pool {self.settings.clusterset_ip_pool} is exhausted "
                               f"({self._clusterset.capacity} addresses): widen it (hub chart clusterSetIpPool)")
        else:
            ready = Verdict.of("Ready", True, "Ready", f"exported by {len(live)} live cluster(s)")
        current = existing.status if existing is not None else None
        conditions = render([ready], current.conditions if current else None, None, now)
        return live, {"clusters": list(self._live[service].entries), "conditions": conditions}

    def _write_service_status(self, service: ServiceKey, result: Merged, existing: FederatedService, now: datetime,
                              plan: Plan) -> None:
        live, status = self._service_status(service, result, existing, now)
        target, current = ref(existing), existing.status
        ready = status["conditions"][0]
        if ready["reason"] == IP_POOL_EXHAUSTED:
            self._warn(plan, existing, IP_POOL_EXHAUSTED, ready["message"])
        clusters = current.clusters or [] if current is not None else []
        if current is not None and len(clusters) == len(live) and same_conditions(
            current.conditions, status["conditions"]
        ) and [c.cluster for c in clusters] == live:
            self._sent.pop(target, None)
        elif self._should_send(target, existing.metadata.resource_version,
                               (tuple(live), ready["status"], ready["reason"], ready["message"])):
            plan.statuses.append(StatusWrite(target, status, ("service", *service)))

    def _merged_export_status(self, export: ExportedService, result: Merged, now: datetime, plan: Plan) -> None:
        cluster = export.spec.cluster
        service = (export.spec.namespace, export.spec.service_name)
        reasons = result.reasons(cluster)
        conflict = (Verdict.of("Conflict", True, reasons, result.message(cluster)) if reasons
                    else Verdict.of("Conflict", False, NO_CONFLICTS, "it agrees with the merged Service"))
        state = self._states.get(cluster)
        merged_into = f"merged into {self.catalogue}/{FederatedService.object_name(*service)}"
        exported = (Verdict.of("Ready", True, EXPORTED, merged_into) if state is not None and state.alive else
                    Verdict.of("Ready", False, member_rules.HEARTBEAT_EXPIRED,
                               f"member {cluster} is not heartbeating: its endpoints left the catalogue"))
        self._export_status(plan, export, now, ("service", *service), ACCEPTED, conflict, exported)
        if reasons:
            self._warn(plan, export, "Conflict", f"{reasons}: {result.message(cluster)}")

    def _refresh_liveness(self, cluster: str, merged_now: set[ServiceKey], now: datetime, plan: Plan) -> None:
        """A member started or stopped heartbeating: the live lists of its Services and its exports'
        Ready change; the merges do not (a silent member keeps its say), so none is redone."""
        for export in self.view.get(("cluster-exports", cluster), ExportedService):
            service = (export.spec.namespace, export.spec.service_name)
            result = self._merged.get(service)
            if service in merged_now:
                continue
            existing = self.view.one(("service", FederatedService.object_name(*service)), FederatedService)
            if result is None or existing is None or cluster not in result.clusters or export.spec.cluster != cluster:
                self._dirty_services.add(service)  # not merged as it stands: merge it at the next plan
                continue
            self._live[service].mark(cluster, cluster not in self._silent)
            self._write_service_status(service, result, existing, now, plan)
            self._merged_export_status(export, result, now, plan)

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
        existing = self.view.one(("copy", name), CatalogueCopy)
        origin: Key = ("copy", name)
        target = Ref("FederatedEndpointSlice", self.catalogue, name)
        if source is None or not self._copied(source):
            if existing is not None:
                plan.objects.append(ObjectWrite(target, None, existing.resource_version, origin))
            return
        labels = {SOURCE_CLUSTER_LABEL: cluster, **MANAGED_BY}
        if source.spec.service is not None:
            labels[SERVICE_NAMESPACE_LABEL] = source.spec.service.namespace
            labels[SERVICE_NAME_LABEL] = source.spec.service.name
        elif source.spec.policy is not None:
            labels[POLICY_NAME_LABEL] = source.spec.policy.name
        changed = (source.metadata.annotations or {}).get(CHANGED_AT_ANNOTATION)
        spec = source.spec.to_api()
        digest = _digest(spec)
        if existing is not None and existing.spec_digest == digest and existing.changed_at == changed and all(
            entry in existing.labels for entry in labels.items()
        ):
            self._sent.pop(target, None)
            return
        annotations = {SYNCED_AT_ANNOTATION: format_stamp(now)}
        if changed is not None:
            annotations[CHANGED_AT_ANNOTATION] = changed
        body = {
            "apiVersion": API_VERSION,
            "kind": "FederatedEndpointSlice",
            "metadata": {"name": name, "namespace": self.catalogue, "labels": labels, "annotations": annotations},
            "spec": spec,
        }
        seen = existing.resource_version if existing is not None else None
        if self._should_send(target, seen, (labels, changed, digest)):
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
        target = ref(obj)
        known = (obj.metadata.resource_version, tuple((k, tuple(v) if isinstance(v, list) else v)
                                                      for k, v in wanted.items()))
        if self._matched.get(target) == known:
            return  # this very version of the object was already found to say this
        current = getattr(obj, "status", None)
        current_conditions = getattr(current, "conditions", None)
        generation = obj.metadata.generation if "observedGeneration" in wanted else None
        conditions = render(wanted["conditions"], current_conditions, generation, now)
        status = {**wanted, "conditions": conditions}
        rest_same = all(_field(current, k) == v for k, v in status.items() if k != "conditions")
        if rest_same and same_conditions(current_conditions, conditions):
            self._sent.pop(target, None)
            self._matched[target] = known
            return
        if self._should_send(ref(obj), obj.metadata.resource_version, _essence(status)):
            plan.statuses.append(StatusWrite(ref(obj), status, origin))

    def _should_send(self, target: Ref, seen: str | None, desired: Any) -> bool:
        """False when the same write was already sent for the object as last seen (not seen back yet).
        `desired` is what the write says: a tuple is compared as it is, anything else by digest."""
        entry = (seen, desired if isinstance(desired, tuple) else _digest(desired))
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


def _field(model: Any, wire_name: str) -> Any:
    """A model's field by its wire (camelCase) name; None when the model is None or has no such field."""
    if model is None:
        return None
    names = _WIRE_NAMES.get(type(model))
    if names is None:
        names = _WIRE_NAMES[type(model)] = {f.alias or n: n for n, f in type(model).model_fields.items()}
    return getattr(model, names.get(wire_name, wire_name), None)


_WIRE_NAMES: dict[type, dict[str, str]] = {}


def _has_labels(obj: KubeObject, labels: Mapping[str, str]) -> bool:
    have = obj.metadata.labels or {}
    return all(have.get(key) == value for key, value in labels.items())


def _essence(status: Mapping[str, Any]) -> dict[str, Any]:
    """A status without its transition times: what decides whether it must be written again."""
    conditions = [(c["type"], c["status"], c["reason"], c["message"]) for c in status.get("conditions") or []]
    return {**status, "conditions": conditions}
