"""UDP through a VIP: a real DNS query answered by dnsmasq, replies shown from the VIP."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from lab import host
from tests.datapath.conftest import BACKEND_PORT, BACKENDS, VIP2, Topology, frontend, state

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
NAME = "probe.bft.test"


def start_dnsmasq(topology: Topology, listen: str, answer: str) -> None:
    topology.kernel.spawn(
        [
            DNSMASQ,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            f"--listen-address={listen}",
            "--port=53",
            "--pid-file",
            "--user=root",
            "--log-facility=-",
            f"--address=/{NAME}/{answer}",
        ],
        netns=topology.backend_ns,
    )
    deadline = time.monotonic() + 10
    while True:
        out = host.ns_run(
            topology.backend_ns, ["dig", f"@{listen}", NAME, "+short", "+time=1", "+tries=1"], check=False
        )
        if out.strip() == answer:
            return
        assert time.monotonic() < deadline, f"dnsmasq on {listen} did not answer"
        time.sleep(0.1)


@pytest.mark.skipif(not Path(DNSMASQ).exists(), reason="dnsmasq (Debian dnsmasq-base) is not installed")
def test_a_dns_query_to_the_vip_is_answered_by_a_dnsmasq_backend(topology: Topology) -> None:
    start_dnsmasq(topology, BACKENDS[0], "10.1.2.1")
    start_dnsmasq(topology, BACKENDS[1], "10.1.2.2")
    topology.lb.apply(state(service=[frontend(VIP2, 53, [f"{BACKENDS[0]}:53", f"{BACKENDS[1]}:53"], "UDP")]))

    # dig connects its UDP socket, so the kernel matches replies to the translated peer itself.
    answers = set()
    for _ in range(3):
        result = topology.kernel.run_in(
            ["dig", f"@{VIP2}", NAME, "+short", "+time=2", "+tries=1"],
            netns=topology.client_ns,
            cgroup=topology.cgroup,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        answers.add(result.stdout.strip())
    assert answers <= {"10.1.2.1", "10.1.2.2"} and answers, answers

    # A resolver with an unconnected socket sees each reply's source: it must be the VIP.
    resolver = topology.client("dns", VIP2, "53", NAME, "--count", "20")
    assert resolver["failures"] == 0, resolver["errors"]
    assert resolver["sources"] == {f"{VIP2}:53": 20}
    assert set(resolver["answers"]) == {"10.1.2.1", "10.1.2.2"}, "both dnsmasq backends answered"


def test_udp_replies_come_from_the_vip_connected_or_not(topology: Topology) -> None:
    topology.add_vip(VIP2, ports=(9053,))
    topology.lb.apply(state(service=[frontend(VIP2, 9053, BACKENDS[:2], "UDP")]))
    backends = {f"{ip}:{BACKEND_PORT}" for ip in BACKENDS[:2]}

    unconnected = topology.client("udp", VIP2, "9053", "--count", "20")
    connected = topology.client("udp", VIP2, "9053", "--count", "20", "--connect")

    assert unconnected["failures"] == 0, unconnected["errors"]
    assert set(unconnected["answers"]) <= backends and sum(unconnected["answers"].values()) == 20
    assert unconnected["sources"] == {f"{VIP2}:9053": 20}
    assert connected["failures"] == 0, connected["errors"]
    assert set(connected["answers"]) <= backends and len(connected["answers"]) == 1  # connect() picks once
    assert connected["sources"] == {f"{VIP2}:9053": 20, f"getpeername {VIP2}:9053": 20}
