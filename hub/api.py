"""The hub's only conversation with an API server.

- **The operator** (`run`): kopf indexes hold every input (MemberCluster, ExportedService,
  FederatedEndpointSlice, NodeTunnelEndpoint, and the hub's own FederatedServices), filed under
  `hub.engine.index_keys`; kopf starts resource handlers only once every index is complete, so the
  first watch event (the catalogue namespace's, at the latest) opens the gate of the single reconcile
  loop. Each event tells the reconciler what changed and wakes the loop, which gathers changes for
  `batch_window` seconds, plans (hub.engine, pure) and writes the plan: status merge patches, creates,
  replaces and deletes in the catalogue, Events. A failed write is retried by the next plan.
- **Joining and status** (`hub_release`, `ensure_objects`, `request_token`, `list_objects`): what
  `balancing hub add-member` creates and `balancing status` reads.

Metrics (Prometheus), /healthz and /readyz are served on `metrics_address`; logs are JSON lines.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from aiohttp import web
from kubernetes import client, config, utils
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from crds import (
    CATALOGUE_LABEL,
    KINDS_BY_NAME,
    ExportedService,
    FederatedEndpointSlice,
    FederatedService,
    InvalidObjectError,
    KubeObject,
    MemberCluster,
    NodeTunnelEndpoint,
    parse_object,
)
from hub.engine import (
    EventWrite,
    Indexed,
    ObjectWrite,
    Plan,
    Reconciler,
    StatusWrite,
    View,
    index_keys,
    index_value,
)
from hub.settings import HubSettings

log = logging.getLogger("balancing.hub")
PROBE_PERIOD = 1.0  # seconds between two questions to the hub's API server
COMPONENT = "balancing-hub"
WATCHED: tuple[type[KubeObject], ...] = (
    MemberCluster, ExportedService, FederatedEndpointSlice, NodeTunnelEndpoint, FederatedService,
)
WRITE_THREADS = 16
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ApiError(RuntimeError):
    user_facing = True


# --- clients ---------------------------------------------------------------------------------------------


def api_client(kubeconfig: str | None = None, pool_size: int = WRITE_THREADS) -> client.ApiClient:
    """In-cluster credentials in a pod, else the kubeconfig (the argument, KUBECONFIG or ~/.kube/config)."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except ConfigException:
                config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as error:
        raise ApiError(f"cannot reach the hub: {error} (pass --kubeconfig or set KUBECONFIG)") from None
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def _plural(kind: str) -> str:
    return KINDS_BY_NAME[kind].plural


def _group_version(kind: str) -> tuple[str, str]:
    model = KINDS_BY_NAME[kind]
    return model.group, model.versions[0]


class Writer:
    """Blocking writes of one plan's parts (run in a thread pool)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def patch_status(self, write: StatusWrite) -> None:
        group, version = _group_version(write.ref.kind)
        self.custom.patch_namespaced_custom_object_status(
            group, version, write.ref.namespace, _plural(write.ref.kind), write.ref.name, {"status": write.status}
        )

    def put(self, write: ObjectWrite) -> None:
        kind, namespace, name = write.ref.kind, write.ref.namespace, write.ref.name
        group, version = _group_version(kind)
        plural = _plural(kind)
        if write.body is None:
            self.custom.delete_namespaced_custom_object(group, version, namespace, plural, name)
            return
        body = dict(write.body)
        if write.resource_version is None:
            self.custom.create_namespaced_custom_object(group, version, namespace, plural, body)
        else:
            body["metadata"] = {**body["metadata"], "resourceVersion": write.resource_version}
            self.custom.replace_namespaced_custom_object(group, version, namespace, plural, name, body)
        if write.status is not None:
            self.custom.patch_namespaced_custom_object_status(
                group, version, namespace, plural, name, {"status": write.status}
            )

    def event(self, event: EventWrite) -> None:
        group, version = _group_version(event.ref.kind)
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        involved: dict[str, Any] = {"apiVersion": f"{group}/{version}", "kind": event.ref.kind,
                                    "namespace": event.ref.namespace, "name": event.ref.name}
        if event.uid:
            involved["uid"] = event.uid
        body = {
            "metadata": {"generateName": f"{event.ref.name[:200]}.", "namespace": event.ref.namespace},
            "involvedObject": involved,
            "reason": event.reason,
            "message": event.message[:1024],
            "type": event.type,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": os.environ.get("HOSTNAME", COMPONENT),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        # The client wants a CoreV1Event; the API takes the JSON (and this skips decoding the answer).
        self.core.create_namespaced_event(event.ref.namespace, cast(Any, body), _preload_content=False)


# --- metrics and health ----------------------------------------------------------------------------------


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.member_ready = Gauge("balancing_hub_member_ready", "1 while the member heartbeats (Ready=True)",
                                  ["member"], registry=self.registry)
        self.member_refused = Gauge("balancing_hub_member_refused", "1 while the member is refused (pod CIDR overlap)",
                                    ["member"], registry=self.registry)
        self.synced = Counter("balancing_hub_objects_synced", "Objects the hub wrote", ["kind", "action"],
                              registry=self.registry)
        self.failures = Counter("balancing_hub_sync_failures", "Writes that failed (retried at the next plan)",
                                ["kind", "action"], registry=self.registry)
        self.merge_seconds = Histogram("balancing_hub_merge_duration_seconds", "Time to plan one batch of changes",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.propagation = Histogram(
            "balancing_hub_propagation_seconds",
            "From a member's change (annotation balancing.elf.io/changed-at) to the hub's copy written",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.reconciles = Counter("balancing_hub_reconciles", "Plans made", registry=self.registry)


# --- the operator ----------------------------------------------------------------------------------------


class Operator:
    """The kopf handlers, the reconcile loop and the writer, around one hub.engine.Reconciler."""

    def __init__(self, settings: HubSettings, api: client.ApiClient) -> None:
        self.settings = settings
        self.api = api
        self.writer = Writer(api)
        self.metrics = Metrics()
        self.reconciler: Reconciler | None = None
        self.threads = concurrent.futures.ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="hub-write")
        self.wake: asyncio.Event | None = None
        self.gate: asyncio.Event | None = None
        self.ready = False
        self.last_loop = time.monotonic()
        self.loop_task: asyncio.Task[None] | None = None
        self.probe_task: asyncio.Task[None] | None = None
        self.web: web.AppRunner | None = None

    # -- registration -------------------------------------------------------------------------------------

    def register(self, registry: kopf.OperatorRegistry) -> None:
        for kind in WATCHED:
            resource = f"{kind.plural}.{kind.group}"
            kopf.index(resource, id=_index_id(kind), registry=registry)(self._indexer(kind))
            kopf.on.event(resource, id=f"hub_event_{kind.plural}", registry=registry)(self._on_event)
        catalogue = self.settings.catalogue_namespace
        kopf.on.event("", "v1", "namespaces", id="hub_catalogue", registry=registry,
                      when=lambda name, **_: name == catalogue)(self._on_catalogue)
        kopf.on.login(registry=registry)(self._login)
        kopf.on.startup(registry=registry)(self._startup)
        kopf.on.cleanup(registry=registry)(self._cleanup)

    def _login(self, **_: Any) -> kopf.ConnectionInfo:
        """kopf's watches use the same credentials as the writer (in-cluster, or the kubeconfig given)."""
        configuration = self.api.configuration
        header = configuration.get_api_key_with_prefix("BearerToken") or ""
        scheme, _space, token = header.rpartition(" ")
        return kopf.ConnectionInfo(
            server=configuration.host,
            ca_path=configuration.ssl_ca_cert,
            insecure=not configuration.verify_ssl,
            scheme=scheme or None,
            token=token or None,
            certificate_path=configuration.cert_file,
            private_key_path=configuration.key_file,
        )

    def _indexer(self, kind: type[KubeObject]) -> Callable[..., dict[Any, Indexed]]:
        catalogue = self.settings.catalogue_namespace

        def index(body: Mapping[str, Any], **_: Any) -> dict[Any, Indexed]:
            try:
                obj = parse_object(dict(body))
            except InvalidObjectError as error:
                log.warning("unreadable object left out", extra={"kind": kind.kind_name, "error": str(error)})
                return {}
            return dict.fromkeys(index_keys(obj, catalogue), index_value(obj, catalogue))

        return index

    async def _startup(self, settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # our Events say what happened; kopf's handler chatter would not
        settings.watching.server_timeout = 290
        settings.networking.request_timeout = 330
        self.wake, self.gate = asyncio.Event(), asyncio.Event()
        self.web = await self._serve()
        self.loop_task = asyncio.create_task(self._loop(), name="hub-reconcile")
        self.probe_task = asyncio.create_task(self._probe(), name="hub-probe")

    async def _cleanup(self, **_: Any) -> None:
        for task in (self.loop_task, self.probe_task):
            if task is not None:
                task.cancel()
        if self.web is not None:
            await self.web.cleanup()
        self.threads.shutdown(wait=False, cancel_futures=True)

    def _open_gate(self, handler_kwargs: Mapping[str, Any]) -> None:
        """The first handler call: every index is complete (kopf's guarantee); start reconciling."""
        if self.reconciler is None:
            indexes = [handler_kwargs[_index_id(kind)] for kind in WATCHED]
            self.reconciler = Reconciler(self.settings, View(indexes))
            log.info("indexes complete: reconciling", extra={"objects": sum(len(i) for i in indexes)})
        if self.gate is not None:
            self.gate.set()

    async def _on_catalogue(self, **kwargs: Any) -> None:
        self._open_gate(kwargs)

    async def _on_event(self, type: str | None, body: Mapping[str, Any], **kwargs: Any) -> None:
        self._open_gate(kwargs)
        assert self.reconciler is not None
        if type is None and not self.reconciler.started:
            return  # the initial listing: the first plan reconciles everything anyway
        # (later, a listing is news: a namespace that appeared, or a watch that was listed again)
        try:
            obj = parse_object(dict(body))
        except InvalidObjectError:
            return  # logged by the indexer
        if isinstance(obj, MemberCluster):
            self.reconciler.heard(datetime.now(UTC))  # a live watch: heartbeats reach us again
        self.reconciler.touched(obj, deleted=type == "DELETED")
        if self.wake is not None:
            self.wake.set()

    # -- the loop -----------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self.wake is not None and self.gate is not None
        await self.gate.wait()
        reconciler = self.reconciler
        assert reconciler is not None
        next_resync = time.monotonic() + self.settings.resync_period
        wake_at: datetime | None = None
        first = True
        while True:
            self.last_loop = time.monotonic()
            if not first:
                timeout = next_resync - time.monotonic()
                if wake_at is not None:
                    timeout = min(timeout, (wake_at - datetime.now(UTC)).total_seconds())
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=max(0.0, timeout))
                    await asyncio.sleep(self.settings.batch_window)  # gather the rest of a burst
                except TimeoutError:
                    pass
            first = False
            self.wake.clear()
            if time.monotonic() >= next_resync:
                reconciler.resync()
                next_resync = time.monotonic() + self.settings.resync_period
            started = time.perf_counter()
            try:
                plan = reconciler.plan(datetime.now(UTC))
            except Exception:
                log.exception("planning failed; retrying after a resync")
                reconciler.resync()
                await asyncio.sleep(1.0)
                continue
            self.metrics.merge_seconds.observe(time.perf_counter() - started)
            self.metrics.reconciles.inc()
            self._member_gauges(reconciler)
            wake_at = plan.wake_at
            failed = await self._write(plan)
            self.ready = True
            if failed:
                await asyncio.sleep(1.0)  # back off before the retries the next plan makes
                self.wake.set()

    def _member_gauges(self, reconciler: Reconciler) -> None:
        states = reconciler.member_states()
        for gauge in (self.metrics.member_ready, self.metrics.member_refused):
            gauge.clear()
        for cluster, state in states.items():
            self.metrics.member_ready.labels(cluster).set(1 if state.alive else 0)
            self.metrics.member_refused.labels(cluster).set(1 if state.refused else 0)

    async def _write(self, plan: Plan) -> int:
        """Write a plan (statuses and objects in parallel, then Events); return how many writes failed."""
        if not len(plan):
            return 0
        loop = asyncio.get_running_loop()
        writes: list[StatusWrite | ObjectWrite] = [*plan.objects, *plan.statuses]
        results = await asyncio.gather(*(loop.run_in_executor(self.threads, self._write_one, w) for w in writes))
        await asyncio.gather(*(loop.run_in_executor(self.threads, self._emit, event) for event in plan.events))
        failed = [write for write in results if write is not None]
        assert self.reconciler is not None
        for write in failed:
            self.reconciler.retry(write)
        log.info("plan written", extra={"objects": len(plan.objects), "statuses": len(plan.statuses),
                                        "events": len(plan.events), "failed": len(failed),
                                        "services_merged": plan.services_merged})
        return len(failed)

    def _write_one(self, write: StatusWrite | ObjectWrite) -> StatusWrite | ObjectWrite | None:
        """One write; the write itself when it failed (to retry), None when done or moot."""
        if isinstance(write, StatusWrite):
            action = "status"
        else:
            action = "delete" if write.body is None else "create" if write.resource_version is None else "replace"
        try:
            if isinstance(write, StatusWrite):
                self.writer.patch_status(write)
            else:
                self.writer.put(write)
        except ApiException as error:
            if error.status == 404 and (isinstance(write, StatusWrite) or write.body is None):
                return None  # deleted meanwhile: nothing to say about it
            self.metrics.failures.labels(write.ref.kind, action).inc()
            log.warning("write failed", extra={"object": str(write.ref), "action": action, "status": error.status,
                                               "reason": error.reason})
            return write
        except Exception as error:  # a network error: retried like a refusal
            self.metrics.failures.labels(write.ref.kind, action).inc()
            log.warning("write failed", extra={"object": str(write.ref), "action": action, "error": str(error)})
            return write
        self.metrics.synced.labels(write.ref.kind, action).inc()
        if isinstance(write, ObjectWrite) and write.changed_at is not None:
            self.metrics.propagation.observe(max(0.0, (datetime.now(UTC) - write.changed_at).total_seconds()))
        return None

    def _emit(self, event: EventWrite) -> None:
        try:
            self.writer.event(event)
            self.metrics.synced.labels("Event", "create").inc()
        except Exception as error:
            self.metrics.failures.labels("Event", "create").inc()
            log.warning("event failed", extra={"object": str(event.ref), "reason": event.reason, "error": str(error)})
        return None

    async def _probe(self) -> None:
        """Ask the hub's API server every PROBE_PERIOD whether it answers; when it does not, the operator
        cannot hear heartbeats, and nobody Ready expires until a member's registration arrives again."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PROBE_PERIOD)
            try:
                await loop.run_in_executor(self.threads, self._ask_version)
            except Exception as error:
                if self.reconciler is not None and not self.reconciler.deaf:
                    log.warning("the hub API server does not answer: no member expires until it does",
                                extra={"error": str(error)[:200]})
                    self.reconciler.went_deaf()

    def _ask_version(self) -> None:
        client.VersionApi(self.api).get_code(_request_timeout=PROBE_PERIOD)

    # -- metrics and health -------------------------------------------------------------------------------

    async def _serve(self) -> web.AppRunner:
        async def metrics(_: web.Request) -> web.Response:
            response = web.Response(body=generate_latest(self.metrics.registry))
            response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
            return response

        async def healthz(_: web.Request) -> web.Response:
            if self.loop_task is not None and self.loop_task.done():
                return web.Response(status=503, text="the reconcile loop stopped\n")
            return web.Response(text="ok\n")

        async def readyz(_: web.Request) -> web.Response:
            if self.ready:
                return web.Response(text="ok\n")
            return web.Response(status=503, text="not reconciled yet\n")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, _, port = self.settings.metrics_address.rpartition(":")
        await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
        return runner


def _index_id(kind: type[KubeObject]) -> str:
    return f"hub_{kind.plural}"


def run(settings: HubSettings, kubeconfig: str | None = None, verbose: bool = False) -> int:
    """Run the hub operator until SIGTERM/SIGINT."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON)
    if not verbose:  # kopf logs every handler call: at 100,000 objects that is noise, not news
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    operator = Operator(settings, api_client(kubeconfig))
    registry = kopf.OperatorRegistry()
    operator.register(registry)
    log.info("hub operator starting", extra={
        "catalogue": settings.catalogue_namespace, "clustersetIpPool": str(settings.clusterset_ip_pool),
        "proxyIpPool": str(settings.proxy_ip_pool), "namespaces": list(settings.watch_namespaces) or "all"})
    namespaces = settings.watch_namespaces
    asyncio.run(kopf.operator(registry=registry, clusterwide=not namespaces, namespaces=namespaces, standalone=True))
    return 0


# --- joining and status ------------------------------------------------------------------------------------


def _json(api: client.ApiClient, answer: object) -> Any:
    """A typed client answer as the API's JSON (dicts, camelCase keys, RFC 3339 times)."""
    return api.sanitize_for_serialization(answer)  # type: ignore[no-untyped-call]


def hub_release(api: client.ApiClient, catalogue: str | None = None) -> tuple[str, str]:
    """(catalogue namespace, Helm release) of the installed hub: the namespace labelled as the catalogue
    (or the one named), and the release on its app.kubernetes.io/instance label."""
    core = client.CoreV1Api(api)
    try:
        if catalogue:
            found = [_json(api, core.read_namespace(catalogue))]
        else:
            found = _json(api, core.list_namespace(label_selector=f"{CATALOGUE_LABEL}=true"))["items"]
    except ApiException as error:
        if error.status == 404:
            raise ApiError(f"no namespace {catalogue!r} on the hub: is that its catalogue?") from None
        raise ApiError(f"cannot read namespaces on the hub: {error.status} {error.reason}") from None
    live = [item["metadata"] for item in found if (item.get("status") or {}).get("phase") != "Terminating"]
    if not live:
        raise ApiError(f"no hub here: no namespace is labelled {CATALOGUE_LABEL}=true (install charts/hub first)")
    if len(live) > 1:
        raise ApiError(f"several hubs here ({', '.join(sorted(m['name'] for m in live))}): pass --catalogue-namespace")
    return live[0]["name"], (live[0].get("labels") or {}).get("app.kubernetes.io/instance", "balancing-hub")


def ensure_objects(api: client.ApiClient, objects: Iterable[Mapping[str, Any]]) -> list[tuple[str, bool]]:
    """Create each object unless it exists (an existing one is left as it is): [(what, created)]."""
    results = []
    for obj in objects:
        metadata = obj["metadata"]
        what = f"{obj['kind']} {metadata['namespace'] + '/' if metadata.get('namespace') else ''}{metadata['name']}"
        try:
            utils.create_from_dict(api, dict(obj))  # type: ignore[no-untyped-call]
        except utils.FailToCreateError as failure:
            refusal = failure.api_exceptions[0]
            if refusal.status != 409:
                raise ApiError(f"cannot create {what}: {refusal.status} {refusal.reason}") from None
            results.append((what, False))
            continue
        results.append((what, True))
    return results


def request_token(api: client.ApiClient, namespace: str, service_account: str, seconds: int) -> tuple[str, datetime]:
    """A TokenRequest token bound to the ServiceAccount, and when the apiserver says it expires."""
    request = cast(Any, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {"expirationSeconds": seconds}})
    try:
        granted = client.CoreV1Api(api).create_namespaced_service_account_token(service_account, namespace, request)
    except ApiException as error:
        raise ApiError(f"cannot get a token for ServiceAccount {namespace}/{service_account}: "
                       f"{error.status} {error.reason}") from None
    status = _json(api, granted)["status"]
    return status["token"], datetime.fromisoformat(status["expirationTimestamp"].replace("Z", "+00:00"))


def server_and_ca(api: client.ApiClient) -> tuple[str, str | None]:
    """The hub's URL and the path of its CA bundle, as the client reaches it."""
    return api.configuration.host, api.configuration.ssl_ca_cert


def list_objects(api: client.ApiClient, kinds: Iterable[type[KubeObject]]) -> list[KubeObject]:
    """Every object of these kinds on the hub, parsed (an unreadable one is skipped and logged)."""
    custom = client.CustomObjectsApi(api)
    found: list[KubeObject] = []
    for kind in kinds:
        group, version = kind.group, kind.versions[0]
        try:
            listed: dict[str, Any] = cast(Any, custom.list_cluster_custom_object(group, version, kind.plural))
        except ApiException as error:
            raise ApiError(f"cannot list {kind.plural}.{group} on the hub: {error.status} {error.reason}") from None
        for item in listed.get("items", []):
            item.setdefault("apiVersion", f"{group}/{version}")
            item.setdefault("kind", kind.kind_name)
            try:
                found.append(parse_object(item))
            except InvalidObjectError as error:
                log.warning("unreadable object skipped: %s", error)
    return found
