"""Bring the lab federation up and down, and manage its pods: what the `balancing lab` verbs do."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lab import controlplane, host, kubeapi, nodes
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
    started: list[ClusterRecord] = []
    for cluster in clusters:
        record = state.clusters.get(cluster)
        if record and all(p.alive() for p in record.processes) and controlplane.readyz(cluster):
            continue
        if record:
            controlplane.stop(record)
        state.clusters[cluster] = controlplane.start(cluster)
        started.append(state.clusters[cluster])
        state.save()
    controlplane.wait_all_ready(started)
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in crd_files())).hexdigest()
    for cluster in clusters:
        if state.clusters[cluster].crd_digest != digest:
            kubeapi.apply_crds(state.clusters[cluster], crd_files())
            state.clusters[cluster].crd_digest = digest
            state.save()

    for cluster in clusters:
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
    _ensure_heartbeat(state)
    return state


def _ensure_heartbeat(state: LabState) -> None:
    state.daemons = [d for d in state.daemons if d.alive()]
    if not any(d.role == "kubelet-heartbeat" for d in state.daemons):
        cgroup = host.cgroup_create(CGROUP_ROOT / "control-plane" / "heartbeat")
        process = host.spawn([sys.executable, "-m", "lab.kubelet"], cgroup=cgroup, log=LAB_DIR / "heartbeat.log",
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        state.daemons.append(ProcessRecord.of(process.pid, "kubelet-heartbeat"))
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
    if state.pods:
        lines.append("")
        lines.append(f"{'POD':<40} {'NODE':<20} {'IP':<14} RUNNING")
        for pod in state.pods.values():
            running = "yes" if pod.process and pod.process.alive() else "no"
            lines.append(f"{pod.key:<40} {pod.node:<20} {pod.ip:<14} {running}")
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


def add_pod(
    reference: str, node_name: str, labels: dict[str, str], port: int = 8080, host_port: int | None = None,
    *, wait_endpoint_ready: bool = True,
) -> PodRecord:
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
    existing = state.pods.get(key)
    if existing and existing.process and existing.process.alive():
        return existing
    taken = {p.ip for p in state.pods.values() if p.node == node_name and p.key != key}
    pod = PodRecord(
        cluster=cluster, namespace=namespace, name=name, node=node_name, netns=nodes.pod_netns(key),
        cgroup=str(Path(node.cgroup) / "pods" / f"{namespace}.{name}"),
        ip=existing.ip if existing else nodes.allocate_pod_ip(node, taken),
        port=port, host_port=host_port, labels=labels,
    )
    nodes.create_pod_network(node, pod)
    pod.process = nodes.start_pod_process(pod)
    state.pods[key] = pod
    state.save()
    record = state.clusters[cluster]
    kubeapi.create_pod(record, pod)
    if wait_endpoint_ready:
        _wait_listening(pod)
    kubeapi.set_pod_status(record, pod, node.underlay_ip, ready=True)
    return pod


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
    nodes.delete_pod(state.nodes.get(pod.node), pod)
    with contextlib.suppress(Exception):
        kubeapi.delete_pod(state.clusters[cluster], namespace, name)
    state.save()


def exec_target(target: str) -> tuple[str, Path]:
    """The network namespace and cgroup that a command on a node or in a pod runs in."""
    state = LabState.load()
    if target.count("/") == 2:
        parse_pod_ref(target)
        pod = state.pods.get(target)
        if pod is None:
            raise host.LabError(f"pod {target} is not a lab pod")
        netns, cgroup = pod.netns, Path(pod.cgroup)
    else:
        split_node_name(target)
        node = state.nodes.get(target)
        if node is None:
            raise host.LabError(f"node {target} is not up; nodes: {', '.join(state.nodes) or 'none'}")
        netns, cgroup = node.netns, Path(node.cgroup) / "system"
    return netns, cgroup


def exec_in(target: str, command: Sequence[str]) -> int:
    netns, cgroup = exec_target(target)
    return subprocess.run([*host.netns_prefix(netns), *command], preexec_fn=host.cgroup_joiner(cgroup)).returncode
