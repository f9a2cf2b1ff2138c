"""Entry point of the `balancing` console command.

Each component owns its verbs and registers them here through a `register(subparsers)` function;
the component modules import their heavy dependencies lazily so that `balancing --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# (verb, module that provides `register(subparsers)`)
COMPONENT_COMMANDS: tuple[tuple[str, str], ...] = (
    ("lab", "lab.cli"),
    ("datapath", "datapath.cli"),
    ("member", "member.cli"),
    ("hub", "hub.cli"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="balancing",
        description="Balancing Federation: multi-cluster L4 load balancing for Kubernetes.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for _verb, module_name in COMPONENT_COMMANDS:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        # Components mark operator-facing errors with a class attribute `user_facing = True`
        # (they cannot share a base class: datapath imports nothing from the other packages).
        if getattr(error, "user_facing", False):
            print(f"balancing: error: {error}", file=sys.stderr)
            return 2
        raise
