"""`balancing agent` and `balancing controller`: the member's two processes (what the member chart runs)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    agent = subparsers.add_parser(
        "agent", help="run the node agent (settings from the environment: NODE_NAME, BALANCING_BPFFS, ...)")
    agent.set_defaults(handler=_agent)
    controller = subparsers.add_parser(
        "controller", help="run the member controller (policy status, policy endpoint slices)")
    controller.set_defaults(handler=_controller)


def _agent(args: argparse.Namespace) -> int:
    from member.agent.run import main
    from member.agent.settings import from_environment
    from member.observability import setup_logging

    setup_logging()
    return main(from_environment())


def _controller(args: argparse.Namespace) -> int:
    from member.controller.run import ControllerSettings, main
    from member.observability import setup_logging

    setup_logging()
    return main(ControllerSettings.from_environment())
