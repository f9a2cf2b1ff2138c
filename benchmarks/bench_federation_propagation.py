"""Federation: how long an endpoint change in member-2 takes to reach the kernel of a member-1 node, and how
long a new member takes from `helm install` to its first import programmed.

Everything is the product as installed: the hub chart on the hub, `balancing hub add-member`, the member
chart with the values it prints. member-2 exports a selectorless Service `probe` (TCP 80) whose one
EndpointSlice this script writes: 10 endpoints that it flips between a set whose port accepts (10.88.1.1-10:8080,
a C accept-and-close server in a backends namespace on a veth of member-1-node-1) and a set that refuses
(10.88.2.1-10:8081, where nothing listens), as benchmarks/bench_member_vs_kube_proxy.py does in one cluster.

- **Join.** member-1 starts without the member chart. The clock starts at `balancing hub add-member
  member-1` and stops at the first connect from member-1-node-1 to the probe's clusterset IP that reaches
  the accepting backends: add-member, `helm install` (no --wait), the pods starting, the member controller
  registering and importing, the node agent programming the import.
- **Change -> kernel.** Each flip stamps `endpoints.kubernetes.io/last-change-trigger-time` with the wall
  time just before its PATCH to member-2's apiserver; a prober on member-1-node-1 (in the node's cgroup,
  where the agent's socket LB applies) connects to the clusterset IP every millisecond and reports the first
  connect with the new outcome. The latency is that moment minus the trigger time: member-2's apiserver and
  controller, the hub's apiserver and operator, member-1's controller, apiserver and agent, and the kernel.
  Beside it, the agent's own histogram over the same changes (`balancing_agent_network_programming_duration_
  seconds`, measured from the same source stamp) and the hub's (`balancing_hub_propagation_seconds`).

    python -m benchmarks.bench_federation_propagation [--changes 200] [--spacing 1.0]

Needs the lab (`balancing lab up`; started if down). Leaves the lab up with both members joined.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench_datapath_connect import build_tool
from benchmarks.bench_member_vs_kube_proxy import (
    ACCEPTING,
    AGENT_METRICS_PORT,
    PROBE,
    SERVICE_PORT,
    TARGET_PORT,
    Prober,
    bucket_percentiles,
    buckets,
    endpoint_slice,
    fetch,
    percentile,
    set_probe_endpoints,
    setup_backends,
    teardown_backends,
)
from lab.addressing import ClusterAddressing
from lab.demo import add_member, install_hub, install_member, uninstall_member
from lab.state import LAB_DIR, LabState, NodeRecord
from lab.testing import Federation
from member import kube

NAMESPACE = "bench-propagation"
SYSTEM = "balancing-system"
SOURCE, TARGET = "member-2", "member-1"
CATALOGUE = "balancing-federation"
HUB_METRICS_PORT = 9966  # charts/hub values operator.metricsPort
AGENT_HISTOGRAM = "balancing_agent_network_programming_duration_seconds"
HUB_HISTOGRAM = "balancing_hub_propagation_seconds"


def clusterset_ip(lab: Federation, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = lab.kubectl("hub", "get", "federatedservices", f"{NAMESPACE}.{PROBE}", "-n", CATALOGUE, "-o", "json",
                            check=False)
        if found.returncode == 0 and (ips := (json.loads(found.stdout).get("spec") or {}).get("ips")):
            return str(ips[0])
        time.sleep(0.2)
    raise RuntimeError(f"the hub allocated no clusterset IP to {NAMESPACE}/{PROBE} within {timeout:.0f} s")


def export_probe(lab: Federation, api: kube.Api) -> None:
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": PROBE, "namespace": NAMESPACE},
         "spec": {"ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": TARGET_PORT, "protocol": "TCP"}]}},
        endpoint_slice(PROBE, ACCEPTING, NAMESPACE),
        {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
         "metadata": {"name": PROBE, "namespace": NAMESPACE}},
    ]
    for cluster in (SOURCE, TARGET):
        lab.kubectl(cluster, "create", "namespace", NAMESPACE, check=False)  # MCS namespace sameness
    lab.kubectl(SOURCE, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    set_probe_endpoints(api, True, NAMESPACE)


def scrape(url: str, histogram: str) -> dict[float, float]:
    status, text = fetch(url)
    return buckets(text, histogram) if status == 200 else {}


def hub_metrics_url(lab: Federation) -> str:
    pods = json.loads(lab.kubectl("hub", "get", "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/component=operator",
                                  "-o", "json").stdout)["items"]
    return f"http://{pods[0]['status']['podIP']}:{HUB_METRICS_PORT}/metrics"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--spacing", type=float, default=1.0, help="mean seconds between changes")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one change may take to be seen")
    args = parser.parse_args(argv)

    lab = Federation.up() if not LabState.load().clusters.get(TARGET) else Federation()
    state = LabState.load()
    node: NodeRecord = state.nodes[sorted(n for n, r in state.nodes.items() if r.cluster == TARGET)[0]]
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs; kernel "
          f"{os.uname().release}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{len(state.clusters)} clusters, {len(state.nodes)} nodes; prober on {node.name} of {TARGET}")
    workdir = LAB_DIR / "bench-propagation"
    workdir.mkdir(parents=True, exist_ok=True)
    source_api = kube.Api(kube.api_client(str(lab.kubeconfig(SOURCE))))
    tool = build_tool()
    prober: Prober | None = None
    try:
        uninstall_member(lab, TARGET)
        install_hub(lab)
        install_member(lab, SOURCE, add_member(lab, SOURCE, workdir))
        export_probe(lab, source_api)
        ip = clusterset_ip(lab, 120)
        setup_backends(node, str(ClusterAddressing(TARGET).service_cidr), tool)
        prober = Prober(node, Path(node.cgroup) / "system")

        print(f"\njoining {TARGET}: add-member, helm install, until {node.name} connects through {ip}:{SERVICE_PORT}")
        started = time.time()
        install_member(lab, TARGET, add_member(lab, TARGET, workdir), wait=False)
        installed = time.time()
        reached = prober.wait_for("open", ip, 600)
        print(f"  add-member + helm install returned after {installed - started:.1f} s; first import programmed "
              f"after {reached - started:.1f} s")

        agent_url = f"http://{node.underlay_ip}:{AGENT_METRICS_PORT}/metrics"
        hub_url = hub_metrics_url(lab)
        agent_before, hub_before = scrape(agent_url, AGENT_HISTOGRAM), scrape(hub_url, HUB_HISTOGRAM)
        latencies: list[float] = []
        missed = 0
        accepting = True
        print(f"\n{args.changes} endpoint changes in {SOURCE}, observed in {node.name}'s kernel "
              f"(load average {os.getloadavg()[0]:.2f})", flush=True)
        for _ in range(args.changes):
            time.sleep(random.uniform(0.5 * args.spacing, 1.5 * args.spacing))
            accepting = not accepting
            trigger = set_probe_endpoints(source_api, accepting, NAMESPACE)
            seen = prober.wait_for("open" if accepting else "refused", ip, args.timeout)
            if seen == float("inf"):
                missed += 1
            else:
                latencies.append(seen - trigger)
        agent_after, hub_after = scrape(agent_url, AGENT_HISTOGRAM), scrape(hub_url, HUB_HISTOGRAM)
        if not latencies:
            raise RuntimeError(f"none of {args.changes} changes was seen within {args.timeout:.0f} s")
        print(f"  change -> kernel: p50 {ms(percentile(latencies, 0.5))} ms, p99 {ms(percentile(latencies, 0.99))} ms, "
              f"max {ms(max(latencies))} ms, min {ms(min(latencies))} ms; {len(latencies)} seen, {missed} not seen "
              f"within {args.timeout:.0f} s")
        print(f"  the agent's own histogram (from the source stamp): {bucket_percentiles(agent_before, agent_after)}")
        print(f"  the hub's propagation histogram (source stamp -> hub write): "
              f"{bucket_percentiles(hub_before, hub_after)}")
    finally:
        if prober is not None:
            prober.close()
        teardown_backends(node)
        for cluster in (SOURCE, TARGET):
            lab.kubectl(cluster, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)
    print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
