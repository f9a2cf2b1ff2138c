"""TCP through a VIP: spread, getpeername() shows the VIP, clients outside the cgroup untouched."""

from __future__ import annotations

from tests.datapath.conftest import BACKEND_PORT, BACKENDS, VIP, Topology, frontend, state


def test_connects_spread_evenly_and_getpeername_shows_the_vip(topology: Topology) -> None:
    backends = BACKENDS[:3]
    topology.lb.apply(state(service=[frontend(VIP, 80, backends, policy="default/web")]))

    result = topology.client("tcp", VIP, "80", "--count", "3000")

    assert result["failures"] == 0, result["errors"]
    answers = result["answers"]
    assert set(answers) == {f"{ip}:{BACKEND_PORT}" for ip in backends}
    for backend, count in answers.items():
        assert 900 <= count <= 1100, f"{backend} got {count} of 3000 connects: {answers}"
    assert result["peers"] == {f"{VIP}:80": 3000}


def test_a_direct_connect_to_a_backend_keeps_its_own_peer_name(topology: Topology) -> None:
    topology.lb.apply(state(service=[frontend(VIP, 80, BACKENDS[:1])]))
    backend = f"{BACKENDS[0]}:{BACKEND_PORT}"

    direct = topology.client("tcp", BACKENDS[0], str(BACKEND_PORT), "--count", "5")

    assert direct["answers"] == {backend: 5}
    assert direct["peers"] == {backend: 5}, "only translated sockets are translated back"


def test_a_client_outside_the_cgroup_is_not_rewritten(topology: Topology) -> None:
    topology.lb.apply(state(service=[frontend(VIP, 80, BACKENDS[:3])]))

    outside = topology.outside("tcp", VIP, "80", "--count", "20")
    inside = topology.client("tcp", VIP, "80", "--count", "20")

    assert outside["answers"] == {f"{VIP}:80": 20}  # the trap on the VIP itself
    assert f"{VIP}:80" not in inside["answers"] and sum(inside["answers"].values()) == 20
