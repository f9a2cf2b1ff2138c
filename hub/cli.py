"""`balancing hub ...` and `balancing status`: the hub operator, joining a member, the federation's state."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    hub = subparsers.add_parser("hub", help="the hub: run its operator, add a member cluster")
    verbs = hub.add_subparsers(dest="hub_command", required=True, metavar="VERB")

    run = verbs.add_parser("run", help="run the hub operator (settings from the environment, see docs/federation.md)")
    run.add_argument("--kubeconfig", help="the hub's kubeconfig (default: in-cluster, then KUBECONFIG)")
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from hub.api import run
    from hub.settings import HubSettings

    return run(HubSettings.from_environment(), args.kubeconfig, args.verbose)
