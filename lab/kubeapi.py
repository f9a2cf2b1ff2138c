"""The lab's only conversation with the API servers: playing the kubelet's part, and kubectl.

Registers Node objects and renews their leases, creates Pod objects bound to lab nodes and writes
their status (podIP, Ready) — the status kube-controller-manager turns into EndpointSlices.
"""

from __future__ import annotations

import datetime
import functools
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from lab.host import LabError
from lab.state import ClusterRecord, NodeRecord, PodRecord
from lab.toolchain import tool_path

LEASE_DURATION_SECONDS = 40
LEASE_NAMESPACE = "kube-node-lease"
LAB_CONTAINER_IMAGE = "balancing-lab/echo:local"


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


def update_node_status(cluster: ClusterRecord, node: NodeRecord, *, ready: bool) -> None:
    capacity = {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi"}
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


def create_pod(cluster: ClusterRecord, pod: PodRecord) -> None:
    ensure_namespace(cluster, pod.namespace)
    ports: list[dict[str, Any]] = []
    for protocol in ("TCP", "UDP"):
        port: dict[str, Any] = {"name": f"echo-{protocol.lower()}", "containerPort": pod.port, "protocol": protocol}
        if pod.host_port:
            port["hostPort"] = pod.host_port
        ports.append(port)
    body: Any = {
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": pod.labels},
        "spec": {"nodeName": pod.node, "automountServiceAccountToken": False,
                 "containers": [{"name": "echo", "image": LAB_CONTAINER_IMAGE, "ports": ports}]},
    }
    deadline = time.monotonic() + 30
    while True:  # the namespace's default ServiceAccount appears a moment after the namespace
        try:
            core(cluster).create_namespaced_pod(pod.namespace, body)
            return
        except ApiException as error:
            if error.status == 409:
                return
            if error.status == 403 and "serviceaccount" in str(error.body).lower() and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise


def set_pod_status(cluster: ClusterRecord, pod: PodRecord, node_ip: str, *, ready: bool) -> None:
    now = _timestamp()
    flag = "True" if ready else "False"
    conditions = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
        {"type": "Ready", "status": flag, "lastTransitionTime": now},
    ]
    state: dict[str, Any] = (
        {"running": {"startedAt": now}} if ready else {"terminated": {"exitCode": 137, "reason": "Error"}}
    )
    core(cluster).patch_namespaced_pod_status(pod.name, pod.namespace, {"status": {
        "phase": "Running" if ready else "Failed",
        "hostIP": node_ip, "hostIPs": [{"ip": node_ip}],
        "podIP": pod.ip, "podIPs": [{"ip": pod.ip}],
        "startTime": now, "conditions": conditions,
        "containerStatuses": [{"name": "echo", "image": LAB_CONTAINER_IMAGE, "imageID": LAB_CONTAINER_IMAGE,
                               "ready": ready, "started": ready, "restartCount": 0, "state": state}],
    }})


def delete_pod(cluster: ClusterRecord, namespace: str, name: str) -> None:
    try:
        core(cluster).delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    except ApiException as error:
        if error.status != 404:
            raise

