"""Errors of the tunnel manager, under the datapath's one error root (datapath.errors)."""

from __future__ import annotations

from datapath.errors import DatapathError, StateError


class TunnelError(DatapathError):
    """Something the operator can act on: a missing binary, a node that is not there, a failed command."""


class InvalidTunnelState(TunnelError, StateError):
    """The desired state is invalid. Raised before anything is changed, so the running config is untouched.

    `problems` lists every offending entry, each message naming it (for example `peers[1] (member-2-node-1)`).
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        joined = "; ".join(problems)
        super().__init__(f"invalid tunnel state {source}: {joined} (nothing was changed)")
