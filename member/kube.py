"""The member's only conversation with an API server: list+watch, and the writes of agent and controller.

Objects stay API JSON (dicts): no client-model deserialisation, which at 10,000 Services costs
more memory and CPU than everything else the agent does. Each watched kind has its own thread:
it lists (paginated), hands the agent a full snapshot, then watches from the list's
resourceVersion with bookmarks; on `410 Gone` or a broken stream it lists again, and objects that
vanished meanwhile are delivered as deletions. Everything arrives on one queue, stamped with its
arrival time for the programming-latency histogram.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException as ApiException  # callers catch it through this module
from kubernetes.config.config_exception import ConfigException

from crds import ALL_KINDS
from member.policies import MANAGED_BY, MANAGED_BY_LABEL

log = logging.getLogger("balancing.kube")

LIST_PAGE_SIZE = 500
WATCH_TIMEOUT_SECONDS = 290  # the server closes a watch after this; we simply watch again
RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class WatchedKind:
    kind: str
    path: str  # collection path
    field_selector: str = ""
    label_selector: str = ""


@dataclass(frozen=True)
class WatchEvent:
    kind: str
    type: str  # ADDED, MODIFIED, DELETED, or SYNCED (the kind's first list is complete)
    obj: Mapping[str, Any]
    arrived: float  # time.monotonic() when the event was read


NODES = WatchedKind("Node", "/api/v1/nodes")
SERVICES = WatchedKind("Service", "/api/v1/services")
ENDPOINT_SLICES = WatchedKind("EndpointSlice", "/apis/discovery.k8s.io/v1/endpointslices")
BALANCING_POLICIES = WatchedKind("BalancingPolicy", "/apis/balancing.elf.io/v1beta1/balancingpolicies")
LOCAL_REDIRECT_POLICIES = WatchedKind("LocalRedirectPolicy", "/apis/balancing.elf.io/v1beta1/localredirectpolicies")
BALANCING_NODES = WatchedKind("BalancingNode", "/apis/balancing.elf.io/v1beta1/balancingnodes")


def agent_kinds(node_name: str) -> tuple[WatchedKind, ...]:
    """What a node agent watches: everything that decides its node's datapath, its node's pods, and its
    own BalancingNode (whose spec carries the node's mesh share)."""
    return (NODES, SERVICES, ENDPOINT_SLICES, WatchedKind("Pod", "/api/v1/pods", f"spec.nodeName={node_name}"),
            BALANCING_POLICIES, LOCAL_REDIRECT_POLICIES,
            WatchedKind("ServiceImport", "/apis/multicluster.x-k8s.io/v1alpha1/serviceimports"),
            WatchedKind("BalancingNode", BALANCING_NODES.path, f"metadata.name={node_name}"))


def controller_kinds(namespace: str) -> tuple[WatchedKind, ...]:
    """What the member controller watches: every pod (for policy backends), and what policy status needs."""
    return (NODES, SERVICES, WatchedKind("Pod", "/api/v1/pods"), BALANCING_POLICIES, LOCAL_REDIRECT_POLICIES,
            BALANCING_NODES,
            WatchedKind("EndpointSlice", f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                        label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}"))


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG or the argument)."""
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call,no-any-return]
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


class Api:
    """Raw JSON requests over the client's connection pool and credentials."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def request(self, method: str, path: str, query: Mapping[str, str] | None = None,
                body: Any = None, content_type: str = "application/json", timeout: float | None = 30) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = self.api.param_serialize(method, path, query_params=list((query or {}).items()),
                                          header_params=headers, body=body, auth_settings=["BearerToken"])
        response = self.api.call_api(*params, _request_timeout=timeout)
        data = response.response.data
        if not 200 <= response.status < 300:
            raise ApiException(status=response.status, reason=response.reason, http_resp=response)
        return json.loads(data) if data else None

    def stream(self, path: str, query: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        params = self.api.param_serialize("GET", path, query_params=list(query.items()),
                                          header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        response = self.api.call_api(*params, _request_timeout=(10, WATCH_TIMEOUT_SECONDS + 30))
        raw = response.response
        try:
            if response.status != 200:
                raise ApiException(status=response.status, reason=response.reason)
            pending = b""
            for chunk in raw.stream(65536, decode_content=True):
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            raw.release_conn()


class Informer(threading.Thread):
    """List+watch of one kind, forever, onto the shared queue."""

    def __init__(self, api: Api, kind: WatchedKind, events: queue.Queue[WatchEvent]) -> None:
        super().__init__(name=f"watch-{kind.kind}", daemon=True)
        self.api = api
        self.kind = kind
        self.events = events
        self.known: dict[str, Mapping[str, Any]] = {}  # uid -> last object, to detect deletions across relists
        self.stopping = threading.Event()

    def _query(self) -> dict[str, str]:
        query = {}
        if self.kind.field_selector:
            query["fieldSelector"] = self.kind.field_selector
        if self.kind.label_selector:
            query["labelSelector"] = self.kind.label_selector
        return query

    def _emit(self, event_type: str, obj: Mapping[str, Any]) -> None:
        self.events.put(WatchEvent(self.kind.kind, event_type, obj, time.monotonic()))

    def list(self) -> str:
        items: list[Mapping[str, Any]] = []
        query = {**self._query(), "limit": str(LIST_PAGE_SIZE)}
        while True:
            page = self.api.request("GET", self.kind.path, query, timeout=60)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                version = str((page.get("metadata") or {}).get("resourceVersion", ""))
                break
            query["continue"] = token
        fresh = {str(item["metadata"]["uid"]): item for item in items}
        for uid, old in list(self.known.items()):
            if uid not in fresh:
                self._emit("DELETED", old)
        for uid, item in fresh.items():
            if self.known.get(uid, {}).get("metadata", {}).get("resourceVersion") != item["metadata"].get(
                "resourceVersion"
            ):
                self._emit("MODIFIED" if uid in self.known else "ADDED", item)
        self.known = fresh
        return version

    def watch(self, version: str) -> str:
        query = {**self._query(), "watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS)}
        for line in self.api.stream(self.kind.path, query):
            event_type, obj = line.get("type"), line.get("object") or {}
            if event_type == "ERROR":
                raise ApiException(status=int(obj.get("code") or 500), reason=str(obj.get("message")))
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if event_type == "BOOKMARK":
                continue
            uid = str((obj.get("metadata") or {}).get("uid"))
            if event_type == "DELETED":
                self.known.pop(uid, None)
            else:
                self.known[uid] = obj
            self._emit(str(event_type), obj)
        return version

    def run(self) -> None:
        version = ""
        synced = False
        while not self.stopping.is_set():
            try:
                if not version:
                    version = self.list()
                    if not synced:
                        synced = True
                        self._emit("SYNCED", {})
                version = self.watch(version)
            except ApiException as error:
                if error.status == 410:  # our resourceVersion is too old: list again
                    version = ""
                    continue
                if error.status == 404 and not synced:  # the CRD is not installed (yet): nothing of this kind
                    synced = True
                    self._emit("SYNCED", {})
                log.warning("watch %s failed: %s %s; retrying", self.kind.kind, error.status, error.reason)
                version = ""
                self.stopping.wait(RETRY_SECONDS)
            except Exception as error:  # a broken connection or an apiserver restart: list again
                log.warning("watch %s broke: %s; retrying", self.kind.kind, error)
                version = ""
                self.stopping.wait(RETRY_SECONDS)


def start_informers(api: Api, kinds: Iterable[WatchedKind], events: queue.Queue[WatchEvent]) -> list[Informer]:
    informers = [Informer(api, kind, events) for kind in kinds]
    for informer in informers:
        informer.start()
    return informers


def write_node_status(api: Api, node_name: str, status: Mapping[str, Any]) -> None:
    """Create this node's BalancingNode if missing, then replace its status (the agent is its only writer)."""
    path = f"{BALANCING_NODES.path}/{quote(node_name)}"
    try:
        api.request("GET", path)
    except ApiException as error:
        if error.status != 404:
            raise
        body = {"apiVersion": "balancing.elf.io/v1beta1", "kind": "BalancingNode", "metadata": {"name": node_name},
                "spec": {}}
        try:
            api.request("POST", BALANCING_NODES.path, body=body)
        except ApiException as conflict:
            if conflict.status != 409:
                raise
    api.request("PATCH", f"{path}/status", body={"status": status}, content_type="application/merge-patch+json")


# --- the controller's writes ----------------------------------------------------------------------------


# API version and plural of every kind the member writes, for its REST paths: ours and the MCS kinds
# from their models, two built-in kinds by hand.
RESOURCES: dict[str, tuple[str, str]] = {
    "EndpointSlice": ("discovery.k8s.io/v1", "endpointslices"),
    "Node": ("v1", "nodes"),
    **{kind.kind_name: (f"{kind.group}/{kind.versions[0]}", kind.plural) for kind in ALL_KINDS},
}


def path_of(kind: str, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
    """The REST path of a kind's collection, or of one object (and a subresource of it)."""
    api_version, plural = RESOURCES[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{quote(namespace)}/{plural}" if namespace else f"{base}/{plural}"
    if name is not None:
        path += f"/{quote(name)}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


def put_object(api: Api, body: Mapping[str, Any], existing: Mapping[str, Any] | None) -> Any:
    """Create `body`, or replace `existing` with it (its resourceVersion guards a concurrent change)."""
    metadata = body["metadata"]
    namespace = metadata.get("namespace")
    if existing is None:
        return api.request("POST", path_of(body["kind"], namespace), body=body)
    replaced = {**body, "metadata": {**metadata, "resourceVersion": existing["metadata"]["resourceVersion"]}}
    return api.request("PUT", path_of(body["kind"], namespace, metadata["name"]), body=replaced)


def delete_object(api: Api, kind: str, namespace: str | None, name: str) -> None:
    try:
        api.request("DELETE", path_of(kind, namespace, name))
    except ApiException as error:
        if error.status != 404:
            raise


def merge_patch(api: Api, kind: str, namespace: str | None, name: str, body: Mapping[str, Any],
                subresource: str | None = None) -> Any:
    return api.request("PATCH", path_of(kind, namespace, name, subresource), body=body,
                       content_type="application/merge-patch+json")


def patch_status(api: Api, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]) -> None:
    merge_patch(api, kind, namespace, name, {"status": status}, "status")


def emit_event(api: Api, involved: Mapping[str, Any], event_type: str, reason: str, message: str,
               component: str) -> None:
    """A core/v1 Event on an object (what `kubectl describe` shows); repeats bump the count of the same Event."""
    metadata = involved.get("metadata") or {}
    namespace = metadata.get("namespace") or "default"
    digest = hashlib.sha256(f"{metadata.get('uid')}/{reason}/{message}".encode()).hexdigest()[:12]
    name = f"{str(metadata.get('name'))[:200]}.{digest}"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = f"/api/v1/namespaces/{namespace}/events"
    try:
        existing = api.request("GET", f"{path}/{quote(name)}")
    except ApiException as error:
        if error.status != 404:
            raise
        existing = None
    if existing is not None:
        api.request("PATCH", f"{path}/{quote(name)}", body={"count": int(existing.get("count") or 1) + 1,
                                                           "lastTimestamp": now},
                    content_type="application/merge-patch+json")
        return
    api.request("POST", path, body={
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {"apiVersion": involved.get("apiVersion"), "kind": involved.get("kind"),
                           "name": metadata.get("name"), "namespace": metadata.get("namespace"),
                           "uid": metadata.get("uid"), "resourceVersion": metadata.get("resourceVersion")},
        "type": event_type, "reason": reason, "message": message[:1024],
        "source": {"component": component}, "reportingComponent": component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    })
