"""`helm install` of the test chart (tests/lab/charts/workload-probe) on member-1 of a lab with a
hub and 2 members of 2 nodes each, until every pod of the release is Running and Ready.

The chart makes 5 pods: a Deployment of 2, a DaemonSet (one per node, hostNetwork) and the
intruder Deployment of 1. Each round measures, in one run:
- the wall time of `helm install --wait`;
- when a poller (one API list every 50 ms) first saw every pod bound to a node, every container
  running, and every pod Ready, counted from the start of `helm install`;
- per pod, the lab kubelet's part: bound -> container running, and running -> Ready (the
  container's Python start-up and its first successful readiness probe).
Then `helm uninstall --wait` and the namespace's deletion, before the next round.

Usage: python -m benchmarks.bench_lab_helm_install [--rounds 3]      (as root, from the repo root)
The lab is brought up when it is not, and left up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from lab import federation, kubeapi
from lab.state import LabState
from lab.toolchain import tool_path

CHART = Path(__file__).resolve().parent.parent / "tests" / "lab" / "charts" / "workload-probe"
CLUSTER = "member-1"
NAMESPACE = "bench-helm"
PODS = 5


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions")
               or [])


def _running(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all("running" in s.get("state", {}) for s in statuses)


class Poller(threading.Thread):
    """First time each pod was seen bound, running and Ready, in seconds since `started`."""

    def __init__(self, started: float) -> None:
        super().__init__(daemon=True)
        self.started = started
        self.seen: dict[str, dict[str, float]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        cluster = LabState.load().clusters[CLUSTER]
        while not self.stop.is_set():
            pods, _ = kubeapi.list_pods(cluster, f"metadata.namespace={NAMESPACE}")
            now = time.perf_counter() - self.started
            for pod in pods:
                seen = self.seen.setdefault(pod["metadata"]["name"], {})
                for milestone, reached in (("bound", bool(pod["spec"].get("nodeName"))), ("running", _running(pod)),
                                           ("ready", _ready(pod))):
                    if reached:
                        seen.setdefault(milestone, now)
            time.sleep(0.05)

    def all_reached(self, milestone: str) -> float:
        times = [seen[milestone] for seen in self.seen.values() if milestone in seen]
        return max(times) if len(times) >= PODS else float("nan")


def helm(*args: str) -> None:
    env = {**os.environ, "KUBECONFIG": str(federation.kubeconfig(CLUSTER))}
    subprocess.run([str(tool_path("helm")), *args], env=env, check=True, capture_output=True, timeout=300)


def one_round() -> tuple[float, Poller]:
    started = time.perf_counter()
    poller = Poller(started)
    poller.start()
    helm("install", "bench", str(CHART), "-n", NAMESPACE, "--create-namespace", "--wait", "--timeout", "180s")
    wall = time.perf_counter() - started
    time.sleep(0.2)
    poller.stop.set()
    poller.join()
    helm("uninstall", "bench", "-n", NAMESPACE, "--wait")
    kubeapi.kubectl(LabState.load().clusters[CLUSTER], ["delete", "namespace", NAMESPACE, "--timeout=120s"])
    return wall, poller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    federation.up(2, 2)

    rows: list[tuple[float, float, float, float]] = []
    starts: list[float] = []
    readies: list[float] = []
    print(f"helm install of {CHART.name} ({PODS} pods) on {CLUSTER}, hub + 2 members x 2 nodes")
    print(f"{'round':>5} {'helm --wait':>12} {'all bound':>10} {'all running':>12} {'all ready':>10}")
    for index in range(1, args.rounds + 1):
        wall, poller = one_round()
        row = (wall, poller.all_reached("bound"), poller.all_reached("running"), poller.all_reached("ready"))
        rows.append(row)
        for seen in poller.seen.values():
            if {"bound", "running", "ready"} <= seen.keys():
                starts.append(seen["running"] - seen["bound"])
                readies.append(seen["ready"] - seen["running"])
        print(f"{index:>5} {row[0]:>11.2f}s {row[1]:>9.2f}s {row[2]:>11.2f}s {row[3]:>9.2f}s")
    medians = [statistics.median(column) for column in zip(*rows, strict=True)]
    print(f"{'median':>5} {medians[0]:>11.2f}s {medians[1]:>9.2f}s {medians[2]:>11.2f}s {medians[3]:>9.2f}s")
    print(f"all ready / helm --wait: {medians[3] / medians[0]:.2f}")
    print(f"per pod, bound -> container running: median {statistics.median(starts):.2f}s, max {max(starts):.2f}s")
    print(f"per pod, running -> Ready: median {statistics.median(readies):.2f}s, max {max(readies):.2f}s")


if __name__ == "__main__":
    main()
