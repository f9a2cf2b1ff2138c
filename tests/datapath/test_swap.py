"""Atomic backend-set swap: a client hammering the VIP while its set is swapped 100 times sees the
old set or the new one on every connect, never a failure, never an unrewritten connect."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from datapath.lb.maps import LbMaps
from tests.datapath.conftest import BACKEND_PORT, BACKENDS, VIP, Topology, frontend, state


def test_swapping_the_backend_set_100_times_under_load_never_fails_a_connect(topology: Topology) -> None:
    set_a, set_b = BACKENDS[:2], BACKENDS[2:6]  # different sizes: a torn read would index past one
    states = [state(service=[frontend(VIP, 80, chosen)]) for chosen in (set_a, set_b)]
    topology.lb.apply(states[0])

    with ThreadPoolExecutor(2) as pool:
        hammers = [pool.submit(topology.client, "tcp", VIP, "80", "--duration", "3") for _ in range(2)]
        time.sleep(0.5)
        swaps = 0
        for round_ in range(100):
            report = topology.lb.apply(states[(round_ + 1) % 2])
            assert report.swapped == 1
            swaps += 1
            time.sleep(0.015)
        results = [hammer.result(timeout=60) for hammer in hammers]

    assert swaps == 100
    union = {f"{ip}:{BACKEND_PORT}" for ip in set_a + set_b}
    for result in results:
        assert result["failures"] == 0, result["errors"]
        assert set(result["answers"]) <= union, result["answers"]
        assert result["attempts"] > 300, "the client must really hammer during the swaps"
    seen = set().union(*(result["answers"] for result in results))
    assert seen == union, "connects landed in both sets"

    # Old sets do not pile up: only the current set and the one retired last are left.
    with LbMaps(topology.bpffs) as maps:
        assert len(maps.backends.items()) <= len(set_a) + len(set_b)
