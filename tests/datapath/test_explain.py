"""`explain` agrees with the kernel: for each case, what explain predicts for the next connect() is
what the connect4 program then decides, as its event reports (deciding tier, a backend of that
tier, the declined tiers and why, a reject)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from datapath.lb import NODE_PORT_ANY, EventStream, Explanation, MapReader, ResolutionEvent
from tests.datapath.conftest import BACKENDS, VIP, Topology, frontend, state

REASONS = {"declines: no backend": "no backend", "declines: over its QoS limit this second": "qos"}


def predicted_and_seen(
    topology: Topology, ip: str, port: int, cgroup: Path | None = None
) -> tuple[Explanation, ResolutionEvent]:
    client_cgroup = os.stat(cgroup).st_ino if cgroup else None
    with MapReader(topology.bpffs) as reader:
        explanation = reader.explain(ip, port, "TCP", client_cgroup=client_cgroup)
    with EventStream(topology.bpffs, skip_backlog=True) as stream:
        topology.client_in(cgroup or topology.cgroup, "tcp", ip, str(port), "--count", "1")
        (event,) = list(stream.follow(timeout=3, count=1))
    return explanation, event


def assert_agree(explanation: Explanation, event: ResolutionEvent) -> None:
    declined = []
    for entry in explanation.entries:
        if entry.verdict.startswith("declines"):
            declined.append(f"{entry.tier}: {'self' if 'skips' in entry.verdict else REASONS[entry.verdict]}")
    if explanation.resolved_by:
        (deciding,) = [entry for entry in explanation.entries if entry.tier == explanation.resolved_by]
        assert (event.result, event.tier) == ("redirected", explanation.resolved_by)
        assert event.new in deciding.backends
        assert event.fell_through == declined
    elif explanation.rejected:
        assert (event.result, event.fell_through) == ("rejected", declined)
    else:
        assert event.result in ("no-backend", "declined-qos", "declined-self") and event.new == event.original
        assert event.fell_through == declined[:-1]


CASES: dict[str, dict[str, Any]] = {
    "resolved": {"service": [frontend(VIP, 80, BACKENDS[:3])]},
    "a tier without backends declines": {
        "localRedirect": [frontend(VIP, 80, [])],
        "balancing": [frontend(VIP, 80, BACKENDS[3:5])],
        "service": [frontend(VIP, 80, BACKENDS[:3])],
    },
    "no tier resolves": {"localRedirect": [frontend(VIP, 80, [])], "service": [frontend(VIP, 80, [])]},
    "reject": {"localRedirect": [frontend(VIP, 80, [])], "service": [frontend(VIP, 80, [], rejectWhenEmpty=True)]},
    "NodePort": {"node_addresses": ["10.77.0.1"], "service": [frontend(NODE_PORT_ANY, 80, BACKENDS[:2])]},
}


@pytest.mark.parametrize("case", list(CASES))
def test_explain_predicts_what_the_kernel_does(topology: Topology, case: str) -> None:
    topology.lb.apply(state(**CASES[case]))
    ip = "10.77.0.1" if case == "NodePort" else VIP
    assert_agree(*predicted_and_seen(topology, ip, 80))


def test_explain_follows_a_qos_window_and_a_skipped_client(topology: Topology) -> None:
    pod = topology.child_cgroup("pod")
    topology.lb.apply(
        state(
            localRedirect=[frontend(VIP, 80, BACKENDS[:1], qosLimit=1, skipCgroups=[os.stat(pod).st_ino])],
            service=[frontend(VIP, 80, BACKENDS[1:3])],
        )
    )
    first = predicted_and_seen(topology, VIP, 80)
    over_quota = predicted_and_seen(topology, VIP, 80)
    skipped = predicted_and_seen(topology, VIP, 80, cgroup=pod)

    assert (first[0].resolved_by, over_quota[0].resolved_by) == ("localRedirect", "service")
    for explanation, event in (first, over_quota, skipped):
        assert_agree(explanation, event)
    assert skipped[1].fell_through == ["localRedirect: self"]
