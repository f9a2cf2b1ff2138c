"""The lab's container runtime on a node: pod sandboxes (cgroup, network) and container processes.

Each pod's sandbox is recorded in `<lab>/kubelet/pods/<uid>/pod.json` so that the kubelet adopts
running containers after a restart, and `balancing lab exec/logs` and the tests find them. Cgroups
follow the kubelet's cgroupfs driver under the node's subtree:

    <node cgroup>/kubepods/[burstable/|besteffort/]pod<UID>/<container id>

and a container's id (`status.containerStatuses[].containerID` is `lab://<id>`) is its cgroup's
directory name, as containerd's is on a real node. Each start of a container gets a new id.
Container output goes to `<lab>/logs/<cluster>/<namespace>_<pod>_<uid>/<container>/<restart>.log`,
as the kubelet's /var/log/pods does.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datapath import process_start_time
from lab import host, nodes
from lab.state import LAB_DIR, NodeRecord

PODS_DIR = LAB_DIR / "kubelet" / "pods"
LOG_DIR = LAB_DIR / "logs"
LAUNCHER = Path(__file__).with_name("container_init.py")
EXEC_TIMEOUT = 30.0  # a container whose setup takes longer is reported running anyway


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRecord:
    """One start of one container."""

    name: str
    id: str
    cgroup: str
    pid: int
    start_time: int  # the process's start time in clock ticks: guards against a recycled pid
    started_at: str
    restart_count: int
    log: str
    spec: str  # the launcher's spec file: `exec` reuses its environment and working directory

    def alive(self) -> bool:
        return self.start_time != 0 and process_start_time(self.pid) == self.start_time


@dataclass
class PodRuntime:
    uid: str
    cluster: str
    namespace: str
    name: str
    node: str
    host_network: bool
    ip: str
    cgroup: str  # the pod's cgroup
    netns: str  # the network namespace its containers join (the node's for hostNetwork)
    host_ports: list[list[Any]] = field(default_factory=list)  # [protocol, hostPort, containerPort]
    containers: dict[str, ContainerRecord] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.name}"

    @property
    def directory(self) -> Path:
        return PODS_DIR / self.uid

    @property
    def network(self) -> nodes.PodNetwork:
        ports = tuple(nodes.HostPort(str(p), int(h), int(c)) for p, h, c in self.host_ports)
        return nodes.PodNetwork(pod_uid=self.uid, ip=self.ip, host_ports=ports)

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / "pod.json.tmp"
        temporary.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        temporary.replace(self.directory / "pod.json")

    @classmethod
    def load(cls, path: Path) -> PodRuntime:
        raw: dict[str, Any] = json.loads(path.read_text())
        raw["containers"] = {name: ContainerRecord(**c) for name, c in raw.get("containers", {}).items()}
        return cls(**raw)


def all_runtimes() -> list[PodRuntime]:
    found = []
    for path in sorted(PODS_DIR.glob("*/pod.json")) if PODS_DIR.exists() else []:
        with contextlib.suppress(OSError, ValueError, TypeError):
            found.append(PodRuntime.load(path))
    return found


def find_runtime(key: str) -> PodRuntime | None:
    """The sandbox of the pod CLUSTER/NAMESPACE/NAME (the newest, if a deleted one is still going)."""
    matching = [runtime for runtime in all_runtimes() if runtime.key == key]
    matching.sort(key=lambda runtime: (runtime.directory / "pod.json").stat().st_mtime)
    return matching[-1] if matching else None


def pod_log_dir(cluster: str, namespace: str, name: str, uid: str) -> Path:
    return LOG_DIR / cluster / f"{namespace}_{name}_{uid}"


def create_sandbox(node: NodeRecord, cluster: str, pod: Mapping[str, Any], cgroup: Path,
                   host_ports: Sequence[nodes.HostPort]) -> PodRuntime:
    """The pod's cgroup and, unless hostNetwork, its network namespace and address."""
    metadata, spec = pod["metadata"], pod["spec"]
    uid = str(metadata["uid"])
    host_network = bool(spec.get("hostNetwork"))
    runtime = PodRuntime(
        uid=uid, cluster=cluster, namespace=metadata["namespace"], name=metadata["name"], node=node.name,
        host_network=host_network, ip=node.underlay_ip if host_network else nodes.allocate_pod_ip(node, uid),
        cgroup=str(cgroup), netns=node.netns if host_network else nodes.pod_netns(uid),
        host_ports=[] if host_network else [[p.protocol, p.host_port, p.container_port] for p in host_ports],
    )
    runtime.save()  # first: a crash from here on leaves a record that teardown works from
    host.cgroup_create(cgroup)
    if not host_network:
        nodes.create_pod_network(node, runtime.network)
    return runtime


def destroy_sandbox(node: NodeRecord | None, runtime: PodRuntime) -> None:
    """Kill whatever still runs in the pod, remove its cgroups, network, volumes and token files."""
    host.cgroup_remove(Path(runtime.cgroup))
    if not runtime.host_network:
        nodes.delete_pod_network(node, runtime.network)
    shutil.rmtree(runtime.directory, ignore_errors=True)


def start_container(
    runtime: PodRuntime, name: str, restart_count: int, *, argv: Sequence[str], env: Mapping[str, str], cwd: str,
    hostname: str, mounts: Sequence[Mapping[str, Any]],
) -> tuple[ContainerRecord, subprocess.Popen[bytes]]:
    """Start one container: a new id and cgroup, a private mount namespace, output to its log file."""
    container_id = secrets.token_hex(32)
    cgroup = host.cgroup_create(Path(runtime.cgroup) / container_id)
    directory = runtime.directory / "containers"
    directory.mkdir(parents=True, exist_ok=True)
    spec_file = directory / f"{name}.json"
    start_error = directory / f"{name}.start-error"
    start_error.unlink(missing_ok=True)
    base_mounts: list[Mapping[str, Any]] = [{"kind": "sysfs", "target": "/sys"}, {"kind": "tmpfs", "target": "/run"}]
    spec_file.write_text(json.dumps({
        "cgroup": str(cgroup), "netns": str(host.NETNS_DIR / runtime.netns), "hostname": hostname,
        "mounts": [*base_mounts, *mounts], "argv": list(argv), "env": dict(env), "cwd": cwd,
        "start_error": str(start_error),
    }, indent=2))
    log = pod_log_dir(runtime.cluster, runtime.namespace, runtime.name, runtime.uid) / name / f"{restart_count}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # The launcher holds the write end open until it execs the command (or fails), so reading it to
    # the end means the container runs in its cgroup and namespaces before anyone says it runs.
    exec_read, exec_write = os.pipe()
    try:
        with open(log, "ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-S", "-E", str(LAUNCHER), "--exec-notify", str(exec_write), str(spec_file)],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                close_fds=True, pass_fds=(exec_write,),
            )
        os.close(exec_write)
        exec_write = -1
        ready, _, _ = select.select([exec_read], [], [], EXEC_TIMEOUT)
        if ready:
            os.read(exec_read, 1)
    finally:
        os.close(exec_read)
        if exec_write >= 0:
            os.close(exec_write)
    record = ContainerRecord(
        name=name, id=container_id, cgroup=str(cgroup), pid=process.pid,
        start_time=process_start_time(process.pid) or 0, started_at=now_rfc3339(), restart_count=restart_count,
        log=str(log), spec=str(spec_file),
    )
    runtime.containers[name] = record
    runtime.save()
    return record, process


def start_error(record: ContainerRecord) -> str | None:
    """The launcher's reason when the container never got to exec its command."""
    path = Path(record.spec).with_suffix(".start-error")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def signal_container(record: ContainerRecord, signum: int) -> None:
    if record.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signum)


def kill_container(record: ContainerRecord) -> None:
    """SIGKILL every process of the container (cgroup.kill), not just its first."""
    kill = Path(record.cgroup) / "cgroup.kill"
    try:
        kill.write_text("1")
    except OSError:
        signal_container(record, signal.SIGKILL)


def container_processes(record: ContainerRecord) -> list[int]:
    return host.cgroup_pids(Path(record.cgroup))


def remove_container_cgroup(record: ContainerRecord) -> None:
    host.cgroup_remove(Path(record.cgroup))


def exec_argv(record: ContainerRecord, command: Sequence[str]) -> list[str]:
    """A command line that runs `command` inside the running container (namespaces, cgroup, env)."""
    return [sys.executable, "-S", "-E", str(LAUNCHER), "--join", str(record.pid), record.spec, *command]
