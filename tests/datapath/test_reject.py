"""Reject: a frontend marked rejectWhenEmpty that no tier can resolve fails connect() and sendmsg()
at once with ECONNREFUSED (as kube-proxy REJECTs a Service without endpoints), and says so."""

from __future__ import annotations

from datapath.lb import EventStream, MapReader
from tests.datapath.conftest import BACKEND_PORT, BACKENDS, VIP, Topology, frontend, state

REFUSED = "ConnectionRefusedError: [Errno 111] Connection refused"


def test_connect_fails_at_once_when_the_last_declining_tier_rejects(topology: Topology) -> None:
    topology.lb.apply(state(service=[frontend(VIP, 80, [], rejectWhenEmpty=True, policy="default/web")]))

    with EventStream(topology.bpffs, skip_backlog=True) as stream:
        result = topology.client("tcp", VIP, "80", "--count", "5")
        events = list(stream.follow(timeout=3, count=5))

    assert result["errors"] == {REFUSED: 5}, "the trap on the VIP would have answered had it passed"
    assert result["seconds"] < 1.0, "refused at once, not after a timeout"
    assert [(event.result, event.tier, event.policy) for event in events] == [
        ("rejected", "service", "default/web")
    ] * 5
    with MapReader(topology.bpffs) as reader:
        assert reader.counters()["rejected"] == 5
        explained = reader.explain(VIP, 80, "TCP")
    assert explained.rejected and "fails at once with ECONNREFUSED" in explained.lines()[0]


def test_only_the_last_tier_to_decline_decides(topology: Topology) -> None:
    # LocalRedirect is marked but declines first; the Service tier resolves.
    topology.lb.apply(
        state(
            localRedirect=[frontend(VIP, 80, [], rejectWhenEmpty=True)],
            service=[frontend(VIP, 80, BACKENDS[:1])],
        )
    )
    assert topology.client("tcp", VIP, "80", "--count", "3")["answers"] == {f"{BACKENDS[0]}:{BACKEND_PORT}": 3}

    # LocalRedirect marked, Service not: the last to decline does not reject, the connect passes.
    topology.lb.apply(
        state(localRedirect=[frontend(VIP, 80, [], rejectWhenEmpty=True)], service=[frontend(VIP, 80, [])])
    )
    assert topology.client("tcp", VIP, "80", "--count", "3")["answers"] == {f"{VIP}:80": 3}

    # A tier over its QoS limit declines too: with the Service tier marked and empty, that rejects.
    topology.lb.apply(
        state(
            localRedirect=[frontend(VIP, 80, BACKENDS[:1], qosLimit=2)],
            service=[frontend(VIP, 80, [], rejectWhenEmpty=True)],
        )
    )
    burst = topology.client("tcp", VIP, "80", "--count", "3", "--sequence")
    assert burst["sequence"] == [f"{BACKENDS[0]}:{BACKEND_PORT}"] * 2 + ["ERROR"], burst


def test_udp_sendmsg_and_connect_fail_too(topology: Topology) -> None:
    topology.lb.apply(state(service=[frontend(VIP, 53, [], "UDP", rejectWhenEmpty=True)]))

    unconnected = topology.client("udp", VIP, "53", "--count", "2")
    connected = topology.client("udp", VIP, "53", "--count", "2", "--connect")

    assert unconnected["errors"] == {REFUSED: 2}
    assert connected["errors"] == {REFUSED: 2}
