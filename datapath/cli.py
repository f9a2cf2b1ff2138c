"""`balancing datapath ...` verbs.

The socket load balancer verbs (apply, explain, dump, events, detach) live in `datapath.lb.cli`;
the tunnel verbs (`balancing datapath tunnel ...`) live in `datapath.tunnel.cli`.
Each provides `register(subparsers)`.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

SUBCOMMAND_MODULES = ("datapath.lb.cli", "datapath.tunnel.cli")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "datapath", help="node datapath: cgroup eBPF socket load balancer and WireGuard tunnels"
    )
    datapath_subparsers = parser.add_subparsers(dest="datapath_command", required=True, metavar="VERB")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(datapath_subparsers)
