"""Map writes, desired state to kernel, this tree against a baseline revision, in one run.

Real pinned maps on a throwaway cgroup and bpffs directory; 10,000 services x 10 backends. Steps,
each timed separately:
- parse + validate the document (dict -> DesiredState);
- full sync of that validated state into empty maps (diff + batch writes);
- restart: a new SocketLB over the same pins applies the same state (load, adopt, diff, write nothing);
- one backend of one service changed, applied three ways: `upsert` of that frontend (what an agent
  does on an endpoint event); a full-state `apply` in which the agent hands in its unchanged
  FrontendSpec objects again (it keeps one per Service) and one new spec; and a full-state `apply`
  of a state rebuilt from scratch (every spec a new object, equal by value).

The baseline is `git archive REV` of this repository, run by the same measuring code in a child
process whose PYTHONPATH points at that tree; rounds alternate between the two trees, so the load on
the machine falls on both alike. Medians are compared.

    python -m benchmarks.bench_datapath_sync [--baseline main] [--services 10000] [--backends 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
STEPS = {
    "parse": "parse + validate the document",
    "full": "full sync, validated state -> kernel",
    "restart": "restart: load, adopt the pins, diff, write nothing",
    "upsert": "one backend changed: upsert of its frontend",
    "apply_reused": "one backend changed: full apply, unchanged specs reused",
    "apply_rebuilt": "one backend changed: full apply, every spec rebuilt",
}


def timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


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


def datapath_api() -> Any:
    """The names this benchmark uses, from whichever layout the importable `datapath` has."""
    try:
        import datapath.lb

        datapath.lb.SocketLB  # noqa: B018  (the lazy export, or AttributeError before the public API)
        return datapath.lb
    except AttributeError:
        names = types.SimpleNamespace()
        for module, wanted in (
            ("datapath.build", ["ensure_object"]),
            ("datapath.lb.abi", ["Tier"]),
            ("datapath.lb.node", ["SocketLB", "detach"]),
            ("datapath.lb.state", ["DesiredState", "parse_state"]),
        ):
            for name in wanted:
                setattr(names, name, getattr(importlib.import_module(module), name))
        return names


def measure(services: int, backends: int) -> dict[str, float]:
    """One round of every step, with whatever `datapath` is importable (this tree or the baseline's)."""
    api = datapath_api()
    DesiredState, SocketLB, Tier, parse_state = api.DesiredState, api.SocketLB, api.Tier, api.parse_state
    cgroup_root, bpffs_root = Path("/sys/fs/cgroup/unified"), Path("/sys/fs/bpf")
    tag = uuid.uuid4().hex[:6]
    cgroup, bpffs = cgroup_root / f"bfbench{tag}", bpffs_root / f"bfbench{tag}"
    cgroup.mkdir()
    raw, bumped = document(services, backends), document(services, backends, bump=services // 2)
    seconds: dict[str, float] = {}
    try:
        object_path = api.ensure_object()
        desired, seconds["parse"] = timed(lambda: parse_state(raw))
        rebuilt_change, rebuilt_back = parse_state(bumped), parse_state(raw)
        index = services // 2
        changed_spec, original_spec = rebuilt_change.tiers.service[index], desired.tiers.service[index]
        reused_change = DesiredState.model_validate(
            {"tiers": {"service": (*desired.tiers.service[:index], changed_spec, *desired.tiers.service[index + 1 :])}}
        )

        lb = SocketLB(bpffs, cgroup, object_path)
        lb.apply(parse_state({"tiers": {}}))  # load and attach: not part of the sync
        assert lb.writer is not None
        report, seconds["full"] = timed(functools.partial(lb.writer.apply, desired))
        assert report.added == services
        lb.close()
        restarted = SocketLB(bpffs, cgroup, object_path)
        report, seconds["restart"] = timed(lambda: restarted.apply(desired))
        assert report.elements_written == 0 and report.unchanged == services
        upserts = [
            timed(functools.partial(restarted.upsert, Tier.SERVICE, spec))[1] for spec in (changed_spec, original_spec)
        ]
        seconds["upsert"] = statistics.mean(upserts)
        restarted.apply(desired)  # the writer now knows these very objects
        for step, states in (
            ("apply_reused", (reused_change, desired)),
            ("apply_rebuilt", (rebuilt_change, rebuilt_back)),
        ):
            runs = []
            for state in states:
                report, elapsed = timed(functools.partial(restarted.apply, state))
                assert report.swapped == 1 and report.unchanged == services - 1, report
                runs.append(elapsed)
            seconds[step] = statistics.mean(runs)
        restarted.close()
    finally:
        if cgroup.exists():
            api.detach(bpffs, cgroup)
            cgroup.rmdir()
    return seconds


def child(tree: Path, services: int, backends: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, __file__, "--measure", "--services", str(services), "--backends", str(backends)],
        cwd=tree, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"measuring {tree} failed: {out.stderr.strip()}")
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="main", help="git revision to compare against")
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--backends", type=int, default=10, help="backends per service")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per tree (medians are compared)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.services, args.backends)))
        return

    from benchmarks.baseline import export_tree  # here: a child measuring the baseline runs without it

    samples: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"before": export_tree(REPO, args.baseline, Path(scratch)), "after": REPO}
        for _ in range(args.rounds):
            for label, tree in trees.items():
                for step, value in child(tree, args.services, args.backends).items():
                    samples[label].setdefault(step, []).append(value)
    total = args.services * args.backends
    print(f"{args.services} services x {args.backends} backends = {total} backends; before = {args.baseline}, "
          f"after = this tree; medians of {args.rounds} alternating rounds (ms)")  # fmt: skip
    print(f"{'step':<58} {'before':>9} {'after':>9} {'after/before':>13}")
    for step, label in STEPS.items():
        before, after = (statistics.median(samples[side][step]) * 1000 for side in ("before", "after"))
        print(f"{label:<58} {before:>9.2f} {after:>9.2f} {after / before:>13.3f}")


if __name__ == "__main__":
    main()
