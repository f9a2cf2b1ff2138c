"""`helm install` really runs the product: the scheduler binds, the lab's kubelet runs project-image
pods with their ServiceAccount, probes, restarts and deletion, in the kubelet's cgroup layout."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from datapath import process_start_time
from datapath.cgroups import CgroupOwner, cgroup_id, resolve_cgroup_id
from lab import host, nodes, podspec, runtime
from lab.state import LAB_DIR
from lab.testing import Federation
from lab.toolchain import tool_path

CHART = Path(__file__).with_name("charts") / "workload-probe"
CLUSTER = "member-1"
RELEASE = "probe"
NAMESPACE = "workload-probe"


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout:.0f}s")
        time.sleep(0.2)


def helm(federation: Federation, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(federation.kubeconfig(CLUSTER))}
    return subprocess.run([str(tool_path("helm")), *args], capture_output=True, text=True, env=env, timeout=timeout)


def get(federation: Federation, *args: str, cluster: str = CLUSTER) -> Any:
    return json.loads(federation.kubectl(cluster, "get", *args, "-o", "json").stdout)


def pods(federation: Federation, namespace: str, selector: str) -> list[dict[str, Any]]:
    return list(get(federation, "pods", "-n", namespace, "-l", selector)["items"])


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def container_id(pod: dict[str, Any]) -> str:
    status = pod["status"]["containerStatuses"][0]
    assert status["containerID"].startswith("lab://"), status
    return str(status["containerID"]).removeprefix("lab://")


def sandbox(pod: dict[str, Any]) -> runtime.PodRuntime:
    return runtime.PodRuntime.load(runtime.PODS_DIR / pod["metadata"]["uid"] / "pod.json")


def main_process(pod: dict[str, Any]) -> runtime.ContainerRecord:
    record = next(iter(sandbox(pod).containers.values()))
    assert record.id == container_id(pod)
    return record


def apply(federation: Federation, namespace: str, *objects: dict[str, Any]) -> None:
    """Apply objects in a fresh namespace (one an earlier run left terminating is waited for first)."""
    federation.kubectl(CLUSTER, "delete", "namespace", namespace, "--ignore-not-found", "--timeout=60s")
    federation.kubectl(CLUSTER, "create", "namespace", namespace)
    federation.kubectl(CLUSTER, "apply", "-n", namespace, "-f", "-",
                       input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def bare_pod(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": podspec.project_image(), "command": command, **spec.pop("container", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"automountServiceAccountToken": False, "containers": [container], **spec}}


# ---------------------------------------------------------------------------------------------
# Scheduling
# ---------------------------------------------------------------------------------------------


def test_nodes_report_capacity_and_the_scheduler_honours_selectors_and_taints(federation: Federation) -> None:
    for node in get(federation, "nodes")["items"]:
        for resource in ("cpu", "memory", "pods"):
            assert node["status"]["allocatable"][resource] == node["status"]["capacity"][resource]
        assert node["status"]["allocatable"]["cpu"] == str(os.cpu_count())
    namespace = "lab-scheduling"
    federation.kubectl(CLUSTER, "taint", "node", "member-1-node-1", "lab.balancing.elf.io/test=yes:NoSchedule")
    try:
        pinned = {"kubernetes.io/hostname": "member-1-node-1"}
        toleration = {"key": "lab.balancing.elf.io/test", "operator": "Exists", "effect": "NoSchedule"}
        apply(federation, namespace,
              bare_pod("refused", ["sleep", "600"], nodeSelector=pinned),
              bare_pod("tolerated", ["sleep", "600"], nodeSelector=pinned, tolerations=[toleration]),
              bare_pod("elsewhere", ["sleep", "600"], nodeSelector={"kubernetes.io/hostname": "member-1-node-2"}))
        def placed() -> dict[str, str]:
            listed = get(federation, "pods", "-n", namespace)["items"]
            return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in listed if ready(p)}

        wait_for(lambda: len(placed()) == 2, what="two pods ready")
        assert placed() == {"tolerated": "member-1-node-1", "elsewhere": "member-1-node-2"}
        refused = get(federation, "pod", "-n", namespace, "refused")
        scheduled = next(c for c in refused["status"]["conditions"] if c["type"] == "PodScheduled")
        assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
        assert "untolerated taint" in scheduled["message"]
    finally:
        federation.kubectl(CLUSTER, "taint", "node", "member-1-node-1", "lab.balancing.elf.io/test-", check=False)
        federation.kubectl(CLUSTER, "delete", "namespace", namespace, "--wait=false", check=False)


# ---------------------------------------------------------------------------------------------
# The test chart: a Deployment, a DaemonSet and an intruder without RBAC
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def release(federation: Federation) -> Iterator[str]:
    installed = helm(federation, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace", "--wait",
                     "--timeout", "150s")
    assert installed.returncode == 0, installed.stderr
    yield RELEASE
    helm(federation, "uninstall", RELEASE, "-n", NAMESPACE, "--wait")
    federation.kubectl(CLUSTER, "delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_helm_install_runs_every_pod_on_the_right_node(federation: Federation, release: str) -> None:
    deployment = pods(federation, NAMESPACE, "component=deployment")
    daemonset = pods(federation, NAMESPACE, "component=daemonset")
    assert len(deployment) == 2 and len(daemonset) == len(federation.nodes(CLUSTER))
    assert all(pod["status"]["phase"] == "Running" and ready(pod) for pod in deployment + daemonset)
    assert {pod["spec"]["nodeName"] for pod in daemonset} == {node.name for node in federation.nodes(CLUSTER)}
    for pod in daemonset:  # hostNetwork: the node's address
        node = federation.node(pod["spec"]["nodeName"])
        assert pod["status"]["podIP"] == pod["status"]["hostIP"] == str(node.underlay_ip)
    for pod in deployment:
        node = federation.node(pod["spec"]["nodeName"])
        assert pod["status"]["hostIP"] == str(node.underlay_ip)
        assert podspec.image_repository(pod["spec"]["containers"][0]["image"]) == podspec.project_image_repository()
        assert ipaddress.IPv4Address(pod["status"]["podIP"]) in node.pod_cidr


def test_each_pod_writes_its_configmap_with_its_own_service_account(federation: Federation, release: str) -> None:
    written = {cm["data"]["pod"]: cm["data"] for cm in
               get(federation, "configmaps", "-n", NAMESPACE, "-l", f"workload-probe/release={release}")["items"]}
    for component in ("deployment", "daemonset"):
        for pod in pods(federation, NAMESPACE, f"component={component}"):
            data = written[pod["metadata"]["name"]]
            assert data["user"] == f"system:serviceaccount:{NAMESPACE}:{release}-{component}"
            assert (data["node"], data["podIP"], data["hostIP"]) == (
                pod["spec"]["nodeName"], pod["status"]["podIP"], pod["status"]["hostIP"])
    (intruder,) = pods(federation, NAMESPACE, "component=intruder")
    assert intruder["metadata"]["name"] not in written
    logs = subprocess.run([sys.executable, "-m", "balancing", "lab", "logs",
                           f"{CLUSTER}/{NAMESPACE}/{intruder['metadata']['name']}"], capture_output=True, text=True)
    assert logs.returncode == 0, logs.stderr
    assert f"as system:serviceaccount:{NAMESPACE}:{release}-no-rbac: 403 Forbidden" in logs.stdout


def test_the_token_is_a_token_request_token_bound_to_the_pod(federation: Federation, release: str) -> None:
    pod = pods(federation, NAMESPACE, "component=deployment")[0]
    key = f"{CLUSTER}/{NAMESPACE}/{pod['metadata']['name']}"
    shown = federation.exec(key, ["sh", "-c", "cd /var/run/secrets/kubernetes.io/serviceaccount && cat token && "
                                              "echo && cat namespace && echo && cat ca.crt && env"])
    token, namespace, rest = shown.stdout.split("\n", 2)
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["kubernetes.io"]["pod"]["uid"] == pod["metadata"]["uid"]
    assert payload["sub"] == f"system:serviceaccount:{NAMESPACE}:{release}-deployment"
    assert namespace == NAMESPACE
    assert (LAB_DIR / "pki" / "ca.crt").read_text().strip() in rest
    assert "KUBERNETES_SERVICE_HOST=172.30.0.1\n" in rest and "KUBERNETES_SERVICE_PORT=6444\n" in rest


def test_container_cgroups_follow_the_kubelet_layout_and_resolve_to_their_pods(federation: Federation,
                                                                               release: str) -> None:
    every = pods(federation, NAMESPACE, f"app={release}")
    for pod in every:
        node = federation.node(pod["spec"]["nodeName"])
        record = main_process(pod)
        uid, qos = pod["metadata"]["uid"], pod["status"]["qosClass"].lower()
        expected = node.cgroup / "kubepods" / qos / f"pod{uid}" / container_id(pod)
        assert Path(record.cgroup) == expected
        lines = Path(f"/proc/{record.pid}/cgroup").read_text().splitlines()
        assert f"0::/{expected.relative_to(host.CGROUP2_ROOT)}" in lines
        owner = resolve_cgroup_id(node.cgroup, cgroup_id(expected))
        assert owner == CgroupOwner(pod_uid=uid, qos=qos, container_id=container_id(pod))
    # inside the agent-like DaemonSet pod, /sys/fs/cgroup is the node's subtree: the same ids resolve there
    for agent in pods(federation, NAMESPACE, "component=daemonset"):
        node = federation.node(agent["spec"]["nodeName"])
        neighbours = [p for p in every if p["spec"]["nodeName"] == node.name]
        ids = [cgroup_id(Path(main_process(p).cgroup)) for p in neighbours]
        script = ("import json,sys; from pathlib import Path; from datapath.cgroups import resolve_cgroup_id;"
                  "print(json.dumps([[resolve_cgroup_id(Path(root), int(i)).container_id for i in sys.argv[1:]]"
                  " for root in ('/sys/fs/cgroup', '/sys/fs/cgroup/unified')]))")
        key = f"{CLUSTER}/{NAMESPACE}/{agent['metadata']['name']}"
        shown = federation.exec(key, ["python3", "-c", script, *map(str, ids)])
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout) == [[container_id(p) for p in neighbours]] * 2


def test_a_node_host_path_is_the_node_s_own(federation: Federation, release: str) -> None:
    agents = {p["spec"]["nodeName"]: p for p in pods(federation, NAMESPACE, "component=daemonset")}
    first, second = sorted(agents)
    key = f"{CLUSTER}/{NAMESPACE}/{agents[first]['metadata']['name']}"
    made = federation.exec(key, ["sh", "-c", "mkdir -p /sys/fs/bpf/probe-pin && echo k > /var/lib/balancing/probe &&"
                                             " echo r > /run/balancing/probe"])
    assert made.returncode == 0, made.stderr
    try:
        node = federation.node(first)
        assert (node.bpffs / "probe-pin").is_dir()
        assert (node.state_dir / "probe").read_text() == "k\n"
        assert (nodes.node_root(first) / "run" / "balancing" / "probe").read_text() == "r\n"
        other = f"{CLUSTER}/{NAMESPACE}/{agents[second]['metadata']['name']}"
        looked = federation.exec(other, ["ls", "/sys/fs/bpf", "/var/lib/balancing", "/run/balancing"])
        assert "probe" not in looked.stdout
        assert not Path("/var/lib/balancing/probe").exists() and not Path("/run/balancing/probe").exists()
    finally:
        (federation.node(first).bpffs / "probe-pin").rmdir()
        (federation.node(first).state_dir / "probe").unlink()
        (nodes.node_root(first) / "run" / "balancing" / "probe").unlink()


def test_a_killed_process_restarts_with_a_higher_restart_count(federation: Federation, release: str) -> None:
    pod = pods(federation, NAMESPACE, "component=deployment")[0]
    name, before = pod["metadata"]["name"], main_process(pod)
    os.kill(before.pid, signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        current = get(federation, "pod", "-n", NAMESPACE, name)
        status = current["status"]["containerStatuses"][0]
        return current if status["restartCount"] == 1 and "running" in status["state"] and ready(current) else None

    current = wait_for(restarted, what="restart")
    status = current["status"]["containerStatuses"][0]
    assert status["lastState"]["terminated"]["exitCode"] == 137
    assert container_id(current) != before.id
    assert main_process(current).alive() and not before.alive()
    assert not Path(before.cgroup).exists()  # each start has its own container cgroup


def test_deleting_a_pod_stops_its_process_within_the_grace_period(federation: Federation, release: str) -> None:
    pod = pods(federation, NAMESPACE, "component=deployment")[0]
    record, sandbox_of = main_process(pod), sandbox(pod)
    started = time.monotonic()
    federation.kubectl(CLUSTER, "delete", "pod", "-n", NAMESPACE, pod["metadata"]["name"], "--wait=false")
    wait_for(lambda: not record.alive(), timeout=10, what="the process stops")
    assert time.monotonic() - started < 5  # it exits on SIGTERM, well within the 5 s grace
    wait_for(lambda: not Path(sandbox_of.cgroup).exists() and not host.netns_exists(sandbox_of.netns),
             timeout=10, what="cgroup and netns removed")
    wait_for(lambda: len([p for p in pods(federation, NAMESPACE, "component=deployment") if ready(p)]) == 2,
             what="the ReplicaSet's replacement")


def test_scaling_the_deployment_to_zero_stops_both_processes(federation: Federation, release: str) -> None:
    records = [main_process(pod) for pod in pods(federation, NAMESPACE, "component=deployment")]
    assert len(records) == 2 and all(r.alive() for r in records)
    federation.kubectl(CLUSTER, "scale", "deployment", "-n", NAMESPACE, release, "--replicas=0")
    wait_for(lambda: not any(r.alive() for r in records), timeout=20, what="both processes stop")
    wait_for(lambda: pods(federation, NAMESPACE, "component=deployment") == [], timeout=20, what="pods gone")
    federation.kubectl(CLUSTER, "scale", "deployment", "-n", NAMESPACE, release, "--replicas=2")


def test_helm_uninstall_removes_every_process(federation: Federation, release: str) -> None:
    wait_for(lambda: len([p for p in pods(federation, NAMESPACE, f"app={release}") if ready(p)]) == 5,
             what="all five pods ready")
    sandboxes = [sandbox(pod) for pod in pods(federation, NAMESPACE, f"app={release}")]
    records = [record for s in sandboxes for record in s.containers.values()]
    assert records and all(r.alive() for r in records)
    uninstalled = helm(federation, "uninstall", release, "-n", NAMESPACE, "--wait")
    assert uninstalled.returncode == 0, uninstalled.stderr
    wait_for(lambda: not any(r.alive() for r in records), timeout=30, what="every process stops")
    wait_for(lambda: not any(Path(s.cgroup).exists() or s.directory.exists() for s in sandboxes), timeout=30,
             what="cgroups and pod directories removed")
    assert not any(host.netns_exists(s.netns) for s in sandboxes if not s.host_network)


# ---------------------------------------------------------------------------------------------
# Probes, unknown images, a restarted kubelet
# ---------------------------------------------------------------------------------------------


def endpoint_readiness(federation: Federation, namespace: str, service: str) -> dict[str, bool]:
    slices = get(federation, "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}")
    return {address: bool(endpoint["conditions"].get("ready"))
            for item in slices["items"] for endpoint in item.get("endpoints") or []
            for address in endpoint["addresses"]}


def test_a_failing_readiness_probe_keeps_the_pod_out_of_its_endpointslice(federation: Federation) -> None:
    namespace = "lab-probes"
    echo = ["python3", "-m", "lab.echo_server", "--name", "x", "--port", "8080"]
    labels = {"app": "web"}
    good = bare_pod("good", echo, container={"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}})
    bad = bare_pod("bad", echo, container={"readinessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1,
                                                                 "failureThreshold": 1}})
    for pod in (good, bad):
        pod["metadata"]["labels"] = labels
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}}
    try:
        apply(federation, namespace, good, bad, service)
        good_ip = wait_for(lambda: (p := get(federation, "pod", "-n", namespace, "good")) and ready(p)
                           and p["status"]["podIP"], what="the good pod ready")
        wait_for(lambda: endpoint_readiness(federation, namespace, "web").get(good_ip), what="good pod endpoint")
        time.sleep(3)  # several failed probes
        failing = get(federation, "pod", "-n", namespace, "bad")
        assert failing["status"]["phase"] == "Running" and not ready(failing)
        assert failing["status"]["containerStatuses"][0]["ready"] is False
        assert not endpoint_readiness(federation, namespace, "web").get(failing["status"]["podIP"], False)
        events = get(federation, "events", "-n", namespace, "--field-selector", "involvedObject.name=bad")["items"]
        assert any(e["reason"] == "Unhealthy" and "Readiness probe failed" in e["message"] for e in events)
    finally:
        federation.kubectl(CLUSTER, "delete", "namespace", namespace, "--wait=false", check=False)


def test_a_failing_liveness_probe_restarts_the_container(federation: Federation) -> None:
    namespace = "lab-liveness"
    pod = bare_pod("sick", ["sleep", "600"], terminationGracePeriodSeconds=1,
                   container={"livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1,
                                                "failureThreshold": 2}})
    try:
        apply(federation, namespace, pod)
        wait_for(lambda: get(federation, "pod", "-n", namespace, "sick")["status"]
                 .get("containerStatuses", [{}])[0].get("restartCount", 0) >= 1, timeout=30, what="a restart")
    finally:
        federation.kubectl(CLUSTER, "delete", "namespace", namespace, "--wait=false", check=False)


def test_a_pod_that_ignores_sigterm_is_killed_after_its_grace_period(federation: Federation) -> None:
    namespace = "lab-grace"
    pod = bare_pod("stubborn", ["sh", "-c", "trap '' TERM; sleep 600 & wait; wait"], terminationGracePeriodSeconds=2)
    try:
        apply(federation, namespace, pod)
        running = wait_for(lambda: (p := get(federation, "pod", "-n", namespace, "stubborn")) and ready(p) and p)
        record = main_process(running)
        children = wait_for(lambda: (found := runtime.container_processes(record)) and len(found) == 2 and found,
                            timeout=5, what="sh and its sleep")
        started = time.monotonic()
        federation.kubectl(CLUSTER, "delete", "pod", "-n", namespace, "stubborn", "--wait=false")
        time.sleep(1.0)
        assert record.alive(), "killed before its grace period ended"
        wait_for(lambda: not record.alive(), timeout=10, what="killed after the grace period")
        assert 1.9 < time.monotonic() - started < 6
        wait_for(lambda: all(process_start_time(pid) is None for pid in children), timeout=5, what="children killed")
    finally:
        federation.kubectl(CLUSTER, "delete", "namespace", namespace, "--wait=false", check=False)


def test_a_pod_of_another_image_stays_pending_with_a_warning_event(federation: Federation) -> None:
    namespace = "lab-images"
    pod = bare_pod("nginx", [])
    pod["spec"]["containers"][0]["image"] = "docker.io/library/nginx:1.27"
    del pod["spec"]["containers"][0]["command"]
    try:
        apply(federation, namespace, pod)

        def warned() -> list[dict[str, Any]]:
            events = get(federation, "events", "-n", namespace, "--field-selector", "involvedObject.name=nginx")
            return [e for e in events["items"] if e["type"] == "Warning" and e["reason"] == "ErrImageNeverPull"]

        (event,) = wait_for(warned, what="the Warning event")
        assert "the lab runs only the project image ghcr.io/balancing-federation/balancing" in event["message"]
        assert "'docker.io/library/nginx:1.27'" in event["message"]
        time.sleep(1)
        current = get(federation, "pod", "-n", namespace, "nginx")
        assert current["status"]["phase"] == "Pending"
        assert current["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    finally:
        federation.kubectl(CLUSTER, "delete", "namespace", namespace, "--wait=false", check=False)


def test_containers_that_cannot_start_say_why(federation: Federation) -> None:
    namespace = "lab-start-errors"
    missing_command = bare_pod("no-command", ["no-such-command"], restartPolicy="Never")
    missing_config = bare_pod("no-config", ["sleep", "600"], container={"env": [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}]})
    try:
        apply(federation, namespace, missing_command, missing_config)

        def state(name: str) -> dict[str, Any]:
            statuses = get(federation, "pod", "-n", namespace, name)["status"].get("containerStatuses") or [{}]
            return dict(statuses[0].get("state") or {})

        terminated = wait_for(lambda: state("no-command").get("terminated"), what="the start error")
        assert (terminated["reason"], terminated["exitCode"]) == ("StartError", 128)
        assert "exec 'no-such-command'" in terminated["message"]
        assert get(federation, "pod", "-n", namespace, "no-command")["status"]["phase"] == "Failed"
        waiting = wait_for(lambda: state("no-config").get("waiting", {}).get("reason") == "CreateContainerConfigError"
                           and state("no-config")["waiting"], what="the config error")
        assert "env MODE: configMap 'settings' not found" in waiting["message"]
        federation.kubectl(CLUSTER, "create", "configmap", "settings", "-n", namespace, "--from-literal=mode=fast")
        wait_for(lambda: "running" in state("no-config"), timeout=30, what="started once the ConfigMap exists")
    finally:
        federation.kubectl(CLUSTER, "delete", "namespace", namespace, "--wait=false", check=False)


def test_mount_points_never_touch_the_machine(federation: Federation) -> None:
    namespace = "lab-mounts"
    new_dirs = [Path("/var/lib/lab-mount-test"), Path("/lab-mount-test")]
    assert not any(path.exists() for path in new_dirs)
    pod = bare_pod("mounts", ["sleep", "600"], terminationGracePeriodSeconds=1,
                   volumes=[{"name": "scratch", "emptyDir": {}}],
                   container={"volumeMounts": [{"name": "scratch", "mountPath": "/var/lib/lab-mount-test/data"},
                                               {"name": "scratch", "mountPath": "/lab-mount-test/top"}]})
    try:
        apply(federation, namespace, pod)
        wait_for(lambda: ready(get(federation, "pod", "-n", namespace, "mounts")), what="the pod ready")
        key = f"{CLUSTER}/{namespace}/mounts"
        shown = federation.exec(key, ["sh", "-c", "touch /var/lib/lab-mount-test/data/x && ls /lab-mount-test/top "
                                                  "&& ls /var/lib | grep -c dpkg && cat /proc/self/cgroup"])
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.split()[:2] == ["x", "1"]  # one emptyDir at both; /var/lib keeps its entries
        assert not any(path.exists() for path in new_dirs)
    finally:
        federation.kubectl(CLUSTER, "delete", "namespace", namespace, "--wait=false", check=False)


def test_a_restarted_kubelet_adopts_the_running_containers(federation: Federation) -> None:
    namespace = "lab-adopt"
    try:
        apply(federation, namespace, bare_pod("steady", ["sleep", "600"], terminationGracePeriodSeconds=1))
        running = wait_for(lambda: (p := get(federation, "pod", "-n", namespace, "steady")) and ready(p) and p)
        record = main_process(running)
        (kubelet,) = [d for d in federation.state.daemons if d.role == "kubelet"]
        os.kill(kubelet.pid, signal.SIGKILL)
        wait_for(lambda: not kubelet.alive(), what="the kubelet is gone")
        Federation.up(2, 2)  # starts a new kubelet
        time.sleep(2)
        current = get(federation, "pod", "-n", namespace, "steady")
        assert record.alive() and ready(current) and container_id(current) == record.id
        assert current["status"]["containerStatuses"][0]["restartCount"] == 0
        federation.kubectl(CLUSTER, "delete", "pod", "-n", namespace, "steady", "--wait=false")
        wait_for(lambda: not record.alive(), timeout=15, what="the adopted container stops on deletion")
    finally:
        federation.kubectl(CLUSTER, "delete", "namespace", namespace, "--wait=false", check=False)


def test_lab_up_makes_the_product_namespace(federation: Federation) -> None:
    assert get(federation, "namespace", "balancing-system", cluster="member-2")["status"]["phase"] == "Active"


def test_helm_values_and_logs_verbs(federation: Federation) -> None:
    def balancing(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "balancing", "lab", *args], capture_output=True, text=True)

    assert yaml.safe_load(balancing("helm-values", "hub").stdout) == {
        "members": [{"name": "member-1"}, {"name": "member-2"}]}
    assert yaml.safe_load(balancing("helm-values", "member-2").stdout) == {"clusterName": "member-2"}
    unknown = balancing("helm-values", "member-9")
    assert unknown.returncode == 2 and "member-9" in unknown.stderr
    missing = balancing("logs", f"{CLUSTER}/nowhere/nothing")
    assert missing.returncode == 2 and "has no logs" in missing.stderr
