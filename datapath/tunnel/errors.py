"""Errors of the tunnel manager. All are operator-facing: the `balancing` dispatcher prints them as one line."""

from __future__ import annotations


class TunnelError(RuntimeError):
    """Something the operator can act on: a missing binary, a node that is not there, a failed command."""

    user_facing = True


class InvalidTunnelState(TunnelError):
    """The desired state is invalid. Raised before anything is changed, so the running config is untouched.

    `problems` lists every offending entry, each message naming it (for example `peers[1] (member-2-node-1)`).
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        joined = "; ".join(problems)
        super().__init__(f"invalid tunnel state {source}: {joined} (nothing was changed)")
