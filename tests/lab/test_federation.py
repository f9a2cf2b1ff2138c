"""The lab federation on real control planes: apiservers, CRDs, nodes, pods, EndpointSlices."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lab import controlplane
from lab.testing import Federation

CLUSTERS = ("hub", "member-1", "member-2")


def _wait_for(predicate: object, timeout: float = 60.0, interval: float = 0.5) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_every_apiserver_is_ready_and_has_the_crds(federation: Federation, cluster: str) -> None:
    assert controlplane.readyz(cluster)
    version = json.loads(federation.kubectl(cluster, "version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.35.4"
    crds = federation.kubectl(cluster, "get", "crd", "-o", "name").stdout.split()
    assert "customresourcedefinition.apiextensions.k8s.io/balancingpolicies.balancing.elf.io" in crds
    assert "customresourcedefinition.apiextensions.k8s.io/localredirectpolicies.balancing.elf.io" in crds


def test_nodes_are_registered_ready_with_pod_cidrs_and_leases(federation: Federation) -> None:
    nodes = json.loads(federation.kubectl("member-1", "get", "nodes", "-o", "json").stdout)["items"]
    by_name = {node["metadata"]["name"]: node for node in nodes}
    assert set(by_name) == {"member-1-node-1", "member-1-node-2"}
    for name, node in by_name.items():
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", name
        assert node["spec"]["podCIDR"] == str(federation.node(name).pod_cidr)
        internal = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert internal == [str(federation.node(name).underlay_ip)]
    leases = federation.kubectl("member-1", "get", "lease", "-n", "kube-node-lease", "-o", "name").stdout.split()
    assert "lease.coordination.k8s.io/member-1-node-1" in leases
    hub_nodes = federation.kubectl("hub", "get", "nodes", "-o", "name").stdout.split()
    assert hub_nodes == ["node/hub-node-1"]


def test_ready_lab_pods_appear_in_an_endpointslice_made_by_the_controller_manager(federation: Federation) -> None:
    federation.kubectl("member-1", "create", "namespace", "lab-eps", check=False)
    first = federation.pod("member-1", "lab-eps", "web-a", node="member-1-node-1", labels={"app": "web"})
    second = federation.pod("member-1", "lab-eps", "web-b", node="member-1-node-2", labels={"app": "web"})
    federation.kubectl("member-1", "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "lab-eps"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))

    def ready_addresses() -> set[str]:
        slices = json.loads(federation.kubectl(
            "member-1", "get", "endpointslices", "-n", "lab-eps", "-l", "kubernetes.io/service-name=web", "-o", "json"
        ).stdout)["items"]
        return {
            address
            for endpoint_slice in slices
            if endpoint_slice["metadata"]["labels"].get("endpointslice.kubernetes.io/managed-by")
            == "endpointslice-controller.k8s.io"
            for endpoint in endpoint_slice.get("endpoints") or []
            if endpoint["conditions"].get("ready")
            for address in endpoint["addresses"]
        }

    _wait_for(lambda: ready_addresses() == {str(first.ip), str(second.ip)})

    # A pod whose process dies goes NotReady (the lab's kubelet stand-in notices) and leaves the ready set.
    process = federation.state.pods[second.key].process
    assert process is not None
    os.kill(process.pid, signal.SIGKILL)
    _wait_for(lambda: ready_addresses() == {str(first.ip)})
    federation.remove_pod("member-1", "lab-eps", "web-b")


def test_a_pod_on_one_node_reaches_a_pod_on_another_node_of_the_same_cluster(federation: Federation) -> None:
    client = federation.pod("member-2", "default", "client", node="member-2-node-1")
    server = federation.pod("member-2", "default", "server", node="member-2-node-2", port=9090)
    probe = (
        "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5);"
        "s.sendall(b'ping\\n'); print(s.recv(100).decode().splitlines()[0])"
    )
    result = federation.exec(client.key, [sys.executable, "-c", probe, str(server.ip), "9090"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "server"
    # the client process ran in the pod's cgroup, under its node's cgroup subtree
    assert client.cgroup.is_relative_to(federation.node("member-2-node-1").cgroup)
    udp_probe = (
        "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5);"
        "s.sendto(b'q', (sys.argv[1], int(sys.argv[2]))); print(s.recv(100).decode().strip())"
    )
    result = federation.exec(client.key, [sys.executable, "-c", udp_probe, str(server.ip), "9090"])
    assert result.stdout.strip() == "server", result.stderr


def test_host_port_reaches_the_pod_through_its_node_address(federation: Federation) -> None:
    federation.pod("member-2", "default", "hostport", node="member-2-node-2", port=8081, host_port=20080)
    node_ip = federation.node("member-2-node-2").underlay_ip
    probe = "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())"
    result = federation.exec("member-2-node-1", [sys.executable, "-c", probe, f"http://{node_ip}:20080/"])
    assert result.stdout.strip() == "hostport", result.stderr


def test_cli_verbs_status_kubeconfig_and_exec(federation: Federation) -> None:
    def balancing(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "balancing", *args], capture_output=True, text=True, timeout=60)

    status = balancing("lab", "status")
    assert status.returncode == 0
    assert "member-2" in status.stdout and "member-1-node-2" in status.stdout
    assert balancing("lab", "kubeconfig", "member-1").stdout.strip() == str(federation.kubeconfig("member-1"))
    unknown = balancing("lab", "kubeconfig", "member-9")
    assert unknown.returncode == 2 and "member-9" in unknown.stderr
    shown = balancing("lab", "exec", "member-1-node-1", "--", "ip", "-4", "-br", "addr", "show", "eth0")
    assert str(federation.node("member-1-node-1").underlay_ip) in shown.stdout
    # `up` is idempotent: a second call with the same shape changes nothing and keeps the same apiserver
    before = federation.state.clusters["hub"].processes[1].pid
    Federation.up(2, 2)
    assert federation.state.clusters["hub"].processes[1].pid == before


def test_a_pod_removed_and_added_again_under_the_same_name_comes_back(federation: Federation) -> None:
    probe = (
        "import socket,sys; s=socket.create_connection((sys.argv[1], 8080), timeout=5);"
        "s.sendall(b'x'); print(s.recv(100).decode().splitlines()[0])"
    )
    for _ in range(2):
        pod = federation.pod("member-1", "default", "again", node="member-1-node-2")
        result = federation.exec("member-1-node-1", [sys.executable, "-c", probe, str(pod.ip)])
        assert result.stdout.strip() == "again", result.stderr
        federation.remove_pod("member-1", "default", "again")
