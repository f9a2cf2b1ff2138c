"""The tunnel manager on real namespaces and real wireguard-go: keys, daemon, sockets, routes, status, down.

These use small topologies made with the `kernel` fixture (no control planes), so they are quick; the
cross-cluster acceptance tests on lab nodes are in test_tunnel_lab.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from datapath.process import process_start_time
from datapath.tunnel.manager import ApplyReport, TunnelManager
from datapath.tunnel.node import resolve_node
from tests.datapath.tunnel.topology import Topology, make_topology, wait_for
from tests.helpers.resources import KernelResources


@pytest.fixture
def pair(kernel: KernelResources, tmp_path: Path) -> Topology:
    """Two nodes in two clusters, in a full mesh."""
    topology = make_topology(kernel, tmp_path)
    topology.add_node("m1n1", 1, 1)
    topology.add_node("m2n1", 2, 1)
    topology.mesh(["m1n1", "m2n1"])
    return topology


def runtime(topology: Topology, name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((topology.nodes[name].state_dir / "tunnel" / "runtime.json").read_text())
    return loaded


def routes(topology: Topology, name: str) -> list[str]:
    return [
        line.strip() for line in topology.nodes[name].run(["ip", "route", "show", "proto", "98"]).stdout.splitlines()
    ]


def test_the_keypair_is_made_on_the_node_once_and_the_private_key_stays_private(
    kernel: KernelResources, tmp_path: Path
) -> None:
    topology = make_topology(kernel, tmp_path)
    node = topology.add_node("m1n1", 1, 1)
    first = topology.pubkey("m1n1")
    assert topology.pubkey("m1n1") == first  # stable across calls
    directory = node.state_dir / "tunnel"
    private = (directory / "private.key").read_text().strip()
    assert stat.S_IMODE((directory / "private.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    derived = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True, check=True)
    assert derived.stdout.strip() == first
    topology.apply("m1n1", topology.state_for("m1n1", []))
    # the private key appears in nothing the manager prints or records besides its own file
    printed = topology.cli("status", "m1n1", "--json").stdout + topology.cli("status", "m1n1").stdout
    assert private not in printed
    for path in directory.rglob("*"):
        if path.is_file() and path.name != "private.key" and not path.name.endswith(".sock"):
            assert private not in path.read_text(errors="replace"), path


def test_wireguard_go_runs_in_the_node_namespace_with_a_private_socket_dir(pair: Topology) -> None:
    for name, node in pair.nodes.items():
        record = runtime(pair, name)
        assert record["implementation"] == "userspace"  # this kernel has no WireGuard
        pid = record["pid"]
        assert isinstance(pid, int) and process_start_time(pid) == record["start_time"]
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{node.netns}").st_ino
        assert (node.state_dir / "tunnel" / "run" / "bfwg0.sock").is_socket()
        # both nodes use the same interface name: each socket is only in that node's own directory
        assert not Path("/run/wireguard/bfwg0.sock").exists()
        assert "inet 100.96.0." in node.run(["ip", "-4", "addr", "show", "bfwg0"]).stdout
    assert routes(pair, "m1n1") == [
        "10.102.1.0/24 dev bfwg0 scope link src 100.96.0.1",
        "100.96.0.2 dev bfwg0 scope link src 100.96.0.1",
    ]


def test_status_reports_latest_handshake_and_rx_tx_per_peer(pair: Topology) -> None:
    a, b = pair.nodes["m1n1"], pair.nodes["m2n1"]
    assert a.pod_run(["ping", "-c", "3", "-i", "0.05", "-W", "2", str(b.pod_ip)]).returncode == 0
    status = pair.status("m1n1")
    assert status["up"] is True and status["proxy_ipv4"] == "100.96.0.1"
    assert status["public_key"] == pair.pubkey("m1n1")
    peers: list[dict[str, Any]] = status["peers"]  # type: ignore[assignment]
    (peer,) = peers
    assert peer["label"] == "member-2/m2n1"
    assert peer["endpoint"] == b.endpoint
    assert peer["latest_handshake"] > 0 and peer["handshake_age_seconds"] < 60
    assert peer["rx_bytes"] > 0 and peer["tx_bytes"] > 0
    table = pair.cli("status", "m1n1").stdout
    assert "member-2/m2n1" in table and "s ago" in table


def test_down_stops_wireguard_go_by_pid_and_removes_interface_and_routes_but_keeps_keys(pair: Topology) -> None:
    pid = runtime(pair, "m1n1")["pid"]
    assert isinstance(pid, int)
    public_key = pair.pubkey("m1n1")
    assert "removed" in pair.cli("down", "m1n1").stdout
    assert process_start_time(pid) is None or _zombie(pid)
    node = pair.nodes["m1n1"]
    assert node.run(["ip", "link", "show", "bfwg0"]).returncode != 0
    assert routes(pair, "m1n1") == []
    assert not (node.state_dir / "tunnel" / "run" / "bfwg0.sock").exists()
    assert pair.pubkey("m1n1") == public_key
    assert "was not up" in pair.cli("down", "m1n1").stdout
    assert pair.status("m1n1")["up"] is False
    # the other node's wireguard-go is untouched
    other = runtime(pair, "m2n1")["pid"]
    assert isinstance(other, int) and process_start_time(other) is not None


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_removed_peer_is_fenced_off_and_readmitted_when_it_comes_back(pair: Topology) -> None:
    a, b = pair.nodes["m1n1"], pair.nodes["m2n1"]
    pair.apply("m1n1", pair.state_for("m1n1", []))
    assert routes(pair, "m1n1") == ["unreachable 10.102.1.0/24", "unreachable 100.96.0.2"]
    ping = a.pod_run(["ping", "-c", "1", "-W", "1", str(b.pod_ip)])
    assert ping.returncode != 0
    assert "Unreachable" in ping.stdout  # refused at once, not lost on the underlay
    pair.apply("m1n1", pair.state_for("m1n1", ["m2n1"]))
    assert len(routes(pair, "m1n1")) == 2 and all("dev bfwg0" in r for r in routes(pair, "m1n1"))
    assert wait_for(lambda: a.pod_run(["ping", "-c", "1", "-W", "1", str(b.pod_ip)]).returncode == 0)


def test_a_network_someone_else_routes_is_refused_before_any_change(pair: Topology) -> None:
    a = pair.nodes["m1n1"]
    subprocess.run(["ip", "-n", a.netns, "route", "add", "10.103.1.0/24", "via", "172.31.0.99"], check=True)
    before = pair.cli("status", "m1n1", "--json").stdout
    state = pair.state_for("m1n1", ["m2n1"])
    state["peers"][0]["allowedIPs"].append("10.103.1.0/24")  # type: ignore[index]
    result = pair.apply("m1n1", state, check=False)
    assert result.returncode == 2
    assert "10.103.1.0/24 is already routed on node m1n1 by a route the tunnel manager does not own" in result.stderr
    assert _without_timing(pair.cli("status", "m1n1", "--json").stdout) == _without_timing(before)


def _without_timing(status_json: str) -> object:
    status = json.loads(status_json)
    for peer in status["peers"]:
        for volatile in ("latest_handshake", "handshake_age_seconds", "rx_bytes", "tx_bytes"):
            peer.pop(volatile)
    return status


def test_an_interface_whose_runtime_record_was_lost_is_adopted_not_recreated(pair: Topology) -> None:
    record = runtime(pair, "m1n1")
    (pair.nodes["m1n1"].state_dir / "tunnel" / "runtime.json").unlink()
    result = pair.apply("m1n1", pair.state_for("m1n1", ["m2n1"]))
    assert result.stdout.strip().endswith("no change")
    assert runtime(pair, "m1n1")["pid"] == record["pid"]


def test_a_missing_wireguard_go_is_a_clear_error(kernel: KernelResources, tmp_path: Path) -> None:
    topology = make_topology(kernel, tmp_path)
    topology.add_node("m1n1", 1, 1)
    env = {**topology.env, "BALANCING_WIREGUARD_GO": str(tmp_path / "no-such-wireguard-go")}
    state = tmp_path / "state.json"
    state.write_text(json.dumps(topology.state_for("m1n1", [])))
    result = subprocess.run(
        ["python", "-m", "balancing", "datapath", "tunnel", "apply", "--node", "m1n1", str(state)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("balancing: error: BALANCING_WIREGUARD_GO=")
    assert "is not an executable file" in result.stderr


def test_an_unknown_node_is_a_clear_error(kernel: KernelResources, tmp_path: Path) -> None:
    topology = make_topology(kernel, tmp_path)
    result = topology.cli("status", "member-9-node-9", check=False)
    assert result.returncode == 2
    assert "node 'member-9-node-9' is unknown: no index file" in result.stderr


def test_a_wireguard_go_that_died_is_restarted_by_the_next_apply_with_its_peers(pair: Topology) -> None:
    a, b = pair.nodes["m1n1"], pair.nodes["m2n1"]
    pid = runtime(pair, "m1n1")["pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: a.run(["ip", "link", "show", "bfwg0"]).returncode != 0)
    assert pair.status("m1n1")["up"] is False
    result = pair.apply("m1n1", pair.state_for("m1n1", ["m2n1"]))
    assert "interface created" in result.stdout and "peers +1" in result.stdout
    assert runtime(pair, "m1n1")["pid"] != pid
    assert wait_for(lambda: a.pod_run(["ping", "-c", "1", "-W", "1", str(b.pod_ip)]).returncode == 0)


def test_concurrent_applies_on_one_node_take_turns(pair: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four managers bring the same node up at once: one creates the interface, the others find it."""
    pair.cli("down", "m1n1")
    monkeypatch.setenv("BALANCING_NODE_INDEX_DIR", str(pair.index_dir))
    data = pair.state_for("m1n1", ["m2n1"])
    start = threading.Barrier(4)
    results: list[ApplyReport | Exception] = []

    def manager() -> None:
        tunnel = TunnelManager(resolve_node("m1n1"))
        state = tunnel.parse(data)
        start.wait()
        try:
            results.append(tunnel.apply(state))
        except Exception as error:
            results.append(error)

    threads = [threading.Thread(target=manager) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    applied = [result for result in results if isinstance(result, ApplyReport)]
    assert len(applied) == 4, results
    assert sum(result.interface_created for result in applied) == 1
    daemons = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_wireguard_go_in(p, pair, "m1n1")]
    assert len(daemons) == 1
    assert len(pair.status("m1n1")["peers"]) == 1  # type: ignore[arg-type]


def _is_wireguard_go_in(proc: Path, topology: Topology, name: str) -> bool:
    try:
        is_daemon = (proc / "cmdline").read_bytes().split(b"\0")[0].endswith(b"wireguard-go")
        netns = os.stat(proc / "ns" / "net").st_ino
    except OSError:
        return False
    return is_daemon and netns == os.stat(f"/run/netns/{topology.nodes[name].netns}").st_ino


# --- same-cluster peers: pod sources accepted, not routed -------------------------------------------------


def _same_cluster_entry(topology: Topology, name: str, *, accepted: bool = True) -> dict[str, object]:
    """A same-cluster peer as the hub plans it: its proxy IP routed, its pod CIDR only accepted."""
    node = topology.nodes[name]
    entry = topology.peer_entry(name)
    entry["allowedIPs"] = [f"{node.proxy_ip}/32"]
    if accepted:
        entry["acceptedIPs"] = [str(node.pod_cidr)]
    return entry


def _cluster_network(topology: Topology, a: str, b: str) -> None:
    """The cluster network between two nodes of one cluster (host-gw style): pod CIDRs over the underlay,
    with loose reverse-path filtering as systemd sets it (the reply takes another path than the request)."""
    for here, there in ((a, b), (b, a)):
        node, other = topology.nodes[here], topology.nodes[there]
        node.run(["ip", "route", "add", str(other.pod_cidr), "via", str(other.underlay_ip)]).check_returncode()
        node.run(["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=2"]).check_returncode()


def _apply_peers(topology: Topology, name: str, peers: list[dict[str, object]]) -> subprocess.CompletedProcess[str]:
    state = topology.state_for(name, [])
    state["peers"] = peers
    return topology.apply(name, state)


def _pings(run: Any, address: object) -> bool:
    return bool(run(["ping", "-c", "1", "-W", "1", str(address)]).returncode == 0)


def test_a_pod_reaches_a_same_cluster_nodes_proxy_ip_because_its_source_is_accepted_not_routed(
    kernel: KernelResources, tmp_path: Path
) -> None:
    topology = make_topology(kernel, tmp_path)
    a, b = topology.add_node("m1n1", 1, 1), topology.add_node("m1n2", 1, 2)
    c = topology.add_node("m2n1", 2, 1)
    _cluster_network(topology, "m1n1", "m1n2")
    other_cluster_c = topology.peer_entry("m2n1")
    _apply_peers(topology, "m1n1", [_same_cluster_entry(topology, "m1n2"), other_cluster_c])
    _apply_peers(topology, "m1n2", [_same_cluster_entry(topology, "m1n1", accepted=False)])
    topology.apply("m2n1", topology.state_for("m2n1", ["m1n1"]))

    # without acceptedIPs on B, A's pod (10.101.1.2) is not a source B's WireGuard takes from A: dropped
    assert _pings(a.run, b.proxy_ip)  # A's host process sends from A's proxy IP, which B accepts
    assert not _pings(a.pod_run, b.proxy_ip)

    result = _apply_peers(topology, "m1n2", [_same_cluster_entry(topology, "m1n1")])
    assert result.stdout.strip().endswith("peers +0 ~1 -0; routes set 0, fenced 0, deleted 0")
    assert wait_for(lambda: _pings(a.pod_run, b.proxy_ip))
    # B routes only A's proxy IP into the tunnel; A's pod CIDR stays on the cluster network, which the
    # route-conflict check let be (it is routed by someone else, and only accepted from the tunnel)
    assert routes(topology, "m1n2") == ["100.96.0.1 dev bfwg0 scope link src 100.96.0.2"]
    assert "dev eth0" in b.run(["ip", "route", "get", str(a.pod_ip)]).stdout
    peers: list[dict[str, Any]] = topology.status("m1n2")["peers"]  # type: ignore[assignment]
    (peer,) = peers
    assert (peer["allowed_ips"], peer["accepted_ips"]) == (["100.96.0.1/32"], ["10.101.1.0/24"])
    assert "10.101.1.0/24" in topology.cli("status", "m1n2").stdout

    # on A, the other cluster's pod CIDR becoming accepted only: WireGuard's view of the peer is the same
    # (allowed-ips is allowed + accepted), so no peer changes; its route goes, not fenced (whoever routes
    # it now must not find it blackholed), and nothing else moves
    assert routes(topology, "m1n1") == [
        "10.102.1.0/24 dev bfwg0 scope link src 100.96.0.1",
        "100.96.0.2 dev bfwg0 scope link src 100.96.0.1",
        "100.96.0.3 dev bfwg0 scope link src 100.96.0.1",
    ]
    moved = {**other_cluster_c, "allowedIPs": [f"{c.proxy_ip}/32"], "acceptedIPs": [str(c.pod_cidr)]}
    result = _apply_peers(topology, "m1n1", [_same_cluster_entry(topology, "m1n2"), moved])
    assert result.stdout.strip().endswith("peers +0 ~0 -0; routes set 0, fenced 0, deleted 1")
    assert routes(topology, "m1n1") == [
        "100.96.0.2 dev bfwg0 scope link src 100.96.0.1",
        "100.96.0.3 dev bfwg0 scope link src 100.96.0.1",
    ]
    assert _pings(a.pod_run, b.proxy_ip)  # the same-cluster peer was not touched
