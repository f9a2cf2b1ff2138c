"""Tier priority (LocalRedirect > Balancing > Service), fall-through, and the LocalRedirect QoS limit."""

from __future__ import annotations

import time

from tests.datapath.conftest import BACKEND_PORT, BACKENDS, VIP, Topology, frontend, state

LOCAL, POLICY, SERVICE = BACKENDS[0], BACKENDS[1], BACKENDS[2]


def answer(ip: str) -> str:
    return f"{ip}:{BACKEND_PORT}"


def test_the_highest_tier_with_a_backend_resolves(topology: Topology) -> None:
    topology.lb.apply(
        state(
            localRedirect=[frontend(VIP, 80, [LOCAL], policy="kube-system/node-local")],
            balancing=[frontend(VIP, 80, [POLICY], policy="vip-policy")],
            service=[frontend(VIP, 80, [SERVICE], policy="default/web")],
        )
    )
    assert topology.client("tcp", VIP, "80", "--count", "10")["answers"] == {answer(LOCAL): 10}

    # No ready local backend: LocalRedirect declines and the next tier applies.
    topology.lb.apply(
        state(
            localRedirect=[frontend(VIP, 80, [], policy="kube-system/node-local")],
            balancing=[frontend(VIP, 80, [POLICY], policy="vip-policy")],
            service=[frontend(VIP, 80, [SERVICE], policy="default/web")],
        )
    )
    assert topology.client("tcp", VIP, "80", "--count", "10")["answers"] == {answer(POLICY): 10}

    # Removing the higher entries falls back to the Service tier.
    topology.lb.apply(state(service=[frontend(VIP, 80, [SERVICE], policy="default/web")]))
    assert topology.client("tcp", VIP, "80", "--count", "10")["answers"] == {answer(SERVICE): 10}

    # And adding LocalRedirect back takes priority again.
    topology.lb.apply(
        state(
            localRedirect=[frontend(VIP, 80, [LOCAL])],
            service=[frontend(VIP, 80, [SERVICE], policy="default/web")],
        )
    )
    assert topology.client("tcp", VIP, "80", "--count", "10")["answers"] == {answer(LOCAL): 10}


def test_redirect_n_plus_one_within_a_second_falls_through_to_the_service_tier(topology: Topology) -> None:
    limit = 5
    topology.lb.apply(
        state(
            localRedirect=[frontend(VIP, 80, [LOCAL], qosLimit=limit)],
            service=[frontend(VIP, 80, [SERVICE])],
        )
    )

    burst = topology.client("tcp", VIP, "80", "--count", str(limit + 1), "--sequence")

    assert burst["failures"] == 0, burst["errors"]
    assert burst["sequence"] == [answer(LOCAL)] * limit + [answer(SERVICE)], burst["sequence"]
    assert burst["seconds"] < 1.0, "the burst must fit in one QoS window for this test to mean anything"

    # The window started at the first redirect and lasts one second; the next one admits again.
    time.sleep(1.05)
    later = topology.client("tcp", VIP, "80", "--count", "1")
    assert later["answers"] == {answer(LOCAL): 1}


def test_with_no_tier_able_to_resolve_the_connect_goes_to_the_vip_unchanged(topology: Topology) -> None:
    topology.lb.apply(state(service=[frontend(VIP, 80, [])]))

    result = topology.client("tcp", VIP, "80", "--count", "3")

    assert result["answers"] == {f"{VIP}:80": 3}  # the trap: not rewritten
