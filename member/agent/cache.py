"""The node agent's local cache of its cluster, and which parts of the node's state each change touches.

Pure: the API module feeds it watch events (kind, ADDED/MODIFIED/DELETED, object); it keeps a trimmed
copy of each object and answers with the *sources* whose frontends must be recomputed:
- `service:<namespace>/<name>`: one Service's frontends;
- `policies`: every policy (conflicts are decided across all of them, and they are few);
- `nodes`: the cluster's node addresses (NodePort), and this node's labels and zone, which change
  everything.
Node heartbeats rewrite Node status every few seconds; only changes to what the datapath uses (addresses,
labels, the proxy annotation) mark anything dirty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crds import POLICY_NAME_LABEL, BalancingPolicy, InvalidObjectError, LocalRedirectPolicy, parse_object
from crds.mcs import MCS_SERVICE_NAME_LABEL
from member.agent.services import SERVICE_NAME_LABEL, ZONE_LABEL, Obj
from member.policies import MANAGED_BY, MANAGED_BY_LABEL, POLICY_KIND_LABEL, Policy, policy_ref

NODES = "nodes"
POLICIES = "policies"
TUNNEL = "tunnel"  # this node's mesh share: applied apart from the socket LB
EVERYTHING = "*"

# Metadata nobody here reads: dropping it keeps the cache small (managedFields alone is often half an object).
_DROPPED_METADATA = ("managedFields", "ownerReferences", "finalizers", "generateName")
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def trim(obj: Obj) -> dict[str, Any]:
    trimmed = dict(obj)
    metadata = dict(trimmed.get("metadata") or {})
    for key in _DROPPED_METADATA:
        metadata.pop(key, None)
    annotations = metadata.get("annotations")
    if annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS}
    trimmed["metadata"] = metadata
    return trimmed


def object_key(obj: Obj) -> str:
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata.get('name')}" if namespace else str(metadata.get("name"))


def service_source(key: str) -> str:
    return f"service:{key}"


def import_source(key: str) -> str:
    return f"import:{key}"


def _node_fingerprint(node: Obj | None) -> tuple[Any, ...]:
    if node is None:
        return ()
    metadata = node.get("metadata") or {}
    addresses = tuple(
        (a.get("type"), a.get("address")) for a in (node.get("status") or {}).get("addresses") or []
    )
    return (addresses, tuple(sorted((metadata.get("labels") or {}).items())),
            tuple(sorted((metadata.get("annotations") or {}).items())))


@dataclass
class ClusterCache:
    """Everything the agent knows about its cluster, as of the last event."""

    node_name: str
    policy_namespace: str = "balancing-system"  # only the member controller's slices there carry policy backends
    nodes: dict[str, Obj] = field(default_factory=dict)
    services: dict[str, Obj] = field(default_factory=dict)  # "ns/name"
    service_slices: dict[str, dict[str, Obj]] = field(default_factory=dict)  # "ns/svc" -> slice key -> slice
    policy_slices: dict[str, dict[str, Obj]] = field(default_factory=dict)  # policy_ref -> slice key -> slice
    policies: dict[str, Policy] = field(default_factory=dict)  # policy_ref -> model
    invalid_policies: dict[str, str] = field(default_factory=dict)  # "Kind/name" -> why it cannot be parsed
    pods: dict[str, Obj] = field(default_factory=dict)  # pods on this node, by "ns/name"
    imports: dict[str, Obj] = field(default_factory=dict)  # MCS ServiceImports by "ns/name"
    import_slices: dict[str, dict[str, Obj]] = field(default_factory=dict)  # "ns/svc" -> slice key -> slice
    own: Obj | None = None  # this node's BalancingNode (its spec carries the node's tunnel)
    _slice_owner: dict[str, tuple[str, str]] = field(default_factory=dict)  # slice -> ("service"|"policy", owner)
    _pods_by_uid: dict[str, Obj] = field(default_factory=dict)

    @property
    def node(self) -> Obj | None:
        return self.nodes.get(self.node_name)

    @property
    def zone(self) -> str:
        return str(((self.node or {}).get("metadata") or {}).get("labels", {}).get(ZONE_LABEL, ""))

    def node_labels(self) -> Mapping[str, str]:
        return ((self.node or {}).get("metadata") or {}).get("labels") or {}

    def slices_of(self, service: str) -> list[Obj]:
        return list(self.service_slices.get(service, {}).values())

    def apply(self, kind: str, event: str, obj: Obj) -> set[str]:
        """Record one watch event; return the sources it makes dirty."""
        deleted = event == "DELETED"
        key = object_key(obj)
        if kind == "Node":
            before = _node_fingerprint(self.nodes.get(key))
            if deleted:
                self.nodes.pop(key, None)
            else:
                self.nodes[key] = trim(obj)
            if _node_fingerprint(self.nodes.get(key)) == before:
                return set()
            return {EVERYTHING} if key == self.node_name else {NODES, POLICIES}
        if kind == "Service":
            if deleted:
                self.services.pop(key, None)
            else:
                self.services[key] = trim(obj)
            return {service_source(key), import_source(key), POLICIES}
        if kind == "ServiceImport":
            if deleted:
                self.imports.pop(key, None)
            else:
                self.imports[key] = trim(obj)
            return {import_source(key)}
        if kind == "BalancingNode":
            self.own = None if deleted else trim(obj)
            return {TUNNEL}
        if kind == "EndpointSlice":
            return self._apply_slice(key, obj, deleted)
        if kind == "Pod":  # only for naming event clients: the datapath does not depend on pods
            old = self.pods.pop(key, None)
            if old is not None:
                self._pods_by_uid.pop(str((old.get("metadata") or {}).get("uid")), None)
            if not deleted:
                pod = self.pods[key] = trim(obj)
                self._pods_by_uid[str((pod.get("metadata") or {}).get("uid"))] = pod
            return set()
        if kind in ("BalancingPolicy", "LocalRedirectPolicy"):
            ref = f"{kind}/{key}"
            self.policies.pop(ref, None)
            self.invalid_policies.pop(ref, None)
            if not deleted:
                try:
                    parsed = parse_object(obj)
                except InvalidObjectError as error:
                    self.invalid_policies[ref] = str(error)
                else:
                    assert isinstance(parsed, BalancingPolicy | LocalRedirectPolicy)
                    self.policies[policy_ref(parsed)] = parsed
            return {POLICIES}
        return set()

    def _apply_slice(self, key: str, obj: Obj, deleted: bool) -> set[str]:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        namespace = (obj.get("metadata") or {}).get("namespace", "")
        dirty: set[str] = set()
        owner = self._slice_owner.pop(key, None)
        if owner is not None:  # forget the old placement first: a slice's labels may change
            dirty |= self._forget_slice(key, *owner)
        if deleted:
            return dirty
        if POLICY_NAME_LABEL in labels and POLICY_KIND_LABEL in labels:
            if namespace != self.policy_namespace or labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
                return dirty  # anyone may write a slice with these labels elsewhere: never trust it
            owner = ("policy", f"{labels[POLICY_KIND_LABEL]}/{labels[POLICY_NAME_LABEL]}")
            self.policy_slices.setdefault(owner[1], {})[key] = trim(obj)
            dirty.add(POLICIES)
        elif SERVICE_NAME_LABEL in labels:
            owner = ("service", f"{namespace}/{labels[SERVICE_NAME_LABEL]}")
            self.service_slices.setdefault(owner[1], {})[key] = trim(obj)
            dirty |= {service_source(owner[1]), import_source(owner[1])}
        elif MCS_SERVICE_NAME_LABEL in labels and labels.get(MANAGED_BY_LABEL) == MANAGED_BY:
            owner = ("import", f"{namespace}/{labels[MCS_SERVICE_NAME_LABEL]}")
            self.import_slices.setdefault(owner[1], {})[key] = trim(obj)
            dirty.add(import_source(owner[1]))
        else:
            return dirty
        self._slice_owner[key] = owner
        return dirty

    def _forget_slice(self, key: str, table_name: str, owner: str) -> set[str]:
        table = {"policy": self.policy_slices, "service": self.service_slices, "import": self.import_slices}[table_name]
        slices = table.get(owner, {})
        slices.pop(key, None)
        if not slices:
            table.pop(owner, None)
        if table_name == "service":
            return {service_source(owner), import_source(owner)}
        return {POLICIES} if table_name == "policy" else {import_source(owner)}

    def pod_by_uid(self, uid: str) -> Obj | None:
        return self._pods_by_uid.get(uid)

    def all_sources(self) -> set[str]:
        return ({NODES, POLICIES} | {service_source(key) for key in self.services}
                | {import_source(key) for key in self.imports})
