"""The lab's kubelet: one daemon for every lab node of every cluster.

- Heartbeat: every HEARTBEAT_INTERVAL it renews each node's Lease and every NODE_STATUS_INTERVAL
  it refreshes the node's status (Ready, capacity and allocatable).
- Pods: one watch per cluster on the pods bound to a node (`spec.nodeName!=`), and one worker
  thread per pod on a lab node that runs it the way a kubelet does: sandbox (cgroup, network
  namespace and address), volumes (hostPath of the node, emptyDir, ConfigMap, Secret, downward API,
  projected ServiceAccount token), init containers then containers (each in its own cgroup and
  private mount namespace, see lab/runtime.py and lab/container_init.py), probes, restarts with
  back-off, pod status and Events, and on deletion SIGTERM, the grace period, SIGKILL, teardown.
- Only the project image runs (podspec.unrunnable_image_message); any other pod stays Pending with
  a Warning Event that says why.
- A restarted kubelet adopts the containers that still run (their records in <lab>/kubelet/pods).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import kubeapi, podspec, runtime, volumes
from lab.addressing import HOST_UNDERLAY_IP, ClusterAddressing
from lab.nodes import HostPort, node_root
from lab.podspec import NodePaths, PodContext, PodSpecError
from lab.runtime import ContainerRecord, PodRuntime, now_rfc3339
from lab.state import ClusterRecord, LabState, NodeRecord
from lab.toolchain import bin_dir

HEARTBEAT_INTERVAL = 10.0
NODE_STATUS_INTERVAL = 30.0
WATCH_TIMEOUT_SECONDS = 300
VOLUME_REFRESH_INTERVAL = 60.0  # ConfigMap and Secret volumes follow their objects this often
RETRY_INTERVAL = 5.0  # a sandbox or volume that failed is tried again this often
ADOPTED_POLL_INTERVAL = 1.0  # a container this kubelet did not start is polled for its exit
UNKNOWN_EXIT_CODE = 137

log = logging.getLogger("lab.kubelet")


def image_env(hostname: str) -> dict[str, str]:
    """The project image's environment as the lab provides it: this checkout's package and tools."""
    path = [str(Path(sys.executable).parent), str(bin_dir()), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
            "/usr/bin", "/sbin", "/bin"]
    return {"PATH": os.pathsep.join(path), "HOME": "/root", "HOSTNAME": hostname,
            "PYTHONPATH": str(podspec.REPO_ROOT), **podspec.IMAGE_ENV}


def service_env(cluster: str) -> dict[str, str]:
    """KUBERNETES_SERVICE_* and the docker-link variables, pointing at the cluster's apiserver."""
    host, port = str(HOST_UNDERLAY_IP), str(ClusterAddressing(cluster).apiserver_port)
    prefix = f"KUBERNETES_PORT_{port}_TCP"
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port, "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}", prefix: f"tcp://{host}:{port}", f"{prefix}_PROTO": "tcp",
            f"{prefix}_PORT": port, f"{prefix}_ADDR": host}


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class Probe:
    kind: str  # readiness, liveness or startup
    spec: dict[str, Any]
    settings: podspec.ProbeSettings
    next_at: float
    successes: int = 0
    failures: int = 0
    result: bool | None = None


@dataclass
class Container:
    spec: dict[str, Any]
    init: bool
    record: ContainerRecord | None = None
    process: subprocess.Popen[bytes] | None = None  # None for a container adopted after a restart
    exited: dict[str, Any] | None = None  # the current instance's terminated state, once it exited
    last_state: dict[str, Any] | None = None
    restart_count: int = 0
    backoff: float | None = None
    restart_at: float = 0.0
    started_mono: float = 0.0
    waiting: tuple[str, str] = ("ContainerCreating", "")
    probes: dict[str, Probe] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.record is not None and self.exited is None

    @property
    def started(self) -> bool:
        startup = self.probes.get("startup")
        return self.running and (startup is None or startup.result is True)

    @property
    def ready(self) -> bool:
        readiness = self.probes.get("readiness")
        return self.started and (readiness is None or readiness.result is True)

    def status(self) -> dict[str, Any]:
        state: dict[str, Any]
        if self.running and self.record:
            state = {"running": {"startedAt": self.record.started_at}}
        elif self.exited is not None and self.waiting[0] != "CrashLoopBackOff":
            state = {"terminated": self.exited}
        else:
            reason, message = self.waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        status: dict[str, Any] = {
            "name": self.name, "image": self.spec.get("image", ""), "imageID": self.spec.get("image", ""),
            "ready": self.ready, "started": self.started, "restartCount": self.restart_count, "state": state,
            "lastState": {"terminated": self.last_state} if self.last_state else {},
        }
        if self.record:
            status["containerID"] = f"lab://{self.record.id}"
        return status


class PodWorker(threading.Thread):
    """Runs one pod on one lab node, from its first sighting until its object is gone."""

    def __init__(self, kubelet: Kubelet, cluster: ClusterRecord, node: NodeRecord, pod: dict[str, Any],
                 adopted: PodRuntime | None) -> None:
        super().__init__(name=f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']}", daemon=True)
        self.kubelet = kubelet
        self.cluster = cluster
        self.node = node
        self.uid = str(pod["metadata"]["uid"])
        self.pod = pod
        self.gone = False
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.exits: list[tuple[str, str, int]] = []  # (container, container id, returncode)
        self.runtime = adopted
        self.volumes: volumes.PodVolumes | None = None
        self.containers = {c["name"]: Container(c, init=False) for c in podspec.containers(pod)}
        self.init_containers = {c["name"]: Container(c, init=True) for c in podspec.init_containers(pod)}
        self.events: dict[tuple[str, str, str], tuple[str, int]] = {}  # (type, reason, message) -> (name, count)
        self.last_status = ""
        # a pod that ended before this kubelet started stays ended, as the kubelet leaves terminal pods alone
        self.terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and adopted is None
        self.finished = False
        self.retry_at = 0.0
        self.volumes_refreshed = 0.0
        self.start_time = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        if adopted is not None:
            self._adopt(adopted)

    # --- called from other threads -------------------------------------------------------------

    def update(self, pod: dict[str, Any]) -> None:
        with self.lock:
            self.pod = pod
        self.wake.set()

    def mark_gone(self) -> None:
        with self.lock:
            self.gone = True
        self.wake.set()

    def _waiter(self, name: str, container_id: str, process: subprocess.Popen[bytes]) -> None:
        returncode = process.wait()
        with self.lock:
            self.exits.append((name, container_id, returncode))
        self.wake.set()

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                self.wake.clear()
                try:
                    timeout = self.sync()
                except Exception:  # a bad round must not end the pod's life cycle
                    log.exception("pod %s: sync failed", self.label)
                    timeout = RETRY_INTERVAL
                if timeout is None and self.finished:
                    return
                self.wake.wait(timeout)
        finally:
            self.kubelet.worker_done(self.uid)

    @property
    def label(self) -> str:
        return f"{self.cluster.name}/{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    def sync(self) -> float | None:
        with self.lock:
            pod, gone = self.pod, self.gone
        if gone or pod["metadata"].get("deletionTimestamp"):
            self._terminate(pod, finalize=not gone)
            self.finished = True
            return None
        now = time.monotonic()
        self._collect_exits(now)
        if self.terminal:
            return None
        problems = podspec.unsupported(pod)
        if problems:
            self._report_unrunnable(pod, problems)
            return None
        if now < self.retry_at:
            return self.retry_at - now
        if not self._ensure_sandbox(pod):
            self.retry_at = now + RETRY_INTERVAL
            self._report_status(pod)
            return RETRY_INTERVAL
        initialized = self._sync_init_containers(pod, now)
        if initialized:
            for container in self.containers.values():
                self._sync_container(pod, container, now)
            self._run_probes(pod, now)
        self._refresh_volumes(pod)
        phase = self._report_status(pod)
        if phase in ("Succeeded", "Failed"):
            self.terminal = True
            self._teardown()
            return None
        return self._next_wake(now)

    # --- sandbox and volumes ---------------------------------------------------------------------

    def _context(self) -> PodContext:
        ip = self.runtime.ip if self.runtime else ""
        return PodContext(pod_ip=ip, host_ip=self.node.underlay_ip, allocatable=kubeapi.node_capacity())

    def _fetch(self, kind: str, name: str) -> Mapping[str, bytes] | None:
        return kubeapi.read_object_data(self.cluster, kind, self.pod["metadata"]["namespace"], name)

    def _request_token(self, audience: str | None, seconds: int) -> str:
        metadata, spec = self.pod["metadata"], self.pod["spec"]
        return kubeapi.request_token(self.cluster, metadata["namespace"], spec.get("serviceAccountName") or "default",
                                     self.pod, audience, seconds)

    def _node_paths(self) -> NodePaths:
        return NodePaths(bpffs=Path(self.node.bpffs), cgroup=Path(self.node.cgroup), state=Path(self.node.state_dir),
                         root=node_root(self.node.name))

    def _ensure_sandbox(self, pod: dict[str, Any]) -> bool:
        try:
            if self.runtime is None:
                ports = [HostPort(str(p.get("protocol") or "TCP").lower(), int(p["hostPort"]), int(p["containerPort"]))
                         for c in podspec.containers(pod) for p in c.get("ports") or [] if p.get("hostPort")]
                self.runtime = runtime.create_sandbox(self.node, self.cluster.name, pod,
                                                      podspec.pod_cgroup(Path(self.node.cgroup), pod), ports)
            if self.volumes is None:
                self.volumes = volumes.prepare(pod, self._node_paths(), self.runtime.directory, self._fetch,
                                               self._request_token, self._context())
                self.volumes_refreshed = time.monotonic()
        except PodSpecError as error:
            self._event(pod, "Warning", error.reason, str(error))
            return False
        except Exception as error:
            log.exception("pod %s: sandbox", self.label)
            self._event(pod, "Warning", "FailedCreatePodSandBox", f"the lab could not create the sandbox: {error}")
            return False
        return True

    def _refresh_volumes(self, pod: dict[str, Any]) -> None:
        if self.volumes is None:
            return
        with contextlib.suppress(PodSpecError):
            if volumes.refresh_tokens(self.volumes, self._request_token, time.time()):
                log.info("pod %s: refreshed its service account token", self.label)
            if time.monotonic() - self.volumes_refreshed >= VOLUME_REFRESH_INTERVAL:
                volumes.refresh(pod, self.volumes, self._fetch, self._context())
                self.volumes_refreshed = time.monotonic()

    def _teardown(self) -> None:
        if self.runtime is not None:
            runtime.destroy_sandbox(self.node, self.runtime)
            self.runtime = None
        self.volumes = None

    # --- containers --------------------------------------------------------------------------------

    def _adopt(self, adopted: PodRuntime) -> None:
        for name, record in adopted.containers.items():
            container = self.containers.get(name) or self.init_containers.get(name)
            if container is None:
                continue
            container.record = record
            container.restart_count = record.restart_count
            container.started_mono = time.monotonic()
            self._init_probes(container, time.monotonic())
            if not record.alive():
                self._exited(container, UNKNOWN_EXIT_CODE, time.monotonic(), "ContainerStatusUnknown",
                             "the container ended while the lab's kubelet was not running")
            log.info("pod %s: adopted container %s (pid %d)", self.label, name, record.pid)

    def _terminated(self, record: ContainerRecord, code: int, reason: str | None = None,
                    message: str | None = None) -> dict[str, Any]:
        state: dict[str, Any] = {
            "exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error"),
            "startedAt": record.started_at, "finishedAt": now_rfc3339(), "containerID": f"lab://{record.id}",
        }
        if message:
            state["message"] = message
        return state

    def _collect_exits(self, now: float) -> None:
        with self.lock:
            exits, self.exits = self.exits, []
        every = {**self.init_containers, **self.containers}
        for name, container_id, returncode in exits:
            container = every.get(name)
            if container and container.record and container.record.id == container_id and container.exited is None:
                self._exited(container, _exit_code(returncode), now)
        for container in every.values():  # adopted ones: nobody waits for them
            if container.running and container.process is None and container.record and not container.record.alive():
                self._exited(container, UNKNOWN_EXIT_CODE, now, "ContainerStatusUnknown",
                             "the container was started by an earlier lab kubelet; its exit code is unknown")

    def _exited(self, container: Container, code: int, now: float, reason: str | None = None,
                message: str | None = None) -> None:
        assert container.record is not None
        start_error = runtime.start_error(container.record)
        if start_error:
            reason, message = "StartError", start_error
        container.exited = self._terminated(container.record, code, reason, message)
        runtime.kill_container(container.record)  # what the command left running goes with it
        with contextlib.suppress(Exception):
            runtime.remove_container_cgroup(container.record)
        container.probes = {}
        policy = "OnFailure" if container.init and self.restart_policy == "Always" else self.restart_policy
        if podspec.should_restart(policy, code):
            container.backoff = podspec.next_backoff(container.backoff, now - container.started_mono)
            container.restart_at = now + container.backoff
        log.info("pod %s: container %s exited with %d", self.label, container.name, code)

    @property
    def restart_policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy") or "Always")

    def _sync_init_containers(self, pod: dict[str, Any], now: float) -> bool:
        for container in self.init_containers.values():
            if container.exited is not None and container.exited["exitCode"] == 0:
                continue
            self._sync_container(pod, container, now)
            return False
        return True

    def _sync_container(self, pod: dict[str, Any], container: Container, now: float) -> None:
        if container.running or (container.exited is None and now < container.restart_at):
            return  # running, or its configuration failed a moment ago
        if container.exited is not None:
            policy = "OnFailure" if container.init and self.restart_policy == "Always" else self.restart_policy
            if not podspec.should_restart(policy, container.exited["exitCode"]):
                return
            if now < container.restart_at:
                container.waiting = ("CrashLoopBackOff", f"back-off {container.backoff:.0f}s restarting failed "
                                                         f"container={container.name} pod={pod['metadata']['name']}")
                return
        self._start(pod, container, now)

    def _start(self, pod: dict[str, Any], container: Container, now: float) -> None:
        assert self.runtime is not None and self.volumes is not None
        spec = container.spec
        hostname = self.node.name if self.runtime.host_network else (pod["spec"].get("hostname")
                                                                     or pod["metadata"]["name"])
        try:
            context = self._context()

            def lookup(kind: str, name: str) -> Mapping[str, str] | None:
                data = self._fetch(kind, name)
                return None if data is None else {k: v.decode(errors="replace") for k, v in data.items()}

            env = podspec.container_env(pod, spec, context, lookup, service_env(self.cluster.name))
            argv = podspec.container_argv(spec, env)
            mounts = volumes.container_mounts(spec, self.volumes, env)
        except PodSpecError as error:
            container.waiting = (error.reason, str(error))
            self._event(pod, "Warning", "Failed", f"Error: {error}")
            container.restart_at = now + RETRY_INTERVAL
            return
        restart_count = container.restart_count + (1 if container.record is not None else 0)
        record, process = runtime.start_container(
            self.runtime, container.name, restart_count, argv=argv, env={**image_env(hostname), **env},
            cwd=spec.get("workingDir") or podspec.IMAGE_WORKDIR, hostname=hostname, mounts=mounts,
        )
        if container.exited is not None:
            container.last_state = container.exited
        container.record, container.process, container.exited = record, process, None
        container.restart_count = restart_count
        container.started_mono = now
        container.waiting = ("ContainerCreating", "")
        self._init_probes(container, now)
        threading.Thread(target=self._waiter, args=(container.name, record.id, process), daemon=True,
                         name=f"wait {self.label}/{container.name}").start()
        self._event(pod, "Normal", "Started", f"Started container {container.name}", once=False)

    # --- probes ------------------------------------------------------------------------------------

    def _init_probes(self, container: Container, now: float) -> None:
        container.probes = {}
        if container.init:
            return
        for kind in ("startup", "readiness", "liveness"):
            spec = container.spec.get(f"{kind}Probe")
            if spec:
                settings = podspec.probe_settings(spec)
                container.probes[kind] = Probe(kind, spec, settings, next_at=now + settings.initial_delay)

    def _run_probes(self, pod: dict[str, Any], now: float) -> None:
        for container in self.containers.values():
            if not container.running:
                continue
            for kind in ("startup", "readiness", "liveness"):
                probe = container.probes.get(kind)
                if probe is None or now < probe.next_at or (kind != "startup" and not container.started):
                    continue
                if kind == "startup" and probe.result:
                    continue
                ok, message = self._probe(pod, container, probe)
                probe.next_at = time.monotonic() + probe.settings.period
                if ok:
                    probe.successes, probe.failures = probe.successes + 1, 0
                    if probe.successes >= probe.settings.success_threshold:
                        probe.result = True
                    continue
                probe.successes, probe.failures = 0, probe.failures + 1
                self._event(pod, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}", once=False)
                if probe.failures >= probe.settings.failure_threshold:
                    probe.result = False
                    if kind in ("liveness", "startup"):
                        self._event(pod, "Normal", "Killing", f"Container {container.name} failed {kind} probe, "
                                                              "will be restarted", once=False)
                        self._stop_containers([container], podspec.termination_grace(pod))
                        return

    def _probe(self, pod: dict[str, Any], container: Container, probe: Probe) -> tuple[bool, str]:
        assert self.runtime is not None and container.record is not None
        spec, timeout = probe.spec, probe.settings.timeout
        try:
            if "httpGet" in spec:
                get = spec["httpGet"]
                port = podspec.named_port(container.spec, get["port"])
                target = get.get("host") or self.runtime.ip
                connection: http.client.HTTPConnection
                if str(get.get("scheme") or "HTTP").upper() == "HTTPS":
                    connection = http.client.HTTPSConnection(target, port, timeout=timeout,
                                                             context=ssl._create_unverified_context())
                else:
                    connection = http.client.HTTPConnection(target, port, timeout=timeout)
                try:
                    headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                    connection.request("GET", get.get("path") or "/", headers={"User-Agent": "kube-probe/1.35",
                                                                               **headers})
                    status = connection.getresponse().status
                finally:
                    connection.close()
                return 200 <= status < 400, f"HTTP probe failed with statuscode: {status}"
            if "tcpSocket" in spec:
                port = podspec.named_port(container.spec, spec["tcpSocket"]["port"])
                address = (spec["tcpSocket"].get("host") or self.runtime.ip, port)
                with socket.create_connection(address, timeout=timeout):
                    return True, ""
            if "exec" in spec:
                result = subprocess.run(runtime.exec_argv(container.record, spec["exec"].get("command") or []),
                                        capture_output=True, text=True, timeout=timeout)
                output = (result.stdout + result.stderr).strip()
                return result.returncode == 0, output or f"command exited with {result.returncode}"
            return False, f"probe type {', '.join(spec)} is not supported by the lab"
        except PodSpecError as error:
            return False, str(error)
        except subprocess.TimeoutExpired:
            return False, f"command timed out after {timeout:.0f}s"
        except (OSError, http.client.HTTPException) as error:
            return False, str(error)

    # --- stopping --------------------------------------------------------------------------------

    def _stop_containers(self, stopping: list[Container], grace: float) -> None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL every process of each container."""
        running = [c for c in stopping if c.running and c.record]
        for container in running:
            assert container.record is not None
            runtime.signal_container(container.record, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(c.record and c.record.alive() for c in running):
            time.sleep(0.05)
        for container in running:
            assert container.record is not None
            runtime.kill_container(container.record)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(c.record and c.record.alive() for c in running):
            time.sleep(0.02)
        self._collect_exits(time.monotonic())

    def _terminate(self, pod: dict[str, Any], *, finalize: bool) -> None:
        grace = podspec.termination_grace(pod)
        every = [*self.init_containers.values(), *self.containers.values()]
        if any(c.running for c in every):
            self._event(pod, "Normal", "Killing", f"Stopping containers (grace period {grace:.0f}s)", once=False)
        self._stop_containers(every, grace)
        self._teardown()
        if finalize:
            kubeapi.finalize_pod_deletion(self.cluster, pod["metadata"]["namespace"], pod["metadata"]["name"],
                                          self.uid)
        log.info("pod %s: stopped and removed", self.label)

    # --- status and events ---------------------------------------------------------------------

    def _event(self, pod: dict[str, Any], kind: str, reason: str, message: str, *, once: bool = True) -> None:
        """Record an Event; the same one again only counts up (or, with `once`, is not repeated)."""
        key = (kind, reason, message)
        earlier = self.events.get(key)
        if earlier is not None and once:
            return
        try:
            if earlier is None:
                name = kubeapi.record_event(self.cluster, pod, self.node.name, kind, reason, message)
                if name:
                    self.events[key] = (name, 1)
            else:
                name, count = earlier
                kubeapi.repeat_event(self.cluster, pod["metadata"]["namespace"], name, count + 1)
                self.events[key] = (name, count + 1)
        except Exception:
            log.exception("pod %s: event %s", self.label, reason)

    def _report_unrunnable(self, pod: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        for reason, message in problems:
            self._event(pod, "Warning", reason, message)
        reason, message = problems[0]
        for container in [*self.init_containers.values(), *self.containers.values()]:
            container.waiting = (reason, message)
        self._report_status(pod)

    def _report_status(self, pod: dict[str, Any]) -> str:
        inits = list(self.init_containers.values())
        initialized = all(c.exited is not None and c.exited["exitCode"] == 0 for c in inits)
        init_failed = self.restart_policy == "Never" and any(
            c.exited is not None and c.exited["exitCode"] != 0 for c in inits)
        statuses = [c.status() for c in self.containers.values()]
        phase = "Failed" if init_failed else podspec.pod_phase(self.restart_policy, statuses, initialized)
        now = now_rfc3339()
        previous = (pod.get("status") or {}).get("conditions") or []
        gates = [gate["conditionType"] for gate in pod["spec"].get("readinessGates") or []]
        containers_ready = bool(statuses) and all(s["ready"] for s in statuses)
        conditions = podspec.pod_conditions(previous, now, sandbox_ready=self.runtime is not None,
                                            initialized=initialized, containers_ready=containers_ready,
                                            readiness_gates=gates)
        scheduled = next((c for c in previous if c.get("type") == "PodScheduled"), None)
        conditions.append(scheduled or {"type": "PodScheduled", "status": "True", "lastTransitionTime": now})
        status: dict[str, Any] = {
            "phase": phase, "conditions": conditions, "hostIP": self.node.underlay_ip,
            "hostIPs": [{"ip": self.node.underlay_ip}], "startTime": self.start_time,
            "containerStatuses": statuses,
        }
        if self.runtime is not None:
            status.update({"podIP": self.runtime.ip, "podIPs": [{"ip": self.runtime.ip}]})
        if inits:
            status["initContainerStatuses"] = [c.status() for c in inits]
        encoded = json.dumps(status, sort_keys=True, default=str)
        if encoded != self.last_status:
            kubeapi.patch_pod_status(self.cluster, pod["metadata"]["namespace"], pod["metadata"]["name"], status)
            self.last_status = encoded
        return phase

    def _next_wake(self, now: float) -> float | None:
        deadlines: list[float] = []
        for container in [*self.init_containers.values(), *self.containers.values()]:
            if container.running and container.process is None:
                deadlines.append(now + ADOPTED_POLL_INTERVAL)
            if not container.running and container.restart_at > now:
                deadlines.append(container.restart_at)
            deadlines.extend(p.next_at for p in container.probes.values() if container.running)
        if self.volumes is not None:
            deadlines.append(self.volumes_refreshed + VOLUME_REFRESH_INTERVAL)
            token_due = volumes.next_token_refresh(self.volumes)
            if token_due is not None:
                deadlines.append(now + max(0.0, token_due - time.time()))
        return max(0.0, min(deadlines) - now) if deadlines else None


class ClusterWatch(threading.Thread):
    """List, then watch, the pods bound to nodes of one cluster; relist when the watch expires."""

    def __init__(self, kubelet: Kubelet, cluster: ClusterRecord) -> None:
        super().__init__(name=f"watch {cluster.name}", daemon=True)
        self.kubelet = kubelet
        self.cluster = cluster

    def run(self) -> None:
        selector = "spec.nodeName!="
        while True:
            try:
                pods, version = kubeapi.list_pods(self.cluster, selector)
                self.kubelet.on_list(self.cluster, pods)
                while True:
                    for kind, pod in kubeapi.watch_pods(self.cluster, selector, version, WATCH_TIMEOUT_SECONDS):
                        version = str(pod["metadata"].get("resourceVersion") or version)
                        if kind != "BOOKMARK":
                            self.kubelet.on_event(self.cluster, kind, pod)
            except kubeapi.WatchExpired:
                continue
            except Exception as error:  # the apiserver restarts, or is not up yet: list again shortly
                log.warning("watch of pods on %s: %s", self.cluster.name, error)
                time.sleep(1.0)


class Kubelet:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state = LabState.load()
        self.workers: dict[str, PodWorker] = {}
        self.watches: dict[str, ClusterWatch] = {}
        self.unclaimed = {record.uid: record for record in runtime.all_runtimes()}  # adopted on first list

    def _node_of(self, cluster: ClusterRecord, pod: dict[str, Any]) -> NodeRecord | None:
        node = self.state.nodes.get(str(pod["spec"].get("nodeName") or ""))
        return node if node is not None and node.cluster == cluster.name else None

    def on_list(self, cluster: ClusterRecord, pods: list[dict[str, Any]]) -> None:
        listed = set()
        for pod in pods:
            if self._node_of(cluster, pod) is not None:
                listed.add(str(pod["metadata"]["uid"]))
                self.on_event(cluster, "ADDED", pod)
        with self.lock:
            stale = [w for uid, w in self.workers.items() if w.cluster.name == cluster.name and uid not in listed]
            orphans = [r for r in self.unclaimed.values() if r.cluster == cluster.name and r.uid not in listed]
            for record in orphans:
                del self.unclaimed[record.uid]
        for worker in stale:
            worker.mark_gone()
        for record in orphans:  # pods deleted while the kubelet was away
            log.info("removing the sandbox of %s: its pod is gone", record.key)
            runtime.destroy_sandbox(self.state.nodes.get(record.node), record)

    def on_event(self, cluster: ClusterRecord, kind: str, pod: dict[str, Any]) -> None:
        node = self._node_of(cluster, pod)
        if node is None:
            return
        uid = str(pod["metadata"]["uid"])
        with self.lock:
            worker = self.workers.get(uid)
            if worker is None and kind != "DELETED":
                worker = PodWorker(self, cluster, node, pod, self.unclaimed.pop(uid, None))
                self.workers[uid] = worker
                worker.start()
                return
        if worker is None:
            return
        if kind == "DELETED":
            worker.mark_gone()
        else:
            worker.update(pod)

    def worker_done(self, uid: str) -> None:
        with self.lock:
            self.workers.pop(uid, None)

    def _ensure_watches(self) -> None:
        for name, cluster in self.state.clusters.items():
            if name not in self.watches:
                self.watches[name] = ClusterWatch(self, cluster)
                self.watches[name].start()

    def beat(self, refresh_node_status: bool) -> None:
        self.state = LabState.load()
        self._ensure_watches()
        for node in self.state.nodes.values():
            cluster = self.state.clusters.get(node.cluster)
            if cluster is None:
                continue
            kubeapi.renew_lease(cluster, node.name)
            if refresh_node_status:
                kubeapi.update_node_status(cluster, node, ready=True)

    def run_forever(self) -> None:
        last_status = 0.0
        while True:
            started = time.monotonic()
            refresh = started - last_status >= NODE_STATUS_INTERVAL
            try:
                self.beat(refresh)
                if refresh:
                    last_status = started
            except Exception:  # keep beating: one failed round must not stop the heartbeat
                log.exception("heartbeat round failed")
            time.sleep(max(0.0, HEARTBEAT_INTERVAL - (time.monotonic() - started)))


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    Kubelet().run_forever()


if __name__ == "__main__":
    main()
