"""Map writes, desired state to kernel: a full sync of 100,000 backends and a single-backend change.

Real pinned maps on a throwaway cgroup and bpffs directory. Steps, each timed separately:
- parse + validate a 10,000 services x 10 backends document (dict -> DesiredState);
- full sync of that validated state into empty maps (diff + batch writes);
- re-apply of the same state by a restarted writer (adopt: read every map back, diff, write nothing);
- one backend of one service changed, applied two ways: the incremental `upsert` of that one
  frontend (what an agent does on an endpoint event), and a full-state `apply` (diff of all 10,000).

    python -m benchmarks.bench_datapath_sync [--services 10000] [--backends 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from datapath.lb import ApplyReport, DesiredState, FrontendSpec, SocketLB, Tier, detach, ensure_object, parse_state
from lab import host

T = TypeVar("T")


def timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def restart_and_apply(bpffs: Path, cgroup: Path, object_path: Path, desired: DesiredState) -> ApplyReport:
    """What a restarted agent does: open the pins, read the kernel's state, diff, write what differs."""
    with SocketLB(bpffs, cgroup, object_path) as restarted:
        return restarted.apply(desired)


def address(index: int) -> str:
    return f"10.{128 + index // 65536}.{index // 256 % 256}.{index % 256}"


def document(services: int, backends: int, bump: int = -1) -> dict[str, Any]:
    return {
        "tiers": {
            "service": [
                {
                    "ip": f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}",
                    "port": 80,
                    "protocol": "TCP",
                    "policy": f"ns{i % 100}/svc{i}",
                    "backends": [
                        {"ip": address(i * backends + b), "port": 8080 + (b == 0 and i == bump)}
                        for b in range(backends)
                    ],
                }
                for i in range(services)
            ]
        }
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--backends", type=int, default=10, help="backends per service")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each step (the median is printed)")
    args = parser.parse_args()

    host.ensure_bpffs()
    tag = uuid.uuid4().hex[:6]
    cgroup = host.cgroup_create(host.CGROUP2_ROOT / f"bfbench{tag}")
    bpffs = host.BPFFS_ROOT / f"bfbench{tag}"
    total = args.services * args.backends
    raw = document(args.services, args.backends)
    bumped = document(args.services, args.backends, bump=args.services // 2)
    try:
        object_path = ensure_object()
        parse_times = [timed(lambda: parse_state(raw))[1] for _ in range(args.repeat)]
        desired = parse_state(raw)
        changed_state = parse_state(bumped)
        changed_spec: FrontendSpec = changed_state.tiers.service[args.services // 2]
        original_spec: FrontendSpec = desired.tiers.service[args.services // 2]

        full, adopt, upsert, full_diff = [], [], [], []
        for _ in range(args.repeat):
            lb = SocketLB(bpffs, cgroup, object_path)
            lb.apply(DesiredState())  # load and attach: not part of the sync
            assert lb.writer is not None
            report, seconds = timed(functools.partial(lb.writer.apply, desired))
            assert report.added == args.services and report.elements_written >= 2 * total
            full.append(seconds)
            restarted, seconds = timed(functools.partial(restart_and_apply, bpffs, cgroup, object_path, desired))
            assert restarted.elements_written == 0 and restarted.unchanged == args.services
            adopt.append(seconds)
            for spec in (changed_spec, original_spec):  # change one backend, then change it back
                report, seconds = timed(functools.partial(lb.upsert, Tier.SERVICE, spec))
                assert report.swapped == 1
                upsert.append(seconds)
            for state in (changed_state, desired):
                report, seconds = timed(functools.partial(lb.writer.apply, state))
                assert report.swapped == 1 and report.unchanged == args.services - 1
                full_diff.append(seconds)
            lb.close()
            detach(bpffs, cgroup)

        def line(label: str, samples: list[float], target: str = "") -> str:
            low, median, high = (value * 1000 for value in (min(samples), statistics.median(samples), max(samples)))
            return f"{label:<58} median {median:9.2f} ms  (min {low:.2f}, max {high:.2f}){target}"

        print(f"{args.services} services x {args.backends} backends = {total} backends, {args.repeat} runs")
        print(line("parse + validate the document", parse_times))
        print(line("full sync, validated state -> kernel", full, "   target < 500 ms"))
        print(line("full sync incl. parse + validate", [p + f for p, f in zip(parse_times, full, strict=True)]))
        print(line("restart: load, adopt the pins, diff, write nothing", adopt))
        print(line("one backend changed: upsert of its frontend", upsert, "   target < 2 ms"))
        print(line("one backend changed: full-state apply (diff of all)", full_diff))
    finally:
        detach(bpffs, cgroup)
        host.cgroup_remove(cgroup)


if __name__ == "__main__":
    main()
