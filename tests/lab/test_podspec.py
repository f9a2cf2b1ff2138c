"""What the lab's kubelet makes of a Pod: tables over the pure functions in lab/podspec.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab import podspec
from lab.podspec import NodePaths, PodContext, PodSpecError

UID = "0f3c6c2e-8f0a-4b8e-9b1a-2d4c5e6f7a8b"
NODE = NodePaths(bpffs=Path("/sys/fs/bpf/balancing-lab/n1"), cgroup=Path("/cg/nodes/n1"),
                 state=Path("/run/lab/nodes/n1"), root=Path("/run/lab/node-root/n1"))
CONTEXT = PodContext(pod_ip="10.101.1.5", host_ip="172.30.1.11", allocatable={"cpu": "2", "memory": "8Gi"})


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-1", "namespace": "shop", "uid": UID, "labels": {"app": "web"},
                         "annotations": {"team": "a"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": podspec.project_image()}], **spec}}


@pytest.mark.parametrize(("reference", "repository"), [
    ("ghcr.io/balancing-federation/balancing", "ghcr.io/balancing-federation/balancing"),
    ("ghcr.io/balancing-federation/balancing:0.1.0", "ghcr.io/balancing-federation/balancing"),
    ("ghcr.io/balancing-federation/balancing@sha256:abc", "ghcr.io/balancing-federation/balancing"),
    ("ghcr.io/balancing-federation/balancing:0.1@sha256:abc", "ghcr.io/balancing-federation/balancing"),
    ("localhost:5000/balancing", "localhost:5000/balancing"),
    ("localhost:5000/balancing:1", "localhost:5000/balancing"),
    ("nginx", "nginx"),
])
def test_image_repository_ignores_tag_and_digest(reference: str, repository: str) -> None:
    assert podspec.image_repository(reference) == repository


def test_the_project_image_comes_from_the_member_chart() -> None:
    assert podspec.project_image_repository() == "ghcr.io/balancing-federation/balancing"
    assert podspec.unrunnable_image_message(podspec.project_image()) is None
    assert podspec.unrunnable_image_message("ghcr.io/balancing-federation/balancing@sha256:0") is None
    message = podspec.unrunnable_image_message("nginx:1.27")
    assert message and "only the project image" in message and "'nginx:1.27'" in message


def test_unsupported_names_each_image_and_volume() -> None:
    bad = pod(volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "x"}}, {"name": "ok", "emptyDir": {}}],
              initContainers=[{"name": "init", "image": "busybox"}])
    problems = podspec.unsupported(bad)
    assert [reason for reason, _ in problems] == ["ErrImageNeverPull", "FailedMount"]
    assert "container init" in problems[0][1] and "volume data: type persistentVolumeClaim" in problems[1][1]
    assert podspec.unsupported(pod()) == []


@pytest.mark.parametrize(("resources", "qos"), [
    ({}, "besteffort"),
    ({"requests": {"cpu": "100m"}}, "burstable"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, "guaranteed"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}, "burstable"),
    ({"limits": {"cpu": "1"}}, "burstable"),
])
def test_qos_class_and_cgroup_follow_the_kubelet(resources: dict[str, Any], qos: str) -> None:
    subject = pod(containers=[{"name": "c", "image": "x", "resources": resources}])
    assert podspec.qos_class(subject) == qos
    parent = "kubepods" if qos == "guaranteed" else f"kubepods/{qos}"
    assert podspec.pod_cgroup(Path("/n"), subject) == Path(f"/n/{parent}/pod{UID}")
    subject["status"] = {"qosClass": "Guaranteed"}  # the apiserver's word wins
    assert podspec.qos_class(subject) == "guaranteed"


@pytest.mark.parametrize(("text", "expanded"), [
    ("$(A)-$(B)", "1-2"),
    ("$(MISSING)", "$(MISSING)"),
    ("$$(A)", "$(A)"),
    ("cost $5", "cost $5"),
    ("$(A", "$(A"),
    ("x$", "x$"),
    ("$$$(A)", "$1"),
])
def test_dollar_expansion_follows_kubernetes(text: str, expanded: str) -> None:
    assert podspec.expand(text, {"A": "1", "B": "2"}) == expanded


def test_container_env_resolves_fields_resources_and_references_in_order() -> None:
    container = {
        "name": "c", "image": "x", "resources": {"limits": {"memory": "256Mi"}},
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "MAYBE", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
            {"name": "URL", "value": "http://$(POD_IP):$(KUBERNETES_SERVICE_PORT)/$(CFG_mode)"},
        ],
    }
    objects = {("configMap", "settings"): {"mode": "fast"}, ("secret", "creds"): {"password": "s3cret"}}
    env = podspec.container_env(pod(), container, CONTEXT, lambda kind, name: objects.get((kind, name)),
                                {"KUBERNETES_SERVICE_PORT": "6444"})
    assert env == {
        "KUBERNETES_SERVICE_PORT": "6444", "CFG_mode": "fast", "NODE": "n1", "POD": "web-1", "NS": "shop",
        "HOST_IP": "172.30.1.11", "POD_IP": "10.101.1.5", "APP": "web", "MEM_MI": "256", "CPUS": "2",
        "PASSWORD": "s3cret", "URL": "http://10.101.1.5:6444/fast",
    }


@pytest.mark.parametrize(("variable", "message"), [
    ({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}},
     "env X: configMap 'gone' not found"),
    ({"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}, "env X: key 'k' in secret 'creds'"),
    ({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.schedulerName"}}}, "fieldRef 'spec.schedulerName'"),
])
def test_container_env_errors_name_the_variable(variable: dict[str, Any], message: str) -> None:
    container = {"name": "c", "env": [variable]}
    with pytest.raises(PodSpecError, match=message) as raised:
        podspec.container_env(pod(), container, CONTEXT, lambda kind, name: {"a": "b"} if name == "creds" else None, {})
    assert raised.value.reason == "CreateContainerConfigError"


@pytest.mark.parametrize(("container", "argv"), [
    ({"command": ["python3", "-m", "x"], "args": ["--node", "$(NODE)"]}, ["python3", "-m", "x", "--node", "n1"]),
    ({"args": ["member", "agent"]}, [*podspec.IMAGE_ENTRYPOINT, "member", "agent"]),
    ({}, list(podspec.IMAGE_ENTRYPOINT)),
])
def test_container_argv_uses_the_image_entrypoint_without_a_command(container: dict[str, Any],
                                                                     argv: list[str]) -> None:
    assert podspec.container_argv(container, {"NODE": "n1"}) == argv


@pytest.mark.parametrize(("host_path", "machine_path"), [
    ("/sys/fs/bpf", NODE.bpffs),
    ("/sys/fs/bpf/balancing/maps", NODE.bpffs / "balancing/maps"),
    ("/sys/fs/cgroup", NODE.cgroup),
    ("/sys/fs/cgroup/unified", NODE.cgroup),
    ("/sys/fs/cgroup/kubepods", NODE.cgroup / "kubepods"),
    ("/var/lib/balancing", NODE.state),
    ("/var/lib/balancing/../balancing/tunnel", NODE.state / "tunnel"),
    ("/run/balancing", NODE.root / "run/balancing"),
    ("/var/run/wireguard", NODE.root / "var/run/wireguard"),
    ("/etc/balancing", NODE.root / "etc/balancing"),
    ("/proc", Path("/proc")),
    ("/dev/net/tun", Path("/dev/net/tun")),
    ("/sys/kernel/btf", Path("/sys/kernel/btf")),
    ("/lib/modules", Path("/lib/modules")),
    ("/sys/fs/bpfx", Path("/sys/fs/bpfx")),
])
def test_a_host_path_refers_to_the_node(host_path: str, machine_path: Path) -> None:
    assert podspec.node_host_path(host_path, NODE) == machine_path


def test_a_relative_host_path_is_refused() -> None:
    with pytest.raises(PodSpecError, match="hostPath 'var/x' is not absolute"):
        podspec.node_host_path("var/x", NODE)


@pytest.mark.parametrize(("previous", "ran_for", "wait"), [
    (None, 1.0, 0.0),  # the first restart is immediate
    (0.0, 1.0, 10.0),
    (10.0, 1.0, 20.0),
    (160.0, 1.0, 300.0),
    (300.0, 1.0, 300.0),
    (300.0, 600.0, 0.0),  # ran ten minutes: starts over
])
def test_restart_backoff(previous: float | None, ran_for: float, wait: float) -> None:
    assert podspec.next_backoff(previous, ran_for) == wait


@pytest.mark.parametrize(("policy", "code", "restart"), [
    ("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False), ("OnFailure", 2, True),
    ("Never", 1, False),
])
def test_should_restart(policy: str, code: int, restart: bool) -> None:
    assert podspec.should_restart(policy, code) is restart


RUNNING: dict[str, Any] = {"state": {"running": {}}}
WAITING = {"state": {"waiting": {"reason": "ContainerCreating"}}}
OK = {"state": {"terminated": {"exitCode": 0}}}
FAILED = {"state": {"terminated": {"exitCode": 1}}}
BACKOFF = {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}


@pytest.mark.parametrize(("policy", "statuses", "phase"), [
    ("Always", [WAITING], "Pending"),
    ("Always", [RUNNING, WAITING], "Pending"),
    ("Always", [RUNNING, OK], "Running"),
    ("Always", [BACKOFF], "Running"),
    ("Always", [OK], "Running"),
    ("Never", [OK, OK], "Succeeded"),
    ("Never", [OK, FAILED], "Failed"),
    ("OnFailure", [OK, FAILED], "Running"),
    ("OnFailure", [OK], "Succeeded"),
    ("Never", [], "Pending"),
])
def test_pod_phase_follows_the_kubelet(policy: str, statuses: list[dict[str, Any]], phase: str) -> None:
    assert podspec.pod_phase(policy, statuses) == phase


def test_pod_phase_is_pending_until_initialized() -> None:
    assert podspec.pod_phase("Always", [WAITING], initialized=False) == "Pending"


def test_conditions_keep_their_transition_time_while_the_status_holds() -> None:
    first = podspec.pod_conditions([], "t1", sandbox_ready=True, initialized=True, containers_ready=False)
    second = podspec.pod_conditions(first, "t2", sandbox_ready=True, initialized=True, containers_ready=True)
    by_type = {c["type"]: c for c in second}
    assert by_type["Initialized"]["lastTransitionTime"] == "t1"
    assert by_type["Ready"] == {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": "t2"}
    gated = podspec.pod_conditions(second, "t3", sandbox_ready=True, initialized=True, containers_ready=True,
                                   readiness_gates=["example.com/lb"])
    assert {c["type"]: c["status"] for c in gated}["Ready"] == "False"


@pytest.mark.parametrize(("issued", "expiration", "now", "due"), [
    (0.0, 3607, 2885.0, False),
    (0.0, 3607, 2886.0, True),  # 80 % of 3607 s
    (0.0, 10 * 24 * 3600, 24 * 3600.0, True),  # a day old
])
def test_token_refresh_follows_the_kubelet(issued: float, expiration: int, now: float, due: bool) -> None:
    assert podspec.token_refresh_due(issued, expiration, now) is due


def test_termination_grace_prefers_the_deletion_s_own() -> None:
    subject = pod(terminationGracePeriodSeconds=5)
    assert podspec.termination_grace(pod()) == 30
    assert podspec.termination_grace(subject) == 5
    subject["metadata"]["deletionGracePeriodSeconds"] = 0
    assert podspec.termination_grace(subject) == 0


def test_named_probe_port() -> None:
    container = {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}
    assert podspec.named_port(container, "http") == 8080
    assert podspec.named_port(container, 9090) == 9090
    with pytest.raises(PodSpecError, match="no port named 'grpc'"):
        podspec.named_port(container, "grpc")
