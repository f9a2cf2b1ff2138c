"""Acceptance: the WireGuard mesh on lab nodes of two different clusters, real wireguard-go, real pods.

The hub's pure planner (hub.mesh) computes proxy IPs and peer sets from what each node publishes
(public key, underlay endpoint, pod CIDR), the way the hub operator will; each node's plan is then
applied with the `balancing datapath tunnel` verbs, the way the node agent will.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab import host
from lab.testing import Federation, LabPod
from tests.datapath.tunnel import lab_mesh as stitched

pytestmark = pytest.mark.lab

FIRST, SECOND, THIRD = "member-1-node-1", "member-2-node-1", "member-1-node-2"
NAMESPACE = "tunnel-test"
LISTEN_PORT = 51820


@dataclass
class LabMesh(stitched.LabMesh):
    """The lab mesh plus the test's pods."""

    pods: dict[str, LabPod] = field(default_factory=dict)

    def peer(self, name: str, key: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [peer for peer in self.status(name)["peers"] if peer["public_key"] == key]
        assert len(found) == 1, found
        return found[0]

    def pod_argv(self, pod: str, argv: Sequence[str]) -> list[str]:
        return [*host.netns_prefix(self.pods[pod].netns), *argv]

    def in_pod(self, pod: str, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.pod_argv(pod, argv), capture_output=True, text=True, timeout=timeout)

    def ping(self, pod: str, target: str, count: int, interval: float = 0.01) -> subprocess.Popen[str]:
        argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "5", target]
        return subprocess.Popen(self.pod_argv(pod, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def received(ping: subprocess.Popen[str], timeout: float = 60) -> tuple[int, int, str]:
    out, _err = ping.communicate(timeout=timeout)
    for line in out.splitlines():
        if "packets transmitted" in line:
            parts = line.split(", ")
            return int(parts[0].split()[0]), int(parts[1].split()[0]), line
    raise AssertionError(f"no ping summary in: {out!r}")


def fingerprint(mesh: LabMesh, name: str) -> dict[str, Any]:
    """The node's running tunnel config, without counters and timestamps."""
    status = mesh.status(name)
    for peer in status["peers"]:
        for volatile in ("latest_handshake", "handshake_age_seconds", "rx_bytes", "tx_bytes"):
            peer.pop(volatile)
    netns = mesh.federation.node(name).netns
    status["kernel_routes"] = host.run(["ip", "-n", netns, "route", "show", "proto", "98"])
    status["kernel_addresses"] = host.run(["ip", "-n", netns, "-4", "-o", "addr", "show", "dev", "bfwg0"])
    return status


# Sends a 1 KiB chunk every 10 ms over one TCP connection to the echo server and reads the echo back;
# prints what it saw, including the longest wait for echoed bytes.
STREAM_CLIENT = r"""
import json, socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sock = socket.create_connection((host, port), timeout=5)
sock.settimeout(5)
chunk = b"x" * 1024
sent = got = 0
last = time.monotonic()
max_gap = 0.0
error = None
end = time.monotonic() + seconds
try:
    while time.monotonic() < end:
        sock.sendall(chunk)
        sent += len(chunk)
        while got < sent:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            got += len(data)
            now = time.monotonic()
            max_gap = max(max_gap, now - last)
            last = now
        time.sleep(0.01)
except Exception as exc:
    error = repr(exc)
print(json.dumps({"sent": sent, "got": got, "max_gap_ms": round(max_gap * 1000, 1), "error": error}))
"""


@pytest.fixture(scope="module")
def mesh(federation: Federation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabMesh]:
    for cluster in ("member-1", "member-2"):
        federation.kubectl(cluster, "create", "namespace", NAMESPACE, check=False)
    lab_mesh = LabMesh(federation, tmp_path_factory.mktemp("tunnel"))
    # unique pod names: a pod name reused right after its removal can race the kernel's veth teardown
    suffix = uuid.uuid4().hex[:5]
    placement = {"client": ("member-1", FIRST), "server": ("member-2", SECOND), "third": ("member-1", THIRD)}
    lab_mesh.pods = {
        role: federation.pod(cluster, NAMESPACE, f"{role}-{suffix}", node=node)
        for role, (cluster, node) in placement.items()
    }
    try:
        yield lab_mesh
    finally:
        for name in (FIRST, SECOND, THIRD):
            lab_mesh.cli("down", name, check=False)
        for role, (cluster, _node) in placement.items():
            federation.remove_pod(cluster, NAMESPACE, f"{role}-{suffix}")


@pytest.fixture
def two_nodes(mesh: LabMesh) -> LabMesh:
    """The first two nodes in a mesh; the third node's tunnel down."""
    mesh.cli("down", THIRD)
    mesh.apply([FIRST, SECOND])
    return mesh


def test_a_pod_reaches_a_pod_in_another_cluster_and_the_underlay_sees_only_wireguard(
    two_nodes: LabMesh, tmp_path: Path
) -> None:
    mesh = two_nodes
    server = mesh.pods["server"]
    capture = tmp_path / "underlay.pcap"
    # the first node's underlay interface: everything it sends to or gets from the other node crosses it
    netns = f"--net=/run/netns/{mesh.federation.node(FIRST).netns}"
    tcpdump = subprocess.Popen(
        [
            "nsenter",
            netns,
            "--",
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-U",
            "--immediate-mode",
            "-s",
            "0",
            "-w",
            str(capture),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tcpdump.stderr is not None
        assert "listening on" in tcpdump.stderr.readline()
        marker = f"PLAINTEXT-MARKER-{uuid.uuid4().hex}"
        talk = (
            "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); "
            "s.sendall(sys.argv[3].encode()); s.settimeout(5); data=b''\n"
            "while sys.argv[3].encode() not in data: data += s.recv(4096)\n"
            "print(data.decode())"
        )
        reply = mesh.in_pod("client", [sys.executable, "-c", talk, str(server.ip), str(server.port), marker])
        assert reply.returncode == 0, reply.stderr
        assert reply.stdout.startswith(server.key.split("/")[-1] + "\n") and marker in reply.stdout
        ping = mesh.in_pod("client", ["ping", "-n", "-c", "5", "-i", "0.05", "-W", "2", str(server.ip)])
        assert ping.returncode == 0, ping.stdout
    finally:
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=10)
    raw = capture.read_bytes()
    assert marker.encode() not in raw, "the pod's payload crossed the underlay in plaintext"
    decoded = host.run(["tcpdump", "-r", str(capture), "-n", "-q"]).splitlines()
    first_ip, second_ip = str(mesh.federation.node(FIRST).underlay_ip), str(mesh.federation.node(SECOND).underlay_ip)
    between = [line for line in decoded if first_ip in line and second_ip in line]
    assert len(between) >= 10, decoded
    for line in between:
        assert " UDP" in line and f".{LISTEN_PORT}" in line, line
    pod_traffic = [line for line in decoded if " 10.101." in line or " 10.102." in line]
    assert pod_traffic == [], "pod addresses appeared on the underlay"


def test_a_connection_to_a_remote_node_proxy_ip_reaches_a_listener_on_that_node(two_nodes: LabMesh) -> None:
    mesh = two_nodes
    node = mesh.federation.node(SECOND)
    listener = host.spawn(
        [sys.executable, "-m", "lab.echo_server", "--name", "proxy-on-second", "--port", "9190"],
        netns=node.netns,
        cgroup=node.cgroup / "system",
    )
    try:
        talk = (
            "import socket,sys,time\n"
            "for attempt in range(50):\n"
            "    try: s=socket.create_connection((sys.argv[1], 9190), timeout=2); break\n"
            "    except ConnectionRefusedError: time.sleep(0.1)\n"
            "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); print(s.recv(4096).decode().split('\\r\\n\\r\\n')[1])"
        )
        reply = mesh.in_pod("client", [sys.executable, "-c", talk, mesh.proxy_ip(SECOND)])
        assert reply.returncode == 0, reply.stderr
        assert reply.stdout.strip() == "proxy-on-second"
    finally:
        host.kill_pid(listener.pid)
        listener.wait(timeout=10)


def test_adding_a_third_node_does_not_interrupt_a_running_stream_between_the_first_two(two_nodes: LabMesh) -> None:
    mesh = two_nodes
    first_key = mesh.public_key(FIRST)
    before = mesh.peer(SECOND, first_key)
    server = mesh.pods["server"]
    stream = subprocess.Popen(
        mesh.pod_argv("client", [sys.executable, "-c", STREAM_CLIENT, str(server.ip), str(server.port), "4"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    mesh.apply([FIRST, SECOND, THIRD], to=[THIRD, SECOND, FIRST])
    out, err = stream.communicate(timeout=30)
    result = json.loads(out)
    assert result["error"] is None, (result, err)
    assert result["got"] == result["sent"] + len(server.key.split("/")[-1] + "\n") > 300 * 1024
    assert result["max_gap_ms"] < 200, result  # one lost segment would cost a 200 ms retransmit timeout
    after = mesh.peer(SECOND, first_key)
    assert after["latest_handshake"] == before["latest_handshake"]  # same session: the peer was not touched
    assert after["rx_bytes"] > before["rx_bytes"]
    # and the new node is in the mesh: a pod on it reaches the server pod in the other cluster
    ping = mesh.in_pod("third", ["ping", "-n", "-c", "3", "-i", "0.1", "-W", "2", str(server.ip)])
    assert ping.returncode == 0, ping.stdout


def test_removing_a_peer_blackholes_its_traffic_at_once(mesh: LabMesh) -> None:
    mesh.apply([FIRST, SECOND, THIRD])
    server, third = mesh.pods["server"], mesh.pods["third"]
    assert mesh.in_pod("server", ["ping", "-n", "-c", "2", "-i", "0.1", "-W", "2", str(third.ip)]).returncode == 0
    pinger = mesh.ping("third", str(server.ip), count=100000, interval=0.01)
    try:
        time.sleep(0.5)
        mesh.apply([FIRST, SECOND], to=[SECOND])  # the second node drops the third; nothing else changes
        removed_at = time.monotonic()
        stats_before = mesh.peer(SECOND, mesh.public_key(FIRST))
        # from the second node's side: refused at once, no timeout
        connect = (
            "import errno,socket,sys,time; t=time.monotonic()\n"
            "try: socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); print('connected', 0)\n"
            "except OSError as e: print(errno.errorcode.get(e.errno, 'timeout'), round(time.monotonic()-t, 3))"
        )
        refused = mesh.in_pod("server", [sys.executable, "-c", connect, str(third.ip), str(third.port)])
        error, seconds = refused.stdout.split()
        assert error == "EHOSTUNREACH" and float(seconds) < 0.5, refused.stdout
        ping = mesh.in_pod("server", ["ping", "-n", "-c", "3", "-i", "0.05", "-W", "1", str(third.ip)])
        assert " 0 received" in ping.stdout, ping.stdout
        # from the removed node's side: its packets are dropped by the second node from now on
        seen = mesh.status(SECOND)["peers"]
        assert [peer["label"] for peer in seen] == [FIRST]
        rx_start = mesh.in_pod("server", ["cat", "/sys/class/net/eth0/statistics/rx_packets"]).stdout
        time.sleep(0.5)
        rx_end = mesh.in_pod("server", ["cat", "/sys/class/net/eth0/statistics/rx_packets"]).stdout
        assert int(rx_end) - int(rx_start) < 5, "the removed node's pings still reach the server pod"
        assert time.monotonic() - removed_at < 10
    finally:
        pinger.send_signal(signal.SIGINT)
        pinger.communicate(timeout=10)
    # the peer that stayed is untouched and still carries traffic
    assert mesh.peer(SECOND, stats_before["public_key"])["latest_handshake"] == stats_before["latest_handshake"]
    ping = mesh.in_pod("client", ["ping", "-n", "-c", "3", "-i", "0.05", "-W", "2", str(server.ip)])
    assert ping.returncode == 0, ping.stdout


def test_rotating_one_nodes_key_loses_none_of_300_pings_at_10ms(two_nodes: LabMesh) -> None:
    mesh = two_nodes
    server = mesh.pods["server"]
    old_key = mesh.public_key(FIRST)
    pinger = mesh.ping("client", str(server.ip), count=300, interval=0.01)
    time.sleep(1.0)
    new_key = mesh.rotate_key(FIRST)
    assert new_key != old_key
    mesh.apply([FIRST, SECOND], to=[SECOND])  # the peer learns the new key from the new plan
    sent, got, line = received(pinger)
    assert (sent, got) == (300, 300), line
    keys = [peer["public_key"] for peer in mesh.status(SECOND)["peers"]]
    assert keys == [new_key]
    assert mesh.status(FIRST)["public_key"] == new_key == mesh.public_key(FIRST)


def test_restarting_the_tunnel_manager_leaves_interface_and_peers_alone(two_nodes: LabMesh) -> None:
    mesh = two_nodes
    node = mesh.federation.node(FIRST)
    runtime = json.loads((node.state_dir / "tunnel" / "runtime.json").read_text())
    link_before = host.run(["ip", "-n", node.netns, "-o", "link", "show", "bfwg0"]).split(":")[0]
    second_key = mesh.public_key(SECOND)
    pinger = mesh.ping("client", str(mesh.pods["server"].ip), count=200, interval=0.01)
    time.sleep(0.5)
    peer_before = mesh.peer(FIRST, second_key)
    # a new manager process with the same desired state: it adopts everything and changes nothing
    plan = mesh.plan([FIRST, SECOND])
    restarted = mesh.apply_state(FIRST, mesh.state(plan, FIRST))
    assert restarted.stdout.strip().endswith("no change"), restarted.stdout
    sent, got, line = received(pinger)
    assert (sent, got) == (200, 200), line
    assert host.run(["ip", "-n", node.netns, "-o", "link", "show", "bfwg0"]).split(":")[0] == link_before
    assert json.loads((node.state_dir / "tunnel" / "runtime.json").read_text())["pid"] == runtime["pid"]
    os.kill(runtime["pid"], 0)  # wireguard-go outlived every manager process that ran so far
    peer_after = mesh.peer(FIRST, second_key)
    assert peer_after["latest_handshake"] == peer_before["latest_handshake"]
    assert peer_after["rx_bytes"] > peer_before["rx_bytes"]  # counters continue: the peer was not re-created


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("malformed key", f"peers[0] ({SECOND}): publicKey 'not-a-wireguard-key' is not a WireGuard key"),
        ("endpoint without port", f"peers[0] ({SECOND}): endpoint '172.30.2.11' has no port"),
        (
            "allowed IPs overlap own pod CIDR",
            f"peers[0] ({SECOND}): allowedIPs 10.101.1.0/24 overlaps this node's own pod CIDR",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_error_and_the_running_config_is_unchanged(
    two_nodes: LabMesh, breakage: str, expected: str
) -> None:
    mesh = two_nodes
    before = fingerprint(mesh, FIRST)
    state = mesh.state(mesh.plan([FIRST, SECOND]), FIRST)
    peer = state["peers"][0]
    if breakage == "malformed key":
        peer["publicKey"] = "not-a-wireguard-key"
    elif breakage == "endpoint without port":
        peer["endpoint"] = peer["endpoint"].split(":")[0]
    else:
        peer["allowedIPs"].append(str(mesh.federation.node(FIRST).pod_cidr))  # known from the node, not the file
    result = mesh.apply_state(FIRST, state, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("balancing: error: invalid tunnel state "), result.stderr
    assert expected in result.stderr
    assert result.stderr.strip().endswith("(nothing was changed)")
    assert len(result.stderr.strip().splitlines()) == 1
    assert fingerprint(mesh, FIRST) == before
    ping = mesh.in_pod("client", ["ping", "-n", "-c", "2", "-i", "0.05", "-W", "2", str(mesh.pods["server"].ip)])
    assert ping.returncode == 0, ping.stdout
