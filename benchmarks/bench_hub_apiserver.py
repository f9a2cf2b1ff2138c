"""The hub operator on a real apiserver under a growing number of simulated members.

Each simulated member does what a member controller does on the hub, through the apiserver: it
registers (MemberCluster), heartbeats every 10 s (a thread patches every member's status), exports
`--services` Services (ExportedService) with one FederatedEndpointSlice of `--endpoints` endpoints
each. The real hub operator (`balancing hub run`, a process, confined to this run's namespaces)
merges them. Members are added in steps; after each step the script waits until the catalogue holds
every copy and every FederatedService lists every member, then measures:

- the members' write rate through the apiserver (namespace, registration, exports, slices);
- convergence: from the step's first write to the catalogue complete (writes included);
- propagation: `--probes` endpoint changes of random members, from the member's write (stamped
  `balancing.elf.io/changed-at`) to the hub's copy carrying it, seen through the apiserver;
- the operator's CPU (seconds used during the step) and RSS, and the machine's free memory.

It stops at the last step or when a step does not converge within `--step-timeout`.

    python -m benchmarks.bench_hub_apiserver --kubeconfig HUB [--steps 50,100,200,400] [--services 10]

Default kubeconfig: the lab's hub. Runs its own operator, confined to the run's namespaces (kopf then
opens one watch per kind and namespace); `--cluster-wide` runs it as in production (one watch per
kind), for an apiserver with no other hub. Needs the CRDs installed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

REPO = Path(__file__).resolve().parent.parent
GROUP, VERSION = "balancing.elf.io", "v1beta1"
PAGE = 500


def stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) of a process and its children so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:")) / 1024
    return cpu, rss


def free_mib() -> float:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return int(info["MemAvailable"].split()[0]) / 1024


class Run:
    def __init__(self, kubeconfig: str, services: int, endpoints: int, cluster_wide: bool) -> None:
        self.kubeconfig = kubeconfig
        self.cluster_wide = cluster_wide
        self.services, self.endpoints = services, endpoints
        self.prefix = f"bfb-{uuid.uuid4().hex[:4]}"
        self.catalogue = f"{self.prefix}-cat"
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = 32
        self.api = client.ApiClient(configuration)
        # plain JSON in and out (the typed client's models are not needed here)
        self.core: Any = client.CoreV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)
        self.pool = concurrent.futures.ThreadPoolExecutor(24)
        self.beats = concurrent.futures.ThreadPoolExecutor(8)  # heartbeats never wait behind new members' writes
        self.members: list[str] = []
        self.stop = threading.Event()
        self.heartbeat_lag = 0.0
        self.operator: subprocess.Popen[bytes] | None = None
        self.port = 19976

    # -- setup ---------------------------------------------------------------------------------------------

    def start_operator(self, log: Path) -> None:
        self.core.create_namespace({"metadata": {"name": self.catalogue, "labels": {"bench": self.prefix}}})
        env = {**os.environ, "PYTHONPATH": str(REPO), "BALANCING_CATALOGUE_NAMESPACE": self.catalogue,
               "BALANCING_METRICS_ADDRESS": f"127.0.0.1:{self.port}"}
        if not self.cluster_wide:  # kopf then watches each namespace on its own: a watch per kind and namespace
            env["BALANCING_WATCH_NAMESPACES"] = f"{self.prefix}-*"
        with log.open("ab") as out:
            self.operator = subprocess.Popen([sys.executable, "-m", "balancing", "hub", "run", "--kubeconfig",
                                              self.kubeconfig], env=env, stdout=out, stderr=subprocess.STDOUT,
                                             start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"the operator did not get ready; see {log}")

    def add_member(self, index: int) -> None:
        name = f"{self.prefix}-m{index:04d}"
        self.core.create_namespace({"metadata": {"name": name, "labels": {"bench": self.prefix}}})
        self.custom.create_namespaced_custom_object(GROUP, VERSION, name, "memberclusters", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "MemberCluster", "metadata": {"name": name},
            "spec": {"podCIDRs": [f"10.{index // 256}.{index % 256}.0/24"]}})
        self.beat(name)
        for service in range(self.services):
            self.custom.create_namespaced_custom_object(GROUP, VERSION, name, "exportedservices", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "ExportedService",
                "metadata": {"name": f"{name}.bench.svc-{service}"},
                "spec": {"cluster": name, "namespace": "bench", "serviceName": f"svc-{service}",
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
            self.custom.create_namespaced_custom_object(GROUP, VERSION, name, "federatedendpointslices",
                                                        self.slice(name, index, service, 0))
        self.members.append(name)

    def slice(self, name: str, index: int, service: int, version: int) -> dict[str, Any]:
        endpoints = [{"addresses": [f"10.{index // 256}.{index % 256}.{(service * self.endpoints + e) % 254 + 1}"],
                      "nodeName": f"{name}-node-{(e + version) % 3}"} for e in range(self.endpoints)]
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FederatedEndpointSlice",
                "metadata": {"name": f"{name}.bench.svc-{service}-1",
                             "annotations": {"balancing.elf.io/changed-at": stamp()}},
                "spec": {"cluster": name, "service": {"namespace": "bench", "name": f"svc-{service}"},
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints}}

    def beat(self, name: str) -> None:
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, name, "memberclusters", name,
                                                          {"status": {"lastHeartbeatTime": stamp()[:19] + "Z"}})

    def heartbeats(self) -> None:
        """Every member heartbeats every 10 s, as a member controller would."""
        while not self.stop.wait(0):
            started = time.monotonic()
            list(self.beats.map(self.beat, list(self.members)))
            self.heartbeat_lag = time.monotonic() - started
            self.stop.wait(max(0.0, 10.0 - self.heartbeat_lag))

    # -- measuring -----------------------------------------------------------------------------------------

    def count(self, plural: str) -> int:
        total, token = 0, None
        while True:
            page = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.catalogue, plural, limit=PAGE,
                                                             _continue=token)
            total += len(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                return total

    def complete(self) -> bool:
        if self.count("federatedendpointslices") != len(self.members) * self.services:
            return False
        services = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.catalogue, "federatedservices")
        return len(services["items"]) == self.services and all(
            len((s.get("status") or {}).get("clusters") or []) == len(self.members) for s in services["items"])

    def probe(self) -> float:
        """One member's endpoints change; seconds until the hub's copy carries the change."""
        index = random.randrange(len(self.members))
        name, service = self.members[index], random.randrange(self.services)
        body = self.slice(name, index, service, random.randrange(1, 1000))
        changed = body["metadata"]["annotations"]["balancing.elf.io/changed-at"]
        current = self.custom.get_namespaced_custom_object(GROUP, VERSION, name, "federatedendpointslices",
                                                           body["metadata"]["name"])
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        started = time.monotonic()
        self.custom.replace_namespaced_custom_object(GROUP, VERSION, name, "federatedendpointslices",
                                                     body["metadata"]["name"], body)
        while time.monotonic() - started < 60:
            copy = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.catalogue,
                                                            "federatedendpointslices", body["metadata"]["name"])
            if copy["metadata"].get("annotations", {}).get("balancing.elf.io/changed-at") == changed:
                return time.monotonic() - started
            time.sleep(0.02)
        return float("inf")

    def cleanup(self) -> None:
        self.stop.set()
        if self.operator is not None and self.operator.poll() is None:
            self.operator.terminate()
            self.operator.wait(timeout=30)
        names = [self.catalogue, *self.members]
        list(self.pool.map(lambda n: self.core.delete_namespace(n, _preload_content=False), names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", help="the hub's kubeconfig (default: the lab's hub)")
    parser.add_argument("--steps", default="50,100,200,400", help="member counts to reach, in order")
    parser.add_argument("--services", type=int, default=10, help="exported Services per member")
    parser.add_argument("--endpoints", type=int, default=10, help="endpoints per member and Service")
    parser.add_argument("--probes", type=int, default=20, help="endpoint changes timed per step")
    parser.add_argument("--step-timeout", type=float, default=900.0, help="seconds to converge before stopping")
    parser.add_argument("--log", default="/tmp/bench-hub-operator.log")
    parser.add_argument("--pids", default="", help="other processes to report, e.g. apiserver=123,etcd=456")
    parser.add_argument("--cluster-wide", action="store_true",
                        help="run the operator as in production, watching the whole cluster (only on an apiserver "
                             "with no other hub: by default it is confined to this run's namespaces)")
    args = parser.parse_args()
    kubeconfig = args.kubeconfig
    if kubeconfig is None:
        from lab import federation

        kubeconfig = str(federation.kubeconfig("hub"))
    run = Run(kubeconfig, args.services, args.endpoints, args.cluster_wide)
    run.start_operator(Path(args.log))
    assert run.operator is not None
    beater = threading.Thread(target=run.heartbeats, daemon=True)
    beater.start()
    print(f"{run.prefix}: {args.services} Services x {args.endpoints} endpoints per member; "
          f"{'cluster-wide' if args.cluster_wide else 'namespace-confined'} operator; "
          f"operator pid {run.operator.pid}; {os.cpu_count()} CPUs")
    print(f"{'members':>7} {'objects':>8} {'write/s':>8} {'converge s':>10} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'op CPU s':>8} {'op RSS MiB':>10} {'free MiB':>9} {'beat s':>6}")
    others = {name: int(pid) for name, _, pid in (item.partition("=") for item in args.pids.split(",") if item)}
    rows: list[dict[str, float]] = []
    try:
        for target in (int(step) for step in args.steps.split(",")):
            cpu_before, _rss = proc_stat(run.operator.pid)
            others_before = {name: proc_stat(pid)[0] for name, pid in others.items()}
            started = time.monotonic()
            list(run.pool.map(run.add_member, range(len(run.members), target)))
            written = time.monotonic() - started
            while not run.complete():
                if time.monotonic() - started > args.step_timeout:
                    print(f"{target}: not converged within {args.step_timeout:.0f} s: stopping")
                    return
                time.sleep(1.0)
            converged = time.monotonic() - started
            probes = sorted(run.probe() for _ in range(args.probes))
            cpu_after, rss = proc_stat(run.operator.pid)
            objects = target * (1 + 2 * args.services) + target * args.services + args.services
            previous = rows[-1]["members"] if rows else 0
            writes = (target - previous) * (2 + 2 * args.services)  # namespace, registration, exports, slices
            row = {"members": target, "objects": objects, "writes_per_s": writes / written, "converge_s": converged,
                   "p50_ms": statistics.median(probes) * 1000, "p99_ms": probes[int(0.99 * (len(probes) - 1))] * 1000,
                   "operator_cpu_s": cpu_after - cpu_before, "operator_rss_mib": rss, "free_mib": free_mib(),
                   "heartbeat_round_s": run.heartbeat_lag}
            for name, pid in others.items():
                cpu, other_rss = proc_stat(pid)
                row[f"{name}_cpu_s"], row[f"{name}_rss_mib"] = cpu - others_before[name], other_rss
            rows.append(row)
            print(f"{target:>7} {objects:>8} {row['writes_per_s']:>8.0f} {converged:>10.1f} {row['p50_ms']:>7.0f} "
                  f"{row['p99_ms']:>7.0f} {row['operator_cpu_s']:>8.1f} {rss:>10.0f} {row['free_mib']:>9.0f} "
                  f"{run.heartbeat_lag:>6.1f}" + "".join(f"  {name}: {row[name + '_cpu_s']:.0f} s CPU, "
                                                          f"{row[name + '_rss_mib']:.0f} MiB" for name in others),
                  flush=True)
    finally:
        print(json.dumps(rows))
        run.cleanup()


if __name__ == "__main__":
    main()
