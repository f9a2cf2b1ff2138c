"""The operator's verbs end to end: build, apply, explain, dump, detach, and their refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from datapath.lb import load_state, parse_state
from lab import host
from tests.datapath.conftest import BACKEND_PORT, BACKENDS, VIP, Topology, frontend

REPO = Path(__file__).resolve().parents[2]


def balancing(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "balancing", "datapath", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_apply_explain_dump_detach(topology: Topology, tmp_path: Path) -> None:
    state_file = tmp_path / "node.yaml"
    state_file.write_text(
        yaml.safe_dump(
            {
                "tiers": {
                    "localRedirect": [frontend(VIP, 80, [], policy="kube-system/node-local", qosLimit=10)],
                    "service": [frontend(VIP, 80, BACKENDS[:2], policy="default/web", affinityTimeoutSeconds=30)],
                }
            }
        )
    )
    pins = ["--bpffs", str(topology.bpffs)]
    applied = balancing("apply", *pins, "--cgroup", str(topology.cgroup), str(state_file))
    assert applied.returncode == 0, applied.stderr
    assert "attached connect4, sendmsg4, recvmsg4, getpeername4" in applied.stdout

    explained = balancing("explain", *pins, VIP, "80", "tcp")
    assert explained.returncode == 0, explained.stderr
    lines = explained.stdout.splitlines()
    assert lines[0] == f"{VIP}:80/TCP: resolved by tier service"
    assert "localRedirect: declines: no backend; policy kube-system/node-local; 0 backends" in lines[1]
    assert f"service: resolves; policy default/web; 2 backends {BACKENDS[0]}:{BACKEND_PORT}" in lines[2]
    assert "affinity ClientIP 30s" in lines[2]
    not_a_frontend = balancing("explain", *pins, "10.96.9.9", "80", "UDP")
    assert "not a frontend" in not_a_frontend.stdout

    dumped = balancing("dump", *pins)
    assert dumped.returncode == 0, dumped.stderr
    document = json.loads(dumped.stdout)
    assert [entry["frontend"] for entry in document["tiers"]["service"]] == [f"{VIP}:80/TCP"]
    assert document["tiers"]["localRedirect"][0]["qosLimit"] == 10
    assert document["layout"] == 2 and document["unreferencedSets"] == []

    assert topology.client("tcp", VIP, "80", "--count", "3")["failures"] == 0
    detached = balancing("detach", *pins, "--cgroup", str(topology.cgroup))
    assert detached.returncode == 0, detached.stderr
    assert "bf_lb4_link_connect4" in detached.stdout
    assert not topology.bpffs.exists()
    assert topology.client("tcp", VIP, "80", "--count", "3")["answers"] == {f"{VIP}:80": 3}, "no longer rewritten"


def test_apply_refuses_the_cgroup_root_and_a_second_cgroup(topology: Topology, tmp_path: Path) -> None:
    state_file = tmp_path / "node.yaml"
    state_file.write_text("tiers: {}\n")
    pins = ["--bpffs", str(topology.bpffs)]

    root = balancing("apply", *pins, "--cgroup", str(host.CGROUP2_ROOT), str(state_file))
    assert root.returncode == 2 and "refusing the cgroup2 root" in root.stderr, root.stderr
    assert not any(topology.bpffs.iterdir())

    assert balancing("apply", *pins, "--cgroup", str(topology.cgroup), str(state_file)).returncode == 0
    other = topology.kernel.cgroup()
    second = balancing("apply", *pins, "--cgroup", str(other), str(state_file))
    assert second.returncode == 2 and "detach it first" in second.stderr, second.stderr


def test_reading_a_node_with_nothing_loaded_says_so(tmp_path: Path) -> None:
    result = balancing("dump", "--bpffs", str(tmp_path))
    assert result.returncode == 2
    assert "nothing is loaded" in result.stderr and "Traceback" not in result.stderr


def test_build_prints_the_cached_object() -> None:
    result = balancing("build")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).name == "bf_sock.o" and Path(result.stdout.strip()).exists()


def test_dump_state_reads_back_the_applied_document_and_explain_takes_a_client(
    topology: Topology, tmp_path: Path
) -> None:
    pod = topology.child_cgroup("pod")
    pod_id = str(pod.stat().st_ino)
    document = {
        "nodeAddresses": ["10.77.0.1"],
        "tiers": {
            "localRedirect": [frontend(VIP, 80, BACKENDS[:1], skipCgroups=[int(pod_id)])],
            "service": [
                frontend(VIP, 80, BACKENDS[1:3], rejectWhenEmpty=True, policy="default/web"),
                frontend("0.0.0.0", 30080, BACKENDS[3:4]),
            ],
        },
    }
    state_file = tmp_path / "node.yaml"
    state_file.write_text(yaml.safe_dump(document))
    pins = ["--bpffs", str(topology.bpffs)]
    assert balancing("apply", *pins, "--cgroup", str(topology.cgroup), str(state_file)).returncode == 0

    dumped = balancing("dump", *pins, "--state")
    assert dumped.returncode == 0, dumped.stderr
    assert parse_state(yaml.safe_load(dumped.stdout)) == load_state(state_file).canonical()

    for_pod = balancing("explain", *pins, VIP, "80", "TCP", "--client-cgroup", pod_id)
    assert for_pod.stdout.splitlines()[0] == f"{VIP}:80/TCP: resolved by tier service (for a client in cgroup {pod_id})"
    assert "localRedirect: declines: skips this client (one of its own backends)" in for_pod.stdout
    node_port = balancing("explain", *pins, "127.0.0.1", "30080", "TCP")
    assert "service: resolves" in node_port.stdout and "NodePort 0.0.0.0" in node_port.stdout
