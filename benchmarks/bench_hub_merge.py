"""The hub's reconcile at scale, pure: members x exported Services x endpoints, full and incremental.

Every member exports the same Services (the MCS fan-in: each FederatedService merges one export per
member) with one FederatedEndpointSlice of `--endpoints` endpoints each. The hub's objects live in a
hub.engine.MemoryIndex, which plays the apiserver (applies each plan's writes); no network, no
cluster. Printed, in one run:

- the full reconcile from scratch (what a starting hub does) and its writes;
- the process's memory once settled (RSS, with every input and every output object in memory);
- incremental changes, each timed from `touched` to the plan (the reconcile's own work, not the
  writes): one member's endpoints change; one member adds a port to an export of a Service that every
  member exports; a heartbeat that changes no verdict; a member going silent (its exports and slices
  leave the catalogue);
- each incremental change against the full reconcile (ratio).

    python -m benchmarks.bench_hub_merge [--members 1000] [--services 100] [--endpoints 10]
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crds import KubeObject, format_stamp, parse_object
from hub.engine import MemoryIndex, Plan, Reconciler, View
from hub.objects import ref
from hub.settings import HubSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
API = "balancing.elf.io/v1beta1"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cluster(index: int) -> str:
    return f"member-{index:04d}"


def pod_ip(member: int, number: int) -> str:
    """An address in the member's pod CIDR 10.(m / 256).(m % 256).0/24."""
    return f"10.{member // 256}.{member % 256}.{number % 254 + 1}"


class Bench:
    def __init__(self, members: int, services: int, endpoints: int) -> None:
        self.members, self.services, self.endpoints = members, services, endpoints
        self.settings = HubSettings(catalogue_namespace="balancing-federation")
        self.index = MemoryIndex(self.settings.catalogue_namespace)
        self.reconciler = Reconciler(self.settings, View([self.index]))
        self.now = T0
        self.version = 0

    def stamp(self, obj: KubeObject) -> None:
        self.version += 1
        extra = obj.metadata.model_extra or {}
        found = self.index.find(ref(obj))
        old = found if isinstance(found, KubeObject) else None  # a catalogue copy is kept as a digest
        extra.setdefault("creationTimestamp", (old.metadata.model_extra or {}).get("creationTimestamp") if old
                         else T0.strftime("%Y-%m-%dT%H:%M:%SZ"))
        obj.metadata.uid = old.metadata.uid if old and old.metadata.uid else f"uid-{self.version}"
        obj.metadata.resource_version = str(self.version)
        obj.metadata.generation = obj.metadata.generation or 1

    def store(self, document: dict[str, Any], touch: bool = True) -> None:
        obj = parse_object(document)
        self.stamp(obj)
        self.index.put(obj)
        if touch:
            self.reconciler.touched(obj)

    # -- the objects -------------------------------------------------------------------------------------

    def member_doc(self, m: int, heartbeat: datetime) -> dict[str, Any]:
        name = cluster(m)
        return {"apiVersion": API, "kind": "MemberCluster", "metadata": {"name": name, "namespace": name},
                "spec": {"podCIDRs": [f"10.{m // 256}.{m % 256}.0/24"]},
                "status": {"lastHeartbeatTime": heartbeat.strftime("%Y-%m-%dT%H:%M:%SZ")}}

    def export_doc(self, m: int, s: int, extra_port: bool = False) -> dict[str, Any]:
        name = cluster(m)
        ports = [{"name": "http", "port": 80, "protocol": "TCP"}]
        if extra_port:
            ports.append({"name": f"extra-{m}", "port": 10000 + m, "protocol": "TCP"})
        return {"apiVersion": API, "kind": "ExportedService",
                "metadata": {"name": f"{name}.bench.svc-{s}", "namespace": name},
                "spec": {"cluster": name, "namespace": "bench", "serviceName": f"svc-{s}", "ports": ports,
                         "exportedAt": (T0 + timedelta(seconds=m)).strftime("%Y-%m-%dT%H:%M:%SZ")}}

    def slice_doc(self, m: int, s: int, shift: int = 0, changed: datetime | None = None) -> dict[str, Any]:
        name = cluster(m)
        endpoints = [{"addresses": [pod_ip(m, s * self.endpoints + e + shift)], "nodeName": f"{name}-node-{e % 3}"}
                     for e in range(self.endpoints)]
        if shift:
            endpoints[0]["nodeName"] = f"{name}-node-{shift % 7}"
        metadata: dict[str, Any] = {"name": f"{name}.bench.svc-{s}-1", "namespace": name}
        if changed is not None:
            metadata["annotations"] = {"balancing.elf.io/changed-at": format_stamp(changed)}
        return {"apiVersion": API, "kind": "FederatedEndpointSlice", "metadata": metadata,
                "spec": {"cluster": name, "service": {"namespace": "bench", "name": f"svc-{s}"},
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints}}

    def beat(self, m: int, moment: datetime) -> None:
        """A heartbeat as the member writes it: a merge patch of status.lastHeartbeatTime."""
        current = self.index.find(ref(parse_object(self.member_doc(m, moment))))
        assert isinstance(current, KubeObject)
        document = {**current.to_api(), "apiVersion": current.api_version}
        document["status"] = {**document.get("status", {}), "lastHeartbeatTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}
        self.store(document)

    def populate(self) -> None:
        for m in range(self.members):
            self.store(self.member_doc(m, T0), touch=False)
            for s in range(self.services):
                self.store(self.export_doc(m, s), touch=False)
                self.store(self.slice_doc(m, s), touch=False)

    # -- reconciling -------------------------------------------------------------------------------------

    def apply(self, plan: Plan) -> None:
        for obj, deleted in self.index.apply(plan, self.stamp):
            self.reconciler.touched(obj, deleted=deleted)

    def settle(self) -> int:
        rounds = 0
        while True:
            plan = self.reconciler.plan(self.now)
            rounds += 1
            if not len(plan):
                return rounds
            self.apply(plan)

    def timed_change(self, change: Callable[[], None]) -> tuple[float, int]:
        """Milliseconds from the change noted to the plan made, and the plan's writes; then settle."""
        started = time.perf_counter()
        change()
        plan = self.reconciler.plan(self.now)
        elapsed = (time.perf_counter() - started) * 1000
        self.apply(plan)
        self.settle()
        return elapsed, len(plan)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--services", type=int, default=100, help="exported Services per member (the same ones)")
    parser.add_argument("--endpoints", type=int, default=10, help="endpoints per member and Service")
    parser.add_argument("--changes", type=int, default=100, help="incremental changes of each kind")
    args = parser.parse_args()
    rng = random.Random(7)
    bench = Bench(args.members, args.services, args.endpoints)
    baseline = rss_mib()
    started = time.perf_counter()
    bench.populate()
    print(f"inputs: {args.members} members x {args.services} Services x {args.endpoints} endpoints: "
          f"{len(bench.index.objects())} objects built in {time.perf_counter() - started:.1f} s")

    gc.collect()
    started = time.perf_counter()
    first = bench.reconciler.plan(bench.now)
    full_ms = (time.perf_counter() - started) * 1000
    print(f"full reconcile: {full_ms / 1000:.2f} s, {len(first.objects)} objects and {len(first.statuses)} statuses "
          f"to write, {first.services_merged} Services merged")
    started = time.perf_counter()
    bench.apply(first)
    rounds = bench.settle()
    print(f"(writes applied by the in-memory apiserver and settled in {time.perf_counter() - started:.1f} s, "
          f"{rounds} more plans)")
    gc.collect()
    settled_rss = rss_mib()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"memory: {settled_rss:.0f} MiB RSS settled ({settled_rss - baseline:.0f} MiB over the interpreter), "
          f"peak {peak:.0f} MiB; {len(bench.index.objects())} objects in the index")

    def endpoint_change() -> None:
        m, s = rng.randrange(args.members), rng.randrange(args.services)
        bench.now += timedelta(milliseconds=10)
        bench.store(bench.slice_doc(m, s, shift=rng.randrange(1, 1000), changed=bench.now))

    def export_change() -> None:
        m, s = rng.randrange(args.members), rng.randrange(args.services)
        document = bench.export_doc(m, s, extra_port=True)
        old = bench.index.find(ref(parse_object(document)))
        assert isinstance(old, KubeObject)
        document["metadata"]["generation"] = (old.metadata.generation or 1) + 1
        bench.store(document)

    def heartbeat() -> None:
        m = rng.randrange(args.members)
        bench.now += timedelta(milliseconds=10)
        bench.beat(m, bench.now)

    silent: list[int] = []

    def member_goes_silent() -> None:
        m = rng.choice([i for i in range(args.members) if i not in silent])
        silent.append(m)
        bench.beat(m, bench.now - timedelta(seconds=3600))

    kinds: list[tuple[str, Callable[[], None], int]] = [
        ("one member's endpoints change", endpoint_change, args.changes),
        (f"a port added to an export ({args.members} exporters)", export_change, max(5, args.changes // 5)),
        ("a heartbeat (no verdict changes)", heartbeat, args.changes),
        (f"a member goes silent ({args.services} exports, {args.services} copies)", member_goes_silent,
         max(3, args.changes // 20)),
    ]
    print(f"\n{'incremental change':<58} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'writes':>7} "
          f"{'full/p50':>9}")
    for label, change, count in kinds:
        results = [bench.timed_change(change) for _ in range(count)]
        times = [ms for ms, _writes in results]
        writes = statistics.median(w for _ms, w in results)
        p50 = statistics.median(times)
        print(f"{label:<58} {count:>4} {p50:>8.2f} {percentile(times, 0.99):>8.2f} {max(times):>8.2f} "
              f"{writes:>7.0f} {full_ms / p50:>9.0f}")
    print(f"\ntarget: < 50 ms per incremental change, < 4096 MiB; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
