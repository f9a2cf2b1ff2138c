"""Decoding one raw resolution event, without root: each row is a description, the event's numbers as the
connect4/sendmsg4 programs write them, and the fields a reader must show (tests/datapath/test_events.py
checks the same against real connects)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from datapath.lb import abi
from datapath.lb.codec import EVENT
from datapath.lb.reader import resolution_event

SELF, QOS, EMPTY = "declined_self", "declined_qos", "declined_empty"
LOCAL, BALANCING, SERVICE = (1 << tier for tier in abi.Tier)


def raw_event(**fields: Any) -> bytes:
    values: dict[str, Any] = {
        "timestamp_ns": 0, "netns_cookie": 7, "cgroup_id": 4242, "socket_cookie": 99, "pid": 31,
        "policy_id": 3, "orig_address": socket.inet_aton("10.96.0.1"), "new_address": socket.inet_aton("10.1.0.2"),
        "orig_port": (80).to_bytes(2, "big"), "new_port": (8080).to_bytes(2, "big"), "protocol": 6,
        "hook": abi.Hook.CONNECT4, "tier": abi.Tier.SERVICE, "result": abi.Result.REDIRECTED,
        "declined_empty": 0, "declined_qos": 0, "affinity_hit": 0, "declined_self": 0, "pad": bytes(4),
    }  # fmt: skip
    values.update(fields)
    return EVENT.pack(*(values[name] for name, *_ in abi.Event._fields_))


ROWS = [
    ("a plain service redirect", {},
     {"hook": "connect4", "protocol": "TCP", "tier": "service", "result": "redirected", "fell_through": [],
      "original": "10.96.0.1:80", "new": "10.1.0.2:8080", "policy": "default/web", "affinity": False}),
    ("a UDP sendmsg with an affinity hit", {"hook": abi.Hook.SENDMSG4, "protocol": 17, "affinity_hit": 1},
     {"hook": "sendmsg4", "protocol": "UDP", "affinity": True, "fell_through": []}),
    ("the local redirect over its QoS limit, then the service", {QOS: LOCAL},
     {"tier": "service", "result": "redirected", "fell_through": ["localRedirect: qos"]}),
    ("a backend skipping its own redirect", {SELF: LOCAL}, {"fell_through": ["localRedirect: self"]}),
    ("an empty service refused: its own reason is the result", {EMPTY: SERVICE, "result": abi.Result.REJECTED},
     {"result": "rejected", "fell_through": ["service: no backend"]}),
    ("every tier declined: the last reason is the result, not a fall-through",
     {SELF: LOCAL, QOS: BALANCING, EMPTY: SERVICE, "result": abi.Result.NO_BACKEND},
     {"result": "no-backend", "fell_through": ["localRedirect: self", "balancing: qos"]}),
    ("numbers this reader does not know are shown as numbers", {"hook": 9, "tier": abi.TIER_NONE, "result": 42,
                                                                "protocol": 99, "policy_id": 0},
     {"hook": "9", "tier": "-", "result": "42", "protocol": "99", "policy": ""}),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "expected"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_a_raw_event_decodes_to_what_the_program_decided(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    two_seconds_ago = time.monotonic_ns() - 2_000_000_000  # the kernel stamps events with CLOCK_MONOTONIC
    raw = raw_event(timestamp_ns=two_seconds_ago, **fields)
    event = resolution_event(raw, lambda policy_id: {3: "default/web"}.get(policy_id, ""))
    assert {key: getattr(event, key) for key in expected} == expected
    assert (event.pid, event.cgroup_id, event.netns_cookie, event.socket_cookie) == (31, 4242, 7, 99)
    assert abs(event.timestamp - (time.time() - 2)) < 0.5, "shown as wall-clock time"
