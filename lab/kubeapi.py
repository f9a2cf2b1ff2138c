"""The lab's only conversation with the API servers: playing the kubelet's part, and kubectl.

Registers Node objects and renews their leases; lists and watches the Pods bound to lab nodes and
writes their status, Events and final deletion; requests ServiceAccount tokens and reads the
ConfigMaps and Secrets pods mount. Pods travel as plain dicts, exactly as the API serves them.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from lab.host import LabError
from lab.state import ClusterRecord, NodeRecord
from lab.toolchain import tool_path

LEASE_DURATION_SECONDS = 40
LEASE_NAMESPACE = "kube-node-lease"
MAX_PODS_PER_NODE = 110  # the kubelet's default --max-pods


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _timestamp() -> str:
    return _now().strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_timestamp() -> str:
    return _now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.cache
def api_client(kubeconfig: str) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return api


def core(cluster: ClusterRecord) -> client.CoreV1Api:
    return client.CoreV1Api(api_client(cluster.kubeconfig))


def kubectl(cluster: ClusterRecord, args: Sequence[str], *, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    result = subprocess.run([str(tool_path("kubectl")), *args], input=input, capture_output=True,
                            text=True, env=env)
    if check and result.returncode != 0:
        raise LabError(f"kubectl {' '.join(args)} on {cluster.name}: {result.stderr.strip()}")
    return result


def apply_crds(cluster: ClusterRecord, files: Sequence[Path]) -> None:
    if not files:
        return
    file_args = [arg for path in files for arg in ("-f", str(path))]
    kubectl(cluster, ["apply", "--server-side", "--force-conflicts", *file_args])
    kubectl(cluster, ["wait", "--for=condition=Established", "--timeout=60s", *file_args])


def _ignore_conflict(call: Any, *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except ApiException as error:
        if error.status != 409:
            raise


def ensure_namespace(cluster: ClusterRecord, namespace: str) -> None:
    _ignore_conflict(core(cluster).create_namespace, {"metadata": {"name": namespace}})


def _node_conditions(ready: bool) -> list[dict[str, str]]:
    now = _timestamp()
    conditions = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True" if ready else "False", "KubeletReady" if ready else "KubeletNotReady"),
    ]
    return [
        {"type": kind, "status": status, "reason": reason, "message": "balancing lab",
         "lastHeartbeatTime": now, "lastTransitionTime": now}
        for kind, status, reason in conditions
    ]


def register_node(cluster: ClusterRecord, node: NodeRecord) -> None:
    api = core(cluster)
    _ignore_conflict(api.create_node, {
        "metadata": {"name": node.name, "labels": {
            "kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "balancing.elf.io/lab-cluster": node.cluster,
        }},
        "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]},
    })
    update_node_status(cluster, node, ready=True)
    renew_lease(cluster, node.name)


def node_capacity() -> dict[str, str]:
    """Every lab node reports the machine it shares: its CPUs and memory, and the kubelet's 110 pods."""
    memory_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
    disk = os.statvfs("/")
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_kib}Ki", "pods": str(MAX_PODS_PER_NODE),
            "ephemeral-storage": f"{disk.f_blocks * disk.f_frsize // 1024}Ki"}


def update_node_status(cluster: ClusterRecord, node: NodeRecord, *, ready: bool) -> None:
    capacity = node_capacity()
    core(cluster).patch_node_status(node.name, {"status": {
        "addresses": [{"type": "InternalIP", "address": node.underlay_ip},
                      {"type": "Hostname", "address": node.name}],
        "capacity": capacity, "allocatable": capacity,
        "conditions": _node_conditions(ready),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"machineID": node.name, "systemUUID": node.name, "bootID": node.name,
                     "kernelVersion": os.uname().release, "osImage": "balancing lab", "containerRuntimeVersion":
                     "lab://1", "kubeletVersion": "v1.35.4", "kubeProxyVersion": "", "operatingSystem": "linux",
                     "architecture": "amd64"},
    }})


def renew_lease(cluster: ClusterRecord, node_name: str) -> None:
    leases = client.CoordinationV1Api(api_client(cluster.kubeconfig))
    body = {
        "metadata": {"name": node_name, "namespace": LEASE_NAMESPACE},
        "spec": {"holderIdentity": node_name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                 "renewTime": _micro_timestamp()},
    }
    try:
        leases.patch_namespaced_lease(node_name, LEASE_NAMESPACE, {"spec": body["spec"]})
    except ApiException as error:
        if error.status != 404:
            raise
        _ignore_conflict(leases.create_namespaced_lease, LEASE_NAMESPACE, body)


def _raw(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call an API method and return the response body as the API's own JSON (camelCase dict)."""
    response = call(*args, _preload_content=False, **kwargs)
    body: dict[str, Any] = json.loads(response.data)
    return body


def create_pod(cluster: ClusterRecord, body: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Create a Pod (its namespace too) and return it; an existing pod of that name is returned as is."""
    namespace = body["metadata"]["namespace"]
    ensure_namespace(cluster, namespace)
    deadline = time.monotonic() + timeout
    while True:  # the namespace's default ServiceAccount appears a moment after the namespace
        try:
            return _raw(core(cluster).create_namespaced_pod, namespace, body)
        except ApiException as error:
            if error.status == 409:
                return _raw(core(cluster).read_namespaced_pod, body["metadata"]["name"], namespace)
            if error.status == 403 and "serviceaccount" in str(error.body).lower() and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise


def read_pod(cluster: ClusterRecord, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _raw(core(cluster).read_namespaced_pod, name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def delete_pod(cluster: ClusterRecord, namespace: str, name: str, grace_seconds: int | None = None) -> None:
    """Delete a Pod through the API (the kubelet then stops it); a pod that is gone is fine."""
    try:
        core(cluster).delete_namespaced_pod(name, namespace, grace_period_seconds=grace_seconds)
    except ApiException as error:
        if error.status != 404:
            raise


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def list_pods(cluster: ClusterRecord, field_selector: str) -> tuple[list[dict[str, Any]], str]:
    """Every pod matching `field_selector`, and the list's resourceVersion to watch from."""
    listed = _raw(core(cluster).list_pod_for_all_namespaces, field_selector=field_selector)
    return list(listed.get("items") or []), str(listed["metadata"]["resourceVersion"])


def watch_pods(cluster: ClusterRecord, field_selector: str, resource_version: str,
               timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event type, pod) from `resource_version` on, for at most `timeout_seconds`."""
    stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
        core(cluster).list_pod_for_all_namespaces, field_selector=field_selector, resource_version=resource_version,
        timeout_seconds=timeout_seconds, allow_watch_bookmarks=True, deserialize=False,
    )
    try:
        for line in stream:
            event = json.loads(line) if isinstance(line, str) else line
            if event.get("type") == "ERROR":
                if (event.get("object") or {}).get("code") == 410:
                    raise WatchExpired()
                raise LabError(f"watch of pods on {cluster.name}: {event.get('object')}")
            yield str(event["type"]), event["object"]
    except ApiException as error:
        if error.status == 410:
            raise WatchExpired() from None
        raise


def patch_pod_status(cluster: ClusterRecord, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Strategic-merge the kubelet's view into the pod's status; a pod that is gone is fine."""
    try:
        core(cluster).patch_namespaced_pod_status(name, namespace, {"status": status})
    except ApiException as error:
        if error.status != 404:
            raise


def finalize_pod_deletion(cluster: ClusterRecord, namespace: str, name: str, uid: str) -> None:
    """What the kubelet does once a deleted pod's containers are gone: remove the object for good."""
    try:
        options: Any = {"preconditions": {"uid": uid}, "gracePeriodSeconds": 0}
        core(cluster).delete_namespaced_pod(name, namespace, grace_period_seconds=0, body=options)
    except ApiException as error:
        if error.status not in (404, 409):
            raise


def record_event(cluster: ClusterRecord, pod: dict[str, Any], node: str, kind: str, reason: str,
                 message: str) -> str | None:
    """A core/v1 Event about a pod, from the kubelet on `node` (what `kubectl describe` shows); its name."""
    metadata = pod["metadata"]
    now = _timestamp()
    body: Any = {
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {"kind": "Pod", "apiVersion": "v1", "name": metadata["name"],
                           "namespace": metadata["namespace"], "uid": metadata["uid"]},
        "type": kind, "reason": reason, "message": message, "count": 1,
        "firstTimestamp": now, "lastTimestamp": now,
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet", "reportingInstance": node,
    }
    try:
        return str(_raw(core(cluster).create_namespaced_event, metadata["namespace"], body)["metadata"]["name"])
    except ApiException as error:
        if error.status not in (403, 404):  # the namespace is going away
            raise
        return None


def repeat_event(cluster: ClusterRecord, namespace: str, name: str, count: int) -> None:
    """The same Event again: its count and last time, as the kubelet's event recorder aggregates."""
    try:
        core(cluster).patch_namespaced_event(name, namespace, {"count": count, "lastTimestamp": _timestamp()})
    except ApiException as error:
        if error.status not in (403, 404):
            raise


def request_token(cluster: ClusterRecord, namespace: str, service_account: str, pod: dict[str, Any],
                  audience: str | None, expiration_seconds: int) -> str:
    """A ServiceAccount token from the TokenRequest API, bound to the pod (as the kubelet asks)."""
    spec: dict[str, Any] = {
        "expirationSeconds": expiration_seconds,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"],
                           "uid": pod["metadata"]["uid"]},
    }
    if audience:
        spec["audiences"] = [audience]
    created = _raw(core(cluster).create_namespaced_service_account_token, service_account, namespace,
                   {"spec": spec})
    return str(created["status"]["token"])


def read_object_data(cluster: ClusterRecord, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
    """The data of a ConfigMap (`kind` "configMap") or Secret (`kind` "secret") as bytes; None when missing."""
    api = core(cluster)
    try:
        if kind == "configMap":
            found = _raw(api.read_namespaced_config_map, name, namespace)
            data = {key: value.encode() for key, value in (found.get("data") or {}).items()}
            binary = found.get("binaryData") or {}
        else:
            found = _raw(api.read_namespaced_secret, name, namespace)
            data, binary = {}, found.get("data") or {}
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    data.update({key: base64.b64decode(value) for key, value in binary.items()})
    return data
