"""No self-redirect: a tier skips clients in (or below) the cgroups it names, so a node-local DNS
pod that forwards to the kube-dns ClusterIP is not redirected to itself."""

from __future__ import annotations

import os

from datapath.lb import EventStream, MapReader
from tests.datapath.conftest import BACKEND_PORT, BACKENDS, VIP, Topology, frontend, state

LOCAL, SERVICE = f"{BACKENDS[0]}:{BACKEND_PORT}", f"{BACKENDS[1]}:{BACKEND_PORT}"


def test_a_tier_skips_its_own_backends_pods_and_their_descendants(topology: Topology) -> None:
    dns_pod = topology.child_cgroup("pod-node-local-dns")
    container = topology.child_cgroup("pod-node-local-dns", "container")
    other_pod = topology.child_cgroup("pod-client")
    gone = 2**40 + 7  # a pod cgroup that no longer exists: skips nobody
    dns_pod_id = os.stat(dns_pod).st_ino
    topology.lb.apply(
        state(
            localRedirect=[frontend(VIP, 80, BACKENDS[:1], policy="node-local-dns", skipCgroups=[dns_pod_id, gone])],
            service=[frontend(VIP, 80, BACKENDS[1:2], policy="kube-dns")],
        )
    )

    with EventStream(topology.bpffs, skip_backlog=True) as stream:
        from_dns_pod = topology.client_in(dns_pod, "tcp", VIP, "80", "--count", "4")
        from_container = topology.client_in(container, "tcp", VIP, "80", "--count", "4")
        from_other_pod = topology.client_in(other_pod, "tcp", VIP, "80", "--count", "4")
        events = list(stream.follow(timeout=3, count=12))

    assert from_dns_pod["answers"] == {SERVICE: 4}, "the node-local DNS pod reaches kube-dns, not itself"
    assert from_container["answers"] == {SERVICE: 4}, "a descendant cgroup is skipped too"
    assert from_other_pod["answers"] == {LOCAL: 4}
    skipped = [event for event in events if event.cgroup_id != os.stat(other_pod).st_ino]
    assert {(event.tier, tuple(event.fell_through)) for event in skipped} == {("service", ("localRedirect: self",))}


def test_a_frontend_that_skips_its_only_clients_declines_self_and_explain_agrees(topology: Topology) -> None:
    pod = topology.child_cgroup("pod")
    pod_id = os.stat(pod).st_ino
    topology.lb.apply(state(service=[frontend(VIP, 80, BACKENDS[:1], skipCgroups=[pod_id])]))

    with EventStream(topology.bpffs, skip_backlog=True) as stream:
        result = topology.client_in(pod, "tcp", VIP, "80", "--count", "2")
        (event, _second) = list(stream.follow(timeout=3, count=2))

    assert result["answers"] == {f"{VIP}:80": 2}, "declined: the connect goes to the address unchanged"
    assert (event.result, event.tier) == ("declined-self", "service")
    with MapReader(topology.bpffs) as reader:
        for_pod = reader.explain(VIP, 80, "TCP", client_cgroup=pod_id)
        for_others = reader.explain(VIP, 80, "TCP")
        assert reader.dump()["tiers"]["service"][0]["skipCgroups"] == [pod_id]
    assert for_pod.resolved_by is None and "skips this client" in for_pod.entries[0].verdict
    assert for_others.resolved_by == "service" and f"skips cgroups {pod_id}" in for_others.lines()[1]
