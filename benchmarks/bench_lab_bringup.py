"""Bring-up time of the lab federation (hub + N members), cold and warm, measured in one run.

cold: from nothing (after `lab down`) until every apiserver answers /readyz, the CRDs are
      Established, and every node is registered.
warm: `lab up` again on the running lab (the idempotent check-and-skip path).

Usage: python benchmarks/bench_lab_bringup.py [--members 2] [--nodes-per-cluster 2] [--rounds 3]
It takes the lab down first and leaves it down at the end.
"""

from __future__ import annotations

import argparse
import statistics
import time

from lab import federation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--nodes-per-cluster", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    cold: list[float] = []
    warm: list[float] = []
    for _ in range(args.rounds):
        federation.down()
        started = time.perf_counter()
        federation.up(args.members, args.nodes_per_cluster)
        cold.append(time.perf_counter() - started)
        started = time.perf_counter()
        federation.up(args.members, args.nodes_per_cluster)
        warm.append(time.perf_counter() - started)
    federation.down()

    print(f"lab bring-up, hub + {args.members} members, {args.nodes_per_cluster} nodes per member, "
          f"{args.rounds} rounds")
    print(f"cold: median {statistics.median(cold):.1f} s (min {min(cold):.1f}, max {max(cold):.1f})")
    print(f"warm: median {statistics.median(warm):.2f} s (min {min(warm):.2f}, max {max(warm):.2f})")
    print(f"warm/cold ratio: {statistics.median(warm) / statistics.median(cold):.3f}")


if __name__ == "__main__":
    main()
