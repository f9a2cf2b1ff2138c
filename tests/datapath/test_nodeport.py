"""NodePort without a frontend per address: one 0.0.0.0 frontend matches every node address in the
node-address map and 127.0.0.0/8; an exact frontend wins within its tier; tiers keep their order."""

from __future__ import annotations

from datapath.lb import NODE_PORT_ANY, MapReader
from tests.datapath.conftest import BACKEND_PORT, BACKENDS, VIP2, Topology, frontend, state

NODE_IP = "10.77.0.1"  # the client namespace's own address: what a node address is to its pods
NODE_PORT = 30080


def answers(topology: Topology, ip: str, count: int = 6) -> dict[str, int]:
    result = topology.client("tcp", ip, str(NODE_PORT), "--count", str(count))
    return result["answers"] if not result["failures"] else {"failures": result["failures"]}


def at(*ips: str) -> set[str]:
    return {f"{ip}:{BACKEND_PORT}" for ip in ips}


def test_a_nodeport_frontend_matches_node_addresses_and_loopback_only(topology: Topology) -> None:
    topology.add_vip(VIP2, ports=(NODE_PORT,))  # not a node address: its trap must answer
    topology.lb.apply(state(node_addresses=[NODE_IP], service=[frontend(NODE_PORT_ANY, NODE_PORT, BACKENDS[:2])]))

    assert set(answers(topology, NODE_IP)) <= at(*BACKENDS[:2])
    assert set(answers(topology, "127.0.0.1")) <= at(*BACKENDS[:2])
    assert set(answers(topology, "127.8.9.10")) <= at(*BACKENDS[:2])
    assert answers(topology, VIP2) == {f"{VIP2}:{NODE_PORT}": 6}, "not a node address: left alone"


def test_an_exact_frontend_wins_within_its_tier_and_tiers_keep_their_order(topology: Topology) -> None:
    wildcard = frontend(NODE_PORT_ANY, NODE_PORT, BACKENDS[:2])
    exact = frontend(NODE_IP, NODE_PORT, BACKENDS[5:6])
    topology.lb.apply(state(node_addresses=[NODE_IP], service=[wildcard, exact]))
    assert answers(topology, NODE_IP) == {f"{BACKENDS[5]}:{BACKEND_PORT}": 6}
    assert set(answers(topology, "127.0.0.1")) <= at(*BACKENDS[:2])

    local = frontend(NODE_PORT_ANY, NODE_PORT, BACKENDS[7:8])
    topology.lb.apply(state(node_addresses=[NODE_IP], service=[wildcard, exact], localRedirect=[local]))
    assert answers(topology, NODE_IP) == {f"{BACKENDS[7]}:{BACKEND_PORT}": 6}, "a higher tier's wildcard first"

    with MapReader(topology.bpffs) as reader:
        explained = reader.explain(NODE_IP, NODE_PORT, "TCP")
    assert explained.resolved_by == "localRedirect" and explained.entries[0].node_port
    assert [entry.node_port for entry in explained.entries] == [True, False]


def test_node_addresses_are_diffed_and_a_removed_one_stops_matching(topology: Topology) -> None:
    service = [frontend(NODE_PORT_ANY, NODE_PORT, BACKENDS[:1])]
    first = topology.lb.apply(state(node_addresses=[NODE_IP, "172.30.9.9"], service=service))
    assert (first.nodes_added, first.nodes_removed) == (2, 0)
    again = topology.lb.apply(state(node_addresses=["172.30.9.9", NODE_IP], service=service))
    assert again.elements_written == 0, "an unchanged set of node addresses writes nothing"

    dropped = topology.lb.apply(state(node_addresses=["172.30.9.9"], service=service))

    assert (dropped.nodes_added, dropped.nodes_removed, dropped.elements_written) == (0, 1, 1)
    result = topology.client("tcp", NODE_IP, str(NODE_PORT), "--count", "2")
    assert result["failures"] == 2 and "ConnectionRefusedError" in str(result["errors"]), "nothing listens there"
    with MapReader(topology.bpffs) as reader:
        assert reader.dump()["nodeAddresses"] == ["172.30.9.9"]
