"""Connect rate through a VIP vs a direct connect, with NodePort wildcard frontends present, this tree
against a baseline revision, in one run.

The namespaces, backends and C client are those of bench_datapath_connect. Each round loads the
baseline's datapath (its own `balancing datapath apply`, from `git archive REV`) with N services, and
then this tree's with the same N services plus N NodePort services (0.0.0.0 frontends on ports
20000+, 3 backends each) and 500 node addresses, of which the client's own address is one; the two alternate so the
load on the machine falls on both alike. In each, `direct` connects to the measured service's 10
backends in turn and `VIP` to the service; with this tree, `NodePort` connects to the client's own
address on the measured service's node port. The connect4 program's own cost comes from bpf_stats.

    python -m benchmarks.bench_datapath_nodeport [--baseline main] [--services 10000] [--rounds 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.baseline import export_tree
from benchmarks.bench_datapath_connect import BACKENDS, PORT, Bench, ProgramCost, backends_of, build_tool, vip
from datapath.lb import NODE_PORT_ANY

REPO = Path(__file__).resolve().parent.parent
CLIENT_NODE_IP = "10.88.0.1"  # the socket-LB client namespace's own address
NODE_PORT_BASE = 20000


def document(services: int, node_ports: bool) -> dict[str, Any]:
    measured = services // 2
    service: list[dict[str, Any]] = [
        {
            "ip": vip(i),
            "port": 80,
            "protocol": "TCP",
            "backends": [{"ip": b, "port": PORT} for b in backends_of(i, measured)],
        }
        for i in range(services)
    ]
    if not node_ports:
        return {"tiers": {"service": service}}
    # Each frontend has a backend set of its own: 3 backends per NodePort (10 for the measured one)
    # keep 10,000 + 10,000 frontends within the 131,072 backends a state may hold.
    wildcards = [
        {
            **entry,
            "ip": NODE_PORT_ANY,
            "port": NODE_PORT_BASE + i,
            "backends": entry["backends"][: 10 if i == measured else 3],
        }
        for i, entry in enumerate(service)
    ]
    nodes = [CLIENT_NODE_IP, *(f"172.31.{i // 256}.{i % 256}" for i in range(1, 500))]
    return {"nodeAddresses": nodes, "tiers": {"service": service + wildcards}}


def load(bench: Bench, tree: Path, state: dict[str, Any], scratch: Path) -> None:
    """Detach whatever is loaded, then load `tree`'s datapath with `state`, as that release would."""
    state_file = scratch / "state.json"
    state_file.write_text(json.dumps(state))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for verb in (["detach"], ["apply", str(state_file)]):
        command = [sys.executable, "-m", "balancing", "datapath", verb[0], "--bpffs", str(bench.bpffs),
                   "--cgroup", str(bench.cgroup), *verb[1:]]  # fmt: skip
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} in {tree} failed: {done.stderr.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="main", help="git revision to compare against")
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    args = parser.parse_args()

    tool = build_tool()
    bench = Bench()
    stats_switch = Path("/proc/sys/kernel/bpf_stats_enabled")
    stats_before = stats_switch.read_text().strip()
    measured = vip(args.services // 2)
    samples: dict[str, list[tuple[float, float]]] = {}
    costs: dict[str, ProgramCost] = {}
    try:
        stats_switch.write_text("1")
        bench.setup(tool)
        with tempfile.TemporaryDirectory() as scratch:
            trees = {"before": export_tree(REPO, args.baseline, Path(scratch)), "after": REPO}
            rate = functools.partial(bench.rate, tool, bench.client_ns, bench.cgroup, seconds=args.seconds)
            modes: dict[str, Callable[[], tuple[float, float]]] = {
                "direct": functools.partial(rate, BACKENDS, PORT),
                "VIP": functools.partial(rate, [measured], 80),
            }
            for _ in range(args.rounds):
                for label, tree in trees.items():
                    load(bench, tree, document(args.services, node_ports=label == "after"), Path(scratch))
                    runs = dict(modes)
                    if label == "after":
                        runs["NodePort"] = functools.partial(
                            rate, [CLIENT_NODE_IP], NODE_PORT_BASE + args.services // 2
                        )
                    for mode, measure in runs.items():
                        cost = costs.setdefault(f"{label} {mode}", ProgramCost(bench, measure))
                        samples.setdefault(f"{label} {mode}", []).append(cost())
    finally:
        stats_switch.write_text(stats_before)
        bench.teardown()

    print(
        f"{args.services} services x 10 backends; after adds {args.services} NodePort services and 500 node "
        f"addresses; before = {args.baseline}; {args.rounds} alternating rounds of {args.seconds}s, medians"
    )
    print(f"    {'':<18} {'per wall second':>16} {'per client CPU second':>22} {'connect4 ns/run':>16}")
    results = {
        name: (statistics.median(wall for wall, _ in runs), statistics.median(cpu for _, cpu in runs))
        for name, runs in samples.items()
    }
    for name, (wall, cpu) in results.items():
        print(f"    {name:<18} {wall:>16.0f} {cpu:>22.0f} {costs[name].ns_per_run:>16.0f}")
    for label in ("before", "after"):
        vip_rate, direct_rate = results[f"{label} VIP"], results[f"{label} direct"]
        print(
            f"    {label}: VIP / direct wall {vip_rate[0] / direct_rate[0]:.3f}, CPU {vip_rate[1] / direct_rate[1]:.3f}"
        )


if __name__ == "__main__":
    main()
