"""sessionAffinity ClientIP: a client keeps its backend; a removed backend is never chosen again."""

from __future__ import annotations

from tests.datapath.conftest import BACKEND_PORT, BACKENDS, VIP, Topology, frontend, state


def test_a_client_keeps_its_backend_until_that_backend_is_removed(topology: Topology) -> None:
    backends = BACKENDS[:3]
    topology.lb.apply(state(service=[frontend(VIP, 80, backends, affinityTimeoutSeconds=600)]))

    first = topology.client("tcp", VIP, "80", "--count", "30")
    assert first["failures"] == 0 and len(first["answers"]) == 1, first
    (chosen,) = first["answers"]
    again = topology.client("tcp", VIP, "80", "--count", "30")  # another process, same netns
    assert again["answers"] == {chosen: 30}

    remaining = [ip for ip in backends if f"{ip}:{BACKEND_PORT}" != chosen]
    report = topology.lb.apply(state(service=[frontend(VIP, 80, remaining, affinityTimeoutSeconds=600)]))
    assert report.swapped == 1

    after = topology.client("tcp", VIP, "80", "--count", "30")
    assert after["failures"] == 0, after["errors"]
    assert chosen not in after["answers"]
    assert len(after["answers"]) == 1, "the client sticks to its new backend"


def test_without_affinity_one_client_is_spread(topology: Topology) -> None:
    topology.lb.apply(state(service=[frontend(VIP, 80, BACKENDS[:3])]))

    result = topology.client("tcp", VIP, "80", "--count", "60")

    assert len(result["answers"]) == 3, result["answers"]


def test_affinity_expires_after_its_timeout(topology: Topology) -> None:
    import time

    from datapath.lb.reader import EventStream

    topology.lb.apply(state(service=[frontend(VIP, 80, BACKENDS[:3], affinityTimeoutSeconds=1)]))
    with EventStream(topology.bpffs, skip_backlog=True) as events:
        topology.client("tcp", VIP, "80", "--count", "2")
        time.sleep(1.1)
        topology.client("tcp", VIP, "80", "--count", "1")
        seen = list(events.follow(timeout=5, count=3))

    assert [event.affinity for event in seen] == [False, True, False]
