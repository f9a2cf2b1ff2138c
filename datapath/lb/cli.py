"""`balancing datapath build|apply|explain|dump|events|detach`: the socket load balancer's verbs.

Heavy imports (ctypes bindings, pydantic models) happen inside the handlers, so that
`balancing --help` stays fast and works on machines without libbpf.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    build = subparsers.add_parser("build", help="compile the BPF object for this kernel (cached)")
    build.set_defaults(handler=_build)

    apply = subparsers.add_parser(
        "apply", help="load and attach if needed, then reconcile the BPF maps to a desired-state file"
    )
    _bpffs(apply)
    _cgroup(apply)
    apply.add_argument("state_file", type=Path, metavar="STATE_FILE", help="YAML or JSON desired state")
    apply.add_argument("--watch", action="store_true", help="stay running and re-apply whenever STATE_FILE changes")
    apply.add_argument("--interval", type=float, default=0.5, help="--watch poll interval in seconds")
    apply.set_defaults(handler=_apply)

    explain = subparsers.add_parser("explain", help="which tier, policy and backends resolve IP PORT PROTO")
    _bpffs(explain)
    explain.add_argument("ip")
    explain.add_argument("port", type=int)
    explain.add_argument("protocol", metavar="PROTO", help="TCP or UDP")
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.add_argument(
        "--client-cgroup",
        type=int,
        metavar="ID",
        help="decide for a client in this cgroup (id): tiers that skip it decline",
    )
    explain.set_defaults(handler=_explain)

    dump = subparsers.add_parser("dump", help="everything in the maps, as JSON")
    _bpffs(dump)
    dump.add_argument(
        "--state", action="store_true", help="print what the kernel resolves as a desired-state document (YAML)"
    )
    dump.set_defaults(handler=_dump)

    events = subparsers.add_parser("events", help="follow decoded resolution events")
    _bpffs(events)
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.add_argument("--count", type=int, help="stop after this many events")
    events.add_argument("--timeout", type=float, help="stop after this many seconds")
    events.add_argument("--skip-backlog", action="store_true", help="ignore events queued before now")
    events.set_defaults(handler=_events)

    detach = subparsers.add_parser("detach", help="detach from the cgroup and remove every pin")
    _bpffs(detach)
    _cgroup(detach)
    detach.set_defaults(handler=_detach)


def _bpffs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bpffs", type=Path, required=True, metavar="DIR", help="the node's bpffs pin directory")


def _cgroup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cgroup", type=Path, required=True, metavar="CGROUP_DIR", help="the node's cgroup v2 directory"
    )


def _build(args: argparse.Namespace) -> int:
    from datapath.lb.build import ensure_object

    print(ensure_object())
    return 0


def _apply(args: argparse.Namespace) -> int:
    from datapath.errors import DatapathError
    from datapath.lb.facade import SocketLB, capacity
    from datapath.lb.state import load_state

    state = load_state(args.state_file, capacity(args.bpffs))  # validate before touching anything
    lb = SocketLB(args.bpffs, args.cgroup)
    try:
        report = lb.apply(state)
        load_summary = lb.load_report.summary() if lb.load_report else ""
        print(f"{args.bpffs}: {load_summary}; {report.summary()}", flush=True)
        if not args.watch:
            return 0
        stop: list[int] = []
        signal.signal(signal.SIGTERM, lambda number, _frame: stop.append(number))
        seen = _fingerprint(args.state_file)
        while not stop:
            time.sleep(args.interval)
            current = _fingerprint(args.state_file)
            if current == seen:
                continue
            seen = current
            try:
                report = lb.apply(
                    load_state(args.state_file, lb.writer.capacity if lb.writer else capacity(args.bpffs))
                )
            except DatapathError as error:  # a bad file or a failed write: keep watching
                print(f"balancing: error: {error} (keeping the previous state)", file=sys.stderr, flush=True)
                continue
            print(f"{args.bpffs}: {report.summary()}", flush=True)
        return 0
    finally:
        lb.close()


def _fingerprint(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _explain(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from datapath.lb.reader import MapReader

    with MapReader(args.bpffs) as reader:
        explanation = reader.explain(args.ip, args.port, args.protocol, args.client_cgroup)
    if args.json:
        print(json.dumps(asdict(explanation), indent=2))
    else:
        print("\n".join(explanation.lines()))
    return 0


def _dump(args: argparse.Namespace) -> int:
    from datapath.lb.reader import MapReader

    with MapReader(args.bpffs) as reader:
        if args.state:
            import yaml

            print(yaml.safe_dump(reader.state().document(), sort_keys=False), end="")
        else:
            print(json.dumps(reader.dump(), indent=2))
    return 0


def _events(args: argparse.Namespace) -> int:
    from datapath.lb.reader import EventStream

    with EventStream(args.bpffs, skip_backlog=args.skip_backlog) as stream:
        for event in stream.follow(timeout=args.timeout, count=args.count):
            print(json.dumps(event.as_dict()) if args.json else event.line(), flush=True)
    return 0


def _detach(args: argparse.Namespace) -> int:
    from datapath.lb.facade import detach

    removed = detach(args.bpffs, args.cgroup)
    print(f"{args.bpffs}: removed {', '.join(removed) if removed else 'nothing (nothing was attached)'}")
    return 0
