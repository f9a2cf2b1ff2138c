"""Resolution events: one per resolution, decoded with the right fields, also by a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from datapath.lb.reader import EventStream
from tests.datapath.conftest import BACKEND_PORT, BACKENDS, VIP, VIP2, Topology, frontend, state

REPO = Path(__file__).resolve().parents[2]


def test_each_connect_yields_one_event_with_its_client_destination_tier_and_policy(topology: Topology) -> None:
    topology.lb.apply(state(service=[frontend(VIP, 80, BACKENDS[:3], policy="default/web")]))

    with EventStream(topology.bpffs, skip_backlog=True) as stream:
        result = topology.client("tcp", VIP, "80", "--count", "5", "--sequence")
        events = list(stream.follow(timeout=3))

    assert len(events) == 5, events
    assert [event.new for event in events] == result["sequence"]
    cgroup_id = os.stat(topology.cgroup).st_ino
    for event in events:
        assert event.pid == result["pid"]
        assert event.netns_cookie == result["netns_cookie"]
        assert event.cgroup_id == cgroup_id
        assert (event.original, event.protocol, event.hook) == (f"{VIP}:80", "TCP", "connect4")
        assert (event.tier, event.policy, event.result) == ("service", "default/web", "redirected")
        assert event.fell_through == [] and event.socket_cookie != 0
    assert len({event.socket_cookie for event in events}) == 5


def test_fall_through_no_backend_and_udp_sendmsg_are_recorded(topology: Topology) -> None:
    topology.add_vip(VIP2, ports=(80,))
    local, service = BACKENDS[0], BACKENDS[1]
    topology.lb.apply(
        state(
            localRedirect=[frontend(VIP, 80, [local], policy="kube-system/local-dns", qosLimit=1)],
            service=[frontend(VIP, 80, [service], policy="default/web"), frontend(VIP2, 80, [], policy="empty")],
            balancing=[frontend(VIP, 80, [service], "UDP", policy="udp-vip")],
        )
    )

    with EventStream(topology.bpffs, skip_backlog=True) as stream:
        topology.client("tcp", VIP, "80", "--count", "2")
        topology.client("tcp", VIP2, "80", "--count", "1")
        topology.client("udp", VIP, "80", "--count", "1")
        first, second, empty, datagram = list(stream.follow(timeout=3, count=4))

    assert (first.tier, first.policy, first.result, first.new) == (
        "localRedirect",
        "kube-system/local-dns",
        "redirected",
        f"{local}:{BACKEND_PORT}",
    )
    assert (second.tier, second.policy, second.result, second.new) == (
        "service",
        "default/web",
        "redirected",
        f"{service}:{BACKEND_PORT}",
    )
    assert second.fell_through == ["localRedirect: qos"]
    assert (empty.tier, empty.policy, empty.result, empty.new) == ("service", "empty", "no-backend", f"{VIP2}:80")
    assert (datagram.hook, datagram.protocol, datagram.tier, datagram.policy) == (
        "sendmsg4",
        "UDP",
        "balancing",
        "udp-vip",
    )


def test_a_fresh_process_decodes_events_with_policy_names(topology: Topology) -> None:
    topology.lb.apply(state(service=[frontend(VIP, 80, BACKENDS[:1], policy="team-a/checkout")]))
    topology.lb.close()  # the writer is gone; the names live in the pinned policy map
    with EventStream(topology.bpffs, skip_backlog=True):
        pass  # drain what earlier tests of this topology left
    topology.client("tcp", VIP, "80", "--count", "1")

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "balancing",
            "datapath",
            "events",
            "--bpffs",
            str(topology.bpffs),
            "--json",
            "--count",
            "1",
            "--timeout",
            "10",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    event = json.loads(out.splitlines()[0])
    assert (event["policy"], event["tier"], event["original"]) == ("team-a/checkout", "service", f"{VIP}:80")
