"""Bring the lab federation up and down, and manage its pods: what the `balancing lab` verbs do."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lab import controlplane, host, kubeapi, nodes, pki, podspec, runtime
from lab.addressing import MAX_MEMBERS, MAX_NODES_PER_CLUSTER, ClusterAddressing, cluster_name, split_node_name
from lab.state import (
    BPFFS_ROOT,
    CGROUP_ROOT,
    LAB_DIR,
    NETNS_PREFIX,
    ClusterRecord,
    LabState,
    PodRecord,
    ProcessRecord,
    exclusive,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = REPO_ROOT / "crds"
HUB_NODES = 1
PRODUCT_NAMESPACE = "balancing-system"  # where the charts go, by convention; `lab up` makes it


def crd_files() -> list[Path]:
    return sorted(CRD_DIR.glob("*.yaml"))


def up(members: int = 2, nodes_per_cluster: int = 2) -> LabState:
    """Start whatever is missing of a hub plus `members` member clusters; idempotent."""
    with exclusive():
        return _up(members, nodes_per_cluster)


def _up(members: int, nodes_per_cluster: int) -> LabState:
    if not 1 <= members <= MAX_MEMBERS:
        raise host.LabError(f"--members must be between 1 and {MAX_MEMBERS}, got {members}")
    if not 1 <= nodes_per_cluster <= MAX_NODES_PER_CLUSTER:
        raise host.LabError(f"--nodes-per-cluster must be between 1 and {MAX_NODES_PER_CLUSTER}")
    state = LabState.load()
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    nodes.create_underlay()

    clusters = [cluster_name(index) for index in range(members + 1)]
    unhealthy = [cluster for cluster in clusters if not _healthy(state.clusters.get(cluster))]
    for cluster in unhealthy:
        if cluster in state.clusters:
            controlplane.stop(state.clusters[cluster])
    pki.ensure_ca(LAB_DIR / "pki")  # once, before the clusters sign with it in parallel
    try:
        _in_parallel(unhealthy, lambda cluster: _record(state, controlplane.start(cluster)))
    finally:
        state.save()  # the processes that did start, for `down`
    controlplane.wait_all_ready([state.clusters[cluster] for cluster in unhealthy])
    try:
        _in_parallel(unhealthy, lambda cluster: controlplane.start_controllers(state.clusters[cluster]))
    finally:
        state.save()
    controlplane.wait_all_ready([state.clusters[cluster] for cluster in unhealthy])
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in crd_files())).hexdigest()

    def apply_crds(cluster: str) -> None:
        kubeapi.apply_crds(state.clusters[cluster], crd_files())
        state.clusters[cluster].crd_digest = digest

    _in_parallel([cluster for cluster in clusters if state.clusters[cluster].crd_digest != digest], apply_crds)
    state.save()

    for cluster in clusters:
        kubeapi.ensure_namespace(state.clusters[cluster], PRODUCT_NAMESPACE)
        count = HUB_NODES if cluster == "hub" else nodes_per_cluster
        cluster_nodes = []
        for index in range(1, count + 1):
            node = nodes.create_node(cluster, index)
            state.nodes[node.name] = node
            cluster_nodes.append(node)
        nodes.route_cluster(cluster_nodes)
        for node in cluster_nodes:
            kubeapi.register_node(state.clusters[cluster], node)
    state.save()
    _ensure_kubelet(state)
    return state


def _healthy(record: ClusterRecord | None) -> bool:
    return (record is not None and {p.role.split("/", 1)[1] for p in record.processes} >= set(controlplane.ROLES)
            and all(p.alive() for p in record.processes) and controlplane.readyz(record.name))


def _record(state: LabState, record: ClusterRecord) -> None:
    state.clusters[record.name] = record


def _in_parallel(clusters: list[str], action: Callable[[str], None]) -> None:
    """Run `action` for each cluster at once (openssl, kubectl: processes that wait or use a core)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(clusters))) as pool:
        futures = [pool.submit(action, cluster) for cluster in clusters]
    for future in futures:
        future.result()


def _ensure_kubelet(state: LabState) -> None:
    state.daemons = [d for d in state.daemons if d.alive()]
    if not any(d.role == "kubelet" for d in state.daemons):
        cgroup = host.cgroup_create(CGROUP_ROOT / "control-plane" / "kubelet")
        process = host.spawn([sys.executable, "-m", "lab.kubelet"], cgroup=cgroup, log=LAB_DIR / "kubelet.log",
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        state.daemons.append(ProcessRecord.of(process.pid, "kubelet"))
    state.save()


def down() -> None:
    """Remove everything the lab made: processes, pods, nodes, bridge, cgroups, pins, state.

    Works from the lab-owned roots, so a missing or stale state file still cleans up fully.
    """
    with exclusive():
        _down()


def _down() -> None:
    state = LabState.load()
    for daemon in state.daemons:
        daemon.stop()
    for record in state.clusters.values():
        for process in record.processes:
            process.stop()
    host.cgroup_remove(CGROUP_ROOT)  # everything the lab started runs under here
    for name in _lab_netns():
        host.netns_delete(name)
    for node in state.nodes.values():
        if host.link_exists(node.underlay_link):
            host.run(["ip", "link", "del", node.underlay_link], check=False)
    nodes.delete_underlay()
    if BPFFS_ROOT.exists():
        shutil.rmtree(BPFFS_ROOT, ignore_errors=True)
    if LAB_DIR.exists():
        shutil.rmtree(LAB_DIR, ignore_errors=True)


def _lab_netns() -> list[str]:
    if not host.NETNS_DIR.exists():
        return []
    return sorted(p.name for p in host.NETNS_DIR.iterdir() if p.name.startswith(NETNS_PREFIX))


def status() -> str:
    state = LabState.load()
    if not state.clusters:
        return "lab is down"
    lines = [f"{'CLUSTER':<10} {'APISERVER':<28} {'READY':<6} PROCESSES"]
    for name, record in sorted(state.clusters.items(), key=lambda item: ClusterAddressing(item[0]).index):
        alive = sum(p.alive() for p in record.processes)
        ready = "yes" if controlplane.readyz(name) else "no"
        lines.append(f"{name:<10} {record.apiserver_url:<28} {ready:<6} {alive}/{len(record.processes)} running")
    lines.append("")
    lines.append(f"{'NODE':<20} {'UNDERLAY':<14} {'POD CIDR':<16} NETNS")
    for node in state.nodes.values():
        lines.append(f"{node.name:<20} {node.underlay_ip:<14} {node.pod_cidr:<16} {node.netns}")
    sandboxes = runtime.all_runtimes()
    if sandboxes:
        lines.append("")
        lines.append(f"{'POD':<48} {'NODE':<20} {'IP':<14} RUNNING")
        for sandbox in sorted(sandboxes, key=lambda s: s.key):
            alive = sum(record.alive() for record in sandbox.containers.values())
            lines.append(f"{sandbox.key:<48} {sandbox.node:<20} {sandbox.ip:<14} {alive}/{len(sandbox.containers)}")
    return "\n".join(lines)


def kubeconfig(cluster: str) -> Path:
    state = LabState.load()
    if cluster not in state.clusters:
        raise host.LabError(f"cluster {cluster!r} is not up; clusters: {', '.join(state.clusters) or 'none'}")
    return Path(state.clusters[cluster].kubeconfig)


def parse_pod_ref(reference: str) -> tuple[str, str, str]:
    parts = reference.split("/")
    if len(parts) != 3 or not all(parts):
        raise host.LabError(f"pod reference {reference!r}: expected CLUSTER/NAMESPACE/NAME")
    return parts[0], parts[1], parts[2]


ECHO_CONTAINER = "echo"
POD_START_TIMEOUT = 30.0


def echo_pod(namespace: str, name: str, node: str, labels: dict[str, str], port: int,
             host_port: int | None) -> dict[str, Any]:
    """The Pod of an echo server: the project image running lab.echo_server, bound to `node`."""
    ports: list[dict[str, Any]] = [
        {"name": f"echo-{protocol.lower()}", "containerPort": port, "protocol": protocol,
         **({"hostPort": host_port} if host_port else {})}
        for protocol in ("TCP", "UDP")
    ]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "nodeName": node, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False, "enableServiceLinks": False,
            "containers": [{
                "name": ECHO_CONTAINER, "image": podspec.project_image(), "ports": ports,
                "command": ["python3", "-m", "lab.echo_server", "--name", name, "--port", str(port)],
            }],
        },
    }


def add_pod(
    reference: str, node_name: str, labels: dict[str, str], port: int = 8080, host_port: int | None = None,
    *, wait_endpoint_ready: bool = True,
) -> PodRecord:
    """Run an echo-server pod on a node: its Pod goes to the API and the lab's kubelet runs it."""
    with exclusive():
        return _add_pod(reference, node_name, labels, port, host_port, wait_endpoint_ready)


def _add_pod(
    reference: str, node_name: str, labels: dict[str, str], port: int, host_port: int | None,
    wait_endpoint_ready: bool,
) -> PodRecord:
    cluster, namespace, name = parse_pod_ref(reference)
    state = LabState.load()
    if cluster not in state.clusters:
        raise host.LabError(f"cluster {cluster!r} is not up")
    node = state.nodes.get(node_name)
    if node is None or node.cluster != cluster:
        raise host.LabError(f"node {node_name!r} is not a node of cluster {cluster}; nodes: "
                            f"{', '.join(n for n, r in state.nodes.items() if r.cluster == cluster)}")
    if not 1 <= port <= 65535 or (host_port is not None and not 1 <= host_port <= 65535):
        raise host.LabError("ports must be between 1 and 65535")
    key = f"{cluster}/{namespace}/{name}"
    record = state.clusters[cluster]
    existing = state.pods.get(key)
    if existing and existing.process and existing.process.alive():
        return existing
    if kubeapi.read_pod(record, namespace, name) is not None:  # a pod that ended: start afresh
        _delete_and_wait(record, namespace, name)
    created = kubeapi.create_pod(record, echo_pod(namespace, name, node_name, labels, port, host_port))
    sandbox, container = _wait_running(record, created)
    pod = PodRecord(
        cluster=cluster, namespace=namespace, name=name, node=node_name, netns=sandbox.netns, cgroup=sandbox.cgroup,
        ip=sandbox.ip, port=port, host_port=host_port, labels=labels, uid=sandbox.uid,
        container_cgroup=container.cgroup,
        process=ProcessRecord(pid=container.pid, role=f"pod {key}", start_time=container.start_time),
    )
    state.pods[key] = pod
    state.save()
    if wait_endpoint_ready:
        _wait_listening(pod)
    return pod


def _wait_running(cluster: ClusterRecord, pod: dict[str, Any],
                  timeout: float = POD_START_TIMEOUT) -> tuple[runtime.PodRuntime, runtime.ContainerRecord]:
    """Wait until the kubelet runs the pod's first container and reports it Ready."""
    uid, namespace, name = pod["metadata"]["uid"], pod["metadata"]["namespace"], pod["metadata"]["name"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = kubeapi.read_pod(cluster, namespace, name) or {}
        status = current.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        path = runtime.PODS_DIR / uid / "pod.json"
        if ready and path.exists():
            sandbox = runtime.PodRuntime.load(path)
            container = sandbox.containers.get(ECHO_CONTAINER)
            if container and container.alive():
                return sandbox, container
        if status.get("phase") in ("Failed", "Succeeded"):
            break
        time.sleep(0.05)
    raise host.LabError(f"pod {cluster.name}/{namespace}/{name} did not start within {timeout:.0f}s; see "
                        f"`balancing lab logs {cluster.name}/{namespace}/{name}` and {LAB_DIR / 'kubelet.log'}")


def _delete_and_wait(cluster: ClusterRecord, namespace: str, name: str, timeout: float = POD_START_TIMEOUT) -> None:
    """Delete a pod through the API and wait until the kubelet has stopped it and the object is gone."""
    kubeapi.delete_pod(cluster, namespace, name)
    deadline = time.monotonic() + timeout
    while kubeapi.read_pod(cluster, namespace, name) is not None:
        if time.monotonic() > deadline:
            raise host.LabError(f"pod {cluster.name}/{namespace}/{name} is still there {timeout:.0f}s after its "
                                f"deletion; see {LAB_DIR / 'kubelet.log'}")
        time.sleep(0.05)


def _wait_listening(pod: PodRecord, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listening = host.ns_run(pod.netns, ["ss", "-Hltn", f"sport = :{pod.port}"], check=False)
        if listening.strip():
            return
        time.sleep(0.05)
    raise host.LabError(f"pod {pod.key}: echo server did not listen on {pod.port} within {timeout:.0f}s")


def remove_pod(reference: str) -> None:
    with exclusive():
        _remove_pod(reference)


def _remove_pod(reference: str) -> None:
    cluster, namespace, name = parse_pod_ref(reference)
    state = LabState.load()
    pod = state.pods.pop(f"{cluster}/{namespace}/{name}", None)
    if pod is None:
        raise host.LabError(f"pod {reference} is not a lab pod")
    if cluster in state.clusters:
        _delete_and_wait(state.clusters[cluster], namespace, name)
    state.save()


def _running_container(target: str, container: str | None) -> runtime.ContainerRecord:
    sandbox = runtime.find_runtime(target)
    if sandbox is None:
        raise host.LabError(f"pod {target} is not running on a lab node")
    if container is not None and container not in sandbox.containers:
        raise host.LabError(f"pod {target} has no container {container!r}; it has {', '.join(sandbox.containers)}")
    candidates = [sandbox.containers[container]] if container else list(sandbox.containers.values())
    alive = [record for record in candidates if record.alive()]
    if not alive:
        raise host.LabError(f"pod {target}: no running container{f' {container!r}' if container else ''}")
    return alive[0]


def exec_command(target: str, command: Sequence[str], container: str | None = None) -> tuple[list[str], Path | None]:
    """The command line (and the cgroup to join, for a node) that runs `command` on a node or in a pod.

    In a pod, the command enters a running container: its cgroup, network, UTS and mount namespaces.
    """
    if target.count("/") == 2:
        parse_pod_ref(target)
        return runtime.exec_argv(_running_container(target, container), command), None
    split_node_name(target)
    node = LabState.load().nodes.get(target)
    if node is None:
        raise host.LabError(f"node {target} is not up; nodes: {', '.join(LabState.load().nodes) or 'none'}")
    return [*host.netns_prefix(node.netns), *command], Path(node.cgroup) / "system"


def exec_in(target: str, command: Sequence[str], container: str | None = None) -> int:
    argv, cgroup = exec_command(target, command, container)
    return subprocess.run(argv, preexec_fn=host.cgroup_joiner(cgroup)).returncode


def pod_logs(reference: str, container: str | None = None, previous: bool = False) -> tuple[Path, str | None]:
    """The log file of a pod's container (the current start, or the one before with `previous`), and a
    notice naming the container when the pod has several and none was asked for (as kubectl does)."""
    cluster, namespace, name = parse_pod_ref(reference)
    pods = sorted((runtime.LOG_DIR / cluster).glob(f"{namespace}_{name}_*"), key=lambda path: path.stat().st_mtime)
    if not pods:
        raise host.LabError(f"pod {reference} has no logs: the lab's kubelet never started a container of it")
    sandbox = runtime.find_runtime(reference)
    names = list(sandbox.containers) if sandbox else sorted(path.name for path in pods[-1].iterdir())
    notice = None
    if container is None:
        container = names[0]
        if len(names) > 1:
            notice = f'Defaulted container "{container}" out of: {", ".join(names)}'
    files = sorted((pods[-1] / container).glob("*.log"), key=lambda path: int(path.stem))
    if not files:
        raise host.LabError(f"pod {reference} has no container {container!r}; it has {', '.join(names)}")
    if previous:
        if len(files) < 2:
            raise host.LabError(f"previous terminated container {container!r} in pod {reference} not found")
        return files[-2], notice
    return files[-1], notice


def helm_values(cluster: str) -> dict[str, Any]:
    """The Helm values a chart needs in the lab: the hub's member list, or a member's cluster name."""
    state = LabState.load()
    if cluster not in state.clusters:
        raise host.LabError(f"cluster {cluster!r} is not up; clusters: {', '.join(state.clusters) or 'none'}")
    if cluster == "hub":
        members = sorted((name for name in state.clusters if name != "hub"), key=lambda n: ClusterAddressing(n).index)
        return {"members": [{"name": name} for name in members]}
    return {"clusterName": cluster}
